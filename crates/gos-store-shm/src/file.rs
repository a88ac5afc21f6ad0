//! The store file's life: names, create (an unnamed file formatted then linked), open (the
//! header checked, the mapping taken, the tables checked and repaired or refused), reopen and
//! remove.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use gos_store::{Result, system_clock};

use crate::config::{DEFAULT_LOCK_TIMEOUT, ShmConfig};
use crate::error::ShmError;
use crate::layout::{Counters, Geometry, Header, LAYOUT_VERSION, MAGIC};
use crate::lock::{Inner, RawRegions};
use crate::{ShmStore, sys};

/// Where stores live unless `$GOS_SHM_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/dev/shm";

pub(crate) fn dir() -> PathBuf {
    std::env::var_os("GOS_SHM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

fn path_of(name: &str) -> std::result::Result<PathBuf, ShmError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(ShmError::InvalidName(name.to_owned()));
    }
    Ok(dir().join(format!("gos-{name}")))
}

pub(crate) fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ShmError {
    move |source| ShmError::Io { op, source }
}

/// Reads and checks the header of an open store file.
fn read_geometry(file: &File) -> std::result::Result<Geometry, ShmError> {
    let len = file.metadata().map_err(io_err("stat"))?.len();
    let mut buf = [0u8; size_of::<Header>()];
    if len < buf.len() as u64 {
        return Err(ShmError::Corrupted("file too short for a header".into()));
    }
    file.read_exact_at(&mut buf, 0).map_err(io_err("read"))?;
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
    if word(0) != MAGIC {
        return Err(ShmError::Corrupted("no store magic number".into()));
    }
    let version = (word(8) & 0xffff_ffff) as u32;
    let header_size = (word(8) >> 32) as u32;
    if version != LAYOUT_VERSION {
        return Err(ShmError::IncompatibleVersion {
            found: version,
            expected: LAYOUT_VERSION,
        });
    }
    if header_size as usize != size_of::<Header>() {
        return Err(ShmError::Corrupted(format!(
            "header of {header_size} bytes, expected {}",
            size_of::<Header>()
        )));
    }
    // SAFETY: `buf` holds `size_of::<Header>()` bytes and `Geometry` (at offset 16, as
    // `repr(C)` places it after two u32 and one u64) is plain u64 fields: any bytes are valid.
    let geometry = unsafe {
        std::ptr::read_unaligned(
            buf.as_ptr()
                .add(std::mem::offset_of!(Header, geometry))
                .cast::<Geometry>(),
        )
    };
    geometry.validate(len)?;
    Ok(geometry)
}

/// Removes the temporary files `.gos-<name>.<pid>.<n>.tmp` that creators of earlier versions
/// left when they were killed mid-create: those of processes that no longer exist, and those
/// of this process id (a previous process with the same id, as pid 1 in a container; this
/// version never names its temporary files). Returns how many were removed.
pub(crate) fn clean_stale_temporaries(name: &str) -> usize {
    let prefix = format!(".gos-{name}.");
    let Ok(entries) = std::fs::read_dir(dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".tmp"))
        else {
            continue;
        };
        let mut parts = rest.split('.');
        let (Some(pid), Some(nonce), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), nonce.parse::<u64>()) else {
            continue;
        };
        if (pid == std::process::id() || !sys::process_exists(pid))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

impl ShmStore {
    /// Creates the store `name` (a file `gos-<name>` in `/dev/shm` or `$GOS_SHM_DIR`),
    /// allocating and faulting in all of its memory now, and opens a handle on it.
    ///
    /// The file is formatted while it has no name (`O_TMPFILE`) and then linked under its
    /// name: a process killed at any moment of a create leaves nothing behind, and an opener
    /// never sees a half-written store.
    ///
    /// Errors: [`ShmError::Exists`], [`ShmError::NoSpace`] when the tmpfs is smaller than the
    /// store, [`ShmError::InvalidConfig`], [`ShmError::InvalidName`] (inside
    /// [`gos_store::Error::Backend`]).
    pub fn create(name: &str, config: ShmConfig) -> Result<ShmStore> {
        Ok(Self::create_inner(name, config)?)
    }

