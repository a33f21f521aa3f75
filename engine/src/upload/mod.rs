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
//! An upload's record goes through three phases (see [`state::UploadState`]): *receiving*,
//! then *publishing* once the bytes are verified, or *abandoned* when it is thrown away. The
//! two ways out are each fenced by a compare-and-swap on the record, and whoever deletes an
//! upload's data first writes the abandoned phase over the very record it read. So a request
//! that commits a verified blob and a process that deletes the same upload (a cancel, a failed
//! close, maintenance) can never both succeed: the blob is published and kept, or thrown away
//! and never published. A publishing record only ever moves forward: a retried close or
//! maintenance completes it from the record alone.
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
use crate::response::{Body, ByteRange, Response};
use crate::route::parse_digest;
use crate::store::Written;
use part_buffer::PartBuffer;
use state::{MultipartRecord, Publication, TailRecord, UploadState};

/// One upload session as read from storage, plus the etag to replace it with.
struct Session {
    id: String,
    state: UploadState,
    etag: String,
    hash: ResumableHash,
    /// The other algorithm's running hash, while the record keeps one.
    alternate: Option<ResumableHash>,
}

impl Session {
    fn is_publishing(&self) -> bool {
        self.state.finalizing.is_some()
    }

    /// The running hash in `algorithm`, if this upload keeps one.
    fn hash_in(&self, algorithm: Algorithm) -> Option<&ResumableHash> {
        if self.hash.algorithm() == algorithm {
            return Some(&self.hash);
        }
        self.alternate
            .as_ref()
            .filter(|alternate| alternate.algorithm() == algorithm)
    }
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

/// The answer to anything but a matching closing PUT on an upload whose blob is being
/// published: as far as the client is concerned the upload is over.
fn already_closed() -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadUnknown,
        "the upload was already closed with a digest; its blob is being published",
    )
}

fn encode_state(id: &str, state: &UploadState) -> Result<Bytes> {
    state
        .encode()
        .map(Bytes::from)
        .map_err(|e| RegistryError::backend("put", &layout::upload_state(id), &e.to_string()))
}

/// Reads an upload's record. An abandoned upload is as unknown as a missing one.
async fn load(cx: &Cx, name: &str, id: &str) -> Result<Session> {
    let key = layout::upload_state(id);
    let Some((meta, bytes)) = cx.store.get(&key).await? else {
        return Err(RegistryError::upload_unknown());
    };
    let (state, hash) = UploadState::decode(&bytes)
        .map_err(|e| RegistryError::backend("get", &key, &format!("corrupt upload state: {e}")))?;
    if state.repository != name || state.abandoned {
        return Err(RegistryError::upload_unknown());
    }
    let alternate = match &state.alternate_hash_state {
        Some(text) => hex::decode(text)
            .ok()
            .and_then(|bytes| ResumableHash::deserialize(state.algorithm.other(), &bytes)),
        None => None,
    };
    Ok(Session {
        id: id.to_owned(),
        state,
        etag: meta.etag,
        hash,
        alternate,
    })
}

