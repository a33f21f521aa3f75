//! berth's protocol engine: the whole OCI distribution API as deterministic logic with no I/O.
//!
//! **The promise.** This crate never performs I/O, never spawns, never reads a clock or a
//! random source, and depends on no async runtime. Each request becomes a [`Transaction`] that
//! asks its runtime for storage operations ([`Effect`]s) one by one and produces one
//! `http::Response`. The time (`now`) and randomness (`entropy`) it needs are arguments, so the
//! same request, outcomes, time and entropy always give the same effects and the same bytes.
//! It builds for `wasm32-unknown-unknown` (the Cloudflare Worker) and for the host (the
//! hyper server) alike.
//!
//! # The driver loop
//!
//! A runtime is a thin loop around [`Registry::begin`]:
//!
//! 1. Build a [`Registry`] once from a [`Config`].
//! 2. For each request, call [`Registry::begin`] with the request head (an
//!    `http::Request<()>`), the current [`UnixTime`] and 32 bytes of [`Entropy`].
//! 3. Call [`Transaction::poll`] until it returns [`Next::Done`]:
//!    - [`Next::Effect`]: execute the effect (see each [`Effect`] variant for its contract:
//!      S3 semantics for storage, chunk-by-chunk for the request body) and report its
//!      [`Outcome`] with [`Transaction::handle`]. Effects may be executed concurrently;
//!      outcomes may be reported in any order.
//!    - [`Next::AwaitOutcome`]: every effect handed out is still running; report one.
//!    - [`Next::Respond`]: send the response. A [`Body::Object`] body names a stored object
//!      (or a range of it) to stream from storage; keep the `Content-Length` the engine set.
//! 4. On a schedule, run [`Registry::maintain`] the same way to expire abandoned uploads.
//!
//! ```no_run
//! use berth_engine::{Config, Entropy, Next, Outcome, Registry, UnixTime};
//!
//! fn execute(effect: berth_engine::Effect) -> Outcome { unimplemented!("storage") }
//!
//! let registry = Registry::new(Config::default()).unwrap();
//! let request = http::Request::get("/v2/").body(()).unwrap();
//! let mut transaction = registry.begin(request, UnixTime(1_700_000_000), Entropy([7; 32]));
//! loop {
//!     match transaction.poll() {
//!         Next::Effect(id, effect) => transaction.handle(id, execute(effect)).unwrap(),
//!         Next::AwaitOutcome => unreachable!("effects are executed one at a time here"),
//!         Next::Respond(response) => println!("{}", response.status()),
//!         Next::Done => break,
//!         _ => break,
//!     }
//! }
//! ```
//!
//! # Authentication
//!
//! With [`Config::auth`] set to an [`auth::Authenticator`], every request passes a gate before
//! it is routed (`None`, the default, lets everything through):
//!
//! - The token endpoint ([`auth::TokenConfig::path`], when berth signs tokens) is answered
//!   there: `GET` with Basic credentials or none, or `POST` with an OAuth2 password form that
//!   the engine reads with [`Effect::ReadBody`], at most [`auth::MAX_TOKEN_FORM_LEN`] bytes.
//! - Otherwise the request is authorized for its route and method: 401 `UNAUTHORIZED` with a
//!   `WWW-Authenticate` challenge (`Bearer realm,service,scope` with token auth, else `Basic`)
//!   for missing or bad credentials, 403 `DENIED` for valid ones that do not allow it.
//! - `_catalog` lists only repositories the caller may see; a mount from a repository the
//!   caller may not pull from (or, without `from`, by a caller who may not pull everywhere)
//!   becomes a plain upload session, as if the blob were not there.
//!
//! A refused response carries its [`auth::AuthFailure`] (user name and reason, never a
//! password or token) in its extensions, for the runtime's log:
//! `response.extensions().get::<auth::AuthFailure>()`; an admitted one carries the caller's
//! [`auth::Identity`] the same way.
//!
//! # Failures
//!
//! A 500 means a storage operation (or the runtime) failed. Its body names the operation in
//! general terms and a [`RequestId`], which `X-Request-Id` also carries; the details (the
//! operation, the key, the backend's own words) are in the response's extensions as a
//! [`FailureDetail`] with the same id, for the runtime to log and never to show:
//! `response.extensions().get::<FailureDetail>()`. The request id is bytes 24..32 of the
//! request's entropy ([`RequestId::from_entropy`]), so the engine stays deterministic and a
//! runtime can tag its own log lines and its own 500s ([`RegistryError::internal`],
//! [`RegistryError::into_response_for`]) with the same id.
//!
//! # Where things are
//!
//! - [`route`]: which endpoint a request addresses; name, tag and digest grammars ([`names`],
//!   [`digest`]).
//! - `upload`: sessions, chunks, the resumable hash, publication of verified blobs.
//! - `blobs`, `manifests` ([`manifest`] parses), `lists` (tags, `_catalog`), `referrers`.
//! - [`layout`]: the storage key layout, berth's on-disk format.
//! - [`error`]: the spec's error codes and statuses.
//! - [`auth`]: identities, permissions, tokens; the gate that applies them is `gate`.
//! - [`testing`]: an in-memory store and driver with injectable faults, for tests.

pub mod auth;
mod blobs;
pub mod config;
mod context;
pub mod digest;
pub mod effect;
pub mod error;
pub mod fuzzing;
mod gate;
pub mod layout;
mod lists;
mod maintenance;
pub mod manifest;
mod manifests;
pub mod names;
mod publish;
pub mod range;
mod referrers;
pub mod response;
pub mod route;
mod store;
pub mod testing;
mod transaction;
pub mod upload;

use std::sync::Arc;

