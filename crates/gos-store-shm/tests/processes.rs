//! `ShmStore` across real processes: this test binary re-executes itself (the `child` test,
//! with `GOS_SHM_CHILD_ROLE` set) to put, get, delete, hold pins, stall mid-write, churn and
//! stress from other processes, which the parent kills with SIGKILL where a test says so.
//!
//! `GOS_SOAK=1` makes the stress test long (more processes, more operations, kill rounds).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Rng, rt};
use gos_store::{Error, KeyPrefix, Limits, ObjectKey, ObjectStore, ObjectStoreExt};
use gos_store_shm::{ShmConfig, ShmStore};

const ROLE: &str = "GOS_SHM_CHILD_ROLE";
const STORE: &str = "GOS_SHM_CHILD_STORE";
const ARGS: &str = "GOS_SHM_CHILD_ARGS";
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long a child may take: [`TIMEOUT`], or 15 minutes under `GOS_SOAK`.
fn timeout() -> Duration {
    if std::env::var_os("GOS_SOAK").is_some() {
        Duration::from_secs(900)
    } else {
        TIMEOUT
    }
}

// ---------------------------------------------------------------------------------------------
// Values that prove their own integrity: 8 bytes of tag, then bytes derived from tag and index.

fn value(tag: u64, len: usize) -> Vec<u8> {
    let len = len.max(8);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend((8..len).map(|i| pattern(tag, i)));
    v
}

fn pattern(tag: u64, i: usize) -> u8 {
    (tag.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 3) as u8
}

/// True if `v` is a whole value written by [`value`] (no torn or foreign bytes).
fn intact(v: &[u8]) -> bool {
    if v.len() < 8 {
        return false;
    }
    let tag = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    v[8..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(tag, i + 8))
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("key")
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// Not a test by itself: the entry point of child processes (does nothing without the env var).
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(STORE).expect("store name");
    let args: Vec<String> = std::env::var(ARGS)
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    let store = ShmStore::open(&name).expect("open store");
    rt().block_on(child_role(&role, &store, &args));
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("flush");
}

fn wait_for_parent() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
}

