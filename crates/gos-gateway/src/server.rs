//! `Gateway`: a cluster's QUIC endpoint. It serves its store and delivers messages from
//! authenticated peer clusters, and dials peers.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gos_store::{
    BufferedReservation, Digest, Error, ObjectKey, ObjectStore, PutMode, PutOptions, Reservation,
};
use gos_topology::NodeId;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};

use crate::auth::authorize;
use crate::client::Link;
use crate::config::{ClientConfig, GatewayConfig};
use crate::dedup::{Claim, Dedup};
use crate::deliver::{DeliveryTarget, Peer};
use crate::error::GatewayError;
use crate::frame::{Delivery, FrameKind, Reply, Request, Response, TargetOutcome, WireMeta};
use crate::frame::{ResumePoint, TransferId};
use crate::io::{self, Deadline, Interrupted, Progress, code, timed};
use crate::resume::{Lookup, Streams, Transfers};
use crate::tls::{self, Role};

/// A cluster's gateway: serves its store and delivers messages to its nodes, to the peer
/// clusters on its allow-list, over mutually authenticated QUIC.
#[derive(Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    cluster: String,
    config: GatewayConfig,
    store: Arc<dyn ObjectStore>,
    target: Option<Arc<dyn DeliveryTarget>>,
    dedup: Dedup,
    stats: Counters,
    load: Arc<Load>,
    transfers: Transfers,
}

/// What a gateway has served so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Connections accepted (authenticated and on the allow-list).
    pub connections: u64,
    /// Requests answered successfully.
    pub requests_ok: u64,
    /// Requests answered with an error (including bad frames).
    pub requests_failed: u64,
    /// Object bytes received and committed.
    pub bytes_in: u64,
    /// Object bytes sent.
    pub bytes_out: u64,
    /// Messages delivered to a mailbox.
    pub delivered: u64,
    /// Retried deliveries dropped as duplicates.
    pub duplicates: u64,
    /// Requests refused as busy (too many connections or bytes in flight for one identity).
    pub busy: u64,
    /// Requests refused because the identity's role does not allow them.
    pub denied: u64,
    /// Requests cut because the whole transfer took longer than its deadline.
    pub too_slow: u64,
    /// Puts resumed on a new connection after a cut (each resume counts once).
    pub resumed: u64,
    /// Object bytes a resume did not need sent again (the bytes held when it came).
    pub resumed_bytes: u64,
    /// Resumes answered [`ResumePoint::Unknown`](crate::frame::ResumePoint::Unknown): no such
    /// transfer (never admitted, failed, or cut longer ago than the grace period).
    pub resumes_refused: u64,
    /// Cut puts whose client did not resume them within the grace period: their reservations
    /// were freed.
    pub abandoned: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    busy: AtomicU64,
    denied: AtomicU64,
    too_slow: AtomicU64,
    resumed: AtomicU64,
    resumed_bytes: AtomicU64,
    resumes_refused: AtomicU64,
    abandoned: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Gateway {
    /// Starts a gateway that serves `store` (store requests only; deliveries are refused).
    pub async fn start(
        config: GatewayConfig,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self, GatewayError> {
        Gateway::start_with(config, store, None).await
    }

    /// Starts a gateway that serves `store` and hands delivered messages to `target`.
    ///
    /// Refuses to start when its own certificate does not verify against the configured CA
    /// (its peers would refuse it) or when an allow-list id can never match a certificate.
    pub async fn start_with(
        config: GatewayConfig,
        store: Arc<dyn ObjectStore>,
        target: Option<Arc<dyn DeliveryTarget>>,
    ) -> Result<Self, GatewayError> {
        config.tls.allowed.validate()?;
        let chain = config
            .tls
            .identity
            .cert_chain()
            .map_err(tls::TlsError::from)?;
        let cluster = tls::check_own_certificate(&chain, &config.tls.ca)?;
        let transport = Arc::new(config.transport.transport_config(&config.timeouts));
        let server = config.tls.quinn_server(transport.clone())?;
        let client = config.tls.quinn_client(transport)?;
        let endpoint = config.transport.endpoint(config.listen, Some(server))?;
        let inner = Arc::new(Inner {
            cluster,
            dedup: Dedup::new(config.dedup_window),
            config,
            store,
            target,
            stats: Counters::default(),
            load: Arc::default(),
            transfers: Transfers::default(),
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), inner.clone()));
        if let Ok(addr) = endpoint.local_addr() {
            tracing::info!(cluster = %inner.cluster, %addr, "gateway listening");
        }
        Ok(Gateway {
            inner,
            endpoint,
            client,
            accept,
        })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, GatewayError> {
        Ok(self.endpoint.local_addr()?)
    }

    /// The cluster this gateway serves (from its certificate).
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster
    }

    /// The store it serves.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// What it has served so far.
    pub fn stats(&self) -> GatewayStats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayStats {
            connections: get(&s.connections),
            requests_ok: get(&s.requests_ok),
            requests_failed: get(&s.requests_failed),
            bytes_in: get(&s.bytes_in),
            bytes_out: get(&s.bytes_out),
            delivered: get(&s.delivered),
            duplicates: get(&s.duplicates),
            busy: get(&s.busy),
            denied: get(&s.denied),
            too_slow: get(&s.too_slow),
            resumed: get(&s.resumed),
            resumed_bytes: get(&s.resumed_bytes),
            resumes_refused: get(&s.resumes_refused),
            abandoned: get(&s.abandoned),
        }
    }

    /// A client of the peer gateway `cluster` at `addr`, dialled from this gateway's own
    /// endpoint and certificate. The peer must be on the allow-list.
    pub fn peer(&self, cluster: &str, addr: SocketAddr) -> Result<Peer, GatewayError> {
        let config = &self.inner.config;
        let client_config = ClientConfig {
            addr,
            cluster: cluster.to_owned(),
            tls: config.tls.clone(),
            timeouts: config.timeouts,
            limits: config.limits,
            transport: config.transport,
            max_attempts: config.max_attempts,
            // A peer link mostly sends; what it reads is rare enough to allocate.
            pool_bytes: 0,
            clock: config.clock.clone(),
        };
        let link = Link::new(self.endpoint.clone(), self.client.clone(), &client_config)?;
        Ok(Peer::new(link))
    }

    /// Stops accepting, closes every connection and waits until the socket is released.
    pub async fn shutdown(self) {
        self.accept.abort();
        self.endpoint
            .close(VarInt::from_u32(0), b"gateway shutting down");
        let _ =
            tokio::time::timeout(self.inner.config.timeouts.io, self.endpoint.wait_idle()).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Connections and object bytes in flight, per identity and in all.
#[derive(Debug, Default)]
struct Load {
    per_peer: Mutex<HashMap<Arc<str>, PeerLoad>>,
    connections: AtomicU64,
    /// Woken whenever an identity's bytes in flight go down (a transfer ended).
    freed: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, Copy)]
