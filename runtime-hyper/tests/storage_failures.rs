//! Storage that fails, slowly or at once: `berth serve` on S3 behind a fault-injecting front,
//! and on a directory with records damaged behind its back.
//!
//! - A completion of a multipart upload whose answer is lost, or comes after
//!   `--s3-complete-timeout-secs`, while the server did assemble the blob, still publishes it
//!   (the retry finds the upload id consumed, the object is recognized).
//! - A completion the server answers with `NoSuchUpload`, with no object made, is the
//!   engine's "upload unknown", not a 500 and not a success.
//! - A 500 tells the client what failed in general terms and a request id, never a key,
//!   path, endpoint, bucket, prefix, upload id or OS error; the log has those, with the id.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const PART: usize = 5 * MIB;

/// What the front does to one request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Forward it and relay the answer.
    Pass,
    /// Forward it, and relay the answer only after this long.
    Delay(Duration),
    /// Forward it, then close the connection without relaying the answer.
    Drop,
    /// Answer it with this status and S3 error code, without forwarding it.
    Answer(u16, &'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    UploadPart,
    Complete,
    Other,
}

/// Kind of an S3 request: `PUT …?partNumber=…&uploadId=…` uploads a part,
/// `POST …?uploadId=…` completes a multipart upload.
fn kind(method: &str, target: &str) -> Kind {
    match method {
        "PUT" if target.contains("partNumber=") => Kind::UploadPart,
        "POST" if target.contains("uploadId=") => Kind::Complete,
        _ => Kind::Other,
    }
}

#[derive(Default)]
struct Script {
    /// Faults for the next part uploads and completions, in order; then `Pass`.
    parts: VecDeque<Fault>,
    completions: VecDeque<Fault>,
    /// Every request line seen.
    seen: Vec<(Kind, String)>,
}

/// A fault-injecting front for an S3 server on loopback: an HTTP/1.1 proxy serving one request
/// per connection, each forwarded on a connection of its own (asked to close after the
/// answer, so the answer ends at end of stream and is relayed as it came).
struct FaultyFront {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

impl FaultyFront {
    fn start(upstream: &str) -> FaultyFront {
        let upstream: SocketAddr = upstream.strip_prefix("http://").unwrap().parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_script, accept_stop) = (script.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let script = accept_script.clone();
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, &script);
                });
            }
        });
        FaultyFront { addr, script, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }

    fn seen(&self, kind: Kind) -> Vec<String> {
        self.script()
            .seen
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, line)| line.clone())
            .collect()
    }
}

impl Drop for FaultyFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one request of `client`: reads it whole, applies the scripted fault.
fn relay(client: TcpStream, upstream: SocketAddr, script: &Mutex<Script>) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let mut words = head[0].split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut length = 0;
    for line in &head[1..] {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            length = value.trim().parse().unwrap();
        }
        assert!(
            name != "transfer-encoding",
            "the front forwards only requests with a Content-Length"
        );
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let kind = kind(method, target);
    let fault = {
        let mut script = script.lock().unwrap();
        script.seen.push((kind, format!("{method} {target}")));
        match kind {
            Kind::UploadPart => script.parts.pop_front(),
            Kind::Complete => script.completions.pop_front(),
            Kind::Other => None,
        }
        .unwrap_or(Fault::Pass)
    };
    let mut client = client;
    if let Fault::Answer(status, code) = fault {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>scripted by the test</Message></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {status} Scripted\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client.shutdown(Shutdown::Both);
    }
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut forwarded = String::new();
    for line in &head {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            forwarded.push_str(line);
        }
    }
    forwarded.push_str("connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    match fault {
        Fault::Drop => {}
        Fault::Delay(pause) => {
            std::thread::sleep(pause);
            let _ = client.write_all(&answer);
        }
        _ => client.write_all(&answer)?,
    }
    client.shutdown(Shutdown::Both)
}

/// `berth serve` with its log kept (see `common::launch`), in plain text, killed when dropped.
struct Logged {
    server: Server,
}

