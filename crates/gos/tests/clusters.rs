//! Two clusters assembled from two TOML files (feature `gateway`): a federation whose ring
//! crosses them runs rounds through the gateways on 127.0.0.1, and the delete rule holds in
//! both stores.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::path::Path;
use std::time::Duration;

use gos::gateway::certs::FederationCa;
use gos::{Bytes, Cluster, ClusterConfig, DeletePolicy, ObjectStoreExt};

fn config(dir: &Path, id: &str, other: &str) -> ClusterConfig {
    let text = format!(
        r#"
        fed_id = "fed"
        cluster_id = "{id}"
        [store]
        capacity = "256MiB"
        [topology]
        kind = "ring"
        nodes = 4
        clusters = ["a", "a", "b", "b"]
        [gateway]
        listen = "127.0.0.1:0"
        ca = "ca.pem"
        cert = "{id}.pem"
        key = "{id}.key"
        allow = ["{other}"]
        "#
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).unwrap();
    ClusterConfig::from_file(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_across_two_clusters_built_from_config_files() {
    ring_across_two_clusters(DeletePolicy::LastReader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_next_round_across_two_clusters_leaves_no_copy_behind() {
    ring_across_two_clusters(DeletePolicy::OwnerNextRound).await;
}

async fn ring_across_two_clusters(policy: DeletePolicy) {
    let dir = tempfile::tempdir().unwrap();
    let ca = FederationCa::generate("test federation").unwrap();
    ca.write(dir.path(), "ca").unwrap();
    for id in ["a", "b"] {
        ca.issue(id).unwrap().write(dir.path(), id).unwrap();
    }
    let a = Cluster::start(config(dir.path(), "a", "b"), dir.path())
        .await
        .unwrap()
        .policy(policy);
    let b = Cluster::start(config(dir.path(), "b", "a"), dir.path())
        .await
        .unwrap()
        .policy(policy);
    a.add_peer("b", b.gateway_addr().unwrap()).unwrap();
    b.add_peer("a", a.gateway_addr().unwrap()).unwrap();
    assert_eq!(a.node_ids(), [gos::NodeId(0), gos::NodeId(1)]);
    assert_eq!(b.node_ids(), [gos::NodeId(2), gos::NodeId(3)]);

    let mut nodes = a.nodes().unwrap();
    nodes.extend(b.nodes().unwrap());
    // Owner-next-round is safe only when every reader has read round n-1 before its owner
    // starts round n: a synchronous federation, here a barrier between rounds.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(nodes.len()));
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|mut node| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                for round in 0..3u64 {
                    barrier.wait().await;
                    let tag = node.id().0 as u8 * 10 + round as u8;
                    node.share(round, Bytes::from(vec![tag; 2 << 20])).await?;
                    let inputs = node.gather(round, Duration::from_secs(20)).await?;
                    assert_eq!(inputs.len(), 2);
                    for input in inputs {
                        let want = input.from.0 as u8 * 10 + round as u8;
                        assert!(input.value.iter().all(|&x| x == want));
                        node.release(input).await?;
                    }
                }
                barrier.wait().await;
                node.finish().await?;
                Ok::<(), gos::GosError>(())
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("rounds finish in time")
            .unwrap()
            .unwrap();
    }
    // Each cluster's copy of a model was deleted: by its last local reader, or by its owner
    // (owner-next-round) while copies in the other cluster went with their last reader.
    assert!(
        a.store().is_empty().await.unwrap(),
        "{:?}",
        a.store().keys().await.unwrap()
    );
    assert!(
        b.store().is_empty().await.unwrap(),
        "{:?}",
        b.store().keys().await.unwrap()
    );
    // 4 nodes x 2 neighbours x 3 rounds = 24 key messages over both clusters' buses.
    assert_eq!(a.routing_stats().messages + b.routing_stats().messages, 24);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "fed_id = \"f\"\n[topology]\nkind = \"ring\"\nnodes = 3\nclusters = [\"a\", \"a\", \"b\"]\n";
    let err = Cluster::start(ClusterConfig::from_toml(text).unwrap(), dir.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs a [gateway] section"),
        "{err}"
    );

    let ca = FederationCa::generate("test federation").unwrap();
    ca.write(dir.path(), "ca").unwrap();
    ca.issue("a").unwrap().write(dir.path(), "a").unwrap();
    // The certificate names `a`, the file says `b`.
    let mut config = config(dir.path(), "a", "b");
    config.cluster_id = "b".into();
    let err = Cluster::start(config, dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("certificate names `a`"), "{err}");
    // A missing certificate file.
    let mut config = config_missing(dir.path());
    config.cluster_id = "c".into();
    assert!(Cluster::start(config, dir.path()).await.is_err());
}

fn config_missing(dir: &Path) -> ClusterConfig {
    let mut c = config(dir, "a", "b");
    c.gateway.as_mut().unwrap().cert = "nope.pem".into();
    c
}
