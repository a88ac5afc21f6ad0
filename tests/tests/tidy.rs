//! Tidy checks over the source tree: the architecture invariants of docs/ARCHITECTURE.md (which
//! crate may depend on which) and the `//!` line every Rust file starts with.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// For each library crate, the GOS crates its normal (non-dev) dependencies may name.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("gos-store", &[][..]),
        ("gos-store-memory", &["gos-store"][..]),
        ("gos-store-shm", &["gos-store"][..]),
        ("gos-store-redis", &["gos-store"][..]),
        ("gos-netem", &[][..]),
        ("gos-conformance", &["gos-store"][..]),
        ("gos-topology", &["gos-store"][..]),
        ("gos-gateway", &["gos-store", "gos-topology"][..]),
        (
            "gos",
            &[
                "gos-store",
                "gos-store-memory",
                "gos-store-shm",
                "gos-store-redis",
                "gos-topology",
                "gos-gateway",
            ][..],
        ),
        ("gos-py", &["gos"][..]),
        (
            "gos-cli",
            &[
                "gos",
                "gos-store",
                "gos-store-memory",
                "gos-store-shm",
                "gos-topology",
                "gos-gateway",
            ][..],
        ),
    ])
}

/// Third-party crates a crate must not depend on at all.
fn forbidden() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("gos-store", &["tokio", "quinn", "rustls", "socket2"][..]),
        ("gos-store-memory", &["quinn", "rustls"][..]),
        ("gos-store-shm", &["quinn", "rustls"][..]),
        ("gos-topology", &["quinn", "rustls"][..]),
    ])
}

fn normal_dependencies(manifest: &Path) -> Vec<String> {
    let text = fs::read_to_string(manifest).expect("readable manifest");
    let doc: toml::Table = toml::from_str(&text).expect("valid manifest");
    let mut deps: Vec<String> = doc
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(targets) = doc.get("target").and_then(|t| t.as_table()) {
        for target in targets.values() {
            if let Some(t) = target.get("dependencies").and_then(|d| d.as_table()) {
                deps.extend(t.keys().cloned());
            }
        }
    }
    deps
}

#[test]
fn no_crate_depends_upward() {
    let allowed = allowed();
    let forbidden = forbidden();
    let mut seen = 0;
    for entry in fs::read_dir(root().join("crates")).expect("crates/ exists") {
        let dir = entry.expect("dir entry").path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let may = allowed.get(name.as_str()).unwrap_or_else(|| {
            panic!(
                "crate {name} is not in the layering table; add it here and to docs/ARCHITECTURE.md"
            )
        });
        for dep in normal_dependencies(&manifest) {
            if dep.starts_with("gos") {
                assert!(
                    may.contains(&dep.as_str()),
                    "architecture invariant broken: {name} depends on {dep}"
                );
            }
            if let Some(bad) = forbidden.get(name.as_str()) {
                assert!(
                    !bad.contains(&dep.as_str()),
                    "{name} must not depend on {dep}"
                );
            }
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the crates under crates/");
}

#[test]
fn folder_name_is_package_name() {
    for entry in fs::read_dir(root().join("crates")).expect("crates/ exists") {
        let dir = entry.expect("dir entry").path();
        let Ok(text) = fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text).expect("valid manifest");
        let name = doc["package"]["name"].as_str().expect("package name");
        assert_eq!(
            name,
            dir.file_name().unwrap().to_string_lossy(),
            "in {}",
            dir.display()
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("a file name").to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && !name.starts_with("target-") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(!files.is_empty());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

#[test]
fn unsafe_code_lives_in_the_shm_crate_alone() {
    for entry in fs::read_dir(root().join("crates")).expect("crates/ exists") {
        let dir = entry.expect("dir entry").path();
        let name = dir
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .to_string();
        if name == "gos-store-shm" {
            continue;
        }
        if name == "gos-py" {
            // The buffer protocol is a C interface of raw pointers: the Python bindings deny
            // unsafe code everywhere but in their one buffer module.
            let lib = fs::read_to_string(dir.join("src/lib.rs")).expect("gos-py/src/lib.rs");
            assert!(
                lib.contains("#![deny(unsafe_code)]"),
                "gos-py must deny unsafe code"
            );
            let mut files = Vec::new();
            rust_files(&dir.join("src"), &mut files);
            for f in files {
                let text = fs::read_to_string(&f).expect("readable source");
                let allowed = f.ends_with("src/buffer.rs");
                assert_eq!(
                    text.contains("allow(unsafe_code)"),
                    allowed,
                    "unsafe code in gos-py lives in src/buffer.rs alone ({})",
                    f.display()
                );
            }
            continue;
        }
        for root_file in ["src/lib.rs", "src/main.rs"] {
            let Ok(text) = fs::read_to_string(dir.join(root_file)) else {
                continue;
            };
            assert!(
                text.contains("#![forbid(unsafe_code)]"),
                "architecture invariant: {name}/{root_file} must forbid unsafe code"
            );
        }
    }
}
