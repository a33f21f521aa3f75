//! An in-memory store and a driver that runs transactions against it, with injectable faults.
//!
//! Every engine test, property test, fuzz target and the in-process conformance target runs
//! the real engine through [`Driver`]. The store is strict where real backends are strict: it
//! enforces conditional writes and R2's multipart rules (parts of at least 5 MiB, all but the
//! last of one size, etags that match), so an engine bug that a real bucket would reject fails
//! here too. It is also a complete, if volatile, storage backend (`berth serve --storage
//! memory` executes effects with it).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::{Bytes, BytesMut};

use crate::config::MIN_PART_SIZE;
use crate::effect::{Condition, Effect, Listing, ObjectMeta, Outcome};
use crate::response::{Body, ByteRange};
use crate::transaction::Next;
use crate::{Entropy, Registry, UnixTime};

#[derive(Clone, Debug)]
struct StoredObject {
    bytes: Bytes,
    etag: String,
}

#[derive(Clone, Debug, Default)]
struct MultipartUpload {
    key: String,
    parts: BTreeMap<u32, (Bytes, String)>,
}

/// Objects and multipart uploads in memory, with S3 semantics.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    objects: BTreeMap<String, StoredObject>,
    multipart: BTreeMap<String, MultipartUpload>,
    versions: u64,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn next_version(&mut self, prefix: &str) -> String {
        self.versions += 1;
        format!("{prefix}{}", self.versions)
    }

    fn meta(object: &StoredObject) -> ObjectMeta {
        ObjectMeta {
            size: object.bytes.len() as u64,
            etag: object.etag.clone(),
        }
    }

    /// Executes one storage effect. [`Effect::ReadBody`] is not storage: it fails.
    pub fn execute(&mut self, effect: Effect) -> Outcome {
        match effect {
            Effect::Head { key } => match self.objects.get(&key) {
                Some(object) => Outcome::Found(Self::meta(object)),
                None => Outcome::NotFound,
            },
            Effect::Get { key, range } => match self.read(&key, range) {
                Some(bytes) => Outcome::Object {
                    meta: Self::meta(&self.objects[&key]),
                    bytes,
                },
                None => Outcome::NotFound,
            },
            Effect::Put {
                key,
                body,
                condition,
            } => {
                let current = self.objects.get(&key);
                let allowed = match &condition {
                    Condition::None => true,
                    Condition::IfNoneMatch => current.is_none(),
                    Condition::IfMatch(etag) => current.is_some_and(|o| &o.etag == etag),
                };
                if !allowed {
                    return Outcome::PreconditionFailed;
                }
                let etag = self.next_version("\"v");
                self.objects.insert(
                    key,
                    StoredObject {
                        bytes: body,
                        etag: etag.clone(),
                    },
                );
                Outcome::Stored { etag }
            }
            Effect::Delete { key } => {
                self.objects.remove(&key);
                Outcome::Deleted
            }
            Effect::List {
                prefix,
                start_after,
                limit,
                delimiter,
            } => Outcome::Listed(self.list(&prefix, start_after.as_deref(), limit, delimiter)),
            Effect::CreateMultipart { key, part_size: _ } => {
                let upload_id = self.next_version("mpu-");
                self.multipart.insert(
                    upload_id.clone(),
                    MultipartUpload {
                        key,
                        parts: BTreeMap::new(),
                    },
                );
                Outcome::MultipartCreated { upload_id }
            }
            Effect::UploadPart {
                key,
                upload_id,
                part_number,
                body,
            } => {
                if !(1..=10_000).contains(&part_number) {
                    return Outcome::Failed(format!("part number {part_number} out of 1..=10000"));
                }
                let etag = self.next_version("\"p");
                match self.multipart.get_mut(&upload_id) {
                    Some(upload) if upload.key == key => {
                        upload.parts.insert(part_number, (body, etag.clone()));
                        Outcome::PartUploaded { etag }
                    }
                    _ => Outcome::NotFound,
                }
            }
            Effect::CompleteMultipart {
                key,
                upload_id,
                parts,
            } => {
                let Some(upload) = self.multipart.get(&upload_id).filter(|u| u.key == key) else {
                    return Outcome::NotFound;
                };
                if parts.is_empty() {
                    return Outcome::Failed("a multipart upload needs at least one part".into());
                }
                let mut assembled = BytesMut::new();
                let mut first_size = None;
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 && part.part_number <= parts[i - 1].part_number {
                        return Outcome::Failed("parts must be listed in increasing order".into());
                    }
                    let Some((bytes, etag)) = upload.parts.get(&part.part_number) else {
                        return Outcome::Failed(format!(
                            "part {} was never uploaded",
                            part.part_number
                        ));
                    };
                    if etag != &part.etag {
                        return Outcome::Failed(format!(
                            "part {} has etag {etag}, not {}",
                            part.part_number, part.etag
                        ));
                    }
                    let last = i == parts.len() - 1;
                    if !last {
                        if (bytes.len() as u64) < MIN_PART_SIZE {
                            return Outcome::Failed(format!(
                                "part {} is smaller than 5 MiB",
                                part.part_number
                            ));
                        }
                        if *first_size.get_or_insert(bytes.len()) != bytes.len() {
                            return Outcome::Failed(
                                "all parts but the last must have one size (R2)".into(),
                            );
                        }
                    } else if first_size.is_some_and(|s| bytes.len() > s) {
                        return Outcome::Failed(
                            "the last part may not be larger than the others (R2)".into(),
                        );
                    }
                    assembled.extend_from_slice(bytes);
                }
                self.multipart.remove(&upload_id);
                let etag = self.next_version("\"m");
                self.objects.insert(
                    key,
                    StoredObject {
                        bytes: assembled.freeze(),
                        etag: etag.clone(),
                    },
                );
                Outcome::Stored { etag }
            }
            Effect::AbortMultipart { key: _, upload_id } => {
                self.multipart.remove(&upload_id);
                Outcome::Deleted
            }
            Effect::ReadBody => Outcome::Failed("the store does not read request bodies".into()),
        }
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        delimiter: Option<char>,
    ) -> Listing {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let keys = self
            .objects
            .range::<String, _>((lower, Bound::Unbounded))
            .map(|(k, _)| k.as_str())
            .take_while(|k| k.starts_with(prefix));
        Listing::from_sorted_keys(keys, prefix, start_after, limit, delimiter)
    }

    /// An object's bytes, or a range of them (clamped to the object).
    pub fn read(&self, key: &str, range: Option<ByteRange>) -> Option<Bytes> {
        let object = self.objects.get(key)?;
        Some(match range {
            None => object.bytes.clone(),
            Some(r) => {
                let len = object.bytes.len() as u64;
                let first = r.first.min(len) as usize;
                let last = r.last.saturating_add(1).min(len) as usize;
                object.bytes.slice(first..last.max(first))
            }
        })
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.objects.keys().map(String::as_str)
    }

    /// Multipart uploads not completed or aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        self.multipart.len()
    }

    /// Aborts every incomplete multipart upload, as a bucket's lifecycle rule does some days
    /// after their creation (R2's default: 7 days); returns how many there were.
    pub fn abort_incomplete_multipart_uploads(&mut self) -> usize {
        let aborted = self.multipart.len();
        self.multipart.clear();
        aborted
    }
}

