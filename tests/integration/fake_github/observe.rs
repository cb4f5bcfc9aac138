//! Observing and breaking the fake: the middleware that gives request ids and rate-limit
//! headers, answers with queued failures instead, and logs every request.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::answers::{ApiError, error, unix_now};
use super::auth::authorization;
use super::{FakeGitHub, Model, Shared, lock};

pub(super) const RATE_LIMIT: u64 = 5000;

/// One request the fake answered (or is answering).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Without the query.
    pub path: String,
    /// The query as sent (`state=open&head=acme:x`), empty without one.
    pub query: String,
    /// 0 while the answer is still being made.
    pub status: u16,
    /// When the request arrived.
    pub at: SystemTime,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// Whether it was conditional (`If-None-Match` or `If-Modified-Since`).
    pub conditional: bool,
    /// The body as sent.
    pub body: Vec<u8>,
    /// The `x-github-request-id` it was answered with.
    pub request_id: String,
}

impl RecordedRequest {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A failure to answer with instead of the normal answer; see [`FakeGitHub::fail_next`].
#[derive(Clone, Debug)]
pub enum Failure {
    /// The primary rate limit: 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`
    /// `reset_in` from now.
    RateLimited { reset_in: Duration },
    /// A secondary rate limit: 403 with `retry-after: retry_after` (seconds).
    SecondaryRateLimit { retry_after: u64 },
    /// This status (e.g. 502, or 409) with a GitHub-ish body naming the status.
    ServerError(u16),
    /// This status with this `message`, in GitHub's error shape (e.g. 409 `"refs/heads/main
    /// expected to be at …"`, as a Contents PUT racing another write gets).
    Status { status: u16, message: String },
    /// The normal answer, after this wait (a slow GitHub; a test kills the server meanwhile).
    Delay(Duration),
    /// The request is carried out, but the answer is this status instead (GitHub acting on a
    /// request and then failing, or an answer lost on the way).
    AnswerLost(u16),
}

struct QueuedFailure {
    method: String,
    path_prefix: String,
    failure: Failure,
}

pub(super) struct ObserveState {
    pub(super) requests: Vec<RecordedRequest>,
    unauthorized: usize,
    failures: VecDeque<QueuedFailure>,
    rate_remaining: u64,
    rate_reset: u64,
}

impl Default for ObserveState {
    fn default() -> Self {
        ObserveState {
            requests: Vec::new(),
            unauthorized: 0,
            failures: VecDeque::new(),
            rate_remaining: RATE_LIMIT,
            rate_reset: unix_now() + 3600,
        }
    }
}

impl ObserveState {
    /// Spends one request of the primary rate limit and gives its headers.
    pub(super) fn spend_rate_limit(&mut self) -> [(&'static str, HeaderValue); 5] {
        self.renew_rate_limit();
        self.rate_remaining = self.rate_remaining.saturating_sub(1);
        self.rate_limit_headers()
    }

    /// The rate-limit headers, spending nothing (as on a 304).
    pub(super) fn rate_limit_headers(&mut self) -> [(&'static str, HeaderValue); 5] {
        self.renew_rate_limit();
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

    fn renew_rate_limit(&mut self) {
        let now = unix_now();
        if now >= self.rate_reset {
            self.rate_remaining = RATE_LIMIT;
            self.rate_reset = now + 3600;
        }
    }
}

impl FakeGitHub {
    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.model().observe.requests.clone()
    }

    /// The number of 401 answers given.
    pub fn unauthorized_responses(&self) -> usize {
        self.model().observe.unauthorized
    }

    /// Answers the next request whose method is `method` and whose path starts with
    /// `path_prefix` with `failure` instead. Queued failures are used in order.
    pub fn fail_next(&self, method: &str, path_prefix: &str, failure: Failure) {
        self.model().observe.failures.push_back(QueuedFailure {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            failure,
        });
    }
}

pub(super) async fn observe(State(model): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let conditional = request.headers().contains_key(header::IF_NONE_MATCH)
        || request.headers().contains_key(header::IF_MODIFIED_SINCE);
    let authorization_header = authorization(request.headers()).map(str::to_owned);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let request = Request::from_parts(parts, Body::from(body.clone()));
    let (index, request_id, failure) = {
        let mut model = lock(&model);
        let index = model.observe.requests.len();
        let request_id = format!(
            "{:04X}:{:04X}:{:X}:{:X}:{:08X}",
            rand::random::<u16>(),
            rand::random::<u16>(),
            0x10_0000 + index,
            rand::random::<u32>(),
            unix_now() as u32,
        );
        model.observe.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query,
            status: 0,
            at: SystemTime::now(),
            authorization: authorization_header,
            conditional,
            body: body.to_vec(),
            request_id: request_id.clone(),
        });
        let failures = &mut model.observe.failures;
        let position = failures.iter().position(|queued| {
            queued.method.eq_ignore_ascii_case(&method) && path.starts_with(&queued.path_prefix)
        });
        let failure = position.and_then(|i| failures.remove(i));
        (index, request_id, failure.map(|queued| queued.failure))
    };
    let mut response = match &failure {
        Some(Failure::Delay(wait)) => {
            tokio::time::sleep(*wait).await;
            next.run(request).await
        }
        Some(Failure::AnswerLost(status)) => {
            let _carried_out = next.run(request).await;
            failure_response(&Failure::ServerError(*status), &request_id, &model)
        }
        Some(failure) => failure_response(failure, &request_id, &model),
        None => next.run(request).await,
    };
    let mut model = lock(&model);
    let status = response.status().as_u16();
    model.observe.requests[index].status = status;
    if status == 401 {
        model.observe.unauthorized += 1;
    }
    let headers = response.headers_mut();
    let failed = failure.is_some() && !matches!(failure, Some(Failure::Delay(_)));
    if !failed && !path.starts_with("/storage/") {
        // A conditional request answered 304 does not count against the rate limit.
        let rate_limit = if status == 304 {
            model.observe.rate_limit_headers()
        } else {
            model.observe.spend_rate_limit()
        };
        for (name, value) in rate_limit {
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
                documentation_url: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                ..error(
                    StatusCode::FORBIDDEN,
                    "API rate limit exceeded for installation ID 1.",
                )
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
                documentation_url: "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                ..error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID {request_id}."
                    ),
                )
            }
            .into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, (*retry_after).into());
            for (name, value) in lock(model).observe.spend_rate_limit() {
                headers.insert(name, value);
            }
            response
        }
        Failure::ServerError(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
            error(status, status.canonical_reason().unwrap_or("Server Error")).into_response()
        }
        Failure::Status { status, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            error(status, message.clone()).into_response()
        }
        Failure::Delay(_) | Failure::AnswerLost(_) => {
            unreachable!("carried out, then answered")
        }
    }
}
