//! `gos store`: inspect or change a running store, a shared-memory store on this host by name
//! or a cluster's store through its gateway (mutual TLS, as a client identity of the
//! federation); list and remove this host's shared-memory stores.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gos::gateway::{AllowList, ClientConfig, RemoteStore, Timeouts, TlsSettings};
use gos::shm::ShmStore;
use gos::{Bytes, KeyPrefix, ObjectKey, ObjectStore, PutMode, PutOptions, Readers};
use serde_json::json;

use crate::certs::{self, CA_STEM};
use crate::exit::{not_found, usage};
use crate::instrument::Instrumented;
use crate::units::{fmt_size, parse_duration};

/// Arguments of `gos store` (the long help is [`STORE_HELP`]).
#[derive(Debug, clap::Args)]
#[command(after_help = STORE_HELP)]
pub(crate) struct StoreArgs {
    /// A shared-memory store on this host, by name [env: GOS_SHM].
    #[arg(long, value_name = "NAME", conflicts_with_all = ["remote", "cluster", "certs", "as_id"])]
    shm: Option<String>,
    /// A cluster's gateway, as HOST:PORT [env: GOS_REMOTE].
    #[arg(long, value_name = "ADDR")]
    remote: Option<String>,
    /// The remote cluster's id (its gateway certificate must name it) [env: GOS_CLUSTER].
    #[arg(long, value_name = "ID")]
    cluster: Option<String>,
    /// Directory holding ca.pem and this client's certificate and key (ID.pem, ID.key; ID: --as)
    /// [env: GOS_CERTS].
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// The client identity to present (a certificate in --certs) [env: GOS_AS].
    #[arg(long = "as", id = "as_id", value_name = "ID")]
    as_id: Option<String>,
    /// Remote: how long each network wait (connect, each read or write) may take: "5s",
    /// "500ms", or seconds [env: GOS_TIMEOUT].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Print the result as JSON (one document) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: StoreCmd,
}

