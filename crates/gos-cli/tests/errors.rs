//! End to end: bad input to `gos serve` and `gos store` ends with exit code 1 and one line
//! starting `error:`, never a panic or a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use common::{SHORT, ShmName, make_certs, run, write_config};

fn serve_error(config: &std::path::Path) -> String {
    run(&["serve", "--config", config.to_str().unwrap()], SHORT).one_line_error()
}

#[test]
fn bad_config_files_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let line = serve_error(&d.join("missing.toml"));
    assert!(
        line.contains("cannot read") && line.contains("missing.toml"),
        "{line}"
    );

    let broken = d.join("broken.toml");
    std::fs::write(&broken, "fed_id = \"x\"\n[topology\n").unwrap();
    let line = serve_error(&broken);
    assert!(line.contains("invalid configuration in"), "{line}");

    let unknown = d.join("unknown.toml");
    std::fs::write(
        &unknown,
        "fed_id = \"x\"\n[topology]\nkind = \"mesh\"\nnodes = 3\n",
    )
    .unwrap();
    let line = serve_error(&unknown);
    assert!(line.contains("unknown variant `mesh`"), "{line}");

    let no_gateway = d.join("no-gateway.toml");
    std::fs::write(
        &no_gateway,
        "fed_id = \"x\"\n[topology]\nkind = \"ring\"\nnodes = 3\n",
    )
    .unwrap();
    let line = serve_error(&no_gateway);
    assert!(line.contains("no [gateway] section"), "{line}");

    // A gateway whose certificate files are missing.
    let shm = ShmName::new("e");
    let config = write_config(d, "cluster-e", &shm, &["client"]);
    let line = serve_error(&config);
    assert!(
        line.contains("certs/cluster-e.pem") || line.contains("ca.pem"),
        "{line}"
    );
    assert!(!shm.exists(), "a failed serve created its store");

    // cluster_id that is not the certificate's.
    let certs = d.join("certs");
    make_certs(&certs, &["cluster-e", "cluster-f"]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("certs/cluster-e.", "certs/cluster-f.");
    std::fs::write(&config, text).unwrap();
    let line = serve_error(&config);
    assert!(line.contains("names `cluster-f`"), "{line}");

    // --remove-on-exit with a memory store.
    let memory = d.join("memory.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("backend = \"shm\"", "backend = \"memory\"");
    std::fs::write(&memory, text).unwrap();
    let line = run(
        &[
            "serve",
            "--config",
            memory.to_str().unwrap(),
            "--remove-on-exit",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("--remove-on-exit"), "{line}");
}

#[test]
fn bad_store_requests_are_one_line() {
    let missing = ShmName::new("missing");
    let line = run(&["store", "--shm", &missing.0, "keys"], SHORT).not_found_error();
    assert!(line.contains("no store named"), "{line}");

    let shm = ShmName::new("s");
    {
        use gos::shm::{ShmConfig, ShmStore};
        ShmStore::create(&shm.0, ShmConfig::new(gos::Limits::with_capacity(1 << 20))).unwrap();
    }
    for (key, want) in [
        ("a//b", "empty segment"),
        ("", "key is empty"),
        ("a\tb", "control character"),
    ] {
        let line = run(&["store", "--shm", &shm.0, "get", key], SHORT).one_line_error();
        assert!(
            line.starts_with("error: invalid key") && line.contains(want),
            "{line}"
        );
    }
    let line = run(
        &["store", "--shm", &shm.0, "put", "a//b", "--value", "v"],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("invalid key"), "{line}");
    let line = run(&["store", "--shm", &shm.0, "keys", "--prefix", "/x"], SHORT).one_line_error();
    assert!(line.contains("invalid prefix"), "{line}");
    let line = run(&["store", "--shm", &shm.0, "get", "fed/n/round_1"], SHORT).not_found_error();
    assert!(line.contains("not found"), "{line}");
    let line = run(
        &[
            "store",
            "--shm",
            &shm.0,
            "put",
            "fed/n/round_1",
            "--file",
            "/nonexistent/x",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("/nonexistent/x"), "{line}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 2 << 20]).unwrap();
    let line = run(
        &[
            "store",
            "--shm",
            &shm.0,
            "put",
            "fed/n/round_1",
            "--file",
            big.to_str().unwrap(),
        ],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("larger than the maximum"), "{line}");

    // A gateway nobody listens on: a bounded timeout, one line.
    let certs = dir.path().join("certs");
    make_certs(&certs, &["client"]);
    let out = common::unreachable_gateway(&certs, "0.5");
    let line = out.one_line_error();
    assert!(line.contains("timed out"), "{line}");
    // The message says how long it took in all, not only one attempt's timeout (issue 14:
    // it said 5 s and arrived after 10 s).
    assert!(line.contains("each of 2 attempts; gave up after"), "{line}");
    assert!(
        out.elapsed >= std::time::Duration::from_millis(900),
        "{:?}",
        out.elapsed
    );
}
