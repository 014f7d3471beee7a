//! `zeroq export-onnx`: any model source → FP32 ONNX with BatchNorm kept.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::model_arg::ModelArgs;
use super::Output;

/// Arguments of `zeroq export-onnx`.
#[derive(Args, Debug)]
pub struct ExportOnnxArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output ONNX (opset 17, FP32, BatchNormalization kept).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Serialize)]
struct ExportJson {
    model: String,
    output: String,
    input_shape: Vec<String>,
    batch_norms: usize,
    params: usize,
}

pub fn run(a: ExportOnnxArgs, out: &Output) -> anyhow::Result<()> {
    let g = a.model.load()?;
    zeroq::export::write_onnx(&a.output, &zeroq::export::graph_to_model(&g)?)?;
    let s = zeroq::model::summarize(&g);
    let j = ExportJson {
        model: a.model.display(),
        output: a.output.display().to_string(),
        input_shape: s.inputs.first().map(|i| i.shape.clone()).unwrap_or_default(),
        batch_norms: s.batch_norms,
        params: s.total_params,
    };
    out.result(&j, || format!("wrote {} (input [{}], {} BatchNormalization, {} weights)\n", j.output, j.input_shape.join(", "), j.batch_norms, j.params))
}
