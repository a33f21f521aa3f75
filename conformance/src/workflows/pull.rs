//! Pull: the API every conforming registry MUST support.

use super::{
    Context, Exchange, OCI_MANIFEST, S_EXISTS, S_PULL_BLOBS, S_PULL_MANIFESTS, S_PUSH, S_SUPPORT,
    Test, invalid_references, sha256, test,
};
use crate::headers::{ContentRange, parse_content_range};

/// A `Range` GET of the pull image's layer.
fn get_range(cx: &mut Context<'_>, range: &str) -> Result<(Exchange, Vec<u8>), super::Failure> {
    let image = cx.image()?;
    let ex = cx.send(
        "GET",
        &format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest),
        &[("range", range)],
        Vec::new(),
    )?;
    Ok((ex, image.layer))
}

/// A 206 carries exactly bytes `first..=last` of `blob`, with a matching `Content-Range` and
/// `Content-Length` (RFC 9110 §14.4, §15.3.7).
fn check_partial(ex: &Exchange, blob: &[u8], first: usize, last: usize) -> super::Check {
    ex.status_in(
        &[206],
        "a satisfiable Range on a blob GET is answered with 206 Partial Content (\"A registry SHOULD support the Range request header in accordance with RFC 9110 (section 14)\"; the official suite requires it)",
    )?;
    ex.check(
        ex.body() == &blob[first..=last],
        format!("the 206 body MUST be exactly bytes {first}-{last}"),
    )?;
    let content_range = ex.header("content-range").and_then(parse_content_range);
    ex.check(
        matches!(content_range, Some(ContentRange::Bytes { first: f, last: l, complete })
            if f == first as u64 && l == last as u64 && complete.is_none_or(|c| c == blob.len() as u64)),
        format!(
            "a 206 MUST carry Content-Range: bytes {first}-{last}/{} (or /*) (RFC 9110 §14.4)",
            blob.len()
        ),
    )?;
    ex.check(
        ex.header("content-length") == Some((last - first + 1).to_string().as_str()),
        "Content-Length is the length of the part sent",
    )
}

