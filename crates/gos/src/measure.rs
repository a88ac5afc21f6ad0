//! The round driver that `gos demo`, `gos bench` and the round benchmark share: each node
//! shares its model, gathers its neighbours', aggregates and releases them, reports and waits
//! for the others ([`node_rounds`]); a driver collects the reports and times each round
//! ([`collect_rounds`]); [`run_rounds`] does both for nodes that are tasks of this process, and
//! [`measure_rounds`] times a [`Federation`] with a fixed model.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::cluster::Federation;
use crate::error::GosError;
use crate::node::{DEFAULT_GATHER_TIMEOUT, FederatedNode, Received};

/// What [`measure_rounds`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundPlan {
    /// Rounds timed.
    pub rounds: u64,
    /// Rounds run first and not timed.
    pub warmup: u64,
    /// Bytes of each node's model.
    pub model_bytes: usize,
    /// How long a node waits for its neighbours' models in one round.
    pub timeout: Duration,
}

impl RoundPlan {
    /// `rounds` timed rounds of `model_bytes` models after one warm-up round, with the
    /// [`DEFAULT_GATHER_TIMEOUT`].
    pub fn new(rounds: u64, model_bytes: usize) -> Self {
        RoundPlan {
            rounds,
            warmup: 1,
            model_bytes,
            timeout: DEFAULT_GATHER_TIMEOUT,
        }
    }
}

/// What one node did in one round (sent to the driver, across processes too).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeRound {
    /// The node.
    pub node: u32,
    /// The round.
    pub round: u64,
    /// Bytes this node put into the store.
    pub put_bytes: u64,
    /// Bytes this node read from the store (zero-copy).
    pub read_bytes: u64,
    /// A value of the node's model after aggregation (the demo shows convergence with it).
    pub probe: f32,
}

/// One node's model across rounds: how it is shared and what is done with the neighbours'.
#[async_trait]
pub trait RoundModel: Send {
    /// Shares this node's model for `round` (training it first, if it trains); returns the
    /// bytes put into the store.
    async fn share(&mut self, node: &mut FederatedNode, round: u64) -> Result<u64, GosError>;

    /// Takes in the neighbours' models of `round`, before they are released.
    fn aggregate(&mut self, round: u64, inputs: &[Received]) -> Result<(), GosError>;

    /// A value that shows how far the models converged (default 0).
    fn probe(&self) -> f32 {
        0.0
    }
}

/// A model that is the same bytes every round, shared as a `Bytes` (a reference for the
/// memory store, one copy for shared memory); its neighbours' models must have its length.
#[derive(Debug, Clone)]
pub struct FixedModel(pub Bytes);

#[async_trait]
impl RoundModel for FixedModel {
    async fn share(&mut self, node: &mut FederatedNode, round: u64) -> Result<u64, GosError> {
        node.share(round, self.0.clone()).await?;
        Ok(self.0.len() as u64)
    }

    fn aggregate(&mut self, _round: u64, inputs: &[Received]) -> Result<(), GosError> {
        for input in inputs {
            if input.value.len() != self.0.len() {
                return Err(GosError::Task(format!(
                    "`{}` holds {} bytes, the models have {}",
                    input.key,
                    input.value.len(),
                    self.0.len()
                )));
            }
        }
        Ok(())
    }
}

/// How a node says it finished a round and waits for the others to finish it too.
#[async_trait]
pub trait RoundSync: Send + Sync {
    /// Reports `done` to the driver and returns when every node has finished the round.
    async fn round_done(&self, done: NodeRound) -> Result<(), GosError>;
}

/// One node's rounds `0..rounds`: share, gather (waiting at most `timeout`), aggregate,
/// release, report and wait for the others; then [`finish`](FederatedNode::finish).
pub async fn node_rounds(
    mut node: FederatedNode,
    model: &mut dyn RoundModel,
    rounds: u64,
    timeout: Duration,
    sync: &dyn RoundSync,
) -> Result<(), GosError> {
    let id = node.id().0;
    for round in 0..rounds {
        let put_bytes = model.share(&mut node, round).await?;
        let inputs = node.gather(round, timeout).await?;
        let read_bytes = inputs.iter().map(|i| i.value.len() as u64).sum();
        model.aggregate(round, &inputs)?;
        for input in inputs {
            node.release(input).await?;
        }
        sync.round_done(NodeRound {
            node: id,
            round,
            put_bytes,
            read_bytes,
            probe: model.probe(),
        })
        .await?;
    }
    node.finish().await
}

