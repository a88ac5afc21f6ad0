//! `gos serve`: a long-running cluster. Opens (or creates) the store a TOML config describes
//! and serves it through the cluster's QUIC gateway until SIGINT or SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use gos::config::{Backend, ClusterConfig};
use gos::gateway::Gateway;
use gos::shm::ShmStore;
use gos::{Limits, ObjectStore};

use crate::instrument::Instrumented;
use crate::metrics::{MetricsServer, StoreMetrics};
use crate::units::fmt_size;

/// Arguments of `gos serve` (the long help is [`SERVE_HELP`]).
#[derive(Debug, clap::Args)]
#[command(after_help = SERVE_HELP)]
pub(crate) struct ServeArgs {
    /// The cluster's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Remove the shared-memory store's name when stopping (processes that still have it open
    /// keep working; the memory goes with the last of them).
    #[arg(long)]
    remove_on_exit: bool,
    /// Serve an existing shared-memory store even when its limits (capacity, largest value,
    /// entries) differ from the config's; without it, such a store is refused.
    #[arg(long)]
    accept_store_limits: bool,
    /// Print the listening and stopped lines as JSON lines (`{"event":"listening",...}`).
    #[arg(long)]
    json: bool,
}

const SERVE_HELP: &str = "\
Reads FILE (see docs/examples/cluster-a.toml), opens its store (a shared-memory store is
opened if it exists and created otherwise; a memory store lives as long as this process)
and starts its gateway, which serves the store to the clusters and clients on its allow
list (`allow` and `peers`). Relative paths in FILE are taken from FILE's directory.

The [gateway] section is required: serving the store is what this command is for. Processes
on this host need no server to share an shm store (they open it by name), and a memory
store without a gateway would be reachable by nobody.

An existing shm store keeps the limits it was made with: when they differ from FILE's, the
command refuses to serve it (remove it with `gos store rm NAME`, or pass
--accept-store-limits). With `backend = \"redis\"` the store is the namespace `name` on the
Redis server or cluster of `urls` (started by you, see docs/redis.md); an existing namespace
made with other limits is refused the same way. With a [metrics] section it also serves Prometheus text at
http://<metrics.listen>/metrics. Every field of FILE: docs/config.md.

