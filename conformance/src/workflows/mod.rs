//! The tests, in the order they run, and what they share: the exchange record that makes a
//! failure self-explaining, and the content every workflow pushes.
//!
//! Each test names the spec section it checks; each check quotes the requirement it enforces.

mod discovery;
mod management;
mod pull;
mod push;

use std::fmt;

use http::Request;
use sha2::{Digest as _, Sha256, Sha512};

use crate::client::Client;
use crate::headers::{is_spec_warning, parse_upload_range, resolve_reference};
use crate::{Config, Workflow};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const NON_DISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// The error codes of spec.md § Error Codes: a JSON error body MUST use only these.
const SPEC_ERROR_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

// Section titles of spec.md, as tests cite them.
const S_SUPPORT: &str = "Determining Support";
const S_PULL_MANIFESTS: &str = "Pulling manifests";
const S_PULL_BLOBS: &str = "Pulling blobs";
const S_EXISTS: &str = "Checking if content exists in the registry";
const S_PUSH: &str = "Push";
const S_PUSH_BLOBS: &str = "Pushing blobs";
const S_POST_PUT: &str = "POST then PUT";
const S_SINGLE_POST: &str = "Single POST";
const S_CHUNKED: &str = "Pushing a blob in chunks";
const S_CANCEL: &str = "Cancel a blob upload";
const S_MOUNT: &str = "Mounting a blob from another repository";
const S_PUSH_MANIFESTS: &str = "Pushing Manifests";
const S_SUBJECT: &str = "Pushing Manifests with Subject";
const S_TAGS: &str = "Listing Tags";
const S_REFERRERS: &str = "Listing Referrers";
const S_DELETE_TAGS: &str = "Deleting tags";
const S_DELETE_MANIFESTS: &str = "Deleting Manifests";
const S_DELETE_BLOBS: &str = "Deleting Blobs";

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

/// One request and its response, kept so that a failure can show what was sent and what came
/// back.
pub(crate) struct Exchange {
    method: String,
    uri: String,
    request_headers: Vec<(String, String)>,
    request_len: usize,
    /// Redirects followed before `response`, as `status → location`.
    redirects: Vec<String>,
    response: http::Response<Vec<u8>>,
}

