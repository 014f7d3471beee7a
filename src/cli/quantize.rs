//! `zeroq quantize`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use serde::Serialize;
use zeroq::data;
use zeroq::distill::{self, init::{initial_batch, Init}};
use zeroq::pareto::{Budget, Frontier};
use zeroq::sensitivity::SensitivityConfig;
use zeroq::engine::Plan;
use zeroq::quant::{self, WeightRange};

use super::distilled::{load_or_distill, Distilled};
use super::quant_args::{check_budget, MixedArgs, QuantArgs, ReconstructArgs};
use super::sensitivity::{measure, read_table};
use super::model_arg::ModelArgs;
use super::Output;

/// Arguments of `zeroq quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output ONNX (QDQ).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weight bits (2-8), the same for every layer.
    #[arg(long, default_value_t = 8)]
    pub wbits: u32,
    #[command(flatten)]
    pub mixed: MixedArgs,
    /// Sensitivity table from `zeroq sensitivity` for mixed precision; measured on the calibration data
    /// when absent.
    #[arg(long)]
    pub sensitivity: Option<PathBuf>,
    /// Distilled data (.npy from `zeroq distill`); distilled on the fly when absent.
    #[arg(long)]
    pub distilled: Option<PathBuf>,
    /// Calibration source: distilled (default), gaussian, cifar10:PATH or folder:DIR (real images, for ablations).
    #[arg(long, default_value = "distilled")]
    pub calib: String,
    /// Images for gaussian/real calibration.
    #[arg(long, default_value_t = 32)]
    pub calib_images: usize,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub recon: ReconstructArgs,
    /// Seed for on-the-fly distillation and Gaussian calibration.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    /// The uniform weight bits, or the largest per-layer bit-width with mixed precision.
    wbits: u32,
    /// Weight bits of the edge layers when `--edge-wbits` raised them.
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_wbits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mixed_precision: Option<MixedPrecision>,
    abits: Option<u32>,
    placement: String,
    weight_range: String,
    act_range: String,
    calibration: String,
    calibration_images: usize,
    fp32_size_bytes: f64,
    quantized_size_bytes: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconstruction: Option<zeroq::reconstruct::ReconstructReport>,
    weights: Vec<quant::WeightQuant>,
    activations: Vec<quant::ActQuant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fp32_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantized_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_images: Option<usize>,
}

#[derive(Serialize)]
struct MixedPrecision {
    candidates: Vec<u32>,
    budget_bytes: f64,
    size_bytes: f64,
    avg_bits: f64,
    total_sensitivity: f64,
    sensitivity_source: String,
    /// (layer, bits) in network order.
    bits: Vec<(String, u32)>,
}

