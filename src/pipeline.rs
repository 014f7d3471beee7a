//! The whole job in one call (`zeroq run`): distil → sensitivity → Pareto → calibrate + quantize →
//! reconstruct → export → agreement on held-out distilled data → (evaluate) → report, writing every artefact into
//! one folder.
//!
//! Each file is written atomically, so an interrupted run leaves only complete files; `report.json`
//! is written last, so its presence means the run finished. Every stage is timed and its peak
//! resident memory recorded (Linux), because users deciding whether to trust a tool on their model
//! want to know what it cost as much as what it did.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::{write_atomic, Dataset, Preprocess};
use crate::distill::{self, DistillConfig};
use crate::engine::Plan;
use crate::error::{Error, Result};
use crate::eval::{self, Agreement};
use crate::ir::Graph;
use crate::pareto::{self, Budget, Frontier};
use crate::quant::{self, QuantConfig};
use crate::reconstruct::{self, ReconstructConfig, ReconstructReport};
use crate::report::{charts, html};
use crate::sensitivity::{self, SensitivityConfig};

/// How the weight bit-widths are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightBits {
    /// Every layer at the same width.
    Uniform(u32),
    /// One width per layer, the least sensitive configuration within the budget.
    Mixed(Budget),
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Distillation of the calibration batch (the held-out batch uses the same recipe with the next seed).
    /// Without an input domain, the one of `preprocess` is used.
    pub distill: DistillConfig,
    /// Sensitivity measurement (candidate bit-widths, weight range).
    pub sensitivity: SensitivityConfig,
    /// Weight bit-widths.
    pub wbits: WeightBits,
    /// Activation bits, ranges and placement (`wbits` is filled in from [`RunConfig::wbits`]).
    pub quant: QuantConfig,
    /// Reconstruction after calibration, on the calibration batch (`None`: weights rounded to nearest).
    pub reconstruct: Option<ReconstructConfig>,
    /// Blur σ (pixels) of the low-pass copy of each calibration image that the activation ranges and
    /// reconstruction also see ([`distill::lowpass`]); `None`: the distilled images alone.
    pub lowpass: Option<f32>,
    /// Preprocessing the model expects: the distillation box and prior, the image preview.
    pub preprocess: Preprocess,
}

/// A labelled set to evaluate on, with the images to use.
pub struct EvalSet<'a> {
    /// The data.
    pub data: &'a dyn Dataset,
    /// Indices into it.
    pub idx: Vec<usize>,
}

/// Time and memory of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageRecord {
    /// Stage name.
    pub name: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Peak resident memory of the process during the stage, in bytes (Linux only).
    pub peak_rss_bytes: Option<u64>,
}

/// Receives progress: stage changes and steps within a stage.
pub trait Progress {
    /// Stage `index` of `count` starts; `steps` is its length when it has countable steps.
    fn stage(&mut self, name: &str, index: usize, count: usize, steps: Option<u64>);
    /// `done` steps of the current stage are finished.
    fn step(&mut self, done: u64);
    /// The current stage finished.
    fn finished(&mut self, record: &StageRecord);
}

/// A [`Progress`] that ignores everything.
pub struct Silent;

impl Progress for Silent {
    fn stage(&mut self, _: &str, _: usize, _: usize, _: Option<u64>) {}
    fn step(&mut self, _: u64) {}
    fn finished(&mut self, _: &StageRecord) {}
}

/// Runs and records stages.
pub struct Timeline<'p> {
    progress: &'p mut dyn Progress,
    count: usize,
    /// What ran so far.
    pub stages: Vec<StageRecord>,
}

impl<'p> Timeline<'p> {
    /// A timeline of `count` stages reporting to `progress`.
    pub fn new(progress: &'p mut dyn Progress, count: usize) -> Self {
        Self { progress, count, stages: Vec::new() }
    }

