//! The ZeroQ BatchNorm-statistics term of one layer in one pass, and its input gradient in one more.
//!
//! For `x` `[B, C, H, W]` and per-channel targets `m`, `s`, per sample and channel over the `P = H·W`
//! positions: `μ = Σx/P`, `σ = sqrt(Σ(x−μ)²/max(P−1, 1) + ε)`, and
//! `L = (Σ_bc (μ−m_c)² + (σ−s_c)²) / B`. Its gradient is
//! `∂L/∂x = 2(μ−m)/(B·P) + 2(σ−s)(x−μ)/(B·σ·max(P−1, 1))` (the mean's share of `∂σ` sums to zero).
//!
//! burn's version (the reference, `distill::loss::stat_matching_loss_burn`) is a chain of ten tensor ops,
//! each a pass over the activation forward and another backward. Sums here are per plane in f64, in a fixed
//! order, so the bits do not depend on the thread count.

use rayon::prelude::*;

/// Accumulators per sum: the plane is summed in this many interleaved lanes, then the lanes in order. A
/// fixed count keeps the result independent of the machine; several lanes let the loop vectorise (a
/// single f64 accumulator is a serial chain of additions).
const LANES: usize = 8;

/// `Σ f(v)` in f64 over [`LANES`] interleaved partial sums.
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(x);
    }
    acc.iter().sum()
}

/// Per-plane `(μ, σ)` of `x` (planes of `positions` values each).
pub fn plane_stats(x: &[f32], positions: usize, eps: f32) -> Vec<(f32, f32)> {
    let dof = positions.saturating_sub(1).max(1) as f64;
    x.par_chunks(positions.max(1))
        .map(|v| {
            let mu = lane_sum(v, |a| a as f64) / positions.max(1) as f64;
            let ss = lane_sum(v, |a| (a as f64 - mu) * (a as f64 - mu));
            (mu as f32, ((ss / dof) as f32 + eps).sqrt())
        })
        .collect()
}

/// Per-channel `(μ, σ)` of `x` `[B, C, P]` pooled over the batch and the positions (`N = B·P` values per
/// channel, `σ` with `N − 1` degrees of freedom): the statistics BatchNorm itself computes in training.
pub fn channel_stats(x: &[f32], channels: usize, positions: usize, eps: f32) -> Vec<(f32, f32)> {
    let p = positions.max(1);
    let batch = x.len() / (channels.max(1) * p);
    let n = (batch * p).max(1) as f64;
    let dof = (batch * p).saturating_sub(1).max(1) as f64;
    let plane = |b: usize, c: usize| &x[(b * channels + c) * p..(b * channels + c + 1) * p];
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let mu = (0..batch).map(|b| lane_sum(plane(b, c), |a| a as f64)).sum::<f64>() / n;
            let ss: f64 = (0..batch).map(|b| lane_sum(plane(b, c), |a| (a as f64 - mu) * (a as f64 - mu))).sum();
            (mu as f32, ((ss / dof) as f32 + eps).sqrt())
        })
        .collect()
}

/// Squared per-channel factor on the errors (`weight` empty: 1).
fn w2(weight: &[f32], c: usize) -> f32 {
    weight.get(c).map_or(1.0, |w| w * w)
}

/// The loss from the plane statistics (`stats[b·C + c]`) and the targets, each channel's errors times
/// `weight[c]` (none when empty).
pub fn loss(stats: &[(f32, f32)], mean: &[f32], std: &[f32], weight: &[f32], batch: usize) -> f32 {
    let c = mean.len();
    let sum: f64 = stats
        .iter()
        .enumerate()
        .map(|(i, &(mu, sig))| {
            w2(weight, i % c) as f64 * (((mu - mean[i % c]) as f64).powi(2) + ((sig - std[i % c]) as f64).powi(2))
        })
        .sum();
    (sum / batch.max(1) as f64) as f32
}

