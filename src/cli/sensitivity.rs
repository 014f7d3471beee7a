//! `zeroq sensitivity` and `zeroq pareto`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use zeroq::data::write_atomic;
use zeroq::pareto::{fmt_bytes, Frontier, Summary};
use zeroq::report::charts;
use zeroq::sensitivity::{self, Sensitivity, SensitivityConfig};

use super::preprocess_arg::PreprocessArgs;
use super::distilled::load_or_distill;
use super::model_arg::ModelArgs;
use super::quant_args::{budget_from, WeightRangeArg};
use super::Output;

/// Arguments of `zeroq sensitivity`.
#[derive(Args, Debug)]
pub struct SensitivityArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Distilled data (.npy from `zeroq distill`); one batch is distilled on the fly when absent.
    #[arg(long)]
    pub distilled: Option<PathBuf>,
    /// Candidate weight bit-widths (2-8).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    pub bits: Vec<u32>,
    /// Weight range of the quantized layer (use the one you will quantize with).
    #[arg(long, value_enum, default_value = "minmax")]
    pub weight_range: WeightRangeArg,
    /// Output table (JSON), the input of `zeroq pareto` and `zeroq quantize --sensitivity`.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also draw the sensitivity chart (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Seed for on-the-fly distillation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Measure each layer with every other layer's weights at N bits instead of FP32 (interaction-aware
    /// Ω around an operating point, e.g. 4 for an MP4 budget).
    #[arg(long, value_name = "N")]
    pub context_bits: Option<u32>,
    /// Measure each quantized layer with its bias corrected for the mean shift its rounding causes on
    /// these images (what reconstruction's bias correction removes), so Ω scores what is left.
    #[arg(long)]
    pub bias_corrected: bool,
    /// The preprocessing (for distilling on the fly: the images' valid box and prior).
    #[command(flatten)]
    pub pre: PreprocessArgs,
    /// Rerun the whole network for every measurement instead of continuing from the FP32 activations
    /// before each layer (same numbers, slower; for benchmarking).
    #[arg(long)]
    pub no_prefix_reuse: bool,
}

pub fn run(a: SensitivityArgs, out: &Output) -> anyhow::Result<()> {
    if let Some(b) = a.bits.iter().find(|b| !(2..=8).contains(*b)) {
        anyhow::bail!("--bits: bit-widths must be in 2..=8, got {b}");
    }
    let g = a.model.load()?;
    let d = load_or_distill(&g, &a.model.display(), a.distilled.as_deref(), &a.pre, a.seed, "sensitivity on distilled data (pass --distilled FILE)", out)?;
    if let Some(b) = a.context_bits.filter(|b| !(2..=8).contains(b)) {
        anyhow::bail!("--context-bits: expected 2..=8, got {b}");
    }
    let cfg = SensitivityConfig {
        bits: a.bits.clone(),
        weight_range: a.weight_range.into(),
        reuse_prefix: !a.no_prefix_reuse,
        context_bits: a.context_bits.map(|b| vec![b]),
        bias_corrected: a.bias_corrected,
        ..SensitivityConfig::default()
    };
    let start = std::time::Instant::now();
    let sens = measure(&g, &a.model.label(), &d, &cfg, out)?;
    let seconds = start.elapsed().as_secs_f64();
    write_atomic(&a.output, serde_json::to_string_pretty(&sens)?.as_bytes())?;
    if let Some(p) = &a.plot {
        write_atomic(p, charts::sensitivity_svg(&sens)?.as_bytes())?;
    }
    let j = serde_json::json!({ "output": a.output, "plot": a.plot, "seconds": seconds, "sensitivity": sens });
    out.result(&j, || {
        let mut t = format!("{:>3}  {:<44} {:>9}", "#", "layer", "params");
        for b in &sens.bits {
            t += &format!(" {:>11}", format!("Ω({b}-bit)"));
        }
        t += "\n";
        for (i, l) in sens.layers.iter().enumerate() {
            t += &format!("{i:>3}  {:<44} {:>9}", l.name, l.params);
            for o in &l.omega {
                t += &format!(" {o:>11.3e}");
            }
            t += "\n";
        }
        t + &format!("measured on {} images in {seconds:.1} s; wrote {}\n", sens.images, a.output.display())
    })
}

/// Runs [`sensitivity::measure`] with a progress bar.
pub fn measure(g: &zeroq::ir::Graph, model: &str, d: &super::distilled::Distilled, cfg: &SensitivityConfig, out: &Output) -> anyhow::Result<Sensitivity> {
    let pb = out.progress(g.weight_layers().len() as u64, "sensitivity");
    let sens = sensitivity::measure(g, model, &d.data, d.shape, cfg, &mut |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    Ok(sens)
}

/// Arguments of `zeroq pareto`.
#[derive(Args, Debug)]
pub struct ParetoArgs {
    /// Sensitivity table from `zeroq sensitivity`.
    pub sensitivity: PathBuf,
    /// Mark the best configuration within this weight-size budget: 120KB, 0.12MB, 250KiB or 4.0bits
    /// (average bits per weight).
    #[arg(long)]
    pub size_budget: Option<String>,
    /// Shorthand for --size-budget Nbits (the size of uniform N-bit weights; MP4 = 4).
    #[arg(long, conflicts_with = "size_budget")]
    pub mp: Option<f64>,
    /// Write the frontier, the uniform points and the chosen configuration (JSON).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Draw the frontier (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Reads and checks a sensitivity table.
pub fn read_table(p: &Path) -> anyhow::Result<Sensitivity> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let sens: Sensitivity = serde_json::from_str(&text).with_context(|| format!("{}: not a sensitivity table from `zeroq sensitivity`", p.display()))?;
    sens.validate(&p.display().to_string())?;
    Ok(sens)
}

pub fn run_pareto(a: ParetoArgs, out: &Output) -> anyhow::Result<()> {
    let budget = budget_from(a.mp, a.size_budget.as_deref())?;
    let sens = read_table(&a.sensitivity)?;
    let front = Frontier::new(&sens)?;
    let chosen = budget.map(|b| front.best_within(b.to_bits(sens.total_params()))).transpose()?;
    let summary = Summary::new(&sens, &front, chosen.as_ref(), 400);
    if let Some(p) = &a.output {
        write_atomic(p, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    if let Some(p) = &a.plot {
        write_atomic(p, charts::pareto_svg(&summary)?.as_bytes())?;
    }
    out.result(&summary, || {
        let mut t = format!("{}: {} layers, {} weights; exact frontier of {} points\n", summary.model, sens.layers.len(), summary.params, summary.frontier_points);
        for u in &summary.uniform {
            t += &format!("uniform {:.0}-bit   {:>12}  ΣΩ {:.4e}\n", u.avg_bits, fmt_bytes(u.size_bytes), u.omega);
        }
        if let Some(c) = &summary.chosen {
            t += &format!("chosen ({:.2} bits/weight) {:>12}  ΣΩ {:.4e}\n", c.avg_bits, fmt_bytes(c.size_bytes), c.omega);
            t += &format!("bits per layer: {}\n", c.layers.iter().map(|(_, b)| b.to_string()).collect::<Vec<_>>().join(" "));
        }
        t
    })
}
