//! The buffer protocol, both ways: reading any contiguous Python buffer for a put, and
//! exporting a stored value (read-only) or a reservation (writable) to Python without a copy.
//!
//! This is the only module of the crate with unsafe code: the buffer protocol is a C
//! interface of raw pointers. What keeps each pointer valid is said at each block:
//! - a [`Value`] owns the [`Bytes`] it exports, and every view holds a reference to the
//!   `Value` (`view.obj`), so the bytes (for shm: the pin on the value in the mapping) live
//!   as long as the last view;
//! - a [`Reservation`] refuses to commit or abort while any view of it is exported, so a
//!   view never outlives the memory it points into.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gos::store::{Bytes, ObjectStore, Reservation as StoreReservation};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use self_cell::self_cell;

use crate::errors::{BusyError, IntoPy, UnavailableError};
use crate::store::{Exec, check_pid};

/// Gets a C-contiguous buffer of `obj` (bytes, bytearray, memoryview, a numpy array of any
/// dtype...). `TypeError` for an object without the buffer protocol, `BufferError` for a
/// non-contiguous one.
pub(crate) fn input(obj: &Bound<'_, PyAny>) -> PyResult<PyUntypedBuffer> {
    let buf = PyUntypedBuffer::get(obj)?;
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "the buffer is not C-contiguous: pass a contiguous copy (numpy.ascontiguousarray)",
        ));
    }
    Ok(buf)
}

/// The bytes of a buffer from [`input`].
pub(crate) fn input_bytes(buf: &PyUntypedBuffer) -> &[u8] {
    let len = buf.len_bytes();
    if len == 0 {
        return &[];
    }
    // SAFETY: `input` checked the buffer is C-contiguous, so its `len_bytes` bytes from
    // `buf_ptr` are one readable allocation, kept alive (and its owner kept from resizing it)
    // by the export `buf` holds for the lifetime of the returned slice. Other Python threads
    // may write to a writable buffer meanwhile; we only copy the bytes out, as any C extension
    // reading a buffer without the GIL does.
    unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>().cast_const(), len) }
}

/// Fills `view` for `len` bytes at `data` owned by `owner`, as a one-dimensional `B` buffer.
///
/// # Safety
///
/// `view` must be the pointer CPython passed to `__getbuffer__`; `data..data+len` must stay
/// valid (and, if `writable`, writable) while `owner` lives and the view is not released.
unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    data: *mut u8,
    len: usize,
    writable: bool,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("the view is null"));
    }
    if !writable && (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
        return Err(PyBufferError::new_err(
            "a stored value is read-only: copy it (bytearray(value)) to change it",
        ));
    }
    let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("buffer too large"))?;
    // SAFETY: `view` is non-null and points to the Py_buffer CPython gave us to fill; the
    // shape and strides point into that same struct, which lives as long as the view.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = data.cast::<c_void>();
        (*view).len = len;
        (*view).readonly = c_int::from(!writable);
        (*view).itemsize = 1;
        (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
            // A static string; consumers never write it and `__releasebuffer__` frees nothing.
            c"B".as_ptr().cast_mut()
        } else {
            ptr::null_mut()
        };
        (*view).ndim = 1;
        (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
            &raw mut (*view).len
        } else {
            ptr::null_mut()
        };
        (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
            &raw mut (*view).itemsize
        } else {
            ptr::null_mut()
        };
        (*view).suboffsets = ptr::null_mut();
        (*view).internal = ptr::null_mut();
    }
    Ok(())
}

/// A stored value: read-only bytes exported through the buffer protocol without a copy
/// (`memoryview(v)`, `numpy.frombuffer(v, dtype)`, `bytes(v)` copies). For a shared-memory
/// store it points into the mapping and pins the value there while it, or any view of it,
/// lives: a delete or overwrite of the key meanwhile does not change what it shows.
#[pyclass(module = "gos._gos", frozen)]
pub(crate) struct Value {
    bytes: Bytes,
    pid: u32,
}

impl Value {
    pub(crate) fn new(bytes: Bytes) -> Value {
        Value {
            bytes,
            pid: std::process::id(),
        }
    }
}

/// In a forked child, an inherited value is the parent's: dropping it there must not unpin it
/// in the shared store (the parent would lose its pin). The child leaks its copy instead.
impl Drop for Value {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            std::mem::forget(self.bytes.clone());
        }
    }
}

