//! `gos serve` (being written).

/// Arguments of `gos serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {}

pub(crate) async fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`gos serve` is not built yet")
}