const BODY_EXCERPT: usize = 600;

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

    /// Every value of a header that may repeat, split at commas (RFC 9110 §5.3).
    fn header_list(&self, name: &str) -> Vec<String> {
        self.response
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|t| t.trim().to_owned()))
            .filter(|t| !t.is_empty())
            .collect()
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
        for redirect in &self.redirects {
            out.push_str(&format!("\n  redirected: {redirect}"));
        }
        out.push_str(&format!("\n  got:  {}", self.response.status()));
        for (name, value) in self.response.headers() {
            out.push_str(&format!(
                "\n        {name}: {}",
                value.to_str().unwrap_or("<not text>")
            ));
        }
        let body = self.body();
        if !body.is_empty() {
            let shown = &body[..body.len().min(BODY_EXCERPT)];
            let text: String = String::from_utf8_lossy(shown)
                .trim_end()
                .chars()
                .map(|c| if c.is_control() && c != '\n' { '·' } else { c })
                .collect();
            out.push_str(&format!(
                "\n        body ({} bytes): {text}{}",
                body.len(),
                if body.len() > BODY_EXCERPT { "…" } else { "" }
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
        let expected_text = expected
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        self.check(
            expected.contains(&self.status()),
            format!(
                "expected status {expected_text}, got {}: {requirement}",
                self.status()
            ),
        )
    }

    /// The error codes of a spec-shaped error body, after checking that shape: a JSON 4xx body
    /// MUST be `{"errors":[{"code":..,"message":..,"detail":..}]}` with codes from the spec.
    fn error_codes(&self) -> Result<Vec<String>, Failure> {
        let shape = "a JSON error body MUST be {\"errors\":[{\"code\":\"<CODE>\",\"message\":\"<text>\",\"detail\":<any>}]} (spec.md § Error Codes)";
        let Some(json) = self.json() else {
            return Err(self
                .check(false, format!("{shape}; the body is not JSON"))
                .unwrap_err());
        };
        let Some(errors) = json.get("errors").and_then(|e| e.as_array()) else {
            return Err(self
                .check(false, format!("{shape}; there is no \"errors\" array"))
                .unwrap_err());
        };
        let mut codes = Vec::new();
        for error in errors {
            let code = error.get("code").and_then(|c| c.as_str()).unwrap_or("");
            self.check(
                SPEC_ERROR_CODES.contains(&code),
                format!(
                    "{shape}; \"code\" MUST be one of the spec's codes ({}), got {code:?}",
                    SPEC_ERROR_CODES.join(", ")
                ),
            )?;
            self.check(
                error.get("message").is_none_or(|m| m.is_string()),
                format!("{shape}; \"message\", if present, is a string"),
            )?;
            codes.push(code.to_owned());
        }
        self.check(!codes.is_empty(), format!("{shape}; \"errors\" is empty"))?;
        Ok(codes)
    }

    /// The body is a spec error body whose codes include one of `codes`.
    fn error_code_in(&self, codes: &[&str]) -> Check {
        let got = self.error_codes()?;
        self.check(
            got.iter().any(|c| codes.contains(&c.as_str())),
            format!(
                "the error code MUST be {} (spec.md § Error Codes), got {got:?}",
                codes.join(" or ")
            ),
        )
    }

    fn error_code(&self, code: &str) -> Check {
        self.error_code_in(&[code])
    }

    /// Where the spec lets a 4xx body be anything ("A 4XX response code from the registry MAY
    /// return a body in any format"): a JSON body must be a spec error body with one of
    /// `codes`; any other body is accepted.
    fn error_code_in_if_json(&self, codes: &[&str]) -> Check {
        if self.json().is_some() {
            self.error_code_in(codes)
        } else {
            Ok(())
        }
    }

    fn has_header(&self, name: &str, requirement: &str) -> Check {
        self.check(
            self.header(name).is_some_and(|v| !v.is_empty()),
            format!("missing {name} header: {requirement}"),
        )
    }

    /// The `Location` header, required, resolved against this request's URI (the spec lets it
    /// be absolute or relative).
    fn location(&self, requirement: &str) -> Result<String, Failure> {
        self.has_header("location", requirement)?;
        Ok(resolve_reference(
            &self.uri,
            self.header("location").unwrap_or_default(),
        ))
    }

    /// `Docker-Content-Digest` is present and names `digest`.
    fn digest_header_is(&self, digest: &str, requirement: &str) -> Check {
        self.check(
            self.header("docker-content-digest") == Some(digest),
            format!("Docker-Content-Digest MUST be {digest}: {requirement}"),
        )
    }

    /// `Docker-Content-Digest`, if present, names `digest` (where the spec only says what it
    /// must be when sent).
    fn digest_header_if_present_is(&self, digest: &str, requirement: &str) -> Check {
        self.check(
            self.header("docker-content-digest")
                .is_none_or(|d| d == digest),
            format!("if present, Docker-Content-Digest MUST be {digest}: {requirement}"),
        )
    }

    /// `Docker-Content-Digest`, if present, is a digest of `content` in an algorithm the suite
    /// knows ("If present, the value of this header MUST be a digest matching that of the
    /// response body"): a registry may name a sha512 blob by its sha256 digest too.
    fn digest_header_matches(&self, content: &[u8], requirement: &str) -> Check {
        let header = self.header("docker-content-digest");
        self.check(
            header.is_none_or(|d| d == sha256(content) || d == sha512(content)),
            format!(
                "if present, Docker-Content-Digest MUST be a digest of the content: {requirement}"
            ),
        )
    }

    /// An upload's `Range: 0-<end>` is present and ends at `end`.
    fn upload_range_is(&self, end: u64, requirement: &str) -> Check {
        self.check(
            self.header("range").and_then(parse_upload_range) == Some((0, end)),
            format!("Range MUST be 0-{end}: {requirement}"),
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
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

/// State shared by the tests of a run: the configuration, the authenticating client, and the
/// content earlier tests pushed for later ones.
pub(crate) struct Context<'a> {
    config: &'a Config,
    client: Client<'a>,
    image: Option<Result<Image, String>>,
    /// The manifest the referrers tests refer to: digest and size.
    subject: Option<(String, usize)>,
    /// The tags the discovery workflow pushed, sorted.
    tags: Option<Vec<String>>,
}

pub(crate) struct Test {
    pub workflow: Workflow,
    pub name: &'static str,
    /// The spec.md section the test checks.
    pub spec: &'static str,
    pub run: fn(&mut Context<'_>) -> Check,
}

/// Redirects followed for one read before giving up.
const MAX_REDIRECTS: usize = 5;

impl<'a> Context<'a> {
    pub(crate) fn new(config: &'a Config, client: Client<'a>) -> Context<'a> {
        Context {
            config,
            client,
            image: None,
            subject: None,
            tags: None,
        }
    }

    fn ns(&self) -> &str {
        &self.config.namespace
    }

    fn crossmount(&self) -> &str {
        &self.config.crossmount_namespace
    }

    fn run_id(&self) -> &str {
        &self.config.run_id
    }

    /// A name unique to this run, e.g. a tag.
    fn unique(&self, label: &str) -> String {
        format!("{label}-{}", self.config.run_id)
    }

    /// Deterministic bytes, unique to this run and label (xorshift seeded by their hash).
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

    /// Sends one request and records the exchange. Manifest reads carry the `Accept` header
    /// real clients send (some registries answer 404 without it). Reads follow redirects, as
    /// the spec asks of clients ("Registry Proxying"), never forwarding credentials to another
    /// host. Every response's `Warning` headers are checked against "Warnings".
    fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Exchange, Failure> {
        let mut request_headers: Vec<(String, String)> = Vec::new();
        let reads_manifest = matches!(method, "GET" | "HEAD") && uri.contains("/manifests/");
        if reads_manifest
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
        {
            request_headers.push(("accept".into(), ACCEPT_MANIFESTS.into()));
        }
        for (name, value) in headers {
            request_headers.push(((*name).to_owned(), (*value).to_owned()));
        }
        let build = |target: &str, body: Vec<u8>| {
            let mut builder = Request::builder().method(method).uri(target);
            for (name, value) in &request_headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder
                .body(body)
                .map_err(|e| fail(format!("could not build {method} {target}: {e}")))
        };
        let request_len = body.len();
        let transport_failed = |target: &str, e: crate::TransportError| {
            fail(format!(
                "{method} {target}: no HTTP response (transport failed): {e}"
            ))
        };
        let mut response = self
            .client
            .send(build(uri, body)?)
            .map_err(|e| transport_failed(uri, e))?;
        let mut redirects = Vec::new();
        let mut current = uri.to_owned();
        while matches!(method, "GET" | "HEAD")
            && matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308)
            && redirects.len() < MAX_REDIRECTS
        {
            let Some(location) = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
            else {
                break;
            };
            let next = resolve_reference(&current, location);
            redirects.push(format!("{} → {next}", response.status().as_u16()));
            let request = build(&next, Vec::new())?;
            response = if next.contains("://") {
                self.client.send_anonymous(request)
            } else {
                self.client.send(request)
            }
            .map_err(|e| transport_failed(&next, e))?;
            current = next;
        }
        let exchange = Exchange {
            method: method.to_owned(),
            uri: uri.to_owned(),
            request_headers,
            request_len,
            redirects,
            response,
        };
        let warnings: Vec<&str> = exchange
            .response
            .headers()
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        exchange.check(
            warnings.iter().all(|w| is_spec_warning(w)),
            "Warning headers MUST specify warn-code 299 and warn-agent `-`, and no warn-date (spec.md § Warnings)",
        )?;
        exchange.check(
            warnings.iter().map(|w| w.len()).sum::<usize>() <= 4096,
            "a registry MUST NOT send more than 4096 bytes of warning data (spec.md § Warnings)",
        )?;
        Ok(exchange)
    }

    fn get(&self, uri: &str) -> Result<Exchange, Failure> {
        self.send("GET", uri, &[], Vec::new())
    }

    fn head(&self, uri: &str) -> Result<Exchange, Failure> {
        self.send("HEAD", uri, &[], Vec::new())
    }

    /// POST to start an upload session; returns the response and the session URL.
    fn start_upload(&self, ns: &str, query: &str) -> Result<(Exchange, String), Failure> {
        let ex = self.send(
            "POST",
            &format!("/v2/{ns}/blobs/uploads/{query}"),
            &[("content-length", "0")],
            Vec::new(),
        )?;
        ex.status_in(
            &[202],
            "POST /v2/<name>/blobs/uploads/ starts an upload session: \"the response MUST have a code of 202 Accepted\" (end-4a)",
        )?;
        let location = ex.location(
            "the POST response \"MUST include the following header: Location: <blob-push-location>\"",
        )?;
        Ok((ex, location))
    }

    /// The PUT that closes an upload session, with the whole blob's digest and an optional
    /// last chunk.
    fn close_upload(
        &self,
        location: &str,
        digest: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Exchange, Failure> {
        self.send(
            "PUT",
            &with_query(location, &format!("digest={digest}")),
            headers,
            body,
        )
    }

    /// Pushes a blob under `digest` the way every registry must accept: POST, then PUT with the
    /// whole body.
    fn push_blob_as(&self, ns: &str, bytes: &[u8], digest: &str) -> Check {
        let (_, location) = self.start_upload(ns, "")?;
        let length = bytes.len().to_string();
        let ex = self.close_upload(
            &location,
            digest,
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &length),
            ],
            bytes.to_vec(),
        )?;
        ex.status_in(
            &[201],
            "setup: a closing PUT with ?digest= and the whole blob MUST answer 201 Created (end-6)",
        )
    }

    fn push_blob(&self, ns: &str, bytes: &[u8]) -> Result<String, Failure> {
        let digest = sha256(bytes);
        self.push_blob_as(ns, bytes, &digest)?;
        Ok(digest)
    }

    /// Pushes the empty config `{}` (for artifacts) and returns its digest.
    fn push_empty_config(&self, ns: &str) -> Result<String, Failure> {
        self.push_blob(ns, b"{}")
    }

    /// GETs a pullable blob `Location` and checks it serves `expected` (the spec: "With
    /// `<blob-location>` being a pullable blob URL").
    fn check_blob_location(&self, ex: &Exchange, expected: &[u8]) -> Check {
        let url = ex.location("a successful blob upload MUST answer Location: <blob-location>")?;
        let got = self.get(&url)?;
        got.status_in(&[200], "<blob-location> MUST be a pullable blob URL")?;
        got.check(
            got.body() == expected,
            "the blob at <blob-location> MUST be the bytes pushed",
        )
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

    /// PUTs a manifest that must be accepted, and checks the 201's headers and that its
    /// `Location` serves the manifest back byte for byte, with its media type and length.
    fn put_manifest_ok(
        &self,
        ns: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
        requirement: &str,
    ) -> Result<Exchange, Failure> {
        let ex = self.put_manifest(ns, reference, media_type, body)?;
        ex.status_in(&[201], requirement)?;
        let digest = if reference.starts_with("sha512:") {
            sha512(body)
        } else {
            sha256(body)
        };
        ex.digest_header_if_present_is(
            &digest,
            "\"The Docker-Content-Digest header returns the digest of the uploaded blob, and MUST be equal to the client provided digest\"",
        )?;
        let url =
            ex.location("a manifest PUT \"MUST have the following header: Location: <location>\"")?;
        let got = self.get(&url)?;
        got.status_in(&[200], "\"The <location> is a pullable manifest URL\"")?;
        got.check(
            got.body() == body,
            "\"The registry MUST store the manifest in the exact byte representation provided by the client\"",
        )?;
        got.check(
            got.header("content-type") == Some(media_type),
            format!(
                "the manifest is served with the Content-Type it was pushed with ({media_type})"
            ),
        )?;
        Ok(ex)
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

    /// Pushes a config, one 4 KiB layer and an image manifest tagged `<label>-<run>`.
    fn push_image(&self, label: &str) -> Result<Image, Failure> {
        let ns = self.ns().to_owned();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"run":"{}-{label}"}}"#,
            self.run_id()
        )
        .into_bytes();
        let layer = self.bytes(&format!("{label}-layer"), 4096);
        let config_digest = self.push_blob(&ns, &config)?;
        let layer_digest = self.push_blob(&ns, &layer)?;
        let manifest = image_manifest(
            (&config_digest, config.len(), OCI_CONFIG),
            &[(&layer_digest, layer.len(), OCI_LAYER)],
            "",
        );
        let tag = self.unique(label);
        self.put_manifest_ok(
            &ns,
            &tag,
            OCI_MANIFEST,
            manifest.as_bytes(),
            "setup: PUT /v2/<name>/manifests/<tag> MUST answer 201 Created (end-7)",
        )?;
        Ok(Image {
            tag,
            manifest_digest: sha256(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            config,
            config_digest,
            layer,
            layer_digest,
        })
    }

    /// An artifact-style manifest with the empty config and a unique annotation, so each call
    /// with a new label is a new manifest. Returns the manifest's bytes.
    fn small_manifest(&self, label: &str, extra: &str) -> Result<String, Failure> {
        let config = self.push_empty_config(self.ns())?;
        Ok(image_manifest(
            (&config, 2, EMPTY_CONFIG),
            &[],
            &format!(
                r#",{}"annotations":{{"org.example.label":"{}"}}"#,
                extra,
                self.unique(label)
            ),
        ))
    }
}

fn with_query(location: &str, query: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{query}")
}

/// An image manifest with the given config and layers (digest, size, media type); `extra` is
/// JSON text spliced in after the layers, starting with a comma.
fn image_manifest(
    config: (&str, usize, &str),
    layers: &[(&str, usize, &str)],
    extra: &str,
) -> String {
    let (config_digest, config_size, config_type) = config;
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s, t)| format!(r#"{{"mediaType":"{t}","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{config_size}}},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
}

/// An image index of the given manifests (media type, digest, size); `extra` as above.
fn image_index(manifests: &[(&str, &str, usize)], extra: &str) -> String {
    let manifests: Vec<String> = manifests
        .iter()
        .map(|(t, d, s)| format!(r#"{{"mediaType":"{t}","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]{extra}}}"#,
        manifests.join(",")
    )
}

/// Manifest references that are neither a tag nor a digest ("The `<tag-or-digest>` MUST NOT
/// be in any other format"): the official suite's `.INVALID_MANIFEST_NAME`, a tag starting
/// with `-`, and a tag one character over the 128 the spec allows.
fn invalid_references() -> Vec<String> {
    vec![
        ".INVALID_MANIFEST_NAME".to_owned(),
        "-leading-dash".to_owned(),
        "t".repeat(129),
    ]
}

/// The tags of a tags-list body, in the order listed.
fn listed_tags(ex: &Exchange) -> Vec<String> {
    ex.json()
        .and_then(|j| j.get("tags").and_then(|t| t.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

macro_rules! test {
    ($workflow:ident, $name:literal, $spec:expr, $body:expr) => {
        $crate::workflows::Test {
            workflow: $crate::Workflow::$workflow,
            name: $name,
            spec: $spec,
            run: $body,
        }
    };
}
use test;

pub(crate) fn all() -> Vec<Test> {
    let mut tests = Vec::new();
    tests.extend(pull::tests());
    tests.extend(push::tests());
    tests.extend(discovery::tests());
    tests.extend(management::tests());
    tests
}
