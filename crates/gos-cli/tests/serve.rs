//! End to end: `gos certs`, then two `gos serve` processes (two clusters, shared-memory
//! stores, gateways on 127.0.0.1 port 0), used through `gos store --remote` and `gos store
//! --shm` and through the library's `RemoteStore`; refused clients; a clean stop on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{SHORT, Served, ShmName, make_certs, pattern, remote, run, serve, write_config};

fn shm(name: &ShmName, cmd: &[&str]) -> common::Output {
    let mut args = vec!["store", "--shm", &name.0];
    args.extend_from_slice(cmd);
    run(&args, SHORT)
}

/// put/get/keys/stats/delete through one cluster's gateway, with a multi-MiB file.
fn exercise(served: &Served, cluster: &str, dir: &Path, seed: u64) {
    let certs = dir.join("certs");
    let blob = pattern(5 << 20 | 12345, seed);
    let src = dir.join(format!("{cluster}-in.bin"));
    let dst = dir.join(format!("{cluster}-out.bin"));
    std::fs::write(&src, &blob).unwrap();
    let key = format!("e2e/{cluster}/round_1");

    let out = remote(
        served,
        cluster,
        &certs,
        "client",
        &["put", &key, "--file", src.to_str().unwrap()],
    )
    .ok();
    assert!(out.contains(&format!("({} bytes)", blob.len())), "{out}");
    remote(
        served,
        cluster,
        &certs,
        "client",
        &["put", "e2e/small/round_1", "--value", "hello"],
    )
    .ok();

    // Byte-identical round trip, to a file and to a piped stdout.
    remote(
        served,
        cluster,
        &certs,
        "client",
        &["get", &key, "--out", dst.to_str().unwrap()],
    )
    .ok();
    assert!(
        std::fs::read(&dst).unwrap() == blob,
        "the file came back different"
    );
    let got = remote(served, cluster, &certs, "client", &["get", &key]);
    assert!(got.status.success(), "{}", got.stderr);
    assert!(got.stdout == blob, "stdout came back different");

    let keys = remote(served, cluster, &certs, "client", &["keys"]).ok();
    assert_eq!(keys, format!("{key}\ne2e/small/round_1\n"));
    let keys = remote(
        served,
        cluster,
        &certs,
        "client",
        &["keys", "--prefix", "e2e/small"],
    )
    .ok();
    assert_eq!(keys, "e2e/small/round_1\n");

    let stats = remote(served, cluster, &certs, "client", &["stats"]).ok();
    assert!(stats.contains("entries:        2"), "{stats}");
    assert!(
        stats.contains(&format!("bytes used:     {} ", blob.len() + 5)),
        "{stats}"
    );
    assert!(stats.contains("capacity:       67108864 "), "{stats}");

    // --create refuses an existing key with the typed error, in one line.
    let line = remote(
        served,
        cluster,
        &certs,
        "client",
        &["put", "e2e/small/round_1", "--value", "x", "--create"],
    )
    .one_line_error();
    assert!(line.contains("already exists"), "{line}");
    // Too large for the store's max_value_size (16 MiB): refused before sending.
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![0u8; 17 << 20]).unwrap();
    let line = remote(
        served,
        cluster,
        &certs,
        "client",
        &["put", "e2e/big/round_1", "--file", big.to_str().unwrap()],
    )
    .one_line_error();
    assert!(line.contains("larger than the maximum"), "{line}");

    let out = remote(served, cluster, &certs, "client", &["delete", &key]).ok();
    assert!(out.contains("deleted"), "{out}");
    let line = remote(served, cluster, &certs, "client", &["get", &key]).not_found_error();
    assert!(line.contains("not found"), "{line}");
    let line = remote(served, cluster, &certs, "client", &["delete", &key]).not_found_error();
    assert!(line.contains("not found"), "{line}");
    let out = remote(served, cluster, &certs, "client", &["delete-prefix", "e2e"]).ok();
    assert!(out.contains("deleted 1 keys under e2e"), "{out}");
    assert_eq!(
        remote(served, cluster, &certs, "client", &["keys"]).ok(),
        ""
    );
}

