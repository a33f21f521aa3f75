//! Maintenance against live and interrupted uploads, with real processes (issue 11): whatever
//! `berth maintain` (or the server's own maintenance) does beside `berth serve`, and wherever a
//! `kill -9` stops the close of an upload, a blob that the registry announces (HEAD 200) reads
//! back byte-exact, and a blob that was lost is absent (HEAD 404) so that a re-push repairs it.
//!
//! Two kinds of test, each on a directory and on S3 (s3s-fs):
//! - races: pushes of sizes around the part size (one byte under, exact, one byte over, two
//!   parts and a bit), monolithic and chunked, several at once, while maintenance runs in a
//!   loop; then every blob answered 201 is pulled back and hashed;
//! - kills: `BERTH_TEST_KILL_AT` (see `runtime-hyper/src/storage/mod.rs`) stops the server at
//!   each step of the close (the data, the blob pointer, the repository link, the removal of the
//!   upload record), then the server restarts and maintenance passes run, first with the default
//!   upload expiry, then with every upload expired.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// The default part size of `berth serve`.
const DEFAULT_PART: usize = 16 * MIB;
/// The smallest part size, for the kill tests (same shapes, a third of the bytes).
const SMALL_PART: usize = 5 * MIB;

/// Where a test's registry stores its data.
enum Storage<'a> {
    Directory(&'a std::path::Path),
    S3 {
        server: &'a S3Server,
        bucket: &'a str,
    },
}

