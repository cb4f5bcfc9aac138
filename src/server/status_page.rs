//! What an operator looks at: `GET /` (the status page, plain HTML that works without
//! JavaScript), `GET /readyz` (can the server do its work) and `GET /metrics` (Prometheus).
//!
//! The page is written with maud, which escapes every interpolated value: a job error or a
//! delivery field holding markup shows as text. No secret is ever shown: the App's key,
//! the webhook secrets and the storage credentials are not even read here; storage is
//! described by [`crate::storage::Storage::describe`], which leaves credentials out.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use crate::artifacts::MANIFEST_FILE;
use crate::database::deliveries::StoredDelivery;
use crate::database::installations::Installation;
use crate::database::job_steps::Step;
use crate::database::job_steps::StepRun;
use crate::database::jobs::{Job, JobKind, JobState, TriggerSource};
use crate::database::withdrawals::Withdrawal;
use crate::manifest::{Manifest, Published, newest_per_arch};
use crate::server::verity_key::CertificateExpiry;
use crate::settings::Settings;
use crate::settings::public_base_url::{IMAGES_ROUTE, NO_PUBLIC_BASE_URL, PublicBaseUrl};
use crate::worker::promotions::{Newest, Rollout};
use crate::worker::upstream::schedule::LastUpstreamCheck;

