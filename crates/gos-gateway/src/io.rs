//! Reading and writing frames and objects on QUIC streams, every wait under a timeout.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use gos_store::Digest;
use quinn::{RecvStream, SendStream};
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

/// Writes an object and its digest trailer. The object's bytes are handed to quinn as slices
/// of the same buffer (no copy). A `known` digest (the one the store keeps) is sent as it is;
/// without one, the digest is computed slice by slice as they go.
pub(crate) async fn send_object(
    send: &mut SendStream,
    object: &Bytes,
    known: Option<Digest>,
    deadline: &Deadline,
) -> Result<(), GatewayError> {
    let mut checksum = known.is_none().then(Checksum::new);
    let mut at = 0;
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

/// Reads an object of `buf.len()` bytes straight into `buf` (a store reservation) and checks
/// its digest trailer, hashing each chunk as it lands (while it is in cache). Nothing is
/// buffered on the way: quinn's received packets are copied once, into `buf`. Returns the
/// digest, checked.
pub(crate) async fn recv_object_into(
    recv: &mut RecvStream,
    buf: &mut [u8],
    deadline: &Deadline,
) -> Result<Digest, GatewayError> {
    let mut checksum = Checksum::new();
    let mut at = 0;
    while at < buf.len() {
        let end = (at + CHUNK).min(buf.len());
        match deadline
            .run("reading an object", recv.read(&mut buf[at..end]))
            .await??
        {
            Some(n) => {
                checksum.update(&buf[at..at + n]);
                at += n;
            }
            None => return Err(frame::FrameError::Truncated(PREFIX_LEN + at).into()),
        }
    }
    let mut trailer = [0u8; CHECKSUM_LEN];
    deadline
        .run("reading a checksum", recv.read_exact(&mut trailer))
        .await??;
    let digest = checksum.digest();
    if digest == Digest::from_bytes(trailer) {
        Ok(digest)
    } else {
        Err(GatewayError::ChecksumMismatch)
    }
}
