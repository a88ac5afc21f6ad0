//! End to end: `gos bench` at small sizes times every store, topology and model size asked
//! for, shows the same bus traffic for every model size, and leaves every store empty.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::run;

#[test]
fn bench_prints_a_row_per_configuration() {
    let out = run(
        &[
            "bench",
            "--nodes",
            "4",
            "--rounds",
            "2",
            "--models",
            "64KiB,1MiB",
        ],
        Duration::from_secs(60),
    );
    let stdout = out.ok();
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("memory ") || l.starts_with("shm "))
        .collect();
    assert_eq!(
        rows.len(),
        8,
        "2 stores x 2 topologies x 2 sizes:\n{stdout}"
    );
    // For each store and topology, the bus columns are equal for both sizes.
    for pair in rows.chunks(2) {
        let bus = |row: &str| {
            row.split_whitespace()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(bus(pair[0]), bus(pair[1]), "{stdout}");
    }
    assert!(stdout.contains("only keys travel"), "{stdout}");
    // `gos bench` checks `keys()` of every store after its rounds (an error otherwise).
    assert!(
        stdout.contains("every store was empty after its rounds"),
        "{stdout}"
    );
}

#[test]
fn bench_refuses_bad_arguments_in_one_line() {
    let line = run(&["bench", "--nodes", "2"], Duration::from_secs(20)).one_line_error();
    assert!(line.contains("--nodes must be at least 3"), "{line}");
    // A flag clap cannot parse is a usage error (exit 2, clap's own message).
    let out = run(&["bench", "--models", "12XB"], Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.starts_with("error: invalid value '12XB'"),
        "{}",
        out.stderr
    );
}
