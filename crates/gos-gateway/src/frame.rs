//! The ICRF wire format: a fixed 8-byte prefix, a postcard header, then raw object bytes and a
//! CRC-32 trailer.
//!
//! Every request travels on its own bidirectional QUIC stream: the client writes one request
//! frame (and, for a put or a delivery with an object, the object), the gateway answers with one
//! response frame (and, for a get, the object). A frame is:
//!
//! ```text
//! +------+------+---------+------+----------------+----------------------------+
//! | 'G'  | 'I'  | version | kind | header_len u32 | header: postcard, header_len |
//! +------+------+---------+------+-------(LE)-----+----------------------------+
//!  then, only when the header announces an object of `len` bytes:
//! +----------------------------------+----------------------+
//! | object: exactly `len` raw bytes  | crc32 (IEEE) u32 LE  |
//! +----------------------------------+----------------------+
//! ```
//!
//! The prefix is fixed so that a receiver learns the version and the header length from 8
//! bytes, refuses an unknown version or an oversized header before reading or allocating
//! anything more, and knows exactly how many bytes to read next. The header is postcard: typed
//! (serde), compact, and decoding from a bounded slice can never allocate more than the slice
//! holds. The object is not inside the header so that it can be streamed in chunks straight
//! into the receiving store's reservation, and its length (in the header) is checked against
//! the limits before a single payload byte is read.

use std::fmt;

use gos_store::{KeyError, KeyPrefix, Limits, ObjectKey, PutMode, StoreStats};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"GI";
/// The frame format version this build speaks.
pub const VERSION: u8 = 1;
/// Length of the fixed prefix, in bytes.
pub const PREFIX_LEN: usize = 8;
/// Length of the checksum trailer after an object, in bytes.
pub const CHECKSUM_LEN: usize = 4;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A [`Request`], client to gateway.
    Request = 1,
    /// A [`Response`], gateway to client.
    Response = 2,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic {0:02x?}, not an icrf frame")]
    BadMagic([u8; 2]),
    /// The version byte is not one this build speaks.
    #[error("unsupported frame version {0}, this gateway speaks version {VERSION}")]
    UnsupportedVersion(u8),
    /// The kind byte is unknown, or not the kind expected here.
    #[error("unexpected frame kind {0}")]
    UnexpectedKind(u8),
    /// The header is longer than the receiver accepts.
    #[error("frame header of {len} bytes is larger than the maximum of {max} bytes")]
    HeaderTooLarge {
        /// The announced header length.
        len: u32,
        /// The receiver's maximum.
        max: u32,
    },
    /// The header bytes do not decode, or leave bytes over.
    #[error("malformed frame header: {0}")]
    Malformed(String),
    /// The stream ended before the frame did.
    #[error("truncated frame: the stream ended after {0} bytes")]
    Truncated(usize),
}

/// A request, the header of the first frame on a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Who are you? Answered with [`Reply::Pong`].
    Ping,
    /// The store's [`Limits`].
    Limits,
    /// Store an object of `len` bytes, which follows the header (with its checksum).
    Put {
        /// Where to store it.
        key: ObjectKey,
        /// Overwrite or create.
        mode: PutMode,
        /// The object's length in bytes.
        len: u64,
    },
    /// Fetch an object; answered with [`Reply::Object`] and the object.
    Get {
        /// Which one.
        key: ObjectKey,
    },
    /// Delete an object; answered with [`Reply::Bool`].
    Delete {
        /// Which one.
        key: ObjectKey,
    },
    /// The keys with a prefix, ascending; answered with [`Reply::Keys`].
    KeysWithPrefix {
        /// The prefix (the root for every key).
        prefix: KeyPrefix,
    },
    /// Delete the keys with a prefix; answered with [`Reply::Count`].
    DeletePrefix {
        /// The prefix.
        prefix: KeyPrefix,
    },
    /// The number of keys; answered with [`Reply::Count`].
    Len,
    /// The store's occupancy; answered with [`Reply::Stats`].
    Stats,
    /// Deliver a message to a node of the receiving cluster, with an optional object that
    /// follows the header and is stored under `object.key` before the message is delivered.
    Deliver(Box<Delivery>),
}

