//! `FederatedNode`: the seed's round (put the weights, publish the key, peers get, aggregate,
//! delete) as one small API, with a defined rule for who deletes a key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gos_store::{Error as StoreError, KeyPrefix, ObjectKey, ObjectStore, ObjectStoreExt, PutMode};
use gos_topology::{Message, MessageKind, NodeId, Targets, TopologyError};

use crate::bus::{Bus, Inbox};
use crate::error::GosError;

/// The header listing the readers a key was published to, as comma-separated node numbers.
pub const READERS_HEADER: &str = "gos-readers";

/// Who deletes a shared key, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletePolicy {
    /// The publish lists the key's readers (header [`READERS_HEADER`]); each reader
    /// [`release`](FederatedNode::release)s the key when done, and the release that completes
    /// the list deletes it. No reader ever finds the key gone, however the readers interleave.
    ///
    /// Releases are recorded in the store itself, as empty marker keys under the object's key
    /// (`fed/node_3/round_5/released/node_4`, put in `Create` mode), so the rule holds for
    /// readers in different processes too; they count against `max_entries` until the last
    /// release deletes them with the object. Readers in another cluster read (and release)
    /// that cluster's copy; when no reader shares the sender's store, the sender deletes its
    /// own copy once the publish has carried the object across. A publish that reaches nobody
    /// deletes the key at once; one that reaches only some readers (a full mailbox that timed
    /// out) releases on behalf of those it missed, so the key never outlives its last reader.
    #[default]
    LastReader,
    /// The owner deletes its keys of earlier rounds when it shares round `n`: safe when every
    /// reader has read round `n - 1` before the owner can start round `n` (a synchronous
    /// federation over a symmetric topology). A copy in another cluster's store, which the
    /// owner cannot reach, is deleted by the last of that cluster's readers.
    OwnerNextRound,
    /// Nobody deletes; the application cleans up (for example with `delete_prefix`).
    Keep,
}

/// What [`FederatedNode::share`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// The key the weights were stored under.
    pub key: ObjectKey,
    /// The nodes that received the key.
    pub readers: Vec<NodeId>,
    /// Bytes the message put on the bus (all copies).
    pub bus_bytes: usize,
}

/// Weights received from a peer; [`FederatedNode::release`] them when done.
#[derive(Debug, Clone)]
pub struct Received {
    /// The node that shared them.
    pub from: NodeId,
    /// The round they belong to.
    pub round: u64,
    /// Their key in the store.
    pub key: ObjectKey,
    /// The weights (zero-copy from the store).
    pub value: Bytes,
    readers: Vec<NodeId>,
}

/// One participant of a federation: shares its weights each round, gathers its neighbours'.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use gos::{Federation, MemoryStore, ObjectStore, Topology};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gos::GosError> {
/// let store = Arc::new(MemoryStore::default());
/// let mut nodes = Federation::new("fed", Topology::ring(3)?, store.clone()).nodes()?;
/// for node in &mut nodes {
///     node.share(1, Bytes::from(vec![node.id().0 as u8; 1024])).await?;
/// }
/// for node in &mut nodes {
///     for weights in node.gather(1, Duration::from_secs(5)).await? {
///         assert_eq!(weights.value.len(), 1024);
///         node.release(weights).await?; // the last of the two readers deletes the key
///     }
/// }
/// assert!(store.is_empty().await?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FederatedNode {
    id: NodeId,
    fed_id: String,
    store: Arc<dyn ObjectStore>,
    bus: Arc<dyn Bus>,
    inbox: Box<dyn Inbox>,
    policy: DeletePolicy,
    /// Own keys not deleted yet, by round (for [`DeletePolicy::OwnerNextRound`]).
    owned: BTreeMap<u64, ObjectKey>,
    /// Weights messages that arrived for a later round than the one being gathered.
    early: Vec<Message>,
}

