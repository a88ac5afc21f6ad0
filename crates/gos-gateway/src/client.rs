//! `Link`: the client side of one gateway: a connection re-established when it drops, one
//! stream per request, retries of idempotent requests.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gos_store::BufferPool;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};

use crate::config::{ClientConfig, Timeouts, WireLimits};
use crate::error::GatewayError;
use crate::frame::{FrameKind, PREFIX_LEN, Reply, Request, Response};
use crate::io::{self, code, timed};
use crate::tls::cluster_dns_name;

/// Whether a request may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Sending it twice has the effect of sending it once (reads, overwrites, deliveries,
    /// which the receiver deduplicates by message id).
    Idempotent,
    /// Sent at most once.
    Once,
}

/// A client of one gateway.
#[derive(Debug)]
pub(crate) struct Link {
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    addr: SocketAddr,
    cluster: String,
    server_name: String,
    timeouts: Timeouts,
    limits: WireLimits,
    max_attempts: u32,
    conn: tokio::sync::Mutex<Option<Connection>>,
    /// Warm buffers for received objects.
    pool: Arc<BufferPool>,
}

impl Link {
    /// A link to the gateway `config` names, over `endpoint`; connects on first use.
    pub(crate) fn new(
        endpoint: Endpoint,
        client: quinn::ClientConfig,
        config: &ClientConfig,
    ) -> Result<Self, GatewayError> {
        if !config.tls.allowed.allows(&config.cluster) {
            return Err(GatewayError::NotAllowed(config.cluster.clone()));
        }
        Ok(Link {
            endpoint,
            client,
            addr: config.addr,
            server_name: cluster_dns_name(&config.cluster),
            cluster: config.cluster.clone(),
            timeouts: config.timeouts,
            limits: config.limits,
            max_attempts: config.max_attempts.max(1),
            conn: tokio::sync::Mutex::new(None),
            pool: Arc::new(BufferPool::new(config.pool_bytes)),
        })
    }

    /// The peer's cluster id.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The live connection, or a new one if there is none or it was closed.
    pub(crate) async fn connection(&self) -> Result<Connection, GatewayError> {
        let mut guard = timed(
            "waiting for the connection",
            self.timeouts.connect,
            self.conn.lock(),
        )
        .await?;
        if let Some(conn) = guard.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let connect_error = |reason: String| GatewayError::Connect {
            peer: self.cluster.clone(),
            reason,
        };
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), self.addr, &self.server_name)
            .map_err(|e| connect_error(e.to_string()))?;
        let conn = timed("connecting", self.timeouts.connect, connecting)
            .await?
            .map_err(|e| connect_error(e.to_string()))?;
        tracing::debug!(peer = %self.cluster, addr = %self.addr, "connected");
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Drops `conn` if it is still the current connection, so that the next request
    /// reconnects.
    async fn forget(&self, conn: &Connection) {
        let mut guard = self.conn.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            conn.close(VarInt::from_u32(0), b"reconnecting");
            *guard = None;
        }
    }

    /// Sends `request` (with `object`, if any) and returns the reply (with its object, for a
    /// get), retrying on a new connection when `retry` allows and the failure was the
    /// transport's.
    pub(crate) async fn call(
        &self,
        request: &Request,
        object: Option<&Bytes>,
        retry: Retry,
    ) -> Result<(Reply, Option<Bytes>), GatewayError> {
        let mut attempt = 1;
        loop {
            let result = match self.connection().await {
                Ok(conn) => {
                    let result = self.call_once(&conn, request, object).await;
                    if result.as_ref().is_err_and(GatewayError::is_transport) {
                        self.forget(&conn).await;
                    }
                    result
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e)
                    if e.is_retryable()
                        && retry == Retry::Idempotent
                        && attempt < self.max_attempts =>
                {
                    tracing::debug!(peer = %self.cluster, attempt, "retrying after: {e}");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        conn: &Connection,
        request: &Request,
        object: Option<&Bytes>,
    ) -> Result<(Reply, Option<Bytes>), GatewayError> {
        let io = self.timeouts.io;
        let (mut send, mut recv) = timed("opening a stream", io, conn.open_bi()).await??;
        let mut prefix = [0u8; PREFIX_LEN];
        // Send the request while watching for an early answer: a gateway that refuses an
        // object (too large, no room) answers before reading it and stops our stream.
        let (first, sent) = {
            let mut sending = pin!(send_request(&mut send, request, object, io));
            let mut first = pin!(recv.read_exact(&mut prefix));
            tokio::select! {
                read = &mut first => (read, None),
                sent = &mut sending => {
                    let read = timed("waiting for the reply", io, &mut first).await;
                    match (read, sent) {
                        (Ok(read), sent) => (read, Some(sent)),
                        (Err(timeout), Ok(())) => return Err(timeout),
                        (Err(_), Err(send_error)) => return Err(send_error),
                    }
                }
            }
        };
        match (first, sent) {
            (Ok(()), None) => {
                // Answered before we finished sending: abandon the rest of the object.
                send.reset(VarInt::from_u32(code::CANCELLED)).ok();
            }
            (Ok(()), Some(_)) => {}
            (Err(_), Some(Err(send_error))) => return Err(send_error),
            (Err(read_error), _) => return Err(read_error.into()),
        }
        let response: Response = io::read_frame_after_prefix(
            &mut recv,
            &prefix,
            FrameKind::Response,
            self.limits.max_response_header,
            io,
        )
        .await?;
        match response {
            Response::Ok(Reply::Object(Some(len))) => {
                let object = self.recv_object(&mut recv, len).await?;
                Ok((Reply::Object(Some(len)), Some(object)))
            }
            Response::Ok(reply) => Ok((reply, None)),
            Response::Err(e) => Err(GatewayError::Remote(e)),
        }
    }

    async fn recv_object(&self, recv: &mut RecvStream, len: u64) -> Result<Bytes, GatewayError> {
        if len > self.limits.max_object {
            recv.stop(VarInt::from_u32(code::REFUSED)).ok();
            return Err(GatewayError::ObjectTooLarge {
                size: len,
                max: self.limits.max_object,
            });
        }
        let len = usize::try_from(len).map_err(|_| GatewayError::ObjectTooLarge {
            size: len,
            max: usize::MAX as u64,
        })?;
        // Received straight into a warm buffer of the pool; the `Bytes` gives it back when
        // the caller drops the object.
        let mut buf = self.pool.take(len);
        match io::recv_object_into(recv, &mut buf[..len], self.timeouts.io).await {
            Ok(()) => Ok(self.pool.freeze(buf, len)),
            Err(e) => {
                self.pool.give(buf);
                Err(e)
            }
        }
    }
}

async fn send_request(
    send: &mut SendStream,
    request: &Request,
    object: Option<&Bytes>,
    io: Duration,
) -> Result<(), GatewayError> {
    io::write_frame(send, FrameKind::Request, request, io).await?;
    if let Some(object) = object {
        io::send_object(send, object, io).await?;
    }
    send.finish()
        .map_err(|e| GatewayError::Stream(e.to_string()))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6))
}
