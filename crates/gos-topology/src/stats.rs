//! Routing counters: messages and bytes routed, per node and in total.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Totals over every node, since the manager was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingStats {
    /// Message copies put into a mailbox (a publish to 3 neighbours counts 3), stops included.
    pub messages: u64,
    /// Bytes of those copies, by [`Message::wire_size`](crate::Message::wire_size).
    pub bytes: u64,
    /// Stop messages delivered.
    pub stops: u64,
    /// Target deliveries that failed (timeout, target not registered or closed); each one was
    /// reported to the caller.
    pub failed: u64,
    /// Publishes refused before any delivery (not a neighbour, unknown node, body too large).
    pub refused: u64,
}

/// One node's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Message copies this node sent that reached a mailbox.
    pub sent_messages: u64,
    /// Bytes of those copies.
    pub sent_bytes: u64,
    /// Messages put into this node's mailbox (from publish, deliver or stop).
    pub received_messages: u64,
    /// Bytes of those messages.
    pub received_bytes: u64,
    /// Deliveries to this node that failed.
    pub failed_deliveries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    stops: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    pub(crate) fn delivered(&self, bytes: usize, stop: bool) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if stop {
            self.stops.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RoutingStats {
        RoutingStats {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            stops: self.stops.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    sent_messages: AtomicU64,
    sent_bytes: AtomicU64,
    received_messages: AtomicU64,
    received_bytes: AtomicU64,
    failed_deliveries: AtomicU64,
}

impl NodeCounters {
    pub(crate) fn sent(&self, bytes: usize) {
        self.sent_messages.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.received_messages.fetch_add(1, Ordering::Relaxed);
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed_deliveries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NodeStats {
        NodeStats {
            sent_messages: self.sent_messages.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received_messages: self.received_messages.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            failed_deliveries: self.failed_deliveries.load(Ordering::Relaxed),
        }
    }
}
