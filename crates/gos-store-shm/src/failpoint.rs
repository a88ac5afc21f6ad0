//! Deterministic crash points for the tests: with the `failpoints` feature, a step of a
//! metadata change named in `$GOS_SHM_FAILPOINT` ends the process right there (`_exit`, with
//! the store lock held if it is), as a SIGKILL would; one named in `$GOS_SHM_PAUSEPOINT`
//! stops the process there (it sends itself SIGSTOP), as a debugger or a frozen cgroup would.
//! Without the feature the [`failpoint!`](crate::failpoint) macro expands to nothing: zero
//! cost.

/// The steps a failpoint can stop at, in the order a put, a release and a recovery meet them.
#[cfg(feature = "failpoints")]
pub const STEPS: &[&str] = &[
    "create-formatted",
    "create-linked",
    "admit-extent-taken",
    "admit-record-reserved",
    "commit-record-written",
    "commit-record-live",
    "commit-linked",
    "commit-before-unlink-old",
    "release-before-unlink",
    "locked",
    "release-record",
    "reclaim-before-free",
    "recover-done",
];

/// The exit status of a process stopped at a failpoint.
#[cfg(feature = "failpoints")]
pub const EXIT_CODE: i32 = 86;

/// Ends the process if `name` is the failpoint `$GOS_SHM_FAILPOINT` names; stops it if it is
/// the one `$GOS_SHM_PAUSEPOINT` names (once).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    static ARMED: OnceLock<(Option<String>, Option<String>)> = OnceLock::new();
    static PAUSED: AtomicBool = AtomicBool::new(false);
    let (fail, pause) = ARMED.get_or_init(|| {
        (
            std::env::var("GOS_SHM_FAILPOINT").ok(),
            std::env::var("GOS_SHM_PAUSEPOINT").ok(),
        )
    });
    if fail.as_deref() == Some(name) {
        // SAFETY: `_exit` ends the process at once, running no destructors and releasing no
        // lock: exactly what a crash at this step leaves behind.
        unsafe { libc::_exit(EXIT_CODE) }
    }
    if pause.as_deref() == Some(name) && !PAUSED.swap(true, Ordering::Relaxed) {
        // SAFETY: stops this process until a SIGCONT; plain system call.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}

/// Marks a named step where a test may end the process (see the module docs).
#[macro_export]
#[doc(hidden)]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}
