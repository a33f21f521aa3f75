//! Push: blob uploads (monolithic, chunked, streamed, mounted) and manifests of every kind.

use super::{
    Check, Context, EMPTY_CONFIG, Exchange, Failure, NON_DISTRIBUTABLE, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER, OCI_LAYER_TAR, OCI_MANIFEST, S_CANCEL, S_CHUNKED, S_MOUNT, S_POST_PUT, S_PUSH,
    S_PUSH_BLOBS, S_PUSH_MANIFESTS, S_SINGLE_POST, Test, image_index, image_manifest, sha256,
    sha512, test,
};

/// Chunk size when the registry advertises no `OCI-Chunk-Min-Length`.
const DEFAULT_CHUNK: usize = 4096;

/// An upload session being filled chunk by chunk, always at the latest `Location`.
struct ChunkedUpload {
    location: String,
    /// Size of every chunk but the last: the advertised `OCI-Chunk-Min-Length` if any (the
    /// spec: each chunk but the final one "SHOULD be greater or equal to that value").
    chunk: usize,
}

impl ChunkedUpload {
    fn begin(cx: &Context<'_>, ns: &str, query: &str) -> Result<ChunkedUpload, Failure> {
        let (post, location) = cx.start_upload(ns, query)?;
        let min = match post.header("oci-chunk-min-length") {
            None => 0,
            Some(text) => {
                let parsed = text.trim().parse::<usize>().ok();
                post.check(
                    parsed.is_some(),
                    "OCI-Chunk-Min-Length: <size> is a size in bytes",
                )?;
                parsed.unwrap_or(0)
            }
        };
        // Keep the suite's memory bounded against registries advertising huge minimums.
        post.check(
            min <= 64 * 1024 * 1024,
            "OCI-Chunk-Min-Length above 64 MiB: too large for this suite's in-memory blobs",
        )?;
        Ok(ChunkedUpload {
            location,
            chunk: min.max(DEFAULT_CHUNK),
        })
    }

    /// A blob of two full chunks and a shorter remainder: every chunk-size boundary a registry
    /// has is crossed, and the last chunk is not a multiple of the chunk size.
    fn blob(&self, cx: &Context<'_>, label: &str) -> Vec<u8> {
        cx.bytes(label, 2 * self.chunk + self.chunk / 3 + 7)
    }

    /// PATCHes `blob[start..end]` with `Content-Range`, requires 202 with `Range: 0-<end-1>`,
    /// and follows the new `Location`.
    fn patch(
        &mut self,
        cx: &Context<'_>,
        blob: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Exchange, Failure> {
        let ex = self.send_chunk(cx, "PATCH", &self.location.clone(), blob, start, end)?;
        ex.status_in(
            &[202],
            "\"The response for each successful chunk upload MUST be 202 Accepted\" (end-5)",
        )?;
        ex.upload_range_is(
            end as u64 - 1,
            "a chunk response \"MUST have the following headers: Location, Range: 0-<end-of-range>\"",
        )?;
        self.location = ex.location(
            "a chunk response \"MUST have the following headers: Location: <blob-push-location>\"",
        )?;
        Ok(ex)
    }

    fn send_chunk(
        &self,
        cx: &Context<'_>,
        method: &str,
        url: &str,
        blob: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Exchange, Failure> {
        let range = format!("{}-{}", start, end - 1);
        let length = (end - start).to_string();
        cx.send(
            method,
            url,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &range),
                ("content-length", &length),
            ],
            blob[start..end].to_vec(),
        )
    }

    /// PATCHes whole chunks from `start` up to `end`.
    fn patch_chunks(&mut self, cx: &Context<'_>, blob: &[u8], start: usize, end: usize) -> Check {
        let mut offset = start;
        while offset < end {
            let next = (offset + self.chunk).min(end);
            self.patch(cx, blob, offset, next)?;
            offset = next;
        }
        Ok(())
    }

    /// The closing PUT, with the remaining bytes `blob[start..]` as its body (none if `start`
    /// is the end).
    fn close(
        &self,
        cx: &Context<'_>,
        blob: &[u8],
        start: usize,
        digest: &str,
    ) -> Result<Exchange, Failure> {
        if start == blob.len() {
            return cx.close_upload(
                &self.location,
                digest,
                &[("content-length", "0")],
                Vec::new(),
            );
        }
        let url = super::with_query(&self.location, &format!("digest={digest}"));
        self.send_chunk(cx, "PUT", &url, blob, start, blob.len())
    }
}

/// The blob is readable by digest with exactly these bytes.
fn check_blob(cx: &Context<'_>, ns: &str, digest: &str, blob: &[u8]) -> Check {
    let got = cx.get(&format!("/v2/{ns}/blobs/{digest}"))?;
    got.status_in(&[200], "the pushed blob is readable by its digest (end-2)")?;
    got.check(
        got.body() == blob,
        "the blob's bytes MUST be served as pushed",
    )
}

/// A successful blob upload's 201: `Location` pullable with the bytes, digest header right.
fn check_created(
    cx: &Context<'_>,
    ex: &Exchange,
    digest: &str,
    blob: &[u8],
    requirement: &str,
) -> Check {
    ex.status_in(&[201], requirement)?;
    ex.digest_header_matches(blob, &format!("the uploaded blob ({digest})"))?;
    cx.check_blob_location(ex, blob)
}

/// Nothing is readable under `digest` (after a rejected upload).
fn check_absent(cx: &Context<'_>, ns: &str, digest: &str) -> Check {
    let got = cx.head(&format!("/v2/{ns}/blobs/{digest}"))?;
    got.status_in(
        &[404],
        "nothing is stored under a digest the bytes do not hash to",
    )
}

fn mount(
    cx: &Context<'_>,
    target: &str,
    digest: &str,
    from: Option<&str>,
) -> Result<Exchange, Failure> {
    let query = match from {
        Some(from) => format!("?mount={digest}&from={from}"),
        None => format!("?mount={digest}"),
    };
    cx.send(
        "POST",
        &format!("/v2/{target}/blobs/uploads/{query}"),
        &[("content-length", "0")],
        Vec::new(),
    )
}

/// PUT a manifest that must be rejected with 400 and one of `codes`.
fn put_rejected(
    cx: &Context<'_>,
    reference: &str,
    manifest: &[u8],
    codes: &[&str],
    requirement: &str,
) -> Check {
    let ex = cx.put_manifest(cx.ns(), reference, OCI_MANIFEST, manifest)?;
    ex.status_in(&[400], requirement)?;
    ex.error_code_in(codes)
}

