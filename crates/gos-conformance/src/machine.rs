//! The state-machine test: generated sequences of every operation, driven against the store
//! and the reference [`Model`] side by side, with postconditions checked after every step.
//!
//! A failing sequence is first shrunk by proptest-state-machine (it deletes steps from the
//! back, then simplifies each step), then reduced further until removing any single step
//! makes it pass (for a failure that depends only on the sequence, which every step here is:
//! operations run one at a time, on a manual clock). The report prints that sequence, the
//! seed and the environment that replays the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gos_store::{
    Clock, Digest, KeyPrefix, ManualClock, ObjectKey, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, Reservation,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestError, TestRunner};
use proptest_state_machine::ReferenceStateMachine;

use crate::model::{CLOCK_START, Expected, Model, ROOMY, TIGHT};
use crate::{NO_CLOCK, NO_LIFECYCLE, Outcome, Skipped, StoreFactory, SuiteConfig, TestResult};

/// Open reservations kept at most; a `Reserve` beyond them does nothing.
const MAX_OPEN: usize = 3;
/// Values read with `hold` kept at most (the oldest goes first).
const MAX_HELD: usize = 4;
/// Runs of a failing sequence [`reduce`] may spend.
const REDUCE_BUDGET: usize = 600;

/// A generated value: `len` bytes derived from `tag`, so that two values of one length differ
/// when their tags do, and a report stays short.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Length in bytes.
    pub len: usize,
    /// Which bytes.
    pub tag: u8,
}

impl Value {
    /// The bytes.
    pub fn bytes(self) -> Vec<u8> {
        (0..self.len)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(31)
                    .wrapping_add(self.tag.wrapping_mul(97))
                    ^ 0x5A
            })
            .collect()
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value {{ len: {}, tag: {} }}", self.len, self.tag)
    }
}

/// One generated operation; `handle` picks the handle it goes through (modulo their number).
#[derive(Debug, Clone)]
pub enum Op {
    /// `put_opts(key, value, options)`.
    Put {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
        /// The value.
        value: Value,
        /// Mode, readers, lease.
        options: PutOptions,
    },
    /// `put_opts(key, value, options)` of a value as long as the one the key holds (5 bytes
    /// when it holds none): the overwrite that a backend reusing the old value's memory in
    /// place would get wrong.
    Replace {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
        /// Which bytes.
        tag: u8,
        /// Mode, readers, lease.
        options: PutOptions,
    },
    /// `get(key)`; with `hold`, the returned value is kept (up to four at once) and checked
    /// unchanged after every later step, puts and commits included.
    Get {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
        /// Keep the returned value.
        hold: bool,
    },
    /// `head(key)`.
    Head {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
    },
    /// `release(key)`.
    Release {
        /// Handle index.
        handle: usize,
        /// The key.
        key: ObjectKey,
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
    /// `delete_rounds_before(fed, round)`.
    DeleteRoundsBefore {
        /// Handle index.
        handle: usize,
        /// The federation.
        fed: &'static str,
        /// The first round kept.
        round: u64,
    },
    /// `sweep()`.
    Sweep {
        /// Handle index.
        handle: usize,
    },
    /// `len()`, `is_empty()` and `stats()`.
    Stats {
        /// Handle index.
        handle: usize,
    },
    /// `reserve(key, len, options)` and fill it; the reservation stays open (up to three).
    Reserve {
        /// Handle index.
        handle: usize,
        /// The key to commit under.
        key: ObjectKey,
        /// The bytes to write.
        value: Value,
        /// Mode, readers, lease.
        options: PutOptions,
    },
    /// Commits open reservation `pick` (modulo their number; nothing when none is open).
    Commit {
        /// Which one.
        pick: usize,
    },
    /// Drops open reservation `pick` uncommitted.
    Abandon {
        /// Which one.
        pick: usize,
    },
    /// Moves the manual clock forward.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
}

impl Op {
    /// The operation as run without leases and/or without reader counts: options reduced,
    /// `Advance` (and without counts, `Release`) dropped.
    fn restricted(&self, leases: bool, counts: bool) -> Option<Op> {
        let strip = |o: &PutOptions| {
            let mut o = *o;
            if !leases {
                o = o.with_lease(None);
            }
            if !counts {
                o = o.readers(0);
            }
            o
        };
        match self {
            Op::Advance { .. } if !leases => None,
            Op::Release { .. } if !counts => None,
            Op::Put {
                handle,
                key,
                value,
                options,
            } => Some(Op::Put {
                handle: *handle,
                key: key.clone(),
                value: *value,
                options: strip(options),
            }),
            Op::Replace {
                handle,
                key,
                tag,
                options,
            } => Some(Op::Replace {
                handle: *handle,
                key: key.clone(),
                tag: *tag,
                options: strip(options),
            }),
            Op::Reserve {
                handle,
                key,
                value,
                options,
            } => Some(Op::Reserve {
                handle: *handle,
                key: key.clone(),
                value: *value,
                options: strip(options),
            }),
            other => Some(other.clone()),
        }
    }

