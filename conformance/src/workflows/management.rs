//! Content management: deleting tags, manifests and blobs, and what reads answer afterwards.

use super::discovery::push_referrer;
use super::{
    Context, EMPTY_CONFIG, Failure, OCI_MANIFEST, S_DELETE_BLOBS, S_DELETE_MANIFESTS,
    S_DELETE_TAGS, Test, listed_tags, sha256, test,
};

/// The repository's tags, read whole (a registry may page; follow `Link`).
fn tags_of(cx: &Context<'_>) -> Result<Vec<String>, Failure> {
    let mut url = format!("/v2/{}/tags/list", cx.ns());
    let mut tags = Vec::new();
    for _ in 0..1000 {
        let ex = cx.get(&url)?;
        if ex.status() == 404 {
            break;
        }
        ex.status_in(
            &[200, 404],
            "the tag list answers 200 (or 404 for a repository without tags)",
        )?;
        tags.extend(listed_tags(&ex));
        match ex.header("link").and_then(crate::headers::next_link) {
            Some(next) => url = crate::headers::resolve_reference(&url, &next),
            None => break,
        }
    }
    Ok(tags)
}

pub(super) fn tests() -> Vec<Test> {
    vec![
        test!(
            ContentManagement,
            "management/delete-tag",
            S_DELETE_TAGS,
            |cx| {
                let ns = cx.ns().to_owned();
                let manifest = cx.small_manifest("delete-tag", "")?;
                let tag = cx.unique("deltag");
                let kept = cx.unique("deltag-kept");
                for t in [&tag, &kept] {
                    cx.put_manifest(&ns, t, OCI_MANIFEST, manifest.as_bytes())?
                        .status_in(&[201], "setup: tagging the manifest twice")?;
                }
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{ns}/manifests/{tag}"),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[202], "deleting a tag: \"Upon success, the registry MUST respond with a 202 Accepted code\" (end-9; a registry with tag deletion disabled answers 400 or 405, which berth targets must not)")?;
                let got = cx.get(&format!("/v2/{ns}/manifests/{tag}"))?;
                got.status_in(
                    &[404],
                    "\"Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404\"",
                )?;
                got.error_code("MANIFEST_UNKNOWN")?;
                let head = cx.head(&format!("/v2/{ns}/manifests/{tag}"))?;
                head.status_in(&[404], "once deleted, HEAD of the tag returns 404 too")?;
                let by_digest = cx.get(&format!(
                    "/v2/{ns}/manifests/{}",
                    sha256(manifest.as_bytes())
                ))?;
                by_digest.status_in(
                    &[200],
                    "deleting a tag leaves the manifest, readable by digest",
                )?;
                let other = cx.get(&format!("/v2/{ns}/manifests/{kept}"))?;
                other.status_in(&[200], "deleting a tag leaves the manifest's other tags")?;
                let tags = tags_of(cx)?;
                if tags.contains(&tag) || !tags.contains(&kept) {
                    return Err(super::fail(format!(
                        "the tag list reflects the deletion: {tag} gone, {kept} kept; got {tags:?}"
                    )));
                }
                Ok(())
            }
        ),
        test!(
            ContentManagement,
            "management/delete-manifest-by-digest",
            S_DELETE_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let image = cx.push_image("delete-me")?;
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{ns}/manifests/{}", image.manifest_digest),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[202], "deleting a manifest: \"Upon success, the registry MUST respond with a 202 Accepted code\" (end-9)")?;
                let got = cx.get(&format!("/v2/{ns}/manifests/{}", image.manifest_digest))?;
                got.status_in(&[404], "\"Once deleted, a GET to /v2/<name>/manifests/<digest> ... will return a 404\"")?;
                got.error_code("MANIFEST_UNKNOWN")?;
                let head = cx.head(&format!("/v2/{ns}/manifests/{}", image.manifest_digest))?;
                head.status_in(&[404], "once deleted, HEAD of the manifest returns 404 too")?;
                let by_tag = cx.get(&format!("/v2/{ns}/manifests/{}", image.tag))?;
                by_tag.status_in(
                    &[404],
                    "once deleted, a GET to \"any tag pointing to that digest will return a 404\"",
                )?;
                let tags = tags_of(cx)?;
                if tags.contains(&image.tag) {
                    return Err(super::fail(format!(
                        "the tag list reflects the deletion: {} is gone; got {tags:?}",
                        image.tag
                    )));
                }
                Ok(())
            }
        ),
        test!(
            ContentManagement,
            "management/delete-unknown-manifest-404",
            S_DELETE_MANIFESTS,
            |cx| {
                let absent = sha256(format!("never a manifest {}", cx.run_id()).as_bytes());
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{}/manifests/{absent}", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[404],
                    "deleting a manifest that does not exist answers 404 (end-9)",
                )?;
                ex.error_code("MANIFEST_UNKNOWN")
            }
        ),
        test!(
            ContentManagement,
            "management/delete-invalid-reference",
            S_DELETE_MANIFESTS,
            |cx| {
                for reference in super::invalid_references() {
                    let ex = cx.send(
                        "DELETE",
                        &format!("/v2/{}/manifests/{reference}", cx.ns()),
                        &[],
                        Vec::new(),
                    )?;
                    ex.status_in(
                        &[400, 404],
                        "deleting by a reference that is neither a tag nor a digest deletes nothing: 404, or 400 for the malformed request (end-9)",
                    )?;
                    ex.error_code_in_if_json(&[
                        "MANIFEST_UNKNOWN",
                        "NAME_UNKNOWN",
                        "MANIFEST_INVALID",
                    ])?;
                }
                Ok(())
            }
        ),
        test!(
            ContentManagement,
            "management/delete-manifest-unknown-repository-404",
            S_DELETE_MANIFESTS,
            |cx| {
                let absent = sha256(format!("no repository {}", cx.run_id()).as_bytes());
                let ex = cx.send(
                    "DELETE",
                    &format!(
                        "/v2/{}/{}/manifests/{absent}",
                        cx.ns(),
                        cx.unique("no-repo")
                    ),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[404],
                    "\"If the repository does not exist, the response MUST return 404 Not Found\"",
                )?;
                ex.error_code_in(&["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])
            }
        ),
        test!(
            ContentManagement,
            "management/delete-blob",
            S_DELETE_BLOBS,
            |cx| {
                let ns = cx.ns().to_owned();
                let blob = cx.bytes("delete-blob", 321);
                let digest = cx.push_blob(&ns, &blob)?;
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{ns}/blobs/{digest}"),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(&[202], "deleting a blob: \"Upon success, the registry MUST respond with code 202 Accepted\" (end-10)")?;
                let got = cx.get(&format!("/v2/{ns}/blobs/{digest}"))?;
                got.status_in(&[404], "a deleted blob is no longer readable: 404 (end-2)")?;
                got.error_code("BLOB_UNKNOWN")?;
                let head = cx.head(&format!("/v2/{ns}/blobs/{digest}"))?;
                head.status_in(&[404], "a deleted blob no longer exists: HEAD answers 404")
            }
        ),
        test!(
            ContentManagement,
            "management/delete-unknown-blob-404",
            S_DELETE_BLOBS,
            |cx| {
                let absent = sha256(format!("never a blob {}", cx.run_id()).as_bytes());
                let ex = cx.send(
                    "DELETE",
                    &format!("/v2/{}/blobs/{absent}", cx.ns()),
                    &[],
                    Vec::new(),
                )?;
                ex.status_in(
                    &[404],
                    "\"If the blob is not found, a 404 Not Found code MUST be returned\" (end-10)",
                )?;
                ex.error_code("BLOB_UNKNOWN")
            }
        ),
        test!(
            ContentManagement,
            "management/referrers-updated-after-delete",
            S_DELETE_MANIFESTS,
            |cx| {
                let ns = cx.ns().to_owned();
                let subject_manifest = cx.small_manifest("doomed-subject", "")?;
                let subject = (sha256(subject_manifest.as_bytes()), subject_manifest.len());
                cx.put_manifest(&ns, &subject.0, OCI_MANIFEST, subject_manifest.as_bytes())?
                    .status_in(&[201], "setup: a subject")?;
                let kept = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.kept"),
                    EMPTY_CONFIG,
                    "kept",
                )?;
                kept.put.status_in(&[201], "setup: a referrer that stays")?;
                let doomed = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.doomed"),
                    EMPTY_CONFIG,
                    "doomed",
                )?;
                doomed
                    .put
                    .status_in(&[201], "setup: a referrer to delete")?;
                cx.send(
                    "DELETE",
                    &format!("/v2/{ns}/manifests/{}", doomed.digest),
                    &[],
                    Vec::new(),
                )?
                .status_in(&[202], "deleting the referrer answers 202")?;
                let ex = cx.get(&format!("/v2/{ns}/referrers/{}", subject.0))?;
                ex.status_in(&[200], "the referrers API answers 200 (end-12a)")?;
                let listed: Vec<String> = ex
                    .json()
                    .and_then(|j| j.get("manifests").and_then(|m| m.as_array()).cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|d| d.get("digest").and_then(|v| v.as_str()).map(str::to_owned))
                    .collect();
                ex.check(
                !listed.contains(&doomed.digest),
                "a deleted manifest is no longer listed as a referrer (each descriptor is \"of an image manifest or index in the same <name> namespace\")",
            )?;
                ex.check(
                    listed.contains(&kept.digest),
                    "the other referrer is still listed",
                )
            }
        ),
    ]
}
