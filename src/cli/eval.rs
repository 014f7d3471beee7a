//! `zeroq eval`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use zeroq::data;
use zeroq::engine::Plan;

use super::model_arg::ModelArgs;
use super::preprocess_arg::PreprocessArgs;
use super::Output;

/// Arguments of `zeroq eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labelled data: `cifar10:PATH` (CIFAR-10 binary) or `folder:DIR` (images + labels.txt).
    #[arg(long)]
    pub data: String,
    /// The preprocessing.
    #[command(flatten)]
    pub pre: PreprocessArgs,
    /// Override the preset's resize (shorter side, pixels).
    #[arg(long)]
    pub resize: Option<usize>,
    /// Override the preset's centre crop (pixels).
    #[arg(long)]
    pub crop: Option<usize>,
    /// Evaluate an evenly strided subset of N images (every k-th), not the first N.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per forward pass [default: from the model's largest activation, about 2 MiB of it per
    /// batch, at least 2 images per thread].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Save the logits as float32 [N, classes] .npy.
    #[arg(long)]
    pub save_logits: Option<PathBuf>,
}

#[derive(Serialize)]
struct EvalJson<'a> {
    model: String,
    data: String,
    /// Images per forward pass (given or chosen).
    batch: usize,
    #[serde(flatten)]
    report: &'a zeroq::eval::EvalReport,
}

pub fn run(a: EvalArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch != Some(0), "--batch must be at least 1");
    super::ensure_limit(a.limit)?;
    let g = a.model.load()?;
    let mut pre = a.pre.resolve(&g, &a.model.display())?;
    if a.resize.is_some() {
        pre.resize = a.resize;
    }
    if a.crop.is_some() {
        pre.crop = a.crop;
    }
    let ds = out.open_dataset(&a.data, pre)?;
    let idx = data::strided_subset(ds.len(), a.limit);
    let plan = Plan::for_eval(g)?;
    let batch = match a.batch {
        Some(b) => b,
        None => zeroq::eval::auto_batch(&plan, ds.as_ref(), &idx).with_context(|| format!("running {} on the first image", a.model.display()))?,
    };
    let pb = out.progress(idx.len() as u64, "eval");
    let report = zeroq::eval::evaluate(&plan, ds.as_ref(), &idx, batch, a.save_logits.is_some(), &mut |d, _| pb.set_position(d as u64))
        .with_context(|| format!("evaluating {} on {}", a.model.display(), ds.describe()))?;
    pb.finish_and_clear();
    if let (Some(path), Some(l)) = (&a.save_logits, &report.logits) {
        data::npy::write_f32(path, l, &[report.n, report.classes])?;
        out.say(format!("logits written to {}", path.display()));
    }
    let j = EvalJson { model: a.model.display().to_string(), data: ds.describe(), batch, report: &report };
    out.result(&j, || {
        format!(
            "{}  {} images  top-1 {:.2}%  top-5 {:.2}%  {:.0} images/s ({:.1} s)\n",
            a.model.display(),
            report.n,
            report.top1,
            report.top5,
            report.images_per_s,
            report.seconds
        )
    })
}