/// The ways a blob goes up (spec.md § Pushing blobs), for the upload matrix: every mode with
/// sha256 and sha512, each with and without `?digest-algorithm=` on the POST.
#[derive(Clone, Copy)]
enum Mode {
    /// `POST ?digest=` carrying the blob (a 202 is continued with the PUT, as a client would).
    SinglePost,
    /// POST, then a PUT `?digest=` carrying the blob.
    PostPut,
    /// POST, PATCHes with `Content-Range` of the advertised minimum, an empty closing PUT.
    Chunked,
    /// POST, one PATCH without `Content-Range`, an empty closing PUT.
    Streamed,
    /// POST, PATCHes, the last chunk in the closing PUT.
    FinalChunkInPut,
    /// POST, a PATCH, a chunk out of order refused with 416, the status GET, the rest, the PUT.
    ResumeAfter416,
}

impl Mode {
    fn describe(self) -> &'static str {
        match self {
            Mode::SinglePost => "single-POST upload",
            Mode::PostPut => "POST-then-PUT upload",
            Mode::Chunked => "chunked upload",
            Mode::Streamed => "streamed upload (PATCH without Content-Range)",
            Mode::FinalChunkInPut => "chunked upload with its last chunk in the closing PUT",
            Mode::ResumeAfter416 => "chunked upload resumed after a 416",
        }
    }
}

#[derive(Clone, Copy)]
enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn digest(self, bytes: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => sha256(bytes),
            Algorithm::Sha512 => sha512(bytes),
        }
    }
}

/// Pushes a blob in `mode`, named by its `algorithm` digest, announcing the algorithm with
/// `?digest-algorithm=` on the POST or not, and requires the 201 and the blob back. The spec
/// makes the parameter a SHOULD for clients ("When pushing a blob with a digest algorithm other
/// than sha256, the post request SHOULD include the digest-algorithm parameter"), so a registry
/// MUST accept the upload either way: the official suite pushes its sha512 blobs, chunked and
/// streamed, without it.
fn push_in_mode(cx: &Context<'_>, mode: Mode, algorithm: Algorithm, announce: bool) -> Check {
    let ns = cx.ns().to_owned();
    let query = if announce {
        format!("?digest-algorithm={}", algorithm.name())
    } else {
        String::new()
    };
    let label = format!("mode-{}-{}-{announce}", mode.describe(), algorithm.name());
    let octets = ("content-type", "application/octet-stream");
    let (blob, digest, ex) = match mode {
        Mode::SinglePost | Mode::PostPut => {
            let blob = cx.bytes(&label, 3000);
            let digest = algorithm.digest(&blob);
            let length = blob.len().to_string();
            let headers = [octets, ("content-length", length.as_str())];
            let ex = if let Mode::SinglePost = mode {
                let url = super::with_query(
                    &format!("/v2/{ns}/blobs/uploads/{query}"),
                    &format!("digest={digest}"),
                );
                let post = cx.send("POST", &url, &headers, blob.clone())?;
                post.status_in(
                    &[201, 202],
                    "a single POST with ?digest= answers 201, or 202 where unsupported (end-4b)",
                )?;
                if post.status() == 201 {
                    post
                } else {
                    // Single POST unsupported (push/monolithic-single-post reports that): this
                    // test is about the algorithm, so go on with the PUT a client would send.
                    let location = post.location("a 202 MUST carry the upload's Location")?;
                    cx.close_upload(&location, &digest, &headers, blob.clone())?
                }
            } else {
                let (_, location) = cx.start_upload(&ns, &query)?;
                cx.close_upload(&location, &digest, &headers, blob.clone())?
            };
            (blob, digest, ex)
        }
        Mode::Streamed => {
            let blob = cx.bytes(&label, 3000);
            let digest = algorithm.digest(&blob);
            let (_, location) = cx.start_upload(&ns, &query)?;
            let patch = cx.send("PATCH", &location, &[octets], blob.clone())?;
            patch.status_in(
                &[202],
                "a streamed PATCH (no Content-Range) appends the body and answers 202 Accepted (end-5)",
            )?;
            let location = patch.location("a PATCH response MUST carry Location")?;
            let ex = cx.close_upload(&location, &digest, &[("content-length", "0")], Vec::new())?;
            (blob, digest, ex)
        }
        Mode::Chunked | Mode::FinalChunkInPut | Mode::ResumeAfter416 => {
            let mut upload = ChunkedUpload::begin(cx, &ns, &query)?;
            let blob = upload.blob(cx, &label);
            let digest = algorithm.digest(&blob);
            let chunk = upload.chunk;
            let patched = match mode {
                Mode::FinalChunkInPut => 2 * chunk,
                _ => blob.len(),
            };
            if let Mode::ResumeAfter416 = mode {
                upload.patch(cx, &blob, 0, chunk)?;
                let bad = upload.send_chunk(
                    cx,
                    "PATCH",
                    &upload.location,
                    &blob,
                    2 * chunk,
                    blob.len(),
                )?;
                bad.status_in(
                    &[416],
                    "\"If a chunk is uploaded out of order, the registry MUST respond with a 416 Requested Range Not Satisfiable code\"",
                )?;
                let status = cx.get(&upload.location)?;
                status.status_in(
                    &[204],
                    "\"The response to an active upload <blob-push-location> MUST be a 204 No Content\" (end-13)",
                )?;
                status.upload_range_is(
                    chunk as u64 - 1,
                    "after a refused chunk the upload still ends where the last accepted chunk ended",
                )?;
                upload.location = status
                    .location("the status response MUST have Location: <blob-push-location>")?;
                upload.patch_chunks(cx, &blob, chunk, patched)?;
            } else {
                upload.patch_chunks(cx, &blob, 0, patched)?;
            }
            let ex = upload.close(cx, &blob, patched, &digest)?;
            (blob, digest, ex)
        }
    };
    let announced = if announce {
        format!("started with ?digest-algorithm={}", algorithm.name())
    } else {
        "started without ?digest-algorithm= (a SHOULD, not a MUST)".to_owned()
    };
    check_created(
        cx,
        &ex,
        &digest,
        &blob,
        &format!(
            "a {} of a {} blob, {announced}, completes with 201 Created and MUST have Location: <blob-location> (end-4b, end-6)",
            mode.describe(),
            algorithm.name()
        ),
    )?;
    check_blob(cx, &ns, &digest, &blob)
}