/// A message for a node of the receiving cluster, and the object that travels with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The target node, in the receiving cluster's topology.
    pub to: u32,
    /// The message, as the topology routes it (key only).
    pub message: gos_topology::Message,
    /// The object that travels with it, if any.
    pub object: Option<ObjectHeader>,
}

/// An object announced by a header: its key and length; the bytes follow the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeader {
    /// The key to store it under.
    pub key: ObjectKey,
    /// Its length in bytes.
    pub len: u64,
}

/// A response, the header of the frame that answers a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// The request succeeded.
    Ok(Reply),
    /// The request failed.
    Err(RemoteError),
}

/// What a successful request returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reply {
    /// Done, nothing to return.
    Done,
    /// The answer to [`Request::Ping`]: the gateway's cluster id.
    Pong {
        /// The cluster the gateway serves.
        cluster: String,
    },
    /// The store's limits.
    Limits(Limits),
    /// A yes or no.
    Bool(bool),
    /// A count.
    Count(u64),
    /// Keys, ascending.
    Keys(Vec<ObjectKey>),
    /// Occupancy.
    Stats(StoreStats),
    /// The answer to a get: `None` when the key is missing; otherwise the object's length,
    /// and the object and its checksum follow.
    Object(Option<u64>),
    /// A delivery reached the target's mailbox; `duplicate` when this message id had already
    /// been delivered (a retry) and nothing was done.
    Delivered {
        /// True when this was a retry of a message already delivered.
        duplicate: bool,
    },
}

/// An error as it travels on the wire; maps one to one onto [`gos_store::Error`] where a
/// variant exists there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// An invalid key or prefix.
    #[error("invalid key: {0}")]
    InvalidKey(WireKeyError),
    /// A value over the store's maximum value size, or the gateway's maximum object size.
    #[error("value of {size} bytes is larger than the maximum of {max} bytes")]
    TooLarge {
        /// The size refused.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// The store has no room.
    #[error("store full: {requested} bytes requested, {available} bytes available")]
    StoreFull {
        /// Bytes needed.
        requested: u64,
        /// Bytes free.
        available: u64,
    },
    /// The store holds its maximum number of entries.
    #[error("store full: it already holds its maximum of {max} entries")]
    TooManyEntries {
        /// The maximum.
        max: u64,
    },
    /// A create found the key present.
    #[error("key `{key}` already exists")]
    AlreadyExists {
        /// The key.
        key: ObjectKey,
    },
    /// Something timed out on the gateway's side.
    #[error("{operation} timed out after {after_ms} ms")]
    Timeout {
        /// What was waited for.
        operation: String,
        /// After how long, in milliseconds.
        after_ms: u64,
    },
    /// Data failed an integrity check (a bad checksum on an incoming object).
    #[error("data corrupted: {0}")]
    Corrupted(String),
    /// The gateway or its store cannot serve now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store failed in a way of its own.
    #[error("{backend} backend error: {message}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// Its error, as text.
        message: String,
    },
    /// The request frame was malformed, truncated or oversized.
    #[error("bad request frame: {0}")]
    BadFrame(String),
    /// The gateway does not serve this request (no delivery target configured, unknown node).
    #[error("refused: {0}")]
    Refused(String),
    /// The message could not be put into the target's mailbox.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// A delivery with this message id is in progress; retry later.
    #[error("busy: {0}")]
    Busy(String),
}

/// A [`KeyError`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WireKeyError {
    /// [`KeyError::Empty`].
    Empty,
    /// [`KeyError::TooLong`].
    TooLong {
        /// Length.
        len: u64,
        /// Maximum.
        max: u64,
    },
    /// [`KeyError::ControlCharacter`].
    ControlCharacter {
        /// The character.
        ch: char,
        /// Its byte offset.
        position: u64,
    },
    /// [`KeyError::EmptySegment`].
    EmptySegment {
        /// Byte offset.
        position: u64,
    },
    /// Any other key error, as text.
    Other(String),
}

