//! The life of a shared object (docs/lifecycle.md) over the memory store and (feature `shm`)
//! the shared-memory store: the count of
//! readers and the lease are put with the key, each release is one store operation, a reader
//! that never releases leaves the object to its lease, a publish that fails (whatever the
//! error) releases for every reader it missed, and forged, repeated or garbled messages never
//! make a reader release for others. Deterministic: the store runs on a manual clock.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gos::store::{Clock, ManualClock};
use gos::{
    Bus, ClusterConfig, DEFAULT_LEASE, DeletePolicy, FederatedNode, Federation, GosError,
    ManagerConfig, MemoryStore, Message, NodeId, ObjectKey, ObjectStore, ObjectStoreExt, Readers,
    ReleaseOutcome, Targets, Topology, TopologyError, TopologyManager,
};

const LEASE: Duration = Duration::from_secs(30);

/// A store under test: memory, or shared memory (removed on drop).
struct Fixture {
    store: Arc<dyn ObjectStore>,
    clock: ManualClock,
    _remove: Option<Remove>,
}

struct Remove(#[allow(dead_code)] String);

impl Drop for Remove {
    fn drop(&mut self) {
        #[cfg(feature = "shm")]
        let _ = gos::shm::ShmStore::remove(&self.0);
    }
}

/// Every backend of this build, each on a manual clock.
fn fixtures() -> Vec<Fixture> {
    let mut all = Vec::new();
    let clock = ManualClock::new();
    all.push(Fixture {
        store: Arc::new(
            MemoryStore::default().with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>),
        ),
        clock,
        _remove: None,
    });
    #[cfg(feature = "shm")]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "lifecycle-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let _ = gos::shm::ShmStore::remove(&name);
        let clock = ManualClock::new();
        let store = gos::shm::ShmStore::create(
            &name,
            gos::shm::ShmConfig::new(gos::Limits::with_capacity(64 << 20)),
        )
        .unwrap()
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
        all.push(Fixture {
            store: Arc::new(store),
            clock,
            _remove: Some(Remove(name)),
        });
    }
    all
}

fn key(node: u32, round: u64) -> ObjectKey {
    ObjectKey::round("fed", &NodeId(node).to_string(), round).unwrap()
}

async fn a_share_puts_its_local_readers_and_its_lease_with_the_key_on(
    store: Arc<dyn ObjectStore>,
    clock: ManualClock,
) {
    let federation = Federation::new("fed", Topology::star(4, NodeId(0)).unwrap(), store.clone())
        .lease(Some(LEASE));
    let mut nodes = federation.nodes().unwrap();
    let shared = nodes[0].share(1, Bytes::from_static(b"hub")).await.unwrap();
    let meta = store.head(&shared.key).await.unwrap().unwrap();
    // Three readers; the publisher's hold was released when the publish returned.
    assert_eq!(meta.readers, Readers::exactly(3).unwrap());
    let deadline = meta.expires_at.map(gos::store::to_unix_millis);
    assert_eq!(
        deadline,
        Some(gos::store::to_unix_millis(clock.now() + LEASE))
    );
    // Only the model is in the store: no bookkeeping keys.
    assert_eq!(store.keys().await.unwrap(), vec![shared.key.clone()]);
    let mut outcomes = Vec::new();
    for node in &mut nodes[1..] {
        let input = node.receive(Duration::from_secs(1)).await.unwrap();
        outcomes.push(node.release(input).await.unwrap());
    }
    assert_eq!(
        outcomes,
        vec![
            ReleaseOutcome::Remaining(2.try_into().unwrap()),
            ReleaseOutcome::Remaining(1.try_into().unwrap()),
            ReleaseOutcome::Deleted
        ]
    );
    assert!(store.is_empty().await.unwrap());
}

