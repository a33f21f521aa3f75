//! Configuration: flags override environment variables (`BERTH_*`), which override the TOML
//! file (`--config`), which overrides the defaults. Two lists are the exception: users and
//! per-user grants are combined from every source (see [`Settings::resolve_auth`]), because a
//! user left without grants may do everything, so a source that replaced another's grants
//! could silently lift every restriction.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_engine::auth::{
    Actions, AuthConfig, Authenticator, Grant, SigningKey, TokenConfig, User, VerificationKey,
};

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
    /// Seconds an ordinary S3 request may take (records, listings, deletes), and the longest
    /// wait for the next bytes of a blob streamed from S3 [default: 30].
    #[arg(long, env = "BERTH_S3_TIMEOUT_SECS")]
    pub s3_timeout_secs: Option<u64>,
    /// Seconds uploading one part to S3 may take [default: 300].
    #[arg(long, env = "BERTH_S3_PART_TIMEOUT_SECS")]
    pub s3_part_timeout_secs: Option<u64>,
    /// Seconds completing a multipart upload may take: S3 assembles the blob before it
    /// answers, which for thousands of parts can take minutes [default: 900].
    #[arg(long, env = "BERTH_S3_COMPLETE_TIMEOUT_SECS")]
    pub s3_complete_timeout_secs: Option<u64>,
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
    /// Blob pointers each maintenance run checks for data that is gone, going on where the
    /// last run stopped; a blob found so reads as absent until it is pushed again; 0 turns the
    /// check off [default: 1000].
    #[arg(long, env = "BERTH_BLOB_CHECKS_PER_PASS")]
    pub blob_checks_per_pass: Option<usize>,
    /// Seconds a client may take to send a request's headers, including the wait for the next
    /// request on a kept-alive HTTP/1.1 connection, and the TLS handshake [default: 30].
    #[arg(long, env = "BERTH_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay open with no request in flight (HTTP/2 included) before
    /// it is closed [default: 60].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a request body may go without a byte arriving before the request fails; also
    /// the window over which --min-body-rate is measured [default: 60].
    #[arg(long, env = "BERTH_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Least average rate of a request body, in bytes per second, over each
    /// --body-timeout-secs spent waiting for it; a slower body fails its request, so a client
    /// trickling bytes cannot hold its upload memory forever. 0: only the body timeout
    /// [default: 16384].
    #[arg(long, env = "BERTH_MIN_BODY_RATE")]
    pub min_body_rate: Option<u64>,
    /// Memory, in bytes, that request bodies being received may hold at once: one part
    /// (--part-size) per upload request carrying blob bytes, the manifest of a manifest PUT.
    /// A request beyond it waits up to --upload-memory-wait-secs, then gets 429 with
    /// Retry-After. At least one part [default: 268435456 (256 MiB), or two parts if larger].
    #[arg(long, env = "BERTH_UPLOAD_MEMORY")]
    pub upload_memory: Option<u64>,
    /// Seconds a request waits for --upload-memory before it gets 429 [default: 5].
    #[arg(long, env = "BERTH_UPLOAD_MEMORY_WAIT_SECS")]
    pub upload_memory_wait_secs: Option<u64>,
    /// Seconds a response may wait for the client to take more of its body before the
    /// connection is closed [default: 120].
    #[arg(long, env = "BERTH_SEND_TIMEOUT_SECS")]
    pub send_timeout_secs: Option<u64>,
    /// Most connections served at once; more wait in the listen backlog [default: 1024].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest request head (request line and headers) in bytes; a larger one gets 431
    /// [default: 65536].
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
    // ── Authentication (see "Authentication" in the README) ──────────────────────────────
    /// A user who logs in with HTTP Basic (and at the token endpoint), as NAME:PASSWORD (the
    /// password is everything after the first ':'). Repeat for more users. Flags show in `ps`:
    /// prefer BERTH_AUTH_USER (one user), the [auth] table or --auth-htpasswd. Users of the
    /// flags, BERTH_AUTH_USER, the [auth] table, the htpasswd file and serverless-registry's
    /// variables are all combined; a name may appear once.
    #[arg(long = "auth-user", value_name = "NAME:PASSWORD")]
    pub auth_users: Vec<String>,
    /// An htpasswd file of users with bcrypt hashes (`htpasswd -B`), the reference registry's
    /// format. bcrypt runs on every Basic-authenticated request; the token flow runs it once
    /// per token.
    #[arg(long, env = "BERTH_AUTH_HTPASSWD", value_name = "FILE")]
    pub auth_htpasswd: Option<PathBuf>,
    /// What a user may do, as USER=PATTERN:ACTIONS, e.g. `alice=team-a/*:pull,push`. PATTERN
    /// is a repository name with `*` matching anything (`/` included); ACTIONS is a comma
    /// list of pull, push, delete, or `*`. Repeat (or separate by spaces) for more. A user's
    /// grants are those of these flags, of BERTH_AUTH_GRANTS (space-separated) and of the
    /// [auth] table together. A user without any grant may pull, push and delete everything.
    #[arg(
        long = "auth-grant",
        value_delimiter = ' ',
        value_name = "USER=PATTERN:ACTIONS"
    )]
    pub auth_grants: Vec<String>,
    /// What anyone may do without credentials, as PATTERN:ACTIONS, e.g. `public/*:pull`.
    /// Repeat (or separate by spaces) for more.
    #[arg(
        long = "auth-anonymous",
        env = "BERTH_AUTH_ANONYMOUS",
        value_delimiter = ' ',
        value_name = "PATTERN:ACTIONS"
    )]
    pub auth_anonymous: Vec<String>,
    /// The realm of `Basic` challenges [default: berth].
    #[arg(long, env = "BERTH_AUTH_REALM")]
    pub auth_realm: Option<String>,
    /// Clock skew tolerated on token `exp` and `nbf`, in seconds [default: 30].
    #[arg(long, env = "BERTH_AUTH_LEEWAY_SECS")]
    pub auth_leeway_secs: Option<u64>,
    /// Issue registry tokens (the Docker token flow) signed with this private key: a PEM
    /// (PKCS#8, SEC1 or PKCS#1) or JWK file, ES256, RS256 or EdDSA. Enables the token
    /// endpoint at --auth-token-path and `Bearer` challenges.
    #[arg(long, env = "BERTH_AUTH_TOKEN_SIGNING_KEY", value_name = "FILE")]
    pub auth_token_signing_key: Option<PathBuf>,
    /// Also accept tokens signed with the public key(s) in this PEM, JWK or JWK Set file, an
    /// external token server's. Such tokens may do what they say, whatever the grants here,
    /// and with `registry:catalog:*` list every repository. Not for a previous signing key of
    /// berth's: its tokens expire within --auth-token-ttl-secs and clients fetch new ones.
    /// Repeat (or separate by spaces) for more. Without a signing key berth only verifies
    /// tokens; --auth-token-realm is then required.
    #[arg(
        long = "auth-token-trusted-key",
        env = "BERTH_AUTH_TOKEN_TRUSTED_KEYS",
        value_delimiter = ' ',
        value_name = "FILE"
    )]
    pub auth_token_trusted_keys: Vec<PathBuf>,
    /// The URL clients fetch tokens from [default: http(s)://LISTEN-ADDRESS/token, which only
    /// suits clients on the same network: set it to the public URL].
    #[arg(long, env = "BERTH_AUTH_TOKEN_REALM", value_name = "URL")]
    pub auth_token_realm: Option<String>,
    /// The token service: `service` of challenges and `aud` of tokens [default: the realm's
    /// host:port].
    #[arg(long, env = "BERTH_AUTH_TOKEN_SERVICE")]
    pub auth_token_service: Option<String>,
    /// The token issuer (`iss`), written and required [default: berth].
    #[arg(long, env = "BERTH_AUTH_TOKEN_ISSUER")]
    pub auth_token_issuer: Option<String>,
    /// Path of the token endpoint, outside /v2/ [default: /token].
    #[arg(long, env = "BERTH_AUTH_TOKEN_PATH")]
    pub auth_token_path: Option<String>,
    /// Lifetime of issued tokens, in seconds (at most 86400) [default: 300].
    #[arg(long, env = "BERTH_AUTH_TOKEN_TTL_SECS")]
    pub auth_token_ttl_secs: Option<u64>,
}

