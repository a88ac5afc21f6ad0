//! Certificates for a federation: a CA, cluster certificates signed by it, PEM files.
//!
//! A federation has one CA. Each cluster (and each remote-store client) gets a certificate
//! signed by it whose subject alternative name is the DNS name `<cluster-id>.gos`
//! ([`cluster_dns_name`]); that name is the cluster's identity on the wire. The same
//! certificate serves as the gateway's server certificate and as its client certificate when
//! it dials a peer.
//!
//! ```
//! use gos_gateway::certs::FederationCa;
//!
//! let ca = FederationCa::generate("demo federation")?;
//! let cluster = ca.issue("cluster-a")?;
//! assert_eq!(gos_gateway::tls::cluster_id_of(&cluster.cert_der()?)?, "cluster-a");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::{cluster_dns_name, validate_cluster_id};

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused the parameters or could not sign.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A cluster id is not a valid DNS label.
    #[error("invalid cluster id `{0}`: use 1 to 63 of a-z, 0-9 and `-`, not at either end")]
    InvalidClusterId(String),
    /// A PEM file is missing what it should hold.
    #[error("bad pem in {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A certificate and its private key, in PEM, as written to and read from files.
#[derive(Clone)]
pub struct Identity {
    /// The certificate chain, leaf first, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// The certificate chain in DER, leaf first.
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, CertError> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("<certificate>", e))?;
        if chain.is_empty() {
            return Err(CertError::Pem {
                path: "<certificate>".into(),
                reason: "no certificate".into(),
            });
        }
        Ok(chain)
    }

    /// The leaf certificate in DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CertError> {
        let mut chain = self.cert_chain()?;
        Ok(chain.swap_remove(0))
    }

    /// The private key in DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, CertError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| pem_error("<key>", e))
    }

    /// Writes `<dir>/<name>.pem` (certificate) and `<dir>/<name>.key` (key, mode 0600 on
    /// Unix); returns the two paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
        fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        write_file(&cert, &self.cert_pem, false)?;
        write_file(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }

    /// Reads a certificate file and a key file written by [`Identity::write`] (or any PEM).
    pub fn read(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let identity = Identity {
            cert_pem: read_file(cert)?,
            key_pem: read_file(key)?,
        };
        identity.cert_chain().map_err(|e| relabel(e, cert))?;
        identity.key_der().map_err(|e| relabel(e, key))?;
        Ok(identity)
    }
}

/// A federation's certificate authority: signs the certificates of its clusters.
#[derive(Debug)]
pub struct FederationCa {
    identity: Identity,
    issuer: Issuer<'static, KeyPair>,
}

impl FederationCa {
    /// A new CA with a fresh P-256 key; `name` is its common name.
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "GOS federation");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let identity = Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(FederationCa {
            issuer: Issuer::new(params, key),
            identity,
        })
    }

    /// Loads a CA written by [`FederationCa::write`] (certificate and key PEM files).
    pub fn read(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let identity = Identity::read(cert, key)?;
        let key_pair = KeyPair::from_pem(&identity.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&identity.cert_pem, key_pair)?;
        Ok(FederationCa { identity, issuer })
    }

    /// Writes `<dir>/<name>.pem` and `<dir>/<name>.key`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
        self.identity.write(dir, name)
    }

    /// The CA certificate in PEM: what every gateway of the federation trusts.
    pub fn cert_pem(&self) -> &str {
        &self.identity.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CertError> {
        self.identity.cert_der()
    }

    /// Issues a certificate for `cluster_id`, valid for the DNS name `<cluster_id>.gos`, for
    /// both server and client authentication.
    pub fn issue(&self, cluster_id: &str) -> Result<Identity, CertError> {
        if !validate_cluster_id(cluster_id) {
            return Err(CertError::InvalidClusterId(cluster_id.to_owned()));
        }
        let mut params = CertificateParams::new(vec![cluster_dns_name(cluster_id)])?;
        params
            .distinguished_name
            .push(DnType::CommonName, cluster_id);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Reads every certificate of a PEM file (a CA bundle).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_owned(),
            reason: "no certificate".into(),
        });
    }
    Ok(certs)
}

fn read_file(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io)
}

fn pem_error(path: impl Into<PathBuf>, e: rustls_pki_types::pem::Error) -> CertError {
    CertError::Pem {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn relabel(e: CertError, path: &Path) -> CertError {
    match e {
        CertError::Pem { reason, .. } => CertError::Pem {
            path: path.to_owned(),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_cluster_certs_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FederationCa::generate("test federation").unwrap();
        let (ca_cert, ca_key) = ca.write(dir.path(), "ca").unwrap();
        let ca = FederationCa::read(&ca_cert, &ca_key).unwrap();
        let cluster = ca.issue("cluster-a").unwrap();
        let (cert, key) = cluster.write(dir.path(), "cluster-a").unwrap();
        let back = Identity::read(&cert, &key).unwrap();
        assert_eq!(back.cert_pem, cluster.cert_pem);
        assert_eq!(read_certs(&ca_cert).unwrap(), vec![ca.cert_der().unwrap()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            ca.issue("Not_Valid"),
            Err(CertError::InvalidClusterId(_))
        ));
        assert!(
            Identity::read(&ca_cert, &cert).is_err(),
            "a cert is not a key"
        );
    }
}
