//! Errors as the spec's JSON body with the spec's status.
//!
//! Every failure a transaction can meet ends here. Client mistakes map to the distribution
//! spec's error codes with a message that says what was wrong.
//!
//! A 500 means the server failed, not the client: [`RegistryError::backend`] (a storage
//! operation failed) or [`RegistryError::internal`] (a runtime's own failure). Its two halves
//! go to two audiences (invariant 6):
//! - the client gets the failed operation in general terms ("storing a blob part failed in
//!   the storage backend") and a [`RequestId`], in the message and in `X-Request-Id`;
//! - the operator gets the details, which may name an endpoint, a bucket, an upload id, a
//!   storage key, a path or an OS error: [`RegistryError::into_response_for`] puts them in the
//!   response's extensions as a [`FailureDetail`] carrying the same id, for the runtime's log.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use crate::context::Entropy;
use crate::response::{Body, Response};

/// The header that carries a failed request's [`RequestId`].
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Identifies one request in the operator's log and in the 500 its client gets.
///
/// It is bytes 24..32 of the request's [`Entropy`] (upload ids use bytes 0..16 and writer
/// tokens 16..24, so it reveals neither), written as 16 hex characters. So the engine stays
/// deterministic, and a runtime knows a request's id from the entropy it passed to
/// [`Registry::begin`](crate::Registry::begin) before the engine answers
/// ([`RequestId::from_entropy`]), for its own log lines and its own 500s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub [u8; 8]);

impl RequestId {
    pub fn from_entropy(entropy: &Entropy) -> RequestId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&entropy.0[24..32]);
        RequestId(id)
    }
}

impl core::fmt::Display for RequestId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What went wrong behind a 500, for the operator's log and never for the client: found in
/// the response's extensions (`response.extensions().get::<FailureDetail>()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureDetail {
    /// Also in the response's message and `X-Request-Id`.
    pub request_id: RequestId,
    /// The storage operation (an [`Effect::operation`](crate::Effect::operation) name, or
    /// `open` for streaming a stored object), or what a runtime was doing.
    pub operation: String,
    /// The storage key or prefix the operation addressed; empty if none.
    pub key: String,
    /// The backend's (or runtime's) own words.
    pub reason: String,
}

impl core::fmt::Display for FailureDetail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.key.as_str() {
            "" => write!(f, "{}: {}", self.operation, self.reason),
            key => write!(f, "{} {key}: {}", self.operation, self.reason),
        }
    }
}

/// The operator's half of a 500 until the response is built and the request id known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Internal {
    operation: String,
    key: String,
    reason: String,
}

/// The error codes of the distribution spec, plus `UNKNOWN` (used by the reference registry
/// for server-side failures, which the spec leaves unspecified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

/// One failed request: what the client is told, and with which status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// A `Box<str>`, not a `String`: the error travels in the `Err` of most of the engine's
    /// results, so it is kept small.
    pub message: Box<str>,
    /// Extra response headers (a `Range` on 416, a `WWW-Authenticate` on 401).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// For a 500: what the operator is told (see the module docs).
    internal: Option<Box<Internal>>,
}

impl RegistryError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> RegistryError {
        RegistryError {
            status,
            code,
            message: message.into().into_boxed_str(),
            headers: Vec::new(),
            internal: None,
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> RegistryError {
        self.headers.push((name, value));
        self
    }

    /// A storage operation failed (`operation` as [`Effect::operation`](crate::Effect::operation)
    /// names it, or `open`): the client is told what failed in general terms, derived from
    /// the operation and the kind of key; the key and `reason` are kept for the log.
    pub fn backend(operation: &str, key: &str, reason: &str) -> RegistryError {
        let mut error = RegistryError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            format!(
                "{} failed in the storage backend",
                what_failed(operation, key)
            ),
        );
        error.internal = Some(Box::new(Internal {
            operation: operation.to_owned(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }));
        error
    }

    /// The message with the operator's detail (operation, key, the backend's words), for
    /// reports that only operators read, such as maintenance's.
    pub(crate) fn for_operators(&self) -> String {
        match &self.internal {
            Some(internal) if internal.key.is_empty() => {
                format!("{}: {}", internal.operation, internal.reason)
            }
            Some(internal) => format!(
                "{} {}: {}",
                internal.operation, internal.key, internal.reason
            ),
            None => self.message.to_string(),
        }
    }

    /// A runtime's own failure: the client is told `what` failed ("running the request");
    /// `reason` is kept for the log.
    pub fn internal(what: &str, reason: impl Into<String>) -> RegistryError {
        let mut error = RegistryError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            format!("{what} failed"),
        );
        error.internal = Some(Box::new(Internal {
            operation: what.to_owned(),
            key: String::new(),
            reason: reason.into(),
        }));
        error
    }

