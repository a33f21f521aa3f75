//! The driver loop: one engine transaction per request, its effects executed against the
//! backend, its response streamed back. No OCI decision is made here.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_engine::{Body, Effect, Entropy, Next, Outcome, Registry, Transaction, UnixTime};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

use crate::storage::Backend;

pub type ResponseBody = UnsyncBoxBody<Bytes, io::Error>;

pub struct Server {
    pub registry: Registry,
    pub backend: Backend,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

fn entropy() -> Entropy {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // Upload ids must not repeat; without the OS random source, derive them from time.
        tracing::error!("random source failed: {e}");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    Entropy(bytes)
}

/// Where request body chunks come from: the HTTP body, or nothing (maintenance).
enum BodySource {
    Request(Incoming),
    None,
}

impl BodySource {
    async fn next_chunk(&mut self) -> Outcome {
        let BodySource::Request(body) = self else {
            return Outcome::BodyEnd;
        };
        loop {
            match body.frame().await {
                None => return Outcome::BodyEnd,
                Some(Err(e)) => return Outcome::Failed(e.to_string()),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Outcome::BodyChunk(data),
                    Err(_trailers) => continue,
                },
            }
        }
    }
}

/// Runs a transaction to its end: executes effects, returns the response and bytes received.
async fn drive(
    server: &Server,
    mut transaction: Transaction,
    mut body: BodySource,
) -> (berth_engine::Response, u64) {
    let mut received = 0u64;
    let mut response = None;
    loop {
        match transaction.poll() {
            Next::Effect(id, Effect::ReadBody) => {
                let outcome = body.next_chunk().await;
                if let Outcome::BodyChunk(chunk) = &outcome {
                    received += chunk.len() as u64;
                }
                report(&mut transaction, id, outcome);
            }
            Next::Effect(id, effect) => {
                let operation = effect.operation();
                let started = Instant::now();
                let outcome = server.backend.execute(effect).await;
                if let Outcome::Failed(reason) = &outcome {
                    tracing::warn!(operation, reason, "storage operation failed");
                }
                server.metrics.observe_storage(operation, started.elapsed());
                report(&mut transaction, id, outcome);
            }
            Next::Respond(r) => response = Some(r),
            Next::Done => break,
            // Effects are executed one at a time, so the engine never waits with none issued.
            Next::AwaitOutcome => break,
            _ => break,
        }
    }
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

fn report(transaction: &mut Transaction, id: berth_engine::EffectId, outcome: Outcome) {
    if let Err(e) = transaction.handle(id, outcome) {
        tracing::error!("engine refused an outcome: {e}");
    }
}

impl Server {
    /// Serves one HTTP request.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let (parts, incoming) = request.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        let route = berth_engine::route::route(&path).map_or("unknown", |r| r.label());
        let uploading = matches!(route, "upload-start" | "upload") && method != http::Method::GET;
        let _in_progress = uploading.then(|| UploadGuard::new(&self.metrics));
        let transaction = self
            .registry
            .begin(Request::from_parts(parts, ()), now(), entropy());
        let (response, received) = drive(&self, transaction, BodySource::Request(incoming)).await;
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let sent = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let body: ResponseBody = match body {
            Body::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            Body::Bytes(bytes) => Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
            Body::Object { key, range } => match self.backend.open_stream(&key, range).await {
                Ok(stream) => StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync(),
                Err(e) => {
                    tracing::error!(key, "opening a stored object failed: {e}");
                    let error = berth_engine::RegistryError::backend("open", &key, &e.to_string())
                        .into_response();
                    let (parts, body) = error.into_parts();
                    let bytes = match body {
                        Body::Bytes(b) => b,
                        _ => Bytes::new(),
                    };
                    tracing::info!(%method, path, status = parts.status.as_u16(), received, sent = bytes.len(), ms = started.elapsed().as_millis() as u64, "request");
                    return Ok(Response::from_parts(
                        parts,
                        Full::new(bytes)
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    ));
                }
            },
            _ => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        };
        self.metrics
            .requests
            .get_or_create(&crate::metrics::RequestLabels {
                route,
                method: method.to_string(),
                status: status.as_u16(),
            })
            .inc();
        self.metrics.bytes_received.inc_by(received);
        self.metrics.bytes_sent.inc_by(sent);
        tracing::info!(%method, path, status = status.as_u16(), received, sent, ms = started.elapsed().as_millis() as u64, "request");
        Ok(Response::from_parts(parts, body))
    }

    /// Runs one maintenance pass and returns its JSON summary.
    pub async fn maintain(&self) -> (http::StatusCode, String) {
        let transaction = self.registry.maintain(now());
        let (response, _) = drive(self, transaction, BodySource::None).await;
        let status = response.status();
        let text = match response.into_body() {
            Body::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        (status, text)
    }
}

/// Counts an upload request in progress for as long as it lives.
struct UploadGuard(Arc<crate::metrics::Metrics>);

impl UploadGuard {
    fn new(metrics: &Arc<crate::metrics::Metrics>) -> UploadGuard {
        metrics.uploads_in_progress.inc();
        UploadGuard(metrics.clone())
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.0.uploads_in_progress.dec();
    }
}

/// Runs maintenance every `interval` until the process ends.
pub async fn maintenance_loop(server: Arc<Server>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (status, summary) = server.maintain().await;
        tracing::info!(status = status.as_u16(), summary, "maintenance");
    }
}
