//! `FederatedNode`: the seed's round (put the weights, publish the key, peers get, aggregate,
//! delete) as one small API, with a defined rule for who deletes a key: the key's reader count
//! and lease live with it in the store, and each reader's release is one store operation (see
//! docs/lifecycle.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gos_store::{Error as StoreError, ObjectKey, ObjectStore, PutOptions, ReleaseOutcome};
use gos_topology::{Message, MessageKind, NodeId, Targets};

use crate::bus::{Bus, Inbox};
use crate::error::GosError;

/// How long a node waits for its neighbours' weights in one round, unless told otherwise
/// (what `gos demo` and `gos bench` use).
pub const DEFAULT_GATHER_TIMEOUT: Duration = Duration::from_secs(60);

/// The lease of a shared object when none is configured: [`lease_for`] of
/// [`DEFAULT_GATHER_TIMEOUT`] (3 minutes).
pub const DEFAULT_LEASE: Duration = lease_for(DEFAULT_GATHER_TIMEOUT);

/// The lease that suits a gather timeout: three of them (one for a slow reader to arrive, one
/// for its gather, one for its aggregation), at least one second.
pub const fn lease_for(gather_timeout: Duration) -> Duration {
    let three = gather_timeout.saturating_mul(3);
    if three.as_millis() < 1000 {
        Duration::from_secs(1)
    } else {
        three
    }
}

/// Who deletes a shared key, and when (docs/lifecycle.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletePolicy {
    /// The object is put with a count of readers: the out-neighbours that read the same store,
    /// plus one the sharing node holds until its publish returns. Each reader
    /// [`release`](FederatedNode::release)s it (one atomic store operation) and the release
    /// that brings the count to zero deletes it. No reader ever finds the key gone, however
    /// the readers interleave, in one process or many.
    ///
    /// Readers in another cluster read (and release) that cluster's copy, which its gateway
    /// stores with the count of readers there. A publish that misses some readers (whatever
    /// the error) releases on behalf of each one it did not reach, so a publish that reaches
    /// nobody deletes the object; a reader that dies before releasing leaves it to its lease.
    #[default]
    LastReader,
    /// Round retention: objects are put without a count, and a node sharing round `n` removes
    /// the federation's rounds before `n` from its store (`delete_rounds_before`). For
    /// lockstep federations, where every node has read round `n - 1` before any node shares
    /// round `n` (a barrier between rounds, as in `gos demo`). Each cluster's nodes clean their
    /// own cluster's store, copies included.
    OwnerNextRound,
    /// Nobody deletes; the application cleans up (for example with `delete_prefix`). The
    /// lease, if the node has one, still applies.
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
}

/// One participant of a federation: shares its weights each round, gathers its neighbours'.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use gos::{Federation, MemoryStore, ObjectStoreExt, Topology};
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
    /// How long a shared object lives at most; `None`: until deleted.
    lease: Option<Duration>,
    /// When this node last swept its store of expired objects.
    last_sweep: Instant,
    /// The last round this node shared (for [`DeletePolicy::OwnerNextRound`]'s `finish`).
    last_shared: Option<u64>,
    /// The highest round accepted from each sender: a message of that round or an earlier one
    /// is a duplicate (or forged) and is never read nor released again.
    accepted: HashMap<NodeId, u64>,
    /// Weights messages that arrived for a later round than the one being gathered, by round.
    early: BTreeMap<u64, Vec<Message>>,
}

/// What a share puts and whom it counts.
struct SharePlan {
    key: ObjectKey,
    options: PutOptions,
    /// Every out-neighbour.
    readers: Vec<NodeId>,
    /// The out-neighbours that read this node's store (and count in the object's readers).
    local: Vec<NodeId>,
}

