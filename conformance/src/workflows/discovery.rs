//! Content discovery: tag lists with `n`, `last` and `Link`, and the referrers API.

use super::{
    Check, Context, EMPTY_CONFIG, Exchange, Failure, OCI_INDEX, OCI_MANIFEST, S_REFERRERS,
    S_SUBJECT, S_TAGS, Test, image_index, image_manifest, listed_tags, sha256, test,
};
use crate::headers::{next_link, resolve_reference};

/// The tags the discovery workflow pushes (besides whatever else the repository holds).
const TAGS: [&str; 4] = ["tag-a", "tag-b", "tag-c", "tag-d"];

/// Tags `TAGS` onto one manifest (once per run) and returns the repository's full tag list,
/// which every pagination check compares against.
fn all_tags(cx: &mut Context<'_>) -> Result<Vec<String>, Failure> {
    if let Some(tags) = &cx.tags {
        return Ok(tags.clone());
    }
    let ns = cx.ns().to_owned();
    let manifest = cx.small_manifest("tags", "")?;
    for tag in TAGS {
        cx.put_manifest(&ns, tag, OCI_MANIFEST, manifest.as_bytes())?
            .status_in(&[201], "setup: tagging a manifest")?;
    }
    let ex = cx.get(&format!("/v2/{ns}/tags/list"))?;
    ex.status_in(
        &[200],
        "\"Assuming a repository is found, this request MUST return a 200 OK response code\" (end-8a)",
    )?;
    let mut tags = listed_tags(&ex);
    // A registry may page even without `n`; follow its links to get them all.
    let mut page = ex;
    for _ in 0..1000 {
        let Some(next) = page.header("link").and_then(next_link) else {
            break;
        };
        page = cx.get(&resolve_reference(&page.uri, &next))?;
        page.status_in(&[200], "each page of the tag list answers 200")?;
        tags.extend(listed_tags(&page));
    }
    // The order every listing must follow; `discovery/tags-list` checks the registry's own.
    tags.sort();
    tags.dedup();
    cx.tags = Some(tags.clone());
    Ok(tags)
}

/// A page of `n` (or fewer) tags is right: in order, starting after `after` in the full list,
/// and only short of `n` when the list ends or a `Link` says more follow.
fn check_page(ex: &Exchange, all: &[String], after: Option<&str>, n: Option<usize>) -> Check {
    ex.status_in(&[200], "a tag list with n and/or last answers 200 (end-8b)")?;
    let page = listed_tags(ex);
    let start = after.map_or(0, |last| {
        all.iter().take_while(|t| t.as_str() <= last).count()
    });
    let rest = &all[start.min(all.len())..];
    let limit = n.unwrap_or(usize::MAX);
    ex.check(
        page.len() <= limit,
        format!("the response MUST NOT include more than n={limit} results"),
    )?;
    ex.check(
        page.iter().zip(rest).all(|(a, b)| a == b),
        format!(
            "the page MUST be the tags in lexical order {}: expected a prefix of {:?}, got {page:?}",
            after.map_or("from the beginning".to_owned(), |l| format!("beginning non-inclusively after {l:?}")),
            &rest[..rest.len().min(limit)]
        ),
    )?;
    let full = page.len() == limit.min(rest.len());
    ex.check(
        full || ex.header("link").is_some(),
        format!("\"The response to such a request MAY return fewer than <int> results, but only when the total number of tags attached to the repository is less than <int> or a Link header is provided. Otherwise, the response MUST include <int> results\": expected {}, got {}", limit.min(rest.len()), page.len()),
    )
}

/// The subject manifest of the referrers tests, pushed once: its digest and size.
fn subject(cx: &mut Context<'_>) -> Result<(String, usize), Failure> {
    if let Some(subject) = cx.subject.clone() {
        return Ok(subject);
    }
    let ns = cx.ns().to_owned();
    let manifest = cx.small_manifest("subject", "")?;
    cx.put_manifest(
        &ns,
        &cx.unique("subject"),
        OCI_MANIFEST,
        manifest.as_bytes(),
    )?
    .status_in(&[201], "setup: pushing the subject manifest")?;
    let subject = (sha256(manifest.as_bytes()), manifest.len());
    cx.subject = Some(subject.clone());
    Ok(subject)
}

