//! The corruption fuzzer (issue 10, "trust nothing in the file"): damage bytes of a closed
//! store file's tables, then open it and put, get, release and delete in a child process.
//! (A few cases damage the header's geometry instead.) Every outcome must be a typed error
//! or a consistent store: never a signal (SIGSEGV,
//! SIGBUS), a panic or a hang.
//!
//! `GOS_SHM_FUZZ_CASES` (default 120) and `GOS_SHM_FUZZ_SEED` set the run; `cargo xtask
//! shm-fuzz` runs a long one.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use bytes::Bytes;
use common::{Guarded, ROLE, Rng, STORE, child_command, rt, unique};
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_store_shm::{ShmConfig, ShmStore};

/// The exit status of a child whose store opened but ended inconsistent.
const INCONSISTENT: i32 = 3;

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).expect("key")
}

fn value(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|b| (i as usize * 31 + b * 7) as u8).collect()
}

/// Not a test by itself: a child's side (does nothing without the role variable).
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(STORE).expect("store");
    let store = match ShmStore::open(&name) {
        Ok(store) => store,
        Err(e) => {
            // A typed refusal is a valid outcome.
            println!("OPEN-REFUSED {e}");
            return;
        }
    };
    if role == "put-first" {
        // Write before anything else looks at the tables: where the old code crashed.
        let v = value(1, 1000);
        let k = key("fuzz/first");
        let code = rt().block_on(async {
            if let Err(e) = store.put(&k, Bytes::from(v.clone())).await {
                println!("PUT-REFUSED {e}");
            } else if store.get(&k).await.ok().flatten().as_deref() != Some(&v[..]) {
                return INCONSISTENT;
            }
            if store.check().is_err() {
                INCONSISTENT
            } else {
                0
            }
        });
        std::process::exit(code);
    }
    assert_eq!(role, "fuzz-ops");
    let code = rt().block_on(async {
        match store.check() {
            Ok(report) if report.recoveries > 0 => println!("OPENED-REPAIRED"),
            Ok(_) => println!("OPENED-INTACT"),
            Err(e) => {
                println!("OPENED-INCONSISTENT {e}");
                return INCONSISTENT;
            }
        }
        for i in 0..12u64 {
            let k = key(&format!("fuzz/k{i}"));
            let v = value(i, 40 + (i as usize * 97) % 700);
            let options = PutOptions::new().readers((i % 3) as u32);
            if store
                .put_opts(&k, Bytes::from(v.clone()), &options)
                .await
                .is_ok()
            {
                match store.get(&k).await {
                    Ok(Some(got)) if got[..] != v[..] => {
                        println!("WRONG-VALUE {k}");
                        return INCONSISTENT;
                    }
                    Ok(None) => {
                        println!("LOST {k}");
                        return INCONSISTENT;
                    }
                    _ => {}
                }
            }
            let _ = store.head(&k).await;
            if i % 2 == 0 {
                let _ = store.release(&k).await;
            }
            if i % 5 == 0 {
                let _ = store.delete(&k).await;
            }
        }
        // What was in the store before: read it all (lengths were checked at open).
        if let Ok(keys) = store.keys().await {
            for k in keys {
                let _ = store.get(&k).await;
            }
        }
        let _ = store.sweep().await;
        let _ = store.stats().await;
        let _ = store.delete_rounds_before("fed", 3).await;
        match store.check() {
            Ok(_) => 0,
            Err(e) => {
                println!("ENDED-INCONSISTENT {e}");
                INCONSISTENT
            }
        }
    });
    std::process::exit(code);
}

/// Where the tables are in a store file, read from its header.
struct Regions {
    tables: (usize, usize),
    counters: (usize, usize),
    records: usize,
    objects: usize,
    free: usize,
    buckets: (usize, usize),
    pins: (usize, usize),
    arena_size: u64,
}

const RECORD_SIZE: usize = 24 + 8 * 8 + gos_store::MAX_KEY_LEN;

fn regions(file: &[u8]) -> Regions {
    let word = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().expect("8")) as usize;
    let (objects, slots_offset, records, buckets, pins, free, arena_offset) = (
        word(48),
        word(64),
        word(72),
        word(80),
        word(88),
        word(96),
        word(104),
    );
    Regions {
        tables: (slots_offset, arena_offset),
        counters: (128, 176),
        records,
        objects,
        free,
        buckets: (buckets, pins),
        pins: (pins, free),
        arena_size: word(112) as u64,
    }
}

