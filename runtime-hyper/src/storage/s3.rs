//! `--storage s3://bucket[/prefix]`: R2 or any S3 API, through `object_store`'s S3 client.
//!
//! Why `object_store`: a well-kept S3 client (signing, retries, streaming) with exactly the
//! primitives the engine's effects need: conditional puts (`PutMode::Create` is
//! `If-None-Match: *`, `PutMode::Update` is `If-Match`), multipart uploads addressed by id
//! (`MultipartStore`, so any replica can continue an upload), ranged and streamed gets, and
//! listing with an offset (S3's `start-after`) or a delimiter. It numbers parts by position,
//! which the engine's dense part numbering matches.
//!
//! **Timeouts.** S3 requests differ by orders of magnitude in how long they may take: a record
//! read takes milliseconds, a part upload moves up to a part size of bytes, and completing a
//! multipart upload of many parts can take S3 minutes (it assembles the object before it
//! answers). One client-wide timeout cannot fit them all (object_store's default of 30 s cut
//! off a 384-part completion that the server went on to finish), so each kind of request has
//! its own client and bound ([`S3Timeouts`]); a streamed blob has no bound on the whole,
//! only on the wait between two reads.
//!
//! **Completing is idempotent.** When completing fails ambiguously (a timeout, a broken
//! connection, a 5xx, or object_store's retry finding the upload id already consumed by the
//! attempt whose answer was lost), the backend looks at the target key: the engine completes
//! each multipart upload into a key of its own (`_data/<upload-id>/<writer>`) that nothing
//! else ever writes, so an object there whose ETag is the one S3 gives an object assembled
//! from exactly these parts (see [`assembled_from`]) *is* this completion, and it is reported
//! as stored. The engine's `NotFound` (the upload is gone: start again) is reported only when
//! the server says the upload id is unknown and no such object exists; anything else is a
//! failure the client may retry.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_engine::config::{MAX_PART_SIZE, MIN_PART_SIZE};
use berth_engine::{ByteRange, CompletedPart, Condition, Effect, Listing, ObjectMeta, Outcome};
use futures_util::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, UpdateVersion,
};

use super::ObjectStream;

/// How long one S3 request of each kind may take (connecting, sending and receiving the whole
/// answer) before it is abandoned; object_store retries an abandoned request while its retry
/// budget lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S3Timeouts {
    /// Reading and writing records, listing, deleting, starting and aborting multipart
    /// uploads; also the longest wait for the next bytes of a streamed blob.
    pub request: Duration,
    /// Uploading one part (up to `--part-size` bytes).
    pub part: Duration,
    /// Completing a multipart upload: S3 answers once it has assembled the object, which for
    /// thousands of parts can take minutes.
    pub complete: Duration,
}

impl Default for S3Timeouts {
    fn default() -> S3Timeouts {
        S3Timeouts {
            request: Duration::from_secs(30),
            part: Duration::from_secs(300),
            complete: Duration::from_secs(900),
        }
    }
}

/// Where and how to reach the bucket; unset fields come from the usual AWS environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow `http://` endpoints (local S3 servers).
    pub allow_http: bool,
    /// Address the bucket as `https://<bucket>.<endpoint>` instead of `<endpoint>/<bucket>`.
    pub virtual_hosted_style: bool,
    pub timeouts: S3Timeouts,
}

/// One bucket, reached through one S3 client per kind of request (see [`S3Timeouts`]).
pub struct S3Backend {
    /// Records, listings, deletes, creating and aborting multipart uploads.
    store: Arc<AmazonS3>,
    /// Part uploads.
    parts: Arc<AmazonS3>,
    /// Completions of multipart uploads.
    completions: Arc<AmazonS3>,
    /// Blob bodies streamed to clients: no bound on the whole, a bound between two reads.
    streams: Arc<AmazonS3>,
    /// Key prefix inside the bucket, empty or ending with `/`.
    prefix: String,
    bucket: String,
}

/// The HTTP client settings object_store reads from `AWS_*` variables (`AWS_PROXY_URL`,
/// `AWS_ALLOW_INVALID_CERTIFICATES`, …), as `AmazonS3Builder::from_env` applies them, so that
/// giving each client its own timeouts keeps them.
fn client_options_from_env() -> ClientOptions {
    let mut options = ClientOptions::new();
    for (name, value) in std::env::vars() {
        let name = name.to_ascii_lowercase();
        if let Some(key) = name.strip_prefix("aws_")
            && let Ok(key) = key.parse::<ClientConfigKey>()
        {
            options = options.with_config(key, value);
        }
    }
    options
}