/// Replaces the record if nobody else did since we read it. `checkpoint` says whether the
/// running hashes now cover exactly `offset` bytes and are saved with it; between checkpoints
/// the live hashes run ahead of the record (they have seen bytes not yet stored) and must not
/// be.
async fn save(cx: &Cx, name: &str, session: &mut Session, checkpoint: bool) -> Result<()> {
    if checkpoint {
        session.state.hash_state = hex::encode(session.hash.serialize());
        session.state.alternate_hash_state = session
            .alternate
            .as_ref()
            .map(|alternate| hex::encode(alternate.serialize()));
    }
    session.state.updated_at = cx.now.0;
    let key = layout::upload_state(&session.id);
    let body = encode_state(&session.id, &session.state)?;
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
    let declared = match cx.query.get("digest-algorithm") {
        Some(text) => Some(Algorithm::parse(text).ok_or_else(|| {
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                format!("digest algorithm {text:?} is not supported (sha256, sha512 are)"),
            )
        })?),
        None => None,
    };
    let algorithm = declared
        .or(claimed.as_ref().map(Digest::algorithm))
        .unwrap_or(Algorithm::Sha256);
    // A client SHOULD say which algorithm it will close the upload with, and need not: until it
    // did, both are hashed, as long as the upload is shorter than a part (see `receive`).
    let alternate =
        (declared.is_none() && claimed.is_none()).then(|| ResumableHash::new(algorithm.other()));
    let id = cx.new_upload_id();
    let mut state = UploadState::new(name, algorithm, cx.config.part_size, cx.now.0);
    state.alternate_hash_state = alternate.as_ref().map(|h| hex::encode(h.serialize()));
    let key = layout::upload_state(&id);
    let etag = match cx
        .store
        .put(&key, encode_state(&id, &state)?, Condition::IfNoneMatch)
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
        alternate,
    };
    let Some(digest) = claimed else {
        return Ok(session_response(StatusCode::ACCEPTED, name, &session, cx));
    };
    let finished = finish(cx, name, &mut session, &digest).await;
    if finished.is_err() && !session.is_publishing() {
        // The client never learnt this upload's location, so nobody can resume or cancel it:
        // what it stored goes now, not at its expiry.
        let _ = abandon(cx, &mut session).await;
    }
    finished
}

