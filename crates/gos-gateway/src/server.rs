//! `Gateway`: a cluster's QUIC endpoint. It serves its store and delivers messages from
//! authenticated peer clusters, and dials peers.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gos_store::{BufferedReservation, ObjectKey, ObjectStore, PutMode, PutOptions};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};

use crate::client::Link;
use crate::config::{ClientConfig, GatewayConfig};
use crate::dedup::{Claim, Dedup};
use crate::deliver::{DeliveryTarget, Peer};
use crate::error::GatewayError;
use crate::frame::{Delivery, FrameKind, RemoteError, Reply, Request, Response};
use crate::io::{self, code, timed};
use crate::tls;

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
    pub async fn start_with(
        config: GatewayConfig,
        store: Arc<dyn ObjectStore>,
        target: Option<Arc<dyn DeliveryTarget>>,
    ) -> Result<Self, GatewayError> {
        let cluster = config.tls.cluster_id()?;
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
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), inner.clone()));
        tracing::info!(cluster = %inner.cluster, addr = ?endpoint.local_addr().ok(), "gateway listening");
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

async fn accept_loop(endpoint: Endpoint, inner: Arc<Inner>) {
    while let Some(incoming) = endpoint.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
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
    loop {
        match conn.accept_bi().await {
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

/// What a handled request answers.
enum Answer {
    Reply(Reply),
    Object(Bytes),
}

async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: Arc<str>,
    inner: Arc<Inner>,
) {
    let io = inner.config.timeouts.io;
    let answer = handle(&mut recv, &peer, &inner).await;
    let result = match answer {
        Ok(Answer::Reply(reply)) => {
            io::write_frame(&mut send, FrameKind::Response, &Response::Ok(reply), io).await
        }
        Ok(Answer::Object(object)) => {
            let len = object.len() as u64;
            let reply = Response::Ok(Reply::Object(Some(len)));
            let sent = async {
                io::write_frame(&mut send, FrameKind::Response, &reply, io).await?;
                io::send_object(&mut send, &object, io).await
            };
            let sent = sent.await;
            if sent.is_ok() {
                bump(&inner.stats.bytes_out, len);
            }
            sent
        }
        Err(e) => {
            bump(&inner.stats.requests_failed, 1);
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

fn remote(e: GatewayError) -> RemoteError {
    match e {
        GatewayError::Remote(r) => r,
        GatewayError::Store(s) => RemoteError::from(&s),
        GatewayError::ChecksumMismatch => RemoteError::Corrupted(e.to_string()),
        GatewayError::Frame(f) => RemoteError::BadFrame(f.to_string()),
        GatewayError::ObjectTooLarge { size, max } => RemoteError::TooLarge { size, max },
        GatewayError::Timeout { operation, after } => RemoteError::Timeout {
            operation: operation.to_owned(),
            after_ms: after.as_millis().try_into().unwrap_or(u64::MAX),
        },
        other => RemoteError::Unavailable(other.to_string()),
    }
}

fn store_error(e: gos_store::Error) -> RemoteError {
    RemoteError::from(&e)
}

async fn handle(
    recv: &mut RecvStream,
    peer: &Arc<str>,
    inner: &Inner,
) -> Result<Answer, RemoteError> {
    let io = inner.config.timeouts.io;
    let request: Request = io::read_frame(
        recv,
        FrameKind::Request,
        inner.config.limits.max_request_header,
        io,
    )
    .await
    .map_err(remote)?;
    let store = &inner.store;
    // Every store call is a wait too.
    macro_rules! op {
        ($name:literal, $e:expr) => {
            timed($name, io, $e)
                .await
                .map_err(remote)?
                .map_err(store_error)?
        };
    }
    Ok(Answer::Reply(match request {
        Request::Ping => Reply::Pong {
            cluster: inner.cluster.clone(),
        },
        Request::Limits => Reply::Limits(store.limits()),
        Request::Put { key, mode, len } => {
            receive_object(recv, inner, &key, mode, len).await?;
            Reply::Done
        }
        Request::Get { key } => match op!("store get", store.get(&key)) {
            Some(object) => return Ok(Answer::Object(object)),
            None => Reply::Object(None),
        },
        Request::Delete { key } => Reply::Bool(op!("store delete", store.delete(&key))),
        Request::KeysWithPrefix { prefix } => {
            Reply::Keys(op!("store keys", store.keys_with_prefix(&prefix)))
        }
        Request::DeletePrefix { prefix } => {
            Reply::Count(op!("store delete_prefix", store.delete_prefix(&prefix)) as u64)
        }
        Request::Len => Reply::Count(op!("store len", store.len()) as u64),
        Request::Stats => Reply::Stats(op!("store stats", store.stats())),
        Request::Deliver(delivery) => deliver(recv, peer, inner, *delivery).await?,
    }))
}

/// Streams an incoming object of `len` bytes into a reservation of the local store, checks
/// its checksum and commits it. Limits are checked before a byte of it is read; any failure
/// (a cut connection, a bad checksum, a timeout) drops the reservation uncommitted.
async fn receive_object(
    recv: &mut RecvStream,
    inner: &Inner,
    key: &ObjectKey,
    mode: PutMode,
    len: u64,
) -> Result<(), RemoteError> {
    let io = inner.config.timeouts.io;
    let max = inner.config.limits.max_object;
    if len > max {
        return Err(RemoteError::TooLarge { size: len, max });
    }
    let size = usize::try_from(len).map_err(|_| RemoteError::TooLarge {
        size: len,
        max: usize::MAX as u64,
    })?;
    let store = &inner.store;
    let mut reservation = match timed(
        "store reserve",
        io,
        store.reserve(key, size, &PutOptions::from(mode)),
    )
    .await
    .map_err(remote)?
    {
        Ok(reservation) => reservation,
        // A reservation is checked against the space free now, but a put reports an existing
        // key first (create), and an overwrite also frees the old value. Answer as the put
        // would; when the old value's space makes it fit, fall back to a buffer in process
        // memory and let the put at commit check again (what the default `reserve` does).
        Err(gos_store::Error::StoreFull { available, .. }) => {
            let old = timed("store get", io, store.get(key))
                .await
                .map_err(remote)?
                .map_err(store_error)?;
            let freed = match (old, mode) {
                (Some(_), PutMode::Create) => {
                    return Err(RemoteError::AlreadyExists { key: key.clone() });
                }
                (Some(old), PutMode::Overwrite) => old.len() as u64,
                (None, _) => 0,
            };
            if len > available.saturating_add(freed) {
                return Err(RemoteError::StoreFull {
                    requested: len,
                    available: available.saturating_add(freed),
                });
            }
            Box::new(BufferedReservation::new(
                &**store,
                key,
                size,
                &PutOptions::from(mode),
            ))
        }
        Err(e) => return Err(store_error(e)),
    };
    io::recv_object_into(recv, reservation.as_mut_slice(), io)
        .await
        .map_err(remote)?;
    timed("store commit", io, reservation.commit())
        .await
        .map_err(remote)?
        .map_err(store_error)?;
    bump(&inner.stats.bytes_in, len);
    Ok(())
}

/// Delivers a message: claims its id (a duplicate is answered at once), stores its object,
/// hands the message to the target's mailbox, then marks the id delivered.
async fn deliver(
    recv: &mut RecvStream,
    peer: &Arc<str>,
    inner: &Inner,
    delivery: Delivery,
) -> Result<Reply, RemoteError> {
    let Some(target) = &inner.target else {
        return Err(RemoteError::Refused(
            "this gateway delivers no messages (it serves a store only)".into(),
        ));
    };
    let id = delivery.message.id.0;
    let claim = match inner.dedup.claim(peer, id, delivery.to) {
        Claim::New(claim) => claim,
        Claim::Delivered => {
            bump(&inner.stats.duplicates, 1);
            return Ok(Reply::Delivered { duplicate: true });
        }
        Claim::InFlight => {
            return Err(RemoteError::Busy(format!(
                "message {id:032x} is being delivered"
            )));
        }
    };
    if let Some(object) = &delivery.object {
        receive_object(recv, inner, &object.key, PutMode::Overwrite, object.len).await?;
    }
    let to = gos_topology::NodeId(delivery.to);
    timed(
        "delivering to a mailbox",
        inner.config.timeouts.io,
        target.deliver(peer, to, delivery.message),
    )
    .await
    .map_err(remote)?
    .map_err(|e| RemoteError::Delivery(e.to_string()))?;
    claim.delivered();
    bump(&inner.stats.delivered, 1);
    Ok(Reply::Delivered { duplicate: false })
}
