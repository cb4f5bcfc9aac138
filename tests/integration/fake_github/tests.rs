//! Self-tests of the App, token, webhook, comment and download parts.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::answers::{DOCS, unix_now};
use super::app::APP_OWNER;
use super::test_support::*;
use super::{Asset, Failure, FakeComment, FakeGitHub};
use crate::http::{HeadedResponse, request};

fn app_jwts_are_checked_like_github_does() {
    let github = github_with_app();
    for iss in [json!(APP_ID.to_string()), json!(APP_ID)] {
        let token = jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": iss}));
        let response = call(&github, "GET", "/app", Some(&format!("Bearer {token}")), "");
        assert_eq!(response.status, 200, "{}", response.body);
        let app = response.json();
        assert_eq!(app["id"], APP_ID);
        assert_eq!(app["slug"], "alloy-bot");
        assert_eq!(app["owner"]["login"], APP_OWNER);
        serde_json::from_value::<octocrab::models::App>(app).unwrap();
    }

    let valid = app_jwt();
    let other = jwt(json!({"iat": now() - 60, "exp": now() + 540, "iss": "4243"}));
    // A valid header and claims with another token's signature.
    let (signed, _) = other.rsplit_once('.').unwrap();
    let (_, signature) = valid.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{signature}");
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID}),
        &EncodingKey::from_secret(PUBLIC_KEY.as_bytes()),
    )
    .unwrap();
    let refused = [
        (None, "could not be decoded"),
        (Some("Bearer not-a-jwt".to_owned()), "could not be decoded"),
        (Some(format!("token {valid}")), "could not be decoded"),
        (Some(format!("Bearer {other}")), "could not be decoded"),
        (Some(format!("Bearer {forged}")), "could not be decoded"),
        (Some(format!("Bearer {hs256}")), "could not be decoded"),
        (
            Some(format!(
                "Bearer {}",
                jwt(json!({"iat": now() - 700, "exp": now() - 100, "iss": APP_ID}))
            )),
            "'exp'",
        ),
        (
            Some(format!(
                "Bearer {}",
                jwt(json!({"iat": now() - 60, "exp": now() + 600, "iss": APP_ID}))
            )),
            "too far in the future",
        ),
        (
            Some(format!(
                "Bearer {}",
                jwt(json!({"iat": now() + 120, "exp": now() + 500, "iss": APP_ID}))
            )),
            "'iat'",
        ),
        (
            Some(format!(
                "Bearer {}",
                jwt(json!({"exp": now() + 500, "iss": APP_ID}))
            )),
            "'iat'",
        ),
    ];
    for (authorization, message) in &refused {
        let response = call(&github, "GET", "/app", authorization.as_deref(), "");
        assert_eq!(response.status, 401, "{authorization:?}: {}", response.body);
        let body = response.json();
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{authorization:?}: {body}"
        );
        assert_eq!(body["documentation_url"], DOCS);
    }
    assert_eq!(github.unauthorized_responses(), refused.len());
    // The JWT routes refuse installation tokens too.
    let token = issue_token(&github);
    let response = call(&github, "GET", "/app", Some(&format!("token {token}")), "");
    assert_eq!(response.status, 401);
    assert_eq!(github.unauthorized_responses(), refused.len() + 1);

    let requests = github.requests();
    assert_eq!(requests.len(), 2 + refused.len() + 2);
    assert_eq!(requests[0].path, "/app");
    assert_eq!(requests[0].status, 200);
    assert!(
        requests[0]
            .authorization
            .as_ref()
            .unwrap()
            .starts_with("Bearer ey")
    );
    assert_eq!(requests[2].authorization, None);
    assert_eq!(requests[2].status, 401);
}