    fn with_handle(&self, h: usize) -> Op {
        let mut op = self.clone();
        match &mut op {
            Op::Put { handle, .. }
            | Op::Replace { handle, .. }
            | Op::Get { handle, .. }
            | Op::Head { handle, .. }
            | Op::Release { handle, .. }
            | Op::Delete { handle, .. }
            | Op::Keys { handle, .. }
            | Op::DeletePrefix { handle, .. }
            | Op::DeleteRoundsBefore { handle, .. }
            | Op::Sweep { handle }
            | Op::Stats { handle }
            | Op::Reserve { handle, .. } => *handle = h,
            Op::Commit { .. } | Op::Abandon { .. } | Op::Advance { .. } => {}
        }
        op
    }
}

fn key_strategy() -> impl Strategy<Value = ObjectKey> {
    // A few hot keys, so that operations of one sequence meet on the same key often; round
    // keys of two federations and two nodes (`n1`, `n10`: a string prefix that is not a
    // segment prefix); and keys that are not round keys, under a federation and outside.
    prop_oneof![
        3 => prop::sample::select(vec!["a/n1/round_0", "a/n1/round_1", "b/n10/round_0"])
            .prop_map(|k| ObjectKey::new(k).expect("valid key")),
        2 => (prop::sample::select(vec!["a", "b"]), prop::sample::select(vec!["n1", "n10"]), 0u64..3)
            .prop_map(|(f, n, r)| ObjectKey::round(f, n, r).expect("valid round key")),
        1 => prop::sample::select(vec!["a/n1", "b", "a/n1/round_1/extra", "a/n1/round_x"])
            .prop_map(|k| ObjectKey::new(k).expect("valid key")),
    ]
}

fn prefix_strategy() -> impl Strategy<Value = KeyPrefix> {
    prop::sample::select(vec!["", "a", "b", "a/n1", "a/n", "a/n1/round_1", "c"])
        .prop_map(|p| KeyPrefix::new(p).expect("valid prefix"))
}

fn value_strategy() -> impl Strategy<Value = Value> {
    // Few lengths, so that overwrites of an equal size are common; 96 and 97 straddle TIGHT's
    // maximum value size.
    (
        prop::sample::select(vec![0usize, 5, 5, 32, 32, 60, 96, 97]),
        0u8..4,
    )
        .prop_map(|(len, tag)| Value { len, tag })
}

fn options_strategy() -> impl Strategy<Value = PutOptions> {
    (
        prop_oneof![3 => Just(PutMode::Overwrite), 1 => Just(PutMode::Create)],
        prop::sample::select(vec![0u32, 0, 1, 2, 3]),
        prop::sample::select(vec![None, None, Some(10u64), Some(100), Some(1000)]),
    )
        .prop_map(|(mode, readers, lease)| {
            PutOptions::new()
                .mode(mode)
                .readers(readers)
                .with_lease(lease.map(Duration::from_millis))
        })
}

/// The reference state machine generating the sequences.
#[derive(Debug)]
pub struct StoreMachine;

impl ReferenceStateMachine for StoreMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![Just(TIGHT), Just(ROOMY)]
            .prop_map(Model::new)
            .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Op> {
        let h = 0usize..4;
        prop_oneof![
            6 => (h.clone(), key_strategy(), value_strategy(), options_strategy())
                .prop_map(|(handle, key, value, options)| Op::Put { handle, key, value, options }),
            2 => (h.clone(), key_strategy(), 0u8..4, options_strategy())
                .prop_map(|(handle, key, tag, options)| Op::Replace { handle, key, tag, options }),
            4 => (h.clone(), key_strategy(), any::<bool>())
                .prop_map(|(handle, key, hold)| Op::Get { handle, key, hold }),
            2 => (h.clone(), key_strategy()).prop_map(|(handle, key)| Op::Head { handle, key }),
            3 => (h.clone(), key_strategy()).prop_map(|(handle, key)| Op::Release { handle, key }),
            2 => (h.clone(), key_strategy()).prop_map(|(handle, key)| Op::Delete { handle, key }),
            2 => (h.clone(), prefix_strategy()).prop_map(|(handle, prefix)| Op::Keys { handle, prefix }),
            1 => (h.clone(), prefix_strategy())
                .prop_map(|(handle, prefix)| Op::DeletePrefix { handle, prefix }),
            1 => (h.clone(), prop::sample::select(vec!["a", "b", "c"]), 0u64..4)
                .prop_map(|(handle, fed, round)| Op::DeleteRoundsBefore { handle, fed, round }),
            1 => h.clone().prop_map(|handle| Op::Sweep { handle }),
            1 => h.clone().prop_map(|handle| Op::Stats { handle }),
            2 => (h, key_strategy(), value_strategy(), options_strategy())
                .prop_map(|(handle, key, value, options)| Op::Reserve { handle, key, value, options }),
            2 => (0usize..3).prop_map(|pick| Op::Commit { pick }),
            1 => (0usize..3).prop_map(|pick| Op::Abandon { pick }),
            2 => prop::sample::select(vec![1u64, 9, 10, 90, 100, 1000]).prop_map(|ms| Op::Advance { ms }),
        ]
        .boxed()
    }

