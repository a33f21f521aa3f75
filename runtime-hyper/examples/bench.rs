//! berth's benchmark: throughput, request rate, CPU and memory of a registry server, against
//! berth on a disk and, where Debian's `docker-registry` (the CNCF reference registry) is
//! installed, against it in the same run.
//!
//! ```sh
//! scripts/bench.sh          # installs the reference registry if missing; 1 GiB, 10 GiB
//! cargo build --release -p berth --bins --examples && target/release/examples/bench 1 10
//! scripts/bench.sh 1 2     # blob GiB, RSS-push GiB
//! ```
//!
//! Every figure is measured by this program on loopback: wall time around raw HTTP/1.1
//! requests, server CPU from `/proc/<pid>/stat` (utime + stime), peak RSS from `VmHWM` in
//! `/proc/<pid>/status` of a freshly started server. Load loops are bounded in count and time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const CONNECTIONS: usize = 64;
const MANIFEST_SECONDS: u64 = 10;

struct Target {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server at {addr} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_berth() -> Target {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let berth = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("berth");
    let port = free_port();
    let child = Command::new(&berth)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--storage",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it: cargo build --release -p berth)",
                berth.display()
            )
        });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(addr);
    Target {
        name: "berth (directory)",
        child,
        addr,
        _dir: dir,
    }
}

fn start_reference() -> Option<Target> {
    let binary = ["/usr/bin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(addr);
    Some(Target {
        name: "reference (distribution 2.8)",
        child,
        addr,
        _dir: dir,
    })
}

/// Server CPU time so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident set size, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body_len: u64,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_response(reader: &mut BufReader<TcpStream>, head_only: bool) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: u64 = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body_len = 0;
    if !head_only && len > 0 {
        // Sized to the body up to 1 MiB: a manifest response must not cost
        // the client a 1 MiB allocation, or the client, not the server, sets
        // the manifest GET rate on a 2-core machine.
        let chunk = len.min(1 << 20) as usize;
        let mut buffer = vec![0u8; chunk];
        let mut left = len;
        while left > 0 {
            let n = reader
                .read(&mut buffer[..left.min(chunk as u64) as usize])
                .unwrap();
            assert!(n > 0, "connection closed mid-body");
            left -= n as u64;
        }
        body_len = len;
    }
    Response {
        status,
        headers,
        body_len,
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    write!(
        writer,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n{headers}\r\n",
        body.len()
    )
    .unwrap();
    writer.write_all(body).unwrap();
    read_response(&mut BufReader::new(stream), method == "HEAD")
}

/// Deterministic, incompressible-looking content, generated as it is sent.
fn fill(buffer: &mut [u8], seed: &mut u64) {
    for chunk in buffer.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
}

fn digest_of_generated(size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 4 << 20];
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        fill(&mut buffer[..n], &mut seed);
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Pushes `size` generated bytes as one monolithic PUT; returns (seconds, server CPU seconds).
fn push(target: &Target, repo: &str, size: u64, digest: &str) -> (f64, f64) {
    let start = request(
        target.addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        "",
        b"",
    );
    assert_eq!(start.status, 202, "{}: upload start", target.name);
    let location = start.header("location").unwrap().to_owned();
    let path = location
        .split_once("://")
        .map_or(location.as_str(), |(_, rest)| {
            &rest[rest.find('/').unwrap_or(0)..]
        })
        .to_owned();
    let separator = if path.contains('?') { '&' } else { '?' };
    let stream = TcpStream::connect(target.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let cpu_before = cpu_seconds(target.child.id());
    let started = Instant::now();
    write!(writer, "PUT {path}{separator}digest={digest} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n").unwrap();
    let mut buffer = vec![0u8; 4 << 20];
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        fill(&mut buffer[..n], &mut seed);
        writer.write_all(&buffer[..n]).unwrap();
        left -= n as u64;
    }
    let response = read_response(&mut BufReader::new(stream), false);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        response.status, 201,
        "{}: push of {size} bytes",
        target.name
    );
    (seconds, cpu_seconds(target.child.id()) - cpu_before)
}

fn pull(target: &Target, repo: &str, size: u64, digest: &str) -> f64 {
    let started = Instant::now();
    let response = request(
        target.addr,
        "GET",
        &format!("/v2/{repo}/blobs/{digest}"),
        "",
        b"",
    );
    assert_eq!(
        (response.status, response.body_len),
        (200, size),
        "{}: pull",
        target.name
    );
    started.elapsed().as_secs_f64()
}

fn push_manifest(target: &Target, repo: &str) -> String {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(config)));
    let r = request(
        target.addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        "",
        b"",
    );
    let location = r.header("location").unwrap().to_owned();
    let path = location
        .split_once("://")
        .map_or(location.as_str(), |(_, rest)| {
            &rest[rest.find('/').unwrap_or(0)..]
        })
        .to_owned();
    let separator = if path.contains('?') { '&' } else { '?' };
    assert_eq!(
        request(
            target.addr,
            "PUT",
            &format!("{path}{separator}digest={config_digest}"),
            "",
            config
        )
        .status,
        201
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let r = request(
        target.addr,
        "PUT",
        &format!("/v2/{repo}/manifests/latest"),
        "content-type: application/vnd.oci.image.manifest.v1+json\r\n",
        manifest.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}: manifest push", target.name);
    "latest".into()
}

