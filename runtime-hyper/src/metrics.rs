//! Prometheus metrics, served on their own address so they need not be public.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub uploads_in_progress: Gauge<i64, AtomicI64>,
    pub upload_memory_bytes: Gauge<i64, AtomicI64>,
    pub storage_seconds: Family<OperationLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        registry.register(
            "request_seconds",
            "time from a request's head to the end of its response body, by route",
            request_seconds.clone(),
        );
        let bytes_received = Counter::default();
        registry.register(
            "request_body_bytes",
            "request body bytes received",
            bytes_received.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "response_body_bytes",
            "response body bytes sent",
            bytes_sent.clone(),
        );
        let uploads_in_progress = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "uploads_in_progress",
            "upload requests carrying blob bytes in (POST, PATCH, PUT) being served",
            uploads_in_progress.clone(),
        );
        let upload_memory_bytes = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "upload_memory_bytes",
            "bytes of --upload-memory reserved by requests whose bodies are being received",
            upload_memory_bytes.clone(),
        );
        let storage_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register(
            "storage_operation_seconds",
            "latency of storage operations by operation",
            storage_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            bytes_received,
            bytes_sent,
            uploads_in_progress,
            upload_memory_bytes,
            storage_seconds,
        }
    }
}

impl Metrics {
    pub fn observe_request(
        &self,
        route: &'static str,
        method: &http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method.to_string(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_storage(&self, operation: &'static str, elapsed: Duration) {
        self.storage_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET <path>` with the metrics on `listener`, forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    path: String,
    metrics: std::sync::Arc<Metrics>,
) {
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, path) = (metrics.clone(), path.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let response = if request.uri().path() == path {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(bytes::Bytes::from(metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(bytes::Bytes::new()))
                    };
                    async move { response }
                },
            );
            // Bounded like the registry's own connections: a scraper gets 30 s per request.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(300), connection).await;
        });
    }
}
