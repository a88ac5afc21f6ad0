//! The example configs of `docs/getting-started.md` (`docs/examples/*.toml`) parse, build
//! their topology and have the gateway section `gos serve` needs.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    for (file, id, other) in [
        ("cluster-a.toml", "cluster-a", "cluster-b"),
        ("cluster-b.toml", "cluster-b", "cluster-a"),
    ] {
        let config = gos::ClusterConfig::from_file(dir.join(file)).unwrap();
        assert_eq!(config.cluster_id, id);
        assert_eq!(config.store.backend, gos::config::Backend::Shm);
        assert_eq!(config.store.name.as_deref(), Some(id));
        config.topology.build(&dir).unwrap();
        let gateway = config.gateway.unwrap();
        assert_eq!(gateway.cert, Path::new("certs").join(format!("{id}.pem")));
        assert!(gateway.allow.iter().any(|a| a == "client"));
        assert_eq!(gateway.peers[0].cluster, other);
    }
}
