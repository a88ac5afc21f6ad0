//! Unit tests of a store through its handle: files, versions, operations, lifecycle.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use gos_store::{
    Error, KeyPrefix, Limits, ManualClock, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions,
    Readers, ReleaseOutcome,
};

use super::*;
use crate::layout::LAYOUT_VERSION;

fn name(test: &str) -> String {
    format!("unit-{test}-{}", std::process::id())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn create_open_remove_and_version_check() {
    let n = name("lifecycle");
    let store =
        ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 16))).expect("create");
    assert!(matches!(
        ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 16))),
        Err(Error::Backend { .. })
    ));
    let other = ShmStore::open(&n).expect("open");
    assert_eq!(
        other.limits(),
        Limits::with_capacity(1 << 16).max_entries(DEFAULT_MAX_ENTRIES)
    );
    assert_eq!(store.check().expect("check").handles, 2);
    drop(other);
    assert_eq!(store.check().expect("check").handles, 1);
    assert!(!ShmStore::remove_if_abandoned(&n).expect("in use"));
    // Rewrite the version in the file: opening must say so.
    let file = OpenOptions::new()
        .write(true)
        .open(store.path())
        .expect("file");
    file.write_at(&7u32.to_le_bytes(), 8).expect("write");
    let err = ShmStore::open(&n).expect_err("other version");
    assert!(err.to_string().contains("layout version 7"), "{err}");
    file.write_at(&LAYOUT_VERSION.to_le_bytes(), 8)
        .expect("write");
    drop(store);
    assert!(ShmStore::remove_if_abandoned(&n).expect("abandoned"));
    assert!(matches!(ShmStore::open(&n), Err(Error::Backend { .. })));
    assert!(!ShmStore::remove(&n).expect("remove"));
    assert!(ShmStore::create("../etc", ShmConfig::new(Limits::with_capacity(1))).is_err());
}

#[test]
fn too_small_tmpfs_is_an_error_at_create() {
    let config = ShmConfig::new(Limits::with_capacity(1 << 20)).arena_bytes(1 << 60);
    let err = ShmStore::create(&name("huge"), config).expect_err("no room");
    assert!(err.to_string().contains("bytes free"), "{err}");
}

#[test]
fn put_get_pin_overwrite_reserve() {
    rt().block_on(async {
        let n = name("ops");
        let store = ShmStore::create(
            &n,
            ShmConfig::new(Limits::with_capacity(4096).max_entries(4)),
        )
        .expect("create");
        let other = ShmStore::open(&n).expect("open");
        ShmStore::remove(&n).expect("remove");
        let k = ObjectKey::new("a/b").expect("key");
        store
            .put(&k, Bytes::from(vec![1u8; 3000]))
            .await
            .expect("put");
        let held = other.get(&k).await.expect("get").expect("some");
        store
            .put(&k, Bytes::from(vec![2u8; 3000]))
            .await
            .expect("overwrite");
        assert!(held.iter().all(|&b| b == 1));
        assert_eq!(store.check().expect("check").unlinked, 1);
        let err = store
            .put(
                &ObjectKey::new("c").expect("key"),
                Bytes::from(vec![0; 2000]),
            )
            .await;
        assert!(matches!(
            err,
            Err(Error::StoreFull {
                requested: 2000,
                available: 1096
            })
        ));
        drop(held);
        assert_eq!(store.check().expect("check").unlinked, 0);
        let rk = ObjectKey::new("r").expect("key");
        let mut r = other
            .reserve(&rk, 1000, &PutOptions::create())
            .await
            .expect("reserve");
        r.as_mut_slice().fill(9);
        assert!(matches!(
            other.reserve(&rk, 1000, &PutOptions::new()).await,
            Err(Error::StoreFull { .. })
        ));
        r.commit().await.expect("commit");
        let r = store
            .get(&ObjectKey::new("r").expect("key"))
            .await
            .expect("get")
            .expect("some");
        assert!(r.len() == 1000 && r.iter().all(|&b| b == 9));
        let dropped = store
            .reserve(&rk, 96, &PutOptions::new())
            .await
            .expect("reserve");
        assert_eq!(store.check().expect("check").reservations, 1);
        drop(dropped);
        assert_eq!(store.check().expect("check").reservations, 0);
        assert_eq!(store.keys().await.expect("keys").len(), 2);
        assert_eq!(
            store
                .delete_prefix(&KeyPrefix::root())
                .await
                .expect("delete"),
            2
        );
        drop(r);
        let report = store.check().expect("check");
        assert_eq!(report.free_bytes, report.arena_bytes);
        let empty = ObjectKey::new("empty").expect("key");
        store.put(&empty, Bytes::new()).await.expect("put empty");
        assert_eq!(
            other.get(&empty).await.expect("get").expect("some").len(),
            0
        );
    });
}

