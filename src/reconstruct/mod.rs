//! Reconstruction: after calibration, make the quantized network reproduce the FP32 one on the
//! (distilled) calibration data, unit by unit, before export.
//!
//! Rounding each weight to nearest, one layer at a time, is what breaks low-bit models: the errors of a
//! layer's weights add up coherently in its outputs. Learning the rounding against the FP32 output fixes
//! most of it with no real data (Genie, CVPR 2023, does exactly this on BN-distilled data):
//! - [`Method::BiasCorrection`]: shift each channel's bias by the mean output error (seconds);
//! - [`Method::AdaRound`]: learn each layer's rounding against its own FP32 output (Nagel et al. 2020);
//! - [`Method::Brecq`]: learn the rounding of a whole residual block against the block's output, with
//!   LSQ step sizes for the low-bit activations and QDrop (Li et al. 2021, Wei et al. 2022).
//!
//! Units run in network order; each one reads the quantized network's tensors as left by the units
//! already learned, so later units correct what earlier ones could not. The scales and zero points stay
//! on the quantization grid, so export writes the learned integers exactly and ONNX Runtime computes what
//! zeroq simulated.

pub mod blocks;
pub(crate) mod bias;
pub(crate) mod cache;
mod learn;

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::engine::{device, Plan};
use crate::error::{Error, Result};
use crate::ir::{passes, Graph, Op, ValueId};
use crate::quant::QuantizedModel;
use blocks::{Granularity, Unit};
use cache::{relative_error, Batch, Live};

/// Which reconstruction runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// None: round to nearest, as calibrated.
    Off,
    /// Per-channel bias correction, layer by layer.
    BiasCorrection,
    /// Learned rounding per layer.
    AdaRound,
    /// Learned rounding per block, LSQ activation steps, QDrop.
    Brecq,
}

impl Method {
    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Method::Off => "off",
            Method::BiasCorrection => "bias",
            Method::AdaRound => "adaround",
            Method::Brecq => "brecq",
        }
    }
}

/// Settings of [`reconstruct`].
#[derive(Clone, Debug, Serialize)]
pub struct ReconstructConfig {
    /// The method.
    pub method: Method,
    /// Iterations per unit (AdaRound, BRECQ).
    pub iters: usize,
    /// Images per iteration (at most the calibration images).
    pub batch: usize,
    /// Adam learning rate of the rounding variables; `None`: [`default_round_lr`] of `iters`.
    pub round_lr: Option<f32>,
    /// Adam learning rate of the activation step sizes, relative to each step's calibrated size, at the
    /// start of its cosine schedule ([`SCALE_LR`]).
    pub scale_lr: f32,
    /// Weight λ of the rounding regulariser; `None`: [`default_lambda`] of `iters`.
    pub lambda: Option<f32>,
    /// Share of the iterations before the regulariser starts.
    pub warmup: f32,
    /// β of the regulariser, from start to end.
    pub beta: (f32, f32),
    /// Share of the iterations after the warm-up over which β falls from start to end (it then stays at
    /// the end value); `None`: [`default_anneal`] of `iters`.
    pub anneal: Option<f32>,
    /// QDrop: probability that an activation element is quantized during learning (`None`: always).
    pub qdrop: Option<f32>,
    /// Learn the step sizes of activation quantizers below 8 bits (LSQ).
    pub learn_act_scales: bool,
    /// Correct biases layer by layer before learning the rounding.
    pub bias_first: bool,
    /// Learn each unit's rounding with the FP32 network's biases, then correct the biases of its layers,
    /// in order, for the rounding as hardened. The soft weights start at the FP32 weights, so with FP32
    /// biases a unit starts exactly at the FP32 network; with biases already corrected for round to
    /// nearest it starts off by that correction, and the rounding learned from there keeps a mean error
    /// of its own that nothing removes. On EfficientNet-Lite0 W4A8 the first blocks then ended worse than
    /// round to nearest and were reverted (stem group 0.130 against 0.056 relative error), and the network
    /// scored 76.50 top-1 against 78.80 with this. It applies to runs shorter than 500 iterations per
    /// block, where it was shown to help, and to units whose layers all have at least
    /// [`BIAS_AFTER_MIN_BITS`] bits. At 500 iterations on ResNet20 it fitted the calibration images
    /// better (W4A8 output error 0.0037 → 0.0021) but did not score better on the test set (W4A4 80.65
    /// → 80.63, W3A8 81.17 → 81.35, W4A8 over four distillation seeds −0.06 ± 0.29; ResNet56 W4A4 83.02
    /// → 82.56), so long runs keep AdaRound's start and the same bytes as before.
    pub bias_after: bool,
    /// Most weight layers in a plain block.
    pub max_block_layers: usize,
    /// Keep a block's learned rounding only when it lowers the block's output error on the calibration
    /// data (fully quantized); otherwise the block stays as it was.
    pub keep_if_better: bool,
    /// Seed of the minibatch order and the QDrop masks.
    pub seed: u64,
}

