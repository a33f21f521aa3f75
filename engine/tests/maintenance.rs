//! Maintenance deletes, and it runs beside every request that writes. These tests interleave
//! maintenance passes with uploads at every effect, crash uploads at every effect, and hold
//! invariant 7: a blob answered 201 stays readable, byte-exact, until a user deletes it.

mod common;

use berth_engine::Config;
use berth_engine::testing::{Driver, Flight, TestResponse, request};
use common::*;
use proptest::prelude::*;

const PART: usize = 5 * 1024 * 1024;

/// `len` bytes that differ by `seed`, made by repeating a 251-byte pattern (a prime length, so
/// parts of a power-of-two size do not repeat each other): fast even in a debug build.
fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    let pattern: Vec<u8> = (0..251u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let take = pattern.len().min(len - bytes.len());
        bytes.extend_from_slice(&pattern[..take]);
    }
    bytes
}

/// Maintenance that finds every upload expired: the most hostile setting, under which a live
/// upload may be thrown away (it then fails) but a published blob must never be.
fn hostile() -> Driver {
    let mut d = driver_with(Config {
        part_size: PART as u64,
        upload_expiry_secs: 0,
        ..Config::default()
    });
    d.chunk_size = 1 << 20;
    d
}

/// How a blob is pushed.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `POST ?digest=` with the whole body.
    Monolithic,
    /// `POST`, then `PUT ?digest=` with the whole body.
    PostPut,
    /// `POST`, a `PATCH` with the first half, `PUT ?digest=` with the rest.
    Chunked,
}

/// One push, request by request, as a client would send it.
struct Push {
    blob: Vec<u8>,
    digest: String,
    mode: Mode,
    stage: usize,
    location: Option<String>,
    flight: Option<Flight>,
    /// The status of the closing request, once it answered.
    closed: Option<u16>,
    /// Effects after which the push's process dies (its request in flight is dropped).
    crash_after: Option<usize>,
    effects: usize,
}

impl Push {
    fn new(size: usize, seed: u8, mode: Mode) -> Push {
        let blob = bytes_of(size, seed);
        Push {
            digest: sha256(&blob),
            blob,
            mode,
            stage: 0,
            location: None,
            flight: None,
            closed: None,
            crash_after: None,
            effects: 0,
        }
    }

    fn crashing_after(mut self, effects: usize) -> Push {
        self.crash_after = Some(effects);
        self
    }

    /// The next request of the push, or `None` when it is over.
    fn next_request(&self) -> Option<http::Request<Vec<u8>>> {
        let half = self.blob.len() / 2;
        let url = |suffix: &str| {
            let location = self.location.as_deref()?;
            Some(format!("{location}{suffix}"))
        };
        let put = |body: &[u8]| {
            Some(request(
                "PUT",
                &url(&format!("?digest={}", self.digest))?,
                &[],
                body.to_vec(),
            ))
        };
        match (self.mode, self.stage) {
            (Mode::Monolithic, 0) => Some(request(
                "POST",
                &format!("/v2/r/blobs/uploads/?digest={}", self.digest),
                &[],
                self.blob.clone(),
            )),
            (_, 0) => Some(request("POST", "/v2/r/blobs/uploads/", &[], vec![])),
            (Mode::PostPut, 1) => put(&self.blob),
            (Mode::Chunked, 1) => Some(request(
                "PATCH",
                &url("")?,
                &[("content-range", &format!("0-{}", half.max(1) - 1))],
                self.blob[..half].to_vec(),
            ))
            .filter(|_| half > 0),
            (Mode::Chunked, 2) => put(&self.blob[half..]),
            _ => None,
        }
    }

    fn is_closing_stage(&self) -> bool {
        matches!(
            (self.mode, self.stage),
            (Mode::Monolithic, 0) | (Mode::PostPut, 1) | (Mode::Chunked, 2)
        )
    }

    /// Takes the answer of the request in flight; `false` if the push cannot go on.
    fn answered(&mut self, response: &TestResponse) -> bool {
        let status = response.status().as_u16();
        assert!(
            status < 500,
            "a race is not a backend failure: {response:?}"
        );
        if self.is_closing_stage() {
            self.closed = Some(status);
            return false;
        }
        if self.stage == 0 {
            if status != 202 {
                return false;
            }
            self.location = Some(location(response));
        } else if status != 202 {
            return false;
        }
        self.stage += 1;
        // A chunked push of an empty blob has no PATCH.
        if matches!((self.mode, self.stage), (Mode::Chunked, 1)) && self.blob.len() / 2 == 0 {
            self.stage += 1;
        }
        true
    }
}

