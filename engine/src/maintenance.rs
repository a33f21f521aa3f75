//! Maintenance, run by the runtime on a schedule: uploads that expired are finished or thrown
//! away, and a page of published blobs is checked for data that is gone.
//!
//! Maintenance deletes, and it runs beside every request that writes, on other replicas too,
//! with nothing but the storage between them. So it deletes only what it has fenced first, and
//! what it does not understand it keeps:
//! - A *receiving* upload idle past `upload_expiry_secs` is marked abandoned with `If-Match` on
//!   the etag maintenance read it with, and only then are its multipart upload, data, tails and
//!   record deleted. A request that changed the record meanwhile wins: the upload is alive.
//! - A *publishing* upload past its expiry is finished: its verified bytes are published (the
//!   request that committed them died, or is about to do the same, harmlessly).
//! - An *abandoned* upload is deleted, again: a pass that died midway left it so.
//! - A record that does not decode (corrupt, or written by a newer berth) is kept, with
//!   everything it may own, and reported.
//! - Tails under an upload with no record at all are removed; an upload's data never is: data
//!   without a record may be published (a finished upload's record is removed after its
//!   pointer is written).
//!
//! Blob check: a pointer whose data is gone (lost to a bug of berth 0.1.0's maintenance, or
//! removed from the bucket by hand) would answer HEAD 200 and GET 500 forever, and clients,
//! which HEAD before they push, would never push it again. Each pass reads the next
//! `blob_checks_per_pass` pointers after a cursor kept in storage and marks those whose data
//! is missing as lost (with `If-Match`, so a re-push that repaired one meanwhile wins): a lost
//! blob reads as absent in every repository, and the next verified upload of its digest
//! replaces the pointer.

use bytes::Bytes;
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};

use crate::context::Cx;
use crate::digest::Digest;
use crate::effect::Condition;
use crate::error::Result;
use crate::layout;
use crate::publish::BlobPointer;
use crate::response::{Body, Response};
use crate::store::Written;
use crate::upload::state::UploadState;
use crate::upload::{RolledForward, delete_abandoned, delete_prefix, expire, roll_forward};

/// Upload ids and digests named in one report, at most: the counts are complete.
const REPORTED_NAMES: usize = 100;

/// What one pass did, as the JSON body of its response.
#[derive(Debug, Default, Serialize)]
struct Report {
    /// Receiving uploads past their expiry, thrown away.
    expired: u64,
    /// Uploads left alone: not expired, or changed while maintenance looked at them.
    active: u64,
    /// Uploads with tails but no record, whose tails were removed.
    orphaned: u64,
    /// Publishing uploads past their expiry whose blobs maintenance published.
    published: u64,
    /// Publishing uploads whose committed bytes were not in storage (nothing to publish).
    unfinishable: u64,
    /// Abandoned uploads whose deletion a previous pass left unfinished, now finished.
    resumed_deletions: u64,
    /// Records that do not decode: kept, with all they may own.
    unreadable: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreadable_uploads: Vec<String>,
    /// Uploads a storage operation failed on (a backend error, or a request finishing the same
    /// upload at once): left as they are for the next pass, which the others do not wait for.
    failed: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
    /// Blob pointers checked this pass.
    blobs_checked: u64,
    /// Blobs whose data was found missing this pass, now marked lost.
    blobs_lost: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lost_blobs: Vec<String>,
}

fn remember(names: &mut Vec<String>, name: String) {
    if names.len() < REPORTED_NAMES {
        names.push(name);
    }
}

