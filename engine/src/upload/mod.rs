//! Blob uploads: sessions, chunks, resumable hashing, publication.
//!
//! A request body is hashed as it arrives and cut into parts of exactly `part_size` bytes;
//! each full part goes to the backend's multipart upload and is checkpointed in the upload
//! state record together with the hash state at its end. Bytes that do not fill a part are
//! kept as the *tail* object and prepended to the next request's bytes. So:
//! - memory per upload is one part, whatever the blob's size (invariant 3);
//! - any replica can continue the upload from the record alone (invariant 2);
//! - a request that dies mid-body has still saved every full part it sent, and the upload's
//!   `Range` tells the client where to resume;
//! - the blob becomes readable only by the pointer published after its digest was verified
//!   (invariant 1).
//!
//! Races: every state change is a compare-and-swap on the record's etag. A writer *claims* the
//! upload before its first part (recording itself as `writer`), so of two requests that start
//! together only one uploads parts; the loser gets 416 and writes nothing that is referenced.
//! Parts are numbered densely from the record (S3 APIs such as `object_store` number parts by
//! position). A request that takes over from one that died re-uploads the next part under the
//! same number; should the dead request's copy of that part still land afterwards, its etag no
//! longer matches the one recorded and the backend refuses to complete the upload (S3 and R2
//! check every listed part's etag), so the blob is never published from mixed bytes. Tails and
//! single-put data live under keys of their own writer.

mod part_buffer;
pub mod state;

pub use part_buffer::PART_ALIGN;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::config::MAX_PARTS;
use crate::context::{Cx, header_value};
use crate::digest::{Algorithm, Digest, ResumableHash};
use crate::effect::{CompletedPart, Condition};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::publish::{self, BlobPointer};
use crate::range::parse_content_range;
use crate::response::{Body, Response};
use crate::route::parse_digest;
use crate::store::Written;
use part_buffer::PartBuffer;
use state::{MultipartRecord, TailRecord, UploadState};

/// One upload session as read from storage, plus the etag to replace it with.
struct Session {
    id: String,
    state: UploadState,
    etag: String,
    hash: ResumableHash,
}

fn upload_location(name: &str, id: &str) -> HeaderValue {
    header_value(&format!("/v2/{name}/blobs/uploads/{id}"))
}

/// `Range: 0-<last byte>`; for an empty upload, `0-0` as the reference registry answers.
fn range_header(offset: u64) -> HeaderValue {
    header_value(&format!("0-{}", offset.saturating_sub(1)))
}

fn session_response(status: StatusCode, name: &str, session: &Session, cx: &Cx) -> Response {
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, upload_location(name, &session.id));
    headers.insert(header::RANGE, range_header(session.state.offset));
    headers.insert("docker-upload-uuid", header_value(&session.id));
    headers.insert(
        "oci-chunk-min-length",
        HeaderValue::from(cx.config.part_size),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn out_of_order(name: &str, session: &Session, message: String) -> RegistryError {
    RegistryError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorCode::BlobUploadInvalid,
        message,
    )
    .with_header(header::LOCATION, upload_location(name, &session.id))
    .with_header(header::RANGE, range_header(session.state.offset))
}

fn lost_race(name: &str, session: &Session) -> RegistryError {
    out_of_order(
        name,
        session,
        "the upload was changed by a concurrent request; GET the upload for its current range"
            .into(),
    )
}

async fn load(cx: &Cx, name: &str, id: &str) -> Result<Session> {
    let key = layout::upload_state(id);
    let Some((meta, bytes)) = cx.store.get(&key).await? else {
        return Err(RegistryError::upload_unknown());
    };
    let (state, hash) = UploadState::decode(&bytes)
        .map_err(|e| RegistryError::backend("get", &key, &format!("corrupt upload state: {e}")))?;
    if state.repository != name {
        return Err(RegistryError::upload_unknown());
    }
    Ok(Session {
        id: id.to_owned(),
        state,
        etag: meta.etag,
        hash,
    })
}

/// Replaces the record if nobody else did since we read it. `checkpoint` says whether the
/// running hash now covers exactly `offset` bytes and is saved with it; between checkpoints
/// the live hash runs ahead of the record (it has seen bytes not yet stored) and must not be.
async fn save(cx: &Cx, name: &str, session: &mut Session, checkpoint: bool) -> Result<()> {
    if checkpoint {
        session.state.hash_state = hex::encode(session.hash.serialize());
    }
    session.state.updated_at = cx.now.0;
    let key = layout::upload_state(&session.id);
    let body = Bytes::from(session.state.encode());
    match cx
        .store
        .put(&key, body, Condition::IfMatch(session.etag.clone()))
        .await?
    {
        Written::Stored { etag } => {
            session.etag = etag;
            Ok(())
        }
        Written::PreconditionFailed => Err(lost_race(name, session)),
    }
}