pub fn run(a: QuantizeArgs, out: &Output) -> anyhow::Result<()> {
    // Validate the request before any long work.
    super::ensure_limit(a.limit)?;
    let mut cfg = a.quant.config(vec![a.wbits])?;
    let abits = cfg.abits;
    let budget = a.mixed.budget()?;
    a.quant.check_edge_wbits(budget.is_some())?;
    a.recon.validate()?;
    let low_request = budget.is_some() || a.wbits < 8 || cfg.abits.is_some_and(|b| b < 8);
    a.quant.default_weight_range(&mut cfg, a.recon.method(low_request).is_some());
    let mut g = a.model.load()?;
    zeroq::quant::require_weight_layers(&g)?;
    let preprocess = a.quant.preprocess(&mut g, &a.model.display(), &mut cfg)?;
    if let Some(b) = budget {
        check_budget(&g, b, &a.mixed.mp_bits)?;
    }
    let [c, h, w] = distill::input_chw(&g)?;
    let (calib, calib_shape, source) = match a.calib.as_str() {
        "distilled" => {
            let d = load_or_distill(&g, &a.model.display(), a.distilled.as_deref(), &a.quant.pre, a.seed, "distillation (pass --calib gaussian or real images to skip it)", out)?;
            (d.data, d.shape, d.source)
        }
        "gaussian" => {
            let n = a.calib_images.max(1);
            (initial_batch(n * c * h * w, Init::Gaussian, a.seed), [n, c, h, w], "gaussian".to_string())
        }
        spec => {
            let ds = data::open_dataset(spec, preprocess.clone())?;
            let idx = data::strided_subset(ds.len(), Some(a.calib_images.max(1)));
            let (d, s) = data::load_batch(ds.as_ref(), &idx)?;
            if s[1..] != [c, h, w] {
                bail!("calibration images have shape {:?}, the model needs [N, {c}, {h}, {w}]", &s[1..]);
            }
            (d, s, ds.describe())
        }
    };
    let mixed_precision = match budget {
        Some(b) => {
            let d = Distilled { data: calib.clone(), shape: calib_shape, source: source.clone() };
            let mp = choose_bits(&g, &a, b, &d, cfg.weight_range, a.recon.method(low_request).is_some(), out)?;
            cfg.wbits = mp.bits.iter().map(|(_, b)| *b).collect();
            Some(mp)
        }
        None => None,
    };
    let low = cfg.wbits.iter().any(|&b| b < 8) || cfg.abits.is_some_and(|b| b < 8);
    // Distilled images (not real or Gaussian ones) get a low-pass copy each when reconstruction follows.
    let (calib, calib_shape, source) = match (a.calib.as_str(), a.recon.lowpass_sigma(a.recon.method(low).is_some(), h.min(w))) {
        ("distilled", Some(sigma)) => {
            let domain = distill::InputDomain::from_preprocess(&preprocess, c);
            let (data, shape) = distill::lowpass::with_lowpass_copies(&calib, calib_shape, sigma, &domain);
            (data, shape, format!("{source} + {} low-pass copies (σ {sigma:.2} px)", calib_shape[0]))
        }
        _ => (calib, calib_shape, source),
    };
    let mut q = quant::quantize(&g, &calib, calib_shape, &cfg)?;
    let reconstruction = match a.recon.config(low, a.seed, &g, calib_shape[0])? {
        Some(rc) => {
            out.say(format!("reconstructing ({}, {} iterations per block, batch {})…", rc.method.name(), rc.iters, rc.batch.min(calib_shape[0])));
            let pb = out.progress(zeroq::reconstruct::steps(&q, &rc), "reconstruct");
            let r = zeroq::reconstruct::reconstruct(&g, &mut q, &calib, calib_shape, &rc, &mut |d| pb.set_position(d))?;
            pb.finish_and_clear();
            Some(r)
        }
        None => None,
    };
    let model = zeroq::export::qdq::to_qdq(&q)?;
    zeroq::export::write_onnx(&a.output, &model)?;
    let fp32_bytes: f64 = g.weight_layers().iter().map(|l| l.size_bytes(32)).sum();
    let mut report = Report {
        model: a.model.display().to_string(),
        output: a.output.display().to_string(),
        wbits: cfg.wbits.iter().copied().max().unwrap_or(a.wbits),
        edge_wbits: cfg.edge_wbits.filter(|&e| e > a.wbits),
        mixed_precision,
        abits,
        placement: format!("{:?}", cfg.placement),
        weight_range: format!("{:?}", cfg.weight_range),
        act_range: a.quant.act_range.clone(),
        calibration: source,
        calibration_images: calib_shape[0],
        fp32_size_bytes: fp32_bytes,
        quantized_size_bytes: q.weight_size_bytes(),
        reconstruction,
        weights: q.weights.clone(),
        activations: q.activations.clone(),
        fp32_top1: None,
        quantized_top1: None,
        eval_images: None,
    };
    if let Some(spec) = &a.eval {
        let ds = data::open_dataset(spec, preprocess.clone())?;
        let idx = data::strided_subset(ds.len(), a.limit);
        let fp_plan = Plan::for_eval(g)?;
        let batch = zeroq::eval::auto_batch(&fp_plan, ds.as_ref(), &idx)?;
        let fp = zeroq::eval::evaluate(&fp_plan, ds.as_ref(), &idx, batch, false, &mut |_, _| {})?;
        let qq = zeroq::eval::evaluate(&Plan::for_eval(q.graph.clone())?, ds.as_ref(), &idx, batch, false, &mut |_, _| {})?;
        report.fp32_top1 = Some(fp.top1);
        report.quantized_top1 = Some(qq.top1);
        report.eval_images = Some(fp.n);
    }
    if let Some(p) = &a.report {
        data::write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    out.result(&report, || {
        let w = match &report.mixed_precision {
            Some(mp) => format!("MP{:.2}", mp.avg_bits),
            None => report.wbits.to_string(),
        };
        let edges = zeroq::quant::edge_label(report.wbits, report.edge_wbits);
        let mut t = format!(
            "wrote {} (W{}A{}{edges}, {:?} placement): weights {:.1} KiB (FP32 {:.1} KiB), {} quantized activations\n",
            report.output,
            w,
            abits.map_or("32".to_string(), |b| b.to_string()),
            cfg.placement,
            report.quantized_size_bytes / 1024.0,
            report.fp32_size_bytes / 1024.0,
            report.activations.len()
        );
        if let Some(r) = &report.reconstruction {
            t += &format!(
                "reconstruction ({}, {} blocks, {:.0} s): output error {:.4} -> {:.4} (relative to FP32)\n",
                r.config.method.name(),
                r.units.len(),
                r.seconds,
                r.output_error.0,
                r.output_error.1
            );
        }
        if let Some(mp) = &report.mixed_precision {
            t += &format!("bits per layer: {}\n", mp.bits.iter().map(|(_, b)| b.to_string()).collect::<Vec<_>>().join(" "));
        }
        if let (Some(f), Some(qa), Some(n)) = (report.fp32_top1, report.quantized_top1, report.eval_images) {
            t += &format!("top-1 on {n} images: FP32 {f:.2}%  quantized {qa:.2}%  ({:+.2})\n", qa - f);
        }
        t
    })
}


/// Sensitivity (read or measured) → exact Pareto choice within `budget`. When reconstruction follows
/// (`reconstructed`), each layer is measured with its bias corrected, as reconstruction will leave it.
fn choose_bits(g: &zeroq::ir::Graph, a: &QuantizeArgs, budget: Budget, d: &Distilled, weight_range: WeightRange, reconstructed: bool, out: &Output) -> anyhow::Result<MixedPrecision> {
    let (sens, sensitivity_source) = match &a.sensitivity {
        Some(p) => {
            let sens = read_table(p)?;
            let layers = g.weight_layers();
            let same = sens.layers.len() == layers.len() && sens.layers.iter().zip(&layers).all(|(s, l)| s.name == l.name && s.params == l.params);
            if !same {
                bail!("{}: the table's layers do not match {} (measured on another model?); run `zeroq sensitivity` on this model", p.display(), a.model.display());
            }
            (sens, p.display().to_string())
        }
        None => {
            out.say("measuring per-layer sensitivity…");
            let cfg = SensitivityConfig { bits: a.mixed.mp_bits.clone(), weight_range, bias_corrected: reconstructed, ..SensitivityConfig::default() };
            let how = if reconstructed { ", each layer bias-corrected" } else { "" };
            (measure(g, &a.model.label(), d, &cfg, out)?, format!("measured on {}{how}", d.source))
        }
    };
    let params = sens.total_params();
    let choice = Frontier::new(&sens)?.best_within(budget.to_bits(params))?;
    Ok(MixedPrecision {
        candidates: sens.bits.clone(),
        budget_bytes: budget.to_bits(params) as f64 / 8.0,
        size_bytes: choice.size_bytes(),
        avg_bits: choice.size_bits as f64 / params.max(1) as f64,
        total_sensitivity: choice.omega,
        sensitivity_source,
        bits: sens.layers.iter().zip(&choice.bits).map(|(l, &b)| (l.name.clone(), b)).collect(),
    })
}
