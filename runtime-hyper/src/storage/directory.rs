//! The default backend: a local directory, crash-safe, shareable by several `berth` processes.
//!
//! # Layout (format `berth-directory 3`, recorded in `<root>/FORMAT`)
//!
//! ```text
//! <root>/FORMAT                       the layout version; berth refuses a directory of another
//! <root>/objects/<key>@               the object `key`: every key segment but the last is a
//!                                     directory, and the `@` suffix keeps an object's file apart
//!                                     from the directory of longer keys (`_catalog/a@` beside
//!                                     `_catalog/a/b@`). Keys never contain `@`.
//! <root>/multipart/<id>/upload.json   an open multipart upload: its key and part size
//! <root>/multipart/<id>/data          its parts, each at its fixed offset (the engine announces
//!                                     the part size; all parts but the last are that size)
//! <root>/multipart/<id>/part-<n>      part n's record: its version and length
//! <root>/locks/<0..255>               lock files; writers of a key serialize on one (flock)
//! <root>/tmp/                         files being written; leftovers of a crash are removed
//!                                     once they are an hour old
//! ```
//!
//! Every object file starts with a 32-byte header: the magic `berthobj`, a 16-byte random
//! version, and the offset of the object's bytes (u64, little-endian): 32 for objects put
//! whole, 4096 for objects assembled from multipart parts, whose parts sit at page-aligned
//! offsets so they can be written with direct I/O (below). Format 2 had no offset field (its
//! bytes are zero, read as 32), so a format-2 directory is a valid format-3 one and is
//! upgraded by rewriting `FORMAT`. The etag is the version in hex, so it
//! changes on every write (no ABA: a rewrite with the same bytes gets a new etag) and it is
//! read with the object from the same open file, never from a second lookup.
//!
//! # Atomicity
//!
//! - Every write goes to a temporary file in `tmp/` (same filesystem), which is fsynced and then
//!   renamed (or hard-linked) into place, and the directory is fsynced: a kill -9 or power loss
//!   at any moment leaves the old object or the new one, never a part of one.
//! - Create-only (`If-None-Match: *`) is `link(2)`, which fails atomically if the name exists
//!   (on a filesystem without hard links: the key's lock, a check, and `rename(2)`).
//! - Compare-and-swap (`If-Match`), unconditional puts, deletes and multipart completion hold
//!   the key's lock: an exclusive `flock` on one of 256 lock files. `flock` locks belong to the
//!   open file, so they exclude other threads of this process (each operation opens the lock
//!   file anew) as well as other processes sharing the directory.
//! - Multipart uploads are directories created whole (built in `tmp/`, then renamed), so ids
//!   survive restarts. A part is written at its offset while the upload's own lock is held, its
//!   previous record removed first: a crash mid-write leaves that part without a record, so it
//!   cannot be completed with stale bytes. Completion writes the header, truncates to the
//!   parts' total and renames the data file to the object's name: no byte is copied.
//!
//! # Direct I/O
//!
//! On Linux a full part (page-aligned buffer — the engine aligns its part buffers — length and
//! offset) is written with `O_DIRECT`: the device reads it from berth's memory, and the kernel
//! does not copy it into the page cache first. That copy was half of the server's CPU time per
//! pushed byte (more than SHA-256), and a 100 GB layer pushed through the page cache evicts
//! everything else from it. Anything unaligned, and filesystems that refuse `O_DIRECT`
//! (tmpfs), take the buffered path; both are fsynced before the part is recorded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_engine::{ByteRange, CompletedPart, Condition, Effect, Listing, ObjectMeta, Outcome};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::ObjectStream;

