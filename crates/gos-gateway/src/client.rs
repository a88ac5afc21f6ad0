//! `Link`: the client side of one gateway: a connection re-established when it drops, one
//! stream per request, retries of idempotent requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gos_store::{BufferPool, Clock, Digest};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};

use crate::config::{ClientConfig, Timeouts, WireLimits};
use crate::error::GatewayError;
use crate::frame::{FrameKind, PREFIX_LEN, Reply, Request, Response, ResumePoint, TransferId};
use crate::io::{self, Deadline, code, timed};
use crate::tls::cluster_dns_name;

/// `request` (a put or a delivery with an object) naming the transfer `id`.
fn with_transfer(request: &Request, id: TransferId) -> Request {
    let mut request = request.clone();
    match &mut request {
        Request::Put { transfer, .. } => *transfer = Some(id),
        Request::Deliver(d) => {
            if let Some(o) = &mut d.object {
                o.transfer = Some(id);
            }
        }
        _ => {}
    }
    request
}

/// How a resumed transfer ended.
#[derive(Debug)]
enum Resumed {
    /// The request's own answer (after the rest of the object was sent).
    Answered(Reply),
    /// The object was committed already (its answer was lost with the connection).
    Committed,
    /// The gateway does not know the transfer: nothing of it is stored.
    Unknown,
}

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
    clock: Arc<dyn Clock>,
    /// Reservations dropped uncommitted whose cancellation the gateway has not answered yet:
    /// every request waits for them first, so that it sees their space freed.
    aborts: Aborts,
}

/// A reservation dropped uncommitted: its stream was reset, and the gateway ends its side once
/// it has dropped the reservation there.
#[derive(Debug)]
enum Abort {
    /// Dropped inside a runtime: a task of it waits for the gateway's end of the stream.
    Task(tokio::task::JoinHandle<()>),
    /// Dropped outside any runtime (a synchronous caller's thread): the next request waits.
    Stream(RecvStream, Duration),
}

/// Reads `recv` to its end (the gateway's answer to the reset), for at most `wait`.
async fn drain(mut recv: RecvStream, wait: Duration) {
    let mut sink = [0u8; 4096];
    let drain = async { while let Ok(Some(_)) = recv.read(&mut sink).await {} };
    if tokio::time::timeout(wait, drain).await.is_err() {
        recv.stop(VarInt::from_u32(code::CANCELLED)).ok();
    }
}

/// The pending cancellations of every link of this process to the gateway at `addr`: a
/// request on any of them waits for the reservations dropped on the others, so that no handle
/// of this process sees space still held by a reservation another one dropped.
type Aborts = Arc<std::sync::Mutex<Vec<Abort>>>;
type AbortRegistry = std::sync::Mutex<
    std::collections::HashMap<SocketAddr, std::sync::Weak<std::sync::Mutex<Vec<Abort>>>>,
>;

fn shared_aborts(addr: SocketAddr) -> Aborts {
    static REGISTRY: std::sync::OnceLock<AbortRegistry> = std::sync::OnceLock::new();
    let mut registry = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    registry.retain(|_, weak| weak.strong_count() > 0);
    if let Some(aborts) = registry.get(&addr).and_then(std::sync::Weak::upgrade) {
        return aborts;
    }
    let aborts: Aborts = Arc::default();
    registry.insert(addr, Arc::downgrade(&aborts));
    aborts
}

