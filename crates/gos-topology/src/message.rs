//! `Message`, what travels on the bus: a small body (usually an `ObjectKey`) and its envelope.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gos_store::ObjectKey;
use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// A message id, unique per message: receivers and gateways deduplicate retries by it.
///
/// [`MessageId::random`] puts a per-process random number in the high 64 bits and a process-wide
/// counter in the low 64 bits, so ids never repeat within a process and almost surely not
/// across processes. [`MessageId::from_parts`] derives a deterministic id from a sender and its
/// own sequence number. Displays as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub u128);

impl MessageId {
    /// A fresh id, unique within this process.
    pub fn random() -> Self {
        static PROCESS: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let high = *PROCESS.get_or_init(rand::random::<u64>);
        let low = COUNTER.fetch_add(1, Ordering::Relaxed);
        MessageId((u128::from(high) << 64) | u128::from(low))
    }

    /// A deterministic id from a sender and the sender's own sequence number.
    pub fn from_parts(sender: NodeId, seq: u64) -> Self {
        MessageId((u128::from(sender.0) << 64) | u128::from(seq))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MessageKind {
    /// The body is the key of a node's weights in the store.
    Weights,
    /// A control message (round start, acknowledgement, …); meaning in the headers.
    Control,
    /// Stop: the node should finish. Delivered ahead of queued messages by
    /// [`TopologyManager::stop`](crate::TopologyManager::stop).
    Stop,
    /// An application-defined kind.
    User(String),
}

impl MessageKind {
    /// A short name: `weights`, `control`, `stop`, or the user kind.
    pub fn name(&self) -> &str {
        match self {
            MessageKind::Weights => "weights",
            MessageKind::Control => "control",
            MessageKind::Stop => "stop",
            MessageKind::User(name) => name,
        }
    }
}

/// A message on the bus. The body is small (the manager refuses bodies over its limit, 64 KiB
/// by default): weights go through the object store and only their key travels here.
///
/// Serde support makes it cross a wire as is (the body serializes as bytes).
///
/// ```
/// use gos_store::ObjectKey;
/// use gos_topology::{Message, MessageKind, NodeId};
///
/// let key = ObjectKey::round("fed", "node_3", 5)?;
/// let msg = Message::key("fed", NodeId(3), 5, &key).with_header("loss", "0.25");
/// assert_eq!(msg.kind, MessageKind::Weights);
/// assert_eq!(msg.body_key(), Some(key));
/// assert!(msg.wire_size() < 128);
/// # Ok::<(), gos_store::KeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique id (for deduplication of retries).
    pub id: MessageId,
    /// The federation this message belongs to.
    pub fed_id: String,
    /// The node that sent it; [`TopologyManager::publish`](crate::TopologyManager::publish)
    /// routes from this node.
    pub sender: NodeId,
    /// What the message is for.
    pub kind: MessageKind,
    /// The training round.
    pub round: u64,
    /// Milliseconds since the Unix epoch when the message was made.
    pub timestamp_ms: u64,
    /// Application-defined headers.
    pub headers: BTreeMap<String, String>,
    /// The body: usually the bytes of an [`ObjectKey`].
    pub body: Bytes,
}

/// Per-message overhead counted by [`Message::wire_size`]: id (16), sender (4), round (8),
/// timestamp (8), kind tag (1), body length (4), fed id length (4), header count (4).
const FIXED_WIRE_SIZE: usize = 16 + 4 + 8 + 8 + 1 + 4 + 4 + 4;

impl Message {
    /// A message with a fresh id and the current time.
    pub fn new(fed_id: impl Into<String>, sender: NodeId, kind: MessageKind, round: u64) -> Self {
        Message {
            id: MessageId::random(),
            fed_id: fed_id.into(),
            sender,
            kind,
            round,
            timestamp_ms: now_ms(),
            headers: BTreeMap::new(),
            body: Bytes::new(),
        }
    }

    /// The seed's message: a `Weights` message whose body is `key`.
    pub fn key(fed_id: impl Into<String>, sender: NodeId, round: u64, key: &ObjectKey) -> Self {
        Message::new(fed_id, sender, MessageKind::Weights, round)
            .with_body(Bytes::copy_from_slice(key.as_str().as_bytes()))
    }

    /// A `Stop` message with an empty body.
    pub fn stop(fed_id: impl Into<String>, sender: NodeId, round: u64) -> Self {
        Message::new(fed_id, sender, MessageKind::Stop, round)
    }

    /// A `Control` message with an empty body.
    pub fn control(fed_id: impl Into<String>, sender: NodeId, round: u64) -> Self {
        Message::new(fed_id, sender, MessageKind::Control, round)
    }

    /// Replaces the body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds (or replaces) a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Replaces the id (for a retry, keep the original id).
    #[must_use]
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.id = id;
        self
    }

    /// Replaces the timestamp.
    #[must_use]
    pub fn with_timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// The body as an [`ObjectKey`], if it is one (valid UTF-8 and a valid key).
    pub fn body_key(&self) -> Option<ObjectKey> {
        std::str::from_utf8(&self.body)
            .ok()
            .and_then(|s| ObjectKey::new(s).ok())
    }

    /// True for a `Stop` message.
    pub fn is_stop(&self) -> bool {
        self.kind == MessageKind::Stop
    }

    /// The bytes this message is counted as on the bus: a fixed envelope of 49 bytes plus the
    /// fed id, the user kind name, each header name and value (with a 4-byte length each) and
    /// the body. Independent of any model size: a key-carrying message of a 100 MiB model
    /// weighs the same as one of a 1 KiB model.
    pub fn wire_size(&self) -> usize {
        let kind = match &self.kind {
            MessageKind::User(name) => 4 + name.len(),
            _ => 0,
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        FIXED_WIRE_SIZE + self.fed_id.len() + kind + headers + self.body.len()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_messages_carry_the_key_and_round_trip_through_serde() {
        let key = ObjectKey::round("fed", "node_2", 9).unwrap();
        let msg = Message::key("fed", NodeId(2), 9, &key).with_header("a", "b");
        assert_eq!(msg.body_key(), Some(key.clone()));
        assert_eq!(msg.body.as_ref(), key.as_str().as_bytes());
        let json = serde_json::to_string(&msg).unwrap();
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, msg);
        assert_eq!(
            msg.wire_size(),
            FIXED_WIRE_SIZE + 3 + (8 + 2) + key.as_str().len()
        );
    }

    #[test]
    fn ids_are_unique_and_display_as_hex() {
        let a = MessageId::random();
        let b = MessageId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(
            MessageId::from_parts(NodeId(1), 2).to_string(),
            "00000000000000010000000000000002"
        );
    }

    #[test]
    fn non_key_bodies_are_not_keys() {
        let msg = Message::control("f", NodeId(0), 0).with_body(&b"a//b"[..]);
        assert_eq!(msg.body_key(), None);
        assert!(Message::stop("f", NodeId(0), 1).is_stop());
    }
}
