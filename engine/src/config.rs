//! Configuration of a [`crate::Registry`].

/// Smallest part size: S3's and R2's minimum for every multipart part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part size: S3's and R2's maximum part size.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's and R2's maximum number of parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

/// How the engine behaves. Every field has a production default ([`Config::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Size of every multipart part but the last, in bytes, between [`MIN_PART_SIZE`] and
    /// [`MAX_PART_SIZE`]. The largest blob is about `part_size * 10_000`: 16 MiB gives 160 GiB.
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
    /// Page size of the referrers API; more referrers are paged with `Link`.
    pub referrers_page_size: usize,
    /// Page size of `_catalog` and tag lists when the client gives no `n`, and the largest `n`
    /// honoured.
    pub list_page_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            part_size: 16 * 1024 * 1024,
            max_manifest_size: 4 * 1024 * 1024,
            upload_expiry_secs: 7 * 24 * 3600,
            mount_without_from: true,
            referrers_page_size: 500,
            list_page_size: 1000,
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
