//! The tests, in the order they run. Each names the spec requirement it checks.

use std::fmt;

use http::Request;
use sha2::{Digest as _, Sha256, Sha512};

use crate::client::Client;
use crate::{Config, Workflow};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
const NON_DISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// Why a test failed: the requirement, and the exchange that broke it.
#[derive(Debug, Clone)]
pub struct Failure {
    requirement: String,
    exchange: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.requirement)?;
        if let Some(exchange) = &self.exchange {
            write!(f, "\n{exchange}")?;
        }
        Ok(())
    }
}

type Check = Result<(), Failure>;

fn fail(requirement: impl Into<String>) -> Failure {
    Failure {
        requirement: requirement.into(),
        exchange: None,
    }
}

/// One request and its response, kept for failure messages.
pub(crate) struct Exchange {
    method: String,
    uri: String,
    request_headers: Vec<(String, String)>,
    request_len: usize,
    response: http::Response<Vec<u8>>,
}

impl Exchange {
    fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    fn body(&self) -> &[u8] {
        self.response.body()
    }

    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.body()).ok()
    }

    fn describe(&self) -> String {
        let mut out = format!("  sent: {} {}", self.method, self.uri);
        for (name, value) in &self.request_headers {
            out.push_str(&format!("\n        {name}: {value}"));
        }
        if self.request_len > 0 {
            out.push_str(&format!("\n        ({} body bytes)", self.request_len));
        }
        out.push_str(&format!("\n  got:  {}", self.response.status()));
        for (name, value) in self.response.headers() {
            out.push_str(&format!(
                "\n        {name}: {}",
                value.to_str().unwrap_or("<binary>")
            ));
        }
        let body = self.body();
        if !body.is_empty() {
            let text = String::from_utf8_lossy(&body[..body.len().min(400)]);
            out.push_str(&format!(
                "\n        body: {text}{}",
                if body.len() > 400 { "…" } else { "" }
            ));
        }
        out
    }

    fn check(&self, ok: bool, requirement: impl Into<String>) -> Check {
        if ok {
            Ok(())
        } else {
            Err(Failure {
                requirement: requirement.into(),
                exchange: Some(self.describe()),
            })
        }
    }

    fn status_in(&self, expected: &[u16], requirement: &str) -> Check {
        self.check(
            expected.contains(&self.status()),
            format!(
                "expected status {}: {requirement}",
                expected
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )
    }

    fn error_code(&self, code: &str) -> Check {
        let codes: Vec<String> = self
            .json()
            .and_then(|j| j.get("errors").and_then(|e| e.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.get("code").and_then(|c| c.as_str()).map(str::to_owned))
            .collect();
        self.check(
            codes.iter().any(|c| c == code),
            format!("the error body MUST be {{\"errors\":[{{\"code\":..}}]}} with code {code} (spec: Error Codes)"),
        )
    }

    fn has_header(&self, name: &str, requirement: &str) -> Check {
        self.check(
            self.header(name).is_some_and(|v| !v.is_empty()),
            format!("missing {name} header: {requirement}"),
        )
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// An image pushed for the pull and management workflows.
#[derive(Clone)]
struct Image {
    tag: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

pub(crate) struct Context<'a> {
    config: &'a Config,
    client: Client<'a>,
    image: Option<Result<Image, String>>,
    /// Digests of the manifests pushed by discovery tests.
    subject: Option<(String, usize)>,
}

pub(crate) struct Test {
    pub workflow: Workflow,
    pub name: &'static str,
    pub run: fn(&mut Context<'_>) -> Check,
}

impl<'a> Context<'a> {
    pub(crate) fn new(config: &'a Config, client: Client<'a>) -> Context<'a> {
        Context {
            config,
            client,
            image: None,
            subject: None,
        }
    }

    fn ns(&self) -> &str {
        &self.config.namespace
    }

    /// Deterministic bytes, unique to this run and label.
    fn bytes(&self, label: &str, len: usize) -> Vec<u8> {
        let seed = Sha256::digest(format!("{}/{label}", self.config.run_id).as_bytes());
        let mut x = u64::from_le_bytes(seed[..8].try_into().unwrap_or([1; 8])) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Exchange, Failure> {
        let mut builder = Request::builder().method(method).uri(uri);
        // Clients always say which manifest types they accept; some registries answer 404
        // without it, so every manifest read sends what docker, containerd and oras send.
        let reads_manifest = matches!(method, "GET" | "HEAD") && uri.contains("/manifests/");
        if reads_manifest
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
        {
            builder = builder.header("accept", ACCEPT_MANIFESTS);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request_len = body.len();
        let request = builder
            .body(body)
            .map_err(|e| fail(format!("could not build {method} {uri}: {e}")))?;
        let response = self
            .client
            .send(request)
            .map_err(|e| fail(format!("{method} {uri}: transport failed: {e}")))?;
        Ok(Exchange {
            method: method.to_owned(),
            uri: uri.to_owned(),
            request_headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            request_len,
            response,
        })
    }

    /// POST to start an upload session; returns the session URL.
    fn start_upload(&self, ns: &str, query: &str) -> Result<(Exchange, String), Failure> {
        let ex = self.send(
            "POST",
            &format!("/v2/{ns}/blobs/uploads/{query}"),
            &[("content-length", "0")],
            Vec::new(),
        )?;
        ex.status_in(
            &[202],
            "POST /v2/<name>/blobs/uploads/ starts an upload session (end-4a)",
        )?;
        ex.has_header(
            "location",
            "the POST response MUST carry the <blob-push-location>",
        )?;
        let location = ex.header("location").unwrap_or_default().to_owned();
        Ok((ex, location))
    }

    /// Pushes a blob the simplest way the spec requires of every registry: POST then PUT.
    fn push_blob(&self, ns: &str, bytes: &[u8]) -> Result<String, Failure> {
        let digest = sha256(bytes);
        let (_, location) = self.start_upload(ns, "")?;
        let ex = self.send(
            "PUT",
            &with_query(&location, &format!("digest={digest}")),
            &[("content-type", "application/octet-stream")],
            bytes.to_vec(),
        )?;
        ex.status_in(&[201], "closing PUT with ?digest= publishes the blob")?;
        Ok(digest)
    }

    fn put_manifest(
        &self,
        ns: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Exchange, Failure> {
        self.send(
            "PUT",
            &format!("/v2/{ns}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
    }

    /// The image used by the pull and management workflows, pushed once per run.
    fn image(&mut self) -> Result<Image, Failure> {
        if self.image.is_none() {
            let pushed = self.push_image("pulled").map_err(|f| f.to_string());
            self.image = Some(pushed);
        }
        match self.image.clone() {
            Some(Ok(image)) => Ok(image),
            Some(Err(e)) => Err(fail(format!("setup: pushing the test image failed: {e}"))),
            None => Err(fail("setup: no image")),
        }
    }

    fn push_image(&self, label: &str) -> Result<Image, Failure> {
        let ns = self.ns().to_owned();
        let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"run":"{}-{label}"}}"#, self.config.run_id).into_bytes();
        let layer = self.bytes(&format!("{label}-layer"), 4096);
        let config_digest = self.push_blob(&ns, &config)?;
        let layer_digest = self.push_blob(&ns, &layer)?;
        let manifest = image_manifest(
            &config_digest,
            config.len(),
            OCI_CONFIG,
            &[(&layer_digest, layer.len(), OCI_LAYER)],
            "",
        );
        let tag = format!("{label}-{}", self.config.run_id);
        let ex = self.put_manifest(&ns, &tag, OCI_MANIFEST, manifest.as_bytes())?;
        ex.status_in(
            &[201],
            "PUT /v2/<name>/manifests/<tag> stores the manifest (end-7)",
        )?;
        Ok(Image {
            tag,
            manifest_digest: sha256(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            config_digest,
            layer,
            layer_digest,
        })
    }

    /// Pushes the empty config `{}` (for artifacts) and returns its digest.
    fn push_empty_config(&self, ns: &str) -> Result<String, Failure> {
        self.push_blob(ns, b"{}")
    }
}

fn with_query(location: &str, query: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{query}")
}

fn image_manifest(
    config: &str,
    config_size: usize,
    config_type: &str,
    layers: &[(&str, usize, &str)],
    extra: &str,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s, t)| format!(r#"{{"mediaType":"{t}","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config_type}","digest":"{config}","size":{config_size}}},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
}

/// `Range: 0-<end>` of an upload: the end offset, if the header is well formed.
fn range_end(ex: &Exchange) -> Option<u64> {
    let value = ex.header("range")?;
    let (start, end) = value.trim().trim_start_matches("bytes=").split_once('-')?;
    (start == "0").then(|| end.parse().ok()).flatten()
}

/// A `Link: <url>; rel="next"` header's URL.
pub(crate) fn next_link(value: &str) -> Option<String> {
    value
        .split(',')
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            Some(part[start..end].to_owned())
        })
}

macro_rules! test {
    ($workflow:ident, $name:literal, $body:expr) => {
        Test {
            workflow: Workflow::$workflow,
            name: $name,
            run: $body,
        }
    };
}

pub(crate) fn all() -> Vec<Test> {
    let mut tests = Vec::new();
    tests.extend(pull());
    tests.extend(push());
    tests.extend(discovery());
    tests.extend(management());
    tests
}

fn pull() -> Vec<Test> {
    vec![
        test!(Pull, "pull/base-endpoint-200", |cx| {
            let ex = cx.send("GET", "/v2/", &[], Vec::new())?;
            ex.status_in(
                &[200],
                "GET /v2/ MUST answer 200 on a registry implementing the spec (end-1)",
            )
        }),
        test!(Pull, "pull/setup-push-image", |cx| cx.image().map(|_| ())),
        test!(Pull, "pull/manifest-by-tag", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/{}", cx.ns(), image.tag),
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )?;
            ex.status_in(&[200], "GET a manifest by tag (end-3)")?;
            ex.check(
                ex.body() == image.manifest.as_slice(),
                "the registry MUST serve the manifest's exact bytes",
            )?;
            ex.check(
                ex.header("content-type") == Some(OCI_MANIFEST),
                "Content-Type MUST be the manifest's media type",
            )?;
            ex.check(
                ex.header("docker-content-digest") == Some(image.manifest_digest.as_str()),
                "Docker-Content-Digest MUST be the manifest's digest",
            )
        }),
        test!(Pull, "pull/manifest-by-digest", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/{}", cx.ns(), image.manifest_digest),
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )?;
            ex.status_in(&[200], "GET a manifest by digest (end-3)")?;
            ex.check(
                ex.body() == image.manifest.as_slice(),
                "the registry MUST serve the manifest's exact bytes",
            )
        }),
        test!(Pull, "pull/manifest-head-by-tag-and-digest", |cx| {
            let image = cx.image()?;
            for reference in [&image.tag, &image.manifest_digest] {
                let ex = cx.send(
                    "HEAD",
                    &format!("/v2/{}/manifests/{reference}", cx.ns()),
                    &[("accept", OCI_MANIFEST)],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[200],
                    "HEAD on an existing manifest MUST answer 200 (end-3)",
                )?;
                ex.check(ex.body().is_empty(), "a HEAD response has no body")?;
                ex.check(
                    ex.header("content-length") == Some(image.manifest.len().to_string().as_str()),
                    "HEAD SHOULD carry the manifest's Content-Length",
                )?;
            }
            Ok(())
        }),
        test!(Pull, "pull/blob-get", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[200], "GET an existing blob (end-2)")?;
            ex.check(
                ex.body() == image.layer.as_slice(),
                "the blob's bytes MUST be served as pushed",
            )
        }),
        test!(Pull, "pull/blob-head", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "HEAD",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.config_digest),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[200], "HEAD an existing blob (end-2)")?;
            ex.check(ex.body().is_empty(), "a HEAD response has no body")?;
            ex.has_header(
                "content-length",
                "a blob HEAD response carries the blob's length",
            )
        }),
        test!(Pull, "pull/blob-range", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
                &[("range", "bytes=10-19")],
                Vec::new(),
            )?;
            ex.status_in(&[206], "a satisfiable Range on a blob GET is answered with 206 Partial Content (RFC 9110 §14)")?;
            ex.check(
                ex.body() == &image.layer[10..20],
                "the 206 body MUST be exactly the requested range",
            )?;
            ex.check(
                ex.header("content-range")
                    == Some(format!("bytes 10-19/{}", image.layer.len()).as_str()),
                "a 206 MUST carry Content-Range: bytes 10-19/<size>",
            )
        }),
        test!(Pull, "pull/blob-range-suffix", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
                &[("range", "bytes=-16")],
                Vec::new(),
            )?;
            ex.status_in(
                &[206],
                "a suffix Range is answered with 206 (RFC 9110 §14.1.1)",
            )?;
            ex.check(
                ex.body() == &image.layer[image.layer.len() - 16..],
                "the body MUST be the last 16 bytes",
            )
        }),
        test!(Pull, "pull/blob-range-unsatisfiable-416", |cx| {
            let image = cx.image()?;
            let range = format!("bytes={}-", image.layer.len() + 10);
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
                &[("range", &range)],
                Vec::new(),
            )?;
            ex.status_in(
                &[416],
                "a Range beyond the blob's end is unsatisfiable: 416 (RFC 9110 §15.5.17)",
            )
        }),
        test!(Pull, "pull/blob-range-end-beyond-size", |cx| {
            let image = cx.image()?;
            let len = image.layer.len();
            let range = format!("bytes={}-{}", len - 100, len + 5000);
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
                &[("range", &range)],
                Vec::new(),
            )?;
            ex.status_in(&[206], "a range whose end passes the blob's end is served up to the end (RFC 9110 §14.1.2)")?;
            ex.check(
                ex.body() == &image.layer[len - 100..],
                "the body is the last 100 bytes",
            )?;
            ex.check(
                ex.header("content-length") == Some("100"),
                "Content-Length is the bytes actually sent",
            )
        }),
        test!(Pull, "pull/blob-range-reversed-416", |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
                &[("range", "bytes=500-0")],
                Vec::new(),
            )?;
            ex.status_in(&[416], "a range whose last byte precedes its first is answered with 416 (as the official suite requires)")
        }),
        test!(Pull, "pull/manifest-unknown-tag-404", |cx| {
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/no-such-tag-{}", cx.ns(), cx.config.run_id),
                &[],
                Vec::new(),
            )?;
            ex.status_in(
                &[404],
                "a manifest that does not exist MUST answer 404 (end-3)",
            )?;
            ex.error_code("MANIFEST_UNKNOWN")
        }),
        test!(Pull, "pull/manifest-unknown-digest-404", |cx| {
            let digest = sha256(format!("absent manifest {}", cx.config.run_id).as_bytes());
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/{digest}", cx.ns()),
                &[],
                Vec::new(),
            )?;
            ex.status_in(
                &[404],
                "a manifest that does not exist MUST answer 404 (end-3)",
            )?;
            ex.error_code("MANIFEST_UNKNOWN")
        }),
        test!(Pull, "pull/blob-unknown-404", |cx| {
            let digest = sha256(format!("absent blob {}", cx.config.run_id).as_bytes());
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{digest}", cx.ns()),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[404], "a blob that does not exist MUST answer 404 (end-2)")?;
            ex.error_code("BLOB_UNKNOWN")
        }),
        test!(Pull, "pull/blob-head-unknown-404", |cx| {
            let digest = sha256(format!("absent blob head {}", cx.config.run_id).as_bytes());
            let ex = cx.send(
                "HEAD",
                &format!("/v2/{}/blobs/{digest}", cx.ns()),
                &[],
                Vec::new(),
            )?;
            ex.status_in(
                &[404],
                "HEAD on a blob that does not exist MUST answer 404 (end-2)",
            )
        }),
        test!(Pull, "pull/repository-unknown-404", |cx| {
            let ex = cx.send(
                "GET",
                &format!(
                    "/v2/{}/absent-{}/manifests/latest",
                    cx.ns(),
                    cx.config.run_id
                ),
                &[],
                Vec::new(),
            )?;
            ex.status_in(
                &[404],
                "an attempt to pull a nonexistent repository MUST return 404",
            )
        }),
    ]
}

