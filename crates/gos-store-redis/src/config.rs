//! `RedisConfig`: where the store is (URLs), its namespace, limits, layout and timeouts.

use std::time::Duration;

use gos_store::{Error, Limits, Result};

/// The largest limit kept in Redis: the ledger's counters are 64-bit signed integers handled
/// by Lua as doubles, so limits are capped at 2^62 (far above any real capacity).
pub(crate) const MAX_LIMIT: u64 = 1 << 62;

/// The bulk length Redis accepts by default (`proto-max-bulk-len`, 512 MiB): chunks must be
/// smaller, header included.
pub const MAX_CHUNK_SIZE: usize = (512 << 20) - 64;

/// How to reach and lay out a [`RedisStore`](crate::RedisStore).
///
/// ```
/// use std::time::Duration;
/// use gos_store::Limits;
/// use gos_store_redis::RedisConfig;
///
/// let config = RedisConfig::new(["redis://127.0.0.1:6379"])
///     .namespace("exp1")
///     .limits(Limits::with_capacity(8 << 30))
///     .response_timeout(Duration::from_secs(60));
/// assert_eq!(config.namespace, "exp1");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URLs (user, password and database in the URL). One URL of a
    /// server with cluster mode off opens a standalone store; several URLs, or one URL of a
    /// cluster node, open a cluster store.
    pub urls: Vec<String>,
    /// Prefix of every key (letters, digits, `_`, `-`, `.`), so stores can share a server.
    pub namespace: String,
    /// The limits the store enforces (capacity and entries across all clients).
    pub limits: Limits,
    /// Number of buckets (hash slots) objects are spread over; fixed when the namespace is
    /// created (default 32).
    pub buckets: u32,
    /// Values up to this size are put by one script (default 1 MiB); larger ones are staged
    /// and installed.
    pub inline_max: usize,
    /// Size of the chunks a large value is sent in (default 256 MiB, at most
    /// [`MAX_CHUNK_SIZE`]).
    pub chunk_size: usize,
    /// How long one command may take (default 30 s; a 256 MiB chunk needs seconds).
    pub response_timeout: Duration,
    /// How long connecting to a server may take (default 5 s).
    pub connection_timeout: Duration,
    /// How long a staged put or a reservation may take before its charge is dropped
    /// (default 10 min); its staging key expires twice this long after its start.
    pub reservation_ttl: Duration,
    /// Open a namespace created with other limits or buckets with its own (default false:
    /// such a namespace is refused). The largest value stays this configuration's, at most
    /// the adopted capacity.
    pub adopt_limits: bool,
}

impl RedisConfig {
    /// A configuration for the given URLs with the defaults.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        RedisConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            namespace: "gos".to_owned(),
            limits: Limits::default(),
            buckets: 32,
            inline_max: 1 << 20,
            chunk_size: 256 << 20,
            response_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(5),
            reservation_ttl: Duration::from_secs(600),
            adopt_limits: false,
        }
    }

    /// Sets the namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the number of buckets.
    #[must_use]
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// Sets the largest value put by one script.
    #[must_use]
    pub fn inline_max(mut self, bytes: usize) -> Self {
        self.inline_max = bytes;
        self
    }

    /// Sets the chunk size of large values.
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Sets the response timeout.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the connection timeout.
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the reservation time to live.
    #[must_use]
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// Sets whether an existing namespace's own limits and buckets are adopted.
    #[must_use]
    pub fn adopt_limits(mut self, adopt: bool) -> Self {
        self.adopt_limits = adopt;
        self
    }

    /// Checks every field; the store opens only a valid configuration.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if self.urls.is_empty() {
            return bad("no redis url given".into());
        }
        if let Some(url) = self
            .urls
            .iter()
            .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
        {
            return bad(format!("`{url}` is not a redis:// or rediss:// url"));
        }
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return bad(format!(
                "namespace `{ns}` must be 1 to 64 letters, digits, `_`, `-` or `.`"
            ));
        }
        if !(1..=16384).contains(&self.buckets) {
            return bad(format!("buckets is {}, must be 1 to 16384", self.buckets));
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return bad(format!(
                "chunk_size is {}, must be 1 to {MAX_CHUNK_SIZE}",
                self.chunk_size
            ));
        }
        if self.inline_max > MAX_CHUNK_SIZE {
            return bad(format!(
                "inline_max is {}, must be at most {MAX_CHUNK_SIZE}",
                self.inline_max
            ));
        }
        for (name, d) in [
            ("response_timeout", self.response_timeout),
            ("connection_timeout", self.connection_timeout),
            ("reservation_ttl", self.reservation_ttl),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must not be zero"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_bad_fields() {
        let ok = RedisConfig::new(["redis://127.0.0.1:1"]);
        assert!(ok.validate().is_ok());
        for bad in [
            RedisConfig::new(Vec::<String>::new()),
            RedisConfig::new(["http://x"]),
            ok.clone().namespace("a{b}"),
            ok.clone().namespace(""),
            ok.clone().buckets(0),
            ok.clone().chunk_size(0),
            ok.clone().chunk_size(MAX_CHUNK_SIZE + 1),
            ok.clone().response_timeout(Duration::ZERO),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