async fn child_role(role: &str, store: &ShmStore, args: &[String]) {
    let arg = |i: usize| args[i].as_str();
    let num = |i: usize| args[i].parse::<u64>().expect("number");
    match role {
        "put" => {
            store
                .put(&key(arg(0)), Bytes::from(value(num(1), num(2) as usize)))
                .await
                .expect("put");
            say("DONE");
        }
        "get" => match store.get(&key(arg(0))).await.expect("get") {
            Some(v) => say(&format!("GOT {} {}", v.len(), intact(&v))),
            None => say("MISSING"),
        },
        "delete" => say(&format!(
            "DELETED {}",
            store.delete(&key(arg(0))).await.expect("delete")
        )),
        "hold" => {
            let v = store
                .get(&key(arg(0)))
                .await
                .expect("get")
                .expect("present");
            let before = v.to_vec();
            say(&format!("PINNED {}", v.len()));
            wait_for_parent();
            say(if v[..] == before[..] && intact(&v) {
                "INTACT"
            } else {
                "CORRUPT"
            });
        }
        "stall-writer" => {
            let mut r = store
                .reserve(
                    &gos_store::ObjectKey::new("stall/writer").expect("key"),
                    num(0) as usize,
                    &gos_store::PutOptions::new(),
                )
                .await
                .expect("reserve");
            let half = r.len() / 2;
            r.as_mut_slice()[..half].fill(0xee);
            say("RESERVED");
            std::thread::sleep(TIMEOUT);
        }
        "stall-reader" => {
            let mut held = Vec::new();
            for k in args {
                held.push(store.get(&key(k)).await.expect("get").expect("present"));
            }
            say("PINNED");
            std::thread::sleep(TIMEOUT);
            drop(held);
        }
        "churn" => {
            let mut rng = Rng(num(0) | 1);
            say("STARTED");
            for i in 0.. {
                let k = key(&format!("churn/k{}", rng.next(8)));
                let len = 8 + rng.next(256 << 10) as usize;
                let _ = store.put(&k, Bytes::from(value(i, len))).await;
                if let Ok(Some(v)) = store.get(&k).await {
                    assert!(intact(&v), "torn value seen by the writer");
                }
                if rng.next(4) == 0 {
                    let _ = store.delete(&k).await;
                }
            }
        }
        "spin" => {
            // Tiny operations in a tight loop from two threads: most of the time one of them
            // holds the store lock, so a SIGKILL is likely to land inside it.
            say("STARTED");
            std::thread::scope(|scope| {
                for t in 0..2u64 {
                    scope.spawn(move || {
                        let rt = rt();
                        for i in 0.. {
                            let k = key(&format!("spin/t{t}/k{}", i % 4));
                            rt.block_on(async {
                                let _ = store.put(&k, Bytes::from(value(i, 64))).await;
                                let _ = store.get(&k).await;
                                if i % 3 == 0 {
                                    let _ = store.delete(&k).await;
                                }
                            });
                        }
                    });
                }
            });
        }
        "stress" => {
            let ops = stress(store, num(0), num(1)).await;
            say(&format!("STRESS OK {ops}"));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Random operations on a shared set of keys; every value read must be intact.
async fn stress(store: &ShmStore, seed: u64, ops: u64) -> u64 {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut held: Vec<Bytes> = Vec::new();
    for op in 0..ops {
        let k = key(&format!("stress/n{}/k{}", rng.next(4), rng.next(6)));
        let tag = seed << 32 | op;
        match rng.next(10) {
            0..=2 => {
                let len = 8 + rng.next(64 << 10) as usize;
                // Some with a reader count, some with a (long) lease.
                let options = gos_store::PutOptions::new()
                    .readers(rng.next(3) as u32)
                    .with_lease((rng.next(4) == 0).then(|| Duration::from_secs(3600)));
                match store
                    .put_opts(&k, Bytes::from(value(tag, len)), &options)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_limit() || e.is_retryable() => {}
                    Err(e) => panic!("put: {e}"),
                }
            }
            3 => {
                let len = 8 + rng.next(32 << 10) as usize;
                match store.reserve(&k, len, &gos_store::PutOptions::new()).await {
                    Ok(mut r) => {
                        r.as_mut_slice().copy_from_slice(&value(tag, len));
                        if rng.next(3) == 0 {
                            drop(r);
                        } else {
                            match r.commit().await {
                                Ok(()) => {}
                                Err(e) if e.is_limit() => {}
                                Err(e) => panic!("commit: {e}"),
                            }
                        }
                    }
                    Err(e) if e.is_limit() || e.is_retryable() => {}
                    Err(e) => panic!("reserve: {e}"),
                }
            }
            4..=6 => {
                if let Some(v) = store.get(&k).await.expect("get") {
                    assert!(intact(&v), "torn value under {k}");
                    if rng.next(4) == 0 {
                        held.push(v);
                    }
                }
            }
            7 => {
                if rng.next(2) == 0 {
                    store.release(&k).await.expect("release");
                } else {
                    store.delete(&k).await.expect("delete");
                }
                if let Some(meta) = store.head(&k).await.expect("head") {
                    assert!(meta.size >= 8, "head of a torn value under {k}");
                }
            }
            8 => {
                let prefix = KeyPrefix::new(format!("stress/n{}", rng.next(4))).expect("prefix");
                if rng.next(8) == 0 {
                    store.delete_prefix(&prefix).await.expect("delete_prefix");
                } else {
                    let keys = store.keys_with_prefix(&prefix).await.expect("keys");
                    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys not sorted");
                }
            }
            _ => {
                if !held.is_empty() {
                    let v = held.swap_remove(rng.next(held.len() as u64) as usize);
                    assert!(intact(&v), "a held value changed");
                }
            }
        }
        if held.len() > 8 {
            held.remove(0);
        }
    }
    assert!(held.iter().all(|v| intact(v)), "a held value changed");
    ops
}

// ---------------------------------------------------------------------------------------------
// The parent side.

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

fn spawn(role: &str, store: &str, args: &[String]) -> Proc {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(STORE, store)
        .env(ARGS, args.join(" "))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc {
        child,
        stdin,
        lines,
    }
}

impl Proc {
    /// The first line of the child's output starting with `prefix`.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("child never said {prefix:?}: {e}");
                }
            }
        }
    }

    fn tell(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go").expect("write to child");
        stdin.flush().expect("flush");
    }

    fn sigkill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    fn wait_ok(mut self) {
        let deadline = Instant::now() + timeout();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "child failed: {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("child timed out");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A fresh store, removed from the file system when the test ends.
struct TestStore {
    name: String,
    store: ShmStore,
}

impl TestStore {
    fn new(test: &str, config: ShmConfig) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "proc-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let store = ShmStore::create(&name, config).expect("create");
        TestStore { name, store }
    }

    fn spawn(&self, role: &str, args: &[&str]) -> Proc {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        spawn(role, &self.name, &args)
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let _ = ShmStore::remove(&self.name);
    }
}

