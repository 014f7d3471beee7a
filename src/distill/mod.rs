//! Distilled data (ZeroQ §3.1): input batches whose BatchNorm-input statistics match the running
//! statistics the network learned, found by Adam on the input through the frozen network.

pub mod budget;
pub mod init;
pub mod lowpass;
pub mod loss;
pub mod optim;

use std::time::Instant;

use serde::Serialize;

use crate::data::Preprocess;
use crate::engine::{device, input_gradient, Plan};
use crate::error::{Error, Result};
use crate::ir::{BatchNormSite, Dim, Graph};
use init::{initial_batch, Init};
pub use loss::StatLoss;
use optim::{Adam, Plateau};

/// Where distilled inputs may go and what a natural input looks like, from the model's preprocessing.
///
/// ZeroQ pulls every image toward N(0, 1) per channel and lets pixels go anywhere. That is right only
/// for mean/std-normalised inputs; for EfficientNet's `(v − 127) / 128` real inputs lie in [−0.99, 1.0]
/// and distillation reached [−15.4, 12.7], so calibration then saw activations no real image produces.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputDomain {
    /// Per-channel lower bound of a valid input (pixel 0 or 255 through the preprocessing).
    pub lo: Vec<f32>,
    /// Per-channel upper bound.
    pub hi: Vec<f32>,
    /// Per-channel mean of natural images after the preprocessing: the input prior's target.
    pub mean: Vec<f32>,
    /// Per-channel std of natural images after the preprocessing: the prior's target, the initial
    /// spread, and the unit of the learning rate.
    pub std: Vec<f32>,
}

impl InputDomain {
    /// ZeroQ's assumption: N(0, 1) per channel, no bounds.
    pub fn standard(channels: usize) -> Self {
        Self { lo: vec![f32::NEG_INFINITY; channels], hi: vec![f32::INFINITY; channels], mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// The box and prior of `pre` for a 3-channel (RGB) input; other channel counts get
    /// [`InputDomain::standard`], since a preset describes RGB pixels.
    pub fn from_preprocess(pre: &Preprocess, channels: usize) -> Self {
        if channels != 3 {
            return Self::standard(channels);
        }
        let (b, (m, s)) = (pre.input_box(), pre.input_prior());
        Self { lo: b.iter().map(|r| r.0).collect(), hi: b.iter().map(|r| r.1).collect(), mean: m.to_vec(), std: s.to_vec() }
    }

    fn check(&self, channels: usize) -> Result<()> {
        let ok = [&self.lo, &self.hi, &self.mean, &self.std].iter().all(|v| v.len() == channels)
            && self.lo.iter().zip(&self.hi).all(|(l, h)| l < h)
            && self.std.iter().all(|s| s.is_finite() && *s > 0.0);
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!("input domain does not fit a {channels}-channel input with lo < hi and std > 0: {self:?}")))
        }
    }
}

/// When to stop before the iteration cap: the share of BN channels within 10% of their running
/// statistics ([`channels_within_10pct`], from the BN inputs the forward already tapped, copied to the
/// host at a check) is checked every `every` iterations, and the batch stops once it has not risen by `min_gain` for `patience`
/// iterations, but never before the plateau schedule has lowered the learning rate once: at the starting
/// rate Adam's fixed-size steps make the match swing by several points from check to check while the
/// loss is still falling fast. EfficientNet-Lite0 distilled with seed 5 stopped there after 171
/// iterations at 78.3% of channels within 10% (loss 478); run on, it passed 80% at 180, swung back to
/// 73% at 200 and reached 93.3% by 400 (loss 132). The CIFAR ResNets' batches stop after the first drop
/// anyway, so their bytes did not change. The best batch seen at a check is the one returned.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EarlyStop {
    /// Iterations between checks.
    pub every: usize,
    /// Iterations without a gain before stopping.
    pub patience: usize,
    /// The gain (a share, 0.01 = one point) that counts as an improvement.
    pub min_gain: f32,
}

impl Default for EarlyStop {
    fn default() -> Self {
        Self { every: 10, patience: 60, min_gain: 0.005 }
    }
}

