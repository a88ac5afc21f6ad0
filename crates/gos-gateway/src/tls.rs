//! Mutual TLS for ICRF: rustls configurations (ring provider, TLS 1.3, the ICRF ALPN), the
//! cluster id carried by a certificate, and the allow-list checked during the handshake.
//!
//! A gateway trusts exactly one root: the federation CA. It demands a client certificate,
//! verifies it against that CA, reads the cluster id from it and refuses the handshake unless
//! the id is on its allow-list, so a peer without a certificate, with a certificate of another
//! CA or not on the list never gets a stream opened. A dialling gateway verifies the server's
//! certificate against the same CA and for the name `<peer-id>.gos`, and dials only peers on
//! its own allow-list.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// The ALPN protocol id of ICRF; a peer that does not offer it is refused.
pub const ALPN: &[u8] = b"gos-icrf/1";

/// The DNS-name suffix of cluster certificates: cluster `a` is `a.gos`.
pub const CLUSTER_DOMAIN: &str = "gos";

/// Why TLS could not be set up or a certificate names no cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the configuration (a bad key, a bad certificate).
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The verifier could not be built (for example, no root certificate).
    #[error("tls verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The certificate does not parse.
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    /// The certificate names no cluster, or more than one.
    #[error("certificate names {0} clusters (dns names `<id>.gos`), it must name exactly one")]
    ClusterCount(usize),
    /// The cluster id in a certificate is not a valid DNS label.
    #[error("certificate names an invalid cluster id `{0}`")]
    InvalidClusterId(String),
    /// A certificate or key in the configuration is unusable.
    #[error("{0}")]
    Certificate(#[from] crate::certs::CertError),
    /// quinn does not accept the rustls configuration (it needs TLS 1.3).
    #[error("quic tls configuration: {0}")]
    Quic(String),
    /// An allow-list id can never match a certificate (not a valid cluster id).
    #[error(
        "allow-list id `{0}` can never match a certificate: use 1 to 63 of a-z, 0-9 and `-`, not at either end"
    )]
    InvalidAllowListId(String),
    /// Our own certificate does not verify against the configured CA (or names no cluster).
    #[error("our certificate is not valid for the configured ca: {0}")]
    NotSignedByCa(String),
}

/// The DNS name that identifies `cluster_id`: `<cluster_id>.gos`.
pub fn cluster_dns_name(cluster_id: &str) -> String {
    format!("{cluster_id}.{CLUSTER_DOMAIN}")
}

/// True when `id` is a valid cluster id: one DNS label of 1 to 63 lowercase letters, digits
/// and `-`, not starting or ending with `-`.
pub fn validate_cluster_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// The cluster id named by a certificate: its one subject-alternative DNS name of the form
/// `<id>.gos`. Wildcards and certificates naming several clusters are refused.
pub fn cluster_id_of(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let suffix = format!(".{CLUSTER_DOMAIN}");
    let ids: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => dns.strip_suffix(&suffix),
            _ => None,
        })
        .collect();
    match ids.as_slice() {
        [id] if validate_cluster_id(id) => Ok((*id).to_owned()),
        [id] => Err(TlsError::InvalidClusterId((*id).to_owned())),
        other => Err(TlsError::ClusterCount(other.len())),
    }
}

/// What an allow-listed identity may do at a gateway.
///
/// The role is looked up by the id its certificate names, for every request (see
/// `docs/icrf.md`, "Roles"). An id put on an [`AllowList`] without a role is a
/// [`Role::Peer`]: the least a cluster of a hybrid topology needs, and nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Role {
    /// A peer cluster (the default): delivers messages only from its own nodes (per the
    /// receiving gateway's hybrid topology) to nodes of this cluster, writes and releases
    /// objects only under its own nodes' keys (`{fed}/node_{n}/...`), reads single keys. On a
    /// gateway without a hybrid topology it owns no node, so it may only read.
    #[default]
    Peer,
    /// A client that reads and writes single keys (put, reserve, delete, release, sweep), and
    /// lists keys under a prefix; it delivers no messages.
    ReadWrite,
    /// A client that reads: get, head, listing under a prefix, length, statistics.
    ReadOnly,
    /// Everything, including deleting by prefix, round retention, listing every key and
    /// delivering any message.
    Admin,
}

