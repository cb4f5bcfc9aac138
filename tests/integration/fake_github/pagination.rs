//! Lists a page at a time, as GitHub gives them: `per_page` (default 30, at most 100), `page`
//! (from 1), and a `Link` header with `prev`, `next`, `last` and `first`.

use std::collections::HashMap;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A request's query parameters.
pub(super) type Params = HashMap<String, String>;

/// One page of a list, and the `Link` header that goes with it.
pub(super) struct Page {
    pub(super) items: Vec<Value>,
    pub(super) link: Option<String>,
}

impl Page {
    /// `items` (the whole list, in order) cut to the page `query` asks for; `path` is the
    /// list's route, for the links.
    pub(super) fn of(base_url: &str, path: &str, query: &Params, items: Vec<Value>) -> Page {
        let number = |name: &str, default: usize| {
            query
                .get(name)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let per_page = number("per_page", 30).min(100);
        let page = number("page", 1);
        let last = items.len().div_ceil(per_page).max(1);
        let items: Vec<Value> = items
            .into_iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .collect();
        let mut others: Vec<(&String, &String)> = query
            .iter()
            .filter(|(name, _)| *name != "page" && *name != "per_page")
            .collect();
        others.sort();
        let url = |page: usize| {
            let mut url = format!("{base_url}{path}?");
            for (name, value) in &others {
                url.push_str(&format!("{}={}&", encode(name), encode(value)));
            }
            format!("<{url}per_page={per_page}&page={page}>")
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
        }
        if page < last {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        Page {
            items,
            link: (!links.is_empty()).then(|| links.join(", ")),
        }
    }

    /// The JSON array, with its `Link` header.
    pub(super) fn into_response(self) -> Response {
        let mut response = axum::Json(self.items).into_response();
        if let Some(link) = self.link {
            response
                .headers_mut()
                .insert(header::LINK, link.parse().unwrap());
        }
        response
    }
}

/// Percent-encoding for a query component.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `page` number in the URL of link `rel` of a `Link` header.
#[cfg(test)]
pub(super) fn link_page(link: Option<&str>, rel: &str) -> Option<usize> {
    link?.split(',').find_map(|part| {
        let (url, relation) = part.trim().split_once(';')?;
        (relation.trim() == format!("rel=\"{rel}\"")).then_some(())?;
        let query = url
            .trim_matches(|c| c == '<' || c == '>')
            .split_once('?')?
            .1;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("page="))?
            .parse()
            .ok()
    })
}