/// An actor of the schedule.
enum Actor {
    Push(Push),
    /// Maintenance passes still to run, and the one in flight.
    Maintenance(usize, Option<Flight>),
}

/// Steps `actor` by one effect; `false` once it has nothing more to do.
fn step(d: &mut Driver, actor: &mut Actor) -> bool {
    match actor {
        Actor::Push(push) => {
            if push.flight.is_none() {
                let Some(request) = push.next_request() else {
                    return false;
                };
                push.flight = Some(d.start(request));
            }
            if push.crash_after == Some(push.effects) {
                // The process dies: whatever it was doing stops between two effects.
                push.flight = None;
                return false;
            }
            let flight = push.flight.as_mut().expect("just started");
            if d.step(flight) {
                push.effects += 1;
                return true;
            }
            let response = d.land(push.flight.take().expect("in flight"));
            push.answered(&response)
        }
        Actor::Maintenance(remaining, flight) => {
            if flight.is_none() {
                if *remaining == 0 {
                    return false;
                }
                *remaining -= 1;
                *flight = Some(d.start_maintenance());
            }
            let running = flight.as_mut().expect("just started");
            if d.step(running) {
                return true;
            }
            let response = d.land(flight.take().expect("in flight"));
            assert_eq!(response.status(), 200, "{response:?}");
            true
        }
    }
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        1usize..64,
        Just(PART - 1),
        Just(PART),
        Just(PART + 1),
        Just(2 * PART + 4096),
    ]
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Monolithic),
        Just(Mode::PostPut),
        Just(Mode::Chunked)
    ]
}