/// Damages 1 to 6 places of the tables, aiming at the fields that matter.
fn mutate(file: &mut [u8], r: &Regions, rng: &mut Rng) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..1 + rng.next(6) {
        let at = match rng.next(20) {
            0..=9 => {
                // A record's header fields (state, ids, offsets, lengths, counts, deadline).
                let id = rng.next(r.objects.min(40) as u64) as usize;
                r.records + id * RECORD_SIZE + rng.next(88) as usize
            }
            10..=12 => r.free + rng.next(16 * 24) as usize,
            13 | 14 => r.counters.0 + rng.next((r.counters.1 - r.counters.0) as u64) as usize,
            15 => r.buckets.0 + rng.next((r.buckets.1 - r.buckets.0) as u64) as usize,
            16 => r.pins.0 + rng.next(((r.pins.1 - r.pins.0) as u64).min(4096)) as usize,
            // The header's geometry: the open must refuse it (checked before mapping).
            17 => 16 + rng.next(112) as usize,
            _ => r.tables.0 + rng.next((r.tables.1 - r.tables.0) as u64) as usize,
        };
        let interesting = [
            0,
            1,
            u64::from(u32::MAX),
            u64::MAX,
            r.arena_size,
            r.arena_size - 64,
            1 << 40,
            rng.next(u64::MAX),
        ];
        let at = at & !7;
        if rng.next(2) == 0 && at + 8 <= r.tables.1 {
            let v = interesting[rng.next(interesting.len() as u64) as usize];
            file[at..at + 8].copy_from_slice(&v.to_le_bytes());
            done.push(format!("u64 {v:#x} at {at}"));
        } else {
            let at = at + rng.next(8) as usize;
            let v = rng.next(256) as u8;
            file[at] = v;
            done.push(format!("byte {v:#x} at {at}"));
        }
    }
    done
}

/// A closed store with overwritten and deleted values (and counted and leased ones if
/// `lifecycle`).
fn populated(name: &str, lifecycle: bool) -> Vec<u8> {
    let store = ShmStore::create(
        name,
        ShmConfig::new(Limits::with_capacity(256 << 10).max_entries(48)).max_processes(4),
    )
    .expect("create");
    rt().block_on(async {
        for i in 0..30u64 {
            let k = ObjectKey::round("fed", &format!("n{}", i % 4), i / 4).expect("key");
            let options = if lifecycle {
                PutOptions::new()
                    .readers((i % 3) as u32)
                    .with_lease((i % 2 == 0).then(|| Duration::from_secs(3600)))
            } else {
                PutOptions::new()
            };
            store
                .put_opts(&k, Bytes::from(value(i, 64 + 200 * i as usize)), &options)
                .await
                .expect("put");
            if i % 7 == 0 {
                store.delete(&k).await.expect("delete");
            }
            if i % 5 == 0 {
                store
                    .put(&k, Bytes::from(value(i + 100, 33)))
                    .await
                    .expect("overwrite");
            }
        }
    });
    store.check().expect("a consistent store to start from");
    let path = store.path().to_owned();
    drop(store);
    std::fs::read(path).expect("read store file")
}

#[test]
fn damaged_tables_give_typed_errors_or_a_consistent_store_never_a_signal() {
    let cases: u64 = std::env::var("GOS_SHM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("GOS_SHM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let name = unique("fuzz");
    let pristine = populated(&name, true);
    let path = store_path(&name);
    let r = regions(&pristine);
    let mut rng = Rng(seed | 1);
    let (mut refused, mut repaired, mut intact) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in 0..cases {
        let mut file = pristine.clone();
        let what = mutate(&mut file, &r, &mut rng);
        std::fs::write(&path, &file).expect("write damaged store");
        let child = child_command("fuzz-ops", &name, &[])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let output = wait_output(child, Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains("OPEN-REFUSED") {
            refused += 1;
        } else if stdout.contains("OPENED-REPAIRED") {
            repaired += 1;
        } else {
            intact += 1;
        }
        if !output.status.success() {
            failures.push(format!(
                "case {case} (seed {seed}): {:?} signal {:?}: {what:?}\n{stdout}",
                output.status.code(),
                output.status.signal()
            ));
        }
    }
    let _ = ShmStore::remove(&name);
    println!(
        "{cases} damaged stores: {refused} refused with a typed error, {repaired} repaired at \
         open, {intact} whose damage the checker did not see (unused bytes); every one ended \
         consistent"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(repaired > cases / 4, "most damage is seen and repaired");
}

/// Waits for `child` with a deadline and collects its output.
fn wait_output(child: std::process::Child, timeout: Duration) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            // SAFETY: a plain kill of our own child (not reaped: its waiter is still blocked).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("a child on a damaged store hung for {timeout:?}");
        }
    }
}

/// Issue 10, defect 1: a store whose header is fine but whose free list points outside the
/// arena. The old code took the extent and copied the value through it (SIGSEGV); now the
/// open repairs the store and the put lands inside the arena.
#[test]
fn a_free_list_pointing_outside_the_arena_is_repaired_at_open_not_written_through() {
    let name = unique("freelist");
    let mut file = populated(&name, false);
    let r = regions(&file);
    for i in 0..8 {
        let at = r.free + 16 * i;
        file[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    }
    let path = store_path(&name);
    std::fs::write(&path, &file).expect("write damaged store");
    let mut child = Guarded(
        child_command("put-first", &name, &[])
            .spawn()
            .expect("spawn"),
    );
    let status = child.wait(Duration::from_secs(60));
    let _ = ShmStore::remove(&name);
    assert!(
        status.success(),
        "{status:?} (signal {:?})",
        status.signal()
    );
}

fn store_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(
        &std::env::var("GOS_SHM_DIR").unwrap_or_else(|_| gos_store_shm::DEFAULT_DIR.into()),
    )
    .join(format!("gos-{name}"))
}