async fn try_mount(cx: &Cx, name: &str, digest: &Digest) -> Result<Option<Response>> {
    let mut pointer = None;
    if let Some(from) = cx.query.get("from") {
        if !crate::names::is_valid_repository_name(from) {
            return Err(RegistryError::name_invalid(format!(
                "invalid repository name {from:?} in from"
            )));
        }
        pointer = publish::read_blob(cx, from, digest).await?;
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
    if session.is_publishing() {
        return Err(already_closed());
    }
    Ok(session_response(StatusCode::NO_CONTENT, name, &session, cx))
}

/// PATCH: append a chunk.
pub(crate) async fn append(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let mut session = load(cx, name, id).await?;
    if session.is_publishing() {
        return Err(already_closed());
    }
    check_chunk_start(cx, name, &session)?;
    let mut writer = Writer::new(cx.writer_token());
    let remainder = receive(cx, name, &mut session, &mut writer).await?;
    if writer.received > 0 || writer.claimed {
        keep_tail(cx, name, &mut session, &writer, remainder).await?;
    }
    Ok(session_response(StatusCode::ACCEPTED, name, &session, cx))
}

/// PUT with `?digest=`: the last chunk, if any, then verification and publication. A PUT
/// repeated after its blob was committed (the first one's answer was lost) finishes the
/// publication and answers as the first would have.
pub(crate) async fn close(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let Some(text) = cx.query.get("digest") else {
        return Err(RegistryError::digest_invalid(
            "the closing PUT must carry ?digest=<digest of the whole blob>",
        ));
    };
    let digest = parse_digest(text)?;
    let mut session = load(cx, name, id).await?;
    if let Some(committed) = &session.state.finalizing {
        if committed != &digest.to_string() {
            return Err(RegistryError::digest_invalid(format!(
                "the upload was already closed with digest {committed}"
            )));
        }
        return match roll_forward(cx, id, &session.state).await? {
            RolledForward::Published => Ok(publish::created_response(name, &digest)),
            RolledForward::DataGone => Err(data_gone()),
        };
    }
    check_chunk_start(cx, name, &session)?;
    finish(cx, name, &mut session, &digest).await
}

/// DELETE on an upload: cancel it.
pub(crate) async fn cancel(cx: &Cx, name: &str, id: &str) -> Result<Response> {
    let mut session = load(cx, name, id).await?;
    if session.is_publishing() {
        return Err(already_closed());
    }
    if !abandon(cx, &mut session).await? {
        return Err(lost_race(name, &session));
    }
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
            return Err(tail_missing(cx, name, session, &tail.key).await);
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
            if let Some(alternate) = &mut session.alternate {
                alternate.update(&rest[..take]);
            }
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

/// The tail the record names is not there: the upload was removed (or changed) by someone
/// else since this request read the record — or, if the record is still the same, storage
/// lost an object.
async fn tail_missing(cx: &Cx, name: &str, session: &Session, key: &str) -> RegistryError {
    let now = match cx.store.get(&layout::upload_state(&session.id)).await {
        Ok(now) => now,
        Err(e) => return e,
    };
    match now {
        Some((meta, _)) if meta.etag == session.etag => {
            RegistryError::backend("get", key, "the upload's tail object is missing")
        }
        Some((_, bytes)) if UploadState::decode(&bytes).is_ok_and(|(s, _)| !s.abandoned) => {
            lost_race(name, session)
        }
        _ => RegistryError::upload_unknown(),
    }
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
    // Past one part, only the algorithm the upload was opened with is hashed: hashing every
    // byte twice would double the CPU of every push that names no algorithm (docker's,
    // containerd's). A close with the other algorithm then reads the stored blob back once.
    session.alternate = None;
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

/// Receives the last chunk, verifies the digest, commits the upload to it and publishes it.
///
/// The order is what keeps a verified blob from being lost and an unverified one from being
/// published: the bytes are stored; the record is switched to the publishing phase (a
/// compare-and-swap: from here nothing may delete them); then the multipart upload is
/// completed, the pointer published and the record removed, each of which a later request or
/// maintenance can redo from the record.
async fn finish(cx: &Cx, name: &str, session: &mut Session, digest: &Digest) -> Result<Response> {
    let nothing_hashed = session.state.offset == 0 && session.state.parts.is_empty();
    if digest.algorithm() != session.state.algorithm && nothing_hashed {
        // Nothing hashed yet: hash with the algorithm the client names at the end.
        session.state.algorithm = digest.algorithm();
        session.hash = ResumableHash::new(digest.algorithm());
        session.alternate = None;
    }
    let mut writer = Writer::new(cx.writer_token());
    let remainder = receive(cx, name, session, &mut writer).await?;
    let size = session.state.offset - session.state.tail.as_ref().map_or(0, |t| t.len)
        + remainder.len() as u64;
    let computed = session
        .hash_in(digest.algorithm())
        .map(ResumableHash::finish);
    if computed.as_ref().is_some_and(|computed| computed != digest) {
        return Err(mismatch(cx, session, computed.as_ref(), digest).await);
    }
    let publication = store_data(cx, name, session, &mut writer, remainder, size).await?;
    if computed.is_none() {
        // Hashed in the other algorithm: the stored bytes are read back and hashed in this one.
        complete_data(cx, &session.state, &publication).await?;
        let reread = rehash(cx, digest.algorithm(), &publication).await?;
        if &reread != digest {
            return Err(mismatch(cx, session, Some(&reread), digest).await);
        }
    }
    commit(cx, name, session, digest, publication).await?;
    match roll_forward(cx, &session.id, &session.state).await? {
        RolledForward::Published => Ok(publish::created_response(name, digest)),
        RolledForward::DataGone => Err(data_gone()),
    }
}

/// The bytes do not hash to the digest: the upload is thrown away (if nobody else took it over
/// meanwhile) and the client told what they hash to.
async fn mismatch(
    cx: &Cx,
    session: &mut Session,
    computed: Option<&Digest>,
    digest: &Digest,
) -> RegistryError {
    if let Err(e) = abandon(cx, session).await {
        return e;
    }
    match computed {
        Some(computed) => RegistryError::digest_invalid(format!(
            "the uploaded bytes hash to {computed}, not {digest}; the upload was discarded"
        )),
        None => RegistryError::digest_invalid(format!(
            "the uploaded bytes do not hash to {digest}; the upload was discarded"
        )),
    }
}

/// Stores the blob's last bytes: the remainder as the multipart upload's last part, or, for a
/// blob smaller than a part, the whole blob in one put. Returns where the blob will be once
/// the multipart upload (if any) is completed with the returned parts.
async fn store_data(
    cx: &Cx,
    name: &str,
    session: &mut Session,
    writer: &mut Writer,
    remainder: Bytes,
    size: u64,
) -> Result<Publication> {
    let has_parts = !session.state.parts.is_empty();
    match session.state.multipart.clone() {
        Some(multipart) if has_parts || !remainder.is_empty() => {
            let mut parts = session.state.parts.clone();
            if !remainder.is_empty() {
                claim(cx, name, session, writer).await?;
                let number = session.state.next_part_number;
                if number > MAX_PARTS {
                    return Err(too_many_parts(session.state.part_size));
                }
                let Some(etag) = cx
                    .store
                    .upload_part(&multipart.key, &multipart.upload_id, number, remainder)
                    .await?
                else {
                    return Err(vanished(cx, name, session).await);
                };
                parts.push(CompletedPart {
                    part_number: number,
                    etag,
                });
            }
            Ok(Publication {
                data: multipart.key,
                size,
                parts,
            })
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
            Ok(Publication {
                data: key,
                size,
                parts: Vec::new(),
            })
        }
    }
}

fn too_many_parts(part_size: u64) -> RegistryError {
    RegistryError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::SizeInvalid,
        format!(
            "blob exceeds {MAX_PARTS} parts of {part_size} bytes, the largest this registry stores"
        ),
    )
}

/// Switches the record to the publishing phase: the verified bytes of `publication` are now
/// this upload's outcome, and nothing deletes them. Fails with 416 if another request changed
/// the record since it was read (then this request publishes nothing).
async fn commit(
    cx: &Cx,
    name: &str,
    session: &mut Session,
    digest: &Digest,
    publication: Publication,
) -> Result<()> {
    session.state.finalizing = Some(digest.to_string());
    session.state.publication = Some(publication.clone());
    session.state.writer = None;
    session.state.updated_at = cx.now.0;
    let key = layout::upload_state(&session.id);
    let body = encode_state(&session.id, &session.state)?;
    let written = cx
        .store
        .put(&key, body, Condition::IfMatch(session.etag.clone()))
        .await;
    match written {
        Ok(Written::Stored { etag }) => {
            session.etag = etag;
            Ok(())
        }
        Ok(Written::PreconditionFailed) => {
            session.state.finalizing = None;
            session.state.publication = None;
            // The record changed under us, so these bytes are nobody's: a blob put whole is
            // under this request's own key.
            if publication.parts.is_empty() {
                let _ = cx.store.delete(&publication.data).await;
            }
            Err(lost_race(name, session))
        }
        Err(e) => {
            // The record may or may not say publishing now: its bytes are left for whoever
            // reads it next (a retried close, or maintenance).
            session.state.finalizing = None;
            session.state.publication = None;
            Err(e)
        }
    }
}

/// How [`roll_forward`] ended.
pub(crate) enum RolledForward {
    /// The blob is published and linked, and the upload's record removed.
    Published,
    /// The committed bytes are not in storage (their multipart upload was aborted before it
    /// was completed): nothing can be published; the record was removed.
    DataGone,
}

fn data_gone() -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadUnknown,
        "the storage backend no longer has this upload's bytes; start the upload again",
    )
}

