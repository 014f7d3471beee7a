//! `zeroq distill`.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use zeroq::distill::{self, init::Init, DistillConfig, EarlyStop, InputDomain, StatLoss};

use super::preprocess_arg::PreprocessArgs;
use super::model_arg::ModelArgs;
use super::Output;

/// Initial batch distribution.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InitArg {
    /// N(0, 1) (the paper).
    Gaussian,
    /// Tiny uniform noise (the reference code).
    Uniform,
}

/// Form of the distillation loss.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LossArg {
    /// Each channel's mean and std error in units of its running σ, on the whole batch's statistics.
    Pooled,
    /// The same on each image's own statistics.
    Normalized,
    /// ZeroQ's: each image's statistics, errors in the layer's units.
    Zeroq,
}

impl From<LossArg> for StatLoss {
    fn from(l: LossArg) -> Self {
        match l {
            LossArg::Normalized => StatLoss::Normalized,
            LossArg::Zeroq => StatLoss::ZeroQ,
            LossArg::Pooled => StatLoss::Pooled,
        }
    }
}

/// Arguments of `zeroq distill`.
#[derive(Args, Debug)]
pub struct DistillArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output .npy (float32, NCHW, normalised input space).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write a PNG grid of the images, de-normalised with the preset (or --mean/--std).
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Images per batch. (Default: 32, fewer for models whose images cost more than about five CIFAR
    /// ResNet56 images, such as 224² ImageNet models; `zeroq inspect` shows the default.)
    #[arg(long)]
    pub batch: Option<usize>,
    /// Number of batches.
    #[arg(long, default_value_t = 1)]
    pub batches: usize,
    /// Adam iterations per batch at most (each batch stops earlier once its BN match stops improving,
    /// unless --no-early-stop). (Default: 500, fewer — down to 400, then fewer images — for models
    /// costlier than four CIFAR ResNet56 batches; `zeroq inspect` shows it.)
    #[arg(long)]
    pub iters: Option<usize>,
    /// Adam learning rate in units of the input prior's std (reduced on plateau: factor 0.2, patience
    /// 15, floor 1e-4; ZeroQ's 0.1, 100, 1e-4 with --zeroq-recipe).
    #[arg(long, default_value_t = 0.5)]
    pub lr: f32,
    /// Run every --iters iteration instead of stopping when the share of BN channels within 10% has not
    /// risen by half a point in 60 iterations.
    #[arg(long)]
    pub no_early_stop: bool,
    /// Form of the loss: pooled (each channel's error in units of its σ, on the statistics of the whole
    /// batch, as BatchNorm computes them in training), normalized (the same per image) or zeroq (the
    /// paper's: per image, in the layer's own units).
    #[arg(long, value_enum, default_value = "pooled")]
    pub loss: LossArg,
    /// ZeroQ's recipe exactly, for comparison with the paper: the zeroq loss, a N(0, 1) input prior, no
    /// bound on the pixels, its plateau schedule, no early stop.
    #[arg(long, conflicts_with_all = ["loss", "no_early_stop"])]
    pub zeroq_recipe: bool,
    /// Initial batch.
    #[arg(long, value_enum, default_value = "gaussian")]
    pub init: InitArg,
    /// Random seed (batch b uses seed + b).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The preprocessing: the valid input box and prior of the images, and the preview's colours.
    #[command(flatten)]
    pub pre: PreprocessArgs,
}

#[derive(Serialize)]
struct DistillJson {
    output: String,
    shape: [usize; 4],
    loss_start: Vec<f32>,
    loss_end: Vec<f32>,
    ms_per_iteration: f64,
    /// Wall time of the distillation.
    seconds: f64,
    /// Iterations run per batch (fewer than --iters when the early stop ended a batch).
    iterations: Vec<usize>,
    /// The share of BN channels within 10% against iteration and time, per batch.
    match_curves: Vec<Vec<distill::MatchPoint>>,
    layers: Vec<distill::LayerMatch>,
    channels_within_10pct: f32,
    /// Loss per iteration, one list per batch.
    loss_curves: Vec<Vec<f32>>,
}

