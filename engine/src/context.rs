//! What every handler gets: the request, the store, configuration, time and entropy.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use crate::config::Config;
use crate::route::Query;
use crate::store::Store;

/// Seconds since the Unix epoch, as told by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

/// Random bytes supplied by the runtime for one transaction: upload ids and writer tokens are
/// drawn from them, so the engine itself never reads a random source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entropy(pub [u8; 32]);

pub(crate) struct Cx {
    pub store: Store,
    pub config: Arc<Config>,
    pub now: UnixTime,
    pub entropy: Entropy,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
}

impl Cx {
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A fresh upload id: 32 hex characters from the first half of the entropy.
    pub fn new_upload_id(&self) -> String {
        hex::encode(&self.entropy.0[..16])
    }

    /// This request's writer token: 16 hex characters from the second half of the entropy.
    pub fn writer_token(&self) -> String {
        hex::encode(&self.entropy.0[16..24])
    }
}

/// A header value from a string berth built itself (digests, paths of validated names).
pub(crate) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
