//! The store classes: `Store` (every operation, GIL released during each) and its
//! constructors `MemoryStore`, `ShmStore` and `RemoteStore`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use gos::gateway::{AllowList, ClientConfig, RemoteStore as GatewayStore, Timeouts, TlsSettings};
use gos::shm::{ShmConfig, ShmStore as RustShmStore};
use gos::store::{
    KeyPrefix, Limits, ObjectKey, ObjectStore, PutMode, PutOptions, Readers, ReleaseOutcome,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::buffer::{ResCell, Reservation, Value, input, input_bytes};
use crate::errors::{ForkedHandleError, IntoPy, InvalidArgumentError, gateway_to_py, to_py};

/// How a store's futures run: memory and shm stores complete at once on the calling thread;
/// a remote store needs its tokio runtime.
#[derive(Clone, Debug)]
pub(crate) enum Exec {
    Inline,
    Tokio(Arc<tokio::runtime::Runtime>),
}

impl Exec {
    pub(crate) fn run<F: Future>(&self, f: F) -> F::Output {
        match self {
            Exec::Inline => futures::executor::block_on(f),
            Exec::Tokio(rt) => rt.block_on(f),
        }
    }
}

/// Refuses a handle made in another process: after a fork the child must open its own.
pub(crate) fn check_pid(pid: u32) -> PyResult<()> {
    let now = std::process::id();
    if now == pid {
        Ok(())
    } else {
        Err(ForkedHandleError::new_err(format!(
            "this handle was opened in process {pid} and cannot be used in process {now} \
             (a forked child): open the store again in the child (ShmStore.open(name), \
             RemoteStore.connect(...)); a MemoryStore is private to its process"
        )))
    }
}

pub(crate) fn parse_key(key: &str) -> PyResult<ObjectKey> {
    ObjectKey::new(key).map_err(|e| to_py(e.into()))
}

fn parse_prefix(prefix: &str) -> PyResult<KeyPrefix> {
    KeyPrefix::new(prefix).map_err(|e| to_py(e.into()))
}

/// The options of a put or a reservation from the Python keywords.
pub(crate) fn put_options(
    readers: Option<u32>,
    lease: Option<f64>,
    create: bool,
) -> PyResult<PutOptions> {
    let mut options = PutOptions::new();
    if create {
        options = options.mode(PutMode::Create);
    }
    if let Some(n) = readers {
        let readers = Readers::exactly(n).ok_or_else(|| {
            InvalidArgumentError::new_err("invalid argument: readers must be at least 1")
        })?;
        options = options.with_readers(readers);
    }
    if let Some(secs) = lease {
        if !(secs.is_finite() && secs > 0.0 && secs <= 365.0 * 86_400.0) {
            return Err(InvalidArgumentError::new_err(
                "invalid argument: lease must be a number of seconds, more than 0 and at most a year",
            ));
        }
        options = options.lease(Duration::from_secs_f64(secs));
    }
    Ok(options)
}

fn limits(capacity: Option<u64>, max_entries: Option<u64>, max_value: Option<u64>) -> Limits {
    let mut limits = Limits::UNLIMITED;
    if let Some(c) = capacity {
        limits.capacity_bytes = c;
    }
    if let Some(n) = max_entries {
        limits.max_entries = n;
    }
    if let Some(v) = max_value {
        limits.max_value_size = v;
    }
    limits
}

/// The outcome of a `release`: `kind` is `"remaining"` (then `remaining` readers are left),
/// `"deleted"` (this was the last one), `"unbounded"` (put without a count: nothing changed)
/// or `"not_found"`.
#[pyclass(module = "gos._gos", frozen, eq)]
#[derive(PartialEq, Eq, Debug)]
pub(crate) struct Released {
    #[pyo3(get)]
    kind: &'static str,
    #[pyo3(get)]
    remaining: u32,
}

#[pymethods]
impl Released {
    /// True if this release deleted the object.
    #[getter]
    fn deleted(&self) -> bool {
        self.kind == "deleted"
    }

    fn __repr__(&self) -> String {
        format!(
            "Released(kind={:?}, remaining={})",
            self.kind, self.remaining
        )
    }
}

impl From<ReleaseOutcome> for Released {
    fn from(o: ReleaseOutcome) -> Self {
        let (kind, remaining) = match o {
            ReleaseOutcome::Remaining(n) => ("remaining", n.get()),
            ReleaseOutcome::Deleted => ("deleted", 0),
            ReleaseOutcome::NotFound => ("not_found", 0),
            _ => ("unbounded", 0),
        };
        Released { kind, remaining }
    }
}

/// A handle on a store: every operation of the Rust `ObjectStore`, synchronous, with the GIL
/// released while it runs. Make one with `MemoryStore(...)`, `ShmStore.create/open(...)` or
/// `RemoteStore.connect(...)`.
#[pyclass(module = "gos._gos", subclass, frozen)]
pub(crate) struct Store {
    inner: Arc<dyn ObjectStore>,
    exec: Exec,
    pid: u32,
    kind: &'static str,
}

impl Store {
    fn new(inner: Arc<dyn ObjectStore>, exec: Exec, kind: &'static str) -> Store {
        Store {
            inner,
            exec,
            pid: std::process::id(),
            kind,
        }
    }

    /// Runs a store operation with the GIL released, after the fork check.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn ObjectStore, &Exec) -> gos::store::Result<T> + Send,
    ) -> PyResult<T> {
        check_pid(self.pid)?;
        let store = &*self.inner;
        let exec = &self.exec;
        py.detach(move || f(store, exec)).py_err()
    }

    pub(crate) fn reserve_cell(
        &self,
        py: Python<'_>,
        key: &ObjectKey,
        n: usize,
        options: &PutOptions,
    ) -> PyResult<ResCell> {
        check_pid(self.pid)?;
        let store = self.inner.clone();
        let exec = &self.exec;
        py.detach(move || ResCell::reserve(store, exec, key, n, options))
            .py_err()
    }

    pub(crate) fn exec(&self) -> &Exec {
        &self.exec
    }
}

