//! Distilled data (ZeroQ §3.1): input batches whose BatchNorm-input statistics match the running
//! statistics the network learned, found by Adam on the input through the frozen network.

pub mod init;
pub mod loss;
pub mod optim;

use serde::Serialize;

use crate::engine::{device, input_gradient, Plan};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph};
use init::{initial_batch, Init};
use optim::{Adam, Plateau};

/// Distillation settings; defaults are DESIGN.md's.
#[derive(Clone, Debug)]
pub struct DistillConfig {
    /// Images per batch (32).
    pub batch: usize,
    /// Number of batches, each optimised independently (1).
    pub batches: usize,
    /// Adam iterations per batch (500).
    pub iters: usize,
    /// Initial learning rate (0.5).
    pub lr: f32,
    /// Plateau factor (0.1), patience (100) and floor (1e-4).
    pub plateau: (f32, usize, f32),
    /// Initial batch distribution (Gaussian).
    pub init: Init,
    /// Seed; batch `b` uses `seed + b`.
    pub seed: u64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self { batch: 32, batches: 1, iters: 500, lr: 0.5, plateau: (0.1, 100, 1e-4), init: Init::Gaussian, seed: 0 }
    }
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
    crate::validate::distill_settings(cfg.batch, cfg.batches, cfg.iters, cfg.lr)?;
    let sites = crate::model::require_batch_norm(graph, "distillation")?;
    let [c, h, w] = input_chw(graph)?;
    crate::validate::batch_size(&[cfg.batches, cfg.batch, c, h, w])?;
    let taps: Vec<usize> = sites.iter().map(|s| s.input).collect();
    let plan = Plan::new(graph.clone(), &device::autodiff())?;
    let shape = [cfg.batch, c, h, w];
    let per = cfg.batch * c * h * w;
    let mut data = Vec::with_capacity(per * cfg.batches);
    let mut curves = Vec::new();
    for b in 0..cfg.batches {
        let mut x = initial_batch(per, cfg.init, cfg.seed.wrapping_add(b as u64));
        let mut adam = Adam::new(per);
        let mut sched = Plateau::new(cfg.lr, cfg.plateau.0, cfg.plateau.1, cfg.plateau.2);
        let mut curve = Vec::with_capacity(cfg.iters);
        for it in 0..cfg.iters {
            let g = input_gradient(&plan, &x, shape, &taps, |input, _, tapped| loss::bn_statistics_loss(input.clone(), tapped, &sites))?;
            if !g.loss.is_finite() {
                return Err(Error::Invalid(format!("distillation diverged at batch {b}, iteration {it} (loss {}); lower --lr", g.loss)));
            }
            adam.step(&mut x, &g.grad, sched.lr);
            sched.observe(g.loss);
            curve.push(g.loss);
            progress(b, it, g.loss, sched.lr);
        }
        data.extend_from_slice(&x);
        curves.push(curve);
    }
    Ok(Distilled { shape: [cfg.batch * cfg.batches, c, h, w], data, loss_curves: curves })
}

/// How well a batch matches one BN layer's running statistics.
#[derive(Clone, Debug, Serialize)]
pub struct LayerMatch {
    /// BN node name.
    pub name: String,
    /// Mean over channels of |μ̃ − μ| / σ (batch mean error in units of the running std).
    pub mean_error: f32,
    /// Mean over channels of |σ̃ − σ| / σ.
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
    sites
        .iter()
        .map(|s| {
            let t = tapped.get(&s.input).ok_or_else(|| Error::Invalid(format!("BN '{}' input not captured", s.name)))?;
            let h = t.to_host()?;
            let (n, c) = (h.shape[0], h.shape[1]);
            let hw: usize = h.shape[2..].iter().product();
            let v = h.to_f32_vec();
            let (mut me, mut se, mut ok) = (0f64, 0f64, 0usize);
            for ch in 0..c {
                let vals = (0..n).flat_map(|b| v[(b * c + ch) * hw..(b * c + ch + 1) * hw].iter().map(|&x| x as f64));
                let (mut s1, mut s2, mut k) = (0f64, 0f64, 0f64);
                for x in vals {
                    s1 += x;
                    s2 += x * x;
                    k += 1.0;
                }
                let mean = s1 / k;
                let std = ((s2 / k - mean * mean).max(0.0) * k / (k - 1.0).max(1.0)).sqrt();
                let sigma = ((s.var[ch] + s.epsilon) as f64).sqrt().max(1e-12);
                let (dm, ds) = ((mean - s.mean[ch] as f64).abs() / sigma, (std - sigma).abs() / sigma);
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