async fn a_reader_that_never_releases_leaves_the_object_to_its_lease_on(
    store: Arc<dyn ObjectStore>,
    clock: ManualClock,
) {
    let federation =
        Federation::new("fed", Topology::ring(3).unwrap(), store.clone()).lease(Some(LEASE));
    let mut nodes = federation.nodes().unwrap();
    let shared = nodes[0].share(7, Bytes::from_static(b"w")).await.unwrap();
    let got = nodes[1].receive(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        nodes[1].release(got).await.unwrap(),
        ReleaseOutcome::Remaining(1.try_into().unwrap())
    );
    // Node 2 reads and dies holding the value: it never releases.
    let held = nodes[2].receive(Duration::from_secs(1)).await.unwrap();
    drop(nodes);
    clock.advance(LEASE - Duration::from_millis(1));
    assert_eq!(store.sweep().await.unwrap(), 0, "expired before its lease");
    assert!(store.contains(&shared.key).await.unwrap());
    clock.advance(Duration::from_millis(2));
    assert_eq!(store.sweep().await.unwrap(), 1);
    assert!(store.is_empty().await.unwrap());
    assert_eq!(store.stats().await.unwrap().bytes, 0, "space returned");
    // The value a reader holds stays intact after expiry.
    assert_eq!(&held.value[..], b"w");
}

async fn a_node_sweeps_expired_objects_when_it_shares_on(
    store: Arc<dyn ObjectStore>,
    clock: ManualClock,
) {
    let federation =
        Federation::new("fed", Topology::ring(3).unwrap(), store.clone()).lease(Some(LEASE));
    let mut nodes = federation.nodes().unwrap();
    // An abandoned object nobody touches again.
    let abandoned = ObjectKey::new("fed/elsewhere/round_0").unwrap();
    store
        .put_opts(
            &abandoned,
            Bytes::from_static(b"x"),
            &gos::PutOptions::new().readers(2).lease(LEASE),
        )
        .await
        .unwrap();
    clock.advance(LEASE + Duration::from_secs(1));
    // The node's own clock (real time) decides when a sweep is due: a quarter of its lease.
    let mut node = nodes.remove(0).with_lease(Some(Duration::from_millis(4)));
    tokio::time::sleep(Duration::from_millis(2)).await;
    node.share(1, Bytes::from_static(b"w")).await.unwrap();
    assert!(
        !store.keys().await.unwrap().contains(&abandoned),
        "the share swept the expired object"
    );
}

/// A bus that delivers to some targets only and then fails with a chosen error.
#[derive(Debug)]
struct FailingBus {
    manager: TopologyManager,
    deliver_to: Vec<NodeId>,
    error: fn(Vec<NodeId>) -> GosError,
}

#[async_trait]
impl Bus for FailingBus {
    async fn publish(&self, msg: Message, _targets: Targets) -> Result<Vec<NodeId>, GosError> {
        if !self.deliver_to.is_empty() {
            self.manager
                .publish(msg, Targets::Only(self.deliver_to.clone()))
                .await?;
        }
        Err((self.error)(self.deliver_to.clone()))
    }

    fn out_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        Bus::out_neighbours(&self.manager, node)
    }

    fn in_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        Bus::in_neighbours(&self.manager, node)
    }
}

fn failing_node(
    store: &Arc<dyn ObjectStore>,
    manager: &TopologyManager,
    deliver_to: Vec<NodeId>,
    error: fn(Vec<NodeId>) -> GosError,
) -> FederatedNode {
    let bus = Arc::new(FailingBus {
        manager: manager.clone(),
        deliver_to,
        error,
    });
    let inbox = manager.register(NodeId(0)).unwrap();
    FederatedNode::new(
        "fed",
        store.clone(),
        bus,
        Box::new(inbox),
        DeletePolicy::LastReader,
    )
}

async fn a_publish_that_reaches_nobody_deletes_whatever_the_error_on(
    store: Arc<dyn ObjectStore>,
    _clock: ManualClock,
) {
    let errors: [fn(Vec<NodeId>) -> GosError; 4] = [
        |_| GosError::Bus("the relay is gone".into()),
        |_| {
            GosError::Topology(TopologyError::Timeout {
                to: NodeId(1),
                after: Duration::from_secs(5),
            })
        },
        |_| GosError::RecvTimeout(Duration::from_secs(5)),
        |_| GosError::Store(gos::StoreError::Busy("peer gateway overloaded".into())),
    ];
    for error in errors {
        let manager = TopologyManager::new(Topology::full(4).unwrap(), ManagerConfig::default());
        let mut node = failing_node(&store, &manager, Vec::new(), error);
        let err = node.share(1, Bytes::from_static(b"w")).await.unwrap_err();
        assert!(err.reached().is_empty(), "{err:?}");
        assert!(
            store.is_empty().await.unwrap(),
            "after `{err}`: {:?}",
            store.keys().await.unwrap()
        );
    }
}

