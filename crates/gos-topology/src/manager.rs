//! `TopologyManager`: bounded mailboxes, publish with backpressure and a timeout, stops ahead
//! of the queue, join and leave, topology swaps and counters. The only tokio code of the crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendTimeoutError, TryRecvError};

use crate::adapt::{RoundResults, TopologyAdapter};
use crate::error::{RecvError, TopologyError};
use crate::graph::Topology;
use crate::message::{Message, MessageId};
use crate::node::NodeId;
use crate::routing::{self, DEFAULT_MAX_BODY_SIZE, Targets};
use crate::stats::{Counters, NodeCounters, NodeStats, RoutingStats};

/// How many stop messages may wait in a mailbox's priority slot.
pub const STOP_CAPACITY: usize = 4;

/// Settings of a [`TopologyManager`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// Messages a mailbox holds before publishers wait (at least 1). Default 1024.
    pub mailbox_capacity: usize,
    /// How long a publish waits for room in a full mailbox before it reports
    /// [`TopologyError::Timeout`] for that target. Default 5 s.
    pub publish_timeout: Duration,
    /// The largest body accepted, in bytes. Default 64 KiB.
    pub max_body_size: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            mailbox_capacity: 1024,
            publish_timeout: Duration::from_secs(5),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

/// What a successful publish did: every target received the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The message id.
    pub id: MessageId,
    /// The targets that received it, sorted.
    pub delivered: Vec<NodeId>,
    /// The bytes one copy counts for ([`Message::wire_size`]).
    pub bytes_per_copy: usize,
}

impl PublishReport {
    /// Bytes put on the bus by this publish: one copy per target.
    pub fn total_bytes(&self) -> usize {
        self.bytes_per_copy * self.delivered.len()
    }
}

/// Routes messages between the nodes of a [`Topology`].
///
/// A cheap, cloneable handle (`Arc` inside), `Send + Sync`: share it between tasks.
///
/// - [`register`](Self::register) a node to get its [`Mailbox`]; [`leave`](Self::leave) to
///   close it (what is queued can still be received).
/// - [`publish`](Self::publish) checks the route first (all or nothing), then puts one copy
///   into each target's bounded mailbox, waiting up to `publish_timeout` for room
///   (backpressure). Nothing is ever dropped silently.
/// - [`stop`](Self::stop) puts a stop message into a priority slot that `recv` reads first.
/// - [`set_topology`](Self::set_topology) and [`adapt`](Self::adapt) swap the graph between
///   rounds; a publish uses the graph current when it starts.
///
/// ```
/// use gos_store::ObjectKey;
/// use gos_topology::{ManagerConfig, Message, NodeId, Targets, Topology, TopologyManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TopologyManager::new(Topology::ring(3)?, ManagerConfig::default());
/// let _node0 = manager.register(NodeId(0))?;
/// let mut node1 = manager.register(NodeId(1))?;
/// let mut node2 = manager.register(NodeId(2))?;
///
/// let key = ObjectKey::round("fed", "node_0", 1)?;
/// let report = manager.publish(Message::key("fed", NodeId(0), 1, &key), Targets::Neighbours).await?;
/// assert_eq!(report.delivered, [NodeId(1), NodeId(2)]);
/// assert_eq!(node1.recv().await.and_then(|m| m.body_key()), Some(key.clone()));
/// assert_eq!(node2.recv().await.and_then(|m| m.body_key()), Some(key));
/// assert_eq!(manager.stats().messages, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TopologyManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ManagerConfig,
    topology: RwLock<Arc<Topology>>,
    slots: RwLock<HashMap<NodeId, Slot>>,
    node_counters: Mutex<HashMap<NodeId, Arc<NodeCounters>>>,
    counters: Counters,
}

#[derive(Debug)]
struct Slot {
    tx: mpsc::Sender<Message>,
    stop_tx: mpsc::Sender<Message>,
    counters: Arc<NodeCounters>,
}

/// A registered target: its queue and its counters, cloned out of the lock.
type Route = (NodeId, Option<(mpsc::Sender<Message>, Arc<NodeCounters>)>);

