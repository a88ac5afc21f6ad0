//! The conformance suite of GOS stores: what a correct [`ObjectStore`] is, as executable tests.
//!
//! Two parts, both run by one entry point, [`run`]:
//!
//! 1. **A state machine** ([`model`], [`machine`]): proptest-state-machine generates sequences
//!    of every trait operation (puts with modes, reader counts and leases, gets that hold their
//!    value, heads, releases, deletes, listings and deletes by prefix, round retention, sweeps,
//!    `len`/`stats`, reservations kept open across steps then committed or dropped, and clock
//!    advances) over a small key space with tight and roomy [`Limits`], drives them against
//!    the store and a `BTreeMap` reference model side by side, and checks every postcondition
//!    after every step. A failure is shrunk, then reduced further until no single step can be
//!    removed, and printed with the seed that replays it ([`SuiteConfig::seed`]). Operations
//!    may be spread over several handles on the same store ([`SuiteConfig::handles`]), as
//!    separate processes or clients would hold them.
//! 2. **Named scenarios** ([`scenarios`]): what a random sequence of single operations cannot
//!    show (concurrency lined up on barriers, big values across length boundaries, held values,
//!    exact error fields, expiry on a manual clock).
//!
//! A backend crate runs it all from one test:
//!
//! ```
//! use std::sync::Arc;
//! use gos_conformance::{Clock, Limits, Result, StoreFactory, SuiteConfig, async_trait};
//! use gos_store_memory::MemoryStore;
//!
//! struct Memory;
//!
//! #[async_trait]
//! impl StoreFactory for Memory {
//!     type Store = MemoryStore;
//!     async fn create(&self, limits: Limits) -> Result<Arc<MemoryStore>> {
//!         Ok(Arc::new(MemoryStore::new(limits)))
//!     }
//!     // Optional, but without it every lease check is reported as skipped.
//!     async fn create_with_clock(
//!         &self,
//!         limits: Limits,
//!         clock: Arc<dyn Clock>,
//!     ) -> Result<Option<Arc<MemoryStore>>> {
//!         Ok(Some(Arc::new(MemoryStore::new(limits).with_clock(clock))))
//!     }
//! }
//!
//! // In a backend's `tests/conformance.rs` this is the body of a `#[test]`:
//! gos_conformance::run(Memory, SuiteConfig::default().cases(16).big_value_size(1 << 20));
//! ```
//!
//! [`check`] returns the failures instead of panicking, which is how this crate's own tests
//! prove that the suite catches broken stores; [`check_report`] also lists what was skipped.
//! Everything an implementer needs is re-exported here (the whole of `gos_store`, with
//! [`Bytes`] and [`async_trait`](macro@async_trait)), so a backend's tests can depend on this crate alone. See
//! `docs/writing-a-backend.md` and `docs/conformance.md`.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use gos_store;
pub use gos_store::*;

pub mod machine;
pub mod model;
pub mod scenarios;

/// Makes stores for the suite: one fresh store per test case.
///
/// Only [`create`](StoreFactory::create) is required; the other methods have defaults that
/// say what they cannot do, and the suite reports the checks that need them as skipped.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The store type under test.
    type Store: ObjectStore;

    /// A new, empty store enforcing `limits`.
    async fn create(&self, limits: Limits) -> gos_store::Result<Arc<Self::Store>>;

    /// Another handle on the same store, as another process or client would open it.
    ///
    /// The default shares the handle, so that a run with [`SuiteConfig::handles`] above 1
    /// repeats the one-handle run: override it when your backend can open a store twice.
    async fn reopen(&self, store: &Arc<Self::Store>) -> gos_store::Result<Arc<Self::Store>> {
        Ok(Arc::clone(store))
    }

    /// A new, empty store enforcing `limits` that reads the time from `clock` for its lease
    /// deadlines (every handle [`reopen`](StoreFactory::reopen)ed from it too), or `None` when
    /// the backend cannot take an injected clock.
    ///
    /// The suite drives a [`ManualClock`] through it, so that expiry is checked exactly and
    /// without sleeping. The default returns `None`: the lease checks are then reported as
    /// skipped ([`Report::skipped`]), never silently passed.
    async fn create_with_clock(
        &self,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> gos_store::Result<Option<Arc<Self::Store>>> {
        let _ = (limits, clock);
        Ok(None)
    }
}