fn push() -> Vec<Test> {
    vec![
        test!(Push, "push/upload-start-202-location", |cx| {
            let (ex, _) = cx.start_upload(cx.ns(), "")?;
            ex.status_in(&[202], "POST starts an upload session with 202 Accepted")
        }),
        test!(Push, "push/monolithic-single-post", |cx| {
            let blob = cx.bytes("single-post", 3000);
            let digest = sha256(&blob);
            let ex = cx.send(
                "POST",
                &format!("/v2/{}/blobs/uploads/?digest={digest}", cx.ns()),
                &[("content-type", "application/octet-stream")],
                blob.clone(),
            )?;
            ex.status_in(
                &[201, 202],
                "a single POST with ?digest= answers 201, or 202 where unsupported (end-4b)",
            )?;
            if ex.status() == 202 {
                return Err(fail(
                    "single-POST upload is not supported (202): the spec allows it, but berth targets must support it",
                ));
            }
            ex.has_header("location", "a 201 MUST carry Location: <blob-location>")?;
            let got = cx.send(
                "GET",
                &format!("/v2/{}/blobs/{digest}", cx.ns()),
                &[],
                Vec::new(),
            )?;
            got.status_in(&[200], "the blob is readable after the single POST")?;
            got.check(
                got.body() == blob.as_slice(),
                "the blob's bytes MUST be served as pushed",
            )
        }),
        test!(Push, "push/monolithic-post-then-put", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("post-put", 5000);
            let digest = cx.push_blob(&ns, &blob)?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.status_in(&[200], "the blob is readable after POST then PUT")?;
            got.check(
                got.body() == blob.as_slice(),
                "the blob's bytes MUST be served as pushed",
            )
        }),
        test!(Push, "push/put-location-is-pullable", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("location", 100);
            let digest = sha256(&blob);
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[],
                blob,
            )?;
            ex.status_in(&[201], "closing PUT answers 201")?;
            ex.has_header(
                "location",
                "the closing PUT MUST carry Location: <blob-location>",
            )?;
            let url = ex.header("location").unwrap_or_default().to_owned();
            let got = cx.send("GET", &url, &[], Vec::new())?;
            got.status_in(&[200], "<blob-location> MUST be a pullable blob URL")
        }),
        test!(Push, "push/chunked-with-content-range", |cx| {
            let ns = cx.ns().to_owned();
            let (post, mut location) = cx.start_upload(&ns, "")?;
            let min = post
                .header("oci-chunk-min-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            // At least two chunks of the advertised minimum, plus a shorter last one.
            let chunk = min.max(1024);
            let blob = cx.bytes("chunked", 2 * chunk + chunk / 3 + 7);
            let mut offset = 0;
            while offset < blob.len() {
                let end = (offset + chunk).min(blob.len());
                let range = format!("{}-{}", offset, end - 1);
                let length = (end - offset).to_string();
                let ex = cx.send(
                    "PATCH",
                    &location,
                    &[
                        ("content-type", "application/octet-stream"),
                        ("content-range", &range),
                        ("content-length", &length),
                    ],
                    blob[offset..end].to_vec(),
                )?;
                ex.status_in(&[202], "each chunk PATCH MUST answer 202 Accepted (end-5)")?;
                ex.has_header("location", "a chunk response MUST carry Location")?;
                ex.check(
                    range_end(&ex) == Some(end as u64 - 1),
                    format!("a chunk response MUST carry Range: 0-{}", end - 1),
                )?;
                location = ex.header("location").unwrap_or_default().to_owned();
                offset = end;
            }
            let digest = sha256(&blob);
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[("content-length", "0")],
                Vec::new(),
            )?;
            ex.status_in(&[201], "the closing PUT MUST answer 201 Created")?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.check(
                got.body() == blob.as_slice(),
                "the chunked blob's bytes MUST be served as pushed",
            )
        }),
        test!(Push, "push/chunked-small-chunks", |cx| {
            let ns = cx.ns().to_owned();
            let (_, mut location) = cx.start_upload(&ns, "")?;
            let blob = cx.bytes("small-chunks", 1000);
            for (i, piece) in blob.chunks(300).enumerate() {
                let range = format!("{}-{}", i * 300, i * 300 + piece.len() - 1);
                let ex = cx.send(
                    "PATCH",
                    &location,
                    &[("content-range", &range)],
                    piece.to_vec(),
                )?;
                ex.status_in(
                    &[202],
                    "a final-size or smaller chunk MAY be any length; each PATCH answers 202",
                )?;
                location = ex.header("location").unwrap_or_default().to_owned();
            }
            let digest = sha256(&blob);
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[201], "the closing PUT answers 201")
        }),
        test!(Push, "push/chunk-out-of-order-416", |cx| {
            let ns = cx.ns().to_owned();
            let (_, location) = cx.start_upload(&ns, "")?;
            let first = cx.send("PATCH", &location, &[("content-range", "0-9")], vec![1; 10])?;
            first.status_in(&[202], "the first chunk is accepted")?;
            let location = first.header("location").unwrap_or(&location).to_owned();
            let ex = cx.send(
                "PATCH",
                &location,
                &[("content-range", "20-29")],
                vec![2; 10],
            )?;
            ex.status_in(
                &[416],
                "a chunk uploaded out of order MUST get 416 Requested Range Not Satisfiable",
            )
        }),
        test!(Push, "push/chunk-retry-previous-416", |cx| {
            let ns = cx.ns().to_owned();
            let (_, location) = cx.start_upload(&ns, "")?;
            let first = cx.send("PATCH", &location, &[("content-range", "0-9")], vec![1; 10])?;
            first.status_in(&[202], "the first chunk is accepted")?;
            let location = first.header("location").unwrap_or(&location).to_owned();
            let second = cx.send(
                "PATCH",
                &location,
                &[("content-range", "10-19")],
                vec![2; 10],
            )?;
            second.status_in(&[202], "the second chunk is accepted")?;
            let location = second.header("location").unwrap_or(&location).to_owned();
            let ex = cx.send("PATCH", &location, &[("content-range", "0-9")], vec![1; 10])?;
            ex.status_in(&[416], "resending an earlier chunk is out of order: 416")
        }),
        test!(Push, "push/upload-status-204-range-location", |cx| {
            let ns = cx.ns().to_owned();
            let (_, location) = cx.start_upload(&ns, "")?;
            let first = cx.send(
                "PATCH",
                &location,
                &[("content-range", "0-99")],
                vec![7; 100],
            )?;
            first.status_in(&[202], "the chunk is accepted")?;
            let location = first.header("location").unwrap_or(&location).to_owned();
            let ex = cx.send("GET", &location, &[], Vec::new())?;
            ex.status_in(
                &[204],
                "GET on an active upload MUST answer 204 No Content (end-13)",
            )?;
            ex.has_header("location", "upload status MUST carry Location")?;
            ex.check(
                range_end(&ex) == Some(99),
                "upload status MUST carry Range: 0-99",
            )
        }),
        test!(Push, "push/final-put-carries-last-chunk", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("final-put", 2000);
            let (_, location) = cx.start_upload(&ns, "")?;
            let first = cx.send(
                "PATCH",
                &location,
                &[("content-range", "0-1199")],
                blob[..1200].to_vec(),
            )?;
            first.status_in(&[202], "the first chunk is accepted")?;
            let location = first.header("location").unwrap_or(&location).to_owned();
            let digest = sha256(&blob);
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[("content-range", "1200-1999")],
                blob[1200..].to_vec(),
            )?;
            ex.status_in(
                &[201],
                "the final chunk MAY be uploaded in the closing PUT; it answers 201",
            )?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.check(
                got.body() == blob.as_slice(),
                "the blob's bytes MUST be served as pushed",
            )
        }),
        test!(Push, "push/patch-without-content-range", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("streamed", 3000);
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.send(
                "PATCH",
                &location,
                &[("content-type", "application/octet-stream")],
                blob.clone(),
            )?;
            ex.status_in(
                &[202],
                "a streamed PATCH (no Content-Range) appends and answers 202",
            )?;
            ex.check(
                range_end(&ex) == Some(2999),
                "the response Range covers the streamed bytes",
            )?;
            let location = ex.header("location").unwrap_or(&location).to_owned();
            let digest = sha256(&blob);
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[201], "the closing PUT answers 201")
        }),
        test!(Push, "push/empty-blob", |cx| {
            let ns = cx.ns().to_owned();
            let digest = cx.push_blob(&ns, b"")?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.status_in(&[200], "an empty blob is a blob: readable after push")?;
            got.check(got.body().is_empty(), "the empty blob has no bytes")
        }),
        test!(Push, "push/upload-cancel", |cx| {
            let ns = cx.ns().to_owned();
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.send("DELETE", &location, &[("content-length", "0")], Vec::new())?;
            ex.status_in(&[204], "cancelling an upload SHOULD answer 204 (end-14)")?;
            let status = cx.send("GET", &location, &[], Vec::new())?;
            status.status_in(&[404], "a cancelled upload is unknown: 404 (end-13)")?;
            status.error_code("BLOB_UPLOAD_UNKNOWN")
        }),
        test!(Push, "push/digest-mismatch-400", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("mismatch", 500);
            let wrong = sha256(b"these are not the bytes");
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={wrong}")),
                &[],
                blob,
            )?;
            ex.status_in(
                &[400],
                "a closing PUT whose digest does not match the content MUST fail with 400 (end-6)",
            )?;
            ex.error_code("DIGEST_INVALID")?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{wrong}"), &[], Vec::new())?;
            got.status_in(
                &[404],
                "nothing is readable under a digest the bytes do not hash to",
            )
        }),
        test!(Push, "push/digest-mismatch-single-post-400", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("mismatch-post", 600);
            let wrong = sha256(b"not the posted bytes");
            let ex = cx.send(
                "POST",
                &format!("/v2/{ns}/blobs/uploads/?digest={wrong}"),
                &[],
                blob,
            )?;
            ex.status_in(
                &[400],
                "a single POST whose digest does not match its body fails with 400",
            )?;
            ex.error_code("DIGEST_INVALID")
        }),
        test!(Push, "push/manifest-put-invalid-digest-400", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(&config, 2, EMPTY_CONFIG, &[], "");
            let ex = cx.put_manifest(
                &ns,
                "sha256:baddigeststring",
                OCI_MANIFEST,
                manifest.as_bytes(),
            )?;
            ex.status_in(
                &[400],
                "a manifest PUT to a malformed digest reference is rejected with 400",
            )?;
            let got = cx.send(
                "GET",
                &format!("/v2/{ns}/manifests/sha256:baddigeststring"),
                &[],
                Vec::new(),
            )?;
            got.status_in(
                &[400, 404],
                "a GET of a malformed digest reference answers 400 or 404",
            )
        }),
        test!(Push, "push/manifest-large-annotations", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            // About 1 MB of annotations: registries SHOULD accept manifests of at least 4 MB.
            let annotations: Vec<String> = (0..100)
                .map(|i| format!(r#""large-annotation-{i}":"{}""#, "A".repeat(10_000)))
                .collect();
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[],
                &format!(r#","annotations":{{{}}}"#, annotations.join(",")),
            );
            let ex = cx.put_manifest(
                &ns,
                &format!("large-{}", cx.config.run_id),
                OCI_MANIFEST,
                manifest.as_bytes(),
            )?;
            ex.status_in(
                &[201],
                "a 1 MB manifest is accepted (registries SHOULD support at least 4 MB)",
            )
        }),
        test!(Push, "push/sha512-blob-digest-algorithm", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("sha512", 2048);
            let (_, location) = cx.start_upload(&ns, "?digest-algorithm=sha512")?;
            let first = cx.send(
                "PATCH",
                &location,
                &[("content-range", "0-1023")],
                blob[..1024].to_vec(),
            )?;
            first.status_in(&[202], "a chunk of a sha512 upload is accepted")?;
            let location = first.header("location").unwrap_or(&location).to_owned();
            let digest = sha512(&blob);
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[("content-range", "1024-2047")],
                blob[1024..].to_vec(),
            )?;
            ex.status_in(&[201], "a blob pushed with digest-algorithm=sha512 closes with its sha512 digest (end-4c, end-6)")?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.status_in(&[200], "the sha512 blob is readable by its digest")?;
            got.check(
                got.body() == blob.as_slice(),
                "the blob's bytes MUST be served as pushed",
            )
        }),
        test!(Push, "push/sha512-blob-monolithic", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("sha512-mono", 700);
            let digest = sha512(&blob);
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.send(
                "PUT",
                &with_query(&location, &format!("digest={digest}")),
                &[],
                blob,
            )?;
            ex.status_in(
                &[201],
                "POST then PUT with a sha512 digest publishes the blob",
            )?;
            let got = cx.send("HEAD", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.status_in(&[200], "the sha512 blob exists")
        }),
        test!(Push, "push/mount-with-from", |cx| {
            let ns = cx.ns().to_owned();
            let target = cx.config.crossmount_namespace.clone();
            let blob = cx.bytes("mount-from", 777);
            let digest = cx.push_blob(&ns, &blob)?;
            let ex = cx.send(
                "POST",
                &format!("/v2/{target}/blobs/uploads/?mount={digest}&from={ns}"),
                &[("content-length", "0")],
                Vec::new(),
            )?;
            ex.status_in(
                &[201],
                "a mount of a blob that exists in `from` MUST answer 201 Created (end-11)",
            )?;
            ex.has_header("location", "a successful mount MUST carry Location")?;
            let got = cx.send(
                "GET",
                &format!("/v2/{target}/blobs/{digest}"),
                &[],
                Vec::new(),
            )?;
            got.status_in(
                &[200],
                "the mounted blob is readable in the target repository",
            )
        }),
        test!(Push, "push/mount-without-from", |cx| {
            let ns = cx.ns().to_owned();
            let target = cx.config.crossmount_namespace.clone();
            let blob = cx.bytes("mount-no-from", 778);
            let digest = cx.push_blob(&ns, &blob)?;
            let ex = cx.send(
                "POST",
                &format!("/v2/{target}/blobs/uploads/?mount={digest}"),
                &[("content-length", "0")],
                Vec::new(),
            )?;
            ex.status_in(
                &[201, 202],
                "without `from` a registry MAY mount (201) or start an upload (202)",
            )?;
            if ex.status() == 201 {
                let got = cx.send(
                    "HEAD",
                    &format!("/v2/{target}/blobs/{digest}"),
                    &[],
                    Vec::new(),
                )?;
                got.status_in(&[200], "a 201 mount makes the blob readable in the target")?;
            } else {
                ex.has_header(
                    "location",
                    "a 202 starts an upload session and MUST carry Location",
                )?;
            }
            Ok(())
        }),
        test!(Push, "push/mount-missing-blob-falls-back-to-upload", |cx| {
            let ns = cx.ns().to_owned();
            let target = cx.config.crossmount_namespace.clone();
            let absent = sha256(format!("never pushed {}", cx.config.run_id).as_bytes());
            let ex = cx.send(
                "POST",
                &format!("/v2/{target}/blobs/uploads/?mount={absent}&from={ns}"),
                &[("content-length", "0")],
                Vec::new(),
            )?;
            ex.status_in(
                &[202],
                "a mount that cannot be done SHOULD answer 202 and start an upload session",
            )?;
            ex.has_header("location", "the 202 MUST carry the upload's Location")
        }),
        test!(Push, "push/manifest-by-tag", |cx| {
            let image = cx.push_image("push-tag")?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/{}", cx.ns(), image.tag),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[200], "a manifest pushed by tag is readable by that tag")?;
            ex.check(ex.body() == image.manifest.as_slice(), "byte-exact")
        }),
        test!(Push, "push/manifest-by-digest", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[],
                &format!(
                    r#","annotations":{{"run":"{}-by-digest"}}"#,
                    cx.config.run_id
                ),
            );
            let digest = sha256(manifest.as_bytes());
            let ex = cx.put_manifest(&ns, &digest, OCI_MANIFEST, manifest.as_bytes())?;
            ex.status_in(
                &[201],
                "PUT /v2/<name>/manifests/<digest> stores the manifest (end-7)",
            )?;
            ex.has_header("location", "a manifest PUT MUST carry Location")?;
            ex.check(
                ex.header("docker-content-digest") == Some(digest.as_str()),
                "Docker-Content-Digest MUST equal the client-provided digest",
            )
        }),
        test!(Push, "push/manifest-custom-fields-byte-exact", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            // Unusual spacing and unknown fields: the registry MUST store the exact bytes.
            let manifest = format!(
                "{{\n  \"schemaVersion\" : 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\":\"{EMPTY_CONFIG}\",\"digest\":\"{config}\",\"size\":2}},\n  \"layers\": [],\n  \"x-custom\": {{\"nested\": [1, 2.5, null, \"{}\"]}}\n}}\n",
                cx.config.run_id
            );
            let tag = format!("custom-{}", cx.config.run_id);
            let ex = cx.put_manifest(&ns, &tag, OCI_MANIFEST, manifest.as_bytes())?;
            ex.status_in(&[201], "a manifest with unknown fields is accepted")?;
            let got = cx.send("GET", &format!("/v2/{ns}/manifests/{tag}"), &[], Vec::new())?;
            got.check(
                got.body() == manifest.as_bytes(),
                "the registry MUST store the manifest in the exact byte representation provided",
            )
        }),
        test!(Push, "push/manifest-non-distributable-layer", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let foreign = sha256(format!("foreign layer {}", cx.config.run_id).as_bytes());
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[(&foreign, 1234, NON_DISTRIBUTABLE)],
                "",
            );
            let ex = cx.put_manifest(
                &ns,
                &format!("foreign-{}", cx.config.run_id),
                OCI_MANIFEST,
                manifest.as_bytes(),
            )?;
            ex.status_in(
                &[201],
                "a non-distributable layer's blob need not be pushed; the manifest is accepted",
            )
        }),
        test!(Push, "push/manifest-missing-blob-rejected", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let missing = sha256(format!("missing layer {}", cx.config.run_id).as_bytes());
            let manifest =
                image_manifest(&config, 2, EMPTY_CONFIG, &[(&missing, 10, OCI_LAYER)], "");
            let ex = cx.put_manifest(
                &ns,
                &format!("missing-{}", cx.config.run_id),
                OCI_MANIFEST,
                manifest.as_bytes(),
            )?;
            ex.status_in(
                &[400],
                "a manifest referencing a blob the registry does not have is rejected with 400",
            )?;
            ex.error_code("MANIFEST_BLOB_UNKNOWN")
                .or_else(|_| ex.error_code("MANIFEST_INVALID"))
        }),
        test!(Push, "push/manifest-wrong-digest-rejected", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(&config, 2, EMPTY_CONFIG, &[], "");
            let wrong = sha256(b"a different manifest");
            let ex = cx.put_manifest(&ns, &wrong, OCI_MANIFEST, manifest.as_bytes())?;
            ex.status_in(
                &[400],
                "a manifest PUT by a digest its bytes do not hash to MUST be rejected",
            )?;
            ex.error_code("DIGEST_INVALID")
                .or_else(|_| ex.error_code("MANIFEST_INVALID"))?;
            let got = cx.send(
                "GET",
                &format!("/v2/{ns}/manifests/{wrong}"),
                &[],
                Vec::new(),
            )?;
            got.status_in(&[404], "nothing is stored under the wrong digest")
        }),
        test!(Push, "push/manifest-invalid-json-400", |cx| {
            let ex = cx.put_manifest(
                cx.ns(),
                &format!("bad-{}", cx.config.run_id),
                OCI_MANIFEST,
                b"{\"schemaVersion\": 2, oops",
            )?;
            ex.status_in(&[400], "an invalid manifest is rejected with 400")?;
            ex.error_code("MANIFEST_INVALID")
        }),
        test!(Push, "push/image-index", |cx| {
            let ns = cx.ns().to_owned();
            let image = cx.push_image("index-child")?;
            let index = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
                image.manifest_digest,
                image.manifest.len()
            );
            let tag = format!("index-{}", cx.config.run_id);
            let ex = cx.put_manifest(&ns, &tag, OCI_INDEX, index.as_bytes())?;
            ex.status_in(&[201], "an image index is a manifest: PUT answers 201")?;
            let got = cx.send(
                "GET",
                &format!("/v2/{ns}/manifests/{tag}"),
                &[("accept", OCI_INDEX)],
                Vec::new(),
            )?;
            got.check(
                got.header("content-type") == Some(OCI_INDEX),
                "the index is served with its media type",
            )?;
            got.check(got.body() == index.as_bytes(), "byte-exact")
        }),
        test!(Push, "push/artifact-manifest", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let payload = cx.bytes("artifact", 64);
            let layer = cx.push_blob(&ns, &payload)?;
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[(&layer, 64, "application/vnd.example.payload")],
                r#","artifactType":"application/vnd.example.artifact""#,
            );
            let ex = cx.put_manifest(
                &ns,
                &format!("artifact-{}", cx.config.run_id),
                OCI_MANIFEST,
                manifest.as_bytes(),
            )?;
            ex.status_in(
                &[201],
                "an artifact (artifactType, empty config) is accepted",
            )
        }),
        test!(Push, "push/sha512-manifest", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[],
                &format!(r#","annotations":{{"run":"{}-sha512"}}"#, cx.config.run_id),
            );
            let digest = sha512(manifest.as_bytes());
            let ex = cx.put_manifest(&ns, &digest, OCI_MANIFEST, manifest.as_bytes())?;
            ex.status_in(&[201], "a manifest PUT by its sha512 digest is stored")?;
            let got = cx.send(
                "GET",
                &format!("/v2/{ns}/manifests/{digest}"),
                &[],
                Vec::new(),
            )?;
            got.status_in(&[200], "the manifest is readable by its sha512 digest")?;
            got.check(got.body() == manifest.as_bytes(), "byte-exact")
        }),
        test!(Push, "push/manifest-tag-parameters-oci-tag", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[],
                &format!(r#","annotations":{{"run":"{}-tags"}}"#, cx.config.run_id),
            );
            let digest = sha256(manifest.as_bytes());
            let tags = [
                format!("t1-{}", cx.config.run_id),
                format!("t2-{}", cx.config.run_id),
            ];
            let ex = cx.put_manifest(
                &ns,
                &format!("{digest}?tag={}&tag={}", tags[0], tags[1]),
                OCI_MANIFEST,
                manifest.as_bytes(),
            )?;
            ex.status_in(
                &[201],
                "PUT by digest with tag parameters answers 201 (end-7b)",
            )?;
            let announced: Vec<String> = ex
                .response
                .headers()
                .get_all("oci-tag")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| {
                    v.split(',')
                        .map(|t| t.trim().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            for tag in &tags {
                ex.check(announced.contains(tag), format!("a registry supporting tag parameters MUST include OCI-Tag for each accepted tag ({tag})"))?;
                let got = cx.send("GET", &format!("/v2/{ns}/manifests/{tag}"), &[], Vec::new())?;
                got.status_in(&[200], "each accepted tag points to the manifest")?;
            }
            Ok(())
        }),
    ]
}