impl ReconstructConfig {
    /// The defaults of `method`.
    pub fn new(method: Method) -> Self {
        let brecq = method == Method::Brecq;
        Self {
            method,
            iters: 1000,
            batch: 32,
            round_lr: None,
            scale_lr: SCALE_LR,
            lambda: None,
            warmup: 0.2,
            beta: (20.0, 2.0),
            anneal: None,
            qdrop: brecq.then_some(0.5),
            learn_act_scales: brecq,
            bias_first: matches!(method, Method::AdaRound | Method::Brecq),
            bias_after: matches!(method, Method::AdaRound | Method::Brecq),
            max_block_layers: 4,
            keep_if_better: true,
            seed: 0,
        }
    }

    /// The learning rate of the rounding variables these settings use.
    pub fn round_lr(&self) -> f32 {
        self.round_lr.unwrap_or_else(|| default_round_lr(self.iters))
    }

    /// The regulariser weight these settings use.
    pub fn lambda(&self) -> f32 {
        self.lambda.unwrap_or_else(|| default_lambda(self.iters))
    }

    /// The share of the post-warm-up iterations over which β is annealed.
    pub fn anneal(&self) -> f32 {
        self.anneal.unwrap_or_else(|| default_anneal(self.iters))
    }

    /// Whether [`ReconstructConfig::bias_after`] applies at these settings' iterations (to the units of
    /// at least [`BIAS_AFTER_MIN_BITS`] bits).
    pub fn bias_after_applies(&self) -> bool {
        self.bias_after && short_run(self.iters) > 0.0
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.iters == 0 || self.batch == 0 {
            return Err(Error::Invalid(format!("reconstruction needs at least one iteration and one image per batch (got --recon-iters {} --recon-batch {})", self.iters, self.batch)));
        }
        if let Some(lr) = self.round_lr.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
            return Err(Error::Invalid(format!("the rounding learning rate (--recon-lr) must be a positive number, got {lr}")));
        }
        if let Some(l) = self.lambda.filter(|l| !(*l >= 0.0 && l.is_finite())) {
            return Err(Error::Invalid(format!("the rounding regulariser weight (--recon-lambda) must be a non-negative number, got {l}")));
        }
        if let Some(a) = self.anneal.filter(|a| !(*a > 0.0 && *a <= 1.0)) {
            return Err(Error::Invalid(format!("the share of iterations over which the rounding regulariser is annealed must be in (0, 1], got {a}")));
        }
        if let Some(p) = self.qdrop.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(Error::Invalid(format!("the QDrop probability must be in [0, 1], got {p}")));
        }
        Ok(())
    }
}

/// What happened to one unit.
#[derive(Clone, Debug, Serialize)]
pub struct UnitRecord {
    /// The pass that learned it (bias correction runs before learned rounding with `bias_first`).
    pub method: Method,
    /// Weight layers in it.
    pub layers: Vec<String>,
    /// Their weight bits.
    pub bits: Vec<u32>,
    /// Output error relative to the FP32 output energy, `Σ(ŷ − y)² / Σy²`, before.
    pub error_before: f64,
    /// The same after (the learned error when it was kept, else the error before).
    pub error_after: f64,
    /// The error the learned block had, kept or not.
    pub error_learned: f64,
    /// Whether the learned weights and steps were kept (they are not when they made the block worse).
    pub kept: bool,
    /// Share of its roundings still undecided (`h(V)` within (0.05, 0.95)) when they were hardened:
    /// near 0 when the iterations sufficed; a large share means hardening moved the block away from
    /// what it learned.
    pub undecided: f64,
    /// Seconds spent on it.
    pub seconds: f64,
}

