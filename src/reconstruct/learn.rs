//! Learning one unit: AdaRound's rounding variables for every weight in it and, with LSQ, the step sizes
//! of its low-bit activation quantizers, against the unit's FP32 output, with QDrop.
//!
//! - Weights: `W̃ = s·(clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) − z)` with `h(V) = clamp(σ(V)(ζ−γ)+γ, 0, 1)`,
//!   ζ = 1.1, γ = −0.1; V starts where h(V) equals the fractional part of W/s (so the soft weight starts
//!   at W itself) and ends hardened to `h = [V ≥ 0]`. The scale and zero point of each channel stay as
//!   calibrated: only the rounding direction of each weight is learned, so the result is on the same grid.
//! - Loss: `Σ_c (ŷ − y)²` averaged over the other axes (BRECQ's `lp_loss`), plus after a warm-up (20% of
//!   the iterations) `λ Σ (1 − |2h(V) − 1|^β)` with β annealed linearly 20 → 2 (over all the remaining
//!   iterations, or their first part in short runs, [`super::default_anneal`]), which pushes every h to
//!   0 or 1.
//! - Activations (LSQ): the quantizer `s·(clamp(⌊x/s⌉ + z, qmin, qmax) − z)` with a straight-through
//!   round; its gradient with respect to `s` is LSQ's. Only quantizers below 8 bits are learned: 8-bit
//!   ones lose little, and ranges fitted to distilled data would clip real inputs.
//! - QDrop: each element of every activation quantizer's output is the quantized value with probability
//!   `p`, else the FP32 value, and the unit's inputs mix the quantized and FP32 networks' tensors the
//!   same way, so the learned rounding does not rely on its inputs being exact.

use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};

use super::blocks::Unit;
use super::cache::{Batch, Live};
use super::ReconstructConfig;
use crate::distill::init::SplitMix64;
use crate::distill::optim::Adam;
use crate::engine::kernels::{self, FakeQuantParams};
use crate::engine::{DynTensor, Plan, Value};
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, Op, ValueId};
use crate::quant::WeightQuant;

const ZETA: f32 = 1.1;
const GAMMA: f32 = -0.1;

