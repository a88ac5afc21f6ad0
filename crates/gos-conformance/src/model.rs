//! The reference model: what a store must hold and answer after any sequence of operations,
//! as plain data and rules (no store, no runtime). [`crate::machine`] drives it beside a real
//! store.
//!
//! It is also where each rule the trait docs settle is written down once, for every backend:
//! - a put is refused with [`Error::StoreFull`] when the store's committed bytes, minus the
//!   old value of the key, plus the new value, plus every live reservation, would pass the
//!   capacity; `requested` is the new value's full size and `available` is
//!   `capacity - bytes - reserved + old value's size`;
//! - a reservation is refused when its full length passes `capacity - bytes - reserved`
//!   (an overwrite's old value is not counted as free: it is freed at commit); while it lives
//!   it shows in `stats().reserved`, never in `stats().bytes`, and holds no entry;
//! - a commit can only fail with `AlreadyExists` or `TooManyEntries`; the lease of a
//!   committed object runs from the commit;
//! - an object expires when the clock reaches its deadline (`now >= put time + lease`), and
//!   is then gone for every operation, its room free for the next admission;
//! - an overwrite replaces the value, the reader count and the lease together;
//! - a release of an object without a count changes nothing ([`ReleaseOutcome::Unbounded`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use gos_store::{
    Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, PutMode, PutOptions, Readers, ReleaseOutcome,
};

/// Tight limits: small enough that generated sequences hit every limit error.
pub const TIGHT: Limits = Limits {
    max_value_size: 96,
    capacity_bytes: 256,
    max_entries: 5,
};

/// Roomy limits: generated sequences never hit them.
pub const ROOMY: Limits = Limits {
    max_value_size: 1 << 16,
    capacity_bytes: 1 << 22,
    max_entries: 1 << 10,
};

/// Where the suite's manual clocks start: a fixed, whole-millisecond instant, so that
/// deadlines compare exactly even in backends that keep them in milliseconds.
pub const CLOCK_START: Duration = Duration::from_secs(1_700_000_000);

/// One object of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The value.
    pub value: Vec<u8>,
    /// Releases still expected.
    pub readers: Readers,
    /// The deadline, as time since [`CLOCK_START`].
    pub expires_at: Option<Duration>,
}

/// An open reservation of the model.
#[derive(Debug, Clone)]
pub struct OpenReservation {
    /// The key it commits under.
    pub key: ObjectKey,
    /// What will be written into it.
    pub value: Vec<u8>,
    /// The options given at reserve.
    pub options: PutOptions,
}

/// The reference model of one store.
#[derive(Debug, Clone)]
pub struct Model {
    /// The limits the store under test was created with.
    pub limits: Limits,
    /// The live objects.
    pub map: BTreeMap<ObjectKey, Object>,
    /// The manual clock, as time since [`CLOCK_START`].
    pub now: Duration,
    /// Reservations reserved and not yet committed or dropped, oldest first.
    pub open: Vec<OpenReservation>,
    /// Keys whose object expired and that no operation has certainly removed since the
    /// last sweep: an upper bound of what a sweep may count.
    pub expired_unswept: BTreeSet<ObjectKey>,
}

/// The error variants the model distinguishes, with the fields it predicts exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `TooLarge { size, max }`.
    TooLarge {
        /// The refused size.
        size: u64,
        /// The maximum value size.
        max: u64,
    },
    /// `StoreFull { requested, available }`.
    StoreFull {
        /// The value's full size.
        requested: u64,
        /// What was free for it.
        available: u64,
    },
    /// `TooManyEntries { max }`.
    TooManyEntries {
        /// The maximum number of entries.
        max: u64,
    },
    /// `AlreadyExists { key }`.
    AlreadyExists {
        /// The key.
        key: ObjectKey,
    },
}

impl Expected {
    /// True when `error` is this one, fields included.
    pub fn matches(&self, error: &Error) -> bool {
        match (self, error) {
            (Expected::TooLarge { size, max }, Error::TooLarge { size: s, max: m }) => {
                size == s && max == m
            }
            (
                Expected::StoreFull {
                    requested,
                    available,
                },
                Error::StoreFull {
                    requested: r,
                    available: a,
                },
            ) => requested == r && available == a,
            (Expected::TooManyEntries { max }, Error::TooManyEntries { max: m }) => max == m,
            (Expected::AlreadyExists { key }, Error::AlreadyExists { key: k }) => key == k,
            _ => false,
        }
    }
}

impl Model {
    /// An empty store with `limits` at the clock's start.
    pub fn new(limits: Limits) -> Self {
        Model {
            limits,
            map: BTreeMap::new(),
            now: Duration::ZERO,
            open: Vec::new(),
            expired_unswept: BTreeSet::new(),
        }
    }

    /// Bytes of the live objects.
    pub fn bytes(&self) -> u64 {
        self.map.values().map(|o| o.value.len() as u64).sum()
    }

    /// Bytes held by open reservations.
    pub fn reserved(&self) -> u64 {
        self.open.iter().map(|r| r.value.len() as u64).sum()
    }