/// `upstream · ∂L/∂x`, same layout as `x`. `stats` holds one entry per plane ([`plane_stats`], the loss
/// divided by the batch) or one per channel ([`channel_stats`], pooled over the batch, the loss not
/// divided); its length says which. With a batch of one the two are the same statistics and the same
/// loss.
pub fn input_grad(x: &[f32], stats: &[(f32, f32)], mean: &[f32], std: &[f32], weight: &[f32], positions: usize, upstream: f32) -> Vec<f32> {
    let c = mean.len();
    let planes = x.len() / positions.max(1);
    let batch = planes / c.max(1);
    debug_assert!(stats.len() == planes || stats.len() == c, "{} statistics for {planes} planes of {c} channels", stats.len());
    let pooled = stats.len() != planes;
    // Values behind one statistic, and the loss's divisor.
    let (count, divisor) = if pooled { (batch * positions, 1) } else { (positions, batch) };
    let scale = upstream / divisor.max(1) as f32;
    let dof = count.saturating_sub(1).max(1) as f32;
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(positions.max(1))
        .zip(x.par_chunks(positions.max(1)))
        .enumerate()
        .for_each(|(i, (d, v))| {
            let (mu, sig) = stats[if pooled { i % c } else { i }];
            let ws = scale * w2(weight, i % c);
            let a = 2.0 * ws * (mu - mean[i % c]) / count as f32;
            let k = 2.0 * ws * (sig - std[i % c]) / (sig * dof);
            d.iter_mut()
                .zip(v)
                .for_each(|(d, &x)| *d = a + k * (x - mu));
        });
    dx
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use crate::distill::loss::{stat_matching_loss_burn, STAT_EPS};
    use crate::engine::kernels::conv::tests::lcg;

    /// Loss and input gradient of the fused kernel against the burn ops of the distillation loss, on
    /// shapes with one position (the `max(P−1, 1)` case), odd sizes and a batch above the thread count.
    #[test]
    fn matches_the_burn_loss_and_its_gradient() {
        let device = crate::engine::device::autodiff();
        let cases = [[2, 3, 5, 7], [5, 4, 1, 1], [3, 16, 8, 8], [1, 2, 13, 3]];
        // Each shape per sample and pooled over the batch.
        for (i, (&shape, pooled)) in cases.iter().flat_map(|s| [(s, false), (s, true)]).enumerate() {
            let n: usize = shape.iter().product();
            // Inputs away from the targets, with a spread, so both terms and their gradients matter.
            let x: Vec<f32> = lcg(n, i as u64).iter().map(|v| 3.0 * v + 0.2).collect();
            let mean: Vec<f32> = lcg(shape[1], 10 + i as u64);
            let std: Vec<f32> = lcg(shape[1], 20 + i as u64)
                .iter()
                .map(|v| 1.0 + v)
                .collect();
            let run = |fused: bool| {
                let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device)
                    .require_grad();
                // Odd shapes with the normalised loss's per-channel weights, even ones without.
                let weight: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
                let w = ((i / 2) % 2 == 1).then_some(weight.as_slice());
                let l = if fused {
                    super::super::stat_matching_loss(xt.clone(), &mean, &std, w, pooled, STAT_EPS)
                } else {
                    stat_matching_loss_burn(xt.clone(), &mean, &std, w, pooled, STAT_EPS)
                };
                let lv = l.clone().into_data().try_to_vec::<f32>().unwrap()[0];
                // A non-unit upstream gradient, to check it is applied.
                let g = xt
                    .grad(&l.mul_scalar(1.5).backward())
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                (lv, g)
            };
            let ((l1, g1), (l2, g2)) = (run(true), run(false));
            // f64 sums against burn's f32 reductions over ≤ 192 values per statistic: ~1e-6 relative.
            assert!(
                (l1 - l2).abs() <= 1e-5 * l2.abs().max(1.0),
                "case {i}: loss {l1} vs burn {l2}"
            );
            let scale = g2.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = g1
                .iter()
                .zip(&g2)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                d <= 1e-5 * scale.max(1.0),
                "case {i}: gradient max abs diff {d} (largest {scale})"
            );
        }
    }
}
