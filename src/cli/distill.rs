//! `zeroq distill`.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use zeroq::distill::{self, init::Init, DistillConfig};

use super::eval::preprocess_from;
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
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Number of batches.
    #[arg(long, default_value_t = 1)]
    pub batches: usize,
    /// Adam iterations per batch.
    #[arg(long, default_value_t = 500)]
    pub iters: usize,
    /// Adam learning rate (reduced on plateau: factor 0.1, patience 100, floor 1e-4).
    #[arg(long, default_value_t = 0.5)]
    pub lr: f32,
    /// Initial batch.
    #[arg(long, value_enum, default_value = "gaussian")]
    pub init: InitArg,
    /// Random seed (batch b uses seed + b).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Preprocessing preset used to de-normalise the preview.
    /// (Default: the --zoo/--arch model's own preset, else cifar10.)
    #[arg(long)]
    pub preset: Option<String>,
    /// Preview mean override.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub mean: Option<Vec<f32>>,
    /// Preview std override.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub std: Option<Vec<f32>>,
}

#[derive(Serialize)]
struct DistillJson {
    output: String,
    shape: [usize; 4],
    loss_start: Vec<f32>,
    loss_end: Vec<f32>,
    ms_per_iteration: f64,
    layers: Vec<distill::LayerMatch>,
    channels_within_10pct: f32,
    /// Loss per iteration, one list per batch.
    loss_curves: Vec<Vec<f32>>,
}

pub fn run(a: DistillArgs, out: &Output) -> anyhow::Result<()> {
    let pre = preprocess_from(&a.model.preset(&a.preset)?, None, None, &a.mean, &a.std)?;
    let g = a.model.load()?;
    let cfg = DistillConfig {
        batch: a.batch,
        batches: a.batches,
        iters: a.iters,
        lr: a.lr,
        init: match a.init {
            InitArg::Gaussian => Init::Gaussian,
            InitArg::Uniform => Init::Uniform,
        },
        seed: a.seed,
        ..DistillConfig::default()
    };
    let pb = out.progress((a.iters * a.batches) as u64, "distill");
    let start = Instant::now();
    let d = distill::distill(&g, &cfg, &mut |b, it, loss, lr| {
        pb.set_position((b * a.iters + it + 1) as u64);
        pb.set_message(format!("loss {loss:.3} lr {lr:.0e}"));
    })?;
    pb.finish_and_clear();
    let ms = start.elapsed().as_secs_f64() * 1e3 / (a.iters * a.batches) as f64;
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
        layers,
        channels_within_10pct: within,
        loss_curves: d.loss_curves.clone(),
    };
    out.result(&j, || {
        let mut t = format!("wrote {} {:?}\n", j.output, j.shape);
        for (b, (s, e)) in j.loss_start.iter().zip(&j.loss_end).enumerate() {
            t += &format!("batch {b}: loss {s:.2} -> {e:.4} ({:.0}x lower)\n", s / e);
        }
        t += &format!("{:.1} ms/iteration; {:.1}% of BN channels within 10% (mean and std, in units of σ)\n", j.ms_per_iteration, 100.0 * j.channels_within_10pct);
        t += &format!("{:<40} {:>10} {:>10} {:>8}\n", "BN layer", "mean err", "std err", "within");
        for l in &j.layers {
            t += &format!("{:<40} {:>10.4} {:>10.4} {:>7.0}%\n", l.name, l.mean_error, l.std_error, 100.0 * l.within_10pct);
        }
        t
    })
}
