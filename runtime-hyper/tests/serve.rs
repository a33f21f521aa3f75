//! The real `berth` binary on an ephemeral loopback port, against each storage backend.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_conformance::{Config, Credentials, HttpTransport, Workflow};

use common::*;

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

#[test]
fn conformance_against_s3_storage() {
    let s3 = S3Server::start("bkt");
    let server = Server::start_s3(&s3, "bkt", "");
    // Short names: s3s-fs names a file after each whole key and fails beyond ~167 bytes (real
    // S3 and R2 allow 1024), and the suite's sha512 and referrer keys come close.
    conformance_in(&server, "s3", "c", "m");
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

/// Push and pull byte-exact with raw HTTP/1.1: a monolithic POST, a chunked upload of several
/// 5 MiB parts (PATCHes with Content-Range, one PATCH with no Content-Length at all, i.e.
/// `Transfer-Encoding: chunked`, a closing PUT with the last chunk), a sha512 upload, ranges,
/// HEAD, an out-of-order chunk, and a manifest naming the blobs.
fn push_and_pull(server: &Server, repo: &str) {
    let addr = server.addr;
    let uploads = format!("/v2/{repo}/blobs/uploads/");

    let small = content_seeded(1000, 1);
    let (status, headers, body) = http(
        addr,
        "POST",
        &format!("{uploads}?digest={}", digest(&small)),
        &[("content-type", "application/octet-stream")],
        &small,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "docker-content-digest"),
        Some(digest(&small).as_str())
    );

    let blob = content_seeded(17 * MIB + 12_345, 2);
    let d = digest(&blob);
    let cuts = [0, 6 * MIB + 7, 11 * MIB + 3, 16 * MIB, blob.len()];
    let (status, headers, _) = http(addr, "POST", &uploads, &[], b"");
    assert_eq!(status, 202);
    let location = header(&headers, "location").unwrap().to_owned();
    let range = format!("{}-{}", cuts[0], cuts[1] - 1);
    let (status, headers, body) = http(
        addr,
        "PATCH",
        &location,
        &[
            ("content-range", &range),
            ("content-type", "application/octet-stream"),
        ],
        &blob[cuts[0]..cuts[1]],
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "range"),
        Some(format!("0-{}", cuts[1] - 1).as_str())
    );
    let location = header(&headers, "location").unwrap().to_owned();
    // No Content-Length: the body arrives in HTTP/1.1 chunks of an odd size.
    let (status, headers, body) = http_chunked(
        addr,
        "PATCH",
        &location,
        &[("content-type", "application/octet-stream")],
        &blob[cuts[1]..cuts[2]],
        1_000_003,
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "range"),
        Some(format!("0-{}", cuts[2] - 1).as_str())
    );
    let location = header(&headers, "location").unwrap().to_owned();
    let (status, headers, _) = http(addr, "GET", &location, &[], b"");
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "range"),
        Some(format!("0-{}", cuts[2] - 1).as_str())
    );
    // A chunk that does not start where the upload stands is refused.
    let (status, _, _) = http(
        addr,
        "PATCH",
        &location,
        &[("content-range", "5-9")],
        b"12345",
    );
    assert_eq!(status, 416);
    let range = format!("{}-{}", cuts[2], cuts[3] - 1);
    let (status, headers, body) = http(
        addr,
        "PATCH",
        &location,
        &[("content-range", &range)],
        &blob[cuts[2]..cuts[3]],
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let location = header(&headers, "location").unwrap().to_owned();
    let separator = if location.contains('?') { '&' } else { '?' };
    let range = format!("{}-{}", cuts[3], cuts[4] - 1);
    let (status, headers, body) = http(
        addr,
        "PUT",
        &format!("{location}{separator}digest={d}"),
        &[("content-range", &range)],
        &blob[cuts[3]..],
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "docker-content-digest"), Some(d.as_str()));

    let blob_path = format!("/v2/{repo}/blobs/{d}");
    let (status, headers, body) = http(addr, "GET", &blob_path, &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(blob.len().to_string().as_str())
    );
    assert!(body == blob, "pulled bytes differ from pushed bytes");
    let (status, headers, body) = http(addr, "HEAD", &blob_path, &[], b"");
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(
        header(&headers, "content-length"),
        Some(blob.len().to_string().as_str())
    );
    for (first, last) in [
        (0, 0),
        (5 * MIB - 3, 5 * MIB + 2),
        (10 * MIB, 16 * MIB),
        (blob.len() - 10, blob.len() - 1),
    ] {
        let (status, headers, body) = http(
            addr,
            "GET",
            &blob_path,
            &[("range", &format!("bytes={first}-{last}"))],
            b"",
        );
        assert_eq!(status, 206, "range {first}-{last}");
        assert_eq!(
            header(&headers, "content-range"),
            Some(format!("bytes {first}-{last}/{}", blob.len()).as_str())
        );
        assert!(body == blob[first..=last], "range {first}-{last} differs");
    }
    let (status, _, _) = http(
        addr,
        "GET",
        &blob_path,
        &[("range", &format!("bytes={}-", blob.len() + 5))],
        b"",
    );
    assert_eq!(status, 416);
    let (small_status, _, small_body) = http(
        addr,
        "GET",
        &format!("/v2/{repo}/blobs/{}", digest(&small)),
        &[],
        b"",
    );
    assert_eq!((small_status, small_body), (200, small.clone()));

    // sha512, chunked across a part boundary.
    let long = content_seeded(7 * MIB + 99, 3);
    let d512 = digest512(&long);
    let (status, headers, _) = http(
        addr,
        "POST",
        &format!("{uploads}?digest-algorithm=sha512"),
        &[],
        b"",
    );
    assert_eq!(status, 202);
    let location = header(&headers, "location").unwrap().to_owned();
    let (status, headers, body) = http_chunked(addr, "PATCH", &location, &[], &long, 65_536);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let location = header(&headers, "location").unwrap().to_owned();
    let separator = if location.contains('?') { '&' } else { '?' };
    let (status, _, body) = http(
        addr,
        "PUT",
        &format!("{location}{separator}digest={d512}"),
        &[],
        b"",
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(addr, "GET", &format!("/v2/{repo}/blobs/{d512}"), &[], b"");
    assert_eq!(status, 200);
    assert!(body == long, "sha512 blob differs");

    // A manifest naming the blobs, by tag and by digest.
    let config = b"{}";
    let (status, _, _) = http(
        addr,
        "POST",
        &format!("{uploads}?digest={}", digest(config)),
        &[],
        config,
    );
    assert_eq!(status, 201);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1000}}]}}"#,
        digest(config),
        blob.len(),
        digest(&small)
    );
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let (status, _, body) = http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/v1"),
        &[("content-type", media_type)],
        manifest.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    for reference in ["v1".to_owned(), digest(manifest.as_bytes())] {
        let (status, headers, body) = http(
            addr,
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("accept", media_type)],
            b"",
        );
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some(media_type));
        assert_eq!(body, manifest.as_bytes());
    }
}