/// A referrer as pushed: what its descriptor in the referrers list must say.
pub(super) struct Referrer {
    pub digest: String,
    pub media_type: &'static str,
    pub size: usize,
    /// `None` where the descriptor must omit `artifactType` (an index without one).
    pub artifact_type: Option<String>,
    pub annotations: Vec<(String, String)>,
    pub put: Exchange,
}

/// Pushes an image manifest referring to `subject`, with `artifact_type` (or none, so the
/// config's media type `config_type` stands in for it), by digest.
pub(super) fn push_referrer(
    cx: &Context<'_>,
    subject: &(String, usize),
    artifact_type: Option<&str>,
    config_type: &str,
    label: &str,
) -> Result<Referrer, Failure> {
    let ns = cx.ns().to_owned();
    let config = cx.push_empty_config(&ns)?;
    let annotation = cx.unique(label);
    let artifact = artifact_type.map_or(String::new(), |t| format!(r#","artifactType":"{t}""#));
    let extra = format!(
        r#"{artifact},"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"org.example.label":"{annotation}"}}"#,
        subject.0, subject.1
    );
    let manifest = image_manifest((&config, 2, config_type), &[], &extra);
    let digest = sha256(manifest.as_bytes());
    let put = cx.put_manifest(&ns, &digest, OCI_MANIFEST, manifest.as_bytes())?;
    Ok(Referrer {
        digest,
        media_type: OCI_MANIFEST,
        size: manifest.len(),
        artifact_type: Some(artifact_type.unwrap_or(config_type).to_owned()),
        annotations: vec![("org.example.label".into(), annotation)],
        put,
    })
}

/// GETs the referrers of `digest` (with an `artifactType` filter if given), checking what
/// every answer must be: 200, an image index with the right Content-Type.
fn referrers(cx: &Context<'_>, digest: &str, filter: Option<&str>) -> Result<Exchange, Failure> {
    let query = filter.map_or(String::new(), |t| format!("?artifactType={t}"));
    let ex = cx.get(&format!("/v2/{}/referrers/{digest}{query}", cx.ns()))?;
    ex.status_in(
        &[200],
        "GET /v2/<name>/referrers/<digest> \"MUST return a 200 OK response code\"; \"If the registry supports the referrers API, the registry MUST NOT return a 404 Not Found\" (end-12a)",
    )?;
    ex.check(
        ex.header("content-type")
            .is_some_and(|c| c.split(';').next() == Some(OCI_INDEX)),
        "\"The Content-Type header MUST be set to application/vnd.oci.image.index.v1+json\"",
    )?;
    let json = ex.json().unwrap_or_default();
    ex.check(
        json.get("schemaVersion").and_then(|v| v.as_u64()) == Some(2)
            && json.get("mediaType").and_then(|v| v.as_str()) == Some(OCI_INDEX)
            && json.get("manifests").is_some_and(|m| m.is_array()),
        "\"the response MUST be a JSON body with an image index\": schemaVersion 2, mediaType application/vnd.oci.image.index.v1+json, a manifests array",
    )?;
    Ok(ex)
}

fn descriptors(ex: &Exchange) -> Vec<serde_json::Value> {
    ex.json()
        .and_then(|j| j.get("manifests").and_then(|m| m.as_array()).cloned())
        .unwrap_or_default()
}

/// The referrer is listed, and its descriptor says what the spec requires of it.
fn check_listed(ex: &Exchange, referrer: &Referrer) -> Check {
    let all = descriptors(ex);
    let Some(found) = all
        .iter()
        .find(|d| d.get("digest").and_then(|v| v.as_str()) == Some(referrer.digest.as_str()))
    else {
        return ex.check(
            false,
            format!(
                "\"Each descriptor is of an image manifest or index in the same <name> namespace with a subject field that specifies the value of <digest>\": {} is not listed",
                referrer.digest
            ),
        );
    };
    let field = |name: &str| found.get(name);
    ex.check(
        field("mediaType").and_then(|v| v.as_str()) == Some(referrer.media_type)
            && field("size").and_then(|v| v.as_u64()) == Some(referrer.size as u64),
        format!(
            "the descriptor of {} gives its mediaType {} and size {}",
            referrer.digest, referrer.media_type, referrer.size
        ),
    )?;
    let listed_type = field("artifactType").and_then(|v| v.as_str());
    match &referrer.artifact_type {
        Some(expected) => ex.check(
            listed_type == Some(expected.as_str()),
            format!("\"The descriptors MUST include an artifactType field that is set to the value of the artifactType in the image manifest or index, if present. If the artifactType is empty or missing in the image manifest, the value of artifactType MUST be set to the config descriptor mediaType value\": expected {expected}"),
        )?,
        None => ex.check(
            listed_type.is_none(),
            "\"If the artifactType is empty or missing in an index, the artifactType MUST be omitted\"",
        )?,
    }
    for (key, value) in &referrer.annotations {
        ex.check(
            field("annotations").and_then(|a| a.get(key)).and_then(|v| v.as_str()) == Some(value.as_str()),
            format!("\"The descriptors MUST include annotations from the image manifest or index\": {key}={value} is missing"),
        )?;
    }
    Ok(())
}

fn check_subject_header(referrer: &Referrer, subject: &str) -> Check {
    referrer
        .put
        .status_in(&[201], "a manifest with a subject is accepted: 201")?;
    referrer.put.check(
        referrer.put.header("oci-subject") == Some(subject),
        format!("\"a registry implementation that supports the referrers API MUST respond with the response header OCI-Subject: <subject digest>\" ({subject})"),
    )
}

pub(super) fn tests() -> Vec<Test> {
    vec![
        test!(
            ContentDiscovery,
            "discovery/tags-list-empty-repository",
            S_TAGS,
            |cx| {
                let ex = cx.get(&format!(
                    "/v2/{}/{}/tags/list",
                    cx.ns(),
                    cx.unique("never-pushed")
                ))?;
                ex.status_in(&[200, 404], "a repository without content has no tags: 200 with an empty list, or 404 where the repository is not found (end-8a)")?;
                if ex.status() == 200 {
                    ex.check(listed_tags(&ex).is_empty(), "\"The list of tags MAY be empty if there are no tags on the repository\"; it lists none")?;
                } else {
                    ex.error_code("NAME_UNKNOWN")?;
                }
                Ok(())
            }
        ),
        test!(ContentDiscovery, "discovery/tags-list", S_TAGS, |cx| {
            let ns = cx.ns().to_owned();
            all_tags(cx)?;
            let ex = cx.get(&format!("/v2/{ns}/tags/list"))?;
            ex.status_in(
                &[200],
                "GET /v2/<name>/tags/list \"MUST return a 200 OK response code\" (end-8a)",
            )?;
            let json = ex.json().unwrap_or_default();
            ex.check(
                json.get("name").and_then(|n| n.as_str()) == Some(ns.as_str())
                    && json.get("tags").is_some_and(|t| t.is_array()),
                "\"the response MUST be a json body in the following format: {\"name\": \"<name>\", \"tags\": [...]}\"",
            )?;
            let tags = listed_tags(&ex);
            ex.check(
                TAGS.iter().all(|t| tags.iter().any(|x| x == t)) || ex.header("link").is_some(),
                format!("every tag is listed: {TAGS:?}"),
            )?;
            let mut sorted = tags.clone();
            sorted.sort();
            ex.check(tags == sorted, "\"the tags MUST be in lexical (i.e. case-insensitive alphanumeric order) or ASCIIbetical order\"")
        }),
        test!(ContentDiscovery, "discovery/tags-list-n", S_TAGS, |cx| {
            let all = all_tags(cx)?;
            let ex = cx.get(&format!("/v2/{}/tags/list?n=2", cx.ns()))?;
            check_page(&ex, &all, None, Some(2))
        }),
        test!(
            ContentDiscovery,
            "discovery/tags-list-n-last",
            S_TAGS,
            |cx| {
                let all = all_tags(cx)?;
                let ex = cx.get(&format!("/v2/{}/tags/list?n=2&last=tag-b", cx.ns()))?;
                check_page(&ex, &all, Some("tag-b"), Some(2))
            }
        ),
        test!(ContentDiscovery, "discovery/tags-list-last", S_TAGS, |cx| {
            let all = all_tags(cx)?;
            let last = &all[(all.len() / 2).saturating_sub(1)].clone();
            let ex = cx.get(&format!("/v2/{}/tags/list?last={last}", cx.ns()))?;
            // "When using the last query parameter, the n parameter is OPTIONAL."
            check_page(&ex, &all, Some(last), None)
        }),
        test!(
            ContentDiscovery,
            "discovery/tags-list-link-pagination",
            S_TAGS,
            |cx| {
                let all = all_tags(cx)?;
                let mut url = format!("/v2/{}/tags/list?n=1", cx.ns());
                let mut collected = Vec::new();
                for _ in 0..all.len() + 10 {
                    let ex = cx.get(&url)?;
                    ex.status_in(&[200], "each page answers 200")?;
                    let page = listed_tags(&ex);
                    ex.check(page.len() <= 1, "a page MUST NOT exceed n=1")?;
                    let Some(last) = page.last().cloned() else {
                        break;
                    };
                    collected.extend(page);
                    url = match ex.header("link") {
                        Some(link) => {
                            let next = next_link(link);
                            ex.check(next.is_some(), "\"the Link header MUST be set according to RFC 5988 with the Relation Type rel=\\\"next\\\"\"")?;
                            resolve_reference(&url, &next.unwrap_or_default())
                        }
                        // No Link (it is a MAY): continue as a client would, with `last`.
                        None => format!("/v2/{}/tags/list?n=1&last={last}", cx.ns()),
                    };
                }
                if collected == all {
                    Ok(())
                } else {
                    Err(super::fail(format!(
                        "paging with n=1, following Link: rel=\"next\" (or `last` where there is no Link), MUST visit every tag once, in lexical order: expected {all:?}, got {collected:?}"
                    )))
                }
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/tags-list-n-zero",
            S_TAGS,
            |cx| {
                all_tags(cx)?;
                let ex = cx.get(&format!("/v2/{}/tags/list?n=0", cx.ns()))?;
                ex.status_in(&[200], "n=0 answers 200")?;
                ex.check(
                    ex.json().is_some_and(|j| {
                        j.get("tags")
                            .is_some_and(|t| t.is_null() || t.as_array().is_some_and(Vec::is_empty))
                    }),
                    "\"When n is zero, this endpoint MUST return an empty list\"",
                )?;
                ex.check(
                    ex.header("link").is_none(),
                    "when n is zero the response \"MUST NOT include a Link header\"",
                )
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-subject-header-on-put",
            S_SUBJECT,
            |cx| {
                let subject = subject(cx)?;
                let referrer = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.sbom"),
                    EMPTY_CONFIG,
                    "sbom",
                )?;
                check_subject_header(&referrer, &subject.0)
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-list",
            S_REFERRERS,
            |cx| {
                let subject = subject(cx)?;
                let sig = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.signature"),
                    EMPTY_CONFIG,
                    "signature",
                )?;
                check_subject_header(&sig, &subject.0)?;
                let sbom = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.sbom"),
                    EMPTY_CONFIG,
                    "sbom-2",
                )?;
                check_subject_header(&sbom, &subject.0)?;
                let ex = referrers(cx, &subject.0, None)?;
                check_listed(&ex, &sig)?;
                check_listed(&ex, &sbom)
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-artifact-type-filter",
            S_REFERRERS,
            |cx| {
                let subject = subject(cx)?;
                let wanted = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.filtered"),
                    EMPTY_CONFIG,
                    "filtered",
                )?;
                wanted
                    .put
                    .status_in(&[201], "setup: a referrer of the filtered type")?;
                let other = push_referrer(
                    cx,
                    &subject,
                    Some("application/vnd.example.other"),
                    EMPTY_CONFIG,
                    "other",
                )?;
                other
                    .put
                    .status_in(&[201], "setup: a referrer of another type")?;
                let ex = referrers(cx, &subject.0, Some("application/vnd.example.filtered"))?;
                ex.check(
                ex.header_list("oci-filters-applied").iter().any(|f| f == "artifactType"),
                "\"If filtering is requested and applied, the response MUST include a header OCI-Filters-Applied: artifactType\" (end-12b; berth applies it)",
            )?;
                check_listed(&ex, &wanted)?;
                ex.check(
                    descriptors(&ex).iter().all(|d| {
                        d.get("artifactType").and_then(|t| t.as_str())
                            == Some("application/vnd.example.filtered")
                    }),
                    "with the filter applied, only referrers of that artifactType are listed",
                )
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-artifact-type-from-config",
            S_REFERRERS,
            |cx| {
                let subject = subject(cx)?;
                let config_type = "application/vnd.example.config.v1+json";
                let referrer = push_referrer(cx, &subject, None, config_type, "config-type")?;
                check_subject_header(&referrer, &subject.0)?;
                let ex = referrers(cx, &subject.0, None)?;
                check_listed(&ex, &referrer)
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-index-referrer",
            S_REFERRERS,
            |cx| {
                let subject = subject(cx)?;
                let ns = cx.ns().to_owned();
                let child = cx.small_manifest("index-referrer-child", "")?;
                let child_digest = sha256(child.as_bytes());
                cx.put_manifest(&ns, &child_digest, OCI_MANIFEST, child.as_bytes())?
                    .status_in(&[201], "setup: the referring index's child")?;
                let mut pushed = Vec::new();
                for (label, artifact_type) in [
                    (
                        "typed-index",
                        Some("application/vnd.example.index-artifact"),
                    ),
                    ("untyped-index", None),
                ] {
                    let annotation = cx.unique(label);
                    let artifact = artifact_type
                        .map_or(String::new(), |t| format!(r#","artifactType":"{t}""#));
                    let index = image_index(
                        &[(OCI_MANIFEST, &child_digest, child.len())],
                        &format!(
                            r#"{artifact},"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"org.example.label":"{annotation}"}}"#,
                            subject.0, subject.1
                        ),
                    );
                    let digest = sha256(index.as_bytes());
                    let put = cx.put_manifest(&ns, &digest, OCI_INDEX, index.as_bytes())?;
                    put.status_in(&[201], "an index with a subject is accepted: 201")?;
                    put.check(
                        put.header("oci-subject").is_none_or(|s| s == subject.0),
                        "OCI-Subject, if sent, names the subject",
                    )?;
                    pushed.push(Referrer {
                        digest,
                        media_type: OCI_INDEX,
                        size: index.len(),
                        artifact_type: artifact_type.map(str::to_owned),
                        annotations: vec![("org.example.label".into(), annotation)],
                        put,
                    });
                }
                let ex = referrers(cx, &subject.0, None)?;
                for referrer in &pushed {
                    check_listed(&ex, referrer)?;
                }
                Ok(())
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-subject-pushed-later",
            super::S_PUSH,
            |cx| {
                let ns = cx.ns().to_owned();
                let future_manifest = cx.small_manifest("future-subject", "")?;
                let future = (sha256(future_manifest.as_bytes()), future_manifest.len());
                let early = push_referrer(
                    cx,
                    &future,
                    Some("application/vnd.example.early"),
                    EMPTY_CONFIG,
                    "early",
                )?;
                early.put.status_in(&[201], "\"A registry MUST initially accept an otherwise valid manifest with a subject field that references a manifest that does not exist in the repository\"")?;
                let ex = referrers(cx, &future.0, None)?;
                check_listed(&ex, &early)?;
                // Then the subject arrives; the referrer is still listed.
                cx.put_manifest(&ns, &future.0, OCI_MANIFEST, future_manifest.as_bytes())?
                    .status_in(&[201], "the subject pushed after its referrer is accepted")?;
                let ex = referrers(cx, &future.0, None)?;
                check_listed(&ex, &early)
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-unknown-digest-empty",
            S_REFERRERS,
            |cx| {
                let absent = sha256(format!("nothing refers to this {}", cx.run_id()).as_bytes());
                let ex = referrers(cx, &absent, None)?;
                ex.check(
                descriptors(&ex).is_empty(),
                "\"If a query results in no matching referrers, an empty manifest list MUST be returned\"",
            )
            }
        ),
        test!(
            ContentDiscovery,
            "discovery/referrers-invalid-digest-400",
            S_REFERRERS,
            |cx| {
                let ex = cx.get(&format!("/v2/{}/referrers/sha256:not-a-digest", cx.ns()))?;
                ex.status_in(&[400], "\"If the request is invalid, such as a <digest> with an invalid syntax, a 400 Bad Request MUST be returned\"")
            }
        ),
    ]
}