/// Decides, before an effect runs, whether to replace its outcome: return `Some` to inject a
/// failure or a lost race (the closure may also change the store, as a concurrent writer
/// would), `None` to execute it normally.
pub type Interceptor = Box<dyn FnMut(&Effect, &mut MemoryStore) -> Option<Outcome> + Send>;

/// A response with its body read out.
pub type TestResponse = http::Response<Bytes>;

/// Runs transactions against a [`MemoryStore`], as a runtime would.
pub struct Driver {
    pub registry: Registry,
    pub store: MemoryStore,
    pub now: UnixTime,
    /// Size of the body chunks handed to the engine.
    pub chunk_size: usize,
    /// Execute effects that are in flight together in reverse order of issue.
    pub reverse_concurrent: bool,
    interceptor: Option<Interceptor>,
    requests: u64,
    /// Every effect executed, as `operation key`, for assertions on what was touched.
    pub log: Vec<String>,
}

impl Driver {
    pub fn new(registry: Registry) -> Driver {
        Driver {
            registry,
            store: MemoryStore::new(),
            now: UnixTime(1_700_000_000),
            chunk_size: 64 * 1024,
            reverse_concurrent: false,
            interceptor: None,
            requests: 0,
            log: Vec::new(),
        }
    }

    /// Installs an interceptor consulted before every effect.
    pub fn intercept(
        &mut self,
        interceptor: impl FnMut(&Effect, &mut MemoryStore) -> Option<Outcome> + Send + 'static,
    ) {
        self.interceptor = Some(Box::new(interceptor));
    }

    pub fn clear_interceptor(&mut self) {
        self.interceptor = None;
    }

