//! berth on Cloudflare Workers: the Worker's entry points and its R2 storage adapter.
//!
//! The engine driver is not wired in yet: every path but the diagnostics under
//! [`selftest::PREFIX`] (enabled by the `BERTH_SELFTEST` var) answers 501. See README.md for
//! the build (no `worker-build`: `scripts/worker-build.sh`) and the JS entry module.

mod panic;
pub mod r2;
mod selftest;

use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    panic::install();
    if let Some(rest) = req.path().strip_prefix(selftest::PREFIX)
        && selftest::enabled(&env)
    {
        let rest = rest.to_owned();
        return selftest::handle(req, &rest, &env).await;
    }
    Response::error(
        "berth: the registry engine is not wired into this Worker yet",
        501,
    )
}

/// The cron trigger's entry: registry maintenance (expired uploads) will run here. For now it
/// proves that the binding is reachable from a scheduled event.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    panic::install();
    let outcome = match r2::Store::from_env(&env) {
        Ok(store) => store
            .list("", None, 1, None)
            .await
            .map(|page| page.keys.len()),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(n) => worker::console_log!(
            "berth: maintenance tick ({}), bucket reachable ({n})",
            event.cron()
        ),
        Err(e) => worker::console_error!("berth: maintenance tick ({}) failed: {e}", event.cron()),
    }
}