impl TopologyManager {
    /// A manager over `topology` with no node registered yet.
    pub fn new(topology: Topology, config: ManagerConfig) -> Self {
        TopologyManager {
            inner: Arc::new(Inner {
                config,
                topology: RwLock::new(Arc::new(topology)),
                slots: RwLock::new(HashMap::new()),
                node_counters: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// Joins `node` and returns its mailbox.
    ///
    /// Errors: [`TopologyError::UnknownNode`] if the current graph has no such node,
    /// [`TopologyError::AlreadyRegistered`] if it has a live mailbox (a mailbox that was
    /// dropped without leaving can be replaced).
    pub fn register(&self, node: NodeId) -> Result<Mailbox, TopologyError> {
        if !self.topology().contains(node) {
            return Err(TopologyError::UnknownNode(node));
        }
        let counters = self.node_counters(node);
        let mut slots = write(&self.inner.slots);
        if slots.get(&node).is_some_and(|slot| !slot.tx.is_closed()) {
            return Err(TopologyError::AlreadyRegistered(node));
        }
        let (tx, rx) = mpsc::channel(self.inner.config.mailbox_capacity.max(1));
        let (stop_tx, stop_rx) = mpsc::channel(STOP_CAPACITY);
        slots.insert(
            node,
            Slot {
                tx,
                stop_tx,
                counters,
            },
        );
        Ok(Mailbox { node, rx, stop_rx })
    }

    /// `node` leaves: its mailbox closes once what is queued has been received, and later
    /// deliveries to it fail with [`TopologyError::NotRegistered`].
    pub fn leave(&self, node: NodeId) -> Result<(), TopologyError> {
        write(&self.inner.slots)
            .remove(&node)
            .map(|_| ())
            .ok_or(TopologyError::NotRegistered(node))
    }

    /// The registered nodes, sorted.
    pub fn registered(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = read(&self.inner.slots).keys().copied().collect();
        nodes.sort_unstable();
        nodes
    }

    /// Sends `msg` from `msg.sender` to its neighbours or to the listed ones.
    ///
    /// 1. Refusals, before anything is delivered: [`TopologyError::UnknownNode`] (sender or
    ///    target not in the graph), [`TopologyError::NotNeighbour`] (any listed target),
    ///    [`TopologyError::BodyTooLarge`].
    /// 2. Delivery, to all targets concurrently: each copy waits up to `publish_timeout` for
    ///    room in a full mailbox.
    /// 3. `Ok` when every target received it. Otherwise [`TopologyError::Undelivered`],
    ///    listing who received it and who did not, each with its reason
    ///    ([`TopologyError::Timeout`], [`TopologyError::NotRegistered`],
    ///    [`TopologyError::Closed`]). Copies already delivered stay delivered; retry the
    ///    failed targets with [`Targets::Only`] and the same message id.
    pub async fn publish(
        &self,
        msg: Message,
        targets: Targets,
    ) -> Result<PublishReport, TopologyError> {
        let topology = self.topology();
        let checked = routing::route(&topology, msg.sender, &targets)
            .and_then(|to| routing::check_body(&msg, self.inner.config.max_body_size).map(|()| to));
        let to = match checked {
            Ok(to) => to,
            Err(e) => {
                self.inner.counters.refused();
                return Err(e);
            }
        };
        let routes = self.routes(&to);
        let sender = self.node_counters(msg.sender);
        let bytes = msg.wire_size();
        let timeout = self.inner.config.publish_timeout;
        let id = msg.id;
        let sends = routes.into_iter().map(|(node, route)| {
            let msg = msg.clone();
            async move {
                let result = match &route {
                    None => Err(TopologyError::NotRegistered(node)),
                    Some((tx, _)) => send(tx, msg, node, timeout).await,
                };
                (node, route.map(|(_, counters)| counters), result)
            }
        });
        let mut delivered = Vec::with_capacity(to.len());
        let mut failed = Vec::new();
        for (node, counters, result) in futures::future::join_all(sends).await {
            match result {
                Ok(()) => {
                    self.inner.counters.delivered(bytes, false);
                    sender.sent(bytes);
                    if let Some(c) = counters {
                        c.received(bytes);
                    }
                    delivered.push(node);
                }
                Err(e) => {
                    self.inner.counters.failed();
                    self.node_counters(node).failed();
                    failed.push((node, e));
                }
            }
        }
        if failed.is_empty() {
            Ok(PublishReport {
                id,
                delivered,
                bytes_per_copy: bytes,
            })
        } else {
            Err(TopologyError::Undelivered {
                id,
                delivered,
                failed,
            })
        }
    }

    /// Puts `msg` into `to`'s mailbox without a neighbour check: for a gateway delivering a
    /// message that arrived from another cluster. Same body limit, backpressure and timeout
    /// as [`publish`](Self::publish); counted for `to` and in the totals.
    ///
    /// Errors: [`TopologyError::BodyTooLarge`], [`TopologyError::NotRegistered`],
    /// [`TopologyError::Timeout`], [`TopologyError::Closed`].
    pub async fn deliver(&self, to: NodeId, msg: Message) -> Result<(), TopologyError> {
        self.put(to, msg, false).await
    }

    /// Delivers `msg` (usually [`Message::stop`]) to `node` ahead of everything queued: the
    /// next `recv`, `try_recv` or `recv_timeout` returns it. No neighbour check. At most
    /// [`STOP_CAPACITY`] stops wait at once; beyond that this waits like a publish.
    pub async fn stop(&self, node: NodeId, msg: Message) -> Result<(), TopologyError> {
        self.put(node, msg, true).await
    }

    async fn put(&self, to: NodeId, msg: Message, stop: bool) -> Result<(), TopologyError> {
        if let Err(e) = routing::check_body(&msg, self.inner.config.max_body_size) {
            self.inner.counters.refused();
            return Err(e);
        }
        let route = read(&self.inner.slots).get(&to).map(|slot| {
            let tx = if stop { &slot.stop_tx } else { &slot.tx };
            (tx.clone(), Arc::clone(&slot.counters))
        });
        let Some((tx, counters)) = route else {
            self.inner.counters.failed();
            self.node_counters(to).failed();
            return Err(TopologyError::NotRegistered(to));
        };
        let bytes = msg.wire_size();
        match send(&tx, msg, to, self.inner.config.publish_timeout).await {
            Ok(()) => {
                self.inner.counters.delivered(bytes, stop);
                counters.received(bytes);
                Ok(())
            }
            Err(e) => {
                self.inner.counters.failed();
                counters.failed();
                Err(e)
            }
        }
    }

    /// Replaces the graph. Publishes already under way finish on the old one. Registered
    /// nodes missing from the new graph stay registered but can neither send nor be routed
    /// to until a graph includes them again.
    pub fn set_topology(&self, topology: Topology) {
        *write(&self.inner.topology) = Arc::new(topology);
    }

    /// The current graph.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&read(&self.inner.topology))
    }

    /// Asks `adapter` for the next graph given `results` and swaps it in; `Ok(true)` when the
    /// graph changed. Call it between rounds.
    pub fn adapt(
        &self,
        adapter: &dyn TopologyAdapter,
        results: &RoundResults,
    ) -> Result<bool, TopologyError> {
        let current = self.topology();
        match adapter.next_topology(&current, results)? {
            Some(next) => {
                self.set_topology(next);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Totals since the manager was made.
    pub fn stats(&self) -> RoutingStats {
        self.inner.counters.snapshot()
    }

    /// One node's counters (zero for a node never seen). They survive leave and re-join.
    pub fn node_stats(&self, node: NodeId) -> NodeStats {
        lock(&self.inner.node_counters)
            .get(&node)
            .map(|c| c.snapshot())
            .unwrap_or_default()
    }

    fn node_counters(&self, node: NodeId) -> Arc<NodeCounters> {
        Arc::clone(lock(&self.inner.node_counters).entry(node).or_default())
    }

    fn routes(&self, to: &[NodeId]) -> Vec<Route> {
        let slots = read(&self.inner.slots);
        to.iter()
            .map(|&node| {
                let route = slots
                    .get(&node)
                    .map(|slot| (slot.tx.clone(), Arc::clone(&slot.counters)));
                (node, route)
            })
            .collect()
    }
}

async fn send(
    tx: &mpsc::Sender<Message>,
    msg: Message,
    to: NodeId,
    timeout: Duration,
) -> Result<(), TopologyError> {
    // Fast path without a timer when there is room.
    let msg = match tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(TopologyError::Closed(to)),
        Err(mpsc::error::TrySendError::Full(msg)) => msg,
    };
    tx.send_timeout(msg, timeout).await.map_err(|e| match e {
        SendTimeoutError::Timeout(_) => TopologyError::Timeout { to, after: timeout },
        SendTimeoutError::Closed(_) => TopologyError::Closed(to),
    })
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A node's bounded inbox, returned by [`TopologyManager::register`].
///
/// Stop messages sit in a priority slot that every receive checks first. After the node
/// leaves (or the manager is dropped), what is queued can still be received; then receives
/// return `None` / [`RecvError::Closed`].
#[derive(Debug)]
pub struct Mailbox {
    node: NodeId,
    rx: mpsc::Receiver<Message>,
    stop_rx: mpsc::Receiver<Message>,
}

impl Mailbox {
    /// The node this mailbox belongs to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The next message (a stop first), waiting for one; `None` once closed and empty.
    pub async fn recv(&mut self) -> Option<Message> {
        tokio::select! {
            biased;
            Some(msg) = self.stop_rx.recv() => Some(msg),
            Some(msg) = self.rx.recv() => Some(msg),
            else => None,
        }
    }

    /// The next message, waiting at most `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(RecvError::Closed),
            Err(_) => Err(RecvError::Timeout(timeout)),
        }
    }

    /// The next message if one is queued (a stop first), without waiting.
    pub fn try_recv(&mut self) -> Result<Message, RecvError> {
        let stop_closed = match self.stop_rx.try_recv() {
            Ok(msg) => return Ok(msg),
            Err(e) => e == TryRecvError::Disconnected,
        };
        match self.rx.try_recv() {
            Ok(msg) => Ok(msg),
            Err(TryRecvError::Disconnected) if stop_closed => Err(RecvError::Closed),
            Err(_) => Err(RecvError::Empty),
        }
    }

    /// Messages queued right now, stops included.
    pub fn len(&self) -> usize {
        self.rx.len() + self.stop_rx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