/// How much of the suite to run, and how hard.
///
/// Every knob can also be set from the environment, so that a soak or a replay needs no code
/// change: `GOS_CONFORMANCE_CASES`, `GOS_CONFORMANCE_SEED`, `GOS_CONFORMANCE_ONLY` (a
/// comma-separated list of test names), `GOS_CONFORMANCE_RACE_ROUNDS` and
/// `GOS_CONFORMANCE_HUGE=1`. They are read by
/// [`SuiteConfig::default`]; a setter called afterwards wins. `GOS_CONFORMANCE_TIMES=1` makes
/// [`run`] print how long each test took.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SuiteConfig {
    /// Proptest cases of the state machine (default 256, or `GOS_CONFORMANCE_CASES`).
    pub cases: u32,
    /// Most operations in one generated sequence (default 48).
    pub max_steps: usize,
    /// Handles the state machine and the scenarios spread their operations over (default 1).
    pub handles: usize,
    /// Size of the big-value round trip (default 64 MiB). The length-boundary scenario runs
    /// whatever this is.
    pub big_value_size: usize,
    /// Also cross the 4 GiB length boundary (values of 2^32 ± 1 bytes: needs about 13 GiB of
    /// memory for the store and the checks; default off, or `GOS_CONFORMANCE_HUGE=1`).
    pub huge_values: bool,
    /// Concurrent tasks in the concurrency scenarios (default 8).
    pub tasks: usize,
    /// Rounds of the barrier-lined races (default 400, or `GOS_CONFORMANCE_RACE_ROUNDS`).
    pub race_rounds: usize,
    /// The seed of the state machine's generator (default: random, or
    /// `GOS_CONFORMANCE_SEED`). A failure prints it; the same seed with the same `cases`
    /// generates the same sequences.
    pub seed: u64,
    /// Run only the tests with these names (`state_machine` or a scenario's name); empty runs
    /// everything (default, or `GOS_CONFORMANCE_ONLY=a,b`).
    pub only: Vec<String>,
    /// Fail, instead of skipping, the checks that need an injected clock when the factory
    /// cannot inject one (default off). A backend whose factory injects its clock sets it, so
    /// that a factory that stops doing so is noticed.
    pub require_clock: bool,
    /// Leave out reader counts and leases (default off): only for a backend that refuses
    /// them for now; every check left out is reported as skipped.
    pub skip_lifecycle: bool,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        SuiteConfig {
            cases: env("GOS_CONFORMANCE_CASES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            max_steps: 48,
            handles: 1,
            big_value_size: 64 << 20,
            huge_values: env("GOS_CONFORMANCE_HUGE").is_some_and(|v| v != "0"),
            tasks: 8,
            race_rounds: env("GOS_CONFORMANCE_RACE_ROUNDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(400),
            seed: env("GOS_CONFORMANCE_SEED")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| RandomState::new().hash_one(std::process::id())),
            only: env("GOS_CONFORMANCE_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default(),
            require_clock: false,
            skip_lifecycle: false,
        }
    }
}

impl SuiteConfig {
    /// Sets the number of proptest cases.
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = cases;
        self
    }

    /// Sets the most operations in one generated sequence (at least 1).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// Sets the number of handles operations are spread over (at least 1).
    pub fn handles(mut self, handles: usize) -> Self {
        self.handles = handles.max(1);
        self
    }

    /// Sets the size of the big-value round trip.
    pub fn big_value_size(mut self, bytes: usize) -> Self {
        self.big_value_size = bytes;
        self
    }

    /// Also crosses the 4 GiB length boundary.
    pub fn huge_values(mut self, on: bool) -> Self {
        self.huge_values = on;
        self
    }

    /// Sets the number of concurrent tasks in the concurrency scenarios (at least 2).
    pub fn tasks(mut self, tasks: usize) -> Self {
        self.tasks = tasks.max(2);
        self
    }

    /// Sets the rounds of the barrier-lined races (at least 1).
    pub fn race_rounds(mut self, rounds: usize) -> Self {
        self.race_rounds = rounds.max(1);
        self
    }

    /// Sets the state machine's seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Runs only the named tests.
    pub fn only<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.only = names.into_iter().map(Into::into).collect();
        self
    }

    /// Fails the lease checks instead of skipping them when the factory injects no clock.
    pub fn require_clock(mut self, on: bool) -> Self {
        self.require_clock = on;
        self
    }

    /// Leaves out reader counts and leases (reported as skipped).
    pub fn skip_lifecycle(mut self, on: bool) -> Self {
        self.skip_lifecycle = on;
        self
    }

    /// True when the test named `name` is selected by [`SuiteConfig::only`].
    pub fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }
}

/// One failed check of the suite.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The test that failed: `state_machine` or a scenario name.
    pub test: &'static str,
    /// What was wrong (for the state machine: the reduced sequence, the violated condition
    /// and the command that replays it).
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.test, self.message)
    }
}

/// A check the suite could not run against this factory, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The test (or part of it, such as `state_machine/leases`).
    pub test: &'static str,
    /// Why it did not run.
    pub reason: String,
}

/// What a run of the suite found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The tests that ran and passed.
    pub passed: Vec<&'static str>,
    /// Every failed check.
    pub failures: Vec<Failure>,
    /// The checks that did not run.
    pub skipped: Vec<Skipped>,
    /// How long each test took, in the order they ran.
    pub durations: Vec<(&'static str, Duration)>,
}

/// The outcome of one test.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// Some checks passed and these did not run.
    Partial(Vec<Skipped>),
    /// Nothing ran.
    Skipped(String),
}

