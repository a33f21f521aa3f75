//! What a transaction answers: an `http::Response` whose body is bytes or a stored object.

use bytes::Bytes;
use http::HeaderValue;

/// The body of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// No body (HEAD, 202, 204). `Content-Length` may still be set, e.g. on HEAD.
    Empty,
    /// A body the engine produced: errors, lists, manifests.
    Bytes(Bytes),
    /// Stream this stored object, or this byte range of it, as the body. The runtime MUST
    /// stream it from storage rather than buffer it, and MUST keep the `Content-Length` the
    /// engine set: it is the exact number of bytes the range covers.
    Object {
        key: String,
        range: Option<ByteRange>,
    },
}

/// An inclusive byte range `first..=last` of a stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

pub type Response = http::Response<Body>;

/// Sets `Content-Length` from a `Body::Bytes` or `Body::Empty` body.
pub(crate) fn set_content_length(response: &mut Response) {
    let len = match response.body() {
        Body::Bytes(b) => b.len() as u64,
        Body::Empty => 0,
        Body::Object { .. } => return,
    };
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
}
