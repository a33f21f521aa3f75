//! Properties of uploads that must hold for every input, not just the ones we thought of.

mod common;

use berth_engine::digest::{Algorithm, Digest, ResumableHash};
use berth_engine::testing::{Driver, request};
use berth_engine::{Config, Effect, Outcome};
use common::*;
use proptest::prelude::*;

const MIB: usize = 1024 * 1024;

fn five_mib_parts() -> Driver {
    driver_with(Config {
        part_size: 5 * MIB as u64,
        ..Config::default()
    })
}

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hash_state_round_trips_at_any_cut(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600, sha512 in any::<bool>()) {
        let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
        let cut = cut.min(data.len());
        let mut first = ResumableHash::new(algorithm);
        first.update(&data[..cut]);
        let mut resumed = ResumableHash::deserialize(algorithm, &first.serialize()).unwrap();
        resumed.update(&data[cut..]);
        prop_assert_eq!(resumed.finish(), Digest::of(algorithm, &data));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any split of a body into PATCH requests, and of each request into transport chunks,
    /// stores the same bytes under the same digest, in parts R2 accepts.
    #[test]
    fn any_chunking_gives_the_same_blob(
        total in 0usize..(12 * MIB),
        cuts in proptest::collection::vec(0usize..(12 * MIB), 0..5),
        transport_chunk in 1usize..(2 * MIB),
        last_in_put in any::<bool>(),
    ) {
        let blob = bytes_of(total, 7);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(total)).collect();
        cuts.push(0);
        cuts.push(total);
        cuts.sort_unstable();
        cuts.dedup();
        let mut d = five_mib_parts();
        d.chunk_size = transport_chunk;
        let post = d.send(request("POST", "/v2/p/blobs/uploads/", &[], vec![]));
        let url = location(&post);
        let windows: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        let (patches, put_body) = match (last_in_put, windows.split_last()) {
            (true, Some((last, rest))) => (rest.to_vec(), blob[last.0..last.1].to_vec()),
            _ => (windows.clone(), Vec::new()),
        };
        for (from, to) in patches {
            let r = d.send(request("PATCH", &url, &[("content-range", &format!("{}-{}", from, to - 1))], blob[from..to].to_vec()));
            prop_assert_eq!(r.status(), 202);
        }
        let digest = sha256(&blob);
        let r = d.send(request("PUT", &format!("{url}?digest={digest}"), &[], put_body));
        prop_assert_eq!(r.status(), 201, "{:?}", r.body());
        let got = d.send(request("GET", &format!("/v2/p/blobs/{digest}"), &[], vec![]));
        prop_assert_eq!(got.body().as_ref(), blob.as_slice());
        prop_assert_eq!(d.store.open_multipart_uploads(), 0);
        prop_assert!(d.store.keys().all(|k| !k.starts_with("_uploads/")));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Patch { len: usize, skew: i8 },
    Status,
    Put { len: usize, correct: bool },
    Cancel,
    Start,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (prop_oneof![0usize..64, (5 * MIB - 40)..(5 * MIB + 40)], -1i8..=1).prop_map(|(len, skew)| Op::Patch { len, skew: if len == 0 { 0 } else { skew } }),
        2 => Just(Op::Status),
        2 => (0usize..64, any::<bool>()).prop_map(|(len, correct)| Op::Put { len, correct }),
        1 => Just(Op::Cancel),
        1 => Just(Op::Start),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A random sequence of upload operations answers exactly as a model of the spec says:
    /// in-order chunks are appended, out-of-order ones get 416, the closing PUT publishes iff
    /// the digest matches, and a closed or cancelled upload is unknown.
    #[test]
    fn upload_operations_match_a_model(ops in proptest::collection::vec(op(), 1..14)) {
        let mut d = five_mib_parts();
        d.chunk_size = 1 << 20;
        let mut url: Option<String> = None;
        let mut received: Vec<u8> = Vec::new();
        let mut seed = 0u8;
        for op in ops {
            seed = seed.wrapping_add(1);
            match (op, url.clone()) {
                (Op::Start, _) | (_, None) => {
                    let r = d.send(request("POST", "/v2/model/blobs/uploads/", &[], vec![]));
                    prop_assert_eq!(r.status(), 202);
                    url = Some(location(&r));
                    received.clear();
                }
                (Op::Patch { len, skew }, Some(u)) => {
                    let chunk = bytes_of(len, seed);
                    let start = (received.len() as i64 + skew as i64).max(0) as usize;
                    let headers = if len == 0 { vec![] } else { vec![("content-range".to_string(), format!("{}-{}", start, start + len - 1))] };
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                    let r = d.send(request("PATCH", &u, &headers, chunk.clone()));
                    if start == received.len() {
                        prop_assert_eq!(r.status(), 202);
                        received.extend_from_slice(&chunk);
                    } else {
                        prop_assert_eq!(r.status(), 416);
                    }
                }
                (Op::Status, Some(u)) => {
                    let r = d.send(request("GET", &u, &[], vec![]));
                    prop_assert_eq!(r.status(), 204);
                    let expected = format!("0-{}", received.len().saturating_sub(1));
                    prop_assert_eq!(r.headers()["range"].to_str().unwrap(), expected.as_str());
                }
                (Op::Put { len, correct }, Some(u)) => {
                    let last = bytes_of(len, seed);
                    let mut whole = received.clone();
                    whole.extend_from_slice(&last);
                    let digest = if correct { sha256(&whole) } else { sha256(b"wrong") };
                    let r = d.send(request("PUT", &format!("{u}?digest={digest}"), &[], last));
                    if correct {
                        prop_assert_eq!(r.status(), 201);
                        let got = d.send(request("GET", &format!("/v2/model/blobs/{digest}"), &[], vec![]));
                        prop_assert_eq!(got.body().as_ref(), whole.as_slice());
                    } else {
                        prop_assert_eq!(r.status(), 400);
                    }
                    prop_assert_eq!(d.send(request("GET", &u, &[], vec![])).status(), 404);
                    url = None;
                }
                (Op::Cancel, Some(u)) => {
                    prop_assert_eq!(d.send(request("DELETE", &u, &[], vec![])).status(), 204);
                    prop_assert_eq!(d.send(request("GET", &u, &[], vec![])).status(), 404);
                    url = None;
                }
            }
        }
        berth_engine::fuzzing::assert_store_is_verified(&d.store);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever storage operation fails or races, nothing becomes readable under a digest its
    /// bytes do not hash to, and every error is a status, never a panic.
    #[test]
    fn invariant_1_holds_under_injected_faults(fail_at in 0usize..60, lost_race in any::<bool>(), size in prop_oneof![0usize..100, (5 * MIB)..(6 * MIB)]) {
        let mut d = five_mib_parts();
        let mut count = 0usize;
        d.intercept(move |effect, _| {
            if matches!(effect, Effect::ReadBody) {
                return None;
            }
            count += 1;
            if count != fail_at {
                return None;
            }
            match effect {
                Effect::Put { .. } if lost_race => Some(Outcome::PreconditionFailed),
                _ => Some(Outcome::Failed("injected".into())),
            }
        });
        let layer = bytes_of(size, 3);
        let layer_digest = sha256(&layer);
        let post = d.send(request("POST", "/v2/f/blobs/uploads/", &[], vec![]));
        if post.status() == 202 {
            let url = location(&post);
            let half = size / 2;
            d.send(request("PATCH", &url, &[], layer[..half].to_vec()));
            d.send(request("PUT", &format!("{url}?digest={layer_digest}"), &[], layer[half..].to_vec()));
        }
        d.send(request("POST", &format!("/v2/f/blobs/uploads/?digest={}", sha256(b"{}")), &[], b"{}".to_vec()));
        let manifest = image_manifest(&[(&layer_digest, size)], "");
        d.send(request("PUT", "/v2/f/manifests/t", &[("content-type", OCI_MANIFEST)], manifest));
        berth_engine::fuzzing::assert_store_is_verified(&d.store);
    }
}
