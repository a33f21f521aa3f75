//! The R2 storage adapter: every bucket operation berth needs, over the `worker` crate's
//! binding, with the semantics the engine's effects expect (S3's).
//!
//! What each R2 call does on a failure, as checked under `wrangler dev`
//! (`scripts/worker-smoke.sh`), is written on each method. Bodies that should not pass through
//! wasm (request bodies written to R2, object bodies streamed to the client) stay JS streams:
//! [`Body::Stream`] and [`ObjectStream`].

use worker::js_sys::{self, futures::JsFuture};
use worker::worker_sys::FixedLengthStream as JsFixedLengthStream;
use worker::{
    Bucket, ByteStream, Conditional, Data, Env, Error, FixedLengthStream, Headers, Range, Response,
    ResponseBuilder, Result, UploadedPart, web_sys,
};

/// Name of the R2 bucket binding in `wrangler.toml`.
pub const BINDING: &str = "REGISTRY";

/// R2's error code for an unknown (completed, aborted or never created) multipart upload id.
const NO_SUCH_UPLOAD: &str = "(10024)";

/// The bucket berth stores everything in.
#[derive(Clone, Debug)]
pub struct Store {
    bucket: Bucket,
}

/// Size and version of a stored object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Meta {
    pub key: String,
    pub size: u64,
    /// R2's etag (unquoted): the `etagMatches` token for compare-and-swap.
    pub etag: String,
}

/// A precondition on a put, as the engine states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write unconditionally.
    None,
    /// Create only (`If-None-Match: *`): R2 `onlyIf: { etagDoesNotMatch: "*" }`.
    IfNoneMatch,
    /// Compare and swap (`If-Match: <etag>`): R2 `onlyIf: { etagMatches: etag }`.
    IfMatch(String),
}

/// What a conditional write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Stored(Meta),
    PreconditionFailed,
}

/// What uploading a part did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartWritten {
    Uploaded { etag: String },
    NoSuchUpload,
}

/// A value to store.
#[derive(Debug)]
pub enum Body {
    /// Bytes in wasm memory (records, manifests, buffered parts).
    Bytes(Vec<u8>),
    /// A JS stream of exactly `len` bytes, e.g. a request body. It is piped through a JS
    /// `FixedLengthStream` so R2 knows the length up front; no byte passes through wasm. A
    /// stream of another length makes the write fail.
    Stream {
        stream: web_sys::ReadableStream,
        len: u64,
    },
    /// A Rust stream of exactly `len` bytes (e.g. a request body being hashed on the way):
    /// the `worker` crate's `FixedLengthStream`, whose chunks are copied out of wasm.
    Chunks { stream: ByteStream, len: u64 },
}

/// An inclusive byte range `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    fn to_r2(self) -> Range {
        Range::OffsetWithLength {
            offset: self.first,
            length: self.len(),
        }
    }
}

/// An object's body (or range of it) as a JS stream, ready to become a response body.
#[derive(Debug)]
pub struct ObjectStream {
    pub meta: Meta,
    /// Number of bytes the stream yields: the object size, or the length of the range.
    pub len: u64,
    stream: web_sys::ReadableStream,
}

