//! The App's webhook deliveries: the list of recent attempts, and asking for another.

use http::Method;
use serde::Deserialize;
use time::OffsetDateTime;

use super::api::{ApiError, Auth, GitHubApi};

/// One attempt at a delivery, as `GET /app/hook/deliveries` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    #[serde(default)]
    pub status_code: i64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub event: Option<String>,
}

/// One page of the App's delivery attempts, newest first.
#[derive(Debug, Clone)]
pub struct DeliveriesPage {
    pub deliveries: Vec<HookDelivery>,
    /// The path of the next page, when there is one on the same API.
    pub next: Option<String>,
}

/// The path of the first page of up to 100 deliveries.
pub const FIRST_PAGE: &str = "/app/hook/deliveries?per_page=100";

/// The page of deliveries at `path` ([`FIRST_PAGE`], or a page's `next`), as the App.
pub async fn deliveries_page(api: &GitHubApi, path: &str) -> Result<DeliveriesPage, ApiError> {
    let response = api.request(Method::GET, path, Auth::App, None).await?;
    if !response.is_success() {
        return Err(response.into_error("listing the App's webhook deliveries"));
    }
    let next = response
        .headers
        .get(http::header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(next_link)
        .map(|url| url.strip_prefix(api.base_url()).unwrap_or(url).to_owned())
        // A link to another host is not followed with the App's credentials.
        .filter(|next| next.starts_with('/'));
    Ok(DeliveriesPage {
        deliveries: response.json()?,
        next,
    })
}

/// Whether GitHub took the request for another attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redelivery {
    Asked,
    Refused {
        status: u16,
        request_id: Option<String>,
    },
}

/// Asks GitHub to deliver `delivery` (an attempt's id) again.
pub async fn redeliver(api: &GitHubApi, delivery: i64) -> Result<Redelivery, ApiError> {
    let response = api
        .request(
            Method::POST,
            &format!("/app/hook/deliveries/{delivery}/attempts"),
            Auth::App,
            None,
        )
        .await?;
    Ok(if response.is_success() {
        Redelivery::Asked
    } else {
        Redelivery::Refused {
            status: response.status,
            request_id: response.request_id,
        }
    })
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let link = r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_9>; rel="next", <https://x>; rel="prev""#;
        assert_eq!(
            next_link(link),
            Some("https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_9")
        );
        assert_eq!(next_link(r#"<https://x>; rel="prev""#), None);
    }
}