#[test]
fn installation_tokens_are_issued_reach_their_account_and_expire() {
    let github = github_with_app();
    let jwt = format!("Bearer {}", app_jwt());
    let issue = |installation: u64| {
        let path = format!("/app/installations/{installation}/access_tokens");
        call(&github, "POST", &path, Some(&jwt), "{}")
    };
    let lifetime_of = |issued: &Value| {
        let expires_at = time::OffsetDateTime::parse(
            issued["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        expires_at.unix_timestamp() - now()
    };
    assert_eq!(issue(78).status, 404);

    github.set_token_lifetime(Duration::from_secs(1));
    let response = issue(INSTALLATION);
    assert_eq!(response.status, 201, "{}", response.body);
    let issued = response.json();
    let short = issued["token"].as_str().unwrap().to_owned();
    assert!(short.starts_with("ghs_") && short.len() > 30, "{short}");
    assert!((0..=1).contains(&lifetime_of(&issued)), "{issued}");
    serde_json::from_value::<octocrab::models::InstallationToken>(issued).unwrap();
    let short_issued = Instant::now();

    // The lifetime applies to tokens issued afterwards.
    github.set_token_lifetime(Duration::from_secs(3600));
    let issued = issue(INSTALLATION).json();
    assert!((3599..=3600).contains(&lifetime_of(&issued)), "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_ne!(token, short);
    assert_eq!(github.tokens_issued(), 2);

    github.set_permission("Acme/Site", "Alice", "maintain");
    let path = "/repos/acme/site/collaborators/alice/permission";
    for authorization in [format!("token {token}"), format!("Bearer {token}")] {
        let response = call(&github, "GET", path, Some(&authorization), "");
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        assert_eq!(body["permission"], "write");
        assert_eq!(body["role_name"], "maintain");
        assert_eq!(body["user"]["login"], "alice");
        assert_eq!(body["user"]["permissions"]["maintain"], true);
        assert_eq!(body["user"]["permissions"]["admin"], false);
    }
    let response = call(
        &github,
        "GET",
        "/repos/acme/site/collaborators/bob/permission",
        Some(&format!("token {token}")),
        "",
    );
    assert_eq!(response.json()["permission"], "read");
    // Outside the installation's account the repository does not exist.
    let response = call(
        &github,
        "GET",
        "/repos/other/site/collaborators/bob/permission",
        Some(&format!("token {token}")),
        "",
    );
    assert_eq!(response.status, 404);

    // The public release routes take no token, a valid one, but not a bad one.
    github.add_release("grafana/alloy", "v1.0.0", vec![]);
    let release = "/repos/grafana/alloy/releases/tags/v1.0.0";
    assert_eq!(call(&github, "GET", release, None, "").status, 200);
    let with_token = format!("Bearer {token}");
    assert_eq!(
        call(&github, "GET", release, Some(&with_token), "").status,
        200
    );
    assert_eq!(
        call(&github, "GET", release, Some("Bearer nope"), "").status,
        401
    );
    github.accept_personal_token("nope");
    assert_eq!(
        call(&github, "GET", release, Some("Bearer nope"), "").status,
        200
    );
    assert_eq!(github.unauthorized_responses(), 1);

    std::thread::sleep(Duration::from_millis(1100).saturating_sub(short_issued.elapsed()));
    let response = call(&github, "GET", path, Some(&format!("token {short}")), "");
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["message"], "Bad credentials");
    assert_eq!(call(&github, "GET", path, None, "").status, 401);
    assert_eq!(github.unauthorized_responses(), 3);
    let response = call(&github, "GET", path, Some(&format!("token {token}")), "");
    assert_eq!(response.status, 200);
}

#[test]
fn a_scoped_token_reaches_only_its_repository_with_only_its_permissions() {
    let github = github_with_app();
    github.add_repo("acme/site", "main");
    github.add_repo("acme/secrets", "main");
    github.set_file("acme/site", "main", "a b#1.txt", "site\n");
    github.set_file("acme/secrets", "main", "key.txt", "secret\n");
    github.add_release("grafana/alloy", "v1.0.0", vec![]);
    let jwt = format!("Bearer {}", app_jwt());
    let issue = |body: &str| {
        call(
            &github,
            "POST",
            &format!("/app/installations/{INSTALLATION}/access_tokens"),
            Some(&jwt),
            body,
        )
    };
    let response = issue(r#"{"repositories": ["site"], "permissions": {"contents": "read"}}"#);
    assert_eq!(response.status, 201, "{}", response.body);
    let issued = response.json();
    assert_eq!(issued["repository_selection"], "selected");
    assert_eq!(
        issued["permissions"],
        json!({"contents": "read", "metadata": "read"})
    );
    let token = format!("token {}", issued["token"].as_str().unwrap());

    // Its repository, read, with the path decoded.
    let response = call(
        &github,
        "GET",
        "/repos/acme/site/contents/a%20b%231.txt",
        Some(&token),
        "",
    );
    assert_eq!(response.status, 200, "{}", response.body);
    // Another repository of the same installation does not exist for it.
    let response = call(
        &github,
        "GET",
        "/repos/acme/secrets/contents/key.txt",
        Some(&token),
        "",
    );
    assert_eq!(response.status, 404, "{}", response.body);
    // Writing needs contents: write; pull requests need their own permission.
    let put = call(
        &github,
        "PUT",
        "/repos/acme/site/contents/new.txt",
        Some(&token),
        r#"{"message": "m", "content": "eA=="}"#,
    );
    assert_eq!(put.status, 403, "{}", put.body);
    assert_eq!(
        put.json()["message"],
        "Resource not accessible by integration"
    );
    let pulls = call(&github, "GET", "/repos/acme/site/pulls", Some(&token), "");
    assert_eq!(pulls.status, 403, "{}", pulls.body);
    assert_eq!(github.file("acme/site", "main", "new.txt"), None);
    // Public data elsewhere stays readable.
    let release = call(
        &github,
        "GET",
        "/repos/grafana/alloy/releases/tags/v1.0.0",
        Some(&token),
        "",
    );
    assert_eq!(release.status, 200, "{}", release.body);

    // More than the App has is refused, and so is an unknown permission.
    assert_eq!(
        issue(r#"{"permissions": {"actions": "write"}}"#).status,
        422
    );
    assert_eq!(
        issue(r#"{"permissions": {"administration": "read"}}"#).status,
        422
    );
    // So is a repository the installation does not have.
    assert_eq!(issue(r#"{"repositories": ["nowhere"]}"#).status, 422);
    assert_eq!(issue(r#"{"repositories": ["alloy"]}"#).status, 422);
    let scopes = github.token_scopes();
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0].repositories, Some(vec!["site".to_owned()]));
}

#[test]
fn queued_failures_replace_the_next_matching_answer() {
    let github = FakeGitHub::start();
    github.add_release("grafana/alloy", "v1.0.0", vec![]);
    let release = "/repos/grafana/alloy/releases/tags/v1.0.0";

    let first = call(&github, "GET", release, None, "");
    let second = call(&github, "GET", "/nowhere", None, "");
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 404);
    assert_eq!(second.json()["message"], "Not Found");
    assert_eq!(first.header("x-ratelimit-limit"), Some("5000"));
    let remaining =
        |r: &HeadedResponse| -> u64 { r.header("x-ratelimit-remaining").unwrap().parse().unwrap() };
    assert_eq!(remaining(&first), remaining(&second) + 1);
    let reset: u64 = first.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset > unix_now());

    github.fail_next(
        "GET",
        "/repos/grafana",
        Failure::RateLimited {
            reset_in: Duration::from_millis(90_500),
        },
    );
    github.fail_next(
        "GET",
        "/repos/",
        Failure::SecondaryRateLimit { retry_after: 7 },
    );
    github.fail_next("GET", "/repos/", Failure::ServerError(502));
    // Neither another method nor another path uses them.
    assert_eq!(call(&github, "POST", release, None, "").status, 405);
    assert_eq!(call(&github, "GET", "/storage/1", None, "").status, 404);

    let limited = call(&github, "GET", release, None, "");
    assert_eq!(limited.status, 403);
    assert!(
        limited.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("API rate limit exceeded")
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.header("x-ratelimit-limit"), Some("5000"));
    let reset: u64 = limited
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!((91..=92).contains(&(reset - unix_now())), "{reset}");

    let secondary = call(&github, "GET", release, None, "");
    assert_eq!(secondary.status, 403);
    assert_eq!(secondary.header("retry-after"), Some("7"));
    assert!(remaining(&secondary) > 0);
    let message = secondary.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("secondary rate limit"), "{message}");
    assert!(message.contains(secondary.header("x-github-request-id").unwrap()));

    let broken = call(&github, "GET", release, None, "");
    assert_eq!(broken.status, 502);
    assert_eq!(broken.json()["message"], "Bad Gateway");
    assert_eq!(call(&github, "GET", release, None, "").status, 200);

    let requests = github.requests();
    let ids: HashSet<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), requests.len());
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 404, 405, 404, 403, 403, 502, 200]);
}

