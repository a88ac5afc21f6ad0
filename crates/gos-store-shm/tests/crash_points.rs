//! Deterministic crash points (issue 10): a child process ends itself at a named step of
//! create, commit, release, reclaim and recovery (the `failpoints` feature, armed by
//! `GOS_SHM_FAILPOINT`), or stops itself holding the store lock (`GOS_SHM_PAUSEPOINT`); the
//! parent then checks the invariants and that nothing committed is lost.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Guarded, PrivateDir, ROLE, STORE, child_command, config, rt, unique};
use gos_store::{Error, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_store_shm::ShmStore;
use gos_store_shm::failpoint::{EXIT_CODE, STEPS};

const OPS: &str = "GOS_SHM_TEST_OPS";
const WAIT: Duration = Duration::from_secs(60);

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("key")
}

/// 8 bytes of tag, then bytes derived from it: a value that proves its own integrity.
fn value(tag: u64, len: usize) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend((8..len.max(8)).map(|i| (tag as usize * 31 + i * 7) as u8));
    v
}

/// The tag of an intact value, `None` if it is torn.
fn tag_of(v: &[u8]) -> Option<u64> {
    let tag = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    (v[..] == value(tag, v.len())[..]).then_some(tag)
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// Not a test by itself: a child's side (does nothing without the role variable).
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(STORE).expect("store");
    match role.as_str() {
        "create" | "open-check" => common::create_roles(&role, &name),
        "ops" => {
            let store = ShmStore::open(&name).expect("open");
            let ops = std::env::var(OPS).unwrap_or_default();
            rt().block_on(async {
                for op in ops.split_whitespace() {
                    run_op(&store, op).await;
                }
            });
        }
        other => panic!("unknown role {other}"),
    }
}

