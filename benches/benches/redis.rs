//! `RedisStore` rounds (put with one reader, get, release) of 100 MiB and 64 KiB on a
//! standalone `redis-server` and on a 3-master cluster started by this binary, beside a plain
//! `SET`+`GET`+`DEL` with the same `redis` crate on the same server, redis-py's (when
//! `import redis` works in `python3`), and the shm store's put+get+delete, all in one run.
//!
//! Run: `cargo bench -p gos-benches --bench redis`. It prints a table (no criterion: each
//! round moves 100 MiB three times through a socket), then one ratio line per deployment and
//! size (`redis-store 100MiB round / plain SET+GET = X`). Our round and the plain one are
//! timed in turns, so that the load of a shared machine weighs on both alike. Target (issue 13): the RedisStore
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
const BIG_ROUNDS: usize = 7;
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

/// Medians of `runs` timings of two rounds taken in turns (a, b, a, b...), so that a load
/// change on a shared machine hits both alike.
async fn medians_in_turn<A, FA, B, FB>(
    runs: usize,
    mut a: A,
    mut b: B,
) -> anyhow::Result<(Duration, Duration)>
where
    A: FnMut() -> FA,
    FA: Future<Output = anyhow::Result<()>>,
    B: FnMut() -> FB,
    FB: Future<Output = anyhow::Result<()>>,
{
    a().await?; // warm-up
    b().await?;
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let start = Instant::now();
        a().await?;
        ta.push(start.elapsed());
        let start = Instant::now();
        b().await?;
        tb.push(start.elapsed());
    }
    ta.sort_unstable();
    tb.sort_unstable();
    Ok((ta[runs / 2], tb[runs / 2]))
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

/// redis-py's median round in ms, or `None` when it is not importable.
fn redis_py(port: u16, cluster: bool, size: usize, runs: usize) -> Option<f64> {
    let client = if cluster {
        format!("redis.cluster.RedisCluster(host='127.0.0.1', port={port})")
    } else {
        format!("redis.Redis(host='127.0.0.1', port={port})")
    };
    let script = format!(
        "import redis, redis.cluster, time, statistics\n\
         r = {client}\n\
         v = b'x' * {size}\n\
         t = []\n\
         for i in range({runs} + 1):\n\
         \x20   s = time.perf_counter()\n\
         \x20   r.set('py:{{bench}}', v); g = r.get('py:{{bench}}'); r.delete('py:{{bench}}')\n\
         \x20   assert len(g) == {size}\n\
         \x20   t.append(time.perf_counter() - s)\n\
         print(statistics.median(t[1:]) * 1000)\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
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
    for (label, size, runs) in [
        ("100 MiB", BIG, BIG_ROUNDS),
        ("64 KiB", SMALL, SMALL_ROUNDS),
    ] {
        let value = Bytes::from(vec![7u8; size]);
        let (ours, theirs) =
            medians_in_turn(runs, || store_round(&store, &value), || plain.round(&value)).await?;
        let py = redis_py(redis.servers[0].port, cluster, size, runs.min(50));
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