pub(super) fn tests() -> Vec<Test> {
    vec![
        test!(Push, "push/upload-start-202-location", S_POST_PUT, |cx| {
            let (ex, _) = cx.start_upload(cx.ns(), "")?;
            ex.status_in(
                &[202],
                "POST /v2/<name>/blobs/uploads/ \"MUST have a code of 202 Accepted\" (end-4a)",
            )
        }),
        test!(Push, "push/upload-sessions-are-unique", S_POST_PUT, |cx| {
            let (_, first) = cx.start_upload(cx.ns(), "")?;
            let (second, location) = cx.start_upload(cx.ns(), "")?;
            second.check(
                first != location,
                format!("\"The <blob-push-location> MUST contain a UUID representing a unique session ID\": two POSTs both answered {location}"),
            )
        }),
        test!(Push, "push/monolithic-single-post", S_SINGLE_POST, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("single-post", 3000);
            let digest = sha256(&blob);
            let ex = cx.send(
                "POST",
                &format!("/v2/{ns}/blobs/uploads/?digest={digest}"),
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "3000"),
                ],
                blob.clone(),
            )?;
            ex.status_in(
                &[201, 202],
                "a single POST with ?digest= answers 201, or 202 where unsupported (end-4b)",
            )?;
            ex.check(
                ex.status() == 201,
                "single-POST upload is not supported (202): \"Registries MAY support pushing blobs using a single POST\", but berth targets must",
            )?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "\"Successful completion of the request MUST return a 201 Created and MUST include the following header: Location: <blob-location>\"",
            )
        }),
        test!(Push, "push/monolithic-post-then-put", S_POST_PUT, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("post-put", 5000);
            let digest = sha256(&blob);
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.close_upload(
                &location,
                &digest,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "5000"),
                ],
                blob.clone(),
            )?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "\"Upon successful completion of the request, the response MUST have code 201 Created and MUST have the following header: Location: <blob-location>\" (end-6)",
            )?;
            check_blob(cx, &ns, &digest, &blob)
        }),
        test!(Push, "push/chunked-with-content-range", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let mut upload = ChunkedUpload::begin(cx, &ns, "")?;
            let blob = upload.blob(cx, "chunked");
            upload.patch_chunks(cx, &blob, 0, blob.len())?;
            let digest = sha256(&blob);
            let ex = upload.close(cx, &blob, blob.len(), &digest)?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "\"The response to a successful closing of the session MUST be 201 Created, and MUST contain the following header: Location: <blob-location>\"",
            )?;
            check_blob(cx, &ns, &digest, &blob)
        }),
        test!(Push, "push/final-put-carries-last-chunk", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let mut upload = ChunkedUpload::begin(cx, &ns, "")?;
            let blob = upload.blob(cx, "final-put");
            let last = 2 * upload.chunk;
            upload.patch_chunks(cx, &blob, 0, last)?;
            let digest = sha256(&blob);
            let ex = upload.close(cx, &blob, last, &digest)?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "\"The final chunk MAY be uploaded using a PATCH request or it MAY be uploaded in the closing PUT request\"; the close answers 201",
            )?;
            check_blob(cx, &ns, &digest, &blob)
        }),
        test!(Push, "push/chunk-out-of-order-416", S_CHUNKED, |cx| {
            let mut upload = ChunkedUpload::begin(cx, cx.ns(), "")?;
            let blob = upload.blob(cx, "out-of-order");
            let chunk = upload.chunk;
            upload.patch(cx, &blob, 0, chunk)?;
            // Skip the second chunk: send the third.
            let ex =
                upload.send_chunk(cx, "PATCH", &upload.location, &blob, 2 * chunk, blob.len())?;
            ex.status_in(
                &[416],
                "\"If a chunk is uploaded out of order, the registry MUST respond with a 416 Requested Range Not Satisfiable code\"",
            )
        }),
        test!(Push, "push/chunk-retry-previous-416", S_CHUNKED, |cx| {
            let mut upload = ChunkedUpload::begin(cx, cx.ns(), "")?;
            let blob = upload.blob(cx, "retry-previous");
            let chunk = upload.chunk;
            upload.patch(cx, &blob, 0, chunk)?;
            upload.patch(cx, &blob, chunk, 2 * chunk)?;
            let ex = upload.send_chunk(cx, "PATCH", &upload.location, &blob, 0, chunk)?;
            ex.status_in(
                &[416],
                "resending an earlier chunk is out of order: \"Chunks MUST be uploaded in order ... the registry MUST respond with a 416\"",
            )
        }),
        test!(Push, "push/chunked-resume-after-416", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let mut upload = ChunkedUpload::begin(cx, &ns, "")?;
            let blob = upload.blob(cx, "resume");
            let chunk = upload.chunk;
            upload.patch(cx, &blob, 0, chunk)?;
            let bad =
                upload.send_chunk(cx, "PATCH", &upload.location, &blob, 2 * chunk, blob.len())?;
            bad.status_in(&[416], "an out-of-order chunk MUST get 416")?;
            // "To get the current status after a 416 error, issue a GET request".
            let status = cx.get(&upload.location)?;
            status.status_in(&[204], "\"The response to an active upload <blob-push-location> MUST be a 204 No Content\" (end-13)")?;
            status.upload_range_is(
                chunk as u64 - 1,
                "after a refused chunk the upload still ends where the last accepted chunk ended",
            )?;
            upload.location =
                status.location("the status response MUST have Location: <blob-push-location>")?;
            upload.patch_chunks(cx, &blob, chunk, blob.len())?;
            let digest = sha256(&blob);
            let ex = upload.close(cx, &blob, blob.len(), &digest)?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "the upload resumed after a 416 closes with 201 Created",
            )?;
            check_blob(cx, &ns, &digest, &blob)
        }),
        test!(Push, "push/final-chunk-out-of-order-416", S_CHUNKED, |cx| {
            let mut upload = ChunkedUpload::begin(cx, cx.ns(), "")?;
            let blob = upload.blob(cx, "final-out-of-order");
            let chunk = upload.chunk;
            upload.patch(cx, &blob, 0, chunk)?;
            let digest = sha256(&blob);
            // The closing PUT carries the last bytes but skips the middle chunk.
            let ex = upload.close(cx, &blob, 2 * chunk, &digest)?;
            ex.status_in(
                &[416],
                "\"If the final chunk is uploaded out of order, the registry MUST respond with a 416 Requested Range Not Satisfiable code\"",
            )?;
            check_absent(cx, cx.ns(), &digest)
        }),
        test!(
            Push,
            "push/upload-status-204-range-location",
            S_CHUNKED,
            |cx| {
                let mut upload = ChunkedUpload::begin(cx, cx.ns(), "")?;
                let blob = upload.blob(cx, "status");
                upload.patch(cx, &blob, 0, upload.chunk)?;
                let ex = cx.get(&upload.location)?;
                ex.status_in(
                &[204],
                "\"The response to an active upload <blob-push-location> MUST be a 204 No Content\" (end-13)",
            )?;
                ex.location("upload status \"MUST have the following headers: Location: <blob-push-location>\"")?;
                ex.upload_range_is(
                    upload.chunk as u64 - 1,
                    "upload status \"MUST have the following headers: Range: 0-<end-of-range>\"",
                )
            }
        ),
        test!(Push, "push/patch-without-content-range", S_CHUNKED, |cx| {
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
                "a streamed PATCH (no Content-Range) appends the body and answers 202 Accepted (end-5)",
            )?;
            ex.upload_range_is(2999, "the response Range covers the streamed bytes")?;
            let location = ex.location("a PATCH response MUST carry Location")?;
            let digest = sha256(&blob);
            let ex = cx.close_upload(&location, &digest, &[("content-length", "0")], Vec::new())?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "the closing PUT of a streamed upload answers 201 Created",
            )
        }),
        test!(Push, "push/empty-blob", S_POST_PUT, |cx| {
            let ns = cx.ns().to_owned();
            let digest = cx.push_blob(&ns, b"")?;
            let got = cx.get(&format!("/v2/{ns}/blobs/{digest}"))?;
            got.status_in(&[200], "an empty blob is a blob: readable after push")?;
            got.check(got.body().is_empty(), "the empty blob has no bytes")?;
            let head = cx.head(&format!("/v2/{ns}/blobs/{digest}"))?;
            head.status_in(&[200], "HEAD of the empty blob answers 200")?;
            head.check(
                head.header("content-length") == Some("0"),
                "HEAD MUST carry the blob's size in Content-Length: 0",
            )
        }),
        test!(Push, "push/upload-cancel", S_CANCEL, |cx| {
            let (_, location) = cx.start_upload(cx.ns(), "")?;
            let ex = cx.send("DELETE", &location, &[("content-length", "0")], Vec::new())?;
            ex.status_in(&[204], "\"If successful, the response SHOULD be a 204 No Content\" (end-14; the official suite requires it)")?;
            let status = cx.get(&location)?;
            status.status_in(&[404], "a cancelled upload is unknown: 404 (end-13)")?;
            status.error_code("BLOB_UPLOAD_UNKNOWN")
        }),
        test!(Push, "push/digest-mismatch-400", S_POST_PUT, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("mismatch", 500);
            let wrong = sha256(b"these are not the bytes");
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.close_upload(
                &location,
                &wrong,
                &[("content-type", "application/octet-stream")],
                blob,
            )?;
            ex.status_in(
                &[400],
                "a closing PUT whose digest does not match the content fails with 400 (end-6; \"the <digest> MUST match the blob's digest\")",
            )?;
            ex.error_code("DIGEST_INVALID")?;
            check_absent(cx, &ns, &wrong)
        }),
        test!(
            Push,
            "push/digest-mismatch-single-post-400",
            S_SINGLE_POST,
            |cx| {
                let ns = cx.ns().to_owned();
                let blob = cx.bytes("mismatch-post", 600);
                let wrong = sha256(b"not the posted bytes");
                let ex = cx.send(
                    "POST",
                    &format!("/v2/{ns}/blobs/uploads/?digest={wrong}"),
                    &[("content-type", "application/octet-stream")],
                    blob.clone(),
                )?;
                ex.status_in(
                    &[400, 202],
                    "a single POST whose digest does not match its body fails with 400 (end-4b), or answers 202 where single POST is unsupported",
                )?;
                let rejected = if ex.status() == 202 {
                    // Single POST unsupported (push/monolithic-single-post reports that): as
                    // the official suite does, go on as a client would, with the PUT.
                    let location = ex.location("a 202 MUST carry the upload's Location")?;
                    let put = cx.close_upload(
                        &location,
                        &wrong,
                        &[("content-type", "application/octet-stream")],
                        blob,
                    )?;
                    put.status_in(
                        &[400],
                        "the PUT that follows a 202 fails with 400 when its digest does not match (end-6)",
                    )?;
                    put
                } else {
                    ex
                };
                rejected.error_code("DIGEST_INVALID")?;
                check_absent(cx, &ns, &wrong)
            }
        ),
        test!(Push, "push/digest-mismatch-chunked-400", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let mut upload = ChunkedUpload::begin(cx, &ns, "")?;
            let blob = upload.blob(cx, "mismatch-chunked");
            upload.patch_chunks(cx, &blob, 0, 2 * upload.chunk)?;
            let wrong = sha256(&blob[1..]);
            let ex = upload.close(cx, &blob, 2 * upload.chunk, &wrong)?;
            ex.status_in(&[400], "a chunked upload closed with a digest the bytes do not hash to fails with 400 (end-6)")?;
            ex.error_code("DIGEST_INVALID")?;
            check_absent(cx, &ns, &wrong)
        }),
        test!(Push, "push/digest-mismatch-streamed-400", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("mismatch-streamed", 2500);
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.send(
                "PATCH",
                &location,
                &[("content-type", "application/octet-stream")],
                blob.clone(),
            )?;
            ex.status_in(&[202], "the streamed PATCH is accepted")?;
            let location = ex.location("a PATCH response MUST carry Location")?;
            let wrong = sha256(&blob[..2499]);
            let ex = cx.close_upload(&location, &wrong, &[("content-length", "0")], Vec::new())?;
            ex.status_in(&[400], "a streamed upload closed with a digest the bytes do not hash to fails with 400 (end-6)")?;
            ex.error_code("DIGEST_INVALID")?;
            check_absent(cx, &ns, &wrong)
        }),
        test!(Push, "push/invalid-digest-400", S_PUSH_BLOBS, |cx| {
            let blob = cx.bytes("invalid-digest", 100);
            for digest in ["sha256:not-hex", "md5:d41d8cd98f00b204e9800998ecf8427e"] {
                let (_, location) = cx.start_upload(cx.ns(), "")?;
                let ex = cx.close_upload(
                    &location,
                    digest,
                    &[("content-type", "application/octet-stream")],
                    blob.clone(),
                )?;
                ex.status_in(&[400], "\"if the client provided digest is invalid or uses an unsupported algorithm, the registry SHOULD respond with a response code 400 Bad Request\"")?;
                ex.error_code_in(&["DIGEST_INVALID", "UNSUPPORTED"])?;
            }
            Ok(())
        }),
        test!(Push, "push/sha512-blob-digest-algorithm", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let mut upload = ChunkedUpload::begin(cx, &ns, "?digest-algorithm=sha512")?;
            let blob = upload.blob(cx, "sha512-chunked");
            upload.patch_chunks(cx, &blob, 0, 2 * upload.chunk)?;
            let digest = sha512(&blob);
            let ex = upload.close(cx, &blob, 2 * upload.chunk, &digest)?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "a chunked upload started with ?digest-algorithm=sha512 closes with its sha512 digest: 201 (end-4c, end-6)",
            )?;
            check_blob(cx, &ns, &digest, &blob)
        }),
        test!(Push, "push/sha512-blob-monolithic", S_POST_PUT, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("sha512-mono", 700);
            let digest = sha512(&blob);
            let (_, location) = cx.start_upload(&ns, "")?;
            let ex = cx.close_upload(
                &location,
                &digest,
                &[("content-type", "application/octet-stream")],
                blob.clone(),
            )?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "POST then PUT with a sha512 digest publishes the blob: 201",
            )?;
            let head = cx.head(&format!("/v2/{ns}/blobs/{digest}"))?;
            head.status_in(
                &[200],
                "the sha512 blob exists: HEAD by its digest answers 200",
            )?;
            head.has_header(
                "docker-content-digest",
                "\"A successful response MUST contain the digest of the uploaded blob or manifest in the header Docker-Content-Digest\"",
            )?;
            head.digest_header_matches(&blob, "the sha512 blob")
        }),
        test!(Push, "push/sha512-blob-single-post", S_SINGLE_POST, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("sha512-single-post", 900);
            let digest = sha512(&blob);
            let ex = cx.send(
                "POST",
                &format!("/v2/{ns}/blobs/uploads/?digest={digest}"),
                &[("content-type", "application/octet-stream")],
                blob.clone(),
            )?;
            ex.status_in(
                &[201, 202],
                "a single POST of a sha512 blob answers 201 Created, or 202 where single POST is unsupported",
            )?;
            let created = if ex.status() == 202 {
                // Single POST unsupported (push/monolithic-single-post reports that): this test
                // is about sha512, so finish the upload with the PUT a client would send.
                let location = ex.location("a 202 MUST carry the upload's Location")?;
                cx.close_upload(
                    &location,
                    &digest,
                    &[("content-type", "application/octet-stream")],
                    blob.clone(),
                )?
            } else {
                ex
            };
            check_created(
                cx,
                &created,
                &digest,
                &blob,
                "the sha512 blob's upload completes with 201 Created",
            )?;
            check_blob(cx, &ns, &digest, &blob)
        }),
        test!(Push, "push/sha512-blob-streamed", S_CHUNKED, |cx| {
            let ns = cx.ns().to_owned();
            let blob = cx.bytes("sha512-streamed", 2200);
            let (_, location) = cx.start_upload(&ns, "?digest-algorithm=sha512")?;
            let ex = cx.send(
                "PATCH",
                &location,
                &[("content-type", "application/octet-stream")],
                blob.clone(),
            )?;
            ex.status_in(&[202], "a streamed PATCH of a sha512 upload answers 202")?;
            let location = ex.location("a PATCH response MUST carry Location")?;
            let digest = sha512(&blob);
            let ex = cx.close_upload(&location, &digest, &[("content-length", "0")], Vec::new())?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "a streamed sha512 upload closes with 201 Created",
            )
        }),
        test!(
            Push,
            "push/upload-single-post-sha256-digest-algorithm",
            S_SINGLE_POST,
            |cx| { push_in_mode(cx, Mode::SinglePost, Algorithm::Sha256, true) }
        ),
        test!(
            Push,
            "push/upload-post-put-sha256-digest-algorithm",
            S_POST_PUT,
            |cx| { push_in_mode(cx, Mode::PostPut, Algorithm::Sha256, true) }
        ),
        test!(
            Push,
            "push/upload-chunked-sha256-digest-algorithm",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::Chunked, Algorithm::Sha256, true) }
        ),
        test!(
            Push,
            "push/upload-streamed-sha256-digest-algorithm",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::Streamed, Algorithm::Sha256, true) }
        ),
        test!(
            Push,
            "push/upload-final-chunk-in-put-sha256-digest-algorithm",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::FinalChunkInPut, Algorithm::Sha256, true) }
        ),
        test!(
            Push,
            "push/upload-resume-after-416-sha256-digest-algorithm",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::ResumeAfter416, Algorithm::Sha256, true) }
        ),
        test!(
            Push,
            "push/upload-single-post-sha512-digest-algorithm",
            S_SINGLE_POST,
            |cx| { push_in_mode(cx, Mode::SinglePost, Algorithm::Sha512, true) }
        ),
        test!(
            Push,
            "push/upload-post-put-sha512-digest-algorithm",
            S_POST_PUT,
            |cx| { push_in_mode(cx, Mode::PostPut, Algorithm::Sha512, true) }
        ),
        test!(
            Push,
            "push/upload-chunked-sha512-digest-algorithm",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::Chunked, Algorithm::Sha512, true) }
        ),
        test!(
            Push,
            "push/upload-resume-after-416-sha512-digest-algorithm",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::ResumeAfter416, Algorithm::Sha512, true) }
        ),
        test!(Push, "push/upload-chunked-sha512", S_CHUNKED, |cx| {
            push_in_mode(cx, Mode::Chunked, Algorithm::Sha512, false)
        }),
        test!(Push, "push/upload-streamed-sha512", S_CHUNKED, |cx| {
            push_in_mode(cx, Mode::Streamed, Algorithm::Sha512, false)
        }),
        test!(
            Push,
            "push/upload-final-chunk-in-put-sha512",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::FinalChunkInPut, Algorithm::Sha512, false) }
        ),
        test!(
            Push,
            "push/upload-resume-after-416-sha512",
            S_CHUNKED,
            |cx| { push_in_mode(cx, Mode::ResumeAfter416, Algorithm::Sha512, false) }
        ),
        test!(Push, "push/mount-with-from", S_MOUNT, |cx| {
            let ns = cx.ns().to_owned();
            let target = cx.crossmount().to_owned();
            let blob = cx.bytes("mount-from", 777);
            let digest = cx.push_blob(&ns, &blob)?;
            let ex = mount(cx, &target, &digest, Some(&ns))?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "\"The response to a successful mount MUST be 201 Created, and MUST contain the following header: Location: <blob-location>\" (end-11)",
            )?;
            check_blob(cx, &target, &digest, &blob)
        }),
        test!(Push, "push/sha512-mount-with-from", S_MOUNT, |cx| {
            let ns = cx.ns().to_owned();
            let target = cx.crossmount().to_owned();
            let blob = cx.bytes("sha512-mount", 1500);
            let digest = sha512(&blob);
            cx.push_blob_as(&ns, &blob, &digest)?;
            let ex = mount(cx, &target, &digest, Some(&ns))?;
            check_created(
                cx,
                &ex,
                &digest,
                &blob,
                "a mount of a sha512 blob that exists in `from` answers 201 Created (end-11)",
            )
        }),
        test!(Push, "push/mount-without-from", S_MOUNT, |cx| {
            let ns = cx.ns().to_owned();
            let target = cx.crossmount().to_owned();
            let blob = cx.bytes("mount-no-from", 778);
            let digest = cx.push_blob(&ns, &blob)?;
            let ex = mount(cx, &target, &digest, None)?;
            ex.status_in(
                &[201, 202],
                "without `from`, \"The registry MAY treat the from parameter as optional, and it MAY cross-mount the blob if it can be found\" (201); otherwise it starts an upload session (202)",
            )?;
            if ex.status() == 201 {
                check_created(
                    cx,
                    &ex,
                    &digest,
                    &blob,
                    "an automatic mount answers 201 with a pullable Location",
                )?;
            } else {
                let location =
                    ex.location("a 202 starts an upload session and MUST carry Location")?;
                let close = cx.close_upload(
                    &location,
                    &digest,
                    &[("content-type", "application/octet-stream")],
                    blob.clone(),
                )?;
                check_created(
                    cx,
                    &close,
                    &digest,
                    &blob,
                    "the upload session a mount fell back to completes with 201",
                )?;
            }
            check_blob(cx, &target, &digest, &blob)
        }),
        test!(
            Push,
            "push/mount-missing-blob-falls-back-to-upload",
            S_MOUNT,
            |cx| {
                let ns = cx.ns().to_owned();
                let target = cx.crossmount().to_owned();
                let absent = sha256(format!("never pushed {}", cx.run_id()).as_bytes());
                let ex = mount(cx, &target, &absent, Some(&ns))?;
                ex.status_in(
                &[202],
                "\"if a registry ... is unable to mount the requested blob, it SHOULD return a 202\" (a 201 would claim a blob nobody pushed)",
            )?;
                ex.location("the 202 starts an upload session and MUST carry its Location")?;
                check_absent(cx, &target, &absent)
            }
        ),
        test!(Push, "push/manifest-by-tag", S_PUSH_MANIFESTS, |cx| {
            let image = cx.push_image("push-tag")?;
            let ex = cx.get(&format!("/v2/{}/manifests/{}", cx.ns(), image.tag))?;
            ex.status_in(&[200], "a manifest pushed by tag is readable by that tag")?;
            ex.check(ex.body() == image.manifest.as_slice(), "\"The registry MUST store the manifest in the exact byte representation provided by the client\"")
        }),
        test!(Push, "push/manifest-by-digest", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let manifest = cx.small_manifest("by-digest", "")?;
            let digest = sha256(manifest.as_bytes());
            let ex = cx.put_manifest_ok(
                &ns,
                &digest,
                OCI_MANIFEST,
                manifest.as_bytes(),
                "PUT /v2/<name>/manifests/<digest> MUST answer 201 Created (end-7)",
            )?;
            ex.digest_header_is(&digest, "\"The Docker-Content-Digest header ... MUST be equal to the client provided digest\"")
        }),
        test!(
            Push,
            "push/manifest-custom-fields-byte-exact",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                // A config with fields the image spec does not define.
                let config = format!(
                    r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"x-custom-config":{{"run":"{}"}}}}"#,
                    cx.run_id()
                );
                let config_digest = cx.push_blob(&ns, config.as_bytes())?;
                // Unusual spacing and unknown fields: the registry MUST store the exact bytes.
                let manifest = format!(
                    "{{\n  \"schemaVersion\" : 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\":\"{OCI_CONFIG}\",\"digest\":\"{config_digest}\",\"size\":{}, \"x-descriptor-field\": true}},\n  \"layers\": [],\n  \"x-custom\": {{\"nested\": [1, 2.5, null, \"{}\"]}}\n}}\n",
                    config.len(),
                    cx.run_id()
                );
                cx.put_manifest_ok(
                    &ns,
                    &cx.unique("custom"),
                    OCI_MANIFEST,
                    manifest.as_bytes(),
                    "a manifest with fields the spec does not define is accepted: 201",
                )?;
                Ok(())
            }
        ),
        test!(
            Push,
            "push/manifest-non-distributable-layer",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let config = cx.push_empty_config(&ns)?;
                let layer = cx.bytes("nd-regular", 300);
                let layer_digest = cx.push_blob(&ns, &layer)?;
                let foreign_gz = sha256(format!("foreign layer gz {}", cx.run_id()).as_bytes());
                let foreign_tar = sha256(format!("foreign layer tar {}", cx.run_id()).as_bytes());
                let url =
                    |d: &str| format!("https://store.example.com/blobs/{}", d.replace(':', "/"));
                let manifest = format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{config}","size":2}},"layers":[{{"mediaType":"{NON_DISTRIBUTABLE}","digest":"{foreign_gz}","size":123456,"urls":["{}"]}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{foreign_tar}","size":12345,"urls":["{}"]}},{{"mediaType":"{OCI_LAYER}","digest":"{layer_digest}","size":300}}]}}"#,
                    url(&foreign_gz),
                    url(&foreign_tar)
                );
                cx.put_manifest_ok(&ns, &cx.unique("foreign"), OCI_MANIFEST, manifest.as_bytes(), "a manifest whose non-distributable layers were never pushed is accepted (the official suite pushes such images): 201")?;
                Ok(())
            }
        ),
        test!(Push, "push/manifest-missing-blob-rejected", S_PUSH, |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let missing = sha256(format!("missing layer {}", cx.run_id()).as_bytes());
            let manifest =
                image_manifest((&config, 2, EMPTY_CONFIG), &[(&missing, 10, OCI_LAYER)], "");
            put_rejected(
                cx,
                &cx.unique("missing"),
                manifest.as_bytes(),
                &["MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID"],
                "a manifest referencing a blob the registry does not have is rejected with 400; \"When a manifest is rejected for this reason, it MUST result in one or more MANIFEST_BLOB_UNKNOWN errors\"",
            )
        }),
        test!(
            Push,
            "push/manifest-wrong-digest-rejected",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let manifest = cx.small_manifest("wrong-digest", "")?;
                let wrong = sha256(b"a different manifest");
                put_rejected(
                    cx,
                    &wrong,
                    manifest.as_bytes(),
                    &["DIGEST_INVALID", "MANIFEST_INVALID"],
                    "a manifest PUT by a digest its bytes do not hash to is rejected: the stored digest \"MUST be equal to the client provided digest\"",
                )?;
                let got = cx.get(&format!("/v2/{ns}/manifests/{wrong}"))?;
                got.status_in(&[404], "nothing is stored under the wrong digest")
            }
        ),
        test!(
            Push,
            "push/manifest-invalid-json-400",
            S_PUSH_MANIFESTS,
            |cx| {
                put_rejected(
                    cx,
                    &cx.unique("bad"),
                    b"{\"schemaVersion\": 2, oops",
                    &["MANIFEST_INVALID"],
                    "a manifest that is not JSON is rejected with 400 MANIFEST_INVALID",
                )
            }
        ),
        test!(
            Push,
            "push/manifest-put-invalid-digest-400",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let manifest = cx.small_manifest("invalid-reference", "")?;
                let ex = cx.put_manifest(
                    &ns,
                    "sha256:baddigeststring",
                    OCI_MANIFEST,
                    manifest.as_bytes(),
                )?;
                ex.status_in(&[400], "a manifest PUT to a malformed digest reference is rejected with 400 (\"<tag-or-digest> MUST NOT be in any other format\"; the official suite expects a bad-digest error)")?;
                let got = cx.get(&format!("/v2/{ns}/manifests/sha256:baddigeststring"))?;
                got.status_in(
                    &[400, 404],
                    "a GET of a malformed digest reference answers 400 or 404",
                )
            }
        ),
        test!(
            Push,
            "push/manifest-put-invalid-reference-400",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let manifest = cx.small_manifest("put-invalid-reference", "")?;
                for reference in super::invalid_references() {
                    let ex = cx.put_manifest(&ns, &reference, OCI_MANIFEST, manifest.as_bytes())?;
                    ex.status_in(
                        &[400, 404],
                        "a manifest PUT to a reference that is neither a tag nor a digest is refused (\"the <tag-or-digest> MUST be either a) a digest or b) a tag\"): 400 for the malformed request, or the 404 of end-7",
                    )?;
                    ex.error_code_in_if_json(&[
                        "MANIFEST_INVALID",
                        "MANIFEST_UNKNOWN",
                        "NAME_UNKNOWN",
                    ])?;
                }
                let got = cx.get(&format!(
                    "/v2/{ns}/manifests/{}",
                    sha256(manifest.as_bytes())
                ))?;
                got.status_in(
                    &[404],
                    "a refused manifest PUT stores nothing: the manifest is not readable by its digest",
                )
            }
        ),
        test!(
            Push,
            "push/manifest-large-annotations",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                // 390 annotations of 10,000 bytes (as the official suite): just under 4 MB, which
                // "registry implementations SHOULD expect to be able to support".
                let annotations: Vec<String> = (0..390)
                    .map(|i| format!(r#""large-annotation-{i}":"{}""#, "A".repeat(10_000)))
                    .collect();
                let config = cx.push_empty_config(&ns)?;
                let manifest = image_manifest(
                    (&config, 2, EMPTY_CONFIG),
                    &[],
                    &format!(
                        r#","annotations":{{"run":"{}",{}}}"#,
                        cx.run_id(),
                        annotations.join(",")
                    ),
                );
                cx.put_manifest_ok(&ns, &cx.unique("large"), OCI_MANIFEST, manifest.as_bytes(), "a manifest of almost 4 MB is accepted (\"Client and registry implementations SHOULD expect to be able to support manifest pushes of at least 4 megabytes\")")?;
                Ok(())
            }
        ),
        test!(
            Push,
            "push/manifest-uncompressed-layer",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let config = cx.push_empty_config(&ns)?;
                let layer = cx.bytes("uncompressed", 1024);
                let layer_digest = cx.push_blob(&ns, &layer)?;
                let manifest = image_manifest(
                    (&config, 2, EMPTY_CONFIG),
                    &[(&layer_digest, 1024, OCI_LAYER_TAR)],
                    &format!(r#","annotations":{{"run":"{}"}}"#, cx.run_id()),
                );
                cx.put_manifest_ok(
                    &ns,
                    &cx.unique("uncompressed"),
                    OCI_MANIFEST,
                    manifest.as_bytes(),
                    "an image with an uncompressed tar layer is accepted: 201",
                )?;
                Ok(())
            }
        ),
        test!(Push, "push/manifest-data-field", S_PUSH_MANIFESTS, |cx| {
            use base64::Engine as _;
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let layer = cx.bytes("data-field", 64);
            let layer_digest = cx.push_blob(&ns, &layer)?;
            let data = base64::engine::general_purpose::STANDARD.encode(&layer);
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{config}","size":2,"data":"e30="}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{layer_digest}","size":64,"data":"{data}"}}]}}"#
            );
            cx.put_manifest_ok(
                &ns,
                &cx.unique("data-field"),
                OCI_MANIFEST,
                manifest.as_bytes(),
                "descriptors carrying their content in the `data` field are accepted: 201",
            )?;
            Ok(())
        }),
        test!(Push, "push/image-index", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let amd = cx.push_image("index-amd64")?;
            let arm = cx.push_image("index-arm64")?;
            let index = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
                amd.manifest_digest,
                amd.manifest.len(),
                arm.manifest_digest,
                arm.manifest.len()
            );
            cx.put_manifest_ok(
                &ns,
                &cx.unique("index"),
                OCI_INDEX,
                index.as_bytes(),
                "an image index is a manifest: PUT answers 201",
            )?;
            Ok(())
        }),
        test!(Push, "push/nested-index", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let image = cx.push_image("nested-child")?;
            let inner = image_index(
                &[(OCI_MANIFEST, &image.manifest_digest, image.manifest.len())],
                &format!(r#","annotations":{{"run":"{}"}}"#, cx.run_id()),
            );
            let inner_digest = sha256(inner.as_bytes());
            cx.put_manifest_ok(
                &ns,
                &inner_digest,
                OCI_INDEX,
                inner.as_bytes(),
                "the inner index is accepted: 201",
            )?;
            let outer = image_index(&[(OCI_INDEX, &inner_digest, inner.len())], "");
            cx.put_manifest_ok(
                &ns,
                &cx.unique("index-of-index"),
                OCI_INDEX,
                outer.as_bytes(),
                "an index whose entry is another index is accepted: 201",
            )?;
            Ok(())
        }),
        test!(Push, "push/empty-index", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let index = image_index(
                &[],
                &format!(r#","annotations":{{"run":"{}"}}"#, cx.run_id()),
            );
            cx.put_manifest_ok(
                &ns,
                &cx.unique("empty-index"),
                OCI_INDEX,
                index.as_bytes(),
                "an index with no manifests is accepted: 201",
            )?;
            Ok(())
        }),
        test!(Push, "push/artifact-manifest", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let config = cx.push_empty_config(&ns)?;
            let payload = cx.bytes("artifact", 64);
            let layer = cx.push_blob(&ns, &payload)?;
            let manifest = image_manifest(
                (&config, 2, EMPTY_CONFIG),
                &[(&layer, 64, "application/vnd.example.payload")],
                r#","artifactType":"application/vnd.example.artifact""#,
            );
            cx.put_manifest_ok(&ns, &cx.unique("artifact"), OCI_MANIFEST, manifest.as_bytes(), "an artifact (artifactType, the empty config application/vnd.oci.empty.v1+json) is accepted: 201")?;
            Ok(())
        }),
        test!(Push, "push/artifact-empty-layer", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let empty = cx.push_empty_config(&ns)?;
            let manifest = image_manifest(
                (&empty, 2, EMPTY_CONFIG),
                &[(&empty, 2, EMPTY_CONFIG)],
                &format!(
                    r#","artifactType":"application/vnd.example.no-payload","annotations":{{"run":"{}"}}"#,
                    cx.run_id()
                ),
            );
            cx.put_manifest_ok(
                &ns,
                &cx.unique("artifact-no-layers"),
                OCI_MANIFEST,
                manifest.as_bytes(),
                "an artifact whose only layer is the empty descriptor is accepted: 201",
            )?;
            Ok(())
        }),
        test!(Push, "push/artifact-index", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let child = cx.small_manifest(
                "artifact-index-child",
                r#""artifactType":"application/vnd.example.part","#,
            )?;
            let child_digest = sha256(child.as_bytes());
            cx.put_manifest_ok(
                &ns,
                &child_digest,
                OCI_MANIFEST,
                child.as_bytes(),
                "the artifact index's child is accepted: 201",
            )?;
            let index = image_index(
                &[(OCI_MANIFEST, &child_digest, child.len())],
                r#","artifactType":"application/vnd.example.collection""#,
            );
            cx.put_manifest_ok(
                &ns,
                &cx.unique("artifact-index"),
                OCI_INDEX,
                index.as_bytes(),
                "an index with an artifactType is accepted: 201",
            )?;
            Ok(())
        }),
        test!(Push, "push/sha512-manifest", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let manifest = cx.small_manifest("sha512-manifest", "")?;
            let digest = sha512(manifest.as_bytes());
            let ex = cx.put_manifest_ok(
                &ns,
                &digest,
                OCI_MANIFEST,
                manifest.as_bytes(),
                "a manifest PUT by its sha512 digest is stored: 201",
            )?;
            ex.digest_header_if_present_is(
                &digest,
                "the digest header names the client-provided sha512 digest",
            )?;
            let got = cx.get(&format!("/v2/{ns}/manifests/{digest}"))?;
            got.status_in(&[200], "the manifest is readable by its sha512 digest")?;
            got.check(got.body() == manifest.as_bytes(), "byte-exact")
        }),
        test!(Push, "push/sha512-image", S_PUSH_MANIFESTS, |cx| {
            let ns = cx.ns().to_owned();
            let config = format!(
                r#"{{"architecture":"arm64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"run":"{}-sha512"}}"#,
                cx.run_id()
            );
            let config_digest = sha512(config.as_bytes());
            cx.push_blob_as(&ns, config.as_bytes(), &config_digest)?;
            let layer = cx.bytes("sha512-layer", 2048);
            let layer_digest = sha512(&layer);
            cx.push_blob_as(&ns, &layer, &layer_digest)?;
            let manifest = image_manifest(
                (&config_digest, config.len(), OCI_CONFIG),
                &[(&layer_digest, layer.len(), OCI_LAYER)],
                "",
            );
            let digest = sha512(manifest.as_bytes());
            cx.put_manifest_ok(
                &ns,
                &digest,
                OCI_MANIFEST,
                manifest.as_bytes(),
                "an image whose config, layer and manifest are all sha512 is accepted: 201",
            )?;
            check_blob(cx, &ns, &layer_digest, &layer)
        }),
        test!(
            Push,
            "push/manifest-tag-parameters-oci-tag",
            S_PUSH_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let manifest = cx.small_manifest("tag-parameters", "")?;
                let digest = sha256(manifest.as_bytes());
                let tags = [cx.unique("t1"), cx.unique("t2"), cx.unique("t3")];
                let ex = cx.put_manifest(
                    &ns,
                    &format!("{digest}?tag={}&tag={}&tag={}", tags[0], tags[1], tags[2]),
                    OCI_MANIFEST,
                    manifest.as_bytes(),
                )?;
                ex.status_in(
                    &[201],
                    "PUT by digest with tag parameters answers 201 (end-7b)",
                )?;
                let announced = ex.header_list("oci-tag");
                for tag in &tags {
                    ex.check(
                    announced.contains(tag),
                    format!("a registry supporting tag parameters \"MUST include an OCI-Tag response header ... for each accepted tag\" ({tag} is missing)"),
                )?;
                    let got = cx.get(&format!("/v2/{ns}/manifests/{tag}"))?;
                    got.status_in(&[200], "each accepted tag points to the manifest")?;
                    got.check(
                        got.body() == manifest.as_bytes(),
                        "the tag serves the manifest pushed",
                    )?;
                }
                Ok(())
            }
        ),
    ]
}
