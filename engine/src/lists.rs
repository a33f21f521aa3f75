//! Tag lists and `_catalog`, paged with `n`, `last` and `Link`, read from their indexes.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::context::{Cx, header_value};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::response::{Body, Response};

/// The `n` and `last` of a list request.
struct Page {
    limit: usize,
    last: Option<String>,
    /// `n` was given (and so is repeated in the `Link`).
    explicit: bool,
}

fn page(cx: &Cx) -> Result<Page> {
    let n = match cx.query.get("n") {
        None => None,
        Some(text) => Some(text.parse::<usize>().map_err(|_| {
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                format!("n={text:?} is not a non-negative integer"),
            )
        })?),
    };
    Ok(Page {
        limit: n
            .unwrap_or(cx.config.list_page_size)
            .min(cx.config.list_page_size),
        last: cx.query.get("last").map(str::to_owned),
        explicit: n.is_some(),
    })
}

/// Lists one page of names under `prefix`, returning them and the name to continue after.
async fn list_names(cx: &Cx, prefix: &str, page: &Page) -> Result<(Vec<String>, Option<String>)> {
    if page.limit == 0 {
        return Ok((Vec::new(), None));
    }
    let start_after = page.last.as_ref().map(|last| format!("{prefix}{last}"));
    let listing = cx.store.list(prefix, start_after, page.limit, None).await?;
    let names: Vec<String> = listing
        .keys
        .iter()
        .filter_map(|k| k.strip_prefix(prefix))
        .map(str::to_owned)
        .collect();
    let next = if listing.truncated {
        names.last().cloned()
    } else {
        None
    };
    Ok((names, next))
}

fn json_response(body: Vec<u8>, link: Option<String>) -> Response {
    let mut response = http::Response::new(Body::Bytes(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(link) = link {
        headers.insert(header::LINK, header_value(&link));
    }
    crate::response::set_content_length(&mut response);
    response
}

fn next_link(path: &str, page: &Page, next: Option<String>) -> Option<String> {
    let next = next?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    if page.explicit {
        query.append_pair("n", &page.limit.to_string());
    }
    query.append_pair("last", &next);
    Some(format!("<{path}?{}>; rel=\"next\"", query.finish()))
}

/// GET `/v2/<name>/tags/list`.
pub(crate) async fn tags(cx: &Cx, name: &str) -> Result<Response> {
    if cx.store.head(&layout::catalog_entry(name)).await?.is_none() {
        return Err(RegistryError::name_unknown(name));
    }
    let page = page(cx)?;
    let (tags, next) = list_names(cx, &layout::tags_prefix(name), &page).await?;
    #[derive(Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: Vec<String>,
    }
    let body = serde_json::to_vec(&TagList { name, tags }).unwrap_or_default();
    Ok(json_response(
        body,
        next_link(&format!("/v2/{name}/tags/list"), &page, next),
    ))
}

/// Most store listings one `_catalog` request makes once its page shows a visible name.
///
/// The `Link` cursor (`last=`) must never be a name the caller may not see, so it is the last
/// name *shown*, not the last one listed, and a page may end early only once it shows at least
/// one name. The work of one request is therefore bounded by:
///
/// - at most this many listings of `list_page_size` keys (16,000 index keys at the default page
///   size of 1,000) when a visible name turns up within them;
/// - otherwise, the listings up to the first visible name after the cursor, or up to the end of
///   the index. A caller who may see nothing further pays one scan of the rest of the index: that
///   is what it costs to say truthfully that nothing follows without naming a hidden repository.
///
/// Pagination makes progress and terminates: a page with a `Link` shows at least one name, and
/// its cursor is the last of them, strictly after the cursor the page started from; a page that
/// shows nothing has no `Link`.
const MAX_CATALOG_LISTINGS: usize = 16;

/// GET `/v2/_catalog`, filtered to what the caller may see. A page holds up to `n` visible
/// names: hidden ones are skipped by listing further, so pages are not emptied by filtering, and
/// the cursor in the `Link` is always a name shown (see [`MAX_CATALOG_LISTINGS`]).
pub(crate) async fn catalog(cx: &Cx, visible: &(dyn Fn(&str) -> bool + Sync)) -> Result<Response> {
    let page = page(cx)?;
    let (repositories, more) = visible_names(cx, visible, &page).await?;
    let next = if more {
        repositories.last().cloned()
    } else {
        None
    };
    #[derive(Serialize)]
    struct Catalog {
        repositories: Vec<String>,
    }
    let body = serde_json::to_vec(&Catalog { repositories }).unwrap_or_default();
    Ok(json_response(body, next_link("/v2/_catalog", &page, next)))
}

/// Up to `page.limit` visible repository names after `page.last`, and whether more visible
/// names may follow the last of them.
async fn visible_names(
    cx: &Cx,
    visible: &(dyn Fn(&str) -> bool + Sync),
    page: &Page,
) -> Result<(Vec<String>, bool)> {
    let prefix = layout::CATALOG_PREFIX;
    let mut repositories: Vec<String> = Vec::new();
    if page.limit == 0 {
        return Ok((repositories, false));
    }
    // Where the next listing starts: the last name listed, visible or not. Never shown.
    let mut listed_up_to = page.last.clone();
    let mut listings = 0;
    loop {
        let start_after = listed_up_to.as_ref().map(|last| format!("{prefix}{last}"));
        let listing = cx
            .store
            .list(prefix, start_after, cx.config.list_page_size, None)
            .await?;
        listings += 1;
        let names: Vec<&str> = listing
            .keys
            .iter()
            .filter_map(|k| k.strip_prefix(prefix))
            .collect();
        let mut rest = names.iter().copied();
        for name in rest.by_ref() {
            if visible(name) {
                repositories.push(name.to_owned());
                if repositories.len() == page.limit {
                    break;
                }
            }
        }
        if repositories.len() == page.limit {
            let more = listing.truncated || rest.any(visible);
            return Ok((repositories, more));
        }
        if !listing.truncated {
            return Ok((repositories, false));
        }
        let Some(&last) = names.last() else {
            // A truncated listing with no keys: continue from the last name shown, if any.
            let more = !repositories.is_empty();
            return Ok((repositories, more));
        };
        if listed_up_to.as_deref().is_some_and(|before| last <= before) {
            return Err(RegistryError::backend(
                "list",
                prefix,
                "the listing did not advance past its start",
            ));
        }
        listed_up_to = Some(last.to_owned());
        if listings >= MAX_CATALOG_LISTINGS && !repositories.is_empty() {
            return Ok((repositories, true));
        }
    }
}
