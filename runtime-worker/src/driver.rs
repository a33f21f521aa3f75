//! The driver loop: one engine transaction per request, its effects executed against R2, its
//! response handed to the Workers runtime. No OCI decision is made here; this is plumbing
//! between [`berth_engine`] and [`crate::r2`].
//!
//! - Time is `Date.now()`, entropy is `crypto.getRandomValues` (a request is refused, not
//!   served with weak ids, if it fails).
//! - The request body is read chunk by chunk, only when the engine asks for it
//!   ([`Effect::ReadBody`]): the engine holds about one multipart part, so an upload's memory
//!   does not grow with the blob (up to about 3 × part size with the JS copy of a part; see
//!   runtime-worker/README.md, Memory per isolate).
//! - Storage effects the engine issues together (it reads many small objects at once, e.g.
//!   for referrers) run concurrently, up to [`MAX_CONCURRENT_EFFECTS`].
//! - A blob body ([`EngineBody::Object`]) is the R2 object's own stream, handed to the
//!   response without passing through wasm, with `Content-Length` kept
//!   ([`r2::object_response`], [`r2::head_response`]).

use std::collections::VecDeque;
use std::pin::pin;

use berth_engine::auth::{AuthFailure, FailureReason};
use berth_engine::{
    Body as EngineBody, ByteRange as EngineRange, Condition as EngineCondition, Effect, EffectId,
    Entropy, ErrorCode, FailureDetail, Listing, Next, ObjectMeta, Outcome, Registry, RegistryError,
    RequestId, Transaction, UnixTime,
};
use bytes::Bytes;
use futures_util::future::{Either, LocalBoxFuture, select};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, StatusCode, header};
use worker::js_sys::{self, Function, Reflect, Uint8Array, futures::JsFuture};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Headers, Request, Response, ResponseBuilder, web_sys};

use crate::r2::{self, PartWritten, Store, Written};

/// Storage effects of one transaction executed at once, at most.
const MAX_CONCURRENT_EFFECTS: usize = 16;

/// Most bytes of a request body read and discarded after the engine answered without needing
/// them (a 416 for an out-of-order chunk, a 404 for an unknown upload). Answering while the
/// client still sends makes it see a broken connection instead of the answer (as under
/// `wrangler dev`); beyond this, the rest of the body is cancelled.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Seconds since the Unix epoch, from `Date.now()`.
pub fn now() -> UnixTime {
    UnixTime((js_sys::Date::now() / 1000.0) as u64)
}

/// 32 bytes from `crypto.getRandomValues`. Upload ids and writer tokens come from them.
fn entropy() -> Result<Entropy, String> {
    let fail = |e: JsValue| format!("crypto.getRandomValues failed: {e:?}");
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(fail)?;
    let get_random_values: Function = Reflect::get(&crypto, &JsValue::from_str("getRandomValues"))
        .map_err(fail)?
        .dyn_into()
        .map_err(fail)?;
    let array = Uint8Array::new_with_length(32);
    get_random_values.call1(&crypto, &array).map_err(fail)?;
    let mut bytes = [0u8; 32];
    array.copy_to(&mut bytes);
    Ok(Entropy(bytes))
}

/// Where request body chunks come from: the request's stream (read with a default reader,
/// one chunk per `read()`), or nothing.
///
/// Cancel-safe: the `read()` in flight is kept here, not in the future that awaits it. When
/// [`drive`] drops a [`BodySource::next_chunk`] future because a storage effect finished
/// first, the JS promise (already consuming a chunk) stays in `pending` and the next call
/// resumes it, so no chunk is ever lost.
pub struct BodySource {
    reader: Option<web_sys::ReadableStreamDefaultReader>,
    pending: Option<JsFuture>,
}

impl BodySource {
    pub fn none() -> BodySource {
        BodySource {
            reader: None,
            pending: None,
        }
    }

    fn of(request: &Request) -> BodySource {
        let reader = request
            .inner()
            .body()
            .and_then(|stream| stream.get_reader().dyn_into().ok());
        BodySource {
            reader,
            pending: None,
        }
    }

    /// The result of one `read()`: the one in flight if there is one, else a new one. `None`
    /// once the body is finished (or there is none).
    async fn read(&mut self) -> Option<Result<JsValue, JsValue>> {
        let reader = self.reader.as_ref()?;
        let pending = self
            .pending
            .get_or_insert_with(|| JsFuture::from(reader.read()));
        let result = pending.await;
        self.pending = None;
        Some(result)
    }