    /// Deterministic entropy: the request counter spread over 32 bytes.
    fn entropy(&mut self) -> Entropy {
        self.requests += 1;
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (self
                .requests
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(i as u32 * 7)
                & 0xff) as u8;
        }
        Entropy(bytes)
    }

    /// Sends one request and returns the response with its body (a `Body::Object` is read from
    /// the store, as a runtime would stream it).
    pub fn send(&mut self, request: http::Request<Vec<u8>>) -> TestResponse {
        let flight = self.start(request);
        self.land(flight)
    }

    /// Begins a request without running any of its effects: step it with [`Driver::step`],
    /// interleaved with other flights, or drop it midway to simulate a crash of its process.
    pub fn start(&mut self, request: http::Request<Vec<u8>>) -> Flight {
        let (parts, body) = request.into_parts();
        let body = Bytes::from(body)
            .chunks(self.chunk_size.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        let entropy = self.entropy();
        let transaction =
            self.registry
                .begin(http::Request::from_parts(parts, ()), self.now, entropy);
        Flight::new(transaction, body)
    }

    /// Begins a maintenance run at the driver's `now`, to step like any other flight.
    pub fn start_maintenance(&mut self) -> Flight {
        Flight::new(self.registry.maintain(self.now), VecDeque::new())
    }

    /// Executes the flight's next effect and reports its outcome. Effects the engine issued
    /// together run one per step, in issue order (or reversed, with `reverse_concurrent`),
    /// before the transaction is polled again. `false` once the flight has ended.
    pub fn step(&mut self, flight: &mut Flight) -> bool {
        while flight.issued.is_empty() {
            match flight.transaction.poll() {
                Next::Effect(id, effect) => {
                    // Collect everything issued together before running any of it.
                    flight.issued.push_back((id, effect));
                    loop {
                        match flight.transaction.poll() {
                            Next::Effect(id, effect) => flight.issued.push_back((id, effect)),
                            Next::AwaitOutcome => break,
                            Next::Respond(response) => flight.response = Some(response),
                            Next::Done => {
                                flight.ended = true;
                                break;
                            }
                        }
                    }
                    if self.reverse_concurrent {
                        flight.issued.make_contiguous().reverse();
                    }
                }
                Next::AwaitOutcome => panic!("engine awaits an outcome but issued no effect"),
                Next::Respond(response) => flight.response = Some(response),
                Next::Done => {
                    flight.ended = true;
                    return false;
                }
            }
        }
        let Some((id, effect)) = flight.issued.pop_front() else {
            return false;
        };
        let outcome = self.run_effect(effect, &mut flight.body);
        flight
            .transaction
            .handle(id, outcome)
            .expect("the engine awaits every effect it issued");
        true
    }

    /// Runs the flight to its end and returns its response.
    pub fn land(&mut self, mut flight: Flight) -> TestResponse {
        while self.step(&mut flight) {}
        let response = flight.response.expect("every transaction responds");
        let (parts, body) = response.into_parts();
        let bytes = match body {
            Body::Empty => Bytes::new(),
            Body::Bytes(b) => b,
            Body::Object { key, range } => self.store.read(&key, range).unwrap_or_default(),
        };
        http::Response::from_parts(parts, bytes)
    }

    /// Runs one maintenance transaction.
    pub fn maintain(&mut self) -> TestResponse {
        let flight = self.start_maintenance();
        self.land(flight)
    }

    fn run_effect(&mut self, effect: Effect, body: &mut VecDeque<Bytes>) -> Outcome {
        self.log.push(format!(
            "{} {}",
            effect.operation(),
            effect.key().unwrap_or("")
        ));
        if let Some(interceptor) = self.interceptor.as_mut()
            && let Some(outcome) = interceptor(&effect, &mut self.store)
        {
            return outcome;
        }
        match effect {
            Effect::ReadBody => match body.pop_front() {
                Some(chunk) => Outcome::BodyChunk(chunk),
                None => Outcome::BodyEnd,
            },
            other => self.store.execute(other),
        }
    }
}

/// A transaction in flight in a [`Driver`], with the request body it has yet to read.
pub struct Flight {
    transaction: crate::Transaction,
    body: VecDeque<Bytes>,
    issued: VecDeque<(crate::EffectId, Effect)>,
    response: Option<crate::Response>,
    ended: bool,
}

impl Flight {
    fn new(transaction: crate::Transaction, body: VecDeque<Bytes>) -> Flight {
        Flight {
            transaction,
            body,
            issued: VecDeque::new(),
            response: None,
            ended: false,
        }
    }

    /// Whether the transaction has ended (its response is ready for [`Driver::land`]).
    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// Builds a request for tests: `request("PUT", "/v2/a/manifests/x", &[("content-type", "..")], body)`.
pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> http::Request<Vec<u8>> {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = body.into();
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        builder = builder.header("content-length", body.len());
    }
    builder.body(body).expect("valid test request")
}
