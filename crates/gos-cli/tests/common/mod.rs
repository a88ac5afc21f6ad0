//! Helpers of the `gos` end-to-end tests: run the built binary with a deadline, keep
//! long-running children in guards that kill them on drop, unique shared-memory store names
//! removed on drop, and cluster configs on 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `gos` binary under test, with a clean logging environment.
pub fn gos() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gos"));
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    cmd
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit code 0 and returns stdout.
    pub fn ok(&self) -> String {
        assert!(
            self.status.success(),
            "expected success, got {}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout(),
            self.stderr
        );
        self.stdout()
    }

    /// Asserts exit code 1 and exactly one stderr line starting `error:`, no panic; returns
    /// that line.
    pub fn one_line_error(&self) -> String {
        self.one_line_error_code(1)
    }

    /// Asserts exit code 3 (not found) and one stderr line starting `error:`.
    pub fn not_found_error(&self) -> String {
        self.one_line_error_code(3)
    }

    /// Asserts exit code 2 (usage) and one stderr line starting `error:`.
    pub fn usage_error(&self) -> String {
        self.one_line_error_code(2)
    }

    /// Asserts exit code `code` and exactly one stderr line starting `error:`, no panic;
    /// returns that line.
    pub fn one_line_error_code(&self, code: i32) -> String {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit code {code}\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one stderr line: {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("error: "), "{:?}", self.stderr);
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "{:?}",
            self.stderr
        );
        lines[0].to_owned()
    }
}

/// Runs `gos args...`, killing it and failing the test if it runs longer than `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    run_cmd(gos().args(args), limit)
}

pub fn run_cmd(cmd: &mut Command, limit: Duration) -> Output {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard::new(child);
    let stdout = drain(guard.child.stdout.take().unwrap());
    let stderr = drain(guard.child.stderr.take().unwrap());
    let status = guard
        .wait(limit)
        .unwrap_or_else(|| panic!("`gos {:?}` did not finish within {limit:?}", cmd.get_args()));
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
        elapsed: start.elapsed(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Guard {
    pub child: Child,
}

impl Guard {
    pub fn new(child: Child) -> Self {
        Guard { child }
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `gos serve`: its guard, its address, and its output after the first line.
#[derive(Debug)]
pub struct Served {
    pub guard: Guard,
    pub addr: SocketAddr,
    pub first_line: String,
    rest: mpsc::Receiver<String>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Served {
    /// SIGTERM, then waits for a clean exit; returns (status, last stdout lines, stderr).
    pub fn stop(mut self) -> (ExitStatus, String, String) {
        self.guard.terminate();
        let status = self
            .guard
            .wait(Duration::from_secs(20))
            .expect("gos serve did not stop within 20 s of SIGTERM");
        let rest: Vec<String> = self.rest.try_iter().collect();
        let stderr = String::from_utf8_lossy(&self.stderr.join().unwrap()).into_owned();
        (status, rest.join("\n"), stderr)
    }
}

/// Starts `gos serve --config <config> [extra]` and waits (bounded) for its listening line.
pub fn serve(config: &Path, extra: &[&str]) -> Served {
    let child = gos()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard::new(child);
    let stdout = guard.child.stdout.take().unwrap();
    let stderr = drain(guard.child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first_line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => {
            drop(guard);
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("gos serve printed no listening line within 20 s; stderr: {stderr}");
        }
    };
    let addr = listening_addr(&first_line);
    Served {
        guard,
        addr,
        first_line,
        rest: rx,
        stderr,
    }
}

/// The address in `gos serve: cluster <id> listening on <addr>, store ...`.
pub fn listening_addr(line: &str) -> SocketAddr {
    let rest = line
        .split_once(" listening on ")
        .unwrap_or_else(|| panic!("not a listening line: {line}"))
        .1;
    let addr = rest.split_once(',').map_or(rest, |(a, _)| a);
    addr.parse()
        .unwrap_or_else(|e| panic!("bad address in {line}: {e}"))
}

/// A unique shared-memory store name, removed (if it exists) on drop.
#[derive(Debug)]
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        ShmName(format!(
            "cli-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub fn exists(&self) -> bool {
        gos::shm::ShmStore::open(&self.0).is_ok()
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = gos::shm::ShmStore::remove(&self.0);
    }
}

/// Writes a cluster config (shm store, gateway on 127.0.0.1:0, certificates in `certs/`
/// relative to the config's directory) and returns its path.
pub fn write_config(dir: &Path, cluster: &str, shm: &ShmName, allow: &[&str]) -> PathBuf {
    let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        r#"fed_id = "e2e"
cluster_id = "{cluster}"

[store]
backend = "shm"
name = "{shm}"
capacity = "64MiB"
max_value_size = "16MiB"

[topology]
kind = "ring"
nodes = 4

[gateway]
listen = "127.0.0.1:0"
ca = "certs/ca.pem"
cert = "certs/{cluster}.pem"
key = "certs/{cluster}.key"
allow = [{allow}]
# The remote-store client lists and deletes by prefix: an admin (other ids are peer clusters).
roles = {{ client = "admin" }}
"#,
        shm = shm.0,
        allow = allow.join(", ")
    );
    let path = dir.join(format!("{cluster}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub const SHORT: Duration = Duration::from_secs(20);

/// `gos certs --out <out> --cluster <id>...`: a federation CA and one identity per id.
pub fn make_certs(out: &Path, ids: &[&str]) {
    let out = out.to_str().expect("a UTF-8 path");
    let mut args = vec!["certs", "--out", out];
    for id in ids {
        args.extend(["--cluster", id]);
    }
    run(&args, SHORT).ok();
}

/// `gos store --remote <addr> --cluster <cluster> --certs <certs> --as <me> <cmd...>`.
pub fn remote(served: &Served, cluster: &str, certs: &Path, me: &str, cmd: &[&str]) -> Output {
    let addr = served.addr.to_string();
    let mut args = vec![
        "store",
        "--remote",
        &addr,
        "--cluster",
        cluster,
        "--certs",
        certs.to_str().unwrap(),
        "--as",
        me,
        "--timeout",
        "5",
    ];
    args.extend_from_slice(cmd);
    run(&args, SHORT)
}

/// `gos store stats` of a gateway nobody listens on (127.0.0.1:9), as `client` of `certs`,
/// each network wait bounded by `timeout`.
pub fn unreachable_gateway(certs: &Path, timeout: &str) -> Output {
    run(
        &[
            "store",
            "--remote",
            "127.0.0.1:9",
            "--cluster",
            "nobody",
            "--certs",
            certs.to_str().unwrap(),
            "--timeout",
            timeout,
            "stats",
        ],
        SHORT,
    )
}
