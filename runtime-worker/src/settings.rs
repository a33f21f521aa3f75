//! The engine's settings from the Worker's vars: the same names and meanings as `berth serve`'s
//! environment variables (README.md at the repository root), with two Worker limits
//! ([`MAX_PART_SIZE`], [`MAX_UPLOAD_EXPIRY_SECS`]). An unset var keeps the engine's default; a
//! malformed or out-of-range one is a configuration error: every request gets a generic 500
//! and the log says which setting, rather than run with a setting nobody chose.
//!
//! Authentication is configured as cloudflare/serverless-registry configures it, from the same
//! secrets ([`AuthConfig::from_serverless_registry_env`]): `USERNAME`/`PASSWORD` (pull, push,
//! delete), `READONLY_USERNAME`/`READONLY_PASSWORD` (pull), or `JWT_REGISTRY_TOKENS_PUBLIC_KEY`
//! (Basic passwords are JWTs verified with it). Half of a user/password pair is a
//! configuration error (the engine's). With none of them set, every request is
//! refused unless the var `BERTH_ALLOW_ANONYMOUS` is `true`, which lets anyone pull, push and
//! delete (for local development and tests); it is ignored when credentials are configured.

use std::sync::Arc;

use berth_engine::auth::{AuthConfig, Authenticator};
use berth_engine::{Config, Registry};
use worker::Env;

/// The var that opens a Worker without credentials to anonymous callers.
pub const ALLOW_ANONYMOUS: &str = "BERTH_ALLOW_ANONYMOUS";

/// The secrets that configure authentication (serverless-registry's names).
pub const CREDENTIAL_SECRETS: [&str; 5] = [
    "USERNAME",
    "PASSWORD",
    "READONLY_USERNAME",
    "READONLY_PASSWORD",
    "JWT_REGISTRY_TOKENS_PUBLIC_KEY",
];

/// The largest `BERTH_PART_SIZE` the Worker accepts: 32 MiB. An isolate has 128 MB, shared by
/// every request it serves at once, and wasm memory, once grown, never shrinks. An upload in
/// flight holds its part in wasm while the engine fills it, the bytes a PATCH carries past a
/// part boundary (kept for the next request and read back), and the JS `Uint8Array` copy of
/// each part that the R2 call takes: measured under `wrangler dev` (runtime-worker/README.md,
/// Memory), one upload with 16 MiB parts and 24 MiB PATCHes grew wasm memory to 33.4 MiB, so
/// up to about 3 × part size per upload with the JS copy. At this cap that is about 96 MiB:
/// one upload per isolate, and no room for a larger part. The default, 16 MiB, leaves room
/// for two or three; larger parts only raise the largest blob (10,000 parts: 312 GiB at
/// 32 MiB), already far beyond any layer.
pub const MAX_PART_SIZE: u64 = 32 * 1024 * 1024;

/// Blob pointers the Worker's maintenance checks per cron invocation unless
/// `BERTH_BLOB_CHECKS_PER_PASS` says otherwise: 400 of the 1,000 subrequests an invocation may
/// make on Workers Paid, leaving the rest to the upload pass.
pub const DEFAULT_BLOB_CHECKS_PER_PASS: usize = 200;

/// The largest `BERTH_UPLOAD_EXPIRY_SECS` the Worker accepts: 7 days. R2's default lifecycle
/// rule aborts a multipart upload 7 days after its creation, so an unfinished upload kept
/// longer would outlive its parts. A larger value is refused (a configuration error), not
/// clamped: the Worker does not run with a setting nobody chose.
pub const MAX_UPLOAD_EXPIRY_SECS: u64 = 7 * 24 * 60 * 60;

/// Whether any credential secret is set (even half of a pair).
pub fn any_credentials(env: &Env) -> bool {
    CREDENTIAL_SECRETS
        .iter()
        .any(|name| text(env, name).is_some_and(|v| !v.trim().is_empty()))
}

/// A var's text, if it is set (a secret of that name counts too).
pub fn text(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(env: &Env, name: &str, into: &mut T) -> Result<(), String> {
    if let Some(text) = text(env, name) {
        *into = text
            .trim()
            .parse()
            .map_err(|_| format!("the var {name} = {text:?} is not a number"))?;
    }
    Ok(())
}

fn flag(env: &Env, name: &str) -> Result<Option<bool>, String> {
    match text(env, name).as_deref().map(str::trim) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(format!("the var {name} = {other:?} is not true or false")),
    }
}

/// Who may do what: serverless-registry's secrets, or anonymous access when explicitly
/// enabled, or (nothing configured) an authenticator that refuses everything.
fn auth(env: &Env) -> Result<Authenticator, String> {
    let mut auth = AuthConfig::from_serverless_registry_env(|name| text(env, name))
        .map_err(|e| format!("authentication settings: {e}"))?;
    let anonymous = flag(env, ALLOW_ANONYMOUS)?.unwrap_or(false);
    if anonymous && !auth.is_configured() {
        auth = AuthConfig::open();
    }
    Authenticator::new(auth).map_err(|e| format!("authentication settings: {e}"))
}

/// The engine configuration the vars and secrets describe.
pub fn config(env: &Env) -> Result<Config, String> {
    let mut config = Config::default();
    number(env, "BERTH_PART_SIZE", &mut config.part_size)?;
    number(
        env,
        "BERTH_MAX_MANIFEST_SIZE",
        &mut config.max_manifest_size,
    )?;
    number(
        env,
        "BERTH_UPLOAD_EXPIRY_SECS",
        &mut config.upload_expiry_secs,
    )?;
    if let Some(on) = flag(env, "BERTH_MOUNT_WITHOUT_FROM")? {
        config.mount_without_from = on;
    }
    number(env, "BERTH_LIST_PAGE_SIZE", &mut config.list_page_size)?;
    // Each check is two R2 reads, subrequests of the cron invocation that runs maintenance.
    config.blob_checks_per_pass = DEFAULT_BLOB_CHECKS_PER_PASS;
    number(
        env,
        "BERTH_BLOB_CHECKS_PER_PASS",
        &mut config.blob_checks_per_pass,
    )?;
    number(
        env,
        "BERTH_REFERRERS_PAGE_SIZE",
        &mut config.referrers_page_size,
    )?;
    if config.part_size > MAX_PART_SIZE {
        return Err(format!(
            "the var BERTH_PART_SIZE = {} is above the Worker's maximum of {MAX_PART_SIZE} \
             (32 MiB): a part is held twice in the isolate's 128 MB while it is uploaded",
            config.part_size
        ));
    }
    if config.upload_expiry_secs > MAX_UPLOAD_EXPIRY_SECS {
        return Err(format!(
            "the var BERTH_UPLOAD_EXPIRY_SECS = {} is above {MAX_UPLOAD_EXPIRY_SECS} (7 days): \
             R2 aborts an incomplete multipart upload 7 days after its creation",
            config.upload_expiry_secs
        ));
    }
    config.auth = Some(Arc::new(auth(env)?));
    Ok(config)
}

/// The registry for this Worker's settings.
pub fn registry(env: &Env) -> Result<Registry, String> {
    let config = config(env)?;
    Registry::new(config).map_err(|e| format!("configuration: {e}"))
}