impl Role {
    /// The role's name in a configuration: `peer`, `read-write`, `read-only`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Peer => "peer",
            Role::ReadWrite => "read-write",
            Role::ReadOnly => "read-only",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Role::Peer, Role::ReadWrite, Role::ReadOnly, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`: use peer, read-write, read-only or admin"))
    }
}

/// The identities a gateway talks to, each with its [`Role`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Arc<BTreeMap<String, Role>>);

impl AllowList {
    /// An allow-list of these ids, each a [`Role::Peer`] (the default role).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        AllowList(Arc::new(
            ids.into_iter().map(|id| (id.into(), Role::Peer)).collect(),
        ))
    }

    /// An allow-list of these ids with their roles.
    pub fn with_roles<I: IntoIterator<Item = (S, Role)>, S: Into<String>>(ids: I) -> Self {
        AllowList(Arc::new(
            ids.into_iter()
                .map(|(id, role)| (id.into(), role))
                .collect(),
        ))
    }

    /// This list with `id` given `role` (added if it was not on the list).
    #[must_use]
    pub fn grant(self, id: impl Into<String>, role: Role) -> Self {
        let mut map = Arc::unwrap_or_clone(self.0);
        map.insert(id.into(), role);
        AllowList(Arc::new(map))
    }

    /// True when `id` is on the list.
    pub fn allows(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    /// The role of `id`, if it is on the list.
    pub fn role(&self, id: &str) -> Option<Role> {
        self.0.get(id).copied()
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Checks that every id can match a certificate (a valid cluster id: one DNS label);
    /// returns the first that cannot.
    pub fn validate(&self) -> Result<(), TlsError> {
        match self.iter().find(|id| !validate_cluster_id(id)) {
            Some(bad) => Err(TlsError::InvalidAllowListId(bad.to_owned())),
            None => Ok(()),
        }
    }
}

/// The crypto provider of every ICRF configuration: rustls with ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone())?;
    }
    Ok(Arc::new(roots))
}

/// A client-certificate verifier: webpki against the federation CA, then the allow-list.
struct AllowListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: AllowList,
}

impl fmt::Debug for AllowListVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowListVerifier")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for AllowListVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = cluster_id_of(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })?;
        if !self.allowed.allows(&id) {
            tracing::warn!(cluster = %id, "refused a cluster that is not on the allow-list");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server side: our certificate, client certificates required, verified against `ca`
/// and checked against `allowed`; TLS 1.3, the ICRF ALPN.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
    allowed: AllowList,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let inner =
        WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone()).build()?;
    let verifier = Arc::new(AllowListVerifier { inner, allowed });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The client side: server certificates verified against `ca` (and for the dialled name by
/// rustls), our certificate presented; TLS 1.3, the ICRF ALPN.
pub fn client_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Checks that our own certificate chain verifies against `ca` for its own cluster name now,
/// as a peer would check it: a gateway refuses to start with a certificate its peers would
/// refuse.
pub fn check_own_certificate(
    cert_chain: &[CertificateDer<'static>],
    ca: &[CertificateDer<'static>],
) -> Result<String, TlsError> {
    let (leaf, intermediates) = cert_chain
        .split_first()
        .ok_or_else(|| TlsError::NotSignedByCa("no certificate".into()))?;
    let id = cluster_id_of(leaf)?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
            .build()
            .map_err(|e| TlsError::NotSignedByCa(e.to_string()))?;
    let name = rustls_pki_types::ServerName::try_from(cluster_dns_name(&id))
        .map_err(|e| TlsError::NotSignedByCa(e.to_string()))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map_err(|e| TlsError::NotSignedByCa(e.to_string()))?;
    Ok(id)
}

/// The cluster id of the peer of an established connection, from its certificate.
pub fn peer_cluster_id(conn: &quinn::Connection) -> Result<String, TlsError> {
    let identity = conn.peer_identity().ok_or(TlsError::BadCertificate(
        "the peer sent no certificate".into(),
    ))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::BadCertificate("unexpected peer identity type".into()))?;
    let leaf = chain
        .first()
        .ok_or(TlsError::BadCertificate("empty certificate chain".into()))?;
    cluster_id_of(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::FederationCa;

    #[test]
    fn cluster_ids_are_dns_labels() {
        for ok in ["a", "cluster-1", "x".repeat(63).as_str()] {
            assert!(validate_cluster_id(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a_b",
            "x".repeat(64).as_str(),
            "*",
        ] {
            assert!(!validate_cluster_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_cluster_id_comes_from_the_certificate() {
        let ca = FederationCa::generate("t").unwrap();
        let cert = ca.issue("west-1").unwrap().cert_der().unwrap();
        assert_eq!(cluster_id_of(&cert).unwrap(), "west-1");
        // The CA's own certificate names no cluster.
        assert!(matches!(
            cluster_id_of(&ca.cert_der().unwrap()),
            Err(TlsError::ClusterCount(0))
        ));
        // Several cluster names, or a wildcard, are refused.
        let key = rcgen::KeyPair::generate().unwrap();
        let two = rcgen::CertificateParams::new(vec!["a.gos".into(), "b.gos".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(matches!(
            cluster_id_of(two.der()),
            Err(TlsError::ClusterCount(2))
        ));
        let wild = rcgen::CertificateParams::new(vec!["*.gos".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(matches!(
            cluster_id_of(wild.der()),
            Err(TlsError::InvalidClusterId(_))
        ));
        assert!(cluster_id_of(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