const CSS: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1c2128; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 2px 0 0; color: #c9d1d9; font-size: 13px; }
main { padding: 8px 28px 28px; max-width: 1240px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 4px 16px 12px; margin-top: 16px; }
h2 { font-size: 16px; margin: 10px 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid #eaeef2; }
th { font-weight: 600; color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
table.kv th { width: 220px; text-transform: none; font-size: 13px; letter-spacing: 0; }
code, .mono { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid transparent; }
.succeeded, .processed, .active, .ok, .done { background: #dafbe1; color: #116329; border-color: #aceebb; }
.failed, .error, .deleted { background: #ffebe9; color: #a40e26; border-color: #ffcecb; }
.running, .current, .pending, .queued { background: #ddf4ff; color: #0550ae; border-color: #b6e3ff; }
.retrying, .ignored, .suspended, .warn { background: #fff8c5; color: #7d4e00; border-color: #f5e0a0; }
.todo { background: #f6f8fa; color: #8c959f; border-color: #d0d7de; }
.steps { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; }
.took { font-size: 11px; color: #57606a; margin-right: 4px; }
.reason { color: #a40e26; white-space: pre-wrap; margin-top: 4px; }
.muted { color: #57606a; }
.nowrap { white-space: nowrap; word-break: normal; }
"#;

/// How many jobs and deliveries the page shows.
const JOBS_SHOWN: i64 = 20;
const DELIVERIES_SHOWN: i64 = 30;

/// What the page shows about the App and the configuration; nothing secret.
pub struct ConfigView {
    /// Why the server cannot act, if it cannot.
    pub cannot_act: Option<&'static str>,
    pub app_id: Option<u64>,
    pub webhook_secrets: usize,
    pub github_api_url: String,
    pub storage: String,
    pub signing_key: Option<String>,
    /// The certificate that signs DDI root hashes, with `ddi` in `image.formats`.
    pub verity_certificate: Option<CertificateExpiry>,
    /// `None` when the upstream check is off; `Some(None)` when it is scheduled but the
    /// server cannot run it (no App credentials).
    pub next_upstream_check: Option<Option<String>>,
    /// The last upstream check this process ran.
    pub last_upstream_check: Option<LastUpstreamCheck>,
}

/// The published manifest as read: the newest image per architecture, or why it could
/// not be read.
pub enum PublishedState {
    Read(Vec<Published>),
    NoManifest,
    Unreadable(String),
}

/// Everything the page shows.
pub struct PageData {
    pub config: ConfigView,
    pub settings: std::sync::Arc<Settings>,
    /// Where hosts download the published files from.
    pub public_base_url: PublicBaseUrl,
    pub published: PublishedState,
    /// The withdrawn versions, latest first.
    pub withdrawals: Vec<Withdrawal>,
    /// The release channels and planned promotions; `None` with one channel.
    pub rollout: Option<Rollout>,
    pub jobs: Vec<Job>,
    /// The step runs of those jobs: (job id, run), oldest first.
    pub step_runs: Vec<(i64, StepRun)>,
    pub deliveries: Vec<StoredDelivery>,
    pub installations: Vec<Installation>,
    pub now: String,
}

/// `GET /`: the status page.
pub async fn status_page(State(state): State<AppState>) -> Response {
    let credentials = state.credentials();
    let activation = &state.activation;
    let worker = activation.worker();
    let settings = activation.settings.clone();
    let next_upstream_check = settings.schedule.check_upstream.as_ref().map(|_| {
        worker
            .as_ref()
            .and_then(|w| w.next_upstream_check())
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    });
    let config = ConfigView {
        cannot_act: credentials.cannot_act,
        app_id: worker.as_ref().and_then(|w| w.app_id()),
        webhook_secrets: credentials.webhook_secrets.len(),
        github_api_url: activation.github_api_url.clone(),
        storage: activation.storage.describe(),
        signing_key: worker.as_ref().map(|w| w.signing_fingerprint()),
        verity_certificate: activation
            .verity_signer
            .as_ref()
            .map(|signer| CertificateExpiry::of(signer.certificate())),
        next_upstream_check,
        last_upstream_check: worker.as_ref().and_then(|w| w.last_upstream_check()),
    };
    let published = match activation.storage.get(MANIFEST_FILE).await {
        Ok(Some(bytes)) => match Manifest::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(manifest) => PublishedState::Read(newest_per_arch(&manifest, &settings.image.name)),
            Err(error) => PublishedState::Unreadable(error.to_string()),
        },
        Ok(None) => PublishedState::NoManifest,
        Err(error) => PublishedState::Unreadable(error.to_string()),
    };
    let database = &state.database;
    let read = async {
        let jobs = database.recent_jobs(JOBS_SHOWN).await?;
        let ids = jobs.iter().map(|job| job.id);
        let step_runs = match (ids.clone().min(), ids.max()) {
            (Some(first), Some(last)) => database.step_runs(first, last).await?,
            _ => Vec::new(),
        };
        Ok::<_, crate::database::DatabaseError>((
            jobs,
            step_runs,
            database.recent_deliveries(DELIVERIES_SHOWN).await?,
            database.installations().await?,
            database.withdrawals().await?,
            Rollout::read(database, &activation.storage, &settings).await?,
        ))
    };
    let (jobs, step_runs, deliveries, installations, withdrawals, rollout) = match read.await {
        Ok(data) => data,
        Err(error) => {
            tracing::error!(%error, "reading the status page's data");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the database is unavailable",
            )
                .into_response();
        }
    };
    let page = render(&PageData {
        config,
        settings,
        public_base_url: activation.public_base_url.clone(),
        published,
        withdrawals,
        rollout,
        jobs,
        step_runs,
        deliveries,
        installations,
        now: crate::database::timestamp::now(),
    });
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page.into_string(),
    )
        .into_response()
}

/// The page.
pub fn render(data: &PageData) -> Markup {
    let settings = &data.settings;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Alloy sysext automation" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "Alloy sysext automation" }
                    p { "Status at " (short_time(&data.now)) " UTC · builds " code { (settings.image.name) } " into " code { (settings.build_repo.repo) } }
                }
                main {
                    (published_section(data))
                    (jobs_section(data))
                    (config_section(data))
                    (installations_section(data))
                    (deliveries_section(data))
                }
            }
        }
    }
}

impl PageData {
    /// [`PageData::now`] as a time; the present if it does not parse.
    fn now_time(&self) -> std::time::SystemTime {
        chrono::DateTime::parse_from_rfc3339(&self.now)
            .map(std::time::SystemTime::from)
            .unwrap_or_else(|_| std::time::SystemTime::now())
    }

    /// Where the page links the published `file`: its public address, or, when there is
    /// none, the server's own route, relative to this page's host (storage is then local).
    fn published_file_link(&self, file: &str) -> String {
        self.public_base_url
            .url(file)
            .unwrap_or_else(|| format!("{IMAGES_ROUTE}{file}"))
    }
}

fn published_section(data: &PageData) -> Markup {
    let link = |file: &str| data.published_file_link(file);
    html! {
        section #published {
            h2 { "Published" }
            @match &data.published {
                PublishedState::Read(images) if !images.is_empty() => {
                    table {
                        tr { th { "arch" } th { "version" } th { "image" } th { "sha256" } }
                        @for image in images {
                            tr {
                                td { (image.arch) }
                                td { strong { (image.version) } }
                                td {
                                    a href=(link(&image.file)) { (image.file) }
                                    " · " a href=(link(&format!("{}.sha256", image.file))) { ".sha256" }
                                    " · " a href=(link(&format!("{}.asc", image.file))) { ".asc" }
                                }
                                td.mono { (image.sha256) }
                            }
                        }
                    }
                    p.muted { "From the published " a href=(link(MANIFEST_FILE)) { (MANIFEST_FILE) } " (" a href=(link("SHA256SUMS.gpg")) { "signature" } ")." }
                }
                PublishedState::Read(_) | PublishedState::NoManifest => {
                    p.muted { "Nothing is published yet: storage has no " code { (MANIFEST_FILE) } "." }
                }
                PublishedState::Unreadable(reason) => {
                    p.reason { "The published " (MANIFEST_FILE) " cannot be read: " (reason) }
                }
            }
            @if let Some(rollout) = &data.rollout {
                h2 #channels { "Channels" }
                p.muted {
                    "Builds publish to the first channel; " code { "/promote X.Y.Z" } " moves a version to the next"
                    @if rollout.promote_after_hours > 0 {
                        ", as does " (rollout.promote_after_hours) " hours in a channel without a failed CI run on a consumer's pull request for it"
                    }
                    "."
                }
                table {
                    tr { th { "channel" } th { "manifest" } th { "newest version" } th { "since" } }
                    @for channel in &rollout.channels {
                        tr {
                            td { strong { (channel.name) } }
                            td.mono { (channel.prefix) (MANIFEST_FILE) }
                            @match &channel.newest {
                                Newest::Listed { version, since } => {
                                    td { (version) }
                                    td.mono.nowrap { (since.as_deref().map(short_time).unwrap_or_default()) }
                                }
                                Newest::Nothing => { td.muted { "none yet" } td {} }
                                Newest::Unreadable { error } => { td.reason { "cannot be read: " (error) } td {} }
                            }
                        }
                    }
                }
                @for plan in &rollout.planned {
                    @if plan.held_by.is_empty() {
                        p { (plan.version) " goes from " (plan.from) " to " (plan.to) " at " span.mono { (short_time(&plan.due_at)) } " unless a consumer's CI fails on it." }
                    } @else {
                        p.reason {
                            (plan.version) " stays in " (plan.from) ": CI failed on its pull request in "
                            @for (index, failure) in plan.held_by.iter().enumerate() {
                                @if index > 0 { ", " }
                                (failure.repository) " (" (failure.conclusion) ")"
                            }
                            "; only " code { "/promote " (plan.version) } " moves it on."
                        }
                    }
                }
            }
            @if !data.withdrawals.is_empty() {
                h2 #withdrawn { "Withdrawn" }
                p.muted { "Out of " (MANIFEST_FILE) ": no host installs these. Only " code { "/rebuild X.Y.Z" } " publishes one again." }
                table {
                    tr { th { "version" } th { "withdrawn" } th { "by" } th { "reason" } th { "job" } }
                    @for withdrawal in &data.withdrawals {
                        tr {
                            td { strong { (withdrawal.version) } }
                            td.mono.nowrap { (short_time(&withdrawal.withdrawn_at)) }
                            td {
                                @match (withdrawal.source, &withdrawal.withdrawn_by) {
                                    (TriggerSource::Cli, Some(login)) => { (login) " (command line)" }
                                    (TriggerSource::Cli, None) => { "command line" }
                                    (_, Some(login)) => { (login) }
                                    (_, None) => { "" }
                                }
                            }
                            td { (withdrawal.reason.as_deref().unwrap_or("")) }
                            td { a href={ "/api/jobs/" (withdrawal.job_id) } { "#" (withdrawal.job_id) } }
                        }
                    }
                }
            }
        }
    }
}

fn jobs_section(data: &PageData) -> Markup {
    html! {
        section #jobs {
            h2 { "Jobs" }
            @if data.jobs.is_empty() {
                p.muted { "No jobs yet." }
            } @else {
                table {
                    tr { th { "job" } th { "version" } th { "state" } th { "steps" } th { "trigger" } th { "started" } th { "took" } }
                    @for job in &data.jobs {
                        tr {
                            td { a href={ "/api/jobs/" (job.id) } { "#" (job.id) } }
                            td {
                                strong { (job.version) }
                                @if job.kind == JobKind::Withdraw { " (withdraw)" } @else if job.rebuild { " (rebuild)" }
                            }
                            td {
                                span class={ "badge " (job.state.as_str()) } { (job.state.as_str()) }
                                @if job.attempts > 1 { br; span.muted { (job.attempts) " attempts" } }
                            }
                            td {
                                (steps(job, &data.step_runs))
                                @if let Some(error) = &job.error {
                                    div.reason {
                                        @if let Some(step) = job.step { "failed at " strong { (step.as_str()) } ": " }
                                        (error)
                                    }
                                }
                                (job_images(data, job))
                            }
                            td { (trigger(job)) }
                            td.mono.nowrap { (job.started_at.as_deref().map(short_time).unwrap_or_default()) }
                            td { (duration(job)) }
                        }
                    }
                }
            }
        }
    }
}

/// Each step as done, current, failed or still to do, with how long its latest run took.
fn steps(job: &Job, runs: &[(i64, StepRun)]) -> Markup {
    let took = |step: Step| {
        runs.iter()
            .rev()
            .find(|(id, run)| *id == job.id && run.step == step)
            .and_then(|(_, run)| run.seconds)
            .map(|seconds| {
                if seconds < 10.0 {
                    format!("{seconds:.1} s")
                } else {
                    format!("{seconds:.0} s")
                }
            })
    };
    html! {
        div.steps {
            @for &step in job.kind.steps() {
                @let class = match (job.state, job.step) {
                    (JobState::Succeeded, _) => "done",
                    (_, Some(at)) if step < at => "done",
                    (JobState::Failed, Some(at)) if step == at => "failed",
                    (JobState::Retrying, Some(at)) if step == at => "retrying",
                    (JobState::Running, Some(at)) if step == at => "current",
                    _ => "todo",
                };
                span class={ "badge " (class) } title=(class) { (step.as_str()) }
                @if let Some(took) = took(step) { span.took { (took) } }
            }
        }
    }
}

/// The images a job built, from its result. An image recorded without an address is
/// linked at this server's own route when the server has no public address for its files
/// (storage is then the local directory it serves).
fn job_images(data: &PageData, job: &Job) -> Markup {
    let images = job
        .result
        .as_ref()
        .and_then(|result| result.images.as_deref())
        .unwrap_or_default();
    html! {
        @for image in images {
            div.muted {
                @if !image.url.is_empty() { a href=(image.url) { (image.file) } }
                @else if data.public_base_url == PublicBaseUrl::None { a href=(data.published_file_link(&image.file)) { (image.file) } }
                @else { (image.file) }
                " · " (human_bytes(image.size))
                " · sha256 " span.mono { (image.sha256) }
            }
        }
    }
}

fn trigger(job: &Job) -> Markup {
    let t = &job.trigger;
    html! {
        (t.source.as_str())
        @if let Some(user) = &t.user { " by @" (user) }
        @if let (Some(repo), Some(issue)) = (&t.repository, t.issue_number) { br; span.muted { (repo) "#" (issue) } }
    }
}

/// How long the job ran: from its (last) start to its end, or until now while it runs.
fn duration(job: &Job) -> String {
    let Some(started) = job.started_at.as_deref().and_then(parse_time) else {
        return String::new();
    };
    let end = match job.finished_at.as_deref() {
        Some(finished) => match parse_time(finished) {
            Some(end) => end,
            None => return String::new(),
        },
        None if job.state == JobState::Running => OffsetDateTime::now_utc(),
        None => return String::new(),
    };
    let seconds = (end - started).as_seconds_f64().max(0.0);
    let text = if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!("{}m {:02}s", (seconds / 60.0) as u64, seconds as u64 % 60)
    } else {
        format!(
            "{}h {:02}m",
            (seconds / 3600.0) as u64,
            (seconds as u64 / 60) % 60
        )
    };
    if job.finished_at.is_none() {
        format!("{text} so far")
    } else {
        text
    }
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `2026-01-02T03:04:05.123456Z` as `2026-01-02 03:04:05`.
fn short_time(text: &str) -> String {
    match parse_time(text) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => text.to_owned(),
    }
}

fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / f64::from(1 << 10))
    } else {
        format!("{bytes} B")
    }
}

fn config_section(data: &PageData) -> Markup {
    let c = &data.config;
    let s = &data.settings;
    html! {
        section #configuration {
            h2 { "App and configuration" }
            table.kv {
                tr { th { "acting as the App" } td {
                    @match c.cannot_act {
                        None => { span.badge.ok { "yes" } @if let Some(id) = c.app_id { " App id " (id) } }
                        Some(reason) => { span.badge.error { "no" } " " (reason) }
                    }
                } }
                tr { th { "webhook secrets" } td {
                    @if c.webhook_secrets == 0 { span.badge.error { "none" } " every delivery is refused" }
                    @else { (c.webhook_secrets) " configured" }
                } }
                tr { th { "GitHub API" } td.mono { (c.github_api_url) } }
                tr { th { "storage" } td.mono { (c.storage) } }
                tr { th { "signing key" } td.mono { (c.signing_key.as_deref().unwrap_or("not loaded (the server cannot act)")) } }
                @if let Some(certificate) = &c.verity_certificate {
                    tr { th { "verity certificate" } td {
                        (certificate.subject) " " span.mono { (certificate.fingerprint) } " · expires " (certificate.not_after_text())
                        @if let Some(warning) = certificate.warning(data.now_time()) {
                            " " span.badge.warn { "expires soon" }
                            div.reason { (warning) }
                        }
                    } }
                }
                tr { th { "next upstream check" } td {
                    @match &c.next_upstream_check {
                        None => { span.badge.todo { "off" } }
                        Some(Some(next)) => { (next) " " span.muted { "(" (s.schedule.check_upstream.as_deref().unwrap_or("")) ", UTC)" } }
                        Some(None) => { span.badge.warn { "not running" } " scheduled (" (s.schedule.check_upstream.as_deref().unwrap_or("")) ") but the server cannot act" }
                    }
                } }
                @if let Some(last) = &c.last_upstream_check {
                    tr { th { "last upstream check" } td {
                        (last.at) " "
                        @match &last.result {
                            Ok(found) => { span.muted { (found) } }
                            Err(error) => { span.badge.error { "failed" } " " (error) " " span.muted { "(tried again at the next check above)" } }
                        }
                    } }
                }
                tr { th { "upstream" } td { code { (s.upstream.repo) } " asset " code { (s.upstream.asset) } } }
                tr { th { "image" } td {
                    code { (s.image.name) } " for "
                    (s.image.arches.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "))
                    ", " (s.image.compression)
                    @if s.image.compat_name { ", with the compatibility name" }
                    @if s.image.publishes_ddi() { ", and the signed dm-verity image (DDI)" }
                } }
                tr { th { "build repository" } td { code { (s.build_repo.repo) } " branch " code { (s.build_repo.branch) } } }
                tr { th { "published at" } td {
                    @match data.public_base_url.base() {
                        Some(base) => { a href=(base) { (base) } " " span.muted { "(" (data.public_base_url.source()) ")" } }
                        None => {
                            code { (IMAGES_ROUTE) } " on this server " span.badge.warn { "not public" }
                            div.reason { (NO_PUBLIC_BASE_URL) }
                        }
                    }
                } }
                tr { th { "tracking label" } td { code { (s.schedule.tracking_label) } } }
                tr { th { "consumers" } td {
                    @if s.consumers.is_empty() { span.muted { "none configured" } }
                    @for consumer in &s.consumers {
                        div { code { (consumer.repo) } " " span.muted { (consumer.path) " on " (consumer.base) } }
                    }
                } }
            }
        }
    }
}

