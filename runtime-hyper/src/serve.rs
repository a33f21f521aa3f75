//! `berth serve` and `berth maintain`: listening, TLS, HTTP/1.1 and HTTP/2, connection limits
//! and timeouts, the maintenance schedule, graceful shutdown.
//!
//! What holds a connection open, and for how long at most:
//! - the TLS handshake, then each request head: `header_timeout` (a slow-loris sending its
//!   headers a byte at a time is cut off);
//! - no request in flight (between keep-alive requests, HTTP/2 included, and before the first
//!   byte): `idle_timeout`;
//! - a request body that stops arriving, or trickles: each `body_timeout` spent waiting for
//!   it must bring `min_body_rate` bytes a second (and at least one byte), or the request
//!   fails;
//! - a request that would buffer upload bytes: it waits for its share of `upload_memory`
//!   (see [`crate::server::UploadMemory`]), or gets 429;
//! - a response body the client stops reading: `send_timeout`;
//! - and at most `max_connections` connections are served at once.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::config::{LogFormat, Resolved, Settings};
use crate::server::{Activity, BodyPace, HTTP1_READ_BUFFER, Server, UploadMemory};
use crate::storage::Backend;

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only for a person at a terminal: a file or a pipe gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The server for `resolved`, its authenticator built for the bound address `local` (`None`
/// for maintenance, which authenticates nothing).
async fn build(resolved: &Resolved, local: Option<SocketAddr>) -> Result<Arc<Server>, String> {
    let mut engine = resolved.engine.clone();
    engine.auth = match local {
        Some(local) => resolved.auth.build(local, resolved.tls.is_some())?,
        None => None,
    };
    let registry = berth_engine::Registry::new(engine).map_err(|e| e.to_string())?;
    let backend = Backend::open(&resolved.storage, &resolved.s3)
        .await
        .map_err(|e| format!("storage {}: {e}", resolved.storage))?;
    let server = Server {
        registry,
        backend,
        metrics: Arc::default(),
        body_pace: BodyPace::new(
            Duration::from_secs(resolved.body_timeout_secs),
            resolved.min_body_rate,
        ),
        upload_memory: Arc::new(UploadMemory::new(
            resolved.upload_memory,
            Duration::from_secs(resolved.upload_memory_wait_secs),
        )),
        max_header_bytes: resolved.max_header_bytes,
    };
    Ok(Arc::new(server))
}

fn resolve(settings: &Settings) -> Result<Resolved, String> {
    let resolved = settings.resolve()?;
    init_logging(resolved.log_format);
    Ok(resolved)
}

/// `berth maintain`: one maintenance pass, its summary on stdout.
pub async fn maintain_once(settings: Settings) -> Result<(), String> {
    let resolved = resolve(&settings)?;
    let server = build(&resolved, None).await?;
    let (status, summary) = server.maintain().await;
    println!("{summary}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("maintenance failed: {status}"))
    }
}

/// Runs maintenance every `interval` until the process ends.
async fn maintenance_loop(server: Arc<Server>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (status, summary) = server.maintain().await;
        tracing::info!(status = status.as_u16(), summary, "maintenance");
    }
}

/// Limits that apply to every connection.
#[derive(Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
}