#[test]
fn raw_http_push_and_pull_on_memory_storage() {
    let server = Server::start("memory");
    push_and_pull(&server, "raw/memory");
}

#[test]
fn raw_http_push_and_pull_on_directory_storage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_str().unwrap());
    push_and_pull(&server, "raw/directory");
    // Completed multipart uploads leave nothing behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("multipart"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn raw_http_push_and_pull_on_s3_storage() {
    let s3 = S3Server::start("berth");
    // Short names: s3s-fs keeps a file named after each whole key and fails beyond about 160
    // bytes (S3 and R2 allow 1024); a sha512 blob link comes close.
    let server = Server::start_s3(&s3, "berth", "p");
    push_and_pull(&server, "s");
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    // 1 byte parts are refused: whichever layer says so decides whether berth starts.
    std::fs::write(&file, "part_size = 1\n").unwrap();
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .args(["maintain", "--storage", "memory", "--config"])
            .arg(&file);
        if let Some(size) = env {
            command.env("BERTH_PART_SIZE", size);
        }
        if let Some(size) = flag {
            command.args(["--part-size", size]);
        }
        command.output().unwrap()
    };
    let from_file = run(None, None);
    assert!(!from_file.status.success());
    assert!(String::from_utf8_lossy(&from_file.stderr).contains("part size 1 "));
    assert!(
        run(Some("5242880"), None).status.success(),
        "the environment overrides the file"
    );
    let from_env = run(Some("2"), None);
    assert!(String::from_utf8_lossy(&from_env.stderr).contains("part size 2 "));
    assert!(
        run(Some("2"), Some("6291456")).status.success(),
        "a flag overrides the environment"
    );
}

