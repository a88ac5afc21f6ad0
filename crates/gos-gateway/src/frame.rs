//! The ICRF wire format: a fixed 8-byte prefix, a postcard header, then raw object bytes and
//! their digest.
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
//! | object: exactly `len` raw bytes  | digest: XXH3-128, 16 bytes LE  |
//! +----------------------------------+--------------------------------+
//! ```
//!
//! The prefix is fixed so that a receiver learns the version and the header length from 8
//! bytes, refuses an unknown version or an oversized header before reading or allocating
//! anything more, and knows exactly how many bytes to read next. The header is postcard: typed
//! (serde), compact, and decoding from a bounded slice can never allocate more than the slice
//! holds. The object is not inside the header so that it can be streamed in chunks straight
//! into the receiving store's reservation, and its length (in the header) is checked against
//! the limits before a single payload byte is read.
//!
//! The trailer is the object's [`Digest`](gos_store::Digest), the one the sending store keeps
//! beside the value (a gateway answering a get forwards it without reading the value again).
//! The receiver hashes the bytes as they land in its reservation, refuses the object when the
//! two differ (nothing is committed) and otherwise commits the digest with it.

use std::time::Duration;

use gos_store::{
    KeyPrefix, Limits, ObjectKey, PutMode, PutOptions, Readers, ReleaseOutcome, StoreStats,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"GI";
/// The frame format version this build speaks (4: a put names its transfer, which a
/// [`Request::Resume`] continues after a cut; since 3 the object trailer is its 16-byte digest,
/// and [`WireMeta`] carries it).
pub const VERSION: u8 = 4;
/// Length of the fixed prefix, in bytes.
pub const PREFIX_LEN: usize = 8;
/// Length of the digest trailer after an object, in bytes.
pub const CHECKSUM_LEN: usize = gos_store::Digest::LEN;

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
    /// Store an object of `len` bytes with `options`. The gateway reserves the space in its
    /// store first and answers [`Reply::Admitted`] (or an error) before it reads the object;
    /// the object (with its checksum) follows the header, and a final [`Reply::Done`] answers
    /// the commit. A client may send the object at once (a put) or later (a reservation).
    Put {
        /// Where to store it.
        key: ObjectKey,
        /// Mode, readers and lease.
        options: WireOptions,
        /// The object's length in bytes.
        len: u64,
        /// A `reserve` (the object comes at commit), not a put: the store's reservation rule
        /// applies (the full length is charged; an overwritten value is freed only at
        /// commit), so the gateway does not fall back to a buffer when only the old value's
        /// space would make room.
        reservation: bool,
        /// Names this transfer so that a [`Request::Resume`] can continue it after a cut
        /// (`None`: not resumable, a cut frees the reservation at once).
        transfer: Option<TransferId>,
    },
    /// Continue the put `transfer` after its connection was cut: answered with
    /// [`Reply::Resume`]. When the gateway still holds the transfer's reservation (a cut
    /// less than its resume grace period ago, or a connection it has not noticed dead yet),
    /// it answers [`ResumePoint::From`] with how many bytes it holds, and the client sends
    /// the object from there, then the whole object's digest; a final [`Reply::Done`] answers
    /// the commit.
    Resume {
        /// The transfer, as its put named it.
        transfer: TransferId,
        /// The put's key (checked against the transfer's).
        key: ObjectKey,
        /// The put's length (checked against the transfer's).
        len: u64,
    },
    /// Fetch an object; answered with [`Reply::Object`] and the object.
    Get {
        /// Which one.
        key: ObjectKey,
    },
    /// An object's size, readers left and lease left; answered with [`Reply::Meta`].
    Head {
        /// Which one.
        key: ObjectKey,
    },
    /// Delete an object; answered with [`Reply::Bool`].
    Delete {
        /// Which one.
        key: ObjectKey,
    },
    /// One reader is done with an object; answered with [`Reply::Released`].
    Release {
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
    /// Round retention: delete a federation's rounds before `round`; answered with
    /// [`Reply::Count`].
    DeleteRoundsBefore {
        /// The federation (one key segment).
        fed_id: String,
        /// The first round kept.
        round: u64,
    },
    /// Remove expired objects; answered with [`Reply::Count`].
    Sweep,
    /// The number of keys; answered with [`Reply::Count`].
    Len,
    /// The store's occupancy; answered with [`Reply::Stats`].
    Stats,
    /// Deliver a message to nodes of the receiving cluster, with an optional object that
    /// follows the header and is stored under `object.key` (with one reader per target node
    /// the receiver accepts) before the message is delivered.
    Deliver(Box<Delivery>),
}

/// Names one put's transfer, so that it can be resumed after a cut. Chosen by the client,
/// unique among its identity's transfers (a gateway keys transfers by identity and id, so
/// another identity can never continue one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferId(pub u128);

impl TransferId {
    /// A fresh id: 64 bits drawn once per process from the OS's randomness (through std's
    /// hasher keys), then a counter, so ids never repeat within a process and collide across
    /// processes only by chance.
    pub fn fresh() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static PROCESS: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let process = *PROCESS.get_or_init(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        });
        TransferId(u128::from(process) << 64 | u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Where a resumed transfer goes on: the answer to [`Request::Resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResumePoint {
    /// The gateway holds the first `n` bytes: send the object from byte `n`, then the whole
    /// object's digest.
    From(u64),
    /// The transfer was committed already (its answer was lost with the connection).
    Committed,
    /// No such transfer: never admitted, failed for another reason than a cut, or cut longer
    /// ago than the gateway's resume grace period (its reservation was freed). Nothing of it
    /// is in the store; the client may put the object again.
    Unknown,
}

/// A put's options on the wire. The lease is a duration relative to the put: the receiving
/// store computes the deadline with its own clock, so the two hosts' clocks need not agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOptions {
    /// Overwrite or create.
    pub mode: PutMode,
    /// How many releases delete the object.
    pub readers: Readers,
    /// How long after the put the store removes it by itself.
    pub lease: Option<Duration>,
}

impl From<&PutOptions> for WireOptions {
    fn from(o: &PutOptions) -> Self {
        WireOptions {
            mode: o.mode,
            readers: o.readers,
            lease: o.lease,
        }
    }
}

impl From<WireOptions> for PutOptions {
    fn from(o: WireOptions) -> Self {
        PutOptions::new()
            .mode(o.mode)
            .with_readers(o.readers)
            .with_lease(o.lease)
    }
}

/// A message for nodes of the receiving cluster, and the object that travels with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The target nodes, in the receiving cluster (each gets the message once).
    pub to: Vec<u32>,
    /// The message, as the topology routes it (key only).
    pub message: gos_topology::Message,
    /// The object that travels with it, if any.
    pub object: Option<ObjectHeader>,
}

/// An object announced by a header: its key, length and lease; the bytes follow the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeader {
    /// The key to store it under.
    pub key: ObjectKey,
    /// Its length in bytes.
    pub len: u64,
    /// What is left of its lease at the sender (relative: the receiver's clock applies it).
    pub lease: Option<Duration>,
    /// Names the object's transfer so that a [`Request::Resume`] can continue it after a cut
    /// (the final answer is then the delivery's).
    pub transfer: Option<TransferId>,
}

/// A response, the header of the frame that answers a request.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// The request succeeded (or, for [`Reply::Admitted`], may go on).
    Ok(Reply),
    /// The request failed: the store's (or the gateway's) error, as the one
    /// [`gos_store::Error`] type.
    Err(gos_store::Error),
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
    /// The answer to a head: `None` when the key is missing.
    Meta(Option<WireMeta>),
    /// What a release did.
    Released(ReleaseOutcome),
    /// A put's space is reserved in the store: send the object. A second response frame
    /// answers the commit.
    Admitted,
    /// What a delivery did, per target node.
    Delivered(Vec<(u32, TargetOutcome)>),
    /// Where a resumed transfer goes on.
    Resume(ResumePoint),
}

/// [`ObjectMeta`](gos_store::ObjectMeta) on the wire: the lease is what is left of it, relative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMeta {
    /// Size of the value, in bytes.
    pub size: u64,
    /// Releases still expected.
    pub readers: Readers,
    /// Time left before the store removes it, if it has a lease.
    pub expires_in: Option<Duration>,
    /// The value's digest, as the store keeps it.
    pub digest: Option<gos_store::Digest>,
}

/// What a delivery did for one target node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetOutcome {
    /// The message is in the node's mailbox.
    Delivered,
    /// A retry: this message id had already been delivered to the node; nothing was done.
    Duplicate,
    /// Not delivered. The receiving gateway released the object on the node's behalf (or
    /// never stored it), so the sender has nothing to clean up in the receiving cluster.
    Failed(String),
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

/// The trailer of an object, computed incrementally: its [`Digest`](gos_store::Digest).
#[derive(Debug, Default, Clone)]
pub struct Checksum(gos_store::DigestHasher);

impl Checksum {
    /// A fresh checksum.
    pub fn new() -> Self {
        Checksum::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of the bytes added so far.
    pub fn digest(&self) -> gos_store::Digest {
        self.0.finish()
    }

    /// The trailer to send: the digest, little-endian.
    pub fn trailer(self) -> [u8; CHECKSUM_LEN] {
        self.digest().to_bytes()
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
            options: WireOptions::from(
                &PutOptions::create()
                    .readers(3)
                    .lease(Duration::from_millis(1500)),
            ),
            len,
            reservation: false,
            transfer: None,
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
            Request::Release {
                key: ObjectKey::new("a/b").unwrap(),
            },
            Request::DeleteRoundsBefore {
                fed_id: "fed".into(),
                round: 7,
            },
            Request::Sweep,
        ] {
            let bytes = encode(FrameKind::Request, &req).unwrap();
            let (back, used): (Request, _) = decode(&bytes, FrameKind::Request, MAX).unwrap();
            assert_eq!((back, used), (req, bytes.len()));
        }
        let reply = Reply::Meta(Some(WireMeta {
            size: 9,
            readers: Readers::exactly(2).unwrap(),
            expires_in: Some(Duration::from_nanos(1_000_000_007)),
            digest: Some(gos_store::Digest::of(b"123456789")),
        }));
        let bytes = encode(FrameKind::Response, &Response::Ok(reply.clone())).unwrap();
        let (back, _): (Response, _) = decode(&bytes, FrameKind::Response, MAX).unwrap();
        assert!(matches!(back, Response::Ok(r) if r == reply));
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
            gos_store::Error::InvalidKey(gos_store::KeyError::EmptySegment { position: 2 }),
            gos_store::Error::Corrupted("x".into()),
            gos_store::Error::Unavailable("y".into()),
            gos_store::Error::Busy("too many connections from `a`".into()),
            gos_store::Error::PermissionDenied("read-only".into()),
            gos_store::Error::InvalidArgument("fed id".into()),
        ];
        for e in cases {
            let text = e.to_string();
            let discriminant = std::mem::discriminant(&e);
            let bytes = encode(FrameKind::Response, &Response::Err(e)).unwrap();
            let (Response::Err(back), _) = decode(&bytes, FrameKind::Response, MAX).unwrap() else {
                panic!("not an error")
            };
            assert_eq!(back.to_string(), text);
            assert_eq!(std::mem::discriminant(&back), discriminant, "{text}");
        }
    }

    #[test]
    fn a_zero_reader_count_does_not_decode() {
        // Readers::Exactly holds a NonZeroU32: a garbled count of zero is a malformed frame,
        // never an object that the first release deletes.
        let bytes = encode(FrameKind::Request, &put(7)).unwrap();
        let (Request::Put { options, .. }, _) =
            decode::<Request>(&bytes, FrameKind::Request, MAX).unwrap()
        else {
            panic!("a put")
        };
        assert_eq!(options.readers.count(), Some(3));
        let three = bytes.iter().rposition(|b| *b == 3).unwrap();
        let mut garbled = bytes.clone();
        garbled[three] = 0;
        assert!(matches!(
            decode::<Request>(&garbled, FrameKind::Request, MAX),
            Err(FrameError::Malformed(_))
        ));
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
