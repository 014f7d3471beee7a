//! The native half of the `zeroq` Python package (`zeroq._zeroq`).
//!
//! A Python call becomes the argument list of the matching `zeroq` command and runs in process through
//! the binary's own front end (`src/cli`, compiled in here too): the same clap parser, so every keyword
//! argument has the CLI option's name, default, validation and error message, and the same code from
//! the arguments to the library. What differs is where the output goes (a [`Host`]):
//! - the result is the JSON object `--json` prints, handed back as a string;
//! - every progress step checks for Ctrl-C (`PyErr_CheckSignals`) and calls the Python `progress`
//!   callback, if any; a pending `KeyboardInterrupt` (or the callback's own exception) unwinds the
//!   command from that step ([`Interrupted`]) and is raised in Python. Steps come only between pieces
//!   of work, and every file is written to a temporary name and renamed, so no partial file is left;
//! - arrays given from Python can be served as a labelled set (`--data array:…`).
//!
//! The work runs with the GIL released (`Python::detach`); it is taken back only at progress steps.

#[path = "../../src/cli/mod.rs"]
#[allow(dead_code)] // the binary's `main` parts (e.g. `Cli::parse`) are not used here
mod cli;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use clap::{CommandFactory, Parser};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use zeroq::data::{Dataset, Preprocess};

use cli::output::{Host, Output};

// As in the binary (src/main.rs): mimalloc keeps the kernels' large temporary buffers instead of
// returning them to the OS and page-faulting them in again on every layer. It serves the Rust side
// of the extension only; Python's objects keep Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pyo3::create_exception!(_zeroq, ZeroqError, PyException, "A zeroq command failed; the message is the CLI's one-line error.");

/// The panic payload that carries a Python exception (Ctrl-C, or the progress callback's) out of a
/// command; the exception itself waits in [`PyHost::pending`].
struct Interrupted;

/// Model inputs given as one float32 array, with their labels: the labelled set `array:…`.
struct ArraySet {
    data: Vec<f32>,
    /// `[N, C, H, W]`.
    shape: [usize; 4],
    labels: Vec<u32>,
}

impl ArraySet {
    fn new(bytes: &[u8], shape: &[usize], labels: &[i64]) -> Result<Self, String> {
        let [n, c, h, w] = <[usize; 4]>::try_from(shape).map_err(|_| format!("images: expected an array [N, C, H, W], got {} dimensions", shape.len()))?;
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("images: the shape overflows")?;
        if bytes.len() != count * 4 {
            return Err(format!("images: {} bytes for shape {shape:?}, expected {} (float32)", bytes.len(), count * 4));
        }
        if labels.len() != n {
            return Err(format!("labels: {} labels for {n} images; give one label per image", labels.len()));
        }
        let labels = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| u32::try_from(l).map_err(|_| format!("labels: label {l} of image {i} is not a class index (0, 1, …)")))
            .collect::<Result<Vec<u32>, String>>()?;
        let data: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if let Some(k) = data.iter().position(|x| !x.is_finite()) {
            return Err(format!("images: value {} at index {k} (image {}): images must be finite", data[k], k / (c * h * w).max(1)));
        }
        Ok(Self { data, shape: [n, c, h, w], labels })
    }
}

/// A view of an [`ArraySet`] as a [`Dataset`].
struct ArrayDataset(Arc<ArraySet>);

impl Dataset for ArrayDataset {
    fn len(&self) -> usize {
        self.0.shape[0]
    }
    fn image_shape(&self) -> [usize; 3] {
        let [_, c, h, w] = self.0.shape;
        [c, h, w]
    }
    fn label(&self, i: usize) -> u32 {
        self.0.labels[i]
    }
    fn image(&self, i: usize) -> zeroq::Result<Vec<f32>> {
        let per: usize = self.0.shape[1..].iter().product();
        Ok(self.0.data[i * per..(i + 1) * per].to_vec())
    }
    fn describe(&self) -> String {
        format!("array:{:?}", self.0.shape)
    }
    fn item_name(&self, i: usize) -> String {
        format!("image {i}")
    }
}

/// The Python side of a command: the callback, the result, the exception that stopped it.
struct PyHost {
    callback: Option<Py<PyAny>>,
    result: Mutex<Option<String>>,
    pending: Mutex<Option<PyErr>>,
    arrays: Option<Arc<ArraySet>>,
}

impl PyHost {
    /// Takes the GIL, runs pending signal handlers and `event` (the callback); on an exception, keeps
    /// it and unwinds the command.
    fn poll(&self, event: impl FnOnce(Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>>) {
        let r = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                if let Some(e) = event(py)? {
                    cb.call1(py, (e,))?;
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            if let Ok(mut p) = self.pending.lock() {
                *p = Some(e);
            }
            resume_unwind(Box::new(Interrupted));
        }
    }
}

impl Host for PyHost {
    fn progress(&self, what: &str, done: u64, total: u64) {
        self.poll(|py| {
            let d = PyDict::new(py);
            d.set_item("kind", "progress")?;
            d.set_item("stage", what)?;
            d.set_item("done", done)?;
            d.set_item("total", total)?;
            Ok(Some(d))
        });
    }