/// What [`reconstruct`] did.
#[derive(Clone, Debug, Serialize)]
pub struct ReconstructReport {
    /// Settings.
    pub config: ReconstructConfig,
    /// Calibration images used.
    pub images: usize,
    /// Per unit with weight layers, in network order.
    pub units: Vec<UnitRecord>,
    /// Relative error of the network output before and after.
    pub output_error: (f64, f64),
    /// Seconds in all.
    pub seconds: f64,
}

/// The default learning rate of the LSQ step sizes, relative to each calibrated step. On a cosine
/// schedule a step can travel at most about `SCALE_LR × iterations / 2` of its size: at 1e-3 that is 7% in
/// EfficientNet-Lite0's 148 iterations, too little to move a 4-bit range fitted to distilled data (W4A4
/// 66.90 top-1, output error on the calibration images 0.243); at 1e-2 it is 74%, and W4A4 reaches 68.80
/// (0.116). On ResNet20 at 500 iterations it makes no difference (W4A4 80.79 → 80.65, W2A4 74.60 →
/// 74.57). BRECQ's and QDrop's 4e-5, absolute, over 20,000 iterations, lets a step travel several times
/// its size.
pub const SCALE_LR: f32 = 1e-2;

/// Fewest weight bits of every layer in a unit for [`ReconstructConfig::bias_after`] to apply to it. At 2
/// bits no rounding reproduces a channel's mean, and the rounding learned without the correction already
/// in the bias spends itself on the mean: at 500 iterations ResNet20 W2A4 fell from 74.57 to 54.31 with
/// it, the late blocks ending 4–8 times further from FP32 (W4A4: 80.65 and 80.63).
pub const BIAS_AFTER_MIN_BITS: u32 = 3;

/// Activation elements (weight-layer outputs, per image, times images per iteration, times iterations)
/// a reconstruction may cost by default. One iteration of every block is about one forward and two
/// backward passes of the whole network on the batch, so the time follows this count, as distillation's
/// does ([`crate::distill::budget`]); a count rather than a timing gives the same model the same
/// defaults, and so the same bytes, on every machine. Sized so that the CIFAR ResNets get 500 iterations
/// at batch 32 (ResNet20: about 3 minutes on 2 cores) and EfficientNet-Lite0 on its 12 distilled images
/// about 150 (about 6 minutes): on Lite0 W4A8, 300 iterations gained 0.4 points over 100 (QUANTIZATION.md).
pub const ITERATION_BUDGET: f64 = 1.2e10;

/// The rounding variables' learning rate for `iters` iterations per block: `5 / iters`, within
/// [1e-3, 3e-2]. AdaRound's 1e-3 is tuned for 10,000–20,000 iterations; in the few hundred that fit on
/// a CPU the variables then barely leave their start, so most roundings stay soft until they are
/// hardened, and hardening undoes what was learned. Keeping the product of rate and iterations fixed
/// lets them travel as far in 500 iterations (ResNet20 W2A4 59.7 → 73.6 top-1 at 1e-2; W4A4 80.7 and
/// 80.6, within the noise) or in 150 (EfficientNet-Lite0 W4A8 70.4 → 72.1 at 3e-2).
pub fn default_round_lr(iters: usize) -> f32 {
    (5.0 / iters.max(1) as f32).clamp(1e-3, 3e-2)
}

/// The regulariser weight λ for `iters` iterations per block: AdaRound's 0.01 from 500 iterations on,
/// rising geometrically to 0.1 at 150 and below. With fewer iterations the regulariser has fewer steps
/// to drive each rounding to up or down before it is hardened, so it must push harder. Measured at the
/// two ends: EfficientNet-Lite0 W4A8 at 150 iterations 72.1 top-1 with 0.01, 74.3 with 0.1; ResNet20
/// W2A4 at 500, 73.6 with 0.01, 70.7 with 0.1 (QUANTIZATION.md).
pub fn default_lambda(iters: usize) -> f32 {
    0.01 * 10f32.powf(short_run(iters))
}