async fn a_partial_publish_releases_for_the_readers_it_missed_on(
    store: Arc<dyn ObjectStore>,
    _clock: ManualClock,
) {
    let manager = TopologyManager::new(Topology::full(4).unwrap(), ManagerConfig::default());
    let mut readers: Vec<_> = (1..4)
        .map(|i| manager.register(NodeId(i)).unwrap())
        .collect();
    // Node 0 reaches node 2 only: a gateway-style partial delivery, not a topology error.
    let mut node = failing_node(&store, &manager, vec![NodeId(2)], |delivered| {
        GosError::Undelivered {
            delivered,
            failed: vec![
                (NodeId(1), "cluster-b unreachable".into()),
                (NodeId(3), "timed out".into()),
            ],
        }
    });
    let err = node.share(1, Bytes::from_static(b"w")).await.unwrap_err();
    assert_eq!(err.reached(), &[NodeId(2)]);
    let meta = store.head(&key(0, 1)).await.unwrap().unwrap();
    assert_eq!(
        meta.readers,
        Readers::exactly(1).unwrap(),
        "only node 2 counts"
    );
    let msg = readers[1]
        .recv_timeout(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(msg.body_key(), Some(key(0, 1)));
    assert!(readers[0].try_recv().is_err() && readers[2].try_recv().is_err());
    assert_eq!(
        store.release(&key(0, 1)).await.unwrap(),
        ReleaseOutcome::Deleted
    );
    assert!(store.is_empty().await.unwrap());
}

async fn forged_repeated_or_garbled_messages_never_release_for_others_on(
    store: Arc<dyn ObjectStore>,
    _clock: ManualClock,
) {
    let federation = Federation::new("fed", Topology::star(4, NodeId(0)).unwrap(), store.clone());
    let manager = federation.manager().clone();
    let mut nodes = federation.nodes().unwrap();
    // Another node's object that node 1 was never told about.
    let victim = key(3, 1);
    store
        .put_opts(
            &victim,
            Bytes::from_static(b"v"),
            &gos::PutOptions::new().readers(1),
        )
        .await
        .unwrap();
    let forge = |sender: u32, round: u64, body: &ObjectKey| {
        Message::key("fed", NodeId(sender), round, body)
    };
    let to_node_1 = [
        // The hub "sending" node 3's key.
        forge(0, 1, &victim),
        // A garbled body, and an old-style readers header naming nobody.
        Message::new("fed", NodeId(0), gos::MessageKind::Weights, 1)
            .with_body(Bytes::from_static(b"\xff\x00not a key"))
            .with_header("gos-readers", ""),
    ];
    for msg in to_node_1 {
        manager.deliver(NodeId(1), msg).await.unwrap();
    }
    let shared = nodes[0].share(1, Bytes::from_static(b"hub")).await.unwrap();
    // The real message again (a replay), and a stale round.
    manager
        .deliver(NodeId(1), forge(0, 1, &shared.key))
        .await
        .unwrap();
    manager
        .deliver(NodeId(1), forge(0, 0, &key(0, 0)))
        .await
        .unwrap();
    let inputs = nodes[1].gather(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].key, shared.key);
    for input in inputs {
        nodes[1].release(input).await.unwrap();
    }
    // Nothing more for node 1 to read (the replay and the stale round were skipped).
    assert!(matches!(
        nodes[1].receive(Duration::from_millis(50)).await,
        Err(GosError::RecvTimeout(_))
    ));
    // Node 1 released once: the hub's model waits for nodes 2 and 3, the victim is untouched.
    let meta = store.head(&shared.key).await.unwrap().unwrap();
    assert_eq!(meta.readers, Readers::exactly(2).unwrap());
    let victim_meta = store.head(&victim).await.unwrap().unwrap();
    assert_eq!(victim_meta.readers, Readers::exactly(1).unwrap());
    for node in &mut nodes[2..] {
        for input in node.gather(1, Duration::from_secs(1)).await.unwrap() {
            node.release(input).await.unwrap();
        }
    }
    assert_eq!(store.keys().await.unwrap(), vec![victim]);
}

