//! End to end: `gos demo` at small sizes in its three layouts (in-process memory store,
//! `--store shm` with one process per node, `--clusters 2` over QUIC gateways) exits 0, prints
//! the summary table and leaves no key in the store.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::run;

const SMALL: [&str; 8] = [
    "demo", "--nodes", "4", "--rounds", "2", "--model", "1MiB", "--quiet",
];

fn demo(extra: &[&str]) -> String {
    let mut args = SMALL.to_vec();
    args.extend_from_slice(extra);
    let out = run(&args, Duration::from_secs(60));
    let stdout = out.ok();
    for want in [
        "GOS demo: ring topology, 2 rounds, 1.0 MiB model per node",
        "round",
        "bus bytes",
        "store read",
        "bus vs store:",
        "peak memory:",
        "keys left in the store: 0",
    ] {
        assert!(stdout.contains(want), "no `{want}` in:\n{stdout}");
    }
    // Two round rows and the total row.
    for row in ["    1 ", "    2 ", "  all "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no row `{row}` in:\n{stdout}"
        );
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    stdout
}

#[test]
fn demo_in_process_memory_store() {
    let stdout = demo(&[]);
    assert!(stdout.contains("4 nodes as tasks in one process, memory store"));
}

#[test]
fn demo_shm_one_process_per_node() {
    demo(&["--store", "shm"]);
}

#[test]
fn demo_two_clusters_over_gateways() {
    let stdout = demo(&["--clusters", "2"]);
    assert!(stdout.contains("via gateway"), "{stdout}");
    assert!(stdout.contains("2 clusters"), "{stdout}");
}

#[test]
fn demo_owner_next_round_leaves_no_key_in_any_layout() {
    // `demo` itself checks `keys left in the store: 0`.
    demo(&["--delete", "owner-next-round"]);
    demo(&["--delete", "owner-next-round", "--store", "shm"]);
    demo(&["--delete", "owner-next-round", "--clusters", "2"]);
}

#[test]
fn demo_bad_flags_are_one_line() {
    let out = run(
        &["demo", "--nodes", "4", "--clusters", "5", "--quiet"],
        Duration::from_secs(20),
    );
    let line = out.one_line_error();
    assert!(line.contains("--clusters"), "{line}");
}
