//! Dense (group = 1) 2-D convolution on NCHW data: per-image im2col straight from NCHW, then one GEMM
//! `W[Cout, Cin·kh·kw] × col[Cin·kh·kw, Ho·Wo]` written directly into the NCHW output. Images run in
//! parallel; no layout conversion. 1×1 stride-1 unpadded convolutions skip im2col.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Geometry of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height and width.
    pub hw: [usize; 2],
    /// Output channels.
    pub cout: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides.
    pub strides: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Dilations.
    pub dilations: [usize; 2],
}

impl Conv2dParams {
    /// Output height and width.
    pub fn out_hw(&self) -> [usize; 2] {
        let o = |i: usize| {
            let eff = (self.kernel[i] - 1) * self.dilations[i] + 1;
            (self.hw[i] + self.pads[i] + self.pads[i + 2] - eff) / self.strides[i] + 1
        };
        [o(0), o(1)]
    }
}

/// Convolves `x` `[n, cin, h, w]` with `w` `[cout, cin, kh, kw]` plus optional `bias` `[cout]`.
/// Returns `[n, cout, ho, wo]`. The caller has validated shapes (the engine does, before calling).
pub fn conv2d_nchw(x: &[f32], w: &[f32], bias: Option<&[f32]>, p: &Conv2dParams) -> Vec<f32> {
    let [ho, wo] = p.out_hw();
    let (hwo, k) = (ho * wo, p.cin * p.kernel[0] * p.kernel[1]);
    let in_per = p.cin * p.hw[0] * p.hw[1];
    let out_per = p.cout * hwo;
    let mut out = vec![0f32; p.n * out_per];
    let pointwise = p.kernel == [1, 1] && p.strides == [1, 1] && p.pads == [0; 4];
    let threads = rayon::current_num_threads();
    // Parallel over images when there are enough of them; otherwise let the GEMM split the work.
    let par = if p.n >= threads { Parallelism::None } else { Parallelism::Rayon(threads) };
    out.par_chunks_mut(out_per).enumerate().for_each(|(b, dst)| {
        let src = &x[b * in_per..(b + 1) * in_per];
        let col_buf;
        let col: &[f32] = if pointwise {
            src
        } else {
            col_buf = im2col(src, p, ho, wo);
            &col_buf
        };
        if let Some(bias) = bias {
            for (o, row) in dst.chunks_mut(hwo).enumerate() {
                row.fill(bias[o]);
            }
        }
        // SAFETY: all pointers cover the matrices described by the sizes and strides:
        // dst is cout×hwo row-major, w is cout×k row-major, col is k×hwo row-major.
        unsafe {
            gemm(
                p.cout,
                hwo,
                k,
                dst.as_mut_ptr(),
                1,
                hwo as isize,
                bias.is_some(),
                w.as_ptr(),
                1,
                k as isize,
                col.as_ptr(),
                1,
                hwo as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    });
    out
}

/// `col[(c·kh + i)·kw + j, oy·wo + ox] = x[c, oy·sh − pt + i·dh, ox·sw − pl + j·dw]` (0 outside).
fn im2col(x: &[f32], p: &Conv2dParams, ho: usize, wo: usize) -> Vec<f32> {
    let [h, w] = p.hw;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let (pt, pl) = (p.pads[0] as isize, p.pads[1] as isize);
    let hwo = ho * wo;
    let mut col = vec![0f32; p.cin * kh * kw * hwo];
    for c in 0..p.cin {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for i in 0..kh {
            for j in 0..kw {
                let row = &mut col[((c * kh + i) * kw + j) * hwo..][..hwo];
                let dx = j as isize * dw as isize - pl;
                // Output columns whose input column is inside the image: ix = ox·sw + dx ∈ [0, w).
                let ox_lo = if dx >= 0 { 0 } else { ((-dx) as usize).div_ceil(sw) };
                let ox_hi = if (w as isize) <= dx { 0 } else { ((w as isize - dx) as usize).div_ceil(sw).min(wo) };
                for oy in 0..ho {
                    let iy = (oy * sh) as isize + (i * dh) as isize - pt;
                    if iy < 0 || iy >= h as isize || ox_lo >= ox_hi {
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    let dst = &mut row[oy * wo..][..wo];
                    if sw == 1 {
                        let s0 = (ox_lo as isize + dx) as usize;
                        dst[ox_lo..ox_hi].copy_from_slice(&src[s0..s0 + (ox_hi - ox_lo)]);
                    } else {
                        for ox in ox_lo..ox_hi {
                            dst[ox] = src[(ox as isize * sw as isize + dx) as usize];
                        }
                    }
                }
            }
        }
    }
    col
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Tensor, TensorData};

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    /// The kernel against burn's conv2d (the plain path) over strides, pads (asymmetric), dilations,
    /// 1×1 and batch sizes below and above the thread count.
    #[test]
    fn matches_burn_conv2d() {
        let device = crate::engine::device::inference();
        let cases = [
            (2, 3, [9, 7], 5, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            (1, 4, [8, 8], 6, [3, 3], [2, 2], [0, 1, 1, 0], [1, 1]),
            (3, 2, [10, 9], 4, [3, 2], [1, 2], [2, 0, 1, 2], [2, 1]),
            (4, 8, [5, 5], 3, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1]),
            (2, 5, [6, 6], 7, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1]),
            (1, 3, [7, 7], 2, [5, 5], [3, 3], [2, 2, 2, 2], [1, 1]),
        ];
        for (i, &(n, cin, hw, cout, kernel, strides, pads, dilations)) in cases.iter().enumerate() {
            let p = Conv2dParams { n, cin, hw, cout, kernel, strides, pads, dilations };
            let x = lcg(n * cin * hw[0] * hw[1], i as u64);
            let w = lcg(cout * cin * kernel[0] * kernel[1], 100 + i as u64);
            let b = lcg(cout, 200 + i as u64);
            let ours = conv2d_nchw(&x, &w, Some(&b), &p);
            let xt = Tensor::<4>::from_data(TensorData::new(x, [n, cin, hw[0], hw[1]]), &device);
            let wt = Tensor::<4>::from_data(TensorData::new(w, [cout, cin, kernel[0], kernel[1]]), &device);
            let bt = Tensor::<1>::from_data(TensorData::new(b, [cout]), &device);
            let opts = ConvOptions::new_with_padding(strides, [(pads[0], pads[2]), (pads[1], pads[3])], dilations, 1);
            let reference: Vec<f32> = conv2d(xt, wt, Some(bt), opts).into_data().try_to_vec().unwrap();
            assert_eq!(ours.len(), reference.len(), "case {i}: output size");
            let max = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Sums of ≤ 200 products of values in [-0.5, 0.5]: f32 reordering error stays far below 1e-5.
            assert!(max < 1e-5, "case {i}: max abs diff {max}");
        }
    }
}
