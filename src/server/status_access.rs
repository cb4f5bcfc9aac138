//! Who may read the status page, `/api/jobs`, `/api/deliveries` and `/metrics`
//! ([`StatusAccess`]). With `STATUS_TOKEN` set they answer only requests that carry it, as a
//! bearer token (`Authorization: Bearer <token>`, what Prometheus sends with
//! `authorization: {credentials: …}`) or as the password of HTTP Basic authentication with
//! any user name (what a browser asks for). A server with a `PUBLIC_URL` and no token keeps
//! them closed unless `STATUS_PUBLIC=true` opens them on purpose: they show job errors and
//! repository and user names. Webhooks (verified by their signature), `/images/` (hosts
//! download from it), the setup pages (their own token) and the health checks stay open.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::AppState;
use crate::server::config::StatusAccess;

/// Lets the request through when the status is open or the request carries the token.
pub async fn require_status_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match state.status_access.as_ref() {
        StatusAccess::Open => next.run(request).await,
        StatusAccess::Token(token) if carries(request.headers(), token.expose()) => {
            next.run(request).await
        }
        StatusAccess::Token(_) => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                "this server's status needs its STATUS_TOKEN: as a bearer token, or as the password (any user name)\n",
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"alloy-sysext-automation\", charset=\"UTF-8\"",
                ),
            );
            response
        }
        StatusAccess::Closed => (StatusCode::UNAUTHORIZED, CLOSED_EXPLANATION).into_response(),
    }
}

/// What a closed status answers, and what the start-up log says.
pub const CLOSED_EXPLANATION: &str = "this server is public (PUBLIC_URL is set) and has no STATUS_TOKEN, so its status page, /api/jobs, /api/deliveries and /metrics are closed: set STATUS_TOKEN to open them to requests that carry it, or STATUS_PUBLIC=true to open them to anyone\n";

/// Whether `headers` carry `token` as a bearer token or a Basic password.
fn carries(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let given = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim())
        else {
            return false;
        };
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        match decoded.split_once(':') {
            Some((_, password)) => password.to_owned(),
            None => return false,
        }
    } else {
        return false;
    };
    crate::secret::same_secret(&given, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn basic(user_and_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_and_password)
        )
    }

    #[test]
    fn the_token_is_accepted_as_bearer_or_basic_password_only() {
        let token = "s3cret-token";
        assert!(carries(&with("Bearer s3cret-token"), token));
        assert!(carries(&with("bearer  s3cret-token "), token));
        assert!(carries(&with(&basic("anyone:s3cret-token")), token));
        assert!(carries(&with(&basic(":s3cret-token")), token));

        assert!(!carries(&HeaderMap::new(), token));
        assert!(!carries(&with("Bearer s3cret"), token));
        assert!(!carries(&with("Bearer s3cret-token-and-more"), token));
        assert!(!carries(&with("s3cret-token"), token));
        assert!(!carries(&with("Token s3cret-token"), token));
        assert!(!carries(&with(&basic("s3cret-token:")), token));
        assert!(!carries(&with(&basic("s3cret-token")), token));
        assert!(!carries(&with("Basic not base64!"), token));
    }
}
