//! What an operator reads: the log (plain text off a terminal, one line per request with its
//! query, credentials redacted) and a checkout that `berth serve` leaves clean.

mod common;

use std::process::Command;

use common::*;

/// Written to a pipe (as to a file, or journald), the text log has no ANSI colour codes; and
/// a test keeps its server's log to itself (printed only if the test fails).
#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let server = start_with("memory", &[]);
    let line = server.wait_for_log_line(&["authentication off"]);
    assert!(line.contains("WARN"), "{line}");
    let log = server.log();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in the log: {log:?}"
    );
}

/// The request log line carries the query (a mount's `mount` and `from`, a `digest`), with
/// the values of credential-like parameters redacted.
#[test]
fn the_request_log_line_carries_the_query_with_credentials_redacted() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", "memory"])
        .env("RUST_LOG", "info");
    let server = launch(command);
    let mount = format!("sha256:{}", "0".repeat(64));
    let (status, _, _) = http(
        server.addr,
        "POST",
        &format!(
            "/v2/logged/blobs/uploads/?mount={mount}&from=other%2Frepo&access_token=hunter2&_state=s3cr3t"
        ),
        &[],
        b"",
    );
    assert_eq!(status, 202);
    let line = server.wait_for_log_line(&["request", "/v2/logged/blobs/uploads/"]);
    assert!(
        line.contains(&format!("mount={mount}")) && line.contains("from=other%2Frepo"),
        "{line}"
    );
    assert!(
        line.contains("access_token=REDACTED") && line.contains("_state=REDACTED"),
        "{line}"
    );
    let log = server.log();
    assert!(!log.contains("hunter2") && !log.contains("s3cr3t"), "{log}");
}

/// `cargo run -p berth -- serve` in the checkout stores under ./berth-data: git ignores it.
#[test]
fn the_default_storage_directory_is_ignored_by_git() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let gitignore = std::fs::read_to_string(format!("{root}/.gitignore")).unwrap();
    assert!(
        gitignore
            .lines()
            .any(|l| ["berth-data/", "/berth-data/", "/berth-data"].contains(&l.trim())),
        ".gitignore lacks berth-data/:\n{gitignore}"
    );
}
