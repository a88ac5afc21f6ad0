//! ICRF for GOS: clusters exchange messages and objects through mutually authenticated QUIC
//! gateways, and a process on another host uses a cluster's store through its gateway.
//!
//! - [`Gateway`]: a cluster's quinn endpoint. It serves its store ([`ObjectStore`]
//!   operations) and delivers messages to its nodes' mailboxes ([`DeliveryTarget`]) for the
//!   peer clusters on its allow-list, and dials peers ([`Gateway::peer`], [`Peer`]).
//! - [`RemoteStore`]: an [`ObjectStore`] client of a cluster's store through its gateway.
//! - [`HybridTopology`] and [`HybridTopologyManager`]: nodes in several clusters; an
//!   intra-cluster message goes through the local `TopologyManager` (keys only), an
//!   inter-cluster one travels with its object through the gateways, and the receiving
//!   gateway stores the object under the same key before delivering the key-only message.
//! - [`certs`]: a federation CA and cluster certificates (rcgen), PEM files.
//! - [`frame`]: the versioned wire format.
//!
//! Security: TLS 1.3 (rustls, ring), a dedicated ALPN ([`tls::ALPN`]), client certificates
//! required and verified against the federation CA, the peer's cluster id read from its
//! certificate (`<id>.gos`) and checked against an allow-list during the handshake. See
//! `docs/icrf.md` for deployment, the frame format and failure behaviour.
//!
//! [`ObjectStore`]: gos_store::ObjectStore
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod auth;
pub mod certs;
mod client;
mod config;
mod dedup;
mod deliver;
mod error;
pub mod frame;
mod hybrid;
mod io;
mod remote;
mod resume;
mod server;
pub mod tls;

/// The quinn this crate is built on (its types appear in [`TransportTuning`]'s API).
pub use quinn;
/// The rustls this crate is built on (its configurations come from [`tls`]).
pub use rustls;

pub use config::{
    ClientConfig, Congestion, DEFAULT_RESUME_GRACE, GatewayConfig, MAX_MTU_UPPER_BOUND, MIN_MTU,
    Timeouts, TlsSettings, TransportTuning, WireLimits,
};
pub use deliver::{DeliveryTarget, Outgoing, Peer};
pub use error::GatewayError;
pub use frame::{TargetOutcome, TransferId};
pub use hybrid::{EdgeKind, FailedTarget, HybridReport, HybridTopology, HybridTopologyManager};
pub use remote::RemoteStore;
pub use server::{Gateway, GatewayStats};
pub use tls::{AllowList, Role};