/// `--batch` and `--iters`, each defaulting to what the model's cost allows (`distill::budget`); the
/// cost is only measured when a default is needed.
pub fn sized(g: &zeroq::ir::Graph, batch: Option<usize>, iters: Option<usize>) -> anyhow::Result<(usize, usize)> {
    let default = match (batch, iters) {
        (Some(b), Some(i)) => (b, i),
        _ => distill::budget::default_size_for(g)?,
    };
    Ok((batch.unwrap_or(default.0), iters.unwrap_or(default.1)))
}

pub fn run(a: DistillArgs, out: &Output) -> anyhow::Result<()> {
    let g = a.model.load()?;
    zeroq::model::require_batch_norm(&g, "distillation")?;
    // What the model and the flags alone can refuse, before asking for the preprocessing.
    let [c, h, w] = distill::input_chw(&g)?;
    let base = if a.zeroq_recipe { DistillConfig::zeroq() } else { DistillConfig::default() };
    let (batch, iters) = sized(&g, a.batch, a.iters)?;
    let mut cfg = DistillConfig {
        batch,
        batches: a.batches,
        iters,
        lr: a.lr,
        init: match a.init {
            InitArg::Gaussian => Init::Gaussian,
            InitArg::Uniform => Init::Uniform,
        },
        seed: a.seed,
        loss: if a.zeroq_recipe { StatLoss::ZeroQ } else { a.loss.into() },
        early_stop: if a.zeroq_recipe || a.no_early_stop { None } else { Some(EarlyStop::default()) },
        ..base
    };
    cfg.validate()?;
    zeroq::validate::batch_size(&[a.batches, batch, c, h, w])?;
    let pre = a.pre.resolve(&g, &a.model.display())?;
    cfg.domain = (!a.zeroq_recipe).then(|| InputDomain::from_preprocess(&pre, c));
    let pb = out.progress((iters * a.batches) as u64, "distill");
    let start = Instant::now();
    let d = distill::distill(&g, &cfg, &mut |b, it, loss, lr| {
        pb.set_position((b * iters + it + 1) as u64);
        pb.set_message(format!("loss {loss:.3} lr {lr:.0e}"));
    })?;
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let iterations = d.iterations();
    let ms = seconds * 1e3 / iterations.iter().sum::<usize>().max(1) as f64;
    zeroq::data::npy::write_f32(&a.output, &d.data, &d.shape)?;
    if let Some(p) = &a.preview {
        zeroq::report::write_image_grid(p, &d.data, d.shape, &pre, 2)?;
    }
    let layers = distill::match_statistics(&g, &d.data, d.shape)?;
    let within = distill::channels_within_10pct(&layers);
    let j = DistillJson {
        output: a.output.display().to_string(),
        shape: d.shape,
        loss_start: d.loss_curves.iter().map(|c| c[0]).collect(),
        loss_end: d.loss_curves.iter().map(|c| c[c.len() - 1]).collect(),
        ms_per_iteration: ms,
        seconds,
        iterations,
        match_curves: d.match_curves.clone(),
        layers,
        channels_within_10pct: within,
        loss_curves: d.loss_curves.clone(),
    };
    out.result(&j, || {
        let mut t = format!("wrote {} {:?}\n", j.output, j.shape);
        for (b, (s, e)) in j.loss_start.iter().zip(&j.loss_end).enumerate() {
            t += &format!("batch {b}: loss {s:.2} -> {e:.4} ({:.0}x lower) in {} iterations\n", s / e, j.iterations[b]);
        }
        t += &format!("{:.1} s, {:.1} ms/iteration; {:.1}% of BN channels within 10% (mean and std, in units of σ)\n", j.seconds, j.ms_per_iteration, 100.0 * j.channels_within_10pct);
        t += &format!("{:<40} {:>10} {:>10} {:>8}\n", "BN layer", "mean err", "std err", "within");
        for l in &j.layers {
            t += &format!("{:<40} {:>10.4} {:>10.4} {:>7.0}%\n", l.name, l.mean_error, l.std_error, 100.0 * l.within_10pct);
        }
        t
    })
}
