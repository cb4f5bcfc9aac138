//! The server's metrics, served at `GET /metrics` in the Prometheus (OpenMetrics) text
//! format: deliveries, jobs, step durations, GitHub requests and rate limit, bytes built and
//! uploaded, files removed from storage.
//!
//! One process-wide [`Metrics`] ([`global`]): the GitHub client, the worker and the webhook
//! route all count into it, and none of their constructors has to carry it. Tests make
//! their own with [`Metrics::new`].

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::database::job_steps::Step;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the step duration buckets, in seconds: from a quick GitHub call to a
/// long build.
const STEP_SECONDS_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// The GitHub webhook events counted by name; any other is counted as `other`, so a
/// sender without the secret cannot make up label values.
const KNOWN_EVENTS: &[&str] = &[
    "check_run",
    "check_suite",
    "create",
    "delete",
    "github_app_authorization",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issues",
    "label",
    "meta",
    "ping",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "release",
    "repository",
    "repository_dispatch",
    "status",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

/// A webhook delivery at intake or in the worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The `X-GitHub-Event`, or `other`.
    pub event: &'static str,
    /// `received`, `stored`, `duplicate`, `refused`, `store_failed` at intake;
    /// `processed`, `ignored`, `failed` in the worker.
    pub outcome: &'static str,
}

/// How one job run, consumer update or upstream check ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Jobs: `succeeded`, `failed` or `retrying`. Consumer updates: `ok`, `failed` or
    /// `retrying` (failed transiently, tried again). Upstream checks: `ok` or `failed`.
    pub outcome: &'static str,
}

/// A refused `/build` or `/rebuild`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `permission`, `queue_limit` or `malformed`.
    pub reason: &'static str,
    /// `true` when the comment's reply said why; `false` when it was only recorded (a
    /// refusal to the same user in the same repository was answered within the hour).
    pub answered: &'static str,
}

/// A pipeline step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
    /// `ok` or `error` (interrupted steps are not counted).
    pub outcome: &'static str,
}

/// One request to GitHub's API (each attempt counts).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitHubRequestLabels {
    pub method: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `error` when no answer came (network, timeout).
    pub status: &'static str,
}

/// Whose rate limit a `x-ratelimit-remaining` reading is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// `x-ratelimit-resource` (`core`, `search`, …), `unknown` when not sent.
    pub resource: String,
    /// `app`, `installation` or `anonymous`.
    pub auth: &'static str,
    /// The installation id, empty for the App and anonymous requests.
    pub installation: String,
}

/// The verity certificate that signs DDI root hashes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// sha256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
}