#[test]
fn cross_process_put_get_delete() {
    let t = TestStore::new("basic", ShmConfig::new(Limits::with_capacity(8 << 20)));
    rt().block_on(async {
        t.spawn("put", &["a/from_child", "7", "100000"]).wait_ok();
        let v = t
            .store
            .get(&key("a/from_child"))
            .await
            .expect("get")
            .expect("put by child");
        assert_eq!(v, value(7, 100_000));

        t.store
            .put(&key("a/from_parent"), Bytes::from(value(9, 1 << 20)))
            .await
            .expect("put");
        let mut p = t.spawn("get", &["a/from_parent"]);
        assert_eq!(p.expect("GOT"), format!("GOT {} true", 1 << 20));
        p.wait_ok();

        let mut p = t.spawn("delete", &["a/from_child"]);
        assert_eq!(p.expect("DELETED"), "DELETED true");
        p.wait_ok();
        assert_eq!(t.store.get(&key("a/from_child")).await.expect("get"), None);
        // The parent still holds `v`: the extent stays pinned until it drops.
        assert_eq!(t.store.check().expect("check").unlinked, 1);
        drop(v);
        let report = t.store.check().expect("check");
        assert_eq!((report.entries, report.unlinked, report.handles), (1, 0, 1));
    });
}

#[test]
fn reader_keeps_old_bytes_across_delete_and_overwrite() {
    let t = TestStore::new("pinned", ShmConfig::new(Limits::with_capacity(4 << 20)));
    rt().block_on(async {
        let k = key("w/k");
        t.store
            .put(&k, Bytes::from(value(1, 1 << 20)))
            .await
            .expect("put");
        let mut reader = t.spawn("hold", &["w/k"]);
        assert_eq!(reader.expect("PINNED"), format!("PINNED {}", 1 << 20));
        // Delete, overwrite, and churn the arena so freed memory is reused many times.
        assert!(t.store.delete(&k).await.expect("delete"));
        for round in 0..20u64 {
            t.store
                .put(&k, Bytes::from(value(100 + round, 1 << 20)))
                .await
                .expect("overwrite");
            for i in 0..3 {
                let other = key(&format!("w/other{i}"));
                t.store
                    .put(&other, Bytes::from(value(round * 10 + i, 900 << 10)))
                    .await
                    .expect("fill");
            }
        }
        assert_eq!(t.store.check().expect("check").unlinked, 1);
        reader.tell();
        assert_eq!(reader.expect("INTACT").as_str(), "INTACT");
        reader.wait_ok();
        let report = t.store.check().expect("check");
        assert_eq!((report.unlinked, report.pins, report.handles), (0, 0, 1));
    });
}

#[test]
fn sigkill_of_a_writer_mid_reservation_gives_the_capacity_back() {
    let t = TestStore::new("writer", ShmConfig::new(Limits::with_capacity(4 << 20)));
    rt().block_on(async {
        let mut writer = t.spawn("stall-writer", &[&(3u64 << 20).to_string()]);
        writer.expect("RESERVED");
        let report = t.store.check().expect("check");
        assert_eq!((report.reservations, report.reserved_bytes), (1, 3 << 20));
        // The writer is alive: its reservation holds.
        let big = Bytes::from(value(5, 2 << 20));
        let err = t.store.put(&key("k"), big.clone()).await.expect_err("full");
        assert!(matches!(err, Error::StoreFull { .. }), "{err}");
        writer.sigkill();
        // The next put that runs out of room finds the dead handle and reclaims it.
        t.store.put(&key("k"), big).await.expect("capacity is back");
        let report = t.store.check().expect("check");
        assert_eq!(
            (report.reservations, report.handles, report.entries),
            (0, 1, 1)
        );
        assert_eq!(
            t.store
                .get(&key("k"))
                .await
                .expect("get")
                .map(|v| intact(&v)),
            Some(true)
        );
    });
}