    fn apply(state: Model, _op: &Op) -> Model {
        // The model is run beside the store in `run_case`; generation does not depend on it.
        state
    }
}

/// What a case runs with: whether leases and reader counts are in play.
#[derive(Debug, Clone, Copy)]
struct Mode {
    leases: bool,
    counts: bool,
    handles: usize,
}

/// Runs the state machine against stores from `factory`; `Err` holds the reduced failure.
pub(crate) fn run_state_machine<F: StoreFactory>(
    runtime: &tokio::runtime::Runtime,
    factory: &Arc<F>,
    config: &SuiteConfig,
) -> TestResult {
    let counts = !config.skip_lifecycle;
    // Does the factory take a clock? Asked once, on a throwaway store.
    let leases = counts
        && runtime
            .block_on(crate::open_handles_with(
                &**factory,
                TIGHT,
                1,
                Some(Arc::new(ManualClock::at(CLOCK_START))),
            ))?
            .is_some();
    let mode = Mode {
        leases,
        counts,
        handles: config.handles,
    };
    let mut runner = TestRunner::new(Config {
        cases: config.cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(config.seed),
        ..Config::default()
    });
    let strategy = StoreMachine::sequential_strategy(1..=config.max_steps);
    let result = runner.run(&strategy, |(initial, ops, seen)| {
        runtime
            .block_on(run_case(&**factory, mode, initial, &ops, seen))
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(_, (initial, ops, _))) => {
            let (ops, reason) = reduce(runtime, &**factory, mode, &initial, ops);
            return Err(format!(
                "{reason}\n  limits: {:?}\n  reduced failing sequence ({} steps; removing any \
                 one step makes it pass):\n{}\n  replay: GOS_CONFORMANCE_SEED={} \
                 GOS_CONFORMANCE_CASES={} GOS_CONFORMANCE_ONLY=state_machine cargo test \
                 <your conformance test> (with the same SuiteConfig otherwise)",
                initial.limits,
                ops.len(),
                ops.iter()
                    .enumerate()
                    .map(|(i, op)| format!("    {i:>2}: {op:?}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                config.seed,
                config.cases,
            ));
        }
        Err(TestError::Abort(reason)) => return Err(format!("aborted: {reason}")),
    }
    let mut skipped = Vec::new();
    if !counts {
        skipped.push(Skipped {
            test: "state_machine/lifecycle",
            reason: NO_LIFECYCLE.into(),
        });
    } else if !leases {
        skipped.push(Skipped {
            test: "state_machine/leases",
            reason: NO_CLOCK.into(),
        });
    }
    Ok(if skipped.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Partial(skipped)
    })
}

/// Reduces a failing sequence until removing any single step makes it pass (within a budget
/// of runs), and puts every step on handle 0 when that still fails. Returns the sequence and
/// its failure.
fn reduce<F: StoreFactory>(
    runtime: &tokio::runtime::Runtime,
    factory: &F,
    mode: Mode,
    initial: &Model,
    ops: Vec<Op>,
) -> (Vec<Op>, String) {
    let fails = |ops: &[Op]| {
        runtime
            .block_on(run_case(factory, mode, initial.clone(), ops, None))
            .err()
    };
    let mut best = ops;
    let mut reason = fails(&best).unwrap_or_else(|| {
        "the failure did not happen again on a rerun (it depends on timing)".into()
    });
    let mut budget = REDUCE_BUDGET;
    loop {
        let mut improved = false;
        let mut i = best.len();
        while i > 0 && budget > 0 {
            i -= 1;
            budget -= 1;
            let mut candidate = best.clone();
            candidate.remove(i);
            if let Some(r) = fails(&candidate) {
                best = candidate;
                reason = r;
                improved = true;
                i = i.min(best.len());
            }
        }
        if !improved || budget == 0 {
            break;
        }
    }
    let on_one: Vec<Op> = best.iter().map(|op| op.with_handle(0)).collect();
    if let Some(r) = fails(&on_one) {
        return (on_one, r);
    }
    (best, reason)
}

/// A value read earlier and held: it must stay byte-identical.
struct Held {
    key: ObjectKey,
    bytes: Bytes,
    expected: Vec<u8>,
}

/// The state of one case besides the model: the store's handles, its open reservations, held
/// values and clock.
struct Case<'a, S: ObjectStore> {
    stores: &'a [Arc<S>],
    open: Vec<Box<dyn Reservation + 'a>>,
    held: Vec<Held>,
    clock: ManualClock,
}