/// The subject manifest of the referrers tests, pushed once.
fn subject(cx: &mut Context<'_>) -> Result<(String, usize), Failure> {
    if let Some(subject) = cx.subject.clone() {
        return Ok(subject);
    }
    let ns = cx.ns().to_owned();
    let config = cx.push_empty_config(&ns)?;
    let manifest = image_manifest(
        &config,
        2,
        EMPTY_CONFIG,
        &[],
        &format!(r#","annotations":{{"run":"{}-subject"}}"#, cx.config.run_id),
    );
    let ex = cx.put_manifest(
        &ns,
        &format!("subject-{}", cx.config.run_id),
        OCI_MANIFEST,
        manifest.as_bytes(),
    )?;
    ex.status_in(&[201], "setup: pushing the subject manifest")?;
    let subject = (sha256(manifest.as_bytes()), manifest.len());
    cx.subject = Some(subject.clone());
    Ok(subject)
}

fn referrer(
    cx: &Context<'_>,
    subject: &(String, usize),
    artifact_type: &str,
    label: &str,
) -> Result<(String, Exchange), Failure> {
    let ns = cx.ns().to_owned();
    let config = cx.push_empty_config(&ns)?;
    let extra = format!(
        r#","artifactType":"{artifact_type}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"label":"{label}"}}"#,
        subject.0, subject.1
    );
    let manifest = image_manifest(&config, 2, EMPTY_CONFIG, &[], &extra);
    let digest = sha256(manifest.as_bytes());
    let ex = cx.put_manifest(&ns, &digest, OCI_MANIFEST, manifest.as_bytes())?;
    Ok((digest, ex))
}

fn referrer_digests(ex: &Exchange) -> Vec<(String, Option<String>)> {
    ex.json()
        .and_then(|j| j.get("manifests").and_then(|m| m.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d.get("digest")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                d.get("artifactType")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
            )
        })
        .collect()
}