const FORMAT: &str = "berth-directory 3\n";
/// The previous format, which this one reads unchanged (see the module docs).
const FORMAT_2: &str = "berth-directory 2\n";
const LOCK_STRIPES: u64 = 256;
const READ_CHUNK: usize = 256 * 1024;
/// Reads of one blob response in flight at once: while one chunk goes to the socket the
/// next ones are read, so a blob that is not in the page cache streams at the disk's rate.
const READS_AHEAD: usize = 4;
/// Largest read done on the async runtime's thread rather than the blocking pool.
const INLINE_READ_LIMIT: u64 = 64 * 1024;
const MAGIC: &[u8; 8] = b"berthobj";
/// Length of the header before an object's bytes.
pub const HEADER_LEN: u64 = 32;
/// Where a multipart upload's bytes begin in its data file (and in the object it becomes):
/// the first page boundary, so that every part sits at a page-aligned offset.
const MULTIPART_BODY_OFFSET: u64 = berth_engine::upload::PART_ALIGN as u64;
/// Temporary files older than this are leftovers of a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// S3's largest part number.
const MAX_PART_NUMBER: u32 = 10_000;
/// Attempts at placing a file whose parent directory a concurrent delete may have pruned.
const PLACE_ATTEMPTS: usize = 16;

#[derive(Clone)]
pub struct DirectoryBackend {
    root: Arc<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct OpenUpload {
    key: String,
    part_size: u64,
    /// Where part 1 begins in the data file; absent in uploads begun by format 2.
    #[serde(default = "format_2_body_offset")]
    body_offset: u64,
}

fn format_2_body_offset() -> u64 {
    HEADER_LEN
}

fn failed(context: &str, error: io::Error) -> Outcome {
    Outcome::Failed(format!("{context}: {error}"))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // Without the OS random source, versions could repeat: that is not survivable.
        panic!("the operating system's random source failed: {e}");
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_id() -> String {
    hex(&random_bytes::<16>())
}

fn etag_of(version: &[u8; 16]) -> String {
    format!("\"{}\"", hex(version))
}

fn header(version: &[u8; 16], body_offset: u64) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..24].copy_from_slice(version);
    header[24..].copy_from_slice(&body_offset.to_le_bytes());
    header
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    ensure_dir(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// An open object: its file, version, size, and where its bytes begin in the file.
struct Opened {
    file: File,
    version: [u8; 16],
    size: u64,
    body_offset: u64,
}

impl Opened {
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            size: self.size,
            etag: etag_of(&self.version),
        }
    }
}

fn read_header(file: File) -> io::Result<Opened> {
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut head, 0)?;
    if &head[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a berth object file (bad header)",
        ));
    }
    let mut version = [0u8; 16];
    version.copy_from_slice(&head[8..24]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&head[24..]);
    let body_offset = match u64::from_le_bytes(offset) {
        0 => HEADER_LEN,
        offset => offset,
    };
    if body_offset < HEADER_LEN || body_offset > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a berth object file (its bytes begin outside it)",
        ));
    }
    Ok(Opened {
        file,
        version,
        size: len - body_offset,
        body_offset,
    })
}

/// The first byte and length an optional inclusive range covers in an object of `size` bytes
/// (clamped to the object, as the memory store does).
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

/// Longest key segment stored: a segment is a file or directory name, an object's file name
/// is its last segment plus `@`, and filesystems allow 255 bytes per name.
const MAX_SEGMENT_LEN: usize = 250;
// Every repository name the engine routes must be storable here (its components are key
// segments); the engine refuses longer components with NAME_INVALID on every backend.
const _: () = assert!(berth_engine::names::MAX_COMPONENT_LEN <= MAX_SEGMENT_LEN);

/// Refuses keys that could escape the root or collide with the layout's own names. Keys come
/// from the engine (validated names, digests, hex ids); this is defence in depth.
pub fn check_key(key: &str) -> io::Result<()> {
    let bad_segment = |s: &str| {
        s.is_empty()
            || s == "."
            || s == ".."
            || s.len() > MAX_SEGMENT_LEN
            || s.contains(['\\', '\0', '@'])
            || s.chars().any(char::is_control)
    };
    if key.split('/').any(bad_segment) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing storage key {key:?}"),
        ));
    }
    Ok(())
}

