//! The shape of answers: GitHub's error bodies, users, times, request bodies.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) const DOCS: &str = "https://docs.github.com/rest";

/// An error answer, in GitHub's shape: `{"message", "documentation_url"}`, with `errors` on
/// validation failures.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    pub(super) documentation_url: &'static str,
    pub(super) errors: Option<Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            json!({"message": self.message, "documentation_url": self.documentation_url});
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// What the route handlers answer.
pub(super) type Answer = Result<Response, ApiError>;

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        documentation_url: DOCS,
        errors: None,
    }
}

pub(super) fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "Not Found")
}

pub(super) fn bad_credentials() -> ApiError {
    error(StatusCode::UNAUTHORIZED, "Bad credentials")
}

/// 422 with a plain message, as the Git and Contents APIs give them.
pub(super) fn unprocessable(message: impl Into<String>) -> ApiError {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// 422 `Validation Failed` with `errors`, e.g.
/// `[{"resource": "Release", "code": "already_exists", "field": "tag_name"}]`.
pub(super) fn validation_failed(errors: Value) -> ApiError {
    ApiError {
        errors: Some(errors),
        ..unprocessable("Validation Failed")
    }
}

/// 422 for a missing parameter, as GitHub words it.
pub(super) fn not_supplied(field: &str) -> ApiError {
    unprocessable(format!("Invalid request.\n\n\"{field}\" wasn't supplied."))
}

pub(super) fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

pub(super) fn ok(body: Value) -> Answer {
    Ok(axum::Json(body).into_response())
}

pub(super) fn no_content() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The JSON object of a request body, or GitHub's 400.
pub(super) fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Problems parsing JSON"))
}

/// A string field of a request, refusing other types as GitHub does.
pub(super) fn string_field<'a>(
    request: &'a Value,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match &request[field] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(unprocessable(format!(
            "Invalid request.\n\nFor '{field}', {} is not a string.",
            request[field]
        ))),
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `2024-05-01T12:00:00Z`, as GitHub writes times.
pub(super) fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .unwrap();
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A stable number for `text` (FNV-1a), so ids do not change between runs.
pub(super) fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.to_lowercase().bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3);
    }
    hash
}

/// A stable fake user id for `login`.
pub(super) fn user_id(login: &str) -> u64 {
    1_000_000 + stable_hash(login) % 100_000_000
}

/// `Bot` for `<slug>[bot]` logins, `User` otherwise.
pub(super) fn user_kind(login: &str) -> &'static str {
    if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    }
}

/// A user object in GitHub's full shape (`type`: "User", "Bot" or "Organization").
pub(super) fn user_json(login: &str, kind: &str) -> Value {
    let id = user_id(login);
    let api = format!("https://api.github.com/users/{login}");
    let html = match login.strip_suffix("[bot]") {
        Some(slug) if kind == "Bot" => format!("https://github.com/apps/{slug}"),
        _ => format!("https://github.com/{login}"),
    };
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_fake{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": html,
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": kind,
        "site_admin": false,
    })
}

/// [`user_json`] with the type guessed from the login.
pub(super) fn user(login: &str) -> Value {
    user_json(login, user_kind(login))
}
