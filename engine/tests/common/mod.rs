//! Shared helpers for the engine's exchange tests: a driver over the memory store and a
//! printable form of whole HTTP exchanges for snapshots.
#![allow(dead_code)]

use berth_engine::digest::{Algorithm, Digest};
use berth_engine::testing::{Driver, TestResponse, request};
use berth_engine::{Config, Registry};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

pub fn driver() -> Driver {
    Driver::new(Registry::new(Config::default()).unwrap())
}

pub fn driver_with(config: Config) -> Driver {
    Driver::new(Registry::new(config).unwrap())
}

pub fn sha256(bytes: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, bytes).to_string()
}

pub fn sha512(bytes: &[u8]) -> String {
    Digest::of(Algorithm::Sha512, bytes).to_string()
}

/// Sends a request and renders request and response as text, headers sorted, bodies shown
/// when they are short UTF-8.
pub fn exchange(
    d: &mut Driver,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let response = d.send(request(method, uri, headers, body.to_vec()));
    let mut out = format!("> {method} {uri}\n");
    for (name, value) in headers {
        out.push_str(&format!("> {name}: {value}\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("> {}\n", render_body(body)));
    }
    out.push_str(&render_response(&response));
    out
}

pub fn render_response(response: &TestResponse) -> String {
    let mut out = format!("< {}\n", response.status());
    let mut headers: Vec<_> = response
        .headers()
        .iter()
        .map(|(n, v)| format!("< {}: {}\n", n, v.to_str().unwrap_or("<binary>")))
        .collect();
    headers.sort();
    out.extend(headers);
    if !response.body().is_empty() {
        out.push_str(&format!("< {}\n", render_body(response.body())));
    }
    out
}

fn render_body(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if body.len() <= 2048 => text.to_owned(),
        _ => format!("({} bytes, {})", body.len(), sha256(body)),
    }
}

/// Pushes a blob monolithically and returns its digest.
pub fn push_blob(d: &mut Driver, name: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = d.send(request(
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        &[],
        bytes.to_vec(),
    ));
    assert_eq!(r.status(), 201, "push blob: {:?}", r.body());
    digest
}

/// An image manifest with the empty config and the given layers (digest, size).
pub fn image_manifest(layers: &[(&str, usize)], extra: &str) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{}","size":2}},"layers":[{}]{extra}}}"#,
        sha256(b"{}"),
        layers.join(",")
    )
}

/// Pushes the empty config, one layer and a manifest under `tag`; returns the manifest digest.
pub fn push_image(d: &mut Driver, name: &str, tag: &str, layer: &[u8], extra: &str) -> String {
    push_blob(d, name, b"{}");
    let layer_digest = push_blob(d, name, layer);
    let manifest = image_manifest(&[(&layer_digest, layer.len())], extra);
    let r = d.send(request(
        "PUT",
        &format!("/v2/{name}/manifests/{tag}"),
        &[("content-type", OCI_MANIFEST)],
        manifest.clone(),
    ));
    assert_eq!(r.status(), 201, "push manifest: {:?}", r.body());
    sha256(manifest.as_bytes())
}

/// The `Location` header of a response.
pub fn location(response: &TestResponse) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}
