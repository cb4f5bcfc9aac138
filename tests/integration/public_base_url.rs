//! The address a real `serve` with local storage (`DATA_DIR/images`) gives for its images,
//! in the release notes, the pull requests, the reply and the status page: its own
//! `PUBLIC_URL/images/`; `publish.base_url` when the settings file sets it; and without
//! either, no public address at all (the status page links `/images/` on the same server
//! and says what hosts need), never the production bucket's domain.

use std::fs;
use std::time::Duration;

use alloy_sysext_automation::settings::public_base_url::NO_PUBLIC_BASE_URL;
use serde_json::Value;

use crate::app_server::{BUILD_REPO, comment_payload, github_with_app, wait_for_replies};
use crate::common::fixture;
use crate::fake_github::FakeGitHub;
use crate::serve_process::{Server, free_port};
use crate::test_app::app_env;

const VERSION: &str = "1.17.1";
const IMAGE: &str = "alloy-1.17.1-amd64.raw";
const CONSUMER: &str = "noahwhite/ghost-stack";
const CONSUMER_PATH: &str = "hosts/ghost.bu";
/// The production bucket's domain, which a server with local storage never names.
const BUCKET_DOMAIN: &str = "separationofconcerns.dev";

/// A server with local storage, the settings `settings` (no schedule) and the extra
/// environment `env`, on `port`, that has built `VERSION` for a `/build` comment. The
/// consumer `CONSUMER` holds the real ghost.bu, so the job also opens a pull request there.
struct Built {
    github: FakeGitHub,
    data: tempfile::TempDir,
    server: Server,
    job: Value,
}

fn build(port: u16, settings: &str, env: &[(&str, &str)]) -> Built {
    let github = github_with_app();
    github.add_repo(CONSUMER, "develop");
    github.set_file(
        CONSUMER,
        "develop",
        CONSUMER_PATH,
        fs::read(fixture("real-world/ghost.bu")).unwrap(),
    );
    github.set_permission(BUILD_REPO, "writer", "write");
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("settings.toml");
    fs::write(
        &config,
        format!(
            "[[consumers]]\nrepo = \"{CONSUMER}\"\npath = \"{CONSUMER_PATH}\"\nbase = \"develop\"\n\n[schedule]\ncheck_upstream = \"off\"\n\n{settings}"
        ),
    )
    .unwrap();
    let mut all = app_env(&github, &config);
    all.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_on(port, data.path(), &all);
    let body = comment_payload(801, "writer", &format!("/build {VERSION}"));
    assert_eq!(
        server.deliver("d-base-url", "issue_comment", &body).status,
        202
    );
    let mut job = Value::Null;
    server.wait_for("the build to succeed", Duration::from_secs(120), || {
        job = server.get("/api/jobs").json()["jobs"][0].clone();
        assert_ne!(job["state"], "failed", "{job}");
        job["state"] == "succeeded"
    });
    Built {
        github,
        data,
        server,
        job,
    }
}

