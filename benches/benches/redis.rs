//! `RedisStore` rounds (put with one reader, get, release) of 100 MiB and 64 KiB on a
//! standalone `redis-server` and on a 3-master cluster started by this binary, beside a plain
//! `SET`+`GET`+`DEL` with the same `redis` crate on the same server, redis-py's (when
//! `import redis` works in `python3`), and the shm store's put+get+delete, all in one run.
//!
//! Run: `cargo bench -p gos-benches --bench redis`. It prints a table (no criterion: each
//! round moves 100 MiB three times through a socket), then one ratio line per deployment and
//! size (`redis-store 100MiB round / plain SET+GET = X`, and `/ redis-py SET+GET`). Our
//! round, the plain one and redis-py's (a `python3` process kept for the run, timing each
//! round itself) are timed in turns, so that the load of a shared machine weighs on all alike. Target (issue 13): the RedisStore
//! 100 MiB round no slower than 1.2x the plain SET+GET round of the same run.
//! Figures: docs/benchmarks.md.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
use gos_store_redis::testing::{self, Redis};
use gos_store_redis::{RedisConfig, RedisStore};
use gos_store_shm::{ShmConfig, ShmStore};

const BIG: usize = 100 << 20;
const SMALL: usize = 64 << 10;
const BIG_ROUNDS: usize = 15;
const SMALL_ROUNDS: usize = 300;

/// Median of `runs` timings of one async round.
async fn median<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    f().await?; // warm-up
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f().await?;
        t.push(start.elapsed());
    }
    t.sort_unstable();
    Ok(t[t.len() / 2])
}

async fn store_round(store: &RedisStore, value: &Bytes) -> anyhow::Result<()> {
    let key = ObjectKey::new("bench/n1/round_1")?;
    store
        .put_opts(&key, value.clone(), &PutOptions::new().readers(1))
        .await?;
    let got = store
        .get(&key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    anyhow::ensure!(got.len() == value.len());
    store.release(&key).await?;
    Ok(())
}

async fn plain_round(
    conn: &mut impl redis::aio::ConnectionLike,
    value: &Bytes,
) -> anyhow::Result<()> {
    redis::cmd("SET")
        .arg("plain:{bench}")
        .arg(&value[..])
        .exec_async(conn)
        .await?;
    let got: Vec<u8> = redis::cmd("GET")
        .arg("plain:{bench}")
        .query_async(conn)
        .await?;
    anyhow::ensure!(got.len() == value.len());
    redis::cmd("DEL")
        .arg("plain:{bench}")
        .exec_async(conn)
        .await?;
    Ok(())
}

/// A redis-py client in a `python3` process of its own, timing one SET+GET+DEL round (in
/// Python, with `time.perf_counter`) each time it is asked: its rounds are taken in turn with
/// ours, under the same load.
struct PyRounds {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl PyRounds {
    /// `None` when `import redis` fails (redis-py not installed).
    fn start(port: u16, cluster: bool) -> Option<PyRounds> {
        use std::io::BufRead;
        let client = if cluster {
            format!("redis.cluster.RedisCluster(host='127.0.0.1', port={port})")
        } else {
            format!("redis.Redis(host='127.0.0.1', port={port})")
        };
        let script = format!(
            "import sys, time\n\
             import redis, redis.cluster\n\
             r = {client}\n\
             values = {{}}\n\
             print('ready', flush=True)\n\
             for line in sys.stdin:\n\
             \x20   n = int(line)\n\
             \x20   v = values.setdefault(n, b'x' * n)\n\
             \x20   s = time.perf_counter()\n\
             \x20   r.set('py:{{bench}}', v); g = r.get('py:{{bench}}'); r.delete('py:{{bench}}')\n\
             \x20   t = time.perf_counter() - s\n\
             \x20   assert len(g) == n\n\
             \x20   print(t, flush=True)\n"
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        let ready = stdout.read_line(&mut line).is_ok() && line.trim() == "ready";
        let py = PyRounds {
            child,
            stdin,
            stdout,
        };
        ready.then_some(py)
    }

    /// One round of `size` bytes, as Python timed it.
    fn round(&mut self, size: usize) -> anyhow::Result<Duration> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{size}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let secs: f64 = line
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("redis-py answered `{}`: {e}", line.trim()))?;
        Ok(Duration::from_secs_f64(secs))
    }
}

impl Drop for PyRounds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median_of(mut t: Vec<Duration>) -> Duration {
    t.sort_unstable();
    t[t.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn deployment(
    name: &str,
    redis: &Redis,
    rows: &mut Vec<String>,
    ratios: &mut Vec<String>,
) -> anyhow::Result<()> {
    let config = RedisConfig::new(redis.urls.clone())
        .namespace("bench")
        .limits(Limits::with_capacity(1 << 30));
    let store = RedisStore::open(config).await?;
    let cluster = store.is_cluster();
    let plain: Box<dyn PlainConn> = if cluster {
        let client = redis::cluster::ClusterClientBuilder::new(redis.urls.clone())
            .response_timeout(Duration::from_secs(30))
            .build()?;
        Box::new(client.get_async_connection().await?)
    } else {
        let client = redis::Client::open(redis.urls[0].as_str())?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(30)));
        Box::new(client.get_connection_manager_with_config(cfg).await?)
    };
    let mut py = PyRounds::start(redis.servers[0].port, cluster);
    for (label, size, runs) in [
        ("100 MiB", BIG, BIG_ROUNDS),
        ("64 KiB", SMALL, SMALL_ROUNDS),
    ] {
        let value = Bytes::from(vec![7u8; size]);
        // Warm-up, then the three rounds in turn (ours, plain, redis-py, each going first in
        // its turn), so that a load change on a shared machine weighs on all alike.
        store_round(&store, &value).await?;
        plain.round(&value).await?;
        if let Some(p) = py.as_mut() {
            p.round(size)?;
        }
        let (mut t_ours, mut t_plain, mut t_py) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            // Each takes its turn at going first.
            for j in 0..3 {
                match (i + j) % 3 {
                    0 => {
                        let start = Instant::now();
                        store_round(&store, &value).await?;
                        t_ours.push(start.elapsed());
                    }
                    1 => {
                        let start = Instant::now();
                        plain.round(&value).await?;
                        t_plain.push(start.elapsed());
                    }
                    _ => {
                        if let Some(p) = py.as_mut() {
                            t_py.push(p.round(size)?);
                        }
                    }
                }
            }
        }
        let (ours, theirs) = (median_of(t_ours), median_of(t_plain));
        let py = (!t_py.is_empty()).then(|| ms(median_of(t_py)));
        let compact = label.replace(' ', "");
        ratios.push(format!(
            "{name}: redis-store {compact} round / plain SET+GET = {:.2}{}",
            ours.as_secs_f64() / theirs.as_secs_f64(),
            py.map_or(String::new(), |p| format!(
                "; / redis-py SET+GET = {:.2}",
                ms(ours) / p
            ))
        ));
        rows.push(format!(
            "| {name} | {label} | {:.2} ms | {:.2} ms | {} | **{:.2}x** |",
            ms(ours),
            ms(theirs),
            py.map_or("not importable".to_owned(), |p| format!("{p:.2} ms")),
            ours.as_secs_f64() / theirs.as_secs_f64(),
        ));
    }
    Ok(())
}