struct PeerLoad {
    connections: u32,
    in_flight: u64,
}

impl Load {
    fn with<T>(&self, peer: &Arc<str>, f: impl FnOnce(&mut PeerLoad) -> T) -> T {
        let mut map = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(peer.clone()).or_default();
        let out = f(entry);
        if entry.connections == 0 && entry.in_flight == 0 {
            map.remove(peer);
        }
        out
    }
}

/// One connection of an identity; `over` when it is past the per-identity cap.
struct ConnGuard {
    load: Arc<Load>,
    peer: Arc<str>,
    over: bool,
}

impl ConnGuard {
    fn new(load: &Arc<Load>, peer: &Arc<str>, max: u32) -> Self {
        let over = load.with(peer, |l| {
            l.connections += 1;
            l.connections > max
        });
        ConnGuard {
            load: load.clone(),
            peer: peer.clone(),
            over,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.load.with(&self.peer, |l| {
            l.connections = l.connections.saturating_sub(1)
        });
    }
}

/// Object bytes of one request counted against its identity's in-flight cap.
struct FlightGuard {
    load: Arc<Load>,
    peer: Arc<str>,
    bytes: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.load.with(&self.peer, |l| {
            l.in_flight = l.in_flight.saturating_sub(bytes)
        });
        self.load.freed.notify_waiters();
    }
}

/// Counts one accepted connection in all; the count drops with the guard.
struct TotalGuard(Arc<Load>);

