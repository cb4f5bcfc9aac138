//! The App, its installations and their access tokens.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};

use super::answers::{Answer, created, not_found, ok, rfc3339, unprocessable, user_json};
use super::auth::app_auth;
use super::scope::{TokenScope, requested_scope};
use super::{FakeGitHub, Shared, lock};

/// The App's owner, as `/app` reports it.
pub(super) const APP_OWNER: &str = "fake-app-owner";

pub(super) struct App {
    pub(super) id: u64,
    pub(super) slug: String,
    pub(super) key: DecodingKey,
}

pub(super) struct IssuedToken {
    pub(super) installation_id: u64,
    pub(super) app_id: u64,
    pub(super) expires_at: SystemTime,
    /// What it was made for.
    pub(super) scope: TokenScope,
}

pub(super) struct AppState {
    pub(super) apps: HashMap<u64, App>,
    /// installation id -> account login
    pub(super) installations: HashMap<u64, String>,
    token_lifetime: Duration,
    pub(super) tokens: HashMap<String, IssuedToken>,
    tokens_issued: usize,
    /// The scope of every token issued, in order.
    scopes_issued: Vec<TokenScope>,
    /// Tokens accepted on the public routes, as personal tokens would be.
    pub(super) personal_tokens: HashSet<String>,
}

impl Default for AppState {
    fn default() -> Self {
        AppState {
            apps: HashMap::new(),
            installations: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            tokens: HashMap::new(),
            tokens_issued: 0,
            scopes_issued: Vec::new(),
            personal_tokens: HashSet::new(),
        }
    }
}

impl AppState {
    /// `<slug>[bot]`, the login of what App `app_id` writes.
    pub(super) fn bot_login(&self, app_id: u64) -> String {
        let slug = self
            .apps
            .get(&app_id)
            .map_or("unknown-app", |app| &app.slug);
        format!("{slug}[bot]")
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/app", get(get_app))
        .route("/app/installations/{id}", get(get_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_access_token),
        )
        .route(
            "/repos/{owner}/{repo}/installation",
            get(repository_installation),
        )
}

impl FakeGitHub {
    /// Registers App `app_id` (its JWTs must verify with `public_key_pem`), whose bot is
    /// `<slug>[bot]`.
    pub fn register_app(&self, app_id: u64, public_key_pem: &str, slug: &str) {
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("the App's public key is not an RSA PEM: {e}"));
        self.model().app.apps.insert(
            app_id,
            App {
                id: app_id,
                slug: slug.to_owned(),
                key,
            },
        );
    }

    /// Installs the App on `account`: its tokens reach the repositories `account/*`, and
    /// `GET /repos/{account}/{name}/installation` finds it.
    pub fn add_installation(&self, id: u64, account: &str) {
        self.model()
            .app
            .installations
            .insert(id, account.to_owned());
    }

    /// How long installation tokens issued from now on live (GitHub: one hour).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.model().app.token_lifetime = lifetime;
    }

    /// The number of installation tokens issued.
    pub fn tokens_issued(&self) -> usize {
        self.model().app.tokens_issued
    }

    /// What each installation token issued was made for, in order.
    pub fn token_scopes(&self) -> Vec<TokenScope> {
        self.model().app.scopes_issued.clone()
    }

    /// The tokens issued for repository `name` (without its owner) alone, to try them
    /// elsewhere.
    pub fn tokens_scoped_to(&self, name: &str) -> Vec<String> {
        let only = Some(vec![name.to_lowercase()]);
        self.model()
            .app
            .tokens
            .iter()
            .filter(|(_, issued)| issued.scope.repositories == only)
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Accepts `token` on the public release routes, as a personal access token.
    pub fn accept_personal_token(&self, token: &str) {
        self.model().app.personal_tokens.insert(token.to_owned());
    }
}

fn app_permissions() -> Value {
    json!(super::scope::app_permissions())
}

async fn get_app(State(model): State<Shared>, headers: HeaderMap) -> Answer {
    let model = lock(&model);
    let app_id = app_auth(&model, &headers)?;
    let app = &model.app.apps[&app_id];
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
        "installations_count": model.app.installations.len(),
    }))
}

async fn create_access_token(
    State(model): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut model = lock(&model);
    let app_id = app_auth(&model, &headers)?;
    let scope = requested_scope(&body)?;
    let state = &mut model.app;
    let Some(installation_id) = id
        .parse()
        .ok()
        .filter(|id| state.installations.contains_key(id))
    else {
        return Err(not_found());
    };
    // Only repositories the installation has (its account's) can be named.
    let account = state.installations[&installation_id].clone();
    if let Some(names) = &scope.repositories
        && let Some(missing) = names
            .iter()
            .find(|name| model.repo(&account, name).is_err())
    {
        eprintln!(
            "fake GitHub: a token was asked for {account}/{missing}, which installation {installation_id} does not have: 422"
        );
        return Err(unprocessable(
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        ));
    }
    let state = &mut model.app;
    state.tokens_issued += 1;
    state.scopes_issued.push(scope.clone());
    let token = format!(
        "ghs_{:04}{:032x}",
        state.tokens_issued,
        rand::random::<u128>()
    );
    let expires_at = SystemTime::now() + state.token_lifetime;
    state.tokens.insert(
        token.clone(),
        IssuedToken {
            installation_id,
            app_id,
            expires_at,
            scope: scope.clone(),
        },
    );
    let permissions = match &scope.permissions {
        Some(asked) => {
            let mut permissions = asked.clone();
            permissions.insert("metadata".into(), "read".into());
            json!(permissions)
        }
        None => app_permissions(),
    };
    created(json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "permissions": permissions,
        "repository_selection": if scope.repositories.is_some() { "selected" } else { "all" },
    }))
}

/// The installation of the App on the account that owns the repository (all its
/// repositories are selected).
async fn repository_installation(
    State(model): State<Shared>,
    Path((owner, _repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    let app_id = app_auth(&model, &headers)?;
    let mut installations: Vec<(&u64, &String)> = model.app.installations.iter().collect();
    installations.sort();
    let Some((&id, account)) = installations
        .into_iter()
        .find(|(_, account)| account.eq_ignore_ascii_case(&owner))
    else {
        return Err(not_found());
    };
    ok(installation_json(&model, app_id, id, account))
}

/// An installation of App `app_id` as `GET /app/installations/{id}` gives it.
fn installation_json(model: &super::Model, app_id: u64, id: u64, account: &str) -> Value {
    let slug = &model.app.apps[&app_id].slug;
    let api = &model.base_url;
    json!({
        "id": id,
        "account": user_json(account, "User"),
        "access_tokens_url": format!("{api}/app/installations/{id}/access_tokens"),
        "repositories_url": format!("{api}/installation/repositories"),
        "html_url": format!("https://github.com/settings/installations/{id}"),
        "app_id": app_id,
        "app_slug": slug,
        "target_id": super::answers::user_id(account),
        "target_type": "User",
        "permissions": app_permissions(),
        "events": ["issue_comment", "release"],
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "single_file_name": null,
        "repository_selection": "all",
        "suspended_at": null,
    })
}

async fn get_installation(
    State(model): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    let app_id = app_auth(&model, &headers)?;
    let Some((id, account)) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| Some((id, model.app.installations.get(&id)?)))
    else {
        return Err(not_found());
    };
    ok(installation_json(&model, app_id, id, account))
}