    /// Runs `f` as the next stage; `f` gets a step callback.
    pub fn stage<T>(&mut self, name: &str, steps: Option<u64>, f: impl FnOnce(&mut dyn FnMut(u64)) -> Result<T>) -> Result<T> {
        self.progress.stage(name, self.stages.len() + 1, self.count.max(self.stages.len() + 1), steps);
        reset_peak_rss();
        let start = Instant::now();
        let progress = &mut *self.progress;
        let out = f(&mut |done| progress.step(done))?;
        let record = StageRecord { name: name.to_string(), seconds: start.elapsed().as_secs_f64(), peak_rss_bytes: peak_rss() };
        self.progress.finished(&record);
        self.stages.push(record);
        Ok(out)
    }
}

/// Linux: clear the process's peak-RSS mark (`/proc/self/clear_refs`, value 5), so the next reading is
/// the peak of the coming stage alone. Elsewhere, or when not permitted, readings are whole-process.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Linux: the peak resident set size (`VmHWM`) in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The bits chosen per layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerBits {
    /// Layer (node) name.
    pub name: String,
    /// Number of weights.
    pub params: usize,
    /// Weight bits.
    pub bits: u32,
}

/// Accuracy on a labelled set.
#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    /// The set (`kind:path`).
    pub dataset: String,
    /// Images evaluated.
    pub images: usize,
    /// FP32 top-1 (%).
    pub fp32_top1: f64,
    /// Quantized top-1 (%), measured on the exported ONNX file read back.
    pub quantized_top1: f64,
    /// FP32 top-5 (%).
    pub fp32_top5: f64,
    /// Quantized top-5 (%).
    pub quantized_top5: f64,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// zeroq version.
    pub zeroq_version: String,
    /// The model (path or name).
    pub model: String,
    /// The configuration, e.g. `MP4/8` or `W8A8`.
    pub config: String,
    /// Model summary (interface, operators, weight layers).
    pub summary: crate::model::Summary,
    /// Distillation: images, loss and statistics match.
    pub distillation: DistillationReport,
    /// Candidate weight bit-widths of the sensitivity measurement.
    pub candidate_bits: Vec<u32>,
    /// Weight-size budget in bytes, for mixed precision.
    pub budget_bytes: Option<f64>,
    /// Activation bits (`None`: FP32 activations).
    pub abits: Option<u32>,
    /// Bits per weight layer.
    pub layers: Vec<LayerBits>,
    /// Σ Ω of the chosen configuration.
    pub total_sensitivity: f64,
    /// FP32 weight bytes.
    pub fp32_size_bytes: f64,
    /// Quantized weight bytes at the chosen bit-widths.
    pub quantized_size_bytes: f64,
    /// What reconstruction did, block by block, when it ran.
    pub reconstruction: Option<ReconstructReport>,
    /// Size of the exported ONNX file (sub-8-bit weights are stored in int8 there).
    pub onnx_file_bytes: u64,
    /// Agreement of the quantized model with FP32 on the held-out distilled batch (no labels needed),
    /// its pixels clipped to the valid input range of the preprocessing.
    pub holdout_agreement: Agreement,
    /// Accuracy, when a labelled set was given.
    pub accuracy: Option<Accuracy>,
    /// Time and peak memory per stage.
    pub stages: Vec<StageRecord>,
    /// Sum of the stage times.
    pub total_seconds: f64,
    /// Files written into the output folder.
    pub files: Vec<String>,
}

/// Distillation summary in the report.
#[derive(Clone, Debug, Serialize)]
pub struct DistillationReport {
    /// Calibration images (the first rows of `distilled.npy`).
    pub calibration_images: usize,
    /// Held-out images (the last rows of `distilled.npy`), used only for the agreement check.
    pub holdout_images: usize,
    /// Iterations run per batch (at most the cap; fewer when the BN match stopped improving).
    pub iterations: Vec<usize>,
    /// Loss at the first and last iteration, per batch.
    pub loss: Vec<(f32, f32)>,
    /// Share of BN channels whose calibration-batch mean and std are within 10% of σ.
    pub channels_within_10pct: f32,
    /// Blur σ (pixels) of the low-pass copies that calibration and reconstruction also saw, one per
    /// calibration image; absent when none were made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowpass_sigma: Option<f32>,
}

