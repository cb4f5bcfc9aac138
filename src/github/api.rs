//! Every call the server makes to GitHub's REST API goes through [`GitHubApi`]: it
//! authenticates as the App or as one of its installations, honours rate limits, retries
//! server errors with backoff, times out, logs GitHub's request id, and never runs two
//! writes to one repository at once. Release asset downloads go through it too, their body
//! read as it arrives with a timeout between pieces rather than one for the whole answer.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::app_jwt::AppKey;
use super::installation_tokens::{InstallationToken, TokenCache};
use super::rate_limit::{RetryPolicy, RetryReason, Verdict};
use super::shared_write_locks::SharedWriteLocks;
use super::token_scope::TokenScope;
use super::transport::{self, Outgoing, ResponseBody};
use crate::secret::Secret;

/// The public API; `GITHUB_API_URL` points elsewhere.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// How long one request may take, from sending it to reading the whole answer. A download
/// has this long for its answer's head, and then [`DOWNLOAD_READ_TIMEOUT`] between pieces.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a download may go without receiving anything before it is given up.
pub const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the GitHub client: {0}")]
pub struct ClientError(octocrab::Error);

/// Who a request is made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The App itself (a JWT): `/app/...` routes.
    App,
    /// One installation of the App: repository routes, each with a token that reaches only
    /// the repository in the route's path, with only the permission the route needs.
    Installation(i64),
    /// No credentials: public data.
    Anonymous,
    /// The token the client was made with ([`GitHubApi::with_personal_token`]; the `build`
    /// command's `GITHUB_TOKEN`), or none when it has none: public data at a higher rate
    /// limit.
    Personal,
}

/// What a request carries, once its scope is known.
#[derive(Debug, Clone)]
enum Credential {
    App,
    Installation { id: i64, scope: TokenScope },
    Anonymous,
    Personal,
}

impl Credential {
    /// The credential of `auth` for reading public data outside the installation: an
    /// installation's is a read-only token of `acting_repository`, which raises the rate
    /// limit and reaches nothing else.
    fn reading_public_data(auth: Auth, acting_repository: &str) -> Credential {
        match auth {
            Auth::Installation(id) => Credential::Installation {
                id,
                scope: TokenScope::reading_public_data_as(acting_repository),
            },
            Auth::App => Credential::App,
            Auth::Anonymous => Credential::Anonymous,
            Auth::Personal => Credential::Personal,
        }
    }

    /// The credential of `auth` for `method path`: an installation's is scoped to the
    /// repository and permission the route needs.
    fn for_request(auth: Auth, method: &Method, path: &str) -> Result<Credential, ApiError> {
        Ok(match auth {
            Auth::App => Credential::App,
            Auth::Anonymous => Credential::Anonymous,
            Auth::Personal => Credential::Personal,
            Auth::Installation(id) => Credential::Installation {
                id,
                scope: TokenScope::for_request(method, path)?,
            },
        })
    }
}