#[test]
fn sigkill_of_writers_at_random_moments_leaves_a_consistent_store() {
    let t = TestStore::new(
        "churn",
        ShmConfig::new(Limits::with_capacity(1 << 20).max_entries(8)).arena_bytes(4 << 20),
    );
    let rounds = if std::env::var_os("GOS_SOAK").is_some() {
        100
    } else {
        8
    };
    let mut rng = Rng(0x5eed);
    rt().block_on(async {
        for round in 0..rounds {
            let mut writer = t.spawn("churn", &[&(round + 1).to_string()]);
            writer.expect("STARTED");
            std::thread::sleep(Duration::from_millis(5 + rng.next(60)));
            writer.sigkill();
            t.store.reclaim_dead().expect("reclaim");
            let report = t.store.check().expect("consistent after kill -9");
            assert_eq!(
                (report.reservations, report.pins, report.handles),
                (0, 0, 1)
            );
            for k in t.store.keys().await.expect("keys") {
                let v = t.store.get(&k).await.expect("get").expect("listed");
                assert!(intact(&v), "partial value under {k} after kill -9");
            }
        }
        eprintln!(
            "{rounds} kill rounds, lock-holder recoveries: {}",
            t.store.check().expect("check").recoveries
        );
        // All the capacity comes back.
        t.store
            .delete_prefix(&KeyPrefix::root())
            .await
            .expect("delete all");
        let report = t.store.check().expect("check");
        assert_eq!(report.free_bytes, report.arena_bytes);
        t.store
            .put(&key("whole"), Bytes::from(value(1, 1 << 20)))
            .await
            .expect("the whole capacity");
    });
}

#[test]
fn sigkill_of_a_reader_holding_pins_frees_what_it_pinned() {
    let t = TestStore::new("reader", ShmConfig::new(Limits::with_capacity(4 << 20)));
    rt().block_on(async {
        let keys = ["r/a", "r/b", "r/c"];
        for (i, k) in keys.iter().enumerate() {
            t.store
                .put(&key(k), Bytes::from(value(i as u64, 1 << 20)))
                .await
                .expect("put");
        }
        let mut reader = t.spawn("stall-reader", &keys);
        reader.expect("PINNED");
        assert_eq!(
            t.store
                .delete_prefix(&KeyPrefix::new("r").expect("prefix"))
                .await
                .expect("delete"),
            3
        );
        let report = t.store.check().expect("check");
        assert_eq!((report.entries, report.unlinked, report.pins), (0, 3, 3));
        assert!(report.free_bytes < report.arena_bytes);
        reader.sigkill();
        assert_eq!(t.store.reclaim_dead().expect("reclaim"), 1);
        let report = t.store.check().expect("check");
        assert_eq!((report.unlinked, report.pins, report.handles), (0, 0, 1));
        assert_eq!(report.free_bytes, report.arena_bytes);
    });
}

#[test]
fn multi_process_stress_keeps_every_invariant() {
    let soak = std::env::var_os("GOS_SOAK").is_some();
    let (procs, ops) = if soak { (8, 20_000) } else { (4, 2_500) };
    let t = TestStore::new(
        "stress",
        ShmConfig::new(Limits::with_capacity(2 << 20).max_entries(20)).arena_bytes(4 << 20),
    );
    let children: Vec<Proc> = (0..procs)
        .map(|i| t.spawn("stress", &[&(i + 1).to_string(), &ops.to_string()]))
        .collect();
    // Meanwhile, a killed stresser every so often (soak only: its ops are not counted).
    if soak {
        let mut rng = Rng(77);
        for i in 0..20 {
            let mut victim = t.spawn("stress", &[&(1000 + i).to_string(), "1000000"]);
            std::thread::sleep(Duration::from_millis(20 + rng.next(200)));
            victim.sigkill();
        }
    }
    for mut child in children {
        assert_eq!(child.expect("STRESS OK"), format!("STRESS OK {ops}"));
        child.wait_ok();
    }
    rt().block_on(async {
        let report = all_given_back(&t.store);
        let keys = t.store.keys().await.expect("keys");
        assert_eq!(keys.len() as u64, report.entries);
        let mut bytes = 0;
        for k in &keys {
            let v = t.store.get(k).await.expect("get").expect("listed");
            assert!(intact(&v), "torn value under {k}");
            bytes += v.len() as u64;
        }
        assert_eq!(t.store.stats().await.expect("stats").bytes, bytes);
        t.store
            .delete_prefix(&KeyPrefix::root())
            .await
            .expect("delete all");
        let report = t.store.check().expect("check");
        assert_eq!(report.free_bytes, report.arena_bytes);
    });
}

