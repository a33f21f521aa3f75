//! Request routing: which endpoint of the spec a request addresses.
//!
//! Repository names contain `/`, so the path is read from its end: the last segments name the
//! endpoint (`manifests/<ref>`, `blobs/<digest>`, `blobs/uploads/<id>`, `tags/list`,
//! `referrers/<digest>`), and everything before them is the name, which must then match the
//! spec's grammar. Nothing that fails validation reaches a storage key.

use http::{Method, StatusCode};

use crate::digest::{Digest, DigestError};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::names;

/// A manifest reference: a tag or a digest, or text in its place that is neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
    /// Neither a tag nor a digest (e.g. `.INVALID_MANIFEST_NAME`, `sha256:zz`): the spec says
    /// a reference "MUST NOT be in any other format", so nothing can ever be stored under it.
    /// A GET, HEAD or DELETE finds nothing there: 404 `MANIFEST_UNKNOWN`, the only failure the
    /// spec's endpoint table lists for a manifest GET or HEAD (and what the reference registry
    /// and the official conformance suite do). A PUT to it is a malformed request: 400, from
    /// [`Reference::refusal`]. Routing it like any reference also lets authentication answer
    /// first, as it does for a tag that does not exist.
    Invalid(String),
}

impl Reference {
    /// Reads the last path segment of a manifest URL.
    pub fn parse(text: &str) -> Reference {
        if text.contains(':') {
            match Digest::parse(text) {
                Ok(digest) => Reference::Digest(digest),
                Err(_) => Reference::Invalid(text.to_owned()),
            }
        } else if names::is_valid_tag(text) {
            Reference::Tag(text.to_owned())
        } else {
            Reference::Invalid(text.to_owned())
        }
    }

    /// Why a manifest cannot be pushed to an [`Reference::Invalid`] reference (400:
    /// `DIGEST_INVALID` or `UNSUPPORTED` for a digest-shaped one, `MANIFEST_INVALID` for the
    /// rest); `None` for a tag or a digest.
    pub fn refusal(&self) -> Option<RegistryError> {
        let Reference::Invalid(text) = self else {
            return None;
        };
        Some(if text.contains(':') {
            match parse_digest(text) {
                Err(e) => e,
                Ok(_) => RegistryError::digest_invalid(format!("{text:?} is not a digest")),
            }
        } else {
            RegistryError::manifest_invalid(format!(
                "{text:?} is neither a digest nor a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}})"
            ))
        })
    }
}

impl core::fmt::Display for Reference {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reference::Tag(t) | Reference::Invalid(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// The endpoint a request addresses, with its path parameters validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/` (end-1).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
    Manifest { name: String, reference: Reference },
    /// `/v2/<name>/blobs/<digest>` (end-2, end-10).
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/blobs/uploads/` (end-4, end-11).
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>` (end-5, end-6, end-13, end-14).
    Upload { name: String, id: String },
    /// `/v2/<name>/tags/list` (end-8).
    Tags { name: String },
    /// `/v2/<name>/referrers/<digest>` (end-12).
    Referrers { name: String, digest: Digest },
}

impl Route {
    /// The repository the route addresses, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// A low-cardinality label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } => "upload-start",
            Route::Upload { .. } => "upload",
            Route::Tags { .. } => "tags",
            Route::Referrers { .. } => "referrers",
        }
    }

    /// Most bytes of request body the engine holds in memory at once while it serves `head`
    /// on this route: one part for a request that carries upload bytes (a `PATCH` or `PUT` on
    /// an upload, a monolithic `POST ?digest=`), the manifest for a manifest `PUT`, nothing
    /// for anything else (the engine reads no body, or only a bounded token form). A runtime
    /// that keeps uploads within a memory budget reserves this much before it lets the
    /// request's body in.
    ///
    /// A `Content-Length` lowers it only where nothing else is buffered with the body: a new
    /// upload's `POST` and a manifest `PUT`. A `PATCH` or `PUT` on an existing upload may also
    /// carry on the bytes the previous request left short of a part (its tail), which the
    /// head does not tell. While those are copied into the part, the two coexist for a moment.
    pub fn body_memory(&self, head: &http::request::Parts, config: &crate::Config) -> u64 {
        let declared = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let at_most = |limit: u64| declared.map_or(limit, |length| length.min(limit));
        match (self, &head.method) {
            (Route::Upload { .. }, &Method::PATCH | &Method::PUT) => config.part_size,
            (Route::UploadStart { .. }, &Method::POST)
                if Query::parse(head.uri.query()).get("digest").is_some() =>
            {
                at_most(config.part_size)
            }
            (Route::Manifest { .. }, &Method::PUT) => at_most(config.max_manifest_size as u64),
            _ => 0,
        }
    }

    /// Which methods the route answers.
    pub fn allowed_methods(&self) -> &'static [Method] {
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        match self {
            Route::Base | Route::Catalog | Route::Tags { .. } | Route::Referrers { .. } => READ,
            Route::Manifest { .. } => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Route::Blob { .. } => &[Method::GET, Method::HEAD, Method::DELETE],
            Route::UploadStart { .. } => &[Method::POST],
            Route::Upload { .. } => &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE],
        }
    }
}