/// Finishes a publishing upload from its record alone: completes its multipart upload if that
/// is still to do, publishes the verified bytes and links them into the repository, and removes
/// the record. Idempotent, so a request and maintenance may both run it.
pub(crate) async fn roll_forward(cx: &Cx, id: &str, state: &UploadState) -> Result<RolledForward> {
    let key = layout::upload_state(id);
    let Some(text) = &state.finalizing else {
        return Err(RegistryError::backend(
            "get",
            &key,
            "rolling forward an upload that is not publishing",
        ));
    };
    let digest = Digest::parse(text).map_err(|e| {
        RegistryError::backend("get", &key, &format!("corrupt publishing digest: {e}"))
    })?;
    let publication = match &state.publication {
        Some(publication) => {
            complete_data(cx, state, publication).await?;
            Some(publication.clone())
        }
        None => legacy_publication(cx, id, state).await?,
    };
    let Some(publication) = publication else {
        remove_record(cx, id).await?;
        return Ok(RolledForward::DataGone);
    };
    match cx.store.head(&publication.data).await? {
        None => {
            remove_record(cx, id).await?;
            Ok(RolledForward::DataGone)
        }
        Some(meta) if meta.size != publication.size => Err(RegistryError::backend(
            "head",
            &publication.data,
            &format!(
                "the committed data has {} bytes, not the {} verified",
                meta.size, publication.size
            ),
        )),
        Some(_) => {
            let pointer = BlobPointer::new(publication.size, publication.data);
            publish::publish(cx, &state.repository, &digest, pointer).await?;
            remove_record(cx, id).await?;
            Ok(RolledForward::Published)
        }
    }
}

