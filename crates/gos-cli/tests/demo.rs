//! End to end: `gos demo` at small sizes in its three layouts (in-process memory store,
//! `--store shm` with one process per node, `--clusters 2` over QUIC gateways) exits 0, prints
//! the summary table and leaves no key in the store (`keys()` is empty: no bookkeeping keys
//! either); a model larger than the memory is an error line; SIGINT and SIGTERM stop it with
//! its node processes and its store removed.
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
fn demo_shm_with_many_node_processes() {
    // With dozens of processes the first ones run before the last are spawned: every mailbox
    // must exist before any node publishes.
    let out = run(
        &[
            "demo", "--store", "shm", "--nodes", "48", "--rounds", "2", "--model", "64KiB",
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    let stdout = out.ok();
    assert!(stdout.contains("keys left in the store: 0"), "{stdout}");
    // A full graph of 70 nodes: 4 830 readings a round, each counted with its key (no marker
    // keys), so a store sized for the models suffices.
    for layout in [&["--store", "shm"][..], &[][..]] {
        let mut args = vec![
            "demo",
            "--nodes",
            "70",
            "--topology",
            "full",
            "--rounds",
            "2",
        ];
        args.extend(["--model", "4KiB", "--quiet"]);
        args.extend_from_slice(layout);
        let stdout = run(&args, Duration::from_secs(60)).ok();
        assert!(stdout.contains("keys left in the store: 0"), "{stdout}");
    }
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

/// The children of `pid` whose command line contains `needle`.
fn children_of(pid: u32, needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: the fields after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(pid) && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(child);
        }
    }
    found
}

#[test]
fn a_killed_node_process_stops_the_shm_demo_at_once_and_cleanly() {
    let child = common::gos()
        .args([
            "demo", "--store", "shm", "--nodes", "4", "--rounds", "100000", "--model", "64KiB",
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = common::Guard::new(child);
    // Wait for the node processes, then kill one of them.
    let start = std::time::Instant::now();
    let nodes = loop {
        let nodes = children_of(pid, "demo-node");
        if nodes.len() == 4 {
            break nodes;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the node processes did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &nodes[1].to_string()])
            .status()
            .unwrap()
            .success()
    );
    // The driver notices at once (it would otherwise wait for the dead node forever).
    let status = guard
        .wait(Duration::from_secs(20))
        .expect("the demo stopped");
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(guard.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("exited before finishing"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // No node process and no shared-memory store is left behind.
    let gone = |n: &u32| {
        std::fs::read_to_string(format!("/proc/{n}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    };
    let start = std::time::Instant::now();
    while !nodes.iter().all(gone) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "node processes outlived the demo"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !std::path::Path::new(&format!("/dev/shm/gos-demo-{pid}")).exists(),
        "the store was left behind"
    );
}

#[test]
fn a_model_larger_than_the_memory_is_an_error_line_not_an_abort() {
    let line = run(
        &["demo", "--model", "64TiB", "--quiet"],
        Duration::from_secs(20),
    )
    .one_line_error();
    assert!(line.contains("of memory"), "{line}");
    assert!(line.contains("--model"), "{line}");
}

/// True when the process `pid` is gone or a zombie (dead, not yet reaped).
fn dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Starts `gos args...` with its stores in a directory of its own, waits until `ready` says
/// so, sends `signal` and checks that it ends with an error line naming the signal, that
/// every child it had is dead and that its store directory is empty.
fn stops_cleanly_on(signal: &str, args: &[&str], node_processes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let child = common::gos()
        .args(args)
        .env("GOS_SHM_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = common::Guard::new(child);
    let start = std::time::Instant::now();
    let shm = args.contains(&"shm");
    let nodes = loop {
        let nodes = children_of(pid, "demo-node");
        let store = std::fs::read_dir(dir.path()).unwrap().count() > 0;
        if nodes.len() == node_processes && (store || !shm) {
            break nodes;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not started: {} node processes",
            nodes.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the rounds run for a moment.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        guard.wait(Duration::from_millis(1)).is_none(),
        "ended early"
    );
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = guard
        .wait(Duration::from_secs(20))
        .expect("the run ended after the signal");
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not killed by the signal"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(guard.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!("stopped by SIG{signal}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let start = std::time::Instant::now();
    while !nodes.iter().all(|n| dead(*n)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "node processes outlived the run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

const LONG_SHM_DEMO: [&str; 10] = [
    "demo", "--store", "shm", "--nodes", "4", "--rounds", "1000000", "--model", "64KiB", "--quiet",
];

#[test]
fn sigterm_stops_the_shm_demo_with_its_processes_and_its_store() {
    stops_cleanly_on("TERM", &LONG_SHM_DEMO, 4);
}

#[test]
fn ctrl_c_stops_the_shm_demo_with_its_processes_and_its_store() {
    stops_cleanly_on("INT", &LONG_SHM_DEMO, 4);
}

#[test]
fn ctrl_c_stops_the_in_process_demo() {
    stops_cleanly_on(
        "INT",
        &[
            "demo", "--nodes", "4", "--rounds", "1000000", "--model", "64KiB", "--quiet",
        ],
        0,
    );
}

#[test]
fn sigterm_stops_the_bench_and_removes_its_store() {
    stops_cleanly_on(
        "TERM",
        &[
            "bench",
            "--nodes",
            "4",
            "--rounds",
            "1000000",
            "--models",
            "64KiB",
            "--stores",
            "shm",
            "--topologies",
            "ring",
        ],
        0,
    );
}