impl Storage<'_> {
    /// `berth <subcommand>` on this storage, with `args` after it.
    fn berth(&self, subcommand: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.arg(subcommand).args(args);
        match self {
            Storage::Directory(path) => {
                command.arg("--storage").arg(path);
            }
            Storage::S3 { server, bucket } => {
                command
                    .args(["--storage", &format!("s3://{bucket}/registry")])
                    .args(["--s3-endpoint", &server.endpoint])
                    .args(["--s3-allow-http", "--s3-region", "us-east-1"])
                    .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY);
            }
        }
        command
    }

    /// `berth serve` on a free loopback port, with `args`.
    fn serve_command(&self, args: &[&str]) -> Command {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        self.berth("serve", &all)
    }

    fn serve(&self, args: &[&str]) -> Server {
        launch(self.serve_command(args))
    }

    /// One `berth maintain` pass; its JSON summary, or why it failed.
    fn maintain(&self, args: &[&str]) -> Result<String, String> {
        let output: Output = self
            .berth("maintain", args)
            .env("RUST_LOG", "warn")
            .output()
            .map_err(|e| format!("berth maintain did not run: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or_default();
            Err(format!(
                "berth maintain failed ({}): {stdout} {last}",
                output.status
            ))
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; unlike `common::http`, a connection that breaks
/// (the server was killed, or answered before reading the whole body) is an error, not a panic.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body)?;
    Ok((status, headers, body))
}

/// Distinct blobs without generating each one: windows of one pseudo-random buffer, each at
/// its own offset, so no two share a digest. (Generating every blob byte by byte in a debug
/// build took longer than pushing it.)
struct Blobs {
    bytes: Vec<u8>,
}

impl Blobs {
    const STRIDE: usize = 4099;

    fn new(count: usize, max_len: usize) -> Blobs {
        let len = max_len + count * Self::STRIDE;
        let mut bytes = Vec::with_capacity(len + 8);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        while bytes.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        Blobs { bytes }
    }

    fn get(&self, index: usize, len: usize) -> &[u8] {
        &self.bytes[index * Self::STRIDE..][..len]
    }
}

/// How a blob is pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `POST ?digest=` with the whole blob.
    Single,
    /// `POST`, then `PUT ?digest=` with the whole blob.
    Monolithic,
    /// `POST`, `PATCH`es of a size that is no multiple of the part size (so tails are kept
    /// between requests), then an empty `PUT ?digest=`.
    Chunked,
}

/// Where a push ended: the status of its last request, which that was, and its body.
struct Pushed {
    status: u16,
    step: &'static str,
    body: String,
}

impl Pushed {
    fn describe(&self) -> String {
        format!("{} {}: {}", self.step, self.status, self.body)
    }
}

fn pushed(step: &'static str, (status, _, body): &HttpResponse) -> Pushed {
    Pushed {
        status: *status,
        step,
        body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// Pushes `blob` to `repo`; `chunk` is the PATCH size of [`Mode::Chunked`].
fn push(addr: SocketAddr, repo: &str, blob: &[u8], mode: Mode, chunk: usize) -> io::Result<Pushed> {
    let d = digest(blob);
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    if mode == Mode::Single {
        let response = request(addr, "POST", &format!("{uploads}?digest={d}"), &[], blob)?;
        return Ok(pushed("POST ?digest=", &response));
    }
    let response = request(addr, "POST", &uploads, &[], b"")?;
    if response.0 != 202 {
        return Ok(pushed("POST", &response));
    }
    let location = header(&response.1, "location")
        .ok_or_else(|| io::Error::other("202 without a Location"))?
        .to_owned();
    let closing = if mode == Mode::Monolithic {
        blob
    } else {
        for (i, piece) in blob.chunks(chunk).enumerate() {
            let first = i * chunk;
            let range = format!("{first}-{}", first + piece.len() - 1);
            let response = request(
                addr,
                "PATCH",
                &location,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-range", &range),
                ],
                piece,
            )?;
            if response.0 != 202 {
                return Ok(pushed("PATCH", &response));
            }
        }
        &[][..]
    };
    let response = request(
        addr,
        "PUT",
        &format!("{location}?digest={d}"),
        &[("content-type", "application/octet-stream")],
        closing,
    )?;
    Ok(pushed("PUT ?digest=", &response))
}

/// HEAD and GET of a blob answered 201: both 200, the same length, the exact bytes.
fn check_readable(addr: SocketAddr, repo: &str, blob: &[u8]) -> Result<(), String> {
    let d = digest(blob);
    let path = format!("/v2/{repo}/blobs/{d}");
    let (head_status, head_headers, _) =
        request(addr, "HEAD", &path, &[], b"").map_err(|e| format!("HEAD failed: {e}"))?;
    let (get_status, get_headers, body) =
        request(addr, "GET", &path, &[], b"").map_err(|e| format!("GET failed: {e}"))?;
    let head_length = header(&head_headers, "content-length").unwrap_or("none");
    let get_length = header(&get_headers, "content-length").unwrap_or("none");
    let expected_length = blob.len().to_string();
    if head_status == 200
        && get_status == 200
        && head_length == expected_length
        && get_length == expected_length
        && body.len() == blob.len()
        && digest(&body) == d
    {
        return Ok(());
    }
    let got = if body.len() == blob.len() || get_status == 200 {
        format!("{} bytes hashing to {}", body.len(), digest(&body))
    } else {
        String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
    };
    Err(format!(
        "HEAD {head_status} (content-length {head_length}), GET {get_status} \
         (content-length {get_length}): {got}"
    ))
}

/// After a crash and maintenance: a blob the registry announces reads back byte-exact, or it
/// is absent (HEAD 404, so a client pushes it again). Says which.
fn check_readable_or_absent(addr: SocketAddr, repo: &str, blob: &[u8]) -> Result<bool, String> {
    let path = format!("/v2/{repo}/blobs/{}", digest(blob));
    match request(addr, "HEAD", &path, &[], b"") {
        Ok((404, _, _)) => match request(addr, "GET", &path, &[], b"") {
            Ok((404, _, _)) => Ok(false),
            Ok((status, _, _)) => Err(format!("HEAD 404 but GET {status}")),
            Err(e) => Err(format!("HEAD 404 but GET failed: {e}")),
        },
        Ok(_) => check_readable(addr, repo, blob).map(|()| true),
        Err(e) => Err(format!("HEAD failed: {e}")),
    }
}

/// The sizes around a part size that the close handles differently: the data put whole, a
/// multipart upload of full parts only, and full parts plus a last partial one.
fn shapes(part: usize) -> [usize; 4] {
    [part - 1, part, part + 1, 2 * part + 4096]
}

/// A PATCH size that is no multiple of the part size and leaves tails behind.
fn chunk_for(part: usize) -> usize {
    part * 3 / 8 + 4099
}

/// Counts of one race run, printed and checked.
#[derive(Default)]
struct Tally {
    pushes: u64,
    created: u64,
    refused: u64,
    broken: u64,
}

/// Pushes at once in a race.
const RACE_THREADS: usize = 3;
/// Every shape in every mode, twice.
const RACE_PUSHES: usize = 2 * 4 * 3;
/// When uploads expire under the pushes, most are refused: pushing goes on (up to
/// [`RACE_MAX_PUSHES`]) until this many were answered 201, so that there is something to check.
const RACE_WANTED_CREATED: u64 = 6;
const RACE_MAX_PUSHES: usize = 3 * RACE_PUSHES;

/// The `index`th push of a race: its shape and mode, cycling through all of them.
fn race_job(index: usize) -> (usize, Mode) {
    let modes = [Mode::Single, Mode::Monolithic, Mode::Chunked];
    let shapes = shapes(DEFAULT_PART);
    (
        shapes[index / modes.len() % shapes.len()],
        modes[index % modes.len()],
    )
}

/// Pushes every shape in every mode, several at once, while `berth maintain` runs passes in a
/// loop (with `maintain_args`); then pulls back every blob answered 201. Fails listing each
/// blob that was answered 201 and does not read back byte-exact.
///
/// Failed maintenance passes are printed, not failed on: two passes at once (the server's and
/// `berth maintain`) or a pass beside a close may trip over each other's deletions and leave
/// the rest to the next pass. The kill tests, where maintenance runs alone, require every
/// pass to succeed.
fn race(label: &str, storage: &Storage, server: &Server, maintain_args: &[&str]) {
    let addr = server.addr;
    let blobs = Blobs::new(RACE_MAX_PUSHES, shapes(DEFAULT_PART)[3]);
    let next = AtomicUsize::new(0);
    let created = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let passes = AtomicU64::new(0);
    let maintenance_failures = Mutex::new(Vec::new());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Bounded: stops with the pushes, or after 20,000 passes.
            while !stop.load(Ordering::SeqCst) && passes.load(Ordering::SeqCst) < 20_000 {
                if let Err(e) = storage.maintain(maintain_args) {
                    maintenance_failures.lock().unwrap().push(e);
                }
                passes.fetch_add(1, Ordering::SeqCst);
            }
        });
        let pushers: Vec<_> = (0..RACE_THREADS)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let enough = index >= RACE_PUSHES
                            && created.load(Ordering::SeqCst) >= RACE_WANTED_CREATED;
                        if enough || index >= RACE_MAX_PUSHES || Instant::now() > deadline {
                            break;
                        }
                        let (len, mode) = race_job(index);
                        let blob = blobs.get(index, len);
                        let outcome = push(addr, "race/blobs", blob, mode, chunk_for(DEFAULT_PART));
                        if matches!(outcome, Ok(Pushed { status: 201, .. })) {
                            created.fetch_add(1, Ordering::SeqCst);
                        }
                        results.lock().unwrap().push((index, outcome));
                    }
                })
            })
            .collect();
        for pusher in pushers {
            pusher.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });
    let pushing = started.elapsed();
    // One more pass after the last close: it must not take anything that was published.
    if let Err(e) = storage.maintain(maintain_args) {
        maintenance_failures.lock().unwrap().push(e);
    }
    let mut tally = Tally::default();
    let mut lost = Vec::new();
    let mut refusals = Vec::new();
    for (index, outcome) in results.into_inner().unwrap() {
        let (len, mode) = race_job(index);
        tally.pushes += 1;
        match outcome {
            Ok(p) if p.status == 201 => {
                tally.created += 1;
                if let Err(e) = check_readable(addr, "race/blobs", blobs.get(index, len)) {
                    lost.push(format!(
                        "{len}-byte blob pushed {mode:?}, answered 201: {e}"
                    ));
                }
            }
            Ok(p) => {
                tally.refused += 1;
                refusals.push(format!("{len} {mode:?}: {}", p.describe()));
            }
            Err(_) => tally.broken += 1,
        }
    }
    let passes = passes.load(Ordering::SeqCst);
    let maintenance_failures = maintenance_failures.into_inner().unwrap();
    println!(
        "{label}: {} pushes in {pushing:.1?} beside {passes} `berth maintain` passes ({} failed): \
         {} answered 201, {} refused, {} broken; {} of the 201s lost",
        tally.pushes,
        maintenance_failures.len(),
        tally.created,
        tally.refused,
        tally.broken,
        lost.len()
    );
    for refusal in refusals.iter().take(5) {
        println!("  refused: {refusal}");
    }
    for failure in maintenance_failures.iter().take(3) {
        println!("  maintenance failed: {failure}");
    }
    assert!(
        lost.is_empty(),
        "{label}: {} of {} blobs answered 201 do not read back byte-exact:\n{}",
        lost.len(),
        tally.created,
        lost.join("\n")
    );
    assert!(
        tally.created > 0,
        "{label}: no push was answered 201, so nothing was checked"
    );
}

