//! Reading and writing frames and objects on QUIC streams, every wait under a timeout.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use gos_store::Digest;
use quinn::{RecvStream, SendStream, VarInt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::WireLimits;
use crate::error::GatewayError;
use crate::frame::{self, CHECKSUM_LEN, Checksum, FrameKind, PREFIX_LEN};

/// Size of the slices an object is written in: big enough to cost nothing per call, small
/// enough that checksumming overlaps with sending.
pub(crate) const CHUNK: usize = 1 << 20;

/// Stream error codes (application codes of STOP_SENDING and RESET_STREAM).
pub(crate) mod code {
    /// The request was refused; the reason is in the response frame.
    pub(crate) const REFUSED: u32 = 1;
    /// The sender gave up on the stream.
    pub(crate) const CANCELLED: u32 = 2;
    /// The whole request took longer than its deadline.
    pub(crate) const TOO_SLOW: u32 = 3;
    /// Connection close code: the client gave up on this connection and reconnects (a
    /// transfer cut with it may be resumed on the new one).
    pub(crate) const RECONNECTING: u32 = 4;
}

/// Awaits `f`, failing with [`GatewayError::Timeout`] after `after`.
pub(crate) async fn timed<T>(
    operation: &'static str,
    after: Duration,
    f: impl Future<Output = T>,
) -> Result<T, GatewayError> {
    tokio::time::timeout(after, f)
        .await
        .map_err(|_| GatewayError::Timeout { operation, after })
}

/// Reads exactly `buf.len()` bytes.
pub(crate) async fn read_exact(
    recv: &mut RecvStream,
    buf: &mut [u8],
    io: Duration,
) -> Result<(), GatewayError> {
    timed("reading from the stream", io, recv.read_exact(buf)).await??;
    Ok(())
}

/// Reads one frame header of `kind`, refusing a header over `max` before reading it.
pub(crate) async fn read_frame<T: DeserializeOwned>(
    recv: &mut RecvStream,
    kind: FrameKind,
    max: u32,
    io: Duration,
) -> Result<T, GatewayError> {
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact(recv, &mut prefix, io).await?;
    read_frame_after_prefix(recv, &prefix, kind, max, io).await
}

/// Reads the header of a frame whose prefix was read already.
pub(crate) async fn read_frame_after_prefix<T: DeserializeOwned>(
    recv: &mut RecvStream,
    prefix: &[u8; PREFIX_LEN],
    kind: FrameKind,
    max: u32,
    io: Duration,
) -> Result<T, GatewayError> {
    let len = frame::decode_prefix(prefix, kind, max)?;
    let mut header = vec![0u8; len as usize];
    read_exact(recv, &mut header, io).await?;
    Ok(frame::decode_header(&header)?)
}

/// Writes one frame.
pub(crate) async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    kind: FrameKind,
    header: &T,
    io: Duration,
) -> Result<(), GatewayError> {
    let bytes = frame::encode(kind, header)?;
    timed("writing to the stream", io, send.write_all(&bytes)).await??;
    Ok(())
}

/// When a whole transfer must be over: every read and write of it waits at most `io`, and
/// all of them together no longer than until `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// The end of the whole transfer.
    pub(crate) at: Instant,
    /// The whole transfer's allowance (for the error message).
    pub(crate) total: Duration,
    /// The bound of each single read or write.
    pub(crate) io: Duration,
}

impl Deadline {
    /// A transfer of `len` bytes starting now: `limits.transfer_time(len, io)`.
    pub(crate) fn transfer(len: u64, limits: &WireLimits, io: Duration) -> Self {
        let total = limits.transfer_time(len, io);
        Deadline {
            at: Instant::now() + total,
            total,
            io,
        }
    }

    /// A deadline whose single waits are bounded only by the whole.
    pub(crate) fn whole_only(self) -> Self {
        Deadline {
            io: self.total,
            ..self
        }
    }

    /// Awaits `f` for at most `io`, and not past the whole deadline.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = T>,
    ) -> Result<T, GatewayError> {
        let single = Instant::now() + self.io;
        if single < self.at {
            return timed(operation, self.io, f).await;
        }
        tokio::time::timeout_at(self.at, f)
            .await
            .map_err(|_| GatewayError::Timeout {
                operation: "transfer",
                after: self.total,
            })
    }
}

/// Writes an object from byte `from` on, then its digest trailer. The object's bytes are
/// handed to quinn as slices of the same buffer (no copy). A `known` digest (the one the store
/// keeps) is sent as it is; without one, the digest is computed slice by slice as they go (or,
/// for a resumed transfer that starts past byte 0, over the whole object first).
pub(crate) async fn send_object(
    send: &mut SendStream,
    object: &Bytes,
    from: usize,
    known: Option<Digest>,
    deadline: &Deadline,
) -> Result<(), GatewayError> {
    let known = match known {
        None if from > 0 => Some(Digest::of(object)),
        known => known,
    };
    let mut checksum = known.is_none().then(Checksum::new);
    let mut at = from.min(object.len());
    while at < object.len() {
        let end = (at + CHUNK).min(object.len());
        if let Some(c) = &mut checksum {
            c.update(&object[at..end]);
        }
        deadline
            .run("writing an object", send.write_chunk(object.slice(at..end)))
            .await??;
        at = end;
    }
    let digest = match (known, checksum) {
        (Some(d), _) => d,
        (None, Some(c)) => c.digest(),
        (None, None) => unreachable!("a checksum is made when no digest is known"),
    };
    let trailer = digest.to_bytes();
    deadline
        .run("writing a checksum", send.write_all(&trailer))
        .await??;
    Ok(())
}