    /// The next non-empty chunk, [`Outcome::BodyEnd`], or [`Outcome::Failed`] if the stream
    /// errored (the client went away): a broken body never looks complete.
    async fn next_chunk(&mut self) -> Outcome {
        // Bounded by the body's length: every round consumes one chunk of it.
        loop {
            let result = match self.read().await {
                None => return Outcome::BodyEnd,
                Some(Ok(result)) => result,
                Some(Err(e)) => {
                    self.reader = None;
                    return Outcome::Failed(format!("reading the request body: {}", js_text(&e)));
                }
            };
            let done = Reflect::get(&result, &JsValue::from_str("done"))
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                self.reader = None;
                return Outcome::BodyEnd;
            }
            let Ok(value) = Reflect::get(&result, &JsValue::from_str("value")) else {
                continue;
            };
            let Ok(chunk) = value.dyn_into::<Uint8Array>() else {
                self.reader = None;
                return Outcome::Failed("the request body yielded a non-byte chunk".into());
            };
            if chunk.length() > 0 {
                return Outcome::BodyChunk(Bytes::from(chunk.to_vec()));
            }
        }
    }

    /// Reads and discards what is left of the body, up to `limit` bytes, in JS (no byte is
    /// copied into wasm); cancels the rest.
    async fn drain(&mut self, limit: u64) {
        let mut drained = 0u64;
        // Bounded by `limit`: every round consumes a chunk or ends.
        while drained <= limit {
            let Some(Ok(result)) = self.read().await else {
                self.reader = None;
                return;
            };
            let done = Reflect::get(&result, &JsValue::from_str("done"))
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                self.reader = None;
                return;
            }
            let length = Reflect::get(&result, &JsValue::from_str("value"))
                .ok()
                .and_then(|v| Reflect::get(&v, &JsValue::from_str("byteLength")).ok())
                .and_then(|n| n.as_f64())
                .unwrap_or(0.0);
            drained += length as u64;
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.cancel();
        }
    }
}

fn js_text(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// The request head as the engine takes it: method, path and query, headers.
fn request_head(request: &Request) -> Result<http::Request<()>, String> {
    let url = request.url().map_err(|e| format!("request URL: {e}"))?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let mut head = http::Request::builder()
        .method(request.inner().method().as_str())
        .uri(target)
        .body(())
        .map_err(|e| format!("request head: {e}"))?;
    let headers = head.headers_mut();
    for (name, value) in request.headers().entries() {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(head)
}

/// Serves one registry request.
pub async fn serve(registry: &Registry, store: &Store, request: Request) -> Response {
    let head = match request_head(&request) {
        Ok(head) => head,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, &e),
    };
    let entropy = match entropy() {
        Ok(entropy) => entropy,
        Err(e) => return internal_error(&e),
    };
    let is_head = head.method() == http::Method::HEAD;
    let method = head.method().clone();
    let path = head.uri().path().to_owned();
    let request_id = RequestId::from_entropy(&entropy);
    let transaction = registry.begin(head, now(), entropy);
    let mut body = BodySource::of(&request);
    let response = drive(store, transaction, &mut body).await;
    body.drain(DRAIN_LIMIT).await;
    log_refusal(&response, &method, &path);
    match respond(store, response, is_head, request_id).await {
        Ok(response) => response,
        Err(e) => internal_error(&e),
    }
}

/// Logs why a request was refused (a failed login, a forbidden action, no credentials
/// configured), never with a password or token: [`AuthFailure`] carries neither. A request
/// without credentials is the normal first step of a client's login and is not logged.
fn log_refusal(response: &berth_engine::Response, method: &http::Method, path: &str) {
    let Some(failure) = response.extensions().get::<AuthFailure>() else {
        return;
    };
    match failure.reason {
        FailureReason::MissingCredentials => {}
        FailureReason::NotConfigured => worker::console_error!(
            "berth: refused {method} {path}: no credentials are configured (set the secrets \
             USERNAME and PASSWORD, or JWT_REGISTRY_TOKENS_PUBLIC_KEY; or the var \
             BERTH_ALLOW_ANONYMOUS=true for an open registry)"
        ),
        _ => worker::console_warn!(
            "berth: refused {method} {path} ({}): {failure}",
            response.status().as_u16()
        ),
    }
}

/// Logs what a 500's client is not told (see [`FailureDetail`]) under the request id its client
/// is told.
fn log_failure(response: &berth_engine::Response) {
    if let Some(detail) = response.extensions().get::<FailureDetail>() {
        worker::console_error!("berth: request {} failed: {detail}", detail.request_id);
    }
}

/// Runs a transaction to its end: executes its effects (storage ones concurrently, up to a
/// bound; body reads in order) and returns its response. The details of a 500 are logged here.
pub async fn drive(
    store: &Store,
    mut transaction: Transaction,
    body: &mut BodySource,
) -> berth_engine::Response {
    let mut response = None;
    let mut waiting: VecDeque<(EffectId, Effect)> = VecDeque::new();
    let mut body_reads: VecDeque<EffectId> = VecDeque::new();
    let mut running: FuturesUnordered<LocalBoxFuture<'_, (EffectId, Outcome)>> =
        FuturesUnordered::new();
    // Bounded: every round reports one outcome to the engine, which issues finitely many
    // effects for one request (one body read per chunk of a finite body).
    loop {
        let mut done = false;
        loop {
            match transaction.poll() {
                Next::Effect(id, Effect::ReadBody) => body_reads.push_back(id),
                Next::Effect(id, effect) => waiting.push_back((id, effect)),
                Next::Respond(r) => response = Some(r),
                Next::AwaitOutcome => break,
                _ => {
                    done = true;
                    break;
                }
            }
        }
        if done {
            break;
        }
        while running.len() < MAX_CONCURRENT_EFFECTS
            && let Some((id, effect)) = waiting.pop_front()
        {
            running.push(Box::pin(async move { (id, execute(store, effect).await) }));
        }
        let (id, outcome) = match body_reads.front().copied() {
            Some(id) if running.is_empty() => {
                body_reads.pop_front();
                (id, body.next_chunk().await)
            }
            Some(id) => {
                // If a storage effect wins, this read is dropped but its JS read stays in
                // `body` and the next round resumes it (see [`BodySource`]).
                let read = pin!(body.next_chunk());
                match select(running.next(), read).await {
                    Either::Left((Some(result), _)) => result,
                    Either::Left((None, _)) => continue,
                    Either::Right((outcome, _)) => {
                        body_reads.pop_front();
                        (id, outcome)
                    }
                }
            }
            None => match running.next().await {
                Some(result) => result,
                None => {
                    worker::console_error!("berth: the engine awaits an outcome but issued none");
                    break;
                }
            },
        };
        if let Err(e) = transaction.handle(id, outcome) {
            worker::console_error!("berth: the engine refused an outcome: {e}");
        }
    }
    let response = response.unwrap_or_else(|| {
        RegistryError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            "the engine ended a transaction without a response",
        )
        .into_response()
    });
    log_failure(&response);
    response
}

