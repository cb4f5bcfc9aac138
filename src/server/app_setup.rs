//! Creating the GitHub App from `app-manifest.json` (GitHub's App manifest flow), for a
//! server that starts without App credentials.
//!
//! `GET /setup?token=…` shows a button that POSTs the manifest, with this server's webhook
//! and redirect URLs filled in, to GitHub. GitHub creates the App and redirects to
//! `GET /setup/callback?code=…&state=…`, which exchanges the code for the App's id, key,
//! webhook secret and client credentials, keeps them in `DATA_DIR` (mode 0600), starts
//! acting as the App at once, and links to the App's installation page. The setup page
//! needs the one-time token the server logs at start; the callback needs an OAuth `state`
//! that the setup page made for that one visit (a different value, so the token never
//! travels through GitHub and the browser's history, and a `state` is good only once). The
//! pages are gone once the App is configured, and only one callback at a time may complete
//! the setup: two racing callbacks never create or store two Apps. With PostgreSQL, where
//! replicas share the state and take the App's credentials from the environment, the pages
//! only say so.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::activation::Activation;
use super::app_credentials_file::{self, StoredApp};
use crate::database::Backend;
use crate::github::api::GitHubApi;
use crate::github::app_jwt::AppKey;
use crate::github::app_manifests::{self, Conversion};
use crate::github::rate_limit::RetryPolicy;
use crate::secret::{Secret, same_secret};

/// The manifest, as committed; its URLs are filled in per server.
pub const MANIFEST_TEMPLATE: &str = include_str!("../../app-manifest.json");
/// Where GitHub sends deliveries.
pub const WEBHOOK_PATH: &str = "/api/github/webhooks";

/// The setup flow's state.
pub struct SetupFlow {
    pub token: Secret,
    pub public_url: Option<String>,
    pub github_url: String,
    pub organization: Option<String>,
    pub github_api_url: String,
    pub data_dir: PathBuf,
    pub activation: Arc<Activation>,
    /// Set once the App is configured: the pages are gone from then on.
    done: AtomicBool,
    /// Set while a callback is completing the setup: a second one is turned away.
    completing: AtomicBool,
    /// The OAuth `state` values handed out by the setup page and not used yet.
    states: Mutex<Vec<IssuedState>>,
}

/// A `state` the setup page put in the form it sent to GitHub.
pub struct IssuedState {
    value: Secret,
    issued: Instant,
}

/// GitHub's manifest codes last an hour: a `state` older than that is of no use.
const STATE_LIFETIME: Duration = Duration::from_secs(3600);
/// States kept at once; the oldest goes first (each setup page view makes one).
const MAX_STATES: usize = 16;

impl SetupFlow {
    /// A flow that still needs its App; `token` opens the setup page.
    pub fn new(
        token: Secret,
        public_url: Option<String>,
        github_url: String,
        organization: Option<String>,
        github_api_url: String,
        data_dir: PathBuf,
        activation: Arc<Activation>,
    ) -> SetupFlow {
        SetupFlow {
            token,
            public_url,
            github_url,
            organization,
            github_api_url,
            data_dir,
            activation,
            done: AtomicBool::new(false),
            completing: AtomicBool::new(false),
            states: Mutex::new(Vec::new()),
        }
    }

    /// A new `state` for one trip through GitHub.
    fn issue_state(&self) -> String {
        let value = hex::encode(rand::random::<[u8; 16]>());
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|s| s.issued.elapsed() < STATE_LIFETIME);
        if states.len() >= MAX_STATES {
            states.remove(0);
        }
        states.push(IssuedState {
            value: Secret::new(value.clone()),
            issued: Instant::now(),
        });
        value
    }

    /// Whether `given` is a `state` this flow handed out within the hour; a match is used
    /// up.
    fn take_state(&self, given: &str) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|s| s.issued.elapsed() < STATE_LIFETIME);
        match states
            .iter()
            .position(|s| same_secret(given, s.value.expose()))
        {
            Some(at) => {
                states.remove(at);
                true
            }
            None => false,
        }
    }
}

/// The manifest with this server's URLs.
pub fn manifest_for(public_url: &str) -> serde_json::Value {
    let mut manifest: serde_json::Value =
        serde_json::from_str(MANIFEST_TEMPLATE).expect("app-manifest.json is valid JSON");
    manifest["url"] = serde_json::json!(public_url);
    manifest["hook_attributes"]["url"] = serde_json::json!(format!("{public_url}{WEBHOOK_PATH}"));
    manifest["redirect_url"] = serde_json::json!(format!("{public_url}/setup/callback"));
    manifest
}