/// cloudflare/serverless-registry's variables, read unchanged from the environment.
pub const SERVERLESS_REGISTRY_VARS: [&str; 5] = [
    "USERNAME",
    "PASSWORD",
    "READONLY_USERNAME",
    "READONLY_PASSWORD",
    "JWT_REGISTRY_TOKENS_PUBLIC_KEY",
];

/// The `[auth]` table of the TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    realm: Option<String>,
    leeway_secs: Option<u64>,
    htpasswd: Option<PathBuf>,
    #[serde(default)]
    users: Vec<FileUser>,
    /// User name → grants.
    #[serde(default)]
    grants: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    anonymous: Vec<String>,
    token: Option<FileToken>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    password: String,
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileToken {
    signing_key: Option<PathBuf>,
    #[serde(default)]
    trusted_keys: Vec<PathBuf>,
    realm: Option<String>,
    service: Option<String>,
    issuer: Option<String>,
    path: Option<String>,
    ttl_secs: Option<u64>,
}

/// Authentication, resolved from flags, environment and file. The token realm may depend on
/// the bound address, so the engine's [`AuthConfig`] is finished by [`AuthSettings::build`].
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `None` when nothing is configured.
    config: Option<AuthConfig>,
    /// Token auth is on but no realm was given: derive it from the bound address.
    realm_from_listen: bool,
    /// Where the users came from, for the startup log (never a password).
    pub sources: Vec<String>,
}

