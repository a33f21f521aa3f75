//! Entry points of the fuzz targets, shared with the test that replays their seed corpora
//! under `cargo test`, so a crash found by a fuzzer becomes a stable regression test.
//!
//! Each function takes arbitrary bytes and must neither panic nor break an invariant; the
//! assertions inside are the invariants.

use crate::digest::Digest;
use crate::testing::{Driver, MemoryStore, request};
use crate::upload::state::UploadState;
use crate::{Config, Registry};

/// Manifest parsing and validation, with the content type taken from the first line.
pub fn manifest(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    if let Ok(manifest) = crate::manifest::parse(content_type, body) {
        // A manifest that parses has a supported media type and well-formed descriptors.
        assert!(!manifest.media_type.is_empty());
        for descriptor in manifest.references.iter().chain(manifest.config.iter()) {
            assert_eq!(
                Digest::parse(&descriptor.digest.to_string()).as_ref(),
                Ok(&descriptor.digest)
            );
        }
    }
}

/// `Content-Range` and `Range` parsing against an object size from the first 8 bytes.
pub fn ranges(data: &[u8]) {
    let size = data
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let text = String::from_utf8_lossy(data.get(8..).unwrap_or_default());
    if let Some(range) = crate::range::parse_content_range(&text) {
        assert!(range.first <= range.last);
    }
    if let crate::range::RangeRequest::Partial(range) = crate::range::parse_range(Some(&text), size)
    {
        assert!(range.first <= range.last && range.last < size);
    }
}

/// Decoding a stored upload state record: any bytes are refused or give a consistent record.
pub fn upload_state(data: &[u8]) {
    if let Ok((state, hash)) = UploadState::decode(data) {
        assert_eq!(hash.algorithm(), state.algorithm);
        let tail = state.tail.as_ref().map_or(0, |t| t.len);
        assert_eq!(
            state.offset,
            state.parts.len() as u64 * state.part_size + tail
        );
    }
}

/// Routing of an arbitrary request: the first line is the method, the second the URI, then
/// headers (`name: value` lines) until an empty line, then the body. Whatever arrives, the
/// answer is a response below 500 (the memory store never fails).
pub fn request_routing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let (Some(method), Some(uri)) = (lines.next(), lines.next()) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(method.trim())
        .uri(uri.trim());
    let mut body = String::new();
    let mut in_body = false;
    for line in lines {
        if in_body {
            body.push_str(line);
            body.push('\n');
        } else if line.trim().is_empty() {
            in_body = true;
        } else if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = builder.body(body.into_bytes()) else {
        return;
    };
    let mut driver = default_driver();
    let response = driver.send(request);
    assert!(
        response.status().as_u16() < 500,
        "{}: {:?}",
        response.status(),
        response.body()
    );
}

fn default_driver() -> Driver {
    Driver::new(Registry::new(Config::default()).expect("the default configuration is valid"))
}

