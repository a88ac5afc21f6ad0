//! The state-machine test: every operation, driven against the store and a `BTreeMap`
//! reference model side by side, with postconditions checked after every step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use gos_store::{
    Error, KeyPrefix, Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use proptest_state_machine::ReferenceStateMachine;

use crate::{StoreFactory, SuiteConfig, open_handles};

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

/// The reference model: the limits and a sorted map of key to value.
#[derive(Debug, Clone)]
pub struct Model {
    /// The limits the store under test was created with.
    pub limits: Limits,
    /// What the store must hold.
    pub map: BTreeMap<ObjectKey, Vec<u8>>,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.map.values().map(|v| v.len() as u64).sum()
    }

    /// The errors a put of `len` bytes under `key` may raise now; empty when it must succeed.
    fn put_errors(&self, key: &ObjectKey, len: usize, mode: PutMode) -> Vec<ErrorKind> {
        let mut errors = Vec::new();
        let len = len as u64;
        let old = self.map.get(key).map(|v| v.len() as u64);
        if len > self.limits.max_value_size {
            errors.push(ErrorKind::TooLarge);
        }
        if old.is_some() && mode == PutMode::Create {
            errors.push(ErrorKind::AlreadyExists);
        }
        if self.bytes() - old.unwrap_or(0) + len > self.limits.capacity_bytes {
            errors.push(ErrorKind::StoreFull);
        }
        if old.is_none() && self.map.len() as u64 + 1 > self.limits.max_entries {
            errors.push(ErrorKind::TooManyEntries);
        }
        errors
    }

    fn put(&mut self, key: &ObjectKey, value: &[u8], mode: PutMode) {
        if self.put_errors(key, value.len(), mode).is_empty() {
            self.map.insert(key.clone(), value.to_vec());
        }
    }
}

/// The error variants the model distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    TooLarge,
    StoreFull,
    TooManyEntries,
    AlreadyExists,
}

fn kind_of(error: &Error) -> Option<ErrorKind> {
    match error {
        Error::TooLarge { .. } => Some(ErrorKind::TooLarge),
        Error::StoreFull { .. } => Some(ErrorKind::StoreFull),
        Error::TooManyEntries { .. } => Some(ErrorKind::TooManyEntries),
        Error::AlreadyExists { .. } => Some(ErrorKind::AlreadyExists),
        _ => None,
    }
}

/// One generated operation; `handle` picks the handle it goes through (modulo their number).
#[derive(Debug, Clone)]
pub enum Op {
    /// `put_opts(key, value, mode)`.
    Put {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
        /// The value.
        value: Vec<u8>,
        /// The mode.
        mode: PutMode,
    },
    /// `get(key)`; with `hold`, the returned value is kept until the next put or reservation
    /// and checked unchanged after every step in between (deletes included).
    Get {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
        /// Keep the returned value.
        hold: bool,
    },
    /// `delete(key)`.
    Delete {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
    },
    /// `keys_with_prefix(prefix)`, or `keys()` for the root.
    Keys {
        /// Handle index.
        handle: usize,
        /// The prefix.
        prefix: KeyPrefix,
    },
    /// `delete_prefix(prefix)`.
    DeletePrefix {
        /// Handle index.
        handle: usize,
        /// The prefix.
        prefix: KeyPrefix,
    },
    /// `len()` and `stats()`.
    Stats {
        /// Handle index.
        handle: usize,
    },
    /// `reserve(len)`, fill, then commit under `key` or drop.
    Reserve {
        /// Handle index.
        handle: usize,
        /// The key to commit under.
        key: ObjectKey,
        /// The bytes to write.
        value: Vec<u8>,
        /// The commit mode.
        mode: PutMode,
        /// Commit, or drop uncommitted.
        commit: bool,
    },
}

