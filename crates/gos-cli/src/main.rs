//! `gos`: run a simulated federation (`demo`), serve a cluster (`serve`), inspect or change a
//! running store (`store`), make a federation's certificates (`certs`), time rounds (`bench`).
#![forbid(unsafe_code)]

mod bench;
mod certs;
mod demo;
mod demo_redis;
mod exit;
mod instrument;
mod metrics;
mod progress;
mod relay;
mod serve;
mod store;
mod units;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::exit::Exit;

/// GOS, the Global Object Store: model weights through an object store, keys through the bus.
#[derive(Debug, Parser)]
#[command(name = "gos", version, about, long_about = None, after_help = EXIT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log more (repeat for more detail); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a simulated federation and print a summary table.
    #[command(after_help = demo::DEMO_HELP)]
    Demo(demo::DemoArgs),
    /// Run a long-lived cluster: a shared-memory store and its gateway, from a config file.
    Serve(serve::ServeArgs),
    /// Inspect or change a running store (shared memory by name, or remote through a gateway).
    Store(store::StoreArgs),
    /// Make a federation CA and cluster certificates.
    Certs(certs::CertsArgs),
    /// Time rounds of share, gather and release on this machine, per store, topology and size.
    Bench(bench::BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(
        after_help = "Example (bash): gos completions bash > ~/.local/share/bash-completion/completions/gos"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// One node of `gos demo --store shm`, run as its own process (internal).
    #[command(hide = true)]
    DemoNode(demo::NodeArgs),
}

const EXIT_HELP: &str = "\
Exit codes: 0 success; 1 error (one line on stderr starting `error:`); 2 usage error (a bad
flag or value; one line); 3 not found (a key, or a shared-memory store by name).

Logs go to stderr: -v for info, -vv for debug (one line per store request; `gos serve` adds
a span per gateway request: peer, op, key, bytes, duration), RUST_LOG to choose; colour only
on a terminal and never with NO_COLOR set. Progress bars: stderr, on a terminal only.";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_tracing(cli.verbose);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "gos", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command
        && let Some(workers) = serve::runtime_workers(args)
    {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Store(args) => store::run(args).await,
            Command::Certs(args) => certs::run(args),
            Command::Bench(args) => bench::run(args).await,
            Command::DemoNode(args) => demo::run_node(args).await,
            Command::Completions { .. } => Ok(()),
        }
    });
    // Do not wait for blocked reads (a node's stdin) to finish: everything worth waiting for
    // has been awaited.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable line, written at once (node processes share a terminal).
            let line = format!("error: {}\n", one_line(&e));
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            Exit::of(&e).code()
        }
    }
}

/// A command line clap refused: help and version print as usual (exit 0); an error is one
/// line on stderr, exit code 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let line = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap would print the whole help: one line instead, like every usage error.
        exit::usage_line(&format!("error: a command is required\n{rendered}"))
    } else {
        exit::usage_line(&rendered)
    };
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!("error: {line}\n").as_bytes(),
    );
    Exit::Usage.code()
}

/// The error and its causes on one line, no backtrace. A cause whose text the line already
/// holds (many errors print their source in their own message) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .try_init();
}

/// Colour in logs only on a terminal, and not when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{one_line, use_colour};

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let source = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(gos::StoreError::backend("shm", source))
            .context("node 3 sharing round 0");
        assert_eq!(
            one_line(&e),
            "node 3 sharing round 0: shm backend error: disk on fire"
        );
        let e = anyhow::anyhow!("outer").context("middle");
        assert_eq!(one_line(&e), "middle: outer");
    }
}
