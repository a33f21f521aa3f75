//! berth on Cloudflare Workers: the Worker's entry points, the driver loop that runs the
//! engine against R2, and the R2 storage adapter.
//!
//! - [`driver`]: one engine transaction per request; effects executed with [`r2`].
//! - [`r2`]: every bucket operation the engine's effects need, with S3 semantics.
//! - `settings`: the engine configuration from the Worker's vars.
//! - `panic`: a panic becomes a logged 500 and a fresh wasm instance.
//!
//! See README.md for the build (no `worker-build`: `scripts/worker-build.sh`) and the JS entry
//! module. The diagnostics under [`selftest::PREFIX`] are served only on loopback, with the var
//! `BERTH_SELFTEST` `true` and no credentials configured ([`selftest::enabled`]).

pub mod driver;
mod panic;
pub mod r2;
mod selftest;
mod settings;

use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    panic::install();
    if let Some(rest) = req.path().strip_prefix(selftest::PREFIX)
        && selftest::enabled(&req, &env)
    {
        let rest = rest.to_owned();
        return selftest::handle(req, &rest, &env).await;
    }
    let registry = match settings::registry(&env) {
        Ok(registry) => registry,
        Err(e) => return Ok(driver::internal_error(&e)),
    };
    let store = match r2::Store::from_env(&env) {
        Ok(store) => store,
        Err(e) => {
            return Ok(driver::internal_error(&format!(
                "the R2 bucket binding {} is missing: {e}",
                r2::BINDING
            )));
        }
    };
    Ok(driver::serve(&registry, &store, req).await)
}

/// The cron trigger's entry: the engine's maintenance (expired uploads are removed, their
/// multipart uploads aborted). R2 itself aborts multipart uploads left incomplete for 7 days
/// (the bucket's default lifecycle rule), which covers any the engine no longer knows of.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    panic::install();
    let prepared = settings::registry(&env).and_then(|registry| {
        Ok((
            registry,
            r2::Store::from_env(&env).map_err(|e| e.to_string())?,
        ))
    });
    let (registry, store) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            worker::console_error!("berth: maintenance ({}) cannot start: {e}", event.cron());
            return;
        }
    };
    let transaction = registry.maintain(driver::now());
    let response = driver::drive(&store, transaction, &mut driver::BodySource::none()).await;
    let summary = match response.body() {
        berth_engine::Body::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    };
    if response.status().is_success() {
        worker::console_log!("berth: maintenance ({}): {summary}", event.cron());
    } else {
        worker::console_error!(
            "berth: maintenance ({}) failed with {}: {summary}",
            event.cron(),
            response.status()
        );
    }
}