impl FederatedNode {
    /// A node over a store, a bus and its inbox, with the [`DEFAULT_LEASE`].
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
            lease: Some(DEFAULT_LEASE),
            last_sweep: Instant::now(),
            last_shared: None,
            accepted: HashMap::new(),
            early: BTreeMap::new(),
        }
    }

    /// Sets the lease of the objects this node shares (`None`: they live until deleted). A
    /// reader that dies before releasing leaves an object to its lease; keep it well above the
    /// time a round takes ([`lease_for`] a gather timeout).
    #[must_use]
    pub fn with_lease(mut self, lease: Option<Duration>) -> Self {
        self.lease = lease;
        self
    }

    /// The lease of the objects this node shares.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
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
        self.key_of(self.id, round)
    }

    fn key_of(&self, node: NodeId, round: u64) -> Result<ObjectKey, GosError> {
        Ok(ObjectKey::round(&self.fed_id, &node.to_string(), round).map_err(StoreError::from)?)
    }

    /// Stores `weights` (already serialized: the store never serializes) with its count of
    /// readers and its lease, and publishes their key to this node's neighbours.
    pub async fn share(&mut self, round: u64, weights: Bytes) -> Result<Shared, GosError> {
        let plan = self.before_share(round).await?;
        self.store
            .put_opts(&plan.key, weights, &plan.options)
            .await?;
        self.publish(round, plan).await
    }

    /// Like [`share`](Self::share), but `fill` writes the `len` bytes of weights straight into
    /// the store's memory through a reservation (no copy at all with the shared-memory backend).
    pub async fn share_with(
        &mut self,
        round: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) + Send,
    ) -> Result<Shared, GosError> {
        let plan = self.before_share(round).await?;
        let mut reservation = self.store.reserve(&plan.key, len, &plan.options).await?;
        fill(reservation.as_mut_slice());
        reservation.commit().await?;
        self.publish(round, plan).await
    }

    /// Sweeps when due, applies round retention, and says what the share puts.
    async fn before_share(&mut self, round: u64) -> Result<SharePlan, GosError> {
        if let Some(lease) = self.lease
            && self.last_sweep.elapsed() >= lease / 4
        {
            self.last_sweep = Instant::now();
            self.store.sweep().await?;
        }
        if self.policy == DeletePolicy::OwnerNextRound {
            self.store.delete_rounds_before(&self.fed_id, round).await?;
        }
        let key = self.key_for(round)?;
        let readers = self.bus.out_neighbours(self.id);
        let local: Vec<NodeId> = readers
            .iter()
            .copied()
            .filter(|r| self.bus.same_store(self.id, *r))
            .collect();
        let options = PutOptions::new().with_lease(self.lease);
        let options = match self.policy {
            // The local readers, and the hold this node keeps until its publish returns.
            DeletePolicy::LastReader => {
                let count = u32::try_from(local.len() + 1).map_err(|_| {
                    StoreError::InvalidArgument(format!("{} readers of one key", local.len()))
                })?;
                options.readers(count)
            }
            DeletePolicy::OwnerNextRound | DeletePolicy::Keep => options,
        };
        Ok(SharePlan {
            key,
            options,
            readers,
            local,
        })
    }

    /// Publishes the key, then settles the object's count: this node's hold, and one release
    /// on behalf of every local reader the publish did not reach (whatever the error).
    async fn publish(&mut self, round: u64, plan: SharePlan) -> Result<Shared, GosError> {
        let SharePlan {
            key,
            readers,
            local,
            ..
        } = plan;
        self.last_shared = Some(round);
        let msg = Message::key(self.fed_id.clone(), self.id, round, &key);
        let bus_bytes = msg.wire_size();
        let result = if readers.is_empty() {
            Ok(Vec::new())
        } else {
            self.bus.publish(msg, Targets::Neighbours).await
        };
        let reached: &[NodeId] = match &result {
            Ok(reached) => reached,
            Err(e) => e.reached(),
        };
        let settled = match self.policy {
            DeletePolicy::LastReader => {
                let unreached = local.iter().filter(|r| !reached.contains(r)).count();
                self.release_times(&key, 1 + unreached).await
            }
            DeletePolicy::OwnerNextRound if reached.is_empty() => {
                self.store.delete(&key).await.map(|_| ())
            }
            DeletePolicy::OwnerNextRound | DeletePolicy::Keep => Ok(()),
        };
        match (result, settled) {
            (Ok(reached), Ok(())) => Ok(Shared {
                key,
                bus_bytes: bus_bytes * reached.len(),
                readers: reached,
            }),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), settled) => {
                if let Err(cleanup) = settled {
                    tracing::warn!(node = %self.id, %key, "releasing after a failed publish: {cleanup}");
                }
                Err(e)
            }
        }
    }

    /// Releases `key` `times` times (this node's hold and the readers it did not reach).
    async fn release_times(&self, key: &ObjectKey, times: usize) -> Result<(), StoreError> {
        for _ in 0..times {
            match self.store.release(key).await? {
                ReleaseOutcome::Remaining(_) | ReleaseOutcome::Unbounded => {}
                // Deleted by this release, or already gone (expired): nothing more to release.
                ReleaseOutcome::Deleted | ReleaseOutcome::NotFound => break,
            }
        }
        Ok(())
    }

    /// Receives the next weights message (the earliest round held back first, then any round)
    /// and reads its object. Messages that are not a well-formed share of an in-neighbour
    /// (another node's key, a repeat, no key) are skipped.
    pub async fn receive(&mut self, timeout: Duration) -> Result<Received, GosError> {
        let deadline = Instant::now() + timeout;
        let in_neighbours = self.bus.in_neighbours(self.id);
        loop {
            let msg = match self.early.first_entry() {
                Some(mut first) => {
                    let msg = first.get_mut().pop();
                    if first.get().is_empty() {
                        first.remove();
                    }
                    match msg {
                        Some(msg) => msg,
                        None => continue,
                    }
                }
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.next_weights(left).await?
                }
            };
            if !in_neighbours.contains(&msg.sender) {
                tracing::warn!(node = %self.id, from = %msg.sender, "skipping weights from a node that is not an in-neighbour");
                continue;
            }
            if let Some(key) = self.accept(&msg) {
                return self.read(msg, key).await;
            }
        }
    }

    /// Gathers the weights every in-neighbour shares for `round`, waiting at most `timeout` in
    /// all. Messages of later rounds are kept for a later gather; repeated, stale or malformed
    /// ones are skipped.
    pub async fn gather(
        &mut self,
        round: u64,
        timeout: Duration,
    ) -> Result<Vec<Received>, GosError> {
        let deadline = Instant::now() + timeout;
        let mut expected = self.bus.in_neighbours(self.id);
        let mut got = Vec::with_capacity(expected.len());
        // Held-back messages of rounds before this one will never be gathered.
        self.early = self.early.split_off(&round);
        for msg in self.early.remove(&round).unwrap_or_default() {
            if expected.contains(&msg.sender)
                && let Some(key) = self.accept(&msg)
            {
                expected.retain(|n| *n != msg.sender);
                got.push(self.read(msg, key).await?);
            }
        }
        while !expected.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.next_weights(left).await?;
            if msg.round == round && expected.contains(&msg.sender) {
                if let Some(key) = self.accept(&msg) {
                    expected.retain(|n| *n != msg.sender);
                    got.push(self.read(msg, key).await?);
                }
            } else if msg.round > round {
                self.early.entry(msg.round).or_default().push(msg);
            } else {
                tracing::warn!(node = %self.id, from = %msg.sender, round = msg.round, "ignoring a stale or unexpected weights message");
            }
        }
        Ok(got)
    }

    /// The key of `msg` if this node may read (and later release) it: the body is the key of
    /// the sender's weights for the message's round, and no message of that sender for that
    /// round or a later one was accepted before. Records the acceptance.
    fn accept(&mut self, msg: &Message) -> Option<ObjectKey> {
        let expected = self.key_of(msg.sender, msg.round).ok()?;
        match msg.body_key() {
            Some(key) if key == expected => {}
            other => {
                tracing::warn!(node = %self.id, from = %msg.sender, round = msg.round, body = other.map(|k| k.to_string()).unwrap_or_default(), "skipping a weights message whose body is not its sender's key for its round");
                return None;
            }
        }
        if self
            .accepted
            .get(&msg.sender)
            .is_some_and(|last| *last >= msg.round)
        {
            tracing::warn!(node = %self.id, from = %msg.sender, round = msg.round, "skipping a repeated weights message");
            return None;
        }
        self.accepted.insert(msg.sender, msg.round);
        Some(expected)
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

    async fn read(&self, msg: Message, key: ObjectKey) -> Result<Received, GosError> {
        let value = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| GosError::MissingObject {
                key: key.clone(),
                from: msg.sender,
            })?;
        Ok(Received {
            from: msg.sender,
            round: msg.round,
            key,
            value,
        })
    }

    /// Says this node is done with `received`: drops the value and, under
    /// [`DeletePolicy::LastReader`], releases the key (one atomic store operation; the last
    /// release deletes the object). Returns what the release did.
    ///
    /// Under [`DeletePolicy::OwnerNextRound`] a copy from another cluster (which its gateway
    /// stored with a count) is released too; the owner's own objects go by retention, and
    /// [`DeletePolicy::Keep`] only drops the value. Both return
    /// [`ReleaseOutcome::Unbounded`] when nothing was released.
    pub async fn release(&self, received: Received) -> Result<ReleaseOutcome, GosError> {
        let Received {
            key, value, from, ..
        } = received;
        drop(value);
        let release = match self.policy {
            DeletePolicy::LastReader => true,
            DeletePolicy::OwnerNextRound => !self.bus.same_store(self.id, from),
            DeletePolicy::Keep => false,
        };
        if !release {
            return Ok(ReleaseOutcome::Unbounded);
        }
        Ok(self.store.release(&key).await?)
    }

    /// Ends this node's rounds. Under [`DeletePolicy::OwnerNextRound`], removes the
    /// federation's rounds up to the last one this node shared from its store: call it once
    /// every node has read the last round (after a final barrier). Nothing to do otherwise.
    pub async fn finish(&mut self) -> Result<(), GosError> {
        if let (DeletePolicy::OwnerNextRound, Some(last)) = (self.policy, self.last_shared.take()) {
            self.store
                .delete_rounds_before(&self.fed_id, last.saturating_add(1))
                .await?;
        }
        Ok(())
    }
}