/// POST `/v2/<name>/blobs/uploads/`: mount, monolithic upload, or a new session.
pub(crate) async fn start(cx: &Cx, name: &str) -> Result<Response> {
    if let Some(mount) = cx.query.get("mount") {
        let digest = parse_digest(mount)?;
        if let Some(response) = try_mount(cx, name, &digest).await? {
            return Ok(response);
        }
    }
    let claimed = cx.query.get("digest").map(parse_digest).transpose()?;
    let algorithm = match cx.query.get("digest-algorithm") {
        Some(text) => Algorithm::parse(text).ok_or_else(|| {
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                format!("digest algorithm {text:?} is not supported (sha256, sha512 are)"),
            )
        })?,
        None => claimed
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm),
    };
    let id = cx.new_upload_id();
    let state = UploadState::new(name, algorithm, cx.config.part_size, cx.now.0);
    let key = layout::upload_state(&id);
    let etag = match cx
        .store
        .put(&key, Bytes::from(state.encode()), Condition::IfNoneMatch)
        .await?
    {
        Written::Stored { etag } => etag,
        Written::PreconditionFailed => {
            return Err(RegistryError::backend(
                "put",
                &key,
                "upload id collision: the runtime's entropy repeats",
            ));
        }
    };
    let hash = ResumableHash::new(algorithm);
    let mut session = Session {
        id,
        state,
        etag,
        hash,
    };
    match claimed {
        Some(digest) => finish(cx, name, &mut session, &digest).await,
        None => Ok(session_response(StatusCode::ACCEPTED, name, &session, cx)),
    }
}

async fn try_mount(cx: &Cx, name: &str, digest: &Digest) -> Result<Option<Response>> {
    let mut pointer = None;
    if let Some(from) = cx.query.get("from") {
        if !crate::names::is_valid_repository_name(from) {
            return Err(RegistryError::name_invalid(format!(
                "invalid repository name {from:?} in from"
            )));
        }
        pointer = publish::read_link(cx, from, digest).await?;
    }
    if pointer.is_none() && cx.config.mount_without_from {
        pointer = publish::read_pointer(cx, digest).await?;
    }
    let Some(pointer) = pointer else {
        return Ok(None);
    };
    publish::link(cx, name, digest, &pointer).await?;
    Ok(Some(publish::created_response(name, digest)))
}

/// GET on an upload: its status.
pub(crate) async fn status(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let session = load(cx, name, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, name, &session, cx))
}

/// PATCH: append a chunk.
pub(crate) async fn append(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let mut session = load(cx, name, id).await?;
    check_chunk_start(cx, name, &session)?;
    let mut writer = Writer::new(cx.writer_token());
    let remainder = receive(cx, name, &mut session, &mut writer).await?;
    if writer.received > 0 || writer.claimed {
        keep_tail(cx, name, &mut session, &writer, remainder).await?;
    }
    Ok(session_response(StatusCode::ACCEPTED, name, &session, cx))
}

/// PUT with `?digest=`: the last chunk, if any, then verification and publication.
pub(crate) async fn close(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let Some(text) = cx.query.get("digest") else {
        return Err(RegistryError::digest_invalid(
            "the closing PUT must carry ?digest=<digest of the whole blob>",
        ));
    };
    let digest = parse_digest(text)?;
    let mut session = load(cx, name, id).await?;
    check_chunk_start(cx, name, &session)?;
    finish(cx, name, &mut session, &digest).await
}

/// DELETE on an upload: cancel it.
pub(crate) async fn cancel(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let session = load(cx, name, id).await?;
    discard(cx, &session.id, &session.state).await?;
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(response)
}

/// A chunk must start where the upload stands (416 otherwise), and its declared range must
/// agree with its `Content-Length`.
fn check_chunk_start(cx: &Cx, name: &str, session: &Session) -> Result<()> {
    let Some(text) = cx.header(header::CONTENT_RANGE) else {
        return Ok(());
    };
    let Some(range) = parse_content_range(text) else {
        return Err(out_of_order(
            name,
            session,
            format!("Content-Range {text:?} is not <first>-<last>"),
        ));
    };
    if range.first != session.state.offset {
        return Err(out_of_order(
            name,
            session,
            format!(
                "chunk starts at byte {} but the upload has {} bytes; chunks must be sent in order",
                range.first, session.state.offset
            ),
        ));
    }
    if let Some(length) = cx
        .header(header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<u64>().ok())
        && length != range.len()
    {
        return Err(RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::SizeInvalid,
            format!(
                "Content-Range {text} covers {} bytes but Content-Length is {length}",
                range.len()
            ),
        ));
    }
    Ok(())
}

