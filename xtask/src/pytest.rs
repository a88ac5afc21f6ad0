//! The Python half of `cargo xtask test`: a virtual environment in `target/py-venv` (made with
//! the machine's `python3`, or `$GOS_PYTHON`), the build tools from PyPI, the `gos` package
//! built from `crates/gos-py` (maturin develop), then pytest and a quick run of the benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The virtual environment's directory and its interpreter.
pub(crate) struct Venv {
    dir: PathBuf,
    python: PathBuf,
}

impl Venv {
    /// Creates `target/py-venv` under `root` if it is missing and installs the test
    /// requirements into it.
    pub(crate) fn ensure(root: &Path) -> Result<Venv> {
        let dir = root.join("target").join("py-venv");
        let python = dir.join("bin").join("python");
        if !python.exists() {
            let base = std::env::var("GOS_PYTHON").unwrap_or_else(|_| "python3".into());
            run(
                Command::new(&base).args(["-m", "venv"]).arg(&dir),
                &format!("{base} -m venv (is python3 with the venv module installed?)"),
            )?;
        }
        let venv = Venv { dir, python };
        let requirements = root.join("crates/gos-py/requirements-test.txt");
        run(
            venv.cmd(&venv.python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
            "pip install the test requirements",
        )?;
        Ok(venv)
    }

    /// The interpreter, for `PYO3_PYTHON`: cargo and maturin then build pyo3 alike.
    pub(crate) fn python(&self) -> &Path {
        &self.python
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.dir.join("bin")];
        paths.extend(std::env::split_paths(&path));
        cmd.env("VIRTUAL_ENV", &self.dir)
            .env("PATH", std::env::join_paths(paths).unwrap_or(path))
            .env("PYO3_PYTHON", &self.python)
            .env_remove("PYTHONHOME");
        cmd
    }

    /// Builds and installs the package, runs pytest, then the benchmark at small sizes.
    pub(crate) fn test(&self, root: &Path) -> Result<()> {
        let krate = root.join("crates/gos-py");
        run(
            self.cmd(&self.dir.join("bin").join("maturin"))
                .args(["develop", "--quiet", "--manifest-path"])
                .arg(krate.join("Cargo.toml"))
                .current_dir(root),
            "maturin develop (building the gos package)",
        )?;
        run(
            self.cmd(&self.python)
                .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
                .arg(krate.join("tests"))
                .current_dir(&krate),
            "pytest crates/gos-py/tests",
        )?;
        run(
            self.cmd(&self.python)
                .arg(krate.join("bench").join("bench.py"))
                .arg("--quick")
                .current_dir(root),
            "the Python benchmark (--quick)",
        )
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    println!("$ {what}");
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
