//! Measuring rounds: every node of a [`Federation`] shares a model, gathers its neighbours'
//! and releases them, round after round, and each round is timed from the first node's start
//! to the last node's end. What `gos bench` and the `round` benchmark report.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Barrier;

use crate::cluster::Federation;
use crate::error::GosError;

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
    /// `rounds` timed rounds of `model_bytes` models after one warm-up round, 60 s timeout.
    pub fn new(rounds: u64, model_bytes: usize) -> Self {
        RoundPlan {
            rounds,
            warmup: 1,
            model_bytes,
            timeout: Duration::from_secs(60),
        }
    }
}

/// One timed round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTiming {
    /// From the first node's start to the last node's end.
    pub time: Duration,
    /// Messages the bus routed during the round.
    pub bus_messages: u64,
    /// Bytes the bus routed during the round.
    pub bus_bytes: u64,
}

/// Runs `plan` over every node of `federation` (which must have none registered yet) and
/// returns the timed rounds. Each node shares the same model every round (a `Bytes` made once:
/// a reference for the memory store, one copy for the shared-memory store) and checks the
/// length of what it reads.
pub async fn measure_rounds(
    federation: &Federation,
    plan: &RoundPlan,
) -> Result<Vec<RoundTiming>, GosError> {
    let nodes = federation.nodes()?;
    let total = plan.warmup + plan.rounds;
    // Nodes and this task meet twice a round: before it (so that every round starts together)
    // and after it (so that the bus counters can be read between rounds).
    let barrier = Arc::new(Barrier::new(nodes.len() + 1));
    let spans: Arc<Mutex<Vec<(u64, Instant, Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    for mut node in nodes {
        let (barrier, spans) = (Arc::clone(&barrier), Arc::clone(&spans));
        let model = Bytes::from(vec![node.id().0 as u8; plan.model_bytes]);
        let (size, timeout) = (plan.model_bytes, plan.timeout);
        tasks.push(tokio::spawn(async move {
            // A node that failed keeps meeting the others at the barriers (doing nothing), so
            // that nobody waits forever; its first error is returned at the end.
            let mut failed = None;
            for round in 0..total {
                barrier.wait().await;
                if failed.is_none() {
                    let start = Instant::now();
                    let result = run_round(&mut node, round, &model, size, timeout).await;
                    let end = Instant::now();
                    spans
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((round, start, end));
                    failed = result.err();
                }
                barrier.wait().await;
            }
            failed.map_or(Ok(()), Err)
        }));
    }
    let mut timings = Vec::new();
    for round in 0..total {
        let before = federation.manager().stats();
        barrier.wait().await;
        barrier.wait().await;
        let after = federation.manager().stats();
        let spans = spans.lock().unwrap_or_else(PoisonError::into_inner);
        let of_round = || spans.iter().filter(|s| s.0 == round);
        if let (Some(first), Some(last)) =
            (of_round().map(|s| s.1).min(), of_round().map(|s| s.2).max())
            && round >= plan.warmup
        {
            timings.push(RoundTiming {
                time: last - first,
                bus_messages: after.messages - before.messages,
                bus_bytes: after.bytes - before.bytes,
            });
        }
    }
    for task in tasks {
        task.await
            .map_err(|e| GosError::Task(format!("a node task panicked: {e}")))??;
    }
    Ok(timings)
}

async fn run_round(
    node: &mut crate::FederatedNode,
    round: u64,
    model: &Bytes,
    size: usize,
    timeout: Duration,
) -> Result<(), GosError> {
    node.share(round, model.clone()).await?;
    for input in node.gather(round, timeout).await? {
        if input.value.len() != size {
            return Err(GosError::Task(format!(
                "`{}` holds {} bytes, the plan's models have {size}",
                input.key,
                input.value.len()
            )));
        }
        node.release(input).await?;
    }
    Ok(())
}
