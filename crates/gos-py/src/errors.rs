//! The Python exceptions of `gos` and the mapping of the one Rust error type onto them.

use gos::gateway::GatewayError;
use gos::shm::ShmError;
use gos::store::Error;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    gos,
    GosError,
    PyException,
    "Base of every error a store raises."
);
create_exception!(
    gos,
    InvalidKeyError,
    GosError,
    "The key is not a valid object key."
);
create_exception!(
    gos,
    LimitError,
    GosError,
    "A limit of the store refused the operation."
);
create_exception!(
    gos,
    TooLargeError,
    LimitError,
    "The value is larger than the store's maximum value size."
);
create_exception!(
    gos,
    StoreFullError,
    LimitError,
    "The store has no room (bytes or entries) for the value."
);
create_exception!(
    gos,
    AlreadyExistsError,
    GosError,
    "A put with `create=True` met an existing key."
);
create_exception!(
    gos,
    NotFoundError,
    GosError,
    "The store (or another named thing) does not exist."
);
create_exception!(
    gos,
    StoreExistsError,
    GosError,
    "A store of that name already exists."
);
create_exception!(
    gos,
    BusyError,
    GosError,
    "Retryable: contended, or a reservation still has views exported."
);
create_exception!(
    gos,
    PermissionDeniedError,
    GosError,
    "The store or its peer refused the operation."
);
create_exception!(
    gos,
    InvalidArgumentError,
    GosError,
    "An argument the store cannot accept (a count, a lease, a layout)."
);
create_exception!(gos, StoreTimeoutError, GosError, "A bounded wait ran out.");
create_exception!(
    gos,
    CorruptedError,
    GosError,
    "The store's data failed a check."
);
create_exception!(
    gos,
    UnavailableError,
    GosError,
    "The store cannot be reached or was closed."
);
create_exception!(
    gos,
    BackendError,
    GosError,
    "Any other backend failure (I/O, the network, TLS)."
);
create_exception!(
    gos,
    ForkedHandleError,
    GosError,
    "A handle opened in a parent process was used in a forked child."
);

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("GosError", py.get_type::<GosError>())?;
    m.add("InvalidKeyError", py.get_type::<InvalidKeyError>())?;
    m.add("LimitError", py.get_type::<LimitError>())?;
    m.add("TooLargeError", py.get_type::<TooLargeError>())?;
    m.add("StoreFullError", py.get_type::<StoreFullError>())?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("StoreExistsError", py.get_type::<StoreExistsError>())?;
    m.add("BusyError", py.get_type::<BusyError>())?;
    m.add(
        "PermissionDeniedError",
        py.get_type::<PermissionDeniedError>(),
    )?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("StoreTimeoutError", py.get_type::<StoreTimeoutError>())?;
    m.add("CorruptedError", py.get_type::<CorruptedError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add("ForkedHandleError", py.get_type::<ForkedHandleError>())?;
    Ok(())
}

/// The Python exception for a store error, with the Rust message.
pub(crate) fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::InvalidKey(_) => InvalidKeyError::new_err(msg),
        Error::TooLarge { .. } => TooLargeError::new_err(msg),
        Error::StoreFull { .. } | Error::TooManyEntries { .. } => StoreFullError::new_err(msg),
        Error::AlreadyExists { .. } => AlreadyExistsError::new_err(msg),
        Error::Timeout { .. } => StoreTimeoutError::new_err(msg),
        Error::Busy(_) => BusyError::new_err(msg),
        Error::PermissionDenied(_) => PermissionDeniedError::new_err(msg),
        Error::InvalidArgument(_) => InvalidArgumentError::new_err(msg),
        Error::Corrupted(_) => CorruptedError::new_err(msg),
        Error::Unavailable(_) => UnavailableError::new_err(msg),
        Error::Backend { source, .. } => match source.downcast_ref::<ShmError>() {
            Some(ShmError::NotFound(_)) => NotFoundError::new_err(msg),
            Some(ShmError::Exists(_)) => StoreExistsError::new_err(msg),
            Some(ShmError::InvalidName(_) | ShmError::InvalidConfig(_)) => {
                InvalidArgumentError::new_err(msg)
            }
            Some(ShmError::NoSpace { .. } | ShmError::NoSlot(_) | ShmError::NoRecord(_)) => {
                StoreFullError::new_err(msg)
            }
            Some(ShmError::Corrupted(_)) => CorruptedError::new_err(msg),
            _ => BackendError::new_err(msg),
        },
        _ => GosError::new_err(msg),
    }
}

/// The Python exception for a failed gateway connection.
pub(crate) fn gateway_to_py(e: GatewayError) -> PyErr {
    UnavailableError::new_err(e.to_string())
}

/// Shorthand: a store result with the error mapped.
pub(crate) trait IntoPy<T> {
    /// Maps the error to its Python exception.
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
