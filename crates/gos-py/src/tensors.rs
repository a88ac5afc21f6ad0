//! Safetensors straight into a reservation (the header the `safetensors` package writes, then
//! each tensor's bytes, one copy), and the layout of a stored safetensors value so that Python
//! can make read-only numpy views of it without a copy.

use std::collections::HashMap;

use gos::store::Error;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};

use crate::buffer::{input, input_bytes};
use crate::errors::{IntoPy, InvalidArgumentError};
use crate::store::{Store, parse_key, put_options};

/// The largest header the `safetensors` package reads.
const MAX_HEADER: usize = 100_000_000;

fn dtype(name: &str) -> PyResult<Dtype> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        InvalidArgumentError::new_err(format!(
            "invalid argument: `{name}` is not a safetensors dtype"
        ))
    })
}

fn invalid(e: impl std::fmt::Display) -> PyErr {
    InvalidArgumentError::new_err(format!("invalid argument: safetensors: {e}"))
}

/// The safetensors header of `tensors` (name, dtype, shape, byte length), in the order and
/// form `safetensors.serialize` writes: sorted by dtype, larger alignment first, then name;
/// padded with spaces to a multiple of 8. Returns the header and the tensors' order.
fn header(
    tensors: &[(String, Dtype, Vec<usize>, usize)],
    metadata: Option<HashMap<String, String>>,
) -> PyResult<(Vec<u8>, Vec<usize>)> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (l, r) = (&tensors[a], &tensors[b]);
        r.1.cmp(&l.1).then(l.0.cmp(&r.0))
    });
    let mut offset = 0usize;
    let mut infos = Vec::with_capacity(tensors.len());
    for &i in &order {
        let (name, dtype, shape, len) = &tensors[i];
        let end = offset
            .checked_add(*len)
            .ok_or_else(|| invalid("tensors too large"))?;
        infos.push((
            name.clone(),
            TensorInfo {
                dtype: *dtype,
                shape: shape.clone(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let meta = Metadata::new(metadata, infos).map_err(invalid)?;
    let mut bytes = serde_json::to_string(&meta).map_err(invalid)?.into_bytes();
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    if bytes.len() > MAX_HEADER {
        return Err(invalid("header too large"));
    }
    Ok((bytes, order))
}

/// Writes `tensors` (a list of `(name, dtype, shape, buffer)`, dtype a safetensors name such
/// as `"F32"`) as one safetensors value under `key`, straight into a reservation; returns its
/// size in bytes.
#[pyfunction]
#[pyo3(signature = (store, key, tensors, metadata=None, *, readers=None, lease=None, create=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_tensors(
    py: Python<'_>,
    store: &Bound<'_, Store>,
    key: &str,
    tensors: Vec<(String, String, Vec<usize>, Bound<'_, PyAny>)>,
    metadata: Option<HashMap<String, String>>,
    readers: Option<u32>,
    lease: Option<f64>,
    create: bool,
) -> PyResult<u64> {
    let store = store.get();
    let key = parse_key(key)?;
    let options = put_options(readers, lease, create)?;
    let mut described = Vec::with_capacity(tensors.len());
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, dt, shape, obj) in &tensors {
        let buf = input(obj)?;
        described.push((name.clone(), dtype(dt)?, shape.clone(), buf.len_bytes()));
        buffers.push(buf);
    }
    let (head, order) = header(&described, metadata)?;
    let data_len: usize = described.iter().map(|t| t.3).sum();
    let total = 8 + head.len() + data_len;
    let mut cell = store.reserve_cell(py, &key, total, &options)?;
    let slices: Vec<&[u8]> = order.iter().map(|&i| input_bytes(&buffers[i])).collect();
    let exec = store.exec();
    py.detach(move || {
        cell.write_at(0, &(head.len() as u64).to_le_bytes());
        cell.write_at(8, &head);
        let mut at = 8 + head.len();
        for s in slices {
            cell.write_at(at, s);
            at += s.len();
        }
        cell.commit(exec)
    })
    .py_err()?;
    Ok(total as u64)
}

/// The layout of a safetensors value (any buffer): a list of `(name, dtype, shape, start,
/// end)` with absolute byte offsets, in file order, and the `__metadata__` dict (or None).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub(crate) fn tensor_layout<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
) -> PyResult<(
    Vec<(String, String, Vec<usize>, usize, usize)>,
    Option<Bound<'py, PyDict>>,
)> {
    let buf = input(value)?;
    let bytes = input_bytes(&buf);
    let (n, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Corrupted(format!("not a safetensors value: {e:?}")))
        .py_err()?;
    let base = 8 + n;
    let mut out = Vec::new();
    for name in meta.offset_keys() {
        let Some(info) = meta.info(&name) else {
            continue;
        };
        let dt = serde_json::to_value(info.dtype)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let (s, e) = info.data_offsets;
        out.push((name, dt, info.shape.clone(), base + s, base + e));
    }
    let extra = match meta.metadata() {
        Some(m) => {
            let d = PyDict::new(py);
            for (k, v) in m {
                d.set_item(k, v)?;
            }
            Some(d)
        }
        None => None,
    };
    Ok((out, extra))
}
