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
        br#"{"expired":1,"active":1,"orphaned":0}"#
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
    assert_eq!(
        d.maintain().body().as_ref(),
        br#"{"expired":1,"active":0,"orphaned":0}"#
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
fn a_put_that_finds_the_multipart_upload_completed_by_a_concurrent_request_removes_nothing() {
    let mut d = small_parts();
    let blob = content(5 * MIB, 24);
    let url = start(&mut d, "v");
    assert_eq!(patch(&mut d, &url, 0, &blob).status(), 202);
    let id = url.rsplit('/').next().unwrap().to_owned();
    let state_key = format!("_uploads/{id}/state");
    // Another request completes the multipart upload and records that it is publishing just
    // before this one's CompleteMultipart, which then finds no upload.
    d.intercept(move |effect, store| match effect {
        Effect::CompleteMultipart { .. } => {
            assert!(matches!(
                store.execute(effect.clone()),
                Outcome::Stored { .. }
            ));
            let record = store.read(&state_key, None).unwrap();
            store.execute(Effect::Put {
                key: state_key.clone(),
                body: record,
                condition: Condition::None,
            });
            Some(Outcome::NotFound)
        }
        _ => None,
    });
    let digest = sha256(&blob);
    let r = close(&mut d, &url, &digest);
    d.clear_interceptor();
    // The record changed under this request: it lost the race and leaves the winner's data.
    assert_eq!(r.status(), 416, "{:?}", r.body());
    assert_eq!(d.send(request("GET", &url, &[], vec![])).status(), 204);
    let data: Vec<&str> = d
        .store
        .keys()
        .filter(|k| k.starts_with(&format!("_data/{id}/")))
        .collect();
    assert_eq!(data.len(), 1, "{:?}", d.store.keys().collect::<Vec<_>>());
    assert_eq!(d.store.read(data[0], None).unwrap(), blob);
}
