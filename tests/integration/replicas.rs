//! Two replicas of the server on loopback, sharing one PostgreSQL database, the fake GitHub
//! and the S3 server (moto), each with its own data directory, as two machines behind a load
//! balancer: deliveries to either are stored and handled once, a replica killed in the
//! middle of a build leaves the job to the other, and one paused past its lease writes
//! nothing after the other took its job over. Leases are short (3 s) to keep the tests
//! short.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::pipeline::{BUILD_REPO, World, assert_published, wait_for_jobs};
use crate::postgres_server;
use crate::serve_process::Server;

/// A replica's environment on top of the world's: the shared database and short leases.
fn replica_env(database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database.to_owned()),
        ("JOB_LEASE_SECONDS", "3".to_owned()),
        ("LEADER_LEASE_SECONDS", "3".to_owned()),
    ]
}

/// A replica of `world`'s server on `database`, keeping its files in `data_dir`.
fn start_replica(world: &World, database: &str, data_dir: &Path) -> Server {
    let mut env = crate::test_app::app_env(&world.github, &world.config);
    env.extend(world.s3.env());
    env.extend(replica_env(database));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(data_dir, &env)
}

/// Two replicas of `world` on a new database, and the database's URL. The second keeps its
/// files in `elsewhere`.
fn two_replicas(world: &World, elsewhere: &Path) -> (Server, Server, String) {
    let database = postgres_server::shared().new_database();
    let first = start_replica(world, &database, world.data.path());
    let second = start_replica(world, &database, elsewhere);
    (first, second, database)
}

/// What `sql` gives in `database`.
fn query(database: &str, sql: &str) -> String {
    postgres_server::shared().query(database, sql)
}

/// How many deliveries of `event` the replica's worker handled, by outcome (`processed`,
/// `ignored`, `failed`), from its `/metrics`.
fn handled(server: &Server, event: &str) -> BTreeMap<String, u64> {
    let metrics = server.get("/metrics").body;
    let prefix = format!("alloy_sysext_webhook_deliveries_total{{event=\"{event}\",outcome=\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (outcome, count) = rest.split_once("\"} ")?;
            let count: f64 = count.trim().parse().ok()?;
            ["processed", "ignored", "failed"]
                .contains(&outcome)
                .then(|| (outcome.to_owned(), count as u64))
        })
        .collect()
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// The replica of the two that runs a job now (its log says it started one).
fn runner<'a>(a: &'a Server, b: &'a Server, starts: usize) -> Option<(&'a Server, &'a Server)> {
    let started = |server: &Server| server.log().matches("\"job started\"").count();
    if started(a) >= starts {
        Some((a, b))
    } else if started(b) >= starts {
        Some((b, a))
    } else {
        None
    }
}

/// Holds the release job in its `release` step for a few seconds: its first read of the
/// release is answered late (a read: nothing is written meanwhile).
fn slow_release_step(world: &World) {
    world.github.fail_next(
        "GET",
        &format!("/repos/{BUILD_REPO}/releases/tags/"),
        crate::fake_github::Failure::Delay(Duration::from_secs(5)),
    );
}

/// Waits until one of the replicas runs the first job at `step`; gives (runner, other).
fn runner_at<'a>(a: &'a Server, b: &'a Server, step: &str) -> (&'a Server, &'a Server) {
    let mut found = None;
    a.wait_for(
        &format!("a replica running the job's {step} step"),
        Duration::from_secs(120),
        || {
            found = runner(a, b, 1);
            found.is_some() && a.get("/api/jobs/1").json()["step"] == step
        },
    );
    found.unwrap()
}

/// The release job's writes to GitHub so far: every request but reads.
fn github_writes(world: &World) -> usize {
    world
        .github
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .count()
}

