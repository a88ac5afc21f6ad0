//! The gateway's table of resumable transfers: puts being received (or cut and waiting for
//! their client to come back), and puts committed recently, keyed by the sending identity and
//! the transfer's id. See docs/icrf.md, "Resume after a cut".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gos_store::{Error, ObjectKey};
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::frame::TransferId;

/// A resume's new streams, handed to the task that holds the transfer's reservation.
pub(crate) type Streams = (SendStream, RecvStream);

/// Most committed transfers remembered (to answer a resume whose commit answer was lost).
const MAX_COMMITTED: usize = 4096;

type Id = (Arc<str>, TransferId);

/// Transfers in progress and recently committed.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    live: Mutex<HashMap<Id, Live>>,
    /// Until when each committed transfer is remembered (its commit plus the grace period);
    /// at most [`MAX_COMMITTED`] of them.
    committed: Mutex<HashMap<Id, Instant>>,
}

#[derive(Debug)]
struct Live {
    key: ObjectKey,
    len: u64,
    resume: mpsc::Sender<Streams>,
}

/// What the table knows of a transfer a client asks to resume.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Being received, or cut and within its grace period: hand it the new streams.
    Live(mpsc::Sender<Streams>),
    /// Committed recently.
    Committed,
    /// Unknown: never admitted, failed, or its grace period is over.
    Unknown,
}

/// A transfer registered as live; dropping it removes it from the table.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    transfers: &'a Transfers,
    id: Id,
    /// Resumes of this transfer arrive here.
    pub(crate) resumes: mpsc::Receiver<Streams>,
}

impl Transfers {
    /// Registers a transfer being received. An id already live for this identity is refused
    /// (a client never reuses one).
    pub(crate) fn register(
        &self,
        peer: &Arc<str>,
        transfer: TransferId,
        key: &ObjectKey,
        len: u64,
    ) -> Result<Registration<'_>, Error> {
        let id = (peer.clone(), transfer);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.contains_key(&id) {
            return Err(Error::InvalidArgument(format!(
                "transfer {transfer} is already in progress"
            )));
        }
        let (tx, rx) = mpsc::channel(1);
        live.insert(
            id.clone(),
            Live {
                key: key.clone(),
                len,
                resume: tx,
            },
        );
        Ok(Registration {
            transfers: self,
            id,
            resumes: rx,
        })
    }

    /// What a resume of `transfer` from `peer` finds. The key and length must be the put's.
    pub(crate) fn lookup(
        &self,
        peer: &Arc<str>,
        transfer: TransferId,
        key: &ObjectKey,
        len: u64,
    ) -> Result<Lookup, Error> {
        let id = (peer.clone(), transfer);
        if let Some(live) = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            if &live.key != key || live.len != len {
                return Err(Error::InvalidArgument(format!(
                    "transfer {transfer} is a put of {} bytes to `{}`, not of {len} bytes to `{key}`",
                    live.len, live.key
                )));
            }
            return Ok(Lookup::Live(live.resume.clone()));
        }
        Ok(if self.was_committed(peer, transfer) {
            Lookup::Committed
        } else {
            Lookup::Unknown
        })
    }
}

impl Transfers {
    /// Whether `peer`'s `transfer` was committed within its remembered time.
    pub(crate) fn was_committed(&self, peer: &Arc<str>, transfer: TransferId) -> bool {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(peer.clone(), transfer))
            .is_some_and(|until| *until > Instant::now())
    }
}

impl Registration<'_> {
    /// The transfer was committed: a resume arriving within `remember` of now is answered
    /// [`Lookup::Committed`].
    pub(crate) fn committed(&self, remember: Duration) {
        let now = Instant::now();
        let mut committed = self
            .transfers
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if committed.len() >= MAX_COMMITTED {
            committed.retain(|_, until| *until > now);
        }
        if committed.len() >= MAX_COMMITTED
            && let Some(oldest) = committed
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone())
        {
            committed.remove(&oldest);
        }
        committed.insert(self.id.clone(), now + remember);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.transfers
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::new(s).unwrap()
    }

    #[test]
    fn a_live_transfer_is_found_only_by_its_identity_key_and_length() {
        let t = Transfers::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let id = TransferId(7);
        let reg = t.register(&a, id, &key("k"), 10).unwrap();
        assert!(matches!(
            t.lookup(&a, id, &key("k"), 10).unwrap(),
            Lookup::Live(_)
        ));
        // Another identity cannot continue it.
        assert!(matches!(
            t.lookup(&b, id, &key("k"), 10).unwrap(),
            Lookup::Unknown
        ));
        assert!(matches!(
            t.lookup(&a, id, &key("other"), 10),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            t.lookup(&a, id, &key("k"), 11),
            Err(Error::InvalidArgument(_))
        ));
        // An id in use is refused.
        assert!(t.register(&a, id, &key("k"), 10).is_err());
        drop(reg);
        assert!(matches!(
            t.lookup(&a, id, &key("k"), 10).unwrap(),
            Lookup::Unknown
        ));
    }

    #[test]
    fn a_committed_transfer_is_remembered_within_bounds() {
        let t = Transfers::default();
        let a: Arc<str> = Arc::from("a");
        let reg = t.register(&a, TransferId(1), &key("k"), 1).unwrap();
        reg.committed(Duration::from_secs(60));
        drop(reg);
        assert!(matches!(
            t.lookup(&a, TransferId(1), &key("k"), 1).unwrap(),
            Lookup::Committed
        ));
        for i in 2..(MAX_COMMITTED as u128 + 10) {
            let reg = t.register(&a, TransferId(i), &key("k"), 1).unwrap();
            reg.committed(Duration::from_secs(60));
        }
        let len = t.committed.lock().unwrap().len();
        assert!(len <= MAX_COMMITTED, "{len}");
        // The oldest went first.
        assert!(matches!(
            t.lookup(&a, TransferId(1), &key("k"), 1).unwrap(),
            Lookup::Unknown
        ));
    }
}