/// This request's role in the upload.
struct Writer {
    token: String,
    claimed: bool,
    received: u64,
}

impl Writer {
    fn new(token: String) -> Writer {
        Writer {
            token,
            claimed: false,
            received: 0,
        }
    }
}

/// Reads the whole request body into the upload: full parts go to the backend, the rest is
/// returned (the old tail's bytes first). The running hash covers every byte received.
async fn receive(cx: &Cx, name: &str, session: &mut Session, writer: &mut Writer) -> Result<Bytes> {
    // A part is held in memory, so it must fit this platform's address space (wasm32: 4 GiB).
    let part_size = usize::try_from(session.state.part_size).map_err(|_| {
        RegistryError::backend(
            "get",
            &session.id,
            "part size exceeds this platform's memory",
        )
    })?;
    let mut buffer = PartBuffer::new();
    if let Some(tail) = &session.state.tail {
        let Some((_, bytes)) = cx.store.get(&tail.key).await? else {
            return Err(RegistryError::backend(
                "get",
                &tail.key,
                "the upload's tail object is missing",
            ));
        };
        if bytes.len() as u64 != tail.len {
            return Err(RegistryError::backend(
                "get",
                &tail.key,
                "the upload's tail object has the wrong length",
            ));
        }
        buffer.reserve_total(bytes.len());
        buffer.extend_from_slice(&bytes);
    }
    // With a declared length, every part's final size is known before its first byte, so its
    // buffer is allocated once at that size; otherwise it grows by doubling up to a part.
    let declared = cx
        .header(header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<u64>().ok());
    while let Some(chunk) = cx.store.read_body().await? {
        writer.received += chunk.len() as u64;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let take = (part_size - buffer.len()).min(rest.len());
            let expected = declared.map(|total| {
                let still_to_come = total.saturating_sub(writer.received) + rest.len() as u64;
                (buffer.len() as u64).saturating_add(still_to_come)
            });
            grow_within_part(&mut buffer, take, part_size, expected);
            session.hash.update(&rest[..take]);
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buffer.len() == part_size {
                let part = buffer.take();
                store_part(cx, name, session, writer, part).await?;
            }
        }
    }
    Ok(buffer.take())
}

/// Reserves room for `extra` more bytes, never beyond one part: exactly the bytes `expected`
/// to end up in the buffer when the request declared its length, else by doubling.
fn grow_within_part(
    buffer: &mut PartBuffer,
    extra: usize,
    part_size: usize,
    expected: Option<u64>,
) {
    let needed = buffer.len() + extra;
    if needed > buffer.capacity() {
        let target = match expected {
            Some(expected) => usize::try_from(expected).unwrap_or(part_size).max(needed),
            None => needed.max(buffer.capacity() * 2),
        }
        .min(part_size);
        buffer.reserve_total(target);
    }
}

/// Makes this request the upload's writer before it writes a part.
async fn claim(cx: &Cx, name: &str, session: &mut Session, writer: &mut Writer) -> Result<()> {
    if writer.claimed {
        return Ok(());
    }
    session.state.writer = Some(writer.token.clone());
    let mut created = None;
    if session.state.multipart.is_none() {
        let key = layout::upload_data(&session.id, &writer.token);
        let upload_id = cx
            .store
            .create_multipart(&key, session.state.part_size)
            .await?;
        session.state.multipart = Some(MultipartRecord {
            key: key.clone(),
            upload_id: upload_id.clone(),
        });
        created = Some((key, upload_id));
    }
    if let Err(e) = save(cx, name, session, false).await {
        if let Some((key, upload_id)) = created {
            let _ = cx.store.abort_multipart(&key, &upload_id).await;
        }
        return Err(e);
    }
    writer.claimed = true;
    Ok(())
}