#[test]
fn a_public_address_is_allowed_once_authentication_is_configured() {
    // Bound on every interface for the moment it takes to print its address (authentication
    // on, with a random port); nothing connects to it.
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--listen", "0.0.0.0:0", "--storage", "memory"])
        .args(["--auth-user", "ci:a-long-random-password"]);
    let mut server = launch(command);
    assert!(server.addr.ip().is_unspecified());
    server.kill();
}

#[test]
fn serve_help_documents_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--listen",
        "--storage",
        "--config",
        "--part-size",
        "--max-manifest-size",
        "--upload-expiry-secs",
        "--list-page-size",
        "--referrers-page-size",
        "--s3-endpoint",
        "--s3-region",
        "--s3-allow-http",
        "--s3-virtual-hosted-style",
        "--tls-cert",
        "--tls-key",
        "--log-format",
        "--metrics-listen",
        "--metrics-path",
        "--maintenance-interval-secs",
        "--header-timeout-secs",
        "--idle-timeout-secs",
        "--body-timeout-secs",
        "--min-body-rate",
        "--upload-memory",
        "--upload-memory-wait-secs",
        "--send-timeout-secs",
        "--max-connections",
        "--shutdown-grace-secs",
        "--allow-unauthenticated-public",
        "--auth-user",
        "--auth-htpasswd",
        "--auth-grant",
        "--auth-anonymous",
        "--auth-realm",
        "--auth-leeway-secs",
        "--auth-token-signing-key",
        "--auth-token-trusted-key",
        "--auth-token-realm",
        "--auth-token-service",
        "--auth-token-issuer",
        "--auth-token-path",
        "--auth-token-ttl-secs",
        "BERTH_AUTH_USER",
        "JWT_REGISTRY_TOKENS_PUBLIC_KEY",
        "READONLY_USERNAME",
        "BERTH_STORAGE",
        "./berth-data",
    ] {
        assert!(
            help.contains(option),
            "`berth serve --help` lacks {option}:\n{help}"
        );
    }
}

#[test]
fn berth_maintain_runs_one_pass_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["maintain", "--storage"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(summary.is_object(), "{summary}");
}

/// A connection that sends nothing, and one that sends half a request head, are closed.
#[test]
fn idle_and_slow_connections_are_closed() {
    let server = start_with(
        "memory",
        &["--idle-timeout-secs", "1", "--header-timeout-secs", "1"],
    );
    for opening in [
        &b""[..],
        b"GET /v2/ HTTP/1.1\r\nhost: x\r\n",
        b"PRI * HTTP/2.0\r\n",
    ] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(opening).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "a connection opened with {:?} was held for {:?}",
            String::from_utf8_lossy(opening),
            started.elapsed()
        );
    }
    // A kept-alive connection between requests is closed too.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// SIGTERM stops accepting but lets a request in flight finish.
