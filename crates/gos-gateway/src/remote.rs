//! `RemoteStore`: an `ObjectStore` that is a cluster's store, reached through its gateway.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    BufferedReservation, Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutMode,
    PutOptions, Readers, ReleaseOutcome, Reservation, Result, StoreStats,
};

use crate::client::{Link, Retry};
use crate::config::ClientConfig;
use crate::error::GatewayError;
use crate::frame::{Reply, Request};

/// A cluster's store, through its gateway: for a process on another host.
///
/// Every operation is one request on its own QUIC stream; a dropped connection is
/// re-established by the next operation; reads and overwriting puts are retried on a new
/// connection when the transport fails (creates, deletes and prefix deletes are sent once, so
/// that their answers stay exact). Errors the remote store raised come back as the same
/// [`gos_store::Error`] variants.
///
/// ```no_run
/// # async fn demo(config: gos_gateway::ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use gos_gateway::RemoteStore;
/// use gos_store::{ObjectKey, ObjectStore};
///
/// let store = RemoteStore::connect(config).await?;
/// let key = ObjectKey::round("fed", "node_1", 1)?;
/// store.put(&key, bytes::Bytes::from_static(b"weights")).await?;
/// assert_eq!(store.get(&key).await?.as_deref(), Some(&b"weights"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RemoteStore {
    link: Arc<Link>,
    limits: Limits,
}

impl RemoteStore {
    /// Connects to the gateway `config` names (from a client-only endpoint of its own) and
    /// fetches its store's limits.
    pub async fn connect(config: ClientConfig) -> Result<Self, GatewayError> {
        let transport = Arc::new(config.transport.transport_config(&config.timeouts));
        let client = config.tls.quinn_client(transport)?;
        let local: SocketAddr = if config.addr.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = config.transport.endpoint(local, None)?;
        let link = Link::new(endpoint, client, &config)?;
        RemoteStore::over(Arc::new(link)).await
    }

    /// A remote store over an existing link (a gateway's peer).
    pub(crate) async fn over(link: Arc<Link>) -> Result<Self, GatewayError> {
        match link.call(&Request::Limits, None, Retry::Idempotent).await? {
            (Reply::Limits(limits), _) => Ok(RemoteStore { link, limits }),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// The cluster whose store this is.
    pub fn cluster(&self) -> &str {
        self.link.cluster()
    }

    async fn call(&self, request: Request, retry: Retry) -> Result<Reply> {
        Ok(self.link.call(&request, None, retry).await?.0)
    }
}

fn unexpected(reply: &Reply) -> GatewayError {
    GatewayError::UnexpectedReply(format!("{reply:?}"))
}

fn unexpected_store(reply: &Reply) -> Error {
    unexpected(reply).into()
}

#[async_trait]
impl ObjectStore for RemoteStore {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        provisional_check(options)?;
        let mode = options.mode;
        // Refuse locally what the remote store would refuse anyway, before sending a byte.
        self.limits.check_value_size(value.len() as u64)?;
        let retry = match mode {
            PutMode::Overwrite => Retry::Idempotent,
            PutMode::Create => Retry::Once,
        };
        let request = Request::Put {
            key: key.clone(),
            mode,
            len: value.len() as u64,
        };
        match self.link.call(&request, Some(&value), retry).await? {
            (Reply::Done, _) => Ok(()),
            (other, _) => Err(unexpected_store(&other)),
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        let request = Request::Get { key: key.clone() };
        match self.link.call(&request, None, Retry::Idempotent).await? {
            (Reply::Object(None), _) => Ok(None),
            (Reply::Object(Some(_)), Some(object)) => Ok(Some(object)),
            (other, _) => Err(unexpected_store(&other)),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        // PROVISIONAL until frame v2 carries head: moves the value.
        Ok(self
            .get(key)
            .await?
            .map(|v| ObjectMeta::new(v.len() as u64, Readers::Unbounded, None)))
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        // PROVISIONAL until frame v2 carries release: counts do not cross the wire yet.
        Ok(if self.head(key).await?.is_some() {
            ReleaseOutcome::Unbounded
        } else {
            ReleaseOutcome::NotFound
        })
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        // PROVISIONAL until frame v2: one key at a time.
        let prefix = KeyPrefix::federation(fed_id)?;
        let mut removed = 0;
        for key in self.keys_with_prefix(&prefix).await? {
            if key.is_round_before(fed_id, round) && self.delete(&key).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn sweep(&self) -> Result<usize> {
        // PROVISIONAL: no leases over the wire yet.
        Ok(0)
    }

    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        // PROVISIONAL: buffered locally, not charged at the remote store until commit.
        provisional_check(options)?;
        self.limits.check_value_size(len as u64)?;
        Ok(Box::new(BufferedReservation::new(self, key, len, options)))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        match self
            .call(Request::Delete { key: key.clone() }, Retry::Once)
            .await?
        {
            Reply::Bool(existed) => Ok(existed),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        let request = Request::KeysWithPrefix {
            prefix: prefix.clone(),
        };
        match self.call(request, Retry::Idempotent).await? {
            Reply::Keys(keys) => Ok(keys),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        let request = Request::DeletePrefix {
            prefix: prefix.clone(),
        };
        match self.call(request, Retry::Once).await? {
            Reply::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn len(&self) -> Result<usize> {
        match self.call(Request::Len, Retry::Idempotent).await? {
            Reply::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn stats(&self) -> Result<StoreStats> {
        match self.call(Request::Stats, Retry::Idempotent).await? {
            Reply::Stats(stats) => Ok(stats),
            other => Err(unexpected_store(&other)),
        }
    }

    fn limits(&self) -> Limits {
        self.limits
    }
}

/// PROVISIONAL until frame v2: refuses the options the wire cannot carry yet.
fn provisional_check(options: &PutOptions) -> Result<()> {
    if options.readers != Readers::Unbounded || options.lease.is_some() {
        return Err(Error::InvalidArgument(
            "the remote protocol carries no reader counts or leases yet".into(),
        ));
    }
    Ok(())
}