const STORE_HELP: &str = "\
The store is either --shm NAME (a shared-memory store on this host, such as one `gos serve`
made) or --remote ADDR --cluster ID --certs DIR (a cluster's store through its gateway).
Flags not given are read from the environment: GOS_SHM, GOS_REMOTE, GOS_CLUSTER, GOS_CERTS,
GOS_AS, GOS_TIMEOUT (a flag wins; --shm on the command line ignores the remote variables).
`ls` and `rm` need neither: they list and remove this host's shared-memory stores.

A remote client proves who it is with a certificate of the federation CA: DIR holds ca.pem
and <as>.pem / <as>.key (made by `gos certs`), and the gateway's allow list must name <as>.
Without --as, the identity is the one certificate in DIR other than the CA's and the target
cluster's; when there are several, --as is required, so that a client never presents an
identity by accident.

`-` is stdin for `put --file` and stdout for `get --out`. --json prints one JSON document
(stats, keys, head, ls, and what put, delete, delete-prefix, rm and get --out did).
Exit codes: 0 ok, 1 error, 2 usage, 3 not found (the key, or the shm store).

Examples:
  gos store --shm cluster-a keys --prefix my_experiment
  export GOS_REMOTE=127.0.0.1:7400 GOS_CLUSTER=cluster-a GOS_CERTS=certs GOS_AS=client
  gos store put my_experiment/node_0/round_1 --file weights.bin
  gos store get my_experiment/node_0/round_1 --out - | sha256sum
  gos store --json stats";

#[derive(Debug, clap::Subcommand)]
enum StoreCmd {
    /// List the keys (sorted), one a line.
    Keys {
        /// Only the keys under this prefix (whole segments: `fed` or `fed/node_3`).
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
    },
    /// Read a value: raw bytes to stdout, or its size and a hex preview when stdout is a
    /// terminal. Exit code 3 when the key does not exist.
    Get {
        /// The key.
        key: String,
        /// Write the value to this file instead (`-`: raw bytes to stdout, even a terminal).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// A value's metadata: size, releases left, lease expiry. Exit code 3 when the key does
    /// not exist.
    Head {
        /// The key.
        key: String,
    },
    /// Store a value (overwriting, unless --create).
    Put {
        /// The key.
        key: String,
        /// The value is this file's content (`-`: stdin), read up to the store's largest value.
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
    /// Delete a key. Exit code 3 when it did not exist.
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
    /// List the shared-memory stores of this host (in $GOS_SHM_DIR or /dev/shm): name, file
    /// size (the arena's cost), entries, bytes, capacity.
    Ls,
    /// Remove a shared-memory store of this host by name. Refused while a live process has
    /// it open, unless --force (processes that have it keep working; the memory goes with
    /// the last of them). Exit code 3 when there is no such store.
    Rm {
        /// The store's name.
        name: String,
        /// Remove the name even if live processes have the store open.
        #[arg(long)]
        force: bool,
    },
}

/// Where the store is, after the flags and the environment.
#[derive(Debug, Default)]
struct Target {
    shm: Option<String>,
    remote: Option<String>,
    cluster: Option<String>,
    certs: Option<PathBuf>,
    as_id: Option<String>,
    timeout: Option<Duration>,
}

impl Target {
    /// The flags, completed from `env` (GOS_* variables) where not given. `--shm` on the
    /// command line ignores the remote variables, and explicit remote flags ignore GOS_SHM.
    fn resolve(args: &StoreArgs, env: impl Fn(&str) -> Option<String>) -> Result<Target> {
        let remote_flags = args.remote.is_some() || args.cluster.is_some() || args.certs.is_some();
        if args.shm.is_some() {
            return Ok(Target {
                shm: args.shm.clone(),
                ..Target::default()
            });
        }
        let shm = if remote_flags { None } else { env("GOS_SHM") };
        if shm.is_some() {
            return Ok(Target {
                shm,
                ..Target::default()
            });
        }
        let timeout = match (args.timeout, env("GOS_TIMEOUT")) {
            (Some(t), _) => Some(t),
            (None, Some(text)) => {
                Some(parse_duration(&text).map_err(|e| usage(format!("GOS_TIMEOUT: {e}")))?)
            }
            (None, None) => None,
        };
        Ok(Target {
            shm: None,
            remote: args.remote.clone().or_else(|| env("GOS_REMOTE")),
            cluster: args.cluster.clone().or_else(|| env("GOS_CLUSTER")),
            certs: args
                .certs
                .clone()
                .or_else(|| env("GOS_CERTS").map(PathBuf::from)),
            as_id: args.as_id.clone().or_else(|| env("GOS_AS")),
            timeout,
        })
    }
}

fn os_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(crate) async fn run(args: StoreArgs) -> Result<()> {
    let json = args.json;
    // Parse what the user typed before connecting to anything.
    let op = match Op::parse(&args.cmd)? {
        Local::Ls => return list_shm(json).await,
        Local::Rm(name, force) => return remove_shm(name, *force, json),
        Local::Store(op) => op,
    };
    if json && matches!(op, Op::Get(_, None)) {
        return Err(usage(
            "--json with get needs --out FILE (the value itself is not JSON)",
        ));
    }
    let target = Target::resolve(&args, os_env)?;
    let store = open(&target).await?;
    let store = Instrumented::new(store, None);
    op.run(&store, json).await
}

enum Local<'a> {
    Ls,
    Rm(&'a str, &'a bool),
    Store(Op),
}

/// A command with its keys parsed.
enum Op {
    Keys(KeyPrefix),
    Get(ObjectKey, Option<PathBuf>),
    Head(ObjectKey),
    Put(ObjectKey, Source, PutMode),
    Delete(ObjectKey),
    DeletePrefix(KeyPrefix),
    Stats,
}

/// Where a put's value comes from.
enum Source {
    Value(Bytes),
    File(PathBuf),
}

/// At most this much of a refused key or prefix is repeated in an error message.
const SHOWN: usize = 64;

/// A key or prefix as an error message shows it: escaped, and cut after [`SHOWN`] characters
/// (a 1025-byte key is not repeated whole).
fn shown(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() <= SHOWN {
        escaped
    } else {
        let cut: String = escaped.chars().take(SHOWN).collect();
        format!("{cut}... ({} bytes)", text.len())
    }
}

fn parse_key(key: &str) -> Result<ObjectKey> {
    ObjectKey::new(key).map_err(|e| anyhow!("invalid key `{}`: {e}", shown(key)))
}

fn parse_prefix(prefix: &str) -> Result<KeyPrefix> {
    KeyPrefix::new(prefix).map_err(|e| anyhow!("invalid prefix `{}`: {e}", shown(prefix)))
}

impl Op {
    fn parse(cmd: &StoreCmd) -> Result<Local<'_>> {
        Ok(Local::Store(match cmd {
            StoreCmd::Ls => return Ok(Local::Ls),
            StoreCmd::Rm { name, force } => return Ok(Local::Rm(name, force)),
            StoreCmd::Keys { prefix } => Op::Keys(
                prefix
                    .as_deref()
                    .map_or(Ok(KeyPrefix::root()), parse_prefix)?,
            ),
            StoreCmd::Get { key, out } => Op::Get(parse_key(key)?, out.clone()),
            StoreCmd::Head { key } => Op::Head(parse_key(key)?),
            StoreCmd::Put {
                key,
                file,
                value,
                create,
            } => {
                let key = parse_key(key)?;
                let source = match (file, value) {
                    (Some(file), _) => Source::File(file.clone()),
                    (None, Some(value)) => Source::Value(Bytes::from(value.clone())),
                    (None, None) => return Err(usage("put needs --file or --value")),
                };
                let mode = if *create {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                };
                Op::Put(key, source, mode)
            }
            StoreCmd::Delete { key } => Op::Delete(parse_key(key)?),
            StoreCmd::DeletePrefix { prefix } => {
                let prefix = parse_prefix(prefix)?;
                if prefix.is_root() {
                    bail!("refusing to delete the empty prefix (every key)");
                }
                Op::DeletePrefix(prefix)
            }
            StoreCmd::Stats => Op::Stats,
        }))
    }

    async fn run(self, store: &dyn ObjectStore, json: bool) -> Result<()> {
        // Store errors print flat: their Display already names their cause.
        let flat = |e: gos::StoreError| anyhow!("{e}");
        let mut out = std::io::stdout().lock();
        match self {
            Op::Keys(prefix) => {
                let mut keys = store.keys_with_prefix(&prefix).await.map_err(flat)?;
                keys.sort();
                if json {
                    let keys: Vec<&str> = keys.iter().map(ObjectKey::as_str).collect();
                    print_json(
                        &mut out,
                        &json!({ "prefix": prefix.as_str(), "keys": keys }),
                    )?;
                } else {
                    for key in keys {
                        writeln!(out, "{key}")?;
                    }
                }
            }
            Op::Get(key, file) => {
                let value = store
                    .get(&key)
                    .await
                    .map_err(flat)?
                    .ok_or_else(|| not_found(format!("key `{key}` not found")))?;
                match file {
                    Some(file) if file.as_os_str() == "-" => out.write_all(&value)?,
                    Some(file) => {
                        std::fs::write(&file, &value)
                            .with_context(|| format!("writing {}", file.display()))?;
                        if json {
                            print_json(
                                &mut out,
                                &json!({ "key": key.as_str(), "bytes": value.len(), "file": file }),
                            )?;
                        } else {
                            writeln!(
                                out,
                                "wrote {} ({} bytes) to {}",
                                key,
                                value.len(),
                                file.display()
                            )?;
                        }
                    }
                    None if out.is_terminal() => {
                        writeln!(out, "{}", preview(&key, &value))?;
                    }
                    None => out.write_all(&value)?,
                }
            }
            Op::Head(key) => {
                let meta = store
                    .head(&key)
                    .await
                    .map_err(flat)?
                    .ok_or_else(|| not_found(format!("key `{key}` not found")))?;
                let readers = match meta.readers {
                    Readers::Exactly(n) => Some(n.get()),
                    _ => None,
                };
                let expires = meta.expires_at.map(gos::store::to_unix_millis);
                if json {
                    print_json(
                        &mut out,
                        &json!({
                            "key": key.as_str(),
                            "bytes": meta.size,
                            "readers_left": readers,
                            "expires_at_unix_ms": expires,
                            "digest": meta.digest.map(|d| d.to_string()),
                        }),
                    )?;
                } else {
                    writeln!(out, "key:          {key}")?;
                    writeln!(out, "size:         {} ({})", meta.size, fmt_size(meta.size))?;
                    writeln!(
                        out,
                        "readers left: {}",
                        readers.map_or("unbounded".to_owned(), |n| n.to_string())
                    )?;
                    writeln!(
                        out,
                        "expires:      {}",
                        meta.expires_at.map_or("never (no lease)".to_owned(), |t| {
                            humantime::format_rfc3339_millis(t).to_string()
                        })
                    )?;
                    writeln!(
                        out,
                        "digest:       {}",
                        meta.digest
                            .map_or("none kept".to_owned(), |d| format!("{d} (xxh3-128)"))
                    )?;
                }
            }
            Op::Put(key, source, mode) => {
                let value = match source {
                    Source::Value(bytes) => bytes,
                    Source::File(file) => read_bounded(&file, store.limits().max_value_size)?,
                };
                let len = value.len() as u64;
                store
                    .put_opts(&key, value, &PutOptions::from(mode))
                    .await
                    .map_err(flat)?;
                if json {
                    print_json(&mut out, &json!({ "put": key.as_str(), "bytes": len }))?;
                } else {
                    writeln!(out, "put {key} ({len} bytes)")?;
                }
            }
            Op::Delete(key) => {
                if !store.delete(&key).await.map_err(flat)? {
                    return Err(not_found(format!("key `{key}` not found")));
                }
                if json {
                    print_json(&mut out, &json!({ "deleted": key.as_str() }))?;
                } else {
                    writeln!(out, "deleted {key}")?;
                }
            }
            Op::DeletePrefix(prefix) => {
                let n = store.delete_prefix(&prefix).await.map_err(flat)?;
                if json {
                    print_json(
                        &mut out,
                        &json!({ "prefix": prefix.as_str(), "deleted": n }),
                    )?;
                } else {
                    writeln!(out, "deleted {n} keys under {prefix}")?;
                }
            }
            Op::Stats => {
                let stats = store.stats().await.map_err(flat)?;
                let limits = store.limits();
                if json {
                    print_json(
                        &mut out,
                        &json!({
                            "entries": stats.entries,
                            "bytes": stats.bytes,
                            "reserved": stats.reserved,
                            "capacity": stats.capacity_bytes,
                            "available": stats.available(),
                            "max_value_size": limits.max_value_size,
                            "max_entries": limits.max_entries,
                        }),
                    )?;
                } else {
                    let size = |n: u64| format!("{n} ({})", fmt_size(n));
                    writeln!(out, "entries:        {}", stats.entries)?;
                    writeln!(out, "bytes used:     {}", size(stats.bytes))?;
                    writeln!(out, "reserved:       {}", size(stats.reserved))?;
                    writeln!(out, "capacity:       {}", size(stats.capacity_bytes))?;
                    writeln!(out, "available:      {}", size(stats.available()))?;
                    writeln!(out, "max value size: {}", size(limits.max_value_size))?;
                    writeln!(out, "max entries:    {}", limits.max_entries)?;
                }
            }
        }
        out.flush().context("writing to stdout")?;
        Ok(())
    }
}

fn print_json(out: &mut impl Write, value: &serde_json::Value) -> Result<()> {
    serde_json::to_writer(&mut *out, value).context("writing JSON to stdout")?;
    writeln!(out).context("writing to stdout")?;
    Ok(())
}

/// Reads a put's value from `file` (`-`: stdin), refusing as soon as it is larger than `max`
/// (a file whose size is known is refused before a byte is read; a stream such as /dev/zero
/// or a pipe is read up to `max` + 1 bytes at most).
fn read_bounded(file: &Path, max: u64) -> Result<Bytes> {
    let too_large = |size: String| {
        anyhow!(
            "{} is {size}, larger than the maximum value size of the store ({})",
            if file.as_os_str() == "-" {
                "stdin".to_owned()
            } else {
                file.display().to_string()
            },
            fmt_size(max)
        )
    };
    let (reader, known): (Box<dyn Read>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        let meta = f
            .metadata()
            .with_context(|| format!("reading {}", file.display()))?;
        let known = meta.is_file().then_some(meta.len());
        (Box::new(f), known)
    };
    if let Some(len) = known
        && len > max
    {
        return Err(too_large(fmt_size(len)));
    }
    let mut buf = Vec::with_capacity(known.unwrap_or(0).min(max) as usize);
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", file.display()))?;
    if buf.len() as u64 > max {
        return Err(too_large(format!("more than {}", fmt_size(max))));
    }
    Ok(Bytes::from(buf))
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
        fmt_size(value.len() as u64),
        hex.join(" ")
    )
}

