//! Webhook deliveries: kept, listed newest first with a cursor, and (re)delivered for real to
//! the configured target, as GitHub does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::answers::{Answer, ApiError, error, not_found, rfc3339};
use super::auth::app_auth;
use super::{FakeGitHub, Model, Shared, lock};

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

pub(super) struct HookState {
    target: Option<WebhookTarget>,
    /// Oldest first.
    deliveries: Vec<DeliveryRecord>,
    next_delivery_id: u64,
    redelivery_attempts: Vec<String>,
}

impl Default for HookState {
    fn default() -> Self {
        HookState {
            target: None,
            deliveries: Vec::new(),
            next_delivery_id: 90_000_000_000,
            redelivery_attempts: Vec::new(),
        }
    }
}

impl HookState {
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
}

fn delivery_status(status_code: u16) -> String {
    match status_code {
        0 => "failed to connect to host".to_owned(),
        200..=299 => "OK".to_owned(),
        code => format!("Invalid HTTP Response: {code}"),
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/app/hook/deliveries", get(list_deliveries))
        .route("/app/hook/deliveries/{id}", get(get_delivery))
        .route("/app/hook/deliveries/{id}/attempts", post(redeliver))
}

impl FakeGitHub {
    /// Where the App's webhook deliveries go: `http://127.0.0.1:{port}{path}`, signed with
    /// `secret`.
    pub fn set_webhook_target(&self, port: u16, path: &str, secret: &str) {
        self.model().hooks.target = Some(WebhookTarget {
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
            .hooks
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
            .hooks
            .deliveries
            .iter()
            .map(DeliveryRecord::public)
            .collect()
    }

    /// The guids of the redeliveries asked for through the API, in order. They are sent
    /// asynchronously; see [`Self::wait_for_redeliveries`].
    pub fn redelivery_attempts(&self) -> Vec<String> {
        self.model().hooks.redelivery_attempts.clone()
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
        .hooks
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

/// Delivery `id`, or 404.
fn delivery<'a>(model: &'a Model, id: &str) -> Result<&'a DeliveryRecord, ApiError> {
    model
        .hooks
        .deliveries
        .iter()
        .find(|d| id.parse() == Ok(d.id))
        .ok_or_else(not_found)
}

async fn get_delivery(
    State(model): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let model = lock(&model);
    app_auth(&model, &headers)?;
    let record = delivery(&model, &id)?;
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
        let record = delivery(&model, &id)?;
        let found = (
            record.guid.clone(),
            record.event.clone(),
            record.action.clone(),
            record.body.clone(),
        );
        model.hooks.redelivery_attempts.push(found.0.clone());
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
            model.hooks.target.clone(),
            model.app.apps.keys().min().copied(),
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
    lock(model).hooks.record_delivery(
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
