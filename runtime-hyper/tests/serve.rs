//! The real `berth` binary on an ephemeral loopback port, against each storage backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_conformance::{Config, Credentials, HttpTransport, Workflow};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// A running `berth serve`, killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(storage: &str) -> Server {
        start_with(storage, &["--part-size", "5242880"])
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn conformance(server: &Server, label: &str) {
    conformance_in(
        server,
        label,
        &format!("conformance/{label}"),
        &format!("conformance/{label}-mount"),
    );
}

fn conformance_in(server: &Server, label: &str, namespace: &str, crossmount: &str) {
    let config = Config {
        namespace: namespace.into(),
        crossmount_namespace: crossmount.into(),
        credentials: Credentials::default(),
        workflows: Workflow::ALL.to_vec(),
        run_id: label.into(),
        expected_failures: Default::default(),
    };
    let transport = HttpTransport::new(&server.url());
    let report = berth_conformance::run(&config, &transport, &server.url(), |_| {});
    let failures = report.not_passed();
    assert!(
        failures.is_empty(),
        "{}\n{}",
        report.summary(),
        failures.join("\n")
    );
    println!("berth serve --storage {label}: {}", report.summary());
}

#[test]
fn conformance_against_memory_storage() {
    let server = Server::start("memory");
    conformance(&server, "memory");
}

#[test]
fn conformance_against_directory_storage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_str().unwrap());
    conformance(&server, "directory");
}

fn content(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One HTTP/1.1 request on a fresh connection; returns status, headers (lowercased) and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(stream)
}

fn read_response(stream: TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let mut body = Vec::new();
    reader.read_to_end(&mut body).unwrap();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_chunked_transfer_encoded_patch_streams_into_parts_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_str().unwrap());
    let blob = content(12 * MIB + 333);
    let (status, headers, _) = http(server.addr, "POST", "/v2/big/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let location = header(&headers, "location").unwrap().to_owned();
    // No Content-Length: the body arrives in HTTP/1.1 chunks of odd sizes.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(stream, "PATCH {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
    for piece in blob.chunks(1_000_003) {
        write!(stream, "{:x}\r\n", piece.len()).unwrap();
        stream.write_all(piece).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let (status, headers, body) = read_response(stream);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "range"),
        Some(format!("0-{}", blob.len() - 1).as_str())
    );
    let d = digest(&blob);
    let (status, _, _) = http(
        server.addr,
        "PUT",
        &format!("{location}?digest={d}"),
        &[],
        b"",
    );
    assert_eq!(status, 201);
    let (status, headers, body) = http(server.addr, "GET", &format!("/v2/big/blobs/{d}"), &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(blob.len().to_string().as_str())
    );
    assert!(body == blob, "pulled bytes differ");
    let (status, _, body) = http(
        server.addr,
        "GET",
        &format!("/v2/big/blobs/{d}"),
        &[("range", "bytes=5242870-5242889")],
        b"",
    );
    assert_eq!(status, 206);
    assert_eq!(body, &blob[5_242_870..5_242_890]);
}

