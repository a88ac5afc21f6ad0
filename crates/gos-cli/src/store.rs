//! `gos store`: inspect or change a running store, a shared-memory store on this host by name
//! or a cluster's store through its gateway (mutual TLS, as a client identity of the
//! federation).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gos::gateway::{AllowList, ClientConfig, RemoteStore, Timeouts, TlsSettings};
use gos::shm::ShmStore;
use gos::{Bytes, KeyPrefix, ObjectKey, ObjectStore, ObjectStoreExt, PutMode};

use crate::certs::{self, CA_STEM};
use crate::demo::fmt_bytes;

/// Arguments of `gos store` (the long help is [`STORE_HELP`]).
#[derive(Debug, clap::Args)]
#[command(after_help = STORE_HELP)]
pub(crate) struct StoreArgs {
    /// A shared-memory store on this host, by name.
    #[arg(long, value_name = "NAME", required_unless_present = "remote", conflicts_with_all = ["remote", "cluster", "certs", "as_id"])]
    shm: Option<String>,
    /// A cluster's gateway, as HOST:PORT.
    #[arg(long, value_name = "ADDR", requires_all = ["cluster", "certs"])]
    remote: Option<String>,
    /// The remote cluster's id (its gateway certificate must name it).
    #[arg(long, value_name = "ID")]
    cluster: Option<String>,
    /// Directory holding ca.pem and this client's certificate and key (ID.pem, ID.key; ID: --as).
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// The client identity to present (a certificate in --certs).
    #[arg(long = "as", id = "as_id", value_name = "ID")]
    as_id: Option<String>,
    /// Remote: seconds each network wait (connect, each read or write) may take.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    #[command(subcommand)]
    cmd: StoreCmd,
}

const STORE_HELP: &str = "\
The store is either --shm NAME (a shared-memory store on this host, such as one `gos serve`
made) or --remote ADDR --cluster ID --certs DIR (a cluster's store through its gateway).

A remote client proves who it is with a certificate of the federation CA: DIR holds ca.pem
and <as>.pem / <as>.key (made by `gos certs`), and the gateway's allow list must name <as>.
Without --as, the identity is the one certificate in DIR other than the CA's and the target
cluster's; when there are several, --as is required, so that a client never presents an
identity by accident.

Examples:
  gos store --shm cluster-a keys --prefix my_experiment
  gos store --remote 127.0.0.1:7400 --cluster cluster-a --certs certs --as client \\
      put my_experiment/node_0/round_1 --file weights.bin
  gos store --remote 127.0.0.1:7400 --cluster cluster-a --certs certs --as client \\
      get my_experiment/node_0/round_1 --out weights.bin";

#[derive(Debug, clap::Subcommand)]
enum StoreCmd {
    /// List the keys (sorted), one a line.
    Keys {
        /// Only the keys under this prefix (whole segments: `fed` or `fed/node_3`).
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
    },
    /// Read a value: raw bytes to stdout, or its size and a hex preview when stdout is a
    /// terminal. Exit code 1 when the key does not exist.
    Get {
        /// The key.
        key: String,
        /// Write the value to this file instead.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Store a value (overwriting, unless --create).
    Put {
        /// The key.
        key: String,
        /// The value is this file's content.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "value",
            conflicts_with = "value"
        )]
        file: Option<PathBuf>,
        /// The value is this string (UTF-8).
        #[arg(long, value_name = "STRING")]
        value: Option<String>,
        /// Fail if the key exists.
        #[arg(long)]
        create: bool,
    },
    /// Delete a key. Exit code 1 when it did not exist.
    Delete {
        /// The key.
        key: String,
    },
    /// Delete every key under a prefix (whole segments); prints how many.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Entries, bytes used, capacity and limits.
    Stats,
}

pub(crate) async fn run(args: StoreArgs) -> Result<()> {
    // Parse what the user typed before connecting to anything.
    let op = Op::parse(args.cmd)?;
    let store = open(
        args.shm.as_deref(),
        args.remote.as_deref(),
        args.cluster.as_deref(),
        args.certs.as_deref(),
        args.as_id.as_deref(),
        args.timeout,
    )
    .await?;
    op.run(store.as_ref()).await
}

