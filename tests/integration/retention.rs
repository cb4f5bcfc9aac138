//! What strangers can cost on disk: the payloads of handled deliveries, and the workflow
//! runs, older than `RETENTION_DAYS` are deleted by the real server (at start, then hourly),
//! while each delivery's record stays and `/api/deliveries/{id}` still answers.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::app_server::start_app_server;
use crate::fake_github::FakeGitHub;
use crate::serve_process::free_port;
use crate::test_app::install_app;

const BUILD_REPO: &str = "noahwhite/alloy-sysext-build";

/// Runs `statement` on the server's database, which may be open in the server meanwhile
/// (WAL), and returns the first column of each row as text.
fn sql(data_dir: &Path, statement: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Row;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(data_dir.join("alloy-sysext.db"))
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>(0)
                    .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                    .unwrap_or_default()
            })
            .collect()
    })
}

fn payload(data_dir: &Path, id: &str) -> String {
    sql(
        data_dir,
        &format!("SELECT payload FROM deliveries WHERE id = '{id}'"),
    )
    .pop()
    .unwrap()
}

#[test]
fn old_handled_payloads_and_workflow_runs_are_deleted_and_the_records_stay() {
    let github = FakeGitHub::start();
    install_app(&github, &[(77, "noahwhite")]);
    github.add_repo(BUILD_REPO, "main");
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    let ping =
        serde_json::to_vec(&json!({"zen": "Keep it logically awesome.", "hook_id": 1})).unwrap();
    let run = serde_json::to_vec(&json!({
        "action": "completed",
        "workflow_run": {
            "id": 555,
            "name": "CI",
            "head_branch": "main",
            "conclusion": "success",
            "html_url": "https://github.com/noahwhite/alloy-sysext-build/actions/runs/555",
        },
        "repository": {"full_name": BUILD_REPO},
        "sender": {"login": "noahwhite", "type": "User"},
        "installation": {"id": 77},
    }))
    .unwrap();
    server.deliver("old-ping", "ping", &ping);
    server.deliver("old-run", "workflow_run", &run);
    server.deliver("recent-ping", "ping", &ping);
    server.wait_for(
        "the deliveries to be handled",
        Duration::from_secs(30),
        || {
            ["old-ping", "old-run", "recent-ping"]
                .iter()
                .all(|id| server.get(&format!("/api/deliveries/{id}")).json()["state"] != "pending")
        },
    );
    let before = server.get("/api/deliveries/old-ping").json();
    assert_eq!(
        sql(data.path(), "SELECT COUNT(*) FROM workflow_runs"),
        ["1"]
    );
    drop(server);

    // Two of them were received 31 days ago: past the default retention of 30 days.
    let long_ago = alloy_sysext_automation::database::timestamp::format(
        time::OffsetDateTime::now_utc() - time::Duration::days(31),
    );
    sql(
        data.path(),
        &format!(
            "UPDATE deliveries SET received_at = '{long_ago}' WHERE id IN ('old-ping', 'old-run')"
        ),
    );
    sql(
        data.path(),
        &format!("UPDATE workflow_runs SET received_at = '{long_ago}'"),
    );

    let server = start_app_server(&github, data.path(), free_port());
    server.wait_for("the sweep at start", Duration::from_secs(30), || {
        payload(data.path(), "old-ping").is_empty() && payload(data.path(), "old-run").is_empty()
    });
    assert_eq!(
        sql(data.path(), "SELECT COUNT(*) FROM workflow_runs"),
        ["0"]
    );
    assert!(payload(data.path(), "recent-ping").contains("logically awesome"));
    // The record stays, as it was.
    let after = server.get("/api/deliveries/old-ping");
    assert_eq!(after.status, 200);
    let after = after.json();
    for field in ["id", "event", "state", "processed_at", "job_id"] {
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    assert_eq!(after["event"], "ping");
}
