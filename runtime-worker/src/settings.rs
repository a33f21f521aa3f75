//! The engine's settings from the Worker's vars: the same names and meanings as `berth serve`'s
//! environment variables (README.md at the repository root). An unset var keeps the engine's
//! default; a malformed one makes every request fail with a 500 that names it, rather than
//! run with a setting nobody chose.

use berth_engine::{Config, Registry};
use worker::Env;

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

/// The engine configuration the vars describe (everything but authentication).
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
    Ok(config)
}

/// The registry for this Worker's settings.
pub fn registry(env: &Env) -> Result<Registry, String> {
    let config = config(env)?;
    Registry::new(config).map_err(|e| format!("configuration: {e}"))
}
