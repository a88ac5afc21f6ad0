//! `gos`: run a simulated federation (`demo`), serve a cluster (`serve`), inspect or change a
//! running store (`store`), make a federation's certificates (`certs`), time rounds (`bench`).
#![forbid(unsafe_code)]

mod bench;
mod certs;
mod demo;
mod relay;
mod serve;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// GOS, the Global Object Store: model weights through an object store, keys through the bus.
#[derive(Debug, Parser)]
#[command(name = "gos", version, about, long_about = None)]
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
    Demo(demo::DemoArgs),
    /// Run a long-lived cluster: a shared-memory store and its gateway, from a config file.
    Serve(serve::ServeArgs),
    /// Inspect or change a running store (shared memory by name, or remote through a gateway).
    Store(store::StoreArgs),
    /// Make a federation CA and cluster certificates.
    Certs(certs::CertsArgs),
    /// Time rounds of share, gather and release on this machine, per store, topology and size.
    Bench(bench::BenchArgs),
    /// One node of `gos demo --store shm`, run as its own process (internal).
    #[command(hide = true)]
    DemoNode(demo::NodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            ExitCode::FAILURE
        }
    }
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
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::one_line;

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