fn not_found(path: &str) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NameUnknown,
        format!("no endpoint of the distribution API at {path}"),
    )
}

fn parse_name(segments: &[&str]) -> Result<String> {
    let name = segments.join("/");
    if names::is_valid_repository_name(&name) {
        Ok(name)
    } else {
        Err(RegistryError::name_invalid(format!(
            "invalid repository name {name:?}: names are lowercase path components \
             [a-z0-9]+ joined by '.', '_', '__' or '-', separated by '/', at most {} characters \
             and at most {} in each component",
            names::MAX_NAME_LEN,
            names::MAX_COMPONENT_LEN
        )))
    }
}

pub(crate) fn parse_digest(text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|e| match e {
        DigestError::UnsupportedAlgorithm(_) => RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unsupported,
            format!("{text:?}: {e}"),
        ),
        _ => RegistryError::digest_invalid(format!("{text:?}: {e}")),
    })
}

/// Routes a request path (without its query).
pub fn route(path: &str) -> Result<Route> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Err(not_found(path));
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Err(not_found(path));
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    // Longest endpoint shape first: `blobs/uploads/<id>` before `blobs/<digest>`.
    if n > 3 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
        let name = parse_name(&segments[..n - 3])?;
        let id = segments[n - 1];
        if id.is_empty() {
            return Ok(Route::UploadStart { name });
        }
        if !names::is_valid_upload_id(id) {
            return Err(RegistryError::upload_unknown());
        }
        return Ok(Route::Upload {
            name,
            id: id.to_owned(),
        });
    }
    if n > 2 {
        let name_segments = &segments[..n - 2];
        match (segments[n - 2], segments[n - 1]) {
            ("blobs", "uploads") => {
                return Ok(Route::UploadStart {
                    name: parse_name(name_segments)?,
                });
            }
            ("manifests", reference) => {
                let name = parse_name(name_segments)?;
                return Ok(Route::Manifest {
                    name,
                    reference: Reference::parse(reference),
                });
            }
            ("blobs", digest) => {
                let name = parse_name(name_segments)?;
                return Ok(Route::Blob {
                    name,
                    digest: parse_digest(digest)?,
                });
            }
            ("tags", "list") => {
                return Ok(Route::Tags {
                    name: parse_name(name_segments)?,
                });
            }
            ("referrers", digest) => {
                let name = parse_name(name_segments)?;
                return Ok(Route::Referrers {
                    name,
                    digest: parse_digest(digest)?,
                });
            }
            _ => {}
        }
    }
    Err(not_found(path))
}

/// The decoded query parameters of a request, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Removes every value of `key`.
    pub(crate) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(method: &str, uri: &str, content_length: Option<u64>) -> u64 {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(length) = content_length {
            request = request.header(http::header::CONTENT_LENGTH, length);
        }
        let (head, ()) = request.body(()).unwrap().into_parts();
        let config = crate::Config {
            part_size: 8 << 20,
            max_manifest_size: 1 << 20,
            ..crate::Config::default()
        };
        route(head.uri.path()).unwrap().body_memory(&head, &config)
    }

    #[test]
    fn requests_that_carry_blob_bytes_may_buffer_a_part_and_manifests_their_size() {
        let upload = "/v2/a/b/blobs/uploads/0123456789abcdef0123456789abcdef";
        assert_eq!(memory("PATCH", upload, Some(10)), 8 << 20);
        assert_eq!(
            memory("PUT", &format!("{upload}?digest=sha256:x"), Some(0)),
            8 << 20
        );
        assert_eq!(memory("GET", upload, None), 0);
        assert_eq!(memory("DELETE", upload, None), 0);
        let start = "/v2/a/b/blobs/uploads/";
        assert_eq!(
            memory("POST", &format!("{start}?digest=sha256:x"), None),
            8 << 20
        );
        assert_eq!(
            memory("POST", &format!("{start}?digest=sha256:x"), Some(5)),
            5
        );
        assert_eq!(memory("POST", start, Some(5)), 0);
        assert_eq!(
            memory("POST", &format!("{start}?mount=sha256:x&from=c"), None),
            0
        );
        assert_eq!(memory("PUT", "/v2/a/manifests/v1", None), 1 << 20);
        assert_eq!(memory("PUT", "/v2/a/manifests/v1", Some(700)), 700);
        assert_eq!(memory("GET", "/v2/a/manifests/v1", None), 0);
        assert_eq!(memory("GET", "/v2/", None), 0);
    }
}
