//! Helpers of the tests that run child processes: this test binary re-executes itself (its
//! `child` test, with `GOS_SHM_TEST_ROLE` set) and the parent waits for it with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gos_store::Limits;
use gos_store_shm::{ShmConfig, ShmStore};

/// The variable that tells a re-executed test binary which role its `child` test plays.
pub const ROLE: &str = "GOS_SHM_TEST_ROLE";
/// The store a child opens.
pub const STORE: &str = "GOS_SHM_TEST_STORE";
/// The arena size of a store a `create` child makes.
pub const ARENA: &str = "GOS_SHM_TEST_ARENA";

/// A unique store name for `test`.
pub fn unique(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// This test binary as a child playing `role` on `store`, with extra environment.
pub fn child_command(role: &str, store: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(STORE, store)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A child process killed (SIGKILL) and reaped when dropped, whatever the test did.
pub struct Guarded(pub Child);

impl Guarded {
    /// Waits for the child to end, at most `timeout` (then kills it and panics).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("child did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid");
        // SAFETY: plain system call to a child we own (not yet reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small xorshift generator: the tests' randomness, reproducible from a seed.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A current-thread tokio runtime with timers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// The layout of the tests' stores: 4 MiB, 64 entries, a 16 MiB arena, 8 handles.
pub fn config() -> ShmConfig {
    ShmConfig::new(Limits::with_capacity(4 << 20).max_entries(64))
        .arena_bytes(16 << 20)
        .max_processes(8)
}

/// The child roles `create` (the store `name`, arena from [`ARENA`]) and `open-check` (open
/// and check every invariant).
pub fn create_roles(role: &str, name: &str) {
    match role {
        "create" => {
            let arena = std::env::var(ARENA)
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or(16 << 20);
            let store = ShmStore::create(name, config().arena_bytes(arena)).expect("create");
            println!("CREATED");
            drop(store);
        }
        "open-check" => {
            let store = ShmStore::open(name).expect("open");
            store.check().expect("a complete, consistent store");
        }
        other => panic!("unknown role {other}"),
    }
}

/// A private directory on a tmpfs for stores created by children (`GOS_SHM_DIR`).
pub struct PrivateDir(pub PathBuf);

impl PrivateDir {
    pub fn new(test: &str) -> Self {
        let dir = Path::new(gos_store_shm::DEFAULT_DIR).join(unique(&format!("gos-test-{test}")));
        std::fs::create_dir(&dir).expect("mkdir");
        PrivateDir(dir)
    }

    pub fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }

    /// Checks in a child that the store `s` created there is whole (opens, every invariant
    /// holds), then removes it.
    pub fn check_and_remove_store(&self, what: &str) {
        let mut check = Guarded(
            child_command("open-check", "s", &self.env())
                .spawn()
                .expect("spawn"),
        );
        assert!(
            check.wait(Duration::from_secs(60)).success(),
            "{what}: a linked store is whole"
        );
        std::fs::remove_file(self.0.join("gos-s")).expect("remove");
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("GOS_SHM_DIR", self.0.display().to_string())]
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
