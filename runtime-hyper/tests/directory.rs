//! The directory backend on its own: conditional writes under races, S3 list semantics
//! against the engine's memory store as a model, multipart uploads, key safety.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use berth::storage::directory::DirectoryBackend;
use berth_engine::testing::MemoryStore;
use berth_engine::{ByteRange, CompletedPart, Condition, Effect, Listing, Outcome};
use bytes::Bytes;
use proptest::prelude::*;

fn put(key: &str, body: &[u8], condition: Condition) -> Effect {
    Effect::Put {
        key: key.into(),
        body: Bytes::copy_from_slice(body),
        condition,
    }
}

fn get(store: &DirectoryBackend, key: &str) -> Option<(String, Bytes)> {
    match store.execute_blocking(Effect::Get {
        key: key.into(),
        range: None,
    }) {
        Outcome::Object { meta, bytes } => Some((meta.etag, bytes)),
        Outcome::NotFound => None,
        other => panic!("get {key}: {other:?}"),
    }
}

#[test]
fn create_only_races_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    // Two backends on one directory stand for two processes: their locks are separate files
    // opened separately, as another process's would be.
    let stores = [
        DirectoryBackend::open(dir.path()).unwrap(),
        DirectoryBackend::open(dir.path()).unwrap(),
    ];
    for round in 0..5 {
        let key = format!("_blobs/sha256/race{round}");
        let racers = 24;
        let barrier = Arc::new(Barrier::new(racers));
        let handles: Vec<_> = (0..racers)
            .map(|i| {
                let store = stores[i % 2].clone();
                let (barrier, key) = (barrier.clone(), key.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let body = format!("writer {i}");
                    match store.execute_blocking(put(&key, body.as_bytes(), Condition::IfNoneMatch))
                    {
                        Outcome::Stored { etag } => Some((body, etag)),
                        Outcome::PreconditionFailed => None,
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        let winners: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (etag, bytes) = get(&stores[0], &key).unwrap();
        assert_eq!(
            (etag, bytes),
            (winners[0].1.clone(), Bytes::from(winners[0].0.clone()))
        );
    }
}

#[test]
fn compare_and_swap_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        DirectoryBackend::open(dir.path()).unwrap(),
        DirectoryBackend::open(dir.path()).unwrap(),
    ];
    let key = "_uploads/0123/state";
    assert!(matches!(
        stores[0].execute_blocking(put(key, b"0", Condition::IfNoneMatch)),
        Outcome::Stored { .. }
    ));
    let (threads, increments) = (8, 25);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = stores[i % 2].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut lost = 0;
                for _ in 0..increments {
                    loop {
                        let (etag, bytes) = get(&store, key).unwrap();
                        let n: u64 = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
                        let next = (n + 1).to_string();
                        match store.execute_blocking(put(
                            key,
                            next.as_bytes(),
                            Condition::IfMatch(etag),
                        )) {
                            Outcome::Stored { .. } => break,
                            Outcome::PreconditionFailed => lost += 1,
                            other => panic!("{other:?}"),
                        }
                    }
                }
                lost
            })
        })
        .collect();
    let lost_races: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let (_, bytes) = get(&stores[0], key).unwrap();
    assert_eq!(bytes, (threads * increments).to_string().as_bytes());
    println!("{lost_races} lost races retried");
}

#[test]
fn etags_change_on_every_write_even_of_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryBackend::open(dir.path()).unwrap();
    let mut seen = BTreeSet::new();
    let mut previous = None;
    for _ in 0..50 {
        let Outcome::Stored { etag } = store.execute_blocking(put("k", b"same", Condition::None))
        else {
            panic!()
        };
        assert!(seen.insert(etag.clone()), "etag {etag} repeated");
        if let Some(old) = previous.replace(etag.clone()) {
            // The previous version's etag no longer matches.
            assert_eq!(
                store.execute_blocking(put("k", b"x", Condition::IfMatch(old))),
                Outcome::PreconditionFailed
            );
        }
    }
    // If-Match on a missing key fails; create-only on an existing one fails.
    assert_eq!(
        store.execute_blocking(put("missing", b"x", Condition::IfMatch("\"00\"".into()))),
        Outcome::PreconditionFailed
    );
    assert_eq!(
        store.execute_blocking(put("k", b"x", Condition::IfNoneMatch)),
        Outcome::PreconditionFailed
    );
}

