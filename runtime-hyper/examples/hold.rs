//! What clients that hold resources cost `berth serve` in memory: the server's resident set
//! (VmRSS) before, while N clients hold their requests open, and after they leave.
//!
//! ```sh
//! cargo build --release -p berth --bins --examples
//! target/release/examples/hold uploads 48      # N PATCHes that stall just short of a part
//! target/release/examples/hold headers 400     # N connections sending one endless header
//! target/release/examples/hold h2 32           # N uploads as streams of one HTTP/2 connection
//!                                              # (curl, over TLS: curl 7.88 fails multiplexed
//!                                              # streams with prior knowledge)
//! BERTH=/path/to/other/berth target/release/examples/hold uploads 48   # another build
//! BERTH_ARGS="--upload-memory 134217728" target/release/examples/hold uploads 48
//! ```
//!
//! The server runs on loopback with its default settings (plus `BERTH_ARGS`, split on
//! spaces) and a fresh directory. Every client is a thread with a socket; each stops at the
//! first write that fails or blocks for 10 s, and every phase is bounded in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
/// berth's default part size: a stalled PATCH sends just short of it.
const PART: usize = 16 * MIB;

struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(tls: &[String]) -> Server {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("a temporary directory");
    let berth = std::env::var_os("BERTH").map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("berth")
        },
        std::path::PathBuf::from,
    );
    let extra = std::env::var("BERTH_ARGS").unwrap_or_default();
    let mut child = Command::new(&berth)
        .args(["serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(dir.path())
        .args(extra.split_whitespace())
        .args(tls)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", berth.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("berth did not start: {line:?}"))
        .parse()
        .unwrap();
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// A field of `/proc/<pid>/status` in kB (VmRSS, VmHWM), in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS")
}

/// A self-signed certificate for 127.0.0.1 (openssl) in `dir`: `--tls-cert`, `--tls-key`.
fn certificate(dir: &std::path::Path) -> Vec<String> {
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
        .expect("openssl");
    assert!(made.status.success());
    vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]
}

/// `curl`, trusting the server's certificate (`tls[1]`).
fn curl_https(tls: &[String]) -> Command {
    let mut curl = Command::new("curl");
    curl.args(["--no-progress-meter", "--cacert", &tls[1]]);
    curl
}

/// An upload started over HTTPS; its location.
fn start_upload_tls(server: &Server, tls: &[String], repo: &str) -> String {
    let out = curl_https(tls)
        .args(["-o", "/dev/null", "-D", "-", "-X", "POST"])
        .arg(format!("https://{}/v2/{repo}/blobs/uploads/", server.addr))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout);
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no location in {head:?}"))
}