/// The server's own maintenance every second and `berth maintain` in a loop beside it, with
/// the default upload expiry: live uploads stay, finished ones must never lose their bytes.
#[test]
fn pushes_beside_a_maintenance_loop_stay_readable_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::Directory(dir.path());
    let server = storage.serve(&["--maintenance-interval-secs", "1"]);
    race("directory", &storage, &server, &[]);
}

/// As above, with uploads expiring after one second: pushes may be refused (their uploads
/// expired), but a blob answered 201 must stay readable.
#[test]
fn pushes_beside_maintenance_expiring_live_uploads_stay_readable_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::Directory(dir.path());
    let server = storage.serve(&[
        "--maintenance-interval-secs",
        "1",
        "--upload-expiry-secs",
        "1",
    ]);
    race(
        "directory, uploads expiring",
        &storage,
        &server,
        &["--upload-expiry-secs", "1"],
    );
}

/// The first race on S3 (s3s-fs).
#[test]
fn pushes_beside_a_maintenance_loop_stay_readable_on_s3() {
    let s3 = S3Server::start("race");
    let storage = Storage::S3 {
        server: &s3,
        bucket: "race",
    };
    let server = storage.serve(&["--maintenance-interval-secs", "1"]);
    race("s3", &storage, &server, &[]);
}