/// In a forked child, an inherited handle is the parent's: dropping the last reference there
/// would give the parent's slot back in the shared store (and join a tokio runtime whose
/// threads the child does not have). The child leaks its copy instead.
impl Drop for Store {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            std::mem::forget(self.inner.clone());
            std::mem::forget(self.exec.clone());
        }
    }
}

#[pymethods]
impl Store {
    /// Stores a copy of `value` (any C-contiguous buffer: bytes, bytearray, memoryview, a
    /// numpy array of any dtype) under `key`: one copy, straight into the store's memory.
    /// `readers=n`: the n-th `release` deletes it; `lease=secs`: it expires after that long;
    /// `create=True`: refuse (AlreadyExistsError) if the key exists.
    #[pyo3(signature = (key, value, *, readers=None, lease=None, create=false))]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        readers: Option<u32>,
        lease: Option<f64>,
        create: bool,
    ) -> PyResult<()> {
        let key = parse_key(key)?;
        let options = put_options(readers, lease, create)?;
        let buf = input(value)?;
        let mut cell = self.reserve_cell(py, &key, buf.len_bytes(), &options)?;
        let exec = &self.exec;
        let data = input_bytes(&buf);
        py.detach(move || {
            cell.write_at(0, data);
            cell.commit(exec)
        })
        .py_err()
    }

    /// The value under `key` as a read-only `Value` (no copy), or None. With `verify=True`
    /// the bytes are checked against the digest the store keeps beside them (one pass over
    /// the value, GIL released): `CorruptedError` if they differ.
    #[pyo3(signature = (key, *, verify=false))]
    fn get(&self, py: Python<'_>, key: &str, verify: bool) -> PyResult<Option<Value>> {
        let key = parse_key(key)?;
        let value = if verify {
            self.call(py, |s, e| {
                let Some((value, digest)) = e.run(s.get_digested(&key))? else {
                    return Ok(None);
                };
                digest.verify(&value)?;
                Ok(Some(value))
            })?
        } else {
            self.call(py, |s, e| e.run(s.get(&key)))?
        };
        Ok(value.map(Value::new))
    }

    /// Reserves `n` bytes for `key` (the same options as `put`): fill the returned
    /// `Reservation` through the buffer protocol, then `commit()` it.
    #[pyo3(signature = (key, n, *, readers=None, lease=None, create=false))]
    fn reserve(
        &self,
        py: Python<'_>,
        key: &str,
        n: u64,
        readers: Option<u32>,
        lease: Option<f64>,
        create: bool,
    ) -> PyResult<Reservation> {
        let parsed = parse_key(key)?;
        let options = put_options(readers, lease, create)?;
        let limit = self.inner.limits().max_value_size;
        let len = usize::try_from(n)
            .ok()
            .filter(|&len| len as u64 <= limit)
            .ok_or_else(|| {
                to_py(gos::store::Error::TooLarge {
                    size: n,
                    max: limit,
                })
            })?;
        let cell = self.reserve_cell(py, &parsed, len, &options)?;
        Ok(Reservation::new(
            cell,
            key.to_owned(),
            len,
            self.exec.clone(),
            self.pid,
        ))
    }

    /// Deletes `key`; True if it existed. Values already handed out stay valid.
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        self.call(py, |s, e| e.run(s.delete(&key)))
    }

    /// One reader is done with `key`: counts down an object put with `readers=n`, deleting it
    /// at zero.
    fn release(&self, py: Python<'_>, key: &str) -> PyResult<Released> {
        let key = parse_key(key)?;
        Ok(self.call(py, |s, e| e.run(s.release(&key)))?.into())
    }

    /// What the store knows of `key` without reading it: a dict with `size`, `readers` (the
    /// releases left, None if unbounded), `expires_at` (Unix seconds, None without a lease)
    /// and `digest` (the value's XXH3-128 as 32 hex digits, None from a store that keeps
    /// none); None if absent.
    fn head<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let key = parse_key(key)?;
        let Some(meta) = self.call(py, |s, e| e.run(s.head(&key)))? else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("size", meta.size)?;
        d.set_item("readers", meta.readers.count())?;
        d.set_item(
            "expires_at",
            meta.expires_at.map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            }),
        )?;
        d.set_item("digest", meta.digest.map(|d| d.to_string()))?;
        Ok(Some(d))
    }

    /// The keys under `prefix` (all keys if None), in ascending order.
    #[pyo3(signature = (prefix=None))]
    fn keys(&self, py: Python<'_>, prefix: Option<&str>) -> PyResult<Vec<String>> {
        let keys = match prefix {
            Some(p) => {
                let p = parse_prefix(p)?;
                self.call(py, |s, e| e.run(s.keys_with_prefix(&p)))?
            }
            None => self.call(py, |s, e| e.run(s.keys_with_prefix(&KeyPrefix::root())))?,
        };
        Ok(keys.into_iter().map(|k| k.as_str().to_owned()).collect())
    }

    /// Deletes every key under `prefix`; returns how many.
    fn delete_prefix(&self, py: Python<'_>, prefix: &str) -> PyResult<usize> {
        let p = parse_prefix(prefix)?;
        self.call(py, |s, e| e.run(s.delete_prefix(&p)))
    }

    /// Round retention: deletes `fed_id/<node>/round_<n>` for every n < `round`; returns how
    /// many.
    fn delete_rounds_before(&self, py: Python<'_>, fed_id: &str, round: u64) -> PyResult<usize> {
        let fed = fed_id.to_owned();
        self.call(py, move |s, e| e.run(s.delete_rounds_before(&fed, round)))
    }

    /// Removes the objects whose lease ran out; returns how many.
    fn sweep(&self, py: Python<'_>) -> PyResult<usize> {
        self.call(py, |s, e| e.run(s.sweep()))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.call(py, |s, e| e.run(s.len()))
    }

    fn __contains__(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        Ok(self.call(py, |s, e| e.run(s.head(&key)))?.is_some())
    }

    /// A dict: `entries`, `bytes`, `reserved`, `capacity_bytes`, `available`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.call(py, |s, e| e.run(s.stats()))?;
        let d = PyDict::new(py);
        d.set_item("entries", st.entries)?;
        d.set_item("bytes", st.bytes)?;
        d.set_item("reserved", st.reserved)?;
        d.set_item("capacity_bytes", st.capacity_bytes)?;
        d.set_item("available", st.available())?;
        Ok(d)
    }

    /// A dict: `max_value_size`, `capacity_bytes`, `max_entries`.
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let l = self.inner.limits();
        let d = PyDict::new(py);
        d.set_item("max_value_size", l.max_value_size)?;
        d.set_item("capacity_bytes", l.capacity_bytes)?;
        d.set_item("max_entries", l.max_entries)?;
        Ok(d)
    }

    /// `"memory"`, `"shm"` or `"remote"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// The process id that opened this handle.
    #[getter]
    fn pid(&self) -> u32 {
        self.pid
    }

    fn __repr__(&self) -> String {
        format!("<gos.Store kind={} pid={}>", self.kind, self.pid)
    }
}

