//! Release asset downloads through the one GitHub client: counted in the request metrics,
//! redirected to a storage host that never sees the credentials, and given up when they
//! stall.

use std::time::Duration;

use alloy_sysext_automation::github::api::{Auth, GitHubApi};
use alloy_sysext_automation::github::rate_limit::RetryPolicy;
use alloy_sysext_automation::github::release_asset::{AssetError, PublicReleases};

use crate::app_server::{
    BUILD_REPO, comment_payload, github_with_app, start_app_server, wait_for_replies,
};
use crate::common::*;
use crate::fake_github::FakeGitHub;
use crate::serve_process::{Server, free_port};
use crate::test_app::add_upstream_alloy;

const ASSET_ROUTE: &str = "/repos/grafana/alloy/releases/assets/";

/// The sum of `alloy_sysext_github_requests_total` over all its labels.
fn github_requests_counted(server: &Server) -> f64 {
    server
        .get("/metrics")
        .body
        .lines()
        .filter(|line| line.starts_with("alloy_sysext_github_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_job_downloads_through_the_api_client_and_the_storage_host_gets_no_credentials() {
    let github = github_with_app();
    github.set_permission(BUILD_REPO, "writer", "write");
    github.serve_assets_from_another_host();
    let data = tempfile::tempdir().unwrap();
    let server = start_app_server(&github, data.path(), free_port());
    server.deliver(
        "d-storage",
        "issue_comment",
        &comment_payload(601, "writer", "/build 1.17.1"),
    );
    let replies = wait_for_replies(&server, &github, 1);
    assert!(
        replies[0].contains("built, signed and published"),
        "{}",
        replies[0]
    );

    // The asset API was asked with the installation's token; the storage host it redirected
    // to got the asset without it.
    let asset_requests: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(ASSET_ROUTE))
        .collect();
    assert_eq!(asset_requests.len(), 1, "{asset_requests:?}");
    assert!(
        asset_requests[0]
            .authorization
            .as_deref()
            .is_some_and(|auth| auth.starts_with("token ")),
        "{asset_requests:?}"
    );
    let stored = github.storage_host_requests();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].path.starts_with("/storage/"), "{stored:?}");
    assert_eq!(stored[0].authorization, None, "{stored:?}");
    assert_eq!(github.downloads(), ["alloy-linux-amd64.zip"]);

    // Every request the fake GitHub answered, the download included, is counted once.
    server.wait_for(
        "the metrics to count every request GitHub answered",
        Duration::from_secs(30),
        || github_requests_counted(&server) == github.requests().len() as f64,
    );
}

/// `build` with `GITHUB_TOKEN`: the token goes to the API, not to the storage host.
#[test]
fn the_build_command_sends_its_token_to_the_api_only() {
    let github = FakeGitHub::start();
    add_upstream_alloy(&github, "1.17.1");
    github.accept_personal_token("ghp_build");
    github.serve_assets_from_another_host();
    let out = tempfile::tempdir().unwrap();
    run_ok(
        cli()
            .args([
                "build",
                "--version",
                "1.17.1",
                "--no-sign",
                "--arch",
                "amd64",
                "--out",
            ])
            .arg(out.path())
            .env("GITHUB_API_URL", &github.url)
            .env("GITHUB_TOKEN", "ghp_build"),
    );
    assert!(out.path().join("alloy-1.17.1-amd64.raw").is_file());
    let asked: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/repos/grafana/alloy/"))
        .collect();
    assert_eq!(asked.len(), 2, "the release and its asset: {asked:?}");
    for request in &asked {
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer ghp_build"),
            "{request:?}"
        );
    }
    let stored = github.storage_host_requests();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].authorization, None, "{stored:?}");
}

#[test]
fn a_download_that_stalls_is_given_up_as_transient() {
    let github = FakeGitHub::start();
    add_upstream_alloy(&github, "1.17.1");
    // Half the asset at once, the rest long after the client's read timeout.
    github.set_asset_delay(Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = runtime.block_on(async {
        let api = GitHubApi::with_personal_token(&github.url, None, RetryPolicy::default())
            .unwrap()
            .with_read_timeout(Duration::from_millis(300));
        let upstream = PublicReleases {
            api: &api,
            auth: Auth::Anonymous,
            acting_repository: "grafana/alloy",
            repo: "grafana/alloy",
        };
        let release = upstream.release("v1.17.1").await.unwrap();
        let dest = tempfile::tempdir().unwrap();
        upstream
            .download_checked(
                &release,
                "alloy-linux-amd64.zip",
                &dest.path().join("alloy.zip"),
                &|_, _| {},
            )
            .await
            .expect_err("a stalled download fails")
    });
    let AssetError::Download { source, .. } = &error else {
        panic!("not a download error: {error}");
    };
    assert!(source.is_transient(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("alloy-linux-amd64.zip")
            && message.contains("broke off after")
            && message.contains("nothing arrived for 300ms"),
        "{message}"
    );
    assert_eq!(github.downloads(), ["alloy-linux-amd64.zip"]);
}
