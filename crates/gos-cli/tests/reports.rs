//! End to end, what `gos demo` and `gos bench` report and how: `--json` is one JSON document
//! with real figures and nothing else on stdout; progress is drawn on a terminal only, never
//! with `--quiet` or `--json`; their help texts agree with the code (`--k`, `--seed`, what the
//! nodes are); a served gateway logs one span per request at `-vv`, in plain text; and error
//! lines carry no Debug formatting.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{SHORT, ShmName, make_certs, pattern, run, run_cmd, serve, write_config};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);

/// The whole of stdout as one JSON document (anything else on stdout fails to parse); stderr
/// is empty (no progress bar off a terminal).
fn document(args: &[&str]) -> Value {
    let out = run(args, LONG);
    let text = out.ok();
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn bench_json_is_one_document_with_a_result_per_configuration() {
    let doc = document(&[
        "bench",
        "--nodes",
        "4",
        "--rounds",
        "3",
        "--models",
        "64KiB,256KiB",
        "--topologies",
        "ring,k-connected",
        "--k",
        "2",
        "--seed",
        "7",
        "--stores",
        "memory,shm",
        "--json",
    ]);
    assert_eq!(u(&doc["nodes"]), 4);
    assert_eq!(u(&doc["rounds"]), 3);
    assert_eq!((u(&doc["k"]), u(&doc["seed"])), (2, 7));
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 8, "2 stores x 2 topologies x 2 sizes: {doc}");
    let mut seen = Vec::new();
    for r in results {
        let times = r["round_ms"].as_array().unwrap();
        assert_eq!(times.len(), 3, "one time per timed round: {r}");
        assert!(times.iter().all(|t| f(t) > 0.0), "{r}");
        let (median, min) = (f(&r["round_median_ms"]), f(&r["round_min_ms"]));
        assert!(min > 0.0 && min <= median, "{r}");
        assert!(times.iter().any(|t| f(t) == min), "{r}");
        assert!(u(&r["bus_messages"]) > 0 && u(&r["bus_bytes"]) > 0, "{r}");
        seen.push((
            r["store"].as_str().unwrap().to_owned(),
            r["topology"].as_str().unwrap().to_owned(),
            u(&r["model_bytes"]),
        ));
    }
    for store in ["memory", "shm"] {
        for topology in ["ring", "k-connected"] {
            for model in [64 << 10, 256 << 10] {
                assert!(
                    seen.contains(&(store.to_owned(), topology.to_owned(), model)),
                    "no {store} {topology} {model}: {seen:?}"
                );
            }
        }
    }
    // The bus carries keys only: the same traffic for both model sizes.
    for pair in results.chunks(2) {
        assert_eq!(pair[0]["bus_bytes"], pair[1]["bus_bytes"], "{doc}");
    }
}

