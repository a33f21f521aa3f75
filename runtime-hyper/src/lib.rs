//! `berth`: the OCI registry server. It drives berth's sans-IO engine ([`berth_engine`]) with
//! hyper and tokio against a local directory (the default), memory, or an S3/R2 bucket. It
//! holds no OCI logic: every decision about the protocol is the engine's; this crate moves
//! bytes, keeps time, draws entropy and executes storage effects.
//!
//! - [`config`]: flags, `BERTH_*` environment variables and the TOML file.
//! - [`storage`]: the backends (directory, memory, S3) behind one [`storage::Backend`].
//! - [`server`]: the driver loop (one engine transaction per request) and request logging.
//! - [`serve`]: listening, TLS, connection limits and timeouts, graceful shutdown.
//! - [`metrics`]: the Prometheus endpoint.

pub mod config;
pub mod metrics;
pub mod serve;
pub mod server;
pub mod storage;
pub mod tls;