impl Drop for TotalGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inner {
    /// Charges `bytes` to `peer`'s in-flight total, or refuses with `Busy`.
    fn in_flight(&self, peer: &Arc<str>, bytes: u64) -> Result<FlightGuard, Error> {
        let max = self.config.limits.max_in_flight_per_peer;
        let admitted = self.load.with(peer, |l| {
            let total = l.in_flight.saturating_add(bytes);
            if total > max {
                return Err(l.in_flight);
            }
            l.in_flight = total;
            Ok(())
        });
        match admitted {
            Ok(()) => Ok(FlightGuard {
                load: self.load.clone(),
                peer: peer.clone(),
                bytes,
            }),
            Err(now) => {
                bump(&self.stats.busy, 1);
                Err(Error::Busy(format!(
                    "`{peer}` has {now} object bytes in flight; {bytes} more would pass its limit of {max}"
                )))
            }
        }
    }

    fn role(&self, peer: &str) -> Role {
        // The handshake admitted only ids on the list; a missing one is the least privileged.
        self.config.tls.allowed.role(peer).unwrap_or(Role::ReadOnly)
    }
}

async fn accept_loop(endpoint: Endpoint, inner: Arc<Inner>) {
    while let Some(incoming) = endpoint.accept().await {
        let max = u64::from(inner.config.limits.max_connections);
        if inner.load.connections.fetch_add(1, Ordering::AcqRel) >= max {
            inner.load.connections.fetch_sub(1, Ordering::AcqRel);
            bump(&inner.stats.busy, 1);
            tracing::warn!(remote = %incoming.remote_address(), "refused a connection: {max} connections open");
            incoming.refuse();
            continue;
        }
        let total = TotalGuard(inner.load.clone());
        let inner = inner.clone();
        tokio::spawn(async move {
            let _total = total;
            let remote = incoming.remote_address();
            let conn = match timed(
                "handshake",
                inner.config.timeouts.connect,
                incoming.into_future(),
            )
            .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::info!(%remote, "refused a connection: {e}");
                    return;
                }
                Err(e) => {
                    tracing::info!(%remote, "{e}");
                    return;
                }
            };
            // The verifier checked the allow-list during the handshake; check again here so
            // that the id we key state by is the one the certificate names.
            let peer = match tls::peer_cluster_id(&conn) {
                Ok(peer) if inner.config.tls.allowed.allows(&peer) => peer,
                Ok(peer) => {
                    conn.close(VarInt::from_u32(code::REFUSED), b"not on the allow-list");
                    tracing::warn!(%remote, %peer, "refused a cluster not on the allow-list");
                    return;
                }
                Err(e) => {
                    conn.close(VarInt::from_u32(code::REFUSED), b"bad certificate");
                    tracing::warn!(%remote, "refused a peer: {e}");
                    return;
                }
            };
            bump(&inner.stats.connections, 1);
            tracing::debug!(%remote, %peer, "peer connected");
            serve_connection(conn, Arc::from(peer), inner).await;
        });
    }
}

async fn serve_connection(conn: Connection, peer: Arc<str>, inner: Arc<Inner>) {
    let guard = ConnGuard::new(
        &inner.load,
        &peer,
        inner.config.limits.max_connections_per_peer,
    );
    if guard.over {
        tracing::warn!(%peer, "too many connections from one identity: answering busy");
    }
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) if guard.over => {
                tokio::spawn(refuse_busy(send, recv, peer.clone(), inner.clone()));
            }
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(send, recv, peer.clone(), inner.clone()));
            }
            Err(e) => {
                tracing::debug!(%peer, "connection closed: {e}");
                return;
            }
        }
    }
}

/// Answers a request on a connection past its identity's cap with `Busy`, reading nothing.
async fn refuse_busy(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: Arc<str>,
    inner: Arc<Inner>,
) {
    bump(&inner.stats.busy, 1);
    bump(&inner.stats.requests_failed, 1);
    recv.stop(VarInt::from_u32(code::REFUSED)).ok();
    let max = inner.config.limits.max_connections_per_peer;
    let busy = Error::Busy(format!("`{peer}` has more than {max} connections open"));
    let io = inner.config.timeouts.io;
    if io::write_frame(&mut send, FrameKind::Response, &Response::Err(busy), io)
        .await
        .is_ok()
        && send.finish().is_ok()
    {
        let _ = tokio::time::timeout(io, send.stopped()).await;
    }
}