impl AuthSettings {
    /// Whether requests are authenticated.
    pub fn configured(&self) -> bool {
        self.config.is_some()
    }

    /// Whether the token realm is derived from the bound address (no --auth-token-realm).
    pub fn realm_from_listen(&self) -> bool {
        self.realm_from_listen
    }

    /// The engine's authenticator, `None` when nothing is configured. `local` is the bound
    /// address (for a default token realm), `tls` whether it serves HTTPS.
    pub fn build(
        &self,
        local: SocketAddr,
        tls: bool,
    ) -> Result<Option<Arc<Authenticator>>, String> {
        let Some(mut config) = self.config.clone() else {
            return Ok(None);
        };
        if let Some(token) = &mut config.token
            && self.realm_from_listen
        {
            let scheme = if tls { "https" } else { "http" };
            token.realm = format!("{scheme}://{local}{}", token.path);
            if token.service.is_empty() {
                token.service = local.to_string();
            }
        }
        Authenticator::new(config)
            .map(|a| Some(Arc::new(a)))
            .map_err(|e| format!("authentication: {e}"))
    }
}

fn read_text(what: &str, path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn parse_grants(what: &str, texts: &[String]) -> Result<Vec<Grant>, String> {
    texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Grant::parse(t.trim()).map_err(|e| format!("{what}: {e}")))
        .collect()
}

/// The host (and port) of a URL, for the default token service.
fn authority(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| host.to_owned())
}

