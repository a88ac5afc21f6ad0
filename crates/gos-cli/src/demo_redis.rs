//! `gos demo --store redis`: the demo's nodes as tasks of this process over one `RedisStore`
//! on a Redis server or Redis Cluster the user started (`--redis-url`, or `$GOS_REDIS_URL`).
//! The run gets a namespace of its own, removed at the end, after an error, and after
//! SIGINT or SIGTERM: the demo leaves no key in Redis.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gos::redis::{RedisConfig, RedisStore};
use gos::{Federation, ObjectStore, ObjectStoreExt};

use crate::demo::{
    self, DemoArgs, FED_ID, ManagerMeter, Summary, fmt_kib, peak_rss_kib, until_signal,
};

/// The environment variable read when `--redis-url` is not given.
pub(crate) const URL_ENV: &str = "GOS_REDIS_URL";

/// How long removing the demo's namespace may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The URLs to use: `--redis-url`, or `$GOS_REDIS_URL` (a comma list).
fn urls(args: &DemoArgs, env: Option<String>) -> Result<Vec<String>> {
    let urls: Vec<String> = if args.redis_url.is_empty() {
        env.unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        args.redis_url.clone()
    };
    if urls.is_empty() {
        bail!(
            "--store redis needs --redis-url URL (or {URL_ENV}): start a server with \
             `redis-server --port 6379 --save '' --appendonly no`, then pass \
             --redis-url redis://127.0.0.1:6379 (docs/redis.md)"
        );
    }
    Ok(urls)
}

pub(crate) async fn run(args: &DemoArgs) -> Result<Summary> {
    let urls = urls(args, std::env::var(URL_ENV).ok())?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let namespace = format!("gos-demo-{}-{millis}", std::process::id());
    let config = RedisConfig::new(urls.clone())
        .namespace(namespace.clone())
        .limits(args.store_limits());
    let store = until_signal(async {
        RedisStore::open(config)
            .await
            .with_context(|| format!("connecting to redis at {}", urls.join(",")))
    })
    .await?;
    let result = until_signal(rounds(args, &store, &namespace, &urls)).await;
    // However the rounds ended, the namespace goes: what the rounds left (nothing when they
    // finished), the staging data of a put cut short by a signal, the bookkeeping.
    let cleaned = tokio::time::timeout(CLEANUP_TIMEOUT, store.destroy()).await;
    match (result, cleaned) {
        (Ok(summary), Ok(Ok(_))) => Ok(summary),
        (Ok(_), Ok(Err(e))) => Err(anyhow::anyhow!(
            "removing the demo's redis namespace `{namespace}`: {e}"
        )),
        (Ok(_), Err(_)) => bail!(
            "removing the demo's redis namespace `{namespace}` took more than {CLEANUP_TIMEOUT:?}"
        ),
        // The signal's message already says the stores were removed.
        (Err(e), Ok(Ok(_))) => Err(e),
        (Err(e), _) => Err(e.context(format!(
            "the demo's redis namespace `{namespace}` may be left behind"
        ))),
    }
}

async fn rounds(
    args: &DemoArgs,
    redis: &RedisStore,
    namespace: &str,
    urls: &[String],
) -> Result<Summary> {
    let topology = args.build_topology()?;
    let store: Arc<dyn ObjectStore> = Arc::new(redis.clone());
    let federation = Federation::new(FED_ID, topology, Arc::clone(&store)).policy(args.policy());
    let nodes = federation.nodes()?;
    let meter = ManagerMeter(vec![federation.manager().clone()], Vec::new());
    let rows = demo::drive(args, nodes, &meter).await?;
    Ok(Summary {
        layout: format!(
            "{} nodes as tasks in one process, redis store (namespace {namespace}, {} on {})",
            args.nodes,
            if redis.is_cluster() {
                "cluster"
            } else {
                "standalone"
            },
            urls.join(",")
        ),
        rows,
        initial_spread: (args.nodes - 1) as f32,
        peak_memory: format!("{} (this process)", fmt_kib(peak_rss_kib())),
        left_keys: store.keys().await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn args(argv: &[&str]) -> DemoArgs {
        let mut all = vec!["gos"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all)
            .map(|c| c.demo)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn urls_come_from_the_flags_or_the_environment() {
        let a = args(&[
            "--store",
            "redis",
            "--redis-url",
            "redis://a:1,redis://b:2",
            "--redis-url",
            "redis://c:3",
        ]);
        assert_eq!(
            urls(&a, Some("redis://env:1".into())).ok(),
            Some(vec![
                "redis://a:1".to_owned(),
                "redis://b:2".to_owned(),
                "redis://c:3".to_owned()
            ])
        );
        let a = args(&["--store", "redis"]);
        assert_eq!(
            urls(&a, Some(" redis://x:1 , redis://y:2".into())).ok(),
            Some(vec!["redis://x:1".to_owned(), "redis://y:2".to_owned()])
        );
        let err = urls(&a, None).unwrap_err().to_string();
        assert!(
            err.contains("--redis-url") && err.contains("redis-server"),
            "{err}"
        );
    }
}
