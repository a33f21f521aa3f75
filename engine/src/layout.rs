//! The storage key layout: berth's on-disk format.
//!
//! This layout is a compatibility promise: a bucket written by one version of berth must be
//! readable by the next. Change it only with a migration.
//!
//! ```text
//! _blobs/<alg>/<hex>                               blob pointer: {"size":N,"data":"<data key>"}
//!                                                  written If-None-Match: *, after the bytes
//!                                                  were verified to hash to <alg>:<hex>;
//!                                                  replaced (If-Match) only when its data is
//!                                                  gone; `"lost":true` once maintenance found
//!                                                  its data missing
//! _data/<upload-id>/<writer>                       blob bytes as uploaded (one put, or the
//!                                                  target of a multipart upload)
//! _uploads/<upload-id>/state                       upload state record (JSON), updated If-Match
//! _uploads/<upload-id>/tail/<offset>-<writer>      bytes received that do not fill a part yet
//! _catalog/<name>                                  repository index entry (empty object)
//! _maintenance/blob-check                          where maintenance's blob check goes on
//!                                                  (JSON: {"after": <last pointer key>})
//! repositories/<name>/_layers/<alg>/<hex>          blob link: a copy of the blob pointer as
//!                                                  published; says the repository holds the
//!                                                  blob (reads follow the pointer itself)
//! repositories/<name>/_manifests/<alg>/<hex>       manifest: "<media type>\n" + exact bytes
//! repositories/<name>/_tags/<tag>                  tag: the manifest digest it points to
//! repositories/<name>/_refs/<alg>/<hex>/<alg>-<hex>
//!                                                  referrer descriptor (JSON) of the manifest
//!                                                  <alg>-<hex> whose subject is <alg>:<hex>
//! ```
//!
//! Why it is shaped so:
//! - Blob bytes never move. The R2 Workers binding has no copy, and re-putting a 100 GB blob
//!   to a content address is not an option; instead a small pointer is published at the content
//!   address once the digest is verified (invariant 1). The pointer is written create-only, so
//!   the first verified upload of a digest wins and later ones are dropped.
//! - Each writer of an upload puts its bytes under a key of its own (`<writer>`), so two racing
//!   requests on one upload can never overwrite each other's data.
//! - Per-repository links, tags and referrers live under the repository, so listing tags or
//!   referrers reads one prefix, and `_catalog` reads its own index: no whole-bucket scans.
//! - Repository names, tags and digests are validated before they reach a key (see
//!   [`crate::names`]); no name component may start with `_`, so names never collide with
//!   berth's own keys, and `..` or `%` never reach storage.
//! - Keys stay short: S3 and R2 allow 1024 bytes, but some S3 servers keep per-object files
//!   named after the whole key (s3s-fs, used in CI, fails above about 167 bytes). The longest
//!   key is a referrer entry of a 255-character name with sha512 digests,
//!   `repositories/<255>/_refs/sha512/<128>/sha512-<128>`: 546 bytes, plus an S3 prefix. Each
//!   key segment is at most 250 bytes (a name component: [`crate::names::MAX_COMPONENT_LEN`];
//!   a tag: 128; a hex digest: 128), which the directory backend needs, since it stores every
//!   segment as a file or directory name.
//! - Keys sort in byte order within a prefix, which is the order the spec wants for tags
//!   (Go's `sort.Strings`) and the order `_catalog` pages in.

use crate::digest::Digest;

pub(crate) const BLOB_POINTERS_PREFIX: &str = "_blobs/";

pub(crate) const BLOB_CHECK_CURSOR: &str = "_maintenance/blob-check";

pub(crate) fn blob_pointer(digest: &Digest) -> String {
    format!("_blobs/{}/{}", digest.algorithm(), digest.hex())
}

pub(crate) fn upload_data(upload_id: &str, writer: &str) -> String {
    format!("_data/{upload_id}/{writer}")
}

pub(crate) fn upload_data_prefix(upload_id: &str) -> String {
    format!("_data/{upload_id}/")
}

pub(crate) const UPLOADS_PREFIX: &str = "_uploads/";

pub(crate) fn upload_prefix(upload_id: &str) -> String {
    format!("_uploads/{upload_id}/")
}

pub(crate) fn upload_state(upload_id: &str) -> String {
    format!("_uploads/{upload_id}/state")
}

pub(crate) fn upload_tail(upload_id: &str, offset: u64, writer: &str) -> String {
    format!("_uploads/{upload_id}/tail/{offset:020}-{writer}")
}

pub(crate) const CATALOG_PREFIX: &str = "_catalog/";

pub(crate) fn catalog_entry(name: &str) -> String {
    format!("{CATALOG_PREFIX}{name}")
}

pub(crate) fn blob_link(name: &str, digest: &Digest) -> String {
    format!(
        "repositories/{name}/_layers/{}/{}",
        digest.algorithm(),
        digest.hex()
    )
}

pub(crate) fn manifest(name: &str, digest: &Digest) -> String {
    format!(
        "repositories/{name}/_manifests/{}/{}",
        digest.algorithm(),
        digest.hex()
    )
}

pub(crate) fn tags_prefix(name: &str) -> String {
    format!("repositories/{name}/_tags/")
}

pub(crate) fn tag(name: &str, tag: &str) -> String {
    format!("repositories/{name}/_tags/{tag}")
}

pub(crate) fn referrers_prefix(name: &str, subject: &Digest) -> String {
    format!(
        "repositories/{name}/_refs/{}/{}/",
        subject.algorithm(),
        subject.hex()
    )
}

pub(crate) fn referrer(name: &str, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}{}-{}",
        referrers_prefix(name, subject),
        referrer.algorithm(),
        referrer.hex()
    )
}
