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
}

/// Per-sample statistics of `x` `[B, C, H, W]` against per-channel targets, summed over channels and
/// divided by B. With `weight`, each channel's error is multiplied by `weight[c]` before squaring.
/// On the CPU device this is one fused kernel ([`crate::engine::kernels::stat_matching_loss`]), elsewhere
/// (or with `ZEROQ_KERNELS=burn`) the plain burn ops of [`stat_matching_loss_burn`].
pub fn stat_matching_loss(x: Tensor<4>, mean: &[f32], std: &[f32], weight: Option<&[f32]>) -> Tensor<1> {
    if crate::engine::device::own_kernels(&x.device()) {
        return crate::engine::kernels::stat_matching_loss(x, mean, std, weight, STAT_EPS);
    }
    stat_matching_loss_burn(x, mean, std, weight)
}

/// [`stat_matching_loss`] in plain burn ops: the reference the fused kernel is tested against.
pub fn stat_matching_loss_burn(x: Tensor<4>, mean: &[f32], std: &[f32], weight: Option<&[f32]>) -> Tensor<1> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let x = x.reshape([b, c, h * w]);
    let mu = x.clone().mean_dim(2); // [b, c, 1]
    let var = (x - mu.clone()).square().sum_dim(2).div_scalar((h * w).saturating_sub(1).max(1) as f32);
    let sigma = var.add_scalar(STAT_EPS).sqrt();
    let row = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [1, c, 1]), &device);
    let (dm, ds) = (mu - row(mean.to_vec()), sigma - row(std.to_vec()));
    let (dm, ds) = match weight {
        Some(wt) => {
            let wt = row(wt.to_vec());
            (dm * wt.clone(), ds * wt)
        }
        None => (dm, ds),
    };
    (dm.square().sum() + ds.square().sum()).div_scalar(b as f32)
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
    let weight = |s: &[f32]| (kind == StatLoss::Normalized).then(|| inv(s));
    let w_in = weight(prior.1);
    let mut loss = stat_matching_loss(input, prior.0, prior.1, w_in.as_deref());
    for s in sites {
        let x = taps
            .get(&s.input)
            .ok_or_else(|| Error::Invalid(format!("BN '{}': its input was not captured", s.name)))?
            .clone()
            .into_r4(&format!("BN '{}' statistics", s.name))?;
        let std: Vec<f32> = s.var.iter().map(|v| (v + STAT_EPS).sqrt()).collect();
        let w = weight(&std);
        loss = loss + stat_matching_loss(x, &s.mean, &std, w.as_deref());
    }
    Ok(loss)
}