/// A response GitHub gave, of any status.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// `x-github-request-id`: what GitHub support asks for.
    pub request_id: Option<String>,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_str(&self.body).map_err(|e| ApiError::Unexpected {
            reason: format!("the answer is not the JSON expected: {e}"),
            request_id: self.request_id.clone(),
        })
    }

    /// GitHub's `message` field, when the body has one.
    pub fn message(&self) -> String {
        #[derive(Deserialize)]
        struct Message {
            message: String,
        }
        serde_json::from_str::<Message>(&self.body)
            .map(|m| m.message)
            .unwrap_or_else(|_| self.body.chars().take(200).collect())
    }

    /// The response as an error, for a caller that needed a success.
    pub fn into_error(self, what: &str) -> ApiError {
        ApiError::Status {
            what: what.to_owned(),
            status: self.status,
            message: self.message(),
            request_id: self.request_id,
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "the server has no App credentials (APP_ID and PRIVATE_KEY), so it cannot call GitHub as the App"
    )]
    NoCredentials,
    #[error(
        "{what}: GitHub answered {status}: {message}{}",
        request_id_note(request_id)
    )]
    Status {
        what: String,
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    #[error("{method} {path}: gave up after {attempts} attempts: {reason}")]
    GaveUp {
        method: String,
        path: String,
        attempts: u32,
        reason: String,
    },
    /// The repository's write lock shared with the other replicas could not be had (the
    /// database did not answer); nothing was sent.
    #[error("taking the write lock of {repository} shared by the replicas: {reason}")]
    WriteLock { repository: String, reason: String },
    /// The lease this write was made under passed to another replica; nothing was sent.
    #[error(transparent)]
    FenceLost(#[from] crate::fence::FenceLost),
    #[error(transparent)]
    UnsafePath(#[from] super::url::UnsafePath),
    #[error(transparent)]
    UnknownScope(#[from] super::token_scope::UnknownScope),
    #[error(transparent)]
    ForeignRepository(#[from] super::token_scope::ForeignRepository),
    #[error("{reason}{}", request_id_note(request_id))]
    Unexpected {
        reason: String,
        request_id: Option<String>,
    },
    /// A download whose answer began but did not arrive whole.
    #[error(
        "{what}: the download broke off after {received} bytes: {reason}{}",
        request_id_note(request_id)
    )]
    Interrupted {
        what: String,
        received: u64,
        reason: String,
        request_id: Option<String>,
    },
}

fn request_id_note(request_id: &Option<String>) -> String {
    request_id
        .as_ref()
        .map(|id| format!(" (GitHub request id {id})"))
        .unwrap_or_default()
}

impl ApiError {
    /// True when trying again later may succeed: rate limits, server errors, network
    /// trouble. A 4xx other than a rate limit is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            // A fence that could not be checked (the database did not answer) may be held
            // still; one that passed to another replica is told apart by its holder.
            ApiError::GaveUp { .. }
            | ApiError::Interrupted { .. }
            | ApiError::WriteLock { .. }
            | ApiError::FenceLost(_) => true,
            ApiError::Status { status, .. } => *status >= 500 || *status == 429,
            ApiError::NoCredentials
            | ApiError::UnsafePath(_)
            | ApiError::UnknownScope(_)
            | ApiError::ForeignRepository(_)
            | ApiError::Unexpected { .. } => false,
        }
    }

    /// The HTTP status, for a status error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The client; cheap to clone.
#[derive(Clone)]
pub struct GitHubApi {
    inner: Arc<Inner>,
    /// How long a download may go without receiving anything.
    read_timeout: Duration,
    /// Repository locks shared with other replicas, taken around each write as well.
    shared_write_locks: Option<Arc<dyn SharedWriteLocks>>,
}

struct Inner {
    http: Octocrab,
    base_url: String,
    app: Option<AppKey>,
    /// What [`Auth::Personal`] sends.
    personal_token: Option<Secret>,
    tokens: std::sync::Mutex<TokenCache>,
    /// One lock per (installation, scope): a token is asked for once however many calls
    /// need it, and a slow request (a rate-limit wait) holds back only the calls that need
    /// that same token.
    token_requests: std::sync::Mutex<HashMap<(i64, TokenScope), RequestLock>>,
    /// Installation id → the account it is installed on, asked of GitHub once.
    installation_accounts: std::sync::Mutex<HashMap<i64, String>>,
    policy: RetryPolicy,
    timeout: Duration,
    repository_writes: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one token is asked for.
type RequestLock = Arc<tokio::sync::Mutex<()>>;

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl GitHubApi {
    /// A client for the API at `base_url`, acting as `app` when given.
    pub fn new(
        base_url: &str,
        app: Option<AppKey>,
        policy: RetryPolicy,
    ) -> Result<GitHubApi, ClientError> {
        GitHubApi::build(base_url, app, None, policy)
    }

    /// A client for the API at `base_url` with no App credentials, sending `token` (when
    /// given) with [`Auth::Personal`] requests.
    pub fn with_personal_token(
        base_url: &str,
        token: Option<Secret>,
        policy: RetryPolicy,
    ) -> Result<GitHubApi, ClientError> {
        GitHubApi::build(base_url, None, token, policy)
    }

    fn build(
        base_url: &str,
        app: Option<AppKey>,
        personal_token: Option<Secret>,
        policy: RetryPolicy,
    ) -> Result<GitHubApi, ClientError> {
        // Retries are ours (rate limits and backoff as GitHub documents them); octocrab's
        // own would retry 5xx at once and hide the request ids. Timeouts are ours too: one
        // for a whole answer, and for a download one between pieces, which a read timeout of
        // the connection would cut shorter.
        let http = Octocrab::builder()
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(ClientError)?;
        Ok(GitHubApi {
            read_timeout: DOWNLOAD_READ_TIMEOUT,
            shared_write_locks: None,
            inner: Arc::new(Inner {
                http,
                base_url: base_url.trim_end_matches('/').to_owned(),
                app,
                personal_token,
                tokens: std::sync::Mutex::new(TokenCache::default()),
                token_requests: std::sync::Mutex::new(HashMap::new()),
                installation_accounts: std::sync::Mutex::new(HashMap::new()),
                policy,
                timeout: REQUEST_TIMEOUT,
                repository_writes: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// This client with each write to a repository made under that repository's lock in
    /// `locks` too, shared with the other replicas.
    pub fn with_shared_write_locks(mut self, locks: Arc<dyn SharedWriteLocks>) -> GitHubApi {
        self.shared_write_locks = Some(locks);
        self
    }

    /// This client with downloads given up after `timeout` without receiving anything
    /// (instead of [`DOWNLOAD_READ_TIMEOUT`]).
    pub fn with_read_timeout(mut self, timeout: Duration) -> GitHubApi {
        self.read_timeout = timeout;
        self
    }

    /// The REST base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// True when the server has App credentials.
    pub fn has_app(&self) -> bool {
        self.inner.app.is_some()
    }

    /// The App's id, when the server has App credentials.
    pub fn app_id(&self) -> Option<u64> {
        self.inner.app.as_ref().map(AppKey::app_id)
    }

    /// A token of `installation` that reaches only `scope`: the cached one while it is
    /// fresh, else a new one.
    pub async fn installation_token(
        &self,
        installation: i64,
        scope: &TokenScope,
    ) -> Result<Secret, ApiError> {
        if let Some(token) = self.cached_token(installation, scope) {
            return Ok(token);
        }
        let request_lock = self.token_request_lock(installation, scope);
        let _one_request = request_lock.lock().await;
        // Another call may have fetched it while this one waited.
        if let Some(token) = self.cached_token(installation, scope) {
            return Ok(token);
        }
        let account = self.installation_account(installation, false).await?;
        let body = match scope.request_body(&account) {
            Ok(body) => body,
            // The account may have been renamed since it was asked.
            Err(_) => {
                let account = self.installation_account(installation, true).await?;
                scope.request_body(&account)?
            }
        };
        let now = OffsetDateTime::now_utc();
        let path = format!("/app/installations/{installation}/access_tokens");
        let response = self
            .attempts(&Call {
                body: Some(&body),
                // A token made twice is harmless.
                ..Call::new(Method::POST, &path, Credential::App)
            })
            .await?
            .response;
        if !response.is_success() {
            return Err(response.into_error(&format!(
                "getting an access token for installation {installation} on {} ({})",
                scope.repository(),
                scope.permissions()
            )));
        }
        let access: AccessToken = response.json()?;
        tracing::info!(installation, repository = scope.repository(), permissions = %scope.permissions(), expires_at = %access.expires_at, "new installation token");
        let token = Secret::new(access.token);
        self.token_cache().store(
            installation,
            scope.clone(),
            InstallationToken {
                token: token.clone(),
                issued_at: now,
                expires_at: access.expires_at,
            },
        );
        Ok(token)
    }

    fn token_cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached_token(&self, installation: i64, scope: &TokenScope) -> Option<Secret> {
        self.token_cache()
            .fresh(installation, scope, OffsetDateTime::now_utc())
    }

    fn token_request_lock(&self, installation: i64, scope: &TokenScope) -> RequestLock {
        let mut locks = self
            .inner
            .token_requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Locks no one holds or waits for go, so the map stays as small as the calls in
        // flight.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks
            .entry((installation, scope.clone()))
            .or_default()
            .clone()
    }

    /// The login of the account `installation` is installed on (`GET
    /// /app/installations/{id}`, as the App), asked once unless `renew`.
    async fn installation_account(
        &self,
        installation: i64,
        renew: bool,
    ) -> Result<String, ApiError> {
        let accounts = || {
            self.inner
                .installation_accounts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if !renew && let Some(account) = accounts().get(&installation) {
            return Ok(account.clone());
        }
        let path = format!("/app/installations/{installation}");
        let response = self
            .attempts(&Call::new(Method::GET, &path, Credential::App))
            .await?
            .response;
        if !response.is_success() {
            return Err(response.into_error(&format!(
                "reading which account installation {installation} is on"
            )));
        }
        #[derive(Deserialize)]
        struct Installation {
            account: Option<Account>,
        }
        #[derive(Deserialize)]
        struct Account {
            login: String,
        }
        let account = response
            .json::<Installation>()?
            .account
            .map(|account| account.login)
            .filter(|login| !login.is_empty())
            .ok_or_else(|| ApiError::Unexpected {
                reason: format!("GitHub named no account for installation {installation}"),
                request_id: response.request_id.clone(),
            })?;
        accounts().insert(installation, account.clone());
        Ok(account)
    }

    /// Sends a request and returns GitHub's answer, whatever its status, once rate limits
    /// and server errors have been waited out. A write to a repository waits for any other
    /// write to the same repository to finish first.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, ApiError> {
        self.request_with_headers(method, path, auth, body, &[])
            .await
    }

    /// [`GitHubApi::request`] with extra request headers (`If-None-Match`, …).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&serde_json::Value>,
        headers: &[(&'static str, String)],
    ) -> Result<ApiResponse, ApiError> {
        let credential = Credential::for_request(auth, &method, path)?;
        self.call(Call {
            body,
            headers,
            ..Call::new(method, path, credential)
        })
        .await
        .map(|answer| answer.response)
    }

    /// A `GET` of public data in a repository outside the installation (upstream's
    /// releases), made with a read-only token of `acting_repository` when `auth` is an
    /// installation: it raises the rate limit, and reaches nothing else.
    pub async fn get_public_with_headers(
        &self,
        path: &str,
        auth: Auth,
        acting_repository: &str,
        headers: &[(&'static str, String)],
    ) -> Result<ApiResponse, ApiError> {
        let credential = Credential::reading_public_data(auth, acting_repository);
        self.call(Call {
            headers,
            ..Call::new(Method::GET, path, credential)
        })
        .await
        .map(|answer| answer.response)
    }

    /// [`GitHubApi::get_public_with_headers`] as `T`, or `None` when GitHub answers 404.
    pub async fn get_public_optional_json<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: Auth,
        acting_repository: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        let response = self
            .get_public_with_headers(path, auth, acting_repository, &[])
            .await?;
        if response.status == 404 {
            return Ok(None);
        }
        if !response.is_success() {
            return Err(response.into_error(what));
        }
        response.json().map(Some)
    }

    /// Downloads the file at `path` (a release asset: `Accept: application/octet-stream`)
    /// from a repository outside the installation, with the credentials of
    /// [`GitHubApi::get_public_with_headers`]. Rate limits and server errors before the
    /// answer begins are waited out as for any request; its body is then read piece by
    /// piece with [`Download::chunk`], each within the client's read timeout. A redirect to
    /// another host (GitHub's storage) is followed without the credentials.
    pub async fn download_public(
        &self,
        path: &str,
        auth: Auth,
        acting_repository: &str,
        what: &str,
    ) -> Result<Download, ApiError> {
        let credential = Credential::reading_public_data(auth, acting_repository);
        let accept = [("accept", "application/octet-stream".to_owned())];
        let answer = self
            .call(Call {
                headers: &accept,
                reading: Reading::Streamed,
                ..Call::new(Method::GET, path, credential)
            })
            .await?;
        match answer.body {
            Some(body) if answer.response.is_success() => Ok(Download {
                what: what.to_owned(),
                length: answer
                    .response
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                request_id: answer.response.request_id,
                body,
                received: 0,
                read_timeout: self.read_timeout,
            }),
            _ => Err(answer.response.into_error(what)),
        }
    }

    /// [`GitHubApi::request`] for a request that must not be repeated blindly (one that
    /// creates something): refusals for rate limits are waited out and sent again, since
    /// GitHub did nothing with them, but a server error or a request with no answer is
    /// returned at once (as the 5xx answer, or as a transient error): GitHub may have acted
    /// on it, and the caller looks before asking again.
    pub async fn request_not_repeated(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, ApiError> {
        let credential = Credential::for_request(auth, &method, path)?;
        self.call(Call {
            body,
            repeat_unanswered: false,
            ..Call::new(method, path, credential)
        })
        .await
        .map(|answer| answer.response)
    }

    /// Sends `call`: after any other write to the same repository, and once more with a
    /// new token when GitHub refuses the installation's. A write is sent only while the
    /// lease it is made under is held ([`crate::fence`]).
    async fn call(&self, call: Call<'_>) -> Result<Answer, ApiError> {
        let is_write = call.method != Method::GET && call.method != Method::HEAD;
        let written = repository_of(call.path).filter(|_| is_write);
        let _write_guard = match written {
            Some(repository) => Some(self.repository_write_lock(repository).lock_owned().await),
            None => None,
        };
        let shared = match (written, &self.shared_write_locks) {
            (Some(repository), Some(locks)) => Some(locks.lock(repository).await.map_err(
                |reason| ApiError::WriteLock {
                    repository: repository.to_owned(),
                    reason,
                },
            )?),
            _ => None,
        };
        let answer = self.call_holding_locks(call).await;
        if let Some(lock) = shared {
            lock.release().await;
        }
        answer
    }

    /// [`Self::call`], its repository's locks held. Each send of a write checks the fence
    /// first ([`Self::attempts`]).
    async fn call_holding_locks(&self, call: Call<'_>) -> Result<Answer, ApiError> {
        let answer = self.attempts(&call).await?;
        if answer.response.status == 401
            && let Credential::Installation {
                id: installation, ..
            } = call.credential
        {
            // The token may have been revoked or expired early: renew it once.
            tracing::warn!(
                installation,
                path = call.path,
                "GitHub refused the installation token; renewing it"
            );
            self.token_cache().forget(installation);
            return self.attempts(&call).await;
        }
        Ok(answer)
    }

    /// `GET` that must succeed, as `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: Auth,
    ) -> Result<T, ApiError> {
        let response = self.request(Method::GET, path, auth, None).await?;
        if !response.is_success() {
            return Err(response.into_error(&format!("GET {path}")));
        }
        response.json()
    }

    /// `GET` of a list, 100 items a page from page 1, handing each page to `on_page` until
    /// it breaks, a page is short (the last one), or `max_pages` were read. `path` has a
    /// query already (`?state=open`, or just `?`).
    pub async fn for_each_page<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: Auth,
        max_pages: u32,
        mut on_page: impl FnMut(Vec<T>) -> ControlFlow<()>,
    ) -> Result<(), ApiError> {
        let separator = if path.ends_with('?') { "" } else { "&" };
        for page in 1..=max_pages {
            let items: Vec<T> = self
                .get_json(&format!("{path}{separator}per_page=100&page={page}"), auth)
                .await?;
            let last = items.len() < 100;
            if on_page(items).is_break() || last {
                break;
            }
        }
        Ok(())
    }

    /// `GET` as `T`, or `None` when GitHub answers 404.
    pub async fn get_optional_json<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: Auth,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        let response = self.request(Method::GET, path, auth, None).await?;
        if response.status == 404 {
            return Ok(None);
        }
        if !response.is_success() {
            return Err(response.into_error(what));
        }
        response.json().map(Some)
    }

    /// A request with a JSON body that must succeed, as `T`.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        let response = self.request(method.clone(), path, auth, Some(body)).await?;
        if !response.is_success() {
            return Err(response.into_error(&format!("{method} {path}")));
        }
        response.json()
    }

    fn repository_write_lock(&self, repository: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .repository_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks
            .entry(repository.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    async fn authorization(&self, credential: &Credential) -> Result<Option<String>, ApiError> {
        Ok(match credential {
            Credential::Anonymous => None,
            Credential::Personal => self
                .inner
                .personal_token
                .as_ref()
                .map(|token| format!("Bearer {}", token.expose())),
            Credential::App => {
                let app = self.inner.app.as_ref().ok_or(ApiError::NoCredentials)?;
                Some(format!("Bearer {}", app.jwt(unix_now())))
            }
            Credential::Installation { id, scope } => {
                let token = Box::pin(self.installation_token(*id, scope)).await?;
                Some(format!("token {}", token.expose()))
            }
        })
    }

    /// Sends `call` until GitHub's answer is final: rate limits and server errors are
    /// waited out and sent again, as the policy says.
    async fn attempts(&self, call: &Call<'_>) -> Result<Answer, ApiError> {
        let Call {
            method,
            path,
            credential,
            repeat_unanswered,
            ..
        } = call;
        let (method, path, repeat_unanswered) = (method, *path, *repeat_unanswered);
        let mut retries = 0u32;
        let shown_path = path_for_logs(path);
        let shown_path = shown_path.as_ref();
        let is_write = *method != Method::GET && *method != Method::HEAD;
        loop {
            if is_write {
                // Before each send: a retry after a long wait may find the lease gone.
                crate::fence::check().await?;
            }
            let authorization = self.authorization(credential).await?;
            let outcome = self.send_once(call, authorization).await;
            record_metrics(method, credential, outcome.as_ref().ok());
            let (verdict, response) = match outcome {
                Ok(Answer {
                    response,
                    body: rest,
                }) => {
                    if let Some(rest) = rest {
                        // A success being downloaded: its body is the caller's to read.
                        tracing::debug!(%method, path = shown_path, status = response.status, request_id = ?response.request_id, "GitHub answered; downloading");
                        return Ok(Answer {
                            response,
                            body: Some(rest),
                        });
                    }
                    let verdict = self.inner.policy.verdict(
                        response.status,
                        &response.headers,
                        response.body.as_bytes(),
                        retries,
                        unix_now(),
                    );
                    tracing::debug!(%method, path = shown_path, status = response.status, request_id = ?response.request_id, "GitHub answered");
                    (verdict, Ok(response))
                }
                Err(reason) => {
                    // A network failure or timeout: retried like a server error.
                    let verdict =
                        self.inner
                            .policy
                            .verdict(503, &HeaderMap::new(), b"", retries, unix_now());
                    (verdict, Err(reason))
                }
            };
            match verdict {
                Verdict::Accept => {
                    return response
                        .map(|response| Answer {
                            response,
                            body: None,
                        })
                        .map_err(|reason| ApiError::Unexpected {
                            reason,
                            request_id: None,
                        });
                }
                Verdict::RetryAfter {
                    reason: RetryReason::ServerError(_),
                    ..
                } if !repeat_unanswered => {
                    return response
                        .map(|response| Answer {
                            response,
                            body: None,
                        })
                        .map_err(|error| ApiError::GaveUp {
                            method: method.to_string(),
                            path: shown_path.to_owned(),
                            attempts: retries + 1,
                            reason: format!(
                                "no answer ({}); not sent again, as GitHub may have acted on it",
                                error.replace(path, shown_path)
                            ),
                        });
                }
                Verdict::RetryAfter { wait, reason } => {
                    let (status, request_id) = match &response {
                        Ok(r) => (Some(r.status), r.request_id.clone()),
                        Err(_) => (None, None),
                    };
                    let error = response.as_ref().err();
                    tracing::warn!(%method, path = shown_path, ?status, ?request_id, error = ?error.map(|e| e.replace(path, shown_path)), %reason, wait_seconds = wait.as_secs_f64(), "retrying a GitHub request");
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                Verdict::GiveUp { reason } => {
                    let detail = match &response {
                        Ok(r) => format!(
                            "{reason}; last answer {} {}{}",
                            r.status,
                            r.message(),
                            request_id_note(&r.request_id)
                        ),
                        Err(e) => {
                            format!("{reason}; last error: {}", e.replace(path, shown_path))
                        }
                    };
                    return Err(ApiError::GaveUp {
                        method: method.to_string(),
                        path: shown_path.to_owned(),
                        attempts: retries + 1,
                        reason: detail,
                    });
                }
            }
        }
    }

    /// One attempt. `Err` is a failure with no HTTP answer (network, timeout).
    async fn send_once(
        &self,
        call: &Call<'_>,
        authorization: Option<String>,
    ) -> Result<Answer, String> {
        let Call {
            method,
            path,
            body,
            headers,
            reading,
            ..
        } = call;
        let reading = *reading;
        let url = format!("{}{}", self.inner.base_url, path);
        let mut request_headers = HeaderMap::new();
        let mut set = |name: &str, value: &str| -> Result<(), String> {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("{method} {path}: cannot form the request: {e}"))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|e| format!("{method} {path}: cannot form the request: {e}"))?;
            request_headers.insert(name, value);
            Ok(())
        };
        set("accept", "application/vnd.github+json")?;
        set("x-github-api-version", "2022-11-28")?;
        set("user-agent", "alloy-sysext-automation")?;
        if let Some(authorization) = &authorization {
            set("authorization", authorization)?;
        }
        for (name, value) in headers.iter() {
            set(name, value)?;
        }
        let body = match body {
            Some(body) => {
                set("content-type", "application/json")?;
                body.to_string()
            }
            None => String::new(),
        };
        if let Some(value) = request_headers.get_mut(http::header::AUTHORIZATION) {
            value.set_sensitive(true);
        }
        let request = Outgoing {
            method: method.clone(),
            url: url
                .parse()
                .map_err(|e| format!("{method} {path}: cannot form the request: {e}"))?,
            headers: request_headers,
            body,
        };
        let exchange = async {
            let (parts, mut body) = transport::send(&self.inner.http, request)
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?;
            let text = if reading == Reading::Streamed && parts.status.is_success() {
                None
            } else {
                Some(
                    transport::read_all(&mut body)
                        .await
                        .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?,
                )
            };
            Ok::<_, String>((parts, text, body))
        };
        let (parts, text, rest) = tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| format!("{method} {path}: no answer within {:?}", self.inner.timeout))??;
        let request_id = parts
            .headers
            .get("x-github-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let streamed = text.is_none();
        Ok(Answer {
            response: ApiResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: text.unwrap_or_default(),
                request_id,
            },
            body: streamed.then_some(rest),
        })
    }
}

/// One request, as the client sends it.
struct Call<'a> {
    method: Method,
    path: &'a str,
    credential: Credential,
    body: Option<&'a serde_json::Value>,
    headers: &'a [(&'static str, String)],
    /// Whether a request that got a server error or no answer may be sent again (it did
    /// nothing, or doing it twice is harmless).
    repeat_unanswered: bool,
    reading: Reading,
}

impl<'a> Call<'a> {
    /// `method path` as `credential`, with no body nor extra headers, repeated when
    /// unanswered, its answer read whole.
    fn new(method: Method, path: &'a str, credential: Credential) -> Call<'a> {
        Call {
            method,
            path,
            credential,
            body: None,
            headers: &[],
            repeat_unanswered: true,
            reading: Reading::Whole,
        }
    }
}

/// How an answer's body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Whole, within the request timeout.
    Whole,
    /// A success's body is left to the caller (a download); any other answer is read whole.
    Streamed,
}

/// An answer, and with [`Reading::Streamed`] a success's body still to be read.
struct Answer {
    response: ApiResponse,
    body: Option<ResponseBody>,
}

/// A download under way: its body, read piece by piece.
pub struct Download {
    what: String,
    /// `content-length`, when the answer gave one.
    length: Option<u64>,
    request_id: Option<String>,
    body: ResponseBody,
    received: u64,
    read_timeout: Duration,
}

impl Download {
    /// The size the answer announced, if it did.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The next piece, or `None` once the whole file has arrived. A piece that does not
    /// come within the read timeout, or a broken connection, is an
    /// [`ApiError::Interrupted`] (transient).
    pub async fn chunk(&mut self) -> Result<Option<hyper::body::Bytes>, ApiError> {
        match transport::next_chunk_within(&mut self.body, self.read_timeout).await {
            Ok(Some(chunk)) => {
                self.received += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Ok(None) => Ok(None),
            Err(reason) => {
                tracing::warn!(what = %self.what, received = self.received, request_id = ?self.request_id, %reason, "a download broke off");
                Err(ApiError::Interrupted {
                    what: self.what.clone(),
                    received: self.received,
                    reason,
                    request_id: self.request_id.clone(),
                })
            }
        }
    }
}

/// Counts one attempt, and keeps the rate limit GitHub reported.
fn record_metrics(method: &Method, credential: &Credential, answer: Option<&Answer>) {
    let metrics = crate::metrics::global();
    let response = answer.map(|answer| &answer.response);
    metrics.github_request(method, response.map(|r| r.status));
    if let Some(response) = response {
        let (auth, installation) = match credential {
            Credential::App => ("app", None),
            Credential::Installation { id, .. } => ("installation", Some(*id)),
            Credential::Anonymous => ("anonymous", None),
            Credential::Personal => ("token", None),
        };
        metrics.github_rate_limit(&response.headers, auth, installation);
    }
}

/// `path` as logs and errors may show it: an App manifest code is a secret for the hour it
/// can be exchanged for the App's key, so it is left out.
fn path_for_logs(path: &str) -> std::borrow::Cow<'_, str> {
    match path
        .strip_prefix("/app-manifests/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((_, tail)) => format!("/app-manifests/<code>/{tail}").into(),
        None => path.into(),
    }
}

/// `owner/name` for a path under `/repos/owner/name/`.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/repos/")?;
    let mut parts = rest.splitn(3, '/');
    let owner = parts.next()?;
    let name = parts.next()?;
    let end = owner.len() + 1 + name.split(['?', '#']).next()?.len();
    Some(&rest[..end])
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_grouped_by_repository() {
        assert_eq!(repository_of("/repos/o/r/contents/x"), Some("o/r"));
        assert_eq!(
            path_for_logs("/app-manifests/s3cr3t-code/conversions"),
            "/app-manifests/<code>/conversions"
        );
        assert_eq!(path_for_logs("/repos/o/r/pulls"), "/repos/o/r/pulls");
        assert_eq!(repository_of("/repos/o/r"), Some("o/r"));
        assert_eq!(repository_of("/repos/o/r?x=1"), Some("o/r"));
        assert_eq!(repository_of("/app/hook/deliveries"), None);
    }

    #[tokio::test]
    async fn a_slow_token_request_holds_back_only_the_calls_that_need_that_token() {
        use super::super::token_scope::{Access, Permission};
        use axum::routing::{get, post};
        use std::sync::atomic::{AtomicBool, Ordering};

        let slow_asked = Arc::new(AtomicBool::new(false));
        let seen = slow_asked.clone();
        let github = axum::Router::new()
            .route(
                "/app/installations/1",
                get(|| async { axum::Json(serde_json::json!({"id": 1, "account": {"login": "o"}})) }),
            )
            .route(
                "/app/installations/1/access_tokens",
                post(move |body: String| {
                    let seen = seen.clone();
                    async move {
                        if body.contains("\"slow\"") {
                            // A token request waiting out a rate limit, for as long as it takes.
                            seen.store(true, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                        }
                        axum::Json(serde_json::json!({"token": "ghs_fast", "expires_at": "2999-01-01T00:00:00Z"}))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, github).await });
        let key =
            AppKey::from_pem(1, include_str!("../../tests/fixtures/app/test-app-key.pem")).unwrap();
        let api = GitHubApi::new(&url, Some(key), RetryPolicy::default()).unwrap();

        let slow = TokenScope::new("o/slow", Permission::Contents, Access::Write);
        let waiting = api.clone();
        let _slow_call = tokio::spawn(async move { waiting.installation_token(1, &slow).await });
        while !slow_asked.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fast = TokenScope::new("o/fast", Permission::Contents, Access::Write);
        let token = tokio::time::timeout(Duration::from_secs(10), api.installation_token(1, &fast))
            .await
            .expect("another repository's token is not held back")
            .unwrap();
        assert_eq!(token.expose(), "ghs_fast");
        // Another owner's repository is refused before GitHub is asked.
        let foreign = TokenScope::new("x/fast", Permission::Contents, Access::Write);
        assert!(matches!(
            api.installation_token(1, &foreign).await,
            Err(ApiError::ForeignRepository(_))
        ));
    }

    #[test]
    fn only_server_errors_and_rate_limits_are_transient() {
        let status = |status| ApiError::Status {
            what: "x".into(),
            status,
            message: "m".into(),
            request_id: Some("ABCD".into()),
        };
        assert!(status(502).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(404).is_transient());
        assert!(!status(422).is_transient());
        assert!(status(404).to_string().contains("GitHub request id ABCD"));
    }
}
