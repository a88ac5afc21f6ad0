//! The receiver's window of recently delivered message ids: a retried delivery is recognised
//! and answered without reaching the mailbox a second time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

/// (sending cluster, message id, target node): one message published to several nodes of a
/// cluster is one delivery per node.
type Id = (Arc<str>, u128, u32);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// A delivery with this id is under way.
    InFlight,
    /// Done: delivered (`Ok`) or failed for good (the object released on the node's behalf).
    Done(Result<(), String>),
}

/// Message ids by sending cluster: ids in flight, and the last `capacity` delivered.
///
/// Ids are scoped by the peer's cluster id (from its certificate), so one cluster cannot
/// suppress another's messages by reusing their ids.
#[derive(Debug)]
pub(crate) struct Dedup {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<Id, Slot>,
    /// Finished ids, oldest first; evicted past `capacity`.
    delivered: VecDeque<Id>,
}

/// The outcome of [`Dedup::claim`].
#[derive(Debug)]
pub(crate) enum Claim<'a> {
    /// First time seen: deliver it, then call [`ClaimGuard::finish`]. Dropping the guard
    /// without that releases the id, so that a retry can try again.
    New(ClaimGuard<'a>),
    /// Already done (a retry): how it ended.
    Done(Result<(), String>),
    /// Being delivered right now by another stream.
    InFlight,
}

/// An id claimed for delivery.
#[derive(Debug)]
pub(crate) struct ClaimGuard<'a> {
    dedup: &'a Dedup,
    id: Option<Id>,
}

impl Dedup {
    /// A window remembering `capacity` delivered ids (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Dedup {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation below is a single map or queue call: a panic cannot tear the state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims message `id` from cluster `peer` for node `to`.
    pub(crate) fn claim(&self, peer: &Arc<str>, id: u128, to: u32) -> Claim<'_> {
        let key = (peer.clone(), id, to);
        let mut state = self.state();
        match state.slots.get(&key) {
            Some(Slot::Done(outcome)) => Claim::Done(outcome.clone()),
            Some(Slot::InFlight) => Claim::InFlight,
            None => {
                state.slots.insert(key.clone(), Slot::InFlight);
                Claim::New(ClaimGuard {
                    dedup: self,
                    id: Some(key),
                })
            }
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.state().delivered.len()
    }
}

impl ClaimGuard<'_> {
    /// Records how the delivery ended: later claims of the id are [`Claim::Done`] with it.
    pub(crate) fn finish(mut self, outcome: Result<(), String>) {
        let Some(id) = self.id.take() else { return };
        let mut state = self.dedup.state();
        state.slots.insert(id.clone(), Slot::Done(outcome));
        state.delivered.push_back(id);
        while state.delivered.len() > self.dedup.capacity {
            if let Some(old) = state.delivered.pop_front() {
                state.slots.remove(&old);
            }
        }
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.dedup.state().slots.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_id_is_a_duplicate_until_it_leaves_the_window() {
        let dedup = Dedup::new(2);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let Claim::New(guard) = dedup.claim(&a, 1, 0) else {
            panic!("new")
        };
        assert!(matches!(dedup.claim(&a, 1, 0), Claim::InFlight));
        // Another cluster's id space is its own, and so is another target node's.
        assert!(matches!(dedup.claim(&b, 1, 0), Claim::New(_)));
        assert!(matches!(dedup.claim(&a, 1, 1), Claim::New(_)));
        guard.finish(Ok(()));
        assert!(matches!(dedup.claim(&a, 1, 0), Claim::Done(Ok(()))));
        for id in 2..=3 {
            let Claim::New(g) = dedup.claim(&a, id, 0) else {
                panic!("new")
            };
            g.finish(Err("mailbox full".into()));
        }
        assert!(matches!(dedup.claim(&a, 3, 0), Claim::Done(Err(e)) if e == "mailbox full"));
        assert_eq!(dedup.remembered(), 2);
        assert!(matches!(dedup.claim(&a, 1, 0), Claim::New(_)), "evicted");
    }

    #[test]
    fn a_failed_delivery_releases_its_id() {
        let dedup = Dedup::new(8);
        let a: Arc<str> = Arc::from("a");
        drop(dedup.claim(&a, 7, 0));
        assert!(matches!(dedup.claim(&a, 7, 0), Claim::New(_)));
    }
}