fn failed(context: &str, error: impl std::fmt::Display) -> Outcome {
    Outcome::Failed(format!("{context}: {error}"))
}

impl S3Backend {
    /// Connects to `s3://bucket[/prefix]` and checks that the bucket enforces conditional
    /// writes; the engine's race safety depends on them.
    pub async fn open(spec: &str, options: &S3Options) -> io::Result<S3Backend> {
        let rest = spec
            .strip_prefix("s3://")
            .ok_or_else(|| io::Error::other("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(io::Error::other("s3:// URL names no bucket"));
        }
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(options.virtual_hosted_style);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
        let client = client_options_from_env();
        let timeouts = options.timeouts;
        let build = |client: ClientOptions| -> io::Result<Arc<AmazonS3>> {
            let store = builder
                .clone()
                .with_client_options(client)
                .with_allow_http(options.allow_http)
                .build()
                .map_err(io::Error::other)?;
            Ok(Arc::new(store))
        };
        let backend = S3Backend {
            store: build(client.clone().with_timeout(timeouts.request))?,
            parts: build(client.clone().with_timeout(timeouts.part))?,
            completions: build(client.clone().with_timeout(timeouts.complete))?,
            streams: build(
                client
                    .with_timeout_disabled()
                    .with_read_timeout(timeouts.request),
            )?,
            prefix,
            bucket: bucket.to_owned(),
        };
        backend.probe_conditional_writes().await?;
        Ok(backend)
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn path(&self, key: &str) -> Result<Path, String> {
        Path::parse(format!("{}{key}", self.prefix))
            .map_err(|e| format!("invalid key {key:?}: {e}"))
    }

    fn key_of(&self, path: &Path) -> String {
        let full = path.as_ref();
        full.strip_prefix(&self.prefix).unwrap_or(full).to_owned()
    }

    async fn probe_conditional_writes(&self) -> io::Result<()> {
        // A key of this process's own: replicas starting together must not trip each other.
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = self
            .path(&format!("_probe/conditional-writes-{nonce}"))
            .map_err(io::Error::other)?;
        let refuse = |what: &str| {
            io::Error::other(format!(
                "the bucket does not enforce {what}; berth's upload safety depends on conditional writes, so it will not start"
            ))
        };
        let _ = self.store.delete(&path).await;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from_static(b"1"), create.clone())
            .await
            .map_err(|e| io::Error::other(format!("probe write failed: {e}")))?;
        match self
            .store
            .put_opts(&path, PutPayload::from_static(b"2"), create)
            .await
        {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            _ => return Err(refuse("If-None-Match: * (create-only puts)")),
        }
        let stale = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some("\"not-the-current-etag\"".into()),
                version: None,
            }),
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_static(b"3"), stale)
            .await
        {
            Err(object_store::Error::Precondition { .. }) => {}
            _ => return Err(refuse("If-Match (compare-and-swap puts)")),
        }
        let _ = self.store.delete(&path).await;
        Ok(())
    }

    pub async fn execute(&self, effect: Effect) -> Outcome {
        match effect {
            Effect::Head { key } => {
                let path = match self.path(&key) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                match self.store.head(&path).await {
                    Ok(meta) => Outcome::Found(ObjectMeta {
                        size: meta.size,
                        etag: meta.e_tag.unwrap_or_default(),
                    }),
                    Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
                    Err(e) => failed(&key, e),
                }
            }
            Effect::Get { key, range } => self.get(&key, range).await,
            Effect::Put {
                key,
                body,
                condition,
            } => {
                let path = match self.path(&key) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                let mode = match condition {
                    Condition::None => PutMode::Overwrite,
                    Condition::IfNoneMatch => PutMode::Create,
                    Condition::IfMatch(etag) => PutMode::Update(UpdateVersion {
                        e_tag: Some(etag),
                        version: None,
                    }),
                };
                match self
                    .store
                    .put_opts(
                        &path,
                        PutPayload::from(body),
                        PutOptions {
                            mode,
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(result) => Outcome::Stored {
                        etag: result.e_tag.unwrap_or_default(),
                    },
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => Outcome::PreconditionFailed,
                    // If-Match on a key that is gone is a failed precondition, as on S3.
                    Err(object_store::Error::NotFound { .. }) => Outcome::PreconditionFailed,
                    Err(e) => failed(&key, e),
                }
            }
            Effect::Delete { key } => match self.path(&key) {
                Err(e) => Outcome::Failed(e),
                Ok(path) => match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Outcome::Deleted,
                    // Aborting an upload the server no longer knows is done, by the effect's
                    // contract; s3s-fs says so with 403 AccessDenied rather than 404
                    // NoSuchUpload. Were it a real refusal, the incomplete upload would be left
                    // to the bucket's lifecycle rule, as after a crash: nothing is lost, and a
                    // maintenance pass does not stall on it forever.
                    Err(object_store::Error::PermissionDenied { .. }) => {
                        tracing::warn!(key, "abort-multipart refused with 403: taken as gone");
                        Outcome::Deleted
                    }
                    Err(e) => failed(&key, e),
                },
            },
            Effect::List {
                prefix,
                start_after,
                limit,
                delimiter,
            } => self
                .list(&prefix, start_after.as_deref(), limit, delimiter)
                .await
                .unwrap_or_else(Outcome::Failed),
            Effect::CreateMultipart { key, part_size: _ } => match self.path(&key) {
                Err(e) => Outcome::Failed(e),
                Ok(path) => match self.store.create_multipart(&path).await {
                    Ok(upload_id) => Outcome::MultipartCreated { upload_id },
                    Err(e) => failed(&key, e),
                },
            },
            Effect::UploadPart {
                key,
                upload_id,
                part_number,
                body,
            } => {
                let path = match self.path(&key) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                let Some(index) = (part_number as usize).checked_sub(1) else {
                    return Outcome::Failed("part numbers start at 1".into());
                };
                match self
                    .parts
                    .put_part(&path, &upload_id, index, PutPayload::from(body))
                    .await
                {
                    Ok(part) => Outcome::PartUploaded {
                        etag: part.content_id,
                    },
                    Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
                    Err(e) => failed(&key, e),
                }
            }
            Effect::CompleteMultipart {
                key,
                upload_id,
                parts,
            } => self.complete(&key, &upload_id, parts).await,
            Effect::AbortMultipart { key, upload_id } => match self.path(&key) {
                Err(e) => Outcome::Failed(e),
                Ok(path) => match self.store.abort_multipart(&path, &upload_id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Outcome::Deleted,
                    // Aborting an upload the server no longer knows is done, by the effect's
                    // contract; s3s-fs says so with 403 AccessDenied rather than 404
                    // NoSuchUpload. Were it a real refusal, the incomplete upload would be left
                    // to the bucket's lifecycle rule, as after a crash: nothing is lost, and a
                    // maintenance pass does not stall on it forever.
                    Err(object_store::Error::PermissionDenied { .. }) => {
                        tracing::warn!(key, "abort-multipart refused with 403: taken as gone");
                        Outcome::Deleted
                    }
                    Err(e) => failed(&key, e),
                },
            },
            Effect::ReadBody => Outcome::Failed("storage does not read request bodies".into()),
            _ => Outcome::Failed("effect not supported by the S3 backend".into()),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Outcome {
        let path = match self.path(key) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.first..r.last + 1)),
            ..Default::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Outcome::NotFound,
            Err(e) => return failed(key, e),
        };
        let meta = ObjectMeta {
            size: result.meta.size,
            etag: result.meta.e_tag.clone().unwrap_or_default(),
        };
        match result.bytes().await {
            Ok(bytes) => Outcome::Object { meta, bytes },
            Err(e) => failed(key, e),
        }
    }

    /// One `ListObjectsV2` request: S3's prefix, start-after, delimiter and max-keys are
    /// exactly the effect's arguments, so a page costs one round trip however large the bucket.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        delimiter: Option<char>,
    ) -> Result<Outcome, String> {
        if limit == 0 {
            // S3 answers max-keys=0 with nothing; whether more exists is one key away.
            let probe = Box::pin(self.list(prefix, start_after, 1, delimiter)).await?;
            let more = match probe {
                Outcome::Listed(l) => !l.keys.is_empty() || !l.common_prefixes.is_empty(),
                _ => false,
            };
            return Ok(Outcome::Listed(Listing {
                truncated: more,
                ..Listing::default()
            }));
        }
        let full_prefix = format!("{}{prefix}", self.prefix);
        let options = PaginatedListOptions {
            offset: start_after.map(|a| format!("{}{a}", self.prefix)),
            delimiter: delimiter.map(|d| Cow::Owned(d.to_string())),
            max_keys: Some(limit.min(1000)),
            ..Default::default()
        };
        let page = self
            .store
            .list_paginated(
                (!full_prefix.is_empty()).then_some(full_prefix.as_str()),
                options,
            )
            .await
            .map_err(|e| e.to_string())?;
        // Keep exactly the engine's semantics whatever the server's reading of start-after
        // with a delimiter: nothing at or before it.
        let after = |k: &str| start_after.is_none_or(|a| k > a);
        let mut listing = Listing {
            keys: page
                .result
                .objects
                .iter()
                .map(|o| self.key_of(&o.location))
                .filter(|k| after(k))
                .collect(),
            common_prefixes: page
                .result
                .common_prefixes
                .iter()
                .map(|p| match delimiter {
                    // object_store's paths drop the trailing '/'.
                    Some('/') => format!("{}/", self.key_of(p)),
                    _ => self.key_of(p),
                })
                .filter(|k| after(k))
                .collect(),
            truncated: page.page_token.is_some(),
        };
        listing.keys.sort();
        listing.common_prefixes.sort();
        Ok(Outcome::Listed(listing))
    }

    async fn complete(&self, key: &str, upload_id: &str, parts: Vec<CompletedPart>) -> Outcome {
        let path = match self.path(key) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        if parts
            .iter()
            .enumerate()
            .any(|(i, p)| p.part_number as usize != i + 1)
        {
            return Outcome::Failed(
                "S3 uploads are completed with parts numbered 1, 2, 3, …".into(),
            );
        }
        let ids = parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        match self
            .completions
            .complete_multipart(&path, &upload_id.to_owned(), ids)
            .await
        {
            Ok(result) => Outcome::Stored {
                etag: result.e_tag.unwrap_or_default(),
            },
            Err(error) => {
                self.after_failed_completion(key, &path, &parts, error)
                    .await
            }
        }
    }

    /// Completing failed, perhaps only in appearance: the server may have assembled the object
    /// and the answer been lost (or come after the timeout), and then a retry finds the upload
    /// id consumed. Whether it did is decided by the object at the target key (see the module
    /// docs): it is reported as stored when it was assembled from exactly these parts.
    async fn after_failed_completion(
        &self,
        key: &str,
        path: &Path,
        parts: &[CompletedPart],
        error: object_store::Error,
    ) -> Outcome {
        let upload_unknown = names_an_unknown_upload(&error);
        let mismatch = match self.store.head(path).await {
            Ok(meta) => {
                let etag = meta.e_tag.unwrap_or_default();
                match assembled_from(parts, meta.size, &etag) {
                    Ok(()) => {
                        tracing::warn!(
                            key,
                            parts = parts.len(),
                            size = meta.size,
                            "completing a multipart upload seemed to fail ({error}), but the \
                             object it creates exists, assembled from its parts: it succeeded"
                        );
                        return Outcome::Stored { etag };
                    }
                    Err(mismatch) => mismatch,
                }
            }
            Err(object_store::Error::NotFound { .. }) => "no object exists at its key".to_owned(),
            Err(head) => {
                return failed(
                    key,
                    format!("{error}; looking for the object it creates failed too: {head}"),
                );
            }
        };
        if upload_unknown {
            tracing::warn!(key, "the multipart upload is gone ({error}) and {mismatch}");
            return Outcome::NotFound;
        }
        failed(key, format!("{error} (and {mismatch})"))
    }

    pub async fn open_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> io::Result<ObjectStream> {
        let path = self.path(key).map_err(io::Error::other)?;
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.first..r.last + 1)),
            ..Default::default()
        };
        let result = self
            .streams
            .get_opts(&path, options)
            .await
            .map_err(io::Error::other)?;
        Ok(result.into_stream().map_err(io::Error::other).boxed())
    }
}