impl fmt::Display for WireKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KeyError::try_from(self.clone()) {
            Ok(e) => e.fmt(f),
            Err(text) => f.write_str(&text),
        }
    }
}

impl From<&KeyError> for WireKeyError {
    fn from(e: &KeyError) -> Self {
        match e {
            KeyError::Empty => WireKeyError::Empty,
            KeyError::TooLong { len, max } => WireKeyError::TooLong {
                len: *len as u64,
                max: *max as u64,
            },
            KeyError::ControlCharacter { ch, position } => WireKeyError::ControlCharacter {
                ch: *ch,
                position: *position as u64,
            },
            KeyError::EmptySegment { position } => WireKeyError::EmptySegment {
                position: *position as u64,
            },
            other => WireKeyError::Other(other.to_string()),
        }
    }
}

impl TryFrom<WireKeyError> for KeyError {
    type Error = String;
    fn try_from(e: WireKeyError) -> Result<Self, String> {
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(match e {
            WireKeyError::Empty => KeyError::Empty,
            WireKeyError::TooLong { len, max } => KeyError::TooLong {
                len: usize_of(len),
                max: usize_of(max),
            },
            WireKeyError::ControlCharacter { ch, position } => KeyError::ControlCharacter {
                ch,
                position: usize_of(position),
            },
            WireKeyError::EmptySegment { position } => KeyError::EmptySegment {
                position: usize_of(position),
            },
            WireKeyError::Other(text) => return Err(text),
        })
    }
}

impl From<&gos_store::Error> for RemoteError {
    fn from(e: &gos_store::Error) -> Self {
        use gos_store::Error as E;
        match e {
            E::InvalidKey(k) => RemoteError::InvalidKey(k.into()),
            E::TooLarge { size, max } => RemoteError::TooLarge {
                size: *size,
                max: *max,
            },
            E::StoreFull {
                requested,
                available,
            } => RemoteError::StoreFull {
                requested: *requested,
                available: *available,
            },
            E::TooManyEntries { max } => RemoteError::TooManyEntries { max: *max },
            E::AlreadyExists { key } => RemoteError::AlreadyExists { key: key.clone() },
            E::Timeout { operation, after } => RemoteError::Timeout {
                operation: (*operation).to_owned(),
                after_ms: after.as_millis().try_into().unwrap_or(u64::MAX),
            },
            E::Corrupted(m) => RemoteError::Corrupted(m.clone()),
            E::Unavailable(m) => RemoteError::Unavailable(m.clone()),
            E::Backend { backend, source } => RemoteError::Backend {
                backend: (*backend).to_owned(),
                message: source.to_string(),
            },
            other => RemoteError::Backend {
                backend: "gateway".to_owned(),
                message: other.to_string(),
            },
        }
    }
}

impl From<RemoteError> for gos_store::Error {
    /// The typed store errors come back as the same variants; the gateway's own refusals
    /// become [`gos_store::Error::Backend`] errors of the `"remote"` backend.
    fn from(e: RemoteError) -> Self {
        use gos_store::Error as E;
        match e {
            RemoteError::InvalidKey(k) => match KeyError::try_from(k) {
                Ok(k) => E::InvalidKey(k),
                Err(text) => E::backend("remote", format!("invalid key: {text}")),
            },
            RemoteError::TooLarge { size, max } => E::TooLarge { size, max },
            RemoteError::StoreFull {
                requested,
                available,
            } => E::StoreFull {
                requested,
                available,
            },
            RemoteError::TooManyEntries { max } => E::TooManyEntries { max },
            RemoteError::AlreadyExists { key } => E::AlreadyExists { key },
            RemoteError::Timeout { after_ms, .. } => E::Timeout {
                operation: "remote store operation",
                after: std::time::Duration::from_millis(after_ms),
            },
            RemoteError::Corrupted(m) => E::Corrupted(m),
            RemoteError::Unavailable(m) => E::Unavailable(m),
            other @ (RemoteError::Backend { .. }
            | RemoteError::BadFrame(_)
            | RemoteError::Refused(_)
            | RemoteError::Delivery(_)
            | RemoteError::Busy(_)) => E::backend("remote", other),
        }
    }
}

