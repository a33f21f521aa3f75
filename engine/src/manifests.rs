//! Manifest endpoints: GET/HEAD/PUT/DELETE `/v2/<name>/manifests/<reference>`.
//!
//! A manifest is stored as `"<media type>\n"` followed by the exact bytes pushed, under its
//! digest; a tag is a small object naming that digest. The bytes are hashed and validated
//! before anything is written, and the manifest is written before any tag or referrer entry
//! that points at it.

use bytes::{Bytes, BytesMut};
use futures_util::future::try_join_all;
use http::{HeaderValue, Method, StatusCode, header};
use serde::Serialize;

use crate::blobs::accepted;
use crate::context::{Cx, header_value};
use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::manifest::{self, Manifest, ManifestKind};
use crate::names;
use crate::publish::{ensure_in_catalog, read_blob};
use crate::response::{Body, ByteRange, Response};
use crate::route::Reference;

/// Most `?tag=` parameters one PUT may carry (the spec asks for at least 10).
const MAX_TAGS_PER_PUT: usize = 100;

/// A stored manifest: its media type and exact bytes.
pub(crate) struct StoredManifest {
    pub media_type: String,
    pub bytes: Bytes,
}

fn encode_stored(media_type: &str, bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(media_type.len() + 1 + bytes.len());
    out.extend_from_slice(media_type.as_bytes());
    out.extend_from_slice(b"\n");
    out.extend_from_slice(bytes);
    out.freeze()
}

pub(crate) async fn read_stored(
    cx: &Cx,
    name: &str,
    digest: &Digest,
) -> Result<Option<StoredManifest>> {
    let key = layout::manifest(name, digest);
    let Some((_, stored)) = cx.store.get(&key).await? else {
        return Ok(None);
    };
    let Some(newline) = stored.iter().position(|&b| b == b'\n') else {
        return Err(RegistryError::backend(
            "get",
            &key,
            "stored manifest has no media type line",
        ));
    };
    let media_type = String::from_utf8_lossy(&stored[..newline]).into_owned();
    Ok(Some(StoredManifest {
        media_type,
        bytes: stored.slice(newline + 1..),
    }))
}

/// The digest a tag points to, if the tag exists.
pub(crate) async fn resolve_tag(cx: &Cx, name: &str, tag: &str) -> Result<Option<Digest>> {
    let key = layout::tag(name, tag);
    let Some((_, bytes)) = cx.store.get(&key).await? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    Digest::parse(text.trim())
        .map(Some)
        .map_err(|e| RegistryError::backend("get", &key, &format!("corrupt tag record: {e}")))
}

async fn resolve(cx: &Cx, name: &str, reference: &Reference) -> Result<Digest> {
    match reference {
        Reference::Digest(d) => Ok(d.clone()),
        Reference::Tag(tag) => resolve_tag(cx, name, tag)
            .await?
            .ok_or_else(|| RegistryError::manifest_unknown(reference)),
        Reference::Invalid(text) => Err(unknown_invalid_reference(text)),
    }
}

/// The 404 for a GET, HEAD or DELETE by a reference that is neither a tag nor a digest: no
/// manifest can exist under it (see [`Reference::Invalid`]).
fn unknown_invalid_reference(text: &str) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::ManifestUnknown,
        format!(
            "manifest {text:?} unknown to registry: it is neither a digest nor a tag \
             ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}), so no manifest can be stored under it"
        ),
    )
}

/// GET or HEAD.
pub(crate) async fn read(cx: &Cx, name: &str, reference: &Reference) -> Result<Response> {
    let digest = resolve(cx, name, reference).await?;
    let Some(stored) = read_stored(cx, name, &digest).await? else {
        return Err(RegistryError::manifest_unknown(reference));
    };
    let mut response = http::Response::new(Body::Empty);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&stored.media_type));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(stored.bytes.len() as u64),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    if cx.method != Method::HEAD {
        *response.body_mut() = Body::Bytes(stored.bytes);
    }
    Ok(response)
}

fn too_large(limit: usize) -> RegistryError {
    RegistryError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        format!("manifest is larger than this registry's limit of {limit} bytes"),
    )
}

