//! What a client can hold of `berth serve`, and for how long: upload memory (a budget, 429
//! beyond it, given back when clients leave), request heads (--max-header-bytes, refused as
//! they arrive), and request bodies that stall or trickle (--body-timeout-secs,
//! --min-body-rate).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const PART: usize = 5 * MIB;

fn new_upload(server: &Server, repo: &str) -> String {
    let (status, headers, _) = http(
        server.addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(status, 202);
    header(&headers, "location").unwrap().to_owned()
}

/// A PATCH to `location` announcing `length` bytes, of which `sent` are sent now; the caller
/// sends the rest, or leaves.
fn open_patch(server: &Server, location: &str, length: usize, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {length}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(sent).unwrap();
    stream
}

fn resident_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Two uploads in flight hold the whole budget (two parts): a third waits its turn
/// (--upload-memory-wait-secs), then gets the spec's 429 with Retry-After. Reads need no
/// upload memory and go on; once an upload ends, the next one is let in.
#[test]
fn uploads_beyond_the_memory_budget_get_429_with_retry_after() {
    let server = start_with(
        "memory",
        &[
            "--part-size",
            &PART.to_string(),
            "--upload-memory",
            &(2 * PART).to_string(),
            "--upload-memory-wait-secs",
            "1",
        ],
    );
    let blob = content(4 * MIB);
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|i| {
            let location = new_upload(&server, &format!("budget/held{i}"));
            open_patch(&server, &location, blob.len(), &blob[..MIB])
        })
        .collect();
    // Let both be admitted: each has sent a MiB the server has read.
    std::thread::sleep(Duration::from_millis(500));
    let location = new_upload(&server, "budget/third");
    let started = Instant::now();
    let (status, headers, body) = http(server.addr, "PATCH", &location, &[], b"abc");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 429, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the request did not wait for memory first"
    );
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(body.contains("TOOMANYREQUESTS"), "{body}");
    // A monolithic upload and a manifest need memory too; a read needs none.
    let (status, _, _) = http(
        server.addr,
        "POST",
        &format!("/v2/budget/mono/blobs/uploads/?digest={}", digest(b"abc")),
        &[],
        b"abc",
    );
    assert_eq!(status, 429);
    assert_eq!(http(server.addr, "GET", "/v2/", &[], b"").0, 200);
    // The first holder finishes; the third upload now gets in, and was left intact.
    let mut first = holders.remove(0);
    first.write_all(&blob[MIB..]).unwrap();
    let (status, _, _) = read_response(first);
    assert_eq!(status, 202);
    let (status, headers, _) = http(server.addr, "PATCH", &location, &[], b"abc");
    assert_eq!(status, 202);
    assert_eq!(header(&headers, "range"), Some("0-2"));
    drop(holders);
}

