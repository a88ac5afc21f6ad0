//! `gos certs` (being written).

/// Arguments of `gos certs`.
#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {}

pub(crate) fn run(_args: CertsArgs) -> anyhow::Result<()> {
    anyhow::bail!("`gos certs` is not built yet")
}