#[test]
fn keys_and_longer_keys_coexist_and_deletes_prune_directories() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryBackend::open(dir.path()).unwrap();
    for key in [
        "_catalog/a",
        "_catalog/a/b",
        "_catalog/a/b/c",
        "_catalog/a-b",
        "_catalog/a.b",
    ] {
        assert!(matches!(
            store.execute_blocking(put(key, key.as_bytes(), Condition::None)),
            Outcome::Stored { .. }
        ));
    }
    for key in ["_catalog/a", "_catalog/a/b", "_catalog/a/b/c"] {
        assert_eq!(get(&store, key).unwrap().1, key.as_bytes());
    }
    let Outcome::Listed(all) = store.execute_blocking(Effect::List {
        prefix: "_catalog/".into(),
        start_after: None,
        limit: 100,
        delimiter: None,
    }) else {
        panic!()
    };
    assert_eq!(
        all.keys,
        [
            "_catalog/a",
            "_catalog/a-b",
            "_catalog/a.b",
            "_catalog/a/b",
            "_catalog/a/b/c"
        ]
    );
    assert_eq!(
        store.execute_blocking(Effect::Delete {
            key: "_catalog/a/b/c".into()
        }),
        Outcome::Deleted
    );
    assert_eq!(
        store.execute_blocking(Effect::Delete {
            key: "_catalog/a/b".into()
        }),
        Outcome::Deleted
    );
    assert_eq!(
        store.execute_blocking(Effect::Delete {
            key: "_catalog/a/b".into()
        }),
        Outcome::Deleted
    );
    assert!(
        !dir.path().join("objects/_catalog/a").exists(),
        "empty directories are pruned"
    );
    assert_eq!(
        get(&store, "_catalog/a").unwrap().1,
        "_catalog/a".as_bytes()
    );
}

#[test]
fn keys_that_could_escape_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryBackend::open(dir.path()).unwrap();
    for key in [
        "../x", "/abs", "a//b", "a/./b", "a/..", "", "a/", "x@", "a\0b",
    ] {
        assert!(
            matches!(
                store.execute_blocking(put(key, b"x", Condition::None)),
                Outcome::Failed(_)
            ),
            "{key:?} was accepted"
        );
        assert!(matches!(
            store.execute_blocking(Effect::Head { key: key.into() }),
            Outcome::Failed(_)
        ));
    }
    assert!(!dir.path().join("x@").exists() && !dir.path().join("abs@").exists());
}

#[test]
fn ranges_are_clamped_to_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryBackend::open(dir.path()).unwrap();
    store.execute_blocking(put("r", b"0123456789", Condition::None));
    for (first, last, expected) in [
        (0, 0, &b"0"[..]),
        (3, 5, b"345"),
        (8, 100, b"89"),
        (20, 30, b""),
    ] {
        let Outcome::Object { meta, bytes } = store.execute_blocking(Effect::Get {
            key: "r".into(),
            range: Some(ByteRange { first, last }),
        }) else {
            panic!()
        };
        assert_eq!((meta.size, &bytes[..]), (10, expected));
    }
}

const PART: u64 = 5 * 1024 * 1024;

fn part_bytes(n: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
            .collect::<Vec<_>>(),
    )
}

fn upload_part(
    store: &DirectoryBackend,
    key: &str,
    id: &str,
    number: u32,
    body: &Bytes,
) -> Outcome {
    store.execute_blocking(Effect::UploadPart {
        key: key.into(),
        upload_id: id.into(),
        part_number: number,
        body: body.clone(),
    })
}