async fn run_op(store: &ShmStore, op: &str) {
    let parts: Vec<&str> = op.split(':').collect();
    let num = |i: usize| parts[i].parse::<u64>().expect("number");
    match parts[0] {
        "put" => store
            .put_opts(
                &key(parts[1]),
                Bytes::from(value(num(2), num(3) as usize)),
                &PutOptions::new().readers(num(4) as u32),
            )
            .await
            .expect("put"),
        "release" => {
            store.release(&key(parts[1])).await.expect("release");
        }
        "delete" => {
            store.delete(&key(parts[1])).await.expect("delete");
        }
        "hold" => {
            let v = store.get(&key(parts[1])).await.expect("get").expect("some");
            println!("PINNED");
            std::thread::sleep(WAIT);
            drop(v);
        }
        "reclaim" => {
            store.reclaim_dead().expect("reclaim");
        }
        other => panic!("unknown op {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent side.

/// A store removed when the test ends.
struct TestStore(String);

impl TestStore {
    fn new(test: &str) -> (Self, ShmStore) {
        let name = unique(test);
        let store = ShmStore::create(&name, config()).expect("create");
        (TestStore(name), store)
    }

    fn ops(&self, env: &[(&str, String)], ops: &str) -> Guarded {
        let mut env = env.to_vec();
        env.push((OPS, ops.to_owned()));
        Guarded(child_command("ops", &self.0, &env).spawn().expect("spawn"))
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let _ = ShmStore::remove(&self.0);
    }
}

/// The committed values every walk starts from: key, tag, readers.
const BASE: &[(&str, u64, u64)] = &[
    ("base/k0", 1, 0),
    ("base/k1", 2, 0),
    ("base/k2", 3, 0),
    ("counted/c", 4, 1),
    ("counted/d", 5, 2),
];

/// Ends a child at `step` while it runs `ops`, then checks that the store recovers to a
/// consistent state where every committed value is intact, and that `touched` (the key the
/// operation was changing) holds one of `allowed` tags (`None`: absent).
fn walk(
    step: &str,
    setup: impl Fn(&TestStore, &ShmStore),
    ops: &str,
    touched: &str,
    allowed: &[Option<u64>],
) {
    let (t, store) = TestStore::new(&format!("walk-{step}"));
    rt().block_on(async {
        for &(k, tag, readers) in BASE {
            let options = PutOptions::new().readers(readers as u32);
            store
                .put_opts(
                    &key(k),
                    Bytes::from(value(tag, 1000 + 100 * tag as usize)),
                    &options,
                )
                .await
                .expect("put");
        }
    });
    setup(&t, &store);
    let mut child = t.ops(&[("GOS_SHM_FAILPOINT", step.to_owned())], ops);
    let status = child.wait(WAIT);
    assert_eq!(
        status.code(),
        Some(EXIT_CODE),
        "{step}: the child must stop at the failpoint ({status:?})"
    );
    // A fresh handle, as a process started after the crash: the lock (if it was held) comes
    // with EOWNERDEAD and recovery; the dead handle's slot is reclaimed.
    let after = ShmStore::open(&t.0).expect("open after the crash");
    after.reclaim_dead().expect("reclaim");
    drop(store);
    let report = after
        .check()
        .unwrap_or_else(|e| panic!("{step}: invariants after the crash: {e}"));
    assert_eq!(
        (
            report.reservations,
            report.reserved_bytes,
            report.pins,
            report.unlinked
        ),
        (0, 0, 0, 0),
        "{step}: the dead child's reservations and pins are given back"
    );
    rt().block_on(async {
        for &(k, tag, _) in BASE {
            let got = after.get(&key(k)).await.expect("get");
            let got_tag = got.as_deref().map(|v| tag_of(v).expect("an intact value"));
            if k == touched {
                assert!(allowed.contains(&got_tag), "{step}: {k} holds {got_tag:?}");
            } else {
                assert_eq!(got_tag, Some(tag), "{step}: committed {k} lost or changed");
            }
        }
        // The store still works: a put of the whole remaining capacity fits.
        let stats = after.stats().await.expect("stats");
        let room = stats.capacity_bytes - stats.bytes;
        after
            .put(&key("after/all"), Bytes::from(vec![0u8; room as usize]))
            .await
            .unwrap_or_else(|e| panic!("{step}: the capacity came back: {e}"));
    });
    after.check().expect("invariants at the end");
}

fn nothing(_: &TestStore, _: &ShmStore) {}

#[test]
fn every_step_of_a_put_a_release_and_a_delete_is_crash_safe() {
    let new = "put:new/a:100:5000:0";
    let over = "put:base/k0:101:3000:0";
    walk("locked", nothing, new, "new/a", &[None]);
    walk("admit-extent-taken", nothing, new, "new/a", &[None]);
    walk("admit-record-reserved", nothing, new, "new/a", &[None]);
    walk(
        "commit-record-written",
        nothing,
        over,
        "base/k0",
        &[Some(1)],
    );
    walk(
        "commit-record-live",
        nothing,
        over,
        "base/k0",
        &[Some(1), Some(101)],
    );
    walk(
        "commit-linked",
        nothing,
        over,
        "base/k0",
        &[Some(1), Some(101)],
    );
    walk(
        "commit-before-unlink-old",
        nothing,
        over,
        "base/k0",
        &[Some(1), Some(101)],
    );
    // The release that would delete was cut short: the object is still there (its last
    // reader never got an answer) or gone; never half.
    walk(
        "release-before-unlink",
        nothing,
        "release:counted/c",
        "counted/c",
        &[Some(4), None],
    );
    walk(
        "release-record",
        nothing,
        "delete:base/k1",
        "base/k1",
        &[None],
    );
}

/// A reader died holding a pin on a deleted value; the process reclaiming its slot dies in
/// the middle; the next one recovers.
#[test]
fn a_reclaim_cut_short_is_finished_by_recovery() {
    let setup = |t: &TestStore, store: &ShmStore| {
        let mut holder = t.ops(&[], "hold:base/k2");
        // Wait until the holder's pin shows in the tables.
        let deadline = Instant::now() + WAIT;
        while store.check().expect("check").pins == 0 {
            assert!(Instant::now() < deadline, "the holder never pinned");
            std::thread::sleep(Duration::from_millis(5));
        }
        rt().block_on(store.delete(&key("base/k2")))
            .expect("delete");
        assert_eq!(store.check().expect("check").unlinked, 1);
        holder.signal(libc::SIGKILL);
        let _ = holder.wait(WAIT);
    };
    walk("reclaim-before-free", setup, "reclaim", "base/k2", &[None]);
}

/// A process dies inside the lock; the next locker dies at the end of its recovery, before
/// marking the lock consistent; the one after recovers again.
#[test]
fn a_recovery_cut_short_is_run_again() {
    let setup = |t: &TestStore, _: &ShmStore| {
        let mut first = t.ops(
            &[("GOS_SHM_FAILPOINT", "commit-linked".to_owned())],
            "put:base/k0:101:3000:0",
        );
        assert_eq!(first.wait(WAIT).code(), Some(EXIT_CODE));
    };
    // The walk's child opens the store: its first lock recovers, and dies at the end.
    walk("recover-done", setup, "", "base/k0", &[Some(1), Some(101)]);
}

#[test]
fn every_failpoint_is_walked() {
    let walked = [
        "locked",
        "admit-extent-taken",
        "admit-record-reserved",
        "commit-record-written",
        "commit-record-live",
        "commit-linked",
        "commit-before-unlink-old",
        "release-before-unlink",
        "release-record",
        "reclaim-before-free",
        "recover-done",
        "create-formatted",
        "create-linked",
    ];
    for step in STEPS {
        assert!(walked.contains(step), "failpoint {step} has no walk");
    }
}

// ---------------------------------------------------------------------------------------------
// Create.

#[test]
fn a_create_stopped_at_each_step_leaves_nothing_or_a_whole_store() {
    let dir = PrivateDir::new("create-steps");
    for (step, linked) in [("create-formatted", false), ("create-linked", true)] {
        let mut env = dir.env();
        env.push(("GOS_SHM_FAILPOINT", step.to_owned()));
        let mut child = Guarded(child_command("create", "s", &env).spawn().expect("spawn"));
        assert_eq!(child.wait(WAIT).code(), Some(EXIT_CODE), "{step}");
        if linked {
            assert_eq!(dir.files(), vec!["gos-s".to_owned()], "{step}");
            dir.check_and_remove_store(step);
        } else {
            assert!(dir.files().is_empty(), "{step}: left {:?}", dir.files());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A stopped lock holder.

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

/// Issue 10, defect 5: a process stopped (SIGSTOP) while it holds the store lock makes the
/// others fail with the retryable `Error::Busy` after their lock timeout, without blocking
/// their async worker; after SIGCONT everything proceeds.
#[test]
fn a_stopped_lock_holder_gives_busy_after_the_timeout_and_then_proceeds() {
    let (t, store) = TestStore::new("stopped");
    let store = store.with_lock_timeout(Duration::from_millis(300));
    let mut holder = t.ops(
        &[("GOS_SHM_PAUSEPOINT", "locked".to_owned())],
        "put:from/child:7:100:0",
    );
    let deadline = Instant::now() + WAIT;
    while !stopped(holder.0.id()) {
        assert!(Instant::now() < deadline, "the holder never stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
    let runtime = rt();
    runtime.block_on(async {
        // A ticker on the same (single) worker thread keeps running while the put waits.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let started = Instant::now();
        let err = store
            .put(&key("from/parent"), Bytes::from_static(b"x"))
            .await
            .expect_err("the lock is held by a stopped process");
        let waited = started.elapsed();
        ticker.abort();
        assert!(matches!(err, Error::Busy(_)), "{err}");
        assert!(err.is_retryable());
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) >= 10,
            "the async worker was blocked"
        );
    });
    assert!(
        matches!(ShmStore::open(&t.0), Err(Error::Busy(_))),
        "an open waits as long"
    );
    holder.signal(libc::SIGCONT);
    assert!(holder.wait(WAIT).success());
    runtime.block_on(async {
        store
            .put(&key("from/parent"), Bytes::from_static(b"x"))
            .await
            .expect("the lock is free again");
        assert!(store.contains(&key("from/child")).await.expect("contains"));
    });
    store.check().expect("invariants");
}
