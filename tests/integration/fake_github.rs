//! A fake GitHub on loopback: a stateful model of the parts of GitHub the CLI and the App
//! server talk to, which tests set up, drive, break on purpose and inspect.
//!
//! It behaves like the real one where clients depend on it:
//! - releases are found by tag, asset downloads need `Accept: application/octet-stream` and
//!   answer with a redirect to the storage host;
//! - App routes (`/app...`) need an RS256 App JWT, checked as GitHub does; installation
//!   tokens are issued for registered installations, expire, and are needed on the repository
//!   routes (collaborator permission, issue comments, reactions), which only reach repositories
//!   of the installation's account;
//! - webhook deliveries are kept, listed newest first with a cursor, and redelivered for real
//!   to the configured target, asynchronously, as GitHub does;
//! - every answer carries a unique `x-github-request-id`, API answers carry the rate-limit
//!   headers, errors have GitHub's `{"message", "documentation_url"}` body, and unknown things
//!   are 404;
//! - failures (rate limits, 5xx) can be queued for the next matching request.

// Each scenario module uses only a part of this fake.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// An asset as the fake serves it.
#[derive(Clone)]
pub struct Asset {
    pub name: String,
    pub data: Vec<u8>,
    /// The `digest` field: `Some("sha256:<hex>")`, or `None` as on older releases.
    pub digest: Option<String>,
}

/// A comment created through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeComment {
    pub id: u64,
    pub body: String,
    /// The author's login: `<slug>[bot]` for the App.
    pub user: String,
}

/// One request the fake answered (or is answering).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Without the query.
    pub path: String,
    /// 0 while the answer is still being made.
    pub status: u16,
    /// When the request arrived.
    pub at: SystemTime,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// The `x-github-request-id` it was answered with.
    pub request_id: String,
}

/// One webhook delivery attempt, as GitHub lists it.
#[derive(Clone, Debug)]
pub struct FakeDelivery {
    /// The attempt's id (what `/app/hook/deliveries/{id}/attempts` takes).
    pub id: u64,
    /// The delivery's guid (`X-GitHub-Delivery`), shared by its redeliveries.
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub redelivery: bool,
    /// The target's answer; 0 when it could not be reached.
    pub status_code: u16,
    pub delivered_at: SystemTime,
}

/// A failure to answer with instead of the normal answer; see [`FakeGitHub::fail_next`].
#[derive(Clone, Debug)]
pub enum Failure {
    /// The primary rate limit: 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`
    /// `reset_in` from now.
    RateLimited { reset_in: Duration },
    /// A secondary rate limit: 403 with `retry-after: retry_after` (seconds).
    SecondaryRateLimit { retry_after: u64 },
    /// This status (e.g. 502) with a GitHub-ish body.
    ServerError(u16),
}

const DOCS: &str = "https://docs.github.com/rest";
const RATE_LIMIT: u64 = 5000;
/// The App's owner, as `/app` reports it.
const APP_OWNER: &str = "fake-app-owner";
const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

struct App {
    id: u64,
    slug: String,
    key: DecodingKey,
}

struct IssuedToken {
    installation_id: u64,
    app_id: u64,
    expires_at: SystemTime,
}

#[derive(Clone)]
struct WebhookTarget {
    port: u16,
    path: String,
    secret: String,
}

struct DeliveryRecord {
    id: u64,
    guid: String,
    delivered_at: SystemTime,
    redelivery: bool,
    duration: f64,
    status: String,
    status_code: u16,
    event: String,
    action: Option<String>,
    installation_id: Option<u64>,
    repository_id: Option<u64>,
    body: Arc<Vec<u8>>,
    response_body: String,
}

impl DeliveryRecord {
    fn public(&self) -> FakeDelivery {
        FakeDelivery {
            id: self.id,
            guid: self.guid.clone(),
            event: self.event.clone(),
            action: self.action.clone(),
            redelivery: self.redelivery,
            status_code: self.status_code,
            delivered_at: self.delivered_at,
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": rfc3339(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": null,
        })
    }
}

struct Reaction {
    id: u64,
    user: String,
    content: String,
}

struct QueuedFailure {
    method: String,
    path_prefix: String,
    failure: Failure,
}

struct Model {
    /// The fake's own address, for the API URLs in answers.
    base_url: String,

    /// (repo, tag) -> asset ids
    releases: HashMap<(String, String), Vec<u64>>,
    assets: HashMap<u64, Asset>,
    next_id: u64,
    /// Asset downloads started, by asset name.
    downloads: Vec<String>,
    asset_delay: Duration,

    apps: HashMap<u64, App>,
    /// installation id -> account login
    installations: HashMap<u64, String>,
    token_lifetime: Duration,
    tokens: HashMap<String, IssuedToken>,
    tokens_issued: usize,
    /// Tokens accepted on the public release routes, as personal tokens would be.
    personal_tokens: HashSet<String>,

    /// (repo, user), lowercased -> role
    permissions: HashMap<(String, String), String>,
    /// (repo lowercased, issue) -> comments
    comments: HashMap<(String, u64), Vec<FakeComment>>,
    next_comment_id: u64,
    /// (repo lowercased, comment id) -> reactions
    reactions: HashMap<(String, u64), Vec<Reaction>>,
    next_reaction_id: u64,

    webhook_target: Option<WebhookTarget>,
    /// Oldest first.
    deliveries: Vec<DeliveryRecord>,
    next_delivery_id: u64,
    redelivery_attempts: Vec<String>,

    requests: Vec<RecordedRequest>,
    unauthorized: usize,
    failures: VecDeque<QueuedFailure>,
    rate_remaining: u64,
    rate_reset: u64,
}

