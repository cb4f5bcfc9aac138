//! Authentication as GitHub does it: App JWTs, installation tokens (which reach only the
//! repositories of their installation's account), and the optional credentials of public data.

use std::collections::HashSet;
use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::Model;
use super::answers::{ApiError, bad_credentials, error, not_found, unix_now};
use super::app::App;

pub(super) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""))
}

/// The credential of `token X` or `Bearer X`.
fn credential(authorization: &str) -> Option<&str> {
    let (scheme, value) = authorization.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| value.trim())
}

/// The App whose valid JWT authorizes the request, or GitHub's 401.
pub(super) fn app_auth(model: &Model, headers: &HeaderMap) -> Result<u64, ApiError> {
    const UNDECODABLE: &str = "A JSON web token could not be decoded";
    let refuse = |message: &str| Err(error(StatusCode::UNAUTHORIZED, message));
    let Some(raw) = authorization(headers) else {
        return refuse(UNDECODABLE);
    };
    let Some(token) = raw
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return refuse(UNDECODABLE);
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    validation.leeway = 0;
    let mut apps: Vec<&App> = model.app.apps.values().collect();
    apps.sort_by_key(|app| app.id);
    let verified = apps.into_iter().find_map(|app| {
        let claims = jsonwebtoken::decode::<Value>(token, &app.key, &validation)
            .ok()?
            .claims;
        let issuer = match &claims["iss"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        (issuer == Some(app.id)).then_some((app.id, claims))
    });
    let Some((app_id, claims)) = verified else {
        return refuse(UNDECODABLE);
    };
    let now = unix_now() as i64;
    let Some(iat) = claims["iat"].as_i64() else {
        return refuse(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    };
    let Some(exp) = claims["exp"].as_i64() else {
        return refuse(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    };
    if iat > now + 60 {
        return refuse(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    }
    if exp <= now {
        return refuse(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    }
    if exp - iat > 600 {
        return refuse("'Expiration time' claim ('exp') is too far in the future");
    }
    Ok(app_id)
}

/// Who an installation token speaks for.
pub(super) struct Installation {
    pub(super) account: String,
    /// `<slug>[bot]`: the author of what the token writes.
    pub(super) bot: String,
}

/// The installation whose unexpired token authorizes the request, or GitHub's 401.
pub(super) fn installation_auth(
    model: &Model,
    headers: &HeaderMap,
) -> Result<Installation, ApiError> {
    let Some(raw) = authorization(headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "Requires authentication"));
    };
    let issued = credential(raw)
        .and_then(|token| model.app.tokens.get(token))
        .filter(|issued| issued.expires_at > SystemTime::now())
        .ok_or_else(bad_credentials)?;
    Ok(Installation {
        account: model.app.installations[&issued.installation_id].clone(),
        bot: model.app.bot_login(issued.app_id),
    })
}

/// GitHub's answer when a token reaches outside its installation: the repository does not
/// exist for it.
pub(super) fn check_repository(
    installation: &Installation,
    owner: &str,
    repo: &str,
) -> Result<(), ApiError> {
    if owner.eq_ignore_ascii_case(&installation.account) {
        return Ok(());
    }
    eprintln!(
        "fake GitHub: a token of the installation on {} was used on {owner}/{repo}: 404",
        installation.account
    );
    Err(not_found())
}

/// A repository route: 401 without a valid installation token, 404 outside its account.
pub(super) fn repo_auth(
    model: &Model,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
) -> Result<Installation, ApiError> {
    let installation = installation_auth(model, headers)?;
    check_repository(&installation, owner, repo)?;
    Ok(installation)
}

/// For public data: no credentials are fine, bad ones are not.
pub(super) fn optional_auth(model: &Model, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(raw) = authorization(headers) else {
        return Ok(());
    };
    let valid = credential(raw).is_some_and(|token| {
        model.app.personal_tokens.contains(token)
            || model
                .app
                .tokens
                .get(token)
                .is_some_and(|issued| issued.expires_at > SystemTime::now())
    });
    if valid {
        Ok(())
    } else {
        Err(bad_credentials())
    }
}

/// Whether the request has push access to `owner`'s repositories (a valid installation token
/// of that account), which is what shows draft releases.
pub(super) fn can_push(model: &Model, headers: &HeaderMap, owner: &str) -> bool {
    installation_auth(model, headers)
        .is_ok_and(|installation| installation.account.eq_ignore_ascii_case(owner))
}