/// A request a webhook target received: its headers (names lowercased) and body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver answering `status` to each request, handing over what it got.
fn webhook_target(status: u16) -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let length = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            write!(
                stream,
                "HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )
            .unwrap();
            if sender.send((headers, body)).is_err() {
                break;
            }
        }
    });
    (port, receiver)
}

#[test]
fn redelivery_sends_the_stored_delivery_to_the_webhook_target() {
    let github = github_with_app();
    let (port, received) = webhook_target(202);
    github.set_webhook_target(port, "/webhook", "s3cret");
    let body =
        br#"{"action":"created","installation":{"id":77},"repository":{"id":12345}}"#.to_vec();
    let id = github.add_failed_delivery("guid-1", "issue_comment", Some("created"), body.clone());
    let jwt = format!("Bearer {}", app_jwt());

    let listed = call(&github, "GET", "/app/hook/deliveries", Some(&jwt), "");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let failed = &listed[0];
    assert_eq!(failed["id"], id);
    assert_eq!(failed["guid"], "guid-1");
    assert_eq!(failed["status_code"], 502);
    assert_eq!(failed["status"], "Invalid HTTP Response: 502");
    assert_eq!(failed["redelivery"], false);
    assert_eq!(failed["event"], "issue_comment");
    assert_eq!(failed["action"], "created");
    assert_eq!(failed["installation_id"], 77);
    assert_eq!(failed["repository_id"], 12345);

    let path = format!("/app/hook/deliveries/{id}/attempts");
    assert_eq!(call(&github, "POST", &path, None, "").status, 401);
    assert_eq!(
        call(
            &github,
            "POST",
            "/app/hook/deliveries/1/attempts",
            Some(&jwt),
            ""
        )
        .status,
        404
    );
    let accepted = call(&github, "POST", &path, Some(&jwt), "");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.json(), json!({}));
    assert_eq!(github.redelivery_attempts(), ["guid-1"]);

    let (headers, delivered) = received.recv_timeout(Duration::from_secs(10)).unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(delivered, body);
    assert_eq!(header("x-github-delivery"), Some("guid-1"));
    assert_eq!(header("x-github-event"), Some("issue_comment"));
    assert_eq!(header("content-type"), Some("application/json"));
    let signature = alloy_sysext_automation::server::signature::sign("s3cret", &body);
    assert_eq!(header("x-hub-signature-256"), Some(signature.as_str()));

    let redelivered = github.wait_for_redeliveries(1, Duration::from_secs(10));
    assert_eq!(redelivered[0].guid, "guid-1");
    assert_eq!(redelivered[0].status_code, 202);
    assert_ne!(redelivered[0].id, id);

    let listed = call(&github, "GET", "/app/hook/deliveries", Some(&jwt), "").json();
    let deliveries: Vec<octocrab::models::hooks::Delivery> =
        serde_json::from_value(listed.clone()).unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(listed[0]["id"], redelivered[0].id);
    assert_eq!(listed[0]["guid"], "guid-1");
    assert_eq!(listed[0]["redelivery"], true);
    assert_eq!(listed[0]["status"], "OK");
    assert_eq!(listed[1]["id"], id);

    let detail = call(
        &github,
        "GET",
        &format!("/app/hook/deliveries/{id}"),
        Some(&jwt),
        "",
    );
    let detail: octocrab::models::hooks::DeliveryDetail =
        serde_json::from_str(&detail.body).unwrap();
    assert_eq!(detail.guid, "guid-1");

    // Delivering directly records the target's answer, or its absence.
    let delivered = github.deliver("guid-2", "ping", None, b"{}".to_vec());
    assert_eq!((delivered.status_code, delivered.redelivery), (202, false));
    received.recv_timeout(Duration::from_secs(10)).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    github.set_webhook_target(closed_port, "/webhook", "s3cret");
    assert_eq!(
        github
            .deliver("guid-3", "ping", None, b"{}".to_vec())
            .status_code,
        0
    );
    assert_eq!(github.deliveries().len(), 4);
}