/// The race with uploads expiring, on S3 (s3s-fs).
#[test]
fn pushes_beside_maintenance_expiring_live_uploads_stay_readable_on_s3() {
    let s3 = S3Server::start("race");
    let storage = Storage::S3 {
        server: &s3,
        bucket: "race",
    };
    let server = storage.serve(&[
        "--maintenance-interval-secs",
        "1",
        "--upload-expiry-secs",
        "1",
    ]);
    race(
        "s3, uploads expiring",
        &storage,
        &server,
        &["--upload-expiry-secs", "1"],
    );
}

/// The steps of the close at which the kill tests stop the server, as `BERTH_TEST_KILL_AT`
/// values, with what has been written by then. The data is put whole below a part, else the
/// multipart upload is completed.
fn kill_points(len: usize, part: usize) -> Vec<(String, &'static str)> {
    let data = if len < part {
        "put"
    } else {
        "complete-multipart"
    };
    vec![
        (
            format!("{data} _data/ before"),
            "nothing of the blob's data",
        ),
        (
            format!("{data} _data/ after"),
            "the data, the record not yet finalizing",
        ),
        (
            "put _blobs/ before".into(),
            "the data and the finalizing record, no pointer",
        ),
        (
            "put _blobs/ after".into(),
            "the blob pointer, no repository link",
        ),
        (
            "put repositories/ after".into(),
            "the pointer and the repository link",
        ),
        (
            "delete _uploads/*/state before".into(),
            "pointer, link and catalog, the upload record not yet removed",
        ),
        (
            "delete _uploads/*/state after".into(),
            "everything, the upload record removed, no answer sent",
        ),
    ]
}

/// Waits for a server started with `BERTH_TEST_KILL_AT` to kill itself.
fn killed(server: &mut Server) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match server.child.try_wait() {
            Ok(Some(status)) if status.signal() == Some(9) => return Ok(()),
            Ok(Some(status)) => return Err(format!("the server exited with {status}")),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                return Err("the kill point was never reached: the server still runs".into());
            }
            Err(e) => return Err(format!("waiting for the server: {e}")),
        }
    }
}