/// Runs one demo layout with `--json` and checks its figures.
fn demo_json(extra: &[&str]) -> Value {
    let mut args = vec![
        "demo", "--nodes", "4", "--rounds", "3", "--model", "64KiB", "--json",
    ];
    args.extend_from_slice(extra);
    let doc = document(&args);
    assert_eq!(u(&doc["nodes"]), 4);
    assert_eq!(u(&doc["rounds"]), 3);
    assert_eq!(u(&doc["model_bytes"]), 64 << 10);
    let rounds = doc["per_round"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{doc}");
    let mut read = 0;
    for (i, r) in rounds.iter().enumerate() {
        assert_eq!(u(&r["round"]), i as u64 + 1);
        assert!(f(&r["time_ms"]) > 0.0, "{r}");
        assert!(u(&r["bus_messages"]) > 0 && u(&r["bus_bytes"]) > 0, "{r}");
        // Every node shares its model each round, and reads its two ring neighbours'.
        assert_eq!(u(&r["put_bytes"]), 4 * (64 << 10), "{r}");
        assert_eq!(u(&r["read_bytes"]), 8 * (64 << 10), "{r}");
        read += u(&r["read_bytes"]);
    }
    assert_eq!(u(&doc["total"]["read_bytes"]), read, "{doc}");
    assert!(f(&doc["final_spread"]) < f(&doc["initial_spread"]), "{doc}");
    assert_eq!(doc["keys_left"].as_array().unwrap().len(), 0, "{doc}");
    doc
}

#[test]
fn demo_json_is_one_document_in_every_layout() {
    let doc = demo_json(&[]);
    assert_eq!(doc["store"], "memory");
    assert_eq!(doc["topology"], "ring");
    assert_eq!(doc["delete"], "last-reader");
    let doc = demo_json(&["--store", "shm"]);
    assert_eq!(doc["store"], "shm");
    let doc = demo_json(&["--clusters", "2"]);
    assert_eq!(u(&doc["clusters"]), 2);
    assert!(u(&doc["total"]["gateway_bytes"]) > 0, "{doc}");
}

/// `gos args...` run on a pseudo-terminal (util-linux `script`): what the terminal showed.
fn on_a_terminal(args: &[&str]) -> String {
    on_a_terminal_with(args, None)
}

/// [`on_a_terminal`], with `NO_COLOR` set to `no_color` (removed when `None`).
fn on_a_terminal_with(args: &[&str], no_color: Option<&str>) -> String {
    let line = std::iter::once(env!("CARGO_BIN_EXE_gos"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null());
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let out = run_cmd(&mut cmd, LONG);
    let shown = out.stdout();
    assert!(
        out.status.success(),
        "{args:?} on a terminal: {shown}\n{}",
        out.stderr
    );
    shown
}

#[test]
fn progress_is_drawn_on_a_terminal_only_and_not_when_quiet_or_json() {
    if !have_script() {
        return;
    }
    let bench = [
        "bench",
        "--nodes",
        "4",
        "--rounds",
        "40",
        "--models",
        "64KiB",
        "--stores",
        "shm",
        "--topologies",
        "ring",
    ];
    let shown = on_a_terminal(&bench);
    assert!(shown.contains("node-rounds"), "no bench progress: {shown}");
    assert!(shown.contains("shm store, ring topology"), "{shown}");
    let quiet = on_a_terminal(&[&bench[..], &["--quiet"]].concat());
    assert!(!quiet.contains("node-rounds"), "{quiet}");
    assert!(quiet.contains("only keys travel"), "{quiet}");
    let json = on_a_terminal(&[&bench[..], &["--json"]].concat());
    assert!(!json.contains("node-rounds"), "{json}");

    // The demo over a shared-memory store: a spinner while the store is created, then the
    // round bar; nothing of it with --quiet.
    let demo = [
        "demo", "--store", "shm", "--nodes", "4", "--rounds", "40", "--model", "1MiB",
    ];
    let shown = on_a_terminal(&demo);
    assert!(shown.contains("node-rounds"), "no demo progress: {shown}");
    assert!(
        shown.contains("creating the shared-memory store demo-"),
        "no creation spinner: {shown}"
    );
    let quiet = on_a_terminal(&[&demo[..], &["--quiet"]].concat());
    assert!(
        !quiet.contains("node-rounds") && !quiet.contains("creating"),
        "{quiet}"
    );

    // Off a terminal (pipes), not a byte of progress.
    let out = run(&bench, LONG);
    out.ok();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

fn have_script() -> bool {
    let found = Command::new("script").arg("--version").output().is_ok();
    if !found {
        eprintln!("util-linux `script` is missing: the terminal half is not checked");
    }
    found
}

#[test]
fn logs_are_coloured_on_a_terminal_only_without_no_color() {
    if !have_script() {
        return;
    }
    let shm = ShmName::new("colour");
    gos::shm::ShmStore::create(
        &shm.0,
        gos::shm::ShmConfig::new(gos::Limits::with_capacity(1 << 20)),
    )
    .unwrap();
    let put = [
        "-vv", "store", "--shm", &shm.0, "put", "fed/c", "--value", "v",
    ];
    let coloured = on_a_terminal(&put);
    assert!(coloured.contains("store request"), "{coloured}");
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal: {coloured:?}"
    );
    for no_color in ["1", "true"] {
        let plain = on_a_terminal_with(&put, Some(no_color));
        assert!(plain.contains("store request"), "{plain}");
        assert!(
            !plain.contains('\u{1b}'),
            "colour with NO_COLOR={no_color}: {plain:?}"
        );
    }
}

#[test]
fn bench_help_offers_what_it_accepts_and_says_what_the_nodes_are() {
    let help = run(&["bench", "--help"], SHORT).ok();
    assert!(
        help.contains("--k <K>") && help.contains("--seed <SEED>"),
        "{help}"
    );
    assert!(
        !help.contains("OS process"),
        "bench nodes are tasks of one process: {help}"
    );
    assert!(help.contains("tasks of this process"), "{help}");
    // --k and --seed are taken, and a k the topology cannot have is one line naming it.
    let line = run(
        &[
            "bench",
            "--nodes",
            "4",
            "--topologies",
            "k-connected",
            "--k",
            "9",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(
        line.contains("k-connected topology (--k 9, --seed 1)"),
        "{line}"
    );
    assert_no_debug(&line);
    // The demo's table names the topology as the flag does.
    let out = run(
        &[
            "demo",
            "--nodes",
            "4",
            "--topology",
            "k-connected",
            "--k",
            "2",
            "--rounds",
            "1",
            "--model",
            "64KiB",
            "--quiet",
        ],
        LONG,
    )
    .ok();
    assert!(out.contains("GOS demo: k-connected topology"), "{out}");
}

/// Debug formatting a user should never see.
fn assert_no_debug(text: &str) {
    for artefact in [
        "Some(",
        "None",
        "Duration {",
        "KConnected",
        "Shm ",
        "secs:",
        "nanos:",
    ] {
        assert!(!text.contains(artefact), "`{artefact}` in: {text}");
    }
}

#[test]
fn error_lines_carry_no_debug_formatting() {
    let line = run(
        &[
            "demo",
            "--nodes",
            "4",
            "--topology",
            "k-connected",
            "--k",
            "5",
            "--quiet",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("5-regular"), "{line}");
    assert_no_debug(&line);
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["client"]);
    let line = common::unreachable_gateway(&certs, "250ms").one_line_error();
    assert!(line.contains("timed out after 250ms"), "{line}");
    assert_no_debug(&line);
}

#[test]
fn a_served_gateway_logs_one_span_per_request_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = d.join("certs");
    make_certs(&certs, &["cluster-s", "client"]);
    let shm = ShmName::new("span");
    let config = write_config(d, "cluster-s", &shm, &["client"]);
    let served = serve(&config, &["-vv"]);
    let remote = |args: &[&str]| common::remote(&served, "cluster-s", &certs, "client", args);
    let file = d.join("value.bin");
    std::fs::write(&file, pattern(12_345, 9)).unwrap();
    remote(&[
        "put",
        "e2e/node_0/round_1",
        "--file",
        file.to_str().unwrap(),
    ])
    .ok();
    remote(&["get", "e2e/node_0/round_1", "--out", "-"]).ok();
    let (status, _, stderr) = served.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        run(&["--help"], SHORT)
            .ok()
            .contains("a span per gateway request"),
        "gos --help says what -vv logs"
    );
    assert!(!stderr.contains('\u{1b}'), "colour in a pipe: {stderr:?}");
    assert_no_debug(&stderr);
    let done = |op: &str| {
        stderr
            .lines()
            .find(|l| {
                l.contains("gateway request{peer=client")
                    && l.contains(&format!("op={op} key=e2e/node_0/round_1"))
                    && l.contains("request done")
            })
            .unwrap_or_else(|| panic!("no finished {op} span: {stderr}"))
            .to_owned()
    };
    for op in ["put", "get"] {
        let line = done(op);
        assert!(line.contains("bytes=12345"), "{line}");
        assert!(line.contains("duration="), "{line}");
        assert!(line.contains("DEBUG"), "{line}");
    }
    // The store's own line of the put carries the request's span.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("gateway request{peer=client op=put")
                && l.contains("store request op=put target=e2e/node_0/round_1 bytes=12345")),
        "{stderr}"
    );
}