/// Distillation settings. The defaults are zeroq's recipe (ZeroQ's Adam and plateau schedule, a
/// per-channel normalised loss on the batch's statistics, early stop); [`DistillConfig::zeroq`] is the
/// paper's.
#[derive(Clone, Debug)]
pub struct DistillConfig {
    /// Images per batch (32).
    pub batch: usize,
    /// Number of batches, each optimised independently (1).
    pub batches: usize,
    /// Adam iterations per batch at most (500).
    pub iters: usize,
    /// Initial learning rate, in units of the input prior's std (0.5).
    pub lr: f32,
    /// Plateau factor, patience and floor: (0.2, 15, 1e-4); ZeroQ's are (0.1, 100, 1e-4). At lr 0.5
    /// the loss stalls within a few dozen iterations while Adam's fixed-size steps keep the images
    /// noisy, and the BN match jumps as soon as the rate drops (ResNet20: 64% → 90% within 50
    /// iterations of the first drop), so dropping sooner converges sooner.
    pub plateau: (f32, usize, f32),
    /// Initial batch distribution (Gaussian).
    pub init: Init,
    /// Seed; batch `b` uses `seed + b`.
    pub seed: u64,
    /// Input box and prior; `None` is ZeroQ's N(0, 1) without bounds.
    pub domain: Option<InputDomain>,
    /// Form of the loss.
    pub loss: StatLoss,
    /// Stop before `iters` when the BN match stops improving.
    pub early_stop: Option<EarlyStop>,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            batches: 1,
            iters: 500,
            lr: 0.5,
            plateau: (0.2, 15, 1e-4),
            init: Init::Gaussian,
            seed: 0,
            domain: None,
            loss: StatLoss::Pooled,
            early_stop: Some(EarlyStop::default()),
        }
    }
}

impl DistillConfig {
    /// The paper's recipe exactly: ZeroQ's loss, N(0, 1) prior, no bounds, all 500 iterations.
    pub fn zeroq() -> Self {
        Self { loss: StatLoss::ZeroQ, early_stop: None, domain: None, plateau: (0.1, 100, 1e-4), ..Self::default() }
    }

    /// Checks the settings, naming the flag that is wrong.
    pub fn validate(&self) -> Result<()> {
        crate::validate::distill_settings(self.batch, self.batches, self.iters, self.lr)?;
        if self.early_stop.is_some_and(|e| e.every == 0) {
            return Err(Error::Invalid("distillation: the early-stop check interval is 0; it must be at least 1".into()));
        }
        Ok(())
    }
}

/// One check of the BN match during distillation.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MatchPoint {
    /// Iteration (0-based) whose input was measured.
    pub iteration: usize,
    /// Seconds since the batch started.
    pub seconds: f64,
    /// Loss at that iteration.
    pub loss: f32,
    /// Share of BN channels within 10% of σ (batch statistics).
    pub within_10pct: f32,
}

/// What distillation produced.
#[derive(Clone, Debug, Serialize)]
pub struct Distilled {
    /// `[batches·batch, C, H, W]`.
    pub shape: [usize; 4],
    /// The images, NCHW row-major.
    #[serde(skip)]
    pub data: Vec<f32>,
    /// Loss per iteration, one curve per batch.
    pub loss_curves: Vec<Vec<f32>>,
    /// BN match every few iterations, one curve per batch.
    pub match_curves: Vec<Vec<MatchPoint>>,
}

impl Distilled {
    /// Iterations run per batch.
    pub fn iterations(&self) -> Vec<usize> {
        self.loss_curves.iter().map(Vec::len).collect()
    }
}

/// Progress callback arguments: batch, iteration, loss, learning rate.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, f32, f32);

/// The model's `[C, H, W]` from its declared input shape.
pub fn input_chw(g: &Graph) -> Result<[usize; 3]> {
    let id = *g.inputs.first().ok_or_else(|| Error::Invalid("the model has no input".into()))?;
    let dims = g.values[id].shape.as_ref();
    match dims.map(|d| d.as_slice()) {
        Some([_, Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)]) => crate::validate::nonzero_chw(g.name(id), [*c, *h, *w]),
        _ => Err(Error::Invalid(format!(
            "input '{}' must be declared as [N, C, H, W] with fixed C, H, W to distil data for it",
            g.name(id)
        ))),
    }
}