/// Bus traffic counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages routed.
    pub messages: u64,
    /// Bytes of messages routed.
    pub bytes: u64,
    /// Object bytes received through gateways.
    pub gateway_bytes: u64,
}

/// Where a driver reads the bus traffic between rounds.
pub trait Meter: Send + Sync {
    /// The traffic so far.
    fn sample(&self) -> Traffic;
}

impl Meter for gos_topology::TopologyManager {
    fn sample(&self) -> Traffic {
        let stats = self.stats();
        Traffic {
            messages: stats.messages,
            bytes: stats.bytes,
            gateway_bytes: 0,
        }
    }
}

/// One round as the driver saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoundTiming {
    /// From the end of the previous round (the start, for the first) to the last node's report.
    pub time: Duration,
    /// Messages the bus routed during the round.
    pub bus_messages: u64,
    /// Bytes the bus routed during the round.
    pub bus_bytes: u64,
    /// Object bytes received through gateways during the round.
    pub gateway_bytes: u64,
    /// Bytes the nodes put into the store.
    pub put_bytes: u64,
    /// Bytes the nodes read from the store.
    pub read_bytes: u64,
    /// Largest minus smallest [`NodeRound::probe`] at the round's end.
    pub spread: f32,
}

/// What a driver hears from a node: a finished round, or why the node stopped.
pub type RoundEvent = Result<NodeRound, String>;

/// Called by [`collect_rounds`] as reports come in.
pub trait RoundObserver: Send {
    /// A node finished a round.
    fn node_done(&mut self, done: &NodeRound) {
        let _ = done;
    }

    /// Every node finished `round`.
    fn round_done(&mut self, round: u64) {
        let _ = round;
    }
}

impl RoundObserver for () {}

/// Collects the reports of `nodes` nodes for `rounds` rounds and times each round. Fails at
/// once when a node reports a failure or every sender is gone (the others may be waiting for
/// it).
pub async fn collect_rounds(
    mut events: mpsc::UnboundedReceiver<RoundEvent>,
    nodes: usize,
    rounds: u64,
    meter: &dyn Meter,
    observer: &mut dyn RoundObserver,
) -> Result<Vec<RoundTiming>, GosError> {
    let mut timings = Vec::new();
    let mut started = Instant::now();
    let mut last = meter.sample();
    for round in 0..rounds {
        let mut timing = RoundTiming::default();
        let (mut reported, mut min, mut max) = (0, f32::MAX, f32::MIN);
        while reported < nodes {
            let done = events
                .recv()
                .await
                .ok_or_else(|| {
                    GosError::Task(format!("a node stopped before finishing round {round}"))
                })?
                .map_err(GosError::Task)?;
            if done.round != round {
                return Err(GosError::Task(format!(
                    "node {} reported round {} during round {round}",
                    done.node, done.round
                )));
            }
            timing.put_bytes += done.put_bytes;
            timing.read_bytes += done.read_bytes;
            (min, max) = (min.min(done.probe), max.max(done.probe));
            reported += 1;
            observer.node_done(&done);
        }
        let now = Instant::now();
        timing.time = now - started;
        started = now;
        let sample = meter.sample();
        timing.bus_messages = sample.messages - last.messages;
        timing.bus_bytes = sample.bytes - last.bytes;
        timing.gateway_bytes = sample.gateway_bytes - last.gateway_bytes;
        timing.spread = max - min;
        last = sample;
        timings.push(timing);
        observer.round_done(round);
    }
    Ok(timings)
}

