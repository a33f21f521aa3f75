//! Making verified blobs readable: the content pointer, repository links and the catalog.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::context::{Cx, header_value};
use crate::digest::Digest;
use crate::effect::Condition;
use crate::error::{RegistryError, Result};
use crate::layout;
use crate::response::{Body, Response};
use crate::store::Written;

/// Where a verified blob's bytes are, and how many there are. Stored at the content address
/// and copied into every repository link.
///
/// The pointer at the content address is the one truth about where a blob's bytes are: reads
/// follow it, and a repository link only says that the repository holds the blob. So a pointer
/// that is repaired (see [`publish`]) repairs the blob in every repository at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobPointer {
    pub size: u64,
    pub data: String,
    /// Set by maintenance on a pointer whose data it found missing (lost by a berth before
    /// 0.1.1, or removed from the bucket by hand): the blob reads as absent, so clients push it
    /// again, and the next verified upload of the digest replaces the pointer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

impl BlobPointer {
    pub(crate) fn new(size: u64, data: String) -> BlobPointer {
        BlobPointer {
            size,
            data,
            lost: false,
        }
    }

    pub(crate) fn encode(&self) -> Result<Bytes> {
        serde_json::to_vec(self).map(Bytes::from).map_err(|e| {
            RegistryError::backend("put", &self.data, &format!("encoding a blob pointer: {e}"))
        })
    }

    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<BlobPointer> {
        serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::backend("get", key, &format!("corrupt blob pointer: {e}")))
    }
}

/// The blob pointer at the content address and its etag, if the digest was ever published
/// (lost or not).
pub(crate) async fn read_stored_pointer(
    cx: &Cx,
    digest: &Digest,
) -> Result<Option<(BlobPointer, String)>> {
    let key = layout::blob_pointer(digest);
    match cx.store.get(&key).await? {
        Some((meta, bytes)) => Ok(Some((BlobPointer::decode(&key, &bytes)?, meta.etag))),
        None => Ok(None),
    }
}

/// The blob pointer at the content address, if the digest is published and not lost.
pub(crate) async fn read_pointer(cx: &Cx, digest: &Digest) -> Result<Option<BlobPointer>> {
    Ok(read_stored_pointer(cx, digest)
        .await?
        .map(|(pointer, _)| pointer)
        .filter(|pointer| !pointer.lost))
}

/// The repository's link to a blob, if the blob is in the repository.
pub(crate) async fn read_link(cx: &Cx, name: &str, digest: &Digest) -> Result<Option<BlobPointer>> {
    let key = layout::blob_link(name, digest);
    match cx.store.get(&key).await? {
        Some((_, bytes)) => BlobPointer::decode(&key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The blob as repository `name` serves it: linked into the repository, with its bytes where
/// the content address's pointer says. Both are read at once.
pub(crate) async fn read_blob(cx: &Cx, name: &str, digest: &Digest) -> Result<Option<BlobPointer>> {
    let (link, pointer) =
        futures_util::future::try_join(read_link(cx, name, digest), read_pointer(cx, digest))
            .await?;
    Ok(link.and(pointer))
}

/// How often publication retries when the pointer changes between reading and replacing it.
const PUBLISH_ATTEMPTS: usize = 4;

/// Publishes verified data at its content address and links it into the repository.
///
/// The first verified upload of a digest wins; a later duplicate's data is deleted, unless the
/// pointer already there names data that is gone (lost, or marked lost by maintenance): then
/// this upload's data replaces it, with `If-Match`, so a re-push repairs the blob. Idempotent:
/// publishing the same data twice (a retried close, maintenance finishing a crashed one) is
/// harmless.
pub(crate) async fn publish(
    cx: &Cx,
    name: &str,
    digest: &Digest,
    pointer: BlobPointer,
) -> Result<()> {
    let key = layout::blob_pointer(digest);
    let body = pointer.encode()?;
    let mut published = None;
    for _ in 0..PUBLISH_ATTEMPTS {
        if let Written::Stored { .. } = cx
            .store
            .put(&key, body.clone(), Condition::IfNoneMatch)
            .await?
        {
            published = Some(pointer.clone());
            break;
        }
        let Some((existing, etag)) = read_stored_pointer(cx, digest).await? else {
            continue; // removed in between: create it again
        };
        if !existing.lost {
            if existing.data == pointer.data {
                published = Some(existing);
                break;
            }
            if cx.store.head(&existing.data).await?.is_some() {
                // A duplicate of a published blob: ours is referenced by nothing.
                cx.store.delete(&pointer.data).await?;
                published = Some(existing);
                break;
            }
        }
        if let Written::Stored { .. } = cx
            .store
            .put(&key, body.clone(), Condition::IfMatch(etag))
            .await?
        {
            published = Some(pointer.clone());
            break;
        }
    }
    let Some(pointer) = published else {
        return Err(RegistryError::backend(
            "put",
            &key,
            "the blob pointer kept changing while it was being published",
        ));
    };
    link(cx, name, digest, &pointer).await
}

/// Links a published blob into a repository.
pub(crate) async fn link(
    cx: &Cx,
    name: &str,
    digest: &Digest,
    pointer: &BlobPointer,
) -> Result<()> {
    cx.store
        .put_always(&layout::blob_link(name, digest), pointer.encode()?)
        .await?;
    ensure_in_catalog(cx, name).await
}

/// Adds the repository to the `_catalog` index (a no-op if it is there).
pub(crate) async fn ensure_in_catalog(cx: &Cx, name: &str) -> Result<()> {
    cx.store
        .put(
            &layout::catalog_entry(name),
            Bytes::new(),
            Condition::IfNoneMatch,
        )
        .await?;
    Ok(())
}

/// `201 Created` for a blob now readable at `/v2/<name>/blobs/<digest>`.
pub(crate) fn created_response(name: &str, digest: &Digest) -> Response {
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/{digest}")),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}