use http::{HeaderValue, Method, header};

pub use config::{Config, ConfigError};
pub use context::{Entropy, UnixTime};
pub use effect::{CompletedPart, Condition, Effect, EffectId, Listing, ObjectMeta, Outcome};
pub use error::{ErrorCode, FailureDetail, RegistryError, RequestId};
pub use response::{Body, ByteRange, Response};
pub use transaction::{Next, Transaction, UnexpectedOutcome};

use context::Cx;
use route::{Query, Route};
use store::Store;
use transaction::Io;

/// The registry: configuration plus the entry points that start transactions.
#[derive(Clone, Debug)]
pub struct Registry {
    config: Arc<Config>,
}

impl Registry {
    pub fn new(config: Config) -> Result<Registry, ConfigError> {
        config.validate()?;
        Ok(Registry {
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the transaction for one request. The body is not part of `request`: the engine
    /// asks for it with [`Effect::ReadBody`] when, and only if, it needs it.
    pub fn begin(
        &self,
        request: http::Request<()>,
        now: UnixTime,
        entropy: Entropy,
    ) -> Transaction {
        let io = Io::default();
        let (parts, ()) = request.into_parts();
        let cx = Cx {
            store: Store::new(io.clone()),
            config: self.config.clone(),
            now,
            entropy,
            method: parts.method,
            query: Query::parse(parts.uri.query()),
            headers: parts.headers,
        };
        let path = parts.uri.path().to_owned();
        Transaction::new(&io, async move {
            let mut cx = cx;
            let response = serve(&mut cx, &path).await;
            finish_response(response)
        })
    }

    /// Starts a maintenance run: expired uploads are removed. Its response is a JSON summary.
    pub fn maintain(&self, now: UnixTime) -> Transaction {
        let io = Io::default();
        let entropy = Entropy([0; 32]);
        let cx = Cx {
            store: Store::new(io.clone()),
            config: self.config.clone(),
            now,
            entropy,
            method: Method::POST,
            query: Query::default(),
            headers: http::HeaderMap::new(),
        };
        Transaction::new(&io, async move {
            maintenance::run(&cx)
                .await
                .unwrap_or_else(|e| e.into_response_for(RequestId::from_entropy(&entropy)))
        })
    }
}

/// Headers every response carries.
fn finish_response(mut response: Response) -> Response {
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// Answers one request: the token endpoint, or the route, behind the authentication gate
/// when one is configured.
async fn serve(cx: &mut Cx, path: &str) -> Response {
    let request_id = RequestId::from_entropy(&cx.entropy);
    let auth = cx.config.auth.clone();
    if let Some(auth) = &auth
        && auth.is_token_endpoint(path)
    {
        return match gate::token_endpoint(cx, auth).await {
            Ok(response) => response,
            Err(gate::Refusal::Other(error)) => error.into_response_for(request_id),
            Err(refusal) => refusal.into_response(),
        };
    }
    let route = match route::route(path).and_then(|route| check_method(cx, route)) {
        Ok(route) => route,
        Err(error) => return error.into_response_for(request_id),
    };
    let identity = match &auth {
        None => None,
        Some(auth) => match gate::admit(cx, auth, &route) {
            Ok(identity) => Some(identity),
            Err(refusal) => return gate::refused(refusal),
        },
    };
    let visible = |name: &str| match (&auth, &identity) {
        (Some(auth), Some(identity)) => auth.can_see(identity, name),
        _ => true,
    };
    let mut response = dispatch(cx, route, &visible)
        .await
        .unwrap_or_else(|e| e.into_response_for(request_id));
    if let Some(identity) = identity {
        response.extensions_mut().insert(identity);
    }
    response
}

/// `route`, if it allows the request's method; else 405 with `Allow`.
fn check_method(cx: &Cx, route: Route) -> Result<Route, RegistryError> {
    let method = &cx.method;
    if !route.allowed_methods().contains(method) {
        let allow = route
            .allowed_methods()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(RegistryError::unsupported(format!(
            "{method} is not supported on this endpoint"
        ))
        .with_header(header::ALLOW, context::header_value(&allow)));
    }
    Ok(route)
}

async fn dispatch(
    cx: &Cx,
    route: Route,
    visible: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Response, RegistryError> {
    let method = &cx.method;
    match route {
        Route::Base => {
            let mut response = http::Response::new(Body::Bytes(bytes::Bytes::from_static(b"{}")));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response::set_content_length(&mut response);
            if *method == Method::HEAD {
                *response.body_mut() = Body::Empty;
            }
            Ok(response)
        }
        Route::Catalog => lists::catalog(cx, visible).await,
        Route::Tags { name } => lists::tags(cx, &name).await,
        Route::Referrers { name, digest } => referrers::list(cx, &name, &digest).await,
        Route::Blob { name, digest } => match *method {
            Method::DELETE => blobs::delete(cx, &name, &digest).await,
            _ => blobs::read(cx, &name, &digest).await,
        },
        Route::Manifest { name, reference } => match *method {
            Method::PUT => manifests::write(cx, &name, &reference).await,
            Method::DELETE => manifests::delete(cx, &name, &reference).await,
            _ => manifests::read(cx, &name, &reference).await,
        },
        Route::UploadStart { name } => upload::start(cx, &name).await,
        Route::Upload { name, id } => match *method {
            Method::GET => upload::status(cx, &name, &id).await,
            Method::PATCH => upload::append(cx, &name, &id).await,
            Method::PUT => upload::close(cx, &name, &id).await,
            _ => upload::cancel(cx, &name, &id).await,
        },
    }
}

// Runtimes move transactions across threads (tokio) while effects run.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<Transaction>();
};
