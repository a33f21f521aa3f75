// The Worker's entry module: instantiates berth's wasm (through the glue wasm-bindgen
// generates for `--target module`) and exports the Worker's `fetch` and `scheduled` handlers.
// scripts/worker-build.sh bundles it with esbuild into build/worker.mjs; the .wasm stays a
// separate module that the runtime compiles at upload.
//
// Panics: on wasm32-unknown-unknown a Rust panic aborts. The instance traps in the middle of a
// future, the handler's promise never settles, and the instance's memory is no longer
// consistent. So the Rust panic hook (src/panic.rs) calls globalThis.__berth_panic before the
// trap, and a trap without a panic (abort, out of memory) is caught as an uncaught
// WebAssembly.RuntimeError 'error' event. Either answers every request in flight on this
// instance with a 500 (they all shared the broken instance), and the next request first
// re-instantiates the wasm (wasm-bindgen's --experimental-reset-state-function).

import * as wasm from "./berth.js";

// Set to true by the `worker` crate's own panic hook; we reset it after re-instantiating.
const initState = wasm.__worker_init_state();

/** Settlers of the calls running on the current instance. */
const inflight = new Set();
let poisoned = false;

/** Fails every call in flight: the instance they all run on is broken. */
function failInflight(error) {
  poisoned = true;
  const settlers = [...inflight];
  inflight.clear();
  for (const settle of settlers) settle.fail(error);
}

globalThis.__berth_panic = (message) => failInflight(new Error(`Rust panic: ${message}`));

// A trap that is no panic (std::process::abort, out of memory) runs no hook: it surfaces as an
// uncaught WebAssembly.RuntimeError from the task that was polling a future.
addEventListener("error", (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) failInflight(event.error);
});

function reinstantiateIfBroken() {
  if (poisoned || initState.criticalError) {
    console.warn("berth: re-instantiating the wasm module after a panic or trap");
    wasm.__wbg_reset_state();
    initState.criticalError = false;
    poisoned = false;
  }
}

/**
 * Runs one call into wasm. Resolves with its result, or with `onError(error)` if it throws,
 * rejects, or the instance panics while it is in flight.
 */
function guarded(call, onError) {
  reinstantiateIfBroken();
  return new Promise((resolve) => {
    let done = false;
    const settle = {
      ok(value) {
        if (done) return;
        done = true;
        inflight.delete(settle);
        resolve(value);
      },
      fail(error) {
        if (done) return;
        done = true;
        inflight.delete(settle);
        if (error instanceof WebAssembly.RuntimeError) poisoned = true;
        resolve(onError(error));
      },
    };
    inflight.add(settle);
    try {
      Promise.resolve(call()).then(settle.ok, settle.fail);
    } catch (error) {
      settle.fail(error);
    }
  });
}

function internalError(error) {
  console.error("berth: request failed:", error);
  return new Response(
    JSON.stringify({ errors: [{ code: "UNKNOWN", message: "internal error" }] }),
    { status: 500, headers: { "content-type": "application/json" } },
  );
}

export default {
  fetch(request, env, ctx) {
    return guarded(() => wasm.fetch(request, env, ctx), internalError);
  },

  async scheduled(controller, env, ctx) {
    let failure;
    await guarded(
      () => wasm.scheduled(controller, env, ctx),
      (error) => {
        failure = error;
      },
    );
    // A failed run is reported to the runtime (and shown as failed in the dashboard).
    if (failure !== undefined) throw failure;
  },
};
