//! Replays every committed fuzz seed (and every crash reproducer added to the corpora) through
//! the same entry points the cargo-fuzz targets call, on stable Rust, in every test run.

// A test, not the engine: reading the committed corpus from disk is the point.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn manifest_seeds() {
    replay("manifest", berth_engine::fuzzing::manifest);
}

#[test]
fn request_routing_seeds() {
    replay("request_routing", berth_engine::fuzzing::request_routing);
}

#[test]
fn ranges_seeds() {
    replay("ranges", berth_engine::fuzzing::ranges);
}

#[test]
fn upload_state_seeds() {
    replay("upload_state", berth_engine::fuzzing::upload_state);
}

#[test]
fn engine_session_seeds() {
    replay("engine_session", berth_engine::fuzzing::engine_session);
}

#[test]
fn auth_seeds() {
    replay("auth", berth_engine::fuzzing::auth);
}
