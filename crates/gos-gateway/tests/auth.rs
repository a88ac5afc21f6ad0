//! Each authentication failure is refused: no client certificate, a certificate from another
//! CA, a cluster not on the allow-list (either side), a wrong ALPN. None of them gets a
//! request in or an answer out.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use gos_gateway::certs::FederationCa;
use gos_gateway::frame::{self, FrameKind, Request};
use gos_gateway::{GatewayError, RemoteStore};
use gos_store::{ObjectKey, ObjectStoreExt};
use quinn::crypto::rustls::QuicClientConfig;

/// Tries one put over a connection made with `client` (a raw rustls setup); true if the
/// gateway stored anything or answered anything.
async fn anything_gets_through(
    client: rustls::ClientConfig,
    gateway: &gos_gateway::Gateway,
) -> bool {
    let crypto = QuicClientConfig::try_from(client).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let endpoint = quinn::Endpoint::client(LOCALHOST.parse().unwrap()).unwrap();
    let name = gos_gateway::tls::cluster_dns_name(gateway.cluster_id());
    let Ok(Ok(conn)) = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        endpoint.connect_with(config, addr(gateway), &name).unwrap(),
    )
    .await
    else {
        return false;
    };
    // In TLS 1.3 the client may finish its side of the handshake before the server has
    // judged its certificate: try to use the connection.
    let attempt = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        let put = Request::Put {
            key: ObjectKey::new("intruder").unwrap(),
            options: frame::WireOptions::from(&gos_store::PutOptions::new()),
            len: 0,
            reservation: false,
            transfer: None,
        };
        send.write_all(&frame::encode(FrameKind::Request, &put).unwrap())
            .await
            .ok()?;
        send.write_all(&frame::Checksum::new().trailer())
            .await
            .ok()?;
        send.finish().ok()?;
        let mut prefix = [0u8; frame::PREFIX_LEN];
        recv.read_exact(&mut prefix).await.ok()
    };
    let answered = tokio::time::timeout(std::time::Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
        .is_some();
    answered || !gateway.store().is_empty().await.unwrap()
}

fn base(
    ca: &FederationCa,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().unwrap()).unwrap();
    rustls::ClientConfig::builder_with_provider(gos_gateway::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
}

fn with_alpn(mut config: rustls::ClientConfig, alpn: &[u8]) -> rustls::ClientConfig {
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let fed = Fed::new();
    let gw = fed.gateway("alpha", &["beta"], memory(1 << 20)).await;
    let client = with_alpn(base(&fed.ca).with_no_client_auth(), gos_gateway::tls::ALPN);
    assert!(!anything_gets_through(client, &gw).await);
    assert_eq!(gw.stats().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let fed = Fed::new();
    let gw = fed.gateway("alpha", &["beta"], memory(1 << 20)).await;
    // "beta" is on the list, but its certificate comes from an impostor CA.
    let impostor = FederationCa::generate("impostor").unwrap();
    let identity = impostor.issue("beta").unwrap();
    let client = with_alpn(
        base(&fed.ca)
            .with_client_auth_cert(identity.cert_chain().unwrap(), identity.key_der().unwrap())
            .unwrap(),
        gos_gateway::tls::ALPN,
    );
    assert!(!anything_gets_through(client, &gw).await);
    // The same through the public client: refused, typed as unavailable.
    let mut config = fed.client("beta", &gw);
    config.tls = tls_with(&impostor, identity, &["alpha"]);
    config.tls.ca = vec![fed.ca.cert_der().unwrap()];
    config.max_attempts = 1;
    assert!(RemoteStore::connect(config).await.is_err());
    assert_eq!(gw.stats().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_not_on_the_allow_list_is_refused() {
    let fed = Fed::new();
    let gw = fed.gateway("alpha", &["beta"], memory(1 << 20)).await;
    let gamma = fed.ca.issue("gamma").unwrap();
    let client = with_alpn(
        base(&fed.ca)
            .with_client_auth_cert(gamma.cert_chain().unwrap(), gamma.key_der().unwrap())
            .unwrap(),
        gos_gateway::tls::ALPN,
    );
    assert!(!anything_gets_through(client, &gw).await);
    let mut config = fed.client("gamma", &gw);
    config.max_attempts = 1;
    assert!(RemoteStore::connect(config).await.is_err());
    assert_eq!(gw.stats().connections, 0);
    // The allowed cluster, same CA, gets in: through the raw setup above (so that a refusal
    // there is the gateway's, not the test's) and through the client.
    let beta = fed.ca.issue("beta").unwrap();
    let client = with_alpn(
        base(&fed.ca)
            .with_client_auth_cert(beta.cert_chain().unwrap(), beta.key_der().unwrap())
            .unwrap(),
        gos_gateway::tls::ALPN,
    );
    assert!(anything_gets_through(client, &gw).await);
    let beta = RemoteStore::connect(fed.client("beta", &gw)).await.unwrap();
    beta.put(&ObjectKey::new("ok").unwrap(), Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(gw.stats().connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dials_only_allowed_clusters_with_the_right_name() {
    let fed = Fed::new();
    let gw = fed.gateway("alpha", &["beta"], memory(1 << 20)).await;
    // Our own allow-list does not have the peer: nothing goes out.
    let mut config = fed.client("beta", &gw);
    config.tls.allowed = gos_gateway::AllowList::new(["delta"]);
    assert!(matches!(
        RemoteStore::connect(config).await,
        Err(GatewayError::NotAllowed(_))
    ));
    // The server at that address is not the cluster we asked for: its name does not verify.
    let mut config = fed.client("beta", &gw);
    config.cluster = "delta".into();
    config.tls.allowed = gos_gateway::AllowList::new(["delta"]);
    config.max_attempts = 1;
    assert!(RemoteStore::connect(config).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_alpn_is_refused() {
    let fed = Fed::new();
    let gw = fed.gateway("alpha", &["beta"], memory(1 << 20)).await;
    let beta = fed.ca.issue("beta").unwrap();
    let client = with_alpn(
        base(&fed.ca)
            .with_client_auth_cert(beta.cert_chain().unwrap(), beta.key_der().unwrap())
            .unwrap(),
        b"h3",
    );
    assert!(!anything_gets_through(client, &gw).await);
}
