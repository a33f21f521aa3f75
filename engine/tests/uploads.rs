//! Uploads that span parts, requests, races, faults and expiry, against the memory store
//! (which enforces R2's multipart rules).

mod common;

use berth_engine::testing::{Driver, request};
use berth_engine::{Condition, Config, Effect, Outcome, UnixTime};
use common::*;

const MIB: usize = 1024 * 1024;

fn small_parts() -> Driver {
    driver_with(Config {
        part_size: 5 * MIB as u64,
        ..Config::default()
    })
}

/// Deterministic pseudo-random bytes.
fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn start(d: &mut Driver, name: &str) -> String {
    let r = d.send(request(
        "POST",
        &format!("/v2/{name}/blobs/uploads/"),
        &[],
        vec![],
    ));
    assert_eq!(r.status(), 202);
    location(&r)
}

fn patch(
    d: &mut Driver,
    url: &str,
    offset: usize,
    bytes: &[u8],
) -> berth_engine::testing::TestResponse {
    let range = format!("{}-{}", offset, offset + bytes.len() - 1);
    d.send(request(
        "PATCH",
        url,
        &[("content-range", &range)],
        bytes.to_vec(),
    ))
}

/// Closes an upload with an empty PUT naming the blob's digest.
fn close(d: &mut Driver, url: &str, digest: &str) -> berth_engine::testing::TestResponse {
    d.send(request(
        "PUT",
        &format!("{url}?digest={digest}"),
        &[],
        vec![],
    ))
}

fn get_blob(d: &mut Driver, name: &str, digest: &str) -> Vec<u8> {
    let r = d.send(request(
        "GET",
        &format!("/v2/{name}/blobs/{digest}"),
        &[],
        vec![],
    ));
    assert_eq!(r.status(), 200, "{:?}", r.body());
    r.body().to_vec()
}

#[test]
fn a_blob_of_several_parts_pushed_in_odd_chunks_round_trips() {
    let mut d = small_parts();
    d.chunk_size = 777_777;
    let blob = content(12 * MIB + 12345, 1);
    let url = start(&mut d, "big");
    let mut offset = 0;
    for size in [3 * MIB, 3 * MIB + 1, 1, 4 * MIB] {
        let r = patch(&mut d, &url, offset, &blob[offset..offset + size]);
        assert_eq!(r.status(), 202, "{:?}", r.body());
        offset += size;
        assert_eq!(r.headers()["range"], format!("0-{}", offset - 1).as_str());
    }
    let digest = sha256(&blob);
    let r = d.send(request(
        "PUT",
        &format!("{url}?digest={digest}"),
        &[],
        blob[offset..].to_vec(),
    ));
    assert_eq!(r.status(), 201, "{:?}", r.body());
    assert_eq!(get_blob(&mut d, "big", &digest), blob);
    assert_eq!(d.store.open_multipart_uploads(), 0);
    assert!(
        d.store.keys().all(|k| !k.starts_with("_uploads/")),
        "upload state left behind"
    );
    let ranged = d.send(request(
        "GET",
        &format!("/v2/big/blobs/{digest}"),
        &[("range", "bytes=5242870-5242889")],
        vec![],
    ));
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.body().as_ref(), &blob[5_242_870..5_242_890]);
}

#[test]
fn a_part_sized_chunk_per_request_never_buffers_a_tail() {
    let mut d = small_parts();
    let blob = content(10 * MIB, 2);
    let url = start(&mut d, "exact");
    assert_eq!(patch(&mut d, &url, 0, &blob[..5 * MIB]).status(), 202);
    assert_eq!(patch(&mut d, &url, 5 * MIB, &blob[5 * MIB..]).status(), 202);
    assert!(d.store.keys().all(|k| !k.contains("/tail/")));
    let digest = sha256(&blob);
    let r = close(&mut d, &url, &digest);
    assert_eq!(r.status(), 201, "{:?}", r.body());
    assert_eq!(get_blob(&mut d, "exact", &digest), blob);
}

#[test]
fn a_monolithic_push_larger_than_a_part_uses_multipart() {
    let mut d = small_parts();
    let blob = content(11 * MIB, 3);
    let digest = sha512(&blob);
    let r = d.send(request(
        "POST",
        &format!("/v2/m/blobs/uploads/?digest={digest}"),
        &[],
        blob.clone(),
    ));
    assert_eq!(r.status(), 201, "{:?}", r.body());
    assert!(d.log.iter().any(|l| l.starts_with("complete-multipart")));
    assert_eq!(get_blob(&mut d, "m", &digest), blob);
}