/// The share of the post-warm-up iterations over which β falls from 20 to 2 for `iters` iterations per
/// block: all of them from 500 iterations on (AdaRound's schedule), half of them at 150 and below,
/// between the two in the same geometric steps as [`default_lambda`]. While β is large the regulariser
/// only pushes roundings that are nearly decided; it pushes every one once β nears 2, and in a short run
/// the last few dozen iterations at that β are too few for the rounding variables to get there: at 148
/// iterations on EfficientNet-Lite0 W4A8, a fifth of the roundings of the kept blocks were still
/// undecided when hardened (0–7% when β reaches 2 halfway, under 1% in most blocks, and the network's
/// output error on the calibration images 0.033 → 0.024). At 500 iterations on ResNet20, 2–10% are, and the faster
/// schedule costs top-1 (W4A4 80.79 → 79.96, W2A4 74.60 → 72.82).
pub fn default_anneal(iters: usize) -> f32 {
    1.0 - 0.5 * short_run(iters)
}

/// Where `iters` lies between a long run (0: 500 iterations or more) and a short one (1: 150 or fewer),
/// on a log scale.
fn short_run(iters: usize) -> f32 {
    ((500.0 / iters.max(1) as f32).ln() / (500.0f32 / 150.0).ln()).clamp(0.0, 1.0)
}

/// Default iterations per block for a model with `per_image` weight-layer output elements, learning on
/// `batch` images per iteration: what [`ITERATION_BUDGET`] allows, between 100 and 500.
pub fn default_iters(per_image: f64, batch: usize) -> usize {
    let fit = ITERATION_BUDGET / (per_image.max(1.0) * batch.max(1) as f64);
    (fit.floor() as usize).clamp(100, 500)
}

/// Whether reconstruction is worth running by default: some weight or activation below 8 bits.
pub fn needed(q: &QuantizedModel) -> bool {
    q.weights.iter().any(|w| w.bits < 8) || q.activations.iter().any(|a| a.bits < 8)
}

/// Steps [`reconstruct`] reports through its callback, for a progress bar.
pub fn steps(q: &QuantizedModel, cfg: &ReconstructConfig) -> u64 {
    let units = partition(&q.graph, cfg).iter().filter(|u| !u.layers.is_empty()).count() as u64;
    match cfg.method {
        Method::Off => 0,
        Method::BiasCorrection => units,
        Method::AdaRound | Method::Brecq => units * cfg.iters as u64 + if cfg.bias_first { units } else { 0 },
    }
}

fn partition(g: &Graph, cfg: &ReconstructConfig) -> Vec<Unit> {
    match cfg.method {
        Method::Brecq => blocks::partition(g, Granularity::Block { max_layers: cfg.max_block_layers }),
        _ => blocks::partition(g, Granularity::Layer),
    }
}

/// The FP32 twin of the quantized graph: the same nodes and values, every FakeQuant an Identity and every
/// weight and bias the folded FP32 one, so that a unit's node range means the same in both.
fn fp32_twin(graph: &Graph, q: &QuantizedModel) -> Result<Graph> {
    let mut folded = graph.clone();
    passes::fold_batch_norm(&mut folded);
    let by_name: HashMap<&str, usize> = folded.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut fp = q.graph.clone();
    for n in &mut fp.nodes {
        if matches!(n.op, Op::FakeQuant(_)) {
            n.op = Op::Identity;
        }
    }
    for w in &q.weights {
        let node = &q.graph.nodes[w.node];
        let src = by_name.get(node.name.as_str()).map(|&i| &folded.nodes[i]).ok_or_else(|| Error::Invalid(format!("reconstruction: layer '{}' is not in the FP32 model", w.layer)))?;
        for k in [1, 2] {
            let (Some(dst), Some(orig)) = (node.input(k), src.input(k)) else { continue };
            let t = folded.constant(orig).ok_or_else(|| Error::Invalid(format!("reconstruction: input {k} of '{}' is not a constant", w.layer)))?;
            fp.consts.insert(dst, t.clone());
        }
    }
    Ok(fp)
}

