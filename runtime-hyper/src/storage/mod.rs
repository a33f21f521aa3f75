//! Storage backends: each executes the engine's storage effects with S3 semantics and streams
//! stored objects into responses.

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
