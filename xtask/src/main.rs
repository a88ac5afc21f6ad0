//! Project automation: `cargo xtask ci` runs the gates every change passes; `cargo xtask soak`
//! and `cargo xtask fuzz` run the long checks that do not belong in CI.

mod pytest;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod mutants;
mod shm_fuzz;
mod soak;

#[derive(Parser)]
#[command(about = "GOS project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// fmt --check, clippy -D warnings, the tests (as the README runs them), doc with -D warnings.
    Ci,
    /// The tests alone, as the README runs them: the Rust tests, then the Python package's
    /// (pytest, in the virtual environment `target/py-venv` it creates).
    Test,
    /// Long randomized runs: the conformance suite with many proptest cases, the shm stress,
    /// the gateway soak (client and gateway processes killed and stopped at random).
    Soak(soak::Soak),
    /// Mutation testing of gos-store-memory against the conformance suite (cargo-mutants).
    Mutants(mutants::Mutants),
    /// Runs the cargo-fuzz targets under fuzz/ for a while each (`cargo install cargo-fuzz`).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The sanitizer: `none` works on the stable toolchain; `address` needs nightly.
        #[arg(long, default_value = "none")]
        sanitizer: String,
    },
    /// The shm store's corruption fuzzer, long: damaged store files opened and used in child
    /// processes (a typed error or a consistent store, never a signal).
    ShmFuzz {
        /// Damaged stores to try.
        #[arg(long, default_value_t = 20_000)]
        cases: u64,
        /// Seed of the damage.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Ci => {
            cargo(&["fmt", "--all", "--check"], &[])?;
            cargo(
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )?;
            test()?;
            cargo(
                &["doc", "--workspace", "--no-deps"],
                &[("RUSTDOCFLAGS", "-D warnings")],
            )?;
            println!("xtask ci: every gate passed");
        }
        Task::Test => test()?,
        Task::Soak(soak) => soak::run(soak)?,
        Task::ShmFuzz { cases, seed } => shm_fuzz::run(cases, seed)?,
        Task::Mutants(m) => mutants::run(m, root()?)?,
        Task::Fuzz { seconds, sanitizer } => {
            let root = root()?;
            let fuzz = root.join("fuzz");
            if !fuzz.exists() {
                bail!("no fuzz/ directory with cargo-fuzz targets");
            }
            let list = Command::new("cargo")
                .args(["fuzz", "list"])
                .current_dir(&root)
                .output()
                .context("running `cargo fuzz list` (install with `cargo install cargo-fuzz`)")?;
            let max_time = format!("-max_total_time={seconds}");
            for target in String::from_utf8(list.stdout)?.lines() {
                let mut args = vec![];
                if sanitizer != "none" {
                    args.push("+nightly");
                }
                args.extend([
                    "fuzz",
                    "run",
                    target,
                    "--sanitizer",
                    &sanitizer,
                    "--",
                    &max_time,
                ]);
                println!("$ cargo {}", args.join(" "));
                let status = Command::new("cargo")
                    .args(&args)
                    .current_dir(&root)
                    .status()?;
                if !status.success() {
                    bail!("fuzz target {target} failed");
                }
            }
        }
    }
    Ok(())
}

/// The README's test command: the Rust tests, then the Python package's.
fn test() -> Result<()> {
    let root = root()?;
    let venv = pytest::Venv::ensure(&root)?;
    let python = venv.python().to_string_lossy().into_owned();
    cargo(&["test", "--workspace"], &[("PYO3_PYTHON", &python)])?;
    venv.test(&root)
}

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root()?)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

fn root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(dir
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}