/// A plain connection of either kind, for the reference rounds.
trait PlainConn {
    fn round<'a>(
        &'a self,
        value: &'a Bytes,
    ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;
}

impl<C: redis::aio::ConnectionLike + Clone + Send> PlainConn for C {
    fn round<'a>(
        &'a self,
        value: &'a Bytes,
    ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>> {
        let mut conn = self.clone();
        Box::pin(async move { plain_round(&mut conn, value).await })
    }
}

async fn shm_rows(rows: &mut Vec<String>) -> anyhow::Result<()> {
    let name = format!("redis-bench-{}", std::process::id());
    let store = ShmStore::create(&name, ShmConfig::new(Limits::with_capacity(320 << 20)))?;
    let key = ObjectKey::new("bench/n1/round_1")?;
    let mut result = Ok(());
    for (label, size, runs) in [
        ("100 MiB", BIG, BIG_ROUNDS),
        ("64 KiB", SMALL, SMALL_ROUNDS),
    ] {
        let value = Bytes::from(vec![7u8; size]);
        let t = median(runs, || async {
            store.put(&key, value.clone()).await?;
            anyhow::ensure!(store.get(&key).await?.map(|v| v.len()) == Some(size));
            store.delete(&key).await?;
            Ok(())
        })
        .await;
        match t {
            Ok(t) => rows.push(format!(
                "| shm (one host) | {label} | {:.2} ms | | | |",
                ms(t)
            )),
            Err(e) => result = Err(e),
        }
    }
    drop(store);
    ShmStore::remove(&name)?;
    result
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    {
        let standalone = testing::standalone();
        rt.block_on(deployment(
            "standalone",
            &standalone,
            &mut rows,
            &mut ratios,
        ))?;
    }
    {
        let cluster = testing::cluster();
        rt.block_on(deployment(
            "cluster (3 masters)",
            &cluster,
            &mut rows,
            &mut ratios,
        ))?;
    }
    rt.block_on(shm_rows(&mut rows))?;
    println!(
        "| deployment | value | RedisStore round | plain SET+GET+DEL (redis crate) | redis-py SET+GET+DEL | ratio to plain |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    for r in ratios {
        println!("{r}");
    }
    println!("target (issue 13): redis-store 100MiB round / plain SET+GET <= 1.20");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average at the end (1, 5, 15 min): {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}