/// Whether the server said that the multipart upload id is unknown: S3's `404 NoSuchUpload`.
/// (Some servers, s3s-fs among them, answer `403 AccessDenied` instead, which cannot be told
/// from a real refusal; for those a vanished upload stays a failure until it expires.)
fn names_an_unknown_upload(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
        || error.to_string().contains("NoSuchUpload")
}

/// Whether an object of `size` bytes with `etag` is the one completing a multipart upload of
/// `parts` creates; if not, why not.
///
/// The proof is the ETag: S3, R2 (for uploads created since June 2023), MinIO and s3s-fs give
/// a multipart object the MD5 of its parts' binary MD5s (their ETags), then `-` and the number
/// of parts, so two objects with that ETag were assembled from the same parts, in the same
/// order. The size must also be one such parts can add up to. A server with another ETag
/// scheme gets no proof, and the completion stays failed: the client may retry, which is safe,
/// while taking a stranger's object for this upload's would publish wrong bytes.
fn assembled_from(parts: &[CompletedPart], size: u64, etag: &str) -> Result<(), String> {
    let count = parts.len() as u64;
    if count == 0 {
        return Err("a multipart upload of no parts".into());
    }
    let smallest = (count - 1) * MIN_PART_SIZE;
    let largest = count * MAX_PART_SIZE;
    if size < smallest || size > largest {
        return Err(format!(
            "the object at its key has {size} bytes, which {count} parts cannot add up to"
        ));
    }
    let mut md5_of_md5s = Md5::new();
    for part in parts {
        let Some(md5) = md5_of(&part.etag) else {
            return Err(format!(
                "part {} has the ETag {:?}, not an MD5, so no object can be matched to the parts",
                part.part_number, part.etag
            ));
        };
        md5_of_md5s.update(md5);
    }
    let expected = format!("{}-{count}", to_hex(&md5_of_md5s.finalize()));
    if !unquote(etag).eq_ignore_ascii_case(&expected) {
        return Err(format!(
            "the object at its key has the ETag {etag:?}, not {expected:?} as assembled from the parts"
        ));
    }
    Ok(())
}

