//! End to end: `gos certs` writes a CA and per-cluster files, reuses the CA, refuses to
//! overwrite without `--force`, and refuses bad ids with one line.
#![allow(clippy::unwrap_used)]

mod common;

use common::{SHORT, run};

#[test]
fn certs_make_reuse_and_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let out_s = out.to_str().unwrap();
    let stdout = run(
        &[
            "certs",
            "--out",
            out_s,
            "--cluster",
            "cluster-a",
            "--cluster",
            "client",
        ],
        SHORT,
    )
    .ok();
    assert!(stdout.contains("wrote federation CA"), "{stdout}");
    for f in [
        "ca.pem",
        "ca.key",
        "cluster-a.pem",
        "cluster-a.key",
        "client.pem",
        "client.key",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
        assert!(stdout.contains(f), "{f} not reported in {stdout}");
    }
    let ca = std::fs::read(out.join("ca.pem")).unwrap();
    let cluster_a = std::fs::read(out.join("cluster-a.pem")).unwrap();

    // A second run reuses the CA and adds a cluster.
    let stdout = run(&["certs", "--out", out_s, "--cluster", "cluster-b"], SHORT).ok();
    assert!(
        stdout.contains("using the existing federation CA"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca);
    assert!(out.join("cluster-b.key").is_file());

    // Existing cluster files are not overwritten, and nothing else is written either.
    let line = run(
        &[
            "certs",
            "--out",
            out_s,
            "--cluster",
            "cluster-c",
            "--cluster",
            "cluster-a",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(
        line.contains("already exists") && line.contains("--force"),
        "{line}"
    );
    assert!(!out.join("cluster-c.pem").exists());
    assert_eq!(std::fs::read(out.join("cluster-a.pem")).unwrap(), cluster_a);

    // --force overwrites, with the same CA.
    run(
        &["certs", "--out", out_s, "--cluster", "cluster-a", "--force"],
        SHORT,
    )
    .ok();
    assert_ne!(std::fs::read(out.join("cluster-a.pem")).unwrap(), cluster_a);
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca);

    for bad in ["Not_Valid", "ca", "x-"] {
        let line = run(&["certs", "--out", out_s, "--cluster", bad], SHORT).one_line_error();
        assert!(line.contains("cluster id"), "{bad}: {line}");
    }
    let line = run(
        &[
            "certs",
            "--out",
            out_s,
            "--cluster",
            "dup",
            "--cluster",
            "dup",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("twice"), "{line}");
}