/// Reads the request body whole, refusing more than `limit` bytes. A body that ends before
/// its `Content-Length` (the client stopped sending, or the runtime gave up waiting) is the
/// manifest's failure, not an upload's: `SIZE_INVALID` when a length was declared ("provided
/// length did not match content length"), else `MANIFEST_INVALID`.
async fn read_capped_body(cx: &Cx, limit: usize) -> Result<Bytes> {
    let declared = cx
        .header(header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let mut body = BytesMut::new();
    loop {
        let chunk = match cx.store.read_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(short_body(declared, body.len(), Some(&e.message))),
        };
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if declared.is_some_and(|length| length != body.len() as u64) {
        return Err(short_body(declared, body.len(), None));
    }
    Ok(body.freeze())
}

/// The body ended (`broke_off`: failed, with the reason) after `received` bytes.
fn short_body(declared: Option<u64>, received: usize, broke_off: Option<&str>) -> RegistryError {
    let message = match (declared, broke_off) {
        (Some(length), None) => {
            format!("the manifest body has {received} bytes but its Content-Length is {length}")
        }
        (Some(length), Some(why)) => {
            format!("the manifest body broke off after {received} of its {length} bytes ({why})")
        }
        (None, why) => format!(
            "the manifest body broke off after {received} bytes ({})",
            why.unwrap_or("no reason given")
        ),
    };
    match declared {
        Some(_) => RegistryError::new(StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid, message),
        None => RegistryError::manifest_invalid(message),
    }
}

/// The descriptor the referrers API lists for a manifest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReferrerDescriptor<'a> {
    pub media_type: &'a str,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// PUT: validate, store, then tag and index.
pub(crate) async fn write(cx: &Cx, name: &str, reference: &Reference) -> Result<Response> {
    if let Some(refusal) = reference.refusal() {
        return Err(refusal);
    }
    let mut tags: Vec<String> = Vec::new();
    if let Reference::Tag(tag) = reference {
        tags.push(tag.clone());
    }
    let extra_tags: Vec<&str> = cx.query.all("tag").collect();
    if extra_tags.len() > MAX_TAGS_PER_PUT {
        return Err(RegistryError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::ManifestInvalid,
            format!("at most {MAX_TAGS_PER_PUT} tag parameters are accepted per request"),
        ));
    }
    for tag in &extra_tags {
        if !names::is_valid_tag(tag) {
            return Err(RegistryError::manifest_invalid(format!(
                "tag parameter {tag:?} is not a valid tag"
            )));
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push((*tag).to_owned());
        }
    }
    let bytes = read_capped_body(cx, cx.config.max_manifest_size).await?;
    let algorithm = match reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) | Reference::Invalid(_) => Algorithm::Sha256,
    };
    let digest = Digest::of(algorithm, &bytes);
    if let Reference::Digest(expected) = reference
        && expected != &digest
    {
        return Err(RegistryError::digest_invalid(format!(
            "the manifest's bytes hash to {digest}, not {expected}"
        )));
    }
    let manifest = manifest::parse(cx.header(header::CONTENT_TYPE), &bytes)
        .map_err(RegistryError::manifest_invalid)?;
    check_references(cx, name, &manifest).await?;

    cx.store
        .put_always(
            &layout::manifest(name, &digest),
            encode_stored(&manifest.media_type, &bytes),
        )
        .await?;
    if let Some(subject) = &manifest.subject {
        let descriptor = ReferrerDescriptor {
            media_type: &manifest.media_type,
            digest: digest.to_string(),
            size: bytes.len() as u64,
            artifact_type: manifest.referrer_artifact_type(),
            annotations: manifest.annotations.as_ref(),
        };
        let body = Bytes::from(serde_json::to_vec(&descriptor).unwrap_or_default());
        cx.store
            .put_always(&layout::referrer(name, &subject.digest, &digest), body)
            .await?;
    }
    let digest_text = Bytes::from(digest.to_string());
    try_join_all(tags.iter().map(|tag| {
        cx.store
            .put_always_owned(layout::tag(name, tag), digest_text.clone())
    }))
    .await?;
    ensure_in_catalog(cx, name).await?;

    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/manifests/{digest}")),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(subject) = &manifest.subject {
        headers.insert("oci-subject", header_value(&subject.digest.to_string()));
    }
    if !extra_tags.is_empty() {
        headers.insert("oci-tag", header_value(&extra_tags.join(", ")));
    }
    Ok(response)
}