#[test]
fn two_served_clusters_through_their_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["cluster-a", "cluster-b", "client", "intruder"]);
    let shm_a = ShmName::new("a");
    let shm_b = ShmName::new("b");
    let config_a = write_config(dir.path(), "cluster-a", &shm_a, &["cluster-b", "client"]);
    let config_b = write_config(dir.path(), "cluster-b", &shm_b, &["cluster-a", "client"]);
    let a = serve(&config_a, &["--remove-on-exit"]);
    let b = serve(&config_b, &[]);
    assert!(
        a.first_line
            .starts_with("gos serve: cluster cluster-a listening on 127.0.0.1:"),
        "{}",
        a.first_line
    );
    assert!(
        a.first_line.ends_with(&format!("store shm {}", shm_a.0)),
        "{}",
        a.first_line
    );
    assert_ne!(a.addr.port(), 0);
    assert_ne!(a.addr, b.addr);

    exercise(&a, "cluster-a", dir.path(), 1);
    exercise(&b, "cluster-b", dir.path(), 2);

    // The store `gos serve` made is a shared-memory store any process on the host opens.
    remote(
        &a,
        "cluster-a",
        &certs,
        "client",
        &["put", "e2e/n1/round_7", "--value", "from-remote"],
    )
    .ok();
    assert_eq!(shm(&shm_a, &["keys"]).ok(), "e2e/n1/round_7\n");
    assert_eq!(
        shm(&shm_a, &["get", "e2e/n1/round_7"]).stdout,
        b"from-remote"
    );
    shm(&shm_a, &["put", "e2e/n2/round_7", "--value", "from-shm"]).ok();
    assert_eq!(
        remote(
            &a,
            "cluster-a",
            &certs,
            "client",
            &["get", "e2e/n2/round_7"]
        )
        .stdout,
        b"from-shm"
    );
    assert!(shm(&shm_a, &["stats"]).ok().contains("entries:        2"));
    // The other cluster's store is separate.
    assert_eq!(shm(&shm_b, &["keys"]).ok(), "");

    // The library's RemoteStore talks to a served cluster too (cluster-b's identity: on
    // cluster-a's allow list).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use gos::ObjectStore;
        use gos::gateway::{AllowList, ClientConfig, RemoteStore, TlsSettings};
        let tls = TlsSettings::from_files(
            &certs.join("cluster-b.pem"),
            &certs.join("cluster-b.key"),
            &certs.join("ca.pem"),
            AllowList::new(["cluster-a"]),
        )
        .unwrap();
        let store = RemoteStore::connect(ClientConfig::new(a.addr, "cluster-a", tls))
            .await
            .unwrap();
        let key = gos::ObjectKey::new("e2e/n1/round_7").unwrap();
        assert_eq!(
            store.get(&key).await.unwrap().as_deref(),
            Some(&b"from-remote"[..])
        );
        assert_eq!(store.len().await.unwrap(), 2);
    });

    // Refused: an identity of the federation that is not on the allow list, an identity of
    // another federation, and a client that names the wrong cluster. One line each.
    let line = remote(&a, "cluster-a", &certs, "intruder", &["keys"]).one_line_error();
    assert!(line.contains("intruder"), "{line}");
    let other = dir.path().join("other-federation");
    make_certs(&other, &["client"]);
    let line = remote(&a, "cluster-a", &other, "client", &["keys"]).one_line_error();
    assert!(line.contains("certificate"), "{line}");
    let line = remote(&a, "cluster-b", &certs, "client", &["keys"]).one_line_error();
    assert!(line.contains("certificate"), "{line}");
    // Without --as and with several identities in the directory, the client asks.
    let addr = a.addr.to_string();
    let line = run(
        &[
            "store",
            "--remote",
            &addr,
            "--cluster",
            "cluster-a",
            "--certs",
            certs.to_str().unwrap(),
            "keys",
        ],
        SHORT,
    )
    .one_line_error();
    assert!(line.contains("--as"), "{line}");
    // ... and with one, it uses it.
    assert_eq!(
        run(
            &[
                "store",
                "--remote",
                &addr,
                "--cluster",
                "cluster-a",
                "--certs",
                other.to_str().unwrap(),
                "keys"
            ],
            SHORT,
        )
        .status
        .code(),
        Some(1),
        "the other federation's client is still refused"
    );

    // SIGTERM: a clean stop; --remove-on-exit removed cluster-a's store, cluster-b's stays.
    let (status, rest, stderr) = a.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        rest.contains("gos serve: cluster cluster-a stopped on SIGTERM"),
        "{rest}"
    );
    // Its counters in sizes people read (issue 14: raw byte counts).
    assert!(
        rest.contains(" MiB in, ") && rest.contains(" MiB out)"),
        "{rest}"
    );
    assert!(!shm_a.exists(), "--remove-on-exit left the store");
    let (status, _, stderr) = b.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        shm_b.exists(),
        "the store went away without --remove-on-exit"
    );
}