/// A command with its keys parsed.
enum Op {
    Keys(KeyPrefix),
    Get(ObjectKey, Option<PathBuf>),
    Put(ObjectKey, Bytes, PutMode),
    Delete(ObjectKey),
    DeletePrefix(KeyPrefix),
    Stats,
}

fn parse_key(key: &str) -> Result<ObjectKey> {
    ObjectKey::new(key).map_err(|e| anyhow!("invalid key `{}`: {e}", key.escape_debug()))
}

fn parse_prefix(prefix: &str) -> Result<KeyPrefix> {
    KeyPrefix::new(prefix).map_err(|e| anyhow!("invalid prefix `{}`: {e}", prefix.escape_debug()))
}

impl Op {
    fn parse(cmd: StoreCmd) -> Result<Op> {
        Ok(match cmd {
            StoreCmd::Keys { prefix } => Op::Keys(
                prefix
                    .as_deref()
                    .map_or(Ok(KeyPrefix::root()), parse_prefix)?,
            ),
            StoreCmd::Get { key, out } => Op::Get(parse_key(&key)?, out),
            StoreCmd::Put {
                key,
                file,
                value,
                create,
            } => {
                let key = parse_key(&key)?;
                let bytes = match (file, value) {
                    (Some(file), _) => Bytes::from(
                        std::fs::read(&file)
                            .with_context(|| format!("reading {}", file.display()))?,
                    ),
                    (None, Some(value)) => Bytes::from(value),
                    (None, None) => bail!("put needs --file or --value"),
                };
                let mode = if create {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                };
                Op::Put(key, bytes, mode)
            }
            StoreCmd::Delete { key } => Op::Delete(parse_key(&key)?),
            StoreCmd::DeletePrefix { prefix } => {
                let prefix = parse_prefix(&prefix)?;
                if prefix.is_root() {
                    bail!("refusing to delete the empty prefix (every key)");
                }
                Op::DeletePrefix(prefix)
            }
            StoreCmd::Stats => Op::Stats,
        })
    }

    async fn run(self, store: &dyn ObjectStore) -> Result<()> {
        // Store errors print flat: their Display already names their cause.
        let flat = |e: gos::StoreError| anyhow!("{e}");
        let mut out = std::io::stdout().lock();
        match self {
            Op::Keys(prefix) => {
                let mut keys = store.keys_with_prefix(&prefix).await.map_err(flat)?;
                keys.sort();
                for key in keys {
                    writeln!(out, "{key}")?;
                }
            }
            Op::Get(key, file) => {
                let value = store
                    .get(&key)
                    .await
                    .map_err(flat)?
                    .ok_or_else(|| anyhow!("key `{key}` not found"))?;
                match file {
                    Some(file) => {
                        std::fs::write(&file, &value)
                            .with_context(|| format!("writing {}", file.display()))?;
                        writeln!(
                            out,
                            "wrote {} ({} bytes) to {}",
                            key,
                            value.len(),
                            file.display()
                        )?;
                    }
                    None if out.is_terminal() => {
                        writeln!(out, "{}", preview(&key, &value))?;
                    }
                    None => out.write_all(&value)?,
                }
            }
            Op::Put(key, value, mode) => {
                let len = value.len();
                store.put_mode(&key, value, mode).await.map_err(flat)?;
                writeln!(out, "put {key} ({len} bytes)")?;
            }
            Op::Delete(key) => {
                if !store.delete(&key).await.map_err(flat)? {
                    bail!("key `{key}` not found");
                }
                writeln!(out, "deleted {key}")?;
            }
            Op::DeletePrefix(prefix) => {
                let n = store.delete_prefix(&prefix).await.map_err(flat)?;
                writeln!(out, "deleted {n} keys under {prefix}")?;
            }
            Op::Stats => {
                let stats = store.stats().await.map_err(flat)?;
                let limits = store.limits();
                writeln!(out, "entries:        {}", stats.entries)?;
                writeln!(
                    out,
                    "bytes used:     {} ({})",
                    stats.bytes,
                    fmt_bytes(stats.bytes)
                )?;
                writeln!(
                    out,
                    "capacity:       {} ({})",
                    stats.capacity_bytes,
                    fmt_bytes(stats.capacity_bytes)
                )?;
                writeln!(
                    out,
                    "available:      {} ({})",
                    stats.available(),
                    fmt_bytes(stats.available())
                )?;
                writeln!(
                    out,
                    "max value size: {} ({})",
                    limits.max_value_size,
                    fmt_bytes(limits.max_value_size)
                )?;
                writeln!(out, "max entries:    {}", limits.max_entries)?;
            }
        }
        out.flush().context("writing to stdout")?;
        Ok(())
    }
}