impl Logged {
    fn start(mut command: Command) -> Logged {
        command
            .env("RUST_LOG", "warn")
            .env("BERTH_LOG_FORMAT", "text");
        Logged {
            server: launch(command),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    fn log(&self) -> String {
        self.server.log()
    }

    fn wait_for_log_line(&self, parts: &[&str]) -> String {
        self.server.wait_for_log_line(parts)
    }
}

/// `berth serve` on `s3://BUCKET/PREFIX` through `front`, with 5 MiB parts and `args`.
fn berth_on_s3(front: &FaultyFront, bucket: &str, prefix: &str, args: &[&str]) -> Logged {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--part-size", "5242880"])
        .args(["--s3-allow-http", "--s3-region", "us-east-1"])
        .args(["--storage", &format!("s3://{bucket}/{prefix}")])
        .args(["--s3-endpoint", &front.endpoint()])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY);
    Logged::start(command)
}

/// Starts an upload in `repo`; its `Location`.
fn start_upload(addr: SocketAddr, repo: &str) -> String {
    let (status, headers, body) = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    header(&headers, "location").unwrap().to_owned()
}

/// Pushes `blob` as one closing PUT (a monolithic upload of several parts).
fn push_in_one_put(addr: SocketAddr, repo: &str, blob: &[u8]) -> HttpResponse {
    let location = start_upload(addr, repo);
    http(
        addr,
        "PUT",
        &format!("{location}?digest={}", digest(blob)),
        &[("content-type", "application/octet-stream")],
        blob,
    )
}

fn assert_pulls_back(addr: SocketAddr, repo: &str, blob: &[u8]) {
    let (status, _, body) = http(
        addr,
        "GET",
        &format!("/v2/{repo}/blobs/{}", digest(blob)),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        body == blob,
        "the blob pulled back differs from the one pushed"
    );
}

/// Three full parts and a short last one.
fn several_parts() -> Vec<u8> {
    content_seeded(3 * PART + 123_457, 0x5eed)
}

#[test]
fn a_completion_whose_answer_is_lost_still_publishes_the_blob() {
    let s3 = S3Server::start("lost");
    let front = FaultyFront::start(&s3.endpoint);
    // The server assembles the blob, but its answer never arrives: the connection closes.
    front.script().completions.push_back(Fault::Drop);
    let berth = berth_on_s3(&front, "lost", "", &[]);
    let blob = several_parts();
    let (status, _, body) = push_in_one_put(berth.addr(), "l", &blob);
    assert_eq!(
        status,
        201,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        berth.log()
    );
    // object_store retried the completion and the server no longer knew the upload id.
    assert!(
        front.seen(Kind::Complete).len() >= 2,
        "{:?}",
        front.seen(Kind::Complete)
    );
    assert_eq!(front.seen(Kind::UploadPart).len(), 4);
    assert_pulls_back(berth.addr(), "l", &blob);
}

#[test]
fn a_completion_answered_after_its_timeout_still_publishes_the_blob() {
    let s3 = S3Server::start("slow");
    let front = FaultyFront::start(&s3.endpoint);
    // The server assembles the blob, but answers after --s3-complete-timeout-secs.
    front
        .script()
        .completions
        .push_back(Fault::Delay(Duration::from_secs(4)));
    let berth = berth_on_s3(&front, "slow", "p", &["--s3-complete-timeout-secs", "1"]);
    let blob = several_parts();
    let (status, _, body) = push_in_one_put(berth.addr(), "s", &blob);
    assert_eq!(
        status,
        201,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        berth.log()
    );
    assert!(
        front.seen(Kind::Complete).len() >= 2,
        "{:?}",
        front.seen(Kind::Complete)
    );
    assert_pulls_back(berth.addr(), "s", &blob);
    // Nothing else was cut short by the completion's bound: a second push, not delayed.
    let other = content_seeded(2 * PART + 1, 0xbeef);
    assert_eq!(push_in_one_put(berth.addr(), "s", &other).0, 201);
    assert_pulls_back(berth.addr(), "s", &other);
}

#[test]
fn a_completion_of_an_upload_the_server_no_longer_knows_is_upload_unknown() {
    let s3 = S3Server::start("gone");
    let front = FaultyFront::start(&s3.endpoint);
    // As after a lifecycle rule aborted the multipart upload: no object is made.
    front
        .script()
        .completions
        .push_back(Fault::Answer(404, "NoSuchUpload"));
    let berth = berth_on_s3(&front, "gone", "", &[]);
    let blob = several_parts();
    let (status, _, body) = push_in_one_put(berth.addr(), "g", &blob);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");
    let (status, _, _) = http(
        berth.addr(),
        "GET",
        &format!("/v2/g/blobs/{}", digest(&blob)),
        &[],
        b"",
    );
    assert_eq!(status, 404);
}

/// The request id a 500 names in its message, which must be its `X-Request-Id` too.
fn request_id_of(headers: &[(String, String)], body: &str) -> String {
    let id = header(headers, "x-request-id")
        .unwrap_or_else(|| panic!("a 500 carries X-Request-Id: {headers:?}"))
        .to_owned();
    assert_eq!(id.len(), 16, "{id}");
    assert!(
        body.contains(&format!("(request id {id})")),
        "the message names the request id {id}: {body}"
    );
    id
}

fn assert_tells_nothing_internal(body: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !secret.is_empty() && !body.contains(secret),
            "the 500 shows {secret:?}: {body}"
        );
    }
}