#[test]
fn multipart_uploads_survive_restarts_and_complete_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let key = "_data/upload1/writer";
    let id = {
        let store = DirectoryBackend::open(dir.path()).unwrap();
        let Outcome::MultipartCreated { upload_id } =
            store.execute_blocking(Effect::CreateMultipart {
                key: key.into(),
                part_size: PART,
            })
        else {
            panic!()
        };
        upload_id
    };
    // A new process on the same directory continues the upload.
    let store = DirectoryBackend::open(dir.path()).unwrap();
    let parts = [
        part_bytes(1, PART as usize),
        part_bytes(2, PART as usize),
        part_bytes(3, 1234),
    ];
    let mut etags = Vec::new();
    // Out of order, and part 2 twice: the second upload replaces the first.
    for (number, body) in [
        (3u32, &parts[2]),
        (2, &parts[0]),
        (1, &parts[0]),
        (2, &parts[1]),
    ] {
        let Outcome::PartUploaded { etag } = upload_part(&store, key, &id, number, body) else {
            panic!()
        };
        etags.push((number, etag));
    }
    let etag_of = |n: u32| etags.iter().rev().find(|(p, _)| *p == n).unwrap().1.clone();
    let stale = etags[1].1.clone();
    let listed = |e2: String| {
        vec![
            CompletedPart {
                part_number: 1,
                etag: etag_of(1),
            },
            CompletedPart {
                part_number: 2,
                etag: e2,
            },
            CompletedPart {
                part_number: 3,
                etag: etag_of(3),
            },
        ]
    };
    // The first version of part 2 was overwritten: completing with its etag is refused.
    assert!(matches!(
        store.execute_blocking(Effect::CompleteMultipart {
            key: key.into(),
            upload_id: id.clone(),
            parts: listed(stale),
        }),
        Outcome::Failed(_)
    ));
    // Parts must be numbered densely from 1.
    assert!(matches!(
        store.execute_blocking(Effect::CompleteMultipart {
            key: key.into(),
            upload_id: id.clone(),
            parts: vec![CompletedPart {
                part_number: 2,
                etag: etag_of(2)
            }],
        }),
        Outcome::Failed(_)
    ));
    // A part larger than the part size is refused; an unknown upload is NotFound.
    assert!(matches!(
        upload_part(&store, key, &id, 4, &part_bytes(4, PART as usize + 1)),
        Outcome::Failed(_)
    ));
    assert_eq!(
        upload_part(
            &store,
            key,
            "0123456789abcdef0123456789abcdef",
            1,
            &parts[0]
        ),
        Outcome::NotFound
    );
    use std::os::unix::fs::MetadataExt;
    let data_inode = std::fs::metadata(dir.path().join("multipart").join(&id).join("data"))
        .unwrap()
        .ino();
    let Outcome::Stored { etag } = store.execute_blocking(Effect::CompleteMultipart {
        key: key.into(),
        upload_id: id.clone(),
        parts: listed(etag_of(2)),
    }) else {
        panic!()
    };
    let object = store.object_path(key).unwrap();
    assert_eq!(
        std::fs::metadata(&object).unwrap().ino(),
        data_inode,
        "completion renames, never copies"
    );
    let (read_etag, bytes) = get(&store, key).unwrap();
    assert_eq!(read_etag, etag);
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert!(bytes == expected, "assembled object differs");
    assert!(!dir.path().join("multipart").join(&id).exists());
    // The upload is gone: its id is unknown now.
    assert_eq!(
        upload_part(&store, key, &id, 1, &parts[0]),
        Outcome::NotFound
    );
    assert_eq!(
        store.execute_blocking(Effect::AbortMultipart {
            key: key.into(),
            upload_id: id
        }),
        Outcome::Deleted
    );
}