/// `<key>: <n> bytes` and the first bytes in hex, for a terminal.
fn preview(key: &ObjectKey, value: &[u8]) -> String {
    const SHOW: usize = 32;
    let hex: Vec<String> = value
        .iter()
        .take(SHOW)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if value.len() > SHOW { " ..." } else { "" };
    format!(
        "{key}: {} bytes ({}): {}{more}\n(redirect stdout or pass --out FILE for the raw bytes)",
        value.len(),
        fmt_bytes(value.len() as u64),
        hex.join(" ")
    )
}

async fn open(
    shm: Option<&str>,
    remote: Option<&str>,
    cluster: Option<&str>,
    certs: Option<&Path>,
    as_id: Option<&str>,
    timeout: f64,
) -> Result<Arc<dyn ObjectStore>> {
    if let Some(name) = shm {
        let store = ShmStore::open(name).map_err(|e| anyhow!("opening shm store `{name}`: {e}"))?;
        return Ok(Arc::new(store));
    }
    let (Some(remote), Some(cluster), Some(dir)) = (remote, cluster, certs) else {
        bail!("give --shm NAME, or --remote ADDR --cluster ID --certs DIR");
    };
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        bail!("--timeout must be between 0 and 3600 seconds");
    }
    let wait = Duration::from_secs_f64(timeout);
    let addr = resolve(remote).await?;
    let me = match as_id {
        Some(id) => id.to_owned(),
        None => default_identity(dir, cluster)?,
    };
    let tls = TlsSettings::from_files(
        &certs::pem(dir, &me),
        &certs::key(dir, &me),
        &certs::pem(dir, CA_STEM),
        AllowList::new([cluster]),
    )
    .map_err(|e| anyhow!("the client identity `{me}` in {}: {e}", dir.display()))?;
    let mut config = ClientConfig::new(addr, cluster, tls);
    config.timeouts = Timeouts {
        connect: wait,
        io: wait,
        idle: wait.max(Duration::from_secs(10)),
    };
    // One retry on a new connection: enough for a dropped connection, and a dead gateway
    // is reported within about twice the timeout.
    config.max_attempts = 2;
    let store = RemoteStore::connect(config).await.map_err(|e| {
        let text = e.to_string();
        let hint = if text.contains("handshake") || text.contains("certificate") {
            format!(
                " (the gateway accepts only certificates of its federation CA whose id is on its allow list: is `{me}` on it?)"
            )
        } else {
            String::new()
        };
        anyhow!("cluster `{cluster}` at {addr} (as `{me}`): {text}{hint}")
    })?;
    Ok(Arc::new(store))
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| anyhow!("--remote `{addr}` (expected HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| anyhow!("--remote `{addr}` resolves to no address"))
}

/// The one identity in `dir` other than the CA and `target`, if there is exactly one.
fn default_identity(dir: &Path, target: &str) -> Result<String> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut ids = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "pem")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && stem != CA_STEM
            && stem != target
            && certs::key(dir, stem).exists()
        {
            ids.push(stem.to_owned());
        }
    }
    ids.sort();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no client identity in {} (other than `{target}`): make one with `gos certs --out {} --cluster client`",
            dir.display(),
            dir.display()
        ),
        many => bail!(
            "several identities in {} ({}): choose one with --as",
            dir.display(),
            many.join(", ")
        ),
    }
}
