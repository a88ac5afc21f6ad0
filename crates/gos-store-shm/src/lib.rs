//! `ShmStore`: the shared-memory [`ObjectStore`] of GOS, for many processes on one host.
//!
//! A store is one file on a tmpfs (`/dev/shm/gos-<name>`, or under `$GOS_SHM_DIR`) that every
//! process maps. A put copies the value once into memory that was faulted in when the store was
//! created; a get returns a [`Bytes`] that points into the mapping (no copy) and pins the value
//! until the `Bytes` and its clones are dropped. A delete or overwrite hides the old value from
//! new readers at once and frees its memory with the last pin. [`ObjectStore::reserve`] hands
//! out a buffer inside the shared memory itself, so a producer serializes with no copy at all.
//!
//! A process killed at any moment leaves no partial value, and its pins and reservations are
//! given back: every handle holds a lock the kernel drops when the process dies, and the store
//! lock is a robust mutex whose next holder repairs what a dead holder left half done.
//! `docs/shm.md` describes the layout, an object's life and the recovery.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use bytes::Bytes;
//! use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt};
//! use gos_store_shm::{ShmConfig, ShmStore};
//!
//! let name = format!("doc-example-{}", std::process::id());
//! let store = ShmStore::create(&name, ShmConfig::new(Limits::with_capacity(1 << 20)))?;
//! let key = ObjectKey::round("fed", "node_1", 1)?;
//! store.put(&key, Bytes::from_static(b"weights")).await?;
//!
//! // Another process would call `ShmStore::open(&name)`.
//! let other = ShmStore::open(&name)?;
//! let value = other.get(&key).await?.expect("present");
//! assert!(store.delete(&key).await?);
//! assert_eq!(&value[..], b"weights"); // still pinned, still intact
//! ShmStore::remove(&name)?;
//! # Ok::<(), gos_store::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs, unreachable_pub)]

mod alloc;
mod error;
mod layout;
mod sys;
mod table;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutMode, PutOptions, Readers,
    ReleaseOutcome, Reservation, Result, StoreStats,
};

pub use error::ShmError;
pub use table::ShmReport;

use layout::{
    ALIGN, Counters, Extent, Geometry, Header, LAYOUT_VERSION, MAGIC, Record, SLOT_FREE,
    SLOT_IN_USE, Slot,
};
use table::{Refusal, Tables};

/// Where stores live unless `$GOS_SHM_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/dev/shm";

/// How to lay out a new store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmConfig {
    limits: Limits,
    arena_bytes: Option<u64>,
    max_processes: u32,
    max_objects: Option<u32>,
}

impl ShmConfig {
    /// A store enforcing `limits`, with an arena of twice the capacity (room for an overwrite
    /// of a value while readers pin the old one), 64 handles and records for
    /// `min(2 * max_entries + 64, 4096)` objects.
    pub fn new(limits: Limits) -> Self {
        ShmConfig {
            limits,
            arena_bytes: None,
            max_processes: 64,
            max_objects: None,
        }
    }

    /// Sets the size of the arena the values live in (all of it is allocated and faulted in
    /// at create). The capacity limit is checked against the bytes of live values; the arena
    /// also holds values being written and values deleted while pinned.
    pub fn arena_bytes(mut self, bytes: u64) -> Self {
        self.arena_bytes = Some(bytes);
        self
    }

    /// Sets how many handles (processes, or `open` calls) may use the store at once.
    pub fn max_processes(mut self, n: u32) -> Self {
        self.max_processes = n;
        self
    }

    /// Sets how many objects (live, pinned after delete, or reserved) the store can track.
    pub fn max_objects(mut self, n: u32) -> Self {
        self.max_objects = Some(n);
        self
    }

    fn geometry(&self) -> std::result::Result<Geometry, ShmError> {
        let objects = self.max_objects.unwrap_or_else(|| {
            self.limits
                .max_entries
                .saturating_mul(2)
                .saturating_add(64)
                .min(4096) as u32
        });
        let arena = match self.arena_bytes {
            Some(bytes) => bytes,
            None => self
                .limits
                .capacity_bytes
                .checked_mul(2)
                .and_then(|b| b.checked_add(u64::from(objects) * ALIGN))
                .filter(|&b| b < 1 << 48)
                .ok_or_else(|| {
                    ShmError::InvalidConfig(
                        "the capacity is too large to double into an arena: set arena_bytes".into(),
                    )
                })?,
        };
        Geometry::new(self.limits, arena, self.max_processes, objects)
    }
}