Once listening it prints one line, then runs until SIGINT or SIGTERM:
  gos serve: cluster <id> listening on <addr>, store <backend> <name>[, metrics on http://<addr>/metrics]";

/// The runtime's worker threads the config asks for (`[gateway.transport] runtime_workers`),
/// read before the runtime is built; a config that does not load is reported by [`run`].
pub(crate) fn runtime_workers(args: &ServeArgs) -> Option<usize> {
    let config = ClusterConfig::from_file(&args.config).ok()?;
    config.gateway?.transport.runtime_workers.filter(|&n| n > 0)
}

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let path = &args.config;
    let config = ClusterConfig::from_file(path).map_err(|e| anyhow!("{e}"))?;
    let base = config_dir(path);
    let Some(section) = config.gateway.as_ref() else {
        bail!(
            "{} has no [gateway] section: `gos serve` serves the store through its gateway (processes on this host can open an shm store by name without it)",
            path.display()
        );
    };
    if args.remove_on_exit && config.store.backend != Backend::Shm {
        bail!("--remove-on-exit applies to an shm store only");
    }
    // The topology is not used to serve the store, but a config that cannot build its graph
    // is wrong and would fail its nodes later: say so now.
    config
        .topology
        .build(&base)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let wire = section
        .to_wire(&base)
        .map_err(|e| anyhow!("{}: gateway: {e}", path.display()))?;

    let cluster = wire
        .tls
        .cluster_id()
        .map_err(|e| anyhow!("{}: gateway certificate: {e}", path.display()))?;
    if cluster != config.cluster_id {
        bail!(
            "{}: cluster_id is `{}` but the gateway certificate {} names `{cluster}`",
            path.display(),
            config.cluster_id,
            base.join(&section.cert).display()
        );
    }

    // Before the listening line: a signal sent as soon as it is read must stop us cleanly.
    let mut signals = Signals::install()?;
    let (store, store_desc, created) =
        open_store(&config, crate::progress::shown(false, args.json)).await?;
    // Leave no store behind that this failed run made.
    let cleanup = |store: Arc<dyn ObjectStore>| {
        if let (true, Some(name)) = (created, config.store.name.as_deref()) {
            drop(store);
            let _ = ShmStore::remove(name);
        }
    };
    if !created {
        let (have, want) = (store.limits(), config.store.limits());
        if have != want && !args.accept_store_limits {
            let remove = if config.store.backend == Backend::Redis {
                "use another store.name".to_owned()
            } else {
                format!(
                    "remove it (`gos store rm {}`)",
                    config.store.name.as_deref().unwrap_or("NAME")
                )
            };
            bail!(
                "the existing store {store_desc} has other limits than {} ({}; the file asks for {}): {remove} or pass --accept-store-limits",
                path.display(),
                describe_limits(&have),
                describe_limits(&want),
            );
        }
    }
    let metrics = Arc::new(StoreMetrics::default());
    let served: Arc<dyn ObjectStore> = Arc::new(Instrumented::new(
        Arc::clone(&store),
        Some(Arc::clone(&metrics)),
    ));
    let gateway = match Gateway::start(wire, served).await {
        Ok(gateway) => Arc::new(gateway),
        Err(e) => {
            cleanup(store);
            bail!("starting the gateway on {}: {e}", section.listen);
        }
    };
    let addr = gateway
        .local_addr()
        .map_err(|e| anyhow!("the gateway's address: {e}"))?;
    let metrics_server = match &config.metrics {
        None => None,
        Some(m) => {
            let started = async {
                let at = m
                    .listen
                    .resolve()
                    .map_err(|e| anyhow!("metrics.listen: {e}"))?;
                MetricsServer::start(at, &metrics, Arc::clone(&store), Arc::downgrade(&gateway))
                    .await
            }
            .await;
            match started {
                Ok(server) => Some(server),
                Err(e) => {
                    if let Ok(gateway) = Arc::try_unwrap(gateway) {
                        gateway.shutdown().await;
                    }
                    cleanup(store);
                    return Err(e);
                }
            }
        }
    };
    let metrics_desc = metrics_server
        .as_ref()
        .map(|m| format!(", metrics on http://{}/metrics", m.addr()))
        .unwrap_or_default();
    let line = if args.json {
        serde_json::json!({
            "event": "listening",
            "cluster": cluster,
            "addr": addr.to_string(),
            "store": store_desc,
            "metrics": metrics_server.as_ref().map(|m| format!("http://{}/metrics", m.addr())),
        })
        .to_string()
    } else {
        format!(
            "gos serve: cluster {cluster} listening on {addr}, store {store_desc}{metrics_desc}"
        )
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    drop(out);

    let signal = signals.wait().await;
    drop(metrics_server);
    let stats = gateway.stats();
    match Arc::try_unwrap(gateway) {
        Ok(gateway) => gateway.shutdown().await,
        Err(_) => tracing::warn!("the gateway is still referenced; not waiting for it"),
    }
    drop(store);
    if args.remove_on_exit
        && let Some(name) = config.store.name.as_deref()
    {
        ShmStore::remove(name).map_err(|e| anyhow!("removing shm store `{name}`: {e}"))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "event": "stopped",
                "cluster": cluster,
                "signal": signal,
                "connections": stats.connections,
                "requests": stats.requests_ok + stats.requests_failed,
                "failed": stats.requests_failed,
                "bytes_in": stats.bytes_in,
                "bytes_out": stats.bytes_out,
                "store_removed": args.remove_on_exit,
            })
        );
    } else {
        println!(
            "gos serve: cluster {cluster} stopped on {signal} (served {} connections, {} requests, {} failed, {} in, {} out){}",
            stats.connections,
            stats.requests_ok + stats.requests_failed,
            stats.requests_failed,
            fmt_size(stats.bytes_in),
            fmt_size(stats.bytes_out),
            if args.remove_on_exit {
                "; store removed"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn describe_limits(l: &Limits) -> String {
    format!(
        "capacity {}, largest value {}, {} entries",
        fmt_size(l.capacity_bytes),
        fmt_size(l.max_value_size),
        l.max_entries
    )
}

/// The directory relative paths of a config file are taken from.
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Opens the configured store (the facade's `open_store_async`: a shared-memory store or a
/// Redis namespace is opened if it exists, created otherwise); returns it, a description for
/// the listening line (`shm <name>`, `redis <namespace> on <urls>` or `memory (in-process)`)
/// and whether this call created it. Creating a large shm store takes seconds (its arena is
/// allocated and faulted in): a spinner says so meanwhile when `show` (stderr a terminal, no
/// `--json`).
async fn open_store(
    config: &ClusterConfig,
    show: bool,
) -> Result<(Arc<dyn ObjectStore>, String, bool)> {
    let desc = match (config.store.backend, config.store.name.as_deref()) {
        (Backend::Shm, Some(name)) => format!("shm {name}"),
        (Backend::Redis, name) => format!(
            "redis {} on {}",
            name.unwrap_or("gos"),
            config.store.urls.as_deref().unwrap_or_default().join(",")
        ),
        _ => "memory (in-process)".to_owned(),
    };
    let spinner = (config.store.backend == Backend::Shm && show).then(|| {
        let capacity = config.store.capacity.0;
        let arena = config
            .store
            .arena
            .map_or(capacity.saturating_mul(2), |a| a.0);
        crate::progress::spinner(true).with_message(format!(
            "opening or creating {desc} (capacity {}, arena about {})",
            fmt_size(capacity),
            fmt_size(arena)
        ))
    });
    let opened = gos::open_store_async(config)
        .await
        .map_err(|e| anyhow!("opening the store {desc}: {e}"));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let opened = opened?;
    Ok((opened.store, desc, opened.created))
}

/// SIGINT and SIGTERM, caught.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
        })
    }

    /// Waits for either; returns its name.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