/// Distils `cfg.batches` batches for `graph`.
pub fn distill(graph: &Graph, cfg: &DistillConfig, progress: Progress) -> Result<Distilled> {
    cfg.validate()?;
    let sites = crate::model::require_batch_norm(graph, "distillation")?;
    let [c, h, w] = input_chw(graph)?;
    crate::validate::batch_size(&[cfg.batches, cfg.batch, c, h, w])?;
    let domain = cfg.domain.clone().unwrap_or_else(|| InputDomain::standard(c));
    domain.check(c)?;
    let taps: Vec<usize> = sites.iter().map(|s| s.input).collect();
    let plan = Plan::new(graph.clone(), &device::autodiff())?;
    let shape = [cfg.batch, c, h, w];
    let per = cfg.batch * c * h * w;
    // Per-element learning-rate scale and bounds, laid out like the batch (NCHW).
    let channel_of = |i: usize| (i / (h * w)) % c;
    let lr_scale: Vec<f32> = (0..per).map(|i| domain.std[channel_of(i)]).collect();
    let lo: Vec<f32> = (0..per).map(|i| domain.lo[channel_of(i)]).collect();
    let hi: Vec<f32> = (0..per).map(|i| domain.hi[channel_of(i)]).collect();
    let project = |x: &mut [f32]| x.iter_mut().zip(lo.iter().zip(&hi)).for_each(|(v, (&l, &u))| *v = v.clamp(l, u));
    let mut data = Vec::with_capacity(per * cfg.batches);
    let (mut curves, mut match_curves) = (Vec::new(), Vec::new());
    for b in 0..cfg.batches {
        let mut x = initial_batch(per, cfg.init, cfg.seed.wrapping_add(b as u64));
        if cfg.init == Init::Gaussian {
            // N(0, 1) draws shifted and scaled to the prior, then brought into the box.
            x.iter_mut().enumerate().for_each(|(i, v)| *v = domain.mean[channel_of(i)] + domain.std[channel_of(i)] * *v);
        }
        project(&mut x);
        let mut adam = Adam::new(per);
        let mut sched = Plateau::new(cfg.lr, cfg.plateau.0, cfg.plateau.1, cfg.plateau.2);
        let mut curve = Vec::with_capacity(cfg.iters);
        let mut checks = Vec::new();
        // Best batch at a check, and the share last counted as a gain with its iteration.
        let mut best: Option<(f32, Vec<f32>)> = None;
        let (mut reference, mut gained_at) = (0f32, 0usize);
        let start = Instant::now();
        let (check_every, min_gain) = cfg.early_stop.map_or((EarlyStop::default().every, 0.0), |e| (e.every, e.min_gain));
        for it in 0..cfg.iters {
            let mut share = None;
            let g = input_gradient(&plan, &x, shape, &taps, |input, _, tapped| {
                if it % check_every == 0 {
                    share = Some(channels_within_10pct(&layer_matches(&sites, tapped)?));
                }
                loss::bn_statistics_loss(input.clone(), tapped, &sites, (&domain.mean, &domain.std), cfg.loss)
            })?;
            if !g.loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "distillation diverged at batch {b}, iteration {it} (loss {}); lower the learning rate (--lr, now {})",
                    g.loss, cfg.lr
                )));
            }
            if let Some(share) = share {
                checks.push(MatchPoint { iteration: it, seconds: start.elapsed().as_secs_f64(), loss: g.loss, within_10pct: share });
                if best.as_ref().is_none_or(|(s, _)| share > *s) {
                    best = Some((share, x.clone()));
                }
                if it == 0 || share >= reference + min_gain {
                    (reference, gained_at) = (share, it);
                } else if cfg.early_stop.is_some_and(|e| it - gained_at >= e.patience) && sched.lr < cfg.lr {
                    curve.push(g.loss);
                    progress(b, it, g.loss, sched.lr);
                    break;
                }
            }
            adam.step_scaled(&mut x, &g.grad, sched.lr, &lr_scale);
            project(&mut x);
            sched.observe(g.loss);
            curve.push(g.loss);
            progress(b, it, g.loss, sched.lr);
        }
        match best {
            Some((_, bx)) if cfg.early_stop.is_some() => data.extend_from_slice(&bx),
            _ => data.extend_from_slice(&x),
        }
        curves.push(curve);
        match_curves.push(checks);
    }
    Ok(Distilled { shape: [cfg.batch * cfg.batches, c, h, w], data, loss_curves: curves, match_curves })
}