#[test]
fn a_digest_mismatch_after_parts_aborts_the_multipart_upload() {
    let mut d = small_parts();
    let blob = content(7 * MIB, 4);
    let url = start(&mut d, "bad");
    assert_eq!(patch(&mut d, &url, 0, &blob).status(), 202);
    let wrong = sha256(b"not it");
    let r = d.send(request(
        "PUT",
        &format!("{url}?digest={wrong}"),
        &[],
        vec![],
    ));
    assert_eq!(r.status(), 400);
    assert_eq!(d.store.open_multipart_uploads(), 0);
    assert_eq!(
        d.store
            .keys()
            .filter(|k| !k.starts_with("_catalog/"))
            .count(),
        0,
        "{:?}",
        d.store.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_request_that_breaks_mid_body_keeps_its_full_parts_and_can_resume() {
    let mut d = small_parts();
    d.chunk_size = MIB;
    let blob = content(13 * MIB, 5);
    let url = start(&mut d, "resume");
    // The client's connection breaks after 11 MiB of a 13 MiB PATCH.
    let mut chunks_left = 11;
    d.intercept(move |effect, _| match effect {
        Effect::ReadBody if chunks_left == 0 => Some(Outcome::Failed("connection reset".into())),
        Effect::ReadBody => {
            chunks_left -= 1;
            None
        }
        _ => None,
    });
    let r = d.send(request("PATCH", &url, &[], blob.clone()));
    assert_eq!(r.status(), 400);
    d.clear_interceptor();
    let status = d.send(request("GET", &url, &[], vec![]));
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"],
        format!("0-{}", 10 * MIB - 1).as_str(),
        "two full parts survive"
    );
    assert_eq!(
        patch(&mut d, &url, 10 * MIB, &blob[10 * MIB..]).status(),
        202
    );
    let digest = sha256(&blob);
    assert_eq!(close(&mut d, &url, &digest).status(), 201);
    assert_eq!(get_blob(&mut d, "resume", &digest), blob);
}

#[test]
fn a_patch_that_loses_the_state_race_gets_416_and_leaves_nothing_referenced() {
    let mut d = driver();
    let url = start(&mut d, "race");
    assert_eq!(patch(&mut d, &url, 0, b"abc").status(), 202);
    // Another replica replaces the record between our read and our write.
    let mut raced = false;
    d.intercept(move |effect, store| {
        if let Effect::Put {
            key,
            condition: Condition::IfMatch(_),
            ..
        } = effect
            && !raced
            && key.ends_with("/state")
        {
            raced = true;
            let Outcome::Object { bytes, .. } = store.execute(Effect::Get {
                key: key.clone(),
                range: None,
            }) else {
                panic!()
            };
            store.execute(Effect::Put {
                key: key.clone(),
                body: bytes,
                condition: Condition::None,
            });
        }
        None
    });
    let r = patch(&mut d, &url, 3, b"def");
    assert_eq!(r.status(), 416, "{:?}", r.body());
    d.clear_interceptor();
    let tails: Vec<_> = d
        .store
        .keys()
        .filter(|k| k.contains("/tail/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(tails.len(), 1, "only the winner's tail remains: {tails:?}");
    let status = d.send(request("GET", &url, &[], vec![]));
    assert_eq!(status.headers()["range"], "0-2");
    assert_eq!(patch(&mut d, &url, 3, b"def").status(), 202);
    let digest = sha256(b"abcdef");
    assert_eq!(close(&mut d, &url, &digest).status(), 201);
    assert_eq!(get_blob(&mut d, "race", &digest), b"abcdef");
}

#[test]
fn a_request_taking_over_from_a_dead_one_resumes_from_the_last_recorded_part() {
    let mut d = small_parts();
    let blob = content(16 * MIB, 6);
    let url = start(&mut d, "takeover");
    // The first request claims the upload, then dies before its first part is stored.
    d.intercept(|effect, _| match effect {
        Effect::UploadPart { .. } => Some(Outcome::Failed("replica killed".into())),
        _ => None,
    });
    assert_eq!(patch(&mut d, &url, 0, &blob[..6 * MIB]).status(), 500);
    d.clear_interceptor();
    // A new request resumes from the record: same offset, the same part numbers.
    assert_eq!(patch(&mut d, &url, 0, &blob[..11 * MIB]).status(), 202);
    let digest = sha256(&blob);
    let r = d.send(request(
        "PUT",
        &format!("{url}?digest={digest}"),
        &[],
        blob[11 * MIB..].to_vec(),
    ));
    assert_eq!(r.status(), 201, "{:?}", r.body());
    assert_eq!(get_blob(&mut d, "takeover", &digest), blob);
}

#[test]
fn a_late_part_from_a_replaced_request_prevents_publication_instead_of_mixing_bytes() {
    let mut d = small_parts();
    let blob = content(11 * MIB, 8);
    let url = start(&mut d, "late");
    assert_eq!(patch(&mut d, &url, 0, &blob[..6 * MIB]).status(), 202);
    let digest = sha256(&blob);
    // While the closing request runs, a stale copy of part 1 with other bytes lands, as a
    // request that was taken over might still deliver it.
    let mut landed = false;
    d.intercept(move |effect, store| {
        if let Effect::CompleteMultipart { key, upload_id, .. } = effect
            && !landed
        {
            landed = true;
            store.execute(Effect::UploadPart {
                key: key.clone(),
                upload_id: upload_id.clone(),
                part_number: 1,
                body: vec![0u8; 5 * MIB].into(),
            });
        }
        None
    });
    let r = d.send(request(
        "PUT",
        &format!("{url}?digest={digest}"),
        &[],
        blob[6 * MIB..].to_vec(),
    ));
    assert_eq!(
        r.status(),
        500,
        "the backend refuses the mismatched part: {:?}",
        r.body()
    );
    d.clear_interceptor();
    assert_eq!(
        d.send(request(
            "GET",
            &format!("/v2/late/blobs/{digest}"),
            &[],
            vec![]
        ))
        .status(),
        404
    );
    berth_engine::fuzzing::assert_store_is_verified(&d.store);
}

#[test]
fn the_first_verified_upload_of_a_digest_wins_and_duplicates_are_dropped() {
    let mut d = driver();
    let a = start(&mut d, "one");
    let b = start(&mut d, "two");
    let digest = sha256(b"same bytes");
    assert_eq!(
        d.send(request(
            "PUT",
            &format!("{a}?digest={digest}"),
            &[],
            b"same bytes".to_vec()
        ))
        .status(),
        201
    );
    assert_eq!(
        d.send(request(
            "PUT",
            &format!("{b}?digest={digest}"),
            &[],
            b"same bytes".to_vec()
        ))
        .status(),
        201
    );
    assert_eq!(
        d.store.keys().filter(|k| k.starts_with("_data/")).count(),
        1
    );
    assert_eq!(get_blob(&mut d, "two", &digest), b"same bytes");
}

#[test]
fn uploads_from_another_repository_are_unknown() {
    let mut d = driver();
    let url = start(&mut d, "mine");
    let theirs = url.replace("/mine/", "/theirs/");
    assert_eq!(d.send(request("GET", &theirs, &[], vec![])).status(), 404);
}

#[test]
fn maintenance_removes_expired_uploads_and_keeps_active_ones() {
    let mut d = small_parts();
    let old = start(&mut d, "m");
    assert_eq!(patch(&mut d, &old, 0, &content(6 * MIB, 7)).status(), 202);
    d.now = UnixTime(d.now.0 + 6 * 24 * 3600);
    let fresh = start(&mut d, "m");
    assert_eq!(patch(&mut d, &fresh, 0, b"x").status(), 202);
    d.now = UnixTime(d.now.0 + 2 * 24 * 3600);
    let summary = d.maintain();
    assert_eq!(
        summary.body().as_ref(),
        br#"{"expired":1,"active":1,"orphaned":0,"published":0,"unfinishable":0,"resumed_deletions":0,"unreadable":0,"failed":0,"blobs_checked":0,"blobs_lost":0}"#
    );
    assert_eq!(d.send(request("GET", &old, &[], vec![])).status(), 404);
    assert_eq!(d.send(request("GET", &fresh, &[], vec![])).status(), 204);
    assert_eq!(d.store.open_multipart_uploads(), 0);
    let old_id = old.rsplit('/').next().unwrap();
    assert!(
        d.store.keys().all(|k| !k.contains(old_id)),
        "{:?}",
        d.store.keys().collect::<Vec<_>>()
    );
}

#[test]
fn maintenance_keeps_the_data_of_an_upload_that_died_while_publishing() {
    let mut d = driver();
    let url = start(&mut d, "p");
    let digest = sha256(b"published");
    // The request dies right after the pointer is written, before the record is removed.
    d.intercept(|effect, _| match effect {
        Effect::List { prefix, .. } if prefix.starts_with("_uploads/") => {
            Some(Outcome::Failed("replica killed".into()))
        }
        _ => None,
    });
    assert_eq!(
        d.send(request(
            "PUT",
            &format!("{url}?digest={digest}"),
            &[],
            b"published".to_vec()
        ))
        .status(),
        500
    );
    d.clear_interceptor();
    assert_eq!(get_blob(&mut d, "p", &digest), b"published");
    d.now = UnixTime(d.now.0 + 30 * 24 * 3600);
    // The record survived its request: maintenance finishes the job it names (the pointer is
    // already there), and keeps the data.
    assert_eq!(
        d.maintain().body().as_ref(),
        br#"{"expired":0,"active":0,"orphaned":0,"published":1,"unfinishable":0,"resumed_deletions":0,"unreadable":0,"failed":0,"blobs_checked":1,"blobs_lost":0}"#
    );
    assert_eq!(get_blob(&mut d, "p", &digest), b"published");
}

#[test]
fn reordered_outcomes_of_concurrent_effects_give_the_same_responses() {
    let run = |reverse: bool| {
        let mut d = driver();
        d.reverse_concurrent = reverse;
        let digest = push_image(&mut d, "app", "v1", b"layer", "");
        let r = d.send(request("GET", "/v2/app/manifests/v1", &[], vec![]));
        (digest, r.status(), r.body().clone())
    };
    assert_eq!(run(false), run(true));
}

/// The answer to a request on an upload whose multipart upload the backend aborted: 404
/// BLOB_UPLOAD_UNKNOWN, the session removed with everything it stored, nothing published, and
/// the client's restarted upload succeeds.
fn assert_vanished_and_restartable(
    d: &mut Driver,
    url: &str,
    r: &berth_engine::testing::TestResponse,
    blob: &[u8],
) {
    assert_eq!(r.status(), 404, "{:?}", r.body());
    let body = String::from_utf8_lossy(r.body());
    assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");
    assert_eq!(d.send(request("GET", url, &[], vec![])).status(), 404);
    let id = url.rsplit('/').next().unwrap();
    assert!(
        d.store.keys().all(|k| !k.contains(id)),
        "{:?}",
        d.store.keys().collect::<Vec<_>>()
    );
    let digest = sha256(blob);
    let head = request("HEAD", &format!("/v2/v/blobs/{digest}"), &[], vec![]);
    assert_eq!(d.send(head).status(), 404);
    let url = start(d, "v");
    assert_eq!(patch(d, &url, 0, blob).status(), 202);
    let r = close(d, &url, &digest);
    assert_eq!(r.status(), 201, "{:?}", r.body());
    assert_eq!(get_blob(d, "v", &digest), blob);
    assert_eq!(d.store.open_multipart_uploads(), 0);
}

#[test]
fn a_patch_to_an_upload_whose_multipart_upload_expired_gets_404_upload_unknown() {
    let mut d = small_parts();
    let blob = content(11 * MIB, 21);
    let url = start(&mut d, "v");
    // One part stored, 1 MiB kept as the tail.
    assert_eq!(patch(&mut d, &url, 0, &blob[..6 * MIB]).status(), 202);
    assert_eq!(d.store.abort_incomplete_multipart_uploads(), 1);
    // The tail and this chunk fill the next part, which the backend refuses.
    let r = patch(&mut d, &url, 6 * MIB, &blob[6 * MIB..]);
    assert_vanished_and_restartable(&mut d, &url, &r, &blob);
}

#[test]
fn a_put_meeting_an_expired_multipart_upload_gets_404_upload_unknown() {
    // 6 MiB: the 1 MiB tail becomes the last part, and UploadPart finds no upload.
    // 5 MiB: exactly one part and no tail, and CompleteMultipart finds no upload.
    for (len, seed) in [(6 * MIB, 22), (5 * MIB, 23)] {
        let mut d = small_parts();
        let blob = content(len, seed);
        let url = start(&mut d, "v");
        assert_eq!(patch(&mut d, &url, 0, &blob).status(), 202);
        assert_eq!(d.store.abort_incomplete_multipart_uploads(), 1);
        let r = close(&mut d, &url, &sha256(&blob));
        assert_vanished_and_restartable(&mut d, &url, &r, &blob);
    }
}

#[test]
fn a_put_that_finds_the_multipart_upload_already_completed_publishes_what_it_committed() {
    let mut d = small_parts();
    let blob = content(5 * MIB, 24);
    let url = start(&mut d, "v");
    assert_eq!(patch(&mut d, &url, 0, &blob).status(), 202);
    let id = url.rsplit('/').next().unwrap().to_owned();
    // The completion happens (an earlier attempt of this close, or maintenance finishing it),
    // but the answer this request gets is that the multipart upload is unknown.
    d.intercept(move |effect, store| match effect {
        Effect::CompleteMultipart { .. } => {
            assert!(matches!(
                store.execute(effect.clone()),
                Outcome::Stored { .. }
            ));
            Some(Outcome::NotFound)
        }
        _ => None,
    });
    let digest = sha256(&blob);
    let r = close(&mut d, &url, &digest);
    d.clear_interceptor();
    // The record committed this upload to these bytes before completing: the object is theirs.
    assert_eq!(r.status(), 201, "{:?}", r.body());
    assert_eq!(get_blob(&mut d, "v", &digest), blob);
    assert!(
        d.store
            .keys()
            .all(|k| !k.starts_with(&format!("_uploads/{id}")))
    );
}

/// Replaces a stored object, as another process (or an older berth) would have left it.
fn overwrite(d: &mut Driver, key: &str, body: Vec<u8>) {
    let stored = d.store.execute(Effect::Put {
        key: key.to_owned(),
        body: body.into(),
        condition: Condition::None,
    });
    assert!(matches!(stored, Outcome::Stored { .. }));
}

fn upload_id(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// A close that dies just before its pointer is written, leaving a committed record.
fn close_dying_before_the_pointer(d: &mut Driver, url: &str, digest: &str, last: &[u8]) {
    d.intercept(|effect, _| match effect {
        Effect::Put { key, .. } if key.starts_with("_blobs/") => {
            Some(Outcome::Failed("replica killed".into()))
        }
        _ => None,
    });
    let r = d.send(request(
        "PUT",
        &format!("{url}?digest={digest}"),
        &[],
        last.to_vec(),
    ));
    d.clear_interceptor();
    assert_eq!(r.status(), 500, "{:?}", r.body());
}

#[test]
fn a_close_repeated_after_its_answer_was_lost_finishes_the_publication() {
    for len in [100, 5 * MIB + 4096] {
        let mut d = small_parts();
        let blob = content(len, 30);
        let digest = sha256(&blob);
        let url = start(&mut d, "again");
        close_dying_before_the_pointer(&mut d, &url, &digest, &blob);
        let head = request("HEAD", &format!("/v2/again/blobs/{digest}"), &[], vec![]);
        assert_eq!(d.send(head).status(), 404);
        // The client repeats its PUT with the same body: the committed bytes are published.
        let r = d.send(request(
            "PUT",
            &format!("{url}?digest={digest}"),
            &[],
            blob.clone(),
        ));
        assert_eq!(r.status(), 201, "{:?}", r.body());
        assert_eq!(get_blob(&mut d, "again", &digest), blob);
        assert!(d.store.keys().all(|k| !k.starts_with("_uploads/")));
        // A PUT with another digest is refused without touching anything.
        let other = d.send(request(
            "PUT",
            &format!("{url}?digest={}", sha256(b"x")),
            &[],
            vec![],
        ));
        assert_eq!(other.status(), 404);
        assert_eq!(get_blob(&mut d, "again", &digest), blob);
    }
}

#[test]
fn maintenance_publishes_a_committed_upload_whose_request_died() {
    let mut d = small_parts();
    let blob = content(2 * 5 * MIB + 4096, 31);
    let digest = sha256(&blob);
    let url = start(&mut d, "died");
    assert_eq!(patch(&mut d, &url, 0, &blob[..MIB]).status(), 202);
    close_dying_before_the_pointer(&mut d, &url, &digest, &blob[MIB..]);
    // Not yet expired: left alone.
    let report = String::from_utf8(d.maintain().body().to_vec()).unwrap();
    assert!(report.contains(r#""active":1"#), "{report}");
    d.now = UnixTime(d.now.0 + 8 * 24 * 3600);
    let report = String::from_utf8(d.maintain().body().to_vec()).unwrap();
    assert!(report.contains(r#""published":1"#), "{report}");
    assert_eq!(get_blob(&mut d, "died", &digest), blob);
    assert!(d.store.keys().all(|k| !k.starts_with("_uploads/")));
    assert_eq!(d.store.open_multipart_uploads(), 0);
}

/// berth 0.1.0 saved a close's record with the last short part added to `parts` and its
/// offset unchanged, a record it could not decode again: its maintenance then deleted the
/// data of a blob it had published. Such records, still in buckets, are finished, not deleted.
#[test]
fn a_publishing_record_of_berth_0_1_0_is_finished_and_its_data_kept() {
    for pointer_written in [false, true] {
        let mut d = small_parts();
        let blob = content(5 * MIB + 4096, 32);
        let digest = sha256(&blob);
        let url = start(&mut d, "old");
        let id = upload_id(&url);
        assert_eq!(patch(&mut d, &url, 0, &blob[..5 * MIB]).status(), 202);
        // The close dies once it has committed, before it completes the multipart upload.
        d.intercept(|effect, _| match effect {
            Effect::CompleteMultipart { .. } => Some(Outcome::Failed("replica killed".into())),
            _ => None,
        });
        let r = d.send(request(
            "PUT",
            &format!("{url}?digest={digest}"),
            &[],
            blob[5 * MIB..].to_vec(),
        ));
        d.clear_interceptor();
        assert_eq!(r.status(), 500);
        // Rewrite what it left as berth 0.1.0 left it: the multipart upload completed, then
        // the record saved with the short last part in `parts` and nothing else updated.
        let state_key = format!("_uploads/{id}/state");
        let mut record: serde_json::Value =
            serde_json::from_slice(&d.store.read(&state_key, None).unwrap()).unwrap();
        let publication = record["publication"].take();
        let data = publication["data"].as_str().unwrap().to_owned();
        let upload_id = record["multipart"]["upload_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let parts: Vec<berth_engine::CompletedPart> =
            serde_json::from_value(publication["parts"].clone()).unwrap();
        let completed = d.store.execute(Effect::CompleteMultipart {
            key: data.clone(),
            upload_id,
            parts: parts.clone(),
        });
        assert!(matches!(completed, Outcome::Stored { .. }));
        record.as_object_mut().unwrap().remove("publication");
        record["parts"] = serde_json::to_value(&parts).unwrap();
        record["next_part_number"] = serde_json::json!(parts.len() + 1);
        overwrite(&mut d, &state_key, serde_json::to_vec(&record).unwrap());
        if pointer_written {
            let pointer = format!(r#"{{"size":{},"data":"{data}"}}"#, blob.len());
            let hex = digest.strip_prefix("sha256:").unwrap();
            overwrite(
                &mut d,
                &format!("_blobs/sha256/{hex}"),
                pointer.clone().into_bytes(),
            );
            overwrite(
                &mut d,
                &format!("repositories/old/_layers/sha256/{hex}"),
                pointer.into_bytes(),
            );
        }
        for _ in 0..2 {
            d.now = UnixTime(d.now.0 + 8 * 24 * 3600);
            assert_eq!(d.maintain().status(), 200);
        }
        assert_eq!(get_blob(&mut d, "old", &digest), blob);
        assert!(d.store.keys().all(|k| !k.starts_with("_uploads/")));
    }
}

#[test]
fn a_record_that_does_not_decode_is_kept_with_its_data_and_reported() {
    let mut d = small_parts();
    let id = "0123456789abcdef0123456789abcdef";
    overwrite(
        &mut d,
        &format!("_uploads/{id}/state"),
        b"{\"version\":99}".to_vec(),
    );
    overwrite(&mut d, &format!("_data/{id}/w"), b"bytes".to_vec());
    d.now = UnixTime(d.now.0 + 30 * 24 * 3600);
    let report = String::from_utf8(d.maintain().body().to_vec()).unwrap();
    assert!(report.contains(r#""unreadable":1"#), "{report}");
    assert!(report.contains(id), "{report}");
    assert!(d.store.read(&format!("_data/{id}/w"), None).is_some());
    assert!(
        d.store
            .read(&format!("_uploads/{id}/state"), None)
            .is_some()
    );
}

/// An installation that berth 0.1.0 lost blobs on: the pointer names data that is gone.
/// Maintenance finds it, the blob then reads as absent everywhere (so clients push it again),
/// and the next push repairs it in every repository that had it.
#[test]
fn a_blob_whose_data_is_gone_is_found_by_maintenance_and_repaired_by_a_push() {
    let mut d = small_parts();
    let blob = content(5 * MIB + 4096, 33);
    let digest = push_blob(&mut d, "one", &blob);
    let mount = d.send(request(
        "POST",
        &format!("/v2/two/blobs/uploads/?mount={digest}&from=one"),
        &[],
        vec![],
    ));
    assert_eq!(mount.status(), 201);
    let hex = digest.strip_prefix("sha256:").unwrap().to_owned();
    let pointer: serde_json::Value =
        serde_json::from_slice(&d.store.read(&format!("_blobs/sha256/{hex}"), None).unwrap())
            .unwrap();
    let data = pointer["data"].as_str().unwrap().to_owned();
    d.store.execute(Effect::Delete { key: data });
    let report = String::from_utf8(d.maintain().body().to_vec()).unwrap();
    assert!(report.contains(&digest), "{report}");
    for name in ["one", "two"] {
        let head = request("HEAD", &format!("/v2/{name}/blobs/{digest}"), &[], vec![]);
        assert_eq!(d.send(head).status(), 404, "{name}");
    }
    // A manifest naming it is refused until it is pushed again.
    let manifest = image_manifest(&[(&digest, blob.len())], "");
    let put = request(
        "PUT",
        "/v2/one/manifests/t",
        &[("content-type", OCI_MANIFEST)],
        manifest.clone(),
    );
    assert_eq!(d.send(put).status(), 400);
    assert_eq!(push_blob(&mut d, "one", &blob), digest);
    for name in ["one", "two"] {
        assert_eq!(get_blob(&mut d, name, &digest), blob, "{name}");
    }
    let report = String::from_utf8(d.maintain().body().to_vec()).unwrap();
    assert!(!report.contains(&digest), "{report}");
    berth_engine::fuzzing::assert_store_is_verified(&d.store);
}

#[test]
fn a_monolithic_push_that_fails_leaves_nothing_behind() {
    let mut d = small_parts();
    let blob = content(12 * MIB, 34);
    let mut parts = 0;
    d.intercept(move |effect, _| match effect {
        Effect::UploadPart { .. } => {
            parts += 1;
            (parts == 2).then(|| Outcome::Failed("No space left on device".into()))
        }
        _ => None,
    });
    let r = d.send(request(
        "POST",
        &format!("/v2/full/blobs/uploads/?digest={}", sha256(&blob)),
        &[],
        blob,
    ));
    d.clear_interceptor();
    assert_eq!(r.status(), 500);
    assert_eq!(d.store.open_multipart_uploads(), 0);
    assert_eq!(d.store.keys().collect::<Vec<_>>(), Vec::<&str>::new());
}

#[test]
fn sha512_closes_an_upload_opened_without_an_algorithm() {
    // Smaller than a part: both algorithms were hashed as it came. Larger: the stored bytes
    // are read back, one part at a time.
    for (len, reread) in [(3 * MIB, false), (12 * MIB + 5, true)] {
        let mut d = small_parts();
        let blob = content(len, 35);
        let digest = sha512(&blob);
        let url = start(&mut d, "s");
        assert_eq!(patch(&mut d, &url, 0, &blob[..len / 2]).status(), 202);
        d.log.clear();
        let r = d.send(request(
            "PUT",
            &format!("{url}?digest={digest}"),
            &[],
            blob[len / 2..].to_vec(),
        ));
        assert_eq!(r.status(), 201, "{:?}", r.body());
        assert_eq!(get_blob(&mut d, "s", &digest), blob);
        let read_back = d.log.iter().filter(|l| l.starts_with("get _data/")).count();
        assert_eq!(read_back > 0, reread, "{:?}", d.log);
        // A wrong sha512 digest publishes nothing.
        let url = start(&mut d, "s");
        assert_eq!(patch(&mut d, &url, 0, &blob).status(), 202);
        let wrong = sha512(b"not these bytes");
        let r = close(&mut d, &url, &wrong);
        assert_eq!(r.status(), 400);
        let head = request("HEAD", &format!("/v2/s/blobs/{wrong}"), &[], vec![]);
        assert_eq!(d.send(head).status(), 404);
        assert!(d.store.keys().all(|k| !k.starts_with("_uploads/")));
    }
}