/// How much of an object has landed in its buffer, and the digest of those bytes so far: what
/// a transfer resumed on a new stream goes on from.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes received (and hashed) so far.
    pub(crate) at: usize,
    checksum: Checksum,
}

/// Why receiving an object stopped before its digest was checked.
#[derive(Debug)]
pub(crate) enum Interrupted<T> {
    /// The stream failed. `cut` when its connection was lost (rather than the sender
    /// cancelling, finishing early or sending a bad digest, or the deadline passing): a
    /// transfer that may be resumed on a new connection.
    Failed {
        /// What failed.
        error: GatewayError,
        /// The connection was cut.
        cut: bool,
    },
    /// A resume of this transfer arrived (on another stream) while this one was read.
    Resumed(T),
}

impl<T> From<GatewayError> for Interrupted<T> {
    fn from(error: GatewayError) -> Self {
        Interrupted::Failed { error, cut: false }
    }
}

/// Whether a read failed because the connection was cut: lost to a timeout, a stateless
/// reset or a transport error, or closed by a client that reconnects
/// ([`code::RECONNECTING`]); not a close on purpose or a stream the sender cancelled.
fn is_cut(e: &quinn::ReadError) -> bool {
    use quinn::ConnectionError as C;
    match e {
        quinn::ReadError::ConnectionLost(c) => match c {
            C::TimedOut | C::Reset | C::TransportError(_) | C::ConnectionClosed(_) => true,
            C::ApplicationClosed(close) => close.error_code == VarInt::from_u32(code::RECONNECTING),
            _ => false,
        },
        _ => false,
    }
}

fn read_failure<T>(e: quinn::ReadError) -> Interrupted<T> {
    Interrupted::Failed {
        cut: is_cut(&e),
        error: e.into(),
    }
}

/// Reads the rest of an object of `buf.len()` bytes straight into `buf` (a store reservation)
/// from `progress.at` on, and checks its digest trailer, hashing each chunk as it lands (while
/// it is in cache). Nothing is buffered on the way: quinn's received packets are copied once,
/// into `buf`. Returns the digest, checked. A message on `resumes` (a resume of this transfer
/// on another stream) ends the read at once, with `progress` at the bytes received.
pub(crate) async fn recv_object_resumable<T>(
    recv: &mut RecvStream,
    buf: &mut [u8],
    progress: &mut Progress,
    deadline: &Deadline,
    mut resumes: Option<&mut tokio::sync::mpsc::Receiver<T>>,
) -> Result<Digest, Interrupted<T>> {
    // A resume, if any can come (never, without a channel).
    let mut resumed = async || match resumes.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    };
    while progress.at < buf.len() {
        let at = progress.at;
        let end = (at + CHUNK).min(buf.len());
        let read = tokio::select! {
            biased;
            Some(streams) = resumed() => return Err(Interrupted::Resumed(streams)),
            // quinn's `read` is cancel-safe: bytes are taken only when it completes.
            read = deadline.run("reading an object", recv.read(&mut buf[at..end])) => read?,
        };
        match read {
            Ok(Some(n)) => {
                progress.checksum.update(&buf[at..at + n]);
                progress.at += n;
            }
            Ok(None) => {
                return Err(
                    GatewayError::from(frame::FrameError::Truncated(PREFIX_LEN + at)).into(),
                );
            }
            Err(e) => return Err(read_failure(e)),
        }
    }
    // The trailer is sent again after a resume, so a partial read of it here is not kept.
    let mut trailer = [0u8; CHECKSUM_LEN];
    let read = tokio::select! {
        biased;
        Some(streams) = resumed() => return Err(Interrupted::Resumed(streams)),
        read = deadline.run("reading a checksum", recv.read_exact(&mut trailer)) => read?,
    };
    match read {
        Ok(()) => {}
        Err(quinn::ReadExactError::ReadError(e)) => return Err(read_failure(e)),
        Err(e) => return Err(GatewayError::from(e).into()),
    }
    let digest = progress.checksum.digest();
    if digest == Digest::from_bytes(trailer) {
        Ok(digest)
    } else {
        Err(GatewayError::ChecksumMismatch.into())
    }
}

/// Reads an object of `buf.len()` bytes straight into `buf` and checks its digest trailer
/// (see [`recv_object_resumable`]); a transfer that cannot be resumed.
pub(crate) async fn recv_object_into(
    recv: &mut RecvStream,
    buf: &mut [u8],
    deadline: &Deadline,
) -> Result<Digest, GatewayError> {
    let mut progress = Progress::default();
    recv_object_resumable::<()>(recv, buf, &mut progress, deadline, None)
        .await
        .map_err(|e| match e {
            Interrupted::Failed { error, .. } => error,
            Interrupted::Resumed(()) => unreachable!("no resume channel"),
        })
}
