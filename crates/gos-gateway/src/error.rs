//! `GatewayError`, the error of gateway and peer operations, and its mapping into
//! `gos_store::Error` for store operations.

use std::time::Duration;

use crate::frame::FrameError;
use crate::tls::TlsError;

/// Why a gateway operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A socket could not be bound or configured.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// A connection to a peer could not be established.
    #[error("connecting to {peer}: {reason}")]
    Connect {
        /// The peer's cluster id.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The connection was lost or refused (by TLS, for example).
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream failed: reset by the peer, stopped, or its connection closed.
    #[error("stream failed: {0}")]
    Stream(String),
    /// The peer sent bytes that are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A wait took longer than its timeout.
    #[error("{operation} timed out after {}", human(after))]
    Timeout {
        /// What was waited for.
        operation: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// An object arrived with a digest that does not match its bytes.
    #[error("digest mismatch: the object was corrupted in transit")]
    ChecksumMismatch,
    /// An object is larger than the limit.
    #[error("object of {size} bytes is larger than the maximum of {max} bytes")]
    ObjectTooLarge {
        /// Its size.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// The peer answered with an error: the remote store's (or gateway's) own.
    #[error("the peer refused: {0}")]
    Remote(gos_store::Error),
    /// A put cut by the connection could not be resumed: the gateway no longer holds it (its
    /// grace period is over, or it restarted) and no attempt was left to put it again. Nothing
    /// of it is stored.
    #[error(
        "transfer {transfer} was cut and the gateway no longer holds it (after {attempts} attempts); nothing of it is stored"
    )]
    ResumeRefused {
        /// The transfer.
        transfer: crate::frame::TransferId,
        /// Attempts made.
        attempts: u32,
    },
    /// The peer answered something that does not answer the request.
    #[error("unexpected reply from the peer: {0}")]
    UnexpectedReply(String),
    /// The cluster is not on our allow-list.
    #[error("cluster `{0}` is not on the allow-list")]
    NotAllowed(String),
    /// A node is not in this cluster (registering it, or sending from it).
    #[error("node {node} belongs to cluster `{cluster}`, not to this one")]
    ForeignNode {
        /// The node.
        node: u32,
        /// Its cluster.
        cluster: String,
    },
    /// The gateway's configuration is unusable.
    #[error("invalid gateway configuration: {0}")]
    InvalidConfig(String),
    /// A hybrid topology's cluster assignment does not fit its graph.
    #[error("invalid hybrid topology: {0}")]
    InvalidHybrid(String),
    /// A local store operation failed.
    #[error(transparent)]
    Store(#[from] gos_store::Error),
    /// The local topology refused a message.
    #[error(transparent)]
    Topology(#[from] gos_topology::TopologyError),
}

impl GatewayError {
    /// True when the connection may be gone: reconnecting and retrying may help.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            GatewayError::Connect { .. }
                | GatewayError::Connection(_)
                | GatewayError::Stream(_)
                | GatewayError::Timeout { .. }
        )
    }

    /// True when retrying the same request may succeed (transport failures, a busy peer).
    pub fn is_retryable(&self) -> bool {
        self.is_transport() || matches!(self, GatewayError::Remote(e) if e.is_retryable())
    }
}

impl From<quinn::ReadError> for GatewayError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => GatewayError::Connection(c),
            other => GatewayError::Stream(other.to_string()),
        }
    }
}

impl From<quinn::WriteError> for GatewayError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => GatewayError::Connection(c),
            other => GatewayError::Stream(other.to_string()),
        }
    }
}

impl From<quinn::ReadExactError> for GatewayError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(n) => FrameError::Truncated(n).into(),
            quinn::ReadExactError::ReadError(e) => e.into(),
        }
    }
}

impl From<GatewayError> for gos_store::Error {
    /// Errors the remote store raised come back as the same variants; a lost connection is
    /// [`Unavailable`](gos_store::Error::Unavailable), a timeout
    /// [`Timeout`](gos_store::Error::Timeout), a bad checksum
    /// [`Corrupted`](gos_store::Error::Corrupted), anything else a `"remote"` backend error.
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Remote(remote) => remote,
            GatewayError::Store(store) => store,
            GatewayError::Timeout { operation, after } => {
                gos_store::Error::Timeout { operation, after }
            }
            GatewayError::ChecksumMismatch => gos_store::Error::Corrupted(e.to_string()),
            GatewayError::ObjectTooLarge { size, max } => gos_store::Error::TooLarge { size, max },
            GatewayError::Connect { .. }
            | GatewayError::Connection(_)
            | GatewayError::Stream(_)
            | GatewayError::ResumeRefused { .. }
            | GatewayError::NotAllowed(_) => gos_store::Error::Unavailable(e.to_string()),
            other => gos_store::Error::backend("remote", other),
        }
    }
}

/// A duration for people, in whole milliseconds (`5s`, `1s 500ms`; finer only below 1 ms).
pub(crate) fn human(d: &Duration) -> humantime::FormattedDuration {
    let ms = Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX));
    humantime::format_duration(if ms.is_zero() { *d } else { ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_durations_not_debug() {
        let e = GatewayError::Timeout {
            operation: "connecting",
            after: Duration::from_micros(1_500_123),
        };
        assert_eq!(e.to_string(), "connecting timed out after 1s 500ms");
        let e = GatewayError::Timeout {
            operation: "a read",
            after: Duration::from_micros(250),
        };
        assert_eq!(e.to_string(), "a read timed out after 250us");
    }
}