/// Every blob answered 201 reads back byte-exact (HEAD and GET agree), and nothing in the
/// store names data that is gone.
fn assert_published_blobs_read_back(d: &mut Driver, published: &[(String, Vec<u8>)]) {
    for (digest, blob) in published {
        let head = d.send(request(
            "HEAD",
            &format!("/v2/r/blobs/{digest}"),
            &[],
            vec![],
        ));
        assert_eq!(head.status(), 200, "HEAD {digest} after 201: {head:?}");
        let got = d.send(request(
            "GET",
            &format!("/v2/r/blobs/{digest}"),
            &[],
            vec![],
        ));
        assert_eq!(got.status(), 200, "GET {digest} after 201: {got:?}");
        assert!(
            got.body().as_ref() == blob.as_slice(),
            "GET {digest}: wrong bytes"
        );
    }
    berth_engine::fuzzing::assert_store_is_verified(&d.store);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Pushes of sizes around the part size, in every mode, interleaved effect by effect with
    /// maintenance passes that find every upload expired, in any order: a push may fail (its
    /// upload was thrown away) but one answered 201 reads back byte-exact, then and after more
    /// maintenance. Pushes of the same bytes at once are in the mix (a duplicate publication
    /// must not delete the first one's data).
    #[test]
    fn maintenance_at_any_point_never_loses_an_acknowledged_blob(
        pushes in proptest::collection::vec((size_strategy(), mode_strategy(), 0u8..3), 1..4),
        passes in 1usize..4,
        schedule in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut d = hostile();
        let mut actors: Vec<Actor> = pushes
            .iter()
            .map(|&(size, mode, seed)| Actor::Push(Push::new(size, seed, mode)))
            .collect();
        actors.push(Actor::Maintenance(passes, None));
        let mut choices = schedule.into_iter();
        let mut published = Vec::new();
        while !actors.is_empty() {
            let pick = choices.next().map_or(0, usize::from) % actors.len();
            if !step(&mut d, &mut actors[pick]) {
                let actor = actors.swap_remove(pick);
                if let Actor::Push(push) = actor
                    && push.closed == Some(201)
                {
                    let blob = (push.digest, push.blob);
                    assert_published_blobs_read_back(&mut d, std::slice::from_ref(&blob));
                    published.push(blob);
                }
            }
        }
        prop_assert_eq!(d.maintain().status(), 200);
        assert_published_blobs_read_back(&mut d, &published);
        prop_assert!(d.store.keys().all(|k| !k.starts_with("_uploads/")), "expired uploads remain");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A push that dies after any number of effects (before or after its data is stored, its
    /// record committed, its pointer written, its link written, its record removed), with
    /// maintenance before, during and after: nothing is left that reads wrong or fails (the
    /// blob is published whole or absent), and pushing the same bytes again then answers 201
    /// and reads back. Other pushes answered 201 are untouched.
    #[test]
    fn a_crash_at_any_effect_then_maintenance_leaves_every_blob_whole_or_absent(
        crashing in (size_strategy(), mode_strategy(), 0usize..40),
        others in proptest::collection::vec((size_strategy(), mode_strategy(), 0u8..3), 0..3),
        passes in 0usize..3,
        schedule in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (size, mode, crash_after) = crashing;
        let mut d = hostile();
        let doomed = Push::new(size, 9, mode).crashing_after(crash_after);
        let (digest, blob) = (doomed.digest.clone(), doomed.blob.clone());
        let mut actors = vec![Actor::Push(doomed), Actor::Maintenance(passes, None)];
        actors.extend(others.iter().map(|&(size, mode, seed)| Actor::Push(Push::new(size, seed, mode))));
        let mut choices = schedule.into_iter();
        let mut published = Vec::new();
        while !actors.is_empty() {
            let pick = choices.next().map_or(0, usize::from) % actors.len();
            if !step(&mut d, &mut actors[pick])
                && let Actor::Push(push) = actors.swap_remove(pick)
                && push.closed == Some(201)
            {
                published.push((push.digest, push.blob));
            }
        }
        // The crashed push's blob, whatever it got to: whole, or absent.
        prop_assert_eq!(d.maintain().status(), 200);
        let head = d.send(request("HEAD", &format!("/v2/r/blobs/{digest}"), &[], vec![]));
        if head.status() == 200 {
            let got = d.send(request("GET", &format!("/v2/r/blobs/{digest}"), &[], vec![]));
            prop_assert!(got.body().as_ref() == blob.as_slice(), "a crashed push published wrong bytes");
        } else {
            prop_assert_eq!(head.status(), 404);
        }
        // The client pushes it again, as it would after losing its answer.
        let again = d.send(request("POST", &format!("/v2/r/blobs/uploads/?digest={digest}"), &[], blob.clone()));
        prop_assert_eq!(again.status(), 201, "{:?}", again);
        published.push((digest, blob));
        assert_published_blobs_read_back(&mut d, &published);
    }
}

/// A full maintenance pass between every two effects of a push, with uploads expiring after
/// the default week (so maintenance leaves live uploads alone) and with every upload expired
/// at once (so it races them). With the first, every push is acknowledged; with both, every
/// acknowledged blob reads back. Before the fix, the record of a close in progress did not
/// decode, and maintenance deleted the data of the blob being published.
#[test]
fn a_maintenance_pass_between_every_two_effects_of_a_push_keeps_the_blob() {
    for expiry in [7 * 24 * 3600, 0] {
        for size in [
            0,
            100,
            PART - 1,
            PART,
            PART + 1,
            PART + 4096,
            2 * PART + 4096,
        ] {
            for mode in [Mode::Monolithic, Mode::PostPut, Mode::Chunked] {
                let mut d = driver_with(Config {
                    part_size: PART as u64,
                    upload_expiry_secs: expiry,
                    ..Config::default()
                });
                d.chunk_size = 1 << 20;
                let mut push = Actor::Push(Push::new(size, 1, mode));
                loop {
                    assert_eq!(d.maintain().status(), 200);
                    if !step(&mut d, &mut push) {
                        break;
                    }
                }
                assert_eq!(d.maintain().status(), 200);
                let Actor::Push(push) = push else {
                    unreachable!("the actor is a push")
                };
                if expiry > 0 {
                    assert_eq!(push.closed, Some(201), "{size} bytes, {mode:?}");
                }
                if push.closed == Some(201) {
                    assert_published_blobs_read_back(&mut d, &[(push.digest, push.blob)]);
                }
            }
        }
    }
}
