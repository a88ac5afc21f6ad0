//! `RedisStore`: a GOS [`ObjectStore`] in a Redis server or a Redis Cluster, shared by
//! processes on many hosts.
//!
//! Every object lives whole on one master: its keys carry the hash tag of one of the store's
//! buckets, and every operation that changes it is one Lua script on that bucket, atomic with
//! the bucket's accounting. Large values are sent in chunks to a staging key and installed by
//! one script (`RENAME`), so a reader sees the old value or the new one, never part of one;
//! an interrupted put leaves nothing visible and its staging key expires by itself. Capacity
//! and entries are enforced across all clients by quotas that a ledger grants to buckets.
//! The layout, the costs and the failure behaviour are in `docs/redis.md`.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | yes | `rediss://` URLs (rustls) |
//!
//! ```no_run
//! # async fn demo() -> gos_store::Result<()> {
//! use bytes::Bytes;
//! use gos_store::{Limits, ObjectKey, ObjectStore, ObjectStoreExt, PutOptions};
//! use gos_store_redis::{RedisConfig, RedisStore};
//!
//! let store = RedisStore::open(
//!     RedisConfig::new(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
//!         .namespace("exp1")
//!         .limits(Limits::with_capacity(8 << 30)),
//! )
//! .await?;
//! let key = ObjectKey::round("exp1", "node_1", 1)?;
//! store.put_opts(&key, Bytes::from_static(b"weights"), &PutOptions::new().readers(2)).await?;
//! assert_eq!(store.get(&key).await?.as_deref(), Some(&b"weights"[..]));
//! # Ok(()) }
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod config;
mod conn;
mod scripts;
pub mod testing;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use gos_store::{
    Clock, Digest, Error, KeyPrefix, Limits, ObjectKey, ObjectMeta, ObjectStore, PutMode,
    PutOptions, Readers, ReleaseOutcome, Reservation, Result, StoreStats, from_unix_millis,
    lease_deadline, system_clock, to_unix_millis,
};
use redis::Script;

use config::MAX_LIMIT;
pub use config::{MAX_CHUNK_SIZE, RedisConfig};
use conn::{Conn, map_error};
use scripts::SCRIPTS;

/// Length of the header in front of every stored value.
const HEADER_LEN: usize = 64;

/// Most rounds of "ask for quota, retry" one operation makes before answering `Busy`.
const MAX_ATTEMPTS: usize = 16;

/// Deadlines are kept below 2^53 ms so that Lua's doubles hold them exactly.
const MAX_DEADLINE_MS: u64 = 1 << 53;

/// What a bucket script answers: a status and three integers.
type Reply = (String, i64, i64, i64);

/// A [`ObjectStore`] in Redis; cheap to clone (clones share the connections).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    conn: Conn,
    clock: Arc<dyn Clock>,
    /// The ledger's key, `{gos:<ns>}L`.
    ledger: String,
    /// Each bucket's tag, `{gos:<ns>:<b>}`.
    tags: Vec<String>,
    /// Refunds of dropped reservations, shared by every handle of this process on the same
    /// servers and namespace.
    refunds: Arc<Refunds>,
}

/// The refunds of reservations dropped uncommitted that have not run yet.
///
/// `Drop` cannot await the network call, so it queues the refund here; every operation of
/// every handle sharing this queue first runs the queued refunds (and waits for one in
/// flight), so the next operation after a drop sees the charge freed.
#[derive(Default)]
struct Refunds {
    /// (bucket, reservation id).
    pending: Mutex<Vec<(usize, String)>>,
    /// Held while refunds run, so that an operation never passes a refund still in flight.
    draining: tokio::sync::Mutex<()>,
}

/// The refund queue of each store (servers and namespace) opened by this process.
static REFUNDS: Mutex<Vec<(String, Weak<Refunds>)>> = Mutex::new(Vec::new());

/// The refund queue shared by the handles of this process on `config`'s store.
fn shared_refunds(config: &RedisConfig) -> Arc<Refunds> {
    let mut urls = config.urls.clone();
    urls.sort();
    let id = format!("{}\n{}", config.namespace, urls.join("\n"));
    let mut all = REFUNDS.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|(_, w)| w.strong_count() > 0);
    if let Some(r) = all
        .iter()
        .find(|(k, _)| *k == id)
        .and_then(|(_, w)| w.upgrade())
    {
        return r;
    }
    let r = Arc::new(Refunds::default());
    all.push((id, Arc::downgrade(&r)));
    r
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("urls", &self.inner.config.urls.len())
            .field("cluster", &self.inner.conn.is_cluster())
            .field("namespace", &self.inner.config.namespace)
            .field("limits", &self.inner.config.limits)
            .finish_non_exhaustive()
    }
}

