//! `gos certs`: make (or reuse) a federation CA and issue cluster and client certificates
//! signed by it, as PEM files in one directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use gos::gateway::certs::FederationCa;
use gos::gateway::tls::validate_cluster_id;

/// The file stem of the CA's certificate and key in the output directory.
pub(crate) const CA_STEM: &str = "ca";

/// Arguments of `gos certs` (the long help is [`CERTS_HELP`]).
#[derive(Debug, clap::Args)]
#[command(after_help = CERTS_HELP)]
pub(crate) struct CertsArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Common name of a new CA (ignored when DIR already holds one).
    #[arg(long, value_name = "NAME", default_value = "gos-federation")]
    ca_name: String,
    /// A cluster (or client) id to issue a certificate for; repeat for several. An id is one
    /// DNS label: 1 to 63 of a-z, 0-9 and `-`.
    #[arg(long = "cluster", value_name = "ID", required = true)]
    clusters: Vec<String>,
    /// Overwrite existing `<id>.pem` / `<id>.key` files.
    #[arg(long)]
    force: bool,
    /// Print what was written as one JSON document.
    #[arg(long)]
    json: bool,
}

const CERTS_HELP: &str = "\
Writes ca.pem and ca.key (the federation CA; reused when DIR already holds both) and
<id>.pem / <id>.key for every --cluster ID. If any <id> file already exists the command is
refused and writes nothing, unless --force (which overwrites them).
A remote-store client is an identity like any other: issue it with --cluster client and put
`client` on the gateways' allow lists.

Example:
  gos certs --out certs --cluster cluster-a --cluster cluster-b --cluster client";

pub(crate) fn run(args: CertsArgs) -> Result<()> {
    let ids = check_ids(&args.clusters)?;
    let dir = &args.out;
    // Check everything before writing anything: a refused run leaves DIR as it was.
    if !args.force {
        for id in &ids {
            for file in [pem(dir, id), key(dir, id)] {
                if file.exists() {
                    bail!(
                        "{} already exists (pass --force to overwrite)",
                        file.display()
                    );
                }
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let (ca_pem, ca_key) = (pem(dir, CA_STEM), key(dir, CA_STEM));
    let (ca, reused) = match (ca_pem.exists(), ca_key.exists()) {
        (true, true) => {
            let ca = FederationCa::read(&ca_pem, &ca_key)
                .map_err(|e| anyhow!("reading the CA in {}: {e}", dir.display()))?;
            if !args.json {
                println!(
                    "using the existing federation CA {} ({})",
                    ca_pem.display(),
                    ca_key.display()
                );
            }
            (ca, true)
        }
        (false, false) => {
            let ca = FederationCa::generate(&args.ca_name)
                .map_err(|e| anyhow!("generating the CA: {e}"))?;
            ca.write(dir, CA_STEM)
                .map_err(|e| anyhow!("writing the CA: {e}"))?;
            if !args.json {
                println!(
                    "wrote federation CA \"{}\": {} {}",
                    args.ca_name,
                    ca_pem.display(),
                    ca_key.display()
                );
            }
            (ca, false)
        }
        (true, false) | (false, true) => bail!(
            "{} holds only half a CA (one of ca.pem, ca.key): remove it or add the other",
            dir.display()
        ),
    };

    let mut written = Vec::new();
    for id in &ids {
        let identity = ca
            .issue(id)
            .map_err(|e| anyhow!("issuing a certificate for `{id}`: {e}"))?;
        let (cert, key) = identity
            .write(dir, id)
            .map_err(|e| anyhow!("writing the certificate of `{id}`: {e}"))?;
        if args.json {
            written.push(serde_json::json!({ "id": id, "cert": cert, "key": key }));
        } else {
            println!("wrote {id}: {} {}", cert.display(), key.display());
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ca": { "cert": ca_pem, "key": ca_key, "reused": reused },
                "identities": written,
            })
        );
    }
    Ok(())
}

/// Validates the ids and refuses duplicates and the CA's own file names.
fn check_ids(ids: &[String]) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !validate_cluster_id(id) {
            bail!("invalid cluster id `{id}`: use 1 to 63 of a-z, 0-9 and `-`, not at either end");
        }
        if id == CA_STEM {
            bail!("`{CA_STEM}` cannot be a cluster id: its files would be the CA's");
        }
        if !seen.insert(id.clone()) {
            bail!("cluster id `{id}` is given twice");
        }
    }
    Ok(ids.to_vec())
}

pub(crate) fn pem(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.pem"))
}

pub(crate) fn key(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.key"))
}
