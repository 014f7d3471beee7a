//! `zeroq export-onnx`: any model source → FP32 ONNX with BatchNorm kept.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::model_arg::ModelArgs;
use super::preprocess_arg::PreprocessArgs;
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
    /// The preprocessing to record in the model's metadata, so later commands need no --preset.
    /// (Default: the model's own record, else cifar10 for a 32×32 input, else none is recorded.)
    #[command(flatten)]
    pub pre: PreprocessArgs,
}

#[derive(Serialize)]
struct ExportJson {
    model: String,
    output: String,
    input_shape: Vec<String>,
    batch_norms: usize,
    params: usize,
    /// The preprocessing recorded in the metadata, if one is known.
    preprocess: Option<zeroq::data::Preprocess>,
}

pub fn run(a: ExportOnnxArgs, out: &Output) -> anyhow::Result<()> {
    let mut g = a.model.load()?;
    let flags = a.pre.preset.is_some() || a.pre.mean.is_some() || a.pre.std.is_some();
    let label = a.model.display();
    let preprocess = if flags { Some(a.pre.resolve_and_record(&mut g, &label)?) } else { a.pre.resolve_and_record(&mut g, &label).ok() };
    zeroq::export::write_onnx(&a.output, &zeroq::export::graph_to_model(&g)?)?;
    let s = zeroq::model::summarize(&g);
    let j = ExportJson {
        model: a.model.display(),
        output: a.output.display().to_string(),
        input_shape: s.inputs.first().map(|i| i.shape.clone()).unwrap_or_default(),
        batch_norms: s.batch_norms,
        params: s.total_params,
        preprocess,
    };
    out.result(&j, || format!("wrote {} (input [{}], {} BatchNormalization, {} weights)\n", j.output, j.input_shape.join(", "), j.batch_norms, j.params))
}