pub(crate) async fn run(cx: &Cx) -> Result<Response> {
    let mut report = Report::default();
    uploads(cx, &mut report).await?;
    check_blobs(cx, &mut report).await?;
    let body = serde_json::to_vec(&report).map_err(|e| {
        crate::error::RegistryError::backend("report", "(maintenance)", &e.to_string())
    })?;
    let mut response = http::Response::new(Body::Bytes(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    crate::response::set_content_length(&mut response);
    Ok(response)
}

async fn uploads(cx: &Cx, report: &mut Report) -> Result<()> {
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
            if let Err(e) = upload(cx, id, prefix, report).await {
                report.failed += 1;
                remember(
                    &mut report.failures,
                    format!("upload {id}: {}", e.for_operators()),
                );
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
    Ok(())
}

async fn upload(cx: &Cx, id: &str, prefix: &str, report: &mut Report) -> Result<()> {
    let Some((meta, bytes)) = cx.store.get(&layout::upload_state(id)).await? else {
        // Tails left behind by a removal that failed after the record went.
        delete_prefix(cx, prefix).await?;
        report.orphaned += 1;
        return Ok(());
    };
    let Ok((state, hash)) = UploadState::decode(&bytes) else {
        report.unreadable += 1;
        remember(&mut report.unreadable_uploads, id.to_owned());
        return Ok(());
    };
    if state.abandoned {
        delete_abandoned(cx, id, &state).await?;
        report.resumed_deletions += 1;
        return Ok(());
    }
    let idle = cx.now.0.saturating_sub(state.updated_at);
    if idle < cx.config.upload_expiry_secs {
        report.active += 1;
        return Ok(());
    }
    if state.finalizing.is_some() {
        match roll_forward(cx, id, &state).await? {
            RolledForward::Published => report.published += 1,
            RolledForward::DataGone => report.unfinishable += 1,
        }
    } else if expire(cx, id, state, hash, meta.etag).await? {
        report.expired += 1;
    } else {
        report.active += 1;
    }
    Ok(())
}

/// Where the blob check stopped, kept in storage between passes (and across replicas).
#[derive(Debug, Default, Serialize, Deserialize)]
struct BlobCheckCursor {
    /// The last pointer key checked; the next pass starts after it.
    after: Option<String>,
}

async fn check_blobs(cx: &Cx, report: &mut Report) -> Result<()> {
    let budget = cx.config.blob_checks_per_pass;
    if budget == 0 {
        return Ok(());
    }
    let cursor_key = layout::BLOB_CHECK_CURSOR;
    let stored = cx.store.get(cursor_key).await?;
    // A cursor that does not decode only costs a restart from the beginning.
    let mut cursor: BlobCheckCursor = stored
        .as_ref()
        .and_then(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .unwrap_or_default();
    let mut checked = 0usize;
    while checked < budget {
        let page = (budget - checked).min(1000);
        let listing = cx
            .store
            .list(
                layout::BLOB_POINTERS_PREFIX,
                cursor.after.clone(),
                page,
                None,
            )
            .await?;
        for key in &listing.keys {
            if let Err(e) = check_blob(cx, key, report).await {
                report.failed += 1;
                remember(
                    &mut report.failures,
                    format!("{key}: {}", e.for_operators()),
                );
            }
            checked += 1;
        }
        cursor.after = listing.keys.last().cloned();
        if !listing.truncated {
            // The end: the next pass starts over.
            cursor.after = None;
            break;
        }
    }
    report.blobs_checked = checked as u64;
    let body = serde_json::to_vec(&cursor)
        .map_err(|e| crate::error::RegistryError::backend("put", cursor_key, &e.to_string()))?;
    // Two passes at once may both write it; either cursor is a fine place to go on from.
    cx.store.put_always(cursor_key, Bytes::from(body)).await?;
    Ok(())
}

/// Marks the pointer at `key` lost if the data it names is gone.
async fn check_blob(cx: &Cx, key: &str, report: &mut Report) -> Result<()> {
    let Some(digest) = key
        .strip_prefix(layout::BLOB_POINTERS_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(algorithm, hex)| Digest::parse(&format!("{algorithm}:{hex}")).ok())
    else {
        return Ok(());
    };
    let Some((meta, bytes)) = cx.store.get(key).await? else {
        return Ok(());
    };
    // A pointer that does not decode is kept as it is: reads refuse it with a 500 that names
    // it, and nothing here knows better.
    let Ok(mut pointer) = BlobPointer::decode(key, &bytes) else {
        return Ok(());
    };
    if pointer.lost || cx.store.head(&pointer.data).await?.is_some() {
        return Ok(());
    }
    pointer.lost = true;
    if let Written::Stored { .. } = cx
        .store
        .put(key, pointer.encode()?, Condition::IfMatch(meta.etag))
        .await?
    {
        report.blobs_lost += 1;
        remember(&mut report.lost_blobs, digest.to_string());
    }
    Ok(())
}
