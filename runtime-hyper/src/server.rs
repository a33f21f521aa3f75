//! The driver loop: one engine transaction per request, its effects executed against the
//! backend, its response streamed back. No OCI decision is made here.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_engine::auth::{AuthFailure, FailureReason, Identity};
use berth_engine::{
    Body, Effect, EffectId, Entropy, FailureDetail, Next, Outcome, Registry, RegistryError,
    RequestId, Transaction, UnixTime,
};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::metrics::Metrics;
use crate::storage::Backend;

/// Storage effects of one transaction executed at once, at most (the engine issues several
/// together when it reads many small objects, e.g. referrers).
const MAX_CONCURRENT_EFFECTS: usize = 16;

pub struct Server {
    pub registry: Registry,
    pub backend: Backend,
    pub metrics: Arc<Metrics>,
    /// What a request body must deliver, and in how long.
    pub body_pace: BodyPace,
    /// The memory budget of request bodies the engine buffers.
    pub upload_memory: Arc<UploadMemory>,
    /// Largest request head (request line and headers) served; larger ones get 431. hyper
    /// enforces it on an HTTP/1.1 head while it arrives (see `serve`); this check also
    /// covers HTTP/2, whose header lists hyper measures in its own way.
    pub max_header_bytes: usize,
}

/// hyper's HTTP/1 read buffer, which bounds both a request head being parsed and each chunk
/// of a request body read from the socket. Body chunks of at most 64 KiB (when this was
/// `--max-header-bytes`) cost a 1 GiB push a quarter of its server CPU in wake-ups and task
/// switches: `perf` showed SHA-256 at 40% of the samples with 64 KiB and at 52–57% with 1 MiB
/// for the same work. A head is held to [`Server::max_header_bytes`] separately: hyper refuses
/// an unfinished head (431) as soon as its buffer holds that much, so a connection that sends
/// an endless header holds about that much, not this.
pub const HTTP1_READ_BUFFER: usize = 1024 * 1024;

/// Size of a request head as sent: the request line and every header line.
fn head_size(parts: &http::request::Parts) -> usize {
    let target = parts.uri.authority().map_or(0, |a| a.as_str().len())
        + parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let request_line = parts.method.as_str().len() + target + 12;
    let headers: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request_line + headers + 2
}

/// The memory budget for request bodies that the engine buffers (upload parts, manifests):
/// `--upload-memory`. A request that will buffer some (the engine says how much, with
/// [`berth_engine::route::Route::body_memory`]) reserves it once the engine has let it in
/// (authenticated, authorized, routed) and before any of its storage operations runs; it
/// waits up to `wait` for what others hold, and is otherwise answered `429` with
/// `Retry-After`. The reservation is returned when the request's transaction ends.
pub struct UploadMemory {
    /// One permit per KiB.
    permits: Arc<tokio::sync::Semaphore>,
    total_kib: u32,
    wait: Duration,
    /// Woken when a reservation is returned (see [`return_freed_memory`]).
    released: Arc<tokio::sync::Notify>,
}

/// Memory reserved by one request, returned when dropped.
struct Reservation {
    _permit: tokio::sync::OwnedSemaphorePermit,
    released: Arc<tokio::sync::Notify>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.released.notify_one();
    }
}

impl UploadMemory {
    pub fn new(total: u64, wait: Duration) -> UploadMemory {
        let total_kib = u32::try_from(total.div_ceil(1024)).unwrap_or(u32::MAX);
        UploadMemory {
            permits: Arc::new(tokio::sync::Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
            released: Arc::default(),
        }
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        let free = self.permits.available_permits() as u64;
        (u64::from(self.total_kib) - free.min(u64::from(self.total_kib))) * 1024
    }

    /// Reserves `bytes` (at most the whole budget), waiting up to the configured time.
    async fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        let acquire = self.permits.clone().acquire_many_owned(kib);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Some(Reservation {
                _permit: permit,
                released: self.released.clone(),
            }),
            _ => None,
        }
    }

    /// The answer to a request that found no memory: the spec's `429 TOOMANYREQUESTS`.
    fn refusal(&self) -> berth_engine::Response {
        let retry_after = self.wait.as_secs().max(1);
        berth_engine::RegistryError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            berth_engine::ErrorCode::TooManyRequests,
            format!(
                "the registry is receiving as many uploads as its memory allows; retry in \
                 {retry_after} s"
            ),
        )
        .with_header(http::header::RETRY_AFTER, retry_after.into())
        .into_response()
    }
}

