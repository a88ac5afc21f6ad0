//! Exit codes: 0 success, 1 error, 2 usage, 3 not found (documented in `gos --help` and
//! docs/getting-started.md). A command marks a "not found" or a usage error by returning a
//! [`NotFound`] or [`Usage`] somewhere in its error's chain.

use std::fmt;
use std::process::ExitCode;

/// What a failed command exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Anything else that went wrong: 1.
    Error,
    /// The command line is wrong (a bad flag, value or combination): 2, like clap's own.
    Usage,
    /// What was asked for does not exist (a key, a store by name): 3.
    NotFound,
}

impl Exit {
    /// The exit status of an error: the first marker in its chain, else [`Exit::Error`].
    pub(crate) fn of(e: &anyhow::Error) -> Exit {
        for cause in e.chain() {
            if cause.downcast_ref::<NotFound>().is_some() {
                return Exit::NotFound;
            }
            if cause.downcast_ref::<Usage>().is_some() {
                return Exit::Usage;
            }
        }
        Exit::Error
    }

    /// The number.
    pub(crate) fn number(self) -> u8 {
        match self {
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
        }
    }

    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(self.number())
    }
}

/// An error meaning "this does not exist" (exit code 3); its text is the message.
#[derive(Debug)]
pub(crate) struct NotFound(pub(crate) String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// An error meaning "the command line is wrong" (exit code 2) found after clap parsed it.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `anyhow` errors of the markers.
pub(crate) fn not_found(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(NotFound(message.into()))
}

pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// clap's rendered error (several lines: the error, a tip, the usage, a pointer to --help) as
/// one line: `<error> (usage: <usage>; see --help)`.
pub(crate) fn usage_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let usage = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(str::trim);
    match usage {
        Some(usage) => format!("{first} (usage: {usage}; see --help)"),
        None => format!("{first} (see --help)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_set_the_code_anywhere_in_the_chain() {
        assert_eq!(Exit::of(&anyhow::anyhow!("boom")), Exit::Error);
        assert_eq!(
            Exit::of(&not_found("key `a` not found").context("reading")),
            Exit::NotFound
        );
        assert_eq!(Exit::of(&usage("--json needs --out")), Exit::Usage);
        assert_eq!(
            [Exit::Error, Exit::Usage, Exit::NotFound].map(Exit::number),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_clap_error_becomes_one_line() {
        let rendered = "error: unexpected argument '--k' found\n\n  tip: to pass '--k' as a value, use '-- --k'\n\nUsage: gos bench [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered),
            "unexpected argument '--k' found (usage: gos bench [OPTIONS]; see --help)"
        );
        assert_eq!(usage_line("error: bad\n"), "bad (see --help)");
    }
}