/// Executes one storage effect against R2.
async fn execute(store: &Store, effect: Effect) -> Outcome {
    let operation = effect.operation();
    let key = effect.key().unwrap_or_default().to_owned();
    let outcome = match effect {
        Effect::Head { key } => store.head(&key).await.map(|meta| match meta {
            Some(meta) => Outcome::Found(object_meta(meta)),
            None => Outcome::NotFound,
        }),
        Effect::Get { key, range } => {
            store
                .get(&key, range.map(r2_range))
                .await
                .map(|object| match object {
                    Some((meta, bytes)) => Outcome::Object {
                        meta: object_meta(meta),
                        bytes: Bytes::from(bytes),
                    },
                    None => Outcome::NotFound,
                })
        }
        Effect::Put {
            key,
            body,
            condition,
        } => {
            let condition = match condition {
                EngineCondition::IfNoneMatch => r2::Condition::IfNoneMatch,
                EngineCondition::IfMatch(etag) => r2::Condition::IfMatch(etag),
                // Matched explicitly, without a catch-all: a condition added to the engine
                // is a compile error here, never an unconditional write.
                EngineCondition::None => r2::Condition::None,
            };
            store
                .put(&key, r2::Body::Bytes(Vec::from(body)), condition)
                .await
                .map(|written| match written {
                    Written::Stored(meta) => Outcome::Stored { etag: meta.etag },
                    Written::PreconditionFailed => Outcome::PreconditionFailed,
                })
        }
        Effect::Delete { key } => store.delete(&key).await.map(|()| Outcome::Deleted),
        Effect::List {
            prefix,
            start_after,
            limit,
            delimiter,
        } => {
            let delimiter = delimiter.map(String::from);
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            store
                .list(&prefix, start_after.as_deref(), limit, delimiter.as_deref())
                .await
                .map(|page| {
                    Outcome::Listed(Listing {
                        keys: page.keys,
                        common_prefixes: page.common_prefixes,
                        truncated: page.truncated,
                    })
                })
        }
        Effect::CreateMultipart { key, part_size: _ } => store
            .create_multipart(&key)
            .await
            .map(|upload_id| Outcome::MultipartCreated { upload_id }),
        Effect::UploadPart {
            key,
            upload_id,
            part_number,
            body,
        } => match u16::try_from(part_number) {
            Err(_) => Ok(Outcome::Failed(format!(
                "part number {part_number} is beyond R2's 10,000"
            ))),
            Ok(number) => store
                .upload_part(&key, &upload_id, number, r2::Body::Bytes(Vec::from(body)))
                .await
                .map(|written| match written {
                    PartWritten::Uploaded { etag } => Outcome::PartUploaded { etag },
                    PartWritten::NoSuchUpload => Outcome::NotFound,
                }),
        },
        Effect::CompleteMultipart {
            key,
            upload_id,
            parts,
        } => {
            let mut numbered = Vec::with_capacity(parts.len());
            for part in parts {
                match u16::try_from(part.part_number) {
                    Ok(number) => numbered.push((number, part.etag)),
                    Err(_) => {
                        return Outcome::Failed(format!(
                            "part number {} is beyond R2's 10,000",
                            part.part_number
                        ));
                    }
                }
            }
            store
                .complete_multipart(&key, &upload_id, numbered)
                .await
                .map(|object| match object {
                    Some(meta) => Outcome::Stored { etag: meta.etag },
                    None => Outcome::NotFound,
                })
        }
        Effect::AbortMultipart { key, upload_id } => store
            .abort_multipart(&key, &upload_id)
            .await
            .map(|()| Outcome::Deleted),
        other => Ok(Outcome::Failed(format!(
            "this runtime cannot execute {}",
            other.operation()
        ))),
    };
    outcome.unwrap_or_else(|e| {
        worker::console_warn!("berth: R2 {operation} {key} failed: {e}");
        Outcome::Failed(format!("R2: {e}"))
    })
}