/// For every shape and kill point, a push with the server set to kill itself there. Then one
/// restart and maintenance (the default expiry, then every upload expired), each blob checked
/// readable or absent after each pass; then each blob pushed again and read back.
fn kill_at_each_step_of_the_close(label: &str, storage: &Storage, mode: Mode) {
    let part = SMALL_PART.to_string();
    let part_args = ["--part-size", part.as_str()];
    let mut failures = Vec::new();
    // (what the case is, its repository, its blob, whether it already failed)
    let mut cases = Vec::new();
    let blobs = Blobs::new(shapes(SMALL_PART).len() * 8, shapes(SMALL_PART)[3]);
    for (s, len) in shapes(SMALL_PART).into_iter().enumerate() {
        for (k, (point, written)) in kill_points(len, SMALL_PART).into_iter().enumerate() {
            let repo = format!("kill/s{s}k{k}");
            let blob = blobs.get(s * 8 + k, len);
            let case = format!("{label}, {len} bytes {mode:?}, killed at `{point}` ({written})");
            let mut server = launch({
                let mut command = storage.serve_command(&part_args);
                command.env("BERTH_TEST_KILL_AT", &point);
                command
            });
            let answer = push(server.addr, &repo, blob, mode, chunk_for(SMALL_PART));
            let mut failed = false;
            if let Err(e) = killed(&mut server) {
                let answer = answer.map(|p| p.describe());
                failures.push(format!("{case}: {e} (the push: {answer:?})"));
                failed = true;
            }
            cases.push((case, repo, blob, failed));
        }
    }
    let server = storage.serve(&part_args);
    let mut announced = 0;
    for (pass, args) in [
        ("maintenance", &[][..]),
        (
            "maintenance expiring every upload",
            &["--upload-expiry-secs", "0"][..],
        ),
    ] {
        let summary = storage.maintain(args).unwrap_or_else(|e| {
            failures.push(format!("{label} {mode:?}: {pass}: {e}"));
            "failed".into()
        });
        for (case, repo, blob, failed) in &mut cases {
            if *failed {
                continue;
            }
            match check_readable_or_absent(server.addr, repo, blob) {
                Ok(true) if pass == "maintenance" => announced += 1,
                Ok(_) => {}
                Err(e) => {
                    failures.push(format!("{case}: after {pass} ({summary}): {e}"));
                    *failed = true;
                }
            }
        }
    }
    for (case, repo, blob, _) in &cases {
        match push(server.addr, repo, blob, Mode::Monolithic, 0) {
            Ok(p) if p.status == 201 => {
                if let Err(e) = check_readable(server.addr, repo, blob) {
                    failures.push(format!("{case}: pushed again (201), then {e}"));
                }
            }
            Ok(p) => failures.push(format!("{case}: pushed again: {}", p.describe())),
            Err(e) => failures.push(format!("{case}: pushing again broke: {e}")),
        }
    }
    println!(
        "{label} {mode:?}: {} kill points, {announced} blobs announced after restart and \
         maintenance, {} failures",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{label} {mode:?}: {} failures over {} kill points:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_kill_at_each_step_of_a_monolithic_close_loses_nothing_announced_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    kill_at_each_step_of_the_close(
        "directory",
        &Storage::Directory(dir.path()),
        Mode::Monolithic,
    );
}

#[test]
fn a_kill_at_each_step_of_a_chunked_close_loses_nothing_announced_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    kill_at_each_step_of_the_close("directory", &Storage::Directory(dir.path()), Mode::Chunked);
}

#[test]
fn a_kill_at_each_step_of_a_monolithic_close_loses_nothing_announced_on_s3() {
    let s3 = S3Server::start("kill");
    let storage = Storage::S3 {
        server: &s3,
        bucket: "kill",
    };
    kill_at_each_step_of_the_close("s3", &storage, Mode::Monolithic);
}

#[test]
fn a_kill_at_each_step_of_a_chunked_close_loses_nothing_announced_on_s3() {
    let s3 = S3Server::start("kill");
    let storage = Storage::S3 {
        server: &s3,
        bucket: "kill",
    };
    kill_at_each_step_of_the_close("s3", &storage, Mode::Chunked);
}
