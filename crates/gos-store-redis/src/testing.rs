//! Real Redis servers for tests and benchmarks: a standalone `redis-server` or a 3-master
//! cluster on free 127.0.0.1 ports, their files in a temp dir, each stopped by its pid when
//! its guard drops (also when a test panics). A missing `redis-server` panics with a clear
//! message: tests must not pass silently without a server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{RedisConfig, RedisStore};
use gos_store::Limits;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One `redis-server` process, killed and reaped on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Servers started for one test: one standalone, or the masters of a cluster.
#[derive(Debug)]
pub struct Redis {
    /// The server processes.
    pub servers: Vec<Server>,
    /// Their URLs (`redis://127.0.0.1:<port>`).
    pub urls: Vec<String>,
}

fn binary(name: &str) -> String {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{name}` is not installed: these tests need a real Redis \
         (apt-get install -y redis-server; .ci/run installs it)"
    );
    name.to_owned()
}

/// A port that is free, with its cluster bus port (+10000) free too.
fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        let port = addr.port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found on 127.0.0.1");
}

fn spawn(extra: &[&str]) -> Server {
    let exe = binary("redis-server");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("gos-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let child = Command::new(exe)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--maxmemory", "4gb", "--maxmemory-policy", "noeviction"])
        .args(["--dir", dir.to_str().expect("utf-8 temp dir")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let server = Server { child, port, dir };
    wait_for(
        || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut c = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        },
        "redis-server to answer PING",
    );
    server
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < START_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a standalone server.
pub fn standalone() -> Redis {
    let s = spawn(&[]);
    let urls = vec![format!("redis://127.0.0.1:{}", s.port)];
    Redis {
        servers: vec![s],
        urls,
    }
}

/// Starts a cluster of three masters (no replicas), `cluster_state:ok` on every node.
pub fn cluster() -> Redis {
    let servers: Vec<Server> = (0..3)
        .map(|_| {
            spawn(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ])
        })
        .collect();
    let addrs: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let status = Command::new(binary("redis-cli"))
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run redis-cli --cluster create");
    assert!(status.success(), "redis-cli --cluster create failed");
    for s in &servers {
        let port = s.port;
        wait_for(
            || {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
                let mut c = client
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .ok()?;
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
                info.contains("cluster_state:ok").then_some(())
            },
            "cluster_state:ok",
        );
    }
    let urls = addrs.iter().map(|a| format!("redis://{a}")).collect();
    Redis { servers, urls }
}

static NAMESPACE: AtomicU64 = AtomicU64::new(0);

/// A namespace no other store of this process uses.
pub fn fresh_namespace() -> String {
    format!(
        "t{}-{}",
        std::process::id(),
        NAMESPACE.fetch_add(1, Ordering::Relaxed)
    )
}

impl Redis {
    /// A configuration of a fresh store on these servers.
    pub fn config(&self, limits: Limits) -> RedisConfig {
        RedisConfig::new(self.urls.clone())
            .namespace(fresh_namespace())
            .limits(limits)
    }

    /// Opens a fresh store on these servers.
    pub async fn store(&self, limits: Limits) -> RedisStore {
        RedisStore::open(self.config(limits))
            .await
            .expect("open a redis store")
    }
}
