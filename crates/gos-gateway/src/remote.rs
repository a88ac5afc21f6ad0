//! `RemoteStore`: an `ObjectStore` that is a cluster's store, reached through its gateway.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    Digest, Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutMode, PutOptions,
    Readers, ReleaseOutcome, Reservation, Result, StoreStats, lease_deadline,
};

use crate::client::{Link, Retry, Upload};
use crate::config::ClientConfig;
use crate::error::GatewayError;
use crate::frame::{Reply, Request, TransferId};

/// A cluster's store, through its gateway: for a process on another host.
///
/// Every operation is one request on its own QUIC stream; a dropped connection is
/// re-established by the next operation; reads are retried on a new connection when the
/// transport fails (deletes, releases and prefix deletes are sent once, so that their answers
/// stay exact). A put (or a reservation's commit) cut by its connection is resumed on a new
/// one from the bytes the gateway holds, within the gateway's grace period, so the object is
/// stored once and whole; past it, the put starts again from byte 0. Errors the remote
/// store raised come back as the same [`gos_store::Error`] variants. Reader counts and leases
/// cross the wire (a lease as a duration, applied by the remote store's clock);
/// [`reserve`](ObjectStore::reserve) is admitted and charged at the remote store.
///
/// ```no_run
/// # async fn demo(config: gos_gateway::ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use gos_gateway::RemoteStore;
/// use gos_store::{ObjectKey, ObjectStore, ObjectStoreExt};
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
        // Refuse locally what the remote store would refuse anyway, before sending a byte.
        self.limits.check_value_size(value.len() as u64)?;
        // An overwrite without a count ends the same however often it is applied; a create,
        // or a count that readers may already be releasing, is sent once.
        let retry = if options.mode == PutMode::Overwrite && options.readers == Readers::Unbounded {
            Retry::Idempotent
        } else {
            Retry::Once
        };
        let request = Request::Put {
            key: key.clone(),
            options: options.into(),
            len: value.len() as u64,
            reservation: false,
            transfer: Some(TransferId::fresh()),
        };
        match self
            .link
            .send_resumable(&request, &value, retry, false)
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        Ok(self.get_digested(key).await?.map(|(value, _)| value))
    }

    /// The value with the digest the remote store keeps, sent as the object's trailer and
    /// checked against the bytes as they arrived.
    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        let request = Request::Get { key: key.clone() };
        match self.link.call(&request, None, Retry::Idempotent).await? {
            (Reply::Object(None), _) => Ok(None),
            (Reply::Object(Some(_)), Some(object)) => Ok(Some(object)),
            (other, _) => Err(unexpected_store(&other)),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        match self
            .call(Request::Head { key: key.clone() }, Retry::Idempotent)
            .await?
        {
            Reply::Meta(meta) => {
                let now = self.link.clock().now();
                Ok(meta.map(|m| {
                    // The lease left, applied with our clock.
                    let expires_at = lease_deadline(now, m.expires_in);
                    ObjectMeta::new(m.size, m.readers, expires_at).with_digest(m.digest)
                }))
            }
            other => Err(unexpected_store(&other)),
        }
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        // Sent once: a release applied twice would count two readers.
        match self
            .call(Request::Release { key: key.clone() }, Retry::Once)
            .await?
        {
            Reply::Released(outcome) => Ok(outcome),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        // Validated here as the store would, so that the error is the same variant.
        KeyPrefix::federation(fed_id)?;
        let request = Request::DeleteRoundsBefore {
            fed_id: fed_id.to_owned(),
            round,
        };
        match self.call(request, Retry::Idempotent).await? {
            Reply::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected_store(&other)),
        }
    }

    async fn sweep(&self) -> Result<usize> {
        match self.call(Request::Sweep, Retry::Idempotent).await? {
            Reply::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected_store(&other)),
        }
    }

    /// Admitted and charged at the remote store: the request's header goes out now and the
    /// gateway reserves the space in its store before this returns (so concurrent
    /// reservations, from any client, never add up past its capacity); the bytes are
    /// buffered here and streamed at commit. The gateway holds the reservation for at most
    /// its transfer deadline (`timeouts.io + len / limits.min_rate`): commit within it.
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        self.limits.check_value_size(len as u64)?;
        let request = Request::Put {
            key: key.clone(),
            options: options.into(),
            len: len as u64,
            reservation: true,
            transfer: Some(TransferId::fresh()),
        };
        let upload = self.link.open_upload(&request, len as u64).await?;
        Ok(Box::new(RemoteReservation {
            key: key.clone(),
            buf: vec![0; len],
            upload,
            link: &self.link,
            request,
        }))
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

/// A reservation at a remote store: the space is reserved there, the bytes are filled here
/// and streamed on commit. Dropping it uncommitted resets the stream, and the gateway drops
/// its reservation.
#[derive(Debug)]
struct RemoteReservation<'a> {
    key: ObjectKey,
    buf: Vec<u8>,
    upload: Upload,
    /// To resume the commit's transfer after a cut.
    link: &'a Link,
    /// The reservation's put, naming its transfer.
    request: Request,
}

#[async_trait]
impl Reservation for RemoteReservation<'_> {
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn key(&self) -> &ObjectKey {
        &self.key
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Streams the bytes; a cut on the way is resumed on a new connection (see
    /// [`RemoteStore`]'s put).
    async fn commit(self: Box<Self>) -> Result<()> {
        let RemoteReservation {
            buf,
            upload,
            link,
            request,
            ..
        } = *self;
        let object = Bytes::from(buf);
        match upload.commit(object.clone()).await {
            Err(e) if e.is_transport() => {
                match link
                    .send_resumable(&request, &object, Retry::Once, true)
                    .await?
                {
                    Reply::Done => Ok(()),
                    other => Err(unexpected_store(&other)),
                }
            }
            other => Ok(other?),
        }
    }
}