#[pymethods]
impl Value {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// A copy of the value as `bytes`.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &self.bytes)
    }

    /// A copy of the value as `bytes` (the same as `bytes(value)`).
    fn tobytes<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        self.__bytes__(py)
    }

    /// The address of the first byte (to check where a view points; 0 if empty).
    #[getter]
    fn address(&self) -> usize {
        self.bytes.as_ptr() as usize
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(v) = other.cast::<Value>() {
            return v.get().bytes == self.bytes;
        }
        match input(other) {
            Ok(buf) => input_bytes(&buf) == &self.bytes[..],
            Err(_) => false,
        }
    }

    fn __repr__(&self) -> String {
        format!("<gos.Value of {} bytes>", self.bytes.len())
    }

    // SAFETY (of the method): CPython calls it with a valid view pointer.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (data, len) = {
            let me = slf.get();
            (me.bytes.as_ptr().cast_mut(), me.bytes.len())
        };
        // SAFETY: `data..data+len` belongs to the `Bytes` this frozen object owns and never
        // replaces; the view holds a reference to the object, so the bytes outlive the view.
        // It is exported read-only (a writable request is refused).
        unsafe { fill_view(view, flags, data, len, false, slf.into_any()) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

type ResBox<'a> = Option<Box<dyn StoreReservation + 'a>>;

self_cell!(
    /// A reservation held together with the store it was made in.
    pub(crate) struct ResCell {
        owner: Arc<dyn ObjectStore>,
        #[covariant]
        dependent: ResBox,
    }
);

impl ResCell {
    pub(crate) fn reserve(
        store: Arc<dyn ObjectStore>,
        exec: &Exec,
        key: &gos::store::ObjectKey,
        len: usize,
        options: &gos::store::PutOptions,
    ) -> gos::store::Result<ResCell> {
        ResCell::try_new(store, |store| {
            exec.run(store.reserve(key, len, options)).map(Some)
        })
    }

    /// Fills the reservation with `data` (its length exactly).
    pub(crate) fn write_at(&mut self, offset: usize, data: &[u8]) {
        self.with_dependent_mut(|_, r| {
            if let Some(r) = r {
                r.as_mut_slice()[offset..offset + data.len()].copy_from_slice(data);
            }
        });
    }

    /// Publishes the reservation.
    pub(crate) fn commit(mut self, exec: &Exec) -> gos::store::Result<()> {
        self.with_dependent_mut(|_, r| match r.take() {
            Some(r) => exec.run(r.commit()),
            None => Err(gos::store::Error::InvalidArgument(
                "the reservation was already committed".into(),
            )),
        })
    }

    fn raw(&mut self) -> Option<(*mut u8, usize)> {
        self.with_dependent_mut(|_, r| {
            r.as_mut().map(|r| {
                let s = r.as_mut_slice();
                (s.as_mut_ptr(), s.len())
            })
        })
    }
}

/// A buffer reserved in a store for one key: fill it through the buffer protocol
/// (`memoryview(r)`, `numpy.frombuffer(r, dtype)`, `r[...] = ...`), then `commit()`. Readers
/// see the whole value or nothing. A commit (or abort) is refused with `BusyError` while a
/// view of it is still exported: release the memoryview / drop the array first.
#[pyclass(module = "gos._gos", frozen)]
pub(crate) struct Reservation {
    cell: Mutex<Option<ResCell>>,
    exports: AtomicUsize,
    key: String,
    len: usize,
    exec: Exec,
    pid: u32,
}

impl Reservation {
    pub(crate) fn new(cell: ResCell, key: String, len: usize, exec: Exec, pid: u32) -> Self {
        Reservation {
            cell: Mutex::new(Some(cell)),
            exports: AtomicUsize::new(0),
            key,
            len,
            exec,
            pid,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<ResCell>> {
        self.cell.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the reservation out, if no view is exported.
    fn take(&self, what: &str) -> PyResult<ResCell> {
        check_pid(self.pid)?;
        let mut guard = self.lock();
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(BusyError::new_err(format!(
                "{what} refused: {n} view(s) of the reservation are still exported; release them \
                 (memoryview.release(), del the array) first"
            )));
        }
        guard.take().ok_or_else(|| {
            UnavailableError::new_err("the reservation was already committed or aborted")
        })
    }
}

/// In a forked child, an inherited reservation is the parent's: dropping it there must not
/// free it in the shared store. The child leaks its copy instead.
impl Drop for Reservation {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            let cell = match self.cell.get_mut() {
                Ok(cell) => cell.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            std::mem::forget(cell);
        }
    }
}

#[pymethods]
impl Reservation {
    /// The key it will be committed under.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// True until it is committed or aborted.
    #[getter]
    fn open(&self) -> bool {
        self.lock().is_some()
    }

    /// Publishes the buffer under its key, with the options given at reserve.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        let cell = self.take("commit")?;
        let exec = self.exec.clone();
        py.detach(move || cell.commit(&exec)).py_err()
    }

    /// Drops the reservation uncommitted, giving its bytes back to the store.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        let cell = self.take("abort")?;
        py.detach(move || drop(cell));
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<gos.Reservation of {} bytes for `{}`{}>",
            self.len,
            self.key,
            if self.open() { "" } else { " (closed)" }
        )
    }

    // SAFETY (of the method): CPython calls it with a valid view pointer.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let me = slf.get();
        check_pid(me.pid)?;
        let mut guard = me.lock();
        let Some((data, len)) = guard.as_mut().and_then(ResCell::raw) else {
            return Err(PyBufferError::new_err(
                "the reservation was committed or aborted",
            ));
        };
        me.exports.fetch_add(1, Ordering::AcqRel);
        drop(guard);
        // SAFETY: the reserved buffer stays where it is until the reservation is committed or
        // dropped, which `take` refuses while `exports` (incremented above, decremented in
        // `__releasebuffer__`) is non-zero; the view holds a reference to this object.
        let filled = unsafe { fill_view(view, flags, data, len, true, slf.clone().into_any()) };
        if filled.is_err() {
            me.exports.fetch_sub(1, Ordering::AcqRel);
        }
        filled
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}