#[test]
fn a_failed_part_upload_on_s3_tells_the_client_what_failed_and_the_log_the_rest() {
    let s3 = S3Server::start("secretbucket");
    let front = FaultyFront::start(&s3.endpoint);
    front
        .script()
        .parts
        .push_back(Fault::Answer(403, "AccessDenied"));
    let berth = berth_on_s3(&front, "secretbucket", "secretprefix", &[]);
    let blob = several_parts();
    let (status, headers, body) = push_in_one_put(berth.addr(), "leak", &blob);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("storing a blob part failed"), "{body}");
    let id = request_id_of(&headers, &body);
    let target = front.seen(Kind::UploadPart).remove(0);
    let upload_id = target
        .split("uploadId=")
        .nth(1)
        .unwrap()
        .split(['&', ' '])
        .next()
        .unwrap()
        .to_owned();
    let endpoint = front.addr.to_string();
    assert_tells_nothing_internal(
        &body,
        &[
            &endpoint,
            "127.0.0.1",
            "secretbucket",
            "secretprefix",
            "_data",
            &upload_id,
            "uploadId",
            "AccessDenied",
        ],
    );
    // The log has what the client was not told, under the same request id.
    // The log is read from a pipe by a thread: the line may come after the answer.
    let line = berth.wait_for_log_line(&[&id, "request failed"]);
    for detail in ["upload-part", "_data/", "AccessDenied"] {
        assert!(line.contains(detail), "{detail:?} not in {line}");
    }
}

/// The file of object `key` in a directory backend (see storage/directory.rs).
fn object_file(root: &Path, key: &str) -> PathBuf {
    root.join("objects").join(format!("{key}@"))
}

#[test]
fn an_unreadable_upload_state_on_a_directory_tells_the_client_what_failed_and_the_log_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("secret-root");
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(&root);
    let berth = Logged::start(command);
    let location = start_upload(berth.addr(), "dir");
    let upload = location.rsplit('/').next().unwrap().to_owned();
    // The record becomes something reading it fails on: a directory (EISDIR).
    let state = object_file(&root, &format!("_uploads/{upload}/state"));
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    let (status, headers, body) = http(berth.addr(), "GET", &location, &[], b"");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("reading an upload's state failed"), "{body}");
    let id = request_id_of(&headers, &body);
    assert_tells_nothing_internal(
        &body,
        &[
            "_uploads",
            "/state",
            "secret-root",
            &root.display().to_string(),
            "os error",
            "Is a directory",
        ],
    );
    // The log is read from a pipe by a thread: the line may come after the answer.
    let line = berth.wait_for_log_line(&[&id, "request failed"]);
    assert!(line.contains(&format!("_uploads/{upload}/state")), "{line}");
}

#[test]
fn a_blob_whose_data_vanished_from_a_directory_is_a_500_without_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("secret-root");
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(&root);
    let berth = Logged::start(command);
    let blob = b"a small blob".to_vec();
    let location = start_upload(berth.addr(), "gone");
    let (status, _, _) = http(
        berth.addr(),
        "PUT",
        &format!("{location}?digest={}", digest(&blob)),
        &[],
        &blob,
    );
    assert_eq!(status, 201);
    // The data the blob's pointer names is removed behind berth's back: the engine answers
    // 200 with the object to stream, and opening it fails in the runtime.
    let data = root.join("objects").join("_data");
    let mut removed = Vec::new();
    for upload in std::fs::read_dir(&data).unwrap() {
        for file in std::fs::read_dir(upload.unwrap().path()).unwrap() {
            let file = file.unwrap().path();
            std::fs::remove_file(&file).unwrap();
            removed.push(file);
        }
    }
    assert_eq!(removed.len(), 1, "{removed:?}");
    let writer = removed[0].file_name().unwrap().to_string_lossy();
    let writer = writer.trim_end_matches('@').to_owned();
    let (status, headers, body) = http(
        berth.addr(),
        "GET",
        &format!("/v2/gone/blobs/{}", digest(&blob)),
        &[],
        b"",
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("reading a blob's data failed"), "{body}");
    let id = request_id_of(&headers, &body);
    assert_tells_nothing_internal(&body, &["_data", &writer, "secret-root", "os error"]);
    berth.wait_for_log_line(&[&id, "_data/", "request failed"]);
}
