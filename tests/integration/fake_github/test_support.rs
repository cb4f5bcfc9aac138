//! What the fake's self-tests share: the test App, its installation on `acme`, and requests.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::FakeGitHub;
use super::answers::unix_now;
use crate::http::{HeadedResponse, request_with_headers};

pub(super) const KEY: &str = include_str!("../../fixtures/app/test-app-key.pem");
pub(super) const PUBLIC_KEY: &str = include_str!("../../fixtures/app/test-app-key.pub.pem");
pub(super) const APP_ID: u64 = 4242;
pub(super) const INSTALLATION: u64 = 77;
/// A repository of the installation's account.
pub(super) const REPO: &str = "acme/site";
/// A public repository of another account.
pub(super) const UPSTREAM: &str = "grafana/alloy";

pub(super) fn now() -> i64 {
    unix_now() as i64
}

pub(super) fn jwt(claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

/// A JWT as GitHub documents it: backdated a minute, ten minutes long.
pub(super) fn app_jwt() -> String {
    jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID.to_string()}))
}

/// The App `alloy-bot`, installed on `acme`.
pub(super) fn github_with_app() -> FakeGitHub {
    let github = FakeGitHub::start();
    github.register_app(APP_ID, PUBLIC_KEY, "alloy-bot");
    github.add_installation(INSTALLATION, "acme");
    github
}

/// [`github_with_app`] with repository [`REPO`] (default branch `main`), and an
/// `Authorization` header with an installation token.
pub(super) fn github_with_repo() -> (FakeGitHub, String) {
    let github = github_with_app();
    github.add_repo(REPO, "main");
    let token = format!("token {}", issue_token(&github));
    (github, token)
}

/// A request with `Accept: application/vnd.github+json` and, optionally, `Authorization`.
pub(super) fn call(
    github: &FakeGitHub,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> HeadedResponse {
    let mut headers = vec![("Accept", "application/vnd.github+json")];
    if let Some(authorization) = authorization {
        headers.push(("Authorization", authorization));
    }
    call_with(github, method, path, &headers, body)
}

/// A request with exactly these headers.
pub(super) fn call_with(
    github: &FakeGitHub,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HeadedResponse {
    request_with_headers(github.port(), method, path, headers, body.as_bytes()).unwrap()
}

pub(super) fn issue_token(github: &FakeGitHub) -> String {
    let response = call(
        github,
        "POST",
        &format!("/app/installations/{INSTALLATION}/access_tokens"),
        Some(&format!("Bearer {}", app_jwt())),
        "",
    );
    assert_eq!(response.status, 201, "{}", response.body);
    response.json()["token"].as_str().unwrap().to_owned()
}