#[test]
fn deliveries_are_listed_newest_first_a_page_at_a_time() {
    let github = github_with_app();
    let ids: Vec<u64> = (1..=5)
        .map(|i| github.add_delivery(&format!("guid-{i}"), "ping", None, b"{}".to_vec(), 200))
        .collect();
    let jwt = format!("Bearer {}", app_jwt());
    let mut path = "/app/hook/deliveries?per_page=2".to_owned();
    let mut pages = Vec::new();
    loop {
        let response = call(&github, "GET", &path, Some(&jwt), "");
        assert_eq!(response.status, 200, "{}", response.body);
        let page: Vec<u64> = response
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect();
        pages.push(page);
        let Some(link) = response.header("link") else {
            break;
        };
        let url = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("{link}"));
        path = url.strip_prefix(&github.url).unwrap().to_owned();
        assert!(path.contains("per_page=2&cursor="), "{path}");
    }
    assert_eq!(
        pages,
        [vec![ids[4], ids[3]], vec![ids[2], ids[1]], vec![ids[0]]]
    );
    let all = call(
        &github,
        "GET",
        "/app/hook/deliveries?per_page=1000",
        Some(&jwt),
        "",
    );
    assert_eq!(all.json().as_array().unwrap().len(), 5);
    assert_eq!(all.header("link"), None);
    assert_eq!(
        github.requests().last().unwrap().path,
        "/app/hook/deliveries"
    );
    let bad = call(
        &github,
        "GET",
        "/app/hook/deliveries?cursor=zzz",
        Some(&jwt),
        "",
    );
    assert_eq!(bad.status, 422);
}

