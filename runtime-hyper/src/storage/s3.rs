//! `--storage s3://bucket[/prefix]`: R2 or any S3 API, through `object_store`'s S3 client.
//!
//! Why `object_store`: a well-kept S3 client (signing, retries, streaming) with exactly the
//! primitives the engine's effects need: conditional puts (`PutMode::Create` is
//! `If-None-Match: *`, `PutMode::Update` is `If-Match`), multipart uploads addressed by id
//! (`MultipartStore`, so any replica can continue an upload), ranged and streamed gets, and
//! listing with an offset (S3's `start-after`) or a delimiter. It numbers parts by position,
//! which the engine's dense part numbering matches.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use berth_engine::{ByteRange, CompletedPart, Condition, Effect, Listing, ObjectMeta, Outcome};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

use super::ObjectStream;

/// Where and how to reach the bucket; unset fields come from the usual AWS environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow `http://` endpoints (local S3 servers).
    pub allow_http: bool,
    /// Address the bucket as `https://<bucket>.<endpoint>` instead of `<endpoint>/<bucket>`.
    pub virtual_hosted_style: bool,
}

pub struct S3Backend {
    store: Arc<AmazonS3>,
    /// Key prefix inside the bucket, empty or ending with `/`.
    prefix: String,
    bucket: String,
}

fn failed(context: &str, error: impl std::fmt::Display) -> Outcome {
    Outcome::Failed(format!("{context}: {error}"))
}

