//! Where output goes: human text and progress to stderr, one JSON object to stdout.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Output settings shared by every command.
pub struct Output {
    quiet: bool,
    json: bool,
}

impl Output {
    /// From the global flags.
    pub fn new(quiet: bool, json: bool) -> Self {
        Self { quiet, json }
    }

    /// Prints a human line on stderr unless `--quiet`.
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Prints the result: JSON on stdout with `--json`; otherwise the human text on stdout.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            print!("{}", human());
        }
        Ok(())
    }

    /// A progress bar over `total` items, drawn only on a terminal and without `--quiet`.
    pub fn progress(&self, total: u64, what: &str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        pb
    }
}