/// How well a batch matches one BN layer's running statistics.
#[derive(Clone, Debug, Serialize)]
pub struct LayerMatch {
    /// BN node name.
    pub name: String,
    /// Mean over channels of |μ̃ − μ| / σ (batch mean error in units of the running std).
    pub mean_error: f32,
    /// Mean over channels of |σ̃ − σ| / σ, both with the BN's ε inside the root (`σ̃ = sqrt(batch var + ε)`).
    pub std_error: f32,
    /// Fraction of channels whose batch mean and std are both within 10% of σ of the running values.
    pub within_10pct: f32,
    /// Number of channels.
    pub channels: usize,
}

/// Share of all BN channels (every layer, weighted by its channel count) within 10% of σ.
pub fn channels_within_10pct(layers: &[LayerMatch]) -> f32 {
    let total: usize = layers.iter().map(|l| l.channels).sum();
    layers.iter().map(|l| l.within_10pct * l.channels as f32).sum::<f32>() / total.max(1) as f32
}

/// Batch statistics (over N, H, W) of `data` at every BN input, against the running statistics.
pub fn match_statistics(graph: &Graph, data: &[f32], shape: [usize; 4]) -> Result<Vec<LayerMatch>> {
    use burn::tensor::{Tensor, TensorData};
    let sites = crate::model::require_batch_norm(graph, "statistics matching")?;
    let taps: Vec<usize> = sites.iter().map(|s| s.input).collect();
    let plan = Plan::new(graph.clone(), &device::inference())?;
    let x = Tensor::<4>::from_data(TensorData::new(data.to_vec(), shape), plan.device());
    let (_, tapped) = plan.forward_with_taps(x, &taps)?;
    layer_matches(&sites, &tapped)
}

/// Batch statistics of every BN input in `tapped` (the tensors of one forward) against the running ones.
fn layer_matches(sites: &[BatchNormSite], tapped: &std::collections::HashMap<usize, crate::engine::DynTensor>) -> Result<Vec<LayerMatch>> {
    sites
        .iter()
        .map(|s| {
            let t = tapped.get(&s.input).ok_or_else(|| Error::Invalid(format!("BN '{}' input not captured", s.name)))?;
            let h = t.to_host()?;
            let c = h.shape[1];
            let positions: usize = h.shape[2..].iter().product();
            // Both σ as the BN divides by them, its ε inside the root: without it on the batch's side, a
            // channel whose running variance is near or below ε could never match.
            let stats = crate::engine::kernels::channel_stats(&h.to_f32_vec(), c, positions, s.epsilon);
            let (mut me, mut se, mut ok) = (0f64, 0f64, 0usize);
            for (ch, &(mean, std)) in stats.iter().enumerate() {
                let sigma = ((s.var[ch] + s.epsilon) as f64).sqrt().max(1e-12);
                let (dm, ds) = ((mean as f64 - s.mean[ch] as f64).abs() / sigma, (std as f64 - sigma).abs() / sigma);
                me += dm;
                se += ds;
                ok += usize::from(dm <= 0.1 && ds <= 0.1);
            }
            Ok(LayerMatch {
                name: s.name.clone(),
                mean_error: (me / c as f64) as f32,
                std_error: (se / c as f64) as f32,
                within_10pct: ok as f32 / c as f32,
                channels: c,
            })
        })
        .collect()
}