/// A handle on a shared-memory store. Cheap to clone (clones share one process slot); open
/// another handle with [`ShmStore::open`].
#[derive(Clone)]
pub struct ShmStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for ShmStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmStore")
            .field("path", &self.inner.path)
            .field("slot", &self.inner.slot)
            .finish_non_exhaustive()
    }
}

/// One mapping of the store file, holding one slot.
struct Inner {
    path: PathBuf,
    file: File,
    map: sys::Mapping,
    geometry: Geometry,
    slot: u32,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn dir() -> PathBuf {
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

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ShmError {
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

impl ShmStore {
    /// Creates the store `name` (a file `gos-<name>` in `/dev/shm` or `$GOS_SHM_DIR`),
    /// allocating and faulting in all of its memory now, and opens a handle on it.
    ///
    /// Errors: [`ShmError::Exists`], [`ShmError::NoSpace`] when the tmpfs is smaller than the
    /// store, [`ShmError::InvalidConfig`], [`ShmError::InvalidName`] (inside
    /// [`Error::Backend`]).
    pub fn create(name: &str, config: ShmConfig) -> Result<ShmStore> {
        Ok(Self::create_inner(name, config)?)
    }

    fn create_inner(name: &str, config: ShmConfig) -> std::result::Result<ShmStore, ShmError> {
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let path = path_of(name)?;
        let geometry = config.geometry()?;
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
        let tmp = dir.join(format!(
            ".gos-{name}.{}.{}.tmp",
            std::process::id(),
            NONCE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create store file"))?;
        let result = Self::format(&file, geometry).and_then(|map| {
            // Publish the fully written file under its name at once; `link` refuses to
            // replace a store created meanwhile.
            std::fs::hard_link(&tmp, &path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => ShmError::Exists(name.to_owned()),
                _ => ShmError::Io {
                    op: "link store file",
                    source: e,
                },
            })?;
            Ok(map)
        });
        let _ = std::fs::remove_file(&tmp);
        let map = result?;
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
        // aligned; the file is not yet visible under its name, so nobody else maps it.
        unsafe {
            std::ptr::addr_of_mut!((*header).geometry).write(g);
            std::ptr::addr_of_mut!((*header).counters).write(Counters::default());
            sys::mutex_init(std::ptr::addr_of_mut!((*header).mutex).cast())?;
        }
        let inner = RawRegions {
            base: map.ptr(),
            geometry: g,
        };
        // SAFETY: as above, exclusive access to a mapping laid out by `g`.
        let mut tables = unsafe { inner.tables() };
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
    /// Errors: [`ShmError::NotFound`], [`ShmError::IncompatibleVersion`] for a store of
    /// another layout, [`ShmError::NoSlot`] when every handle slot is held by a live handle.
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
    /// another process would; it works after [`ShmStore::remove`] too.
    pub fn reopen(&self) -> Result<ShmStore> {
        let fd = format!("/proc/self/fd/{}", self.inner.file.as_raw_fd());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(fd)
            .map_err(io_err("reopen store file"))?;
        Ok(Self::open_file(self.inner.path.clone(), file)?)
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
    /// true if it was removed.
    pub fn remove_if_abandoned(name: &str) -> Result<bool> {
        let path = path_of(name)?;
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

    /// Gives back the pins and reservations of every handle whose process died; returns how
    /// many handles were reclaimed. Stores do this by themselves when they run out of room and
    /// when a process dies holding the store lock; call it to get the capacity back sooner.
    pub fn reclaim_dead(&self) -> Result<usize> {
        let mut guard = self.inner.lock()?;
        Ok(guard.reclaim_dead()?)
    }

    /// Checks every invariant of the store's tables and returns a summary (a test and
    /// debugging aid: it scans every record under the store lock).
    pub fn check(&self) -> Result<ShmReport> {
        let mut guard = self.inner.lock()?;
        guard.tables().check().map_err(Error::Corrupted)
    }

    fn admit(&self, len: usize, key: Option<(&ObjectKey, PutMode)>) -> Result<ShmReservation> {
        let len = len as u64;
        let key_bytes = key.map(|(k, mode)| (k.as_str().as_bytes(), mode));
        let slot = self.inner.slot;
        let admitted = self.inner.with_reclaim(|t| t.admit(slot, len, key_bytes))?;
        Ok(ShmReservation {
            inner: Arc::clone(&self.inner),
            key: None,
            options: PutOptions::new(),
            id: admitted.id,
            offset: admitted.offset,
            len: len as usize,
            committed: false,
        })
    }
}

/// Base and geometry of a mapping: where the tables are.
struct RawRegions {
    base: *mut u8,
    geometry: Geometry,
}

impl RawRegions {
    /// The tables of the store.
    ///
    /// # Safety
    /// `base` maps `geometry.total_size` bytes laid out by `geometry` (validated), and the
    /// caller has exclusive access to the tables (holds the store lock, or the store is not
    /// yet published) for as long as the returned value lives.
    unsafe fn tables<'a>(&self) -> Tables<'a> {
        let g = self.geometry;
        let at = |offset: u64| {
            // SAFETY: every offset of a validated geometry lies inside the mapping.
            unsafe { self.base.add(offset as usize) }
        };
        let header = self.base.cast::<Header>();
        // SAFETY: per the function contract: each region is inside the mapping, aligned to a
        // page (so to its element type), sized for its element count, and disjoint from the
        // others and from the mutex; every element type is plain integers, valid for any bytes.
        unsafe {
            Tables {
                geometry: g,
                counters: &mut *std::ptr::addr_of_mut!((*header).counters),
                slots: std::slice::from_raw_parts_mut(
                    at(g.slots_offset).cast::<Slot>(),
                    g.max_slots as usize,
                ),
                records: std::slice::from_raw_parts_mut(
                    at(g.records_offset).cast::<Record>(),
                    g.max_objects as usize,
                ),
                buckets: std::slice::from_raw_parts_mut(
                    at(g.buckets_offset).cast::<u32>(),
                    g.n_buckets as usize,
                ),
                pins: std::slice::from_raw_parts_mut(
                    at(g.pins_offset).cast::<u32>(),
                    (g.max_objects * g.max_slots) as usize,
                ),
                free: std::slice::from_raw_parts_mut(
                    at(g.free_offset).cast::<Extent>(),
                    g.max_objects as usize + 2,
                ),
            }
        }
    }
}

/// The store lock, held.
struct Guard<'a> {
    inner: &'a Inner,
}

impl Guard<'_> {
    fn tables(&mut self) -> Tables<'_> {
        let raw = RawRegions {
            base: self.inner.map.ptr(),
            geometry: self.inner.geometry,
        };
        // SAFETY: the geometry was validated against the mapping at open, and this guard holds
        // the store lock for as long as the tables borrow it (`&mut self`).
        unsafe { raw.tables() }
    }

    /// Reclaims the slot of every handle whose open file description is gone.
    fn reclaim_dead(&mut self) -> std::result::Result<usize, ShmError> {
        let own = self.inner.slot;
        let mut reclaimed = 0;
        for slot in 0..self.inner.geometry.max_slots as u32 {
            if slot == own || self.tables().slots[slot as usize].state == SLOT_FREE {
                continue;
            }
            if sys::try_lock(&self.inner.file, u64::from(slot), 1)? {
                // Nobody holds the slot's lock: its handle is gone.
                let result = self.tables().reclaim_slot(slot);
                sys::unlock(&self.inner.file, u64::from(slot), 1)?;
                result.map_err(refusal_corrupt)?;
                reclaimed += 1;
            }
        }
        Ok(reclaimed)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the mutex, which lives in the mapping `inner` keeps alive.
        unsafe { sys::mutex_unlock(self.inner.mutex()) }
    }
}

fn refusal_corrupt(r: Refusal) -> ShmError {
    match r {
        Refusal::Corrupt(what) => ShmError::Corrupted(what),
        other => ShmError::Corrupted(format!("{other:?}")),
    }
}

impl Inner {
    /// Takes a slot for this handle and wraps it.
    fn attach(
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
        };
        let slot = {
            let mut guard = inner.lock()?;
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
        })
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        let header = self.map.ptr().cast::<Header>();
        // SAFETY: the header lies at the start of the mapping.
        unsafe { std::ptr::addr_of_mut!((*header).mutex).cast() }
    }

    fn lock(&self) -> std::result::Result<Guard<'_>, ShmError> {
        // SAFETY: the mutex was initialized at create, before the file got its name.
        let state = unsafe { sys::mutex_lock(self.mutex()) }?;
        let mut guard = Guard { inner: self };
        if state == sys::Locked::OwnerDied {
            // The holder died mid-change: rebuild everything derived from the records, give
            // back dead handles' pins and reservations, then mark the lock consistent.
            let recovered = guard.tables().recover().map_err(refusal_corrupt);
            let reclaimed = guard.reclaim_dead();
            // SAFETY: we hold the mutex, acquired with EOWNERDEAD.
            unsafe { sys::mutex_consistent(self.mutex()) }?;
            recovered?;
            reclaimed?;
        }
        Ok(guard)
    }

    /// Runs `op` under the lock; when it is refused for want of room, reclaims dead handles
    /// and, if any were, runs it once more.
    fn with_reclaim<T>(
        &self,
        mut op: impl FnMut(&mut Tables<'_>) -> std::result::Result<T, Refusal>,
    ) -> Result<T> {
        let mut guard = self.lock()?;
        let first = op(&mut guard.tables());
        let refusal = match first {
            Ok(value) => return Ok(value),
            Err(
                r @ (Refusal::NoRoom { .. }
                | Refusal::NoRecord
                | Refusal::Limit(Error::StoreFull { .. })),
            ) => r,
            Err(r) => return Err(self.refused(r)),
        };
        if guard.reclaim_dead()? == 0 {
            return Err(self.refused(refusal));
        }
        op(&mut guard.tables()).map_err(|r| self.refused(r))
    }

    fn refused(&self, r: Refusal) -> Error {
        match r {
            Refusal::Limit(e) => e,
            Refusal::NoRoom { requested, largest } => Error::StoreFull {
                requested,
                available: largest,
            },
            Refusal::NoRecord => ShmError::NoRecord(self.geometry.max_objects).into(),
            Refusal::Corrupt(what) => Error::Corrupted(what),
        }
    }

    /// The arena's first byte.
    fn arena(&self) -> *mut u8 {
        // SAFETY: the arena offset of a validated geometry lies inside the mapping.
        unsafe { self.map.ptr().add(self.geometry.arena_offset as usize) }
    }
}

impl Guard<'_> {
    fn take_free_slot(&mut self) -> std::result::Result<Option<u32>, ShmError> {
        for slot in 0..self.inner.geometry.max_slots as u32 {
            if self.tables().slots[slot as usize].state != SLOT_FREE {
                continue;
            }
            if sys::try_lock(&self.inner.file, u64::from(slot), 1)? {
                self.tables().take_slot(slot, std::process::id());
                debug_assert_eq!(self.tables().slots[slot as usize].state, SLOT_IN_USE);
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.slot == u32::MAX {
            return;
        }
        // Give back anything left (nothing, unless a pin guard or reservation leaked) and the
        // slot, then let the file close drop the slot lock.
        if let Ok(mut guard) = self.lock() {
            let slot = self.slot;
            let _ = guard.tables().reclaim_slot(slot);
        }
    }
}

/// Keeps one pin on a value; the `Bytes` returned by `get` owns it.
struct PinGuard {
    inner: Arc<Inner>,
    id: u32,
    offset: u64,
    len: usize,
}

impl AsRef<[u8]> for PinGuard {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the extent `[offset, offset + len)` was checked to lie in the arena; it was
        // committed before the pin was taken (under the lock, so its bytes happen-before this
        // read), and a pinned extent is never written or freed. `inner` keeps it mapped.
        unsafe {
            std::slice::from_raw_parts(self.inner.arena().add(self.offset as usize), self.len)
        }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.inner.lock() {
            let slot = self.inner.slot;
            let _ = guard.tables().unpin(slot, self.id);
        }
    }
}

/// A buffer inside the shared arena, from [`ObjectStore::reserve`] on a [`ShmStore`].
/// Committing publishes it without a copy; dropping it uncommitted frees it.
pub struct ShmReservation {
    inner: Arc<Inner>,
    key: Option<ObjectKey>,
    options: PutOptions,
    id: u32,
    offset: u64,
    len: usize,
    committed: bool,
}

impl fmt::Debug for ShmReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmReservation")
            .field("len", &self.len)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl ShmReservation {
    fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: the extent was allocated to this reservation alone (no reader can reach a
        // reserved record); it lies in the arena, which `inner` keeps mapped; `&mut self`
        // makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(self.inner.arena().add(self.offset as usize), self.len)
        }
    }

    fn commit_inner(&mut self, key: &ObjectKey, mode: PutMode) -> Result<()> {
        let slot = self.inner.slot;
        let id = self.id;
        self.inner.with_reclaim(|t| t.commit(slot, id, key, mode))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ShmReservation {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Ok(mut guard) = self.inner.lock() {
            let slot = self.inner.slot;
            let _ = guard.tables().abandon(slot, self.id);
        }
    }
}

#[async_trait]
impl Reservation for ShmReservation {
    fn len(&self) -> usize {
        self.len
    }

    fn key(&self) -> &ObjectKey {
        self.key
            .as_ref()
            .expect("a reservation handed out has its key")
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.slice_mut()
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let key = self
            .key
            .clone()
            .expect("a reservation handed out has its key");
        let mode = self.options.mode;
        self.commit_inner(&key, mode)
    }
}

impl ShmStore {
    fn put_sync(&self, key: &ObjectKey, value: &[u8], mode: PutMode) -> Result<()> {
        self.inner
            .geometry
            .limits()
            .check_value_size(value.len() as u64)?;
        let mut reservation = self.admit(value.len(), Some((key, mode)))?;
        reservation.slice_mut().copy_from_slice(value);
        reservation.commit_inner(key, mode)
    }

    fn get_sync(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let slot = self.inner.slot;
        let pinned = {
            let mut guard = self.inner.lock()?;
            guard.tables().pin(slot, key.as_str().as_bytes())
        };
        let Some(pinned) = pinned else {
            return Ok(None);
        };
        let guard = PinGuard {
            inner: Arc::clone(&self.inner),
            id: pinned.id,
            offset: pinned.offset,
            len: pinned.len as usize,
        };
        let in_bounds = pinned
            .offset
            .checked_add(pinned.len)
            .is_some_and(|end| end <= self.inner.geometry.arena_size);
        if !in_bounds {
            return Err(Error::Corrupted(format!(
                "record {} points outside the arena",
                pinned.id
            )));
        }
        Ok(Some(Bytes::from_owner(guard)))
    }
}

#[async_trait]
impl ObjectStore for ShmStore {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        provisional_check(options)?;
        self.put_sync(key, &value, options.mode)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        self.get_sync(key)
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        // PROVISIONAL (layout v2 keeps counts and leases in the record): pins briefly.
        Ok(self
            .get_sync(key)?
            .map(|v| ObjectMeta::new(v.len() as u64, Readers::Unbounded, None)))
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        // PROVISIONAL: this layout keeps no counts, so every object is unbounded.
        Ok(if self.get_sync(key)?.is_some() {
            ReleaseOutcome::Unbounded
        } else {
            ReleaseOutcome::NotFound
        })
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        // PROVISIONAL: one key at a time.
        let prefix = KeyPrefix::federation(fed_id)?;
        let mut removed = 0;
        for key in self.keys_with_prefix(&prefix).await? {
            if key.is_round_before(fed_id, round) && self.delete(&key).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn sweep(&self) -> Result<usize> {
        // PROVISIONAL: no leases in this layout.
        Ok(0)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        let mut guard = self.inner.lock()?;
        guard
            .tables()
            .delete(key.as_str().as_bytes())
            .map_err(|r| self.inner.refused(r))
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        let mut guard = self.inner.lock()?;
        Ok(guard.tables().keys(prefix))
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        let mut guard = self.inner.lock()?;
        guard
            .tables()
            .delete_prefix(prefix)
            .map_err(|r| self.inner.refused(r))
    }

    async fn len(&self) -> Result<usize> {
        let mut guard = self.inner.lock()?;
        Ok(guard.tables().counters.entries as usize)
    }

    async fn stats(&self) -> Result<StoreStats> {
        let mut guard = self.inner.lock()?;
        Ok(guard.tables().stats())
    }

    fn limits(&self) -> Limits {
        self.inner.geometry.limits()
    }

    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        provisional_check(options)?;
        self.inner.geometry.limits().check_value_size(len as u64)?;
        let mut reservation = self.admit(len, None)?;
        reservation.key = Some(key.clone());
        reservation.options = *options;
        Ok(Box::new(reservation))
    }
}

/// PROVISIONAL until layout v2: refuses the options this layout cannot keep.
fn provisional_check(options: &PutOptions) -> Result<()> {
    if options.readers != Readers::Unbounded || options.lease.is_some() {
        return Err(Error::InvalidArgument(
            "this shm layout keeps no reader counts or leases yet".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gos_store::ObjectStoreExt;

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
        assert_eq!(other.limits(), Limits::with_capacity(1 << 16));
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
}