/// File names inside the output folder.
pub mod files {
    /// Distilled images, calibration batch then held-out batch (float32 NCHW).
    pub const DISTILLED: &str = "distilled.npy";
    /// Preview of the calibration batch.
    pub const DISTILLED_PNG: &str = "distilled.png";
    /// Sensitivity table.
    pub const SENSITIVITY: &str = "sensitivity.json";
    /// Sensitivity chart.
    pub const SENSITIVITY_SVG: &str = "sensitivity.svg";
    /// Pareto frontier and choice.
    pub const PARETO: &str = "pareto.json";
    /// Pareto chart.
    pub const PARETO_SVG: &str = "pareto.svg";
    /// Bits per layer chart.
    pub const BITS_SVG: &str = "bits.svg";
    /// The quantized model (ONNX QDQ).
    pub const MODEL: &str = "quantized.onnx";
    /// Machine-readable report.
    pub const REPORT_JSON: &str = "report.json";
    /// Human report, self-contained.
    pub const REPORT_HTML: &str = "report.html";
    /// Everything, in the order written.
    pub const ALL: [&str; 10] = [DISTILLED, DISTILLED_PNG, SENSITIVITY, SENSITIVITY_SVG, PARETO, PARETO_SVG, BITS_SVG, MODEL, REPORT_HTML, REPORT_JSON];
}

/// Number of stages [`run`] reports, for a progress display.
pub fn stage_count(with_eval: bool, with_reconstruct: bool) -> usize {
    7 + usize::from(with_eval) + usize::from(with_reconstruct)
}