#[test]
fn a_killed_gateway_gives_a_bounded_error() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["cluster-k", "client"]);
    let shm_k = ShmName::new("k");
    let config = write_config(dir.path(), "cluster-k", &shm_k, &["client"]);
    let mut served = serve(&config, &[]);
    // `--as` defaults to the one identity that is not the target's.
    let addr = served.addr.to_string();
    let args = |cmd: &'static [&'static str]| {
        let mut a = vec![
            "store".to_owned(),
            "--remote".to_owned(),
            addr.clone(),
            "--cluster".to_owned(),
            "cluster-k".to_owned(),
            "--certs".to_owned(),
            certs.to_str().unwrap().to_owned(),
            "--timeout".to_owned(),
            "1".to_owned(),
        ];
        a.extend(cmd.iter().map(|s| (*s).to_owned()));
        a
    };
    let put = args(&["put", "e2e/n/round_1", "--value", "v"]);
    let put: Vec<&str> = put.iter().map(String::as_str).collect();
    run(&put, SHORT).ok();

    served.guard.child.kill().unwrap();
    served.guard.wait(Duration::from_secs(5)).unwrap();
    let keys = args(&["keys"]);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let out = run(&keys, SHORT);
    let line = out.one_line_error();
    assert!(
        line.contains("timed out") || line.contains("unavailable") || line.contains("connection"),
        "{line}"
    );
    assert!(
        out.elapsed < Duration::from_secs(8),
        "took {:?}",
        out.elapsed
    );
    // The value outlived its server: the store is shared memory.
    assert_eq!(shm(&shm_k, &["get", "e2e/n/round_1"]).stdout, b"v");
}

#[test]
fn a_memory_store_served_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["cluster-m", "client"]);
    let unused = ShmName::new("m");
    let config = write_config(dir.path(), "cluster-m", &unused, &["client"]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("backend = \"shm\"", "backend = \"memory\"");
    std::fs::write(&config, text).unwrap();
    let served = serve(&config, &[]);
    assert!(
        served.first_line.ends_with("store memory (in-process)"),
        "{}",
        served.first_line
    );
    assert!(!unused.exists(), "a memory store made a shared-memory file");
    remote(
        &served,
        "cluster-m",
        &certs,
        "client",
        &["put", "e2e/m/round_0", "--value", "in memory"],
    )
    .ok();
    assert_eq!(
        remote(
            &served,
            "cluster-m",
            &certs,
            "client",
            &["get", "e2e/m/round_0"]
        )
        .stdout,
        b"in memory"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &served.guard.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut served = served;
    let status = served
        .guard
        .wait(SHORT)
        .expect("no exit within 20 s of SIGINT");
    assert!(status.success(), "{status}");
}

#[test]
fn a_busy_port_is_one_line_and_leaves_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["cluster-p"]);
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let shm_p = ShmName::new("p");
    let config = write_config(dir.path(), "cluster-p", &shm_p, &[]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).unwrap();
    let line = run(&["serve", "--config", config.to_str().unwrap()], SHORT).one_line_error();
    assert!(
        line.contains(&format!("starting the gateway on 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(!shm_p.exists(), "the failed serve left its store behind");
    drop(busy);
}