/// `clients` uploads of almost a part each, as the streams of one HTTP/2 connection (curl
/// over TLS, each stream limited to 1 MiB/s so that all are in flight together), after one
/// warm-up upload of a part and more.
fn h2(server: &Server, tls: &[String], clients: usize) {
    let pid = server.child.id();
    let dir = tempfile::tempdir().unwrap();
    let warm = dir.path().join("warm");
    std::fs::write(&warm, vec![b'w'; PART + MIB]).unwrap();
    let location = start_upload_tls(server, tls, "hold/warm-up");
    let status = curl_https(tls)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PATCH",
            "--data-binary",
        ])
        .arg(format!("@{}", warm.display()))
        .arg(format!("https://{}{location}", server.addr))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "202");
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_mib(pid);
    let file = dir.path().join("chunk");
    std::fs::write(&file, vec![b'2'; PART - 64 * 1024]).unwrap();
    let mut curl = curl_https(tls);
    curl.args(["--parallel", "--parallel-max"])
        .arg(clients.to_string());
    for i in 0..clients {
        if i > 0 {
            curl.arg("--next").args(["--cacert", &tls[1]]);
        }
        let location = start_upload_tls(server, tls, &format!("hold/h{i}"));
        curl.args(["--max-time", "60", "--limit-rate", "1M"])
            .args(["-X", "PATCH", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n"])
            .arg(format!("https://{}{location}", server.addr));
    }
    let started = Instant::now();
    let mut child = curl.stdout(Stdio::piped()).spawn().expect("curl");
    let mut peak: f64 = 0.0;
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(90) {
        peak = peak.max(rss_mib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    let mut statuses: Vec<&str> = out.lines().filter_map(|l| l.split(' ').next()).collect();
    statuses.sort_unstable();
    statuses.dedup_by(|a, b| a == b);
    let connections: u32 = out
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<u32>().ok())
        .sum();
    std::thread::sleep(Duration::from_secs(5));
    let after = rss_mib(pid);
    println!(
        "h2 x{clients} on {connections} connection(s), statuses {statuses:?}: server RSS \
         {idle:.1} MiB idle, at most {peak:.1} MiB while they ran ({:.1} s), {after:.1} MiB 5 s \
         after",
        started.elapsed().as_secs_f64()
    );
}

/// Starts an upload session and returns its location.
fn start_upload(addr: SocketAddr, repo: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no upload location in {answer:?}"))
}

/// A PATCH of a part and a MiB, answered.
fn warm_up(addr: SocketAddr) {
    let location = start_upload(addr, "hold/warm-up");
    let mut stream = TcpStream::connect(addr).unwrap();
    let body = vec![b'w'; PART + MIB];
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "warm-up: {answer}");
}

/// One client: `head`, then `body_len` bytes of `fill`, then it waits for `leave` (or gives
/// up after 120 s) and closes. Reports on `sent` once it has sent all it could.
fn client(
    addr: SocketAddr,
    head: String,
    body_len: usize,
    fill: u8,
    sent: mpsc::Sender<usize>,
    leave: mpsc::Receiver<()>,
) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        let _ = sent.send(0);
        return;
    };
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut total = 0;
    if stream.write_all(head.as_bytes()).is_ok() {
        let chunk = vec![fill; 64 * 1024];
        while total < body_len {
            let n = chunk.len().min(body_len - total);
            if stream.write_all(&chunk[..n]).is_err() {
                break;
            }
            total += n;
        }
    }
    let _ = sent.send(total);
    let _ = leave.recv_timeout(Duration::from_secs(120));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "uploads".into());
    let clients: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(48);
    assert!(clients <= 2000, "at most 2000 clients");
    let certificates = tempfile::tempdir().unwrap();
    if scenario == "h2" {
        let tls = certificate(certificates.path());
        let server = start(&tls);
        return h2(&server, &tls, clients);
    }
    let server = start(&[]);
    let pid = server.child.id();
    // One push of a part and more first, as on a server that has served one: glibc maps its
    // first part-sized buffers from the system directly and returns them when freed; once one
    // was freed it serves them from its arenas, and keeps them.
    warm_up(server.addr);
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_mib(pid);
    let (sent_tx, sent_rx) = mpsc::channel();
    let mut leaves = Vec::new();
    let mut threads = Vec::new();
    for i in 0..clients {
        let (head, body_len, fill) = match scenario.as_str() {
            "uploads" => {
                let location = start_upload(server.addr, &format!("hold/r{i}"));
                (
                    format!(
                        "PATCH {location} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                        4 * PART
                    ),
                    PART - 64 * 1024,
                    b'u',
                )
            }
            // Just short of hyper's 1 MiB read buffer, which refused a larger head before.
            "headers" => (
                "GET /v2/ HTTP/1.1\r\nhost: x\r\nx-endless: ".to_owned(),
                MIB - 32 * 1024,
                b'h',
            ),
            other => panic!("unknown scenario {other:?}: uploads or headers"),
        };
        let (leave_tx, leave_rx) = mpsc::channel();
        leaves.push(leave_tx);
        let (addr, sent) = (server.addr, sent_tx.clone());
        threads.push(std::thread::spawn(move || {
            client(addr, head, body_len, fill, sent, leave_rx);
        }));
    }
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..clients {
        sent += sent_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every client reports within 60 s");
    }
    std::thread::sleep(Duration::from_secs(2));
    let held = rss_mib(pid);
    let held_after = started.elapsed();
    drop(leaves);
    for thread in threads {
        let _ = thread.join();
    }
    std::thread::sleep(Duration::from_secs(5));
    let after = rss_mib(pid);
    println!(
        "{scenario} x{clients}: {:.1} MiB sent; server RSS {idle:.1} MiB idle, {held:.1} MiB held \
         ({:.1} s after the first client; peak {:.1} MiB), {after:.1} MiB 5 s after the \
         clients left",
        sent as f64 / MIB as f64,
        held_after.as_secs_f64(),
        status_mib(pid, "VmHWM"),
    );
}