impl Model {
    fn new(base_url: String) -> Self {
        Model {
            base_url,
            releases: HashMap::new(),
            assets: HashMap::new(),
            next_id: 0,
            downloads: Vec::new(),
            asset_delay: Duration::ZERO,
            apps: HashMap::new(),
            installations: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            tokens: HashMap::new(),
            tokens_issued: 0,
            personal_tokens: HashSet::new(),
            permissions: HashMap::new(),
            comments: HashMap::new(),
            next_comment_id: 2_000_000_000,
            reactions: HashMap::new(),
            next_reaction_id: 300_000_000,
            webhook_target: None,
            deliveries: Vec::new(),
            next_delivery_id: 90_000_000_000,
            redelivery_attempts: Vec::new(),
            requests: Vec::new(),
            unauthorized: 0,
            failures: VecDeque::new(),
            rate_remaining: RATE_LIMIT,
            rate_reset: unix_now() + 3600,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record_delivery(
        &mut self,
        guid: &str,
        event: &str,
        action: Option<&str>,
        body: Arc<Vec<u8>>,
        redelivery: bool,
        status_code: u16,
        delivered_at: SystemTime,
        duration: f64,
        response_body: String,
    ) -> FakeDelivery {
        self.next_delivery_id += 1;
        let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let record = DeliveryRecord {
            id: self.next_delivery_id,
            guid: guid.to_owned(),
            delivered_at,
            redelivery,
            duration,
            status: delivery_status(status_code),
            status_code,
            event: event.to_owned(),
            action: action.map(str::to_owned),
            installation_id: payload["installation"]["id"].as_u64(),
            repository_id: payload["repository"]["id"].as_u64(),
            body,
            response_body,
        };
        let public = record.public();
        self.deliveries.push(record);
        public
    }

    fn bot_login(&self, app_id: u64) -> String {
        let slug = self
            .apps
            .get(&app_id)
            .map_or("unknown-app", |app| &app.slug);
        format!("{slug}[bot]")
    }

    /// Spends one request of the primary rate limit and gives its headers.
    fn spend_rate_limit(&mut self) -> [(&'static str, HeaderValue); 5] {
        let now = unix_now();
        if now >= self.rate_reset {
            self.rate_remaining = RATE_LIMIT;
            self.rate_reset = now + 3600;
        }
        self.rate_remaining = self.rate_remaining.saturating_sub(1);
        [
            ("x-ratelimit-limit", RATE_LIMIT.into()),
            ("x-ratelimit-remaining", self.rate_remaining.into()),
            ("x-ratelimit-reset", self.rate_reset.into()),
            (
                "x-ratelimit-used",
                (RATE_LIMIT - self.rate_remaining).into(),
            ),
            ("x-ratelimit-resource", HeaderValue::from_static("core")),
        ]
    }
}

type Shared = Arc<Mutex<Model>>;

/// The model, even after a panic elsewhere (the fake should keep answering).
fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running fake; dropping it stops the server.
pub struct FakeGitHub {
    pub url: String,
    port: u16,
    model: Shared,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        // A redelivery to a target that does not answer could otherwise hold the drop for
        // the client's whole read timeout.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl FakeGitHub {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{address}");
        let model = Arc::new(Mutex::new(Model::new(url.clone())));
        let app = Router::new()
            .route("/app", get(get_app))
            .route(
                "/app/installations/{id}/access_tokens",
                post(create_access_token),
            )
            .route("/app/hook/deliveries", get(list_deliveries))
            .route("/app/hook/deliveries/{id}", get(get_delivery))
            .route("/app/hook/deliveries/{id}/attempts", post(redeliver))
            .route(
                "/repos/{owner}/{repo}/collaborators/{user}/permission",
                get(collaborator_permission),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
                post(create_reaction),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                post(create_comment),
            )
            .route(
                "/repos/{owner}/{repo}/releases/tags/{tag}",
                get(release_by_tag),
            )
            .route("/repos/{owner}/{repo}/releases/assets/{id}", get(asset_api))
            .route("/storage/{id}", get(asset_storage))
            .fallback(|| async { not_found() })
            .layer(axum::middleware::from_fn_with_state(model.clone(), observe))
            .with_state(model.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGitHub {
            url,
            port: address.port(),
            model,
            runtime: Some(runtime),
        }
    }

    /// The port it listens on at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    // --- releases -------------------------------------------------------------------------

    /// Publishes release `tag` in `repo` with `assets`.
    pub fn add_release(&self, repo: &str, tag: &str, assets: Vec<Asset>) {
        let mut model = self.model();
        let mut ids = Vec::new();
        for asset in assets {
            model.next_id += 1;
            let id = model.next_id;
            model.assets.insert(id, asset);
            ids.push(id);
        }
        model
            .releases
            .insert((repo.to_owned(), tag.to_owned()), ids);
    }

    /// The names of the assets whose download has started, in order.
    pub fn downloads(&self) -> Vec<String> {
        self.model().downloads.clone()
    }

    /// Makes the storage host send the first half of each asset at once and the rest only
    /// after `delay`, so a test can stop a client in the middle of a download.
    pub fn set_asset_delay(&self, delay: Duration) {
        self.model().asset_delay = delay;
    }

    /// Accepts `token` on the public release routes, as a personal access token.
    pub fn accept_personal_token(&self, token: &str) {
        self.model().personal_tokens.insert(token.to_owned());
    }

    // --- the App and its installations ------------------------------------------------------

    /// Registers App `app_id` (its JWTs must verify with `public_key_pem`), whose bot is
    /// `<slug>[bot]`.
    pub fn register_app(&self, app_id: u64, public_key_pem: &str, slug: &str) {
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("the App's public key is not an RSA PEM: {e}"));
        self.model().apps.insert(
            app_id,
            App {
                id: app_id,
                slug: slug.to_owned(),
                key,
            },
        );
    }

    /// Installs the App on `account`: its tokens reach the repositories `account/*`.
    pub fn add_installation(&self, id: u64, account: &str) {
        self.model().installations.insert(id, account.to_owned());
    }

    /// How long installation tokens issued from now on live (GitHub: one hour).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.model().token_lifetime = lifetime;
    }

    /// The number of installation tokens issued.
    pub fn tokens_issued(&self) -> usize {
        self.model().tokens_issued
    }

    /// Gives `user` role `permission` on `repo` ("admin", "maintain", "write", "triage",
    /// "read" or "none"; users not set have "read", as on a public repository).
    pub fn set_permission(&self, repo: &str, user: &str, permission: &str) {
        self.model().permissions.insert(
            (repo.to_lowercase(), user.to_lowercase()),
            permission.to_owned(),
        );
    }

    // --- issues ------------------------------------------------------------------------------

    /// The comments created on issue `issue` of `repo`, oldest first.
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<FakeComment> {
        self.model()
            .comments
            .get(&(repo.to_lowercase(), issue))
            .cloned()
            .unwrap_or_default()
    }

    /// The reactions on comment `comment_id` of `repo`, oldest first. Like GitHub, a user's
    /// second identical reaction is not a new one (see [`Self::requests`] for attempts).
    pub fn reactions(&self, repo: &str, comment_id: u64) -> Vec<String> {
        self.model()
            .reactions
            .get(&(repo.to_lowercase(), comment_id))
            .map(|reactions| reactions.iter().map(|r| r.content.clone()).collect())
            .unwrap_or_default()
    }

    // --- webhooks ------------------------------------------------------------------------------

    /// Where the App's webhook deliveries go: `http://127.0.0.1:{port}{path}`, signed with
    /// `secret`.
    pub fn set_webhook_target(&self, port: u16, path: &str, secret: &str) {
        self.model().webhook_target = Some(WebhookTarget {
            port,
            path: path.to_owned(),
            secret: secret.to_owned(),
        });
    }

    /// Records a delivery GitHub made, answered with `status_code` (0: unreachable), without
    /// sending anything. Returns its id.
    pub fn add_delivery(
        &self,
        guid: &str,
        event: &str,
        action: Option<&str>,
        body: Vec<u8>,
        status_code: u16,
    ) -> u64 {
        self.model()
            .record_delivery(
                guid,
                event,
                action,
                Arc::new(body),
                false,
                status_code,
                SystemTime::now(),
                0.12,
                String::new(),
            )
            .id
    }

    /// Records a delivery GitHub tried and failed (the target answered 502). Returns its id.
    pub fn add_failed_delivery(
        &self,
        guid: &str,
        event: &str,
        action: Option<&str>,
        body: Vec<u8>,
    ) -> u64 {
        self.add_delivery(guid, event, action, body, 502)
    }

    /// Delivers a webhook now, as GitHub would: POSTs `body` to the target, signed, and
    /// records the attempt with the target's answer.
    pub fn deliver(
        &self,
        guid: &str,
        event: &str,
        action: Option<&str>,
        body: Vec<u8>,
    ) -> FakeDelivery {
        deliver_blocking(&self.model, guid, event, action, Arc::new(body), false)
    }

    /// Every delivery attempt recorded, oldest first (the API lists them newest first).
    pub fn deliveries(&self) -> Vec<FakeDelivery> {
        self.model()
            .deliveries
            .iter()
            .map(DeliveryRecord::public)
            .collect()
    }

    /// The guids of the redeliveries asked for through the API, in order. They are sent
    /// asynchronously; see [`Self::wait_for_redeliveries`].
    pub fn redelivery_attempts(&self) -> Vec<String> {
        self.model().redelivery_attempts.clone()
    }

    /// Waits until `count` redeliveries have been sent and answered (or failed), and returns
    /// them, oldest first. Panics after `timeout`.
    pub fn wait_for_redeliveries(&self, count: usize, timeout: Duration) -> Vec<FakeDelivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let done: Vec<_> = self
                .deliveries()
                .into_iter()
                .filter(|d| d.redelivery)
                .collect();
            if done.len() >= count {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} redeliveries done after {timeout:?}; asked for: {:?}",
                done.len(),
                self.redelivery_attempts()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // --- observing and breaking it --------------------------------------------------------------

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.model().requests.clone()
    }