/// Records the current format in `<root>/FORMAT`, atomically.
fn write_format(root: &Path) -> io::Result<()> {
    ensure_dir(&root.join("tmp"))?;
    let temp = root.join("tmp").join(format!("format-{}", random_id()));
    let mut file = File::create(&temp)?;
    file.write_all(FORMAT.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, root.join("FORMAT"))?;
    fsync_dir(root)
}

/// Writes a part at `offset` of an upload's data file and makes it durable: with direct I/O
/// when buffer, length and offset are page-aligned (see the module docs), else buffered.
fn write_part(path: &Path, body: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let align = berth_engine::upload::PART_ALIGN;
        let aligned = !body.is_empty()
            && (body.as_ptr() as usize).is_multiple_of(align)
            && body.len().is_multiple_of(align)
            && offset.is_multiple_of(align as u64);
        if aligned {
            let refused = |e: &io::Error| e.raw_os_error() == Some(libc::EINVAL);
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                // EINVAL before any byte is written: the filesystem refuses direct I/O (or
                // its block size exceeds a page); the buffered path below writes the part.
                Ok(file) => match file.write_at(body, offset) {
                    Ok(written) => {
                        file.write_all_at(&body[written..], offset + written as u64)?;
                        return file.sync_data();
                    }
                    Err(e) if refused(&e) => {}
                    Err(e) => return Err(e),
                },
                Err(e) if refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let file = OpenOptions::new().write(true).open(path)?;
    file.write_all_at(body, offset)?;
    file.sync_data()
}

impl DirectoryBackend {
    /// Opens (creating if needed) a storage directory.
    pub fn open(root: &Path) -> io::Result<DirectoryBackend> {
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let format_file = root.join("FORMAT");
        match fs::read_to_string(&format_file) {
            Ok(text) if text == FORMAT => {}
            Ok(text) if text == FORMAT_2 => write_format(&root)?,
            Ok(text) => {
                return Err(io::Error::other(format!(
                    "{} holds {:?}, not {:?}: this berth cannot read that layout",
                    format_file.display(),
                    text.trim(),
                    FORMAT.trim()
                )));
            }
            Err(e) if not_found(&e) => {
                let objects = root.join("objects");
                if objects.is_dir() && fs::read_dir(&objects)?.next().is_some() {
                    return Err(io::Error::other(format!(
                        "{} has objects but no FORMAT file: it was written by an older berth \
                         whose layout this one cannot read",
                        root.display()
                    )));
                }
                write_format(&root)?;
            }
            Err(e) => return Err(e),
        }
        for sub in ["objects", "multipart", "locks", "tmp"] {
            ensure_dir(&root.join(sub))?;
        }
        for stripe in 0..LOCK_STRIPES {
            let path = root.join("locks").join(stripe.to_string());
            if !path.exists() {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)?;
            }
        }
        let backend = DirectoryBackend {
            root: Arc::new(root),
        };
        backend.clean_up()?;
        Ok(backend)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes what crashes leave behind: temporary files and directories older than an hour,
    /// and multipart directories whose data was already published. Safe while other processes
    /// use the directory.
    pub fn clean_up(&self) -> io::Result<()> {
        self.clean_up_with(None)
    }

    /// [`DirectoryBackend::clean_up`], and also abort multipart uploads untouched for longer
    /// than `abandoned_after`: uploads no upload record names any more (a crash between
    /// creating one and recording it), as an S3 lifecycle rule aborts incomplete uploads.
    pub fn clean_up_with(&self, abandoned_after: Option<Duration>) -> io::Result<()> {
        let now = SystemTime::now();
        let age = |meta: &fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default()
        };
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else { continue };
            if age(&meta) > STALE_TEMP {
                let result = if meta.is_dir() {
                    fs::remove_dir_all(entry.path())
                } else {
                    fs::remove_file(entry.path())
                };
                match result {
                    Err(e) if !not_found(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        for entry in fs::read_dir(self.root.join("multipart"))? {
            let entry = entry?;
            let dir = entry.path();
            let abandoned = match fs::metadata(dir.join("data")) {
                // Completed (data renamed away) or aborted but not yet removed.
                Err(e) if not_found(&e) => true,
                Err(e) => return Err(e),
                // Every part write touches the data file; its directory gains part records.
                Ok(data) => abandoned_after.is_some_and(|limit| {
                    age(&data) > limit && entry.metadata().is_ok_and(|m| age(&m) > limit)
                }),
            };
            if abandoned {
                let name = entry.file_name();
                match name
                    .to_str()
                    .and_then(|id| self.lock_upload(id).transpose())
                {
                    // Under the upload's lock, so a writer that just arrived is not cut off.
                    Some(Ok((_lock, _, dir))) => self.remove_upload_dir(&dir)?,
                    Some(Err(e)) => return Err(e),
                    None => match fs::remove_dir_all(&dir) {
                        Err(e) if !not_found(&e) => return Err(e),
                        _ => {}
                    },
                }
            }
        }
        Ok(())
    }

    fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// The file of the object `key`.
    pub fn object_path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.objects().join(format!("{key}@")))
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}-{}", random_id()))
    }

    /// Takes the lock of `key` (held until the returned file is dropped).
    fn lock(&self, key: &str) -> io::Result<File> {
        // FNV-1a: a stable spread of keys over the stripes, the same in every process.
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

    fn open_object(&self, key: &str) -> io::Result<Option<Opened>> {
        match File::open(self.object_path(key)?) {
            Ok(file) => read_header(file).map(Some),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a new object file (header with a fresh version, then `body`) in `tmp/`, fsynced.
    fn write_temp_object(&self, body: &[u8]) -> io::Result<(PathBuf, [u8; 16])> {
        let version = random_bytes::<16>();
        let path = self.temp_path("put");
        let result = (|| {
            let mut file = File::create(&path)?;
            file.write_all(&header(&version, HEADER_LEN))?;
            file.write_all(body)?;
            file.sync_all()
        })();
        match result {
            Ok(()) => Ok((path, version)),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Moves `temp` to `target` with `place` (rename or link), creating the parent directory
    /// (again, if a concurrent delete pruned it), then makes the new entry durable.
    fn place(
        temp: &Path,
        target: &Path,
        place: impl Fn(&Path, &Path) -> io::Result<()>,
    ) -> io::Result<()> {
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("object path has no parent"))?;
        let mut attempt = 0;
        loop {
            ensure_dir(dir)?;
            match place(temp, target) {
                Err(e) if not_found(&e) && attempt < PLACE_ATTEMPTS && temp.exists() => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok(()) => return fsync_dir(dir),
            }
        }
    }

    /// Removes the now empty directories above `path`, up to `objects/`. A directory that is
    /// not empty (or that a writer just filled) stays.
    fn prune(&self, path: &Path) {
        let objects = self.objects();
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == objects || !d.starts_with(&objects) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    pub async fn execute(&self, effect: Effect) -> Outcome {
        // Reads of metadata-sized objects (tags, links, manifests, upload records) happen on
        // the calling thread: an open and a read of a few KiB that the page cache nearly
        // always holds cost less than handing them to the blocking pool and back, which was
        // most of a manifest GET's CPU. Larger objects and every write go to the pool.
        match &effect {
            Effect::Head { key } => match self.open_object(key) {
                Ok(Some(opened)) => return Outcome::Found(opened.meta()),
                Ok(None) => return Outcome::NotFound,
                Err(e) => return failed(key, e),
            },
            Effect::Get { key, range } => match self.get_if_small(key, *range) {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(e) => return failed(key, e),
            },
            _ => {}
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.execute_blocking(effect))
            .await
            .unwrap_or_else(|e| Outcome::Failed(format!("storage task failed: {e}")))
    }

    /// Executes one storage effect on the calling thread (it blocks on the filesystem).
    pub fn execute_blocking(&self, effect: Effect) -> Outcome {
        match effect {
            Effect::Head { key } => match self.open_object(&key) {
                Ok(Some(opened)) => Outcome::Found(opened.meta()),
                Ok(None) => Outcome::NotFound,
                Err(e) => failed(&key, e),
            },
            Effect::Get { key, range } => match self.get(&key, range) {
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
            other => Outcome::Failed(format!(
                "the directory backend does not know the effect {}",
                other.operation()
            )),
        }
    }

    /// [`Effect::Get`]'s outcome if the bytes asked for are at most [`INLINE_READ_LIMIT`]
    /// (or the object is missing); `None` if they are more.
    fn get_if_small(&self, key: &str, range: Option<ByteRange>) -> io::Result<Option<Outcome>> {
        let Some(opened) = self.open_object(key)? else {
            return Ok(Some(Outcome::NotFound));
        };
        let (first, len) = clamp(range, opened.size);
        if len > INLINE_READ_LIMIT {
            return Ok(None);
        }
        let mut bytes = vec![0u8; len as usize];
        opened
            .file
            .read_exact_at(&mut bytes, opened.body_offset + first)?;
        Ok(Some(Outcome::Object {
            meta: opened.meta(),
            bytes: Bytes::from(bytes),
        }))
    }

    fn get(&self, key: &str, range: Option<ByteRange>) -> io::Result<Option<(ObjectMeta, Bytes)>> {
        let Some(opened) = self.open_object(key)? else {
            return Ok(None);
        };
        let (first, len) = clamp(range, opened.size);
        let mut bytes = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        opened
            .file
            .read_exact_at(&mut bytes, opened.body_offset + first)?;
        Ok(Some((opened.meta(), Bytes::from(bytes))))
    }

    fn put(&self, key: &str, body: &[u8], condition: &Condition) -> io::Result<Outcome> {
        let target = self.object_path(key)?;
        let (temp, version) = self.write_temp_object(body)?;
        let result = self.put_temp(key, &temp, &target, condition);
        // After a link, or a refusal, the temporary name is still there.
        let _ = fs::remove_file(&temp);
        Ok(match result? {
            true => Outcome::Stored {
                etag: etag_of(&version),
            },
            false => Outcome::PreconditionFailed,
        })
    }

    /// Places the temporary object file; `false` if the condition did not hold.
    fn put_temp(
        &self,
        key: &str,
        temp: &Path,
        target: &Path,
        condition: &Condition,
    ) -> io::Result<bool> {
        match condition {
            Condition::IfNoneMatch => {
                match Self::place(temp, target, |from, to| fs::hard_link(from, to)) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                    // A filesystem without hard links: under the key's lock, which every
                    // berth writer of the key takes, check-and-rename is atomic too.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                        ) =>
                    {
                        let _lock = self.lock(key)?;
                        if self.open_object(key)?.is_some() {
                            return Ok(false);
                        }
                        Self::place(temp, target, |from, to| fs::rename(from, to))?;
                        Ok(true)
                    }
                    Err(e) => Err(e),
                }
            }
            Condition::IfMatch(etag) => {
                let _lock = self.lock(key)?;
                match self.open_object(key)? {
                    Some(current) if &etag_of(&current.version) == etag => {}
                    _ => return Ok(false),
                }
                Self::place(temp, target, |from, to| fs::rename(from, to))?;
                Ok(true)
            }
            Condition::None => {
                let _lock = self.lock(key)?;
                Self::place(temp, target, |from, to| fs::rename(from, to))?;
                Ok(true)
            }
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.object_path(key)?;
        {
            let _lock = self.lock(key)?;
            match fs::remove_file(&path) {
                Ok(()) => {
                    // A concurrent delete of the last other entry may have pruned the directory
                    // already: then there is nothing left to make durable.
                    if let Some(dir) = path.parent() {
                        match fsync_dir(dir) {
                            Err(e) if not_found(&e) => {}
                            other => other?,
                        }
                    }
                }
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.prune(&path);
        Ok(())
    }

    /// S3 list semantics (see [`Listing::from_sorted_keys`]), read from the directory tree in
    /// key order without visiting subtrees that cannot contribute: those outside the prefix,
    /// those wholly at or before `start_after`, and those rolled up into one common prefix.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        delimiter: Option<char>,
    ) -> io::Result<Listing> {
        let mut walk = Walk {
            prefix,
            start_after,
            limit,
            delimiter,
            listing: Listing::default(),
            done: false,
        };
        walk.dir(&self.objects(), "")?;
        Ok(walk.listing)
    }

    fn upload_dir(&self, upload_id: &str) -> Option<PathBuf> {
        let valid = upload_id.len() == 32 && upload_id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join("multipart").join(upload_id))
    }

    /// Opens an upload for writing: its lock (held while the file lives) and its record.
    fn lock_upload(&self, upload_id: &str) -> io::Result<Option<(File, OpenUpload, PathBuf)>> {
        let Some(dir) = self.upload_dir(upload_id) else {
            return Ok(None);
        };
        let file = match File::open(dir.join("upload.json")) {
            Ok(file) => file,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        file.lock()?;
        // Completion or abort may have removed the upload while this waited for the lock.
        if !dir.join("data").exists() {
            return Ok(None);
        }
        let record: OpenUpload = serde_json::from_reader(&file)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Some((file, record, dir)))
    }

    fn create_multipart(&self, key: &str, part_size: u64) -> io::Result<Outcome> {
        check_key(key)?;
        if part_size == 0 {
            return Ok(Outcome::Failed("part size must be positive".into()));
        }
        let upload_id = random_id();
        let building = self.temp_path("multipart");
        fs::create_dir(&building)?;
        let result = (|| {
            let mut record = File::create(building.join("upload.json"))?;
            serde_json::to_writer(
                &mut record,
                &OpenUpload {
                    key: key.to_owned(),
                    part_size,
                    body_offset: MULTIPART_BODY_OFFSET,
                },
            )
            .map_err(io::Error::other)?;
            record.sync_all()?;
            let data = File::create(building.join("data"))?;
            data.set_len(MULTIPART_BODY_OFFSET)?;
            data.sync_all()?;
            fsync_dir(&building)?;
            let target = self.root.join("multipart").join(&upload_id);
            fs::rename(&building, &target)?;
            fsync_dir(&self.root.join("multipart"))
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&building);
            return Err(e);
        }
        Ok(Outcome::MultipartCreated { upload_id })
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: &[u8],
    ) -> io::Result<Outcome> {
        let Some((_lock, upload, dir)) = self.lock_upload(upload_id)? else {
            return Ok(Outcome::NotFound);
        };
        if upload.key != key {
            return Ok(Outcome::NotFound);
        }
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Ok(Outcome::Failed(format!(
                "part number {number} is outside 1..={MAX_PART_NUMBER}"
            )));
        }
        if body.len() as u64 > upload.part_size {
            return Ok(Outcome::Failed(format!(
                "part {number} has {} bytes, more than the upload's part size {}",
                body.len(),
                upload.part_size
            )));
        }
        // Forget the part's previous version before touching its bytes, durably: a crash
        // mid-write must not leave a record that vouches for half-overwritten bytes.
        let record_path = dir.join(format!("part-{number}"));
        match fs::remove_file(&record_path) {
            Ok(()) => fsync_dir(&dir)?,
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let offset = upload.body_offset + u64::from(number - 1) * upload.part_size;
        write_part(&dir.join("data"), body, offset)?;
        let version = random_bytes::<16>();
        let temp = self.temp_path("part");
        let mut record = File::create(&temp)?;
        writeln!(record, "{} {}", hex(&version), body.len())?;
        record.sync_all()?;
        fs::rename(&temp, &record_path)?;
        fsync_dir(&dir)?;
        Ok(Outcome::PartUploaded {
            etag: etag_of(&version),
        })
    }

    /// A part's record: its etag and length.
    fn part_record(dir: &Path, number: u32) -> io::Result<Option<(String, u64)>> {
        let text = match fs::read_to_string(dir.join(format!("part-{number}"))) {
            Ok(text) => text,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let parsed = text
            .trim()
            .split_once(' ')
            .and_then(|(version, len)| Some((format!("\"{version}\""), len.parse::<u64>().ok()?)));
        parsed
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad part record"))
    }

    fn complete(&self, key: &str, upload_id: &str, parts: &[CompletedPart]) -> io::Result<Outcome> {
        let Some((_lock, upload, dir)) = self.lock_upload(upload_id)? else {
            return Ok(Outcome::NotFound);
        };
        if upload.key != key {
            return Ok(Outcome::NotFound);
        }
        if parts.is_empty() {
            return Ok(Outcome::Failed(
                "a multipart upload needs at least one part".into(),
            ));
        }
        let mut total = 0u64;
        for (i, part) in parts.iter().enumerate() {
            if part.part_number as usize != i + 1 {
                return Ok(Outcome::Failed(format!(
                    "the directory backend completes parts numbered 1, 2, 3, … (parts sit at \
                     fixed offsets); part {} is listed {}",
                    part.part_number,
                    i + 1
                )));
            }
            let Some((etag, len)) = Self::part_record(&dir, part.part_number)? else {
                return Ok(Outcome::Failed(format!(
                    "part {} was never uploaded (or its upload did not finish)",
                    part.part_number
                )));
            };
            if etag != part.etag {
                return Ok(Outcome::Failed(format!(
                    "part {} has etag {etag}, not {}",
                    part.part_number, part.etag
                )));
            }
            let last = i + 1 == parts.len();
            if !last && len != upload.part_size {
                return Ok(Outcome::Failed(format!(
                    "part {} has {len} bytes; every part but the last must have {}",
                    part.part_number, upload.part_size
                )));
            }
            total += len;
        }
        let data_path = dir.join("data");
        let data = OpenOptions::new().write(true).open(&data_path)?;
        data.set_len(upload.body_offset + total)?;
        let version = random_bytes::<16>();
        data.write_all_at(&header(&version, upload.body_offset), 0)?;
        data.sync_all()?;
        drop(data);
        let target = self.object_path(key)?;
        {
            let _key_lock = self.lock(key)?;
            Self::place(&data_path, &target, |from, to| fs::rename(from, to))?;
        }
        // The object is published; the upload's directory is now garbage.
        self.remove_upload_dir(&dir)?;
        Ok(Outcome::Stored {
            etag: etag_of(&version),
        })
    }

    /// Makes an upload's directory disappear at once (rename), then removes it.
    fn remove_upload_dir(&self, dir: &Path) -> io::Result<()> {
        let doomed = self.temp_path("gone");
        match fs::rename(dir, &doomed) {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        fsync_dir(&self.root.join("multipart"))?;
        match fs::remove_dir_all(&doomed) {
            Err(e) if !not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    fn abort(&self, upload_id: &str) -> io::Result<()> {
        let Some((_lock, _, dir)) = self.lock_upload(upload_id)? else {
            return Ok(());
        };
        self.remove_upload_dir(&dir)
    }

    /// Streams an object (or an inclusive range of it) from one open file: a concurrent
    /// replacement or delete does not change what this reader sees.
    pub async fn open_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> io::Result<ObjectStream> {
        let this = self.clone();
        let key = key.to_owned();
        let (opened, first, len) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let opened = this
                .open_object(&key)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, key.clone()))?;
            let (first, len) = clamp(range, opened.size);
            Ok((opened, first, len))
        })
        .await
        .map_err(io::Error::other)??;
        advise_sequential(&opened.file);
        let file = Arc::new(opened.file);
        let start = opened.body_offset + first;
        let chunks = (0..len).step_by(READ_CHUNK).map(move |at| {
            let want = READ_CHUNK.min(usize::try_from(len - at).unwrap_or(READ_CHUNK));
            (start + at, want)
        });
        Ok(Box::pin(
            futures_util::stream::iter(chunks)
                .map(move |(offset, want)| {
                    let reader = file.clone();
                    async move {
                        tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                            let mut buffer = vec![0u8; want];
                            reader.read_exact_at(&mut buffer, offset)?;
                            Ok(Bytes::from(buffer))
                        })
                        .await
                        .map_err(io::Error::other)?
                    }
                })
                .buffered(READS_AHEAD),
        ))
    }
}

/// Tells the kernel the file is read front to back, so that its readahead runs further
/// ahead of the reads. A refusal only leaves the default readahead.
fn advise_sequential(file: &File) {
    #[cfg(target_os = "linux")]
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Sequential);
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// One `List`: a depth-first walk of `objects/` in key order.
struct Walk<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
    limit: usize,
    delimiter: Option<char>,
    listing: Listing,
    done: bool,
}

enum Entry {
    Key,
    Dir(PathBuf),
}

/// The entries of one directory of `objects/` as (key or key prefix, kind), in key order.
fn entries(dir: &Path, base: &str) -> io::Result<Vec<(String, Entry)>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        // A concurrent delete may prune a directory the walk is about to read.
        Err(e) if not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        if is_dir {
            out.push((format!("{base}{name}/"), Entry::Dir(entry.path())));
        } else if let Some(stem) = name.strip_suffix('@') {
            out.push((format!("{base}{stem}"), Entry::Key));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Whether any object lives under `dir`.
fn has_key(dir: &Path) -> io::Result<bool> {
    for (_, entry) in entries(dir, "")? {
        match entry {
            Entry::Key => return Ok(true),
            Entry::Dir(path) => {
                if has_key(&path)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, base: &str) -> io::Result<()> {
        for (key, entry) in entries(dir, base)? {
            if self.done {
                break;
            }
            match entry {
                Entry::Key => self.offer_key(&key),
                Entry::Dir(path) => {
                    // `key` ends with '/': every key below starts with it.
                    if !key.starts_with(self.prefix) && !self.prefix.starts_with(&key) {
                        continue;
                    }
                    if self
                        .start_after
                        .is_some_and(|after| after > key.as_str() && !after.starts_with(&key))
                    {
                        continue;
                    }
                    match self.rolled_up(&key) {
                        Some(common) if key.starts_with(self.prefix) => {
                            let common = common.to_owned();
                            if self.skips_common(&common) || !has_key(&path)? {
                                continue;
                            }
                            self.push(None, Some(common));
                        }
                        _ => self.dir(&path, &key)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// The common prefix `key` rolls up into, if it has the delimiter after the prefix.
    fn rolled_up<'k>(&self, key: &'k str) -> Option<&'k str> {
        let d = self.delimiter?;
        let rest = key.get(self.prefix.len()..)?;
        rest.find(d)
            .map(|i| &key[..self.prefix.len() + i + d.len_utf8()])
    }

    fn skips_common(&self, common: &str) -> bool {
        self.listing
            .common_prefixes
            .last()
            .is_some_and(|last| last == common)
            || self.start_after.is_some_and(|after| common <= after)
    }

    fn offer_key(&mut self, key: &str) {
        if !key.starts_with(self.prefix) || self.start_after.is_some_and(|after| key <= after) {
            return;
        }
        match self.rolled_up(key) {
            Some(common) => {
                if !self.skips_common(common) {
                    let common = common.to_owned();
                    self.push(None, Some(common));
                }
            }
            None => self.push(Some(key.to_owned()), None),
        }
    }

    fn push(&mut self, key: Option<String>, common: Option<String>) {
        if self.listing.keys.len() + self.listing.common_prefixes.len() == self.limit {
            self.listing.truncated = true;
            self.done = true;
            return;
        }
        self.listing.keys.extend(key);
        self.listing.common_prefixes.extend(common);
    }
}
