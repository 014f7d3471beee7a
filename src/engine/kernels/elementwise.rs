//! Per-element kernels that burn's flex backend runs as chains of ops: BatchNorm with running statistics
//! (inference-mode BN is a per-channel affine map; burn records sub, div, mul and add, each a pass and an
//! allocation forward and backward) and Relu/Clip (burn: a comparison, a mask and a masked fill per bound).
//! Here each is one pass forward and one backward, parallel over `(image, channel)` planes.

use rayon::prelude::*;

/// Elements per parallel task: enough work per task on small planes (1×1 to 7×7 late in a network).
const TASK: usize = 1 << 14;

/// `y = x·scale[c] + shift[c]` over `x` laid out as `[n, channels, plane]`.
pub fn channel_affine(x: &[f32], scale: &[f32], shift: &[f32], plane: usize) -> Vec<f32> {
    let (c, plane) = (scale.len(), plane.max(1));
    let k = (TASK / plane).max(1);
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(plane * k)
        .zip(x.par_chunks(plane * k))
        .enumerate()
        .for_each(|(t, (ys, xs))| {
            for (j, (yp, xp)) in ys.chunks_mut(plane).zip(xs.chunks(plane)).enumerate() {
                let ch = (t * k + j) % c;
                let (s, b) = (scale[ch], shift[ch]);
                yp.iter_mut().zip(xp).for_each(|(y, &x)| *y = x * s + b);
            }
        });
    y
}

/// `dx = dy·scale[c]`: the input gradient of [`channel_affine`].
pub fn channel_scale(dy: &[f32], scale: &[f32], plane: usize) -> Vec<f32> {
    let zeros = vec![0f32; scale.len()];
    channel_affine(dy, scale, &zeros, plane)
}

/// `y = min(max(x, lo), hi)` (a NaN input gives `lo`, or `hi` when `lo` is −∞).
pub fn clamp(x: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK))
        .for_each(|(y, x)| {
            y.iter_mut()
                .zip(x)
                .for_each(|(y, &x)| *y = x.max(lo).min(hi));
        });
    y
}

/// The gradient of [`clamp`]: `dy` where `lo < x ≤ hi`, else 0. The lower bound is open as in burn's
/// `relu` (no gradient at 0), the upper closed as in burn's `clamp`, so the plain path and this one agree
/// on Relu and on Clip(0, 6) wherever the input is not exactly at a bound.
pub fn clamp_grad(x: &[f32], dy: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK).zip(dy.par_chunks(TASK)))
        .for_each(|(d, (x, g))| {
            d.iter_mut()
                .zip(x.iter().zip(g))
                // A bit mask rather than `if`: the branch on the sign of a ReLU input is a coin flip that
                // the predictor loses half the time, and it kept the loop scalar (19% of ResNet20
                // distillation in a profile). `&` on the comparisons, not `&&`, keeps it branch-free.
                .for_each(|(d, (&x, &g))| {
                    let keep = 0u32.wrapping_sub(u32::from((lo < x) & (x <= hi)));
                    *d = f32::from_bits(g.to_bits() & keep);
                });
        });
    dx
}

/// Parameters of a per-tensor fake quantizer with QDrop (see [`fake_quant`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuantParams {
    /// Zero point.
    pub zero: f32,
    /// Smallest integer.
    pub qmin: f32,
    /// Largest integer.
    pub qmax: f32,
    /// QDrop: where `false`, the element passes unquantized (empty: every element is quantized).
    pub keep: std::sync::Arc<Vec<bool>>,
}

impl FakeQuantParams {
    fn quantized(&self, i: usize) -> bool {
        self.keep.is_empty() || self.keep[i]
    }
}

/// `y = s·(clamp(⌊x/s⌉ + z, qmin, qmax) − z)` (round half to even), or `x` where QDrop keeps it: one
/// pass instead of burn's dozen (divide, round, detach, add, clamp, subtract, multiply, and the QDrop mix).
pub fn fake_quant(x: &[f32], s: f32, p: &FakeQuantParams) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(TASK).zip(x.par_chunks(TASK)).enumerate().for_each(|(t, (y, x))| {
        for (j, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            *y = if p.quantized(t * TASK + j) { s * ((x / s).round_ties_even() + p.zero).clamp(p.qmin, p.qmax) - s * p.zero } else { x };
        }
    });
    y
}