fn object_meta(meta: r2::Meta) -> ObjectMeta {
    ObjectMeta {
        size: meta.size,
        etag: meta.etag,
    }
}

fn r2_range(range: EngineRange) -> r2::ByteRange {
    r2::ByteRange {
        first: range.first,
        last: range.last,
    }
}

/// The engine's response as a Workers response. A stored object is streamed from R2 with
/// its `Content-Length` kept; a body-less response keeps the `Content-Length` the engine set
/// (HEAD of a blob or manifest).
async fn respond(
    store: &Store,
    response: berth_engine::Response,
    is_head: bool,
    request_id: RequestId,
) -> Result<Response, String> {
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let headers = worker_headers(&parts.headers)?;
    let js = |e: worker::Error| e.to_string();
    match body {
        EngineBody::Object { key, range } if !is_head => {
            match store.open(&key, range.map(r2_range)).await.map_err(js)? {
                Some(object) => r2::object_response(object, status, headers).map_err(js),
                None => {
                    let error =
                        RegistryError::backend("open", &key, "the stored object is missing")
                            .into_response_for(request_id);
                    log_failure(&error);
                    Ok(engine_response(error))
                }
            }
        }
        EngineBody::Bytes(bytes) if !is_head => Ok(ResponseBuilder::new()
            .with_status(status)
            .with_headers(headers)
            .fixed(Vec::from(bytes))),
        _ => match length {
            // 204 and 304 carry no Content-Length.
            Some(length) if status != 204 && status != 304 => {
                r2::head_response(length, status, headers).map_err(js)
            }
            _ => Ok(ResponseBuilder::new()
                .with_status(status)
                .with_headers(headers)
                .empty()),
        },
    }
}

/// Every header but `Content-Length`, which the runtime sets from the body (or
/// [`r2::head_response`] does).
fn worker_headers(map: &HeaderMap) -> Result<Headers, String> {
    let headers = Headers::new();
    for (name, value) in map {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .append(name.as_str(), &value)
            .map_err(|e| format!("response header {name}: {e}"))?;
    }
    Ok(headers)
}

/// An engine error response (always a `Body::Bytes` or empty body) as a Workers response.
fn engine_error(error: RegistryError) -> Response {
    engine_response(error.into_response())
}

/// A response the engine built from an error as a Workers response.
fn engine_response(response: berth_engine::Response) -> Response {
    let (parts, body) = response.into_parts();
    let headers = worker_headers(&parts.headers).unwrap_or_default();
    let builder = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(headers);
    match body {
        EngineBody::Bytes(bytes) => builder.fixed(Vec::from(bytes)),
        _ => builder.empty(),
    }
}

pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    engine_error(RegistryError::new(status, code, message.to_owned()))
}

/// A 500 in the spec's error format. The reason is logged, not shown: it can quote a
/// setting (a configuration error naming a malformed `USERNAME` would disclose it), so the
/// client gets a generic message.
pub fn internal_error(reason: &str) -> Response {
    worker::console_error!("berth: {reason}");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unknown,
        "internal error (the Worker's log says why)",
    )
}
