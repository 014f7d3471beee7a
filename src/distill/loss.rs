//! The ZeroQ BatchNorm-statistics loss (DESIGN.md "Distilled data").
//!
//! For every BN layer i with input x `[B, C, H, W]`, per sample and channel over the spatial positions:
//! `μ̃ = mean(x)`, `σ̃ = sqrt(var_unbiased(x) + ε)`, and
//! `L = Σ_i ‖μ̃ − μ_i‖² / B + ‖σ̃ − σ_i‖² / B` with `σ_i = sqrt(running_var + ε)`, `ε = 1e-6`,
//! plus the same term on the network input against mean 0 and std 1.

use std::collections::HashMap;

use burn::tensor::{Tensor, TensorData};

use crate::engine::DynTensor;
use crate::error::{Error, Result};
use crate::ir::{BatchNormSite, ValueId};

/// ε inside the square roots (the reference implementation's value, not the BN's own).
pub const STAT_EPS: f32 = 1e-6;

/// Per-sample statistics of `x` `[B, C, H, W]` against per-channel targets: `Σ‖μ̃−μ‖²/B + Σ‖σ̃−σ‖²/B`.
/// On the CPU device this is one fused kernel ([`crate::engine::kernels::stat_matching_loss`]), elsewhere
/// (or with `ZEROQ_KERNELS=burn`) the plain burn ops of [`stat_matching_loss_burn`].
pub fn stat_matching_loss(x: Tensor<4>, mean: &[f32], std: &[f32]) -> Tensor<1> {
    if crate::engine::device::own_kernels(&x.device()) {
        return crate::engine::kernels::stat_matching_loss(x, mean, std, STAT_EPS);
    }
    stat_matching_loss_burn(x, mean, std)
}

/// [`stat_matching_loss`] in plain burn ops: the reference the fused kernel is tested against.
pub fn stat_matching_loss_burn(x: Tensor<4>, mean: &[f32], std: &[f32]) -> Tensor<1> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let x = x.reshape([b, c, h * w]);
    let mu = x.clone().mean_dim(2); // [b, c, 1]
    let var = (x - mu.clone()).square().sum_dim(2).div_scalar((h * w).saturating_sub(1).max(1) as f32);
    let sigma = var.add_scalar(STAT_EPS).sqrt();
    let target = |v: &[f32]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [1, c, 1]), &device);
    let dm = (mu - target(mean)).square().sum();
    let ds = (sigma - target(std)).square().sum();
    (dm + ds).div_scalar(b as f32)
}

/// The full loss from the tapped BN inputs and the network input.
pub fn bn_statistics_loss(input: Tensor<4>, taps: &HashMap<ValueId, DynTensor>, sites: &[BatchNormSite]) -> Result<Tensor<1>> {
    let c = input.dims()[1];
    let mut loss = stat_matching_loss(input, &vec![0.0; c], &vec![1.0; c]);
    for s in sites {
        let x = taps
            .get(&s.input)
            .ok_or_else(|| Error::Invalid(format!("BN '{}': its input was not captured", s.name)))?
            .clone()
            .into_r4(&format!("BN '{}' statistics", s.name))?;
        let std: Vec<f32> = s.var.iter().map(|v| (v + STAT_EPS).sqrt()).collect();
        loss = loss + stat_matching_loss(x, &s.mean, &std);
    }
    Ok(loss)
}
