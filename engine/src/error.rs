//! Errors as the spec's JSON body with the spec's status.
//!
//! Every failure a transaction can meet ends here. Client mistakes map to the distribution
//! spec's error codes with a message that says what was wrong; a 500 is produced only by
//! [`RegistryError::backend`], and its message names the storage operation and key that failed.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use crate::response::{Body, Response};

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
    pub message: String,
    /// Extra response headers (a `Range` on 416, a `WWW-Authenticate` on 401).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl RegistryError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> RegistryError {
        RegistryError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> RegistryError {
        self.headers.push((name, value));
        self
    }

    /// A storage backend failed; the message says which operation on which key.
    pub fn backend(operation: &str, key: &str, reason: &str) -> RegistryError {
        RegistryError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            format!("storage backend failed: {operation} {key}: {reason}"),
        )
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

    /// The error as the spec's `{"errors":[{code,message,detail}]}` response.
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