/// What a handled request answers.
enum Answer {
    Reply(Reply),
    Object(Bytes, Digest, FlightGuard),
    /// A resume of a live transfer: its streams go to the task that holds the reservation,
    /// which answers on them.
    HandOff(tokio::sync::mpsc::Sender<Streams>, TransferId),
}

/// Answers one request in its own span (debug level: the peer, then the operation, the key or
/// prefix and the object bytes once the header is read), ending with one event that says how
/// long it took. Every log line of the request (the store's too) carries the span.
async fn serve_stream(send: SendStream, recv: RecvStream, peer: Arc<str>, inner: Arc<Inner>) {
    use tracing::Instrument;
    let span = tracing::debug_span!(
        "gateway request",
        %peer,
        op = tracing::field::Empty,
        key = tracing::field::Empty,
        bytes = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    async move {
        answer_stream(send, recv, peer, inner).await;
        let duration = crate::error::human(&started.elapsed());
        tracing::debug!(%duration, "request done");
    }
    .instrument(span)
    .await;
}

/// The span fields of a request: its operation, the key or prefix it names (if any), and the
/// object bytes it announces (a put's, a delivery's; a get's are recorded when known).
fn describe(request: &Request) -> (&'static str, Option<String>, Option<u64>) {
    match request {
        Request::Ping => ("ping", None, None),
        Request::Limits => ("limits", None, None),
        Request::Put {
            key,
            len,
            reservation,
            ..
        } => (
            if *reservation { "reserve" } else { "put" },
            Some(key.to_string()),
            Some(*len),
        ),
        Request::Resume { key, len, .. } => ("resume", Some(key.to_string()), Some(*len)),
        Request::Get { key } => ("get", Some(key.to_string()), None),
        Request::Head { key } => ("head", Some(key.to_string()), None),
        Request::Delete { key } => ("delete", Some(key.to_string()), None),
        Request::Release { key } => ("release", Some(key.to_string()), None),
        Request::KeysWithPrefix { prefix } => ("keys", Some(prefix.to_string()), None),
        Request::DeletePrefix { prefix } => ("delete_prefix", Some(prefix.to_string()), None),
        Request::DeleteRoundsBefore { fed_id, round } => (
            "delete_rounds_before",
            Some(format!("{fed_id} before round {round}")),
            None,
        ),
        Request::Sweep => ("sweep", None, None),
        Request::Len => ("len", None, None),
        Request::Stats => ("stats", None, None),
        Request::Deliver(d) => (
            "deliver",
            d.object.as_ref().map(|o| o.key.to_string()),
            d.object.as_ref().map(|o| o.len),
        ),
    }
}

async fn answer_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: Arc<str>,
    inner: Arc<Inner>,
) {
    let io = inner.config.timeouts.io;
    let mut answer = handle(&mut send, &mut recv, &peer, &inner).await;
    if let Ok(Answer::HandOff(transfer, id)) = answer {
        match transfer.try_send((send, recv)) {
            // The transfer's task answers on these streams from here.
            Ok(()) => return,
            Err(tokio::sync::mpsc::error::TrySendError::Full((s, r))) => {
                (send, recv) = (s, r);
                answer = Err(Error::Busy("this transfer is being resumed already".into()));
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed((s, r))) => {
                // It ended between the lookup and now: a cut one past its grace period, or a
                // committed one whose task has let go of its channel.
                (send, recv) = (s, r);
                let point = if inner.transfers.was_committed(&peer, id) {
                    ResumePoint::Committed
                } else {
                    bump(&inner.stats.resumes_refused, 1);
                    ResumePoint::Unknown
                };
                answer = Ok(Answer::Reply(Reply::Resume(point)));
            }
        }
    }
    let result = match answer {
        Ok(Answer::Reply(reply)) => {
            io::write_frame(&mut send, FrameKind::Response, &Response::Ok(reply), io).await
        }
        Ok(Answer::HandOff(..)) => unreachable!("a hand-off is answered above"),
        Ok(Answer::Object(object, digest, _flight)) => {
            let len = object.len() as u64;
            tracing::Span::current().record("bytes", len);
            let reply = Response::Ok(Reply::Object(Some(len)));
            // A slow reader of a get keeps the value pinned only until the deadline.
            let deadline = Deadline::transfer(len, &inner.config.limits, io);
            let sent = async {
                io::write_frame(&mut send, FrameKind::Response, &reply, io).await?;
                io::send_object(&mut send, &object, 0, Some(digest), &deadline).await
            };
            let sent = sent.await;
            match &sent {
                Ok(()) => bump(&inner.stats.bytes_out, len),
                Err(GatewayError::Timeout { .. }) => {
                    bump(&inner.stats.too_slow, 1);
                    send.reset(VarInt::from_u32(code::TOO_SLOW)).ok();
                }
                Err(_) => {}
            }
            sent
        }
        Err(e) => {
            bump(&inner.stats.requests_failed, 1);
            match &e {
                Error::PermissionDenied(_) => bump(&inner.stats.denied, 1),
                Error::Timeout { .. } => bump(&inner.stats.too_slow, 1),
                _ => {}
            }
            tracing::debug!(%peer, "request failed: {e}");
            // Whatever the client still sends is not read.
            recv.stop(VarInt::from_u32(code::REFUSED)).ok();
            io::write_frame(&mut send, FrameKind::Response, &Response::Err(e), io).await
        }
    };
    match result.and_then(|()| {
        send.finish()
            .map_err(|e| GatewayError::Stream(e.to_string()))
    }) {
        Ok(()) => {
            bump(&inner.stats.requests_ok, 1);
            // Let the answer reach the client before the stream is dropped.
            let _ = tokio::time::timeout(io, send.stopped()).await;
        }
        Err(e) => tracing::debug!(%peer, "answer not sent: {e}"),
    }
}

