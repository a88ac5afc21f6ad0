//! `NodeId`, the name of a node in a topology.

use std::fmt;
use std::str::FromStr;

/// A node of a topology: an index `0..n` into its adjacency matrix.
///
/// Displays as the seed's `node_{n}`, which is also what [`FromStr`] accepts (a bare number
/// too).
///
/// ```
/// use gos_topology::NodeId;
/// assert_eq!(NodeId(3).to_string(), "node_3");
/// assert_eq!("node_3".parse::<NodeId>().ok(), Some(NodeId(3)));
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index of this node in an adjacency matrix.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node_{}", self.0)
    }
}

impl From<u32> for NodeId {
    fn from(n: u32) -> Self {
        NodeId(n)
    }
}

/// A string that is neither `node_{n}` nor `{n}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: expected node_<n>")]
pub struct ParseNodeIdError(String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("node_").unwrap_or(s);
        digits
            .parse()
            .map(NodeId)
            .map_err(|_| ParseNodeIdError(s.to_owned()))
    }
}
