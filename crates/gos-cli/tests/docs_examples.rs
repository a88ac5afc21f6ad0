//! The example configs of `docs/getting-started.md` (`docs/examples/*.toml`) parse, build
//! their topology and have the gateway section `gos serve` needs.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    for (file, id, other) in [
        ("cluster-a.toml", "cluster-a", "cluster-b"),
        ("cluster-b.toml", "cluster-b", "cluster-a"),
    ] {
        let config = gos::ClusterConfig::from_file(dir.join(file)).unwrap();
        assert_eq!(config.cluster_id, id);
        assert_eq!(config.store.backend, gos::config::Backend::Shm);
        assert_eq!(config.store.name.as_deref(), Some(id));
        config.topology.build(&dir).unwrap();
        let gateway = config.gateway.unwrap();
        assert_eq!(gateway.cert, Path::new("certs").join(format!("{id}.pem")));
        assert!(gateway.allow.iter().any(|a| a == "client"));
        assert_eq!(gateway.peers[0].cluster, other);
    }
}

/// Every `gos store` subcommand, `gos serve` flag and `gos demo` / `gos bench` flag that
/// `--help` offers is in getting-started, and both state the same exit codes.
#[test]
fn getting_started_covers_what_the_help_offers() {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/getting-started.md"),
    )
    .unwrap();
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gos"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let store = help(&["store", "--help"]);
    let commands: Vec<&str> = store
        .split_once("Commands:")
        .unwrap()
        .1
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 9, "{commands:?}");
    for command in commands {
        assert!(
            guide.contains(&format!("`{command}")),
            "getting-started does not mention `gos store {command}`"
        );
    }
    for flag in ["--accept-store-limits", "--remove-on-exit"] {
        assert!(help(&["serve", "--help"]).contains(flag));
        assert!(
            guide.contains(flag),
            "getting-started does not mention {flag}"
        );
    }
    // Every flag of `gos demo` and `gos bench` is in getting-started.
    for command in ["demo", "bench"] {
        let text = help(&[command, "--help"]);
        let flags: Vec<&str> = text
            .split_once("Options:")
            .unwrap()
            .1
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|f| !["help", "version"].contains(f))
            .collect();
        assert!(flags.len() >= 8, "gos {command}: {flags:?}");
        for flag in flags {
            assert!(
                guide.contains(&format!("`--{flag}")) || guide.contains(&format!(" --{flag} ")),
                "getting-started does not mention `gos {command} --{flag}`"
            );
        }
    }
    let top = help(&["--help"]);
    for (code, meaning) in [
        ("0", "success"),
        ("1", "error"),
        ("2", "usage error"),
        ("3", "not found"),
    ] {
        assert!(
            top.contains(&format!("{code} {meaning}")),
            "gos --help: {code} {meaning}"
        );
        assert!(
            guide.contains(&format!("{code} on ")) || guide.contains(&format!("{code} when")),
            "getting-started: exit code {code}"
        );
    }
}
