//! Typed storage calls for the handlers: each issues one effect and interprets its outcome.
//!
//! An outcome that does not fit the effect (a runtime bug) and a backend failure both become a
//! 500 ([`RegistryError::backend`]): the client is told which kind of operation failed, and the
//! operation, key and the backend's own words travel to the runtime's log, never to the client
//! (they may name an endpoint, a bucket, an upload id, a path or an OS error).

use bytes::Bytes;

use crate::effect::{CompletedPart, Condition, Effect, Listing, ObjectMeta, Outcome};
use crate::error::{RegistryError, Result};
use crate::response::ByteRange;
use crate::transaction::Io;

/// Result of a conditional put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    Stored { etag: String },
    PreconditionFailed,
}

#[derive(Clone, Default)]
pub(crate) struct Store {
    io: Io,
}

fn unexpected(operation: &str, key: &str, outcome: Outcome) -> RegistryError {
    match outcome {
        Outcome::Failed(reason) => RegistryError::backend(operation, key, &reason),
        other => RegistryError::backend(
            operation,
            key,
            &format!("runtime reported an outcome that does not answer it: {other:?}"),
        ),
    }
}

impl Store {
    pub(crate) fn new(io: Io) -> Store {
        Store { io }
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self
            .io
            .perform(Effect::Head {
                key: key.to_owned(),
            })
            .await
        {
            Outcome::Found(meta) => Ok(Some(meta)),
            Outcome::NotFound => Ok(None),
            other => Err(unexpected("head", key, other)),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<(ObjectMeta, Bytes)>> {
        self.get_range(key, None).await
    }

    pub(crate) async fn get_range(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<(ObjectMeta, Bytes)>> {
        match self
            .io
            .perform(Effect::Get {
                key: key.to_owned(),
                range,
            })
            .await
        {
            Outcome::Object { meta, bytes } => Ok(Some((meta, bytes))),
            Outcome::NotFound => Ok(None),
            other => Err(unexpected("get", key, other)),
        }
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: Condition,
    ) -> Result<Written> {
        let effect = Effect::Put {
            key: key.to_owned(),
            body,
            condition,
        };
        match self.io.perform(effect).await {
            Outcome::Stored { etag } => Ok(Written::Stored { etag }),
            Outcome::PreconditionFailed => Ok(Written::PreconditionFailed),
            other => Err(unexpected("put", key, other)),
        }
    }

    /// An unconditional put, for content-addressed or idempotent records.
    pub(crate) async fn put_always(&self, key: &str, body: Bytes) -> Result<String> {
        match self.put(key, body, Condition::None).await? {
            Written::Stored { etag } => Ok(etag),
            Written::PreconditionFailed => Err(RegistryError::backend(
                "put",
                key,
                "backend reported a failed precondition for an unconditional put",
            )),
        }
    }

    /// [`Store::put_always`] taking its key by value, for building futures in a loop.
    pub(crate) async fn put_always_owned(&self, key: String, body: Bytes) -> Result<String> {
        self.put_always(&key, body).await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        match self
            .io
            .perform(Effect::Delete {
                key: key.to_owned(),
            })
            .await
        {
            Outcome::Deleted | Outcome::NotFound => Ok(()),
            other => Err(unexpected("delete", key, other)),
        }
    }

    pub(crate) async fn list(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
        delimiter: Option<char>,
    ) -> Result<Listing> {
        let effect = Effect::List {
            prefix: prefix.to_owned(),
            start_after,
            limit,
            delimiter,
        };
        match self.io.perform(effect).await {
            Outcome::Listed(listing) => Ok(listing),
            other => Err(unexpected("list", prefix, other)),
        }
    }

    pub(crate) async fn create_multipart(&self, key: &str, part_size: u64) -> Result<String> {
        let effect = Effect::CreateMultipart {
            key: key.to_owned(),
            part_size,
        };
        match self.io.perform(effect).await {
            Outcome::MultipartCreated { upload_id } => Ok(upload_id),
            other => Err(unexpected("create-multipart", key, other)),
        }
    }

    /// Uploads one part; its etag, or `None` when the backend no longer knows the multipart
    /// upload (lifecycle rules abort incomplete ones: R2's default after 7 days).
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<Option<String>> {
        let effect = Effect::UploadPart {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            part_number,
            body,
        };
        match self.io.perform(effect).await {
            Outcome::PartUploaded { etag } => Ok(Some(etag)),
            Outcome::NotFound => Ok(None),
            other => Err(unexpected("upload-part", key, other)),
        }
    }

    /// Completes a multipart upload; the object's etag, or `None` when the backend no longer
    /// knows the multipart upload (see [`Store::upload_part`]).
    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<Option<String>> {
        let effect = Effect::CompleteMultipart {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            parts,
        };
        match self.io.perform(effect).await {
            Outcome::Stored { etag } => Ok(Some(etag)),
            Outcome::NotFound => Ok(None),
            other => Err(unexpected("complete-multipart", key, other)),
        }
    }

    pub(crate) async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let effect = Effect::AbortMultipart {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        };
        match self.io.perform(effect).await {
            Outcome::Deleted | Outcome::NotFound => Ok(()),
            other => Err(unexpected("abort-multipart", key, other)),
        }
    }

    /// The next chunk of the request body, or `None` at its end. A broken body is the client's
    /// failure, not the backend's: 400.
    pub(crate) async fn read_body(&self) -> Result<Option<Bytes>> {
        match self.io.perform(Effect::ReadBody).await {
            Outcome::BodyChunk(bytes) => Ok(Some(bytes)),
            Outcome::BodyEnd => Ok(None),
            Outcome::Failed(reason) => Err(RegistryError::upload_invalid(format!(
                "the request body could not be read to its end: {reason}"
            ))),
            other => Err(unexpected("read-body", "(request body)", other)),
        }
    }
}