/// The state a clean run of the release pipeline leaves, on one replica.
fn clean_run_state() -> Value {
    let world = World::new();
    let database = postgres_server::shared().new_database();
    let server = start_replica(&world, &database, world.data.path());
    server.deliver("release-clean", "release", &world.release_payload());
    let jobs = wait_for_jobs(&server, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    comparable(world.state())
}

/// `state` without the count of storage puts: a resumed job puts some files again.
fn comparable(mut state: Value) -> Value {
    state.as_object_mut().unwrap().remove("puts");
    state
}

#[test]
fn the_same_delivery_sent_to_both_replicas_at_once_is_stored_and_handled_once() {
    let world = World::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let (a, b, database) = two_replicas(&world, elsewhere.path());
    let body = world.release_payload();
    let (to_a, to_b) = std::thread::scope(|scope| {
        let to_a = scope.spawn(|| a.deliver("release-twice", "release", &body));
        let to_b = scope.spawn(|| b.deliver("release-twice", "release", &body));
        (to_a.join().unwrap(), to_b.join().unwrap())
    });
    assert_eq!((to_a.status / 100, to_b.status / 100), (2, 2));
    let jobs = wait_for_jobs(&a, 1);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_published(&world, &jobs[0]);
    assert_eq!(
        query(
            &database,
            "SELECT state || ' ' || job_id FROM deliveries WHERE id = 'release-twice'"
        ),
        "processed 1"
    );
    assert_eq!(query(&database, "SELECT COUNT(*) FROM deliveries"), "1");
    assert_eq!(world.github.releases(BUILD_REPO).len(), 1);
    assert_eq!(
        total(&handled(&a, "release")) + total(&handled(&b, "release")),
        1
    );
    // Both replicas show the same queue.
    assert_eq!(
        b.get("/api/jobs").json()["jobs"],
        a.get("/api/jobs").json()["jobs"]
    );
}

#[test]
fn deliveries_spread_over_both_replicas_are_each_stored_and_handled_once() {
    let world = World::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let (a, b, database) = two_replicas(&world, elsewhere.path());
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    std::thread::scope(|scope| {
        for (replica, half) in [(&a, 0), (&b, 1)] {
            scope.spawn(move || {
                for n in (half..200).step_by(2) {
                    let answer = replica.deliver(&format!("ping-{n}"), "ping", ping);
                    assert_eq!(answer.status / 100, 2, "ping-{n}: {}", answer.status);
                }
            });
        }
    });
    a.wait_for("every delivery handled", Duration::from_secs(120), || {
        query(
            &database,
            "SELECT COUNT(*) FROM deliveries WHERE state != 'pending'",
        ) == "200"
    });
    assert_eq!(query(&database, "SELECT COUNT(*) FROM deliveries"), "200");
    assert_eq!(
        query(
            &database,
            "SELECT COUNT(*) FROM deliveries WHERE id LIKE 'ping-%' AND state != 'failed'"
        ),
        "200"
    );
    // Handled once: the two workers' counts add up to the deliveries, not more.
    let (by_a, by_b) = (handled(&a, "ping"), handled(&b, "ping"));
    assert_eq!(total(&by_a) + total(&by_b), 200, "{by_a:?} {by_b:?}");
}

#[test]
fn a_replica_killed_in_the_middle_of_a_build_leaves_the_job_to_the_other() {
    let clean = clean_run_state();
    let world = World::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let (a, b, _database) = two_replicas(&world, elsewhere.path());
    slow_release_step(&world);
    a.deliver("release-kill", "release", &world.release_payload());
    let a_runs = {
        let (running, _) = runner_at(&a, &b, "release");
        std::ptr::eq(running, &a)
    };
    // SIGKILL: no chance to give the lease up; the other replica waits for it to lapse.
    let (killed, survivor) = if a_runs { (a, b) } else { (b, a) };
    killed.kill();
    let jobs = wait_for_jobs(&survivor, 1);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2, "{}", jobs[0]);
    assert!(
        survivor.log().contains("\"job started\""),
        "the survivor resumed the job"
    );
    assert_published(&world, &jobs[0]);
    assert_eq!(comparable(world.state()), clean);
}

#[test]
fn a_replica_paused_past_its_lease_writes_nothing_once_the_other_took_its_job_over() {
    let clean = clean_run_state();
    let world = World::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let (a, b, database) = two_replicas(&world, elsewhere.path());
    slow_release_step(&world);
    a.deliver("release-pause", "release", &world.release_payload());
    let (paused, other) = runner_at(&a, &b, "release");
    paused.signal("STOP");
    // The other replica takes the job over once the lease lapses, and finishes it.
    let jobs = wait_for_jobs(other, 1);
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2, "{}", jobs[0]);
    let writes = github_writes(&world);
    let bucket = world.s3.keys();
    let puts = world.s3.put_count();
    // Woken up, the paused replica finds the job taken over at its next write.
    paused.signal("CONT");
    paused.wait_for(
        "the paused replica to notice",
        Duration::from_secs(60),
        || paused.log().contains("another replica took the job over"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        github_writes(&world),
        writes,
        "a write to GitHub after the takeover"
    );
    assert_eq!(world.s3.keys(), bucket);
    assert_eq!(
        world.s3.put_count(),
        puts,
        "a put to storage after the takeover"
    );
    assert_eq!(
        query(&database, "SELECT state FROM jobs WHERE id = 1"),
        "succeeded"
    );
    assert_published(&world, &jobs[0]);
    assert_eq!(comparable(world.state()), clean);
}

/// The scheduled upstream checks a replica ran, from its `/metrics`.
fn upstream_checks(server: &Server) -> u64 {
    server
        .get("/metrics")
        .body
        .lines()
        .filter_map(|line| line.strip_prefix("alloy_sysext_upstream_checks_total{outcome=\""))
        .filter_map(|rest| rest.split_once("\"} ")?.1.trim().parse::<f64>().ok())
        .map(|count| count as u64)
        .sum()
}

