//! `berth`: the OCI registry server. It drives berth's sans-IO engine with hyper and tokio
//! against a local directory (default), memory, or an object store; it holds no OCI logic.

mod config;
mod metrics;
mod server;
mod storage;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use config::{LogFormat, Resolved, Settings};
use server::Server;
use storage::Backend;

#[derive(Parser)]
#[command(name = "berth", version, about = "An OCI distribution registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry over HTTP.
    Serve(Settings),
    /// Run one maintenance pass (remove expired uploads) against the storage, then exit.
    Maintain(Settings),
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn build(settings: &Settings) -> Result<(Resolved, Arc<Server>), String> {
    let resolved = settings.resolve()?;
    let registry =
        berth_engine::Registry::new(resolved.engine.clone()).map_err(|e| e.to_string())?;
    let backend = Backend::open(&resolved.storage, &resolved.s3)
        .await
        .map_err(|e| format!("storage {}: {e}", resolved.storage))?;
    Ok((
        resolved,
        Arc::new(Server {
            registry,
            backend,
            metrics: Arc::default(),
        }),
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(settings) => serve(settings).await,
            Command::Maintain(settings) => {
                let (resolved, server) = build(&settings).await?;
                init_logging(resolved.log_format);
                let (status, summary) = server.maintain().await;
                println!("{summary}");
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("maintenance failed: {status}"))
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("berth: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let (resolved, server) = build(&settings).await?;
    init_logging(resolved.log_format);
    if !resolved.listen.ip().is_loopback() && !resolved.allow_unauthenticated_public {
        return Err(format!(
            "refusing to listen on {} without authentication: anyone who can reach it could push, \
             pull and delete. Listen on a loopback address, or pass --allow-unauthenticated-public",
            resolved.listen
        ));
    }
    let listener = TcpListener::bind(resolved.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", resolved.listen))?;
    let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(storage = server.backend.describe(), "berth serving");
    // Tests and scripts read the bound address from this line.
    println!("listening on {local}");
    let tls = match &resolved.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    if let Some(addr) = resolved.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("metrics listen on {addr}: {e}"))?;
        tracing::info!(%addr, path = resolved.metrics_path, "serving metrics");
        tokio::spawn(metrics::serve(
            listener,
            resolved.metrics_path.clone(),
            server.metrics.clone(),
        ));
    }
    tokio::spawn(server::maintenance_loop(
        server.clone(),
        Duration::from_secs(resolved.maintenance_interval_secs),
    ));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(resolved.header_timeout_secs))
        .max_buf_size(resolved.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(60));
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let server = server.clone();
                let service = hyper::service::service_fn(move |request| server.clone().handle(request));
                match &tls {
                    None => {
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        let connection = graceful.watch(connection.into_owned());
                        tokio::spawn(async move {
                            if let Err(e) = connection.await {
                                tracing::debug!("connection ended: {e}");
                            }
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, bounded like a header read.
                        let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
                        let timeout = Duration::from_secs(resolved.header_timeout_secs);
                        tokio::spawn(async move {
                            let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
                                Err(_) => return tracing::debug!("TLS handshake timed out"),
                            };
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            if let Err(e) = watcher.watch(connection.into_owned()).await {
                                tracing::debug!("connection ended: {e}");
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(resolved.shutdown_grace_secs)) => {
            tracing::warn!("grace period over; closing remaining connections");
        }
    }
    Ok(())
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