/// Runs the pipeline on `graph` and writes everything into `out_dir` (which must exist).
/// `model` labels the model in reports. Stages already on `timeline` (e.g. loading) are kept.
pub fn run(graph: &Graph, model: &str, cfg: &RunConfig, out_dir: &Path, eval_set: Option<EvalSet<'_>>, timeline: &mut Timeline<'_>) -> Result<RunReport> {
    let path = |f: &str| -> PathBuf { out_dir.join(f) };
    crate::model::require_batch_norm(graph, "zeroq run (ZeroQ distils data from BatchNorm statistics)")?;
    let summary = crate::model::summarize(graph);
    let mut qcfg = cfg.quant.clone();
    qcfg.wbits = vec![8];
    qcfg.validate()?;

    // 1. Distil: the calibration batch and a held-out batch (the next seed).
    let [c, _, _] = distill::input_chw(graph)?;
    let domain = cfg.distill.domain.clone().or_else(|| Some(distill::InputDomain::from_preprocess(&cfg.preprocess, c)));
    let dcfg = DistillConfig { batches: 2, domain, ..cfg.distill.clone() };
    let iters = dcfg.iters;
    let d = timeline.stage("distill", Some((iters * 2) as u64), |step| {
        let d = distill::distill(graph, &dcfg, &mut |b, it, _, _| step((b * iters + it + 1) as u64))?;
        crate::data::npy::write_f32(&path(files::DISTILLED), &d.data, &d.shape)?;
        Ok(d)
    })?;
    let half = d.shape[0] / 2;
    let per: usize = d.shape[1..].iter().product();
    let calib_shape = [half, d.shape[1], d.shape[2], d.shape[3]];
    let (calib, holdout) = d.data.split_at(half * per);
    let png = crate::report::image_grid_png(calib, calib_shape, &cfg.preprocess, 2)?;
    write_atomic(&path(files::DISTILLED_PNG), &png)?;
    let within = distill::channels_within_10pct(&distill::match_statistics(graph, calib, calib_shape)?);

    // 2. Sensitivity of every layer at every candidate width, on the calibration batch.
    let layer_count = graph.weight_layers().len() as u64;
    let (sens, sensitivity_svg) = timeline.stage("sensitivity", Some(layer_count), |step| {
        let s = sensitivity::measure(graph, model, calib, calib_shape, &cfg.sensitivity, &mut |done, _| step(done as u64))?;
        let svg = charts::sensitivity_svg(&s)?;
        write_atomic(&path(files::SENSITIVITY), &json(&s)?)?;
        write_atomic(&path(files::SENSITIVITY_SVG), svg.as_bytes())?;
        Ok((s, svg))
    })?;

    // 3. Pareto frontier and the chosen configuration.
    let params = sens.total_params();
    let (choice, budget_bytes, pareto_svg, bits_svg) = timeline.stage("pareto", None, |_| {
        let front = Frontier::new(&sens)?;
        let (choice, budget) = match cfg.wbits {
            WeightBits::Mixed(b) => (front.best_within(b.to_bits(params))?, Some(b.to_bits(params) as f64 / 8.0)),
            WeightBits::Uniform(w) => {
                let mut bits = vec![w; sens.layers.len()];
                if let Some(e) = cfg.quant.edge_wbits {
                    for i in crate::quant::edge_layers(graph, &graph.weight_layers()) {
                        bits[i] = bits[i].max(e);
                    }
                }
                let u = pareto::assignment(&sens, &bits).ok_or_else(|| Error::Invalid(format!("{:?}-bit weights are not all among the sensitivity bit-widths {:?}; add them", bits.iter().collect::<std::collections::BTreeSet<_>>(), sens.bits)))?;
                (u, None)
            }
        };
        let summary = pareto::Summary::new(&sens, &front, Some(&choice), 400);
        write_atomic(&path(files::PARETO), &json(&summary)?)?;
        let (pareto_svg, bits_svg) = (charts::pareto_svg(&summary)?, charts::bits_svg(model, &choice.bits)?);
        write_atomic(&path(files::PARETO_SVG), pareto_svg.as_bytes())?;
        write_atomic(&path(files::BITS_SVG), bits_svg.as_bytes())?;
        Ok((choice, budget, pareto_svg, bits_svg))
    })?;

    // 4. Calibrate activation ranges and quantize (on the batch and its low-pass copies, if asked).
    qcfg.wbits = choice.bits.clone();
    let with_copies;
    let (calib, calib_shape) = match cfg.lowpass {
        Some(sigma) => {
            let domain = dcfg.domain.clone().unwrap_or_else(|| distill::InputDomain::standard(c));
            let (data, shape) = distill::lowpass::with_lowpass_copies(calib, calib_shape, sigma, &domain);
            with_copies = data;
            (with_copies.as_slice(), shape)
        }
        None => (calib, calib_shape),
    };
    let mut q = timeline.stage("quantize", None, |_| quant::quantize(graph, calib, calib_shape, &qcfg))?;

    // 5. Reconstruct: learn the rounding (and low-bit activation steps) against FP32 on the same batch.
    let reconstruction = match &cfg.reconstruct {
        Some(rc) => Some(timeline.stage("reconstruct", Some(reconstruct::steps(&q, rc)), |step| reconstruct::reconstruct(graph, &mut q, calib, calib_shape, rc, step))?),
        None => None,
    };

    // 6. Export ONNX QDQ.
    let onnx_file_bytes = timeline.stage("export", None, |_| {
        let m = crate::export::qdq::to_qdq(&q)?;
        crate::export::write_onnx(&path(files::MODEL), &m)?;
        Ok(std::fs::metadata(path(files::MODEL)).map(|m| m.len()).unwrap_or(0))
    })?;

    // 7. Agreement with FP32 on the held-out distilled batch, through the exported file.
    let exported = crate::onnx::load_onnx(path(files::MODEL))?;
    let holdout_agreement = timeline.stage("agreement", None, |_| {
        // Distilled pixels stray outside what any real image can be (e.g. [−6.2, 4.7] where CIFAR-10
        // inputs span [−2.1, 2.6]); the quantized model's input quantizer rightly clips there. Compare
        // both models on the held-out images brought into the valid input range, so the check measures
        // quantization, not that clipping.
        let holdout: Vec<f32> = match qcfg.input_range {
            Some((lo, hi)) => holdout.iter().map(|v| v.clamp(lo, hi)).collect(),
            None => holdout.to_vec(),
        };
        let fp = quant::predict(&Plan::for_eval(graph.clone())?, &holdout, calib_shape, 32)?;
        let qp = quant::predict(&Plan::for_eval(exported.clone())?, &holdout, calib_shape, 32)?;
        let classes = fp.len() / half.max(1);
        Ok(eval::agreement(&fp, &qp, classes))
    })?;

    // 8. Accuracy on labelled data, when given: FP32 and the exported model, like `zeroq eval` would.
    let accuracy = match eval_set {
        Some(set) => Some(timeline.stage("evaluate", Some(2 * set.idx.len() as u64), |step| {
            let n = set.idx.len() as u64;
            let fp_plan = Plan::for_eval(graph.clone())?;
            let batch = eval::auto_batch(&fp_plan, set.data, &set.idx)?;
            let fp = eval::evaluate(&fp_plan, set.data, &set.idx, batch, false, &mut |done, _| step(done as u64))?;
            let qq = eval::evaluate(&Plan::for_eval(exported.clone())?, set.data, &set.idx, batch, false, &mut |done, _| step(n + done as u64))?;
            Ok(Accuracy { dataset: set.data.describe(), images: fp.n, fp32_top1: fp.top1, quantized_top1: qq.top1, fp32_top5: fp.top5, quantized_top5: qq.top5 })
        })?),
        None => None,
    };

    // 9. Reports: HTML first, JSON last (its presence marks a finished run).
    let abits = qcfg.abits;
    let config = match cfg.wbits {
        WeightBits::Mixed(_) => format!("MP{:.2}/{}", choice.size_bits as f64 / params.max(1) as f64, abits.map_or("32".into(), |a| a.to_string())),
        WeightBits::Uniform(w) => format!("W{w}A{}{}", abits.map_or("32".into(), |a| a.to_string()), crate::quant::edge_label(w, qcfg.edge_wbits)),
    };
    let mut report = RunReport {
        zeroq_version: env!("CARGO_PKG_VERSION").to_string(),
        model: model.to_string(),
        config,
        summary,
        distillation: DistillationReport {
            calibration_images: half,
            holdout_images: d.shape[0] - half,
            lowpass_sigma: cfg.lowpass,
            iterations: d.iterations(),
            loss: d.loss_curves.iter().map(|c| (c.first().copied().unwrap_or(f32::NAN), c.last().copied().unwrap_or(f32::NAN))).collect(),
            channels_within_10pct: within,
        },
        candidate_bits: sens.bits.clone(),
        budget_bytes,
        abits,
        layers: sens.layers.iter().zip(&choice.bits).map(|(l, &bits)| LayerBits { name: l.name.clone(), params: l.params, bits }).collect(),
        total_sensitivity: choice.omega,
        fp32_size_bytes: params as f64 * 4.0,
        quantized_size_bytes: q.weight_size_bytes(),
        reconstruction,
        onnx_file_bytes,
        holdout_agreement,
        accuracy,
        stages: Vec::new(),
        total_seconds: 0.0,
        files: files::ALL.iter().map(|s| s.to_string()).collect(),
    };
    // The HTML lists the stages before its own; report.json has them all.
    report.stages = timeline.stages.clone();
    report.total_seconds = report.stages.iter().map(|s| s.seconds).sum();
    timeline.stage("report", None, |_| {
        let charts = html::Charts { sensitivity: sensitivity_svg, pareto: pareto_svg, bits: bits_svg, distilled_png: png };
        write_atomic(&path(files::REPORT_HTML), html::render(&report, &charts).as_bytes())
    })?;
    report.stages = timeline.stages.clone();
    report.total_seconds = report.stages.iter().map(|s| s.seconds).sum();
    write_atomic(&path(files::REPORT_JSON), &json(&report)?)?;
    Ok(report)
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Invalid(format!("serialising JSON: {e}")))
}
