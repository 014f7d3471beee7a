//! Depthwise 2-D convolution (groups = input channels = output channels) as a direct kernel: each
//! `(image, channel)` plane is independent, and each kernel tap is one multiply-add of a weight with a
//! contiguous run of a row (at stride 1 the compiler vectorises it). No im2col, no GEMM: with K = kh·kw
//! (9 or 25) a GEMM spends more time packing than multiplying.
//!
//! Planes run in parallel; the weight gradient runs channels in parallel and sums each channel's images
//! in order, so every result is independent of the thread count.

use rayon::prelude::*;

use super::conv::{for_each_run, Conv2dParams};

/// `y[b, c] = bias[c] + Σ_taps w[c, tap] · shifted x[b, c]`.
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, p: &Conv2dParams) -> Vec<f32> {
    let [ho, wo] = p.out_hw();
    let (plane_in, plane_out, taps) = (p.hw[0] * p.hw[1], ho * wo, p.kernel[0] * p.kernel[1]);
    let sw = p.strides[1];
    let mut out = vec![0f32; p.n * p.cout * plane_out];
    out.par_chunks_mut(plane_out)
        .enumerate()
        .for_each(|(bc, dst)| {
            let c = bc % p.cout;
            dst.fill(bias.map_or(0.0, |b| b[c]));
            let src = &x[bc * plane_in..(bc + 1) * plane_in];
            let wc = &w[c * taps..(c + 1) * taps];
            for_each_run(p, |r| {
                let (wv, d) = (wc[r.tap], &mut dst[r.oy * wo..][r.ox_lo..r.ox_hi]);
                if sw == 1 {
                    let n = d.len();
                    d.iter_mut()
                        .zip(&src[r.x_start..r.x_start + n])
                        .for_each(|(d, s)| *d += wv * s);
                } else {
                    for (k, d) in d.iter_mut().enumerate() {
                        *d += wv * src[r.x_start + k * sw];
                    }
                }
            });
        });
    out
}

/// `dx[b, c]` from `dy[b, c]`: every tap's weighted run of `dy` added back where it was read from.
pub fn input_grad(dy: &[f32], w: &[f32], p: &Conv2dParams) -> Vec<f32> {
    let [ho, wo] = p.out_hw();
    let (plane_in, plane_out, taps) = (p.hw[0] * p.hw[1], ho * wo, p.kernel[0] * p.kernel[1]);
    let sw = p.strides[1];
    let mut dx = vec![0f32; p.n * p.cin * plane_in];
    dx.par_chunks_mut(plane_in)
        .enumerate()
        .for_each(|(bc, dst)| {
            let c = bc % p.cin;
            let src = &dy[bc * plane_out..(bc + 1) * plane_out];
            let wc = &w[c * taps..(c + 1) * taps];
            for_each_run(p, |r| {
                let (wv, s) = (wc[r.tap], &src[r.oy * wo..][r.ox_lo..r.ox_hi]);
                if sw == 1 {
                    dst[r.x_start..r.x_start + s.len()]
                        .iter_mut()
                        .zip(s)
                        .for_each(|(d, s)| *d += wv * s);
                } else {
                    for (k, s) in s.iter().enumerate() {
                        dst[r.x_start + k * sw] += wv * s;
                    }
                }
            });
        });
    dx
}

/// `dw[c, tap] = Σ_b Σ_positions dy[b, c] · shifted x[b, c]`.
pub fn weight_grad(x: &[f32], dy: &[f32], p: &Conv2dParams) -> Vec<f32> {
    let [ho, wo] = p.out_hw();
    let (plane_in, plane_out, taps) = (p.hw[0] * p.hw[1], ho * wo, p.kernel[0] * p.kernel[1]);
    let sw = p.strides[1];
    let mut dw = vec![0f32; p.cout * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dst)| {
        for b in 0..p.n {
            let bc = b * p.cout + c;
            let (src, g) = (
                &x[bc * plane_in..(bc + 1) * plane_in],
                &dy[bc * plane_out..(bc + 1) * plane_out],
            );
            for_each_run(p, |r| {
                let g = &g[r.oy * wo..][r.ox_lo..r.ox_hi];
                dst[r.tap] += if sw == 1 {
                    g.iter()
                        .zip(&src[r.x_start..r.x_start + g.len()])
                        .map(|(g, s)| g * s)
                        .sum::<f32>()
                } else {
                    g.iter()
                        .enumerate()
                        .map(|(k, g)| g * src[r.x_start + k * sw])
                        .sum::<f32>()
                };
            });
        }
    });
    dw
}
