//! Helpers shared by the gateway's integration tests: a federation CA, gateways on 127.0.0.1
//! with short timeouts, clients and raw quinn connections.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gos_gateway::certs::{FederationCa, Identity};
use gos_gateway::{
    AllowList, ClientConfig, Gateway, GatewayConfig, Role, Timeouts, TlsSettings, TransportTuning,
};
use gos_store::{Limits, ObjectStore};
use gos_store_memory::MemoryStore;

pub const LOCALHOST: &str = "127.0.0.1:0";

pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(3),
        io: Duration::from_secs(3),
        idle: Duration::from_secs(5),
    }
}

pub struct Fed {
    pub ca: FederationCa,
}

impl Fed {
    pub fn new() -> Self {
        Fed {
            ca: FederationCa::generate("test federation").unwrap(),
        }
    }

    pub fn tls(&self, id: &str, allowed: &[&str]) -> TlsSettings {
        tls_with(&self.ca, self.ca.issue(id).unwrap(), allowed)
    }

    /// A gateway configuration allowing `allowed` as admins: the tests of the transport
    /// are not about roles (tests/roles.rs is).
    pub fn gateway_config(&self, id: &str, allowed: &[&str]) -> GatewayConfig {
        let roles: Vec<(&str, Role)> = allowed.iter().map(|a| (*a, Role::Admin)).collect();
        self.gateway_config_with_roles(id, &roles)
    }

    /// A gateway configuration allowing each id with its role.
    pub fn gateway_config_with_roles(&self, id: &str, allowed: &[(&str, Role)]) -> GatewayConfig {
        let mut tls = self.tls(id, &[]);
        tls.allowed = AllowList::with_roles(allowed.iter().copied());
        let mut config = GatewayConfig::new(LOCALHOST.parse().unwrap(), tls);
        config.timeouts = timeouts();
        config
    }

    pub async fn gateway(
        &self,
        id: &str,
        allowed: &[&str],
        store: Arc<dyn ObjectStore>,
    ) -> Gateway {
        Gateway::start(self.gateway_config(id, allowed), store)
            .await
            .unwrap()
    }

    pub fn client(&self, id: &str, gateway: &Gateway) -> ClientConfig {
        let cluster = gateway.cluster_id().to_owned();
        let mut config = ClientConfig::new(
            gateway.local_addr().unwrap(),
            cluster.clone(),
            self.tls(id, &[&cluster]),
        );
        config.timeouts = timeouts();
        config
    }
}

pub fn tls_with(ca: &FederationCa, identity: Identity, allowed: &[&str]) -> TlsSettings {
    TlsSettings {
        identity,
        ca: vec![ca.cert_der().unwrap()],
        allowed: AllowList::new(allowed.iter().copied()),
    }
}

pub fn memory(capacity: u64) -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(Limits::with_capacity(capacity)))
}

/// A raw quinn connection to `gateway`, authenticated as `id`.
pub async fn raw_connection(fed: &Fed, id: &str, gateway: &Gateway) -> quinn::Connection {
    let tls = fed.tls(id, &[gateway.cluster_id()]);
    let transport = TransportTuning::default();
    let t = Arc::new(transport.transport_config(&timeouts()));
    let client = tls.quinn_client(t).unwrap();
    let endpoint = transport
        .endpoint(LOCALHOST.parse().unwrap(), None)
        .unwrap();
    let name = gos_gateway::tls::cluster_dns_name(gateway.cluster_id());
    endpoint
        .connect_with(client, gateway.local_addr().unwrap(), &name)
        .unwrap()
        .await
        .unwrap()
}

pub fn addr(gateway: &Gateway) -> SocketAddr {
    gateway.local_addr().unwrap()
}

/// A value of `len` bytes that is not all one byte.
pub fn pattern(len: usize, seed: u8) -> bytes::Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// A cluster: a store, a topology manager with `nodes` nodes, and a gateway delivering to it.
pub struct Cluster {
    pub store: Arc<MemoryStore>,
    pub manager: gos_topology::TopologyManager,
    pub gateway: Gateway,
}

impl Fed {
    pub async fn cluster(&self, id: &str, allowed: &[&str], nodes: usize) -> Cluster {
        self.cluster_with(self.gateway_config(id, allowed), nodes)
            .await
    }

    pub async fn cluster_with(&self, config: GatewayConfig, nodes: usize) -> Cluster {
        let store = memory(1 << 30);
        let manager = gos_topology::TopologyManager::new(
            gos_topology::Topology::full(nodes).unwrap(),
            gos_topology::ManagerConfig::default(),
        );
        let target: Arc<dyn gos_gateway::DeliveryTarget> = Arc::new(manager.clone());
        let gateway = Gateway::start_with(config, store.clone(), Some(target))
            .await
            .unwrap();
        Cluster {
            store,
            manager,
            gateway,
        }
    }
}

/// Sends raw bytes as one request on a new stream and reads the final response header (past
/// an `Admitted`).
pub async fn raw_request(conn: &quinn::Connection, bytes: &[u8]) -> gos_gateway::frame::Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // The gateway may refuse before reading everything and stop the stream: ignore that.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    read_response(&mut recv).await
}

/// Reads the final response header of a stream, past an `Admitted`.
pub async fn read_response(recv: &mut quinn::RecvStream) -> gos_gateway::frame::Response {
    use gos_gateway::frame::{Reply, Response};
    match read_one_response(recv).await {
        Response::Ok(Reply::Admitted) => read_one_response(recv).await,
        other => other,
    }
}

/// Reads one response header.
pub async fn read_one_response(recv: &mut quinn::RecvStream) -> gos_gateway::frame::Response {
    use gos_gateway::frame::{self, FrameKind, PREFIX_LEN};
    let mut prefix = [0u8; PREFIX_LEN];
    tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut prefix))
        .await
        .expect("a response in time")
        .expect("a response");
    let len = frame::decode_prefix(&prefix, FrameKind::Response, 1 << 20).unwrap();
    let mut header = vec![0u8; len as usize];
    recv.read_exact(&mut header).await.unwrap();
    frame::decode_header(&header).unwrap()
}

/// Polls `f` until it is true, for at most 5 s.
pub async fn eventually(mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
