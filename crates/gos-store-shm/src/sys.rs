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

/// Locks the mutex at `m`.
///
/// # Safety
/// `m` points to a mutex initialized by [`mutex_init`] (in memory that stays mapped).
pub(crate) unsafe fn mutex_lock(m: *mut libc::pthread_mutex_t) -> Result<Locked, ShmError> {
    // SAFETY: per the caller's contract.
    let rc = unsafe { libc::pthread_mutex_lock(m) };
    match rc {
        0 => Ok(Locked::Clean),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        libc::ENOTRECOVERABLE => Err(ShmError::Corrupted(
            "store lock is unrecoverable (a recovery failed)".into(),
        )),
        rc => Err(ShmError::os("pthread_mutex_lock", rc)),
    }
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