/// Gives the memory of finished uploads back to the operating system, at most once a second
/// while reservations are being returned.
///
/// glibc keeps a freed part buffer (16 MiB by default) in the arena of the thread that freed
/// it for the next allocation of that thread, and releases only the top of a heap by itself:
/// after 48 stalled uploads left, 683 of their 855 MiB stayed resident. `malloc_trim` returns
/// every whole free page of every arena. Calling it only after uploads end, a second later,
/// keeps it off a push's path: a buffer freed and reused within one request (one part after
/// the next) never goes back, so a long push pays no page faults for it.
pub async fn return_freed_memory(memory: Arc<UploadMemory>) {
    loop {
        memory.released.notified().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = tokio::task::spawn_blocking(trim_allocator).await;
    }
}

/// Returns the free pages of every malloc arena to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_allocator() {
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists, under the
    // arena locks every allocation takes too; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl, macOS) return large freed blocks by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_allocator() {}

/// Permits to run a possibly slow credential check (bcrypt, about 90 ms of CPU), one per CPU.
///
/// Such a check runs in [`run_slow`] under `block_in_place`: the runtime hands the other tasks
/// of this worker thread to a replacement thread first, so requests that need no bcrypt keep
/// being served while it runs. Each `block_in_place` may start such a replacement thread, so
/// without a bound a flood of Basic requests naming a bcrypt user would start one thread per
/// request. With this semaphore at most one check per CPU runs at once — more would not finish
/// sooner anyway — and the other requests that need one wait for a permit asynchronously,
/// holding no thread. The permit is process-wide, like the CPUs it stands for.
static SLOW_AUTH_PERMITS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cpus)
    });

/// Runs `work`, which may spend long on the CPU (bcrypt), with one of [`SLOW_AUTH_PERMITS`]
/// and, on a multi-threaded runtime, under `block_in_place`, so that it holds up neither the
/// other requests of this worker thread nor start more than one extra thread per CPU.
async fn run_slow<T>(work: impl FnOnce() -> T) -> T {
    // The semaphore is never closed, so acquiring cannot fail.
    let _permit = SLOW_AUTH_PERMITS.acquire().await.ok();
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// [`Server::needs_slow_auth`] for the authenticator `auth`.
fn may_run_bcrypt(
    auth: &berth_engine::auth::Authenticator,
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
) -> bool {
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "));
    let token_form = *method == http::Method::POST && auth.is_token_endpoint(path);
    (basic || token_form)
        && auth
            .config()
            .users
            .iter()
            .any(|user| matches!(user.secret, berth_engine::auth::Secret::Bcrypt(_)))
}

pub fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// 32 bytes from the operating system's CSPRNG. Upload ids and writer tokens come from them;
/// without a random source the server must not run.
fn entropy() -> Entropy {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {e}");
    }
    Entropy(bytes)
}

/// Where request body chunks come from: the HTTP body, or nothing (maintenance).
enum BodySource {
    Request(RequestBody),
    None,
}

/// What a request body must deliver: in each `window` of time spent waiting for it, at
/// least `min_bytes` (and at least one byte). Time the server spends elsewhere (storing a
/// part, waiting for upload memory) is not the client's and does not count.
#[derive(Clone, Copy, Debug)]
pub struct BodyPace {
    /// `--body-timeout-secs`.
    pub window: Duration,
    /// `--min-body-rate` over one window.
    pub min_bytes: u64,
}

impl BodyPace {
    pub fn new(window: Duration, min_rate: u64) -> BodyPace {
        BodyPace {
            window,
            min_bytes: min_rate.saturating_mul(window.as_secs()).max(1),
        }
    }
}