fn installations_section(data: &PageData) -> Markup {
    html! {
        section #installations {
            h2 { "Installations" }
            @if data.installations.is_empty() {
                p.muted { "No installation has been reported by GitHub yet." }
            } @else {
                table {
                    tr { th { "id" } th { "account" } th { "state" } th { "repositories" } th { "updated" } }
                    @for installation in &data.installations {
                        tr {
                            td { (installation.id) }
                            td { strong { (installation.account.as_deref().unwrap_or("?")) } }
                            td { span class={ "badge " (installation.state) } { (installation.state) } }
                            td { (installation.repositories.join(", ")) }
                            td.mono.nowrap { (short_time(&installation.updated_at)) }
                        }
                    }
                }
            }
        }
    }
}

fn deliveries_section(data: &PageData) -> Markup {
    html! {
        section #deliveries {
            h2 { "Recent deliveries" }
            @if data.deliveries.is_empty() {
                p.muted { "No delivery has been received yet." }
            } @else {
                table {
                    tr { th { "delivery" } th { "event" } th { "repository" } th { "received" } th { "state" } th { "job" } }
                    @for delivery in &data.deliveries {
                        tr {
                            td.mono { a href={ "/api/deliveries/" (delivery.id) } { (delivery.id) } }
                            td { (delivery.event) @if let Some(action) = &delivery.action { " " span.muted { (action) } } }
                            td { (delivery.repository.as_deref().unwrap_or("")) }
                            td.mono.nowrap { (short_time(&delivery.received_at)) }
                            td {
                                span class={ "badge " (delivery.state) } { (delivery.state) }
                                @if let Some(error) = &delivery.error { div.muted { (error) } }
                            }
                            td { @if let Some(job) = delivery.job_id { a href={ "/api/jobs/" (job) } { "#" (job) } } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /readyz`: 200 when the database answers and the server can act as the App (its
/// configuration is valid, or it would not have started); 503 naming the failed check.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.database.is_reachable().await;
    let cannot_act = state.credentials().cannot_act;
    let checks = json!({
        "database": if database { "ok" } else { "unreachable" },
        "config": "ok",
        "app_credentials": match cannot_act { None => "ok", Some(reason) => reason },
    });
    let failed: Vec<&str> = [
        (!database).then_some("database"),
        cannot_act.map(|_| "app_credentials"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if failed.is_empty() {
        (
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "checks": checks})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "failed": failed, "checks": checks})),
        )
            .into_response()
    }
}

/// `GET /metrics`: the metrics in the OpenMetrics text format.
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::global().encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::deliveries::DeliveryState;
    use crate::database::job_steps::StepOutcome;
    use crate::database::jobs::Trigger;

    fn job(id: i64, state: JobState, step: Option<&str>, error: Option<&str>) -> Job {
        Job {
            id,
            kind: JobKind::Build,
            version: "1.17.1".parse().unwrap(),
            rebuild: false,
            trigger: Trigger {
                source: TriggerSource::Comment,
                user: Some("<b>mallory</b>".into()),
                ..Trigger::default()
            },
            installation_id: None,
            state,
            step: step.map(|step| Step::parse(step).unwrap()),
            attempts: 1,
            next_attempt_at: None,
            created_at: "2026-01-02T03:04:00.000000Z".into(),
            started_at: Some("2026-01-02T03:04:05.000000Z".into()),
            updated_at: "2026-01-02T03:05:00.000000Z".into(),
            finished_at: Some("2026-01-02T03:05:17.500000Z".into()),
            error: error.map(str::to_owned),
            result: None,
            lease: None,
        }
    }

    fn page(jobs: Vec<Job>, deliveries: Vec<StoredDelivery>) -> String {
        page_with_certificate(jobs, deliveries, None)
    }

    fn page_with_certificate(
        jobs: Vec<Job>,
        deliveries: Vec<StoredDelivery>,
        verity_certificate: Option<CertificateExpiry>,
    ) -> String {
        render(&PageData {
            config: ConfigView {
                cannot_act: None,
                app_id: Some(42),
                webhook_secrets: 1,
                github_api_url: "https://api.github.com".into(),
                storage: "directory /data/images".into(),
                signing_key: Some("ABCDEF".into()),
                verity_certificate,
                next_upstream_check: None,
                last_upstream_check: None,
            },
            settings: std::sync::Arc::new(Settings::default()),
            public_base_url: PublicBaseUrl::BucketDefault,
            published: PublishedState::NoManifest,
            withdrawals: Vec::new(),
            rollout: None,
            jobs,
            step_runs: vec![(
                7,
                StepRun {
                    step: Step::Download,
                    attempt: 1,
                    started_at: "2026-01-02T03:04:05.000000Z".into(),
                    finished_at: Some("2026-01-02T03:04:17.000000Z".into()),
                    seconds: Some(12.4),
                    outcome: StepOutcome::Error,
                },
            )],
            deliveries,
            installations: Vec::new(),
            now: "2026-01-02T03:06:00.000000Z".into(),
        })
        .into_string()
    }

    #[test]
    fn the_verity_certificate_warns_thirty_days_before_it_expires() {
        let now = std::time::SystemTime::from(
            chrono::DateTime::parse_from_rfc3339("2026-01-02T03:06:00Z").unwrap(),
        );
        let certificate = |days: u64| CertificateExpiry {
            subject: "CN=Verity".into(),
            fingerprint: "ab".repeat(32),
            not_after: now + std::time::Duration::from_secs(days * 86_400),
        };
        let row = |html: &str| {
            let start = html.find("<tr><th>verity certificate</th>").unwrap();
            let end = start + html[start..].find("</tr>").unwrap() + "</tr>".len();
            html[start..end].to_owned()
        };
        let far = page_with_certificate(Vec::new(), Vec::new(), Some(certificate(31)));
        assert_eq!(
            row(&far),
            format!(
                "<tr><th>verity certificate</th><td>CN=Verity <span class=\"mono\">{}</span> · expires 2026-02-02T03:06:00Z</td></tr>",
                "ab".repeat(32)
            )
        );
        let near = page_with_certificate(Vec::new(), Vec::new(), Some(certificate(30)));
        assert_eq!(
            row(&near),
            format!(
                "<tr><th>verity certificate</th><td>CN=Verity <span class=\"mono\">{}</span> · expires 2026-02-01T03:06:00Z <span class=\"badge warn\">expires soon</span><div class=\"reason\">{}</div></td></tr>",
                "ab".repeat(32),
                certificate(30).warning(now).unwrap()
            )
        );
        assert!(!page(Vec::new(), Vec::new()).contains("verity certificate"));
    }

    #[test]
    fn markup_in_a_job_error_or_a_delivery_shows_as_text() {
        let html = page(
            vec![job(
                7,
                JobState::Failed,
                Some("download"),
                Some("no release <script>alert(1)</script> & \"more\""),
            )],
            vec![StoredDelivery {
                id: "d-1".into(),
                event: "issue_comment".into(),
                action: Some("<img src=x onerror=alert(2)>".into()),
                installation_id: None,
                repository: Some("o/r".into()),
                received_at: "2026-01-02T03:04:00.000000Z".into(),
                state: DeliveryState::Failed,
                processed_at: None,
                error: Some("</td><script>bad()</script>".into()),
                job_id: Some(7),
            }],
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>mallory"), "{html}");
        assert!(
            html.contains(
                "no release &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;more&quot;"
            ),
            "{html}"
        );
        assert!(
            html.contains("&lt;/td&gt;&lt;script&gt;bad()&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("@&lt;b&gt;mallory&lt;/b&gt;"), "{html}");
        assert!(
            html.contains("failed at <strong>download</strong>"),
            "{html}"
        );
        // The step it failed at, and the time it took.
        assert!(
            html.contains(r#"class="badge failed" title="failed">download"#),
            "{html}"
        );
        // How long the step's latest run took.
        assert!(
            html.contains(r#"title="failed">download</span><span class="took">12 s</span>"#),
            "{html}"
        );
        assert!(html.contains("1m 12s"), "{html}");
        assert!(
            html.contains("<span class=\"badge todo\">off</span>"),
            "{html}"
        );
    }

    #[test]
    fn a_succeeded_job_has_every_step_done() {
        let html = page(
            vec![job(3, JobState::Succeeded, Some("report"), None)],
            Vec::new(),
        );
        for step in Step::ALL {
            assert!(
                html.contains(&format!(r#"title="done">{step}<"#)),
                "{step}: {html}"
            );
        }
        assert!(html.contains("No delivery has been received yet."));
    }

    #[test]
    fn the_newest_version_per_architecture_is_shown() {
        let line = |digit: char, file: &str| format!("{}  {file}\n", digit.to_string().repeat(64));
        let text = [
            line('a', "alloy-1.9.0-amd64.raw"),
            line('b', "alloy-1.10.0-amd64.raw"),
            line('c', "alloy-1.10.0-arm64.raw"),
            line('d', "alloy-1.10.0.raw"),
            line('e', "other-2.0.0-amd64.raw"),
        ]
        .concat();
        let manifest = Manifest::parse(&text).unwrap();
        let newest = newest_per_arch(&manifest, "alloy");
        let summary: Vec<(&str, &str, char)> = newest
            .iter()
            .map(|p| {
                (
                    p.arch.as_str(),
                    p.version.as_str(),
                    p.sha256.chars().next().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("amd64", "1.10.0", 'b'),
                ("arm64", "1.10.0", 'c'),
                ("compat", "1.10.0", 'd')
            ]
        );
    }
}
