//! The four pagination styles (SPEC §3.3): what to send for a page, and how to find the next
//! one in the answer. The cursor handed to callers is opaque text: a token, an offset, or (for
//! `Link`) the next URL; callers pass it back unchanged.

use super::definition::{PaginationDef, PaginationStyle};
use super::error::ProviderError;
use serde_json::Value;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// Pass to the next `list_page` call; `None` on the last page.
    pub next: Option<String>,
}

/// Where the request for one page goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The resource's list path with these query parameters.
    Query(Vec<(String, String)>),
    /// A URL the provider gave (a `Link` header's next page), as is.
    Url(String),
}

/// The query (or URL) asking for the page after `cursor` (`None`: the first page). `first`
/// holds the parameters only the first request carries (the `since` filter, fixed query).
pub fn target(
    p: &PaginationDef,
    cursor: Option<&str>,
    first: Vec<(String, String)>,
) -> Result<Target, ProviderError> {
    let mut query = Vec::new();
    let size = p
        .limit_param
        .as_ref()
        .zip(p.page_size)
        .map(|(name, n)| (name.clone(), n.to_string()));
    match (p.style, cursor) {
        (PaginationStyle::Link, Some(url)) => return Ok(Target::Url(url.to_string())),
        (PaginationStyle::NextToken | PaginationStyle::Cursor, Some(token)) => {
            // Tokens carry their listing's filters; the since filter is still repeated, which
            // providers accept and which keeps the request self-describing in logs.
            query.extend(first);
            query.push((p.param.clone().expect("validated"), token.to_string()));
        }
        (PaginationStyle::Offset, cursor) => {
            let offset: u64 = match cursor {
                None => 0,
                Some(c) => c.parse().map_err(|_| {
                    ProviderError::permanent(format!(
                        "`{c}` is not an offset cursor of this provider"
                    ))
                })?,
            };
            query.extend(first);
            query.push((
                p.offset_param.clone().expect("validated"),
                offset.to_string(),
            ));
        }
        (_, None) => query.extend(first),
    }
    query.extend(size);
    Ok(Target::Query(query))
}

/// Reads the items and the next cursor from an answer. `link` is the `Link` header (all of its
/// values joined), `url` the URL that was asked (relative links resolve against it).
pub fn read(
    p: &PaginationDef,
    body: &Value,
    link: Option<&str>,
    url: &reqwest::Url,
    cursor: Option<&str>,
) -> Result<Page, ProviderError> {
    let items = match body.pointer(&p.items) {
        Some(Value::Array(a)) => a.clone(),
        // eBay leaves the array out of an empty page.
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(ProviderError::permanent(format!(
                "list answer has no array at `{}`: the provider changed its shape",
                p.items
            )))
        }
    };
    let next = match p.style {
        PaginationStyle::NextToken | PaginationStyle::Cursor => {
            let more = match p.has_more.as_deref() {
                None => true,
                Some(ptr) => body.pointer(ptr) == Some(&Value::Bool(true)),
            };
            let token = p
                .next
                .as_deref()
                .and_then(|ptr| body.pointer(ptr))
                .and_then(token_text);
            token.filter(|_| more)
        }
        PaginationStyle::Offset => {
            let offset: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
            let seen = offset + items.len() as u64;
            let total = p
                .total
                .as_deref()
                .and_then(|ptr| body.pointer(ptr))
                .and_then(Value::as_u64);
            let more = match total {
                Some(total) => seen < total,
                // Without a total, a short page is the last one.
                None => p
                    .page_size
                    .is_some_and(|n| items.len() as u64 >= u64::from(n)),
            };
            (more && !items.is_empty()).then(|| seen.to_string())
        }
        PaginationStyle::Link => match link.and_then(next_link) {
            None => None,
            Some(href) => Some(same_origin(url, &href)?),
        },
    };
    if next.is_some() && next.as_deref() == cursor {
        // Following it would fetch the same page forever.
        return Err(ProviderError::permanent(
            "the provider returned the same page cursor again",
        ));
    }
    Ok(Page { items, next })
}

fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The target of the `rel="next"` link of an RFC 8288 `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let is_next = after[..params_end].split([';', ',']).any(|param| {
            param.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &after[params_end..];
    }
    None
}

/// Resolves `href` against `url` and refuses a link to another origin: following it would send
/// the connection's credentials to whoever wrote the header.
fn same_origin(url: &reqwest::Url, href: &str) -> Result<String, ProviderError> {
    let next = url.join(href).map_err(|_| {
        ProviderError::permanent(format!("the provider's next link `{href}` is not a URL"))
    })?;
    if next.origin() != url.origin() {
        return Err(ProviderError::permanent(format!(
            "the provider's next link leaves its origin ({}); not followed",
            next.origin().ascii_serialization()
        )));
    }
    Ok(next.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(style: PaginationStyle) -> PaginationDef {
        PaginationDef {
            style,
            items: "/data".into(),
            param: Some("page_token".into()),
            next: Some("/next_token".into()),
            has_more: None,
            limit_param: Some("limit".into()),
            page_size: Some(2),
            offset_param: Some("offset".into()),
            total: Some("/total".into()),
        }
    }

    fn url() -> reqwest::Url {
        reqwest::Url::parse("https://api.example.com/v1/items?limit=2").unwrap()
    }

    #[test]
    fn link_headers_name_their_next_page() {
        let h = r#"<https://api.example.com/v1/items?page=1>; rel="prev", <https://api.example.com/v1/items?page=3&a=1,2>; rel="next", <https://x/last>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.example.com/v1/items?page=3&a=1,2")
        );
        assert_eq!(
            next_link(r#"</v1/items?page=2>; rel="next prefetch""#).as_deref(),
            Some("/v1/items?page=2")
        );
        assert_eq!(next_link(r#"<https://x/1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn link_pages_stay_on_the_provider_origin() {
        let p = def(PaginationStyle::Link);
        let body = json!({"data": [1]});
        let page = read(
            &p,
            &body,
            Some(r#"</v1/items?page=2>; rel="next""#),
            &url(),
            None,
        )
        .unwrap();
        assert_eq!(
            page.next.as_deref(),
            Some("https://api.example.com/v1/items?page=2")
        );
        let evil = read(
            &p,
            &body,
            Some(r#"<https://evil.example/steal>; rel="next""#),
            &url(),
            None,
        );
        assert!(evil.unwrap_err().message.contains("leaves its origin"));
        assert_eq!(
            target(&p, page.next.as_deref(), vec![]).unwrap(),
            Target::Url(page.next.unwrap())
        );
    }

    #[test]
    fn tokens_and_cursors_end_on_null_or_has_more_false() {
        let p = def(PaginationStyle::NextToken);
        assert_eq!(
            read(
                &p,
                &json!({"data": [1], "next_token": "t2"}),
                None,
                &url(),
                None
            )
            .unwrap()
            .next
            .as_deref(),
            Some("t2")
        );
        assert_eq!(
            read(
                &p,
                &json!({"data": [1], "next_token": null}),
                None,
                &url(),
                Some("t1")
            )
            .unwrap()
            .next,
            None
        );
        assert!(read(
            &p,
            &json!({"data": [1], "next_token": "t1"}),
            None,
            &url(),
            Some("t1")
        )
        .is_err());
        let mut c = def(PaginationStyle::Cursor);
        c.has_more = Some("/has_more".into());
        c.next = Some("/meta/cursor".into());
        let more = json!({"data": [1], "has_more": true, "meta": {"cursor": "c9"}});
        assert_eq!(
            read(&c, &more, None, &url(), None).unwrap().next.as_deref(),
            Some("c9")
        );
        let done = json!({"data": [1], "has_more": false, "meta": {"cursor": "c9"}});
        assert_eq!(read(&c, &done, None, &url(), None).unwrap().next, None);
        let q = target(&p, Some("t2"), vec![("since".into(), "x".into())]).unwrap();
        assert_eq!(
            q,
            Target::Query(vec![
                ("since".into(), "x".into()),
                ("page_token".into(), "t2".into()),
                ("limit".into(), "2".into())
            ])
        );
    }

    #[test]
    fn offsets_end_at_the_total_or_a_short_page() {
        let mut p = def(PaginationStyle::Offset);
        p.items = "/inventoryItems".into();
        let page = |items: Value, total: u64| json!({"inventoryItems": items, "total": total});
        assert_eq!(
            read(&p, &page(json!([1, 2]), 5), None, &url(), None)
                .unwrap()
                .next
                .as_deref(),
            Some("2")
        );
        assert_eq!(
            read(&p, &page(json!([5]), 5), None, &url(), Some("4"))
                .unwrap()
                .next,
            None
        );
        assert_eq!(
            read(&p, &json!({"total": 0}), None, &url(), None).unwrap(),
            Page {
                items: vec![],
                next: None
            }
        );
        p.total = None;
        assert_eq!(
            read(&p, &page(json!([1, 2]), 0), None, &url(), Some("2"))
                .unwrap()
                .next
                .as_deref(),
            Some("4")
        );
        assert_eq!(
            read(&p, &page(json!([1]), 0), None, &url(), Some("4"))
                .unwrap()
                .next,
            None
        );
        assert!(target(&p, Some("x"), vec![]).is_err());
        assert!(read(&p, &json!({"inventoryItems": {}}), None, &url(), None).is_err());
    }
}
