//! End to end: `gos demo --store redis` against real Redis servers started by the tests
//! (`gos::redis::testing`: a standalone `redis-server` and a 3-master cluster on free loopback
//! ports, stopped by pid when dropped). The demo starts no server itself; it runs its rounds,
//! prints its table and leaves no key on any server, also when stopped by SIGINT mid-run.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run_cmd;
use gos::redis::testing;

/// The keys a server holds (`DBSIZE`), read with `redis-cli`.
fn dbsize(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "dbsize"])
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli dbsize failed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn total_keys(redis: &testing::Redis) -> u64 {
    redis.servers.iter().map(|s| dbsize(s.port)).sum()
}

const SMALL: [&str; 10] = [
    "demo", "--store", "redis", "--nodes", "4", "--rounds", "2", "--model", "2MiB", "--quiet",
];

fn check_table(stdout: &str) {
    for want in [
        "GOS demo: ring topology, 2 rounds, 2.0 MiB model per node",
        "bus vs store:",
        "keys left in the store: 0",
    ] {
        assert!(stdout.contains(want), "no `{want}` in:\n{stdout}");
    }
    for row in ["    1 ", "    2 ", "  all "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no row `{row}` in:\n{stdout}"
        );
    }
}

#[test]
fn demo_on_a_standalone_redis_leaves_no_key() {
    let redis = testing::standalone();
    let out = run_cmd(
        common::gos()
            .args(SMALL)
            .args(["--redis-url", &redis.urls[0]])
            .env_remove("GOS_REDIS_URL"),
        Duration::from_secs(120),
    );
    let stdout = out.ok();
    check_table(&stdout);
    assert!(
        stdout.contains("standalone on redis://127.0.0.1:"),
        "{stdout}"
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(total_keys(&redis), 0, "keys left on the server");
}

#[test]
fn demo_on_a_redis_cluster_from_the_environment_leaves_no_key() {
    let redis = testing::cluster();
    let out = run_cmd(
        common::gos()
            .args(SMALL)
            .args(["--topology", "full"])
            .env("GOS_REDIS_URL", redis.urls.join(",")),
        Duration::from_secs(120),
    );
    let stdout = out.ok();
    assert!(stdout.contains("full topology"), "{stdout}");
    assert!(stdout.contains("keys left in the store: 0"), "{stdout}");
    assert!(stdout.contains(", cluster on redis://"), "{stdout}");
    assert_eq!(total_keys(&redis), 0, "keys left on the masters");
}

#[test]
fn demo_redis_without_a_url_or_with_a_dead_one_is_one_error_line() {
    let out = run_cmd(
        common::gos().args(SMALL).env_remove("GOS_REDIS_URL"),
        Duration::from_secs(20),
    );
    let line = out.one_line_error();
    assert!(line.contains("--redis-url"), "{line}");
    assert!(line.contains("redis-server --port 6379"), "{line}");
    // A server started and stopped: nothing listens there.
    let port = testing::standalone().servers[0].port;
    let out = run_cmd(
        common::gos()
            .args(SMALL)
            .args(["--redis-url", &format!("redis://127.0.0.1:{port}")]),
        Duration::from_secs(60),
    );
    let line = out.one_line_error();
    assert!(line.contains("connecting to redis at"), "{line}");
    // --redis-url belongs to --store redis.
    let out = run_cmd(
        common::gos().args(["demo", "--redis-url", "redis://127.0.0.1:1", "--quiet"]),
        Duration::from_secs(20),
    );
    let line = out.one_line_error();
    assert!(
        line.contains("--redis-url applies to --store redis"),
        "{line}"
    );
}

#[test]
fn ctrl_c_stops_the_redis_demo_and_removes_its_keys() {
    let redis = testing::standalone();
    let port = redis.servers[0].port;
    let child = common::gos()
        .args([
            "demo", "--store", "redis", "--nodes", "4", "--rounds", "1000000", "--model", "256KiB",
            "--quiet",
        ])
        .args(["--redis-url", &redis.urls[0]])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = common::Guard::new(child);
    // Wait until the rounds have put keys, then let them run a moment.
    let start = Instant::now();
    while dbsize(port) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the demo wrote nothing"
        );
        assert!(
            guard.wait(Duration::from_millis(20)).is_none(),
            "ended early"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        guard.wait(Duration::from_millis(1)).is_none(),
        "ended early"
    );
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = guard
        .wait(Duration::from_secs(40))
        .expect("the run ended after the signal");
    assert_eq!(status.code(), Some(1), "an error exit, not killed");
    let mut stderr = String::new();
    std::io::Read::read_to_string(guard.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(dbsize(port), 0, "keys left after the signal");
}