/// Completes the multipart upload that holds a publication's bytes, if it is not complete
/// already. A multipart upload the backend no longer knows was completed before (by an earlier
/// attempt whose answer was lost) or aborted; the caller tells which by looking for its object.
async fn complete_data(cx: &Cx, state: &UploadState, publication: &Publication) -> Result<()> {
    if publication.parts.is_empty() {
        return Ok(());
    }
    let Some(multipart) = state
        .multipart
        .as_ref()
        .filter(|m| m.key == publication.data)
    else {
        return Ok(());
    };
    cx.store
        .complete_multipart(
            &multipart.key,
            &multipart.upload_id,
            publication.parts.clone(),
        )
        .await?;
    Ok(())
}

/// Where a publishing record written by an older berth has its bytes (complete by then): the
/// multipart upload's object, or the one object put whole under the upload's data prefix.
async fn legacy_publication(cx: &Cx, id: &str, state: &UploadState) -> Result<Option<Publication>> {
    let data = match &state.multipart {
        Some(multipart) => multipart.key.clone(),
        None => {
            let listing = cx
                .store
                .list(&layout::upload_data_prefix(id), None, 2, None)
                .await?;
            match listing.keys.as_slice() {
                [only] => only.clone(),
                [] => return Ok(None),
                _ => {
                    return Err(RegistryError::backend(
                        "list",
                        &layout::upload_data_prefix(id),
                        "an old publishing record with more than one data object",
                    ));
                }
            }
        }
    };
    Ok(cx.store.head(&data).await?.map(|meta| Publication {
        data,
        size: meta.size,
        parts: Vec::new(),
    }))
}

/// The digest in `algorithm` of the stored bytes of `publication`, read back one part at a
/// time (memory: one part). For a blob of N bytes this reads N bytes from storage and hashes
/// them once more: the price of an upload closed with another algorithm than the one it was
/// opened with, once it outgrew one part.
async fn rehash(cx: &Cx, algorithm: Algorithm, publication: &Publication) -> Result<Digest> {
    let mut hash = ResumableHash::new(algorithm);
    let step = cx.config.part_size.max(1);
    let mut first = 0u64;
    while first < publication.size {
        let last = (first + step).min(publication.size) - 1;
        let range = Some(ByteRange { first, last });
        let Some((_, bytes)) = cx.store.get_range(&publication.data, range).await? else {
            return Err(RegistryError::backend(
                "get",
                &publication.data,
                "the blob's data vanished while it was read back",
            ));
        };
        if bytes.len() as u64 != last - first + 1 {
            return Err(RegistryError::backend(
                "get",
                &publication.data,
                "reading the blob back returned a short range",
            ));
        }
        hash.update(&bytes);
        first = last + 1;
    }
    Ok(hash.finish())
}