    fn create_inner(name: &str, config: ShmConfig) -> std::result::Result<ShmStore, ShmError> {
        let path = path_of(name)?;
        let geometry = config.geometry()?;
        clean_stale_temporaries(name);
        let dir = dir();
        let available = sys::available_bytes(&dir)?;
        if available < geometry.total_size {
            return Err(ShmError::NoSpace {
                dir: dir.display().to_string(),
                needed: geometry.total_size,
                available,
            });
        }
        if path.exists() {
            return Err(ShmError::Exists(name.to_owned()));
        }
        let file = sys::open_unnamed(&dir)?;
        let map = Self::format(&file, geometry)?;
        crate::failpoint!("create-formatted");
        // Publish the fully written file under its name at once; `linkat` refuses to replace
        // a store created meanwhile.
        sys::link_into(&file, &path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => ShmError::Exists(name.to_owned()),
            _ => ShmError::Io {
                op: "link store file",
                source: e,
            },
        })?;
        crate::failpoint!("create-linked");
        Inner::attach(path, file, map, geometry)
    }

    /// Sizes the file, allocates and maps it, and writes an empty store.
    fn format(file: &File, g: Geometry) -> std::result::Result<sys::Mapping, ShmError> {
        let len = usize::try_from(g.total_size)
            .map_err(|_| ShmError::InvalidConfig("store too large".into()))?;
        sys::fallocate(file, g.total_size).map_err(|e| match e {
            ShmError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ShmError::NoSpace {
                    dir: dir().display().to_string(),
                    needed: g.total_size,
                    available: sys::available_bytes(&dir()).unwrap_or(0),
                }
            }
            e => e,
        })?;
        let map = sys::Mapping::map(file, len)?;
        let header = map.ptr().cast::<Header>();
        // SAFETY: the mapping is `total_size` bytes, page aligned, so the header fits and is
        // aligned; the file has no name yet, so nobody else maps it.
        unsafe {
            std::ptr::addr_of_mut!((*header).geometry).write(g);
            std::ptr::addr_of_mut!((*header).counters).write(Counters::default());
            sys::mutex_init(std::ptr::addr_of_mut!((*header).mutex).cast())?;
        }
        let raw = RawRegions {
            base: map.ptr(),
            geometry: g,
        };
        // SAFETY: as above, exclusive access to a mapping laid out by `g`.
        let mut tables = unsafe { raw.tables(0) };
        tables
            .format()
            .map_err(|_| ShmError::InvalidConfig("cannot format the store".into()))?;
        // SAFETY: as above. The magic number is written last.
        unsafe {
            std::ptr::addr_of_mut!((*header).version).write(LAYOUT_VERSION);
            std::ptr::addr_of_mut!((*header).header_size).write(size_of::<Header>() as u32);
            std::ptr::addr_of_mut!((*header).magic).write(MAGIC);
        }
        Ok(map)
    }

    /// Opens the existing store `name`, as another process would.
    ///
    /// The header is checked before the file is mapped, and the tables before the handle is
    /// returned: a store that fails the invariant check is recovered (as after a crash) and
    /// refused with [`gos_store::Error::Corrupted`] if it cannot be repaired. Nothing read
    /// from the file is trusted; a damaged file gives a typed error, never undefined
    /// behaviour.
    ///
    /// Errors: [`ShmError::NotFound`], [`ShmError::IncompatibleVersion`] for a store of
    /// another layout (such as version 1, which kept no reader counts or leases),
    /// [`ShmError::NoSlot`] when every handle slot is held by a live handle,
    /// [`gos_store::Error::Corrupted`], [`gos_store::Error::Busy`] when the store lock is
    /// held past the lock timeout.
    pub fn open(name: &str) -> Result<ShmStore> {
        Ok(Self::open_inner(name)?)
    }

    fn open_inner(name: &str) -> std::result::Result<ShmStore, ShmError> {
        let path = path_of(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => ShmError::NotFound(name.to_owned()),
                _ => ShmError::Io {
                    op: "open store file",
                    source: e,
                },
            })?;
        Self::open_file(path, file)
    }

    /// Opens another, independent handle on this store (its own slot, its own mapping), as
    /// another process would; it works after [`ShmStore::remove`] too. It keeps this handle's
    /// clock and lock timeout.
    pub fn reopen(&self) -> Result<ShmStore> {
        let fd = format!("/proc/self/fd/{}", self.inner.file.as_raw_fd());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(fd)
            .map_err(io_err("reopen store file"))?;
        let store = Self::open_file(self.inner.path.clone(), file)?;
        Ok(store
            .with_clock(Arc::clone(&self.clock))
            .with_lock_timeout(self.inner.lock_timeout()))
    }

    fn open_file(path: PathBuf, file: File) -> std::result::Result<ShmStore, ShmError> {
        let geometry = read_geometry(&file)?;
        let len = usize::try_from(geometry.total_size)
            .map_err(|_| ShmError::Corrupted("store too large".into()))?;
        let map = sys::Mapping::map(&file, len)?;
        Inner::attach(path, file, map, geometry)
    }

    /// Removes the store `name` from the file system; true if it existed. Handles already
    /// open keep working on their mapping until dropped; the memory is freed with the last.
    pub fn remove(name: &str) -> Result<bool> {
        let path = path_of(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ShmError::Io {
                op: "remove store file",
                source,
            }
            .into()),
        }
    }

    /// Removes the store `name` if no live process has it open (all died, or all closed it);
    /// true if it was removed. Stale temporary files of interrupted creates by earlier
    /// versions are removed too.
    pub fn remove_if_abandoned(name: &str) -> Result<bool> {
        let path = path_of(name)?;
        clean_stale_temporaries(name);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(ShmError::Io {
                    op: "open store file",
                    source,
                }
                .into());
            }
        };
        let geometry = read_geometry(&file)?;
        if !sys::try_lock(&file, 0, geometry.max_slots)? {
            return Ok(false);
        }
        Self::remove(name)
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    /// Checks the tables (repairing or refusing a damaged store), takes a slot for this
    /// handle and wraps it.
    pub(crate) fn attach(
        path: PathBuf,
        file: File,
        map: sys::Mapping,
        geometry: Geometry,
    ) -> std::result::Result<ShmStore, ShmError> {
        if (map.len() as u64) < geometry.total_size {
            return Err(ShmError::Corrupted("mapping shorter than the store".into()));
        }
        let mut inner = Inner {
            path,
            file,
            map,
            geometry,
            slot: u32::MAX,
            lock_timeout: AtomicU64::new(DEFAULT_LOCK_TIMEOUT.as_nanos() as u64),
        };
        let slot = {
            let mut guard = inner.lock()?;
            guard.check_or_repair()?;
            match guard.take_free_slot()? {
                Some(slot) => slot,
                None => {
                    guard.reclaim_dead()?;
                    guard
                        .take_free_slot()?
                        .ok_or(ShmError::NoSlot(geometry.max_slots))?
                }
            }
        };
        inner.slot = slot;
        Ok(ShmStore {
            inner: Arc::new(inner),
            clock: system_clock(),
        })
    }
}
