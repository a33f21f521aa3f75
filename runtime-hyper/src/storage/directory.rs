//! The default backend: a local directory, crash-safe, shareable by several `berth` processes.
//!
//! ```text
//! <root>/objects/<key>@          an object (every key segment but the last is a directory;
//!                                the `@` suffix keeps a key's file apart from the directory of
//!                                longer keys: `_catalog/a@` beside `_catalog/a/b@`)
//! <root>/objects/<key>@parts     an object assembled from multipart parts: JSON naming them
//! <root>/parts/<upload id>/<n>   multipart part files; completion references them, never copies
//! <root>/multipart/<id>.json     an open multipart upload: its key and part size
//! <root>/locks/<0..255>          lock files; a key's writers serialize on one of them (flock)
//! <root>/tmp/                    files being written
//! ```
//!
//! Every write goes to a temporary file that is fsynced and renamed into place, then the
//! directory is fsynced: a kill -9 at any moment leaves the old object or the new one, never a
//! part. Conditional writes check and rename while holding the key's lock, an exclusive `flock`
//! that other processes on the same directory respect too, so create-only and compare-and-swap
//! are real. An etag is the file's inode, modification time in nanoseconds and size.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::{ByteRange, CompletedPart, Condition, Effect, Listing, ObjectMeta, Outcome};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ObjectStream;

const LOCK_STRIPES: u64 = 256;
const READ_CHUNK: usize = 256 * 1024;

