//! zeroq's error type: one variant per kind of failure, each naming the file, node or value involved and,
//! where the user can act on it, what to do.

use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    ///
    /// The OS error is part of the message and deliberately not a `#[source]`: `{:#}` would print it a
    /// second time (`No such file or directory (os error 2): No such file or directory (os error 2)`).
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },

    /// The file is not a valid ONNX model.
    #[error("{}: not a valid ONNX model ({reason}); check the file is complete and was written by an ONNX exporter", path.display())]
    OnnxDecode {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// The model uses an operator zeroq does not implement.
    #[error("node '{node}': unsupported operator '{op_type}'{domain}; zeroq supports the CNN operators listed in DESIGN.md (Conv, BatchNormalization, Relu, Gemm, ...)")]
    UnsupportedOp {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// Domain note (empty for the default domain).
        domain: String,
    },

    /// A node's attributes or inputs are invalid or unsupported.
    #[error("node '{node}' ({op_type}): {reason}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// What was wrong.
        reason: String,
    },

    /// The input tensor does not match the model's declared input.
    #[error("input '{input}': expected shape [{expected}], got [{got}]")]
    InputShape {
        /// Input name.
        input: String,
        /// Declared shape.
        expected: String,
        /// Given shape.
        got: String,
    },

    /// A dataset file or folder is missing, short or malformed.
    #[error("{}: {reason}", path.display())]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// A stage needs BatchNormalization statistics the model does not have.
    #[error("{stage} needs BatchNormalization nodes (ZeroQ matches their running mean/variance), but the model has none: they were probably fused into Conv at export. Re-export with BN kept, e.g. torch.onnx.export(model.eval(), x, path, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True) (see the README)")]
    NoBatchNorm {
        /// The stage that needed BN.
        stage: &'static str,
    },

    /// A PyTorch checkpoint cannot be read, or does not fit the architecture it was given for.
    #[error("{}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was wrong (naming the tensor key where there is one).
        reason: String,
    },

    /// A request or argument is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), error: source }
    }

    /// An [`Error::Data`] for `path`.
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data { path: path.into(), reason: reason.into() }
    }

    /// An [`Error::Node`].
    pub fn node(node: &str, op_type: &str, reason: impl Into<String>) -> Self {
        Error::Node { node: node.to_string(), op_type: op_type.to_string(), reason: reason.into() }
    }
}
