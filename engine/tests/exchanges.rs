//! Whole HTTP exchanges, one behaviour each, snapshotted with insta. The engine is
//! deterministic, so the snapshots need no redaction: ids, etags and bodies repeat exactly.

mod common;

use common::*;
use insta::assert_snapshot;

#[test]
fn base_endpoint_answers_200() {
    let mut d = driver();
    assert_snapshot!(exchange(&mut d, "GET", "/v2/", &[], b""));
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    let mut d = driver();
    let mut t = exchange(&mut d, "GET", "/v3/", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/a/unknown/x", &[], b"");
    t += &exchange(&mut d, "POST", "/v2/a/manifests/latest", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/Upper/tags/list", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/a/../b/tags/list", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/a/blobs/sha256:zz", &[], b"");
    t += &exchange(
        &mut d,
        "GET",
        "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", "/v2/a/manifests/-bad", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn monolithic_post_publishes_a_blob_readable_by_get_head_and_range() {
    let mut d = driver();
    let digest = sha256(b"hello world");
    let mut t = exchange(
        &mut d,
        "POST",
        &format!("/v2/a/b/blobs/uploads/?digest={digest}"),
        &[],
        b"hello world",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/a/b/blobs/{digest}"), &[], b"");
    t += &exchange(&mut d, "HEAD", &format!("/v2/a/b/blobs/{digest}"), &[], b"");
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/a/b/blobs/{digest}"),
        &[("range", "bytes=6-")],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/a/b/blobs/{digest}"),
        &[("range", "bytes=-5")],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/a/b/blobs/{digest}"),
        &[("range", "bytes=11-")],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/other/blobs/{digest}"),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn post_then_put_publishes_a_blob() {
    let mut d = driver();
    let digest = sha256(b"abc");
    let post = d.send(berth_engine::testing::request(
        "POST",
        "/v2/r/blobs/uploads/",
        &[],
        vec![],
    ));
    let mut t = common::render_response(&post);
    let url = format!("{}?digest={digest}", location(&post));
    t += &exchange(
        &mut d,
        "PUT",
        &url,
        &[("content-type", "application/octet-stream")],
        b"abc",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/r/blobs/{digest}"), &[], b"");
    assert_snapshot!(t);
}

#[test]
fn chunked_upload_with_status_out_of_order_and_final_chunk_in_put() {
    let mut d = driver();
    let digest = sha256(b"0123456789");
    let post = d.send(berth_engine::testing::request(
        "POST",
        "/v2/r/blobs/uploads/",
        &[],
        vec![],
    ));
    let url = location(&post);
    let mut t = exchange(&mut d, "PATCH", &url, &[("content-range", "0-3")], b"0123");
    t += &exchange(&mut d, "GET", &url, &[], b"");
    t += &exchange(&mut d, "PATCH", &url, &[("content-range", "0-3")], b"0123");
    t += &exchange(&mut d, "PATCH", &url, &[("content-range", "6-7")], b"67");
    t += &exchange(&mut d, "PATCH", &url, &[], b"45");
    t += &exchange(
        &mut d,
        "PUT",
        &format!("{url}?digest={digest}"),
        &[("content-range", "6-9")],
        b"6789",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/r/blobs/{digest}"), &[], b"");
    t += &exchange(&mut d, "GET", &url, &[], b"");
    assert_snapshot!(t);
}

#[test]
fn digest_mismatch_is_400_and_publishes_nothing() {
    let mut d = driver();
    let wrong = sha256(b"something else");
    let mut t = exchange(
        &mut d,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={wrong}"),
        &[],
        b"actual bytes",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/r/blobs/{wrong}"), &[], b"");
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/r/blobs/{}", sha256(b"actual bytes")),
        &[],
        b"",
    );
    assert_snapshot!(t);
    assert!(
        d.store
            .keys()
            .all(|k| !k.starts_with("_blobs/") && !k.starts_with("_data/")),
        "{:?}",
        d.store.keys().collect::<Vec<_>>()
    );
}

#[test]
fn upload_cancel_removes_the_session() {
    let mut d = driver();
    let post = d.send(berth_engine::testing::request(
        "POST",
        "/v2/r/blobs/uploads/",
        &[],
        vec![],
    ));
    let url = location(&post);
    let mut t = exchange(&mut d, "PATCH", &url, &[], b"partial");
    t += &exchange(&mut d, "DELETE", &url, &[], b"");
    t += &exchange(&mut d, "GET", &url, &[], b"");
    t += &exchange(&mut d, "PATCH", &url, &[], b"more");
    t += &exchange(
        &mut d,
        "GET",
        "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef",
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", "/v2/r/blobs/uploads/not-an-id", &[], b"");
    assert_snapshot!(t);
    assert_eq!(
        d.store
            .keys()
            .filter(|k| k.starts_with("_uploads/"))
            .count(),
        0
    );
}

#[test]
fn sha512_blobs_via_digest_algorithm() {
    let mut d = driver();
    let digest = sha512(b"sha512 content");
    let mut t = exchange(
        &mut d,
        "POST",
        "/v2/r/blobs/uploads/?digest-algorithm=sha512",
        &[],
        b"",
    );
    let url = d.send(berth_engine::testing::request(
        "POST",
        "/v2/r/blobs/uploads/?digest-algorithm=sha512",
        &[],
        vec![],
    ));
    let url = location(&url);
    t += &exchange(
        &mut d,
        "PATCH",
        &url,
        &[("content-range", "0-5")],
        b"sha512",
    );
    t += &exchange(
        &mut d,
        "PUT",
        &format!("{url}?digest={digest}"),
        &[],
        b" content",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/r/blobs/{digest}"), &[], b"");
    t += &exchange(
        &mut d,
        "POST",
        "/v2/r/blobs/uploads/?digest-algorithm=md5",
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn cross_repository_mount_with_and_without_from() {
    let mut d = driver();
    let digest = push_blob(&mut d, "source", b"shared layer");
    let mut t = exchange(
        &mut d,
        "POST",
        &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={digest}"),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "POST",
        &format!(
            "/v2/fourth/blobs/uploads/?mount={}&from=source",
            sha256(b"absent")
        ),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/target/blobs/{digest}"),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn mount_without_from_can_be_disabled() {
    let mut d = driver_with(berth_engine::Config {
        mount_without_from: false,
        ..Default::default()
    });
    let digest = push_blob(&mut d, "source", b"shared layer");
    let t = exchange(
        &mut d,
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={digest}"),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn manifest_push_pull_by_tag_and_digest() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let layer = push_blob(&mut d, "app", b"layer");
    let manifest = image_manifest(
        &[(&layer, 5)],
        r#","annotations":{"custom":"field"},"x-unknown":[1,2]"#,
    );
    let digest = sha256(manifest.as_bytes());
    let mut t = exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/v1",
        &[("content-type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "GET",
        "/v2/app/manifests/v1",
        &[("accept", OCI_MANIFEST)],
        b"",
    );
    t += &exchange(
        &mut d,
        "HEAD",
        &format!("/v2/app/manifests/{digest}"),
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", "/v2/app/manifests/v2", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/nowhere/manifests/v1", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn invalid_manifests_are_rejected_with_the_spec_codes() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let missing = image_manifest(&[(&sha256(b"never pushed"), 12)], "");
    let good = image_manifest(&[], "");
    let mut t = exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/missing",
        &[("content-type", OCI_MANIFEST)],
        missing.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "PUT",
        &format!("/v2/app/manifests/{}", sha256(b"other")),
        &[("content-type", OCI_MANIFEST)],
        good.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/x",
        &[("content-type", OCI_MANIFEST)],
        b"{not json",
    );
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/x",
        &[("content-type", OCI_INDEX)],
        good.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/x",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        br#"{"schemaVersion":1}"#,
    );
    let wrong_size = image_manifest(&[], "").replace("\"size\":2", "\"size\":3");
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/x",
        &[("content-type", OCI_MANIFEST)],
        wrong_size.as_bytes(),
    );
    assert_snapshot!(t);
}

#[test]
fn oversized_manifests_get_413() {
    let mut d = driver_with(berth_engine::Config {
        max_manifest_size: 64,
        ..Default::default()
    });
    let big = image_manifest(&[], "");
    let mut t = exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/x",
        &[("content-type", OCI_MANIFEST)],
        big.as_bytes(),
    );
    // Without a Content-Length (chunked transfer), the limit is enforced while reading.
    let response = d.send(
        http::Request::put("/v2/app/manifests/x")
            .header("content-type", OCI_MANIFEST)
            .body(big.into_bytes())
            .unwrap(),
    );
    t += &common::render_response(&response);
    assert_snapshot!(t);
}

#[test]
fn non_distributable_layers_need_not_be_pushed() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let manifest = image_manifest(&[], "").replace(
        r#""layers":[]"#,
        &format!(
            r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{}","size":9,"urls":["https://example.com/l"]}}]"#,
            sha256(b"elsewhere")
        ),
    );
    let t = exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/foreign",
        &[("content-type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    assert_snapshot!(t);
}

#[test]
fn image_index_requires_its_manifests() {
    let mut d = driver();
    let child = push_image(&mut d, "multi", "amd64", b"amd64 layer", "");
    let size = image_manifest(&[(&sha256(b"amd64 layer"), 11)], "").len();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let missing = index.replace(&child, &sha256(b"no such manifest"));
    let mut t = exchange(
        &mut d,
        "PUT",
        "/v2/multi/manifests/latest",
        &[("content-type", OCI_INDEX)],
        index.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/multi/manifests/broken",
        &[("content-type", OCI_INDEX)],
        missing.as_bytes(),
    );
    t += &exchange(&mut d, "GET", "/v2/multi/manifests/latest", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn put_by_digest_with_tag_parameters_answers_oci_tag() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let manifest = image_manifest(&[], "");
    let digest = sha256(manifest.as_bytes());
    let mut t = exchange(
        &mut d,
        "PUT",
        &format!("/v2/app/manifests/{digest}?tag=1.2.3&tag=1.2&tag=latest"),
        &[("content-type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    t += &exchange(&mut d, "GET", "/v2/app/tags/list", &[], b"");
    t += &exchange(
        &mut d,
        "PUT",
        &format!("/v2/app/manifests/{digest}?tag=bad:tag"),
        &[("content-type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    assert_snapshot!(t);
}

#[test]
fn sha512_manifest_by_digest() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let manifest = image_manifest(&[], "");
    let digest = sha512(manifest.as_bytes());
    let mut t = exchange(
        &mut d,
        "PUT",
        &format!("/v2/app/manifests/{digest}"),
        &[("content-type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "HEAD",
        &format!("/v2/app/manifests/{digest}"),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn tags_list_pages_with_n_last_and_link() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let manifest = image_manifest(&[], "");
    for tag in ["b", "a", "C", "c", "a1"] {
        let r = d.send(berth_engine::testing::request(
            "PUT",
            &format!("/v2/app/manifests/{tag}"),
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        ));
        assert_eq!(r.status(), 201);
    }
    let mut t = exchange(&mut d, "GET", "/v2/app/tags/list", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list?n=2", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list?n=2&last=a1", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list?n=2&last=b", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list?n=0", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list?last=b", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list?n=x", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/none/tags/list", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn catalog_lists_repositories_from_its_index() {
    let mut d = driver();
    for name in ["b", "a/x", "a", "a-b", "c/d/e"] {
        push_blob(&mut d, name, b"x");
    }
    let mut t = exchange(&mut d, "GET", "/v2/_catalog", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/_catalog?n=2", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/_catalog?n=2&last=a-b", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn referrers_list_filter_and_subject_that_does_not_exist_yet() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let subject = sha256(b"subject pushed later");
    let subject_descriptor =
        format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":123}}"#);
    let sbom = image_manifest(
        &[],
        &format!(
            r#","artifactType":"application/spdx+json","annotations":{{"k":"v"}}{subject_descriptor}"#
        ),
    );
    let sig = image_manifest(&[], &subject_descriptor);
    let mut t = exchange(
        &mut d,
        "PUT",
        &format!("/v2/app/manifests/{}", sha256(sbom.as_bytes())),
        &[("content-type", OCI_MANIFEST)],
        sbom.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "PUT",
        &format!("/v2/app/manifests/{}", sha256(sig.as_bytes())),
        &[("content-type", OCI_MANIFEST)],
        sig.as_bytes(),
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/app/referrers/{subject}"),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/app/referrers/{subject}?artifactType=application/spdx%2Bjson"),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/app/referrers/{}", sha256(b"nothing refers")),
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", "/v2/app/referrers/sha256:bad", &[], b"");
    t += &exchange(
        &mut d,
        "DELETE",
        &format!("/v2/app/manifests/{}", sha256(sbom.as_bytes())),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/app/referrers/{subject}"),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn deletes_of_manifests_tags_and_blobs() {
    let mut d = driver();
    let digest = push_image(&mut d, "app", "v1", b"layer", "");
    let r = d.send(berth_engine::testing::request(
        "PUT",
        "/v2/app/manifests/v2",
        &[("content-type", OCI_MANIFEST)],
        image_manifest(&[(&sha256(b"layer"), 5)], ""),
    ));
    assert_eq!(r.status(), 201);
    let layer = sha256(b"layer");
    let mut t = exchange(&mut d, "DELETE", "/v2/app/manifests/v2", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/manifests/v2", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/manifests/v1", &[], b"");
    t += &exchange(
        &mut d,
        "DELETE",
        &format!("/v2/app/manifests/{digest}"),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/app/manifests/{digest}"),
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", "/v2/app/manifests/v1", &[], b"");
    t += &exchange(&mut d, "GET", "/v2/app/tags/list", &[], b"");
    t += &exchange(
        &mut d,
        "DELETE",
        &format!("/v2/app/manifests/{digest}"),
        &[],
        b"",
    );
    t += &exchange(
        &mut d,
        "DELETE",
        &format!("/v2/app/blobs/{layer}"),
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/app/blobs/{layer}"), &[], b"");
    t += &exchange(
        &mut d,
        "DELETE",
        &format!("/v2/app/blobs/{layer}"),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn empty_blob_round_trips() {
    let mut d = driver();
    let digest = sha256(b"");
    let mut t = exchange(
        &mut d,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={digest}"),
        &[],
        b"",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/r/blobs/{digest}"), &[], b"");
    t += &exchange(
        &mut d,
        "GET",
        &format!("/v2/r/blobs/{digest}"),
        &[("range", "bytes=0-")],
        b"",
    );
    assert_snapshot!(t);
}

#[test]
fn backend_failures_are_500s_that_name_the_operation() {
    let mut d = driver();
    d.intercept(|effect, _| match effect {
        berth_engine::Effect::Get { key, .. } if key.starts_with("repositories/") => Some(
            berth_engine::Outcome::Failed("connection reset by bucket".into()),
        ),
        _ => None,
    });
    let t = exchange(
        &mut d,
        "GET",
        &format!("/v2/r/blobs/{}", sha256(b"x")),
        &[],
        b"",
    );
    assert_snapshot!(t);
}

/// More than 30 effects in flight together (`try_join_all` switches to a `FuturesOrdered`,
/// which only re-polls futures whose waker fired): deleting a manifest that 40 tags point to
/// reads all 40 at once, and each outcome must wake its own future.
#[test]
fn deleting_a_manifest_with_40_tags_reads_them_concurrently_and_untags_all() {
    for reverse in [false, true] {
        let mut d = driver();
        d.reverse_concurrent = reverse;
        let digest = push_image(&mut d, "app", "t00", b"layer", "");
        let manifest = image_manifest(&[(&sha256(b"layer"), 5)], "");
        for i in 1..40 {
            let r = d.send(berth_engine::testing::request(
                "PUT",
                &format!("/v2/app/manifests/t{i:02}"),
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            ));
            assert_eq!(r.status(), 201);
        }
        let r = d.send(berth_engine::testing::request(
            "DELETE",
            &format!("/v2/app/manifests/{digest}"),
            &[],
            vec![],
        ));
        assert_eq!(r.status(), 202, "{:?}", r.body());
        let r = d.send(berth_engine::testing::request(
            "GET",
            "/v2/app/tags/list",
            &[],
            vec![],
        ));
        assert_eq!(r.body().as_ref(), br#"{"name":"app","tags":[]}"#);
    }
}

#[test]
fn a_content_range_longer_than_its_complete_length_is_refused() {
    let mut d = driver();
    let post = d.send(berth_engine::testing::request(
        "POST",
        "/v2/r/blobs/uploads/",
        &[],
        vec![],
    ));
    let url = location(&post);
    let mut t = exchange(
        &mut d,
        "PATCH",
        &url,
        &[("content-range", "bytes 0-4/3")],
        b"01234",
    );
    t += &exchange(&mut d, "GET", &url, &[], b"");
    t += &exchange(
        &mut d,
        "PATCH",
        &url,
        &[("content-range", "bytes 0-4/5")],
        b"01234",
    );
    assert_snapshot!(t);
}

#[test]
fn range_positions_of_twenty_digits_are_416_or_206_not_ignored() {
    let mut d = driver();
    let digest = push_blob(&mut d, "r", b"0123456789");
    let uri = format!("/v2/r/blobs/{digest}");
    let huge = "99999999999999999999";
    let mut t = String::new();
    for range in [
        format!("bytes={huge}-"),
        format!("bytes=-{huge}"),
        format!("bytes=4-{huge}"),
    ] {
        t += &exchange(&mut d, "GET", &uri, &[("range", &range)], b"");
    }
    assert_snapshot!(t);
}

#[test]
fn repository_name_components_above_250_characters_are_refused_before_anything_is_written() {
    let mut d = driver();
    let long = "a".repeat(251);
    let digest = sha256(b"blob");
    let mut t = exchange(
        &mut d,
        "POST",
        &format!("/v2/{long}/blobs/uploads/?digest={digest}"),
        &[],
        b"blob",
    );
    t += &exchange(&mut d, "GET", &format!("/v2/x/{long}/tags/list"), &[], b"");
    assert_snapshot!(t);
    assert_eq!(d.store.keys().count(), 0, "nothing was written");
    // The longest names that are accepted: 255 characters, components of up to 250.
    for name in [
        format!("{}/{}", "a".repeat(250), "b".repeat(4)),
        format!("{}/{}", "b".repeat(4), "a".repeat(250)),
    ] {
        push_image(&mut d, &name, "v1", b"layer", "");
    }
}

/// `.INVALID_MANIFEST_NAME` is the official conformance suite's; the others are a tag
/// starting with `-`, a tag of 129 characters, a malformed digest and an unsupported one.
const INVALID_REFERENCES: [&str; 5] = [
    ".INVALID_MANIFEST_NAME",
    "-bad",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "sha256:zz",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
];

#[test]
fn manifest_references_that_are_neither_tag_nor_digest_are_unknown_but_cannot_be_pushed() {
    assert_eq!(INVALID_REFERENCES[2].len(), 129);
    let mut d = driver();
    push_image(&mut d, "app", "v1", b"layer", "");
    let manifest = image_manifest(&[(&sha256(b"layer"), 5)], "");
    let mut t = String::new();
    for reference in INVALID_REFERENCES {
        let uri = format!("/v2/app/manifests/{reference}");
        t += &exchange(&mut d, "GET", &uri, &[], b"");
        t += &exchange(&mut d, "HEAD", &uri, &[], b"");
        t += &exchange(&mut d, "DELETE", &uri, &[], b"");
        t += &exchange(
            &mut d,
            "PUT",
            &uri,
            &[("content-type", OCI_MANIFEST)],
            manifest.as_bytes(),
        );
    }
    // In a repository that does not exist, the same.
    t += &exchange(&mut d, "GET", "/v2/nowhere/manifests/-bad", &[], b"");
    assert_snapshot!(t);
}

#[test]
fn image_index_descriptors_must_give_the_manifest_size() {
    let mut d = driver();
    let child = push_image(&mut d, "multi", "amd64", b"amd64 layer", "");
    let size = image_manifest(&[(&sha256(b"amd64 layer"), 11)], "").len();
    // A Docker manifest list of the OCI manifest (their media type lines differ in length,
    // which the size must not depend on).
    let list = |size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{size}}}]}}"#
        )
    };
    let index = |size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{size}}}]}}"#
        )
    };
    let mut t = String::new();
    for (tag, body) in [
        ("short", index(size - 1)),
        ("long", index(size + 1)),
        ("list-long", list(size + 1)),
        ("right", index(size)),
        ("list-right", list(size)),
    ] {
        let media_type = if tag.starts_with("list") {
            "application/vnd.docker.distribution.manifest.list.v2+json"
        } else {
            OCI_INDEX
        };
        t += &exchange(
            &mut d,
            "PUT",
            &format!("/v2/multi/manifests/{tag}"),
            &[("content-type", media_type)],
            body.as_bytes(),
        );
    }
    // The index of the list is checked the same way: the list's own size counts.
    let list_digest = sha256(list(size).as_bytes());
    let nested = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","digest":"{list_digest}","size":{}}}]}}"#,
        list(size).len()
    );
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/multi/manifests/nested",
        &[("content-type", OCI_INDEX)],
        nested.as_bytes(),
    );
    assert_snapshot!(t);
}

#[test]
fn a_manifest_body_shorter_than_its_content_length_is_size_invalid() {
    let mut d = driver();
    push_blob(&mut d, "app", b"{}");
    let manifest = image_manifest(&[], "");
    let declared = (manifest.len() + 10).to_string();
    // The runtime's body ended early (a runtime that does not enforce Content-Length).
    let mut t = exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/short",
        &[
            ("content-type", OCI_MANIFEST),
            ("content-length", &declared),
        ],
        manifest.as_bytes(),
    );
    // The body broke off: the client went away or stalled past the runtime's timeout.
    d.chunk_size = 16;
    let mut reads = 0;
    d.intercept(move |effect, _| match effect {
        berth_engine::Effect::ReadBody => {
            reads += 1;
            (reads % 3 == 0).then(|| berth_engine::Outcome::Failed("body timed out".into()))
        }
        _ => None,
    });
    t += &exchange(
        &mut d,
        "PUT",
        "/v2/app/manifests/broken",
        &[("content-type", OCI_MANIFEST)],
        manifest.as_bytes(),
    );
    // The same without a Content-Length (a chunked body): nothing to compare, so the
    // manifest itself is invalid.
    let request = http::Request::builder()
        .method("PUT")
        .uri("/v2/app/manifests/unframed")
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone().into_bytes())
        .unwrap();
    let response = d.send(request);
    t += "> PUT /v2/app/manifests/unframed (no content-length)\n";
    t += &render_response(&response);
    d.clear_interceptor();
    t += &exchange(&mut d, "GET", "/v2/app/tags/list", &[], b"");
    assert_snapshot!(t);
}