#[test]
fn the_scheduled_upstream_check_runs_once_per_tick_across_the_replicas() {
    let world = World::new();
    // Every minute, and once at start.
    let settings = std::fs::read_to_string(&world.config)
        .unwrap()
        .replace("check_upstream = \"off\"", "check_upstream = \"* * * * *\"");
    std::fs::write(&world.config, settings).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let since_epoch = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // No minute boundary while the replicas start: both are up before the next tick.
    let into_minute = since_epoch(std::time::SystemTime::now()) % 60;
    if into_minute > 35 {
        std::thread::sleep(Duration::from_secs(61 - into_minute));
    }
    let started = std::time::SystemTime::now();
    let (a, b, database) = two_replicas(&world, elsewhere.path());
    assert!(
        since_epoch(std::time::SystemTime::now()) / 60 == since_epoch(started) / 60,
        "a minute's tick passed while the replicas started"
    );
    // Wait past the first minute's tick that is at least 10 s away, and 8 s more.
    let tick = (since_epoch(started) + 10) / 60 * 60 + 60;
    let measure = tick + 8;
    let now = since_epoch(std::time::SystemTime::now());
    std::thread::sleep(Duration::from_secs(measure.saturating_sub(now)));
    // Every minute boundary since the start, and the schedule's last time before it (run at
    // the first replica's start): each checked once, by one replica or the other.
    let ticks = 1 + (since_epoch(started) / 60 + 1..=measure / 60).count() as u64;
    let (by_a, by_b) = (upstream_checks(&a), upstream_checks(&b));
    assert_eq!(by_a + by_b, ticks, "a: {by_a}, b: {by_b}");
    assert_eq!(
        query(&database, "SELECT COUNT(*) FROM scheduled_runs"),
        "1",
        "one task's ticks"
    );
    // The new upstream version was queued once, however many checks found it.
    assert_eq!(
        query(
            &database,
            "SELECT COUNT(*) FROM jobs WHERE version = '1.18.0'"
        ),
        "1"
    );
}

#[test]
fn a_rolling_deploy_loses_no_delivery_and_no_job_step() {
    let world = World::new();
    let commits_before = world.github.commits(BUILD_REPO, "main").len();
    let elsewhere = tempfile::tempdir().unwrap();
    let (a, b, database) = two_replicas(&world, elsewhere.path());
    slow_release_step(&world);
    a.deliver("release-roll", "release", &world.release_payload());
    let a_runs = {
        let (running, _) = runner_at(&a, &b, "release");
        std::ptr::eq(running, &a)
    };
    // The machine running the job is replaced first: SIGTERM, as the platform stops it.
    let (mut replaced, other) = if a_runs { (a, b) } else { (b, a) };
    let data_dir = replaced.data_dir.clone();
    assert!(replaced.terminate().success());
    assert!(
        replaced.log().contains("leases given up"),
        "the stopping replica gave its leases up"
    );
    // Deliveries meanwhile go to the replica still running.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    for n in 0..20 {
        let answer = other.deliver(&format!("ping-roll-{n}"), "ping", ping);
        assert_eq!(answer.status / 100, 2, "ping-roll-{n}: {}", answer.status);
    }
    // The new version starts in its place, then the other is replaced too.
    let new_first = start_replica(&world, &database, &data_dir);
    let jobs = wait_for_jobs(&new_first, 1);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded", "{}", jobs[0]);
    let mut other = other;
    let other_dir = other.data_dir.clone();
    assert!(other.terminate().success());
    let new_second = start_replica(&world, &database, &other_dir);
    new_second.wait_for("every delivery handled", Duration::from_secs(60), || {
        query(
            &database,
            "SELECT COUNT(*) FROM deliveries WHERE state IN ('processed', 'ignored')",
        ) == "21"
    });
    assert_published(&world, &jobs[0]);
    assert_eq!(world.github.releases(BUILD_REPO).len(), 1);
    // Every step of the job ran to its end. The one the deploy cut short, and those after
    // it, once; the ones before it ran again on the other machine, which lacked the work
    // files, and changed nothing there (one manifest commit and its signature's).
    let ok = |step: &str| {
        query(
            &database,
            &format!(
                "SELECT COUNT(*) FROM job_steps WHERE job_id = 1 AND step = '{step}' AND outcome = 'ok'"
            ),
        )
    };
    for step in ["download", "build", "upload", "manifest"] {
        assert_ne!(ok(step), "0", "{step}");
    }
    for step in ["release", "consumers", "report"] {
        assert_eq!(ok(step), "1", "{step}");
    }
    assert_eq!(
        world.github.commits(BUILD_REPO, "main").len(),
        commits_before + 2
    );
}
