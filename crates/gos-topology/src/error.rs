//! `TopologyError`, the one error type of this crate, and `RecvError` for mailboxes.

use std::path::PathBuf;
use std::time::Duration;

use crate::message::MessageId;
use crate::node::NodeId;

/// Everything that can go wrong while building a graph or routing a message.
///
/// Graph errors (`NotSquare` … `Io`) come from the constructors of
/// [`Topology`](crate::Topology); routing errors from the
/// [`TopologyManager`](crate::TopologyManager). A refused publish (`NotNeighbour`,
/// `UnknownNode`, `BodyTooLarge`) delivers nothing; a publish that reached some targets but not
/// all returns `Undelivered`, which says exactly who got the message and who did not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The sender may not send to this target: there is no edge `from -> to`.
    #[error("{to} is not a neighbour of {from}")]
    NotNeighbour {
        /// The sender.
        from: NodeId,
        /// The target it may not reach.
        to: NodeId,
    },
    /// The node is not part of the current graph.
    #[error("{0} is not in the topology")]
    UnknownNode(NodeId),
    /// The node is in the graph but has no mailbox (it never joined, or it left).
    #[error("{0} is not registered")]
    NotRegistered(NodeId),
    /// The node already has a live mailbox.
    #[error("{0} is already registered")]
    AlreadyRegistered(NodeId),
    /// The body is over the manager's limit: weights go through the store, keys through the bus.
    #[error("message body of {size} bytes is over the limit of {max} bytes")]
    BodyTooLarge {
        /// The body size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The target's mailbox stayed full for the whole publish timeout.
    #[error("mailbox of {to} stayed full for {}", humantime::format_duration(*after))]
    Timeout {
        /// The target whose mailbox was full.
        to: NodeId,
        /// How long the publish waited.
        after: Duration,
    },
    /// The target's mailbox was dropped (the node went away without leaving).
    #[error("mailbox of {0} is closed")]
    Closed(NodeId),
    /// A publish reached some of its targets but not all of them. Nothing was dropped
    /// silently: `failed` lists each missed target with its reason (`Timeout`,
    /// `NotRegistered` or `Closed`); a retry with `Targets::Only` and the same message id lets
    /// receivers deduplicate.
    #[error("message {id} not delivered to {}: delivered to {} of {} targets", failed_list(.failed), .delivered.len(), .delivered.len() + .failed.len())]
    Undelivered {
        /// The message id.
        id: MessageId,
        /// Targets that received the message.
        delivered: Vec<NodeId>,
        /// Targets that did not, each with its reason.
        failed: Vec<(NodeId, TopologyError)>,
    },
    /// An adjacency matrix is not square.
    #[error("adjacency matrix is not square: row {row} has {len} entries, expected {expected}")]
    NotSquare {
        /// The 0-based row index.
        row: usize,
        /// The entries in that row.
        len: usize,
        /// The number of rows.
        expected: usize,
    },
    /// An adjacency matrix holds something other than 0 or 1.
    #[error("adjacency matrix entry ({row}, {col}) is {value:?}, expected 0 or 1")]
    InvalidValue {
        /// The 0-based row index.
        row: usize,
        /// The 0-based column index.
        col: usize,
        /// The offending value as written.
        value: String,
    },
    /// A node may not send to itself.
    #[error("self loop on {0}")]
    SelfLoop(NodeId),
    /// An edge names a node outside `0..n`.
    #[error("edge {from} -> {to} names a node outside the {n} nodes of the graph")]
    EdgeOutOfRange {
        /// The edge's source.
        from: NodeId,
        /// The edge's target.
        to: NodeId,
        /// The number of nodes.
        n: usize,
    },
    /// A generator was asked for a graph it cannot build (too few nodes, a hub outside the
    /// graph).
    #[error("cannot build a {kind} topology: {reason}")]
    InvalidParameters {
        /// The generator (`ring`, `star`, …).
        kind: &'static str,
        /// Why not.
        reason: String,
    },
    /// No simple k-regular graph exists on n nodes (`n <= k`, or `n * k` is odd).
    #[error("no {k}-regular graph on {n} nodes: needs n > k and n * k even")]
    KRegularImpossible {
        /// Nodes.
        n: usize,
        /// Degree.
        k: usize,
    },
    /// Every regeneration of a k-regular graph stayed below the required connectivity.
    #[error(
        "no {k}-regular graph on {n} nodes with connectivity >= {required} after {attempts} attempts"
    )]
    ConnectivityNotReached {
        /// Nodes.
        n: usize,
        /// Degree.
        k: usize,
        /// The connectivity required (`k - 1`).
        required: usize,
        /// How many graphs were tried.
        attempts: u32,
    },
    /// A CSV adjacency matrix could not be parsed.
    #[error("csv line {line}: {reason}")]
    Csv {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A CSV file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn failed_list(failed: &[(NodeId, TopologyError)]) -> String {
    failed
        .iter()
        .map(|(node, err)| format!("{node} ({err})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TopologyError {
    /// True for `Timeout`, and for an `Undelivered` whose failures are all timeouts.
    pub fn is_timeout(&self) -> bool {
        match self {
            TopologyError::Timeout { .. } => true,
            TopologyError::Undelivered { failed, .. } => {
                !failed.is_empty() && failed.iter().all(|(_, e)| e.is_timeout())
            }
            _ => false,
        }
    }
}

/// Why a mailbox returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing is queued right now (`try_recv`).
    #[error("mailbox is empty")]
    Empty,
    /// Nothing arrived within the given time (`recv_timeout`).
    #[error("no message within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The node left (or the manager is gone) and everything queued has been received.
    #[error("mailbox is closed")]
    Closed,
}
