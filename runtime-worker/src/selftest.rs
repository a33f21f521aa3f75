//! TEMPORARY diagnostics: one HTTP route per R2 operation of [`crate::r2`], so that
//! `scripts/worker-smoke.sh` can prove each under `wrangler dev`, across requests (a multipart
//! upload is resumed by id in later requests), and report the wasm memory for
//! `scripts/worker-bench.sh`. Served only to a loopback host of a Worker with `BERTH_SELFTEST`
//! `true` and no credentials configured ([`enabled`]); otherwise the path is the registry's.
//!
//! Routes (keys are taken from the path as they are, without percent-decoding):
//! - `PUT object/KEY?mode=stream|chunks|bytes&if=absent|match&etag=E[&len=N]`: put the request
//!   body; 201 with the object's JSON, or 412. `len` overrides the declared length.
//! - `GET|HEAD object/KEY`: stream the object (a `Range: bytes=A-B` gives 206). For
//!   comparison, `cl=plain|identity|plain-none|identity-none` on GET and `cl=none` on HEAD
//!   answer in other ways (see the code).
//! - `DELETE object/KEY`: 204.
//! - `GET read/KEY[?offset=O&length=L]`: the object (or range) read into wasm.
//! - `GET meta/KEY`: head as JSON, or 404.
//! - `GET list?prefix=P&start_after=S&limit=N&delimiter=D`: one page as JSON.
//! - `POST multipart/KEY`: `{"upload_id"}`; `PUT multipart/KEY?upload_id=U&part=N&mode=M`:
//!   `{"etag"}` or 404; `DELETE multipart/KEY?upload_id=U`: abort, 204.
//! - `POST complete/KEY?upload_id=U` with `[[N, "etag"], ...]`: the object's JSON, or 404.
//! - `GET panic`: panics; `GET abort`: traps without a panic (`std::process::abort`).
//! - `GET memory`: `{"wasm_memory_bytes"}`, the size of this instance's wasm linear memory
//!   (it only grows, so it is the instance's peak; `scripts/worker-bench.py` reports it).

use std::collections::HashMap;

use worker::{Env, Headers, Method, Request, Response, Result};

use crate::r2::{self, Body, ByteRange, Condition, PartWritten, Store, Written};
use crate::settings;

/// Where the diagnostics live.
pub const PREFIX: &str = "/_berth/selftest/";

/// Whether this request may reach the diagnostics. They skip authentication and can write
/// any key (a blob pointer to unverified bytes, say) or crash the instance, so all three must
/// hold, which no deployment can meet:
///
/// - the var `BERTH_SELFTEST` is `true` (only `scripts/worker-smoke.sh` and
///   `scripts/worker-bench.sh` set it; `npm run dev` does not);
/// - no credential secret is set at all ([`settings::CREDENTIAL_SECRETS`], even half a pair):
///   a Worker with users is never opened by it;
/// - the request's host is a loopback address (`127.0.0.1`, `[::1]` or `localhost`), as under
///   `wrangler dev`: Cloudflare's edge routes a request to a deployed Worker by its hostname
///   (its workers.dev name, route or custom domain), never by a loopback one.
pub fn enabled(req: &Request, env: &Env) -> bool {
    let flag = env
        .var("BERTH_SELFTEST")
        .is_ok_and(|v| v.to_string().trim() == "true");
    flag && !settings::any_credentials(env) && is_loopback(req)
}