impl Link {
    /// Waits (each bounded by its own timeout) for the gateway to answer the cancellations of
    /// dropped reservations, so that their space is free for what comes next.
    async fn settle_aborts(&self) {
        let pending: Vec<_> = self
            .aborts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for abort in pending {
            match abort {
                Abort::Task(task) => {
                    task.await.ok();
                }
                Abort::Stream(recv, wait) => drain(recv, wait).await,
            }
        }
    }

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
            clock: config.clock.clone(),
            aborts: shared_aborts(config.addr),
        })
    }

    /// The peer's cluster id.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The clock that turns a lease left into a deadline.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The live connection, or a new one if there is none or it was closed.
    pub(crate) async fn connection(&self) -> Result<Connection, GatewayError> {
        self.settle_aborts().await;
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
            // The gateway keeps a put cut with this connection for us to resume.
            conn.close(VarInt::from_u32(code::RECONNECTING), b"reconnecting");
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
    ) -> Result<(Reply, Option<(Bytes, Digest)>), GatewayError> {
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

    /// Sends a request that carries an object and names its transfer (a [`Request::Put`], or
    /// a [`Request::Deliver`] with an object, with an id). When the connection is cut, the
    /// next attempt resumes the transfer on a new connection from the bytes the gateway holds
    /// ([`Request::Resume`]), so the object is stored once; when the gateway no longer knows
    /// the transfer (it was never admitted, or the cut is older than its grace period), the
    /// next attempt sends the request again from byte 0 (a delivery whose object was
    /// committed too: the receiver's deduplication answers for the targets already reached).
    /// `resume` starts with a resume (a reservation whose commit was cut). A busy gateway is
    /// retried only when `retry` allows it.
    pub(crate) async fn send_resumable(
        &self,
        request: &Request,
        object: &Bytes,
        retry: Retry,
        mut resume: bool,
    ) -> Result<Reply, GatewayError> {
        let named = match request {
            Request::Put {
                transfer: Some(transfer),
                key,
                ..
            } => Some((*transfer, key)),
            Request::Deliver(d) => d.object.as_ref().and_then(|o| Some((o.transfer?, &o.key))),
            _ => None,
        };
        let Some((mut transfer, key)) = named else {
            return Ok(self.call(request, Some(object), retry).await?.0);
        };
        let key = key.clone();
        let delivery = matches!(request, Request::Deliver(_));
        // Sent again from byte 0 under a new id (the old one may still be registered by a
        // request the gateway has not noticed is dead).
        let mut renamed: Option<Request> = None;
        let mut attempt = u32::from(resume) + 1;
        if resume {
            tokio::time::sleep(backoff(1)).await;
        }
        loop {
            let result = match self.connection().await {
                Ok(conn) => {
                    let result = if resume {
                        self.resume_once(&conn, transfer, &key, object).await
                    } else {
                        self.call_once(&conn, renamed.as_ref().unwrap_or(request), Some(object))
                            .await
                            .map(|(reply, _)| Resumed::Answered(reply))
                    };
                    if result.as_ref().is_err_and(GatewayError::is_transport) {
                        self.forget(&conn).await;
                    }
                    result
                }
                Err(e) => Err(e),
            };
            // Unknown to the gateway: nothing of it is stored; send it again. (A delivery whose
            // object was committed is sent again too, for its outcomes.)
            let restart = match &result {
                Ok(Resumed::Committed) => delivery,
                Ok(Resumed::Unknown) => true,
                _ => false,
            };
            let again = match &result {
                Ok(_) => restart,
                Err(e) if e.is_transport() => true,
                Err(e) => e.is_retryable() && (resume || retry == Retry::Idempotent),
            };
            if !again || attempt >= self.max_attempts {
                return match result {
                    Ok(Resumed::Answered(reply)) => Ok(reply),
                    Ok(Resumed::Committed) if !delivery => Ok(Reply::Done),
                    Ok(Resumed::Unknown | Resumed::Committed) => Err(GatewayError::ResumeRefused {
                        transfer,
                        attempts: attempt,
                    }),
                    Err(e) => Err(e),
                };
            }
            if restart {
                resume = false;
                transfer = TransferId::fresh();
                renamed = Some(with_transfer(request, transfer));
            } else if result.as_ref().is_err_and(GatewayError::is_transport) {
                resume = true;
            }
            tracing::debug!(peer = %self.cluster, attempt, %transfer, resume, "sending the object again");
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Asks the gateway to resume `transfer` and sends what it is missing.
    async fn resume_once(
        &self,
        conn: &Connection,
        transfer: TransferId,
        key: &gos_store::ObjectKey,
        object: &Bytes,
    ) -> Result<Resumed, GatewayError> {
        let io = self.timeouts.io;
        let max = self.limits.max_response_header;
        let len = object.len() as u64;
        let (mut send, mut recv) = timed("opening a stream", io, conn.open_bi()).await??;
        let request = Request::Resume {
            transfer,
            key: key.clone(),
            len,
        };
        io::write_frame(&mut send, FrameKind::Request, &request, io).await?;
        let first: Response = io::read_frame(&mut recv, FrameKind::Response, max, io * 2).await?;
        let from = match first {
            Response::Ok(Reply::Resume(ResumePoint::From(from))) if from <= len => from,
            Response::Ok(Reply::Resume(ResumePoint::Committed)) => return Ok(Resumed::Committed),
            Response::Ok(Reply::Resume(ResumePoint::Unknown)) => return Ok(Resumed::Unknown),
            Response::Ok(other) => {
                return Err(GatewayError::UnexpectedReply(format!("{other:?}")));
            }
            Response::Err(e) => return Err(GatewayError::Remote(e)),
        };
        tracing::debug!(peer = %self.cluster, %transfer, from, len, "resuming a put");
        let deadline = Deadline::transfer(len - from, &self.limits, io);
        // `from` fits: it is at most the object's length.
        let from = usize::try_from(from).unwrap_or(object.len());
        io::send_object(&mut send, object, from, None, &deadline).await?;
        send.finish()
            .map_err(|e| GatewayError::Stream(e.to_string()))?;
        // The request's own answer: `Done` for a put, `Delivered` for a delivery.
        match io::read_frame(&mut recv, FrameKind::Response, max, io * 2).await? {
            Response::Ok(reply) => Ok(Resumed::Answered(reply)),
            Response::Err(e) => Err(GatewayError::Remote(e)),
        }
    }

    async fn call_once(
        &self,
        conn: &Connection,
        request: &Request,
        object: Option<&Bytes>,
    ) -> Result<(Reply, Option<(Bytes, Digest)>), GatewayError> {
        let io = self.timeouts.io;
        let (mut send, mut recv) = timed("opening a stream", io, conn.open_bi()).await??;
        let max = self.limits.max_response_header;
        let deadline = Deadline::transfer(object.map_or(0, |o| o.len() as u64), &self.limits, io);
        // Send the request while watching for an answer: a gateway admits an object
        // (`Admitted`) before it reads it, and one that refuses (too large, no room, busy, not
        // allowed) answers at once and stops our stream.
        let (first, sent) = {
            let sending = send_request(&mut send, request, object, &deadline);
            let reading = read_first(&mut recv, max, io);
            tokio::pin!(sending, reading);
            let mut sent: Option<Result<(), GatewayError>> = None;
            let mut first: Option<Result<Response, GatewayError>> = None;
            let wait = tokio::time::sleep(deadline.total);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    r = &mut reading, if first.is_none() => first = Some(r),
                    s = &mut sending, if sent.is_none() => {
                        sent = Some(s);
                        // From here the answer must come within `io` (twice for a delivery,
                        // whose mailboxes wait up to `io` each, concurrently).
                        wait.as_mut().reset(tokio::time::Instant::now() + io * 2);
                    }
                    () = &mut wait, if sent.is_some() && first.is_none() => {
                        return Err(match sent {
                            Some(Err(e)) => e,
                            _ => GatewayError::Timeout { operation: "waiting for the reply", after: io * 2 },
                        });
                    }
                }
                match &first {
                    // Admitted: keep sending the object.
                    Some(Ok(Response::Ok(Reply::Admitted))) if sent.is_none() => {}
                    Some(_) => break (first, sent),
                    None => {}
                }
            }
        };
        let (response, sent) = match (first, sent) {
            (Some(Ok(response)), sent) => {
                if sent.is_none() && !matches!(response, Response::Ok(Reply::Admitted)) {
                    // Answered before we finished sending: abandon the rest of the object.
                    send.reset(VarInt::from_u32(code::CANCELLED)).ok();
                }
                (response, sent)
            }
            (Some(Err(_)), Some(Err(send_error))) => return Err(send_error),
            (Some(Err(read_error)), _) => return Err(read_error),
            (None, _) => unreachable!("the loop ends with an answer"),
        };
        let response = match (response, sent) {
            (Response::Ok(Reply::Admitted), Some(Err(send_error))) => return Err(send_error),
            (Response::Ok(Reply::Admitted), _) => {
                // The object went out; the commit's answer follows.
                io::read_frame(&mut recv, FrameKind::Response, max, io * 2).await?
            }
            (other, _) => other,
        };
        match response {
            Response::Ok(Reply::Object(Some(len))) => {
                let object = self.recv_object(&mut recv, len).await?;
                Ok((Reply::Object(Some(len)), Some(object)))
            }
            Response::Ok(reply) => Ok((reply, None)),
            Response::Err(e) => Err(GatewayError::Remote(e)),
        }
    }

    /// Opens a stream for a reservation of `len` bytes: sends the put's header and waits until
    /// the gateway has reserved the space in its store. The object goes out at commit.
    pub(crate) async fn open_upload(
        &self,
        request: &Request,
        len: u64,
    ) -> Result<Upload, GatewayError> {
        let io = self.timeouts.io;
        let conn = self.connection().await?;
        let opened = async {
            let (mut send, mut recv) = timed("opening a stream", io, conn.open_bi()).await??;
            io::write_frame(&mut send, FrameKind::Request, request, io).await?;
            let first: Response = io::read_frame(
                &mut recv,
                FrameKind::Response,
                self.limits.max_response_header,
                io,
            )
            .await?;
            match first {
                Response::Ok(Reply::Admitted) => Ok(Upload {
                    send,
                    recv: Some(recv),
                    len,
                    limits: self.limits,
                    io,
                    done: false,
                    aborts: Arc::clone(&self.aborts),
                }),
                Response::Ok(other) => Err(GatewayError::UnexpectedReply(format!("{other:?}"))),
                Response::Err(e) => Err(GatewayError::Remote(e)),
            }
        };
        let result = opened.await;
        if result.as_ref().is_err_and(GatewayError::is_transport) {
            self.forget(&conn).await;
        }
        result
    }

    async fn recv_object(
        &self,
        recv: &mut RecvStream,
        len: u64,
    ) -> Result<(Bytes, Digest), GatewayError> {
        if len > self.limits.max_object {
            recv.stop(VarInt::from_u32(code::REFUSED)).ok();
            return Err(GatewayError::ObjectTooLarge {
                size: len,
                max: self.limits.max_object,
            });
        }
        let size = usize::try_from(len).map_err(|_| GatewayError::ObjectTooLarge {
            size: len,
            max: usize::MAX as u64,
        })?;
        // Received straight into a warm buffer of the pool; the `Bytes` gives it back when
        // the caller drops the object.
        let mut buf = self.pool.take(size);
        let deadline = Deadline::transfer(len, &self.limits, self.timeouts.io);
        match io::recv_object_into(recv, &mut buf[..size], &deadline).await {
            Ok(digest) => Ok((self.pool.freeze(buf, size), digest)),
            Err(e) => {
                self.pool.give(buf);
                Err(e)
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Tell the gateway at once (best effort) rather than leave it a connection that
        // counts against our identity's cap until its idle timeout.
        if let Ok(guard) = self.conn.try_lock()
            && let Some(conn) = guard.as_ref()
        {
            conn.close(VarInt::from_u32(0), b"client closed");
        }
    }
}

/// The stream of a reservation at a remote store: admitted (the space is charged there), the
/// object not sent yet.
#[derive(Debug)]
pub(crate) struct Upload {
    send: SendStream,
    /// Taken by the cancellation task when dropped uncommitted.
    recv: Option<RecvStream>,
    len: u64,
    limits: WireLimits,
    io: Duration,
    done: bool,
    aborts: Aborts,
}

impl Upload {
    /// Sends the object and waits for the commit's answer.
    pub(crate) async fn commit(mut self, object: Bytes) -> Result<(), GatewayError> {
        debug_assert_eq!(object.len() as u64, self.len);
        self.done = true;
        let deadline = Deadline::transfer(self.len, &self.limits, self.io);
        io::send_object(&mut self.send, &object, 0, None, &deadline).await?;
        self.send
            .finish()
            .map_err(|e| GatewayError::Stream(e.to_string()))?;
        let max = self.limits.max_response_header;
        let recv = self
            .recv
            .as_mut()
            .ok_or_else(|| GatewayError::Stream("upload stream already closed".into()))?;
        match io::read_frame(recv, FrameKind::Response, max, self.io * 2).await? {
            Response::Ok(Reply::Done) => Ok(()),
            Response::Ok(other) => Err(GatewayError::UnexpectedReply(format!("{other:?}"))),
            Response::Err(e) => Err(GatewayError::Remote(e)),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            // Dropped uncommitted: the gateway drops its reservation when it sees the reset,
            // then ends its side of the stream. The link's next request waits for that end
            // (bounded), so it sees the space freed.
            self.send.reset(VarInt::from_u32(code::CANCELLED)).ok();
            if let Some(recv) = self.recv.take() {
                let wait = self.io * 2;
                let abort = match tokio::runtime::Handle::try_current() {
                    Ok(handle) => Abort::Task(handle.spawn(drain(recv, wait))),
                    Err(_) => Abort::Stream(recv, wait),
                };
                self.aborts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(abort);
            }
        }
    }
}

/// Reads the first response frame: its prefix without a timeout of its own (it may come only
/// after a long upload; the caller bounds the wait), its header within `io`.
async fn read_first(
    recv: &mut RecvStream,
    max: u32,
    io: Duration,
) -> Result<Response, GatewayError> {
    let mut prefix = [0u8; PREFIX_LEN];
    recv.read_exact(&mut prefix).await?;
    io::read_frame_after_prefix(recv, &prefix, FrameKind::Response, max, io).await
}

async fn send_request(
    send: &mut SendStream,
    request: &Request,
    object: Option<&Bytes>,
    deadline: &Deadline,
) -> Result<(), GatewayError> {
    io::write_frame(send, FrameKind::Request, request, deadline.io).await?;
    if let Some(object) = object {
        io::send_object(send, object, 0, None, deadline).await?;
    }
    send.finish()
        .map_err(|e| GatewayError::Stream(e.to_string()))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6))
}

#[cfg(test)]
mod backoff_tests {
    use super::backoff;

    /// docs/icrf.md states the waits between tries; they are these constants.
    #[test]
    fn the_backoff_is_what_the_icrf_page_says() {
        let page = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/icrf.md"),
        )
        .expect("docs/icrf.md");
        let row = page
            .lines()
            .find(|l| l.starts_with("| `max_attempts`"))
            .expect("a max_attempts row in docs/icrf.md");
        let ms = |attempt| backoff(attempt).as_millis();
        let cap = backoff(u32::MAX);
        assert!(
            cap >= backoff(6) && backoff(7) == cap,
            "the backoff is capped"
        );
        let want = format!(
            "{} ms before the second try, {} ms before the third, doubling each time up to {:.1} s",
            ms(1),
            ms(2),
            cap.as_secs_f64()
        );
        assert!(
            row.contains(&want),
            "docs/icrf.md says: {row}\nthe code: {want}"
        );
        assert_eq!(ms(2), 2 * ms(1));
    }
}