async fn run_case<F: StoreFactory>(
    factory: &F,
    mode: Mode,
    initial: Model,
    ops: &[Op],
    seen: Option<Arc<AtomicUsize>>,
) -> Result<(), String> {
    let clock = ManualClock::at(CLOCK_START);
    let injected: Option<Arc<dyn Clock>> = mode.leases.then(|| Arc::new(clock.clone()) as _);
    let stores = crate::open_handles_with(factory, initial.limits, mode.handles, injected)
        .await?
        .ok_or("factory.create_with_clock stopped returning a store")?;
    let mut case = Case {
        stores: &stores,
        open: Vec::new(),
        held: Vec::new(),
        clock,
    };
    let mut model = initial;
    for (step, op) in ops.iter().enumerate() {
        if let Some(seen) = &seen {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        let Some(op) = op.restricted(mode.leases, mode.counts) else {
            continue;
        };
        step_once(&mut case, &mut model, &op)
            .await
            .map_err(|e| format!("step {step} ({op:?}): {e}"))?;
        for h in &case.held {
            if h.bytes[..] != h.expected[..] {
                return Err(format!(
                    "after step {step} ({op:?}): a held value of `{}` changed under its reader",
                    h.key
                ));
            }
        }
        check_stats(&*stores[step % stores.len()], &model)
            .await
            .map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
    }
    Ok(())
}

fn expect_result<T>(
    what: &str,
    result: gos_store::Result<T>,
    allowed: &[Expected],
) -> Result<bool, String> {
    match result {
        Ok(_) if allowed.is_empty() => Ok(true),
        Ok(_) => Err(format!(
            "{what} succeeded, it must fail with one of {allowed:?}"
        )),
        Err(e) if allowed.iter().any(|x| x.matches(&e)) => Ok(false),
        Err(e) if allowed.is_empty() => Err(format!("{what} failed with `{e:?}`, it must succeed")),
        Err(e) => Err(format!(
            "{what} failed with `{e:?}`, want one of {allowed:?} (fields included)"
        )),
    }
}

async fn step_once<'a, S: ObjectStore>(
    case: &mut Case<'a, S>,
    model: &mut Model,
    op: &Op,
) -> Result<(), String> {
    let stores = case.stores;
    let pick = |h: usize| &stores[h % stores.len()];
    match op {
        Op::Put {
            handle,
            key,
            value,
            options,
        } => {
            let allowed = model.put_errors(key, value.len, options.mode);
            let bytes = value.bytes();
            let result = pick(*handle)
                .put_opts(key, Bytes::from(bytes.clone()), options)
                .await;
            if expect_result("put", result, &allowed)? {
                model.put(key, &bytes, options);
            }
        }
        Op::Replace {
            handle,
            key,
            tag,
            options,
        } => {
            let len = model.map.get(key).map_or(5, |o| o.value.len());
            let put = Op::Put {
                handle: *handle,
                key: key.clone(),
                value: Value { len, tag: *tag },
                options: *options,
            };
            Box::pin(step_once(case, model, &put)).await?;
        }
        Op::Get { handle, key, hold } => {
            let got = pick(*handle)
                .get(key)
                .await
                .map_err(|e| format!("get failed: {e}"))?;
            let want = model.map.get(key).map(|o| &o.value);
            if got.as_deref() != want.map(Vec::as_slice) {
                return Err(format!(
                    "get returned {:?} bytes, the model holds {:?}",
                    got.as_ref().map(|b| b.len()),
                    want.map(Vec::len)
                ));
            }
            if let (true, Some(bytes), Some(want)) = (*hold, got, want) {
                if case.held.len() == MAX_HELD {
                    case.held.remove(0);
                }
                case.held.push(Held {
                    key: key.clone(),
                    bytes,
                    expected: want.clone(),
                });
            }
        }
        Op::Head { handle, key } => {
            let got = pick(*handle)
                .head(key)
                .await
                .map_err(|e| format!("head failed: {e}"))?;
            let want = model.head(key);
            // A backend may keep no digests (`None`); one it reports is the value's.
            let digest = got.and_then(|m| m.digest);
            let got = got.map(|m| m.with_digest(None));
            if got != want {
                return Err(format!("head returned {got:?}, want {want:?}"));
            }
            let value = model.map.get(key).map(|o| &o.value);
            if let (Some(d), Some(value)) = (digest, value)
                && d != Digest::of(value)
            {
                return Err(format!(
                    "head reported digest {d}, the value's is {}",
                    Digest::of(value)
                ));
            }
            // `get_digested` pairs the value with its digest.
            let pair = pick(*handle)
                .get_digested(key)
                .await
                .map_err(|e| format!("get_digested failed: {e}"))?;
            match (&pair, value) {
                (None, None) => {}
                (Some((bytes, d)), Some(value)) if bytes[..] == value[..] => {
                    if *d != Digest::of(value) {
                        return Err(format!(
                            "get_digested paired the value with digest {d}, its digest is {}",
                            Digest::of(value)
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "get_digested returned {:?} bytes, the model holds {:?}",
                        pair.as_ref().map(|(b, _)| b.len()),
                        value.map(Vec::len)
                    ));
                }
            }
        }
        Op::Release { handle, key } => {
            let got = pick(*handle)
                .release(key)
                .await
                .map_err(|e| format!("release failed: {e}"))?;
            let want = model.release(key);
            if got != want {
                return Err(format!("release returned {got:?}, want {want:?}"));
            }
        }
        Op::Delete { handle, key } => {
            let existed = pick(*handle)
                .delete(key)
                .await
                .map_err(|e| format!("delete failed: {e}"))?;
            let want = model.delete(key);
            if existed != want {
                return Err(format!(
                    "delete returned {existed}, the key was live: {want}"
                ));
            }
        }
        Op::Keys { handle, prefix } => {
            let store = pick(*handle);
            let got = if prefix.is_root() {
                store.keys().await
            } else {
                store.keys_with_prefix(prefix).await
            }
            .map_err(|e| format!("keys failed: {e}"))?;
            let want = model.keys(prefix);
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
            let want = model.remove_where(|k| k.has_prefix(prefix));
            if removed != want {
                return Err(format!("delete_prefix removed {removed}, want {want}"));
            }
        }
        Op::DeleteRoundsBefore { handle, fed, round } => {
            let removed = pick(*handle)
                .delete_rounds_before(fed, *round)
                .await
                .map_err(|e| format!("delete_rounds_before failed: {e}"))?;
            let want = model.remove_where(|k| k.is_round_before(fed, *round));
            if removed != want {
                return Err(format!(
                    "delete_rounds_before removed {removed}, want {want}"
                ));
            }
        }
        Op::Sweep { handle } => {
            let removed = pick(*handle)
                .sweep()
                .await
                .map_err(|e| format!("sweep failed: {e}"))?;
            let most = model.expired_unswept.len();
            if removed > most {
                return Err(format!(
                    "sweep removed {removed}, but at most {most} expired objects were left"
                ));
            }
            model.expired_unswept.clear();
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
            options,
        } => {
            if case.open.len() >= MAX_OPEN {
                return Ok(());
            }
            let allowed = model.reserve_errors(value.len);
            let result = pick(*handle).reserve(key, value.len, options).await;
            let admitted = match result {
                Ok(r) => Some(r),
                Err(e) => {
                    expect_result::<()>("reserve", Err(e), &allowed)?;
                    None
                }
            };
            match admitted {
                Some(_) if !allowed.is_empty() => {
                    return Err(format!(
                        "reserve succeeded, it must fail with one of {allowed:?}"
                    ));
                }
                Some(mut r) => {
                    if r.len() != value.len || r.key() != key {
                        return Err(format!(
                            "the reservation has length {} and key `{}`",
                            r.len(),
                            r.key()
                        ));
                    }
                    let bytes = value.bytes();
                    r.as_mut_slice().copy_from_slice(&bytes);
                    case.open.push(r);
                    model.reserve(key, &bytes, options);
                }
                None => {}
            }
        }
        Op::Commit { pick: p } => {
            if case.open.is_empty() {
                return Ok(());
            }
            let ix = p % case.open.len();
            let allowed = model.commit_errors(ix);
            let result = case.open.remove(ix).commit().await;
            let admitted = expect_result("commit", result, &allowed)?;
            model.close(ix, admitted);
        }
        Op::Abandon { pick: p } => {
            if case.open.is_empty() {
                return Ok(());
            }
            let ix = p % case.open.len();
            drop(case.open.remove(ix));
            model.close(ix, false);
        }
        Op::Advance { ms } => {
            let by = Duration::from_millis(*ms);
            case.clock.advance(by);
            model.advance(by);
        }
    }
    Ok(())
}

async fn check_stats<S: ObjectStore + ?Sized>(store: &S, model: &Model) -> Result<(), String> {
    let stats = store
        .stats()
        .await
        .map_err(|e| format!("stats failed: {e}"))?;
    let (entries, bytes, reserved) = (model.map.len() as u64, model.bytes(), model.reserved());
    if stats.entries != entries
        || stats.bytes != bytes
        || stats.reserved != reserved
        || stats.capacity_bytes != model.limits.capacity_bytes
    {
        return Err(format!(
            "stats are {stats:?}, want entries {entries} bytes {bytes} reserved {reserved} \
             capacity {}",
            model.limits.capacity_bytes
        ));
    }
    Ok(())
}