impl Settings {
    /// Authentication from flags, `BERTH_AUTH_*`, the `[auth]` table, and serverless-registry's
    /// variables (environment variables are looked up with `env`).
    ///
    /// Users and per-user grants are combined from every source: a user's grants are the union
    /// of `[[auth.users]]` `grants`, `[auth.grants]`, `BERTH_AUTH_GRANTS` and `--auth-grant`,
    /// and only a user with no grant from any source may do everything. Every other setting,
    /// lists included (anonymous grants, trusted keys), is taken whole from the first source
    /// that sets it: flags, then environment, then file. (Those lists, unlike a user's grants,
    /// grant nothing when empty, so taking one whole grants nothing the operator did not write.)
    fn resolve_auth(
        &self,
        file: Option<FileAuth>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AuthSettings, String> {
        let file = file.unwrap_or_default();
        let mut sources = Vec::new();
        let mut config = AuthConfig::default();
        if let Some(realm) = self.auth_realm.clone().or(file.realm) {
            config.realm = realm;
        }
        if let Some(leeway) = self.auth_leeway_secs.or(file.leeway_secs) {
            config.leeway_secs = leeway;
        }
        let everything = vec![Grant::everything(Actions::ALL)];
        // Users from every source, combined; `validate` refuses a name given twice.
        let env_user = env("BERTH_AUTH_USER").filter(|u| !u.is_empty());
        for (entry, what) in self
            .auth_users
            .iter()
            .map(|e| (e, "--auth-user"))
            .chain(env_user.iter().map(|e| (e, "BERTH_AUTH_USER")))
        {
            let (name, password) = entry
                .split_once(':')
                .ok_or_else(|| format!("{what} takes NAME:PASSWORD"))?;
            config.users.push(User::plain(name, password, Vec::new()));
        }
        if !self.auth_users.is_empty() {
            sources.push(format!(
                "{} user(s) from --auth-user",
                self.auth_users.len()
            ));
        }
        if env_user.is_some() {
            sources.push("1 user from BERTH_AUTH_USER".to_owned());
        }
        // Grants of every source, by user; `[[auth.users]]` grants are added further down.
        let mut grants: std::collections::BTreeMap<String, Vec<Grant>> = Default::default();
        let mut add = |user: &str, grant: Grant| {
            let list = grants.entry(user.to_owned()).or_default();
            if !list.contains(&grant) {
                list.push(grant);
            }
        };
        for user in &file.users {
            for grant in parse_grants(&format!("grants of user {:?}", user.name), &user.grants)? {
                add(&user.name, grant);
            }
            config.users.push(User::plain(
                user.name.clone(),
                user.password.clone(),
                Vec::new(),
            ));
        }
        if !file.users.is_empty() {
            sources.push(format!("{} user(s) from [auth] users", file.users.len()));
        }
        for (user, texts) in &file.grants {
            for grant in parse_grants(&format!("[auth.grants] {user}"), texts)? {
                add(user, grant);
            }
        }
        let env_grants = env("BERTH_AUTH_GRANTS").unwrap_or_default();
        for (entry, what) in env_grants
            .split_whitespace()
            .map(|e| (e, "BERTH_AUTH_GRANTS"))
            .chain(self.auth_grants.iter().map(|e| (e.trim(), "--auth-grant")))
            .filter(|(e, _)| !e.is_empty())
        {
            let (user, grant) = entry
                .split_once('=')
                .ok_or_else(|| format!("{what} {entry:?} is not USER=PATTERN:ACTIONS"))?;
            add(
                user,
                Grant::parse(grant).map_err(|e| format!("{what}: {e}"))?,
            );
        }
        if let Some(path) = self.auth_htpasswd.clone().or(file.htpasswd) {
            let text = read_text("htpasswd file", &path)?;
            let before = config.users.len();
            config
                .add_htpasswd(&text, &[])
                .map_err(|e| format!("htpasswd file {}: {e}", path.display()))?;
            sources.push(format!(
                "{} user(s) from {}",
                config.users.len() - before,
                path.display()
            ));
        }
        let serverless = AuthConfig::from_serverless_registry_env(|name| env(name))
            .map_err(|e| format!("serverless-registry variables: {e}"))?;
        if !serverless.users.is_empty() {
            sources.push(format!(
                "{} user(s) from USERNAME/PASSWORD, READONLY_USERNAME/READONLY_PASSWORD",
                serverless.users.len()
            ));
        }
        if !serverless.password_jwt_keys.is_empty() {
            sources.push("JWT passwords verified with JWT_REGISTRY_TOKENS_PUBLIC_KEY".into());
        }
        // A user without any grant from any source may do everything (the reference
        // registry's rule); serverless-registry's users keep their own grants unless given some.
        for user in &mut config.users {
            user.grants = grants
                .remove(&user.name)
                .unwrap_or_else(|| everything.clone());
        }
        for mut user in serverless.users {
            if let Some(g) = grants.remove(&user.name) {
                user.grants = g;
            }
            config.users.push(user);
        }
        if let Some(user) = grants.keys().next() {
            return Err(format!("grants for {user:?}, who is not a configured user"));
        }
        config.password_jwt_keys = serverless.password_jwt_keys;
        let anonymous = if self.auth_anonymous.is_empty() {
            &file.anonymous
        } else {
            &self.auth_anonymous
        };
        config.anonymous = parse_grants("anonymous grant", anonymous)?;
        // Token auth.
        let file_token = file.token.unwrap_or_default();
        let signing_key = self
            .auth_token_signing_key
            .clone()
            .or(file_token.signing_key);
        let trusted = if self.auth_token_trusted_keys.is_empty() {
            file_token.trusted_keys
        } else {
            self.auth_token_trusted_keys.clone()
        };
        let realm = self.auth_token_realm.clone().or(file_token.realm);
        let mut realm_from_listen = false;
        if signing_key.is_some() || !trusted.is_empty() {
            let path = self
                .auth_token_path
                .clone()
                .or(file_token.path)
                .unwrap_or_else(|| "/token".into());
            let service = self
                .auth_token_service
                .clone()
                .or(file_token.service)
                .or_else(|| realm.as_deref().and_then(authority))
                .unwrap_or_default();
            if realm.is_none() {
                if signing_key.is_none() {
                    return Err(
                        "tokens from another issuer need --auth-token-realm (its URL)".into(),
                    );
                }
                realm_from_listen = true;
            }
            let issuer = self
                .auth_token_issuer
                .clone()
                .or(file_token.issuer)
                .unwrap_or_else(|| "berth".into());
            let mut token = TokenConfig::new(realm.clone().unwrap_or_default(), service, issuer);
            token.path = path;
            if let Some(ttl) = self.auth_token_ttl_secs.or(file_token.ttl_secs) {
                token.ttl_secs = ttl;
            }
            if let Some(path) = &signing_key {
                let text = read_text("token signing key", path)?;
                token.signing_key = Some(
                    SigningKey::parse(&text)
                        .map_err(|e| format!("token signing key {}: {e}", path.display()))?,
                );
                sources.push(format!("tokens signed with {}", path.display()));
            }
            for path in &trusted {
                let text = read_text("trusted token key", path)?;
                token.trusted_keys.extend(
                    VerificationKey::parse_all(&text)
                        .map_err(|e| format!("trusted token key {}: {e}", path.display()))?,
                );
                sources.push(format!("tokens verified with {}", path.display()));
            }
            config.token = Some(token);
        } else if realm.is_some() {
            return Err(
                "a token realm without keys: give --auth-token-signing-key (berth issues \
                 tokens) or --auth-token-trusted-key (another issuer does)"
                    .into(),
            );
        }
        if !config.is_configured() {
            return Ok(AuthSettings::default());
        }
        // Check everything now (with a placeholder realm if it comes from the address).
        let mut check = config.clone();
        if let Some(token) = &mut check.token
            && realm_from_listen
        {
            token.realm = format!("http://127.0.0.1{}", token.path);
            if token.service.is_empty() {
                token.service = "127.0.0.1".into();
            }
        }
        check
            .validate()
            .map_err(|e| format!("authentication: {e}"))?;
        Ok(AuthSettings {
            config: Some(config),
            realm_from_listen,
            sources,
        })
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
    s3_timeout_secs: Option<u64>,
    s3_part_timeout_secs: Option<u64>,
    s3_complete_timeout_secs: Option<u64>,
    part_size: Option<u64>,
    max_manifest_size: Option<usize>,
    upload_expiry_secs: Option<u64>,
    mount_without_from: Option<bool>,
    list_page_size: Option<usize>,
    referrers_page_size: Option<usize>,
    maintenance_interval_secs: Option<u64>,
    blob_checks_per_pass: Option<usize>,
    header_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    min_body_rate: Option<u64>,
    upload_memory: Option<u64>,
    upload_memory_wait_secs: Option<u64>,
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
    auth: Option<FileAuth>,
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
    pub min_body_rate: u64,
    pub upload_memory: u64,
    pub upload_memory_wait_secs: u64,
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
        let auth = self.resolve_auth(file.auth, |name| std::env::var(name).ok())?;
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
        layer!(blob_checks_per_pass);
        engine.validate().map_err(|e| e.to_string())?;
        let upload_memory = self.upload_memory.or(file.upload_memory);
        let largest_body = engine.part_size.max(engine.max_manifest_size as u64);
        if let Some(memory) = upload_memory
            && memory < largest_body
        {
            return Err(format!(
                "upload memory {memory} is smaller than one part or manifest ({largest_body} \
                 bytes): no upload could be received"
            ));
        }
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
                timeouts: {
                    let default = crate::storage::s3::S3Timeouts::default();
                    let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
                        flag.or(file)
                            .map_or(default, |secs| Duration::from_secs(secs.max(1)))
                    };
                    crate::storage::s3::S3Timeouts {
                        request: secs(self.s3_timeout_secs, file.s3_timeout_secs, default.request),
                        part: secs(
                            self.s3_part_timeout_secs,
                            file.s3_part_timeout_secs,
                            default.part,
                        ),
                        complete: secs(
                            self.s3_complete_timeout_secs,
                            file.s3_complete_timeout_secs,
                            default.complete,
                        ),
                    }
                },
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
            min_body_rate: self
                .min_body_rate
                .or(file.min_body_rate)
                .unwrap_or(16 * 1024),
            upload_memory: upload_memory
                .unwrap_or_else(|| (256 * 1024 * 1024).max(2 * largest_body)),
            upload_memory_wait_secs: self
                .upload_memory_wait_secs
                .or(file.upload_memory_wait_secs)
                .unwrap_or(5),
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
            auth,
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
    fn s3_timeouts_come_from_flags_then_the_file_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "s3_timeout_secs = 5\ns3_complete_timeout_secs = 1200\n",
        )
        .unwrap();
        let settings = Settings {
            config: Some(path),
            s3_complete_timeout_secs: Some(3600),
            ..Settings::default()
        };
        let timeouts = settings.resolve().unwrap().s3.timeouts;
        assert_eq!(timeouts.request, Duration::from_secs(5));
        assert_eq!(timeouts.part, Duration::from_secs(300));
        assert_eq!(timeouts.complete, Duration::from_secs(3600));
        let defaults = Settings::default().resolve().unwrap().s3.timeouts;
        assert_eq!(defaults, crate::storage::s3::S3Timeouts::default());
        assert_eq!(defaults.complete, Duration::from_secs(900));
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