    /// The number of 401 answers given.
    pub fn unauthorized_responses(&self) -> usize {
        self.model().unauthorized
    }

    /// Answers the next request whose method is `method` and whose path starts with
    /// `path_prefix` with `failure` instead. Queued failures are used in order.
    pub fn fail_next(&self, method: &str, path_prefix: &str, failure: Failure) {
        self.model().failures.push_back(QueuedFailure {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            failure,
        });
    }
}

// --- helpers --------------------------------------------------------------------------------------

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `2024-05-01T12:00:00Z`, as GitHub writes times.
fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .unwrap();
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn delivery_status(status_code: u16) -> String {
    match status_code {
        0 => "failed to connect to host".to_owned(),
        200..=299 => "OK".to_owned(),
        code => format!("Invalid HTTP Response: {code}"),
    }
}

/// An error answer, in GitHub's shape.
struct ApiError {
    status: StatusCode,
    message: String,
    documentation_url: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"message": self.message, "documentation_url": self.documentation_url});
        (self.status, axum::Json(body)).into_response()
    }
}

/// What the route handlers answer.
type Answer = Result<Response, ApiError>;

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        documentation_url: DOCS,
    }
}

fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn bad_credentials() -> ApiError {
    error(StatusCode::UNAUTHORIZED, "Bad credentials")
}

fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

fn ok(body: Value) -> Answer {
    Ok(axum::Json(body).into_response())
}

/// A stable fake user id for `login`.
fn user_id(login: &str) -> u64 {
    // FNV-1a, so ids do not change between runs.
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in login.to_lowercase().bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3);
    }
    1_000_000 + hash % 100_000_000
}

/// A user object in GitHub's full shape (`type`: "User", "Bot" or "Organization").
fn user_json(login: &str, kind: &str) -> Value {
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

fn app_permissions() -> Value {
    json!({"contents": "read", "issues": "write", "metadata": "read", "pull_requests": "write"})
}

// --- authentication ---------------------------------------------------------------------------------

fn authorization(headers: &HeaderMap) -> Option<&str> {
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
fn app_auth(model: &Model, headers: &HeaderMap) -> Result<u64, ApiError> {
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
    let mut apps: Vec<&App> = model.apps.values().collect();
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
struct Installation {
    account: String,
    bot: String,
}

/// The installation whose unexpired token authorizes the request, or GitHub's 401.
fn installation_auth(model: &Model, headers: &HeaderMap) -> Result<Installation, ApiError> {
    let Some(raw) = authorization(headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "Requires authentication"));
    };
    let issued = credential(raw)
        .and_then(|token| model.tokens.get(token))
        .filter(|issued| issued.expires_at > SystemTime::now())
        .ok_or_else(bad_credentials)?;
    Ok(Installation {
        account: model.installations[&issued.installation_id].clone(),
        bot: model.bot_login(issued.app_id),
    })
}

/// GitHub's answer when a token reaches outside its installation: the repository does not
/// exist for it.
fn check_repository(installation: &Installation, owner: &str, repo: &str) -> Result<(), ApiError> {
    if owner.eq_ignore_ascii_case(&installation.account) {
        return Ok(());
    }
    eprintln!(
        "fake GitHub: a token of the installation on {} was used on {owner}/{repo}: 404",
        installation.account
    );
    Err(not_found())
}

/// For the public release routes: no credentials are fine, bad ones are not.
fn optional_auth(model: &Model, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(raw) = authorization(headers) else {
        return Ok(());
    };
    let valid = credential(raw).is_some_and(|token| {
        model.personal_tokens.contains(token)
            || model
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

// --- the middleware: request ids, rate-limit headers, failures, the request log -------------------------

async fn observe(State(model): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let (index, request_id, failure) = {
        let mut model = lock(&model);
        let index = model.requests.len();
        let request_id = format!(
            "{:04X}:{:04X}:{:X}:{:X}:{:08X}",
            rand::random::<u16>(),
            rand::random::<u16>(),
            0x10_0000 + index,
            rand::random::<u32>(),
            unix_now() as u32,
        );
        model.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            status: 0,
            at: SystemTime::now(),
            authorization: authorization(request.headers()).map(str::to_owned),
            request_id: request_id.clone(),
        });
        let position = model.failures.iter().position(|queued| {
            queued.method.eq_ignore_ascii_case(&method) && path.starts_with(&queued.path_prefix)
        });
        let failure = position.and_then(|i| model.failures.remove(i));
        (index, request_id, failure.map(|queued| queued.failure))
    };
    let mut response = match &failure {
        Some(failure) => failure_response(failure, &request_id, &model),
        None => next.run(request).await,
    };
    let mut model = lock(&model);
    let status = response.status().as_u16();
    model.requests[index].status = status;
    if status == 401 {
        model.unauthorized += 1;
    }
    let headers = response.headers_mut();
    if failure.is_none() && !path.starts_with("/storage/") {
        for (name, value) in model.spend_rate_limit() {
            headers.insert(name, value);
        }
    }
    headers.insert("x-github-request-id", request_id.parse().unwrap());
    response
}

fn failure_response(failure: &Failure, request_id: &str, model: &Mutex<Model>) -> Response {
    match failure {
        Failure::RateLimited { reset_in } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let reset = (now + *reset_in).as_secs_f64().ceil() as u64;
            let mut response = ApiError {
                status: StatusCode::FORBIDDEN,
                message: "API rate limit exceeded for installation ID 1.".to_owned(),
                documentation_url: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            }
            .into_response();
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", RATE_LIMIT.into());
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-reset", reset.into());
            headers.insert("x-ratelimit-used", RATE_LIMIT.into());
            headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
            response
        }
        Failure::SecondaryRateLimit { retry_after } => {
            let mut response = ApiError {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID {request_id}."
                ),
                documentation_url: "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            }
            .into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, (*retry_after).into());
            for (name, value) in lock(model).spend_rate_limit() {
                headers.insert(name, value);
            }
            response
        }
        Failure::ServerError(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
            error(status, status.canonical_reason().unwrap_or("Server Error")).into_response()
        }
    }
}