#[test]
fn a_server_killed_mid_push_restarts_with_nothing_half_written_readable_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap().to_owned();
    let mut server = Server::start(&storage);
    let blob = content(13 * MIB);
    let d = digest(&blob);
    let (_, headers, _) = http(server.addr, "POST", "/v2/crash/blobs/uploads/", &[], b"");
    let location = header(&headers, "location").unwrap().to_owned();

    // Announce the whole blob but send only 11 MiB of it, then wait until the server has
    // checkpointed two full 5 MiB parts.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        blob.len()
    )
    .unwrap();
    stream.write_all(&blob[..11 * MIB]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, headers, _) = http(server.addr, "GET", &location, &[], b"");
        if header(&headers, "range") == Some(format!("0-{}", 10 * MIB - 1).as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never checkpointed the first two parts"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    drop(stream);

    let server = Server::start(&storage);
    let (status, _, _) = http(
        server.addr,
        "GET",
        &format!("/v2/crash/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(status, 404, "nothing half-written is readable");
    let (status, headers, _) = http(server.addr, "GET", &location, &[], b"");
    assert_eq!(status, 204, "the upload survives the crash");
    assert_eq!(
        header(&headers, "range"),
        Some(format!("0-{}", 10 * MIB - 1).as_str())
    );
    let range = format!("{}-{}", 10 * MIB, blob.len() - 1);
    let (status, _, _) = http(
        server.addr,
        "PATCH",
        &location,
        &[("content-range", &range)],
        &blob[10 * MIB..],
    );
    assert_eq!(status, 202);
    let (status, _, _) = http(
        server.addr,
        "PUT",
        &format!("{location}?digest={d}"),
        &[],
        b"",
    );
    assert_eq!(status, 201);
    let (status, _, body) = http(
        server.addr,
        "GET",
        &format!("/v2/crash/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert!(body == blob, "resumed blob differs");
    // Nothing of the interrupted request is left in the temporary area.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_public_address_without_authentication_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "0.0.0.0:0", "--storage", "memory"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-unauthenticated-public"));
}

/// A real S3 server (s3s-fs) on a free loopback port, killed when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

const S3_ACCESS_KEY: &str = "berth-test-access";
const S3_SECRET_KEY: &str = "berth-test-secret-key";

impl S3Server {
    fn start(bucket: &str) -> S3Server {
        let binary = std::env::var_os("HOME")
            .map(|home| std::path::PathBuf::from(home).join(".cargo/bin/s3s-fs"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| std::path::PathBuf::from("s3s-fs"));
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3_ACCESS_KEY,
                "--secret-key",
                S3_SECRET_KEY,
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install it with scripts/s3-server.sh",
                    binary.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _root: root,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start_s3(s3: &S3Server, bucket: &str, prefix: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--part-size",
                "5242880",
                "--s3-allow-http",
                "--s3-region",
                "us-east-1",
            ])
            .args([
                "--storage",
                &format!("s3://{bucket}/{prefix}"),
                "--s3-endpoint",
                &s3.endpoint,
            ])
            .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("berth starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("berth prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("berth did not start on S3: {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }
}

#[test]
fn conformance_against_s3_storage() {
    let s3 = S3Server::start("bkt");
    let server = Server::start_s3(&s3, "bkt", "");
    // Short names: s3s-fs names a file after each whole key and fails beyond ~167 bytes (real
    // S3 and R2 allow 1024), and the suite's sha512 and referrer keys come close.
    conformance_in(&server, "s3", "c", "m");
}

#[test]
fn a_multipart_push_to_s3_round_trips() {
    let s3 = S3Server::start("berth");
    let server = Server::start_s3(&s3, "berth", "registry");
    let blob = content(11 * MIB + 5);
    let d = digest(&blob);
    let (status, headers, _) = http(server.addr, "POST", "/v2/s3/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let location = header(&headers, "location").unwrap().to_owned();
    let (status, _, body) = http(
        server.addr,
        "PATCH",
        &location,
        &[("content-range", &format!("0-{}", 7 * MIB - 1))],
        &blob[..7 * MIB],
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let range = format!("{}-{}", 7 * MIB, blob.len() - 1);
    let (status, _, body) = http(
        server.addr,
        "PUT",
        &format!("{location}?digest={d}"),
        &[("content-range", &range)],
        &blob[7 * MIB..],
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(server.addr, "GET", &format!("/v2/s3/blobs/{d}"), &[], b"");
    assert_eq!(status, 200);
    assert!(body == blob, "pulled bytes differ");
    let (status, _, body) = http(
        server.addr,
        "GET",
        &format!("/v2/s3/blobs/{d}"),
        &[("range", "bytes=5242878-5242881")],
        b"",
    );
    assert_eq!(
        (status, body.as_slice()),
        (206, &blob[5_242_878..5_242_882])
    );
}

fn start_with(storage: &str, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", storage])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("berth prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    Server { child, addr }
}

#[test]
fn prometheus_metrics_count_requests_bytes_and_storage_latency() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = start_with("memory", &["--metrics-listen", &metrics_addr]);
    let blob = content(1000);
    let (status, _, _) = http(
        server.addr,
        "POST",
        &format!("/v2/m/blobs/uploads/?digest={}", digest(&blob)),
        &[],
        &blob,
    );
    assert_eq!(status, 201);
    let (status, _, body) = http(metrics_addr.parse().unwrap(), "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(r#"berth_requests_total{route="upload-start",method="POST",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("berth_request_body_bytes_total 1000"),
        "{text}"
    );
    assert!(
        text.contains(r#"berth_storage_operation_seconds_count{operation="put"}"#),
        "{text}"
    );
    assert!(text.contains("berth_uploads_in_progress 0"), "{text}");
}

#[test]
fn tls_serves_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
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
    let server = start_with(
        "memory",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    for (flag, expected) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-s",
                "--cacert",
                cert.to_str().unwrap(),
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg(format!("https://127.0.0.1:{}/v2/", server.addr.port()))
            .output()
            .expect("curl is installed");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("200 {expected}"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