/// A gateway-side failure as the one error type that crosses the wire.
fn wire(e: GatewayError) -> Error {
    match e {
        GatewayError::Frame(f) => Error::InvalidArgument(format!("bad request frame: {f}")),
        other => other.into(),
    }
}

async fn handle(
    send: &mut SendStream,
    recv: &mut RecvStream,
    peer: &Arc<str>,
    inner: &Inner,
) -> Result<Answer, Error> {
    let io = inner.config.timeouts.io;
    let request: Request = io::read_frame(
        recv,
        FrameKind::Request,
        inner.config.limits.max_request_header,
        io,
    )
    .await
    .map_err(wire)?;
    let (op, key, bytes) = describe(&request);
    let span = tracing::Span::current();
    span.record("op", tracing::field::display(op));
    if let Some(key) = key {
        span.record("key", tracing::field::display(key));
    }
    if let Some(bytes) = bytes {
        span.record("bytes", bytes);
    }
    authorize(peer, inner.role(peer), &request, inner.target.as_deref())?;
    let store = &inner.store;
    // Every store call is a wait too.
    macro_rules! op {
        ($name:literal, $e:expr) => {
            timed($name, io, $e).await.map_err(wire)??
        };
    }
    Ok(Answer::Reply(match request {
        Request::Ping => Reply::Pong {
            cluster: inner.cluster.clone(),
        },
        Request::Limits => Reply::Limits(store.limits()),
        Request::Put {
            key,
            options,
            len,
            reservation,
            transfer,
        } => {
            let transfer = transfer.map(|t| (peer, t));
            admit(inner, peer, &key, &options.into(), len, !reservation)
                .await?
                .receive(send, recv, inner, transfer)
                .await?;
            Reply::Done
        }
        Request::Resume { transfer, key, len } => {
            match inner.transfers.lookup(peer, transfer, &key, len)? {
                Lookup::Live(resume) => return Ok(Answer::HandOff(resume, transfer)),
                Lookup::Committed => Reply::Resume(ResumePoint::Committed),
                Lookup::Unknown => {
                    bump(&inner.stats.resumes_refused, 1);
                    tracing::debug!(%peer, %transfer, "resume refused: no such transfer");
                    Reply::Resume(ResumePoint::Unknown)
                }
            }
        }
        Request::Get { key } => match op!("store get", store.get_digested(&key)) {
            Some((object, digest)) => {
                let flight = inner.in_flight(peer, object.len() as u64)?;
                return Ok(Answer::Object(object, digest, flight));
            }
            None => Reply::Object(None),
        },
        Request::Head { key } => {
            let meta = op!("store head", store.head(&key));
            let now = inner.config.clock.now();
            Reply::Meta(meta.map(|m| {
                WireMeta {
                    size: m.size,
                    readers: m.readers,
                    expires_in: m
                        .expires_at
                        .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
                    digest: m.digest,
                }
            }))
        }
        Request::Delete { key } => Reply::Bool(op!("store delete", store.delete(&key))),
        Request::Release { key } => Reply::Released(op!("store release", store.release(&key))),
        Request::KeysWithPrefix { prefix } => {
            Reply::Keys(op!("store keys", store.keys_with_prefix(&prefix)))
        }
        Request::DeletePrefix { prefix } => {
            Reply::Count(op!("store delete_prefix", store.delete_prefix(&prefix)) as u64)
        }
        Request::DeleteRoundsBefore { fed_id, round } => Reply::Count(op!(
            "store delete_rounds_before",
            store.delete_rounds_before(&fed_id, round)
        ) as u64),
        Request::Sweep => Reply::Count(op!("store sweep", store.sweep()) as u64),
        Request::Len => Reply::Count(op!("store len", store.len()) as u64),
        Request::Stats => Reply::Stats(op!("store stats", store.stats())),
        Request::Deliver(delivery) => deliver(send, recv, peer, inner, *delivery).await?,
    }))
}