/// In-process: report on a channel, then wait until the driver has collected the round (so
/// that it reads the bus counters between rounds, as over the process relay).
struct LocalSync {
    events: mpsc::UnboundedSender<RoundEvent>,
    /// The number of rounds the driver has collected.
    collected: watch::Receiver<u64>,
}

#[async_trait]
impl RoundSync for LocalSync {
    async fn round_done(&self, done: NodeRound) -> Result<(), GosError> {
        self.events
            .send(Ok(done))
            .map_err(|_| GosError::Task("the round driver is gone".into()))?;
        self.collected
            .clone()
            .wait_for(|collected| *collected > done.round)
            .await
            .map_err(|_| GosError::Task("the round driver is gone".into()))?;
        Ok(())
    }
}

/// Tells the in-process nodes that a round was collected, after the caller's observer.
struct Release<'a> {
    inner: &'a mut dyn RoundObserver,
    collected: watch::Sender<u64>,
}

impl RoundObserver for Release<'_> {
    fn node_done(&mut self, done: &NodeRound) {
        self.inner.node_done(done);
    }

    fn round_done(&mut self, round: u64) {
        self.inner.round_done(round);
        self.collected.send_replace(round + 1);
    }
}

/// Runs `rounds` rounds over nodes that are tasks of this process, each with its model, and
/// returns every round's timing. When a node fails, the others are stopped and its error is
/// returned.
pub async fn run_rounds(
    nodes: Vec<(FederatedNode, Box<dyn RoundModel>)>,
    rounds: u64,
    timeout: Duration,
    meter: &dyn Meter,
    observer: &mut dyn RoundObserver,
) -> Result<Vec<RoundTiming>, GosError> {
    let count = nodes.len();
    let (tx, rx) = mpsc::unbounded_channel();
    let (collected, collected_rx) = watch::channel(0);
    let mut tasks = Vec::with_capacity(count);
    for (node, mut model) in nodes {
        let sync = LocalSync {
            events: tx.clone(),
            collected: collected_rx.clone(),
        };
        let (failures, id) = (tx.clone(), node.id());
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let result = node_rounds(node, model.as_mut(), rounds, timeout, &sync).await;
            if let Err(e) = &result {
                let _ = failures.send(Err(format!("node {}: {e}", id.0)));
            }
            result
        })));
    }
    drop(tx);
    // On failure the tasks are aborted when `tasks` drops: the others may wait for the failed
    // node forever (for the round's end, in gather).
    let mut release = Release {
        inner: observer,
        collected,
    };
    let timings = collect_rounds(rx, count, rounds, meter, &mut release).await?;
    for mut task in tasks {
        (&mut task.0)
            .await
            .map_err(|e| GosError::Task(format!("a node task panicked: {e}")))??;
    }
    Ok(timings)
}

/// Aborts a task when dropped (a driver that returns early leaves no node running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `plan` over every node of `federation` (which must have none registered yet), each
/// sharing the same [`FixedModel`] of `plan.model_bytes` every round, and returns the timed
/// rounds (the warm-up rounds left out).
pub async fn measure_rounds(
    federation: &Federation,
    plan: &RoundPlan,
) -> Result<Vec<RoundTiming>, GosError> {
    measure_rounds_observed(federation, plan, &mut ()).await
}

/// [`measure_rounds`], telling `observer` of every node's round as it ends (the warm-up
/// rounds too), for a progress bar.
pub async fn measure_rounds_observed(
    federation: &Federation,
    plan: &RoundPlan,
    observer: &mut dyn RoundObserver,
) -> Result<Vec<RoundTiming>, GosError> {
    let nodes = federation
        .nodes()?
        .into_iter()
        .map(|node| {
            let model = Bytes::from(vec![node.id().0 as u8; plan.model_bytes]);
            (node, Box::new(FixedModel(model)) as Box<dyn RoundModel>)
        })
        .collect();
    let timings = run_rounds(
        nodes,
        plan.warmup + plan.rounds,
        plan.timeout,
        federation.manager(),
        observer,
    )
    .await?;
    Ok(timings.into_iter().skip(plan.warmup as usize).collect())
}