/// Text for HTML, escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         button{{font-size:1.1rem;padding:.6rem 1.2rem}}code{{background:#f3f3f3;padding:0 .2rem}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    )
}

/// Why a setup page is not shown.
enum Refusal {
    /// The App is configured (or the server started with credentials): no setup pages.
    Gone,
    /// The one-time token is missing or wrong.
    NeedsToken,
    /// The callback's `state` was not made by this server's setup page, or was used.
    UnknownState,
    /// Another callback is completing the setup right now.
    Completing,
    /// The state is in PostgreSQL, which replicas share: the App's credentials come from
    /// the environment, the same on every replica, never from one replica's `DATA_DIR`.
    SingleMachineOnly,
}

/// What `/setup` says on a server whose state is in PostgreSQL.
const SINGLE_MACHINE_ONLY: &str = "<p>This server keeps its state in PostgreSQL, which replicas share, so it takes the App's id, private key and webhook secret from the environment (<code>APP_ID</code>, <code>PRIVATE_KEY</code> or <code>PRIVATE_KEY_PATH</code>, <code>WEBHOOK_SECRET</code>), the same on every replica: the setup pages, which keep them in one machine's data directory, are for single-machine deployments.</p>\
<p>To create a new App, run the server once on one machine with its default SQLite database and create the App at its <code>/setup</code>, then move the credentials it kept in <code>DATA_DIR/github-app.json</code> into those variables on every replica. The README's section <b>Scale out</b> shows how.</p>";

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Gone => (StatusCode::NOT_FOUND, "not found\n").into_response(),
            Refusal::NeedsToken => setup_page_response(
                StatusCode::FORBIDDEN,
                page(
                    "Setup needs its token",
                    "<p>Open this page with the link the server printed in its log at start (<code>/setup?token=…</code>).</p>",
                ),
            ),
            Refusal::UnknownState => setup_page_response(
                StatusCode::FORBIDDEN,
                page(
                    "Setup link not recognised",
                    "<p>This answer from GitHub does not come from a setup page this server showed, or it was used already. Start again from the setup page (the link the server printed in its log at start).</p>",
                ),
            ),
            Refusal::Completing => setup_page_response(
                StatusCode::CONFLICT,
                page(
                    "Setup in progress",
                    "<p>Another answer from GitHub is completing the setup right now. Open the server's status page in a moment to see the App it acts as.</p>",
                ),
            ),
            Refusal::SingleMachineOnly => setup_page_response(
                StatusCode::NOT_FOUND,
                page(
                    "The App setup is for single-machine deployments",
                    SINGLE_MACHINE_ONLY,
                ),
            ),
        }
    }
}

/// The flow, while it still needs its App.
fn open_flow(state: &AppState) -> Result<&SetupFlow, Refusal> {
    if state.database.backend() == Backend::Postgres {
        return Err(Refusal::SingleMachineOnly);
    }
    match state.setup.as_deref() {
        Some(flow) if !flow.done.load(Ordering::SeqCst) => Ok(flow),
        _ => Err(Refusal::Gone),
    }
}

/// The open flow, when `token` is its one-time token.
fn flow_for_token<'a>(state: &'a AppState, token: Option<&str>) -> Result<&'a SetupFlow, Refusal> {
    let flow = open_flow(state)?;
    if !same_secret(token.unwrap_or_default(), flow.token.expose()) {
        return Err(Refusal::NeedsToken);
    }
    Ok(flow)
}

/// Held by the one callback completing the setup; lets another try if it fails.
struct Completing<'a>(&'a SetupFlow);

impl<'a> Completing<'a> {
    fn claim(flow: &'a SetupFlow) -> Result<Self, Refusal> {
        flow.completing
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| Completing(flow))
            .map_err(|_| Refusal::Completing)
    }
}

impl Drop for Completing<'_> {
    fn drop(&mut self) {
        self.0.completing.store(false, Ordering::SeqCst);
    }
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

