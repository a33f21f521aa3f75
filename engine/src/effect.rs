//! Effects: what the engine asks its runtime to do, and the outcomes the runtime reports.
//!
//! An effect is one object-storage operation or one read of the request body. The runtime
//! executes it however its platform does (R2 binding, S3 API, a directory) and reports exactly
//! one [`Outcome`] for it. The contract for each effect is written on its variant: storage
//! semantics are S3's, which R2 and berth's directory backend both follow.

use bytes::Bytes;

use crate::response::ByteRange;

/// Identifies one effect of one transaction; outcomes are matched to effects by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EffectId(pub u64);

/// A precondition on a put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write unconditionally.
    None,
    /// Create only: fail with [`Outcome::PreconditionFailed`] if the key exists
    /// (`If-None-Match: *`).
    IfNoneMatch,
    /// Compare and swap: fail with [`Outcome::PreconditionFailed`] unless the key exists
    /// with exactly this etag (`If-Match: <etag>`).
    IfMatch(String),
}

/// One thing the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Report an object's size and etag: [`Outcome::Found`] or [`Outcome::NotFound`].
    Head { key: String },
    /// Read a small object (a record, a link, a manifest) whole or a range of it:
    /// [`Outcome::Object`] or [`Outcome::NotFound`]. Never used for blob bodies.
    Get {
        key: String,
        range: Option<ByteRange>,
    },
    /// Write an object atomically under a condition: [`Outcome::Stored`] with the new etag,
    /// or [`Outcome::PreconditionFailed`]. A reader sees the old object or the new one, never
    /// a part.
    Put {
        key: String,
        body: Bytes,
        condition: Condition,
    },
    /// Delete an object; deleting a missing key is not an error: [`Outcome::Deleted`].
    Delete { key: String },
    /// List keys starting with `prefix`, in byte order, strictly after `start_after`, at most
    /// `limit` entries (keys plus common prefixes). With a delimiter, keys that contain it after
    /// the prefix are rolled up into common prefixes: [`Outcome::Listed`].
    List {
        prefix: String,
        start_after: Option<String>,
        limit: usize,
        delimiter: Option<char>,
    },
    /// Start a multipart upload to `key`: [`Outcome::MultipartCreated`]. Every part but the
    /// last will be exactly `part_size` bytes, so a backend may place parts at fixed offsets.
    CreateMultipart { key: String, part_size: u64 },
    /// Upload one part of a multipart upload, possibly in a later request or on another
    /// replica than the one that created it: [`Outcome::PartUploaded`], or
    /// [`Outcome::NotFound`] if the upload id is unknown.
    UploadPart {
        key: String,
        upload_id: String,
        part_number: u32,
        body: Bytes,
    },
    /// Assemble the listed parts, in order, into the object `key`: [`Outcome::Stored`], or
    /// [`Outcome::NotFound`] if the upload id is unknown. Parts not listed are discarded.
    CompleteMultipart {
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
    },
    /// Abandon a multipart upload and its parts: [`Outcome::Deleted`] (also for an unknown id).
    AbortMultipart { key: String, upload_id: String },
    /// Read the next chunk of the request body: [`Outcome::BodyChunk`] (any non-zero size),
    /// then [`Outcome::BodyEnd`] once it is exhausted, or [`Outcome::Failed`] if the client's
    /// connection broke.
    ReadBody,
}

/// A part that [`Effect::CompleteMultipart`] assembles.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// Size and version of a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// An opaque version tag that changes on every write; the `If-Match` token.
    pub etag: String,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Full keys, in byte order.
    pub keys: Vec<String>,
    /// Rolled-up prefixes (each ending with the delimiter), in byte order.
    pub common_prefixes: Vec<String>,
    /// More entries follow the last one returned.
    pub truncated: bool,
}