pub(super) fn tests() -> Vec<Test> {
    vec![
        test!(Pull, "pull/base-endpoint-200", S_SUPPORT, |cx| {
            let ex = cx.get("/v2/")?;
            ex.status_in(
                &[200],
                "\"If the response is 200 OK, then the registry implements this specification\" (end-1)",
            )
        }),
        test!(Pull, "pull/setup-push-image", S_PUSH, |cx| cx
            .image()
            .map(|_| ())),
        test!(Pull, "pull/manifest-by-tag", S_PULL_MANIFESTS, |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/{}", cx.ns(), image.tag),
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )?;
            ex.status_in(&[200], "\"A GET request to an existing manifest URL MUST provide the expected manifest, with a response code that MUST be 200 OK\" (end-3)")?;
            ex.check(
                ex.body() == image.manifest.as_slice(),
                "the registry MUST serve the manifest's exact bytes",
            )?;
            ex.check(
                ex.header("content-type") == Some(OCI_MANIFEST),
                "Content-Type indicates the type of the returned manifest, and SHOULD match what the client pushed",
            )?;
            ex.check(
                ex.header("content-length") == Some(image.manifest.len().to_string().as_str()),
                "Content-Length is the manifest's size (the official suite checks it)",
            )?;
            ex.digest_header_is(
                &image.manifest_digest,
                "\"A successful response MUST contain the digest of the uploaded blob in the header Docker-Content-Digest\"",
            )
        }),
        test!(Pull, "pull/manifest-by-digest", S_PULL_MANIFESTS, |cx| {
            let image = cx.image()?;
            let ex = cx.send(
                "GET",
                &format!("/v2/{}/manifests/{}", cx.ns(), image.manifest_digest),
                &[("accept", OCI_MANIFEST)],
                Vec::new(),
            )?;
            ex.status_in(
                &[200],
                "GET of an existing manifest by digest MUST answer 200 OK (end-3)",
            )?;
            ex.check(
                ex.body() == image.manifest.as_slice(),
                "the registry MUST serve the manifest's exact bytes",
            )?;
            ex.digest_header_is(
                &image.manifest_digest,
                "\"A successful response MUST contain the digest of the uploaded blob in the header Docker-Content-Digest\"",
            )
        }),
        test!(
            Pull,
            "pull/manifest-head-by-tag-and-digest",
            S_EXISTS,
            |cx| {
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
                    "\"A HEAD request to an existing blob or manifest URL MUST return 200 OK\" (end-3)",
                )?;
                    ex.check(ex.body().is_empty(), "a HEAD response has no body")?;
                    ex.check(
                        ex.header("content-type") == Some(OCI_MANIFEST),
                        "HEAD gives the Content-Type a GET would (the official suite checks it)",
                    )?;
                    ex.check(
                    ex.header("content-length") == Some(image.manifest.len().to_string().as_str()),
                    "\"A successful response MUST contain the size in bytes of the uploaded blob or manifest in the header Content-Length\"",
                )?;
                    ex.digest_header_is(
                    &image.manifest_digest,
                    "\"A successful response MUST contain the digest of the uploaded blob or manifest in the header Docker-Content-Digest\"",
                )?;
                }
                Ok(())
            }
        ),
        test!(Pull, "pull/blob-get", S_PULL_BLOBS, |cx| {
            let image = cx.image()?;
            let ex = cx.get(&format!("/v2/{}/blobs/{}", cx.ns(), image.layer_digest))?;
            ex.status_in(&[200], "\"A GET request to an existing blob URL MUST provide the expected blob, with a response code that MUST be 200 OK\" (end-2)")?;
            ex.check(
                ex.body() == image.layer.as_slice(),
                "the blob's bytes MUST be served as pushed",
            )?;
            ex.digest_header_is(
                &image.layer_digest,
                "\"A successful response MUST contain the digest of the uploaded blob in the header Docker-Content-Digest\"",
            )
        }),
        test!(Pull, "pull/blob-head", S_EXISTS, |cx| {
            let image = cx.image()?;
            let ex = cx.head(&format!("/v2/{}/blobs/{}", cx.ns(), image.config_digest))?;
            ex.status_in(
                &[200],
                "\"A HEAD request to an existing blob or manifest URL MUST return 200 OK\" (end-2)",
            )?;
            ex.check(ex.body().is_empty(), "a HEAD response has no body")?;
            ex.check(
                ex.header("content-length") == Some(image.config.len().to_string().as_str()),
                "\"A successful response MUST contain the size in bytes of the uploaded blob or manifest in the header Content-Length\"",
            )?;
            ex.digest_header_is(
                &image.config_digest,
                "\"A successful response MUST contain the digest of the uploaded blob or manifest in the header Docker-Content-Digest\"",
            )
        }),
        test!(Pull, "pull/blob-range", S_PULL_BLOBS, |cx| {
            let (ex, blob) = get_range(cx, "bytes=500-1499")?;
            check_partial(&ex, &blob, 500, 1499)
        }),
        test!(Pull, "pull/blob-range-open-ended", S_PULL_BLOBS, |cx| {
            let (ex, blob) = get_range(cx, "bytes=500-")?;
            check_partial(&ex, &blob, 500, blob.len() - 1)
        }),
        test!(Pull, "pull/blob-range-suffix", S_PULL_BLOBS, |cx| {
            let (ex, blob) = get_range(cx, "bytes=-500")?;
            check_partial(&ex, &blob, blob.len() - 500, blob.len() - 1)
        }),
        test!(
            Pull,
            "pull/blob-range-end-beyond-size",
            S_PULL_BLOBS,
            |cx| {
                let image = cx.image()?;
                let len = image.layer.len();
                let (ex, blob) = get_range(cx, &format!("bytes={}-{}", len - 100, len + 5000))?;
                // RFC 9110 §14.1.2: a last-pos past the end means "to the end".
                check_partial(&ex, &blob, len - 100, len - 1)
            }
        ),
        test!(
            Pull,
            "pull/blob-range-unsatisfiable-416",
            S_PULL_BLOBS,
            |cx| {
                let image = cx.image()?;
                let len = image.layer.len();
                for range in [
                    format!("bytes={}-", len + 10),
                    format!("bytes={}-{}", len + 904, len + 5904),
                ] {
                    let (ex, _) = get_range(cx, &range)?;
                    ex.status_in(
                    &[416],
                    "a Range whose first byte is past the blob's end is unsatisfiable: 416 (RFC 9110 §15.5.17; the official suite requires it)",
                )?;
                }
                Ok(())
            }
        ),
        test!(Pull, "pull/blob-range-reversed-416", S_PULL_BLOBS, |cx| {
            let (ex, _) = get_range(cx, "bytes=500-0")?;
            ex.status_in(
                &[416],
                "a range whose last byte precedes its first is answered with 416 (as the official suite requires)",
            )
        }),
        test!(
            Pull,
            "pull/manifest-unknown-tag-404",
            S_PULL_MANIFESTS,
            |cx| {
                let ex = cx.get(&format!(
                    "/v2/{}/manifests/{}",
                    cx.ns(),
                    cx.unique("no-such-tag")
                ))?;
                ex.status_in(
                &[404],
                "\"If the manifest is not found in the repository, the response code MUST be 404 Not Found\" (end-3)",
            )?;
                ex.error_code("MANIFEST_UNKNOWN")
            }
        ),
        test!(
            Pull,
            "pull/manifest-unknown-digest-404",
            S_PULL_MANIFESTS,
            |cx| {
                let digest = sha256(format!("absent manifest {}", cx.run_id()).as_bytes());
                let ex = cx.get(&format!("/v2/{}/manifests/{digest}", cx.ns()))?;
                ex.status_in(
                &[404],
                "\"If the manifest is not found in the repository, the response code MUST be 404 Not Found\" (end-3)",
            )?;
                ex.error_code("MANIFEST_UNKNOWN")
            }
        ),
        test!(Pull, "pull/manifest-head-unknown-404", S_EXISTS, |cx| {
            let digest = sha256(format!("absent manifest head {}", cx.run_id()).as_bytes());
            let tag = cx.unique("no-such-head");
            for reference in [digest, tag] {
                let ex = cx.head(&format!("/v2/{}/manifests/{reference}", cx.ns()))?;
                ex.status_in(
                    &[404],
                    "\"If the blob or manifest is not found in the repository, the response code MUST be 404 Not Found\" (end-3)",
                )?;
            }
            Ok(())
        }),
        test!(
            Pull,
            "pull/manifest-get-invalid-reference-404",
            S_PULL_MANIFESTS,
            |cx| {
                for reference in invalid_references() {
                    let ex = cx.get(&format!("/v2/{}/manifests/{reference}", cx.ns()))?;
                    ex.status_in(
                        &[404],
                        "a reference that is neither a tag nor a digest names no manifest: 404, the only failure the spec lists for a manifest GET (end-3; \"The <tag-or-digest> MUST NOT be in any other format\"; the official suite GETs .INVALID_MANIFEST_NAME and requires 404)",
                    )?;
                    ex.error_code_in_if_json(&["MANIFEST_UNKNOWN", "NAME_UNKNOWN"])?;
                }
                Ok(())
            }
        ),
        test!(
            Pull,
            "pull/manifest-head-invalid-reference-404",
            S_EXISTS,
            |cx| {
                for reference in invalid_references() {
                    let ex = cx.head(&format!("/v2/{}/manifests/{reference}", cx.ns()))?;
                    ex.status_in(
                        &[404],
                        "a reference that is neither a tag nor a digest names no manifest: \"If the blob or manifest is not found in the repository, the response code MUST be 404 Not Found\" (end-3; the official suite HEADs .INVALID_MANIFEST_NAME and requires 404)",
                    )?;
                }
                Ok(())
            }
        ),
        test!(Pull, "pull/blob-unknown-404", S_PULL_BLOBS, |cx| {
            let digest = sha256(format!("absent blob {}", cx.run_id()).as_bytes());
            let ex = cx.get(&format!("/v2/{}/blobs/{digest}", cx.ns()))?;
            ex.status_in(
                &[404],
                "\"If the blob is not found in the repository, the response code MUST be 404 Not Found\" (end-2)",
            )?;
            ex.error_code("BLOB_UNKNOWN")
        }),
        test!(Pull, "pull/blob-head-unknown-404", S_EXISTS, |cx| {
            let digest = sha256(format!("absent blob head {}", cx.run_id()).as_bytes());
            let ex = cx.head(&format!("/v2/{}/blobs/{digest}", cx.ns()))?;
            ex.status_in(
                &[404],
                "\"If the blob or manifest is not found in the repository, the response code MUST be 404 Not Found\" (end-2)",
            )
        }),
        test!(
            Pull,
            "pull/repository-unknown-404",
            super::S_PUSH_MANIFESTS,
            |cx| {
                let ex = cx.get(&format!(
                    "/v2/{}/{}/manifests/latest",
                    cx.ns(),
                    cx.unique("absent")
                ))?;
                ex.status_in(
                &[404],
                "\"An attempt to pull a nonexistent repository MUST return response code 404 Not Found\"",
            )?;
                ex.error_code_in(&["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])
            }
        ),
    ]
}