/// The gradients of [`fake_quant`] with a straight-through round: `dx = dy` where the element passes or
/// its integer is inside `[qmin, qmax]`, else 0; `ds = Σ dy·(⌊x/s⌉ − x/s)` inside the range and
/// `Σ dy·(q − z)` where clamped, over the quantized elements (LSQ's step-size gradient).
pub fn fake_quant_grad(x: &[f32], dy: &[f32], s: f32, p: &FakeQuantParams) -> (Vec<f32>, f32) {
    let mut dx = vec![0f32; x.len()];
    let ds: f64 = dx
        .par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK).zip(dy.par_chunks(TASK)))
        .enumerate()
        .map(|(t, (d, (x, g)))| {
            let mut acc = 0f64;
            for (j, (d, (&x, &g))) in d.iter_mut().zip(x.iter().zip(g)).enumerate() {
                if !p.quantized(t * TASK + j) {
                    *d = g;
                    continue;
                }
                let u = x / s;
                let r = u.round_ties_even();
                let q = r + p.zero;
                if q < p.qmin {
                    acc += (g * (p.qmin - p.zero)) as f64;
                } else if q > p.qmax {
                    acc += (g * (p.qmax - p.zero)) as f64;
                } else {
                    *d = g;
                    acc += (g * (r - u)) as f64;
                }
            }
            acc
        })
        .sum();
    (dx, ds as f32)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{activation, Tensor, TensorData};

    use crate::engine::kernels::conv::tests::lcg;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// BatchNorm (running statistics) and Relu/Clip through the kernels against burn's ops, forward and
    /// input gradient (of `Σ y·r`), including 1×1 planes.
    #[test]
    fn match_burn_batch_norm_and_clamp() {
        let device = crate::engine::device::autodiff();
        for (i, dims) in [[3, 5, 7, 6], [4, 6, 1, 1], [2, 3, 2, 1]]
            .into_iter()
            .enumerate()
        {
            let n: usize = dims.iter().product();
            let c = dims[1];
            let x: Vec<f32> = lcg(n, i as u64).iter().map(|v| 8.0 * v).collect();
            let r = lcg(n, 50 + i as u64);
            let p: Vec<Vec<f32>> = (0..4).map(|k| lcg(c, 10 * k + i as u64)).collect();
            let var: Vec<f32> = p[3].iter().map(|v| v + 0.6).collect();
            let ch = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &device);
            let run = |own: bool, op: usize| -> (Vec<f32>, Vec<f32>) {
                let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), dims), &device)
                    .require_grad();
                let y = match (op, own) {
                    (0, false) => burn::tensor::module::batch_norm(
                        xt.clone(),
                        ch(&p[0]),
                        ch(&p[1]),
                        ch(&p[2]),
                        ch(&var),
                        1e-5,
                    ),
                    (0, true) => {
                        let scale: Vec<f32> = p[0]
                            .iter()
                            .zip(&var)
                            .map(|(g, v)| g / (v + 1e-5).sqrt())
                            .collect();
                        let shift: Vec<f32> = p[1]
                            .iter()
                            .zip(&p[2])
                            .zip(&scale)
                            .map(|((b, m), s)| b - m * s)
                            .collect();
                        super::super::channel_affine(xt.clone(), &scale, &shift)
                    }
                    (1, false) => activation::relu(xt.clone()),
                    (1, true) => super::super::clamp(xt.clone(), 0.0, f32::INFINITY),
                    (_, false) => xt.clone().clamp(0.0, 1.5),
                    (_, true) => super::super::clamp(xt.clone(), 0.0, 1.5),
                };
                let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), dims), &device);
                let g = xt.grad(&(y.clone() * rt).sum().backward()).unwrap();
                (host(y), host(g))
            };
            for op in 0..3 {
                let ((y1, g1), (y2, g2)) = (run(true, op), run(false, op));
                let d = |a: &[f32], b: &[f32]| {
                    a.iter()
                        .zip(b)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max)
                };
                // BN: x·(γ/σ) + (β − μγ/σ) against ((x − μ)/σ)·γ + β, values ≤ 4·|γ|/σ: a few ulps.
                assert!(
                    d(&y1, &y2) < 1e-5,
                    "case {i} op {op}: forward max abs diff {}",
                    d(&y1, &y2)
                );
                assert!(
                    d(&g1, &g2) < 1e-5,
                    "case {i} op {op}: gradient max abs diff {}",
                    d(&g1, &g2)
                );
            }
        }
    }
}