/// The header of a stored value: `G2`, readers left (0 = unbounded, 10 digits), deadline (0 =
/// none, 20 digits) and the value's digest (32 hex digits). Text, so that the Lua scripts read
/// and rewrite its fields with `GETRANGE`/`SETRANGE` and `tonumber`.
fn header(readers: Readers, deadline_ms: u64, digest: Digest) -> [u8; HEADER_LEN] {
    let text = format!(
        "G2{:010}{:020}{digest}",
        readers.count().unwrap_or(0),
        deadline_ms
    );
    let mut out = [0u8; HEADER_LEN];
    out.copy_from_slice(text.as_bytes());
    out
}

/// Parses a header: (readers, deadline ms, digest).
fn parse_header(raw: &[u8]) -> Result<(u32, u64, Digest)> {
    let corrupt = || Error::Corrupted("a stored value has no valid gos header".into());
    let h = raw.get(..HEADER_LEN).ok_or_else(corrupt)?;
    if &h[..2] != b"G2" {
        return Err(corrupt());
    }
    let text = std::str::from_utf8(&h[2..]).map_err(|_| corrupt())?;
    let readers = text[..10].parse().map_err(|_| corrupt())?;
    let deadline = text[10..30].parse().map_err(|_| corrupt())?;
    let digest = text[30..].parse().map_err(|_| corrupt())?;
    Ok((readers, deadline, digest))
}

/// FNV-1a, 64 bits: the bucket of a key (stable across processes and versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn readers_of(n: i64) -> Readers {
    u32::try_from(n)
        .ok()
        .and_then(Readers::exactly)
        .unwrap_or(Readers::Unbounded)
}

fn unexpected(script: &str, reply: &Reply) -> Error {
    Error::backend(
        "redis",
        format!("script {script} answered {reply:?}, which this client does not know"),
    )
}

impl RedisStore {
    /// Connects and opens the store (creating its ledger if the namespace is new).
    ///
    /// Errors: [`Error::InvalidArgument`] for a bad configuration or a namespace created with
    /// other limits or buckets, [`Error::Unavailable`] or [`Error::Timeout`] when the server
    /// cannot be reached.
    pub async fn open(config: RedisConfig) -> Result<Self> {
        RedisStore::open_with_clock(config, system_clock()).await
    }

    /// [`open`](RedisStore::open) reading lease deadlines from `clock`.
    pub async fn open_with_clock(config: RedisConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        let conn = Conn::connect(&config).await?;
        let cap = config.limits.capacity_bytes.min(MAX_LIMIT);
        let max_entries = config.limits.max_entries.min(MAX_LIMIT);
        let buckets = u64::from(config.buckets);
        let store = RedisStore::assemble(config, conn.clone(), Arc::clone(&clock));
        let (_, got_cap, got_entries, got_buckets): Reply = store
            .ledger_script(&SCRIPTS.ledger_init, &[cap, max_entries, buckets])
            .await?;
        let got = (
            got_cap.max(0) as u64,
            got_entries.max(0) as u64,
            got_buckets.max(0) as u64,
        );
        if got == (cap, max_entries, buckets) {
            return Ok(store);
        }
        let ns = &store.inner.config.namespace;
        let adoptable = got.0 > 0 && (1..=16384).contains(&got.2);
        if !(store.inner.config.adopt_limits && adoptable) {
            return Err(Error::InvalidArgument(format!(
                "namespace `{ns}` was created with capacity {}, {} entries and {} buckets, not \
                 {cap}, {max_entries} and {buckets}",
                got.0, got.1, got.2
            )));
        }
        // Adopt the namespace's own limits: a value stored as the cap means "unbounded".
        let unclamp = |stored: u64, asked: u64| {
            if stored == asked.min(MAX_LIMIT) {
                asked
            } else if stored >= MAX_LIMIT {
                u64::MAX
            } else {
                stored
            }
        };
        let mut config = store.inner.config.clone();
        let capacity = unclamp(got.0, config.limits.capacity_bytes);
        config.limits = Limits::with_capacity(capacity)
            .max_value_size(config.limits.max_value_size.min(capacity))
            .max_entries(unclamp(got.1, config.limits.max_entries));
        config.buckets = got.2 as u32;
        tracing::info!(
            namespace = %config.namespace,
            "adopting the limits the namespace was created with: {:?}, {} buckets",
            config.limits,
            config.buckets
        );
        Ok(RedisStore::assemble(config, conn, clock))
    }