/// An in-process store (values on the heap, shared by the threads of this process).
#[pyclass(module = "gos._gos", extends = Store, frozen)]
pub(crate) struct MemoryStore;

#[pymethods]
impl MemoryStore {
    /// `capacity` bytes in all (None: unlimited), at most `max_entries` keys and `max_value`
    /// bytes a value.
    #[new]
    #[pyo3(signature = (capacity=None, *, max_entries=None, max_value=None))]
    fn new(
        capacity: Option<u64>,
        max_entries: Option<u64>,
        max_value: Option<u64>,
    ) -> PyClassInitializer<MemoryStore> {
        let store = gos::MemoryStore::new(limits(capacity, max_entries, max_value));
        PyClassInitializer::from(Store::new(Arc::new(store), Exec::Inline, "memory"))
            .add_subclass(MemoryStore)
    }
}

/// A host-wide shared-memory store (a file in /dev/shm) that many processes open at once.
#[pyclass(module = "gos._gos", extends = Store, frozen)]
pub(crate) struct ShmStore {
    name: String,
    path: PathBuf,
}

impl ShmStore {
    fn wrap(py: Python<'_>, name: &str, store: RustShmStore) -> PyResult<Py<ShmStore>> {
        let path = store.path().to_path_buf();
        let init = PyClassInitializer::from(Store::new(Arc::new(store), Exec::Inline, "shm"))
            .add_subclass(ShmStore {
                name: name.to_owned(),
                path,
            });
        Py::new(py, init)
    }
}