#[test]
fn comments_and_reactions_are_made_by_the_app_bot() {
    let github = github_with_app();
    let token = format!("token {}", issue_token(&github));
    let comments = "/repos/acme/site/issues/12/comments";
    let response = call(
        &github,
        "POST",
        comments,
        Some(&token),
        r#"{"body":"Built."}"#,
    );
    assert_eq!(response.status, 201, "{}", response.body);
    let comment: octocrab::models::issues::Comment = serde_json::from_str(&response.body).unwrap();
    assert_eq!(comment.user.login, "alloy-bot[bot]");
    assert_eq!(comment.user.r#type, "Bot");
    assert_eq!(comment.body.as_deref(), Some("Built."));
    assert!(
        comment
            .html_url
            .as_str()
            .ends_with(&format!("#issuecomment-{}", comment.id))
    );
    assert_eq!(
        github.comments("acme/site", 12),
        [FakeComment {
            id: comment.id.0,
            body: "Built.".into(),
            user: "alloy-bot[bot]".into()
        }]
    );
    assert_eq!(
        call(&github, "POST", comments, Some(&token), "{").status,
        400
    );
    assert_eq!(
        call(&github, "POST", comments, Some(&token), r#"{"bod":"x"}"#).status,
        422
    );
    assert_eq!(
        call(&github, "POST", comments, None, r#"{"body":"x"}"#).status,
        401
    );
    assert_eq!(github.comments("acme/site", 12).len(), 1);

    let reactions = "/repos/acme/site/issues/comments/555/reactions";
    let eyes = r#"{"content":"eyes"}"#;
    let response = call(&github, "POST", reactions, Some(&token), eyes);
    assert_eq!(response.status, 201, "{}", response.body);
    let reaction: octocrab::models::reactions::Reaction =
        serde_json::from_str(&response.body).unwrap();
    assert_eq!(reaction.user.login, "alloy-bot[bot]");
    let again = call(&github, "POST", reactions, Some(&token), eyes);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["id"], reaction.id.0);
    let rocket = call(
        &github,
        "POST",
        reactions,
        Some(&token),
        r#"{"content":"rocket"}"#,
    );
    assert_eq!(rocket.status, 201);
    let wrong = call(
        &github,
        "POST",
        reactions,
        Some(&token),
        r#"{"content":"tada"}"#,
    );
    assert_eq!(wrong.status, 422);
    assert_eq!(github.reactions("acme/site", 555), ["eyes", "rocket"]);
    assert!(github.reactions("acme/site", 556).is_empty());
}

#[test]
fn the_storage_host_can_stall_in_the_middle_of_an_asset() {
    let github = FakeGitHub::start();
    github.add_release(
        "grafana/alloy",
        "v1.0.0",
        vec![Asset {
            name: "a.zip".into(),
            data: b"0123456789".to_vec(),
            digest: None,
        }],
    );
    let release = request(
        github.port(),
        "GET",
        "/repos/grafana/alloy/releases/tags/v1.0.0",
        &[],
        b"",
    )
    .unwrap()
    .json();
    let id = release["assets"][0]["id"].as_u64().unwrap();
    github.set_asset_delay(Duration::from_secs(1));
    // The first half comes at once, the rest after the delay.
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", github.port())).unwrap();
    write!(
        stream,
        "GET /storage/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0; 1024];
    while !received.ends_with(b"\r\n\r\n01234") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(started.elapsed() < Duration::from_millis(800));
    let head = String::from_utf8_lossy(&received).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 10\r\n"), "{head}");
    stream.read_to_end(&mut received).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(received.ends_with(b"\r\n\r\n0123456789"));
    assert_eq!(github.downloads(), ["a.zip"]);
}
