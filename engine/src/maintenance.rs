//! Maintenance: removing uploads that expired, run by the runtime on a schedule.
//!
//! An upload expires `upload_expiry_secs` after its last activity. Removing it aborts its
//! multipart upload and deletes its tails, its unpublished data and its record. An upload whose
//! record says it was being published keeps the data its published pointer names.

use bytes::Bytes;
use http::{HeaderValue, header};

use crate::context::Cx;
use crate::error::Result;
use crate::layout;
use crate::response::{Body, Response};
use crate::upload::state::UploadState;
use crate::upload::{delete_prefix, discard};

pub(crate) async fn run(cx: &Cx) -> Result<Response> {
    let mut expired = 0u64;
    let mut active = 0u64;
    let mut orphaned = 0u64;
    let mut start_after = None;
    loop {
        let listing = cx
            .store
            .list(layout::UPLOADS_PREFIX, start_after.clone(), 1000, Some('/'))
            .await?;
        for prefix in &listing.common_prefixes {
            let Some(id) = prefix
                .strip_prefix(layout::UPLOADS_PREFIX)
                .and_then(|p| p.strip_suffix('/'))
            else {
                continue;
            };
            if !crate::names::is_valid_upload_id(id) {
                continue;
            }
            match cx.store.get(&layout::upload_state(id)).await? {
                None => {
                    // Tails left behind by a failed cleanup.
                    delete_prefix(cx, prefix, None).await?;
                    orphaned += 1;
                }
                Some((_, bytes)) => match UploadState::decode(&bytes) {
                    Ok((state, _))
                        if cx.now.0.saturating_sub(state.updated_at)
                            < cx.config.upload_expiry_secs =>
                    {
                        active += 1;
                    }
                    Ok((state, _)) => {
                        discard(cx, id, &state).await?;
                        expired += 1;
                    }
                    Err(_) => {
                        // A record we cannot read can never be continued: drop what it owns.
                        delete_prefix(cx, &layout::upload_data_prefix(id), None).await?;
                        delete_prefix(cx, prefix, None).await?;
                        orphaned += 1;
                    }
                },
            }
        }
        if !listing.truncated {
            break;
        }
        // Continue after everything under the last prefix: '0' is the byte after '/'.
        start_after = match listing.common_prefixes.last() {
            Some(prefix) => Some(format!("{}0", prefix.trim_end_matches('/'))),
            None => listing.keys.last().cloned(),
        };
        if start_after.is_none() {
            break;
        }
    }
    let body = format!(r#"{{"expired":{expired},"active":{active},"orphaned":{orphaned}}}"#);
    let mut response = http::Response::new(Body::Bytes(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    crate::response::set_content_length(&mut response);
    Ok(response)
}