#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let mut server = Server::start("memory");
    let blob = content(3 * MIB);
    let (_, headers, _) = http(server.addr, "POST", "/v2/term/blobs/uploads/", &[], b"");
    let location = header(&headers, "location").unwrap().to_owned();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        blob.len()
    )
    .unwrap();
    stream.write_all(&blob[..MIB]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    // No new connections are served.
    assert!(
        TcpStream::connect(server.addr).is_err() || http_refused(server.addr),
        "a new connection was served after SIGTERM"
    );
    stream.write_all(&blob[MIB..]).unwrap();
    let (status, headers, _) = read_response(stream);
    assert_eq!(status, 202);
    assert_eq!(
        header(&headers, "range"),
        Some(format!("0-{}", blob.len() - 1).as_str())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "berth exited with {exit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "berth did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a request on a new connection gets no answer.
fn http_refused(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return true;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stream.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.is_empty()
}

/// kill -9 at several moments of a streaming PATCH (mid-part, mid-checkpoint, whatever the
/// moment happens to be): after each restart on the same directory nothing unverified is
/// readable, the upload stands at a part boundary, and it completes from there byte-exact.
#[test]
fn kill_9_at_any_moment_of_a_push_leaves_a_resumable_upload() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap().to_owned();
    let blob = content_seeded(12 * MIB + 4321, 9);
    let d = digest(&blob);
    for (round, kill_after_ms) in [40u64, 170, 290, 410, 520].into_iter().enumerate() {
        let repo = format!("kill{round}");
        let mut server = Server::start(&storage);
        let (_, headers, _) = http(
            server.addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        );
        let location = header(&headers, "location").unwrap().to_owned();
        let addr = server.addr;
        let (pusher_location, pusher_blob) = (location.clone(), blob.clone());
        let pusher = std::thread::spawn(move || {
            let Ok(mut stream) = TcpStream::connect(addr) else {
                return;
            };
            let head = format!(
                "PATCH {pusher_location} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                pusher_blob.len()
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for piece in pusher_blob.chunks(256 * 1024) {
                if stream.write_all(piece).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        server.kill();
        pusher.join().unwrap();

        let server = Server::start(&storage);
        let blob_path = format!("/v2/{repo}/blobs/{d}");
        let (status, _, _) = http(server.addr, "GET", &blob_path, &[], b"");
        assert_eq!(status, 404, "round {round}: an unfinished blob is readable");
        let (status, headers, _) = http(server.addr, "GET", &location, &[], b"");
        assert_eq!(status, 204, "round {round}: the upload did not survive");
        let last: usize = header(&headers, "range")
            .and_then(|r| r.strip_prefix("0-"))
            .and_then(|r| r.parse().ok())
            .expect("a Range header");
        let offset = if last == 0 { 0 } else { last + 1 };
        // At a part boundary, or at the end if the whole PATCH got in before the kill.
        assert!(
            offset % (5 * MIB) == 0 || offset == blob.len(),
            "round {round}: offset {offset} is neither a part boundary nor the end"
        );
        println!("round {round}: killed after {kill_after_ms} ms, resumed at {offset}");
        let mut location = location;
        if offset < blob.len() {
            let range = format!("{offset}-{}", blob.len() - 1);
            let (status, headers, body) = http(
                server.addr,
                "PATCH",
                &location,
                &[("content-range", &range)],
                &blob[offset..],
            );
            assert_eq!(
                status,
                202,
                "round {round}: {}",
                String::from_utf8_lossy(&body)
            );
            location = header(&headers, "location").unwrap().to_owned();
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let (status, _, body) = http(
            server.addr,
            "PUT",
            &format!("{location}{separator}digest={d}"),
            &[],
            b"",
        );
        assert_eq!(
            status,
            201,
            "round {round}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, _, body) = http(server.addr, "GET", &blob_path, &[], b"");
        assert_eq!(status, 200);
        assert!(body == blob, "round {round}: resumed blob differs");
    }
    // A kill between creating a multipart upload and recording it in the upload's state
    // leaves an upload no record names. Maintenance (here with uploads expiring at once)
    // aborts such uploads once they are twice the expiry old, and keeps the blobs.
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "maintain",
            "--upload-expiry-secs",
            "0",
            "--storage",
            &storage,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("multipart"))
            .unwrap()
            .count(),
        0
    );
    let server = Server::start(&storage);
    let (status, _, body) = http(
        server.addr,
        "GET",
        &format!("/v2/kill0/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert!(body == blob);
}

/// The server's peak memory (VmHWM) after a 16 MiB push and pull, and after a 256 MiB one:
/// bodies stream through one part at a time, so the second adds next to nothing.
#[test]
fn peak_memory_stays_flat_from_a_small_push_to_a_large_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_str().unwrap());
    let peak_kib = || -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    };
    streamed_round_trip(server.addr, "rss/small", 16 * MIB, 1);
    let small = peak_kib();
    streamed_round_trip(server.addr, "rss/large", 256 * MIB, 2);
    let large = peak_kib();
    println!("peak RSS: {small} KiB after 16 MiB, {large} KiB after 256 MiB");
    assert!(
        large < small + 24 * 1024,
        "peak RSS grew from {small} KiB to {large} KiB with the push size"
    );
}

/// Pushes `size` generated bytes in one streaming PATCH and pulls them back, hashing both ways
/// without holding the blob.
fn streamed_round_trip(addr: std::net::SocketAddr, repo: &str, size: usize, seed: u64) {
    use sha2::{Digest, Sha256};
    let piece = |i: usize| content_seeded(MIB, seed * 1_000_003 + i as u64);
    let mut hasher = Sha256::new();
    let (_, headers, _) = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    let location = header(&headers, "location").unwrap().to_owned();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {size}\r\n\r\n"
    )
    .unwrap();
    for i in 0..size / MIB {
        let bytes = piece(i);
        hasher.update(&bytes);
        stream.write_all(&bytes).unwrap();
    }
    let (status, headers, body) = read_response(stream);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let location = header(&headers, "location").unwrap().to_owned();
    let d = format!("sha256:{}", hex::encode(hasher.finalize()));
    let separator = if location.contains('?') { '&' } else { '?' };
    let (status, _, _) = http(
        addr,
        "PUT",
        &format!("{location}{separator}digest={d}"),
        &[],
        b"",
    );
    assert_eq!(status, 201);
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /v2/{repo}/blobs/{d} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut pulled = Sha256::new();
    let mut buffer = vec![0u8; MIB];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        pulled.update(&buffer[..n]);
    }
    assert_eq!(total, size);
    assert_eq!(format!("sha256:{}", hex::encode(pulled.finalize())), d);
}

/// A request head larger than --max-header-bytes is refused with 431 (by hyper as it
/// arrives; a head of 2 MiB may see the connection closed before the answer is read).
#[test]
fn oversized_request_heads_are_refused() {
    let server = start_with("memory", &["--max-header-bytes", "16384"]);
    let send_head = |header_len: usize| {
        let big = "x".repeat(header_len);
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = write!(
            stream,
            "GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {big}\r\n\r\n"
        );
        read_response(stream).0
    };
    assert_eq!(send_head(16_400), 431);
    assert_eq!(send_head(40_000), 431);
    let status = send_head(2 << 20);
    assert!(status == 431 || status == 0, "status {status}");
    // Just under the limit: served.
    assert_eq!(send_head(16_000), 200);
    let (status, _, _) = http(server.addr, "GET", "/v2/", &[("x-small", "y")], b"");
    assert_eq!(status, 200);
}

/// Two `berth` processes on one directory, two PATCHes racing on one upload from the same
/// offset, each through its own process: exactly one wins, the other is refused, and the upload
/// completes with the winner's bytes, none lost or mixed.
#[test]
fn two_processes_racing_on_one_upload_one_wins_nothing_is_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    for round in 0..3 {
        let servers = [Server::start(storage), Server::start(storage)];
        let repo = format!("race{round}");
        let (_, headers, _) = http(
            servers[0].addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        );
        let location = header(&headers, "location").unwrap().to_owned();
        let bodies = [
            content_seeded(7 * MIB + 11, 100 + round),
            content_seeded(7 * MIB + 11, 200 + round),
        ];
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let (addr, location, body) = (servers[i].addr, location.clone(), bodies[i].clone());
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(60)))
                        .unwrap();
                    write!(
                        stream,
                        "PATCH {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                         content-range: 0-{}\r\ncontent-length: {}\r\n\r\n",
                        body.len() - 1,
                        body.len()
                    )
                    .unwrap();
                    barrier.wait();
                    for piece in body.chunks(512 * 1024) {
                        if stream.write_all(piece).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    read_response(stream)
                })
            })
            .collect();
        let answers: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<usize> = (0..2).filter(|&i| answers[i].0 == 202).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: statuses {} and {}",
            answers[0].0,
            answers[1].0
        );
        let loser = 1 - winners[0];
        println!(
            "round {round}: winner {} (202), loser {} ({}: {})",
            winners[0],
            loser,
            answers[loser].0,
            String::from_utf8_lossy(&answers[loser].2)
        );
        assert!(
            (400..500).contains(&answers[loser].0),
            "round {round}: the loser got {}: {}",
            answers[loser].0,
            String::from_utf8_lossy(&answers[loser].2)
        );
        let winner = &bodies[winners[0]];
        let d = digest(winner);
        let location = header(&answers[winners[0]].1, "location")
            .unwrap()
            .to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let (status, _, body) = http(
            servers[loser].addr,
            "PUT",
            &format!("{location}{separator}digest={d}"),
            &[],
            b"",
        );
        assert_eq!(
            status,
            201,
            "round {round}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, _, body) = http(
            servers[loser].addr,
            "GET",
            &format!("/v2/{repo}/blobs/{d}"),
            &[],
            b"",
        );
        assert_eq!(status, 200);
        assert!(
            body == *winner,
            "round {round}: the blob is not the winner's bytes"
        );
    }
}

/// A request that never finishes does not hold the shutdown beyond the grace period.
#[test]
fn shutdown_is_bounded_by_the_grace_period() {
    let mut server = start_with("memory", &["--shutdown-grace-secs", "1"]);
    let (_, headers, _) = http(server.addr, "POST", "/v2/hang/blobs/uploads/", &[], b"");
    let location = header(&headers, "location").unwrap().to_owned();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n"
    )
    .unwrap();
    stream.write_all(&[7u8; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    loop {
        if server.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "berth still runs {:?} after SIGTERM with a 1 s grace period",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("exited {:?} after SIGTERM", started.elapsed());
    drop(stream);
}
