//! `zeroq quantize`.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::Serialize;
use zeroq::data::{self, npy, Preprocess};
use zeroq::distill::{self, init::{initial_batch, Init}, DistillConfig};
use zeroq::engine::Plan;
use zeroq::quant::{self, ActRange, Placement, QuantConfig, WeightRange};

use super::model_arg::ModelArgs;
use super::Output;

/// Where activations are quantized.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PlacementArg {
    /// Every activation input of a Conv/Gemm/MatMul (deployable).
    Deployable,
    /// After each ReLU/ReLU6 only (the ZeroQ reference code).
    Zeroq,
}

/// Weight range per output channel.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WeightRangeArg {
    /// Channel min/max, asymmetric (ZeroQ).
    Minmax,
    /// Max |w|, zero point 0 (integer kernels).
    Symmetric,
    /// Asymmetric clip with the least squared error.
    Mse,
}

/// Arguments of `zeroq quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output ONNX (QDQ).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weight bits (2-8).
    #[arg(long, default_value_t = 8)]
    pub wbits: u32,
    /// Activation bits (4-8) or fp32 (weight-only).
    #[arg(long, default_value = "8")]
    pub abits: String,
    /// Distilled data (.npy from `zeroq distill`); distilled on the fly when absent.
    #[arg(long)]
    pub distilled: Option<PathBuf>,
    /// Calibration source: distilled (default), gaussian, cifar10:PATH or folder:DIR (real images, for ablations).
    #[arg(long, default_value = "distilled")]
    pub calib: String,
    /// Images for gaussian/real calibration.
    #[arg(long, default_value_t = 32)]
    pub calib_images: usize,
    /// Activation placement.
    #[arg(long, value_enum, default_value = "deployable")]
    pub placement: PlacementArg,
    /// Weight range.
    #[arg(long, value_enum, default_value = "minmax")]
    pub weight_range: WeightRangeArg,
    /// Activation range: minmax, percentile:P (e.g. percentile:99.99) or mse.
    #[arg(long, default_value = "minmax")]
    pub act_range: String,
    /// Preprocessing preset the model expects (cifar10 or imagenet): gives the exact range of the model
    /// input (pixels 0..255 normalised), used for the input quantizer instead of calibration.
    #[arg(long, default_value = "cifar10")]
    pub preset: String,
    /// Seed for on-the-fly distillation and Gaussian calibration.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Quantize the model input and the classifier input at --abits too (by default they stay at 8 bits
    /// when --abits is lower).
    #[arg(long)]
    pub all_layers_abits: bool,
    /// Write a JSON report (bits, scales, ranges, sizes, accuracy).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also evaluate FP32 and quantized on labelled data (cifar10:PATH or folder:DIR, cifar10 preprocessing).
    #[arg(long)]
    pub eval: Option<String>,
    /// With --eval: evenly strided subset of N images.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    output: String,
    wbits: u32,
    abits: Option<u32>,
    placement: String,
    weight_range: String,
    act_range: String,
    calibration: String,
    calibration_images: usize,
    fp32_size_bytes: f64,
    quantized_size_bytes: f64,
    weights: Vec<quant::WeightQuant>,
    activations: Vec<quant::ActQuant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fp32_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantized_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_images: Option<usize>,
}

fn parse_act_range(s: &str) -> anyhow::Result<ActRange> {
    match s {
        "minmax" => Ok(ActRange::MinMax),
        "mse" => Ok(ActRange::Mse),
        _ => match s.strip_prefix("percentile:").map(str::parse::<f32>) {
            Some(Ok(p)) if p > 50.0 && p <= 100.0 => Ok(ActRange::Percentile(p)),
            _ => bail!("--act-range '{s}': expected minmax, mse or percentile:P with 50 < P <= 100"),
        },
    }
}