    /// A handle on `conn` with `config`'s namespace and buckets (nothing sent yet).
    fn assemble(config: RedisConfig, conn: Conn, clock: Arc<dyn Clock>) -> Self {
        let ns = &config.namespace;
        let inner = Inner {
            ledger: format!("{{gos:{ns}}}L"),
            tags: (0..config.buckets)
                .map(|b| format!("{{gos:{ns}:{b}}}"))
                .collect(),
            clock,
            conn,
            refunds: shared_refunds(&config),
            config,
        };
        RedisStore {
            inner: Arc::new(inner),
        }
    }

    /// Another handle on the same store, with its own connections (as another process would
    /// open it).
    pub async fn reopen(&self) -> Result<Self> {
        RedisStore::open_with_clock(self.inner.config.clone(), Arc::clone(&self.inner.clock)).await
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// True when the store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.conn.is_cluster()
    }

    /// The Redis key holding `key`'s object (header and value): for operators and tests.
    pub fn object_key(&self, key: &ObjectKey) -> String {
        format!("{}o:{}", self.inner.tags[self.bucket(key)], key.as_str())
    }

    /// `PTTL` of a Redis key, in ms (-2: no such key, -1: no expiry): for operators and tests
    /// checking that staging data expires by itself.
    pub async fn pttl(&self, redis_key: &str) -> Result<i64> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("PTTL")
            .arg(redis_key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Sets the ledger's granted totals to the sum of the buckets' quotas, recovering quota
    /// lost by clients killed between a grant and a credit. Run it only when no writer is
    /// active (see docs/redis.md).
    pub async fn reconcile(&self) -> Result<()> {
        let mut total = (0u64, 0u64);
        for b in 0..self.inner.tags.len() {
            let (_, qb, qe, _) = self.bucket_script(&SCRIPTS.quota, b, &[]).await?;
            total.0 += qb.max(0) as u64;
            total.1 += qe.max(0) as u64;
        }
        self.ledger_script(&SCRIPTS.ledger_set, &[total.0, total.1])
            .await?;
        Ok(())
    }

    /// Removes the whole namespace from Redis: every object, the staging data of puts and
    /// reservations in flight, the buckets' bookkeeping and the ledger; returns how many
    /// objects it removed. For a namespace no other client is using (a demo's, a test's): a
    /// writer still at work would recreate parts of it. Cost: one script per bucket and per
    /// 1000 objects.
    pub async fn destroy(&self) -> Result<usize> {
        self.drain_pending().await?;
        let counts = self
            .each_bucket(|b| async move {
                let mut removed = 0usize;
                loop {
                    let reply = self.bucket_script(&SCRIPTS.destroy, b, &[]).await?;
                    removed += reply.1.max(0) as usize;
                    match reply.0.as_str() {
                        "MORE" => {}
                        "OK" => return Ok(removed),
                        _ => return Err(unexpected("destroy", &reply)),
                    }
                }
            })
            .await?;
        let mut conn = self.inner.conn.clone();
        redis::cmd("UNLINK")
            .arg(self.inner.ledger.as_str())
            .exec_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(counts.iter().sum())
    }

    /// Charges and uploads `value` for `key` without installing it: the first half of a put.
    /// [`StagedPut::install`] makes it visible; dropping the `StagedPut` refunds it, and a
    /// staged put whose process dies is refunded at its deadline while its staging key
    /// expires by itself.
    pub async fn stage(
        &self,
        key: &ObjectKey,
        value: &[u8],
        options: &PutOptions,
    ) -> Result<StagedPut> {
        let len = value.len();
        self.inner.config.limits.check_value_size(len as u64)?;
        self.drain_pending().await?;
        let staged = self.charge(key, len, options, true).await?;
        if let Err(e) = self.upload(&staged, value, None).await {
            staged.refund_now().await;
            return Err(e);
        }
        Ok(staged)
    }

    /// Maps a `redis` error, naming the configured response timeout in a timeout.
    fn err(&self, e: redis::RedisError) -> Error {
        match map_error(e) {
            Error::Timeout { operation, .. } => Error::Timeout {
                operation,
                after: self.inner.config.response_timeout,
            },
            other => other,
        }
    }

    fn bucket(&self, key: &ObjectKey) -> usize {
        (fnv1a(key.as_str().as_bytes()) % self.inner.tags.len() as u64) as usize
    }

    fn now_ms(&self) -> u64 {
        to_unix_millis(self.inner.clock.now()).min(MAX_DEADLINE_MS)
    }

    fn deadline_ms(&self, options: &PutOptions) -> u64 {
        lease_deadline(self.inner.clock.now(), options.lease)
            .map_or(0, |d| to_unix_millis(d).clamp(1, MAX_DEADLINE_MS))
    }

    async fn bucket_invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        b: usize,
        args: &[&[u8]],
    ) -> Result<T> {
        let tag = &self.inner.tags[b];
        let mut inv = script.key(format!("{tag}a"));
        inv.arg(tag.as_str()).arg(self.now_ms());
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.inner.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))
    }

    async fn bucket_script(&self, script: &Script, b: usize, args: &[&[u8]]) -> Result<Reply> {
        self.bucket_invoke(script, b, args).await
    }

    async fn ledger_script(&self, script: &Script, args: &[u64]) -> Result<Reply> {
        let mut inv = script.key(self.inner.ledger.as_str());
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.inner.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))
    }

    /// Runs `f` on every bucket at once and collects the answers in bucket order.
    async fn each_bucket<T, F, Fut>(&self, f: F) -> Result<Vec<T>>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        futures::future::try_join_all((0..self.inner.tags.len()).map(f)).await
    }

    /// Makes room for `bytes` more bytes and `entries` more entries in bucket `b`: asks the
    /// ledger, and when it has none left, takes every bucket's spare quota back and asks
    /// again. `requested` is the size of the value, for the error.
    async fn acquire(&self, b: usize, bytes: u64, entries: u64, requested: u64) -> Result<()> {
        for attempt in 0..2 {
            let reply = self
                .ledger_script(&SCRIPTS.ledger_grant, &[bytes, entries])
                .await?;
            match reply.0.as_str() {
                "OK" => {
                    let (db, de) = (bytes.to_string(), entries.to_string());
                    self.bucket_script(&SCRIPTS.credit, b, &[db.as_bytes(), de.as_bytes()])
                        .await?;
                    return Ok(());
                }
                // The bucket's own spare is already counted in what it asks for: shedding it
                // too would hand it back and forth forever.
                "FULL" if attempt == 0 => self.shed_all_but(b).await?,
                "FULL" => {
                    let free_bytes = reply.1.max(0) as u64;
                    return Err(if bytes > free_bytes {
                        Error::StoreFull {
                            requested,
                            available: requested.saturating_sub(bytes) + free_bytes,
                        }
                    } else {
                        Error::TooManyEntries {
                            max: self.inner.config.limits.max_entries,
                        }
                    });
                }
                _ => return Err(unexpected("grant", &reply)),
            }
        }
        Err(Error::Busy("quota contended".into()))
    }

    /// Takes every bucket's spare quota but `keep`'s back to the ledger.
    async fn shed_all_but(&self, keep: usize) -> Result<()> {
        let shed = self
            .each_bucket(|b| async move {
                if b == keep {
                    return Ok(("OK".to_owned(), 0, 0, 0));
                }
                self.bucket_script(&SCRIPTS.shed, b, &[]).await
            })
            .await?;
        let (bytes, entries) = shed.iter().fold((0u64, 0u64), |(sb, se), r| {
            (sb + r.1.max(0) as u64, se + r.2.max(0) as u64)
        });
        if bytes > 0 || entries > 0 {
            self.ledger_script(&SCRIPTS.ledger_give_back, &[bytes, entries])
                .await?;
        }
        Ok(())
    }

    /// Runs a bucket script that may answer `NEEDB n` / `NEEDE n`, acquiring quota and
    /// retrying; returns the first other answer.
    async fn with_quota(
        &self,
        script: &Script,
        b: usize,
        args: &[&[u8]],
        requested: u64,
    ) -> Result<Reply> {
        for _ in 0..MAX_ATTEMPTS {
            let reply = self.bucket_script(script, b, args).await?;
            match reply.0.as_str() {
                "NEEDB" => self.acquire(b, reply.1.max(1) as u64, 0, requested).await?,
                "NEEDE" => self.acquire(b, 0, reply.1.max(1) as u64, requested).await?,
                _ => return Ok(reply),
            }
        }
        Err(Error::Busy(format!(
            "quota for {requested} bytes contended by other writers after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Charges a staged put or a reservation of `len` bytes for `key`. A put (`put` true)
    /// counts the key's live value as freed; a reservation charges the full length.
    async fn charge(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
        put: bool,
    ) -> Result<StagedPut> {
        let b = self.bucket(key);
        let id = format!("{:032x}", rand::random::<u128>());
        let ttl = self.inner.config.reservation_ttl;
        let deadline = to_unix_millis(self.inner.clock.now() + ttl).min(MAX_DEADLINE_MS);
        let create = if options.mode == PutMode::Create {
            "1"
        } else {
            "0"
        };
        let name = if put { key.as_str() } else { "" };
        let (len_s, deadline_s) = (len.to_string(), deadline.to_string());
        let reply = self
            .with_quota(
                &SCRIPTS.charge,
                b,
                &[
                    id.as_bytes(),
                    len_s.as_bytes(),
                    deadline_s.as_bytes(),
                    name.as_bytes(),
                    create.as_bytes(),
                ],
                len as u64,
            )
            .await?;
        match reply.0.as_str() {
            "OK" => Ok(StagedPut {
                store: self.clone(),
                bucket: b,
                id,
                key: key.clone(),
                options: *options,
                len,
                done: false,
            }),
            "EXISTS" => Err(Error::AlreadyExists { key: key.clone() }),
            _ => Err(unexpected("charge", &reply)),
        }
    }

    /// Writes the staging key of `staged`: header (with `digest`, the value's, or computed
    /// here), then the value in chunks.
    async fn upload(&self, staged: &StagedPut, value: &[u8], digest: Option<Digest>) -> Result<()> {
        let digest = digest.unwrap_or_else(|| Digest::of(value));
        let staging = format!("{}s:{}", self.inner.tags[staged.bucket], staged.id);
        let ttl_ms = (self.inner.config.reservation_ttl.as_millis() as u64)
            .saturating_mul(2)
            .max(1);
        let head = header(
            staged.options.readers,
            self.deadline_ms(&staged.options),
            digest,
        );
        let mut conn = self.inner.conn.clone();
        // The header and the first chunk in one `SET`, written straight into the command (no
        // concatenated copy): a value of one chunk is stored by Redis as it arrives, where an
        // `APPEND` to a header would copy it once more on the server.
        let mut chunks = value.chunks(self.inner.config.chunk_size);
        redis::cmd("SET")
            .arg(&staging)
            .arg(Framed {
                head: &head,
                body: chunks.next().unwrap_or_default(),
            })
            .arg("PX")
            .arg(ttl_ms)
            .exec_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        for chunk in chunks {
            redis::cmd("APPEND")
                .arg(&staging)
                .arg(chunk)
                .exec_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    async fn put_inline(&self, key: &ObjectKey, value: &[u8], options: &PutOptions) -> Result<()> {
        let b = self.bucket(key);
        let mut payload = Vec::with_capacity(HEADER_LEN + value.len());
        payload.extend_from_slice(&header(
            options.readers,
            self.deadline_ms(options),
            Digest::of(value),
        ));
        payload.extend_from_slice(value);
        let create = if options.mode == PutMode::Create {
            "1"
        } else {
            "0"
        };
        let deadline = self.deadline_ms(options).to_string();
        let reply = self
            .with_quota(
                &SCRIPTS.put_inline,
                b,
                &[
                    key.as_str().as_bytes(),
                    create.as_bytes(),
                    &payload,
                    deadline.as_bytes(),
                ],
                value.len() as u64,
            )
            .await?;
        match reply.0.as_str() {
            "OK" => Ok(()),
            "EXISTS" => Err(Error::AlreadyExists { key: key.clone() }),
            _ => Err(unexpected("put", &reply)),
        }
    }

    /// Runs the refunds of reservations dropped uncommitted (queued by any handle sharing
    /// this one's queue), waiting for one in flight; each is bounded by the response timeout.
    /// A refund that fails stays queued, with those after it, and the error is returned.
    async fn drain_pending(&self) -> Result<()> {
        let refunds = &self.inner.refunds;
        let _gate = refunds.draining.lock().await;
        let pending = std::mem::take(
            &mut *refunds
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (i, (b, id)) in pending.iter().enumerate() {
            if let Err(e) = self
                .bucket_script(&SCRIPTS.unreserve, *b, &[id.as_bytes()])
                .await
            {
                let mut queue = refunds
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                queue.splice(0..0, pending[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    fn queue_refund(&self, b: usize, id: String) {
        self.inner
            .refunds
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((b, id));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = self.clone();
            handle.spawn(async move {
                if let Err(e) = store.drain_pending().await {
                    tracing::debug!("refund of a dropped reservation failed: {e}");
                }
            });
        }
    }

    async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<ObjectKey>> {
        let args = [prefix.as_bytes()];
        let lists: Vec<Vec<Vec<u8>>> = self
            .each_bucket(|b| self.bucket_invoke(&SCRIPTS.list, b, &args))
            .await?;
        let mut keys = Vec::new();
        for name in lists.into_iter().flatten() {
            let text = String::from_utf8(name)
                .map_err(|_| Error::Corrupted("an index holds a key that is not utf-8".into()))?;
            keys.push(ObjectKey::new(&text).map_err(|e| {
                Error::Corrupted(format!("an index holds an invalid key `{text}`: {e}"))
            })?);
        }
        keys.sort_unstable();
        Ok(keys)
    }

    async fn delete_names(&self, keys: &[ObjectKey]) -> Result<usize> {
        let mut per_bucket: Vec<Vec<&[u8]>> = vec![Vec::new(); self.inner.tags.len()];
        for k in keys {
            per_bucket[self.bucket(k)].push(k.as_str().as_bytes());
        }
        let counts = self
            .each_bucket(|b| {
                let names = &per_bucket[b];
                async move {
                    if names.is_empty() {
                        return Ok(0);
                    }
                    let mut removed = 0;
                    for batch in names.chunks(256) {
                        removed += self.bucket_script(&SCRIPTS.delete, b, batch).await?.1;
                    }
                    Ok(removed)
                }
            })
            .await?;
        Ok(counts.iter().map(|&n| n.max(0) as usize).sum())
    }

    async fn totals(&self) -> Result<(u64, u64, u64)> {
        self.drain_pending().await?;
        let all = self
            .each_bucket(|b| self.bucket_script(&SCRIPTS.stats, b, &[]))
            .await?;
        Ok(all.iter().fold((0, 0, 0), |(u, r, n), s| {
            (
                u + s.1.max(0) as u64,
                r + s.2.max(0) as u64,
                n + s.3.max(0) as u64,
            )
        }))
    }
}

#[async_trait]
impl ObjectStore for RedisStore {
    async fn put_opts(&self, key: &ObjectKey, value: Bytes, options: &PutOptions) -> Result<()> {
        self.inner
            .config
            .limits
            .check_value_size(value.len() as u64)?;
        self.drain_pending().await?;
        if value.len() <= self.inner.config.inline_max {
            return self.put_inline(key, &value, options).await;
        }
        self.stage(key, &value, options).await?.install().await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>> {
        Ok(self.get_digested(key).await?.map(|(value, _)| value))
    }

    /// The value with the digest its header keeps, from one `GET`.
    async fn get_digested(&self, key: &ObjectKey) -> Result<Option<(Bytes, Digest)>> {
        self.drain_pending().await?;
        let mut conn = self.inner.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.object_key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        let Some(raw) = raw else { return Ok(None) };
        let (_, deadline, digest) = parse_header(&raw)?;
        if deadline > 0 && deadline <= self.now_ms() {
            // Expired: the head script removes it (and returns its space).
            self.head(key).await?;
            return Ok(None);
        }
        Ok(Some((Bytes::from(raw).slice(HEADER_LEN..), digest)))
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.drain_pending().await?;
        let b = self.bucket(key);
        let reply = self
            .bucket_script(&SCRIPTS.head, b, &[key.as_str().as_bytes()])
            .await?;
        match reply.0.as_str() {
            "NF" => Ok(None),
            // `OK` followed by the digest's 32 hex digits, from the same header.
            ok if ok.starts_with("OK") => {
                let digest = ok[2..].parse::<Digest>().map_err(|_| {
                    Error::Corrupted("a stored value's header has no valid digest".into())
                })?;
                Ok(Some(
                    ObjectMeta::new(
                        reply.3.max(0) as u64,
                        readers_of(reply.1),
                        (reply.2 > 0).then(|| from_unix_millis(reply.2 as u64)),
                    )
                    .with_digest(Some(digest)),
                ))
            }
            _ => Err(unexpected("head", &reply)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        self.drain_pending().await?;
        Ok(self.delete_names(std::slice::from_ref(key)).await? == 1)
    }

    async fn release(&self, key: &ObjectKey) -> Result<ReleaseOutcome> {
        self.drain_pending().await?;
        let b = self.bucket(key);
        let reply = self
            .bucket_script(&SCRIPTS.release, b, &[key.as_str().as_bytes()])
            .await?;
        match reply.0.as_str() {
            "NF" => Ok(ReleaseOutcome::NotFound),
            "UNB" => Ok(ReleaseOutcome::Unbounded),
            "DEL" => Ok(ReleaseOutcome::Deleted),
            "REM" => u32::try_from(reply.1)
                .ok()
                .and_then(NonZeroU32::new)
                .map(ReleaseOutcome::Remaining)
                .ok_or_else(|| unexpected("release", &reply)),
            _ => Err(unexpected("release", &reply)),
        }
    }

    async fn keys_with_prefix(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>> {
        self.drain_pending().await?;
        self.names_with_prefix(prefix.as_str()).await
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<usize> {
        self.drain_pending().await?;
        let args = [prefix.as_str().as_bytes()];
        let counts = self
            .each_bucket(|b| self.bucket_script(&SCRIPTS.delete_prefix, b, &args))
            .await?;
        Ok(counts.iter().map(|r| r.1.max(0) as usize).sum())
    }

    async fn delete_rounds_before(&self, fed_id: &str, round: u64) -> Result<usize> {
        self.drain_pending().await?;
        let prefix = KeyPrefix::federation(fed_id)?;
        let doomed: Vec<ObjectKey> = self
            .names_with_prefix(prefix.as_str())
            .await?
            .into_iter()
            .filter(|k| k.is_round_before(fed_id, round))
            .collect();
        self.delete_names(&doomed).await
    }

    async fn sweep(&self) -> Result<usize> {
        self.drain_pending().await?;
        let swept = self
            .each_bucket(|b| self.bucket_script(&SCRIPTS.sweep, b, &[]))
            .await?;
        Ok(swept.iter().map(|r| r.1.max(0) as usize).sum())
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.totals().await?.2 as usize)
    }

    async fn stats(&self) -> Result<StoreStats> {
        let (bytes, reserved, entries) = self.totals().await?;
        Ok(StoreStats {
            entries,
            bytes,
            reserved,
            capacity_bytes: self.inner.config.limits.capacity_bytes,
        })
    }

    fn limits(&self) -> Limits {
        self.inner.config.limits
    }

    /// A buffer in process memory, its length charged against the capacity in Redis until
    /// it is committed (uploaded and installed) or dropped.
    async fn reserve(
        &self,
        key: &ObjectKey,
        len: usize,
        options: &PutOptions,
    ) -> Result<Box<dyn Reservation + '_>> {
        self.inner.config.limits.check_value_size(len as u64)?;
        self.drain_pending().await?;
        let staged = self.charge(key, len, options, false).await?;
        Ok(Box::new(RedisReservation {
            staged,
            buf: vec![0; len],
        }))
    }
}

/// A value charged (and, from [`RedisStore::stage`], uploaded) but not yet visible.
///
/// Dropping it without [`install`](StagedPut::install) refunds its charge (queued, run by the
/// store's next operation) and removes its staging data.
pub struct StagedPut {
    store: RedisStore,
    bucket: usize,
    id: String,
    key: ObjectKey,
    options: PutOptions,
    len: usize,
    done: bool,
}

impl fmt::Debug for StagedPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedPut")
            .field("key", &self.key)
            .field("len", &self.len)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl StagedPut {
    /// The key the value will be installed under.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The Redis key holding the staged data until the install.
    pub fn staging_key(&self) -> String {
        format!("{}s:{}", self.store.inner.tags[self.bucket], self.id)
    }

    /// Makes the staged value visible under its key, at once.
    ///
    /// Errors: [`Error::AlreadyExists`] (mode `Create`), [`Error::TooManyEntries`],
    /// [`Error::Timeout`] when the reservation ran out before the install,
    /// [`Error::Unavailable`] when the staging data was lost (a failover).
    pub async fn install(mut self) -> Result<()> {
        let store = self.store.clone();
        let create = if self.options.mode == PutMode::Create {
            "1"
        } else {
            "0"
        };
        let len = self.len.to_string();
        let deadline = store.deadline_ms(&self.options).to_string();
        let result = store
            .with_quota(
                &SCRIPTS.install,
                self.bucket,
                &[
                    self.id.as_bytes(),
                    self.key.as_str().as_bytes(),
                    create.as_bytes(),
                    len.as_bytes(),
                    deadline.as_bytes(),
                ],
                self.len as u64,
            )
            .await;
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                // `self` drops here and queues the refund.
                return Err(e);
            }
        };
        // Every answer but an error means the install script settled the reservation.
        self.done = true;
        match reply.0.as_str() {
            "OK" => Ok(()),
            "EXISTS" => Err(Error::AlreadyExists {
                key: self.key.clone(),
            }),
            "GONE" => Err(Error::Timeout {
                operation: "a staged put (its reservation ran out before the install)",
                after: store.inner.config.reservation_ttl,
            }),
            "SHORT" => Err(Error::Unavailable(
                "the staging data of a put was lost before its install (a failover?)".into(),
            )),
            _ => Err(unexpected("install", &reply)),
        }
    }

    async fn refund_now(mut self) {
        self.done = true;
        let id = std::mem::take(&mut self.id);
        if self
            .store
            .bucket_script(&SCRIPTS.unreserve, self.bucket, &[id.as_bytes()])
            .await
            .is_err()
        {
            self.store.queue_refund(self.bucket, id);
        }
    }
}

impl Drop for StagedPut {
    fn drop(&mut self) {
        if !self.done {
            self.store
                .queue_refund(self.bucket, std::mem::take(&mut self.id));
        }
    }
}

/// One command argument made of a header and a body, written into the command buffer without
/// first concatenating them.
struct Framed<'a> {
    head: &'a [u8],
    body: &'a [u8],
}

impl redis::ToRedisArgs for Framed<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.head);
        let _ = arg.write_all(self.body);
    }
}

/// A [`Reservation`] of a [`RedisStore`]: a buffer in process memory, charged in Redis.
struct RedisReservation {
    staged: StagedPut,
    buf: Vec<u8>,
}

impl fmt::Debug for RedisReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReservation")
            .field("staged", &self.staged)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Reservation for RedisReservation {
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn key(&self) -> &ObjectKey {
        &self.staged.key
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.publish(None).await
    }

    async fn commit_with_digest(self: Box<Self>, digest: Digest) -> Result<()> {
        self.publish(Some(digest)).await
    }
}

impl RedisReservation {
    async fn publish(self: Box<Self>, digest: Option<Digest>) -> Result<()> {
        let RedisReservation { staged, buf } = *self;
        let store = staged.store.clone();
        store.upload(&staged, &buf, digest).await?;
        staged.install().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let d = Digest::of(b"value");
        let h = header(
            Readers::exactly(7).unwrap_or_default(),
            1_700_000_000_123,
            d,
        );
        assert_eq!(parse_header(&h).ok(), Some((7, 1_700_000_000_123, d)));
        let h = header(Readers::Unbounded, 0, d);
        assert_eq!(parse_header(&h).ok(), Some((0, 0, d)));
        assert!(matches!(parse_header(b"XX"), Err(Error::Corrupted(_))));
        let mut bad = header(Readers::Unbounded, 0, d);
        bad[0] = b'X';
        assert!(matches!(parse_header(&bad), Err(Error::Corrupted(_))));
    }

    #[test]
    fn buckets_are_stable() {
        // FNV-1a of "" and "a" (published test vectors): the bucket of a key never changes.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
