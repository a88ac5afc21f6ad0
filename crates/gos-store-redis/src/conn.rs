//! The connection to Redis: a reconnecting `ConnectionManager` for a standalone server or the
//! `redis` crate's async cluster client, and the mapping of their errors to the store's.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use gos_store::{Error, Result};

use crate::config::RedisConfig;

/// One store's connection; clones share it (commands are multiplexed).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects as the URLs say: several URLs, or one URL of a server with cluster mode on,
    /// open the cluster client; one URL of a plain server, a connection manager.
    pub(crate) async fn connect(config: &RedisConfig) -> Result<Conn> {
        let cluster = if config.urls.len() > 1 {
            true
        } else {
            let mut single = Self::single(config).await?;
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut single)
                .await
                .map_err(map_error)?;
            if !info.contains("cluster_enabled:1") {
                return Ok(Conn::Single(single));
            }
            true
        };
        debug_assert!(cluster);
        let client = ClusterClientBuilder::new(config.urls.iter().map(String::as_str))
            .connection_timeout(config.connection_timeout)
            .response_timeout(config.response_timeout)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("redis cluster urls: {e}")))?;
        let conn = tokio::time::timeout(
            config.connection_timeout.saturating_mul(2),
            client.get_async_connection(),
        )
        .await
        .map_err(|_| Error::Timeout {
            operation: "connecting to the redis cluster",
            after: config.connection_timeout.saturating_mul(2),
        })?
        .map_err(map_error)?;
        Ok(Conn::Cluster(conn))
    }

    async fn single(config: &RedisConfig) -> Result<ConnectionManager> {
        let client = redis::Client::open(config.urls[0].as_str())
            .map_err(|e| Error::InvalidArgument(format!("redis url: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout))
            .set_number_of_retries(3);
        tokio::time::timeout(
            config.connection_timeout.saturating_mul(2),
            client.get_connection_manager_with_config(manager),
        )
        .await
        .map_err(|_| Error::Timeout {
            operation: "connecting to redis",
            after: config.connection_timeout.saturating_mul(2),
        })?
        .map_err(map_error)
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Maps a `redis` error to the store's error.
pub(crate) fn map_error(e: RedisError) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            operation: "a redis command",
            after: std::time::Duration::ZERO,
        };
    }
    if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        return Error::Unavailable(format!("redis: {e}"));
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::BusyLoading)
        | ErrorKind::Server(ServerErrorKind::TryAgain)
        | ErrorKind::Server(ServerErrorKind::ClusterDown) => {
            return Error::Busy(format!("redis: {e}"));
        }
        ErrorKind::Server(ServerErrorKind::ReadOnly) => {
            return Error::Unavailable(format!("redis: {e}"));
        }
        _ => {}
    }
    match e.code() {
        Some("OOM") => Error::StoreFull {
            requested: 0,
            available: 0,
        },
        Some("NOPERM" | "NOAUTH" | "WRONGPASS") => Error::PermissionDenied(format!("redis: {e}")),
        Some("BUSY") => Error::Busy(format!("redis: {e}")),
        _ => Error::backend("redis", e),
    }
}