// --- App routes --------------------------------------------------------------------------------------------

async fn get_app(State(model): State<Shared>, headers: HeaderMap) -> Answer {
    let model = lock(&model);
    let app_id = app_auth(&model, &headers)?;
    let app = &model.apps[&app_id];
    ok(json!({
        "id": app.id,
        "slug": app.slug,
        "node_id": format!("A_fake{}", app.id),
        "client_id": format!("Iv1.fake{:08x}", app.id),
        "owner": user_json(APP_OWNER, "Organization"),
        "name": app.slug,
        "description": "A fake App",
        "external_url": "https://example.com/",
        "html_url": format!("https://github.com/apps/{}", app.slug),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": app_permissions(),
        "events": ["issue_comment", "release"],
        "installations_count": model.installations.len(),
    }))
}

async fn create_access_token(
    State(model): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let mut model = lock(&model);
    let app_id = app_auth(&model, &headers)?;
    let Some(installation_id) = id
        .parse()
        .ok()
        .filter(|id| model.installations.contains_key(id))
    else {
        return Err(not_found());
    };
    model.tokens_issued += 1;
    let token = format!(
        "ghs_{:04}{:032x}",
        model.tokens_issued,
        rand::random::<u128>()
    );
    let expires_at = SystemTime::now() + model.token_lifetime;
    model.tokens.insert(
        token.clone(),
        IssuedToken {
            installation_id,
            app_id,
            expires_at,
        },
    );
    created(json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "permissions": app_permissions(),
        "repository_selection": "all",
    }))
}

#[derive(serde::Deserialize)]
struct DeliveryQuery {
    per_page: Option<String>,
    cursor: Option<String>,
}

async fn list_deliveries(
    State(model): State<Shared>,
    Query(query): Query<DeliveryQuery>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    app_auth(&model, &headers)?;
    let per_page = match query.per_page.as_deref().map(str::parse::<usize>) {
        None | Some(Ok(0)) => 30,
        Some(Ok(n)) => n.min(100),
        Some(Err(_)) => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid per_page")),
    };
    // The cursor is the id of the last attempt shown; the next page holds older ones.
    let before = match query.cursor.as_deref() {
        None => u64::MAX,
        Some(cursor) => match cursor.strip_prefix("v1_").and_then(|id| id.parse().ok()) {
            Some(id) => id,
            None => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid cursor")),
        },
    };
    let mut page: Vec<&DeliveryRecord> = model
        .deliveries
        .iter()
        .rev()
        .filter(|d| d.id < before)
        .take(per_page + 1)
        .collect();
    let more = page.len() > per_page;
    page.truncate(per_page);
    let body: Vec<Value> = page.iter().map(|d| d.json()).collect();
    let mut response = axum::Json(body).into_response();
    if let (true, Some(last)) = (more, page.last()) {
        let link = format!(
            "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
            model.base_url, last.id
        );
        response
            .headers_mut()
            .insert(header::LINK, link.parse().unwrap());
    }
    Ok(response)
}

async fn get_delivery(
    State(model): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    app_auth(&model, &headers)?;
    let Some(record) = model.deliveries.iter().find(|d| id.parse() == Ok(d.id)) else {
        return Err(not_found());
    };
    let mut body = record.json();
    body["request"] = json!({
        "headers": {
            "X-GitHub-Delivery": record.guid,
            "X-GitHub-Event": record.event,
            "Content-Type": "application/json",
        },
        "payload": serde_json::from_slice::<Value>(&record.body).unwrap_or(Value::Null),
    });
    body["response"] = json!({"headers": {}, "payload": record.response_body});
    Ok(axum::Json(body).into_response())
}

async fn redeliver(
    State(model): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let (guid, event, action, body) = {
        let mut model = lock(&model);
        app_auth(&model, &headers)?;
        let Some(record) = model.deliveries.iter().find(|d| id.parse() == Ok(d.id)) else {
            return Err(not_found());
        };
        let found = (
            record.guid.clone(),
            record.event.clone(),
            record.action.clone(),
            record.body.clone(),
        );
        model.redelivery_attempts.push(found.0.clone());
        found
    };
    // GitHub answers at once and delivers afterwards.
    let model = model.clone();
    tokio::task::spawn_blocking(move || {
        deliver_blocking(&model, &guid, &event, action.as_deref(), body, true)
    });
    Ok((StatusCode::ACCEPTED, axum::Json(json!({}))).into_response())
}

/// POSTs a delivery to the webhook target as GitHub does and records the attempt.
fn deliver_blocking(
    model: &Mutex<Model>,
    guid: &str,
    event: &str,
    action: Option<&str>,
    body: Arc<Vec<u8>>,
    redelivery: bool,
) -> FakeDelivery {
    let (target, app_id) = {
        let model = lock(model);
        (
            model.webhook_target.clone(),
            model.apps.keys().min().copied(),
        )
    };
    let delivered_at = SystemTime::now();
    let started = Instant::now();
    let answer = match &target {
        None => Err("no webhook target is set".to_owned()),
        Some(target) => {
            let signature = alloy_sysext_automation::server::signature::sign(&target.secret, &body);
            let app_id = app_id.map(|id| id.to_string()).unwrap_or_default();
            let headers = [
                ("User-Agent", "GitHub-Hookshot/fake"),
                ("Content-Type", "application/json"),
                ("X-GitHub-Delivery", guid),
                ("X-GitHub-Event", event),
                ("X-GitHub-Hook-ID", "1"),
                ("X-GitHub-Hook-Installation-Target-Type", "integration"),
                ("X-GitHub-Hook-Installation-Target-ID", app_id.as_str()),
                ("X-Hub-Signature-256", signature.as_str()),
            ];
            crate::http::request(target.port, "POST", &target.path, &headers, &body)
                .map_err(|e| e.to_string())
        }
    };
    let duration = started.elapsed().as_secs_f64();
    let (status_code, response_body) = match answer {
        Ok(response) => (response.status, response.body),
        Err(e) => (0, e),
    };
    lock(model).record_delivery(
        guid,
        event,
        action,
        body,
        redelivery,
        status_code,
        delivered_at,
        duration,
        response_body,
    )
}