impl Listing {
    /// S3's list semantics over keys in byte order: those starting with `prefix`, strictly
    /// after `start_after`, at most `limit` entries (keys plus common prefixes), keys that
    /// contain `delimiter` after the prefix rolled up into common prefixes. Backends that can
    /// enumerate their keys in order (memory, a directory) answer [`Effect::List`] with it.
    pub fn from_sorted_keys<'a>(
        sorted_keys: impl IntoIterator<Item = &'a str>,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        delimiter: Option<char>,
    ) -> Listing {
        let mut listing = Listing::default();
        let mut count = 0;
        for key in sorted_keys {
            if !key.starts_with(prefix) || start_after.is_some_and(|after| key <= after) {
                continue;
            }
            let rolled = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| &key[..prefix.len() + i + d.len_utf8()])
            });
            if let Some(common) = rolled
                && (listing
                    .common_prefixes
                    .last()
                    .is_some_and(|last| last == common)
                    || start_after.is_some_and(|after| common <= after))
            {
                continue;
            }
            if count == limit {
                listing.truncated = true;
                break;
            }
            count += 1;
            match rolled {
                Some(common) => listing.common_prefixes.push(common.to_owned()),
                None => listing.keys.push(key.to_owned()),
            }
        }
        listing
    }
}

/// What happened when the runtime executed an effect.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    Found(ObjectMeta),
    Object {
        meta: ObjectMeta,
        bytes: Bytes,
    },
    NotFound,
    Stored {
        etag: String,
    },
    PreconditionFailed,
    Deleted,
    Listed(Listing),
    MultipartCreated {
        upload_id: String,
    },
    PartUploaded {
        etag: String,
    },
    BodyChunk(Bytes),
    BodyEnd,
    /// The operation failed in the backend (or, for `ReadBody`, the client went away). The
    /// message is for operators: it reaches the log with the 500's
    /// [`FailureDetail`](crate::FailureDetail), never the client.
    Failed(String),
}

impl Effect {
    /// A short name of the operation, for logs, metrics and error messages.
    pub fn operation(&self) -> &'static str {
        match self {
            Effect::Head { .. } => "head",
            Effect::Get { .. } => "get",
            Effect::Put { .. } => "put",
            Effect::Delete { .. } => "delete",
            Effect::List { .. } => "list",
            Effect::CreateMultipart { .. } => "create-multipart",
            Effect::UploadPart { .. } => "upload-part",
            Effect::CompleteMultipart { .. } => "complete-multipart",
            Effect::AbortMultipart { .. } => "abort-multipart",
            Effect::ReadBody => "read-body",
        }
    }

    /// The storage key the effect addresses, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Effect::Head { key }
            | Effect::Get { key, .. }
            | Effect::Put { key, .. }
            | Effect::Delete { key }
            | Effect::CreateMultipart { key, .. }
            | Effect::UploadPart { key, .. }
            | Effect::CompleteMultipart { key, .. }
            | Effect::AbortMultipart { key, .. } => Some(key),
            Effect::List { prefix, .. } => Some(prefix),
            Effect::ReadBody => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_follows_s3_semantics() {
        let keys = ["a/1", "a/2", "b", "c/x/1", "c/x/2", "c/y", "d"];
        let all = Listing::from_sorted_keys(keys, "", None, 10, Some('/'));
        assert_eq!(all.keys, ["b", "d"]);
        assert_eq!(all.common_prefixes, ["a/", "c/"]);
        assert!(!all.truncated);
        let page = Listing::from_sorted_keys(keys, "c/", None, 2, Some('/'));
        assert_eq!(
            (page.keys, page.common_prefixes, page.truncated),
            (vec!["c/y".to_owned()], vec!["c/x/".to_owned()], false)
        );
        // Start after a common prefix skips everything under it.
        let after = Listing::from_sorted_keys(keys, "", Some("a/"), 10, Some('/'));
        assert_eq!(after.keys, ["b", "d"]);
        let limited = Listing::from_sorted_keys(keys, "", Some("a/2"), 2, None);
        assert_eq!(
            (limited.keys, limited.truncated),
            (vec!["b".to_owned(), "c/x/1".to_owned()], true)
        );
    }
}