impl ObjectStream {
    /// The body as it came from R2. A response built on it directly loses `Content-Length`:
    /// use [`object_response`].
    pub fn into_stream(self) -> web_sys::ReadableStream {
        self.stream
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListPage {
    pub keys: Vec<String>,
    /// Rolled-up prefixes; R2 returns them with the trailing delimiter.
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
}

impl Store {
    /// The bucket bound as [`BINDING`].
    pub fn from_env(env: &Env) -> Result<Store> {
        Ok(Store {
            bucket: env.bucket(BINDING)?,
        })
    }

    /// `R2Bucket.head(key)`: `Ok(None)` for a missing key.
    pub async fn head(&self, key: &str) -> Result<Option<Meta>> {
        Ok(self.bucket.head(key).await?.map(|o| meta(&o)))
    }

    /// `R2Bucket.get(key, { range })`, read into wasm: for small objects only (records,
    /// links, manifests). `Ok(None)` for a missing key.
    pub async fn get(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<(Meta, Vec<u8>)>> {
        let mut get = self.bucket.get(key);
        if let Some(range) = range {
            get = get.range(range.to_r2());
        }
        let Some(object) = get.execute().await? else {
            return Ok(None);
        };
        let body = object
            .body()
            .ok_or_else(|| Error::RustError(format!("R2 returned {key} without a body")))?;
        let bytes = body.bytes().await?;
        Ok(Some((meta(&object), bytes)))
    }

    /// `R2Bucket.get(key, { range })` with its body left as a JS stream, for
    /// [`object_response`]. `Ok(None)` for a missing key. The range must lie within the
    /// object (the engine checks it against the size first); R2 answers a range past the end
    /// with an error.
    pub async fn open(&self, key: &str, range: Option<ByteRange>) -> Result<Option<ObjectStream>> {
        let mut get = self.bucket.get(key);
        if let Some(range) = range {
            get = get.range(range.to_r2());
        }
        let Some(object) = get.execute().await? else {
            return Ok(None);
        };
        let meta = meta(&object);
        let len = match range {
            Some(range) => range.len().min(meta.size.saturating_sub(range.first)),
            None => meta.size,
        };
        let body = object
            .body()
            .ok_or_else(|| Error::RustError(format!("R2 returned {key} without a body")))?;
        let stream = match body.response_body()? {
            worker::ResponseBody::Stream(stream) => stream,
            _ => return Err(Error::RustError("R2 body is not a stream".into())),
        };
        Ok(Some(ObjectStream { meta, len, stream }))
    }

    /// `R2Bucket.put(key, value, { onlyIf })`. A failed condition is not an error: R2
    /// resolves the put with `null`, which the `worker` crate returns as `Ok(None)`
    /// ([`Written::PreconditionFailed`]); `etagMatches` on a missing key fails the same way.
    pub async fn put(&self, key: &str, body: Body, condition: Condition) -> Result<Written> {
        let mut put = self.bucket.put(key, body.into_data()?);
        match condition {
            Condition::None => {}
            Condition::IfNoneMatch => {
                put = put.only_if(Conditional {
                    etag_does_not_match: Some("*".into()),
                    ..Conditional::default()
                })
            }
            Condition::IfMatch(etag) => {
                // R2 rejects a quoted etag with a TypeError; accept the HTTP form too.
                let etag = etag.trim_matches('"').to_owned();
                put = put.only_if(Conditional {
                    etag_matches: Some(etag),
                    ..Conditional::default()
                })
            }
        }
        Ok(match put.execute().await? {
            Some(object) => Written::Stored(meta(&object)),
            None => Written::PreconditionFailed,
        })
    }

    /// `R2Bucket.delete(key)`; deleting a missing key succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.bucket.delete(key).await
    }

    /// `R2Bucket.list({ prefix, startAfter, limit, delimiter })` with the engine's (S3's)
    /// semantics: at most `limit` entries, keys and common prefixes together, all strictly
    /// after `start_after`, and `truncated` only if more entries follow. R2 (as simulated by
    /// `wrangler dev`) returns a common prefix that is not after `startAfter` (`a/` again for
    /// `startAfter: "a/"`), which would make a caller that pages by the last entry loop; such
    /// entries are dropped here, and the listing goes on with R2's cursor until it holds one
    /// entry more than `limit` (which proves that more follow, and is then dropped) or R2 has
    /// no more. R2 also caps a page at 1000 entries and may return fewer with `truncated`
    /// set, and its `truncated` may be set when nothing follows.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
        delimiter: Option<&str>,
    ) -> Result<ListPage> {
        let after = |entry: &str| start_after.is_none_or(|after| entry > after);
        let wanted = limit.saturating_add(1);
        let mut page = ListPage::default();
        let mut cursor: Option<String> = None;
        // Bounded: every round either ends or follows R2's cursor, which advances through a
        // finite bucket.
        loop {
            let held = page.keys.len() + page.common_prefixes.len();
            let room = wanted.saturating_sub(held as u32);
            if room == 0 {
                // More than `limit` entries: drop the greatest (the last in byte order) until
                // `limit` are left; more entries follow them.
                for _ in 0..held.saturating_sub(limit as usize) {
                    let last_key = page.keys.last();
                    let last_prefix = page.common_prefixes.last();
                    if last_prefix.is_some_and(|p| last_key.is_none_or(|k| p > k)) {
                        page.common_prefixes.pop();
                    } else {
                        page.keys.pop();
                    }
                }
                page.truncated = true;
                return Ok(page);
            }
            let mut list = self.bucket.list().prefix(prefix).limit(room.min(1000));
            match (&cursor, start_after) {
                (Some(cursor), _) => list = list.cursor(cursor),
                (None, Some(start_after)) => list = list.start_after(start_after),
                (None, None) => {}
            }
            if let Some(delimiter) = delimiter {
                list = list.delimiter(delimiter);
            }
            let objects = list.execute().await?;
            page.keys.extend(
                objects
                    .objects()
                    .iter()
                    .map(|o| o.key())
                    .filter(|key| after(key)),
            );
            for common in objects.delimited_prefixes() {
                if after(&common) && !page.common_prefixes.contains(&common) {
                    page.common_prefixes.push(common);
                }
            }
            cursor = objects.cursor().filter(|_| objects.truncated());
            let held = page.keys.len() + page.common_prefixes.len();
            if cursor.is_none() && held <= limit as usize {
                page.truncated = false;
                return Ok(page);
            }
            if cursor.is_none() {
                // `limit + 1` entries and R2 has no more: the next round trims and says so.
                continue;
            }
        }
    }

    /// `R2Bucket.createMultipartUpload(key)`: the upload id.
    pub async fn create_multipart(&self, key: &str) -> Result<String> {
        let upload = self.bucket.create_multipart_upload(key).execute().await?;
        Ok(upload.upload_id().await)
    }

    /// `R2Bucket.resumeMultipartUpload(key, id).uploadPart(n, value)`. Resuming checks
    /// nothing; an unknown id surfaces here as an R2 error with code 10024, returned as
    /// [`PartWritten::NoSuchUpload`]. R2 wants every part but the last to be at least 5 MiB
    /// and all of them of one size; that is checked at completion, not here.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        body: Body,
    ) -> Result<PartWritten> {
        let upload = self.bucket.resume_multipart_upload(key, upload_id)?;
        match upload.upload_part(part_number, body.into_data()?).await {
            Ok(part) => Ok(PartWritten::Uploaded { etag: part.etag() }),
            Err(e) if is_no_such_upload(&e) => Ok(PartWritten::NoSuchUpload),
            Err(e) => Err(e),
        }
    }