fn key_strategy() -> impl Strategy<Value = ObjectKey> {
    prop_oneof![
        4 => (prop::sample::select(vec!["a", "b"]), prop::sample::select(vec!["n1", "n2", "n10"]), 0u64..3)
            .prop_map(|(f, n, r)| ObjectKey::round(f, n, r).expect("valid round key")),
        1 => prop::sample::select(vec!["a/n1", "b", "a/n1/round_1/extra"])
            .prop_map(|k| ObjectKey::new(k).expect("valid key")),
    ]
}

fn prefix_strategy() -> impl Strategy<Value = KeyPrefix> {
    prop::sample::select(vec!["", "a", "b", "a/n1", "a/n", "a/n1/round_1", "c"])
        .prop_map(|p| KeyPrefix::new(p).expect("valid prefix"))
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (90usize..110, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn mode_strategy() -> impl Strategy<Value = PutMode> {
    prop_oneof![3 => Just(PutMode::Overwrite), 1 => Just(PutMode::Create)]
}

/// The reference state machine driving the generated sequences.
#[derive(Debug)]
pub struct StoreMachine;

impl ReferenceStateMachine for StoreMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![Just(TIGHT), Just(ROOMY)]
            .prop_map(|limits| Model {
                limits,
                map: BTreeMap::new(),
            })
            .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Op> {
        let handle = 0usize..4;
        prop_oneof![
            6 => (handle.clone(), key_strategy(), value_strategy(), mode_strategy())
                .prop_map(|(handle, key, value, mode)| Op::Put { handle, key, value, mode }),
            4 => (handle.clone(), key_strategy(), any::<bool>())
                .prop_map(|(handle, key, hold)| Op::Get { handle, key, hold }),
            3 => (handle.clone(), key_strategy()).prop_map(|(handle, key)| Op::Delete { handle, key }),
            2 => (handle.clone(), prefix_strategy()).prop_map(|(handle, prefix)| Op::Keys { handle, prefix }),
            1 => (handle.clone(), prefix_strategy())
                .prop_map(|(handle, prefix)| Op::DeletePrefix { handle, prefix }),
            1 => handle.clone().prop_map(|handle| Op::Stats { handle }),
            2 => (handle, key_strategy(), value_strategy(), mode_strategy(), any::<bool>())
                .prop_map(|(handle, key, value, mode, commit)| Op::Reserve { handle, key, value, mode, commit }),
        ]
        .boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        match op {
            Op::Put {
                key, value, mode, ..
            } => state.put(key, value, *mode),
            Op::Delete { key, .. } => {
                state.map.remove(key);
            }
            Op::DeletePrefix { prefix, .. } => state.map.retain(|k, _| !k.has_prefix(prefix)),
            Op::Reserve {
                key,
                value,
                mode,
                commit,
                ..
            } => {
                // Whether the reservation itself succeeds is decided by the store (see
                // `check_reserve`); the model is updated from what the store did.
                let _ = (key, value, mode, commit);
            }
            Op::Get { .. } | Op::Keys { .. } | Op::Stats { .. } => {}
        }
        state
    }
}

/// Runs the state machine against stores from `factory`; `Err` holds the shrunk failure.
pub(crate) fn run_state_machine<F: StoreFactory>(
    runtime: &tokio::runtime::Runtime,
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> Result<(), String> {
    let mut runner = TestRunner::new(Config {
        cases: config.cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    });
    let strategy = StoreMachine::sequential_strategy(1..=config.max_steps);
    let result = runner.run(&strategy, |(initial, ops, seen)| {
        runtime.block_on(run_case(factory, config.handles, initial, ops, seen))
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, (initial, ops, _))) => Err(format!(
            "{reason}\n  limits: {:?}\n  minimal failing sequence ({} steps):\n{}",
            initial.limits,
            ops.len(),
            ops.iter()
                .enumerate()
                .map(|(i, op)| format!("    {i:>2}: {op:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
        Err(TestError::Abort(reason)) => Err(format!("aborted: {reason}")),
    }
}

/// A value read earlier and held: it must stay byte-identical.
struct Held {
    bytes: Bytes,
    expected: Vec<u8>,
}

async fn run_case<F: StoreFactory>(
    factory: &Arc<F>,
    handles: usize,
    initial: Model,
    ops: Vec<Op>,
    seen: Option<Arc<std::sync::atomic::AtomicUsize>>,
) -> Result<(), TestCaseError> {
    let stores = open_handles(&**factory, initial.limits, handles)
        .await
        .map_err(TestCaseError::fail)?;
    let mut model = initial;
    let mut held: Option<Held> = None;
    for (step, op) in ops.iter().enumerate() {
        if let Some(seen) = &seen {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        step_once(&stores, &mut model, &mut held, op)
            .await
            .map_err(|e| TestCaseError::fail(format!("step {step} ({op:?}): {e}")))?;
        if let Some(h) = &held
            && h.bytes[..] != h.expected[..]
        {
            return Err(TestCaseError::fail(format!(
                "after step {step}: a held value changed under its reader"
            )));
        }
        check_stats(&*stores[step % stores.len()], &model)
            .await
            .map_err(|e| TestCaseError::fail(format!("after step {step} ({op:?}): {e}")))?;
    }
    Ok(())
}

async fn step_once<S: ObjectStore>(
    stores: &[Arc<S>],
    model: &mut Model,
    held: &mut Option<Held>,
    op: &Op,
) -> Result<(), String> {
    let pick = |h: usize| &stores[h % stores.len()];
    match op {
        Op::Put {
            handle,
            key,
            value,
            mode,
        } => {
            *held = None;
            let allowed = model.put_errors(key, value.len(), *mode);
            let result = pick(*handle)
                .put_mode(key, Bytes::from(value.clone()), *mode)
                .await;
            check_put_result(result, &allowed, key, value.len(), model)?;
            model.put(key, value, *mode);
        }
        Op::Get { handle, key, hold } => {
            let got = pick(*handle)
                .get(key)
                .await
                .map_err(|e| format!("get failed: {e}"))?;
            let want = model.map.get(key);
            if got.as_deref() != want.map(Vec::as_slice) {
                return Err(format!(
                    "get returned {:?}, the model holds {:?}",
                    got.as_ref().map(|b| b.len()),
                    want.map(Vec::len)
                ));
            }
            if let (true, Some(bytes), Some(want)) = (*hold, got, want) {
                *held = Some(Held {
                    bytes,
                    expected: want.clone(),
                });
            }
        }
        Op::Delete { handle, key } => {
            let existed = pick(*handle)
                .delete(key)
                .await
                .map_err(|e| format!("delete failed: {e}"))?;
            let want = model.map.contains_key(key);
            if existed != want {
                return Err(format!(
                    "delete returned {existed}, the key existed: {want}"
                ));
            }
            model.map.remove(key);
        }
        Op::Keys { handle, prefix } => {
            let store = pick(*handle);
            let got = if prefix.is_root() {
                store.keys().await
            } else {
                store.keys_with_prefix(prefix).await
            }
            .map_err(|e| format!("keys failed: {e}"))?;
            let want: Vec<ObjectKey> = model
                .map
                .keys()
                .filter(|k| k.has_prefix(prefix))
                .cloned()
                .collect();
            if got != want {
                return Err(format!(
                    "keys({prefix:?}) returned {got:?}, want {want:?} (sorted)"
                ));
            }
        }
        Op::DeletePrefix { handle, prefix } => {
            let removed = pick(*handle)
                .delete_prefix(prefix)
                .await
                .map_err(|e| format!("delete_prefix failed: {e}"))?;
            let want = model.map.keys().filter(|k| k.has_prefix(prefix)).count();
            if removed != want {
                return Err(format!("delete_prefix removed {removed}, want {want}"));
            }
            model.map.retain(|k, _| !k.has_prefix(prefix));
        }
        Op::Stats { handle } => {
            let store = pick(*handle);
            let len = store.len().await.map_err(|e| format!("len failed: {e}"))?;
            if len != model.map.len() {
                return Err(format!("len is {len}, want {}", model.map.len()));
            }
            let empty = store
                .is_empty()
                .await
                .map_err(|e| format!("is_empty failed: {e}"))?;
            if empty != model.map.is_empty() {
                return Err(format!("is_empty is {empty}"));
            }
        }
        Op::Reserve {
            handle,
            key,
            value,
            mode,
            commit,
        } => {
            *held = None;
            check_reserve(&**pick(*handle), model, key, value, *mode, *commit).await?;
        }
    }
    Ok(())
}

fn check_put_result(
    result: gos_store::Result<()>,
    allowed: &[ErrorKind],
    key: &ObjectKey,
    len: usize,
    model: &Model,
) -> Result<(), String> {
    match result {
        Ok(()) if allowed.is_empty() => Ok(()),
        Ok(()) => Err(format!(
            "put succeeded, it must fail with one of {allowed:?}"
        )),
        Err(e) => {
            let kind = kind_of(&e);
            if !kind.is_some_and(|k| allowed.contains(&k)) {
                return Err(format!("put failed with `{e}`, allowed: {allowed:?}"));
            }
            match e {
                Error::TooLarge { size, max }
                    if size != len as u64 || max != model.limits.max_value_size =>
                {
                    Err(format!("TooLarge carries size {size} max {max}"))
                }
                Error::StoreFull { requested, .. } if requested != len as u64 => Err(format!(
                    "StoreFull carries requested {requested}, want {len}"
                )),
                Error::AlreadyExists { key: k } if &k != key => {
                    Err(format!("AlreadyExists names `{k}`, want `{key}`"))
                }
                Error::TooManyEntries { max } if max != model.limits.max_entries => {
                    Err(format!("TooManyEntries carries max {max}"))
                }
                _ => Ok(()),
            }
        }
    }
}

/// A reservation must refuse a length over the maximum value size with `TooLarge`, may refuse
/// one over the space free now with `StoreFull`, and must refuse nothing else; its commit
/// behaves as a put; dropping it changes nothing.
async fn check_reserve<S: ObjectStore>(
    store: &S,
    model: &mut Model,
    key: &ObjectKey,
    value: &[u8],
    mode: PutMode,
    commit: bool,
) -> Result<(), String> {
    let len = value.len() as u64;
    let free = model.limits.capacity_bytes - model.bytes();
    let mut reservation = match store
        .reserve(key, value.len(), &PutOptions::from(mode))
        .await
    {
        Ok(r) => {
            if len > model.limits.max_value_size {
                return Err(format!(
                    "reserve({len}) succeeded over the maximum value size"
                ));
            }
            r
        }
        Err(Error::TooLarge { .. }) if len > model.limits.max_value_size => return Ok(()),
        Err(Error::StoreFull { .. }) if len > free && len <= model.limits.max_value_size => {
            return Ok(());
        }
        Err(e) => return Err(format!("reserve({len}) failed with `{e}` (free: {free})")),
    };
    if reservation.len() != value.len() {
        return Err(format!(
            "reservation has length {}, want {len}",
            reservation.len()
        ));
    }
    reservation.as_mut_slice().copy_from_slice(value);
    if !commit {
        drop(reservation);
        return Ok(());
    }
    let allowed = model.put_errors(key, value.len(), mode);
    let result = reservation.commit().await;
    check_put_result(result, &allowed, key, value.len(), model)?;
    model.put(key, value, mode);
    Ok(())
}

async fn check_stats<S: ObjectStore + ?Sized>(store: &S, model: &Model) -> Result<(), String> {
    let stats = store
        .stats()
        .await
        .map_err(|e| format!("stats failed: {e}"))?;
    let want_bytes = model.bytes();
    if stats.entries != model.map.len() as u64
        || stats.bytes != want_bytes
        || stats.capacity_bytes != model.limits.capacity_bytes
    {
        return Err(format!(
            "stats are {stats:?}, want entries {} bytes {want_bytes} capacity {}",
            model.map.len(),
            model.limits.capacity_bytes
        ));
    }
    Ok(())
}
