//! The referrers API: GET `/v2/<name>/referrers/<digest>`, with `artifactType` filtering.
//!
//! Each manifest with a `subject` left a descriptor under the subject's referrers prefix when
//! it was pushed, so answering reads one prefix of the repository, never its manifests.

use bytes::Bytes;
use futures_util::future::try_join_all;
use http::{HeaderValue, header};
use serde::Deserialize;

use crate::context::{Cx, header_value};
use crate::digest::Digest;
use crate::error::Result;
use crate::layout;
use crate::manifest::OCI_INDEX;
use crate::response::{Body, Response};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filterable {
    artifact_type: Option<String>,
}

pub(crate) async fn list(cx: &Cx, name: &str, subject: &Digest) -> Result<Response> {
    let prefix = layout::referrers_prefix(name, subject);
    let filter = cx.query.get("artifactType").filter(|a| !a.is_empty());
    let start_after = cx.query.get("last").map(|last| format!("{prefix}{last}"));
    let listing = cx
        .store
        .list(&prefix, start_after, cx.config.referrers_page_size, None)
        .await?;
    let descriptors = try_join_all(listing.keys.iter().map(|key| cx.store.get(key))).await?;

    let mut body = Vec::new();
    body.extend_from_slice(
        format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":["#).as_bytes(),
    );
    let mut first = true;
    for (_, bytes) in descriptors.into_iter().flatten() {
        if let Some(wanted) = filter {
            let Ok(entry) = serde_json::from_slice::<Filterable>(&bytes) else {
                continue;
            };
            if entry.artifact_type.as_deref() != Some(wanted) {
                continue;
            }
        }
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(&bytes);
    }
    body.extend_from_slice(b"]}");

    let mut response = http::Response::new(Body::Bytes(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        headers.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    if listing.truncated
        && let Some(last) = listing.keys.last().and_then(|k| k.strip_prefix(&prefix))
    {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("last", last);
        if let Some(wanted) = filter {
            query.append_pair("artifactType", wanted);
        }
        let link = format!(
            "</v2/{name}/referrers/{subject}?{}>; rel=\"next\"",
            query.finish()
        );
        headers.insert(header::LINK, header_value(&link));
    }
    crate::response::set_content_length(&mut response);
    Ok(response)
}