impl S3Backend {
    /// Connects to `s3://bucket[/prefix]` and checks that the bucket enforces conditional
    /// writes; the engine's race safety depends on them.
    pub async fn open(spec: &str, options: &S3Options) -> io::Result<S3Backend> {
        let rest = spec
            .strip_prefix("s3://")
            .ok_or_else(|| io::Error::other("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(io::Error::other("s3:// URL names no bucket"));
        }
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(options.allow_http)
            .with_virtual_hosted_style_request(options.virtual_hosted_style);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(io::Error::other)?;
        let backend = S3Backend {
            store: Arc::new(store),
            prefix,
            bucket: bucket.to_owned(),
        };
        backend.probe_conditional_writes().await?;
        Ok(backend)
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn path(&self, key: &str) -> Result<Path, String> {
        Path::parse(format!("{}{key}", self.prefix))
            .map_err(|e| format!("invalid key {key:?}: {e}"))
    }

    fn key_of(&self, path: &Path) -> String {
        let full = path.as_ref();
        full.strip_prefix(&self.prefix).unwrap_or(full).to_owned()
    }

    async fn probe_conditional_writes(&self) -> io::Result<()> {
        // A key of this process's own: replicas starting together must not trip each other.
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = self
            .path(&format!("_probe/conditional-writes-{nonce}"))
            .map_err(io::Error::other)?;
        let refuse = |what: &str| {
            io::Error::other(format!(
                "the bucket does not enforce {what}; berth's upload safety depends on conditional writes, so it will not start"
            ))
        };
        let _ = self.store.delete(&path).await;
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from_static(b"1"), create.clone())
            .await
            .map_err(|e| io::Error::other(format!("probe write failed: {e}")))?;
        match self
            .store
            .put_opts(&path, PutPayload::from_static(b"2"), create)
            .await
        {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            _ => return Err(refuse("If-None-Match: * (create-only puts)")),
        }
        let stale = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some("\"not-the-current-etag\"".into()),
                version: None,
            }),
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_static(b"3"), stale)
            .await
        {
            Err(object_store::Error::Precondition { .. }) => {}
            _ => return Err(refuse("If-Match (compare-and-swap puts)")),
        }
        let _ = self.store.delete(&path).await;
        Ok(())
    }

    pub async fn execute(&self, effect: Effect) -> Outcome {
        match effect {
            Effect::Head { key } => {
                let path = match self.path(&key) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                match self.store.head(&path).await {
                    Ok(meta) => Outcome::Found(ObjectMeta {
                        size: meta.size,
                        etag: meta.e_tag.unwrap_or_default(),
                    }),
                    Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
                    Err(e) => failed(&key, e),
                }
            }
            Effect::Get { key, range } => self.get(&key, range).await,
            Effect::Put {
                key,
                body,
                condition,
            } => {
                let path = match self.path(&key) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                let mode = match condition {
                    Condition::None => PutMode::Overwrite,
                    Condition::IfNoneMatch => PutMode::Create,
                    Condition::IfMatch(etag) => PutMode::Update(UpdateVersion {
                        e_tag: Some(etag),
                        version: None,
                    }),
                };
                match self
                    .store
                    .put_opts(
                        &path,
                        PutPayload::from(body),
                        PutOptions {
                            mode,
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(result) => Outcome::Stored {
                        etag: result.e_tag.unwrap_or_default(),
                    },
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => Outcome::PreconditionFailed,
                    // If-Match on a key that is gone is a failed precondition, as on S3.
                    Err(object_store::Error::NotFound { .. }) => Outcome::PreconditionFailed,
                    Err(e) => failed(&key, e),
                }
            }
            Effect::Delete { key } => match self.path(&key) {
                Err(e) => Outcome::Failed(e),
                Ok(path) => match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Outcome::Deleted,
                    Err(e) => failed(&key, e),
                },
            },
            Effect::List {
                prefix,
                start_after,
                limit,
                delimiter,
            } => self
                .list(&prefix, start_after.as_deref(), limit, delimiter)
                .await
                .unwrap_or_else(Outcome::Failed),
            Effect::CreateMultipart { key, part_size: _ } => match self.path(&key) {
                Err(e) => Outcome::Failed(e),
                Ok(path) => match self.store.create_multipart(&path).await {
                    Ok(upload_id) => Outcome::MultipartCreated { upload_id },
                    Err(e) => failed(&key, e),
                },
            },
            Effect::UploadPart {
                key,
                upload_id,
                part_number,
                body,
            } => {
                let path = match self.path(&key) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                let Some(index) = (part_number as usize).checked_sub(1) else {
                    return Outcome::Failed("part numbers start at 1".into());
                };
                match self
                    .store
                    .put_part(&path, &upload_id, index, PutPayload::from(body))
                    .await
                {
                    Ok(part) => Outcome::PartUploaded {
                        etag: part.content_id,
                    },
                    Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
                    Err(e) => failed(&key, e),
                }
            }
            Effect::CompleteMultipart {
                key,
                upload_id,
                parts,
            } => self.complete(&key, &upload_id, parts).await,
            Effect::AbortMultipart { key, upload_id } => match self.path(&key) {
                Err(e) => Outcome::Failed(e),
                Ok(path) => match self.store.abort_multipart(&path, &upload_id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Outcome::Deleted,
                    Err(e) => failed(&key, e),
                },
            },
            Effect::ReadBody => Outcome::Failed("storage does not read request bodies".into()),
            _ => Outcome::Failed("effect not supported by the S3 backend".into()),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Outcome {
        let path = match self.path(key) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.first..r.last + 1)),
            ..Default::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Outcome::NotFound,
            Err(e) => return failed(key, e),
        };
        let meta = ObjectMeta {
            size: result.meta.size,
            etag: result.meta.e_tag.clone().unwrap_or_default(),
        };
        match result.bytes().await {
            Ok(bytes) => Outcome::Object { meta, bytes },
            Err(e) => failed(key, e),
        }
    }

    /// One `ListObjectsV2` request: S3's prefix, start-after, delimiter and max-keys are
    /// exactly the effect's arguments, so a page costs one round trip however large the bucket.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        delimiter: Option<char>,
    ) -> Result<Outcome, String> {
        if limit == 0 {
            // S3 answers max-keys=0 with nothing; whether more exists is one key away.
            let probe = Box::pin(self.list(prefix, start_after, 1, delimiter)).await?;
            let more = match probe {
                Outcome::Listed(l) => !l.keys.is_empty() || !l.common_prefixes.is_empty(),
                _ => false,
            };
            return Ok(Outcome::Listed(Listing {
                truncated: more,
                ..Listing::default()
            }));
        }
        let full_prefix = format!("{}{prefix}", self.prefix);
        let options = PaginatedListOptions {
            offset: start_after.map(|a| format!("{}{a}", self.prefix)),
            delimiter: delimiter.map(|d| Cow::Owned(d.to_string())),
            max_keys: Some(limit.min(1000)),
            ..Default::default()
        };
        let page = self
            .store
            .list_paginated(
                (!full_prefix.is_empty()).then_some(full_prefix.as_str()),
                options,
            )
            .await
            .map_err(|e| e.to_string())?;
        // Keep exactly the engine's semantics whatever the server's reading of start-after
        // with a delimiter: nothing at or before it.
        let after = |k: &str| start_after.is_none_or(|a| k > a);
        let mut listing = Listing {
            keys: page
                .result
                .objects
                .iter()
                .map(|o| self.key_of(&o.location))
                .filter(|k| after(k))
                .collect(),
            common_prefixes: page
                .result
                .common_prefixes
                .iter()
                .map(|p| match delimiter {
                    // object_store's paths drop the trailing '/'.
                    Some('/') => format!("{}/", self.key_of(p)),
                    _ => self.key_of(p),
                })
                .filter(|k| after(k))
                .collect(),
            truncated: page.page_token.is_some(),
        };
        listing.keys.sort();
        listing.common_prefixes.sort();
        Ok(Outcome::Listed(listing))
    }

    async fn complete(&self, key: &str, upload_id: &str, parts: Vec<CompletedPart>) -> Outcome {
        let path = match self.path(key) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        if parts
            .iter()
            .enumerate()
            .any(|(i, p)| p.part_number as usize != i + 1)
        {
            return Outcome::Failed(
                "S3 uploads are completed with parts numbered 1, 2, 3, …".into(),
            );
        }
        let ids = parts
            .into_iter()
            .map(|p| PartId { content_id: p.etag })
            .collect();
        match self
            .store
            .complete_multipart(&path, &upload_id.to_owned(), ids)
            .await
        {
            Ok(result) => Outcome::Stored {
                etag: result.e_tag.unwrap_or_default(),
            },
            Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
            Err(e) => failed(key, e),
        }
    }

    pub async fn open_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> io::Result<ObjectStream> {
        let path = self.path(key).map_err(io::Error::other)?;
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.first..r.last + 1)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(io::Error::other)?;
        Ok(result.into_stream().map_err(io::Error::other).boxed())
    }
}