/// Reconstructs `q` (from `graph`, the FP32 model it was quantized from) on `calib` (`[N, C, H, W]`), in
/// place: learned weights, step sizes and corrected biases, re-quantized biases. `step` counts
/// [`steps`].
pub fn reconstruct(graph: &Graph, q: &mut QuantizedModel, calib: &[f32], shape: [usize; 4], cfg: &ReconstructConfig, step: &mut dyn FnMut(u64)) -> Result<ReconstructReport> {
    cfg.validate()?;
    let start = Instant::now();
    let mut config = cfg.clone();
    config.round_lr = Some(cfg.round_lr());
    config.lambda = Some(cfg.lambda());
    config.anneal = Some(cfg.anneal());
    // What runs: long runs never learn from the FP32 biases.
    config.bias_after = cfg.bias_after_applies();
    let mut report = ReconstructReport { config, images: shape[0], units: Vec::new(), output_error: (0.0, 0.0), seconds: 0.0 };
    if cfg.method == Method::Off {
        return Ok(report);
    }
    let &[_] = q.graph.inputs.as_slice() else {
        return Err(Error::Invalid(format!("reconstruction needs a model with one input, this one has {}", q.graph.inputs.len())));
    };
    if calib.len() != shape.iter().product::<usize>() || shape[0] == 0 {
        return Err(Error::Invalid(format!("reconstruction: {} calibration values do not make a {shape:?} batch", calib.len())));
    }
    let fp = fp32_twin(graph, q)?;
    let fp_plan = Plan::new(fp.clone(), &device::inference())?;
    let before = output_error(&fp_plan, &q.graph, calib, shape)?;
    let mut done = 0u64;
    let mut tick = |n: u64| {
        done += n;
        step(done)
    };
    if cfg.bias_first && cfg.method != Method::BiasCorrection {
        correct_biases(&fp, &fp_plan, q, calib, shape, &mut report, &mut tick)?;
    }
    if cfg.method == Method::BiasCorrection {
        correct_biases(&fp, &fp_plan, q, calib, shape, &mut report, &mut tick)?;
    } else {
        learn(&fp, &fp_plan, q, calib, shape, cfg, &mut report, &mut tick)?;
    }
    crate::quant::requantize_biases(q);
    report.output_error = (before, output_error(&fp_plan, &q.graph, calib, shape)?);
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The network output's error relative to FP32 on the calibration data.
fn output_error(fp_plan: &Plan, g: &Graph, calib: &[f32], shape: [usize; 4]) -> Result<f64> {
    let fp = crate::quant::predict(fp_plan, calib, shape, 32)?;
    let qp = crate::quant::predict(&Plan::new(g.clone(), &device::inference())?, calib, shape, 32)?;
    let a = [cache::Batch { dims: vec![qp.len()], data: qp }];
    let b = [cache::Batch { dims: vec![fp.len()], data: fp }];
    Ok(relative_error(&a, &b))
}

/// Walks `units` in network order over the calibration images, holding the quantized and the FP32
/// network's tensors at the current cut. For each unit with weight layers, `change` gets the unit, its
/// tensors (quantized inputs, FP32 inputs, FP32 outputs, the quantized outputs as the model is now) and
/// may change `q`; it returns the plan of the changed model with the unit's new quantized outputs, or
/// `None` when it left the model as it was.
#[allow(clippy::type_complexity)]
fn walk(
    fp: &Graph,
    fp_plan: &Plan,
    q: &mut QuantizedModel,
    units: &[Unit],
    calib: &[f32],
    shape: [usize; 4],
    mut change: impl FnMut(usize, &Unit, &mut QuantizedModel, &Live, &Live, &[Batch], &[Batch]) -> Result<Option<(Plan, Vec<Batch>)>>,
) -> Result<()> {
    let input = q.graph.inputs[0];
    let (mut xq, mut xfp) = (Live::input(input, calib, shape), Live::input(input, calib, shape));
    let mut plan = Plan::new(q.graph.clone(), &device::inference())?;
    let none = HashMap::new();
    for (k, unit) in units.iter().enumerate() {
        let yfp = cache::run_unit(fp_plan, unit, &xfp, &none, None)?;
        let mut yq = cache::run_unit(&plan, unit, &xq, &none, None)?;
        if !unit.layers.is_empty() {
            if let Some((p, y)) = change(k, unit, q, &xq, &xfp, &yfp, &yq)? {
                (plan, yq) = (p, y);
            }
        }
        xq.advance(fp, unit, yq);
        xfp.advance(fp, unit, yfp);
    }
    Ok(())
}

/// Bias correction, layer by layer.
fn correct_biases(fp: &Graph, fp_plan: &Plan, q: &mut QuantizedModel, calib: &[f32], shape: [usize; 4], report: &mut ReconstructReport, tick: &mut dyn FnMut(u64)) -> Result<()> {
    let units = blocks::partition(&q.graph, Granularity::Layer);
    let none = HashMap::new();
    walk(fp, fp_plan, q, &units, calib, shape, |_, unit, q, xq, _, yfp, yq| {
        let (&[node], [f], [y]) = (unit.layers.as_slice(), yfp, yq) else { return Ok(None) };
        let t0 = Instant::now();
        let before = relative_error(yq, yfp);
        let changed = if bias::add_to_bias(&mut q.graph, node, &bias::channel_shift(f, y))? {
            let plan = Plan::new(q.graph.clone(), &device::inference())?;
            let y = cache::run_unit(&plan, unit, xq, &none, None)?;
            Some((plan, y))
        } else {
            None
        };
        let after = changed.as_ref().map_or(before, |(_, y)| relative_error(y, yfp));
        report.units.push(record(q, Method::BiasCorrection, unit, before, after, t0));
        tick(1);
        Ok(changed)
    })
}

/// AdaRound or BRECQ, unit by unit.
#[allow(clippy::too_many_arguments)]
fn learn(fp: &Graph, fp_plan: &Plan, q: &mut QuantizedModel, calib: &[f32], shape: [usize; 4], cfg: &ReconstructConfig, report: &mut ReconstructReport, tick: &mut dyn FnMut(u64)) -> Result<()> {
    let units = partition(&q.graph, cfg);
    let none = HashMap::new();
    let by_node: HashMap<usize, usize> = q.weights.iter().enumerate().map(|(i, w)| (w.node, i)).collect();
    walk(fp, fp_plan, q, &units, calib, shape, |k, unit, q, xq, xfp, yfp, yq| {
        let t0 = Instant::now();
        let before = relative_error(yq, yfp);
        let roundings = unit
            .layers
            .iter()
            .filter_map(|n| by_node.get(n))
            .map(|&i| {
                let w = &q.weights[i];
                let t = fp.constant(w.value).ok_or_else(|| Error::Invalid(format!("reconstruction: the weight of '{}' is not a constant", w.layer)))?;
                Ok(learn::Rounding::new(&t.to_f32_vec(), &t.shape, w))
            })
            .collect::<Result<Vec<_>>>()?;
        let (graph_before, acts_before) = (q.graph.clone(), q.activations.clone());
        let bias_after = cfg.bias_after_applies() && unit.layers.iter().filter_map(|n| by_node.get(n)).all(|&i| q.weights[i].bits >= BIAS_AFTER_MIN_BITS);
        if bias_after {
            restore_fp32_biases(fp, q, unit)?;
        }
        let ad = Plan::new(q.graph.clone(), &device::autodiff())?;
        let seed = cfg.seed.wrapping_add(k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut last = 0;
        let learned = learn::learn_unit(&ad, unit, roundings, xq, xfp, yfp, cfg, seed, &mut |it| {
            tick((it - last) as u64);
            last = it;
        })?;
        // Keep what was learned only if the block, fully quantized, is closer to FP32 than before:
        // too few iterations can leave roundings undecided, and hardening them then costs more than
        // it gains.
        apply(q, &learned)?;
        let mut learned_plan = Plan::new(q.graph.clone(), &device::inference())?;
        if bias_after {
            learned_plan = correct_unit_biases(fp_plan, q, unit, xq, xfp, learned_plan)?;
        }
        let y_learned = cache::run_unit(&learned_plan, unit, xq, &none, None)?;
        let after = relative_error(&y_learned, yfp);
        let kept = !cfg.keep_if_better || after < before;
        if !kept {
            (q.graph, q.activations) = (graph_before, acts_before);
        }
        let mut rec = record(q, cfg.method, unit, before, if kept { after } else { before }, t0);
        rec.kept = kept;
        rec.error_learned = after;
        rec.undecided = learned.undecided;
        report.units.push(rec);
        Ok(kept.then_some((learned_plan, y_learned)))
    })
}

/// Sets the biases of `unit`'s layers in `q` to the FP32 network's (`fp`, the twin): zero where the FP32
/// layer has none and bias correction created one.
fn restore_fp32_biases(fp: &Graph, q: &mut QuantizedModel, unit: &Unit) -> Result<()> {
    for &node in &unit.layers {
        let Some(b) = q.graph.nodes[node].input(2) else { continue };
        let fp32 = match fp.nodes[node].input(2).and_then(|v| fp.constant(v)) {
            Some(t) => t.clone(),
            None => {
                let t = q.graph.constant(b).ok_or_else(|| Error::Invalid(format!("reconstruction: the bias of '{}' is not a constant", q.graph.nodes[node].name)))?;
                crate::ir::HostTensor::f32(t.shape.clone(), vec![0.0; t.len()])
            }
        };
        q.graph.consts.insert(b, fp32);
    }
    Ok(())
}

/// Bias correction of `unit`'s layers in order, each against the FP32 layer's output on the FP32
/// network's inputs (`xfp`) with the quantized network's inputs (`xq`) and the layers before it as
/// corrected; `plan` is `q`'s. Returns the plan of the corrected model.
fn correct_unit_biases(fp_plan: &Plan, q: &mut QuantizedModel, unit: &Unit, xq: &Live, xfp: &Live, mut plan: Plan) -> Result<Plan> {
    let none = HashMap::new();
    let layers: Vec<(usize, ValueId)> = unit.layers.iter().filter_map(|&n| q.graph.nodes[n].outputs.first().map(|&o| (n, o))).collect();
    let Some(last) = layers.iter().map(|&(n, _)| n).max() else { return Ok(plan) };
    // The unit up to and including `end`, read at `outputs`.
    let head = |end: usize, outputs: Vec<ValueId>| Unit { nodes: unit.nodes.start..end + 1, inputs: unit.inputs.clone(), outputs, layers: Vec::new() };
    // The FP32 outputs do not change as the biases are corrected: one run for every layer.
    let fp_outputs = cache::run_unit(fp_plan, &head(last, layers.iter().map(|&(_, o)| o).collect()), xfp, &none, None)?;
    for (&(node, out), f) in layers.iter().zip(&fp_outputs) {
        let y = cache::run_unit(&plan, &head(node, vec![out]), xq, &none, None)?;
        if bias::add_to_bias(&mut q.graph, node, &bias::channel_shift(f, &y[0]))? {
            plan = Plan::new(q.graph.clone(), &device::inference())?;
        }
    }
    Ok(plan)
}

/// Writes learned weights and step sizes into the quantized model (graph and records).
fn apply(q: &mut QuantizedModel, learned: &learn::Learned) -> Result<()> {
    for (value, w) in &learned.weights {
        let t = q.graph.consts.get_mut(value).ok_or_else(|| Error::Invalid("reconstruction: a weight constant vanished".into()))?;
        *t = crate::ir::HostTensor::f32(t.shape.clone(), w.clone());
    }
    for &(node, scale) in &learned.scales {
        // The activation record names the tensor the quantizer reads.
        let tensor = q.graph.nodes[node].input(0).map(|v| q.graph.name(v).to_string());
        if let Op::FakeQuant(fq) = &mut q.graph.nodes[node].op {
            fq.scale[0] = scale;
            let a = q.activations.iter_mut().find(|a| Some(&a.tensor) == tensor.as_ref());
            if let Some(a) = a {
                a.qparams.scale = scale;
                a.range = a.qparams.bounds();
            }
        }
    }
    Ok(())
}

fn record(q: &QuantizedModel, method: Method, unit: &Unit, before: f64, after: f64, t0: Instant) -> UnitRecord {
    let names: Vec<&str> = unit.layers.iter().map(|&n| q.graph.nodes[n].name.as_str()).collect();
    let bits = names.iter().map(|n| q.weights.iter().find(|w| w.layer == *n).map_or(32, |w| w.bits)).collect();
    UnitRecord { method, layers: names.iter().map(|s| s.to_string()).collect(), bits, error_before: before, error_after: after, error_learned: after, kept: true, undecided: 0.0, seconds: t0.elapsed().as_secs_f64() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_iterations_follow_the_model_cost() {
        // CIFAR ResNets (0.19 M and 0.53 M weight-layer outputs per image) keep 500 at batch 32.
        assert_eq!(default_iters(0.19e6, 32), 500);
        assert_eq!(default_iters(0.53e6, 32), 500);
        // EfficientNet-Lite0 (6.7 M) on 12 images: about 150.
        assert!((140..=160).contains(&default_iters(6.7e6, 12)), "{}", default_iters(6.7e6, 12));
        // Never below 100.
        assert_eq!(default_iters(1e9, 32), 100);
    }

    #[test]
    fn short_runs_learn_faster_and_decide_harder() {
        // The literature's settings at and beyond 500 iterations per block...
        assert!((default_round_lr(500) - 1e-2).abs() < 1e-9);
        assert_eq!(default_round_lr(20_000), 1e-3);
        assert!((default_lambda(500) - 0.01).abs() < 1e-7 && (default_lambda(5000) - 0.01).abs() < 1e-7);
        // ...and a faster rate with a stronger regulariser for the 150 that EfficientNet-Lite0 gets.
        assert_eq!(default_round_lr(150), 3e-2);
        assert!((default_lambda(150) - 0.1).abs() < 1e-6 && (default_lambda(100) - 0.1).abs() < 1e-6);
        let l300 = default_lambda(300);
        assert!(l300 > 0.01 && l300 < 0.1, "{l300}");
        // β's anneal: AdaRound's over all the iterations in long runs, the first half in short ones.
        assert_eq!((default_anneal(500), default_anneal(20_000)), (1.0, 1.0));
        assert!((default_anneal(150) - 0.5).abs() < 1e-6 && (default_anneal(100) - 0.5).abs() < 1e-6);
        let a300 = default_anneal(300);
        assert!(a300 > 0.5 && a300 < 1.0, "{a300}");
        // Blocks learn from the FP32 biases in short runs only.
        let at = |iters: usize| ReconstructConfig { iters, ..ReconstructConfig::new(Method::Brecq) }.bias_after_applies();
        assert!(at(100) && at(150) && at(300) && !at(500) && !at(20_000));
        assert!(!ReconstructConfig { iters: 150, bias_after: false, ..ReconstructConfig::new(Method::Brecq) }.bias_after_applies());
        // An explicit setting wins, and bad ones are refused.
        let mut cfg = ReconstructConfig::new(Method::Brecq);
        cfg.iters = 150;
        assert_eq!(cfg.round_lr(), 3e-2);
        cfg.round_lr = Some(5e-4);
        cfg.lambda = Some(0.02);
        assert_eq!((cfg.round_lr(), cfg.lambda()), (5e-4, 0.02));
        cfg.round_lr = Some(0.0);
        assert!(cfg.validate().is_err());
        cfg.round_lr = None;
        cfg.lambda = Some(f32::NAN);
        assert!(cfg.validate().is_err());
        cfg.lambda = None;
        cfg.anneal = Some(0.0);
        assert!(cfg.validate().is_err());
        cfg.anneal = Some(0.7);
        assert!(cfg.validate().is_ok() && cfg.anneal() == 0.7);
    }
}