// --- repository routes (installation tokens) ---------------------------------------------------------------

async fn collaborator_permission(
    State(model): State<Shared>,
    Path((owner, repo, user)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    let installation = installation_auth(&model, &headers)?;
    check_repository(&installation, &owner, &repo)?;
    let role = model
        .permissions
        .get(&(
            format!("{owner}/{repo}").to_lowercase(),
            user.to_lowercase(),
        ))
        .map_or("read", String::as_str);
    // `permission` is the legacy base role; `role_name` the role itself.
    let permission = match role {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    };
    let rank = |r: &str| match r {
        "admin" => 5,
        "maintain" => 4,
        "write" => 3,
        "triage" => 2,
        "read" => 1,
        _ => 0,
    };
    let level = rank(role);
    let mut user_json = user_json(&user, "User");
    user_json["permissions"] = json!({
        "admin": level >= 5,
        "maintain": level >= 4,
        "push": level >= 3,
        "triage": level >= 2,
        "pull": level >= 1,
    });
    user_json["role_name"] = json!(role);
    ok(json!({"permission": permission, "role_name": role, "user": user_json}))
}

/// The JSON object of a request body, or GitHub's 400.
fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Problems parsing JSON"))
}

async fn create_comment(
    State(model): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut model = lock(&model);
    let installation = installation_auth(&model, &headers)?;
    check_repository(&installation, &owner, &repo)?;
    let Ok(number) = number.parse::<u64>() else {
        return Err(not_found());
    };
    let request = json_body(&body)?;
    let Some(text) = request["body"].as_str() else {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"body\" wasn't supplied.",
        ));
    };
    model.next_comment_id += 1;
    let id = model.next_comment_id;
    let comment = FakeComment {
        id,
        body: text.to_owned(),
        user: installation.bot.clone(),
    };
    model
        .comments
        .entry((format!("{owner}/{repo}").to_lowercase(), number))
        .or_default()
        .push(comment);
    let now = rfc3339(SystemTime::now());
    let api = format!("{}/repos/{owner}/{repo}", model.base_url);
    created(json!({
        "id": id,
        "node_id": format!("IC_fake{id}"),
        "url": format!("{api}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{owner}/{repo}/issues/{number}#issuecomment-{id}"),
        "issue_url": format!("{api}/issues/{number}"),
        "body": text,
        "user": user_json(&installation.bot, "Bot"),
        "author_association": "NONE",
        "created_at": now,
        "updated_at": now,
        "performed_via_github_app": null,
    }))
}