/// Every blob of an image manifest (but non-distributable layers) and every manifest of an
/// index must already be in the repository, with the size the descriptor claims.
async fn check_references(cx: &Cx, name: &str, manifest: &Manifest) -> Result<()> {
    let unknown = |what: &str, d: &Digest| {
        RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ManifestBlobUnknown,
            format!("{what} {d} is not in repository {name}; push it first"),
        )
    };
    match manifest.kind {
        ManifestKind::Image => {
            let blobs = manifest.config.iter().chain(
                manifest
                    .references
                    .iter()
                    .filter(|d| !d.is_non_distributable()),
            );
            try_join_all(blobs.map(|descriptor| async move {
                let Some(pointer) = read_blob(cx, name, &descriptor.digest).await? else {
                    return Err(unknown("blob", &descriptor.digest));
                };
                if pointer.size != descriptor.size {
                    return Err(RegistryError::manifest_invalid(format!(
                        "descriptor of {} says {} bytes but the blob has {}",
                        descriptor.digest, descriptor.size, pointer.size
                    )));
                }
                Ok(())
            }))
            .await?;
        }
        ManifestKind::Index => {
            try_join_all(manifest.references.iter().map(|descriptor| async move {
                let Some(size) = stored_manifest_size(cx, name, &descriptor.digest).await? else {
                    return Err(unknown("manifest", &descriptor.digest));
                };
                if size != descriptor.size {
                    return Err(RegistryError::manifest_invalid(format!(
                        "descriptor of {} says {} bytes but the manifest has {size}",
                        descriptor.digest, descriptor.size
                    )));
                }
                Ok(())
            }))
            .await?;
        }
    }
    Ok(())
}

/// Room for the media type line of any stored manifest: the longest media type berth accepts
/// ([`manifest::DOCKER_MANIFEST_LIST`]) and its newline.
const MEDIA_TYPE_LINE_MAX: u64 = 64;
const _: () = assert!(manifest::DOCKER_MANIFEST_LIST.len() < MEDIA_TYPE_LINE_MAX as usize);

/// The size of the manifest stored under `digest`, if there is one, read from its first bytes
/// only: an index may list thousands of manifests of up to `max_manifest_size` each, and its
/// check must not read them whole. Every stored manifest is longer than the range read (its
/// media type line and at least `{"schemaVersion":2,"manifests":[]}`).
async fn stored_manifest_size(cx: &Cx, name: &str, digest: &Digest) -> Result<Option<u64>> {
    let key = layout::manifest(name, digest);
    let first_line = ByteRange {
        first: 0,
        last: MEDIA_TYPE_LINE_MAX - 1,
    };
    let Some((meta, head)) = cx.store.get_range(&key, Some(first_line)).await? else {
        return Ok(None);
    };
    let Some(newline) = head.iter().position(|&b| b == b'\n') else {
        return Err(RegistryError::backend(
            "get",
            &key,
            "stored manifest has no media type line",
        ));
    };
    Ok(Some(meta.size.saturating_sub(newline as u64 + 1)))
}

/// DELETE: a tag removes the tag; a digest removes the manifest, its referrer entry and the
/// tags that point to it.
pub(crate) async fn delete(cx: &Cx, name: &str, reference: &Reference) -> Result<Response> {
    let digest = match reference {
        Reference::Tag(tag) => {
            let key = layout::tag(name, tag);
            if cx.store.head(&key).await?.is_none() {
                return Err(RegistryError::manifest_unknown(reference));
            }
            cx.store.delete(&key).await?;
            return Ok(accepted());
        }
        Reference::Digest(digest) => digest,
        Reference::Invalid(text) => return Err(unknown_invalid_reference(text)),
    };
    let Some(stored) = read_stored(cx, name, digest).await? else {
        return Err(RegistryError::manifest_unknown(reference));
    };
    if let Ok(manifest) = manifest::parse(Some(&stored.media_type), &stored.bytes)
        && let Some(subject) = manifest.subject
    {
        cx.store
            .delete(&layout::referrer(name, &subject.digest, digest))
            .await?;
    }
    untag(cx, name, digest).await?;
    cx.store.delete(&layout::manifest(name, digest)).await?;
    Ok(accepted())
}

/// Deletes every tag of the repository that points to `digest`.
async fn untag(cx: &Cx, name: &str, digest: &Digest) -> Result<()> {
    let prefix = layout::tags_prefix(name);
    let mut start_after = None;
    loop {
        let listing = cx
            .store
            .list(&prefix, start_after, cx.config.list_page_size, None)
            .await?;
        let targets = try_join_all(listing.keys.iter().map(|key| cx.store.get(key))).await?;
        for (key, target) in listing.keys.iter().zip(targets) {
            let points_here =
                target.is_some_and(|(_, bytes)| bytes.as_ref() == digest.to_string().as_bytes());
            if points_here {
                cx.store.delete(key).await?;
            }
        }
        if !listing.truncated || listing.keys.is_empty() {
            return Ok(());
        }
        start_after = listing.keys.last().cloned();
    }
}
