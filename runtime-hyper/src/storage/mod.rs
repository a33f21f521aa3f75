//! Storage backends: each executes the engine's storage effects with S3 semantics and streams
//! stored objects into responses.
//!
//! | backend | create-only (`If-None-Match: *`) | compare-and-swap (`If-Match`) | multipart |
//! |---|---|---|---|
//! | [`directory`] | `link(2)` of a fsynced temp file | key lock (`flock`) + version check + `rename(2)` | parts at fixed offsets of one file; completion renames it |
//! | [`memory`] | under the store's mutex | under the store's mutex | parts in memory, assembled |
//! | [`s3`] | the bucket's `If-None-Match: *` | the bucket's `If-Match` | the bucket's multipart API |

pub mod directory;
pub mod memory;
pub mod s3;

use std::io;

use berth_engine::{ByteRange, Effect, Outcome};
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// A stored object's bytes, as a stream of chunks.
pub type ObjectStream = BoxStream<'static, io::Result<Bytes>>;

/// The backend a server runs on, chosen by `--storage`.
pub enum Backend {
    Memory(memory::MemoryBackend),
    Directory(directory::DirectoryBackend),
    S3(s3::S3Backend),
}

impl Backend {
    /// Opens `--storage`: `memory`, `s3://bucket[/prefix]`, or a directory path.
    pub async fn open(spec: &str, s3_options: &s3::S3Options) -> io::Result<Backend> {
        kill_hook::check()?;
        if spec == "memory" {
            return Ok(Backend::Memory(memory::MemoryBackend::default()));
        }
        if spec.starts_with("s3://") {
            return Ok(Backend::S3(s3::S3Backend::open(spec, s3_options).await?));
        }
        Ok(Backend::Directory(directory::DirectoryBackend::open(
            spec.as_ref(),
        )?))
    }

    pub fn describe(&self) -> String {
        match self {
            Backend::Memory(_) => "memory".into(),
            Backend::Directory(d) => format!("directory {}", d.root().display()),
            Backend::S3(s) => s.describe(),
        }
    }

    /// Executes one storage effect.
    pub async fn execute(&self, effect: Effect) -> Outcome {
        let kill_after = kill_hook::reached(&effect);
        let outcome = match self {
            Backend::Memory(m) => m.execute(effect),
            Backend::Directory(d) => d.execute(effect).await,
            Backend::S3(s) => s.execute(effect).await,
        };
        if kill_after {
            kill_hook::kill();
        }
        outcome
    }

    /// Removes what crashes leave behind (the directory backend's stale temporary files, and
    /// multipart uploads untouched for `abandoned_after`); runs with each maintenance pass.
    pub async fn clean_up(&self, abandoned_after: std::time::Duration) -> io::Result<()> {
        match self {
            Backend::Directory(d) => {
                let d = d.clone();
                tokio::task::spawn_blocking(move || d.clean_up_with(Some(abandoned_after)))
                    .await
                    .map_err(io::Error::other)?
            }
            Backend::Memory(_) | Backend::S3(_) => Ok(()),
        }
    }

    /// Opens an object (or an inclusive byte range of it) for streaming.
    pub async fn open_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> io::Result<ObjectStream> {
        match self {
            Backend::Memory(m) => m.open_stream(key, range),
            Backend::Directory(d) => d.open_stream(key, range).await,
            Backend::S3(s) => s.open_stream(key, range).await,
        }
    }
}

/// Test hook: `BERTH_TEST_KILL_AT="<operation> <key pattern> <before|after> [nth]"` makes the
/// process SIGKILL itself at an exact storage operation, so crash tests can stop `berth` between
/// two steps of a request (say, after a blob pointer is written and before the repository link)
/// instead of at a random moment. Ignored unless the variable is set; a malformed value stops
/// `berth` at startup rather than silently never firing.
///
/// - `<operation>`: `head`, `get`, `put`, `delete`, `list`, `create-multipart`, `upload-part`,
///   `complete-multipart` or `abort-multipart`;
/// - `<key pattern>`: a prefix of the object key (of the prefix, for `list`) in which `*` stands
///   for one whole path segment: `_blobs/`, `_uploads/*/state`;
/// - `before` kills before the operation reaches storage, `after` once storage has done it;
/// - `nth` (default 1): fire at the nth matching operation of this process.
mod kill_hook {
    use std::io;
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    use berth_engine::Effect;

    pub const VARIABLE: &str = "BERTH_TEST_KILL_AT";

    struct KillPoint {
        operation: String,
        pattern: String,
        after: bool,
        nth: u64,
        seen: AtomicU64,
    }