/// Encodes one frame (prefix and header) into a new buffer.
pub fn encode<T: Serialize>(kind: FrameKind, header: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; PREFIX_LEN];
    let mut out = postcard::to_extend(header, std::mem::take(&mut out))
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(out.len() - PREFIX_LEN)
        .map_err(|_| FrameError::Malformed("header longer than 4 GiB".into()))?;
    out[..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    out[3] = kind as u8;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Checks a frame prefix: magic, version, the expected kind, and the header length against
/// `max_header`. Returns the header length.
pub fn decode_prefix(
    prefix: &[u8; PREFIX_LEN],
    expected: FrameKind,
    max_header: u32,
) -> Result<u32, FrameError> {
    let magic = [prefix[0], prefix[1]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if prefix[2] != VERSION {
        return Err(FrameError::UnsupportedVersion(prefix[2]));
    }
    if prefix[3] != expected as u8 {
        return Err(FrameError::UnexpectedKind(prefix[3]));
    }
    let len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if len > max_header {
        return Err(FrameError::HeaderTooLarge {
            len,
            max: max_header,
        });
    }
    Ok(len)
}

/// Decodes a header from exactly `bytes` (no bytes may be left over).
pub fn decode_header<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes left over after the header",
            rest.len()
        )));
    }
    Ok(value)
}