#[pymethods]
impl ShmStore {
    /// Creates the store `name` (file `gos-<name>` in /dev/shm or $GOS_SHM_DIR) holding up to
    /// `capacity` bytes, and opens it. All of its memory (twice the capacity, for overwrites
    /// while readers pin old values, unless `arena_bytes` says otherwise) is allocated now.
    #[staticmethod]
    #[pyo3(signature = (name, capacity, *, max_entries=None, max_value=None, arena_bytes=None, max_processes=None))]
    fn create(
        py: Python<'_>,
        name: &str,
        capacity: u64,
        max_entries: Option<u64>,
        max_value: Option<u64>,
        arena_bytes: Option<u64>,
        max_processes: Option<u32>,
    ) -> PyResult<Py<ShmStore>> {
        let mut limits = limits(Some(capacity), max_entries, max_value);
        if max_entries.is_none() {
            limits.max_entries = 1024;
        }
        let mut config = ShmConfig::new(limits);
        if let Some(b) = arena_bytes {
            config = config.arena_bytes(b);
        }
        if let Some(n) = max_processes {
            config = config.max_processes(n);
        }
        let store = py.detach(|| RustShmStore::create(name, config)).py_err()?;
        ShmStore::wrap(py, name, store)
    }

    /// Opens the existing store `name` (NotFoundError if there is none).
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Py<ShmStore>> {
        let store = py.detach(|| RustShmStore::open(name)).py_err()?;
        ShmStore::wrap(py, name, store)
    }

    /// Removes the store `name` from the file system; True if it existed. Open handles keep
    /// working until closed; the memory is freed with the last.
    #[staticmethod]
    fn remove(name: &str) -> PyResult<bool> {
        RustShmStore::remove(name).py_err()
    }

    /// The store's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The path of the store file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// A cluster's store reached through its gateway (QUIC, mutual TLS), as `gos store --remote`.
#[pyclass(module = "gos._gos", extends = Store, frozen)]
pub(crate) struct RemoteStore;

#[pymethods]
impl RemoteStore {
    /// Connects to the gateway at `addr` ("HOST:PORT" as an IP) of cluster `cluster`, with
    /// the certificates of `certs` (as made by `gos certs`: `ca.pem`, and `<identity>.pem` /
    /// `<identity>.key`), within `timeout` seconds.
    #[staticmethod]
    #[pyo3(signature = (addr, cluster, certs, identity, *, timeout=10.0))]
    fn connect(
        py: Python<'_>,
        addr: &str,
        cluster: &str,
        certs: PathBuf,
        identity: &str,
        timeout: f64,
    ) -> PyResult<Py<RemoteStore>> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| PyValueError::new_err(format!("addr `{addr}` (expected IP:PORT): {e}")))?;
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
            return Err(PyValueError::new_err(
                "timeout must be between 0 and 3600 seconds",
            ));
        }
        let tls = TlsSettings::from_files(
            &certs.join(format!("{identity}.pem")),
            &certs.join(format!("{identity}.key")),
            &certs.join("ca.pem"),
            AllowList::new([cluster]),
        )
        .map_err(|e| PyValueError::new_err(format!("certificates in {}: {e}", certs.display())))?;
        let wait = Duration::from_secs_f64(timeout);
        let mut config = ClientConfig::new(addr, cluster, tls);
        config.timeouts = Timeouts {
            connect: wait,
            io: wait,
            idle: wait.max(Duration::from_secs(10)),
        };
        config.max_attempts = 2;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| crate::errors::BackendError::new_err(format!("tokio runtime: {e}")))?;
        let rt = Arc::new(rt);
        let store = py
            .detach(|| rt.block_on(GatewayStore::connect(config)))
            .map_err(gateway_to_py)?;
        let init = PyClassInitializer::from(Store::new(Arc::new(store), Exec::Tokio(rt), "remote"))
            .add_subclass(RemoteStore);
        Py::new(py, init)
    }
}
