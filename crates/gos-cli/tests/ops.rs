//! End to end, what an operator or a script relies on: `--json` outputs, the exit-code table,
//! one-line usage errors, GOS_* variables, `-` for stdin/stdout, `gos store ls|rm`, bounded
//! `put --file`, plain logs, completions, `gos serve` refusing a store with other limits, and
//! the Prometheus endpoint scraped from a running `gos serve`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{SHORT, ShmName, gos, make_certs, pattern, run, run_cmd, serve, write_config};
use gos::shm::{ShmConfig, ShmStore};

fn make_store(name: &ShmName, capacity: u64) -> ShmStore {
    ShmStore::create(
        &name.0,
        ShmConfig::new(gos::Limits::with_capacity(capacity)),
    )
    .unwrap()
}

fn json(out: &common::Output) -> serde_json::Value {
    let text = out.ok();
    assert_eq!(
        text.lines().count(),
        1,
        "one JSON document on one line: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn json_outputs_parse_and_the_exit_codes_hold() {
    let shm = ShmName::new("json");
    drop(make_store(&shm, 1 << 20));
    let s = shm.0.as_str();

    let put = json(&run(
        &[
            "store",
            "--shm",
            s,
            "--json",
            "put",
            "fed/node_0/round_1",
            "--value",
            "hello",
        ],
        SHORT,
    ));
    assert_eq!(put["put"], "fed/node_0/round_1");
    assert_eq!(put["bytes"], 5);
    run(
        &[
            "store",
            "--shm",
            s,
            "put",
            "fed/node_1/round_1",
            "--value",
            "hi",
        ],
        SHORT,
    )
    .ok();

    // --json after the subcommand works too (the flag is global to `gos store`).
    let stats = json(&run(&["store", "--shm", s, "stats", "--json"], SHORT));
    assert_eq!(stats["entries"], 2);
    assert_eq!(stats["bytes"], 7);
    assert_eq!(stats["capacity"], 1 << 20);
    assert_eq!(stats["available"], (1 << 20) - 7);
    let limits = gos::ObjectStore::limits(&ShmStore::open(s).unwrap());
    assert_eq!(stats["max_entries"], limits.max_entries);
    assert_eq!(stats["max_value_size"], limits.max_value_size);

    let keys = json(&run(
        &["store", "--shm", s, "--json", "keys", "--prefix", "fed"],
        SHORT,
    ));
    assert_eq!(
        keys["keys"],
        serde_json::json!(["fed/node_0/round_1", "fed/node_1/round_1"])
    );
    assert_eq!(keys["prefix"], "fed");

    let head = json(&run(
        &["store", "--shm", s, "--json", "head", "fed/node_0/round_1"],
        SHORT,
    ));
    assert_eq!(head["bytes"], 5);
    assert_eq!(head["readers_left"], serde_json::Value::Null);
    assert_eq!(head["expires_at_unix_ms"], serde_json::Value::Null);
    // The digest the store keeps with the value: XXH3-128 of `hello`.
    assert_eq!(
        head["digest"],
        gos::Digest::of(b"hello").to_string(),
        "{head}"
    );

    // The exit-code table: 0 ok, 1 error, 2 usage, 3 not found.
    let missing = "fed/node_9/round_1";
    let line = run(&["store", "--shm", s, "get", missing], SHORT).not_found_error();
    assert!(line.contains("not found"), "{line}");
    run(&["store", "--shm", s, "head", missing], SHORT).not_found_error();
    run(&["store", "--shm", s, "delete", missing], SHORT).not_found_error();
    run(&["store", "--shm", "no-such-store-xyz", "stats"], SHORT).not_found_error();
    let line = run(&["store", "--shm", s, "frobnicate"], SHORT).usage_error();
    assert!(
        line.contains("frobnicate") && line.contains("--help"),
        "{line}"
    );
    run(&["--no-such-flag"], SHORT).usage_error();
    let line = run(&["store", "--shm", s], SHORT).usage_error();
    assert!(
        line.contains("requires a subcommand") && line.contains("gos store"),
        "{line}"
    );
    let line = run(&[], SHORT).usage_error();
    assert!(line.contains("a command is required"), "{line}");
    run(
        &["store", "--shm", s, "--json", "get", "fed/node_0/round_1"],
        SHORT,
    )
    .usage_error();
    let line = run(
        &[
            "store", "--shm", s, "put", "fed/x", "--value", "v", "--create",
        ],
        SHORT,
    )
    .ok();
    assert!(line.contains("put fed/x"), "{line}");
    run(
        &[
            "store", "--shm", s, "put", "fed/x", "--value", "v", "--create",
        ],
        SHORT,
    )
    .one_line_error();
    // Help is not an error.
    assert!(run(&["store", "--help"], SHORT).ok().contains("GOS_REMOTE"));
    assert!(run(&["--help"], SHORT).ok().contains("3 not found"));
}

#[test]
fn bad_keys_are_refused_without_repeating_them_whole() {
    let shm = ShmName::new("keys");
    drop(make_store(&shm, 1 << 20));
    let long = format!("fed/{}", "k".repeat(1021));
    assert_eq!(long.len(), 1025);
    let line = run(&["store", "--shm", &shm.0, "get", &long], SHORT).one_line_error();
    assert!(line.contains("1025 bytes"), "{line}");
    assert!(
        line.len() < 300,
        "the key is repeated whole: {} bytes",
        line.len()
    );
    for key in ["fed/../other", "fed/./x", ".."] {
        let line = run(
            &["store", "--shm", &shm.0, "put", key, "--value", "v"],
            SHORT,
        )
        .one_line_error();
        assert!(line.contains("are not allowed"), "{key}: {line}");
    }
}

#[test]
fn put_from_an_endless_file_is_refused_early_and_dash_is_stdin_and_stdout() {
    let shm = ShmName::new("zero");
    drop(make_store(&shm, 1 << 20));
    let s = shm.0.as_str();
    // /dev/zero never ends: read up to the largest value plus one byte, then refused.
    let out = run(
        &["store", "--shm", s, "put", "fed/z", "--file", "/dev/zero"],
        SHORT,
    );
    let line = out.one_line_error();
    assert!(line.contains("larger than the maximum"), "{line}");
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    // A regular file that is too large is refused before it is read.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 40)
        .unwrap(); // sparse, 1 TiB
    let out = run(
        &[
            "store",
            "--shm",
            s,
            "put",
            "fed/z",
            "--file",
            big.to_str().unwrap(),
        ],
        SHORT,
    );
    assert!(out.one_line_error().contains("1.0 TiB"), "{}", out.stderr);

    // `-`: stdin for put, stdout for get.
    let value = pattern(100_000, 7);
    let mut child = gos()
        .args(["store", "--shm", s, "put", "fed/stdin", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&value).unwrap();
    let mut guard = common::Guard::new(child);
    let status = guard.wait(SHORT).expect("put from stdin finished");
    assert!(status.success());
    let out = run(
        &["store", "--shm", s, "get", "fed/stdin", "--out", "-"],
        SHORT,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, value);
}

#[test]
fn environment_variables_name_the_store() {
    let shm = ShmName::new("env");
    drop(make_store(&shm, 1 << 20));
    let out = run_cmd(
        gos()
            .env("GOS_SHM", &shm.0)
            .args(["store", "put", "fed/e", "--value", "env"]),
        SHORT,
    );
    out.ok();
    let out = run_cmd(
        gos()
            .env("GOS_SHM", &shm.0)
            .args(["store", "--json", "keys"]),
        SHORT,
    );
    assert_eq!(json(&out)["keys"], serde_json::json!(["fed/e"]));
    // Nothing names a store: a usage error that names the variables.
    let line = run_cmd(
        gos()
            .env_remove("GOS_SHM")
            .env_remove("GOS_REMOTE")
            .args(["store", "keys"]),
        SHORT,
    )
    .usage_error();
    assert!(line.contains("GOS_REMOTE"), "{line}");
}

#[test]
fn ls_and_rm_manage_this_hosts_stores() {
    let shm = ShmName::new("ls");
    let store = make_store(&shm, 1 << 20);
    let listed = json(&run(&["store", "--json", "ls"], SHORT));
    let row = listed["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == shm.0.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {listed}", shm.0))
        .clone();
    assert_eq!(row["capacity"], 1 << 20);
    assert!(
        row["file_bytes"].as_u64().unwrap() >= 2 << 20,
        "the arena is about twice the capacity: {row}"
    );
    assert!(run(&["store", "ls"], SHORT).ok().contains(&shm.0));

    // Open here: refused without --force.
    let line = run(&["store", "rm", &shm.0], SHORT).one_line_error();
    assert!(line.contains("--force"), "{line}");
    assert!(shm.exists());
    drop(store);
    let removed = json(&run(&["store", "--json", "rm", &shm.0], SHORT));
    assert_eq!(removed["removed"], shm.0.as_str());
    assert!(!shm.exists());
    run(&["store", "rm", &shm.0], SHORT).not_found_error();

    let other = ShmName::new("lsforce");
    let _open = make_store(&other, 1 << 20);
    run(&["store", "rm", "--force", &other.0], SHORT).ok();
    assert!(!other.exists());
}

#[test]
fn logs_are_plain_text_off_a_terminal_with_one_line_per_request() {
    let shm = ShmName::new("log");
    drop(make_store(&shm, 1 << 20));
    let out = run(
        &[
            "-vv", "store", "--shm", &shm.0, "put", "fed/log", "--value", "abc",
        ],
        SHORT,
    );
    out.ok();
    assert!(
        !out.stderr.contains('\u{1b}'),
        "colour codes in a pipe: {:?}",
        out.stderr
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("store request"))
        .unwrap_or_else(|| panic!("no request line: {}", out.stderr));
    assert!(
        line.contains("op=\"put\"") || line.contains("op=put"),
        "{line}"
    );
    assert!(
        line.contains("target=fed/log") && line.contains("bytes=3"),
        "{line}"
    );
    assert!(!line.contains("Some("), "{line}");
}

#[test]
fn completions_and_help_texts_say_what_the_commands_do() {
    let bash = run(&["completions", "bash"], SHORT).ok();
    assert!(bash.contains("_gos") && bash.contains("store"), "{bash}");
    run(&["completions", "tcsh"], SHORT).usage_error();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let out_s = out.to_str().unwrap();
    let first = json(&run(
        &["certs", "--json", "--out", out_s, "--cluster", "a"],
        SHORT,
    ));
    assert_eq!(first["ca"]["reused"], false);
    assert_eq!(first["identities"][0]["id"], "a");
    assert!(Path::new(first["identities"][0]["cert"].as_str().unwrap()).exists());
    let second = json(&run(
        &["certs", "--json", "--out", out_s, "--cluster", "b"],
        SHORT,
    ));
    assert_eq!(second["ca"]["reused"], true);
    // `gos certs` refuses existing files without --force; its help says so.
    let help = run(&["certs", "--help"], SHORT).ok();
    assert!(!help.contains("are kept"), "{help}");
    assert!(help.contains("refused"), "{help}");
}

#[test]
fn serve_refuses_a_store_with_other_limits_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(&d.join("certs"), &["cluster-l", "client"]);
    let shm = ShmName::new("limits");
    // The config asks for 64 MiB; the existing store has 1 MiB.
    drop(make_store(&shm, 1 << 20));
    let config = write_config(d, "cluster-l", &shm, &["client"]);
    let line = run(&["serve", "--config", config.to_str().unwrap()], SHORT).one_line_error();
    assert!(
        line.contains("other limits")
            && line.contains("--accept-store-limits")
            && line.contains("1.0 MiB"),
        "{line}"
    );
    assert!(shm.exists(), "the refused store is left as it was");
    let served = serve(&config, &["--accept-store-limits"]);
    let (status, _, stderr) = served.stop();
    assert!(status.success(), "{stderr}");

    // --json: the listening and stopped lines as JSON lines.
    let mut child = gos()
        .args(["serve", "--json", "--accept-store-limits", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut guard = common::Guard::new(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first: serde_json::Value = serde_json::from_str(&rx.recv_timeout(SHORT).unwrap()).unwrap();
    assert_eq!(first["event"], "listening");
    assert_eq!(first["cluster"], "cluster-l");
    assert!(
        first["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{first}"
    );
    assert_eq!(first["metrics"], serde_json::Value::Null);
    guard.terminate();
    assert!(guard.wait(SHORT).unwrap().success());
    let last: serde_json::Value = serde_json::from_str(&rx.recv_timeout(SHORT).unwrap()).unwrap();
    assert_eq!(last["event"], "stopped");
    assert_eq!(last["signal"], "SIGTERM");
}

/// One `GET /metrics` over loopback; the body.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of the sample `name` (with its labels, as printed), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn metrics_of_a_running_serve_count_a_put_and_a_get() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = d.join("certs");
    make_certs(&certs, &["cluster-m", "client"]);
    let shm = ShmName::new("metrics");
    let config = write_config(d, "cluster-m", &shm, &["client"]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&config, text).unwrap();
    let served = serve(&config, &[]);
    let metrics_addr = served
        .first_line
        .split_once("metrics on http://")
        .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address: {}", served.first_line))
        .to_owned();

    let before = scrape(&metrics_addr);
    assert_eq!(
        sample(&before, "gos_store_capacity_bytes"),
        (64u64 << 20) as f64,
        "{before}"
    );
    let remote = |args: &[&str]| {
        run_cmd(
            gos()
                .env("GOS_REMOTE", served.addr.to_string())
                .env("GOS_CLUSTER", "cluster-m")
                .env("GOS_CERTS", &certs)
                .env("GOS_AS", "client")
                .arg("store")
                .args(args),
            SHORT,
        )
    };
    let value = pattern(300_000, 3);
    let file = d.join("value.bin");
    std::fs::write(&file, &value).unwrap();
    remote(&[
        "put",
        "e2e/node_0/round_1",
        "--file",
        file.to_str().unwrap(),
    ])
    .ok();
    let got = remote(&["get", "e2e/node_0/round_1", "--out", "-"]);
    assert_eq!(got.stdout, value, "{}", got.stderr);
    remote(&["get", "e2e/node_0/round_9"]).not_found_error();

    let after = scrape(&metrics_addr);
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(
        moved("gos_store_operations_total{op=\"put\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("gos_store_operations_total{op=\"get\"}"),
        2.0,
        "{after}"
    );
    assert_eq!(
        moved("gos_store_value_bytes_total{op=\"put\"}"),
        300_000.0,
        "{after}"
    );
    assert_eq!(
        moved("gos_store_value_bytes_total{op=\"get\"}"),
        300_000.0,
        "{after}"
    );
    assert_eq!(
        moved("gos_store_errors_total{op=\"get\",kind=\"not_found\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(sample(&after, "gos_store_entries"), 1.0, "{after}");
    assert_eq!(sample(&after, "gos_store_bytes"), 300_000.0, "{after}");
    assert_eq!(
        sample(&after, "gos_store_reservations_in_flight"),
        0.0,
        "{after}"
    );
    assert_eq!(
        moved("gos_store_operation_duration_seconds_count{op=\"put\"}"),
        1.0,
        "{after}"
    );
    assert!(
        sample(&after, "gos_gateway_connections_total") >= 3.0,
        "{after}"
    );
    assert!(
        sample(&after, "gos_gateway_bytes_total{direction=\"in\"}") >= 300_000.0,
        "{after}"
    );
    assert!(after.trim_end().ends_with("# EOF"), "{after}");

    let (status, _, stderr) = served.stop();
    assert!(status.success(), "{stderr}");
}