fn discovery() -> Vec<Test> {
    vec![
        test!(ContentDiscovery, "discovery/tags-list", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(&config, 2, EMPTY_CONFIG, &[], "");
            for tag in ["tag-a", "tag-b", "tag-c", "tag-d"] {
                cx.put_manifest(&ns, tag, OCI_MANIFEST, manifest.as_bytes())?
                    .status_in(&[201], "setup: tagging")?;
            }
            let ex = cx.send("GET", &format!("/v2/{ns}/tags/list"), &[], Vec::new())?;
            ex.status_in(&[200], "GET /v2/<name>/tags/list MUST answer 200 (end-8a)")?;
            let json = ex.json().unwrap_or_default();
            ex.check(
                json.get("name").and_then(|n| n.as_str()) == Some(ns.as_str()),
                "the body's name MUST be the repository",
            )?;
            let tags: Vec<String> = json
                .get("tags")
                .and_then(|t| t.as_array())
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            ex.check(
                ["tag-a", "tag-b", "tag-c", "tag-d"]
                    .iter()
                    .all(|t| tags.iter().any(|x| x == t)),
                "every tag is listed",
            )?;
            let mut sorted = tags.clone();
            sorted.sort();
            ex.check(
                tags == sorted,
                "tags MUST be in lexical (ASCIIbetical) order",
            )
        }),
        test!(ContentDiscovery, "discovery/tags-list-n", |cx| {
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/tags/list?n=2", cx.ns()),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[200], "tags list with n answers 200 (end-8b)")?;
            let count = ex
                .json()
                .and_then(|j| j.get("tags").and_then(|t| t.as_array()).map(Vec::len))
                .unwrap_or(0);
            ex.check(
                count == 2,
                "with n=2 and more tags available, the response MUST include 2 results",
            )
        }),
        test!(ContentDiscovery, "discovery/tags-list-n-last", |cx| {
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/tags/list?n=2&last=tag-b", cx.ns()),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[200], "tags list with n and last answers 200 (end-8b)")?;
            let tags: Vec<String> = ex
                .json()
                .and_then(|j| j.get("tags").and_then(|t| t.as_array()).cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            ex.check(
                tags.len() <= 2 && tags.first().map(String::as_str) == Some("tag-c"),
                "results begin non-inclusively after `last` (tag-c follows tag-b)",
            )
        }),
        test!(
            ContentDiscovery,
            "discovery/tags-list-link-pagination",
            |cx| {
                let mut url = format!("/v2/{}/tags/list?n=1", cx.ns());
                let mut collected = Vec::new();
                for _ in 0..200 {
                    let ex = cx.send("GET", &url, &[], Vec::new())?;
                    ex.status_in(&[200], "each page answers 200")?;
                    let tags: Vec<String> = ex
                        .json()
                        .and_then(|j| j.get("tags").and_then(|t| t.as_array()).cloned())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect();
                    ex.check(tags.len() <= 1, "a page MUST NOT exceed n")?;
                    collected.extend(tags);
                    match ex.header("link").and_then(next_link) {
                        Some(next) => url = next,
                        None => break,
                    }
                }
                let all = cx.send(
                    "GET",
                    &format!("/v2/{}/tags/list", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                let expected: Vec<String> = all
                    .json()
                    .and_then(|j| j.get("tags").and_then(|t| t.as_array()).cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
                all.check(collected == expected, format!("following Link: rel=\"next\" MUST visit every tag once, in order (got {collected:?})"))
            }
        ),
        test!(ContentDiscovery, "discovery/tags-list-n-zero", |cx| {
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/tags/list?n=0", cx.ns()),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[200], "n=0 answers 200")?;
            let count = ex
                .json()
                .and_then(|j| j.get("tags").and_then(|t| t.as_array()).map(Vec::len))
                .unwrap_or(usize::MAX);
            ex.check(
                count == 0,
                "when n is zero, the endpoint MUST return an empty list",
            )?;
            ex.check(
                ex.header("link").is_none(),
                "when n is zero, the response MUST NOT include a Link header",
            )
        }),
        test!(
            ContentDiscovery,
            "discovery/referrers-subject-header-on-put",
            |cx| {
                let subject = subject(cx)?;
                let (_, ex) = referrer(cx, &subject, "application/vnd.example.sbom", "sbom")?;
                ex.status_in(&[201], "a manifest with a subject is accepted")?;
                ex.check(
                    ex.header("oci-subject") == Some(subject.0.as_str()),
                    "a registry supporting referrers MUST answer OCI-Subject: <subject digest>",
                )
            }
        ),
        test!(ContentDiscovery, "discovery/referrers-list", |cx| {
            let subject = subject(cx)?;
            let (sig, put) = referrer(cx, &subject, "application/vnd.example.signature", "sig")?;
            put.status_in(&[201], "setup: pushing a second referrer")?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/referrers/{}", cx.ns(), subject.0),
                &[],
                Vec::new(),
            )?;
            ex.status_in(
                &[200],
                "GET /v2/<name>/referrers/<digest> MUST answer 200 (end-12a)",
            )?;
            ex.check(
                ex.header("content-type")
                    .is_some_and(|c| c.starts_with(OCI_INDEX)),
                "Content-Type MUST be application/vnd.oci.image.index.v1+json",
            )?;
            let listed = referrer_digests(&ex);
            ex.check(
                listed.iter().any(|(d, t)| {
                    d == &sig && t.as_deref() == Some("application/vnd.example.signature")
                }),
                "each referrer is listed with its artifactType",
            )?;
            ex.check(listed.len() >= 2, "both referrers are listed")
        }),
        test!(
            ContentDiscovery,
            "discovery/referrers-artifact-type-filter",
            |cx| {
                let subject = subject(cx)?;
                let ex = cx.send(
                    "GET",
                    &format!(
                        "/v2/{}/referrers/{}?artifactType=application/vnd.example.sbom",
                        cx.ns(),
                        subject.0
                    ),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[200], "filtered referrers answer 200 (end-12b)")?;
                ex.check(ex.header("oci-filters-applied") == Some("artifactType"), "if filtering is applied the response MUST include OCI-Filters-Applied: artifactType")?;
                let listed = referrer_digests(&ex);
                ex.check(
                    !listed.is_empty()
                        && listed
                            .iter()
                            .all(|(_, t)| t.as_deref() == Some("application/vnd.example.sbom")),
                    "only referrers of that artifactType are listed",
                )
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-subject-pushed-later",
            |cx| {
                let ns = cx.ns().to_owned();
                let future = (
                    sha256(format!("a subject not yet pushed {}", cx.config.run_id).as_bytes()),
                    99,
                );
                let (digest, ex) = referrer(cx, &future, "application/vnd.example.early", "early")?;
                ex.status_in(
                    &[201],
                    "a manifest whose subject does not exist yet MUST be accepted",
                )?;
                let list = cx.send(
                    "GET",
                    &format!("/v2/{ns}/referrers/{}", future.0),
                    &[],
                    Vec::new(),
                )?;
                list.status_in(&[200], "referrers of the not-yet-pushed subject answer 200")?;
                list.check(
                    referrer_digests(&list).iter().any(|(d, _)| d == &digest),
                    "the early referrer is listed",
                )
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-unknown-digest-empty",
            |cx| {
                let absent =
                    sha256(format!("nothing refers to this {}", cx.config.run_id).as_bytes());
                let ex = cx.send(
                    "GET",
                    &format!("/v2/{}/referrers/{absent}", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[200], "a registry supporting referrers MUST NOT answer 404; no referrers is an empty index")?;
                let json = ex.json().unwrap_or_default();
                ex.check(
                    json.get("manifests")
                        .and_then(|m| m.as_array())
                        .is_some_and(Vec::is_empty),
                    "the body is an image index with an empty manifests list",
                )
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-invalid-digest-400",
            |cx| {
                let ex = cx.send(
                    "GET",
                    &format!("/v2/{}/referrers/sha256:not-a-digest", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[400], "a <digest> with an invalid syntax MUST get 400")
            }
        ),
    ]
}

fn management() -> Vec<Test> {
    vec![
        test!(ContentManagement, "management/delete-tag", |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(
                &config,
                2,
                EMPTY_CONFIG,
                &[],
                &format!(r#","annotations":{{"run":"{}-deltag"}}"#, cx.config.run_id),
            );
            let tag = format!("deltag-{}", cx.config.run_id);
            cx.put_manifest(&ns, &tag, OCI_MANIFEST, manifest.as_bytes())?
                .status_in(&[201], "setup")?;
            let ex = cx.send(
                "DELETE",
                &format!("/v2/{ns}/manifests/{tag}"),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[202], "deleting a tag MUST answer 202 Accepted (end-9)")?;
            let got = cx.send("GET", &format!("/v2/{ns}/manifests/{tag}"), &[], Vec::new())?;
            got.status_in(&[404], "once deleted, GET of the tag returns 404")?;
            let by_digest = cx.send(
                "GET",
                &format!("/v2/{ns}/manifests/{}", sha256(manifest.as_bytes())),
                &[],
                Vec::new(),
            )?;
            by_digest.status_in(&[200], "deleting a tag leaves the manifest")
        }),
        test!(
            ContentManagement,
            "management/delete-manifest-by-digest",
            |cx| {
                let ns = cx.ns().to_owned();
                let image = cx.push_image("delete-me")?;
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{ns}/manifests/{}", image.manifest_digest),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[202],
                    "deleting a manifest MUST answer 202 Accepted (end-9)",
                )?;
                let got = cx.send(
                    "GET",
                    &format!("/v2/{ns}/manifests/{}", image.manifest_digest),
                    &[],
                    Vec::new(),
                )?;
                got.status_in(
                    &[404],
                    "once deleted, GET of the manifest by digest returns 404",
                )?;
                let by_tag = cx.send(
                    "GET",
                    &format!("/v2/{ns}/manifests/{}", image.tag),
                    &[],
                    Vec::new(),
                )?;
                by_tag.status_in(
                    &[404],
                    "once deleted, GET of any tag pointing to that digest returns 404",
                )
            }
        ),
        test!(
            ContentManagement,
            "management/delete-unknown-manifest-404",
            |cx| {
                let absent = sha256(format!("never a manifest {}", cx.config.run_id).as_bytes());
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{}/manifests/{absent}", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[404],
                    "deleting a manifest that does not exist answers 404",
                )
            }
        ),
        test!(ContentManagement, "management/delete-blob", |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("delete-blob", 321);
            let digest = cx.push_blob(&ns, &blob)?;
            let ex = cx.send(
                "DELETE",
                &format!("/v2/{ns}/blobs/{digest}"),
                &[],
                Vec::new(),
            )?;
            ex.status_in(&[202], "deleting a blob MUST answer 202 Accepted (end-10)")?;
            let got = cx.send("GET", &format!("/v2/{ns}/blobs/{digest}"), &[], Vec::new())?;
            got.status_in(&[404], "a deleted blob is no longer readable")?;
            got.error_code("BLOB_UNKNOWN")
        }),
        test!(
            ContentManagement,
            "management/delete-unknown-blob-404",
            |cx| {
                let absent = sha256(format!("never a blob {}", cx.config.run_id).as_bytes());
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{}/blobs/{absent}", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[404],
                    "if the blob is not found, a 404 MUST be returned (end-10)",
                )?;
                ex.error_code("BLOB_UNKNOWN")
            }
        ),
        test!(
            ContentManagement,
            "management/referrers-updated-after-delete",
            |cx| {
                let subject = subject(cx)?;
                let (digest, put) =
                    referrer(cx, &subject, "application/vnd.example.doomed", "doomed")?;
                put.status_in(&[201], "setup: a referrer to delete")?;
                cx.send(
                    "DELETE",
                    &format!("/v2/{}/manifests/{digest}", cx.ns()),
                    &[],
                    Vec::new(),
                )?
                .status_in(&[202], "deleting the referrer")?;
                let ex = cx.send(
                    "GET",
                    &format!("/v2/{}/referrers/{}", cx.ns(), subject.0),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[200], "the referrers API answers 200 (end-12a)")?;
                ex.check(
                    !referrer_digests(&ex).iter().any(|(d, _)| d == &digest),
                    "a deleted manifest is no longer listed as a referrer",
                )
            }
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_url() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=1&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=1&last=b")
        );
        assert_eq!(
            next_link(r#"<https://x/a>; rel="prev", <https://x/b>; rel="next""#).as_deref(),
            Some("https://x/b")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }
}
