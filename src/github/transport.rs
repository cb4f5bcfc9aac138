//! One exchange with GitHub over HTTP, below the retries of [`super::api::GitHubApi`]:
//! sending a request, following its redirects, and reading the answer's body whole or as it
//! arrives.
//!
//! Redirects are followed here rather than by the HTTP client, so that credentials never
//! leave the host they were meant for: GitHub answers a release asset's download with a
//! redirect to its storage host (`objects.githubusercontent.com`), and a request sent there
//! goes without the `Authorization` header.

use std::pin::Pin;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, Uri, header};
use hyper::body::{Body, Bytes};
use octocrab::Octocrab;

/// How many redirects one request follows before it is given up.
const MAX_REDIRECTS: usize = 10;

/// An answer's body, not yet read.
pub(super) type ResponseBody = Pin<Box<dyn Body<Data = Bytes, Error = octocrab::Error> + Send>>;

/// A request to send: its first URL, and what it carries.
pub(super) struct Outgoing {
    pub method: Method,
    pub url: Uri,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends `request` and follows its redirects (at most [`MAX_REDIRECTS`]) to the answer that
/// is not one. The `Authorization` header goes only to the scheme, host and port of the
/// first URL: once a redirect leads elsewhere, it is dropped for the rest of the way. A
/// `303`, and a `301` or `302` to a `POST`, continue as a `GET` without the body, as
/// browsers and GitHub's own clients do.
///
/// Errors name no URL: a storage host's URL carries a signature that is a credential for as
/// long as it lives.
pub(super) async fn send(
    http: &Octocrab,
    request: Outgoing,
) -> Result<(http::response::Parts, ResponseBody), String> {
    let Outgoing {
        mut method,
        mut url,
        mut headers,
        mut body,
    } = request;
    let first_origin = origin(&url);
    for hop in 0..=MAX_REDIRECTS {
        let mut outgoing = http::Request::builder()
            .method(method.clone())
            .uri(url.clone())
            .body(body.clone())
            .map_err(|e| format!("cannot form the request: {e}"))?;
        *outgoing.headers_mut() = headers.clone();
        let response = http.execute(outgoing).await.map_err(|e| {
            if hop == 0 {
                e.to_string()
            } else {
                format!("following a redirect to {}: {e}", host_of(&url))
            }
        })?;
        let (parts, answer) = response.into_parts();
        let location = parts
            .headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok());
        let Some(location) = location.filter(|_| is_redirect(parts.status)) else {
            return Ok((parts, Box::pin(answer)));
        };
        if hop == MAX_REDIRECTS {
            return Err(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let next = resolve(&url, location)
            .ok_or_else(|| format!("a redirect to an unusable location ({})", parts.status))?;
        if origin(&next) != first_origin {
            headers.remove(header::AUTHORIZATION);
        }
        let becomes_get = parts.status == StatusCode::SEE_OTHER
            || (method == Method::POST
                && matches!(
                    parts.status,
                    StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND
                ));
        if becomes_get && method != Method::HEAD {
            method = Method::GET;
            body = String::new();
            headers.remove(header::CONTENT_TYPE);
        }
        url = next;
    }
    unreachable!("the last hop returns")
}

/// Reads the rest of `body` whole, as text.
pub(super) async fn read_all(body: &mut ResponseBody) -> Result<String, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = next_chunk(body).await {
        bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    String::from_utf8(bytes).map_err(|_| "the answer is not UTF-8".to_owned())
}

/// The next piece of data of `body`, or `None` at its end.
pub(super) async fn next_chunk(body: &mut ResponseBody) -> Option<Result<Bytes, octocrab::Error>> {
    loop {
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await? {
            Err(error) => return Some(Err(error)),
            // Trailers carry no data.
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
        }
    }
}

/// [`next_chunk`], failing when nothing arrives within `timeout`.
pub(super) async fn next_chunk_within(
    body: &mut ResponseBody,
    timeout: Duration,
) -> Result<Option<Bytes>, String> {
    match tokio::time::timeout(timeout, next_chunk(body)).await {
        Err(_) => Err(format!("nothing arrived for {timeout:?}")),
        Ok(None) => Ok(None),
        Ok(Some(chunk)) => chunk.map(Some).map_err(|e| e.to_string()),
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Scheme, host and port: where a credential may go.
fn origin(url: &Uri) -> (Option<String>, Option<String>, Option<u16>) {
    let scheme = url.scheme_str().map(str::to_ascii_lowercase);
    let default_port = match scheme.as_deref() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    (
        scheme,
        url.host().map(str::to_ascii_lowercase),
        url.port_u16().or(default_port),
    )
}

fn host_of(url: &Uri) -> &str {
    url.host().unwrap_or("?")
}

/// `location` (absolute, scheme-relative, or a path) as seen from `base`.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    let scheme = base.scheme_str()?;
    let joined = if location.contains("://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{}{location}", base.authority()?)
    } else {
        let directory = base
            .path()
            .rsplit_once('/')
            .map_or("", |(directory, _)| directory);
        format!("{scheme}://{}{directory}/{location}", base.authority()?)
    };
    let next: Uri = joined.parse().ok()?;
    (matches!(next.scheme_str(), Some("http" | "https")) && next.host().is_some()).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_url_they_answer() {
        let base: Uri = "https://api.github.com/repos/o/r/releases/assets/1"
            .parse()
            .unwrap();
        let resolved = |location| resolve(&base, location).map(|u| u.to_string());
        assert_eq!(
            resolved("https://objects.example/x?sig=1").as_deref(),
            Some("https://objects.example/x?sig=1")
        );
        assert_eq!(
            resolved("//objects.example/x").as_deref(),
            Some("https://objects.example/x")
        );
        assert_eq!(
            resolved("/storage/1").as_deref(),
            Some("https://api.github.com/storage/1")
        );
        assert_eq!(
            resolved("2").as_deref(),
            Some("https://api.github.com/repos/o/r/releases/assets/2")
        );
        assert_eq!(resolved("file:///etc/passwd"), None);
    }

    #[test]
    fn credentials_stay_with_their_scheme_host_and_port() {
        let origin_of = |url: &str| origin(&url.parse().unwrap());
        assert_eq!(
            origin_of("https://API.github.com/a"),
            origin_of("https://api.github.com:443/b")
        );
        assert_ne!(
            origin_of("https://api.github.com/a"),
            origin_of("https://objects.githubusercontent.com/a")
        );
        assert_ne!(
            origin_of("http://127.0.0.1:1000/a"),
            origin_of("http://127.0.0.1:1001/a")
        );
        assert_ne!(
            origin_of("https://api.github.com/a"),
            origin_of("http://api.github.com/a")
        );
    }
}
