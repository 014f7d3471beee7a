//! Where output goes: human text and progress to stderr, one JSON object to stdout; or, when a host
//! program drives the commands (the Python package, `python/`), to that host as well.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use zeroq::data::{Dataset, Preprocess};

/// A program that runs the commands in process instead of a shell (the Python package). It sees every
/// progress step and message (to draw its own progress, and to stop the work: a host may unwind from
/// these calls, which come only between steps of the work, never while a file is being written), takes
/// the result instead of stdout, and can serve data sets from memory.
pub trait Host: Send + Sync {
    /// `done` of `total` steps of `what` are finished (`total` 0: not countable).
    fn progress(&self, what: &str, done: u64, total: u64);
    /// A human message (also printed on stderr unless quiet).
    fn message(&self, msg: &str);
    /// The command's result, the JSON object `--json` prints.
    fn result(&self, json: String);
    /// A labelled set by a spec the library does not know (e.g. `array:NAME`), `None` for the others.
    fn dataset(&self, spec: &str, preprocess: &Preprocess) -> Option<zeroq::Result<Box<dyn Dataset>>>;
}

/// Output settings shared by every command.
pub struct Output {
    quiet: bool,
    json: bool,
    host: Option<Arc<dyn Host>>,
}

impl Output {
    /// From the global flags.
    pub fn new(quiet: bool, json: bool) -> Self {
        Self { quiet, json, host: None }
    }

    /// Output for a host program: results go to `host`, human text to stderr unless `quiet`.
    #[allow(dead_code)] // used by the Python package, which compiles this module too
    pub fn hosted(quiet: bool, host: Arc<dyn Host>) -> Self {
        Self { quiet, json: false, host: Some(host) }
    }

    /// Prints a human line on stderr unless `--quiet`.
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
        if let Some(h) = &self.host {
            h.message(msg.as_ref());
        }
    }

    /// Prints the result: JSON on stdout with `--json`; otherwise the human text on stdout. A host gets
    /// the JSON instead.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> anyhow::Result<()> {
        if let Some(h) = &self.host {
            h.result(serde_json::to_string(value)?);
        } else if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            print!("{}", human());
        }
        Ok(())
    }

    /// A progress bar over `total` items, drawn only on a terminal and without `--quiet`.
    pub fn progress(&self, total: u64, what: &str) -> Bar {
        let pb = if self.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new(total);
            pb.set_style(
                ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_message(what.to_string());
            pb
        };
        let bar = Bar { pb, what: Mutex::new(what.to_string()), total, host: self.host.clone() };
        bar.report(0);
        bar
    }

    /// Opens a labelled set: `cifar10:PATH`, `folder:DIR`, or one the host serves.
    pub fn open_dataset(&self, spec: &str, preprocess: Preprocess) -> zeroq::Result<Box<dyn Dataset>> {
        match self.host.as_ref().and_then(|h| h.dataset(spec, &preprocess)) {
            Some(ds) => ds,
            None => zeroq::data::open_dataset(spec, preprocess),
        }
    }
}

/// An indicatif progress bar that also reports its steps to the host, if any.
pub struct Bar {
    pb: ProgressBar,
    what: Mutex<String>,
    total: u64,
    host: Option<Arc<dyn Host>>,
}

impl Bar {
    /// A bar that draws nothing and reports nothing.
    pub fn hidden() -> Self {
        Self { pb: ProgressBar::hidden(), what: Mutex::new(String::new()), total: 0, host: None }
    }

    fn report(&self, done: u64) {
        if let Some(h) = &self.host {
            let what = self.what.lock().map(|w| w.clone()).unwrap_or_default();
            h.progress(&what, done, self.total);
        }
    }

    /// Moves the bar to `done` steps.
    pub fn set_position(&self, done: u64) {
        self.pb.set_position(done);
        self.report(done);
    }

    /// The message beside the bar.
    pub fn set_message(&self, msg: String) {
        self.pb.set_message(msg);
    }

    /// The text before the bar; it also names the step for the host.
    pub fn set_prefix(&self, prefix: String) {
        if let Ok(mut w) = self.what.lock() {
            w.clone_from(&prefix);
        }
        self.pb.set_prefix(prefix);
    }

    /// See [`ProgressBar::set_style`].
    pub fn set_style(&self, style: ProgressStyle) {
        self.pb.set_style(style);
    }

    /// See [`ProgressBar::enable_steady_tick`].
    pub fn enable_steady_tick(&self, every: std::time::Duration) {
        self.pb.enable_steady_tick(every);
    }

    /// True when nothing is drawn (no terminal, or quiet).
    pub fn is_hidden(&self) -> bool {
        self.pb.is_hidden()
    }

    /// Removes the bar.
    pub fn finish_and_clear(&self) {
        self.pb.finish_and_clear();
    }
}
