//! A loaded model and what `zeroq inspect` reports about it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::{BatchNormSite, Graph};

/// One tensor of the model's interface.
#[derive(Clone, Debug, Serialize)]
pub struct TensorSummary {
    /// Name.
    pub name: String,
    /// Declared shape, symbolic dims by name (`N`) or `?`.
    pub shape: Vec<String>,
}

/// A weight layer with its size at the bit-widths ZeroQ chooses between.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    /// Node name.
    pub name: String,
    /// ONNX op type.
    pub op: String,
    /// Weight shape.
    pub weight_shape: Vec<usize>,
    /// Number of weights.
    pub params: usize,
    /// Weight bytes at 2, 4, 8 and 32 bits.
    pub size_bytes: BTreeMap<u32, f64>,
}

/// What `zeroq inspect` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Default-domain opset.
    pub opset: i64,
    /// Graph inputs.
    pub inputs: Vec<TensorSummary>,
    /// Graph outputs.
    pub outputs: Vec<TensorSummary>,
    /// Node count per op type (after constant folding).
    pub op_counts: BTreeMap<String, usize>,
    /// Number of BatchNormalization nodes (ZeroQ needs at least one).
    pub batch_norms: usize,
    /// Weight layers in execution order.
    pub weight_layers: Vec<LayerSummary>,
    /// Total weights over all weight layers.
    pub total_params: usize,
    /// Total weight bytes at 2, 4, 8 and 32 bits.
    pub total_size_bytes: BTreeMap<u32, f64>,
}

/// Bit-widths reported by `inspect`.
pub const SUMMARY_BITS: [u32; 4] = [2, 4, 8, 32];

/// Summarises a graph.
pub fn summarize(g: &Graph) -> Summary {
    let tensor = |&v: &usize| TensorSummary {
        name: g.name(v).to_string(),
        shape: g.values[v].shape.as_ref().map_or_else(Vec::new, |s| s.iter().map(|d| d.to_string()).collect()),
    };
    let sizes = |params: usize| SUMMARY_BITS.iter().map(|&b| (b, params as f64 * b as f64 / 8.0)).collect();
    let weight_layers: Vec<LayerSummary> = g
        .weight_layers()
        .into_iter()
        .map(|l| LayerSummary { name: l.name, op: l.op_type.to_string(), weight_shape: l.weight_shape, params: l.params, size_bytes: sizes(l.params) })
        .collect();
    let total_params = weight_layers.iter().map(|l| l.params).sum();
    Summary {
        opset: g.opset,
        inputs: g.inputs.iter().map(tensor).collect(),
        outputs: g.outputs.iter().map(tensor).collect(),
        op_counts: g.op_counts().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        batch_norms: g.batch_norm_sites().len(),
        weight_layers,
        total_params,
        total_size_bytes: sizes(total_params),
    }
}

/// The model's BatchNorm sites, or [`Error::NoBatchNorm`] naming the stage that needs them.
pub fn require_batch_norm(g: &Graph, stage: &'static str) -> Result<Vec<BatchNormSite>> {
    let sites = g.batch_norm_sites();
    if sites.is_empty() {
        return Err(Error::NoBatchNorm { stage });
    }
    Ok(sites)
}
