//! Repository names at the length limits, against the real `berth` binary on memory and
//! directory storage: every name routing accepts is storable on both, with the longest keys
//! berth writes, and a name it refuses is refused the same way on both, before anything is
//! written.

mod common;

use std::path::Path;

use common::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

fn status_and_code(response: &HttpResponse) -> (u16, String) {
    let code = serde_json::from_slice::<serde_json::Value>(&response.2)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (response.0, code)
}

/// Pushes a sha512 blob, a manifest by its sha512 digest with a tag, and a referrer of it by
/// sha512 (the longest key berth writes: `repositories/<name>/_refs/sha512/<128>/sha512-<128>`),
/// then reads each back.
fn push_and_read_everything(server: &Server, name: &str) {
    let addr = server.addr;
    let config = b"{}";
    let config_digest = digest512(config);
    let pushed = http(
        addr,
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={config_digest}"),
        &[("content-type", "application/octet-stream")],
        config,
    );
    assert_eq!(pushed.0, 201, "{}", String::from_utf8_lossy(&pushed.2));
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
    let image_digest = digest512(image.as_bytes());
    let put = http(
        addr,
        "PUT",
        &format!("/v2/{name}/manifests/{image_digest}?tag=v1"),
        &[("content-type", OCI_MANIFEST)],
        image.as_bytes(),
    );
    assert_eq!(put.0, 201, "{}", String::from_utf8_lossy(&put.2));
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{config_digest}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{image_digest}","size":{}}}}}"#,
        image.len()
    );
    let referrer_digest = digest512(referrer.as_bytes());
    let put = http(
        addr,
        "PUT",
        &format!("/v2/{name}/manifests/{referrer_digest}"),
        &[("content-type", OCI_MANIFEST)],
        referrer.as_bytes(),
    );
    assert_eq!(put.0, 201, "{}", String::from_utf8_lossy(&put.2));
    let longest_key = format!(
        "repositories/{name}/_refs/sha512/{}/sha512-{}",
        &image_digest[7..],
        &referrer_digest[7..]
    );
    println!("{} bytes: the longest key written", longest_key.len());

    let manifest = http(addr, "GET", &format!("/v2/{name}/manifests/v1"), &[], b"");
    assert_eq!(manifest.0, 200);
    assert_eq!(manifest.2, image.as_bytes());
    let blob = http(
        addr,
        "GET",
        &format!("/v2/{name}/blobs/{config_digest}"),
        &[],
        b"",
    );
    assert_eq!((blob.0, blob.2.as_slice()), (200, &config[..]));
    let referrers = http(
        addr,
        "GET",
        &format!("/v2/{name}/referrers/{image_digest}"),
        &[],
        b"",
    );
    assert_eq!(referrers.0, 200);
    assert!(String::from_utf8_lossy(&referrers.2).contains(&referrer_digest));
    let tags = http(addr, "GET", &format!("/v2/{name}/tags/list"), &[], b"");
    assert_eq!(tags.0, 200);
    assert!(String::from_utf8_lossy(&tags.2).contains("\"v1\""));
    let catalog = http(addr, "GET", "/v2/_catalog", &[], b"");
    assert!(String::from_utf8_lossy(&catalog.2).contains(name));
}

/// The names at the limits that are accepted, and those just beyond that are refused.
fn names_at_the_limits(server: &Server) -> Vec<(String, (u16, String))> {
    let longest = [
        // 255 characters, a 250-character component last (the directory backend's catalog
        // entry is a file named after it) and first.
        format!("{}/{}", "b".repeat(4), "a".repeat(250)),
        format!("{}/{}", "a".repeat(250), "b".repeat(4)),
    ];
    for name in &longest {
        assert_eq!(name.len(), 255);
        push_and_read_everything(server, name);
    }
    let digest = digest(b"refused");
    let mut refused = Vec::new();
    for name in [
        "c".repeat(251),
        "c".repeat(255),
        format!("x/{}", "c".repeat(253)),
    ] {
        let response = http(
            server.addr,
            "POST",
            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
            &[("content-type", "application/octet-stream")],
            b"refused",
        );
        refused.push((name, status_and_code(&response)));
    }
    refused
}

fn assert_refused(refused: &[(String, (u16, String))]) {
    for (name, answer) in refused {
        assert_eq!(
            answer,
            &(400, "NAME_INVALID".to_owned()),
            "a name with a component of {} characters",
            name.rsplit('/').next().unwrap().len()
        );
    }
}

#[test]
fn names_at_the_length_limits_on_memory_storage() {
    let server = Server::start("memory");
    assert_refused(&names_at_the_limits(&server));
}

#[test]
fn names_at_the_length_limits_on_directory_storage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_str().unwrap());
    let refused = names_at_the_limits(&server);
    // Before the limit, the pointer of the refused blob was published and only the
    // repository's link failed (500): nothing at all may be written for a refused name.
    let pointer = Path::new(dir.path())
        .join("objects/_blobs/sha256")
        .join(format!("{}@", &digest(b"refused")[7..]));
    assert!(!pointer.exists(), "{} was written", pointer.display());
    assert_refused(&refused);
}