/// What a test returns: `Err` with the first violation it saw.
pub type TestResult = Result<Outcome, String>;

/// Runs the whole suite and returns every failure (empty when the store conforms).
///
/// Builds its own multi-threaded tokio runtime; call it from a plain `#[test]`, not from
/// inside an async runtime.
pub fn check<F: StoreFactory>(factory: F, config: &SuiteConfig) -> Vec<Failure> {
    check_report(factory, config).failures
}

/// Runs the whole suite and returns what passed, failed and was skipped.
pub fn check_report<F: StoreFactory>(factory: F, config: &SuiteConfig) -> Report {
    let mut report = Report::default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report.failures.push(Failure {
                test: "setup",
                message: format!("cannot build a tokio runtime: {e}"),
            });
            return report;
        }
    };
    let factory = Arc::new(factory);
    if config.selects("state_machine") {
        let start = Instant::now();
        let outcome = machine::run_state_machine(&runtime, &factory, config);
        report.durations.push(("state_machine", start.elapsed()));
        record(&mut report, "state_machine", outcome, config);
    }
    for (test, outcome, took) in runtime.block_on(scenarios::run_all(&factory, config)) {
        report.durations.push((test, took));
        record(&mut report, test, outcome, config);
    }
    report
}

fn record(report: &mut Report, test: &'static str, outcome: TestResult, config: &SuiteConfig) {
    let skipped = match outcome {
        Ok(Outcome::Passed) => Vec::new(),
        Ok(Outcome::Partial(skipped)) => skipped,
        Ok(Outcome::Skipped(reason)) => vec![Skipped { test, reason }],
        Err(message) => {
            report.failures.push(Failure { test, message });
            return;
        }
    };
    let (required, skipped): (Vec<Skipped>, Vec<Skipped>) = skipped
        .into_iter()
        .partition(|s| config.require_clock && s.reason == NO_CLOCK);
    let failed = !required.is_empty();
    for s in required {
        report.failures.push(Failure {
            test: s.test,
            message: format!("skipped, and the config requires a clock: {}", s.reason),
        });
    }
    if failed {
        report.skipped.extend(skipped);
    } else if skipped.is_empty() {
        report.passed.push(test);
    } else {
        report.skipped.extend(skipped);
    }
}

/// Runs the whole suite and panics with a report of every failure; prints what was skipped.
#[track_caller]
pub fn run<F: StoreFactory>(factory: F, config: SuiteConfig) {
    let report = check_report(factory, &config);
    if std::env::var_os("GOS_CONFORMANCE_TIMES").is_some() {
        for (test, took) in &report.durations {
            eprintln!("gos-conformance: {test} took {took:.2?}");
        }
    }
    for s in &report.skipped {
        eprintln!("gos-conformance: SKIPPED {}: {}", s.test, s.reason);
    }
    if !report.failures.is_empty() {
        let lines: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        panic!(
            "the store failed {} conformance check(s):\n\n{}",
            report.failures.len(),
            lines.join("\n\n")
        );
    }
}

/// The handles of one fresh store: the created one, then reopened ones; built on `clock`
/// when one is given (`Ok(None)`: the factory cannot take a clock).
pub(crate) async fn open_handles_with<F: StoreFactory>(
    factory: &F,
    limits: Limits,
    handles: usize,
    clock: Option<Arc<dyn Clock>>,
) -> Result<Option<Vec<Arc<F::Store>>>, String> {
    let first = match clock {
        None => factory
            .create(limits)
            .await
            .map_err(|e| format!("factory.create failed: {e}"))?,
        Some(clock) => match factory
            .create_with_clock(limits, clock)
            .await
            .map_err(|e| format!("factory.create_with_clock failed: {e}"))?
        {
            Some(store) => store,
            None => return Ok(None),
        },
    };
    let mut all = vec![Arc::clone(&first)];
    for _ in 1..handles {
        all.push(
            factory
                .reopen(&first)
                .await
                .map_err(|e| format!("factory.reopen failed: {e}"))?,
        );
    }
    Ok(Some(all))
}

/// The handles of one fresh store on the system clock.
pub(crate) async fn open_handles<F: StoreFactory>(
    factory: &F,
    limits: Limits,
    handles: usize,
) -> Result<Vec<Arc<F::Store>>, String> {
    open_handles_with(factory, limits, handles, None)
        .await?
        .ok_or_else(|| "factory.create returned no store".to_owned())
}

/// The reason printed for every lease check a factory without a clock skips.
pub(crate) const NO_CLOCK: &str = "the factory cannot inject a clock \
     (StoreFactory::create_with_clock returns None), so lease expiry is not checked";

/// The reason printed for every check `SuiteConfig::skip_lifecycle` leaves out.
pub(crate) const NO_LIFECYCLE: &str =
    "SuiteConfig::skip_lifecycle is set: reader counts and leases are not checked";