/// Every metric family, and the registry they are encoded from.
pub struct Metrics {
    registry: Registry,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub jobs: Family<OutcomeLabels, Counter>,
    pub consumer_updates: Family<OutcomeLabels, Counter>,
    pub upstream_checks: Family<OutcomeLabels, Counter>,
    pub command_refusals: Family<RefusalLabels, Counter>,
    pub step_duration: Family<StepLabels, Histogram>,
    pub github_requests: Family<GitHubRequestLabels, Counter>,
    pub github_rate_limit_remaining: Family<RateLimitLabels, Gauge>,
    pub built_bytes: Counter,
    pub uploaded_bytes: Counter,
    pub removed_files: Counter,
    pub verity_certificate_not_after: Family<CertificateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, all at zero, registered under the prefix `alloy_sysext`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("alloy_sysext");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by event and outcome: received, stored, duplicate, refused or store_failed at intake; processed, ignored or failed by the worker",
            deliveries.clone(),
        );
        let jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jobs",
            "Build job runs by outcome: succeeded, failed (for good) or retrying (failed transiently, runs again)",
            jobs.clone(),
        );
        let upstream_checks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "upstream_checks",
            "Scheduled upstream checks by outcome: ok or failed (tried again within the hour)",
            upstream_checks.clone(),
        );
        let consumer_updates = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "consumer_updates",
            "Consumer repository updates by outcome: ok, failed (for good; the tracking issue stays open), retrying, or refused (an enrollment file that fails its checks)",
            consumer_updates.clone(),
        );
        let command_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "command_refusals",
            "Comments with a refused /build or /rebuild or a malformed command, by reason (permission, queue_limit, malformed) and whether the refusal was answered (at most once an hour per user and repository)",
            command_refusals.clone(),
        );
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(STEP_SECONDS_BUCKETS)
        });
        registry.register_with_unit(
            "job_step_duration",
            "How long each pipeline step took, by step and outcome",
            Unit::Seconds,
            step_duration.clone(),
        );
        let github_requests = Family::<GitHubRequestLabels, Counter>::default();
        registry.register(
            "github_requests",
            "Requests to GitHub's REST API (every attempt) by method and status class",
            github_requests.clone(),
        );
        let github_rate_limit_remaining = Family::<RateLimitLabels, Gauge>::default();
        registry.register(
            "github_rate_limit_remaining",
            "The x-ratelimit-remaining of GitHub's latest answer, by rate limit resource and credentials",
            github_rate_limit_remaining.clone(),
        );
        let built_bytes = Counter::default();
        registry.register_with_unit(
            "built",
            "Bytes of sysext images built",
            Unit::Bytes,
            built_bytes.clone(),
        );
        let uploaded_bytes = Counter::default();
        registry.register_with_unit(
            "uploaded",
            "Bytes put to storage (files actually uploaded, not those already there)",
            Unit::Bytes,
            uploaded_bytes.clone(),
        );
        let removed_files = Counter::default();
        registry.register(
            "removed_files",
            "Files deleted from storage by the removal sweep once their version had left the manifest for the grace period (files found gone already are not counted)",
            removed_files.clone(),
        );
        let verity_certificate_not_after = Family::<CertificateLabels, Gauge>::default();
        registry.register_with_unit(
            "verity_certificate_not_after",
            "When the certificate that signs DDI root hashes expires, in seconds since 1970 (absent unless image.formats includes ddi); hosts that require signed images refuse DDIs signed with it after that",
            Unit::Seconds,
            verity_certificate_not_after.clone(),
        );
        Metrics {
            registry,
            deliveries,
            jobs,
            consumer_updates,
            upstream_checks,
            command_refusals,
            step_duration,
            github_requests,
            github_rate_limit_remaining,
            built_bytes,
            uploaded_bytes,
            removed_files,
            verity_certificate_not_after,
        }
    }

    /// Exports when the verity certificate `expiry` describes expires.
    pub fn verity_certificate(&self, expiry: &crate::server::verity_key::CertificateExpiry) {
        self.verity_certificate_not_after
            .get_or_create(&CertificateLabels {
                fingerprint: expiry.fingerprint.clone(),
            })
            .set(expiry.not_after_unix());
    }

    /// Every metric in the OpenMetrics text format (which Prometheus scrapes), ending with
    /// `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and the metric names are fixed.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode into a String");
        text
    }

    /// Counts a webhook delivery with `outcome`; `event` is the `X-GitHub-Event`.
    pub fn delivery(&self, event: &str, outcome: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event: event_label(event),
                outcome,
            })
            .inc();
    }

    /// Counts a job run's end: `succeeded`, `failed` or `retrying`.
    pub fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a consumer update's end: `ok`, `failed`, `retrying` or `refused`.
    pub fn consumer_update(&self, outcome: &'static str) {
        self.consumer_updates
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a scheduled upstream check: `ok` or `failed`.
    pub fn upstream_check(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.upstream_checks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a refused command: `reason` as [`RefusalLabels::reason`], `answered` when the
    /// refusal got a reply.
    pub fn command_refusal(&self, reason: &'static str, answered: bool) {
        self.command_refusals
            .get_or_create(&RefusalLabels {
                reason,
                answered: if answered { "true" } else { "false" },
            })
            .inc();
    }

    /// Records how long `step` took.
    pub fn step(&self, step: Step, ok: bool, took: Duration) {
        self.step_duration
            .get_or_create(&StepLabels {
                step: step.as_str(),
                outcome: if ok { "ok" } else { "error" },
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one request to GitHub; `status` is `None` when no answer came.
    pub fn github_request(&self, method: &http::Method, status: Option<u16>) {
        let status = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        self.github_requests
            .get_or_create(&GitHubRequestLabels {
                method: method.as_str().to_owned(),
                status,
            })
            .inc();
    }

    /// Records GitHub's `x-ratelimit-remaining` from an answer's headers, when it has one.
    pub fn github_rate_limit(
        &self,
        headers: &http::HeaderMap,
        auth: &'static str,
        installation: Option<i64>,
    ) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(remaining) = header("x-ratelimit-remaining").and_then(|v| v.parse::<i64>().ok())
        else {
            return;
        };
        // GitHub's resource names are short lowercase words; anything else is not GitHub's.
        let resource = header("x-ratelimit-resource")
            .filter(|r| r.len() <= 40 && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or("unknown");
        self.github_rate_limit_remaining
            .get_or_create(&RateLimitLabels {
                resource: resource.to_owned(),
                auth,
                installation: installation.map(|i| i.to_string()).unwrap_or_default(),
            })
            .set(remaining);
    }
}

/// The label for an `X-GitHub-Event` value: the event when it is one GitHub sends,
/// else `other`.
pub fn event_label(event: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|known| **known == event)
        .copied()
        .unwrap_or("other")
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` in `text`, which must be there once.
    fn sample(text: &str, series: &str) -> f64 {
        let values: Vec<f64> = text
            .lines()
            .filter_map(|line| line.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
            .collect();
        assert_eq!(values.len(), 1, "{series} in:\n{text}");
        values[0]
    }

    #[test]
    fn counts_appear_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.delivery("issue_comment", "received");
        metrics.delivery("issue_comment", "received");
        metrics.delivery("issue_comment", "stored");
        metrics.delivery("x-made-up", "refused");
        metrics.job("succeeded");
        metrics.job("failed");
        metrics.job("failed");
        metrics.step(Step::Build, true, Duration::from_millis(700));
        metrics.step(Step::Build, true, Duration::from_secs(20));
        metrics.github_request(&http::Method::GET, Some(200));
        metrics.github_request(&http::Method::POST, Some(502));
        metrics.github_request(&http::Method::GET, None);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "4987".parse().unwrap());
        headers.insert("x-ratelimit-resource", "core".parse().unwrap());
        metrics.github_rate_limit(&headers, "installation", Some(77));
        metrics.command_refusal("permission", true);
        metrics.command_refusal("permission", false);
        metrics.command_refusal("permission", false);
        metrics.built_bytes.inc_by(1000);
        metrics.uploaded_bytes.inc_by(1500);
        metrics.removed_files.inc_by(3);

        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE alloy_sysext_webhook_deliveries counter\n"));
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_webhook_deliveries_total{event="issue_comment",outcome="received"}"#
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_webhook_deliveries_total{event="other",outcome="refused"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(&text, r#"alloy_sysext_jobs_total{outcome="failed"}"#),
            2.0
        );
        assert_eq!(
            sample(&text, r#"alloy_sysext_jobs_total{outcome="succeeded"}"#),
            1.0
        );
        assert!(text.contains("# TYPE alloy_sysext_job_step_duration_seconds histogram\n"));
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_job_step_duration_seconds_count{step="build",outcome="ok"}"#
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_job_step_duration_seconds_bucket{le="1.0",step="build",outcome="ok"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_github_requests_total{method="POST",status="5xx"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_github_requests_total{method="GET",status="error"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_github_rate_limit_remaining{resource="core",auth="installation",installation="77"}"#
            ),
            4987.0
        );
        assert_eq!(
            sample(
                &text,
                r#"alloy_sysext_command_refusals_total{reason="permission",answered="false"}"#
            ),
            2.0
        );
        assert_eq!(sample(&text, "alloy_sysext_built_bytes_total"), 1000.0);
        assert_eq!(sample(&text, "alloy_sysext_uploaded_bytes_total"), 1500.0);
        assert_eq!(sample(&text, "alloy_sysext_removed_files_total"), 3.0);
    }

    #[test]
    fn a_rate_limit_header_that_is_not_a_number_is_skipped() {
        let metrics = Metrics::new();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "lots".parse().unwrap());
        metrics.github_rate_limit(&headers, "app", None);
        assert!(
            !metrics
                .encode()
                .contains("alloy_sysext_github_rate_limit_remaining{")
        );
    }
}