async fn owner_next_round_retention_removes_every_earlier_round_at_once_on(
    store: Arc<dyn ObjectStore>,
    _clock: ManualClock,
) {
    let federation = Federation::new("fed", Topology::ring(3).unwrap(), store.clone())
        .policy(DeletePolicy::OwnerNextRound);
    let mut nodes = federation.nodes().unwrap();
    for round in 0..3 {
        for node in &mut nodes {
            node.share(round, Bytes::from_static(b"w")).await.unwrap();
        }
        for node in &mut nodes {
            for input in node.gather(round, Duration::from_secs(1)).await.unwrap() {
                assert_eq!(
                    node.release(input).await.unwrap(),
                    ReleaseOutcome::Unbounded
                );
            }
        }
        // Only this round's three models are left: the first share of the round removed the
        // earlier ones, every node's.
        let keys = store.keys().await.unwrap();
        assert_eq!(keys, (0..3).map(|n| key(n, round)).collect::<Vec<_>>());
    }
    for node in &mut nodes {
        node.finish().await.unwrap();
    }
    assert!(store.is_empty().await.unwrap());
}

#[test]
fn the_lease_is_set_in_the_cluster_file_with_a_default_from_the_gather_timeout() {
    let base = "fed_id = \"f\"\n[topology]\nkind = \"ring\"\nnodes = 3\n";
    let config = ClusterConfig::from_toml(base).unwrap();
    assert_eq!(config.bus.lease(), DEFAULT_LEASE);
    assert_eq!(DEFAULT_LEASE, gos::lease_for(gos::DEFAULT_GATHER_TIMEOUT));
    assert!(DEFAULT_LEASE > gos::DEFAULT_GATHER_TIMEOUT);
    let config = ClusterConfig::from_toml(&format!("{base}[bus]\nlease_ms = 2500\n")).unwrap();
    assert_eq!(config.bus.lease(), Duration::from_millis(2500));
    let err = ClusterConfig::from_toml(&format!("{base}[bus]\nlease_ms = 0\n")).unwrap_err();
    assert!(err.to_string().contains("bus.lease_ms"), "{err}");
}

#[tokio::test]
async fn a_share_puts_its_local_readers_and_its_lease_with_the_key() {
    for f in fixtures() {
        a_share_puts_its_local_readers_and_its_lease_with_the_key_on(
            Arc::clone(&f.store),
            f.clock.clone(),
        )
        .await;
    }
}

#[tokio::test]
async fn a_reader_that_never_releases_leaves_the_object_to_its_lease() {
    for f in fixtures() {
        a_reader_that_never_releases_leaves_the_object_to_its_lease_on(
            Arc::clone(&f.store),
            f.clock.clone(),
        )
        .await;
    }
}

#[tokio::test]
async fn a_node_sweeps_expired_objects_when_it_shares() {
    for f in fixtures() {
        a_node_sweeps_expired_objects_when_it_shares_on(Arc::clone(&f.store), f.clock.clone())
            .await;
    }
}

#[tokio::test]
async fn a_publish_that_reaches_nobody_deletes_whatever_the_error() {
    for f in fixtures() {
        a_publish_that_reaches_nobody_deletes_whatever_the_error_on(
            Arc::clone(&f.store),
            f.clock.clone(),
        )
        .await;
    }
}

#[tokio::test]
async fn a_partial_publish_releases_for_the_readers_it_missed() {
    for f in fixtures() {
        a_partial_publish_releases_for_the_readers_it_missed_on(
            Arc::clone(&f.store),
            f.clock.clone(),
        )
        .await;
    }
}

#[tokio::test]
async fn forged_repeated_or_garbled_messages_never_release_for_others() {
    for f in fixtures() {
        forged_repeated_or_garbled_messages_never_release_for_others_on(
            Arc::clone(&f.store),
            f.clock.clone(),
        )
        .await;
    }
}

#[tokio::test]
async fn owner_next_round_retention_removes_every_earlier_round_at_once() {
    for f in fixtures() {
        owner_next_round_retention_removes_every_earlier_round_at_once_on(
            Arc::clone(&f.store),
            f.clock.clone(),
        )
        .await;
    }
}