#[test]
fn aborted_uploads_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryBackend::open(dir.path()).unwrap();
    let Outcome::MultipartCreated { upload_id } = store.execute_blocking(Effect::CreateMultipart {
        key: "_data/u/w".into(),
        part_size: PART,
    }) else {
        panic!()
    };
    assert!(matches!(
        upload_part(&store, "_data/u/w", &upload_id, 1, &part_bytes(1, 100)),
        Outcome::PartUploaded { .. }
    ));
    assert_eq!(
        store.execute_blocking(Effect::AbortMultipart {
            key: "_data/u/w".into(),
            upload_id: upload_id.clone()
        }),
        Outcome::Deleted
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("multipart"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(
        upload_part(&store, "_data/u/w", &upload_id, 1, &part_bytes(1, 100)),
        Outcome::NotFound
    );
    assert_eq!(
        store.execute_blocking(Effect::Head {
            key: "_data/u/w".into()
        }),
        Outcome::NotFound
    );
}

/// A copy of `bytes` that starts on a page boundary, as the engine's full parts do.
fn page_aligned(bytes: &[u8]) -> Bytes {
    let align = berth_engine::upload::PART_ALIGN;
    let mut storage: Vec<u8> = Vec::with_capacity(bytes.len() + align);
    let start = storage.as_ptr().align_offset(align);
    storage.resize(start, 0);
    storage.extend_from_slice(bytes);
    let aligned = Bytes::from(storage).slice(start..);
    assert_eq!(aligned.as_ptr() as usize % align, 0);
    aligned
}

fn complete(store: &DirectoryBackend, key: &str, id: &str, etags: Vec<String>) -> Outcome {
    store.execute_blocking(Effect::CompleteMultipart {
        key: key.into(),
        upload_id: id.into(),
        parts: etags
            .into_iter()
            .enumerate()
            .map(|(i, etag)| CompletedPart {
                part_number: i as u32 + 1,
                etag,
            })
            .collect(),
    })
}

#[test]
fn aligned_parts_take_direct_io_and_assemble_the_same_bytes_as_unaligned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirectoryBackend::open(dir.path()).unwrap();
    let key = "_data/aligned/writer";
    let Outcome::MultipartCreated { upload_id } = store.execute_blocking(Effect::CreateMultipart {
        key: key.into(),
        part_size: PART,
    }) else {
        panic!()
    };
    let contents = [
        part_bytes(1, PART as usize),
        part_bytes(2, PART as usize),
        part_bytes(3, 4096 * 3),
    ];
    // Part 1 aligned (the direct path where the filesystem allows it), part 2 deliberately
    // one byte off a page boundary (the buffered path), part 3 aligned and short.
    let unaligned = {
        let mut padded = vec![0u8];
        padded.extend_from_slice(&contents[1]);
        Bytes::from(padded).slice(1..)
    };
    let bodies = [
        page_aligned(&contents[0]),
        unaligned,
        page_aligned(&contents[2]),
    ];
    let etags: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(
            |(i, body)| match upload_part(&store, key, &upload_id, i as u32 + 1, body) {
                Outcome::PartUploaded { etag } => etag,
                other => panic!("part {}: {other:?}", i + 1),
            },
        )
        .collect();
    assert!(matches!(
        complete(&store, key, &upload_id, etags),
        Outcome::Stored { .. }
    ));
    let expected: Vec<u8> = contents.iter().flat_map(|p| p.iter().copied()).collect();
    let (_, bytes) = get(&store, key).unwrap();
    assert!(bytes == expected, "assembled object differs");
    // A range across the first part boundary, read at the object's page-aligned offset.
    let Outcome::Object { meta, bytes } = store.execute_blocking(Effect::Get {
        key: key.into(),
        range: Some(ByteRange {
            first: PART - 3,
            last: PART + 2,
        }),
    }) else {
        panic!()
    };
    assert_eq!(meta.size, expected.len() as u64);
    assert_eq!(&bytes[..], &expected[PART as usize - 3..PART as usize + 3]);
}