    static KILL_POINT: LazyLock<Result<Option<KillPoint>, String>> =
        LazyLock::new(|| std::env::var(VARIABLE).ok().map(|v| parse(&v)).transpose());

    fn parse(value: &str) -> Result<KillPoint, String> {
        let words: Vec<&str> = value.split_whitespace().collect();
        let (operation, pattern, when, nth) = match words[..] {
            [operation, pattern, when] => (operation, pattern, when, "1"),
            [operation, pattern, when, nth] => (operation, pattern, when, nth),
            _ => {
                return Err(format!(
                    "{VARIABLE}={value:?}: expected \"<operation> <key pattern> <before|after> [nth]\""
                ));
            }
        };
        let after = match when {
            "before" => false,
            "after" => true,
            _ => {
                return Err(format!(
                    "{VARIABLE}={value:?}: {when:?} is neither before nor after"
                ));
            }
        };
        let nth =
            nth.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("{VARIABLE}={value:?}: nth {nth:?} is not a positive count")
            })?;
        Ok(KillPoint {
            operation: operation.to_owned(),
            pattern: pattern.to_owned(),
            after,
            nth,
            seen: AtomicU64::new(0),
        })
    }

    /// Refuses a malformed `BERTH_TEST_KILL_AT`.
    pub fn check() -> io::Result<()> {
        match &*KILL_POINT {
            Ok(_) => Ok(()),
            Err(message) => Err(io::Error::new(io::ErrorKind::InvalidInput, message.clone())),
        }
    }

    /// Counts `effect` if it matches the kill point and kills the process if it is the one to
    /// stop before; says whether it is the one to stop after.
    pub fn reached(effect: &Effect) -> bool {
        let Ok(Some(point)) = &*KILL_POINT else {
            return false;
        };
        let Some((operation, key)) = describe(effect) else {
            return false;
        };
        if operation != point.operation || !matches(&point.pattern, key) {
            return false;
        }
        if point.seen.fetch_add(1, Ordering::SeqCst) + 1 != point.nth {
            return false;
        }
        tracing::warn!(
            operation,
            key,
            after = point.after,
            "{VARIABLE}: killing this process"
        );
        if !point.after {
            kill();
        }
        point.after
    }

    fn describe(effect: &Effect) -> Option<(&'static str, &str)> {
        Some(match effect {
            Effect::Head { key } => ("head", key),
            Effect::Get { key, .. } => ("get", key),
            Effect::Put { key, .. } => ("put", key),
            Effect::Delete { key } => ("delete", key),
            Effect::List { prefix, .. } => ("list", prefix),
            Effect::CreateMultipart { key, .. } => ("create-multipart", key),
            Effect::UploadPart { key, .. } => ("upload-part", key),
            Effect::CompleteMultipart { key, .. } => ("complete-multipart", key),
            Effect::AbortMultipart { key, .. } => ("abort-multipart", key),
            _ => return None,
        })
    }

    /// `pattern` is a prefix of `key`, `*` matching any one segment.
    fn matches(pattern: &str, key: &str) -> bool {
        let mut keys = key.split('/');
        let mut patterns = pattern.split('/').peekable();
        while let Some(wanted) = patterns.next() {
            let Some(segment) = keys.next() else {
                return false;
            };
            let last = patterns.peek().is_none();
            let fits = wanted == "*"
                || if last {
                    segment.starts_with(wanted)
                } else {
                    segment == wanted
                };
            if !fits {
                return false;
            }
        }
        true
    }

    /// SIGKILL, as a crash or the OOM killer would: no destructor, flush or response runs.
    pub fn kill() -> ! {
        #[cfg(target_os = "linux")]
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn patterns_match_key_prefixes_with_wildcard_segments() {
            assert!(matches("_blobs/", "_blobs/sha256/abc"));
            assert!(matches("_uploads/*/state", "_uploads/0123/state"));
            assert!(!matches("_uploads/*/state", "_uploads/0123/tail/000-w"));
            assert!(matches("_data/", "_data/u/w"));
            assert!(!matches("_data/", "_blobs/sha256/abc"));
            assert!(!matches(
                "repositories/a/_layers/",
                "repositories/ab/_layers/x"
            ));
            assert!(!matches("_uploads/*/state", "_uploads/"));
        }

        #[test]
        fn malformed_kill_points_are_refused() {
            assert!(parse("put _blobs/ after").is_ok());
            assert_eq!(parse("put _blobs/ after 3").unwrap().nth, 3);
            assert!(parse("put _blobs/").is_err());
            assert!(parse("put _blobs/ during").is_err());
            assert!(parse("put _blobs/ before 0").is_err());
        }
    }
}