fn k(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("key")
}

#[test]
fn an_unbounded_entry_limit_is_reported_as_the_one_enforced() {
    let n = name("unbounded");
    let store =
        ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 16))).expect("create");
    ShmStore::remove(&n).expect("remove");
    assert_eq!(store.limits().max_entries, DEFAULT_MAX_ENTRIES);
}

#[test]
fn an_older_layout_is_refused_with_a_typed_error() {
    let n = name("v1");
    let store =
        ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 16))).expect("create");
    let file = OpenOptions::new()
        .write(true)
        .open(store.path())
        .expect("file");
    // Version 2 had no digest in its records; version 1 no counts or leases.
    for old in [1u32, 2] {
        file.write_at(&old.to_le_bytes(), 8).expect("write");
        let err = ShmStore::open(&n).expect_err("an older layout");
        let Error::Backend { source, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            matches!(
                source.downcast_ref::<ShmError>(),
                Some(ShmError::IncompatibleVersion { found, expected: 3 }) if *found == old
            ),
            "{err}"
        );
    }
    ShmStore::remove(&n).expect("remove");
}

#[test]
fn release_counts_down_atomically_and_pins_keep_the_bytes() {
    rt().block_on(async {
        let n = name("release");
        let store =
            ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 16))).expect("create");
        let other = store.reopen().expect("reopen");
        ShmStore::remove(&n).expect("remove");
        let key = k("f/n/round_1");
        store
            .put_opts(
                &key,
                Bytes::from(vec![7u8; 1000]),
                &PutOptions::new().readers(2),
            )
            .await
            .expect("put");
        let meta = other.head(&key).await.expect("head").expect("some");
        assert_eq!(
            (meta.size, meta.readers, meta.expires_at),
            (1000, Readers::exactly(2).expect("2"), None)
        );
        assert_eq!(store.check().expect("check").pins, 0, "head pins nothing");
        let held = other.get(&key).await.expect("get").expect("some");
        assert!(matches!(
            store.release(&key).await.expect("release"),
            ReleaseOutcome::Remaining(n) if n.get() == 1
        ));
        assert_eq!(
            other.head(&key).await.expect("head").map(|m| m.readers),
            Readers::exactly(1)
        );
        assert_eq!(
            other.release(&key).await.expect("release"),
            ReleaseOutcome::Deleted
        );
        assert_eq!(store.get(&key).await.expect("get"), None);
        assert_eq!(
            store.release(&key).await.expect("release"),
            ReleaseOutcome::NotFound
        );
        assert_eq!(store.check().expect("check").unlinked, 1);
        assert!(
            held.iter().all(|&b| b == 7),
            "the reader's bytes are intact"
        );
        drop(held);
        let report = store.check().expect("check");
        assert_eq!(
            (report.unlinked, report.entries, report.free_bytes),
            (0, 0, report.arena_bytes)
        );
        store
            .put(&key, Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert_eq!(
            store.release(&key).await.expect("release"),
            ReleaseOutcome::Unbounded
        );
        assert!(store.contains(&key).await.expect("contains"));
        // A reservation keeps its options through the commit.
        let mut r = store
            .reserve(&k("f/n/round_2"), 3, &PutOptions::new().readers(1))
            .await
            .expect("reserve");
        r.as_mut_slice().copy_from_slice(b"abc");
        r.commit().await.expect("commit");
        assert_eq!(
            other.release(&k("f/n/round_2")).await.expect("release"),
            ReleaseOutcome::Deleted
        );
    });
}