/// Manifest GETs by tag from 64 keep-alive connections for a bounded time: (req/s, CPU µs/req).
fn manifest_load(target: &Target, repo: &str, tag: &str) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let path = format!("/v2/{repo}/manifests/{tag}");
    let cpu_before = cpu_seconds(target.child.id());
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (stop, count, path, addr) = (stop.clone(), count.clone(), path.clone(), target.addr);
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\naccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n");
                while !stop.load(Ordering::Relaxed) {
                    writer.write_all(request.as_bytes()).unwrap();
                    let response = read_response(&mut reader, false);
                    assert_eq!(response.status, 200);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(MANIFEST_SECONDS));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = count.load(Ordering::Relaxed) as f64;
    let cpu = cpu_seconds(target.child.id()) - cpu_before;
    (requests / seconds, cpu / requests * 1e6)
}

#[derive(Default, Clone, Copy)]
struct Figures {
    push_mib_s: f64,
    pull_mib_s: f64,
    pull_again_mib_s: f64,
    push_cpu_ns_per_byte: f64,
    manifest_rps: f64,
    manifest_cpu_us: f64,
    peak_rss_mib: f64,
}

fn measure(
    start: fn() -> Option<Target>,
    blob_size: u64,
    big_size: u64,
    blob_digest: &str,
    big_digest: &str,
) -> Option<(&'static str, Figures)> {
    let target = start()?;
    let mut f = Figures::default();
    let (push_s, push_cpu) = push(&target, "bench/blob", blob_size, blob_digest);
    f.push_mib_s = blob_size as f64 / MIB as f64 / push_s;
    f.push_cpu_ns_per_byte = push_cpu / blob_size as f64 * 1e9;
    // The first pull right after the push shows where the push left the bytes: berth writes
    // full parts with direct I/O (not into the page cache), so it reads them from the disk;
    // the second pull reads what the first one cached.
    f.pull_mib_s =
        blob_size as f64 / MIB as f64 / pull(&target, "bench/blob", blob_size, blob_digest);
    f.pull_again_mib_s =
        blob_size as f64 / MIB as f64 / pull(&target, "bench/blob", blob_size, blob_digest);
    let tag = push_manifest(&target, "bench/manifest");
    (f.manifest_rps, f.manifest_cpu_us) = manifest_load(&target, "bench/manifest", &tag);
    let name = target.name;
    drop(target);
    // Peak RSS from a fresh server, so it measures the big push alone.
    let fresh = start()?;
    push(&fresh, "bench/big", big_size, big_digest);
    f.peak_rss_mib = peak_rss_mib(fresh.child.id());
    Some((name, f))
}

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let blob_size = (args.first().copied().unwrap_or(1.0) * GIB as f64) as u64;
    let big_size = (args.get(1).copied().unwrap_or(10.0) * GIB as f64) as u64;
    println!(
        "berth bench: {:.1} GiB push/pull, {CONNECTIONS} connections x {MANIFEST_SECONDS} s of manifest GETs, {:.1} GiB push for peak RSS",
        blob_size as f64 / GIB as f64,
        big_size as f64 / GIB as f64
    );
    let blob_digest = digest_of_generated(blob_size);
    let big_digest = digest_of_generated(big_size);
    let berth = measure(
        || Some(start_berth()),
        blob_size,
        big_size,
        &blob_digest,
        &big_digest,
    )
    .expect("berth runs");
    let reference = measure(
        start_reference,
        blob_size,
        big_size,
        &blob_digest,
        &big_digest,
    );
    let mut rows = vec![berth];
    rows.extend(reference);
    println!();
    println!(
        "| target | push MiB/s | pull MiB/s (first after push) | pull MiB/s (again) | push server CPU ns/byte | manifest GET req/s | server CPU µs/manifest GET | peak RSS MiB ({:.0} GiB push) |",
        big_size as f64 / GIB as f64
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, f) in &rows {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1} | {:.1} |",
            f.push_mib_s,
            f.pull_mib_s,
            f.pull_again_mib_s,
            f.push_cpu_ns_per_byte,
            f.manifest_rps,
            f.manifest_cpu_us,
            f.peak_rss_mib
        );
    }
    if let [(_, b), (_, r)] = rows.as_slice() {
        println!();
        println!(
            "berth / reference: push {:.2}x, pull {:.2}x (again {:.2}x), manifest req/s {:.2}x, push CPU per byte {:.2}x, manifest CPU per request {:.2}x, peak RSS {:.2}x",
            b.push_mib_s / r.push_mib_s,
            b.pull_mib_s / r.pull_mib_s,
            b.pull_again_mib_s / r.pull_again_mib_s,
            b.manifest_rps / r.manifest_rps,
            b.push_cpu_ns_per_byte / r.push_cpu_ns_per_byte,
            b.manifest_cpu_us / r.manifest_cpu_us,
            b.peak_rss_mib / r.peak_rss_mib
        );
    } else {
        println!(
            "\n(the reference registry is not installed: apt-get install docker-registry to compare)"
        );
    }
}