async fn create_reaction(
    State(model): State<Shared>,
    Path((owner, repo, comment_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut model = lock(&model);
    let installation = installation_auth(&model, &headers)?;
    check_repository(&installation, &owner, &repo)?;
    let Ok(comment_id) = comment_id.parse::<u64>() else {
        return Err(not_found());
    };
    let request = json_body(&body)?;
    let Some(content) = request["content"]
        .as_str()
        .filter(|c| REACTIONS.contains(c))
    else {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"));
    };
    let reaction_json = |id: u64| {
        json!({
            "id": id,
            "node_id": format!("REA_fake{id}"),
            "user": user_json(&installation.bot, "Bot"),
            "content": content,
            "created_at": rfc3339(SystemTime::now()),
        })
    };
    let key = (format!("{owner}/{repo}").to_lowercase(), comment_id);
    // A user's second identical reaction is the first one again: 200, not 201.
    if let Some(existing) = model.reactions.get(&key).and_then(|reactions| {
        reactions
            .iter()
            .find(|r| r.user == installation.bot && r.content == content)
    }) {
        return ok(reaction_json(existing.id));
    }
    model.next_reaction_id += 1;
    let id = model.next_reaction_id;
    model.reactions.entry(key).or_default().push(Reaction {
        id,
        user: installation.bot.clone(),
        content: content.to_owned(),
    });
    created(reaction_json(id))
}

// --- releases (public) --------------------------------------------------------------------------------------

async fn release_by_tag(
    State(model): State<Shared>,
    Path((owner, repo, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    optional_auth(&model, &headers)?;
    let Some(ids) = model
        .releases
        .get(&(format!("{owner}/{repo}"), tag.clone()))
    else {
        return Err(not_found());
    };
    let assets: Vec<_> = ids
        .iter()
        .map(|id| {
            let asset = &model.assets[id];
            json!({
                "id": id,
                "name": asset.name,
                "size": asset.data.len(),
                "digest": asset.digest,
                "content_type": "application/zip",
                "state": "uploaded",
                "url": format!("/repos/{owner}/{repo}/releases/assets/{id}"),
                "browser_download_url": format!("https://github.com/{owner}/{repo}/releases/download/{tag}/{}", asset.name),
            })
        })
        .collect();
    ok(json!({
        "id": 1,
        "tag_name": tag,
        "name": tag,
        "draft": false,
        "prerelease": false,
        "body": "release notes",
        "html_url": format!("https://github.com/{owner}/{repo}/releases/tag/{tag}"),
        "assets": assets,
    }))
}

async fn asset_api(
    State(model): State<Shared>,
    Path((_owner, _repo, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    {
        let model = lock(&model);
        optional_auth(&model, &headers)?;
        if !id.parse().is_ok_and(|id| model.assets.contains_key(&id)) {
            return Err(not_found());
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("application/octet-stream") {
        // The real API answers JSON metadata here; a client that wants bytes must ask.
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ask for application/octet-stream",
        )
            .into_response());
    }
    Ok(Redirect::to(&format!("/storage/{id}")).into_response())
}

/// The storage host (a different host on the real GitHub; it ignores API credentials).
async fn asset_storage(State(model): State<Shared>, Path(id): Path<String>) -> Answer {
    let (data, delay) = {
        let mut model = lock(&model);
        let Some(asset) = id
            .parse()
            .ok()
            .and_then(|id| model.assets.get(&id).cloned())
        else {
            return Err(not_found());
        };
        model.downloads.push(asset.name);
        (asset.data, model.asset_delay)
    };
    if delay.is_zero() {
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response());
    }
    let length = data.len();
    let data = Bytes::from(data);
    let (first, rest) = (data.slice(..length / 2), data.slice(length / 2..));
    let chunks = futures_util::stream::unfold(0, move |step| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(delay).await;
                    Some((Ok(rest), 2))
                }
                _ => None,
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use jsonwebtoken::{EncodingKey, Header};

    use super::*;
    use crate::http::{HeadedResponse, request, request_with_headers};

    const KEY: &str = include_str!("../fixtures/app/test-app-key.pem");
    const PUBLIC_KEY: &str = include_str!("../fixtures/app/test-app-key.pub.pem");
    const APP_ID: u64 = 4242;
    const INSTALLATION: u64 = 77;

    fn now() -> i64 {
        unix_now() as i64
    }

    fn jwt(claims: Value) -> String {
        let key = EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    }

    /// A JWT as GitHub documents it: backdated a minute, ten minutes long.
    fn app_jwt() -> String {
        jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID.to_string()}))
    }

    fn github_with_app() -> FakeGitHub {
        let github = FakeGitHub::start();
        github.register_app(APP_ID, PUBLIC_KEY, "alloy-bot");
        github.add_installation(INSTALLATION, "acme");
        github
    }

    fn call(
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
        request_with_headers(github.port(), method, path, &headers, body.as_bytes()).unwrap()
    }

    fn issue_token(github: &FakeGitHub) -> String {
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

    #[test]
    fn app_jwts_are_checked_like_github_does() {
        let github = github_with_app();
        for iss in [json!(APP_ID.to_string()), json!(APP_ID)] {
            let token = jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": iss}));
            let response = call(&github, "GET", "/app", Some(&format!("Bearer {token}")), "");
            assert_eq!(response.status, 200, "{}", response.body);
            let app = response.json();
            assert_eq!(app["id"], APP_ID);
            assert_eq!(app["slug"], "alloy-bot");
            assert_eq!(app["owner"]["login"], APP_OWNER);
            serde_json::from_value::<octocrab::models::App>(app).unwrap();
        }

        let valid = app_jwt();
        let other = jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": "4243"}));
        // A valid header and claims with another token's signature.
        let (signed, _) = other.rsplit_once('.').unwrap();
        let (_, signature) = valid.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{signature}");
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID}),
            &EncodingKey::from_secret(PUBLIC_KEY.as_bytes()),
        )
        .unwrap();
        let refused = [
            (None, "could not be decoded"),
            (Some("Bearer not-a-jwt".to_owned()), "could not be decoded"),
            (Some(format!("token {valid}")), "could not be decoded"),
            (Some(format!("Bearer {other}")), "could not be decoded"),
            (Some(format!("Bearer {forged}")), "could not be decoded"),
            (Some(format!("Bearer {hs256}")), "could not be decoded"),
            (
                Some(format!(
                    "Bearer {}",
                    jwt(json!({"iat": now() - 700, "exp": now() - 100, "iss": APP_ID}))
                )),
                "'exp'",
            ),
            (
                Some(format!(
                    "Bearer {}",
                    jwt(json!({"iat": now() - 60, "exp": now() + 600, "iss": APP_ID}))
                )),
                "too far in the future",
            ),
            (
                Some(format!(
                    "Bearer {}",
                    jwt(json!({"iat": now() + 120, "exp": now() + 500, "iss": APP_ID}))
                )),
                "'iat'",
            ),
            (
                Some(format!(
                    "Bearer {}",
                    jwt(json!({"exp": now() + 500, "iss": APP_ID}))
                )),
                "'iat'",
            ),
        ];
        for (authorization, message) in &refused {
            let response = call(&github, "GET", "/app", authorization.as_deref(), "");
            assert_eq!(response.status, 401, "{authorization:?}: {}", response.body);
            let body = response.json();
            assert!(
                body["message"].as_str().unwrap().contains(message),
                "{authorization:?}: {body}"
            );
            assert_eq!(body["documentation_url"], DOCS);
        }
        assert_eq!(github.unauthorized_responses(), refused.len());
        // The JWT routes refuse installation tokens too.
        let token = issue_token(&github);
        let response = call(&github, "GET", "/app", Some(&format!("token {token}")), "");
        assert_eq!(response.status, 401);
        assert_eq!(github.unauthorized_responses(), refused.len() + 1);

        let requests = github.requests();
        assert_eq!(requests.len(), 2 + refused.len() + 2);
        assert_eq!(requests[0].path, "/app");
        assert_eq!(requests[0].status, 200);
        assert!(
            requests[0]
                .authorization
                .as_ref()
                .unwrap()
                .starts_with("Bearer ey")
        );
        assert_eq!(requests[2].authorization, None);
        assert_eq!(requests[2].status, 401);
    }

    #[test]
    fn installation_tokens_are_issued_reach_their_account_and_expire() {
        let github = github_with_app();
        let jwt = format!("Bearer {}", app_jwt());
        let issue = |installation: u64| {
            let path = format!("/app/installations/{installation}/access_tokens");
            call(&github, "POST", &path, Some(&jwt), "{}")
        };
        let lifetime_of = |issued: &Value| {
            let expires_at = time::OffsetDateTime::parse(
                issued["expires_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            expires_at.unix_timestamp() - now()
        };
        assert_eq!(issue(78).status, 404);

        github.set_token_lifetime(Duration::from_secs(1));
        let response = issue(INSTALLATION);
        assert_eq!(response.status, 201, "{}", response.body);
        let issued = response.json();
        let short = issued["token"].as_str().unwrap().to_owned();
        assert!(short.starts_with("ghs_") && short.len() > 30, "{short}");
        assert!((0..=1).contains(&lifetime_of(&issued)), "{issued}");
        serde_json::from_value::<octocrab::models::InstallationToken>(issued).unwrap();
        let short_issued = Instant::now();

        // The lifetime applies to tokens issued afterwards.
        github.set_token_lifetime(Duration::from_secs(3600));
        let issued = issue(INSTALLATION).json();
        assert!((3599..=3600).contains(&lifetime_of(&issued)), "{issued}");
        let token = issued["token"].as_str().unwrap().to_owned();
        assert_ne!(token, short);
        assert_eq!(github.tokens_issued(), 2);

        github.set_permission("Acme/Site", "Alice", "maintain");
        let path = "/repos/acme/site/collaborators/alice/permission";
        for authorization in [format!("token {token}"), format!("Bearer {token}")] {
            let response = call(&github, "GET", path, Some(&authorization), "");
            assert_eq!(response.status, 200, "{}", response.body);
            let body = response.json();
            assert_eq!(body["permission"], "write");
            assert_eq!(body["role_name"], "maintain");
            assert_eq!(body["user"]["login"], "alice");
            assert_eq!(body["user"]["permissions"]["maintain"], true);
            assert_eq!(body["user"]["permissions"]["admin"], false);
        }
        let response = call(
            &github,
            "GET",
            "/repos/acme/site/collaborators/bob/permission",
            Some(&format!("token {token}")),
            "",
        );
        assert_eq!(response.json()["permission"], "read");
        // Outside the installation's account the repository does not exist.
        let response = call(
            &github,
            "GET",
            "/repos/other/site/collaborators/bob/permission",
            Some(&format!("token {token}")),
            "",
        );
        assert_eq!(response.status, 404);

        // The public release routes take no token, a valid one, but not a bad one.
        github.add_release("grafana/alloy", "v1.0.0", vec![]);
        let release = "/repos/grafana/alloy/releases/tags/v1.0.0";
        assert_eq!(call(&github, "GET", release, None, "").status, 200);
        let with_token = format!("Bearer {token}");
        assert_eq!(
            call(&github, "GET", release, Some(&with_token), "").status,
            200
        );
        assert_eq!(
            call(&github, "GET", release, Some("Bearer nope"), "").status,
            401
        );
        github.accept_personal_token("nope");
        assert_eq!(
            call(&github, "GET", release, Some("Bearer nope"), "").status,
            200
        );
        assert_eq!(github.unauthorized_responses(), 1);

        std::thread::sleep(Duration::from_millis(1100).saturating_sub(short_issued.elapsed()));
        let response = call(&github, "GET", path, Some(&format!("token {short}")), "");
        assert_eq!(response.status, 401);
        assert_eq!(response.json()["message"], "Bad credentials");
        assert_eq!(call(&github, "GET", path, None, "").status, 401);
        assert_eq!(github.unauthorized_responses(), 3);
        let response = call(&github, "GET", path, Some(&format!("token {token}")), "");
        assert_eq!(response.status, 200);
    }

    #[test]
    fn queued_failures_replace_the_next_matching_answer() {
        let github = FakeGitHub::start();
        github.add_release("grafana/alloy", "v1.0.0", vec![]);
        let release = "/repos/grafana/alloy/releases/tags/v1.0.0";

        let first = call(&github, "GET", release, None, "");
        let second = call(&github, "GET", "/nowhere", None, "");
        assert_eq!(first.status, 200);
        assert_eq!(second.status, 404);
        assert_eq!(second.json()["message"], "Not Found");
        assert_eq!(first.header("x-ratelimit-limit"), Some("5000"));
        let remaining = |r: &HeadedResponse| -> u64 {
            r.header("x-ratelimit-remaining").unwrap().parse().unwrap()
        };
        assert_eq!(remaining(&first), remaining(&second) + 1);
        let reset: u64 = first.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset > unix_now());

        github.fail_next(
            "GET",
            "/repos/grafana",
            Failure::RateLimited {
                reset_in: Duration::from_millis(90_500),
            },
        );
        github.fail_next(
            "GET",
            "/repos/",
            Failure::SecondaryRateLimit { retry_after: 7 },
        );
        github.fail_next("GET", "/repos/", Failure::ServerError(502));
        // Neither another method nor another path uses them.
        assert_eq!(call(&github, "POST", release, None, "").status, 405);
        assert_eq!(call(&github, "GET", "/storage/1", None, "").status, 404);

        let limited = call(&github, "GET", release, None, "");
        assert_eq!(limited.status, 403);
        assert!(
            limited.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("API rate limit exceeded")
        );
        assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(limited.header("x-ratelimit-limit"), Some("5000"));
        let reset: u64 = limited
            .header("x-ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!((91..=92).contains(&(reset - unix_now())), "{reset}");

        let secondary = call(&github, "GET", release, None, "");
        assert_eq!(secondary.status, 403);
        assert_eq!(secondary.header("retry-after"), Some("7"));
        assert!(remaining(&secondary) > 0);
        let message = secondary.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("secondary rate limit"), "{message}");
        assert!(message.contains(secondary.header("x-github-request-id").unwrap()));

        let broken = call(&github, "GET", release, None, "");
        assert_eq!(broken.status, 502);
        assert_eq!(broken.json()["message"], "Bad Gateway");
        assert_eq!(call(&github, "GET", release, None, "").status, 200);

        let requests = github.requests();
        let ids: HashSet<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids.len(), requests.len());
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 404, 405, 404, 403, 403, 502, 200]);
    }

    /// A request a webhook target received: its headers (names lowercased) and body.
    type Received = (Vec<(String, String)>, Vec<u8>);

    /// A webhook receiver answering `status` to each request, handing over what it got.
    fn webhook_target(status: u16) -> (u16, mpsc::Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                    }
                }
                let length = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                write!(
                    stream,
                    "HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                )
                .unwrap();
                if sender.send((headers, body)).is_err() {
                    break;
                }
            }
        });
        (port, receiver)
    }

    #[test]
    fn redelivery_sends_the_stored_delivery_to_the_webhook_target() {
        let github = github_with_app();
        let (port, received) = webhook_target(202);
        github.set_webhook_target(port, "/webhook", "s3cret");
        let body =
            br#"{"action":"created","installation":{"id":77},"repository":{"id":12345}}"#.to_vec();
        let id =
            github.add_failed_delivery("guid-1", "issue_comment", Some("created"), body.clone());
        let jwt = format!("Bearer {}", app_jwt());

        let listed = call(&github, "GET", "/app/hook/deliveries", Some(&jwt), "");
        assert_eq!(listed.status, 200, "{}", listed.body);
        let listed = listed.json();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let failed = &listed[0];
        assert_eq!(failed["id"], id);
        assert_eq!(failed["guid"], "guid-1");
        assert_eq!(failed["status_code"], 502);
        assert_eq!(failed["status"], "Invalid HTTP Response: 502");
        assert_eq!(failed["redelivery"], false);
        assert_eq!(failed["event"], "issue_comment");
        assert_eq!(failed["action"], "created");
        assert_eq!(failed["installation_id"], 77);
        assert_eq!(failed["repository_id"], 12345);

        let path = format!("/app/hook/deliveries/{id}/attempts");
        assert_eq!(call(&github, "POST", &path, None, "").status, 401);
        assert_eq!(
            call(
                &github,
                "POST",
                "/app/hook/deliveries/1/attempts",
                Some(&jwt),
                ""
            )
            .status,
            404
        );
        let accepted = call(&github, "POST", &path, Some(&jwt), "");
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        assert_eq!(accepted.json(), json!({}));
        assert_eq!(github.redelivery_attempts(), ["guid-1"]);

        let (headers, delivered) = received.recv_timeout(Duration::from_secs(10)).unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(delivered, body);
        assert_eq!(header("x-github-delivery"), Some("guid-1"));
        assert_eq!(header("x-github-event"), Some("issue_comment"));
        assert_eq!(header("content-type"), Some("application/json"));
        let signature = alloy_sysext_automation::server::signature::sign("s3cret", &body);
        assert_eq!(header("x-hub-signature-256"), Some(signature.as_str()));

        let redelivered = github.wait_for_redeliveries(1, Duration::from_secs(10));
        assert_eq!(redelivered[0].guid, "guid-1");
        assert_eq!(redelivered[0].status_code, 202);
        assert_ne!(redelivered[0].id, id);

        let listed = call(&github, "GET", "/app/hook/deliveries", Some(&jwt), "").json();
        let deliveries: Vec<octocrab::models::hooks::Delivery> =
            serde_json::from_value(listed.clone()).unwrap();
        assert_eq!(deliveries.len(), 2);
        assert_eq!(listed[0]["id"], redelivered[0].id);
        assert_eq!(listed[0]["guid"], "guid-1");
        assert_eq!(listed[0]["redelivery"], true);
        assert_eq!(listed[0]["status"], "OK");
        assert_eq!(listed[1]["id"], id);

        let detail = call(
            &github,
            "GET",
            &format!("/app/hook/deliveries/{id}"),
            Some(&jwt),
            "",
        );
        let detail: octocrab::models::hooks::DeliveryDetail =
            serde_json::from_str(&detail.body).unwrap();
        assert_eq!(detail.guid, "guid-1");

        // Delivering directly records the target's answer, or its absence.
        let delivered = github.deliver("guid-2", "ping", None, b"{}".to_vec());
        assert_eq!((delivered.status_code, delivered.redelivery), (202, false));
        received.recv_timeout(Duration::from_secs(10)).unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        github.set_webhook_target(closed_port, "/webhook", "s3cret");
        assert_eq!(
            github
                .deliver("guid-3", "ping", None, b"{}".to_vec())
                .status_code,
            0
        );
        assert_eq!(github.deliveries().len(), 4);
    }

    #[test]
    fn deliveries_are_listed_newest_first_a_page_at_a_time() {
        let github = github_with_app();
        let ids: Vec<u64> = (1..=5)
            .map(|i| github.add_delivery(&format!("guid-{i}"), "ping", None, b"{}".to_vec(), 200))
            .collect();
        let jwt = format!("Bearer {}", app_jwt());
        let mut path = "/app/hook/deliveries?per_page=2".to_owned();
        let mut pages = Vec::new();
        loop {
            let response = call(&github, "GET", &path, Some(&jwt), "");
            assert_eq!(response.status, 200, "{}", response.body);
            let page: Vec<u64> = response
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_u64().unwrap())
                .collect();
            pages.push(page);
            let Some(link) = response.header("link") else {
                break;
            };
            let url = link
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("{link}"));
            path = url.strip_prefix(&github.url).unwrap().to_owned();
            assert!(path.contains("per_page=2&cursor="), "{path}");
        }
        assert_eq!(
            pages,
            [vec![ids[4], ids[3]], vec![ids[2], ids[1]], vec![ids[0]]]
        );
        let all = call(
            &github,
            "GET",
            "/app/hook/deliveries?per_page=1000",
            Some(&jwt),
            "",
        );
        assert_eq!(all.json().as_array().unwrap().len(), 5);
        assert_eq!(all.header("link"), None);
        assert_eq!(
            github.requests().last().unwrap().path,
            "/app/hook/deliveries"
        );
        let bad = call(
            &github,
            "GET",
            "/app/hook/deliveries?cursor=zzz",
            Some(&jwt),
            "",
        );
        assert_eq!(bad.status, 422);
    }

    #[test]
    fn comments_and_reactions_are_made_by_the_app_bot() {
        let github = github_with_app();
        let token = format!("token {}", issue_token(&github));
        let comments = "/repos/acme/site/issues/12/comments";
        let response = call(
            &github,
            "POST",
            comments,
            Some(&token),
            r#"{"body":"Built."}"#,
        );
        assert_eq!(response.status, 201, "{}", response.body);
        let comment: octocrab::models::issues::Comment =
            serde_json::from_str(&response.body).unwrap();
        assert_eq!(comment.user.login, "alloy-bot[bot]");
        assert_eq!(comment.user.r#type, "Bot");
        assert_eq!(comment.body.as_deref(), Some("Built."));
        assert!(
            comment
                .html_url
                .as_str()
                .ends_with(&format!("#issuecomment-{}", comment.id))
        );
        assert_eq!(
            github.comments("acme/site", 12),
            [FakeComment {
                id: comment.id.0,
                body: "Built.".into(),
                user: "alloy-bot[bot]".into()
            }]
        );
        assert_eq!(
            call(&github, "POST", comments, Some(&token), "{").status,
            400
        );
        assert_eq!(
            call(&github, "POST", comments, Some(&token), r#"{"bod":"x"}"#).status,
            422
        );
        assert_eq!(
            call(&github, "POST", comments, None, r#"{"body":"x"}"#).status,
            401
        );
        assert_eq!(github.comments("acme/site", 12).len(), 1);

        let reactions = "/repos/acme/site/issues/comments/555/reactions";
        let eyes = r#"{"content":"eyes"}"#;
        let response = call(&github, "POST", reactions, Some(&token), eyes);
        assert_eq!(response.status, 201, "{}", response.body);
        let reaction: octocrab::models::reactions::Reaction =
            serde_json::from_str(&response.body).unwrap();
        assert_eq!(reaction.user.login, "alloy-bot[bot]");
        let again = call(&github, "POST", reactions, Some(&token), eyes);
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["id"], reaction.id.0);
        let rocket = call(
            &github,
            "POST",
            reactions,
            Some(&token),
            r#"{"content":"rocket"}"#,
        );
        assert_eq!(rocket.status, 201);
        let wrong = call(
            &github,
            "POST",
            reactions,
            Some(&token),
            r#"{"content":"tada"}"#,
        );
        assert_eq!(wrong.status, 422);
        assert_eq!(github.reactions("acme/site", 555), ["eyes", "rocket"]);
        assert!(github.reactions("acme/site", 556).is_empty());
    }

    #[test]
    fn the_storage_host_can_stall_in_the_middle_of_an_asset() {
        let github = FakeGitHub::start();
        github.add_release(
            "grafana/alloy",
            "v1.0.0",
            vec![Asset {
                name: "a.zip".into(),
                data: b"0123456789".to_vec(),
                digest: None,
            }],
        );
        let release = request(
            github.port(),
            "GET",
            "/repos/grafana/alloy/releases/tags/v1.0.0",
            &[],
            b"",
        )
        .unwrap()
        .json();
        let id = release["assets"][0]["id"].as_u64().unwrap();
        github.set_asset_delay(Duration::from_secs(1));
        // The first half comes at once, the rest after the delay.
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", github.port())).unwrap();
        write!(
            stream,
            "GET /storage/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut received = Vec::new();
        let mut buffer = [0; 1024];
        while !received.ends_with(b"\r\n\r\n01234") {
            let n = stream.read(&mut buffer).unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buffer[..n]);
        }
        assert!(started.elapsed() < Duration::from_millis(800));
        let head = String::from_utf8_lossy(&received).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-length: 10\r\n"), "{head}");
        stream.read_to_end(&mut received).unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert!(received.ends_with(b"\r\n\r\n0123456789"));
        assert_eq!(github.downloads(), ["a.zip"]);
    }
}