    /// What is free for a new reservation or value.
    pub fn available(&self) -> u64 {
        self.limits
            .capacity_bytes
            .saturating_sub(self.bytes())
            .saturating_sub(self.reserved())
    }

    /// The errors a put of `len` bytes under `key` may raise now, each with its exact fields;
    /// empty when it must succeed. When several apply, a backend may raise any one of them.
    pub fn put_errors(&self, key: &ObjectKey, len: usize, mode: PutMode) -> Vec<Expected> {
        let mut errors = Vec::new();
        let len = len as u64;
        let old = self.map.get(key).map(|o| o.value.len() as u64);
        if len > self.limits.max_value_size {
            errors.push(Expected::TooLarge {
                size: len,
                max: self.limits.max_value_size,
            });
        }
        if old.is_some() && mode == PutMode::Create {
            errors.push(Expected::AlreadyExists { key: key.clone() });
        }
        let available = self.available().saturating_add(old.unwrap_or(0));
        if len > available {
            errors.push(Expected::StoreFull {
                requested: len,
                available,
            });
        }
        if old.is_none() && self.map.len() as u64 >= self.limits.max_entries {
            errors.push(Expected::TooManyEntries {
                max: self.limits.max_entries,
            });
        }
        errors
    }

    /// The errors a reservation of `len` bytes may raise now.
    pub fn reserve_errors(&self, len: usize) -> Vec<Expected> {
        let len = len as u64;
        let mut errors = Vec::new();
        if len > self.limits.max_value_size {
            errors.push(Expected::TooLarge {
                size: len,
                max: self.limits.max_value_size,
            });
        }
        if len > self.available() {
            errors.push(Expected::StoreFull {
                requested: len,
                available: self.available(),
            });
        }
        errors
    }

    /// The errors the commit of open reservation `ix` may raise now.
    pub fn commit_errors(&self, ix: usize) -> Vec<Expected> {
        let r = &self.open[ix];
        let mut errors = Vec::new();
        let exists = self.map.contains_key(&r.key);
        if exists && r.options.mode == PutMode::Create {
            errors.push(Expected::AlreadyExists { key: r.key.clone() });
        }
        if !exists && self.map.len() as u64 >= self.limits.max_entries {
            errors.push(Expected::TooManyEntries {
                max: self.limits.max_entries,
            });
        }
        errors
    }

    /// Applies a put that the rules admit (call only when [`Model::put_errors`] is empty).
    pub fn put(&mut self, key: &ObjectKey, value: &[u8], options: &PutOptions) {
        self.expired_unswept.remove(key);
        self.map.insert(
            key.clone(),
            Object {
                value: value.to_vec(),
                readers: options.readers,
                expires_at: options.lease.map(|l| self.now.saturating_add(l)),
            },
        );
    }

    /// Opens a reservation the rules admit.
    pub fn reserve(&mut self, key: &ObjectKey, value: &[u8], options: &PutOptions) {
        self.open.push(OpenReservation {
            key: key.clone(),
            value: value.to_vec(),
            options: *options,
        });
    }

    /// Commits (when `admitted`) or drops open reservation `ix`.
    pub fn close(&mut self, ix: usize, admitted: bool) {
        let r = self.open.remove(ix);
        if admitted {
            self.put(&r.key, &r.value, &r.options);
        }
    }

    /// Removes `key`; true if it was live.
    pub fn delete(&mut self, key: &ObjectKey) -> bool {
        self.map.remove(key).is_some()
    }

    /// What a release of `key` returns, applied.
    pub fn release(&mut self, key: &ObjectKey) -> ReleaseOutcome {
        let Some(object) = self.map.get_mut(key) else {
            return ReleaseOutcome::NotFound;
        };
        let (outcome, left) = ReleaseOutcome::after(object.readers);
        object.readers = left;
        if outcome.deleted() {
            self.map.remove(key);
        }
        outcome
    }

    /// What `head(key)` returns.
    pub fn head(&self, key: &ObjectKey) -> Option<ObjectMeta> {
        self.map.get(key).map(|o| {
            ObjectMeta::new(
                o.value.len() as u64,
                o.readers,
                o.expires_at
                    .map(|d| SystemTime::UNIX_EPOCH + CLOCK_START + d),
            )
        })
    }

    /// The live keys with `prefix`, ascending.
    pub fn keys(&self, prefix: &KeyPrefix) -> Vec<ObjectKey> {
        self.map
            .keys()
            .filter(|k| k.has_prefix(prefix))
            .cloned()
            .collect()
    }

    /// Removes the live keys `doomed` selects; returns how many.
    pub fn remove_where(&mut self, doomed: impl Fn(&ObjectKey) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|k, _| !doomed(k));
        before - self.map.len()
    }

    /// Moves the clock on and expires what ran out.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        let now = self.now;
        let expired: Vec<ObjectKey> = self
            .map
            .iter()
            .filter(|(_, o)| o.expires_at.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.map.remove(&key);
            self.expired_unswept.insert(key);
        }
    }
}