    pub fn name_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, message)
    }

    pub fn digest_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, message)
    }

    pub fn manifest_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
    }

    pub fn upload_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            message,
        )
    }

    pub fn upload_unknown() -> RegistryError {
        RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }

    pub fn blob_unknown(digest: &impl core::fmt::Display) -> RegistryError {
        RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BlobUnknown,
            format!("blob {digest} unknown to registry"),
        )
    }

    pub fn manifest_unknown(reference: &impl core::fmt::Display) -> RegistryError {
        RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ManifestUnknown,
            format!("manifest {reference} unknown to registry"),
        )
    }

    pub fn name_unknown(name: &str) -> RegistryError {
        RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            format!("repository {name} not known to registry"),
        )
    }

    pub fn unsupported(message: impl Into<String>) -> RegistryError {
        RegistryError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        )
    }

    /// The error as the response to request `request_id`. For a 500 (see the module docs)
    /// the message ends with the request id, `X-Request-Id` carries it, and the response's
    /// extensions carry the [`FailureDetail`] for the log; any other error is
    /// [`RegistryError::into_response`].
    pub fn into_response_for(mut self, request_id: RequestId) -> Response {
        let Some(internal) = self.internal.take() else {
            return self.into_response();
        };
        self.message = format!("{} (request id {request_id})", self.message).into();
        let mut response = self.into_response();
        response.headers_mut().insert(
            REQUEST_ID_HEADER,
            crate::context::header_value(&request_id.to_string()),
        );
        let Internal {
            operation,
            key,
            reason,
        } = *internal;
        response.extensions_mut().insert(FailureDetail {
            request_id,
            operation,
            key,
            reason,
        });
        response
    }

    /// The error as the spec's `{"errors":[{code,message,detail}]}` response. A 500 built so
    /// carries no request id and no [`FailureDetail`]: use [`RegistryError::into_response_for`].
    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a> {
            errors: [Entry<'a>; 1],
        }
        #[derive(Serialize)]
        struct Entry<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = serde_json::to_vec(&Envelope {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
            }],
        })
        .unwrap_or_default();
        let mut response = http::Response::new(Body::Bytes(Bytes::from(body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        crate::response::set_content_length(&mut response);
        response
    }
}

impl core::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

pub type Result<T, E = RegistryError> = core::result::Result<T, E>;

/// What kind of record a storage key (or listing prefix) holds, in the client's terms. The
/// markers are those of [`crate::layout`]; a repository name never has a component starting
/// with `_`, so they cannot be mistaken for part of a name.
fn record_kind(key: &str) -> Kind {
    if let Some(rest) = key.strip_prefix("_uploads/") {
        return if rest.contains("/tail/") {
            Kind::UploadTail
        } else if rest.ends_with("/state") {
            Kind::UploadState
        } else {
            Kind::Upload
        };
    }
    if key.starts_with("_data/") {
        return Kind::BlobData;
    }
    if key.starts_with("_blobs/") {
        return Kind::BlobPointer;
    }
    if key.starts_with("_catalog/") {
        return Kind::Catalog;
    }
    if key.starts_with("repositories/") {
        for (marker, kind) in [
            ("/_layers/", Kind::BlobLink),
            ("/_manifests/", Kind::Manifest),
            ("/_tags/", Kind::Tag),
            ("/_refs/", Kind::Referrer),
        ] {
            if key.contains(marker) {
                return kind;
            }
        }
    }
    Kind::Other
}

#[derive(Clone, Copy)]
enum Kind {
    UploadState,
    UploadTail,
    Upload,
    BlobData,
    BlobPointer,
    Catalog,
    BlobLink,
    Manifest,
    Tag,
    Referrer,
    Other,
}

/// "storing a blob part", "reading an upload's state": what a failed storage operation was
/// doing, with nothing of the key but its kind.
fn what_failed(operation: &str, key: &str) -> String {
    let kind = record_kind(key);
    let fixed = match operation {
        "create-multipart" => "starting a multipart upload of a blob",
        "upload-part" => "storing a blob part",
        "complete-multipart" => "assembling a blob from its parts",
        "abort-multipart" => "discarding a blob's parts",
        "read-body" => "reading the request body",
        "list" => match kind {
            Kind::UploadState | Kind::UploadTail | Kind::Upload => "listing an upload's records",
            Kind::BlobData => "listing an upload's data",
            Kind::Catalog => "listing the repository catalog",
            Kind::Tag => "listing tags",
            Kind::Referrer => "listing referrers",
            Kind::Manifest => "listing manifests",
            Kind::BlobLink => "listing a repository's blobs",
            Kind::BlobPointer | Kind::Other => "listing stored records",
        },
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    let verb = match operation {
        "head" | "get" | "open" => "reading",
        "put" => "storing",
        "delete" => "deleting",
        _ => "accessing",
    };
    let noun = match kind {
        Kind::UploadState => "an upload's state",
        Kind::UploadTail => "an upload's unfinished part",
        Kind::Upload => "an upload's records",
        Kind::BlobData => "a blob's data",
        Kind::BlobPointer => "a blob's record",
        Kind::Catalog => "the repository catalog",
        Kind::BlobLink => "a repository's link to a blob",
        Kind::Manifest => "a manifest",
        Kind::Tag => "a tag",
        Kind::Referrer => "a referrer",
        Kind::Other => "a stored record",
    };
    format!("{verb} {noun}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(operation: &str, key: &str) -> (Box<str>, Response) {
        let error = RegistryError::backend(
            operation,
            key,
            "http://127.0.0.1:9000/bucket/prefix/_data/u/w?uploadId=XYZ: No space left on device",
        );
        let id = RequestId(*b"\x01\x23\x45\x67\x89\xab\xcd\xef");
        let response = error.clone().into_response_for(id);
        (error.message, response)
    }

    #[test]
    fn a_500_names_the_operation_in_general_terms_and_keeps_the_details_for_the_log() {
        for (operation, key, said) in [
            ("upload-part", "_data/u1/w1", "storing a blob part"),
            ("get", "_uploads/u1/state", "reading an upload's state"),
            ("put", "_uploads/u1/state", "storing an upload's state"),
            (
                "put",
                "_uploads/u1/tail/00000000000000000005-w1",
                "storing an upload's unfinished part",
            ),
            ("list", "_uploads/u1/", "listing an upload's records"),
            (
                "complete-multipart",
                "_data/u1/w1",
                "assembling a blob from its parts",
            ),
            ("open", "_data/u1/w1", "reading a blob's data"),
            ("put", "_blobs/sha256/ab", "storing a blob's record"),
            (
                "get",
                "repositories/a/b/_manifests/sha256/ab",
                "reading a manifest",
            ),
            ("list", "repositories/a/_tags/", "listing tags"),
            (
                "get",
                "repositories/a/_layers/sha256/ab",
                "reading a repository's link to a blob",
            ),
            ("list", "_catalog/", "listing the repository catalog"),
            ("head", "elsewhere", "reading a stored record"),
        ] {
            let (message, response) = failed(operation, key);
            assert_eq!(&*message, format!("{said} failed in the storage backend"));
            let Body::Bytes(body) = response.body() else {
                panic!("an error has a body")
            };
            let body = String::from_utf8_lossy(body);
            assert!(
                body.contains(&format!(
                    "{said} failed in the storage backend (request id 0123456789abcdef)"
                )),
                "{body}"
            );
            for secret in [key, "127.0.0.1", "bucket", "uploadId", "XYZ", "No space"] {
                assert!(!body.contains(secret), "{secret:?} in {body}");
            }
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(response.headers()[REQUEST_ID_HEADER], "0123456789abcdef");
            let detail = response.extensions().get::<FailureDetail>().unwrap();
            assert_eq!(detail.request_id.to_string(), "0123456789abcdef");
            assert_eq!(
                (detail.operation.as_str(), detail.key.as_str()),
                (operation, key)
            );
            assert!(detail.to_string().contains("No space left on device"));
        }
    }

    /// Through a whole transaction: the id is the request's, and the detail reaches the
    /// runtime in the response's extensions.
    #[test]
    fn a_failed_transaction_hands_the_runtime_its_detail_under_the_request_id() {
        use crate::effect::{Effect, Outcome};
        let mut driver =
            crate::testing::Driver::new(crate::Registry::new(crate::Config::default()).unwrap());
        driver.intercept(|effect, _| match effect {
            Effect::Put { key, .. } if key.starts_with("_uploads/") => Some(Outcome::Failed(
                "PUT https://acct.r2.cloudflarestorage.com/bkt/_uploads/x/state: 503".into(),
            )),
            _ => None,
        });
        let response = driver.send(crate::testing::request(
            "POST",
            "/v2/app/blobs/uploads/",
            &[],
            Vec::new(),
        ));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8_lossy(response.body()).into_owned();
        let id = response.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            body.contains(&format!(
                "storing an upload's state failed in the storage backend (request id {id})"
            )),
            "{body}"
        );
        assert!(!body.contains("r2.cloudflarestorage") && !body.contains("_uploads"));
        let detail = response.extensions().get::<FailureDetail>().unwrap();
        assert_eq!(detail.request_id.to_string(), id);
        assert_eq!(detail.operation, "put");
        assert!(detail.key.starts_with("_uploads/") && detail.key.ends_with("/state"));
        assert!(detail.reason.contains("r2.cloudflarestorage.com"));
    }

    #[test]
    fn client_errors_carry_no_request_id_or_detail() {
        let response = RegistryError::upload_unknown().into_response_for(RequestId([1; 8]));
        assert!(response.headers().get(REQUEST_ID_HEADER).is_none());
        assert!(response.extensions().get::<FailureDetail>().is_none());
    }

    #[test]
    fn the_request_id_is_the_last_eight_bytes_of_the_entropy() {
        let mut entropy = [0u8; 32];
        entropy[24..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        assert_eq!(
            RequestId::from_entropy(&Entropy(entropy)).to_string(),
            "deadbeef00010203"
        );
    }
}
