//! The BatchNorm-statistics loss (DESIGN.md "Distilled data").
//!
//! For every BN layer i with input x `[B, C, H, W]`, per sample and channel over the spatial positions:
//! `μ̃ = mean(x)`, `σ̃ = sqrt(var_unbiased(x) + ε)`, with `σ_i = sqrt(running_var + ε)`, `ε = 1e-6`, and
//! the same term on the network input against the input prior (mean and std of natural images after
//! the model's preprocessing; N(0, 1) for mean/std-normalised inputs, ZeroQ's assumption).
//!
//! Two forms ([`StatLoss`]):
//! - ZeroQ's: `L = Σ_i ‖μ̃ − μ_i‖² / B + ‖σ̃ − σ_i‖² / B`, the errors in the layer's own units. A layer
//!   whose activations are large (σ of tens, as in EfficientNet's expansion convs) then outweighs a layer
//!   with σ ≈ 0.1 by four orders of magnitude, and Adam's step, which follows the sum, spends the whole
//!   budget on the wide layers.
//! - Normalised: every channel's errors divided by its σ, `Σ_i ‖(μ̃ − μ_i)/σ_i‖² / B + ‖(σ̃ − σ_i)/σ_i‖² / B`.
//!   Each channel then counts the same, in the units in which "within 10%" is judged.
//! - Pooled: the normalised form over statistics pooled over the whole batch (N, H, W), the statistics
//!   BatchNorm computes in training and the ones "within 10%" is judged on (DeepInversion's feature
//!   term): `Σ_i ‖(μ̄ − μ_i)/σ_i‖² + ‖(σ̄ − σ_i)/σ_i‖²`. The per-sample forms ask every image to have
//!   the layer's statistics on its own, which no real image does; pooled, only the batch must, and the
//!   images are free to differ from each other as real ones do.

use std::collections::HashMap;

use burn::tensor::{Tensor, TensorData};

use crate::engine::DynTensor;
use crate::error::{Error, Result};
use crate::ir::{BatchNormSite, ValueId};

/// ε inside the square roots (the reference implementation's value, not the BN's own).
pub const STAT_EPS: f32 = 1e-6;

/// How the per-channel errors are weighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum StatLoss {
    /// ZeroQ's: squared errors in the layer's units.
    ZeroQ,
    /// Squared errors in units of the target σ of each channel.
    Normalized,
    /// [`StatLoss::Normalized`] over statistics pooled over the batch instead of per sample.
    Pooled,
}

impl StatLoss {
    fn pooled(self) -> bool {
        self == StatLoss::Pooled
    }
}

/// Per-sample statistics of `x` `[B, C, H, W]` against per-channel targets, summed over channels and
/// divided by B (with `pooled`, statistics over the whole batch, summed over channels). With `weight`,
/// each channel's error is multiplied by `weight[c]` before squaring.
/// On the CPU device this is one fused kernel ([`crate::engine::kernels::stat_matching_loss`]), elsewhere
/// (or with `ZEROQ_KERNELS=burn`) the plain burn ops of [`stat_matching_loss_burn`].
pub fn stat_matching_loss(x: Tensor<4>, mean: &[f32], std: &[f32], weight: Option<&[f32]>, pooled: bool, eps: f32) -> Tensor<1> {
    if crate::engine::device::own_kernels(&x.device()) {
        return crate::engine::kernels::stat_matching_loss(x, mean, std, weight, pooled, eps);
    }
    stat_matching_loss_burn(x, mean, std, weight, pooled, eps)
}

/// [`stat_matching_loss`] in plain burn ops: the reference the fused kernel is tested against.
pub fn stat_matching_loss_burn(x: Tensor<4>, mean: &[f32], std: &[f32], weight: Option<&[f32]>, pooled: bool, eps: f32) -> Tensor<1> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    // Pooled: one row per channel holding the whole batch's values.
    let (x, rows, divisor) = if pooled {
        (x.swap_dims(0, 1).reshape([1, c, b * h * w]), b * h * w, 1)
    } else {
        (x.reshape([b, c, h * w]), h * w, b)
    };
    let mu = x.clone().mean_dim(2); // [b or 1, c, 1]
    let var = (x - mu.clone()).square().sum_dim(2).div_scalar(rows.saturating_sub(1).max(1) as f32);
    let sigma = var.add_scalar(eps).sqrt();
    let row = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [1, c, 1]), &device);
    let (dm, ds) = (mu - row(mean.to_vec()), sigma - row(std.to_vec()));
    let (dm, ds) = match weight {
        Some(wt) => {
            let wt = row(wt.to_vec());
            (dm * wt.clone(), ds * wt)
        }
        None => (dm, ds),
    };
    (dm.square().sum() + ds.square().sum()).div_scalar(divisor as f32)
}

/// The full loss from the tapped BN inputs and the network input; `prior` is the input's per-channel
/// (mean, std).
pub fn bn_statistics_loss(
    input: Tensor<4>,
    taps: &HashMap<ValueId, DynTensor>,
    sites: &[BatchNormSite],
    prior: (&[f32], &[f32]),
    kind: StatLoss,
) -> Result<Tensor<1>> {
    let inv = |s: &[f32]| -> Vec<f32> { s.iter().map(|v| 1.0 / v.max(1e-12)).collect() };
    let weight = |s: &[f32]| (kind != StatLoss::ZeroQ).then(|| inv(s));
    let w_in = weight(prior.1);
    let mut loss = stat_matching_loss(input, prior.0, prior.1, w_in.as_deref(), kind.pooled(), STAT_EPS);
    for s in sites {
        let x = taps
            .get(&s.input)
            .ok_or_else(|| Error::Invalid(format!("BN '{}': its input was not captured", s.name)))?
            .clone()
            .into_r4(&format!("BN '{}' statistics", s.name))?;
        // Pooled, σ is what the BN divides by (its own ε inside the root, on both sides): with ZeroQ's
        // ε = 1e-6, a channel whose running variance is near or below the BN's ε (7% of Lite0's, 130
        // of them 0) is pushed to a σ the BN never sees, and can never count as within 10%.
        let eps = if kind.pooled() { s.epsilon.max(STAT_EPS) } else { STAT_EPS };
        let std: Vec<f32> = s.var.iter().map(|v| (v + eps).sqrt()).collect();
        let w = weight(&std);
        loss = loss + stat_matching_loss(x, &s.mean, &std, w.as_deref(), kind.pooled(), eps);
    }
    Ok(loss)
}
