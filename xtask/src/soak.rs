//! `cargo xtask soak`: the long randomized runs that do not belong in CI. The conformance
//! state machine with many cases and the shm stress (`GOS_SOAK=1`), then the gateway soak
//! (tests/tests/gateway_soak.rs) for `--seconds`.

use anyhow::Result;

use crate::cargo;

/// The gateway soak's test, run on its own for `--seconds` after the rest.
const GATEWAY_SOAK: &str = "clients_and_gateway_killed_and_stopped_at_random_leave_the_store_whole";

/// Long randomized runs: the conformance suite with many proptest cases, the shm stress, then
/// client processes and a gateway process killed and stopped at random over an shm store.
#[derive(clap::Args)]
pub(crate) struct Soak {
    /// Proptest cases for the conformance state machine.
    #[arg(long, default_value_t = 5_000)]
    cases: u32,
    /// How long the gateway soak runs, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Client processes of the gateway soak.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Replays a gateway soak whose seed a run printed.
    #[arg(long)]
    seed: Option<u64>,
}

pub(crate) fn run(soak: Soak) -> Result<()> {
    let cases = soak.cases.to_string();
    cargo(
        &[
            "test",
            "--workspace",
            "--release",
            "--",
            "--include-ignored",
            "--skip",
            GATEWAY_SOAK,
        ],
        &[("GOS_CONFORMANCE_CASES", &cases), ("GOS_SOAK", "1")],
    )?;
    let seconds = soak.seconds.to_string();
    let clients = soak.clients.to_string();
    let seed = soak.seed.map(|s| s.to_string());
    let mut envs = vec![
        ("GOS_SOAK_SECONDS", seconds.as_str()),
        ("GOS_SOAK_CLIENTS", clients.as_str()),
    ];
    if let Some(seed) = &seed {
        envs.push(("GOS_SOAK_SEED", seed));
    }
    cargo(
        &[
            "test",
            "-p",
            "gos-e2e",
            "--release",
            "--test",
            "gateway_soak",
            "--",
            "--exact",
            GATEWAY_SOAK,
            "--nocapture",
        ],
        &envs,
    )
}
