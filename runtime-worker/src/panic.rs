//! Panics become a logged 500, not a hung request.
//!
//! On `wasm32-unknown-unknown` a panic aborts: the instance traps and the future that
//! panicked never completes, so Rust cannot answer the request. The hook installed here runs
//! before the trap: after the `worker` crate's own hook (which logs `Critical ... Rust panic:
//! <message>` and flags the instance for reset), it calls `globalThis.__berth_panic(message)`,
//! set by the JS entry module (`js/entry.mjs`). That answers every request in flight on this
//! instance with a 500 and re-instantiates the wasm before the next request.

use std::sync::Once;

use worker::js_sys::{self, Function, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};

/// Name of the JS function on `globalThis` that the hook calls.
const ENTRY_CALLBACK: &str = "__berth_panic";

/// Installs the hook once per wasm instance (a re-instantiated module starts afresh).
pub fn install() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            notify_entry(&info.to_string());
        }));
    });
}

fn notify_entry(message: &str) {
    let Ok(callback) = Reflect::get(&js_sys::global(), &JsValue::from_str(ENTRY_CALLBACK)) else {
        return;
    };
    if let Some(callback) = callback.dyn_ref::<Function>() {
        let _ = callback.call1(&JsValue::UNDEFINED, &JsValue::from_str(message));
    }
}