/// An object admitted into the store: its space reserved (and charged to the sender's bytes
/// in flight), waiting for its bytes.
struct Admitted<'a> {
    reservation: Box<dyn Reservation + 'a>,
    len: u64,
    _flight: FlightGuard,
}

/// Admits an object of `len` bytes under `key`: the wire limit, the identity's bytes in
/// flight, then a reservation in the store (which charges its capacity). Nothing of the object
/// is read yet. `put` is true for a put (or a delivery's object), whose space rule counts the
/// value it overwrites; false for a remote `reserve`, which is charged its full length.
async fn admit<'a>(
    inner: &'a Inner,
    peer: &Arc<str>,
    key: &ObjectKey,
    options: &PutOptions,
    len: u64,
    put: bool,
) -> Result<Admitted<'a>, Error> {
    let io = inner.config.timeouts.io;
    let max = inner.config.limits.max_object;
    if len > max {
        return Err(Error::TooLarge { size: len, max });
    }
    let size = usize::try_from(len).map_err(|_| Error::TooLarge {
        size: len,
        max: usize::MAX as u64,
    })?;
    let flight = inner.in_flight(peer, len)?;
    let store = &inner.store;
    // A client that drops a reservation and reserves again at once may be faster than the
    // task that frees the first (a reset stream is noticed by its own task): while the same
    // identity has other transfers in flight, wait a little for them before saying full.
    let patience = tokio::time::Instant::now() + Duration::from_millis(250).min(io);
    let reserved = loop {
        let freed = inner.load.freed.notified();
        let reserved = timed("store reserve", io, store.reserve(key, size, options))
            .await
            .map_err(wire)?;
        let others = inner.load.with(peer, |l| l.in_flight > len);
        match reserved {
            Err(Error::StoreFull { .. }) if others && tokio::time::Instant::now() < patience => {
                let _ = tokio::time::timeout_at(patience, freed).await;
            }
            reserved => break reserved,
        }
    };
    let reservation = match reserved {
        Ok(reservation) => reservation,
        // A reservation is charged in full, but a put reports an existing key first (create),
        // and an overwrite frees the old value at commit. Answer as the put would; when the
        // old value's space makes it fit, fall back to a buffer in process memory (bounded by
        // the identity's bytes in flight) and let the put at commit check again.
        // A remote `reserve` answers as the store's reserve did.
        Err(Error::StoreFull { available, .. }) if put => {
            let old = timed("store head", io, store.head(key))
                .await
                .map_err(wire)??;
            let freed = match (old, options.mode) {
                (Some(_), PutMode::Create) => {
                    return Err(Error::AlreadyExists { key: key.clone() });
                }
                (Some(old), PutMode::Overwrite) => old.size,
                (None, _) => 0,
            };
            if len > available.saturating_add(freed) {
                return Err(Error::StoreFull {
                    requested: len,
                    available: available.saturating_add(freed),
                });
            }
            // The buffer's `len` bytes are the ones `flight` charged to the identity's bytes
            // in flight: held until the commit (or the failure) drops `Admitted`.
            Box::new(BufferedReservation::new(&**store, key, size, options))
        }
        Err(e) => return Err(e),
    };
    Ok(Admitted {
        reservation,
        len,
        _flight: flight,
    })
}

