//! The storage contract of GOS, the Global Object Store: the [`ObjectStore`] trait, the
//! validated [`ObjectKey`], the [`Limits`] a store enforces and the one [`Error`] type.
//!
//! This crate has no async runtime and no network: it is what every backend implements
//! (`gos-store-memory`, `gos-store-shm`, the remote client in `gos-gateway`, or yours) and what
//! every user holds, usually as an `Arc<dyn ObjectStore>`.
//!
//! # Semantics every backend keeps
//!
//! - Values are bytes ([`Bytes`]); the store never serializes for you.
//! - A put is atomic: no reader ever observes a partial value. An overwrite replaces the whole
//!   value at once.
//! - A [`Bytes`] returned by [`ObjectStore::get`] stays valid and unchanged after a later
//!   delete or overwrite of its key.
//! - [`Limits`] are checked before anything changes: a refused put leaves the store exactly as
//!   it was. Nothing is ever evicted to make room.
//! - [`ObjectStoreExt::keys`] and [`ObjectStore::keys_with_prefix`] return keys in ascending
//!   order.
//!
//! # Example
//!
//! ```
//! use gos_store::{KeyPrefix, ObjectKey};
//!
//! let key = ObjectKey::round("my_experiment", "client_7", 42)?;
//! assert_eq!(key.as_str(), "my_experiment/client_7/round_42");
//! let parts = key.round_parts().expect("a round key");
//! assert_eq!((parts.fed_id, parts.node_id, parts.round), ("my_experiment", "client_7", 42));
//! assert!(key.has_prefix(&KeyPrefix::new("my_experiment")?));
//! assert!(ObjectKey::new("a//b").is_err());
//! # Ok::<(), gos_store::KeyError>(())
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod clock;
mod digest;
mod error;
#[cfg(feature = "serde")]
mod error_serde;
mod key;
mod limits;
mod options;
mod pool;
mod reservation;
mod store;

pub use bytes::Bytes;
pub use clock::{Clock, ManualClock, SystemClock, from_unix_millis, system_clock, to_unix_millis};
pub use digest::{Digest, DigestHasher, ParseDigestError};
pub use error::{Error, KeyError, Result};
pub use key::{KeyPrefix, MAX_KEY_LEN, ObjectKey, RoundParts};
pub use limits::{Limits, StoreStats};
pub use options::{ObjectMeta, PutMode, PutOptions, Readers, ReleaseOutcome, lease_deadline};
pub use pool::{BufferPool, MIN_POOLED};
pub use reservation::{BufferedReservation, Reservation};
pub use store::{ObjectStore, ObjectStoreExt};

/// Re-exported so that a backend written against this crate alone can implement the trait
/// (`#[gos_store::async_trait]`).
pub use async_trait::async_trait;