impl FederatedNode {
    /// A node over a store, a bus and its inbox.
    pub fn new(
        fed_id: impl Into<String>,
        store: Arc<dyn ObjectStore>,
        bus: Arc<dyn Bus>,
        inbox: Box<dyn Inbox>,
        policy: DeletePolicy,
    ) -> Self {
        FederatedNode {
            id: inbox.node(),
            fed_id: fed_id.into(),
            store,
            bus,
            inbox,
            policy,
            owned: BTreeMap::new(),
            early: Vec::new(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The federation id.
    pub fn fed_id(&self) -> &str {
        &self.fed_id
    }

    /// The store this node reads and writes.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of this node's weights for `round`: `{fed_id}/node_{id}/round_{round}`.
    pub fn key_for(&self, round: u64) -> Result<ObjectKey, GosError> {
        Ok(
            ObjectKey::round(&self.fed_id, &self.id.to_string(), round)
                .map_err(StoreError::from)?,
        )
    }

    /// Stores `weights` (already serialized: the store never serializes) and publishes their
    /// key to this node's neighbours.
    pub async fn share(&mut self, round: u64, weights: Bytes) -> Result<Shared, GosError> {
        let key = self.before_share(round).await?;
        self.store.put(&key, weights).await?;
        self.publish(round, key).await
    }

    /// Like [`share`](Self::share), but `fill` writes the `len` bytes of weights straight into
    /// the store's memory through a reservation (no copy at all with the shared-memory backend).
    pub async fn share_with(
        &mut self,
        round: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) + Send,
    ) -> Result<Shared, GosError> {
        let key = self.before_share(round).await?;
        let mut reservation = self
            .store
            .reserve(&key, len, &gos_store::PutOptions::new())
            .await?;
        fill(reservation.as_mut_slice());
        reservation.commit().await?;
        self.publish(round, key).await
    }

    async fn before_share(&mut self, round: u64) -> Result<ObjectKey, GosError> {
        if self.policy == DeletePolicy::OwnerNextRound {
            let older: Vec<u64> = self.owned.range(..round).map(|(r, _)| *r).collect();
            for r in older {
                if let Some(old) = self.owned.remove(&r) {
                    self.store.delete(&old).await?;
                }
            }
        }
        self.key_for(round)
    }

    async fn publish(&mut self, round: u64, key: ObjectKey) -> Result<Shared, GosError> {
        let readers = self.bus.out_neighbours(self.id);
        if readers.is_empty() && self.policy == DeletePolicy::LastReader {
            // Nobody will read it: the last (zeroth) reader's release is now.
            self.store.delete(&key).await?;
            return Ok(Shared {
                key,
                readers,
                bus_bytes: 0,
            });
        }
        let list: Vec<String> = readers.iter().map(|r| r.0.to_string()).collect();
        let msg = Message::key(self.fed_id.clone(), self.id, round, &key)
            .with_header(READERS_HEADER, list.join(","));
        let bus_bytes = msg.wire_size();
        let reached = match self.bus.publish(msg, Targets::Neighbours).await {
            Ok(reached) => reached,
            Err(e) => {
                // A publish that reached nobody (refused, or every delivery failed) leaves no
                // reader to release the key: take it back rather than leak it.
                let reached_nobody = match &e {
                    GosError::Topology(TopologyError::Undelivered { delivered, .. }) => {
                        delivered.is_empty()
                    }
                    GosError::Topology(_) => true,
                    _ => false,
                };
                if reached_nobody && self.policy != DeletePolicy::Keep {
                    self.store.delete(&key).await?;
                } else if let (
                    DeletePolicy::LastReader,
                    GosError::Topology(TopologyError::Undelivered { failed, .. }),
                ) = (self.policy, &e)
                {
                    // The readers that never got the key will never release it: release it on
                    // their behalf, so that the last of those who did get it deletes it.
                    for (reader, _) in failed {
                        self.release_for(&key, *reader, &readers).await?;
                    }
                }
                return Err(e);
            }
        };
        match self.policy {
            DeletePolicy::OwnerNextRound => {
                self.owned.insert(round, key.clone());
            }
            // Every reader is in another cluster and reads its own copy, already transferred:
            // nobody will release this one.
            DeletePolicy::LastReader
                if !reached.iter().any(|r| self.bus.same_store(self.id, *r)) =>
            {
                self.store.delete(&key).await?;
            }
            _ => {}
        }
        Ok(Shared {
            key,
            bus_bytes: bus_bytes * reached.len(),
            readers: reached,
        })
    }

    /// Receives the next weights message (any round) and reads its object.
    pub async fn receive(&mut self, timeout: Duration) -> Result<Received, GosError> {
        let msg = match self.early.pop() {
            Some(msg) => msg,
            None => self.next_weights(timeout).await?,
        };
        self.read(msg).await
    }

    /// Gathers the weights every in-neighbour shares for `round`, waiting at most `timeout` in
    /// all. Messages of later rounds are kept for a later gather.
    pub async fn gather(
        &mut self,
        round: u64,
        timeout: Duration,
    ) -> Result<Vec<Received>, GosError> {
        let deadline = Instant::now() + timeout;
        let mut expected = self.bus.in_neighbours(self.id);
        let mut got = Vec::with_capacity(expected.len());
        let mut i = 0;
        while i < self.early.len() {
            if self.early[i].round == round {
                let msg = self.early.swap_remove(i);
                expected.retain(|n| *n != msg.sender);
                got.push(self.read(msg).await?);
            } else {
                i += 1;
            }
        }
        while !expected.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.next_weights(left).await?;
            if msg.round == round && expected.contains(&msg.sender) {
                expected.retain(|n| *n != msg.sender);
                got.push(self.read(msg).await?);
            } else if msg.round > round {
                self.early.push(msg);
            } else {
                tracing::warn!(node = %self.id, from = %msg.sender, round = msg.round, "ignoring a stale or unexpected weights message");
            }
        }
        Ok(got)
    }

    async fn next_weights(&mut self, timeout: Duration) -> Result<Message, GosError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .inbox
                .recv_timeout(left)
                .await
                .map_err(|e| GosError::from_recv(self.id, e))?;
            match msg.kind {
                MessageKind::Weights => return Ok(msg),
                MessageKind::Stop => return Err(GosError::MailboxClosed(self.id)),
                _ => {
                    tracing::debug!(node = %self.id, kind = msg.kind.name(), "skipping a non-weights message")
                }
            }
        }
    }

    async fn read(&self, msg: Message) -> Result<Received, GosError> {
        let key = msg.body_key().ok_or(GosError::NotAKey(msg.sender))?;
        let value = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| GosError::MissingObject {
                key: key.clone(),
                from: msg.sender,
            })?;
        let readers = msg
            .headers
            .get(READERS_HEADER)
            .map(|list| {
                list.split(',')
                    .filter_map(|n| n.parse().ok())
                    .map(NodeId)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Received {
            from: msg.sender,
            round: msg.round,
            key,
            value,
            readers,
        })
    }

    /// Says this node is done with `received`. Under [`DeletePolicy::LastReader`] the release
    /// is recorded in the store (a marker key under the object's key, put in `Create` mode) and
    /// the release that completes the readers sharing this store deletes the object and its
    /// markers; returns true when this call deleted it.
    ///
    /// Under [`DeletePolicy::OwnerNextRound`] the owner deletes its own copy, but it cannot
    /// reach the copy a gateway made in another cluster: that one follows the last-reader rule
    /// among that cluster's readers. [`DeletePolicy::Keep`] only drops the value.
    pub async fn release(&self, received: Received) -> Result<bool, GosError> {
        let Received {
            key,
            readers,
            value,
            from,
            ..
        } = received;
        drop(value);
        let last_reader_rule = match self.policy {
            DeletePolicy::LastReader => true,
            DeletePolicy::OwnerNextRound => !self.bus.same_store(self.id, from),
            DeletePolicy::Keep => false,
        };
        if !last_reader_rule {
            return Ok(false);
        }
        self.release_for(&key, self.id, &readers).await
    }

    /// Records that `reader` is done with `key` (a marker key put in `Create` mode) and, when
    /// every listed reader that shares this node's store has released it, deletes the object
    /// and its markers. Returns true when this call deleted it.
    async fn release_for(
        &self,
        key: &ObjectKey,
        reader: NodeId,
        readers: &[NodeId],
    ) -> Result<bool, GosError> {
        let markers = key.join("released").map_err(StoreError::from)?;
        let marker = markers
            .join(&reader.to_string())
            .map_err(StoreError::from)?;
        match self
            .store
            .put_mode(&marker, Bytes::new(), PutMode::Create)
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Done when every listed reader that shares this store has its marker. Look them up
        // one by one and stop at the first one missing: most releases stop early, only the
        // last reader checks them all (a listing by prefix would cost every release a scan of
        // the store).
        let mut done = true;
        for other in readers
            .iter()
            .filter(|r| **r != reader && self.bus.same_store(self.id, **r))
        {
            let theirs = markers.join(&other.to_string()).map_err(StoreError::from)?;
            if self.store.get(&theirs).await?.is_none() {
                done = false;
                break;
            }
        }
        if done {
            // Every reader has released: deleting the object and all markers at once is safe,
            // and a concurrent last reader doing the same is harmless.
            self.store.delete_prefix(&KeyPrefix::from(key)).await?;
        }
        Ok(done)
    }

    /// Deletes every key this node still owns (for [`DeletePolicy::OwnerNextRound`] at the end).
    pub async fn finish(&mut self) -> Result<(), GosError> {
        for (_, key) in std::mem::take(&mut self.owned) {
            self.store.delete(&key).await?;
        }
        Ok(())
    }
}