/// A request's body as the engine reads it, held to its [`BodyPace`].
pub struct RequestBody {
    incoming: Incoming,
    pace: BodyPace,
    /// Waiting time left in the current window.
    window_left: Duration,
    /// Bytes received in the current window.
    window_bytes: u64,
    /// The body ended or failed: nothing more is read from it.
    finished: bool,
    /// The client waits for `100 Continue` before it sends the body, which hyper sends when
    /// the body is first read.
    awaits_continue: bool,
}

impl RequestBody {
    pub fn new(incoming: Incoming, pace: BodyPace, head: &http::request::Parts) -> RequestBody {
        let awaits_continue = head
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        RequestBody {
            incoming,
            pace,
            window_left: pace.window,
            window_bytes: 0,
            finished: false,
            awaits_continue,
        }
    }

    /// The next chunk, the end, or why the body failed. The wait counts against the current
    /// window even when the caller stops waiting early (it races this with storage effects),
    /// so a chunk asked for again resumes the window instead of restarting it.
    async fn next_chunk(&mut self) -> Outcome {
        if self.finished {
            return Outcome::BodyEnd;
        }
        self.awaits_continue = false;
        loop {
            let outcome = {
                let clock = WindowClock {
                    left: &mut self.window_left,
                    started: Instant::now(),
                };
                tokio::time::timeout(clock.remaining(), next_data(&mut self.incoming)).await
            };
            match outcome {
                Ok(Outcome::BodyChunk(data)) => {
                    self.window_bytes += data.len() as u64;
                    return Outcome::BodyChunk(data);
                }
                Ok(other) => {
                    self.finished = true;
                    return other;
                }
                Err(_) if self.window_bytes >= self.pace.min_bytes => {
                    self.window_left = self.pace.window;
                    self.window_bytes = 0;
                }
                Err(_) => {
                    self.finished = true;
                    let secs = self.pace.window.as_secs();
                    return Outcome::Failed(if self.window_bytes == 0 {
                        format!("the client sent no request body bytes for {secs} s")
                    } else {
                        format!(
                            "the client sent {} request body bytes in {secs} s, below the \
                             minimum of {} bytes/s",
                            self.window_bytes,
                            self.pace.min_bytes / secs.max(1)
                        )
                    });
                }
            }
        }
    }
}

/// Charges the time spent waiting for a body chunk to the window, however the wait ends.
struct WindowClock<'a> {
    left: &'a mut Duration,
    started: Instant,
}

impl WindowClock<'_> {
    fn remaining(&self) -> Duration {
        *self.left
    }
}

impl Drop for WindowClock<'_> {
    fn drop(&mut self) {
        *self.left = self.left.saturating_sub(self.started.elapsed());
    }
}

/// The next data frame of `incoming` (trailers are skipped), its end, or its failure.
async fn next_data(incoming: &mut Incoming) -> Outcome {
    loop {
        match incoming.frame().await {
            None => return Outcome::BodyEnd,
            Some(Err(e)) => return Outcome::Failed(format!("reading the request: {e}")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Outcome::BodyChunk(data),
                Err(_trailers) => continue,
            },
        }
    }
}

/// Most bytes of a request body read and discarded after the engine answered without needing
/// them (a 416 for an out-of-order chunk, a 404 for an unknown upload). HTTP/1.1 cannot answer
/// early and keep the connection: a client still sending would see a reset instead of the
/// answer. Beyond this, the connection is closed after the answer.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

impl BodySource {
    /// Reads and discards what is left of the body, up to `limit` bytes: nothing once it
    /// ended or failed, nor when the client still waits for `100 Continue` (it sends nothing
    /// unless asked, and a read would ask it).
    async fn drain(&mut self, limit: u64) {
        if let BodySource::Request(body) = self
            && body.awaits_continue
        {
            return;
        }
        let mut drained = 0u64;
        while drained < limit {
            match self.next_chunk().await {
                Outcome::BodyChunk(chunk) => drained += chunk.len() as u64,
                _ => return,
            }
        }
    }