    /// `R2MultipartUpload.complete(parts)`: `Ok(None)` for an unknown upload id. Parts of
    /// unequal or too small sizes are an R2 error.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: impl IntoIterator<Item = (u16, String)>,
    ) -> Result<Option<Meta>> {
        let upload = self.bucket.resume_multipart_upload(key, upload_id)?;
        let parts = parts
            .into_iter()
            .map(|(number, etag)| UploadedPart::new(number, etag));
        match upload.complete(parts).await {
            Ok(object) => Ok(Some(meta(&object))),
            Err(e) if is_no_such_upload(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `R2MultipartUpload.abort()`; aborting an unknown (or already aborted) id succeeds.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let upload = self.bucket.resume_multipart_upload(key, upload_id)?;
        match upload.abort().await {
            Err(e) if !is_no_such_upload(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

impl Body {
    fn into_data(self) -> Result<Data> {
        Ok(match self {
            Body::Bytes(bytes) => Data::Bytes(bytes),
            Body::Stream { stream, len } => Data::ReadableStream(fixed_length(stream, len)?),
            Body::Chunks { stream, len } => Data::Stream(FixedLengthStream::wrap(stream, len)),
        })
    }
}

/// A response whose body is the object's JS stream, handed to the runtime without passing
/// through wasm, with `Content-Length` kept.
///
/// The runtime only sends `Content-Length` for a stream body whose length it knows; a
/// `content-length` header set on a `Response` with an arbitrary `ReadableStream` is dropped
/// (chunked encoding is used instead). Piping the body through a `FixedLengthStream` of the
/// exact length makes the length known. `headers` must not carry `Content-Length` or
/// `Content-Encoding` of their own.
pub fn object_response(object: ObjectStream, status: u16, headers: Headers) -> Result<Response> {
    let stream = fixed_length(object.stream, object.len)?;
    Ok(ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .stream(stream))
}

/// A body-less response (HEAD) that still announces `len` bytes in `Content-Length`: the
/// runtime keeps a `content-length` header on a response with a null body. (A never-written
/// `FixedLengthStream` as the body does not work: the runtime cancels the request as hung.)
pub fn head_response(len: u64, status: u16, headers: Headers) -> Result<Response> {
    headers.set("content-length", &len.to_string())?;
    Ok(ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .empty())
}

/// The readable half of a JS `FixedLengthStream(len)` that `stream` is piped into.
fn fixed_length(stream: web_sys::ReadableStream, len: u64) -> Result<web_sys::ReadableStream> {
    let fixed = new_fixed_length(len)?;
    let piping = stream.pipe_to(&fixed.writable());
    // The consumer (R2 or the response) sees a failed pipe as a failed stream; the pipe's own
    // promise only needs to be observed so that its rejection is not reported as unhandled.
    worker::wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = JsFuture::from(piping).await {
            worker::console_debug!("berth: body pipe ended early: {:?}", e);
        }
    });
    Ok(fixed.readable())
}

fn new_fixed_length(len: u64) -> Result<JsFixedLengthStream> {
    Ok(match u32::try_from(len) {
        Ok(len) => JsFixedLengthStream::new(len)?,
        Err(_) => JsFixedLengthStream::new_big_int(js_sys::BigInt::from(len))?,
    })
}

fn meta(object: &worker::Object) -> Meta {
    Meta {
        key: object.key(),
        size: object.size(),
        etag: object.etag(),
    }
}

fn is_no_such_upload(e: &Error) -> bool {
    e.to_string().contains(NO_SUCH_UPLOAD)
}
