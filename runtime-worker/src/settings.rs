//! The engine's settings from the Worker's vars: the same names and meanings as `berth serve`'s
//! environment variables (README.md at the repository root). An unset var keeps the engine's
//! default; a malformed one makes every request fail with a 500 that names it, rather than
//! run with a setting nobody chose.
//!
//! Authentication is configured as cloudflare/serverless-registry configures it, from the same
//! secrets ([`AuthConfig::from_serverless_registry_env`]): `USERNAME`/`PASSWORD` (pull, push,
//! delete), `READONLY_USERNAME`/`READONLY_PASSWORD` (pull), or `JWT_REGISTRY_TOKENS_PUBLIC_KEY`
//! (Basic passwords are JWTs verified with it). With none of them set, every request is
//! refused unless the var `BERTH_ALLOW_ANONYMOUS` is `true`, which lets anyone pull, push and
//! delete (for local development and tests); it is ignored when credentials are configured.

use std::sync::Arc;

use berth_engine::auth::{AuthConfig, Authenticator};
use berth_engine::{Config, Registry};
use worker::Env;

/// The var that opens a Worker without credentials to anonymous callers.
pub const ALLOW_ANONYMOUS: &str = "BERTH_ALLOW_ANONYMOUS";

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
    number(
        env,
        "BERTH_REFERRERS_PAGE_SIZE",
        &mut config.referrers_page_size,
    )?;
    config.auth = Some(Arc::new(auth(env)?));
    Ok(config)
}

/// The registry for this Worker's settings.
pub fn registry(env: &Env) -> Result<Registry, String> {
    let config = config(env)?;
    Registry::new(config).map_err(|e| format!("configuration: {e}"))
}