    async fn next_chunk(&mut self) -> Outcome {
        match self {
            BodySource::Request(body) => body.next_chunk().await,
            BodySource::None => Outcome::BodyEnd,
        }
    }
}

impl Server {
    /// Executes one storage effect, timing it for the metrics.
    async fn execute(&self, id: EffectId, effect: Effect) -> (EffectId, Outcome) {
        let operation = effect.operation();
        let key = effect.key().map(str::to_owned);
        let started = Instant::now();
        let outcome = self.backend.execute(effect).await;
        self.metrics.observe_storage(operation, started.elapsed());
        if let Outcome::Failed(reason) = &outcome {
            tracing::warn!(operation, key, reason, "storage operation failed");
        }
        (id, outcome)
    }

    /// Runs a transaction to its end: executes its effects (storage ones concurrently, up to
    /// a bound; body reads in order), returns the response and the body bytes received.
    ///
    /// With `slow_auth` the transaction is polled with [`run_slow`] until it issues its first
    /// storage effect or its response: the engine decides who the caller is before either (a
    /// token form is read with body reads only), so no later poll can run bcrypt.
    ///
    /// A request that will buffer `body_memory` bytes of its body reserves them from
    /// [`Server::upload_memory`] at the same point, once the engine has let it in and before
    /// any of its effects runs: a request refused for want of memory has then changed
    /// nothing, and a caller without the right to push never holds any.
    async fn drive(
        &self,
        mut transaction: Transaction,
        mut body: BodySource,
        mut slow_auth: bool,
        body_memory: u64,
    ) -> (berth_engine::Response, u64) {
        let mut received = 0u64;
        let mut response = None;
        let mut reservation = None;
        let mut waiting: VecDeque<(EffectId, Effect)> = VecDeque::new();
        let mut body_reads: VecDeque<EffectId> = VecDeque::new();
        let mut running = FuturesUnordered::new();
        loop {
            let mut done = false;
            loop {
                let next = if slow_auth {
                    run_slow(|| transaction.poll()).await
                } else {
                    transaction.poll()
                };
                match next {
                    Next::Effect(id, Effect::ReadBody) => body_reads.push_back(id),
                    Next::Effect(id, effect) => {
                        slow_auth = false;
                        waiting.push_back((id, effect));
                    }
                    Next::Respond(r) => {
                        slow_auth = false;
                        response = Some(r);
                    }
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
            if body_memory > 0 && reservation.is_none() && response.is_none() {
                reservation = self.upload_memory.reserve(body_memory).await;
                self.observe_upload_memory();
                if reservation.is_none() {
                    response = Some(self.upload_memory.refusal());
                    break;
                }
            }
            while running.len() < MAX_CONCURRENT_EFFECTS
                && let Some((id, effect)) = waiting.pop_front()
            {
                running.push(self.execute(id, effect));
            }
            let (id, outcome) = match body_reads.front().copied() {
                Some(id) if running.is_empty() => {
                    body_reads.pop_front();
                    (id, body.next_chunk().await)
                }
                Some(id) => {
                    tokio::select! {
                        Some(result) = running.next() => result,
                        outcome = body.next_chunk() => {
                            body_reads.pop_front();
                            (id, outcome)
                        }
                    }
                }
                None => match running.next().await {
                    Some(result) => result,
                    None => {
                        tracing::error!("the engine awaits an outcome but issued no effect");
                        break;
                    }
                },
            };
            if let Outcome::BodyChunk(chunk) = &outcome {
                received += chunk.len() as u64;
            }
            if let Err(e) = transaction.handle(id, outcome) {
                tracing::error!("the engine refused an outcome: {e}");
            }
        }
        drop((running, transaction, reservation));
        if body_memory > 0 {
            self.observe_upload_memory();
        }
        body.drain(DRAIN_LIMIT).await;
        let response = response.unwrap_or_else(|| {
            berth_engine::RegistryError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                berth_engine::ErrorCode::Unknown,
                "the engine ended a transaction without a response",
            )
            .into_response()
        });
        (response, received)
    }

    fn observe_upload_memory(&self) {
        let reserved = i64::try_from(self.upload_memory.reserved()).unwrap_or(i64::MAX);
        self.metrics.upload_memory_bytes.set(reserved);
    }

    /// Whether verifying this request's credentials may run bcrypt (about 90 ms of CPU): some
    /// configured user has a bcrypt hash (htpasswd), and the request carries Basic credentials
    /// or is a `POST` to the token endpoint (the OAuth2 form carries the password in its body,
    /// as containerd sends it).
    fn needs_slow_auth(
        &self,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> bool {
        self.registry
            .config()
            .auth
            .as_deref()
            .is_some_and(|auth| may_run_bcrypt(auth, method, path, headers))
    }

    /// Serves one HTTP request on a connection whose activity `connection` tracks.
    pub async fn handle(
        self: Arc<Self>,
        connection: Arc<Activity>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let in_flight = InFlight::new(connection);
        let started = Instant::now();
        let (parts, incoming) = request.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().map(redact_query);
        let routed = berth_engine::route::route(&path).ok();
        let route = routed.as_ref().map_or("unknown", |r| r.label());
        let body_memory = routed
            .as_ref()
            .map_or(0, |r| r.body_memory(&parts, self.registry.config()));
        // For the gauge only: requests that carry blob bytes in.
        let uploading = matches!(route, "upload-start" | "upload") && method != http::Method::GET;
        let upload_gauge = uploading.then(|| UploadGauge::new(&self.metrics));
        let slow_auth = self.needs_slow_auth(&method, &path, &parts.headers);
        let entropy = entropy();
        let request_id = RequestId::from_entropy(&entropy);
        let driven = if head_size(&parts) > self.max_header_bytes {
            let refusal = berth_engine::RegistryError::new(
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                berth_engine::ErrorCode::Unsupported,
                format!(
                    "the request head exceeds {} bytes (--max-header-bytes)",
                    self.max_header_bytes
                ),
            );
            Ok((refusal.into_response(), 0))
        } else {
            let body = BodySource::Request(RequestBody::new(incoming, self.body_pace, &parts));
            let transaction = self
                .registry
                .begin(Request::from_parts(parts, ()), now(), entropy);
            if method == http::Method::GET || method == http::Method::HEAD {
                // Reads run on the connection's own task, which saves a task hand-off (a
                // cross-thread wake-up) per request: a fifth of a manifest GET's CPU. Should
                // the client leave, stopping a read between two storage operations is harmless.
                Ok(self.drive(transaction, body, slow_auth, body_memory).await)
            } else {
                // Everything else runs in a task of its own: if the client goes away mid-request
                // it still runs to its end (the engine sees the body fail and finishes cleanly)
                // instead of stopping between two storage operations.
                let driver = self.clone();
                tokio::spawn(async move {
                    let result = driver
                        .drive(transaction, body, slow_auth, body_memory)
                        .await;
                    drop(upload_gauge);
                    result
                })
                .await
            }
        };
        let (response, received) = match driven {
            Ok(result) => result,
            Err(e) => (
                RegistryError::internal("running the request", format!("its task failed: {e}"))
                    .into_response_for(request_id),
                0,
            ),
        };
        log_failure(&response, &method, &path);
        let user = log_auth(&response, &method, &path);
        let (mut parts, body) = response.into_parts();
        let (body, streaming): (UnsyncBoxBody<Bytes, io::Error>, bool) = match body {
            Body::Bytes(bytes) => (full(bytes), false),
            Body::Object { key, range } => match self.backend.open_stream(&key, range).await {
                Ok(stream) => (
                    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync(),
                    true,
                ),
                Err(e) => {
                    let error = RegistryError::backend("open", &key, &e.to_string())
                        .into_response_for(request_id);
                    log_failure(&error, &method, &path);
                    let (error_parts, error_body) = error.into_parts();
                    parts = error_parts;
                    match error_body {
                        Body::Bytes(b) => (full(b), false),
                        _ => (empty(), false),
                    }
                }
            },
            _ => (empty(), false),
        };
        // hyper stops polling a body once Content-Length bytes are out, and sends none on HEAD.
        let expected = match method {
            http::Method::HEAD => Some(0),
            _ => parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok()),
        };
        let record = RequestRecord {
            metrics: self.metrics.clone(),
            expected,
            method,
            path,
            query,
            route,
            user,
            status: parts.status.as_u16(),
            received,
            sent: 0,
            started,
            complete: false,
            failed: None,
            in_flight,
            streaming,
        };
        if streaming {
            record.in_flight.connection.stream_started();
        }
        Ok(Response::from_parts(
            parts,
            ResponseBody {
                inner: body,
                record,
            },
        ))
    }

    /// Runs one maintenance pass (the engine's, then the backend's own tidying) and returns
    /// its status and JSON summary.
    pub async fn maintain(&self) -> (http::StatusCode, String) {
        let transaction = self.registry.maintain(now());
        let (response, _) = self.drive(transaction, BodySource::None, false, 0).await;
        log_failure(&response, &http::Method::POST, "(maintenance)");
        // A multipart upload untouched for twice the upload expiry belongs to no live upload:
        // the engine's own maintenance has removed every upload that old.
        let expiry = self.registry.config().upload_expiry_secs;
        let abandoned_after = Duration::from_secs(expiry.saturating_mul(2));
        if let Err(e) = self.backend.clean_up(abandoned_after).await {
            tracing::warn!("cleaning up the storage failed: {e}");
        }
        let status = response.status();
        let text = match response.into_body() {
            Body::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        (status, text)
    }
}

/// Logs what a 500's client is not told (see [`FailureDetail`]) under the request id its
/// client is told.
fn log_failure(response: &berth_engine::Response, method: &http::Method, path: &str) {
    if let Some(detail) = response.extensions().get::<FailureDetail>() {
        tracing::error!(
            request_id = %detail.request_id,
            %method,
            path,
            operation = detail.operation,
            key = detail.key,
            reason = detail.reason,
            "request failed"
        );
    }
}

/// A query string for the log, with the value of every parameter whose name suggests a
/// credential replaced by `REDACTED`. The spec's parameters (`digest`, `mount`, `from`, `n`,
/// `last`, `artifactType`, `digest-algorithm`, the token endpoint's `scope`, `service`,
/// `account`) are kept as sent (still percent-encoded, so a log line stays one line); names
/// are compared decoded and case-blind, so an encoded `pass%77ord` is caught too.
fn redact_query(query: &str) -> String {
    const SECRET_NAMES: [&str; 10] = [
        "token",
        "password",
        "passwd",
        "secret",
        "state",
        "signature",
        "credential",
        "auth",
        "key",
        "session",
    ];
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let decoded = percent_decoded_lowercase(name);
            if SECRET_NAMES.iter().any(|secret| decoded.contains(secret)) {
                format!("{name}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `text` with `%XX` escapes and `+` decoded, ASCII-lowercased, for comparing names.
fn percent_decoded_lowercase(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                i += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).to_ascii_lowercase()
}

/// Logs an authentication refusal the engine reported (user name and reason: the engine
/// never puts a password or token in it) and returns the caller's name for the request log.
/// A request without credentials is how every client starts (it learns the challenge from
/// the 401), so that is only a debug line.
fn log_auth(
    response: &berth_engine::Response,
    method: &http::Method,
    path: &str,
) -> Option<String> {
    let extensions = response.extensions();
    if let Some(failure) = extensions.get::<AuthFailure>() {
        let user = failure.user.as_deref();
        let status = response.status().as_u16();
        match failure.reason {
            FailureReason::MissingCredentials => {
                tracing::debug!(%method, path, status, "authentication required")
            }
            FailureReason::Denied { .. } | FailureReason::InsufficientScope { .. } => {
                tracing::info!(%method, path, status, user, reason = %failure, "access denied")
            }
            _ => {
                tracing::warn!(%method, path, status, user, reason = %failure, "authentication failed")
            }
        }
        return failure.user.clone();
    }
    extensions
        .get::<Identity>()
        .and_then(|identity| identity.name().map(str::to_owned))
}

fn full(bytes: Bytes) -> UnsyncBoxBody<Bytes, io::Error> {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> UnsyncBoxBody<Bytes, io::Error> {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// What one connection is doing, for the idle and send timeouts (see `serve`).
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last became idle.
    idle_since: AtomicU64,
    streaming: AtomicUsize,
    /// Milliseconds since `epoch` when a streamed response body was last polled.
    last_send: AtomicU64,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            streaming: AtomicUsize::new(0),
            last_send: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn stream_started(&self) {
        self.last_send.store(self.now_ms(), Ordering::Relaxed);
        self.streaming.fetch_add(1, Ordering::Relaxed);
    }

    /// Why the connection should be closed now, if it should.
    pub fn expired(&self, idle_timeout: Duration, send_timeout: Duration) -> Option<&'static str> {
        let now = self.now_ms();
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let idle = now.saturating_sub(self.idle_since.load(Ordering::Acquire));
            if idle > idle_timeout.as_millis() as u64 {
                return Some("idle");
            }
        }
        if self.streaming.load(Ordering::Acquire) > 0 {
            let stalled = now.saturating_sub(self.last_send.load(Ordering::Acquire));
            if stalled > send_timeout.as_millis() as u64 {
                return Some("client stopped reading the response");
            }
        }
        None
    }
}

/// One request in flight on a connection.
struct InFlight {
    connection: Arc<Activity>,
}

impl InFlight {
    fn new(connection: Arc<Activity>) -> InFlight {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { connection }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.connection.now_ms();
        self.connection.idle_since.store(now, Ordering::Release);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a request carrying blob bytes in for as long as it lives.
struct UploadGauge(Arc<Metrics>);

impl UploadGauge {
    fn new(metrics: &Arc<Metrics>) -> UploadGauge {
        metrics.uploads_in_progress.inc();
        UploadGauge(metrics.clone())
    }
}

impl Drop for UploadGauge {
    fn drop(&mut self) {
        self.0.uploads_in_progress.dec();
    }
}

/// A request's log line and metrics, written when its response body is done (or dropped,
/// when the client goes away first).
struct RequestRecord {
    metrics: Arc<Metrics>,
    method: http::Method,
    path: String,
    /// The query string, credentials redacted ([`redact_query`]).
    query: Option<String>,
    route: &'static str,
    /// Who made the request, when authentication is on and let it in.
    user: Option<String>,
    status: u16,
    received: u64,
    sent: u64,
    /// Body bytes the response announced.
    expected: Option<u64>,
    started: Instant,
    complete: bool,
    failed: Option<String>,
    in_flight: InFlight,
    streaming: bool,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if self.streaming {
            self.in_flight
                .connection
                .streaming
                .fetch_sub(1, Ordering::AcqRel);
        }
        let elapsed = self.started.elapsed();
        self.metrics
            .observe_request(self.route, &self.method, self.status, elapsed);
        self.metrics.bytes_received.inc_by(self.received);
        self.metrics.bytes_sent.inc_by(self.sent);
        let ms = elapsed.as_millis() as u64;
        let method = self.method.as_str();
        let path = self.path.as_str();
        let query = self.query.as_deref();
        let user = self.user.as_deref();
        match (&self.failed, self.complete) {
            (None, true) => tracing::info!(
                method,
                path,
                query,
                user,
                status = self.status,
                bytes_in = self.received,
                bytes_out = self.sent,
                ms,
                "request"
            ),
            (failed, _) => tracing::warn!(
                method,
                path,
                query,
                user,
                status = self.status,
                bytes_in = self.received,
                bytes_out = self.sent,
                ms,
                error = failed
                    .as_deref()
                    .unwrap_or("the client went away before the end"),
                "request cut short"
            ),
        }
    }
}

/// A response body that counts what it sends and records the request when it ends.
pub struct ResponseBody {
    inner: UnsyncBoxBody<Bytes, io::Error>,
    record: RequestRecord,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.record.streaming {
            let connection = &this.record.in_flight.connection;
            connection
                .last_send
                .store(connection.now_ms(), Ordering::Release);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.sent += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => this.record.failed = Some(e.to_string()),
            Poll::Ready(None) => this.record.complete = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let record = &mut self.record;
        record.complete |= http_body::Body::is_end_stream(&self.inner)
            || record
                .expected
                .is_some_and(|expected| record.sent >= expected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::auth::{AuthConfig, Authenticator, SigningKey, TokenConfig};

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../engine/tests/data/auth/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    /// Users of the htpasswd fixture (bcrypt) or one plaintext user; tokens at `/auth/token`.
    fn authenticator(bcrypt: bool) -> Authenticator {
        let mut config = AuthConfig::default();
        if bcrypt {
            config.add_htpasswd(&fixture("htpasswd"), &[]).unwrap();
        } else {
            config
                .users
                .push(berth_engine::auth::User::plain("ci", "pw", Vec::new()));
        }
        let mut token = TokenConfig::new(
            "https://registry.example.com/auth/token",
            "registry.example.com",
            "berth",
        );
        token.path = "/auth/token".into();
        token.signing_key = Some(SigningKey::parse(&fixture("ec-pkcs8.pem")).unwrap());
        config.token = Some(token);
        Authenticator::new(config).unwrap()
    }

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn basic_credentials_and_the_token_form_may_run_bcrypt() {
        let auth = authenticator(true);
        let (get, post) = (http::Method::GET, http::Method::POST);
        let basic = headers(Some("Basic YWxpY2U6d29uZGVybGFuZA=="));
        let bearer = headers(Some("Bearer abc"));
        let none = headers(None);
        assert!(may_run_bcrypt(&auth, &get, "/v2/", &basic));
        assert!(may_run_bcrypt(&auth, &get, "/auth/token", &basic));
        // containerd's OAuth2 form: the password is in the body, no Authorization header.
        assert!(may_run_bcrypt(&auth, &post, "/auth/token", &none));
        assert!(!may_run_bcrypt(&auth, &get, "/auth/token", &none));
        assert!(!may_run_bcrypt(&auth, &post, "/token", &none));
        assert!(!may_run_bcrypt(
            &auth,
            &post,
            "/v2/a/blobs/uploads/",
            &bearer
        ));
        // Plaintext passwords only: nothing is slow.
        let plain = authenticator(false);
        assert!(!may_run_bcrypt(&plain, &get, "/v2/", &basic));
        assert!(!may_run_bcrypt(&plain, &post, "/auth/token", &none));
    }

    #[test]
    fn the_logged_query_keeps_the_specs_parameters_and_redacts_credentials() {
        let mount = "mount=sha256:abc&from=team%2Fapp&digest-algorithm=sha512&n=10&last=x";
        assert_eq!(redact_query(mount), mount);
        assert_eq!(
            redact_query("service=registry&scope=repository:a:pull&account=ci"),
            "service=registry&scope=repository:a:pull&account=ci"
        );
        assert_eq!(
            redact_query("_state=abc&access_token=t&PASSWORD=p&pass%77ord=q&digest=sha256:1"),
            "_state=REDACTED&access_token=REDACTED&PASSWORD=REDACTED&pass%77ord=REDACTED\
             &digest=sha256:1"
        );
        assert_eq!(
            redact_query("X-Amz-Signature=s&X-Amz-Credential=c&api_key=k&flag"),
            "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&api_key=REDACTED&flag"
        );
        assert_eq!(redact_query("%zz=1&%2=2"), "%zz=1&%2=2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_checks_run_at_most_one_per_cpu_at_once() {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..cpus * 4 + 2)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(async move {
                    run_slow(|| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=cpus).contains(&most),
            "{most} ran at once on {cpus} CPUs"
        );
    }
}