/// A self-signed certificate for 127.0.0.1 in `dir` (openssl): (cert, key).
fn certificate(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

/// The same budget holds for the streams of one HTTP/2 connection, which --max-connections
/// cannot bound: of four uploads multiplexed on one connection (curl over TLS; curl 7.88
/// fails multiplexed streams with cleartext prior knowledge), two are received and two get
/// 429.
#[test]
fn one_http2_connection_cannot_exceed_the_upload_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = start_with(
        "memory",
        &[
            "--part-size",
            &PART.to_string(),
            "--upload-memory",
            &(2 * PART).to_string(),
            "--upload-memory-wait-secs",
            "1",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    let https = format!("https://127.0.0.1:{}", server.addr.port());
    let curl = || {
        let mut curl = Command::new("curl");
        curl.args(["--no-progress-meter", "--cacert", &cert]);
        curl
    };
    let new_upload = |repo: &str| {
        let out = curl()
            .args(["-o", "/dev/null", "-D", "-", "-X", "POST"])
            .arg(format!("{https}/v2/{repo}/blobs/uploads/"))
            .output()
            .expect("curl is installed");
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        head.lines()
            .find_map(|l| l.strip_prefix("location: ").map(str::to_owned))
            .unwrap_or_else(|| panic!("no location in {head:?}"))
    };
    let file = dir.path().join("chunk");
    std::fs::write(&file, content(2 * MIB)).unwrap();
    let mut parallel = curl();
    parallel.arg("--parallel");
    for i in 0..4 {
        if i > 0 {
            // Options after `--next` are the next transfer's: each names its own.
            parallel.args(["--next", "--cacert", &cert]);
        }
        let location = new_upload(&format!("h2/r{i}"));
        parallel
            .args(["--max-time", "60", "--limit-rate", "512K"])
            .args(["-X", "PATCH", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .args([
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version} %{num_connects}\\n",
            ])
            .arg(format!("{https}{location}"));
    }
    let output = parallel.output().expect("curl is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    let transfers: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let mut statuses: Vec<&str> = transfers.iter().map(|t| t[0]).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        ["202", "202", "429", "429"],
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(transfers.iter().all(|t| t[1] == "2"), "{text}");
    let connections: u32 = transfers.iter().map(|t| t[2].parse::<u32>().unwrap()).sum();
    assert_eq!(
        connections, 1,
        "the four uploads did not share one connection: {text}"
    );
}

/// Memory that stalled uploads held is given back to the system once their clients leave.
#[test]
fn memory_of_stalled_uploads_is_returned_when_their_clients_leave() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        dir.path().to_str().unwrap(),
        &["--part-size", &PART.to_string()],
    );
    // One upload of a part and more first: glibc then serves part-sized buffers from its
    // arenas (it maps only the first ones from the system directly), as on a server that ran
    // for a while.
    let warm_up = new_upload(&server, "rss/warm");
    let (status, _, _) = http(server.addr, "PATCH", &warm_up, &[], &content(PART + MIB));
    assert_eq!(status, 202);
    let before = resident_kib(&server);
    let almost_a_part = content(PART - 64 * 1024);
    let stalled: Vec<TcpStream> = (0..12)
        .map(|i| {
            let location = new_upload(&server, &format!("rss/r{i}"));
            open_patch(&server, &location, 4 * PART, &almost_a_part)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let held = resident_kib(&server);
    assert!(
        held > before + 12 * 4 * 1024,
        "12 uploads of almost 5 MiB each took RSS from {before} KiB only to {held} KiB"
    );
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = resident_kib(&server);
    while after > before + 12 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = resident_kib(&server);
    }
    println!("RSS: {before} KiB before, {held} KiB with 12 stalled uploads, {after} KiB after");
    assert!(
        after <= before + 12 * 1024,
        "RSS {before} KiB before 12 stalled uploads, {held} KiB with them, still {after} KiB \
         10 s after their clients left"
    );
}

/// A request head that does not end is refused (431) as soon as the server holds
/// --max-header-bytes of it, not held until the header timeout.
#[test]
fn an_endless_request_head_is_refused_once_it_reaches_the_header_limit() {
    let server = start_with(
        "memory",
        &["--max-header-bytes", "16384", "--header-timeout-secs", "30"],
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\nx-endless: ")
        .unwrap();
    // 100 KB of one header, never ended; the server may close before all of it is written.
    let _ = stream.write_all(&[b'a'; 100_000]);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "an unfinished 100 KB head got {answer:?} within 10 s"
    );
}

/// berth tells HTTP/2 from HTTP/1.1 by a connection's first bytes (to set hyper's HTTP/1 head
/// limit): both are served over cleartext, HTTP/2 with prior knowledge.
#[test]
fn cleartext_http2_with_prior_knowledge_and_http1_are_both_served() {
    let server = start_with("memory", &[]);
    for (flag, expected) in [
        ("--http2-prior-knowledge", "200 2"),
        ("--http1.1", "200 1.1"),
    ] {
        let out = Command::new("curl")
            .args(["--no-progress-meter", flag, "-o", "/dev/null"])
            .args(["-w", "%{http_code} %{http_version}"])
            .arg(format!("{}/v2/", server.url()))
            .output()
            .expect("curl is installed");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
}

/// A stalled request body is answered once --body-timeout-secs has passed without a byte:
/// after one timeout, not two.
#[test]
fn a_stalled_body_is_answered_after_one_body_timeout() {
    let server = start_with("memory", &["--body-timeout-secs", "3"]);
    let location = new_upload(&server, "stall/a");
    let stream = open_patch(&server, &location, 1000, b"0123456789");
    let started = Instant::now();
    let (status, _, body) = read_response(stream);
    let elapsed = started.elapsed();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        elapsed >= Duration::from_millis(2500) && elapsed < Duration::from_millis(4500),
        "a body stalled for --body-timeout-secs 3 was answered after {elapsed:?}"
    );
}

/// A body that keeps sending, but slower than --min-body-rate, fails after one window of
/// --body-timeout-secs instead of holding its upload memory for as long as it trickles.
#[test]
fn a_trickling_body_fails_once_a_window_brings_less_than_the_minimum_rate() {
    let server = start_with(
        "memory",
        &["--body-timeout-secs", "2", "--min-body-rate", "1000"],
    );
    let location = new_upload(&server, "trickle/a");
    let stream = open_patch(&server, &location, 1_000_000, b"x");
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let (mut stream, stop) = (stream.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            // 10 bytes every 200 ms (50 bytes/s), for 20 s at most.
            let until = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                if stream.write_all(b"0123456789").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let started = Instant::now();
    let (status, _, body) = read_response(stream);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bytes/s"), "{body}");
    assert!(
        elapsed < Duration::from_secs(8),
        "a body trickling at 50 bytes/s was answered only after {elapsed:?}"
    );
}
