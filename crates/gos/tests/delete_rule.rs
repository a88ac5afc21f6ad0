//! The delete rule under concurrency: with `DeletePolicy::LastReader`, no reader ever gets
//! `None` for a key it was told about, and every key is gone once all its readers released it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gos::{
    DeletePolicy, Federation, GosError, MemoryStore, ObjectKey, ObjectStore, ObjectStoreExt,
    Topology,
};

async fn run_rounds(topology: Topology, rounds: u64, size: usize) -> Result<(), GosError> {
    run_rounds_over(Arc::new(MemoryStore::default()), topology, rounds, size).await
}

async fn run_rounds_over(
    store: Arc<dyn ObjectStore>,
    topology: Topology,
    rounds: u64,
    size: usize,
) -> Result<(), GosError> {
    let federation =
        Federation::new("fed", topology, store.clone()).policy(DeletePolicy::LastReader);
    let nodes = federation.nodes()?;
    // Every node runs on its own task: shares, then gathers and releases, with random yields
    // between the steps so that readers interleave every way the scheduler allows.
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|mut node| {
            tokio::spawn(async move {
                for round in 0..rounds {
                    let tag = (node.id().0 as u8).wrapping_add(round as u8);
                    node.share(round, Bytes::from(vec![tag; size])).await?;
                    let inputs = node.gather(round, Duration::from_secs(10)).await?;
                    for input in inputs {
                        let want = (input.from.0 as u8).wrapping_add(input.round as u8);
                        assert!(
                            input.value.iter().all(|&b| b == want),
                            "torn or foreign value"
                        );
                        for _ in 0..(input.from.0 % 3) {
                            tokio::task::yield_now().await;
                        }
                        node.release(input).await?;
                    }
                }
                Ok::<(), GosError>(())
            })
        })
        .collect();
    for t in tasks {
        // A `MissingObject` error here is the rule broken: a reader found its key deleted.
        t.await.expect("node task panicked")?;
    }
    assert!(
        store.is_empty().await?,
        "keys left after every reader released: {:?}",
        store.keys().await?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_reader_deletes_and_no_reader_finds_a_key_gone_full() {
    for _ in 0..10 {
        run_rounds(Topology::full(8).unwrap(), 5, 4096)
            .await
            .unwrap();
    }
}

/// The same over the shared-memory store, whose counts live in its record table.
#[cfg(feature = "shm")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_reader_deletes_and_no_reader_finds_a_key_gone_shm() {
    let name = format!("delete-rule-{}", std::process::id());
    let _ = gos::shm::ShmStore::remove(&name);
    let store = gos::shm::ShmStore::create(
        &name,
        gos::shm::ShmConfig::new(gos::Limits::with_capacity(64 << 20)),
    )
    .unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let mut result = Ok(());
    for _ in 0..5 {
        result = run_rounds_over(Arc::clone(&store), Topology::full(8).unwrap(), 5, 4096).await;
        if result.is_err() {
            break;
        }
    }
    drop(store);
    gos::shm::ShmStore::remove(&name).unwrap();
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_reader_deletes_and_no_reader_finds_a_key_gone_k_connected() {
    for seed in 0..10 {
        run_rounds(Topology::k_connected(10, 3, seed).unwrap(), 4, 1024)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_key_is_kept_until_its_last_reader_releases() {
    let store = Arc::new(MemoryStore::default());
    let federation = Federation::new(
        "fed",
        Topology::star(4, gos::NodeId(0)).unwrap(),
        store.clone(),
    );
    let mut nodes = federation.nodes().unwrap();
    let shared = nodes[0]
        .share(1, Bytes::from_static(b"hub weights"))
        .await
        .unwrap();
    assert_eq!(shared.readers.len(), 3);
    let mut received = Vec::new();
    for node in &mut nodes[1..] {
        received.push(node.receive(Duration::from_secs(1)).await.unwrap());
    }
    for (i, r) in received.into_iter().enumerate() {
        let node = &nodes[i + 1];
        let deleted = node.release(r).await.unwrap().deleted();
        assert_eq!(deleted, i == 2, "only the third release deletes");
        assert_eq!(store.get(&shared.key).await.unwrap().is_some(), i < 2);
    }
    assert!(store.is_empty().await.unwrap());
}

#[tokio::test]
async fn owner_next_round_deletes_the_previous_round_when_sharing() {
    let store = Arc::new(MemoryStore::default());
    let federation = Federation::new("fed", Topology::ring(3).unwrap(), store.clone())
        .policy(DeletePolicy::OwnerNextRound);
    let mut nodes = federation.nodes().unwrap();
    let first = nodes[0].share(1, Bytes::from_static(b"r1")).await.unwrap();
    let second = nodes[0].share(2, Bytes::from_static(b"r2")).await.unwrap();
    assert!(store.get(&first.key).await.unwrap().is_none());
    assert!(store.get(&second.key).await.unwrap().is_some());
    nodes[0].finish().await.unwrap();
    assert!(store.is_empty().await.unwrap());
}

#[tokio::test]
async fn a_key_deleted_under_a_reader_is_a_typed_error() {
    let store = Arc::new(MemoryStore::default());
    let federation = Federation::new("fed", Topology::ring(3).unwrap(), store.clone())
        .policy(DeletePolicy::Keep);
    let mut nodes = federation.nodes().unwrap();
    let shared = nodes[0].share(1, Bytes::from_static(b"w")).await.unwrap();
    store.delete(&shared.key).await.unwrap();
    match nodes[1].receive(Duration::from_secs(1)).await {
        Err(GosError::MissingObject { key, from }) => {
            assert_eq!(key, shared.key);
            assert_eq!(from, gos::NodeId(0));
        }
        other => panic!("expected MissingObject, got {other:?}"),
    }
}

#[tokio::test]
async fn gather_times_out_with_a_typed_error() {
    let store = Arc::new(MemoryStore::default());
    let federation = Federation::new("fed", Topology::ring(3).unwrap(), store);
    let mut nodes = federation.nodes().unwrap();
    match nodes[1].gather(1, Duration::from_millis(50)).await {
        Err(GosError::RecvTimeout(_)) => {}
        other => panic!("expected RecvTimeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_publish_that_reaches_nobody_takes_its_key_back() {
    let store = Arc::new(MemoryStore::default());
    let federation = Federation::new("fed", Topology::ring(3).unwrap(), store.clone());
    // Node 0 shares, but its neighbours never registered: every delivery fails.
    let mut node = federation.node(gos::NodeId(0)).unwrap();
    let err = node.share(1, Bytes::from_static(b"w")).await.unwrap_err();
    assert!(matches!(err, GosError::Topology(_)), "{err:?}");
    assert!(
        store.is_empty().await.unwrap(),
        "the key leaked: {:?}",
        store.keys().await.unwrap()
    );
}

#[tokio::test]
async fn a_partly_delivered_publish_is_deleted_by_the_readers_who_got_it() {
    let store = Arc::new(MemoryStore::default());
    let federation = Federation::new("fed", Topology::ring(3).unwrap(), store.clone());
    let mut sender = federation.node(gos::NodeId(0)).unwrap();
    let mut reader = federation.node(gos::NodeId(1)).unwrap();
    // Node 2 never registered: the publish reaches node 1 only.
    let err = sender.share(1, Bytes::from_static(b"w")).await.unwrap_err();
    assert!(matches!(err, GosError::Topology(_)), "{err:?}");
    let key = ObjectKey::round("fed", "node_0", 1).unwrap();
    assert!(
        store.get(&key).await.unwrap().is_some(),
        "node 1 must still find it"
    );
    let input = reader.receive(Duration::from_secs(1)).await.unwrap();
    assert!(
        reader.release(input).await.unwrap().deleted(),
        "node 1 is the last reader left"
    );
    assert!(
        store.is_empty().await.unwrap(),
        "{:?}",
        store.keys().await.unwrap()
    );
}