#[test]
fn leases_expire_lazily_and_by_sweep_and_give_their_space_back() {
    rt().block_on(async {
        let n = name("lease");
        let clock = ManualClock::new();
        let store = ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(4096)))
            .expect("create")
            .with_clock(Arc::new(clock.clone()));
        let other = store.reopen().expect("reopen");
        ShmStore::remove(&n).expect("remove");
        let t0 = clock.now();
        let lease = PutOptions::new().lease(Duration::from_secs(10));
        store
            .put_opts(&k("a"), Bytes::from(vec![1u8; 3000]), &lease)
            .await
            .expect("put");
        store
            .put_opts(&k("b"), Bytes::from(vec![2u8; 500]), &lease)
            .await
            .expect("put");
        let meta = other.head(&k("a")).await.expect("head").expect("some");
        let expires = meta.expires_at.expect("a deadline");
        assert!(expires > t0 + Duration::from_millis(9_999));
        assert!(expires <= t0 + Duration::from_secs(10));
        let held = other.get(&k("a")).await.expect("get").expect("some");
        assert!(matches!(
            store.put(&k("c"), Bytes::from(vec![3u8; 1000])).await,
            Err(Error::StoreFull { .. })
        ));
        clock.advance(Duration::from_millis(9_998));
        assert!(other.contains(&k("a")).await.expect("contains"));
        clock.advance(Duration::from_millis(2));
        // Lazily: the put meets a full store, sweeps the expired objects and fits.
        store
            .put(&k("c"), Bytes::from(vec![3u8; 1000]))
            .await
            .expect("the expired objects' space came back");
        assert_eq!(other.get(&k("a")).await.expect("get"), None);
        assert_eq!(
            other.release(&k("b")).await.expect("release"),
            ReleaseOutcome::NotFound
        );
        assert!(
            held.iter().all(|&b| b == 1),
            "a value handed out stays valid"
        );
        assert_eq!(store.keys().await.expect("keys"), vec![k("c")]);
        store
            .put_opts(
                &k("d"),
                Bytes::new(),
                &PutOptions::new().lease(Duration::from_secs(1)),
            )
            .await
            .expect("put");
        clock.advance(Duration::from_secs(1));
        assert_eq!(store.sweep().await.expect("sweep"), 1);
        assert_eq!(store.sweep().await.expect("sweep"), 0);
        drop(held);
        let report = store.check().expect("check");
        assert_eq!(
            (report.entries, report.live_bytes, report.unlinked),
            (1, 1000, 0)
        );
    });
}

#[test]
fn delete_rounds_before_removes_old_rounds_in_one_pass() {
    rt().block_on(async {
        let n = name("rounds");
        let store =
            ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 16))).expect("create");
        ShmStore::remove(&n).expect("remove");
        for round in 0..4 {
            for node in ["n1", "n2"] {
                let key = ObjectKey::round("fed", node, round).expect("key");
                store
                    .put(&key, Bytes::from_static(b"w"))
                    .await
                    .expect("put");
            }
        }
        store.put(&k("fed/meta"), Bytes::new()).await.expect("put");
        store
            .put(
                &ObjectKey::round("other", "n1", 0).expect("key"),
                Bytes::new(),
            )
            .await
            .expect("put");
        assert_eq!(
            store
                .delete_rounds_before("fed", 2)
                .await
                .expect("retention"),
            4
        );
        assert_eq!(store.len().await.expect("len"), 6);
        assert!(store.delete_rounds_before("", 2).await.is_err());
        store.check().expect("invariants");
    });
}

/// The record's metadata as the table holds it (no digest computed on the way).
async fn raw_head(store: &ShmStore, key: &ObjectKey) -> gos_store::ObjectMeta {
    let k = key.clone();
    store
        .locked(move |t| t.head(k.as_str().as_bytes()))
        .await
        .expect("raw head")
        .expect("some")
}

#[tokio::test]
async fn the_digest_is_computed_once_when_first_asked_and_kept_in_the_record() {
    let n = name("digest");
    let store =
        ShmStore::create(&n, ShmConfig::new(Limits::with_capacity(1 << 20))).expect("create");
    let other = ShmStore::open(&n).expect("open");
    let key = ObjectKey::new("fed/node_1/round_1").expect("key");
    let value = Bytes::from(vec![7u8; 100_000]);
    store.put(&key, value.clone()).await.expect("put");
    // The put recorded no digest (it only copied): the table says so.
    let raw = raw_head(&store, &key).await;
    assert_eq!(raw.digest, None);
    // The first ask computes it; every handle then reads it from the record.
    let want = gos_store::Digest::of(&value);
    let meta = other.head(&key).await.expect("head").expect("some");
    assert_eq!(meta.digest, Some(want));
    let raw = raw_head(&store, &key).await;
    assert_eq!(raw.digest, Some(want), "kept in the record");
    let (bytes, d) = store.get_digested(&key).await.expect("get").expect("some");
    assert_eq!((d, &bytes[..]), (want, &value[..]));
    // A reservation committed with a digest keeps it as given.
    let mut r = store
        .reserve(&key, 3, &gos_store::PutOptions::new())
        .await
        .expect("reserve");
    r.as_mut_slice().copy_from_slice(b"abc");
    r.commit_with_digest(gos_store::Digest::of(b"abc"))
        .await
        .expect("commit");
    let raw = raw_head(&store, &key).await;
    assert_eq!(raw.digest, Some(gos_store::Digest::of(b"abc")));
    drop((store, other));
    ShmStore::remove(&n).expect("remove");
}