/// An ETag without its quotes (and weak marker).
fn unquote(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

/// The 16 bytes of an ETag that is an MD5 in hex, as S3's part ETags are.
fn md5_of(etag: &str) -> Option<[u8; 16]> {
    let text = unquote(etag).as_bytes();
    if text.len() != 32 {
        return None;
    }
    let mut md5 = [0u8; 16];
    for (byte, pair) in md5.iter_mut().zip(text.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(md5)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn part(number: u32, bytes: &[u8]) -> CompletedPart {
        CompletedPart {
            part_number: number,
            etag: format!("\"{}\"", to_hex(&Md5::digest(bytes))),
        }
    }

    /// R2's documented example: parts with these ETags make an object with this one.
    #[test]
    fn the_etag_of_an_object_assembled_from_parts_is_recognized() {
        let parts = [
            CompletedPart {
                part_number: 1,
                etag: "bce6bf66aeb76c7040fdd5f4eccb78e6".into(),
            },
            CompletedPart {
                part_number: 2,
                etag: "\"8165449fc15bbf43d3b674595cbcc406\"".into(),
            },
        ];
        let size = 5 * MIB + 100;
        assert_eq!(
            assembled_from(&parts, size, "\"f77dc0eecdebcd774a2a22cb393ad2ff-2\""),
            Ok(())
        );
        assert_eq!(
            assembled_from(&parts, size, "F77DC0EECDEBCD774A2A22CB393AD2FF-2"),
            Ok(())
        );
    }

    #[test]
    fn an_object_from_other_parts_or_of_an_impossible_size_is_not_this_completion() {
        let parts = [part(1, b"first"), part(2, b"second"), part(3, b"third")];
        let etag = |parts: &[CompletedPart]| {
            let mut md5 = Md5::new();
            for p in parts {
                md5.update(md5_of(&p.etag).unwrap());
            }
            format!("\"{}-{}\"", to_hex(&md5.finalize()), parts.len())
        };
        let size = 10 * MIB + 1;
        assert_eq!(assembled_from(&parts, size, &etag(&parts)), Ok(()));
        // A completion of the first two parts only (another request's, with fewer parts).
        assert!(assembled_from(&parts, size, &etag(&parts[..2])).is_err());
        // The same parts with another last part.
        let other = [part(1, b"first"), part(2, b"second"), part(3, b"other")];
        assert!(assembled_from(&parts, size, &etag(&other)).is_err());
        // Sizes three parts cannot have: under two full parts, over three of 5 GiB.
        assert!(assembled_from(&parts, 10 * MIB - 1, &etag(&parts)).is_err());
        assert!(assembled_from(&parts, 15 * 1024 * MIB + 1, &etag(&parts)).is_err());
        // An ETag scheme that is not S3's proves nothing.
        assert!(assembled_from(&parts, size, "\"0123\"").is_err());
        let opaque = [CompletedPart {
            part_number: 1,
            etag: "\"v1\"".into(),
        }];
        assert!(assembled_from(&opaque, 1, "\"v1\"").is_err());
        assert!(assembled_from(&[], 0, "\"\"").is_err());
    }

    #[test]
    fn only_a_404_or_no_such_upload_says_the_upload_is_gone() {
        let error = |status: &str| object_store::Error::Generic {
            store: "S3",
            source: status.into(),
        };
        assert!(names_an_unknown_upload(&object_store::Error::NotFound {
            path: "k".into(),
            source: "404".into(),
        }));
        assert!(names_an_unknown_upload(&error(
            "<Error><Code>NoSuchUpload</Code></Error>"
        )));
        assert!(!names_an_unknown_upload(
            &object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "403 AccessDenied".into(),
            }
        ));
        assert!(!names_an_unknown_upload(&error("timed out")));
    }
}