/// The directory this host's shared-memory stores live in.
fn shm_dir() -> PathBuf {
    std::env::var_os("GOS_SHM_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(gos::shm::DEFAULT_DIR), PathBuf::from)
}

/// `gos store ls`.
async fn list_shm(json: bool) -> Result<()> {
    let dir = shm_dir();
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("gos-"))
            && !name.is_empty()
        {
            let file_bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            names.push((name.to_owned(), file_bytes));
        }
    }
    names.sort();
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:<32} {:>12} {:>9} {:>12} {:>12}",
            "name", "file", "entries", "bytes", "capacity"
        )?;
    }
    let mut rows = Vec::new();
    for (name, file_bytes) in names {
        // Opening takes one of the store's process slots for a moment.
        let stats = match ShmStore::open(&name) {
            Ok(store) => store.stats().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if json {
            rows.push(match &stats {
                Ok(s) => json!({
                    "name": name, "file_bytes": file_bytes, "entries": s.entries,
                    "bytes": s.bytes, "capacity": s.capacity_bytes,
                }),
                Err(e) => json!({ "name": name, "file_bytes": file_bytes, "error": e }),
            });
        } else {
            match stats {
                Ok(s) => writeln!(
                    out,
                    "{:<32} {:>12} {:>9} {:>12} {:>12}",
                    name,
                    fmt_size(file_bytes),
                    s.entries,
                    fmt_size(s.bytes),
                    fmt_size(s.capacity_bytes)
                )?,
                Err(e) => writeln!(out, "{name:<32} {:>12} ({e})", fmt_size(file_bytes))?,
            }
        }
    }
    if json {
        print_json(&mut out, &json!({ "dir": dir, "stores": rows }))?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// `gos store rm`.
fn remove_shm(name: &str, force: bool, json: bool) -> Result<()> {
    let removed = if force {
        ShmStore::remove(name).map_err(|e| anyhow!("removing shm store `{name}`: {e}"))?
    } else {
        if ShmStore::open(name).is_err() && !shm_dir().join(format!("gos-{name}")).exists() {
            return Err(not_found(format!(
                "no shm store named `{name}` in {}",
                shm_dir().display()
            )));
        }
        let removed = ShmStore::remove_if_abandoned(name)
            .map_err(|e| anyhow!("removing shm store `{name}`: {e}"))?;
        if !removed {
            bail!(
                "shm store `{name}` is open in a live process (pass --force to remove its name anyway)"
            );
        }
        removed
    };
    if !removed {
        return Err(not_found(format!(
            "no shm store named `{name}` in {}",
            shm_dir().display()
        )));
    }
    let mut out = std::io::stdout().lock();
    if json {
        print_json(&mut out, &json!({ "removed": name }))?;
    } else {
        writeln!(out, "removed shm store {name}")?;
    }
    Ok(())
}

/// True when `e` says the shm store does not exist.
fn is_missing_store(e: &gos::StoreError) -> bool {
    matches!(e, gos::StoreError::Backend { source, .. }
        if matches!(source.downcast_ref::<gos::shm::ShmError>(), Some(gos::shm::ShmError::NotFound(_))))
}

async fn open(target: &Target) -> Result<Arc<dyn ObjectStore>> {
    if let Some(name) = target.shm.as_deref() {
        let store = ShmStore::open(name).map_err(|e| {
            if is_missing_store(&e) {
                not_found(format!("opening shm store `{name}`: {e}"))
            } else {
                anyhow!("opening shm store `{name}`: {e}")
            }
        })?;
        return Ok(Arc::new(store));
    }
    let (Some(remote), Some(cluster), Some(dir)) = (
        target.remote.as_deref(),
        target.cluster.as_deref(),
        target.certs.as_deref(),
    ) else {
        return Err(usage(
            "give --shm NAME, or --remote ADDR --cluster ID --certs DIR (or GOS_SHM, or GOS_REMOTE, GOS_CLUSTER and GOS_CERTS)",
        ));
    };
    let wait = target.timeout.unwrap_or(Duration::from_secs(5));
    let addr = resolve(remote).await?;
    let me = match target.as_id.as_deref() {
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
    // One retry on a new connection: enough for a dropped connection; a dead gateway is
    // reported after about twice the timeout, and the message says how long it took.
    let attempts = 2;
    config.max_attempts = attempts;
    let started = std::time::Instant::now();
    let store = RemoteStore::connect(config).await.map_err(|e| {
        let text = e.to_string();
        let hint = if text.contains("handshake") || text.contains("certificate") {
            format!(
                " (the gateway accepts only certificates of its federation CA whose id is on its allow list: is `{me}` on it?)"
            )
        } else {
            String::new()
        };
        anyhow!(
            "cluster `{cluster}` at {addr} (as `{me}`): {text}{hint} (each of {attempts} attempts; gave up after {})",
            crate::units::fmt_duration(started.elapsed())
        )
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
