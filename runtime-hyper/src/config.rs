//! Configuration: flags override environment variables (`BERTH_*`), which override the TOML
//! file (`--config`), which overrides the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Every setting of `berth serve` and `berth maintain`.
#[derive(Args, Debug, Clone, Default)]
pub struct Settings {
    /// TOML file with any of the settings below (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000]. Port 0 picks a free port; the chosen
    /// address is printed as `listening on ADDR`.
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where blobs and manifests are stored: a directory path, `memory`, or
    /// `s3://bucket[/prefix]` for R2 or any S3 API [default: ./berth-data].
    #[arg(long, env = "BERTH_STORAGE")]
    pub storage: Option<String>,
    /// S3 endpoint URL, e.g. `https://<account>.r2.cloudflarestorage.com` (else
    /// `AWS_ENDPOINT_URL`, else AWS). Credentials come from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "BERTH_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (else `AWS_REGION`; R2 uses `auto`).
    #[arg(long, env = "BERTH_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id (else `AWS_ACCESS_KEY_ID`). Prefer the environment: flags show in `ps`.
    #[arg(long, env = "BERTH_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (else `AWS_SECRET_ACCESS_KEY`).
    #[arg(long, env = "BERTH_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// S3 session token for temporary credentials (else `AWS_SESSION_TOKEN`).
    #[arg(long, env = "BERTH_S3_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,
    /// Allow a plain-HTTP S3 endpoint (a local S3 server).
    #[arg(long, env = "BERTH_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// Address the bucket virtual-hosted style (`https://BUCKET.ENDPOINT/KEY`) instead of the
    /// default path style (`https://ENDPOINT/BUCKET/KEY`, which R2 and local servers use).
    #[arg(long, env = "BERTH_S3_VIRTUAL_HOSTED_STYLE")]
    pub s3_virtual_hosted_style: bool,
    /// Multipart part size in bytes (5 MiB to 5 GiB) [default: 16777216]. Memory per
    /// in-flight upload is one part; the largest blob is 10,000 parts.
    #[arg(long, env = "BERTH_PART_SIZE")]
    pub part_size: Option<u64>,
    /// Largest manifest accepted, in bytes [default: 4194304].
    #[arg(long, env = "BERTH_MAX_MANIFEST_SIZE")]
    pub max_manifest_size: Option<usize>,
    /// Seconds of inactivity after which an unfinished upload is removed [default: 604800].
    #[arg(long, env = "BERTH_UPLOAD_EXPIRY_SECS")]
    pub upload_expiry_secs: Option<u64>,
    /// Mount a blob found anywhere in the registry when a mount names no `from` [default:
    /// true]. Turn off if repositories must not learn of each other's blobs.
    #[arg(long, env = "BERTH_MOUNT_WITHOUT_FROM")]
    pub mount_without_from: Option<bool>,
    /// Page size of `_catalog` and tag lists when the client gives no `n`, and the largest `n`
    /// honoured [default: 1000].
    #[arg(long, env = "BERTH_LIST_PAGE_SIZE")]
    pub list_page_size: Option<usize>,
    /// Referrers per page of the referrers API; more are paged with `Link` [default: 500].
    #[arg(long, env = "BERTH_REFERRERS_PAGE_SIZE")]
    pub referrers_page_size: Option<usize>,
    /// Seconds between maintenance runs (removal of expired uploads) [default: 3600].
    #[arg(long, env = "BERTH_MAINTENANCE_INTERVAL_SECS")]
    pub maintenance_interval_secs: Option<u64>,
    /// Seconds a client may take to send a request's headers, including the wait for the next
    /// request on a kept-alive HTTP/1.1 connection, and the TLS handshake [default: 30].
    #[arg(long, env = "BERTH_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay open with no request in flight (HTTP/2 included) before
    /// it is closed [default: 60].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a request body may go without a byte arriving before the request fails
    /// [default: 60].
    #[arg(long, env = "BERTH_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Seconds a response may wait for the client to take more of its body before the
    /// connection is closed [default: 120].
    #[arg(long, env = "BERTH_SEND_TIMEOUT_SECS")]
    pub send_timeout_secs: Option<u64>,
    /// Most connections served at once; more wait in the listen backlog [default: 1024].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest request head (request line and headers) in bytes [default: 65536].
    #[arg(long, env = "BERTH_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Seconds to let in-flight requests finish after SIGTERM or SIGINT [default: 30].
    #[arg(long, env = "BERTH_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN). Needs --tls-key.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (off unless set), e.g. 127.0.0.1:9090.
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Path of the metrics endpoint [default: /metrics].
    #[arg(long, env = "BERTH_METRICS_PATH")]
    pub metrics_path: Option<String>,
    /// Log format [default: text]. Levels follow `RUST_LOG` (default `info`).
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Listen on a non-loopback address although no authentication is configured: anyone who
    /// can reach the address can push, pull and delete. Without it, berth refuses to start so.
    #[arg(long, env = "BERTH_ALLOW_UNAUTHENTICATED_PUBLIC")]
    pub allow_unauthenticated_public: bool,
    // ── Authentication: RESERVED, not wired yet ──────────────────────────────────────────
    // The engine is gaining authentication (Basic users, a read-only user, bearer tokens).
    // Its settings belong here: flags named `--auth-*`, variables `BERTH_AUTH_*`, and an
    // `[auth]` table in the TOML file (see `FileSettings::auth`), resolved into
    // `Resolved::auth`. Once `AuthSettings::configured` can return true, the refusal to
    // listen on a public address without authentication is lifted by it.
}

/// Authentication settings: RESERVED. Nothing is configurable yet, so nothing is configured.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {}