impl Built {
    fn sha256(&self) -> String {
        self.job["result"]["images"][0]["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The image table that ends the release's notes.
    fn release_table(&self) -> String {
        let releases = self.github.releases(BUILD_REPO);
        assert_eq!(releases.len(), 1, "{releases:?}");
        let body = &releases[0].body;
        assert!(!body.contains(BUCKET_DOMAIN), "{body}");
        let start = body
            .find("| image | sha256 | provenance |")
            .expect("the image table");
        body[start..].to_owned()
    }

    /// The `## Links` section of the consumer's pull request.
    fn pull_links(&self) -> String {
        let pulls = self.github.pulls(CONSUMER);
        assert_eq!(pulls.len(), 1, "{pulls:?}");
        let body = &pulls[0].body;
        assert!(!body.contains(BUCKET_DOMAIN), "{body}");
        let start = body.find("## Links\n\n").expect("the links");
        body[start..].to_owned()
    }

    /// The `/build` reply's row for the image.
    fn reply_row(&self) -> String {
        let replies = wait_for_replies(&self.server, &self.github, 1);
        let reply = replies.last().unwrap();
        assert!(!reply.contains(BUCKET_DOMAIN), "{reply}");
        reply
            .lines()
            .find(|line| line.contains(IMAGE))
            .unwrap_or_else(|| panic!("no row for the image in {reply}"))
            .to_owned()
    }

    fn status_page(&self) -> String {
        let page = self.server.get("/");
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(!page.body.contains(BUCKET_DOMAIN), "{}", page.body);
        page.body
    }

    /// The `.sha256` file of the image as the job wrote it in `DATA_DIR/images`.
    fn stored_checksum(&self) -> String {
        fs::read_to_string(
            self.data
                .path()
                .join("images")
                .join(format!("{IMAGE}.sha256")),
        )
        .unwrap()
    }

    /// Asserts that `base` is the images' address everywhere the job and the status page
    /// name it.
    fn assert_published_at(&self, base: &str) {
        let sha256 = self.sha256();
        let size = &self.job["result"]["images"][0]["size"];
        assert_eq!(
            self.job["result"]["images"][0]["url"],
            format!("{base}{IMAGE}")
        );
        assert_eq!(
            self.release_table(),
            format!(
                "| image | sha256 | provenance |\n|---|---|---|\n\
                 | [`{IMAGE}`]({base}{IMAGE}) | `{sha256}` \
                 | [`{IMAGE}.intoto.json`]({base}{IMAGE}.intoto.json) \
                 ([signature]({base}{IMAGE}.intoto.json.asc)) |\n"
            )
        );
        let links = self.pull_links();
        assert!(
            links.starts_with(&format!(
                "## Links\n\n- Image: {base}{IMAGE}\n- Checksum: {base}{IMAGE}.sha256\n"
            )),
            "{links}"
        );
        assert_eq!(
            self.reply_row(),
            format!("| [`{IMAGE}`]({base}{IMAGE}) | {size} | `{sha256}` |")
        );
        let page = self.status_page();
        for link in [
            format!(
                "<a href=\"{base}{IMAGE}\">{IMAGE}</a> · <a href=\"{base}{IMAGE}.sha256\">.sha256</a> · <a href=\"{base}{IMAGE}.asc\">.asc</a>"
            ),
            format!("<a href=\"{base}SHA256SUMS\">SHA256SUMS</a>"),
        ] {
            assert!(page.contains(&link), "no {link} in:\n{page}");
        }
    }
}

/// The base URL `PUBLIC_URL/images/` of a server on `port`.
fn served_here(port: u16) -> String {
    format!("http://127.0.0.1:{port}/images/")
}

#[test]
fn with_public_url_local_images_are_published_at_the_servers_own_address() {
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let built = build(
        port,
        "",
        &[("PUBLIC_URL", &public_url), ("STATUS_PUBLIC", "true")],
    );
    let base = served_here(port);
    built.assert_published_at(&base);
    assert!(
        built.status_page().contains(&format!(
            "<a href=\"{base}\">{base}</a> <span class=\"muted\">(PUBLIC_URL + /images/: storage is the local directory this server serves)</span>"
        )),
        "{}",
        built.status_page()
    );
    // The address is this server's: what it links is what the job stored.
    let path = format!("/images/{IMAGE}.sha256");
    assert_eq!(built.server.get(&path).body, built.stored_checksum());
    assert!(!built.server.log().contains(NO_PUBLIC_BASE_URL));
}

#[test]
fn a_base_url_in_the_settings_file_is_the_address_even_with_public_url() {
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let built = build(
        port,
        "[publish]\nbase_url = \"https://images.example.test/sysext\"\n",
        &[("PUBLIC_URL", &public_url), ("STATUS_PUBLIC", "true")],
    );
    let base = "https://images.example.test/sysext/";
    built.assert_published_at(base);
    assert!(
        built.status_page().contains(&format!(
            "<a href=\"{base}\">{base}</a> <span class=\"muted\">(publish.base_url in CONFIG_FILE)</span>"
        )),
        "{}",
        built.status_page()
    );
}

#[test]
fn without_public_url_nothing_names_a_public_address_and_the_status_page_says_what_hosts_need() {
    let built = build(free_port(), "", &[]);
    let sha256 = built.sha256();
    let size = &built.job["result"]["images"][0]["size"];
    assert_eq!(built.job["result"]["images"][0]["url"], "");
    // The release and the reply name the image without a link.
    assert_eq!(
        built.release_table(),
        format!(
            "| image | sha256 | provenance |\n|---|---|---|\n\
             | `{IMAGE}` | `{sha256}` | `{IMAGE}.intoto.json` |\n"
        )
    );
    assert_eq!(
        built.reply_row(),
        format!("| `{IMAGE}` | {size} | `{sha256}` |")
    );
    // The pull request says why there is no link, and which settings give one.
    let links = built.pull_links();
    assert!(
        links.starts_with(&format!(
            "## Links\n\n- Image: `{IMAGE}` (no link: the server that built it has no public URL for its images; set `PUBLIC_URL` or `publish.base_url` on it)\n- Upstream release notes: "
        )),
        "{links}"
    );

    // The status page links the server's own route, and says what hosts need.
    let page = built.status_page();
    for shown in [
        format!(
            "<a href=\"/images/{IMAGE}\">{IMAGE}</a> · <a href=\"/images/{IMAGE}.sha256\">.sha256</a> · <a href=\"/images/{IMAGE}.asc\">.asc</a>"
        ),
        "<a href=\"/images/SHA256SUMS\">SHA256SUMS</a>".to_owned(),
        format!(
            "<td><code>/images/</code> on this server <span class=\"badge warn\">not public</span><div class=\"reason\">{NO_PUBLIC_BASE_URL}</div></td>"
        ),
    ] {
        assert!(page.contains(&shown), "no {shown} in:\n{page}");
    }
    assert!(NO_PUBLIC_BASE_URL.contains("PUBLIC_URL (or publish.base_url"));
    // The relative link reaches what the job stored.
    let path = format!("/images/{IMAGE}.sha256");
    assert_eq!(built.server.get(&path).body, built.stored_checksum());
    // The start-up log says it once.
    assert_eq!(built.server.log().matches(NO_PUBLIC_BASE_URL).count(), 1);
}