/// `h(V)` on the host, as [`Rounding::soft`] computes it on the device.
fn rectified_sigmoid(v: f32) -> f32 {
    (1.0 / (1.0 + (-v).exp()) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
}

/// Rounding variables of one weight tensor.
pub struct Rounding {
    /// The weight constant in the quantized graph.
    pub value: ValueId,
    shape: Vec<usize>,
    floor: Vec<f32>,
    scale: Vec<f32>,
    zero: Vec<f32>,
    qmin: f32,
    qmax: f32,
    v: Vec<f32>,
    adam: Adam,
}

impl Rounding {
    /// Variables for the FP32 weight `w` quantized as `wq` says, starting at h(V) = frac(W/s).
    pub fn new(w: &[f32], shape: &[usize], wq: &WeightQuant) -> Self {
        let n = shape.get(wq.axis).copied().unwrap_or(1).max(1);
        let inner: usize = shape.get(wq.axis + 1..).map_or(1, |s| s.iter().product());
        let p = |i: usize| &wq.qparams[(i / inner.max(1)) % n];
        let (mut floor, mut scale, mut zero, mut v) = (Vec::with_capacity(w.len()), Vec::with_capacity(w.len()), Vec::with_capacity(w.len()), Vec::with_capacity(w.len()));
        for (i, &x) in w.iter().enumerate() {
            let q = p(i);
            let u = x / q.scale;
            let f = u.floor();
            let rest = (u - f).clamp(0.0, 1.0);
            floor.push(f);
            scale.push(q.scale);
            zero.push(q.zero_point as f32);
            // σ(V)(ζ−γ)+γ = rest  ⇔  V = −ln((ζ−γ)/(rest−γ) − 1).
            v.push(-(((ZETA - GAMMA) / (rest - GAMMA)) - 1.0).ln());
        }
        let (qmin, qmax) = wq.qparams.first().map_or((-128.0, 127.0), |q| (q.qmin as f32, q.qmax as f32));
        let len = w.len();
        Self { value: wq.value, shape: shape.to_vec(), floor, scale, zero, qmin, qmax, v, adam: Adam::new(len) }
    }

    /// `⌊W/s⌋`, `s` and `z` per weight on `device`: constant while the unit learns, so uploaded once.
    fn grid(&self, device: &Device) -> [Tensor<1>; 3] {
        [&self.floor, &self.scale, &self.zero].map(|d| Tensor::from_data(TensorData::new(d.clone(), [d.len()]), device))
    }

    /// The tracked variables, h(V), and the soft-rounded weight shaped like the weight, on the grid's
    /// device.
    fn soft(&self, grid: &[Tensor<1>; 3]) -> Result<(Tensor<1>, Tensor<1>, DynTensor)> {
        let [floor, scale, zero] = grid.clone();
        let v = Tensor::<1>::from_data(TensorData::new(self.v.clone(), [self.v.len()]), &floor.device()).require_grad();
        let h = sigmoid(v.clone()).mul_scalar(ZETA - GAMMA).add_scalar(GAMMA).clamp(0.0, 1.0);
        let w = floor.add(h.clone()).add(zero.clone()).clamp(self.qmin, self.qmax).sub(zero).mul(scale);
        Ok((v, h, DynTensor::R1(w).reshape(&self.shape)?))
    }

    /// The hardened weight, dequantized: exactly `s·(q − z)` for the integer `q` export writes.
    pub fn hard(&self) -> Vec<f32> {
        (0..self.v.len())
            .map(|i| {
                let up = if self.v[i] >= 0.0 { 1.0 } else { 0.0 };
                let q = (self.floor[i] + up + self.zero[i]).clamp(self.qmin, self.qmax);
                self.scale[i] * (q as i32 - self.zero[i] as i32) as f32
            })
            .collect()
    }
}

/// A per-tensor activation quantizer inside the unit.
pub struct ActStep {
    /// Its node in the quantized graph.
    pub node: usize,
    /// Current step size.
    pub scale: f32,
    zero: f32,
    qmin: f32,
    qmax: f32,
    learn: bool,
    adam: Adam,
}

impl ActStep {
    /// The quantizer of node `node`, when it is a per-tensor FakeQuant; `learn` its step size.
    pub fn of(g: &Graph, node: usize, learn_below: u32) -> Option<Self> {
        let Op::FakeQuant(fq) = &g.nodes[node].op else { return None };
        if fq.axis.is_some() || fq.scale.len() != 1 {
            return None;
        }
        let levels = (fq.qmax - fq.qmin + 1) as u32;
        let learn = levels < (1u32 << learn_below);
        Some(Self { node, scale: fq.scale[0], zero: fq.zero_point[0] as f32, qmin: fq.qmin as f32, qmax: fq.qmax as f32, learn, adam: Adam::new(1) })
    }
}

/// Fake quantization with a straight-through round: gradients pass to `x` inside the grid's range and
/// to the step size as LSQ defines them. Where `keep` (QDrop) is false the FP32 value passes. One fused
/// kernel on the CPU device, burn's ops elsewhere (the reference it is tested against).
fn ste_fake_quant(x: Tensor<1>, scale: Tensor<1>, a: &ActStep, keep: Option<Vec<bool>>) -> Tensor<1> {
    if crate::engine::device::own_kernels(&x.device()) {
        let p = FakeQuantParams { zero: a.zero, qmin: a.qmin, qmax: a.qmax, keep: Arc::new(keep.unwrap_or_default()) };
        return kernels::fake_quant(x, scale, p);
    }
    let device = x.device();
    let n = x.dims()[0];
    let mask = keep.map(|k| Tensor::<1>::from_data(TensorData::new(k.into_iter().map(f32::from).collect::<Vec<_>>(), [n]), &device));
    ste_fake_quant_burn(x, scale, a, mask)
}

/// [`ste_fake_quant`] in burn's ops; `mask` is 1 where the element is quantized.
fn ste_fake_quant_burn(x: Tensor<1>, scale: Tensor<1>, a: &ActStep, mask: Option<Tensor<1>>) -> Tensor<1> {
    let n = x.dims()[0];
    let s = scale.expand([n]);
    let u = x.clone().div(s.clone());
    let r = u.clone().add(u.clone().round().sub(u).detach());
    let q = r.add_scalar(a.zero).clamp(a.qmin, a.qmax).sub_scalar(a.zero).mul(s);
    match mask {
        Some(m) => x.clone().add(q.sub(x).mul(m)),
        None => q,
    }
}

/// `n` draws of Bernoulli(p) from the seeded generator, 16 bits each (four per 64-bit draw: the masks
/// cover every activation element at every iteration, so this is on the hot path).
fn bernoulli(n: usize, p: f32, rng: &mut SplitMix64) -> Vec<bool> {
    let threshold = (p.clamp(0.0, 1.0) * 65536.0) as u32;
    let mut out = Vec::with_capacity(n + 3);
    while out.len() < n {
        let r = rng.next_u64();
        for k in 0..4 {
            out.push((((r >> (16 * k)) & 0xFFFF) as u32) < threshold);
        }
    }
    out.truncate(n);
    out
}

/// What learning a unit changed, for the caller to write into the quantized model.
pub struct Learned {
    /// Dequantized hardened weights per weight constant.
    pub weights: Vec<(ValueId, Vec<f32>)>,
    /// Learned step sizes per FakeQuant node.
    pub scales: Vec<(usize, f32)>,
    /// Share of the roundings still undecided (`h(V)` within (0.05, 0.95)) when they were hardened.
    pub undecided: f64,
}

/// Learns the rounding of every weight in `unit` and, when configured, the step sizes of its low-bit
/// activation quantizers, on `plan` (an autodiff device, the quantized graph as it is now).
#[allow(clippy::too_many_arguments)]
pub fn learn_unit(
    plan: &Plan,
    unit: &Unit,
    mut roundings: Vec<Rounding>,
    xq: &Live,
    xfp: &Live,
    target: &[Batch],
    cfg: &ReconstructConfig,
    seed: u64,
    step: &mut dyn FnMut(usize),
) -> Result<Learned> {
    let g = plan.graph();
    let device = plan.device().clone();
    let learn_acts = cfg.learn_act_scales;
    let mut acts: HashMap<usize, ActStep> = unit.nodes.clone().filter_map(|i| ActStep::of(g, i, if learn_acts { 8 } else { 0 })).map(|a| (a.node, a)).collect();
    let s0: HashMap<usize, f32> = acts.iter().map(|(&k, a)| (k, a.scale)).collect();
    let drop = cfg.qdrop.filter(|p| *p < 1.0);
    let mut rng = SplitMix64::new(seed);
    let n = xq.n;
    let batch = cfg.batch.clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    let mut at = n;
    let iters = cfg.iters.max(1);
    let warm = (cfg.warmup * iters as f32) as usize;
    let (round_lr, lambda, anneal) = (cfg.round_lr(), cfg.lambda(), cfg.anneal());
    let grids: Vec<[Tensor<1>; 3]> = roundings.iter().map(|r| r.grid(&device)).collect();
    for it in 0..iters {
        // The next minibatch from a fresh shuffle each epoch.
        if at + batch > n {
            for i in (1..n).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            at = 0;
        }
        let idx = &order[at..at + batch];
        at += batch;

        let mut inputs = Vec::with_capacity(unit.inputs.len());
        for &v in &unit.inputs {
            let (dims, mut q) = xq.get(g, v)?.rows(idx);
            if let Some(p) = drop {
                let (_, f) = xfp.get(g, v)?.rows(idx);
                for ((a, b), quantized) in q.iter_mut().zip(f).zip(bernoulli(dims.iter().product(), p, &mut rng)) {
                    if !quantized {
                        *a = b;
                    }
                }
            }
            inputs.push((v, Value::float(DynTensor::from_vec(q, &dims, &device)?)));
        }
        let mut overrides = HashMap::new();
        let mut soft = Vec::with_capacity(roundings.len());
        for (r, grid) in roundings.iter().zip(&grids) {
            let (v, h, w) = r.soft(grid)?;
            overrides.insert(r.value, Value::float(w));
            soft.push((v, h));
        }
        let scales: HashMap<usize, Tensor<1>> = acts
            .iter()
            .map(|(&k, a)| {
                let t = Tensor::<1>::from_data(TensorData::new(vec![a.scale], [1]), &device);
                (k, if a.learn { t.require_grad() } else { t })
            })
            .collect();
        let mut hook = |i: usize, _: &Node, ins: &[Option<Value>]| -> Option<Result<Vec<Value>>> {
            let a = acts.get(&i)?;
            let Some(Value::F(x, shape)) = ins.first().and_then(|v| v.clone()) else { return None };
            let dims = x.dims();
            let flat = x.into_flat();
            let keep = drop.map(|p| bernoulli(flat.dims()[0], p, &mut rng));
            let y = ste_fake_quant(flat, scales[&i].clone(), a, keep);
            Some(DynTensor::R1(y).reshape(&dims).map(|t| vec![Value::F(t, shape)]))
        };
        let outs = plan.run_nodes(inputs, unit.nodes.clone(), &overrides, &unit.outputs, Some(&mut hook))?;
        let mut loss: Option<Tensor<1>> = None;
        for ((o, t), &id) in outs.into_iter().zip(target).zip(&unit.outputs) {
            let Value::F(y, _) = o else { return Err(Error::Invalid(format!("reconstruction: '{}' is not a float tensor", g.name(id)))) };
            let dims = y.dims();
            let (_, tv) = t.rows(idx);
            let denom = (dims.iter().product::<usize>() / dims.get(1).copied().unwrap_or(1).max(1)).max(1) as f32;
            let tt = Tensor::<1>::from_data(TensorData::new(tv, [y.numel()]), &device);
            let d = y.into_flat().sub(tt);
            let term = d.clone().mul(d).sum().div_scalar(denom);
            loss = Some(match loss {
                Some(l) => l.add(term),
                None => term,
            });
        }
        let Some(mut loss) = loss else { return Err(Error::Invalid("reconstruction: the unit has no output".into())) };
        if it >= warm && lambda > 0.0 {
            let t = ((it - warm) as f32 / ((iters - warm).max(1) as f32 * anneal)).min(1.0);
            let beta = cfg.beta.1 + (cfg.beta.0 - cfg.beta.1) * (1.0 - t);
            for (_, h) in &soft {
                let reg = h.clone().mul_scalar(2.0).sub_scalar(1.0).abs().powf_scalar(beta).neg().add_scalar(1.0).sum().mul_scalar(lambda);
                loss = loss.add(reg);
            }
        }
        let grads = loss.backward();
        for (r, (v, _)) in roundings.iter_mut().zip(&soft) {
            if let Some(gv) = v.grad(&grads) {
                let gv = host(gv.into_data())?;
                r.adam.step(&mut r.v, &gv, round_lr);
            }
        }
        // LSQ's step sizes follow a cosine schedule to zero, relative to where each started.
        let lr = 0.5 * (1.0 + (std::f32::consts::PI * it as f32 / iters as f32).cos()) * cfg.scale_lr;
        for (k, t) in &scales {
            let a = acts.get_mut(k).ok_or_else(|| Error::Invalid("reconstruction: lost a quantizer".into()))?;
            if !a.learn {
                continue;
            }
            if let Some(gs) = t.grad(&grads) {
                let gs = host(gs.into_data())?;
                let mut s = [a.scale];
                a.adam.step(&mut s, &gs, lr * s0[k]);
                a.scale = s[0].max(s0[k] * 1e-3);
            }
        }
        step(it + 1);
    }
    let (mut open, mut all) = (0usize, 0usize);
    for r in &roundings {
        open += r.v.iter().filter(|&&v| (2.0 * rectified_sigmoid(v) - 1.0).abs() < 0.9).count();
        all += r.v.len();
    }
    Ok(Learned {
        undecided: open as f64 / all.max(1) as f64,
        weights: roundings.iter().map(|r| (r.value, r.hard())).collect(),
        scales: acts.values().filter(|a| a.learn).map(|a| (a.node, a.scale)).collect(),
    })
}

fn host(d: TensorData) -> Result<Vec<f32>> {
    d.try_into_vec::<f32>().map_err(|e| Error::Invalid(format!("reading a gradient: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize_per_channel, WeightRange};

    fn layer(w: &[f32], channels: usize, bits: u32) -> WeightQuant {
        let (_, qparams) = quantize_per_channel(w, channels, bits, WeightRange::MinMax);
        WeightQuant { layer: "l".into(), node: 0, value: 7, bits, axis: 0, params: w.len(), qparams, bias: None }
    }

    fn host_of(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn soft_weight_starts_at_the_fp32_weight_and_hardens_onto_the_grid() {
        let w: Vec<f32> = (0..24).map(|i| ((i as f32) * 0.73).sin() * (1.0 + (i / 6) as f32)).collect();
        let wq = layer(&w, 4, 4);
        let r = Rounding::new(&w, &[4, 6], &wq);
        let device = crate::engine::device::autodiff();
        let (_, _, soft) = r.soft(&r.grid(&device)).unwrap();
        let soft = host_of(soft.into_flat().detach());
        // Exactly W where W is inside the grid's range; the channel's extremes, which the zero point's
        // rounding can push up to half a step outside, are clamped to it.
        for (i, (a, b)) in soft.iter().zip(&w).enumerate() {
            let p = wq.qparams[i / 6];
            let (lo, hi) = p.bounds();
            let tol = if (lo..=hi).contains(b) { 1e-5 } else { 0.5 * p.scale + 1e-6 };
            assert!((a - b).abs() <= tol, "soft {a} vs w {b}");
        }
        // Hardened: on each channel's grid, within one step of the weight, and the integers round-trip.
        for (i, (&h, &x)) in r.hard().iter().zip(&w).enumerate() {
            let p = wq.qparams[i / 6];
            let q = p.quantize(h);
            assert_eq!(p.dequantize(q), h, "not on the grid");
            assert!((h - x).abs() <= p.scale * 1.0001, "{h} is more than a step from {x}");
        }
    }

    #[test]
    fn straight_through_fake_quant_has_lsq_gradients() {
        let device = crate::engine::device::autodiff();
        let a = ActStep { node: 0, scale: 0.5, zero: 0.0, qmin: -8.0, qmax: 7.0, learn: true, adam: Adam::new(1) };
        // 0.6 → in range (round 1); 10 → clipped at qmax 7 (3.5).
        let x = Tensor::<1>::from_data(TensorData::new(vec![0.6f32, 10.0], [2]), &device).require_grad();
        let s = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &device).require_grad();
        let y = ste_fake_quant_burn(x.clone(), s.clone(), &a, None);
        assert_eq!(host_of(y.clone().detach()), vec![0.5, 3.5]);
        let grads = y.sum().backward();
        // d/dx: 1 inside the range, 0 where clipped; d/ds: (round(x/s) − x/s) + (qmax − z) = (1 − 1.2) + 7.
        assert_eq!(host_of(x.grad(&grads).unwrap()), vec![1.0, 0.0]);
        let gs = host_of(s.grad(&grads).unwrap())[0];
        assert!((gs - 6.8).abs() < 1e-5, "{gs}");
    }

    /// The fused kernel gives burn's values and gradients, with and without a QDrop mask.
    #[test]
    fn fused_fake_quant_matches_burn() {
        let device = crate::engine::device::autodiff();
        let n = 3000;
        let xs: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 3.0 + 0.01).collect();
        let r: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
        let a = ActStep { node: 0, scale: 0.3, zero: -3.0, qmin: -8.0, qmax: 7.0, learn: true, adam: Adam::new(1) };
        for keep in [None, Some((0..n).map(|i| i % 3 != 0).collect::<Vec<bool>>())] {
            let run = |fused: bool| {
                let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device).require_grad();
                let s = Tensor::<1>::from_data(TensorData::new(vec![0.3f32], [1]), &device).require_grad();
                let y = if fused {
                    kernels::fake_quant(x.clone(), s.clone(), FakeQuantParams { zero: a.zero, qmin: a.qmin, qmax: a.qmax, keep: Arc::new(keep.clone().unwrap_or_default()) })
                } else {
                    let m = keep.clone().map(|k| Tensor::<1>::from_data(TensorData::new(k.into_iter().map(f32::from).collect::<Vec<_>>(), [n]), &device));
                    ste_fake_quant_burn(x.clone(), s.clone(), &a, m)
                };
                let rt = Tensor::<1>::from_data(TensorData::new(r.clone(), [n]), &device);
                let grads = y.clone().mul(rt).sum().backward();
                (host_of(y.detach()), host_of(x.grad(&grads).unwrap()), host_of(s.grad(&grads).unwrap())[0])
            };
            let (fy, fdx, fds) = run(true);
            let (by, bdx, bds) = run(false);
            for i in 0..n {
                assert!((fy[i] - by[i]).abs() < 1e-5, "y[{i}] {} vs {}", fy[i], by[i]);
                assert!((fdx[i] - bdx[i]).abs() < 1e-6, "dx[{i}] {} vs {}", fdx[i], bdx[i]);
            }
            assert!((fds - bds).abs() <= 1e-3 * bds.abs().max(1.0), "ds {fds} vs {bds}");
        }
    }
}
