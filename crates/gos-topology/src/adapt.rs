//! The adaptation hook: given a round's results and the current graph, the next graph.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::TopologyError;
use crate::graph::Topology;
use crate::node::NodeId;

/// What a round produced, as far as topology adaptation cares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundResults {
    /// The round that just finished.
    pub round: u64,
    /// A score per node (loss, accuracy, staleness: the adapter decides what it means).
    pub scores: BTreeMap<NodeId, f64>,
    /// How long each node took in the round.
    pub durations: BTreeMap<NodeId, Duration>,
    /// Anything else, by name.
    pub metrics: BTreeMap<String, f64>,
}

impl RoundResults {
    /// Results of `round` with nothing recorded yet.
    pub fn new(round: u64) -> Self {
        RoundResults {
            round,
            ..RoundResults::default()
        }
    }
}

/// Decides the next round's graph. Plain code, no runtime; called between rounds by
/// [`TopologyManager::adapt`](crate::TopologyManager::adapt).
///
/// Closures `Fn(&Topology, &RoundResults) -> Result<Option<Topology>, TopologyError>`
/// implement it.
pub trait TopologyAdapter: Send + Sync {
    /// The next graph, or `None` to keep the current one.
    fn next_topology(
        &self,
        current: &Topology,
        results: &RoundResults,
    ) -> Result<Option<Topology>, TopologyError>;
}

impl<F> TopologyAdapter for F
where
    F: Fn(&Topology, &RoundResults) -> Result<Option<Topology>, TopologyError> + Send + Sync,
{
    fn next_topology(
        &self,
        current: &Topology,
        results: &RoundResults,
    ) -> Result<Option<Topology>, TopologyError> {
        self(current, results)
    }
}

/// Keeps the graph as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticTopology;

impl TopologyAdapter for StaticTopology {
    fn next_topology(
        &self,
        _current: &Topology,
        _results: &RoundResults,
    ) -> Result<Option<Topology>, TopologyError> {
        Ok(None)
    }
}

/// A fresh [`Topology::k_connected`] graph every round, seeded with `seed + round` (gossip
/// style re-wiring that stays reproducible).
#[derive(Debug, Clone, Copy)]
pub struct RewireKConnected {
    /// The degree.
    pub k: usize,
    /// The base seed.
    pub seed: u64,
}

impl TopologyAdapter for RewireKConnected {
    fn next_topology(
        &self,
        current: &Topology,
        results: &RoundResults,
    ) -> Result<Option<Topology>, TopologyError> {
        Topology::k_connected(current.len(), self.k, self.seed.wrapping_add(results.round))
            .map(Some)
    }
}
