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
        match self {
            Backend::Memory(m) => m.execute(effect),
            Backend::Directory(d) => d.execute(effect).await,
            Backend::S3(s) => s.execute(effect).await,
        }
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