#[test]
fn a_store_whose_processes_all_died_is_cleaned_up() {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "proc-abandoned-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let store =
        ShmStore::create(&name, ShmConfig::new(Limits::with_capacity(1 << 20))).expect("create");
    let path = store.path().to_owned();
    drop(store);
    let mut writer = spawn("stall-writer", &name, &["4096".to_owned()]);
    writer.expect("RESERVED");
    assert!(
        !ShmStore::remove_if_abandoned(&name).expect("check"),
        "a live process uses it"
    );
    assert!(path.exists());
    writer.sigkill();
    assert!(
        ShmStore::remove_if_abandoned(&name).expect("check"),
        "its only process died"
    );
    assert!(!path.exists());
}

#[test]
fn sigkill_inside_the_store_lock_is_recovered() {
    let t = TestStore::new("lock", ShmConfig::new(Limits::with_capacity(1 << 20)));
    let mut rng = Rng(0x10c4);
    rt().block_on(async {
        for round in 0..40 {
            let mut spinner = t.spawn("spin", &[]);
            spinner.expect("STARTED");
            std::thread::sleep(Duration::from_millis(10 + rng.next(20)));
            spinner.sigkill();
            // The next lock (this one) recovers if the spinner died holding it.
            let report = t.store.check().expect("consistent after kill -9");
            t.store.reclaim_dead().expect("reclaim");
            let report_after = t.store.check().expect("consistent");
            assert_eq!((report_after.reservations, report_after.pins), (0, 0));
            for k in t.store.keys().await.expect("keys") {
                let v = t.store.get(&k).await.expect("get").expect("listed");
                assert!(intact(&v), "partial value under {k}");
            }
            if round >= 9 && report.recoveries >= 1 {
                eprintln!("{} recoveries in {} rounds", report.recoveries, round + 1);
                return;
            }
        }
        panic!("no SIGKILL landed inside the lock in 40 rounds");
    });
}

/// Stressers stopped (SIGSTOP) and killed (SIGKILL) at random moments, the lock possibly held
/// by a stopped one: the parent gets `Busy` (never a hang) or a consistent store, and after
/// every stopped process continues or dies, everything is consistent and given back.
#[test]
fn sigstop_and_sigkill_of_stressers_at_random_moments() {
    let rounds = if std::env::var_os("GOS_SOAK").is_some() {
        200
    } else {
        12
    };
    let t = TestStore::new(
        "stop",
        ShmConfig::new(Limits::with_capacity(2 << 20).max_entries(20)).arena_bytes(4 << 20),
    );
    let store = t
        .store
        .clone()
        .with_lock_timeout(Duration::from_millis(200));
    let mut rng = Rng(0x570b);
    let spawn = |i: u64| t.spawn("stress", &[&(i + 1).to_string(), "100000000"]);
    let mut children: Vec<Proc> = (0..3).map(spawn).collect();
    let (mut busy, mut checked) = (0, 0);
    for round in 0..rounds {
        let victim = rng.next(children.len() as u64) as usize;
        let pid = children[victim].child.id() as libc::pid_t;
        // SAFETY: plain signal to a child we own and have not reaped.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(rng.next(30)));
        match store.check() {
            Ok(_) => checked += 1,
            Err(Error::Busy(_)) => busy += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
        if rng.next(3) == 0 {
            children[victim].sigkill();
            children[victim] = spawn(100 + round);
        } else {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
    for child in &mut children {
        child.sigkill();
    }
    t.store.reclaim_dead().expect("reclaim");
    let report = t.store.check().expect("invariants at the end");
    assert_eq!(
        (
            report.reservations,
            report.pins,
            report.unlinked,
            report.handles
        ),
        (0, 0, 0, 1)
    );
    eprintln!("{rounds} stop rounds: {checked} checked while stopped, {busy} busy");
}

/// Reclaims dead handles and checks that the store is consistent and that nothing is left
/// pinned, reserved or unlinked, with this handle the only one.
fn all_given_back(store: &ShmStore) -> gos_store_shm::ShmReport {
    store.reclaim_dead().expect("reclaim");
    let report = store.check().expect("invariants");
    assert_eq!(
        (
            report.reservations,
            report.pins,
            report.unlinked,
            report.handles
        ),
        (0, 0, 0, 1)
    );
    report
}