impl Admitted<'_> {
    /// Tells the sender it is admitted, then streams the object into the reservation, checks
    /// its digest and commits it with that digest, all within the transfer's deadline; any
    /// failure drops the reservation uncommitted.
    ///
    /// A put that names its `transfer` can be resumed: when its connection is cut, the
    /// reservation and the bytes received are kept for the grace period, and a
    /// [`Request::Resume`] from the same identity (on a new connection, even one that arrives
    /// before this side notices the cut) continues it. `send` and `recv` are then replaced by
    /// the resume's streams, which the caller answers on.
    async fn receive(
        mut self,
        send: &mut SendStream,
        recv: &mut RecvStream,
        inner: &Inner,
        transfer: Option<(&Arc<str>, TransferId)>,
    ) -> Result<(), Error> {
        let io = inner.config.timeouts.io;
        let grace = inner.config.resume_grace;
        let key = self.reservation.key().clone();
        let mut registration = match transfer {
            Some((peer, id)) => Some(inner.transfers.register(peer, id, &key, self.len)?),
            None => None,
        };
        io::write_frame(
            send,
            FrameKind::Response,
            &Response::Ok(Reply::Admitted),
            io,
        )
        .await
        .map_err(wire)?;
        let mut progress = Progress::default();
        // Measured from admission: a client that reserved may fill its buffer first, but not
        // for longer than the transfer would take at the minimum rate.
        let mut deadline = Deadline::transfer(self.len, &inner.config.limits, io).whole_only();
        let digest = loop {
            let resumes = registration.as_mut().map(|r| &mut r.resumes);
            let received = io::recv_object_resumable(
                recv,
                self.reservation.as_mut_slice(),
                &mut progress,
                &deadline,
                resumes,
            )
            .await;
            let (new_send, new_recv) = match (received, registration.as_mut()) {
                (Ok(digest), _) => break digest,
                (Err(Interrupted::Resumed(streams)), _) => {
                    // The client came back on a new connection before this side noticed the
                    // old one was gone.
                    recv.stop(VarInt::from_u32(code::CANCELLED)).ok();
                    streams
                }
                (Err(Interrupted::Failed { error, cut: true }), Some(r)) => {
                    tracing::info!(
                        %key,
                        received = progress.at,
                        len = self.len,
                        "transfer cut ({error}): holding it {} for a resume",
                        crate::error::human(&grace)
                    );
                    match tokio::time::timeout(grace, r.resumes.recv()).await {
                        Ok(Some(streams)) => streams,
                        _ => {
                            bump(&inner.stats.abandoned, 1);
                            tracing::info!(%key, "cut transfer not resumed in time: freed");
                            return Err(wire(error));
                        }
                    }
                }
                (Err(Interrupted::Failed { error, .. }), _) => {
                    if matches!(error, GatewayError::Timeout { .. }) {
                        recv.stop(VarInt::from_u32(code::TOO_SLOW)).ok();
                    }
                    return Err(wire(error));
                }
            };
            *send = new_send;
            *recv = new_recv;
            let held = progress.at as u64;
            io::write_frame(
                send,
                FrameKind::Response,
                &Response::Ok(Reply::Resume(ResumePoint::From(held))),
                io,
            )
            .await
            .map_err(wire)?;
            bump(&inner.stats.resumed, 1);
            bump(&inner.stats.resumed_bytes, held);
            tracing::info!(%key, from = held, len = self.len, "transfer resumed");
            deadline = Deadline::transfer(self.len - held, &inner.config.limits, io).whole_only();
        };
        timed(
            "store commit",
            io,
            self.reservation.commit_with_digest(digest),
        )
        .await
        .map_err(wire)??;
        if let Some(mut r) = registration {
            r.committed(grace.max(io));
            // A resume that raced the commit is answered: committed (and one that comes
            // after the channel is closed is answered so by its own task).
            r.resumes.close();
            while let Ok((mut send, _recv)) = r.resumes.try_recv() {
                let answer = Response::Ok(Reply::Resume(ResumePoint::Committed));
                if io::write_frame(&mut send, FrameKind::Response, &answer, io)
                    .await
                    .is_ok()
                {
                    send.finish().ok();
                }
            }
        }
        bump(&inner.stats.bytes_in, self.len);
        Ok(())
    }
}

