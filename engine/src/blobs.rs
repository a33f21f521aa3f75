//! Blob reads (with `Range`) and deletes.

use http::{HeaderValue, Method, StatusCode, header};

use crate::context::{Cx, header_value};
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::publish::read_blob;
use crate::range::{RangeRequest, parse_range};
use crate::response::{Body, Response};

/// GET or HEAD `/v2/<name>/blobs/<digest>`: the body streams from the stored object.
pub(crate) async fn read(cx: &Cx, name: &str, digest: &Digest) -> Result<Response> {
    let Some(pointer) = read_blob(cx, name, digest).await? else {
        return Err(RegistryError::blob_unknown(digest));
    };
    let size = pointer.size;
    let head = cx.method == Method::HEAD;
    let mut response = http::Response::new(Body::Empty);
    let mut status = StatusCode::OK;
    let mut body = Body::Empty;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    match parse_range(cx.header(header::RANGE), size) {
        RangeRequest::Whole => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            if !head {
                body = Body::Object {
                    key: pointer.data,
                    range: None,
                };
            }
        }
        RangeRequest::Partial(range) => {
            status = StatusCode::PARTIAL_CONTENT;
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{size}", range.first, range.last)),
            );
            if !head {
                body = Body::Object {
                    key: pointer.data,
                    range: Some(range),
                };
            }
        }
        RangeRequest::Unsatisfiable => {
            return Err(RegistryError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::SizeInvalid,
                format!("the requested range is outside the blob's {size} bytes"),
            )
            .with_header(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            ));
        }
    }
    *response.status_mut() = status;
    *response.body_mut() = body;
    Ok(response)
}

/// DELETE `/v2/<name>/blobs/<digest>`: unlinks the blob from the repository.
pub(crate) async fn delete(cx: &Cx, name: &str, digest: &Digest) -> Result<Response> {
    let key = layout::blob_link(name, digest);
    if cx.store.head(&key).await?.is_none() {
        return Err(RegistryError::blob_unknown(digest));
    }
    cx.store.delete(&key).await?;
    Ok(accepted())
}

pub(crate) fn accepted() -> Response {
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = StatusCode::ACCEPTED;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}
