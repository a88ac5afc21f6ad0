//! The conformance suite of GOS stores: what a correct [`ObjectStore`] is, as executable tests.
//!
//! Two parts, both run by one entry point, [`run`]:
//!
//! 1. **A state machine** ([`model`]): proptest-state-machine generates sequences of every
//!    trait operation (puts in both modes, gets, deletes, listings and deletes by prefix, `len`,
//!    `stats`, reservations committed or dropped) over a small key space with tight and roomy
//!    [`Limits`], drives them against the store and a `BTreeMap` reference model side by side,
//!    checks every postcondition after every step, and shrinks a failure to the shortest
//!    sequence. Operations may be spread over several handles on the same store
//!    ([`SuiteConfig::handles`]), as separate processes or clients would hold them.
//! 2. **Named scenarios** ([`scenarios`]): atomic overwrite under concurrent readers, a held
//!    `Bytes` surviving delete and overwrite, limit errors changing nothing, many concurrent
//!    writers and readers, a 64 MiB value round trip, reservations, `Create` races.
//!
//! A backend crate runs it all from one test:
//!
//! ```
//! use std::sync::Arc;
//! use gos_conformance::{StoreFactory, SuiteConfig};
//! use gos_store::{Limits, Result};
//! use gos_store_memory::MemoryStore;
//!
//! struct Memory;
//!
//! #[async_trait::async_trait]
//! impl StoreFactory for Memory {
//!     type Store = MemoryStore;
//!     async fn create(&self, limits: Limits) -> Result<Arc<MemoryStore>> {
//!         Ok(Arc::new(MemoryStore::new(limits)))
//!     }
//! }
//!
//! // In a backend's `tests/conformance.rs` this is the body of a `#[test]`:
//! gos_conformance::run(Memory, SuiteConfig::default().cases(16).big_value_size(1 << 20));
//! ```
//!
//! [`check`] returns the failures instead of panicking, which is how this crate's own tests
//! prove that the suite catches broken stores. See `docs/writing-a-backend.md`.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gos_store::{Limits, ObjectStore};

pub mod model;
pub mod scenarios;

/// Makes stores for the suite: one fresh store per test case.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// The store type under test.
    type Store: ObjectStore;

    /// A new, empty store enforcing `limits`.
    async fn create(&self, limits: Limits) -> gos_store::Result<Arc<Self::Store>>;

    /// Another handle on the same store, as another process or client would open it.
    /// The default shares the handle.
    async fn reopen(&self, store: &Arc<Self::Store>) -> gos_store::Result<Arc<Self::Store>> {
        Ok(Arc::clone(store))
    }
}

/// How much of the suite to run, and how hard.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Proptest cases of the state machine (default 256, or `GOS_CONFORMANCE_CASES`).
    pub cases: u32,
    /// Most operations in one generated sequence (default 48).
    pub max_steps: usize,
    /// Handles the state machine spreads its operations over (default 1).
    pub handles: usize,
    /// Size of the big-value round trip (default 64 MiB).
    pub big_value_size: usize,
    /// Concurrent tasks in the concurrency scenarios (default 8).
    pub tasks: usize,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        let cases = std::env::var("GOS_CONFORMANCE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        SuiteConfig {
            cases,
            max_steps: 48,
            handles: 1,
            big_value_size: 64 << 20,
            tasks: 8,
        }
    }
}

impl SuiteConfig {
    /// Sets the number of proptest cases.
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = cases;
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

    /// Sets the number of concurrent tasks in the concurrency scenarios.
    pub fn tasks(mut self, tasks: usize) -> Self {
        self.tasks = tasks.max(1);
        self
    }
}

/// One failed check of the suite.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The test that failed: `state_machine` or a scenario name.
    pub test: &'static str,
    /// What was wrong (for the state machine: the shrunk sequence and the violated condition).
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.test, self.message)
    }
}

/// Runs the whole suite and returns every failure (empty when the store conforms).
///
/// Builds its own multi-threaded tokio runtime; call it from a plain `#[test]`, not from
/// inside an async runtime.
pub fn check<F: StoreFactory>(factory: F, config: &SuiteConfig) -> Vec<Failure> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return vec![Failure {
                test: "setup",
                message: format!("cannot build a tokio runtime: {e}"),
            }];
        }
    };
    let factory = Arc::new(factory);
    let mut failures = Vec::new();
    if let Err(message) = model::run_state_machine(&runtime, &factory, config) {
        failures.push(Failure {
            test: "state_machine",
            message,
        });
    }
    for (test, result) in runtime.block_on(scenarios::run_all(&factory, config)) {
        if let Err(message) = result {
            failures.push(Failure { test, message });
        }
    }
    failures
}

/// Runs the whole suite and panics with a report of every failure.
#[track_caller]
pub fn run<F: StoreFactory>(factory: F, config: SuiteConfig) {
    let failures = check(factory, &config);
    if !failures.is_empty() {
        let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
        panic!(
            "the store failed {} conformance check(s):\n\n{}",
            failures.len(),
            report.join("\n\n")
        );
    }
}

/// Opens the `handles` handles of one fresh store: the created one, then reopened ones.
pub(crate) async fn open_handles<F: StoreFactory>(
    factory: &F,
    limits: Limits,
    handles: usize,
) -> Result<Vec<Arc<F::Store>>, String> {
    let first = factory
        .create(limits)
        .await
        .map_err(|e| format!("factory.create failed: {e}"))?;
    let mut all = vec![Arc::clone(&first)];
    for _ in 1..handles {
        all.push(
            factory
                .reopen(&first)
                .await
                .map_err(|e| format!("factory.reopen failed: {e}"))?,
        );
    }
    Ok(all)
}