fn is_loopback(req: &Request) -> bool {
    let Ok(url) = req.url() else {
        return false;
    };
    match url.host_str() {
        Some("[::1]") => true,
        Some(host) => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Answers one diagnostics request; a failed R2 call is a 500 carrying its message.
pub async fn handle(req: Request, rest: &str, env: &Env) -> Result<Response> {
    match route(req, rest, env).await {
        Ok(response) => Ok(response),
        Err(e) => {
            worker::console_error!("berth selftest: {e}");
            Response::error(format!("{e}"), 500)
        }
    }
}

async fn route(mut req: Request, rest: &str, env: &Env) -> Result<Response> {
    let store = Store::from_env(env)?;
    let query: HashMap<String, String> = req.url()?.query_pairs().into_owned().collect();
    let q = |name: &str| query.get(name).map(String::as_str);
    let (kind, key) = rest.split_once('/').unwrap_or((rest, ""));
    match (req.method(), kind) {
        (Method::Put, "object") => {
            let condition = match q("if") {
                Some("absent") => Condition::IfNoneMatch,
                Some("match") => Condition::IfMatch(q("etag").unwrap_or_default().to_owned()),
                _ => Condition::None,
            };
            let body = request_body(&mut req, q("mode"), q("len")).await?;
            match store.put(key, body, condition).await? {
                Written::Stored(meta) => Ok(Response::from_json(&meta)?.with_status(201)),
                Written::PreconditionFailed => Response::error("precondition failed", 412),
            }
        }
        (Method::Get, "object") => {
            let range = match req.headers().get("range")? {
                Some(value) => Some(parse_range(&value)?),
                None => None,
            };
            let Some(object) = store.open(key, range).await? else {
                return Response::error("not found", 404);
            };
            let headers = object_headers(&object.meta)?;
            let status = match range {
                Some(range) => {
                    headers.set(
                        "content-range",
                        &format!("bytes {}-{}/{}", range.first, range.last, object.meta.size),
                    )?;
                    206
                }
                None => 200,
            };
            if let Some(variant) = q("cl") {
                // Other ways, for comparison: the R2 stream as it is (`plain`), or through an
                // identity `TransformStream`, which hides its length (`identity`); with a
                // Content-Length header, or without one (`-none`).
                let (name, with_header) = match variant.strip_suffix("-none") {
                    Some(name) => (name, false),
                    None => (variant, true),
                };
                if with_header {
                    headers.set("content-length", &object.len.to_string())?;
                }
                let mut stream = object.into_stream();
                if name == "identity" {
                    let identity = worker::web_sys::TransformStream::new()?;
                    let _ = stream.pipe_to(&identity.writable());
                    stream = identity.readable();
                }
                return Ok(Response::builder()
                    .with_status(status)
                    .with_headers(headers)
                    .stream(stream));
            }
            r2::object_response(object, status, headers)
        }
        (Method::Head, "object") => {
            let Some(meta) = store.head(key).await? else {
                return Ok(Response::empty()?.with_status(404));
            };
            let headers = object_headers(&meta)?;
            if q("cl") == Some("none") {
                // For comparison: no Content-Length header.
                return Ok(Response::builder().with_headers(headers).empty());
            }
            r2::head_response(meta.size, 200, headers)
        }
        (Method::Delete, "object") => {
            store.delete(key).await?;
            Ok(Response::empty()?.with_status(204))
        }
        (Method::Get, "read") => {
            let range = match (q("offset"), q("length")) {
                (Some(offset), Some(length)) => {
                    let first = number(offset)?;
                    Some(ByteRange {
                        first,
                        last: first + number(length)?.max(1) - 1,
                    })
                }
                _ => None,
            };
            match store.get(key, range).await? {
                Some((_, bytes)) => Response::from_bytes(bytes),
                None => Response::error("not found", 404),
            }
        }
        (Method::Get, "meta") => match store.head(key).await? {
            Some(meta) => Response::from_json(&meta),
            None => Response::error("not found", 404),
        },
        (Method::Get, "list") => {
            let limit = q("limit").map(number).transpose()?.unwrap_or(1000);
            let page = store
                .list(
                    q("prefix").unwrap_or_default(),
                    q("start_after"),
                    u32::try_from(limit).unwrap_or(1000),
                    q("delimiter"),
                )
                .await?;
            Response::from_json(&page)
        }
        (Method::Post, "multipart") => {
            let upload_id = store.create_multipart(key).await?;
            Response::from_json(&serde_json::json!({ "upload_id": upload_id }))
        }
        (Method::Put, "multipart") => {
            let part = u16::try_from(number(q("part").unwrap_or("1"))?)
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            let body = request_body(&mut req, q("mode"), q("len")).await?;
            match store
                .upload_part(key, q("upload_id").unwrap_or_default(), part, body)
                .await?
            {
                PartWritten::Uploaded { etag } => {
                    Response::from_json(&serde_json::json!({ "part": part, "etag": etag }))
                }
                PartWritten::NoSuchUpload => Response::error("no such upload", 404),
            }
        }
        (Method::Delete, "multipart") => {
            store
                .abort_multipart(key, q("upload_id").unwrap_or_default())
                .await?;
            Ok(Response::empty()?.with_status(204))
        }
        (Method::Post, "complete") => {
            let parts: Vec<(u16, String)> = req.json().await?;
            match store
                .complete_multipart(key, q("upload_id").unwrap_or_default(), parts)
                .await?
            {
                Some(meta) => Ok(Response::from_json(&meta)?.with_status(201)),
                None => Response::error("no such upload", 404),
            }
        }
        (Method::Get, "panic") => panic!("selftest panic requested"),
        (Method::Get, "abort") => std::process::abort(),
        (Method::Get, "memory") => Response::from_json(&serde_json::json!({
            "wasm_memory_bytes": wasm_memory_bytes(),
        })),
        _ => Response::error("no such selftest route", 404),
    }
}

/// The request body in the form `mode` names: `stream` (default: a JS stream piped through a
/// `FixedLengthStream`), `chunks` (through wasm) or `bytes` (buffered in wasm). The length is
/// the request's `Content-Length`, or `len` (to test a body of another length than declared).
async fn request_body(req: &mut Request, mode: Option<&str>, len: Option<&str>) -> Result<Body> {
    let declared = match len {
        Some(len) => Some(len.to_owned()),
        None => req.headers().get("content-length")?,
    };
    let len = match declared {
        Some(value) => number(&value)?,
        None => return Err(worker::Error::RustError("Content-Length required".into())),
    };
    Ok(match mode.unwrap_or("stream") {
        "bytes" => Body::Bytes(req.bytes().await?),
        "chunks" => Body::Chunks {
            stream: req.stream()?,
            len,
        },
        _ => match req.inner().body() {
            Some(stream) => Body::Stream { stream, len },
            None => Body::Bytes(Vec::new()),
        },
    })
}

fn object_headers(meta: &r2::Meta) -> Result<Headers> {
    let headers = Headers::new();
    headers.set("content-type", "application/octet-stream")?;
    headers.set("etag", &format!("\"{}\"", meta.etag))?;
    headers.set("accept-ranges", "bytes")?;
    Ok(headers)
}

/// `bytes=A-B` only: enough for the smoke test.
fn parse_range(value: &str) -> Result<ByteRange> {
    let spec = value
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(|| worker::Error::RustError(format!("unsupported range {value}")))?;
    let (first, last) = (number(spec.0)?, number(spec.1)?);
    if last < first {
        return Err(worker::Error::RustError(format!("bad range {value}")));
    }
    Ok(ByteRange { first, last })
}

fn number(s: &str) -> Result<u64> {
    s.trim()
        .parse()
        .map_err(|_| worker::Error::RustError(format!("not a number: {s}")))
}

/// The size of this instance's wasm linear memory, in bytes.
fn wasm_memory_bytes() -> f64 {
    use worker::wasm_bindgen::JsCast;
    worker::wasm_bindgen::memory()
        .dyn_into::<worker::js_sys::WebAssembly::Memory>()
        .map(|memory| {
            memory
                .buffer()
                .unchecked_into::<worker::js_sys::ArrayBuffer>()
                .byte_length() as f64
        })
        .unwrap_or(0.0)
}
