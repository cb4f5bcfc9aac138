//! The App manifest flow's last step: exchanging the code GitHub gives for the new App's
//! credentials (`POST /app-manifests/{code}/conversions`).

use http::Method;
use serde::de::DeserializeOwned;

use super::api::{ApiError, Auth, GitHubApi};
use super::url::escape_component;

/// What became of an exchange that GitHub answered.
#[derive(Debug)]
pub enum Conversion<T> {
    /// GitHub made the App: its credentials, or why its answer could not be read (the App
    /// exists all the same).
    Created(Result<T, ApiError>),
    /// 404 or 422: the code has expired (codes last an hour) or was used; nothing was made.
    CodeRefused { status: u16 },
    /// Any other answer: GitHub may or may not have made the App.
    Failed { status: u16, message: String },
}

/// Exchanges `code` for the new App's credentials, as `T`. Sent once: after a server error
/// or a lost answer GitHub may have made the App already, and asking again would only get
/// "used already" (an `Err` here). The code is a secret for the hour it lasts: the client
/// keeps it out of its logs and errors.
pub async fn convert<T: DeserializeOwned>(
    api: &GitHubApi,
    code: &str,
) -> Result<Conversion<T>, ApiError> {
    let response = api
        .request_not_repeated(
            Method::POST,
            &format!("/app-manifests/{}/conversions", escape_component(code)),
            Auth::Anonymous,
            None,
        )
        .await?;
    Ok(match response.status {
        404 | 422 => Conversion::CodeRefused {
            status: response.status,
        },
        _ if response.is_success() => Conversion::Created(response.json()),
        status => Conversion::Failed {
            status,
            message: response.message(),
        },
    })
}