impl AuthSettings {
    /// Whether requests are authenticated.
    pub fn configured(&self) -> bool {
        false
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The same settings as read from a TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileSettings {
    listen: Option<SocketAddr>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_session_token: Option<String>,
    s3_allow_http: Option<bool>,
    s3_virtual_hosted_style: Option<bool>,
    part_size: Option<u64>,
    max_manifest_size: Option<usize>,
    upload_expiry_secs: Option<u64>,
    mount_without_from: Option<bool>,
    list_page_size: Option<usize>,
    referrers_page_size: Option<usize>,
    maintenance_interval_secs: Option<u64>,
    header_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    send_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_header_bytes: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    log_format: Option<LogFormat>,
    allow_unauthenticated_public: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    metrics_path: Option<String>,
    /// RESERVED for authentication; refused until it is implemented, so that nobody believes
    /// a registry is protected when it is not.
    auth: Option<toml::Table>,
}

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub listen: SocketAddr,
    pub storage: String,
    pub s3: crate::storage::s3::S3Options,
    pub engine: berth_engine::Config,
    pub maintenance_interval_secs: u64,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub send_timeout_secs: u64,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    pub allow_unauthenticated_public: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_path: String,
    pub auth: AuthSettings,
}

impl Settings {
    /// Applies the file (if any) under the flags and environment, then the defaults.
    pub fn resolve(&self) -> Result<Resolved, String> {
        let file: FileSettings = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileSettings::default(),
        };
        if file.auth.is_some() {
            return Err(
                "the [auth] table is reserved: this berth does not implement \
                        authentication yet, so it refuses to pretend to"
                    .into(),
            );
        }
        // Field by field over the defaults, so a setting the engine adds keeps its default
        // until it is wired here.
        let mut engine = berth_engine::Config::default();
        macro_rules! layer {
            ($field:ident) => {
                if let Some(value) = self.$field.clone().or(file.$field.clone()) {
                    engine.$field = value;
                }
            };
        }
        layer!(part_size);
        layer!(max_manifest_size);
        layer!(upload_expiry_secs);
        layer!(mount_without_from);
        layer!(list_page_size);
        layer!(referrers_page_size);
        engine.validate().map_err(|e| e.to_string())?;
        Ok(Resolved {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            storage: self
                .storage
                .clone()
                .or(file.storage)
                .unwrap_or_else(|| "./berth-data".into()),
            tls: match (
                self.tls_cert.clone().or(file.tls_cert),
                self.tls_key.clone().or(file.tls_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(
                        "TLS needs both a certificate (tls_cert) and a key (tls_key)".into(),
                    );
                }
            },
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            metrics_path: self
                .metrics_path
                .clone()
                .or(file.metrics_path)
                .unwrap_or_else(|| "/metrics".into()),
            s3: crate::storage::s3::S3Options {
                endpoint: self.s3_endpoint.clone().or(file.s3_endpoint),
                region: self.s3_region.clone().or(file.s3_region),
                access_key_id: self.s3_access_key_id.clone().or(file.s3_access_key_id),
                secret_access_key: self
                    .s3_secret_access_key
                    .clone()
                    .or(file.s3_secret_access_key),
                session_token: self.s3_session_token.clone().or(file.s3_session_token),
                allow_http: self.s3_allow_http || file.s3_allow_http.unwrap_or(false),
                virtual_hosted_style: self.s3_virtual_hosted_style
                    || file.s3_virtual_hosted_style.unwrap_or(false),
            },
            engine,
            maintenance_interval_secs: self
                .maintenance_interval_secs
                .or(file.maintenance_interval_secs)
                .unwrap_or(3600)
                .max(1),
            header_timeout_secs: self
                .header_timeout_secs
                .or(file.header_timeout_secs)
                .unwrap_or(30)
                .max(1),
            idle_timeout_secs: self
                .idle_timeout_secs
                .or(file.idle_timeout_secs)
                .unwrap_or(60)
                .max(1),
            body_timeout_secs: self
                .body_timeout_secs
                .or(file.body_timeout_secs)
                .unwrap_or(60)
                .max(1),
            send_timeout_secs: self
                .send_timeout_secs
                .or(file.send_timeout_secs)
                .unwrap_or(120)
                .max(1),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(1024)
                .max(1),
            max_header_bytes: self
                .max_header_bytes
                .or(file.max_header_bytes)
                .unwrap_or(64 * 1024)
                .max(8192),
            shutdown_grace_secs: self
                .shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .unwrap_or(30),
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            allow_unauthenticated_public: self.allow_unauthenticated_public
                || file.allow_unauthenticated_public.unwrap_or(false),
            auth: AuthSettings::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "storage = \"/from/file\"\npart_size = 6291456\nlisten = \"127.0.0.1:7000\"\n",
        )
        .unwrap();
        let settings = Settings {
            config: Some(path),
            listen: Some("127.0.0.1:8000".parse().unwrap()),
            ..Settings::default()
        };
        let resolved = settings.resolve().unwrap();
        assert_eq!(resolved.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(resolved.storage, "/from/file");
        assert_eq!(resolved.engine.part_size, 6 * 1024 * 1024);
        assert_eq!(resolved.engine.max_manifest_size, 4 * 1024 * 1024);
    }

    #[test]
    fn unknown_file_keys_and_bad_part_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "stroage = \"typo\"\n").unwrap();
        assert!(
            Settings {
                config: Some(path),
                ..Settings::default()
            }
            .resolve()
            .unwrap_err()
            .contains("stroage")
        );
        assert!(
            Settings {
                part_size: Some(1024),
                ..Settings::default()
            }
            .resolve()
            .unwrap_err()
            .contains("part size")
        );
    }
}