#[derive(Clone)]
pub struct DirectoryBackend {
    root: Arc<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct OpenUpload {
    key: String,
    part_size: u64,
}

/// An object made of part files.
#[derive(Serialize, Deserialize)]
struct Composite {
    upload_id: String,
    parts: Vec<(u32, u64)>,
}

impl Composite {
    fn size(&self) -> u64 {
        self.parts.iter().map(|(_, size)| size).sum()
    }
}

/// Where an object's bytes are: one file, or part files in order.
enum Stored {
    File(PathBuf, fs::Metadata),
    Parts(PathBuf, fs::Metadata, Composite),
}

fn failed(context: &str, error: io::Error) -> Outcome {
    Outcome::Failed(format!("{context}: {error}"))
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not recoverable for a server; fall back to time and pid.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag_of(meta: &fs::Metadata) -> String {
    format!(
        "\"{:x}-{:x}-{:x}\"",
        meta.ino(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        meta.size()
    )
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DirectoryBackend {
    pub fn open(root: &Path) -> io::Result<DirectoryBackend> {
        for sub in ["objects", "parts", "multipart", "locks", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        for stripe in 0..LOCK_STRIPES {
            let path = root.join("locks").join(stripe.to_string());
            if !path.exists() {
                File::create(path)?;
            }
        }
        Ok(DirectoryBackend {
            root: Arc::new(root.canonicalize()?),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object file of `key`. Keys come from the engine (validated names, digests, hex ids),
    /// but a key that could escape the root is refused all the same.
    fn object_path(&self, key: &str, suffix: &str) -> io::Result<PathBuf> {
        let unsafe_segment =
            |s: &str| s.is_empty() || s == "." || s == ".." || s.contains(['\\', '\0', '@']);
        if key.split('/').any(unsafe_segment) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing storage key {key:?}"),
            ));
        }
        Ok(self.root.join("objects").join(format!("{key}@{suffix}")))
    }

    fn lock(&self, key: &str) -> io::Result<File> {
        // FNV-1a: a stable spread of keys over the lock stripes, the same in every process.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let file = File::open(
            self.root
                .join("locks")
                .join((hash % LOCK_STRIPES).to_string()),
        )?;
        file.lock()?;
        Ok(file)
    }

    fn stored(&self, key: &str) -> io::Result<Option<Stored>> {
        let path = self.object_path(key, "")?;
        match fs::metadata(&path) {
            Ok(meta) => return Ok(Some(Stored::File(path, meta))),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let path = self.object_path(key, "parts")?;
        match fs::read(&path) {
            Ok(bytes) => {
                let meta = fs::metadata(&path)?;
                let composite: Composite =
                    serde_json::from_slice(&bytes).map_err(io::Error::other)?;
                Ok(Some(Stored::Parts(path, meta, composite)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn object_meta(stored: &Stored) -> ObjectMeta {
        match stored {
            Stored::File(_, meta) => ObjectMeta {
                size: meta.size(),
                etag: etag_of(meta),
            },
            Stored::Parts(_, meta, composite) => ObjectMeta {
                size: composite.size(),
                etag: etag_of(meta),
            },
        }
    }

    /// Writes `bytes` to a fresh temporary file and fsyncs it.
    fn write_temp(&self, bytes: &[u8]) -> io::Result<PathBuf> {
        let path = self.root.join("tmp").join(random_id());
        let mut file = File::create(&path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(path)
    }

    /// Renames a temporary file into place and makes the rename durable.
    fn publish(temp: &Path, target: &Path) -> io::Result<fs::Metadata> {
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("object path has no parent"))?;
        fs::create_dir_all(dir)?;
        fs::rename(temp, target)?;
        fsync_dir(dir)?;
        fs::metadata(target)
    }

    pub async fn execute(&self, effect: Effect) -> Outcome {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.execute_blocking(effect))
            .await
            .unwrap_or_else(|e| Outcome::Failed(format!("storage task failed: {e}")))
    }

    fn execute_blocking(&self, effect: Effect) -> Outcome {
        match effect {
            Effect::Head { key } => match self.stored(&key) {
                Ok(Some(stored)) => Outcome::Found(Self::object_meta(&stored)),
                Ok(None) => Outcome::NotFound,
                Err(e) => failed(&key, e),
            },
            Effect::Get { key, range } => match self.read_all(&key, range) {
                Ok(Some((meta, bytes))) => Outcome::Object { meta, bytes },
                Ok(None) => Outcome::NotFound,
                Err(e) => failed(&key, e),
            },
            Effect::Put {
                key,
                body,
                condition,
            } => self
                .put(&key, &body, &condition)
                .unwrap_or_else(|e| failed(&key, e)),
            Effect::Delete { key } => self
                .delete(&key)
                .map_or_else(|e| failed(&key, e), |()| Outcome::Deleted),
            Effect::List {
                prefix,
                start_after,
                limit,
                delimiter,
            } => self
                .list(&prefix, start_after.as_deref(), limit, delimiter)
                .map_or_else(|e| failed(&prefix, e), Outcome::Listed),
            Effect::CreateMultipart { key, part_size } => self
                .create_multipart(&key, part_size)
                .unwrap_or_else(|e| failed(&key, e)),
            Effect::UploadPart {
                key,
                upload_id,
                part_number,
                body,
            } => self
                .upload_part(&key, &upload_id, part_number, &body)
                .unwrap_or_else(|e| failed(&key, e)),
            Effect::CompleteMultipart {
                key,
                upload_id,
                parts,
            } => self
                .complete(&key, &upload_id, &parts)
                .unwrap_or_else(|e| failed(&key, e)),
            Effect::AbortMultipart { key, upload_id } => self
                .abort(&upload_id)
                .map_or_else(|e| failed(&key, e), |()| Outcome::Deleted),
            Effect::ReadBody => Outcome::Failed("storage does not read request bodies".into()),
            _ => Outcome::Failed("effect not supported by the directory backend".into()),
        }
    }

    fn read_all(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> io::Result<Option<(ObjectMeta, Bytes)>> {
        let Some(stored) = self.stored(key)? else {
            return Ok(None);
        };
        let meta = Self::object_meta(&stored);
        let (first, len) = clamp(range, meta.size);
        let mut out = Vec::with_capacity(len as usize);
        for (path, start, take) in self.segments(&stored, first, len) {
            let mut file = File::open(path)?;
            file.seek(SeekFrom::Start(start))?;
            file.take(take).read_to_end(&mut out)?;
        }
        Ok(Some((meta, Bytes::from(out))))
    }

    /// The files, offsets and lengths that make up `len` bytes of an object from `first`.
    fn segments(&self, stored: &Stored, first: u64, len: u64) -> Vec<(PathBuf, u64, u64)> {
        match stored {
            Stored::File(path, _) => vec![(path.clone(), first, len)],
            Stored::Parts(_, _, composite) => {
                let mut out = Vec::new();
                let (mut skip, mut left) = (first, len);
                for (number, size) in &composite.parts {
                    if left == 0 {
                        break;
                    }
                    if skip >= *size {
                        skip -= size;
                        continue;
                    }
                    let take = (size - skip).min(left);
                    out.push((
                        self.root
                            .join("parts")
                            .join(&composite.upload_id)
                            .join(number.to_string()),
                        skip,
                        take,
                    ));
                    left -= take;
                    skip = 0;
                }
                out
            }
        }
    }

    fn put(&self, key: &str, body: &[u8], condition: &Condition) -> io::Result<Outcome> {
        let target = self.object_path(key, "")?;
        let temp = self.write_temp(body)?;
        let _lock = self.lock(key)?;
        let current = self.stored(key)?;
        let allowed = match condition {
            Condition::None => true,
            Condition::IfNoneMatch => current.is_none(),
            Condition::IfMatch(etag) => current
                .as_ref()
                .is_some_and(|s| &Self::object_meta(s).etag == etag),
        };
        if !allowed {
            fs::remove_file(&temp)?;
            return Ok(Outcome::PreconditionFailed);
        }
        let meta = Self::publish(&temp, &target)?;
        if let Some(Stored::Parts(path, _, composite)) = current {
            self.remove_composite(&path, &composite)?;
        }
        Ok(Outcome::Stored {
            etag: etag_of(&meta),
        })
    }

    fn remove_composite(&self, path: &Path, composite: &Composite) -> io::Result<()> {
        fs::remove_file(path)?;
        match fs::remove_dir_all(self.root.join("parts").join(&composite.upload_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let _lock = self.lock(key)?;
        match self.stored(key)? {
            Some(Stored::File(path, _)) => fs::remove_file(path),
            Some(Stored::Parts(path, _, composite)) => self.remove_composite(&path, &composite),
            None => Ok(()),
        }
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        delimiter: Option<char>,
    ) -> io::Result<Listing> {
        // Walk the deepest directory that contains every key with this prefix.
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let mut keys = Vec::new();
        let dir = self.root.join("objects").join(base);
        collect_keys(&dir, base, &mut keys)?;
        keys.sort_unstable();
        Ok(Listing::from_sorted_keys(
            keys.iter().map(String::as_str),
            prefix,
            start_after,
            limit,
            delimiter,
        ))
    }

    fn multipart_meta(&self, upload_id: &str) -> io::Result<Option<OpenUpload>> {
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match fs::read(
            self.root
                .join("multipart")
                .join(format!("{upload_id}.json")),
        ) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_multipart(&self, key: &str, part_size: u64) -> io::Result<Outcome> {
        self.object_path(key, "")?;
        let upload_id = random_id();
        fs::create_dir_all(self.root.join("parts").join(&upload_id))?;
        let meta = serde_json::to_vec(&OpenUpload {
            key: key.to_owned(),
            part_size,
        })
        .map_err(io::Error::other)?;
        let temp = self.write_temp(&meta)?;
        Self::publish(
            &temp,
            &self
                .root
                .join("multipart")
                .join(format!("{upload_id}.json")),
        )?;
        Ok(Outcome::MultipartCreated { upload_id })
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: &[u8],
    ) -> io::Result<Outcome> {
        match self.multipart_meta(upload_id)? {
            Some(open) if open.key == key => {}
            _ => return Ok(Outcome::NotFound),
        }
        let temp = self.write_temp(body)?;
        let meta = Self::publish(
            &temp,
            &self
                .root
                .join("parts")
                .join(upload_id)
                .join(number.to_string()),
        )?;
        Ok(Outcome::PartUploaded {
            etag: etag_of(&meta),
        })
    }

    fn complete(&self, key: &str, upload_id: &str, parts: &[CompletedPart]) -> io::Result<Outcome> {
        match self.multipart_meta(upload_id)? {
            Some(open) if open.key == key => {}
            _ => return Ok(Outcome::NotFound),
        }
        let dir = self.root.join("parts").join(upload_id);
        let mut listed = Vec::with_capacity(parts.len());
        for part in parts {
            let meta = fs::metadata(dir.join(part.part_number.to_string()))?;
            if etag_of(&meta) != part.etag {
                return Ok(Outcome::Failed(format!(
                    "part {} does not have etag {}",
                    part.part_number, part.etag
                )));
            }
            listed.push((part.part_number, meta.size()));
        }
        // Parts that were uploaded but not listed are discarded, as S3 does.
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let listed_here = name
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| listed.iter().any(|(p, _)| *p == n));
            if !listed_here {
                fs::remove_file(entry.path())?;
            }
        }
        let composite = serde_json::to_vec(&Composite {
            upload_id: upload_id.to_owned(),
            parts: listed,
        })
        .map_err(io::Error::other)?;
        let temp = self.write_temp(&composite)?;
        let target = self.object_path(key, "parts")?;
        let _lock = self.lock(key)?;
        let meta = Self::publish(&temp, &target)?;
        fs::remove_file(
            self.root
                .join("multipart")
                .join(format!("{upload_id}.json")),
        )?;
        Ok(Outcome::Stored {
            etag: etag_of(&meta),
        })
    }

    fn abort(&self, upload_id: &str) -> io::Result<()> {
        if self.multipart_meta(upload_id)?.is_none() {
            return Ok(());
        }
        match fs::remove_dir_all(self.root.join("parts").join(upload_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::remove_file(
            self.root
                .join("multipart")
                .join(format!("{upload_id}.json")),
        )
    }

    pub async fn open_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> io::Result<ObjectStream> {
        let this = self.clone();
        let key = key.to_owned();
        let segments = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let stored = this
                .stored(&key)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, key.clone()))?;
            let (first, len) = clamp(range, Self::object_meta(&stored).size);
            Ok(this.segments(&stored, first, len))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Box::pin(futures_util::stream::try_unfold(
            (segments.into_iter(), None::<(tokio::fs::File, u64)>),
            |(mut segments, mut current)| async move {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                loop {
                    if let Some((file, left)) = current.as_mut()
                        && *left > 0
                    {
                        let mut buffer = vec![0u8; READ_CHUNK.min(*left as usize)];
                        let n = file.read(&mut buffer).await?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "object shorter than recorded",
                            ));
                        }
                        buffer.truncate(n);
                        *left -= n as u64;
                        return Ok(Some((Bytes::from(buffer), (segments, current))));
                    }
                    let Some((path, start, len)) = segments.next() else {
                        return Ok(None);
                    };
                    let mut file = tokio::fs::File::open(path).await?;
                    file.seek(SeekFrom::Start(start)).await?;
                    current = Some((file, len));
                }
            },
        )))
    }
}

/// The first byte and length an optional inclusive range covers in an object of `size` bytes.
fn clamp(range: Option<ByteRange>, size: u64) -> (u64, u64) {
    match range {
        None => (0, size),
        Some(r) => {
            let first = r.first.min(size);
            let end = r.last.saturating_add(1).min(size);
            (first, end.saturating_sub(first))
        }
    }
}

/// Every key stored under `dir` (whose keys start with `base`).
fn collect_keys(dir: &Path, base: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut seen = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if entry.file_type()?.is_dir() {
            collect_keys(&entry.path(), &format!("{base}{name}/"), out)?;
        } else if let Some(stem) = name
            .strip_suffix('@')
            .or_else(|| name.strip_suffix("@parts"))
        {
            seen.insert(format!("{base}{stem}"), ());
        }
    }
    out.extend(seen.into_keys());
    Ok(())
}
