//! The App manifest flow's last step: `POST /app-manifests/{code}/conversions` turns the code
//! GitHub gave the setup page into the new App's credentials, once, within an hour.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use jsonwebtoken::DecodingKey;
use serde_json::json;

use super::answers::{Answer, created, not_found};
use super::app::{APP_OWNER, App};
use super::{FakeGitHub, Shared, lock};

/// A code the setup flow may exchange.
pub(super) struct ManifestCode {
    app_id: u64,
    slug: String,
    private_pem: String,
    public_pem: String,
    /// Exchanged or expired: refused from now on.
    spent: bool,
}

#[derive(Default)]
pub(super) struct ManifestState {
    codes: HashMap<String, ManifestCode>,
    /// The webhook secrets handed out, by App id.
    pub(super) webhook_secrets: HashMap<u64, String>,
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/app-manifests/{code}/conversions", post(convert))
}

impl FakeGitHub {
    /// Makes `code` exchangeable for a new App `app_id` called `slug`, whose key pair is
    /// the given PEMs (the private one is handed out, the public one checks its JWTs).
    pub fn add_manifest_code(
        &self,
        code: &str,
        app_id: u64,
        slug: &str,
        private_pem: &str,
        public_pem: &str,
    ) {
        self.model().manifests.codes.insert(
            code.to_owned(),
            ManifestCode {
                app_id,
                slug: slug.to_owned(),
                private_pem: private_pem.to_owned(),
                public_pem: public_pem.to_owned(),
                spent: false,
            },
        );
    }

    /// The code is older than an hour: GitHub refuses it.
    pub fn expire_manifest_code(&self, code: &str) {
        if let Some(entry) = self.model().manifests.codes.get_mut(code) {
            entry.spent = true;
        }
    }

    /// The webhook secret handed out for App `app_id`, once its code was exchanged.
    pub fn manifest_webhook_secret(&self, app_id: u64) -> Option<String> {
        self.model().manifests.webhook_secrets.get(&app_id).cloned()
    }
}

async fn convert(State(model): State<Shared>, Path(code): Path<String>) -> Answer {
    let mut model = lock(&model);
    let Some(entry) = model.manifests.codes.get_mut(&code).filter(|c| !c.spent) else {
        return Err(not_found());
    };
    entry.spent = true;
    let (app_id, slug, private_pem, public_pem) = (
        entry.app_id,
        entry.slug.clone(),
        entry.private_pem.clone(),
        entry.public_pem.clone(),
    );
    let key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("an RSA public key PEM");
    model.app.apps.insert(
        app_id,
        App {
            id: app_id,
            slug: slug.clone(),
            key,
        },
    );
    let webhook_secret = format!("whsec-{app_id}-{:016x}", rand::random::<u64>());
    model
        .manifests
        .webhook_secrets
        .insert(app_id, webhook_secret.clone());
    created(json!({
        "id": app_id,
        "slug": slug,
        "name": slug,
        "node_id": format!("A_{app_id}"),
        "owner": {"login": APP_OWNER, "type": "User"},
        "html_url": format!("https://github.com/apps/{slug}"),
        "pem": private_pem,
        "webhook_secret": webhook_secret,
        "client_id": format!("Iv1.{app_id:016x}"),
        "client_secret": format!("{:040x}", rand::random::<u128>()),
        "permissions": {"contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read", "actions": "read"},
        "events": ["issue_comment", "release", "repository_dispatch", "workflow_dispatch", "workflow_run"],
    }))
}
