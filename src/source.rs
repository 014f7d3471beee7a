//! Where a model comes from: an ONNX file, a built-in architecture with a PyTorch checkpoint, or a zoo name.
//! Every command that takes a model takes any of the three.

use std::path::PathBuf;

use crate::arch::Arch;
use crate::error::Result;
use crate::ir::Graph;

/// A model to load.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// An ONNX file with BatchNormalization kept.
    Onnx(PathBuf),
    /// A built-in architecture with its `state_dict` checkpoint.
    Checkpoint {
        /// The architecture.
        arch: Arch,
        /// The `.pth` file.
        weights: PathBuf,
    },
    /// A zoo model by name (fetched into the cache on first use).
    Zoo(String),
}

impl ModelSource {
    /// Loads the graph. `log` receives progress lines (a zoo model fetched on first use).
    pub fn load(&self, log: &mut dyn FnMut(&str)) -> Result<Graph> {
        match self {
            ModelSource::Onnx(p) => crate::onnx::load_onnx(p),
            ModelSource::Checkpoint { arch, weights } => arch.load(weights),
            ModelSource::Zoo(name) => crate::zoo::load(name, log),
        }
    }

    /// The architecture, when the model is a built-in one.
    pub fn arch(&self) -> Result<Option<Arch>> {
        Ok(match self {
            ModelSource::Onnx(_) => None,
            ModelSource::Checkpoint { arch, .. } => Some(*arch),
            ModelSource::Zoo(name) => Some(crate::zoo::entry(name)?.arch),
        })
    }

    /// For messages and reports: the path, `ARCH:WEIGHTS` or `zoo:NAME`.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Onnx(p) => p.display().to_string(),
            ModelSource::Checkpoint { arch, weights } => format!("{arch}:{}", weights.display()),
            ModelSource::Zoo(name) => format!("zoo:{name}"),
        }
    }
}
