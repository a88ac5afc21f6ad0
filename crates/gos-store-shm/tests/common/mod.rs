//! Helpers of the tests that run child processes: this test binary re-executes itself (its
//! `child` test, with `GOS_SHM_TEST_ROLE` set) and the parent waits for it with a deadline.

#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The variable that tells a re-executed test binary which role its `child` test plays.
pub const ROLE: &str = "GOS_SHM_TEST_ROLE";
/// The store a child opens.
pub const STORE: &str = "GOS_SHM_TEST_STORE";

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