/// Uploads one full part (the tail's bytes plus new ones) and checkpoints the record.
async fn store_part(
    cx: &Cx,
    name: &str,
    session: &mut Session,
    writer: &mut Writer,
    part: Bytes,
) -> Result<()> {
    claim(cx, name, session, writer).await?;
    let number = session.state.next_part_number;
    if number > MAX_PARTS {
        return Err(RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::SizeInvalid,
            format!(
                "blob exceeds {MAX_PARTS} parts of {} bytes, the largest this registry stores",
                session.state.part_size
            ),
        ));
    }
    let Some(multipart) = session.state.multipart.clone() else {
        return Err(RegistryError::backend(
            "upload-part",
            &session.id,
            "claimed upload has no multipart upload",
        ));
    };
    let len = part.len() as u64;
    let Some(etag) = cx
        .store
        .upload_part(&multipart.key, &multipart.upload_id, number, part)
        .await?
    else {
        return Err(vanished(cx, name, session).await);
    };
    let old_tail = session.state.tail.take();
    session.state.parts.push(CompletedPart {
        part_number: number,
        etag,
    });
    session.state.next_part_number = number + 1;
    session.state.offset = session.state.offset - old_tail.as_ref().map_or(0, |t| t.len) + len;
    save(cx, name, session, true).await?;
    if let Some(tail) = old_tail {
        let _ = cx.store.delete(&tail.key).await;
    }
    Ok(())
}

/// Ends a PATCH: keeps the bytes that do not fill a part as the new tail and releases the claim.
async fn keep_tail(
    cx: &Cx,
    name: &str,
    session: &mut Session,
    writer: &Writer,
    remainder: Bytes,
) -> Result<()> {
    let old_tail = session.state.tail.take();
    let old_tail_len = old_tail.as_ref().map_or(0, |t| t.len);
    let full = session.state.offset - old_tail_len;
    let mut new_tail = None;
    if !remainder.is_empty() {
        let key = layout::upload_tail(&session.id, full, &writer.token);
        let len = remainder.len() as u64;
        cx.store.put_always(&key, remainder).await?;
        new_tail = Some(TailRecord { key, len });
    }
    session.state.offset = full + new_tail.as_ref().map_or(0, |t| t.len);
    session.state.tail = new_tail.clone();
    if writer.claimed {
        session.state.writer = None;
    }
    if let Err(e) = save(cx, name, session, true).await {
        if let Some(tail) = new_tail {
            let _ = cx.store.delete(&tail.key).await;
        }
        return Err(e);
    }
    if let Some(old) = old_tail
        && new_tail.as_ref().is_none_or(|t| t.key != old.key)
    {
        let _ = cx.store.delete(&old.key).await;
    }
    Ok(())
}

/// Receives the last chunk, verifies the digest, writes the blob's data and publishes it.
async fn finish(cx: &Cx, name: &str, session: &mut Session, digest: &Digest) -> Result<Response> {
    if digest.algorithm() != session.state.algorithm {
        if session.state.offset == 0 {
            // Nothing hashed yet: hash with the algorithm the client names at the end.
            session.state.algorithm = digest.algorithm();
            session.hash = ResumableHash::new(digest.algorithm());
            session.state.hash_state = hex::encode(session.hash.serialize());
        } else {
            return Err(RegistryError::digest_invalid(format!(
                "the upload is hashed with {} but the digest is {}; start the upload with \
                 ?digest-algorithm={}",
                session.state.algorithm,
                digest.algorithm(),
                digest.algorithm()
            )));
        }
    }
    let mut writer = Writer::new(cx.writer_token());
    let remainder = receive(cx, name, session, &mut writer).await?;
    let computed = session.hash.finish();
    if &computed != digest {
        discard(cx, &session.id, &session.state).await?;
        return Err(RegistryError::digest_invalid(format!(
            "the uploaded bytes hash to {computed}, not {digest}; the upload was discarded"
        )));
    }
    let size = session.state.offset - session.state.tail.as_ref().map_or(0, |t| t.len)
        + remainder.len() as u64;
    let data_key = write_data(cx, name, session, &mut writer, remainder).await?;
    // Fence: from here on the record names the digest, so maintenance keeps the data.
    session.state.finalizing = Some(digest.to_string());
    if let Err(e) = save(cx, name, session, false).await {
        if session.state.multipart.is_none() {
            let _ = cx.store.delete(&data_key).await;
        }
        return Err(e);
    }
    let pointer = BlobPointer {
        size,
        data: data_key,
    };
    publish::publish(cx, name, digest, pointer).await?;
    remove_record(cx, &session.id).await?;
    Ok(publish::created_response(name, digest))
}