    fn message(&self, msg: &str) {
        self.poll(|py| {
            let d = PyDict::new(py);
            d.set_item("kind", "message")?;
            d.set_item("text", msg)?;
            Ok(Some(d))
        });
    }

    fn result(&self, json: String) {
        if let Ok(mut r) = self.result.lock() {
            *r = Some(json);
        }
    }

    fn dataset(&self, spec: &str, _: &Preprocess) -> Option<zeroq::Result<Box<dyn Dataset>>> {
        if !spec.starts_with("array:") {
            return None;
        }
        Some(match &self.arrays {
            Some(a) => Ok(Box::new(ArrayDataset(a.clone()))),
            None => Err(zeroq::Error::Invalid(format!("dataset '{spec}': no array was given"))),
        })
    }
}

/// Runs `zeroq ARGV…` and returns its JSON result. `quiet` silences the CLI's own progress and
/// messages on stderr; `progress(event)` receives each step (`{"kind": "progress", "stage", "done",
/// "total"}`) and message (`{"kind": "message", "text"}`). `images` (float32 bytes, shape `[N, C, H,
/// W]`, labels) is the labelled set `array:…`.
#[pyfunction]
#[pyo3(signature = (argv, quiet, progress=None, images=None))]
fn run(py: Python<'_>, argv: Vec<String>, quiet: bool, progress: Option<Py<PyAny>>, images: Option<(Bound<'_, PyBytes>, Vec<usize>, Vec<i64>)>) -> PyResult<Option<String>> {
    let args = cli::Cli::try_parse_from(&argv).map_err(|e| ZeroqError::new_err(clap_message(&e)))?;
    let arrays = match images {
        Some((bytes, shape, labels)) => Some(Arc::new(ArraySet::new(bytes.as_bytes(), &shape, &labels).map_err(ZeroqError::new_err)?)),
        None => None,
    };
    let host = Arc::new(PyHost { callback: progress, result: Mutex::new(None), pending: Mutex::new(None), arrays });
    let out = Output::hosted(quiet, host.clone());
    let outcome = catch_unwind(AssertUnwindSafe(|| py.detach(|| cli::run_with(args, &out))));
    match outcome {
        Ok(Ok(())) => Ok(host.result.lock().ok().and_then(|mut r| r.take())),
        Ok(Err(e)) => Err(ZeroqError::new_err(format!("{e:#}"))),
        Err(payload) if payload.is::<Interrupted>() => {
            let pending = host.pending.lock().ok().and_then(|mut p| p.take());
            Err(pending.unwrap_or_else(|| pyo3::exceptions::PyKeyboardInterrupt::new_err("interrupted")))
        }
        Err(payload) => resume_unwind(payload),
    }
}

/// clap's error as the one line the CLI prints first (without `error: ` and the usage).
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
    line.trim_start_matches("error: ").to_string()
}

/// The options of `zeroq COMMAND`, for building the Python signatures and docstrings: one dict per
/// option with `name` (the Python keyword: the clap id), `flag` (`--long`), `positional`, `switch`
/// (takes no value), `multiple` (a list, comma-separated), `required`, `default` (strings, as clap
/// holds them), `choices`, `help`. The command's own help is `about`.
#[pyfunction]
fn options<'py>(py: Python<'py>, command: &str) -> PyResult<Bound<'py, PyDict>> {
    let mut root = cli::Cli::command();
    root.build();
    let sub = root.find_subcommand(command).ok_or_else(|| ZeroqError::new_err(format!("no command '{command}'")))?;
    let d = PyDict::new(py);
    d.set_item("about", sub.get_about().map(|s| s.to_string()).unwrap_or_default())?;
    let list = pyo3::types::PyList::empty(py);
    for a in sub.get_arguments() {
        let id = a.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let o = PyDict::new(py);
        o.set_item("name", id)?;
        o.set_item("flag", a.get_long().map(|l| format!("--{l}")))?;
        o.set_item("positional", a.is_positional())?;
        o.set_item("switch", !a.get_action().takes_values())?;
        let many = a.get_value_delimiter().is_some() || a.get_num_args().is_some_and(|n| n.max_values() > 1);
        o.set_item("multiple", many)?;
        o.set_item("required", a.is_required_set())?;
        o.set_item("global", a.is_global_set())?;
        let defaults: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        o.set_item("default", defaults)?;
        let choices: Vec<String> = a.get_possible_values().iter().filter(|p| !p.is_hide_set()).map(|p| p.get_name().to_string()).collect();
        o.set_item("choices", choices)?;
        o.set_item("help", a.get_long_help().or(a.get_help()).map(|s| s.to_string()).unwrap_or_default())?;
        list.append(o)?;
    }
    d.set_item("options", list)?;
    Ok(d)
}

/// The names of the zoo's pretrained models.
#[pyfunction]
fn zoo_names() -> Vec<&'static str> {
    zeroq::zoo::ZOO.iter().map(|e| e.name).collect()
}

#[pymodule]
fn _zeroq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ZeroqError", m.py().get_type::<ZeroqError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(options, m)?)?;
    m.add_function(wrap_pyfunction!(zoo_names, m)?)?;
    Ok(())
}
