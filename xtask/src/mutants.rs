//! `cargo xtask mutants`: mutation testing of `gos-store-memory` with the conformance suite as
//! its test (cargo-mutants), bounded by a timeout, a smaller suite and an optional file filter
//! or diff. The score and every surviving mutant are recorded in docs/conformance.md.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Options of `cargo xtask mutants`.
#[derive(Debug, Args)]
pub(crate) struct Mutants {
    /// The package whose code is mutated.
    #[arg(long, default_value = "gos-store-memory")]
    package: String,
    /// Only mutate files matching this glob (repeatable), e.g. `crates/gos-store-memory/src/lib.rs`.
    #[arg(long)]
    file: Vec<String>,
    /// Only mutate code touched by this diff (`git diff main > my.diff`): the short CI run.
    #[arg(long)]
    in_diff: Option<PathBuf>,
    /// Seconds a mutant's build or test may take before it counts as a timeout.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// State-machine cases of the conformance suite for each mutant.
    #[arg(long, default_value_t = 64)]
    cases: u32,
    /// Rounds of the suite's lined-up races for each mutant.
    #[arg(long, default_value_t = 40)]
    race_rounds: u32,
    /// Parallel build/test jobs.
    #[arg(long, default_value_t = 1)]
    jobs: u32,
    /// Where cargo-mutants writes `mutants.out/` (default: target/).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Only list the mutants.
    #[arg(long)]
    list: bool,
}

pub(crate) fn run(m: Mutants, root: PathBuf) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let have = Command::new(&cargo)
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        bail!("cargo-mutants is not installed: `cargo install cargo-mutants --locked`");
    }
    let output = m.output.unwrap_or_else(|| root.join("target"));
    let mut args: Vec<String> = vec![
        "mutants".into(),
        "--package".into(),
        m.package,
        "--timeout".into(),
        m.timeout.to_string(),
        "--build-timeout".into(),
        m.timeout.to_string(),
        "--jobs".into(),
        m.jobs.to_string(),
        "--copy-target".into(),
        "true".into(),
        "--output".into(),
        output.display().to_string(),
    ];
    for f in m.file {
        args.extend(["--file".into(), f]);
    }
    if let Some(diff) = m.in_diff {
        args.extend(["--in-diff".into(), diff.display().to_string()]);
    }
    if m.list {
        args.push("--list".into());
    }
    // The package's own tests: the conformance suite and the focused ones.
    args.extend(["--".into(), "--tests".into()]);
    println!(
        "$ GOS_CONFORMANCE_CASES={} GOS_CONFORMANCE_RACE_ROUNDS={} cargo {}",
        m.cases,
        m.race_rounds,
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(&args)
        .env("GOS_CONFORMANCE_CASES", m.cases.to_string())
        .env("GOS_CONFORMANCE_RACE_ROUNDS", m.race_rounds.to_string())
        .current_dir(&root)
        .status()
        .context("running cargo mutants")?;
    println!(
        "xtask mutants: results in {}",
        output.join("mutants.out").display()
    );
    // cargo-mutants exits 2 when mutants survived, 3 on timeouts: report, do not hide.
    if !status.success() {
        bail!("cargo mutants reported missed or timed-out mutants ({status})");
    }
    Ok(())
}