/// `berth serve`: runs until SIGTERM or SIGINT, then lets in-flight requests finish (for up to
/// the grace period).
pub async fn serve(settings: Settings) -> Result<(), String> {
    let resolved = resolve(&settings)?;
    if !resolved.listen.ip().is_loopback()
        && !resolved.auth.configured()
        && !resolved.allow_unauthenticated_public
    {
        return Err(format!(
            "refusing to listen on {} without authentication: anyone who can reach it could push, \
             pull and delete. Listen on a loopback address, or pass --allow-unauthenticated-public",
            resolved.listen
        ));
    }
    let tls = match &resolved.tls {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(resolved.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", resolved.listen))?;
    let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = build(&resolved, Some(local)).await?;
    match server.registry.config().auth.as_deref() {
        Some(auth) => tracing::info!(
            sources = resolved.auth.sources.join("; "),
            token_endpoint = auth
                .config()
                .token
                .as_ref()
                .filter(|t| t.signing_key.is_some())
                .map(|t| t.path.as_str()),
            token_realm = auth.config().token.as_ref().map(|t| t.realm.as_str()),
            anonymous = auth
                .config()
                .anonymous
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            "authentication on"
        ),
        None => tracing::warn!("authentication off: every client may push, pull and delete"),
    }
    if resolved.auth.realm_from_listen()
        && (local.ip().is_unspecified() || !local.ip().is_loopback())
    {
        tracing::warn!(
            "the token realm is derived from the listen address {local}; clients elsewhere \
             need the registry's public URL: set --auth-token-realm https://HOST/token"
        );
    }
    if let Some(addr) = resolved.metrics_listen {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("metrics listen on {addr}: {e}"))?;
        tracing::info!(%addr, path = resolved.metrics_path, "serving metrics");
        tokio::spawn(crate::metrics::serve(
            metrics_listener,
            resolved.metrics_path.clone(),
            server.metrics.clone(),
        ));
    }
    tokio::spawn(maintenance_loop(
        server.clone(),
        Duration::from_secs(resolved.maintenance_interval_secs),
    ));
    tokio::spawn(crate::server::return_freed_memory(
        server.upload_memory.clone(),
    ));
    tracing::info!(
        address = %local,
        storage = server.backend.describe(),
        tls = tls.is_some(),
        "berth serving"
    );
    // Tests and scripts read the bound address from this line.
    println!("listening on {local}");

    let limits = Limits {
        header_timeout: Duration::from_secs(resolved.header_timeout_secs),
        idle_timeout: Duration::from_secs(resolved.idle_timeout_secs),
        send_timeout: Duration::from_secs(resolved.send_timeout_secs),
    };
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Bodies are read up to 1 MiB at a time; a head is refused once hyper holds
        // --max-header-bytes of it, unfinished or not.
        .max_buf_size(resolved.max_header_bytes.max(HTTP1_READ_BUFFER))
        .max_header_size(resolved.max_header_bytes)
        .max_headers(128);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(resolved.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let protocols = Arc::new(Protocols { http1, http2 });
    let connections = Arc::new(tokio::sync::Semaphore::new(resolved.max_connections));
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: let some connections end.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (server, protocols, watcher, tls) = (
            server.clone(),
            protocols.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, server, &protocols, watcher, limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, server, &protocols, watcher, limits).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(resolved.shutdown_grace_secs)) => {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    }
    Ok(())
}

/// How connections are served, by protocol.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

/// The first bytes of every HTTP/2 connection ("prior knowledge" over plain TCP, or after
/// ALPN `h2` over TLS).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a connection's first bytes until they can only be the HTTP/2 preface or cannot be
/// it; returns whether they are, and the bytes read. (hyper-util's automatic builder does
/// the same, but does not give access to hyper's HTTP/1 `max_header_size`.)
async fn read_preface<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<(bool, Bytes)> {
    let mut read = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < read.len() {
        let n = io.read(&mut read[filled..]).await?;
        if n == 0 || read[filled..filled + n] != H2_PREFACE[filled..filled + n] {
            filled += n;
            return Ok((false, Bytes::copy_from_slice(&read[..filled])));
        }
        filled += n;
    }
    Ok((true, Bytes::copy_from_slice(&read)))
}

/// A connection whose first bytes were read to choose the protocol, and are read again.
struct Replay<I> {
    first: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.first.has_remaining() {
            let n = this.first.len().min(buf.remaining());
            buf.put_slice(&this.first[..n]);
            this.first.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, times out, or shutdown closes it.
async fn serve_connection<I>(
    mut io: I,
    server: Arc<Server>,
    protocols: &Protocols,
    watcher: hyper_util::server::graceful::Watcher,
    limits: Limits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (http2, first) =
        match tokio::time::timeout(limits.header_timeout, read_preface(&mut io)).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return tracing::debug!("connection ended: {e}"),
            Err(_) => return tracing::debug!("closing connection: no request in time"),
        };
    let io = TokioIo::new(Replay { first, io });
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request| server.clone().handle(activity.clone(), request))
    };
    if http2 {
        let connection = protocols.http2.serve_connection(io, service);
        supervise(watcher.watch(connection), &activity, limits).await;
    } else {
        let connection = protocols.http1.serve_connection(io, service);
        supervise(watcher.watch(connection), &activity, limits).await;
    }
}

/// Runs a connection until it ends, or until its idle or send timeout closes it.
async fn supervise(
    connection: impl Future<Output = hyper::Result<()>>,
    activity: &Activity,
    limits: Limits,
) {
    let check_every = (limits.idle_timeout.min(limits.send_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let watchdog = async {
        let mut ticker = tokio::time::interval(check_every);
        loop {
            ticker.tick().await;
            if let Some(reason) = activity.expired(limits.idle_timeout, limits.send_timeout) {
                return reason;
            }
        }
    };
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        reason = watchdog => tracing::debug!(reason, "closing connection"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
