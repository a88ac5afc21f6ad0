//! `gos._gos`, the extension module of the Python package `gos`: the stores, zero-copy values
//! and reservations, the safetensors layout, and the exceptions. The Python side
//! (`python/gos/`) adds the tensor helpers, the seed drop-in and the asyncio variants.
//!
//! Unsafe code is denied here except in `buffer`, which implements the buffer protocol (the
//! one way to hand Python a view of the store's memory without a copy); see its comments.
#![deny(unsafe_code)]

mod buffer;
mod errors;
mod store;
mod tensors;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _gos(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<store::Store>()?;
    m.add_class::<store::MemoryStore>()?;
    m.add_class::<store::ShmStore>()?;
    m.add_class::<store::RemoteStore>()?;
    m.add_class::<store::Released>()?;
    m.add_class::<buffer::Value>()?;
    m.add_class::<buffer::Reservation>()?;
    m.add_function(wrap_pyfunction!(tensors::put_tensors, m)?)?;
    m.add_function(wrap_pyfunction!(tensors::tensor_layout, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
