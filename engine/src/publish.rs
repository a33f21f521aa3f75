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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobPointer {
    pub size: u64,
    pub data: String,
}

impl BlobPointer {
    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<BlobPointer> {
        serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::backend("get", key, &format!("corrupt blob pointer: {e}")))
    }
}

/// The blob pointer at the content address, if the digest was ever published.
pub(crate) async fn read_pointer(cx: &Cx, digest: &Digest) -> Result<Option<BlobPointer>> {
    let key = layout::blob_pointer(digest);
    match cx.store.get(&key).await? {
        Some((_, bytes)) => BlobPointer::decode(&key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The repository's link to a blob, if the blob is in the repository.
pub(crate) async fn read_link(cx: &Cx, name: &str, digest: &Digest) -> Result<Option<BlobPointer>> {
    let key = layout::blob_link(name, digest);
    match cx.store.get(&key).await? {
        Some((_, bytes)) => BlobPointer::decode(&key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Publishes verified data at its content address (first writer wins; a later duplicate's
/// data is deleted) and links it into the repository.
pub(crate) async fn publish(
    cx: &Cx,
    name: &str,
    digest: &Digest,
    pointer: BlobPointer,
) -> Result<()> {
    let key = layout::blob_pointer(digest);
    let pointer = match cx
        .store
        .put(&key, pointer.encode(), Condition::IfNoneMatch)
        .await?
    {
        Written::Stored { .. } => pointer,
        Written::PreconditionFailed => {
            let Some(existing) = read_pointer(cx, digest).await? else {
                return Err(RegistryError::backend(
                    "get",
                    &key,
                    "pointer vanished after a failed create",
                ));
            };
            if existing.data != pointer.data {
                cx.store.delete(&pointer.data).await?;
            }
            existing
        }
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
        .put_always(&layout::blob_link(name, digest), pointer.encode())
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
