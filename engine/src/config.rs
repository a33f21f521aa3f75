//! Configuration of a [`crate::Registry`].

use std::sync::Arc;

use crate::auth::Authenticator;

/// Smallest part size: S3's and R2's minimum for every multipart part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part size: S3's and R2's maximum part size.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's and R2's maximum number of parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

/// How the engine behaves. Every field has a production default ([`Config::default`]).
#[derive(Clone, Debug)]
pub struct Config {
    /// Size of every multipart part but the last, in bytes, between [`MIN_PART_SIZE`] and
    /// [`MAX_PART_SIZE`]. The largest blob is about `part_size * 10_000`: 16 MiB gives 156 GiB.
    /// Memory per in-flight upload is bounded by one part. Advertised as
    /// `OCI-Chunk-Min-Length`.
    pub part_size: u64,
    /// Largest manifest accepted, in bytes; larger ones get 413.
    pub max_manifest_size: usize,
    /// Seconds after its last activity that an unfinished upload is removed by maintenance.
    pub upload_expiry_secs: u64,
    /// Mount a blob that exists anywhere in the registry when a mount request names no `from`
    /// (or a `from` that lacks it). Off when repositories must not learn of each other's blobs.
    pub mount_without_from: bool,
    /// Blob pointers each maintenance pass checks for data that is gone (see
    /// `maintenance`), resuming where the last pass stopped; 0 turns the check off. Each check
    /// costs two storage reads.
    pub blob_checks_per_pass: usize,
    /// Page size of the referrers API; more referrers are paged with `Link`.
    pub referrers_page_size: usize,
    /// Page size of `_catalog` and tag lists when the client gives no `n`, and the largest `n`
    /// honoured.
    pub list_page_size: usize,
    /// Who may do what. `None` (the default): no authentication, every request is allowed.
    /// `Some`: every request is authenticated and authorized before it is routed (see
    /// [`crate::auth`] and "Authentication" in the crate docs); an [`Authenticator`] built from
    /// an [`AuthConfig`](crate::auth::AuthConfig) with nothing configured refuses everything.
    pub auth: Option<Arc<Authenticator>>,
}

/// Equal when every setting is, and both have no authenticator or the same one (by pointer:
/// keys and password hashes are not compared).
impl PartialEq for Config {
    fn eq(&self, other: &Config) -> bool {
        self.part_size == other.part_size
            && self.max_manifest_size == other.max_manifest_size
            && self.upload_expiry_secs == other.upload_expiry_secs
            && self.mount_without_from == other.mount_without_from
            && self.blob_checks_per_pass == other.blob_checks_per_pass
            && self.referrers_page_size == other.referrers_page_size
            && self.list_page_size == other.list_page_size
            && match (&self.auth, &other.auth) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Config {}

impl Default for Config {
    fn default() -> Config {
        Config {
            part_size: 16 * 1024 * 1024,
            max_manifest_size: 4 * 1024 * 1024,
            upload_expiry_secs: 7 * 24 * 3600,
            mount_without_from: true,
            blob_checks_per_pass: 1000,
            referrers_page_size: 500,
            list_page_size: 1000,
            auth: None,
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(ConfigError(format!(
                "part size {} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes (the S3/R2 multipart limits)",
                self.part_size
            )));
        }
        if usize::try_from(self.part_size).is_err() {
            return Err(ConfigError(format!(
                "part size {} does not fit this platform's memory",
                self.part_size
            )));
        }
        if self.max_manifest_size == 0 {
            return Err(ConfigError("manifest size limit must be positive".into()));
        }
        if self.referrers_page_size == 0 || self.list_page_size == 0 {
            return Err(ConfigError("page sizes must be positive".into()));
        }
        Ok(())
    }
}