/// A whole-engine session: each byte pair picks an operation and its parameter from a small
/// vocabulary of pushes, pulls, chunks, deletes and races on a few repositories. After the
/// session, nothing in the store is readable under a digest its bytes do not hash to, and no
/// request got a 500.
pub fn engine_session(data: &[u8]) {
    let mut driver = default_driver();
    driver.chunk_size = 7;
    let repos = ["a", "b/c", "d"];
    let mut uploads: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests: Vec<String> = Vec::new();
    for pair in data.chunks(2).take(64) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        let repo = repos[arg as usize % repos.len()];
        let blob: Vec<u8> = (0..arg % 40).map(|i| i.wrapping_mul(arg)).collect();
        let digest = Digest::of(crate::digest::Algorithm::Sha256, &blob).to_string();
        let response = match op % 12 {
            0 => {
                let r = driver.send(request(
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    vec![],
                ));
                if let Some(location) = r.headers().get("location").and_then(|l| l.to_str().ok()) {
                    uploads.push((location.to_owned(), Vec::new()));
                }
                r
            }
            1 | 2 => {
                let index = arg as usize % uploads.len().max(1);
                let Some((url, sent)) = uploads.get_mut(index) else {
                    continue;
                };
                let skew = if op % 12 == 2 { arg as usize % 3 } else { 0 };
                let start = sent.len() + skew;
                let range = format!("{}-{}", start, start + blob.len().max(1) - 1);
                let r = driver.send(request(
                    "PATCH",
                    url,
                    &[("content-range", &range)],
                    blob.clone(),
                ));
                if r.status() == 202 {
                    sent.extend_from_slice(&blob);
                }
                r
            }
            3 => {
                let Some((url, sent)) = uploads.get(arg as usize % uploads.len().max(1)).cloned()
                else {
                    continue;
                };
                let honest = Digest::of(crate::digest::Algorithm::Sha256, &sent).to_string();
                let claimed = if arg % 4 == 0 { digest.clone() } else { honest };
                driver.send(request(
                    "PUT",
                    &format!("{url}?digest={claimed}"),
                    &[],
                    vec![],
                ))
            }
            4 => driver.send(request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                blob.clone(),
            )),
            5 => driver.send(request(
                "GET",
                &format!("/v2/{repo}/blobs/{digest}"),
                &[("range", "bytes=1-3")],
                vec![],
            )),
            6 => {
                let config = Digest::of(crate::digest::Algorithm::Sha256, b"{}");
                let manifest = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{}}}]}}"#,
                    blob.len()
                );
                manifests.push(
                    Digest::of(crate::digest::Algorithm::Sha256, manifest.as_bytes()).to_string(),
                );
                driver.send(request(
                    "PUT",
                    &format!("/v2/{repo}/manifests/t{arg}"),
                    &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                    manifest,
                ))
            }
            7 => driver.send(request(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?digest={}",
                    Digest::of(crate::digest::Algorithm::Sha256, b"{}")
                ),
                &[],
                b"{}".to_vec(),
            )),
            8 => {
                let Some(m) = manifests.get(arg as usize % manifests.len().max(1)) else {
                    continue;
                };
                driver.send(request(
                    "DELETE",
                    &format!("/v2/{repo}/manifests/{m}"),
                    &[],
                    vec![],
                ))
            }
            9 => driver.send(request(
                "DELETE",
                &format!("/v2/{repo}/blobs/{digest}"),
                &[],
                vec![],
            )),
            10 => driver.send(request(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
                    repos[(arg as usize + 1) % 3]
                ),
                &[],
                vec![],
            )),
            _ => driver.send(request(
                "GET",
                &format!("/v2/{repo}/tags/list?n={}", arg % 5),
                &[],
                vec![],
            )),
        };
        assert!(
            response.status().as_u16() < 500,
            "{}: {:?}",
            response.status(),
            response.body()
        );
    }
    assert_store_is_verified(&driver.store);
}

/// Invariant 1 over a whole store: every pointer, link and manifest is under its true digest.
pub fn assert_store_is_verified(store: &MemoryStore) {
    for key in store.keys() {
        let parts: Vec<&str> = key.split('/').collect();
        let pointer = match parts.as_slice() {
            ["_blobs", alg, hex] => Some((*alg, *hex)),
            ["repositories", .., "_layers", alg, hex] => Some((*alg, *hex)),
            _ => None,
        };
        if let Some((alg, hex)) = pointer {
            let digest = Digest::parse(&format!("{alg}:{hex}")).expect("keys hold valid digests");
            let record: serde_json::Value =
                serde_json::from_slice(&store.read(key, None).unwrap_or_default())
                    .expect("pointer is JSON");
            let data_key = record["data"].as_str().expect("pointer names its data");
            let data = store.read(data_key, None).expect("published data exists");
            assert_eq!(Digest::of(digest.algorithm(), &data), digest, "{key}");
        }
        if let ["repositories", .., "_manifests", alg, hex] = parts.as_slice() {
            let digest = Digest::parse(&format!("{alg}:{hex}")).expect("keys hold valid digests");
            let stored = store.read(key, None).unwrap_or_default();
            let body = &stored[stored.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)..];
            assert_eq!(Digest::of(digest.algorithm(), body), digest, "{key}");
        }
    }
}
