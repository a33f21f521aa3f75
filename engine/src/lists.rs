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

/// Most listing calls one `_catalog` page makes to fill itself with names the caller may see;
/// a page that is still short ends with a `Link` to continue.
const MAX_CATALOG_LISTINGS: usize = 16;

/// GET `/v2/_catalog`, filtered to what the caller may see. A page holds up to `n` visible
/// names: hidden ones are skipped by listing further, so pages are not emptied by filtering.
pub(crate) async fn catalog(cx: &Cx, visible: &(dyn Fn(&str) -> bool + Sync)) -> Result<Response> {
    let mut page = page(cx)?;
    let mut repositories: Vec<String> = Vec::new();
    let mut next = None;
    for _ in 0..MAX_CATALOG_LISTINGS {
        let wanted = page.limit - repositories.len();
        let (names, more) = list_names(
            cx,
            layout::CATALOG_PREFIX,
            &Page {
                limit: wanted,
                last: page.last.clone(),
                explicit: page.explicit,
            },
        )
        .await?;
        let last_listed = names.last().cloned();
        repositories.extend(names.into_iter().filter(|n| visible(n)));
        next = more;
        if next.is_none() || repositories.len() >= page.limit {
            break;
        }
        page.last = last_listed;
    }
    #[derive(Serialize)]
    struct Catalog {
        repositories: Vec<String>,
    }
    let body = serde_json::to_vec(&Catalog { repositories }).unwrap_or_default();
    Ok(json_response(body, next_link("/v2/_catalog", &page, next)))
}
