//! Feature `gateway`: a [`FederatedNode`](crate::FederatedNode) over several clusters. The
//! hybrid manager is a [`Bus`], and a configuration's `[gateway]` section becomes a gateway
//! configuration.

use std::path::Path;

use async_trait::async_trait;
use gos_gateway::{
    AllowList, GatewayConfig as WireGatewayConfig, HybridTopologyManager, Timeouts, TlsSettings,
    TransportTuning, WireLimits,
};
use gos_topology::{Message, NodeId, Targets};

use crate::bus::Bus;
use crate::config::GatewayConfig;
use crate::error::GosError;

#[async_trait]
impl Bus for HybridTopologyManager {
    async fn publish(&self, msg: Message, targets: Targets) -> Result<Vec<NodeId>, GosError> {
        // The hybrid publish goes on after a failed target or cluster and reports each one;
        // only a message that cannot be routed at all is an error here.
        let report = HybridTopologyManager::publish(self, msg, targets).await?;
        let mut reached = report.local;
        reached.extend(report.remote.into_iter().map(|(node, _)| node));
        reached.sort_unstable();
        if report.failed.is_empty() {
            return Ok(reached);
        }
        // The node releases for every local reader not reached; a remote target's copy is
        // released by its own cluster's gateway.
        Err(GosError::Undelivered {
            delivered: reached,
            failed: report
                .failed
                .into_iter()
                .map(|f| (f.node, format!("{} (cluster {})", f.reason, f.cluster)))
                .collect(),
        })
    }

    fn out_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        let hybrid = self.topology();
        let topology = hybrid.topology();
        if topology.contains(node) {
            topology.neighbours(node).to_vec()
        } else {
            Vec::new()
        }
    }

    fn in_neighbours(&self, node: NodeId) -> Vec<NodeId> {
        let hybrid = self.topology();
        let topology = hybrid.topology();
        if topology.contains(node) {
            topology.in_neighbours(node)
        } else {
            Vec::new()
        }
    }

    /// Nodes of one cluster share its store; an object crossing to another cluster is a copy
    /// in that cluster's store, released by that cluster's readers.
    fn same_store(&self, a: NodeId, b: NodeId) -> bool {
        let hybrid = self.topology();
        hybrid.cluster_of(a).is_some() && hybrid.cluster_of(a) == hybrid.cluster_of(b)
    }
}

impl GatewayConfig {
    /// The gateway configuration this section describes: reads the certificate, the key and
    /// the CA (relative paths from `base`) and allows the listed clusters and the peers.
    pub fn to_wire(&self, base: &Path) -> Result<WireGatewayConfig, GosError> {
        let mut allowed: Vec<String> = self.allow.clone();
        allowed.extend(self.peers.iter().map(|p| p.cluster.clone()));
        let mut list = AllowList::new(allowed);
        for (id, role) in &self.roles {
            let role = role.parse::<gos_gateway::Role>().map_err(|e| {
                crate::config::ConfigError::Invalid(format!("gateway.roles.{id}: {e}"))
            })?;
            list = list.grant(id.clone(), role);
        }
        let tls = TlsSettings::from_files(
            &base.join(&self.cert),
            &base.join(&self.key),
            &base.join(&self.ca),
            list,
        )
        .map_err(gos_gateway::GatewayError::from)?;
        let mut wire = WireGatewayConfig::new(self.listen.resolve()?, tls);
        wire.timeouts = Timeouts {
            connect: self.timeouts.connect,
            io: self.timeouts.io,
            idle: self.timeouts.idle,
        };
        // Validation bounded the header sizes and windows to u32.
        let u32_of = |size: crate::config::ByteSize| u32::try_from(size.0).unwrap_or(u32::MAX);
        wire.limits = WireLimits {
            max_request_header: u32_of(self.limits.max_request_header),
            max_response_header: u32_of(self.limits.max_response_header),
            max_object: self.limits.max_object.0,
            min_rate: self.limits.min_rate.0.max(1),
            max_connections_per_peer: self.limits.max_connections_per_peer,
            max_connections: self.limits.max_connections,
            max_in_flight_per_peer: self.limits.max_in_flight_per_peer.0,
        };
        let t = &self.transport;
        wire.transport = TransportTuning {
            stream_window: u32_of(t.stream_window),
            connection_window: u32_of(t.connection_window),
            send_window: u32_of(t.send_window),
            udp_buffer: u32_of(t.udp_buffer),
            max_concurrent_streams: t.max_concurrent_streams,
            mtu_upper_bound: t.mtu_upper_bound,
            path_rate_bps: t.path_rate_bps,
            path_rtt: t.path_rtt,
            congestion: match t.congestion {
                crate::config::CongestionName::Cubic => gos_gateway::Congestion::Cubic,
                crate::config::CongestionName::NewReno => gos_gateway::Congestion::NewReno,
                crate::config::CongestionName::Bbr => gos_gateway::Congestion::Bbr,
            },
            runtime_workers: t.runtime_workers.and_then(std::num::NonZeroUsize::new),
        };
        wire.transport
            .validate()
            .map_err(|e| gos_gateway::GatewayError::InvalidConfig(format!("gateway.{e}")))?;
        wire.dedup_window = self.dedup_window;
        wire.max_attempts = self.max_attempts;
        wire.resume_grace = self.resume_grace;
        Ok(wire)
    }
}
