//! The system calls the store needs, each wrapped once: mapping a file, reserving tmpfs
//! pages, open-file-description byte locks (how dead handles are detected) and the
//! process-shared robust mutex.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use crate::error::ShmError;

/// A shared, read-write mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range, like a `Box<[u8]>` that other processes share too.
// It hands out raw pointers only; every access through them is synchronized by the store lock
// (tables) or confined to an extent that one reservation owns or that pins keep immutable.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` allows nothing but reading the base pointer and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file`, shared, with every page faulted in now (`MAP_POPULATE`),
    /// so that no put or get pays a page fault later.
    pub(crate) fn map(file: &File, len: usize) -> Result<Self, ShmError> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint), of a file we hold open;
        // it aliases no Rust object. The result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ShmError::last_os("mmap"));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| ShmError::last_os("mmap"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `Mapping::map` and nothing borrows from it any more:
        // pins and reservations hold the owning handle alive until they are dropped.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Allocates the pages of `[0, len)` of `file` now, so that the store can never SIGBUS for
/// want of tmpfs space later; a full tmpfs fails here.
pub(crate) fn fallocate(file: &File, len: u64) -> Result<(), ShmError> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| ShmError::InvalidConfig("store too large".into()))?;
    // SAFETY: plain system call on a file descriptor we own.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        return Err(ShmError::last_os("fallocate"));
    }
    Ok(())
}

/// Bytes free for an unprivileged user in the file system holding `dir`.
pub(crate) fn available_bytes(dir: &Path) -> Result<u64, ShmError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| ShmError::InvalidConfig("directory has a NUL byte".into()))?;
    // SAFETY: `statvfs` is plain old data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid out pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(ShmError::last_os("statvfs"));
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn ofd_lock(file: &File, kind: i32, start: u64, len: u64) -> io::Result<bool> {
    // SAFETY: `flock` is plain old data; all zeroes is a valid value (and l_pid must be 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: F_OFD_SETLK with a valid `flock`; the lock belongs to this open file
    // description and the kernel releases it when the description is closed (process death).
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// Tries to write-lock `len` bytes at `start` (non-blocking); false if another open file
/// description holds a lock there.
pub(crate) fn try_lock(file: &File, start: u64, len: u64) -> Result<bool, ShmError> {
    ofd_lock(file, libc::F_WRLCK, start, len).map_err(|source| ShmError::Io {
        op: "fcntl(F_OFD_SETLK)",
        source,
    })
}

/// Releases this description's lock on `len` bytes at `start`.
pub(crate) fn unlock(file: &File, start: u64, len: u64) -> Result<(), ShmError> {
    ofd_lock(file, libc::F_UNLCK, start, len)
        .map(drop)
        .map_err(|source| ShmError::Io {
            op: "fcntl(F_OFD_SETLK)",
            source,
        })
}

/// What locking the store mutex found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The previous holder unlocked it.
    Clean,
    /// The previous holder died holding it: the tables may be half changed.
    OwnerDied,
}

/// Initializes a process-shared, robust mutex at `m`.
///
/// # Safety
/// `m` points to writable memory of at least `size_of::<pthread_mutex_t>()` bytes, suitably
/// aligned, that no other thread or process uses yet.
pub(crate) unsafe fn mutex_init(m: *mut libc::pthread_mutex_t) -> Result<(), ShmError> {
    // SAFETY: `pthread_mutexattr_t` is plain old data until initialized below.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is a valid, exclusively owned attribute object; `m` is valid per the
    // caller's contract. Every return code is checked.
    unsafe {
        let rc = libc::pthread_mutexattr_init(&mut attr);
        if rc != 0 {
            return Err(ShmError::os("pthread_mutexattr_init", rc));
        }
        let mut rc = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        if rc == 0 {
            rc = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        }
        if rc == 0 {
            rc = libc::pthread_mutex_init(m, &attr);
        }
        libc::pthread_mutexattr_destroy(&mut attr);
        if rc != 0 {
            return Err(ShmError::os("pthread_mutex_init", rc));
        }
    }
    Ok(())
}

