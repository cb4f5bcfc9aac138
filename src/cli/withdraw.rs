//! `withdraw`: asks the server to withdraw a published version, as `/withdraw` does.

use std::time::{Duration, Instant};

use alloy_sysext_automation::database::job_steps::{StepOutcome, StepRun};
use alloy_sysext_automation::database::jobs::{
    Job, JobKind, JobState, NewJob, Queued, Trigger, TriggerSource,
};
use alloy_sysext_automation::database::{DATABASE_FILE, Database};
use alloy_sysext_automation::server::config::ServerConfig;
use alloy_sysext_automation::version::Version;
use alloy_sysext_automation::worker::commands::MAX_REASON_CHARS;
use anyhow::Context;
use clap::Args;

/// Withdraw a published version: its lines leave SHA256SUMS (re-signed, put in storage and
/// committed, as a build's change), so no host installs it from then on (hosts that
/// installed it keep it: the README says how to move them back); its release is
/// marked withdrawn; open consumer pull requests for it are closed, and consumers that pin
/// it get a pull request to the newest version still listed. Its files stay in storage for
/// `publish.withdrawn_grace_days`, then go. No release event, dispatch or upstream check
/// publishes it again; only `/rebuild X.Y.Z` does.
///
/// The withdrawal is queued in the server's job queue (DATA_DIR, DATABASE_URL, as `serve`
/// reads them) and run by the server, one job at a time with its builds, exactly as
/// `/withdraw` is; run this where `serve` runs. It waits for the job and prints its outcome;
/// if no server takes it within --wait, the job stays queued and runs when the server runs.
#[derive(Debug, Args)]
pub struct WithdrawArgs {
    /// The version to withdraw, as `1.18.0` or `v1.18.0`.
    #[arg(long)]
    version: Version,
    /// Why, shown on the release, in the manifest's commit message and on the status page.
    #[arg(long)]
    reason: Option<String>,
    /// Seconds to wait for the server to finish the job (0: queue it and return).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    wait: u64,
}

pub fn run(args: WithdrawArgs) -> anyhow::Result<()> {
    let reason = args
        .reason
        .as_deref()
        .map(|r| r.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(reason) = &reason
        && reason.chars().count() > MAX_REASON_CHARS
    {
        anyhow::bail!("--reason is at most {MAX_REASON_CHARS} characters");
    }
    let config = ServerConfig::from_env(|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        if !config.data_dir.is_dir() {
            anyhow::bail!(
                "DATA_DIR {} does not exist: withdraw queues a job for the server, so run it where `serve` runs",
                config.data_dir.display()
            );
        }
        let file = config.data_dir.join(DATABASE_FILE);
        if config.database_url.is_none() && !file.exists() {
            anyhow::bail!(
                "DATA_DIR {} has no {DATABASE_FILE}: `serve` has not run with this DATA_DIR (withdraw queues a job for the server, so run it where `serve` runs, with its DATA_DIR and DATABASE_URL)",
                config.data_dir.display()
            );
        }
        let database =
            Database::open_existing(config.database_url.as_deref(), &config.data_dir).await?;
        let operator = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|login| !login.trim().is_empty());
        let asked_at = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let job = NewJob {
            kind: JobKind::Withdraw,
            version: args.version.clone(),
            rebuild: false,
            dedupe_key: format!("cli:withdraw:{}:{asked_at}", args.version),
            trigger: Trigger {
                source: TriggerSource::Cli,
                user: operator,
                reason,
                ..Trigger::default()
            },
            installation_id: None,
        };
        let Queued::New(id) = database.queue_job(&job).await? else {
            anyhow::bail!("a job with the same key is queued already");
        };
        println!("queued job #{id}: withdraw {}", args.version);
        if args.wait == 0 {
            println!("the server runs it next; `/status` and the status page show its outcome");
            return Ok(());
        }
        let job = wait_for(&database, id, Duration::from_secs(args.wait)).await?;
        report(&job)
    })
}

/// Follows job `id` until it ends or `wait` passes, printing each run of a step once it
/// has ended, in the order the job ran them (read from its record, so none is missed
/// between two looks).
async fn wait_for(database: &Database, id: i64, wait: Duration) -> anyhow::Result<Job> {
    let deadline = Instant::now() + wait;
    let mut shown = 0;
    loop {
        let job = database
            .job(id)
            .await?
            .with_context(|| format!("job #{id} is gone from the queue"))?;
        let runs = database.step_runs(id, id).await?;
        for (_, run) in runs
            .iter()
            .skip(shown)
            .take_while(|(_, run)| run.outcome != StepOutcome::Running)
        {
            println!("{}", step_line(run));
            shown += 1;
        }
        if job.state.is_final() {
            return Ok(job);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "job #{id} is {} after {} s; it stays queued and runs when the server runs (is `serve` running on this DATA_DIR?)",
                job.state,
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `  manifest: ok`, with the attempt when it is not the first.
fn step_line(run: &StepRun) -> String {
    let outcome = run.outcome.as_str();
    if run.attempt > 1 {
        format!("  {}: {outcome} (attempt {})", run.step, run.attempt)
    } else {
        format!("  {}: {outcome}", run.step)
    }
}

/// Prints what the job did, or fails with its error.
fn report(job: &Job) -> anyhow::Result<()> {
    if job.state == JobState::Failed {
        anyhow::bail!(
            "withdrawing {} failed: {}",
            job.version,
            job.error.as_deref().unwrap_or("no error recorded")
        );
    }
    let result = job.result.clone().unwrap_or_default();
    let done = result.withdrawal.unwrap_or_default();
    println!(
        "{} is withdrawn: no host installs it from now on; hosts that installed it keep it",
        job.version
    );
    for file in &done.files {
        println!("  out of SHA256SUMS: {file}");
    }
    if let Some(after) = &done.files_removed_after {
        println!("  its files leave storage after {after}");
    }
    match (&result.release, done.release_marked) {
        (Some(Some(url)), Some(true)) => println!("  release marked withdrawn: {url}"),
        _ => println!("  no release to mark"),
    }
    for url in &done.closed_pull_requests {
        println!("  closed: {url}");
    }
    if let Some(to) = &done.moved_to {
        println!("  consumers that pin {} are moved to {to}", job.version);
    }
    for consumer in result.consumers.iter().flatten() {
        let mut line = format!("  {}: {}", consumer.repo, consumer.outcome.name());
        if let Some(url) = consumer.outcome.pull_request() {
            line.push_str(&format!(" {url}"));
        }
        if let Some(error) = consumer.outcome.error() {
            line.push_str(&format!(" ({error})"));
        }
        println!("{line}");
    }
    Ok(())
}