    #[test]
    fn upload_memory_holds_at_least_one_part_and_defaults_to_256_mib_or_two_parts() {
        let resolved = Settings::default().resolve().unwrap();
        assert_eq!(resolved.upload_memory, 256 * 1024 * 1024);
        assert_eq!(resolved.min_body_rate, 16 * 1024);
        let large_parts = Settings {
            part_size: Some(512 * 1024 * 1024),
            ..Settings::default()
        };
        assert_eq!(
            large_parts.resolve().unwrap().upload_memory,
            1024 * 1024 * 1024
        );
        let too_small = Settings {
            upload_memory: Some(8 * 1024 * 1024),
            ..Settings::default()
        };
        let error = too_small.resolve().unwrap_err();
        assert!(error.contains("smaller than one part"), "{error}");
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn users(auth: &AuthSettings) -> Vec<(String, Vec<String>)> {
        auth.config
            .as_ref()
            .map(|c| {
                c.users
                    .iter()
                    .map(|u| {
                        (
                            u.name.clone(),
                            u.grants.iter().map(ToString::to_string).collect(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn nothing_configured_means_no_authentication() {
        let auth = Settings::default().resolve_auth(None, no_env).unwrap();
        assert!(!auth.configured());
    }

    #[test]
    fn grants_of_the_file_environment_and_flags_are_combined() {
        let file: FileSettings = toml::from_str(
            r#"
            [auth]
            anonymous = ["public/*:pull"]
            users = [{ name = "file-user", password = "pw", grants = ["a/*:pull"] }]
            [auth.grants]
            file-user = ["b/*:*", "a/*:pull"]
            "#,
        )
        .unwrap();
        let from_file = Settings::default().resolve_auth(file.auth, no_env).unwrap();
        assert!(from_file.configured());
        // A user's own grants and [auth.grants] add up (a grant given twice counts once).
        assert_eq!(
            users(&from_file),
            [(
                "file-user".to_owned(),
                vec!["a/*:pull".to_owned(), "b/*:pull,push,delete".to_owned()]
            )]
        );
        let file: FileSettings = toml::from_str(
            "[auth]\nanonymous = [\"public/*:pull\"]\n\
             users = [{ name = \"file-user\", password = \"pw\" }]\n\
             [auth.grants]\nfile-user = [\"f/*:pull\"]\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "BERTH_AUTH_USER" => Some("env-user:e:pw".to_owned()),
            "BERTH_AUTH_GRANTS" => Some("env-user=e/*:push  file-user=g:delete".to_owned()),
            _ => None,
        };
        let settings = Settings {
            auth_users: vec!["flag-user:p:w".into()],
            auth_grants: vec!["flag-user=team/*:pull".into(), "file-user=x:push".into()],
            auth_anonymous: vec!["open/*:pull".into()],
            ..Settings::default()
        };
        let auth = settings.resolve_auth(file.auth, env).unwrap();
        assert_eq!(
            users(&auth),
            [
                ("flag-user".to_owned(), vec!["team/*:pull".to_owned()]),
                ("env-user".to_owned(), vec!["e/*:push".to_owned()]),
                (
                    "file-user".to_owned(),
                    vec![
                        "f/*:pull".to_owned(),
                        "g:delete".to_owned(),
                        "x:push".to_owned()
                    ]
                ),
            ]
        );
        let config = auth.config.unwrap();
        assert_eq!(
            config.users[0].secret,
            berth_engine::auth::Secret::Plain("p:w".into())
        );
        assert_eq!(
            config.users[1].secret,
            berth_engine::auth::Secret::Plain("e:pw".into())
        );
        // The anonymous grants are one setting: the flags' replace the file's.
        assert_eq!(config.anonymous.len(), 1);
        assert_eq!(config.anonymous[0].to_string(), "open/*:pull");
    }

    /// The review's scenario: an operator adds a grant for bob in the environment; alice keeps
    /// her file grants instead of falling back to "no grant: everything".
    #[test]
    fn a_grant_from_the_environment_keeps_the_file_grants_of_other_users() {
        // alice, bob and erin, with bcrypt hashes.
        let htpasswd = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../engine/tests/data/auth/htpasswd"
        );
        let file: FileSettings = toml::from_str(&format!(
            "[auth]\nhtpasswd = {htpasswd:?}\n[auth.grants]\nalice = [\"team-a/*:pull\"]\n"
        ))
        .unwrap();
        let env = |name: &str| (name == "BERTH_AUTH_GRANTS").then(|| "bob=x:pull".to_owned());
        let auth = Settings::default().resolve_auth(file.auth, env).unwrap();
        assert_eq!(
            users(&auth),
            [
                ("alice".to_owned(), vec!["team-a/*:pull".to_owned()]),
                ("bob".to_owned(), vec!["x:pull".to_owned()]),
                ("erin".to_owned(), vec!["*:pull,push,delete".to_owned()]),
            ]
        );
        // The same with --auth-grant instead of the environment.
        let file: FileSettings = toml::from_str(&format!(
            "[auth]\nhtpasswd = {htpasswd:?}\n[auth.grants]\nalice = [\"team-a/*:pull\"]\n"
        ))
        .unwrap();
        let settings = Settings {
            auth_grants: vec!["bob=x:pull".into()],
            ..Settings::default()
        };
        let auth = settings.resolve_auth(file.auth, no_env).unwrap();
        assert_eq!(
            users(&auth)[0],
            ("alice".to_owned(), vec!["team-a/*:pull".to_owned()])
        );
    }

    #[test]
    fn users_of_the_flags_environment_and_file_are_combined_once_each() {
        let file: FileSettings =
            toml::from_str("[auth]\nusers = [{ name = \"ci\", password = \"pw\" }]\n").unwrap();
        let env = |name: &str| (name == "BERTH_AUTH_USER").then(|| "ci:other".to_owned());
        let settings = Settings {
            auth_users: vec!["admin:pw".into()],
            ..Settings::default()
        };
        let error = settings.resolve_auth(file.auth, env).unwrap_err();
        assert!(error.contains("twice"), "{error}");
        let file: FileSettings =
            toml::from_str("[auth]\nusers = [{ name = \"ci\", password = \"pw\" }]\n").unwrap();
        let env = |name: &str| (name == "BERTH_AUTH_USER").then(|| "deploy:pw".to_owned());
        let auth = settings.resolve_auth(file.auth, env).unwrap();
        let names: Vec<String> = users(&auth).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["admin", "deploy", "ci"]);
    }

    #[test]
    fn serverless_registry_variables_are_read_unchanged() {
        let env = |name: &str| match name {
            "USERNAME" => Some("rw".to_owned()),
            "PASSWORD" => Some("rw-pw".to_owned()),
            "READONLY_USERNAME" => Some("ro".to_owned()),
            "READONLY_PASSWORD" => Some("ro-pw".to_owned()),
            _ => None,
        };
        let settings = Settings {
            auth_users: vec!["extra:pw".into()],
            ..Settings::default()
        };
        let auth = settings.resolve_auth(None, env).unwrap();
        assert_eq!(
            users(&auth),
            [
                ("extra".to_owned(), vec!["*:pull,push,delete".to_owned()]),
                ("rw".to_owned(), vec!["*:pull,push,delete".to_owned()]),
                ("ro".to_owned(), vec!["*:pull".to_owned()]),
            ]
        );
        let settings = Settings {
            auth_users: vec!["rw:again".into()],
            ..Settings::default()
        };
        assert!(
            settings
                .resolve_auth(None, env)
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn the_token_realm_defaults_to_the_bound_address() {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../engine/tests/data/auth/ec-pkcs8.pem"
        );
        let settings = Settings {
            auth_users: vec!["ci:pw".into()],
            auth_token_signing_key: Some(key.into()),
            ..Settings::default()
        };
        let auth = settings.resolve_auth(None, no_env).unwrap();
        let built = auth
            .build("127.0.0.1:5123".parse().unwrap(), true)
            .unwrap()
            .unwrap();
        let token = built.config().token.clone().unwrap();
        assert_eq!(
            (
                token.realm.as_str(),
                token.service.as_str(),
                token.issuer.as_str()
            ),
            ("https://127.0.0.1:5123/token", "127.0.0.1:5123", "berth")
        );
        let settings = Settings {
            auth_token_realm: Some("https://registry.example.com/auth/token".into()),
            ..settings
        };
        let built = settings
            .resolve_auth(None, no_env)
            .unwrap()
            .build("127.0.0.1:5123".parse().unwrap(), false)
            .unwrap()
            .unwrap();
        let token = built.config().token.clone().unwrap();
        assert_eq!(token.service, "registry.example.com");
        assert_eq!(token.realm, "https://registry.example.com/auth/token");
    }
}