/// `GET /setup`: the button that creates the App on GitHub.
pub async fn setup_page(
    State(state): State<AppState>,
    Query(query): Query<SetupQuery>,
) -> Response {
    let flow = match flow_for_token(&state, query.token.as_deref()) {
        Ok(flow) => flow,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(public_url) = &flow.public_url else {
        return setup_page_response(
            StatusCode::OK,
            page(
                "Create the GitHub App",
                "<p>Set <code>PUBLIC_URL</code> to the address GitHub reaches this server at (for example <code>https://alloy-sysext.fly.dev</code>) and restart: the App's webhook URL is made from it.</p>",
            ),
        );
    };
    let manifest = manifest_for(public_url);
    let action = match &flow.organization {
        Some(org) => format!("{}/organizations/{org}/settings/apps/new", flow.github_url),
        None => format!("{}/settings/apps/new", flow.github_url),
    };
    let body = format!(
        "<p>This creates the private GitHub App <b>{name}</b> on {owner}, with its webhook at <code>{hook}</code>. \
         GitHub asks you to confirm and then sends you back here; the server keeps the App's credentials in its data directory and starts acting as the App at once.</p>\
         <form action=\"{action}?state={state}\" method=\"post\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <button type=\"submit\">Create the GitHub App</button></form>\
         <p>Permissions: {permissions}. Events: {events}.</p>",
        name = escape(manifest["name"].as_str().unwrap_or_default()),
        owner = escape(
            &flow
                .organization
                .as_ref()
                .map_or("your account".to_owned(), |o| format!(
                    "the organization {o}"
                ))
        ),
        hook = escape(
            manifest["hook_attributes"]["url"]
                .as_str()
                .unwrap_or_default()
        ),
        action = escape(&action),
        state = escape(&flow.issue_state()),
        manifest = escape(&manifest.to_string()),
        permissions = escape(
            &manifest["default_permissions"]
                .as_object()
                .map(|p| p
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        events = escape(
            &manifest["default_events"]
                .as_array()
                .map(|e| e
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
    );
    setup_page_response(StatusCode::OK, page("Create the GitHub App", &body))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /setup/callback`: GitHub's redirect with the code to exchange.
pub async fn setup_callback(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let flow = match open_flow(&state) {
        Ok(flow) => flow,
        Err(refusal) => return refusal.into_response(),
    };
    if !flow.take_state(query.state.as_deref().unwrap_or_default()) {
        return Refusal::UnknownState.into_response();
    }
    // From here on one callback at a time: the first to claim the flow exchanges its code;
    // another arriving meanwhile is turned away rather than creating a second App.
    let _completing = match Completing::claim(flow) {
        Ok(claim) => claim,
        Err(refusal) => return refusal.into_response(),
    };
    if flow.done.load(Ordering::SeqCst) {
        return Refusal::Gone.into_response();
    }
    let Some(code) = query.code.filter(|c| {
        !c.is_empty()
            && c.len() <= 100
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) else {
        return setup_page_response(
            StatusCode::BAD_REQUEST,
            page(
                "Setup failed",
                "<p>GitHub's answer had no usable code. Start again from the setup page.</p>",
            ),
        );
    };
    let api = match GitHubApi::new(&flow.github_api_url, None, RetryPolicy::default()) {
        Ok(api) => api,
        Err(error) => return failure(&error.to_string(), Created::No),
    };
    // Neither the page nor the log shows an error of the exchange, whose text may name the
    // request's path, and so the code.
    let app: StoredApp = match app_manifests::convert(&api, &code).await {
        Ok(Conversion::Created(Ok(app))) => app,
        Ok(Conversion::Created(Err(error))) => return failure(&error.to_string(), Created::Yes),
        Ok(Conversion::CodeRefused { status }) => {
            tracing::warn!(status, "the App manifest code was refused");
            return setup_page_response(
                StatusCode::BAD_REQUEST,
                page(
                    "Setup failed",
                    "<p>GitHub refused the code: it has expired (codes last one hour) or was used already. Nothing was stored. Start again from the setup page (the link in the server's log).</p>",
                ),
            );
        }
        Ok(Conversion::Failed { status, message }) => {
            return failure(
                &format!("GitHub answered {status} to the code's exchange: {message}"),
                Created::Maybe,
            );
        }
        Err(error) => {
            let what = match error.status() {
                Some(status) => format!("GitHub answered {status} to the code's exchange"),
                None => "GitHub did not answer the code's exchange".to_owned(),
            };
            return failure(&what, Created::Maybe);
        }
    };
    let key = match AppKey::from_pem(app.id, &app.pem) {
        Ok(key) => key,
        Err(error) => return failure(&error.to_string(), Created::Yes),
    };
    if let Err(error) = app_credentials_file::save(&flow.data_dir, &app) {
        return failure(&error.to_string(), Created::Yes);
    }
    // From here the App is this server's: the setup is over whatever happens next, so that
    // another callback can never make a second App and replace the stored one.
    flow.done.store(true, Ordering::SeqCst);
    let webhook_secret = app.webhook_secret();
    // An empty secret would let anyone sign.
    if !webhook_secret.expose().is_empty() {
        state
            .credentials
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .webhook_secrets
            .push(webhook_secret);
    }
    if let Err(error) = flow.activation.activate(key) {
        tracing::error!(app_id = app.id, %error, "the GitHub App was created and its credentials stored, but the server cannot act as it");
        return setup_page_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            page(
                "The App was created, but the server cannot act as it yet",
                &format!(
                    "<p>The App <b>{slug}</b> (id {id}) was created and its credentials are kept in the server's data directory, but the server could not start acting as it: {error}</p>\
                     <p>Fix that and restart the server: it uses the stored App on its next start.</p>",
                    slug = escape(&app.slug),
                    id = app.id,
                    error = escape(&error.to_string()),
                ),
            ),
        );
    }
    tracing::info!(app_id = app.id, slug = %app.slug, "the GitHub App was created and its credentials stored");
    let install = if app.html_url.is_empty() {
        format!("{}/apps/{}/installations/new", flow.github_url, app.slug)
    } else {
        format!("{}/installations/new", app.html_url)
    };
    setup_page_response(
        StatusCode::OK,
        page(
            "The GitHub App is ready",
            &format!(
                "<p>The App <b>{slug}</b> (id {id}) was created; its credentials are kept in the server's data directory and the server is acting as it now.</p>\
                 <p><a href=\"{install}\">Install it</a> on the build repository and on the repositories whose Butane files it should update.</p>",
                slug = escape(&app.slug),
                id = app.id,
                install = escape(&install),
            ),
        ),
    )
}

/// Whether GitHub may hold a new App when the setup fails.
#[derive(Clone, Copy)]
enum Created {
    /// Nothing was asked of GitHub.
    No,
    /// The exchange failed on the way: GitHub may have made the App.
    Maybe,
    /// GitHub made the App, but the server could not keep it.
    Yes,
}

fn failure(reason: &str, created: Created) -> Response {
    tracing::error!(reason, "the App setup failed");
    let next = match created {
        Created::No => "Nothing was stored. Start again from the setup page.",
        Created::Maybe => {
            "Nothing was stored. GitHub may have created the App all the same: look for it in GitHub's settings (Developer settings, GitHub Apps) and delete it, then start again from the setup page."
        }
        Created::Yes => {
            "GitHub created the App, but nothing was stored here: delete it in GitHub's settings (Developer settings, GitHub Apps), then start again from the setup page."
        }
    };
    setup_page_response(
        StatusCode::BAD_GATEWAY,
        page(
            "Setup failed",
            &format!("<p>{}</p><p>{next}</p>", escape(reason)),
        ),
    )
}

/// A setup page: never cached, and its address (which may carry the setup token) never
/// sent on as a referrer.
fn setup_page_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        axum::http::header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_gets_this_servers_urls() {
        let manifest = manifest_for("https://alloy.example.dev");
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://alloy.example.dev/api/github/webhooks"
        );
        assert_eq!(
            manifest["redirect_url"],
            "https://alloy.example.dev/setup/callback"
        );
        assert_eq!(manifest["public"], false);
    }

    /// The manifest asks for exactly what the server uses: every event it acts on is
    /// subscribed, and every permission is needed by a call the code makes.
    #[test]
    fn the_manifest_subscribes_to_every_handled_event_and_uses_every_permission() {
        use crate::worker::routing::SUBSCRIBED_EVENTS;
        let manifest: serde_json::Value = serde_json::from_str(MANIFEST_TEMPLATE).unwrap();
        let mut events: Vec<&str> = manifest["default_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        events.sort();
        let mut handled = SUBSCRIBED_EVENTS.to_vec();
        handled.sort();
        assert_eq!(events, handled);

        // What each permission allows, and the code that relies on it.
        let sources = [
            include_str!("../github/contents.rs"),
            include_str!("../github/branches.rs"),
            include_str!("../github/releases.rs"),
            include_str!("../github/pulls.rs"),
            include_str!("../github/issues.rs"),
            include_str!("../github/reactions.rs"),
            include_str!("../github/collaborators.rs"),
            include_str!("../worker/events/mod.rs"),
        ]
        .concat();
        let evidence: &[(&str, &str, &[&str])] = &[
            (
                "contents",
                "write",
                &["/contents/", "/git/refs", "/releases"],
            ),
            ("pull_requests", "write", &["/pulls"]),
            (
                "issues",
                "write",
                &[
                    "/issues/{number}/comments",
                    "/issues?state=open",
                    "/reactions",
                ],
            ),
            ("metadata", "read", &["/collaborators/"]),
            ("actions", "read", &["\"workflow_run\""]),
        ];
        let permissions = manifest["default_permissions"].as_object().unwrap();
        assert_eq!(permissions.len(), evidence.len(), "{permissions:?}");
        for (permission, level, uses) in evidence {
            assert_eq!(permissions[*permission], *level, "{permission}");
            for used in *uses {
                assert!(sources.contains(used), "{permission}: no call uses {used}");
            }
        }
        assert_eq!(manifest["public"], false);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
