//! Progress on stderr for the slow steps of `gos demo` and `gos bench` (rounds, creating a
//! shared-memory store): shown only when stderr is a terminal, and never with `--quiet` or
//! `--json`, so that pipes, files and scripts get the output alone.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use gos::shm::{ShmConfig, ShmStore};
use indicatif::{ProgressBar, ProgressStyle};

use crate::units::fmt_size;

/// Whether progress is drawn: not asked away (`--quiet`, `--json`) and stderr a terminal.
pub(crate) fn shown(quiet: bool, json: bool) -> bool {
    decide(quiet, json, std::io::stderr().is_terminal())
}

fn decide(quiet: bool, json: bool, terminal: bool) -> bool {
    terminal && !quiet && !json
}

/// A bar of `len` steps drawn with `template` (hidden when `show` is false); its message is
/// set by the caller.
pub(crate) fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Creates the shared-memory store `name` (removing a stale one first) laid out by `config`,
/// whose arena is `arena` bytes. The arena is allocated and faulted in at once, which takes
/// seconds for gigabytes: `progress` (a bar or spinner already on screen, or hidden) says so
/// meanwhile, then gets its old message back.
pub(crate) fn create_shm(
    name: &str,
    config: ShmConfig,
    arena: u64,
    progress: &ProgressBar,
) -> Result<ShmStore> {
    let _ = ShmStore::remove(name);
    let before = progress.message();
    progress.set_message(format!(
        "creating the shared-memory store {name} ({} arena)",
        fmt_size(arena)
    ));
    let created = ShmStore::create(name, config);
    if !before.is_empty() {
        progress.set_message(before);
    }
    created.context("creating the shared-memory store")
}

/// A spinner for one slow step (hidden when `show` is false).
pub(crate) fn spinner(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn progress_only_on_a_terminal_and_never_when_quiet_or_json() {
        assert!(decide(false, false, true));
        assert!(!decide(true, false, true));
        assert!(!decide(false, true, true));
        assert!(!decide(false, false, false));
    }
}