/// Locks the mutex at `m`, waiting at most `timeout`; `Ok(None)` when it timed out (its
/// holder is stopped, or very slow).
///
/// # Safety
/// `m` points to a mutex initialized by [`mutex_init`] (in memory that stays mapped).
pub(crate) unsafe fn mutex_lock(
    m: *mut libc::pthread_mutex_t,
    timeout: std::time::Duration,
) -> Result<Option<Locked>, ShmError> {
    // SAFETY: per the caller's contract; a try first, so the common case is one atomic.
    let mut rc = unsafe { libc::pthread_mutex_trylock(m) };
    if rc == libc::EBUSY {
        let deadline = realtime_after(timeout)?;
        // SAFETY: per the caller's contract; `deadline` is a valid absolute CLOCK_REALTIME
        // time, which is what `pthread_mutex_timedlock` expects.
        rc = unsafe { libc::pthread_mutex_timedlock(m, &deadline) };
    }
    match rc {
        0 => Ok(Some(Locked::Clean)),
        libc::EOWNERDEAD => Ok(Some(Locked::OwnerDied)),
        libc::ETIMEDOUT => Ok(None),
        libc::ENOTRECOVERABLE => Err(ShmError::Corrupted(
            "store lock is unrecoverable (a recovery failed)".into(),
        )),
        rc => Err(ShmError::os("pthread_mutex_lock", rc)),
    }
}

/// `CLOCK_REALTIME` now plus `d`, as a `timespec`.
fn realtime_after(d: std::time::Duration) -> Result<libc::timespec, ShmError> {
    // SAFETY: `timespec` is plain old data.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
        return Err(ShmError::last_os("clock_gettime"));
    }
    let nanos = now.tv_nsec + i64::from(d.subsec_nanos());
    let secs = i64::try_from(d.as_secs())
        .unwrap_or(i64::MAX / 2)
        .min(i64::MAX / 2)
        .saturating_add(now.tv_sec)
        .saturating_add(nanos / 1_000_000_000);
    Ok(libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos % 1_000_000_000,
    })
}

/// Marks a mutex locked after [`Locked::OwnerDied`] consistent again.
///
/// # Safety
/// The calling thread holds the mutex at `m`, acquired with `OwnerDied`.
pub(crate) unsafe fn mutex_consistent(m: *mut libc::pthread_mutex_t) -> Result<(), ShmError> {
    // SAFETY: per the caller's contract.
    let rc = unsafe { libc::pthread_mutex_consistent(m) };
    if rc != 0 {
        return Err(ShmError::os("pthread_mutex_consistent", rc));
    }
    Ok(())
}

/// Unlocks the mutex at `m`.
///
/// # Safety
/// The calling thread holds the mutex at `m`.
pub(crate) unsafe fn mutex_unlock(m: *mut libc::pthread_mutex_t) {
    // SAFETY: per the caller's contract.
    unsafe {
        libc::pthread_mutex_unlock(m);
    }
}

/// Opens an unnamed file in `dir` (`O_TMPFILE`): it has no name until [`link_into`] gives it
/// one, so a process killed before that leaves nothing behind.
pub(crate) fn open_unnamed(dir: &Path) -> Result<File, ShmError> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| ShmError::InvalidConfig("directory has a NUL byte".into()))?;
    // SAFETY: `path` is NUL-terminated; the returned descriptor is checked and then owned by
    // the `File`.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(ShmError::last_os("open(O_TMPFILE)"));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Gives the unnamed `file` the name `path`; fails with `EEXIST` if the name is taken (it is
/// never replaced).
pub(crate) fn link_into(file: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(io::Error::other)?;
    let to = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are NUL-terminated; `AT_SYMLINK_FOLLOW` links the file the magic
    // link points at (an `O_TMPFILE` file opened without `O_EXCL` may be linked).
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True if process `pid` exists (it may be an unrelated process that reused the id).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
