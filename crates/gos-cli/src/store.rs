//! `gos store` (being written).

/// Arguments of `gos store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {}

pub(crate) async fn run(_args: StoreArgs) -> anyhow::Result<()> {
    anyhow::bail!("`gos store` is not built yet")
}