/// Decodes a whole frame of `kind` from the start of `buf`: returns the header and the number
/// of bytes it took. What a gateway does with the bytes of a stream, minus the I/O; the fuzz
/// target drives it with arbitrary bytes.
pub fn decode<T: DeserializeOwned>(
    buf: &[u8],
    kind: FrameKind,
    max_header: u32,
) -> Result<(T, usize), FrameError> {
    let prefix: &[u8; PREFIX_LEN] = buf
        .get(..PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(FrameError::Truncated(buf.len()))?;
    let len = decode_prefix(prefix, kind, max_header)? as usize;
    let end = PREFIX_LEN + len;
    let header = buf
        .get(PREFIX_LEN..end)
        .ok_or(FrameError::Truncated(buf.len()))?;
    Ok((decode_header(header)?, end))
}

/// The checksum of an object: CRC-32 (IEEE), computed incrementally.
#[derive(Debug, Default, Clone)]
pub struct Checksum(crc32fast::Hasher);

impl Checksum {
    /// A fresh checksum.
    pub fn new() -> Self {
        Checksum::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The trailer to send: the CRC-32, little-endian.
    pub fn trailer(self) -> [u8; CHECKSUM_LEN] {
        self.0.finalize().to_le_bytes()
    }

    /// True when `trailer` is this checksum's trailer.
    pub fn matches(self, trailer: [u8; CHECKSUM_LEN]) -> bool {
        self.trailer() == trailer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = 64 << 10;

    fn put(len: u64) -> Request {
        Request::Put {
            key: ObjectKey::new("fed/node_1/round_2").unwrap(),
            mode: PutMode::Create,
            len,
        }
    }

    #[test]
    fn frames_round_trip() {
        for req in [
            Request::Ping,
            Request::Len,
            put(1 << 30),
            Request::KeysWithPrefix {
                prefix: KeyPrefix::root(),
            },
        ] {
            let bytes = encode(FrameKind::Request, &req).unwrap();
            let (back, used): (Request, _) = decode(&bytes, FrameKind::Request, MAX).unwrap();
            assert_eq!((back, used), (req, bytes.len()));
        }
        let resp = Response::Err(RemoteError::AlreadyExists {
            key: ObjectKey::new("a/b").unwrap(),
        });
        let bytes = encode(FrameKind::Response, &resp).unwrap();
        let (back, _): (Response, _) = decode(&bytes, FrameKind::Response, MAX).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn bad_prefixes_are_refused_before_the_header_is_read() {
        let mut bytes = encode(FrameKind::Request, &put(7)).unwrap();
        let ok = bytes.clone();
        bytes[0] = b'X';
        assert!(matches!(
            decode::<Request>(&bytes, FrameKind::Request, MAX),
            Err(FrameError::BadMagic(_))
        ));
        let mut bytes = ok.clone();
        bytes[2] = 9;
        assert_eq!(
            decode::<Request>(&bytes, FrameKind::Request, MAX).unwrap_err(),
            FrameError::UnsupportedVersion(9)
        );
        assert_eq!(
            decode::<Request>(&ok, FrameKind::Response, MAX).unwrap_err(),
            FrameError::UnexpectedKind(1)
        );
        let mut bytes = ok.clone();
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Request>(&bytes, FrameKind::Request, MAX),
            Err(FrameError::HeaderTooLarge { .. })
        ));
        assert!(matches!(
            decode::<Request>(&ok[..ok.len() - 1], FrameKind::Request, MAX),
            Err(FrameError::Truncated(_))
        ));
        // An invalid key inside a well-formed frame is malformed: keys are validated on decode.
        let mut bytes = ok;
        let at = bytes.windows(4).position(|w| w == b"fed/").unwrap();
        bytes[at + 3] = b'\n';
        assert!(matches!(
            decode::<Request>(&bytes, FrameKind::Request, MAX),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn store_errors_come_back_as_the_same_variants() {
        let key = ObjectKey::new("a/b").unwrap();
        let cases = [
            gos_store::Error::TooLarge { size: 5, max: 4 },
            gos_store::Error::StoreFull {
                requested: 5,
                available: 1,
            },
            gos_store::Error::TooManyEntries { max: 3 },
            gos_store::Error::AlreadyExists { key: key.clone() },
            gos_store::Error::InvalidKey(KeyError::EmptySegment { position: 2 }),
            gos_store::Error::Corrupted("x".into()),
            gos_store::Error::Unavailable("y".into()),
        ];
        for e in cases {
            let wire = RemoteError::from(&e);
            let bytes = encode(FrameKind::Response, &Response::Err(wire)).unwrap();
            let (Response::Err(back), _) = decode(&bytes, FrameKind::Response, MAX).unwrap() else {
                panic!("not an error")
            };
            let back = gos_store::Error::from(back);
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e}"
            );
        }
    }

    #[test]
    fn checksum_detects_a_flipped_bit() {
        let mut a = Checksum::new();
        a.update(b"hello ");
        a.update(b"world");
        let trailer = a.clone().trailer();
        let mut b = Checksum::new();
        b.update(b"hello world");
        assert!(b.matches(trailer));
        let mut c = Checksum::new();
        c.update(b"hello worle");
        assert!(!c.matches(trailer));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the decoder, and a length field never makes it allocate
        /// more than the bytes it was given.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Request>(&bytes, FrameKind::Request, MAX);
            let _ = decode::<Response>(&bytes, FrameKind::Response, MAX);
        }

        /// The same with a valid prefix, so that the postcard decoder sees arbitrary headers.
        #[test]
        fn arbitrary_headers_never_panic(kind in 1u8..=2, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = vec![b'G', b'I', VERSION, kind];
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = decode::<Request>(&bytes, FrameKind::Request, MAX);
            let _ = decode::<Response>(&bytes, FrameKind::Response, MAX);
        }

        /// Flipping any byte of a valid frame gives an error or a frame, never a panic.
        #[test]
        fn mutated_frames_never_panic(len: u64, at in 0usize..64, to: u8) {
            let mut bytes = encode(FrameKind::Request, &put(len)).unwrap();
            let at = at % bytes.len();
            bytes[at] = to;
            let _ = decode::<Request>(&bytes, FrameKind::Request, MAX);
        }
    }
}
