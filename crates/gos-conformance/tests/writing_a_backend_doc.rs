//! docs/writing-a-backend.md followed verbatim: every code block of the page that starts with
//! a `file:` line is written into a fresh crate outside the workspace (with `/path/to/gos`
//! replaced by this checkout's path), and `cargo test` runs there, bounded by a timeout.
//!
//! The scratch crate resolves the workspace's `Cargo.lock` from the local registry cache
//! (`--offline`); when a crate is missing from it, it retries online. When the registry cannot
//! be reached either, the test says so on stderr and passes: a network outage is not a defect
//! of the page. Any other failure (the page's code does not compile, or its store fails the
//! suite) fails the test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The most a build and run of the scratch crate may take (a cold build compiles tokio and
/// proptest).
const TIMEOUT: Duration = Duration::from_secs(1200);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/gos-conformance sits two levels under the root")
        .to_path_buf()
}

/// The `(path, contents)` of every fenced block whose first line is `// file: <path>` or
/// `# file: <path>`.
fn files_of(doc: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") || line.trim() == "```" {
            continue;
        }
        let mut block: Vec<&str> = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            block.push(l);
        }
        let Some(first) = block.first() else { continue };
        let name = first
            .strip_prefix("// file: ")
            .or_else(|| first.strip_prefix("# file: "));
        if let Some(name) = name {
            files.push((name.trim().to_owned(), block[1..].join("\n") + "\n"));
        }
    }
    files
}

/// Kills the child when the test ends early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cargo test` in `dir`; returns success and the combined output.
fn cargo_test(dir: &Path, target: &Path, offline: bool) -> (bool, String) {
    let log = dir.join(if offline { "offline.log" } else { "online.log" });
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("test");
    if offline {
        cmd.arg("--offline");
    }
    let child = cmd
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("GOS_CONFORMANCE_CASES", "32")
        .env("GOS_CONFORMANCE_RACE_ROUNDS", "40")
        .env_remove("GOS_CONFORMANCE_ONLY")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("cargo runs");
    let mut guard = Guard(child);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for cargo") {
            break status;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "cargo test of the scratch crate took over {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::fs::File::open(&log)
        .and_then(|mut f| f.read_to_string(&mut out))
        .expect("read log");
    (status.success(), out)
}

fn unreachable_registry(out: &str) -> bool {
    [
        "failed to download",
        "failed to get",
        "Couldn't resolve host",
        "failed to query replaced source registry",
        "failed to fetch",
        "network failure",
        "spurious network error",
    ]
    .iter()
    .any(|s| out.contains(s))
}

#[test]
fn the_backend_doc_builds_and_passes_in_a_fresh_crate() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("docs/writing-a-backend.md")).expect("the doc");
    let files = files_of(&doc);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Cargo.toml", "src/lib.rs", "tests/conformance.rs"],
        "the page's file blocks"
    );
    // Outside the workspace, so that cargo does not take the crate for one of its members.
    let dir = tempfile::Builder::new()
        .prefix("gos-writing-a-backend-")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    let checkout = root.to_str().expect("a UTF-8 checkout path");
    for (name, text) in &files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text.replace("/path/to/gos", checkout)).expect("write");
    }
    // The workspace's versions, so that the local registry cache has them all.
    std::fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).expect("Cargo.lock");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("writing-a-backend");

    let (ok, out) = cargo_test(dir.path(), &target, true);
    if ok {
        return;
    }
    let (ok, out) = if out.contains("--offline") || unreachable_registry(&out) {
        cargo_test(dir.path(), &target, false)
    } else {
        (ok, out)
    };
    if !ok && unreachable_registry(&out) {
        eprintln!("SKIPPED: the registry is unreachable, the doc's crate was not built:\n{out}");
        return;
    }
    assert!(ok, "the crate of docs/writing-a-backend.md failed:\n{out}");
    assert!(out.contains("test map_store_conforms ... ok"), "{out}");
}
