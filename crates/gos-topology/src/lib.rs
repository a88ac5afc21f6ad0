//! Topologies, messages and the `TopologyManager` of GOS: routes small keys between nodes,
//! never the weights.
//!
//! The bus carries a [`Message`] whose body is an [`ObjectKey`](gos_store::ObjectKey) (tens of
//! bytes); the weights stay in the object store. So the bytes routed per round do not depend
//! on the model size, and [`RoutingStats`] shows it.
//!
//! # Layers
//!
//! - The routing core, plain deterministic code without a runtime: [`Topology`] (ring, star,
//!   full, k-connected, custom from a matrix, CSV or edge list), [`route`] (who may receive
//!   what), [`check_body`], the [`TopologyAdapter`] hook.
//! - [`TopologyManager`] (tokio) on top: bounded [`Mailbox`]es, [`publish`] with backpressure
//!   and a timeout, stops ahead of the queue, join and leave, topology swaps, counters.
//!
//! # Failure behaviour
//!
//! - A refused publish (unknown node, non-neighbour target, body over the limit) delivers
//!   nothing.
//! - A full mailbox makes a publish wait up to [`ManagerConfig::publish_timeout`]; then that
//!   target fails with [`TopologyError::Timeout`]. A publish to several targets delivers to
//!   all of them concurrently and, if any failed, returns [`TopologyError::Undelivered`]
//!   listing who received the message and who did not. Nothing is dropped silently.
//!
//! [`publish`]: TopologyManager::publish
//!
//! # Example
//!
//! ```
//! use gos_topology::{NodeId, Targets, Topology, route};
//!
//! let star = Topology::star(5, NodeId(0))?;
//! assert_eq!(route(&star, NodeId(0), &Targets::Neighbours)?.len(), 4);
//! assert!(route(&star, NodeId(1), &Targets::one(NodeId(2))).is_err());
//! # Ok::<(), gos_topology::TopologyError>(())
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod adapt;
mod connectivity;
mod error;
mod graph;
mod manager;
mod message;
mod node;
mod routing;
mod stats;

pub use adapt::{RewireKConnected, RoundResults, StaticTopology, TopologyAdapter};
pub use error::{RecvError, TopologyError};
pub use graph::{K_CONNECTED_ATTEMPTS, MAX_NODES, Topology, TopologyKind};
pub use manager::{Mailbox, ManagerConfig, PublishReport, STOP_CAPACITY, TopologyManager};
pub use message::{Message, MessageId, MessageKind};
pub use node::{NodeId, ParseNodeIdError};
pub use routing::{DEFAULT_MAX_BODY_SIZE, Targets, check_body, route};
pub use stats::{NodeStats, RoutingStats};
