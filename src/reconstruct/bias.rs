//! Empirical bias correction (Nagel et al. 2019, Banner et al. 2019): quantizing a layer's weights shifts
//! the mean of each of its output channels; adding the mean shift `E[y_fp − y_q]` per channel, measured
//! on the calibration data with the quantized network's own inputs, takes it back out. Layer by layer,
//! so each layer corrects what the layers before it left.

use super::cache::Batch;
use crate::error::{Error, Result};
use crate::ir::{Graph, HostTensor, Op};

/// Mean of `fp − q` per channel (axis 1) over every other axis.
pub fn channel_shift(fp: &Batch, q: &Batch) -> Vec<f32> {
    let c = fp.dims.get(1).copied().unwrap_or(1).max(1);
    let inner: usize = fp.dims.get(2..).map_or(1, |d| d.iter().product());
    let mut sum = vec![0f64; c];
    for (i, (&a, &b)) in fp.data.iter().zip(&q.data).enumerate() {
        sum[(i / inner.max(1)) % c] += (a - b) as f64;
    }
    let count = (fp.data.len() / c) as f64;
    sum.iter().map(|&s| (s / count.max(1.0)) as f32).collect()
}

/// Adds `shift` to the bias of weight layer `node` (creating the bias where the layer has none).
/// A MatMul has no bias input and is left as it is; returns whether the bias changed.
pub fn add_to_bias(g: &mut Graph, node: usize, shift: &[f32]) -> Result<bool> {
    let n = &g.nodes[node];
    if !matches!(n.op, Op::Conv(_) | Op::Gemm { .. }) {
        return Ok(false);
    }
    let name = n.name.clone();
    match n.input(2) {
        Some(b) => {
            let t = g.consts.get_mut(&b).ok_or_else(|| Error::Invalid(format!("{name}: the bias is not a constant")))?;
            let mut v = t.to_f32_vec();
            if v.len() != shift.len() {
                return Err(Error::Invalid(format!("{name}: bias has {} values for {} output channels", v.len(), shift.len())));
            }
            for (x, s) in v.iter_mut().zip(shift) {
                *x += s;
            }
            *t = HostTensor::f32(t.shape.clone(), v);
        }
        None => {
            let b = g.add_const(format!("{name}.bias_corrected"), HostTensor::f32(vec![shift.len()], shift.to_vec()));
            let inputs = &mut g.nodes[node].inputs;
            inputs.resize(2, None);
            inputs.push(Some(b));
        }
    }
    Ok(true)
}