/// The backend no longer knows the upload's multipart upload: lifecycle rules abort incomplete
/// multipart uploads some days after their creation (R2's default rule: 7 days; S3's
/// `AbortIncompleteMultipartUpload`), whatever the upload's activity since. Its parts are gone,
/// so the session can never be finished: the client must start again, and is told so with 404
/// `BLOB_UPLOAD_UNKNOWN`, as for any upload the registry does not know. The session is
/// abandoned (fenced by `If-Match`, so a concurrent request that committed it meanwhile wins:
/// this one then gets 416 and removes nothing).
async fn vanished(cx: &Cx, name: &str, session: &mut Session) -> RegistryError {
    match abandon(cx, session).await {
        Ok(true) => RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadUnknown,
            "the storage backend no longer has this upload's parts (incomplete multipart \
             uploads are aborted after some days); the upload was removed, start it again",
        ),
        Ok(false) => lost_race(name, session),
        Err(e) => e,
    }
}

/// Throws a receiving upload away: first marks its record abandoned with `If-Match` on the
/// etag it was read with, so that no request that read it may still commit it, then deletes
/// what it owns. `false` when the record changed meanwhile (then nothing is deleted) or is
/// publishing (never thrown away).
async fn abandon(cx: &Cx, session: &mut Session) -> Result<bool> {
    if session.is_publishing() {
        return Ok(false);
    }
    session.state.abandoned = true;
    session.state.writer = None;
    session.state.updated_at = cx.now.0;
    let key = layout::upload_state(&session.id);
    let body = encode_state(&session.id, &session.state)?;
    match cx
        .store
        .put(&key, body, Condition::IfMatch(session.etag.clone()))
        .await?
    {
        Written::Stored { etag } => session.etag = etag,
        Written::PreconditionFailed => return Ok(false),
    }
    delete_abandoned(cx, &session.id, &session.state).await?;
    Ok(true)
}

/// Deletes everything an abandoned upload owns: its multipart upload, its data, its tails and
/// (last) its record. Nothing of an abandoned upload was ever published: publication needs
/// the publishing phase, and the abandoned phase replaced a receiving record.
pub(crate) async fn delete_abandoned(cx: &Cx, id: &str, state: &UploadState) -> Result<()> {
    if let Some(multipart) = &state.multipart {
        cx.store
            .abort_multipart(&multipart.key, &multipart.upload_id)
            .await?;
    }
    delete_prefix(cx, &layout::upload_data_prefix(id)).await?;
    remove_record(cx, id).await
}

/// Marks an expired receiving upload abandoned (with `If-Match` on the etag it was read with)
/// and deletes what it owns; `false` if the record changed since (the upload is alive).
pub(crate) async fn expire(
    cx: &Cx,
    id: &str,
    state: UploadState,
    hash: ResumableHash,
    etag: String,
) -> Result<bool> {
    let mut session = Session {
        id: id.to_owned(),
        state,
        etag,
        hash,
        alternate: None,
    };
    abandon(cx, &mut session).await
}

/// Removes the state record and the upload's tails, never its data (published by then, or
/// deleted by [`delete_abandoned`]).
async fn remove_record(cx: &Cx, id: &str) -> Result<()> {
    delete_prefix(cx, &layout::upload_prefix(id)).await
}

/// Deletes every key under `prefix`, an upload's state record last so that a failure midway
/// leaves a record to retry from.
pub(crate) async fn delete_prefix(cx: &Cx, prefix: &str) -> Result<()> {
    let mut start_after = None;
    let mut state_key = None;
    loop {
        let listing = cx
            .store
            .list(prefix, start_after.clone(), 1000, None)
            .await?;
        for key in &listing.keys {
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
