//! Activation ranges from calibration data: min/max (ZeroQ), a percentile, or the MSE-optimal clip.

use std::collections::HashMap;

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::engine::{device, Plan};
use crate::error::{Error, Result};
use crate::ir::{Graph, Op, ValueId};

/// How an activation's range is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ActRange {
    /// Min and max over the calibration data (ZeroQ).
    MinMax,
    /// The p-th and (100−p)-th percentiles, e.g. 99.99.
    Percentile(f32),
    /// The clip of the min/max range (shrink factor 0.01..1) with the least squared quantization error.
    Mse,
}

/// Most values kept per tensor for percentile/MSE (a strided sample beyond that).
const SAMPLE: usize = 200_000;

/// The tensor whose range stands for `v`'s: for the output of an averaging op (GlobalAveragePool,
/// AveragePool, ReduceMean), possibly behind Flatten/Reshape/Identity, its input, since an average never
/// leaves the range of what it averages.
///
/// Why: distilled images produce weaker final features than real ones. On ResNet20 the pooled features
/// reach 1.34 on distilled data but 4.34 on real images, so a min/max range calibrated on them clips the
/// classifier's input (W8A8 top-1 −0.70 points); the pre-pool range (about 8) bounds it without clipping.
pub fn range_source(g: &Graph, v: ValueId) -> ValueId {
    let mut cur = v;
    while let Some(p) = g.producer(cur) {
        let n = &g.nodes[p];
        match n.op {
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => cur = n.input(0).unwrap_or(cur),
            Op::GlobalAveragePool | Op::AveragePool(_) | Op::ReduceMean { .. } => return n.input(0).unwrap_or(v),
            _ => return v,
        }
    }
    v
}

/// Ranges of the tensors `sites` over `data`, in the same order.
pub fn ranges(g: &Graph, sites: &[ValueId], data: &[f32], shape: [usize; 4], method: ActRange, bits: u32) -> Result<Vec<(f32, f32)>> {
    if data.is_empty() {
        return Err(Error::Invalid("calibration needs at least one image".into()));
    }
    let sites: Vec<ValueId> = sites.iter().map(|&v| range_source(g, v)).collect();
    let sites = sites.as_slice();
    let plan = Plan::new(g.clone(), &device::inference())?;
    let per: usize = shape[1..].iter().product();
    let mut minmax: HashMap<ValueId, (f32, f32)> = HashMap::new();
    let mut samples: HashMap<ValueId, Vec<f32>> = HashMap::new();
    for chunk in data.chunks(per * 32) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, shape[1], shape[2], shape[3]]), plan.device());
        let out = plan.run(vec![crate::engine::Value::float(crate::engine::DynTensor::R4(x))], sites)?;
        for &s in sites {
            let v = out.taps.get(&s).ok_or_else(|| Error::Invalid(format!("tensor '{}' was not computed", g.name(s))))?.to_host()?.to_f32_vec();
            let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
            let e = minmax.entry(s).or_insert((f32::INFINITY, f32::NEG_INFINITY));
            *e = (e.0.min(lo), e.1.max(hi));
            if method != ActRange::MinMax {
                let step = (v.len() / SAMPLE).max(1);
                samples.entry(s).or_default().extend(v.iter().step_by(step));
            }
        }
    }
    sites
        .iter()
        .map(|s| {
            let (lo, hi) = minmax[s];
            Ok(match method {
                ActRange::MinMax => (lo, hi),
                ActRange::Percentile(p) => {
                    let mut v = samples.remove(s).unwrap_or_default();
                    v.sort_by(|a, b| a.total_cmp(b));
                    let at = |q: f32| v[(((v.len() - 1) as f32) * q / 100.0).round() as usize];
                    (at(100.0 - p), at(p))
                }
                ActRange::Mse => {
                    let v = samples.remove(s).unwrap_or_default();
                    let p = super::quantizer::mse_params(&v, lo, hi, bits);
                    let (a, b) = p.bounds();
                    (a.max(lo), b.min(hi))
                }
            })
        })
        .collect()
}