/// Most target nodes one delivery names.
const MAX_TARGETS: usize = 4096;

/// Delivers a message to target nodes of this cluster: claims its id per target (a retry is
/// answered with how the first attempt ended), stores its object once with one reader per
/// accepted target, hands the message to each mailbox, and releases the object on behalf of
/// every target it could not reach.
async fn deliver(
    send: &mut SendStream,
    recv: &mut RecvStream,
    peer: &Arc<str>,
    inner: &Inner,
    delivery: Delivery,
) -> Result<Reply, Error> {
    let Some(target) = &inner.target else {
        return Err(Error::InvalidArgument(
            "this gateway delivers no messages (it serves a store only)".into(),
        ));
    };
    let mut to = delivery.to;
    to.sort_unstable();
    to.dedup();
    if to.is_empty() || to.len() > MAX_TARGETS {
        return Err(Error::InvalidArgument(format!(
            "a delivery names 1 to {MAX_TARGETS} target nodes, not {}",
            to.len()
        )));
    }
    let id = delivery.message.id.0;
    let mut outcomes = Vec::with_capacity(to.len());
    let mut claims = Vec::new();
    for node in to {
        match inner.dedup.claim(peer, id, node) {
            Claim::New(claim) => claims.push((node, claim)),
            Claim::Done(done) => {
                bump(&inner.stats.duplicates, 1);
                outcomes.push((
                    node,
                    match done {
                        Ok(()) => TargetOutcome::Duplicate,
                        Err(reason) => TargetOutcome::Failed(reason),
                    },
                ));
            }
            Claim::InFlight => {
                // Dropping the claims taken so far releases them.
                return Err(Error::Busy(format!(
                    "message {id:032x} is being delivered to node {node}"
                )));
            }
        }
    }
    // Only nodes of this cluster are readers here (a target that cannot say accepts all and
    // lets its mailboxes refuse).
    let (accepted, foreign): (Vec<_>, Vec<_>) = claims.into_iter().partition(|(node, _)| {
        target
            .cluster_of(NodeId(*node))
            .is_none_or(|c| c == inner.cluster)
    });
    for (node, claim) in foreign {
        let reason = format!("node {node} is not a node of cluster `{}`", inner.cluster);
        claim.finish(Err(reason.clone()));
        outcomes.push((node, TargetOutcome::Failed(reason)));
    }
    let readers = u32::try_from(accepted.len()).unwrap_or(u32::MAX);
    let stored = match &delivery.object {
        Some(object) if readers > 0 => {
            let options = PutOptions::new().readers(readers).with_lease(object.lease);
            admit(inner, peer, &object.key, &options, object.len, true)
                .await?
                .receive(send, recv, inner, object.transfer.map(|t| (peer, t)))
                .await?;
            Some(&object.key)
        }
        _ => None,
    };
    let io = inner.config.timeouts.io;
    let message = &delivery.message;
    let handed = accepted.into_iter().map(|(node, claim)| async move {
        let result = timed(
            "delivering to a mailbox",
            io,
            target.deliver(peer, NodeId(node), message.clone()),
        )
        .await;
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        (node, claim, result)
    });
    for (node, claim, result) in futures::future::join_all(handed).await {
        match result {
            Ok(()) => {
                bump(&inner.stats.delivered, 1);
                claim.finish(Ok(()));
                outcomes.push((node, TargetOutcome::Delivered));
            }
            Err(reason) => {
                // This reader will never release the object: release it on its behalf.
                if let Some(key) = stored {
                    match timed("store release", io, inner.store.release(key)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(%key, "release for node {node}: {e}"),
                        Err(e) => tracing::warn!(%key, "release for node {node}: {e}"),
                    }
                }
                tracing::info!(%peer, "delivery to node {node} failed: {reason}");
                if stored.is_some() {
                    // Final: the object no longer counts this reader, so a retry must not
                    // hand it the key.
                    claim.finish(Err(reason.clone()));
                } else {
                    // No object: dropping the claim lets a retry deliver the message.
                    drop(claim);
                }
                outcomes.push((node, TargetOutcome::Failed(reason)));
            }
        }
    }
    outcomes.sort_by_key(|(node, _)| *node);
    Ok(Reply::Delivered(outcomes))
}