#[test]
fn a_format_2_directory_is_read_and_upgraded_with_its_open_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("FORMAT"), "berth-directory 2\n").unwrap();
    // An object as format 2 wrote it: magic, version, 8 zero bytes, then the object's bytes.
    std::fs::create_dir_all(root.join("objects/_blobs")).unwrap();
    let mut object = b"berthobj".to_vec();
    object.extend_from_slice(&[7u8; 16]);
    object.extend_from_slice(&[0u8; 8]);
    object.extend_from_slice(b"written by format 2");
    std::fs::write(root.join("objects/_blobs/old@"), &object).unwrap();
    // An upload format 2 began: no body offset in its record, part 1 at byte 32.
    let id = "0123456789abcdef0123456789abcdef";
    let upload = root.join("multipart").join(id);
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::write(
        upload.join("upload.json"),
        format!(r#"{{"key":"_data/old/writer","part_size":{PART}}}"#),
    )
    .unwrap();
    std::fs::write(upload.join("data"), [0u8; 32]).unwrap();

    let store = DirectoryBackend::open(root).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("FORMAT")).unwrap(),
        "berth-directory 3\n"
    );
    let (etag, bytes) = get(&store, "_blobs/old").unwrap();
    assert_eq!(etag, format!("\"{}\"", "07".repeat(16)));
    assert_eq!(&bytes[..], b"written by format 2");
    let parts = [
        page_aligned(&part_bytes(1, PART as usize)),
        part_bytes(2, 10),
    ];
    let etags = parts
        .iter()
        .enumerate()
        .map(
            |(i, body)| match upload_part(&store, "_data/old/writer", id, i as u32 + 1, body) {
                Outcome::PartUploaded { etag } => etag,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert!(matches!(
        complete(&store, "_data/old/writer", id, etags),
        Outcome::Stored { .. }
    ));
    let (_, bytes) = get(&store, "_data/old/writer").unwrap();
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert!(
        bytes == expected,
        "the format-2 upload assembled different bytes"
    );
}

#[test]
fn a_directory_of_another_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    std::fs::write(dir.path().join("objects/old@"), b"x").unwrap();
    let error = DirectoryBackend::open(dir.path()).err().expect("refused");
    assert!(error.to_string().contains("older berth"), "{error}");
}

fn key_strategy() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a", "b", "ab", "a-", "-a", "a.b", "b-", ".a", "ba", "a_",
    ]);
    prop::collection::vec(segment, 1..4).prop_map(|segments| segments.join("/"))
}

fn query_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', '-', '.', '/', '_', '0']),
        0..6,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Listing a directory gives exactly what the memory store gives for the same keys: byte
    /// order of whole keys, prefix, start-after (any string), limit over keys and common
    /// prefixes, delimiter roll-up, truncation.
    #[test]
    fn list_matches_the_memory_store(
        keys in prop::collection::btree_set(key_strategy(), 0..24),
        deleted in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        queries in prop::collection::vec(
            (query_string(), prop::option::of(query_string()), 0usize..7, prop::option::of(prop::sample::select(vec!['/', '-', '.']))),
            1..12,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryBackend::open(dir.path()).unwrap();
        let mut model = MemoryStore::new();
        for key in &keys {
            let effect = put(key, key.as_bytes(), Condition::None);
            let stored = matches!(store.execute_blocking(effect.clone()), Outcome::Stored { .. });
            prop_assert!(stored, "put {} failed", key);
            model.execute(effect);
        }
        // What a crash can leave: empty directories, and a stray file that is not an object.
        for empty in ["objects/b/zz", "objects/a-/x/y", "objects/ba"] {
            std::fs::create_dir_all(dir.path().join(empty)).unwrap();
        }
        std::fs::write(dir.path().join("objects/stray"), b"").unwrap();
        let keys: Vec<_> = keys.into_iter().collect();
        for index in deleted {
            if keys.is_empty() { break; }
            let effect = Effect::Delete { key: index.get(&keys).clone() };
            store.execute_blocking(effect.clone());
            model.execute(effect);
        }
        for (prefix, start_after, limit, delimiter) in queries {
            let effect = Effect::List { prefix, start_after, limit, delimiter };
            let expected = model.execute(effect.clone());
            let actual = store.execute_blocking(effect.clone());
            prop_assert_eq!(&actual, &expected, "{:?}", effect);
        }
        // Paging with start-after = the last entry returned reads everything once, in order.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let Outcome::Listed(Listing { keys: page, truncated, .. }) = store.execute_blocking(Effect::List {
                prefix: String::new(), start_after: after.clone(), limit: 3, delimiter: None,
            }) else { panic!() };
            paged.extend(page.iter().cloned());
            if !truncated { break; }
            after = page.last().cloned();
        }
        let expected: Vec<String> = model.keys().map(str::to_owned).collect();
        prop_assert_eq!(paged, expected);
    }
}
