//! `cargo xtask shm-fuzz`: the long run of the shared-memory store's corruption fuzzer
//! (`crates/gos-store-shm/tests/corruption.rs`; CI runs 120 cases of it as a normal test).
//! Each case damages the tables of a closed store file and opens, writes and reads it in a
//! child process: every outcome must be a typed error or a consistent store, never a signal.

use anyhow::Result;

/// Runs `cases` damaged stores from `seed`, in release mode.
pub(crate) fn run(cases: u64, seed: u64) -> Result<()> {
    let (cases, seed) = (cases.to_string(), seed.to_string());
    super::cargo(
        &[
            "test",
            "--release",
            "-p",
            "gos-store-shm",
            "--test",
            "corruption",
            "--",
            "--nocapture",
            "damaged_tables",
        ],
        &[("GOS_SHM_FUZZ_CASES", &cases), ("GOS_SHM_FUZZ_SEED", &seed)],
    )
}