/// Writes the verified blob's bytes: completes the multipart upload (with the remainder as
/// its last part) or, for a blob smaller than a part, puts it whole.
async fn write_data(
    cx: &Cx,
    name: &str,
    session: &mut Session,
    writer: &mut Writer,
    remainder: Bytes,
) -> Result<String> {
    let has_parts = !session.state.parts.is_empty();
    match session.state.multipart.clone() {
        Some(multipart) if has_parts || !remainder.is_empty() => {
            if !remainder.is_empty() {
                claim(cx, name, session, writer).await?;
                let number = session.state.next_part_number;
                let Some(etag) = cx
                    .store
                    .upload_part(&multipart.key, &multipart.upload_id, number, remainder)
                    .await?
                else {
                    return Err(vanished(cx, name, session).await);
                };
                session.state.parts.push(CompletedPart {
                    part_number: number,
                    etag,
                });
                session.state.next_part_number = number + 1;
            }
            let completed = cx
                .store
                .complete_multipart(
                    &multipart.key,
                    &multipart.upload_id,
                    session.state.parts.clone(),
                )
                .await?;
            if completed.is_none() {
                return Err(vanished(cx, name, session).await);
            }
            Ok(multipart.key)
        }
        other => {
            if let Some(unused) = other {
                cx.store
                    .abort_multipart(&unused.key, &unused.upload_id)
                    .await?;
                session.state.multipart = None;
            }
            let key = layout::upload_data(&session.id, &writer.token);
            cx.store.put_always(&key, remainder).await?;
            Ok(key)
        }
    }
}

/// The backend no longer knows the upload's multipart upload: lifecycle rules abort incomplete
/// multipart uploads some days after their creation (R2's default rule: 7 days; S3's
/// `AbortIncompleteMultipartUpload`), whatever the upload's activity since. Its parts are gone,
/// so the session can never be finished: the client must start again, and is told so with 404
/// `BLOB_UPLOAD_UNKNOWN`, as for any upload the registry does not know.
///
/// The session is removed rather than left for maintenance to expire, but only if its record
/// is still the one this request read or wrote: the record is first rewritten with `If-Match`,
/// which fences off any concurrent request on the upload (its next write fails). So a request
/// that completed the multipart upload just before this one found it gone — and is about to
/// record that it publishes the data — either wins (this request gets 416 and removes
/// nothing) or loses before it publishes anything (invariant 1 is not at stake either way:
/// nothing is published from a vanished upload). If removal fails midway, the record is
/// deleted last, so a later request or maintenance finishes the job.
async fn vanished(cx: &Cx, name: &str, session: &mut Session) -> RegistryError {
    if let Err(e) = save(cx, name, session, false).await {
        return e;
    }
    // Best effort: the answer is 404 either way, and what is left is maintenance's to remove.
    let _ = discard(cx, &session.id, &session.state).await;
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadUnknown,
        "the storage backend no longer has this upload's parts (incomplete multipart uploads \
         are aborted after some days); the upload was removed, start it again",
    )
}

/// Removes the state record and the upload's tails (the data is published or deleted by then).
async fn remove_record(cx: &Cx, id: &str) -> Result<()> {
    delete_prefix(cx, &layout::upload_prefix(id), None).await
}

/// Deletes every key under `prefix` except `keep`, the state record last so that a failure
/// midway leaves a record to retry from.
pub(crate) async fn delete_prefix(cx: &Cx, prefix: &str, keep: Option<&str>) -> Result<()> {
    let mut start_after = None;
    let mut state_key = None;
    loop {
        let listing = cx
            .store
            .list(prefix, start_after.clone(), 1000, None)
            .await?;
        for key in &listing.keys {
            if Some(key.as_str()) == keep {
                continue;
            }
            if key.ends_with("/state") && key.starts_with(layout::UPLOADS_PREFIX) {
                state_key = Some(key.clone());
                continue;
            }
            cx.store.delete(key).await?;
        }
        if !listing.truncated || listing.keys.is_empty() {
            break;
        }
        start_after = listing.keys.last().cloned();
    }
    if let Some(key) = state_key {
        cx.store.delete(&key).await?;
    }
    Ok(())
}

/// Throws an upload away: its multipart upload, its data (unless published), tails and record.
pub(crate) async fn discard(cx: &Cx, id: &str, state: &UploadState) -> Result<()> {
    let mut published = None;
    if let Some(text) = &state.finalizing
        && let Ok(digest) = Digest::parse(text)
        && let Some(pointer) = publish::read_pointer(cx, &digest).await?
    {
        published = Some(pointer.data);
    }
    if let Some(multipart) = &state.multipart
        && published.as_deref() != Some(multipart.key.as_str())
    {
        cx.store
            .abort_multipart(&multipart.key, &multipart.upload_id)
            .await?;
    }
    delete_prefix(cx, &layout::upload_data_prefix(id), published.as_deref()).await?;
    remove_record(cx, id).await
}