pub fn run(a: QuantizeArgs, out: &Output) -> anyhow::Result<()> {
    let abits = match a.abits.as_str() {
        "fp32" | "32" => None,
        s => Some(s.parse::<u32>().map_err(|_| anyhow::anyhow!("--abits '{s}': expected 4-8 or fp32"))?),
    };
    let act_range = parse_act_range(&a.act_range)?;
    let cfg = QuantConfig {
        wbits: vec![a.wbits],
        abits,
        weight_range: match a.weight_range {
            WeightRangeArg::Minmax => WeightRange::MinMax,
            WeightRangeArg::Symmetric => WeightRange::Symmetric,
            WeightRangeArg::Mse => WeightRange::Mse,
        },
        act_range,
        placement: match a.placement {
            PlacementArg::Deployable => Placement::Deployable,
            PlacementArg::Zeroq => Placement::ZeroQ,
        },
        input_range: Some(Preprocess::preset(&a.preset)?.input_range()),
        edge_abits: if a.all_layers_abits { None } else { Some(8) },
    };
    // Validate the request before any long work.
    cfg.validate()?;
    let g = a.model.load()?;
    let [c, h, w] = distill::input_chw(&g)?;
    let (calib, calib_shape, source) = match (a.calib.as_str(), &a.distilled) {
        ("distilled", Some(p)) => {
            let (d, s) = npy::read_f32(p)?;
            if s.len() != 4 || s[1..] != [c, h, w] {
                bail!("{}: distilled data has shape {s:?}, the model needs [N, {c}, {h}, {w}]", p.display());
            }
            (d, [s[0], c, h, w], format!("distilled:{}", p.display()))
        }
        ("distilled", None) => {
            zeroq::model::require_batch_norm(&g, "distillation (pass --calib gaussian or real images to skip it)")?;
            out.say("distilling calibration data (500 iterations, batch 32)…");
            let pb = out.progress(500, "distill");
            let d = distill::distill(&g, &DistillConfig { seed: a.seed, ..DistillConfig::default() }, &mut |_, it, _, _| pb.set_position(it as u64 + 1))?;
            pb.finish_and_clear();
            (d.data, d.shape, "distilled (on the fly)".to_string())
        }
        ("gaussian", _) => {
            let n = a.calib_images.max(1);
            (initial_batch(n * c * h * w, Init::Gaussian, a.seed), [n, c, h, w], "gaussian".to_string())
        }
        (spec, _) => {
            let ds = data::open_dataset(spec, Preprocess::preset(&a.preset)?)?;
            let idx = data::strided_subset(ds.len(), Some(a.calib_images.max(1)));
            let (d, s) = data::load_batch(ds.as_ref(), &idx)?;
            if s[1..] != [c, h, w] {
                bail!("calibration images have shape {:?}, the model needs [N, {c}, {h}, {w}]", &s[1..]);
            }
            (d, s, ds.describe())
        }
    };
    let q = quant::quantize(&g, &calib, calib_shape, &cfg)?;
    let model = zeroq::export::qdq::to_qdq(&q)?;
    zeroq::export::write_onnx(&a.output, &model)?;
    let fp32_bytes: f64 = g.weight_layers().iter().map(|l| l.size_bytes(32)).sum();
    let mut report = Report {
        model: a.model.display().to_string(),
        output: a.output.display().to_string(),
        wbits: a.wbits,
        abits,
        placement: format!("{:?}", cfg.placement),
        weight_range: format!("{:?}", cfg.weight_range),
        act_range: a.act_range.clone(),
        calibration: source,
        calibration_images: calib_shape[0],
        fp32_size_bytes: fp32_bytes,
        quantized_size_bytes: q.weight_size_bytes(),
        weights: q.weights.clone(),
        activations: q.activations.clone(),
        fp32_top1: None,
        quantized_top1: None,
        eval_images: None,
    };
    if let Some(spec) = &a.eval {
        let ds = data::open_dataset(spec, Preprocess::preset(&a.preset)?)?;
        let idx = data::strided_subset(ds.len(), a.limit);
        let fp = zeroq::eval::evaluate(&Plan::for_inference(g)?, ds.as_ref(), &idx, 100, false, &mut |_, _| {})?;
        let qq = zeroq::eval::evaluate(&Plan::for_inference(q.graph.clone())?, ds.as_ref(), &idx, 100, false, &mut |_, _| {})?;
        report.fp32_top1 = Some(fp.top1);
        report.quantized_top1 = Some(qq.top1);
        report.eval_images = Some(fp.n);
    }
    if let Some(p) = &a.report {
        data::write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    out.result(&report, || {
        let mut t = format!(
            "wrote {} (W{}A{}, {:?} placement): weights {:.1} KiB (FP32 {:.1} KiB), {} quantized activations\n",
            report.output,
            report.wbits,
            abits.map_or("32".to_string(), |b| b.to_string()),
            cfg.placement,
            report.quantized_size_bytes / 1024.0,
            report.fp32_size_bytes / 1024.0,
            report.activations.len()
        );
        if let (Some(f), Some(qa), Some(n)) = (report.fp32_top1, report.quantized_top1, report.eval_images) {
            t += &format!("top-1 on {n} images: FP32 {f:.2}%  quantized {qa:.2}%  ({:+.2})\n", qa - f);
        }
        t
    })
}
