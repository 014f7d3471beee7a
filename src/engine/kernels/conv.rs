//! 2-D convolution on NCHW data, dense and grouped: forward, gradient to the input and gradient to the
//! weight, on host slices.
//!
//! - Forward: per image and group, im2col straight from NCHW, then one GEMM
//!   `W[Cout/g, Cin/g·kh·kw] × col[Cin/g·kh·kw, Ho·Wo]` written directly into the NCHW output. 1×1
//!   stride-1 unpadded convolutions skip im2col.
//! - Input gradient: `col = Wᵀ·dy` per image and group, then col2im (the scatter-add inverse of im2col).
//! - Weight gradient: `dW += dy·colᵀ` over the images of a fixed-size chunk, then the chunks' partial sums
//!   added in chunk order, so the bits do not depend on the thread count.
//!
//! Depthwise convolution (one input channel per group, one output channel per group) goes to
//! [`super::depthwise`] instead: a GEMM with K = kh·kw does not pay for its packing.
//!
//! Images run in parallel when there are at least as many as threads; otherwise the GEMM splits the work.

use std::borrow::Cow;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::prepared::{self, Use, WeightKey};
use super::{depthwise, direct, winograd};

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
    /// Groups: `cin` and `cout` are both multiples of it; the weight is `[cout, cin/groups, kh, kw]`.
    pub groups: usize,
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

    /// One input and one output channel per group.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.cin && self.groups == self.cout
    }

    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pads == [0; 4]
    }

    /// Input channels, output channels and GEMM depth (`cin/g·kh·kw`) of one group.
    fn per_group(&self) -> (usize, usize, usize) {
        let cin_g = self.cin / self.groups;
        (
            cin_g,
            self.cout / self.groups,
            cin_g * self.kernel[0] * self.kernel[1],
        )
    }

    /// Elements of one input image, one output image, one output plane.
    fn sizes(&self) -> (usize, usize, usize) {
        let [ho, wo] = self.out_hw();
        (
            self.cin * self.hw[0] * self.hw[1],
            self.cout * ho * wo,
            ho * wo,
        )
    }
}

/// A matrix inside a slice: element `(r, c)` at `r·row_stride + c·col_stride`.
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols × rows` matrix stored in `data`.
    fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst[m×n]` (row-major) `= lhs·rhs`, or `+= lhs·rhs` when `accumulate`.
fn matmul(dst: &mut [f32], lhs: &Mat, rhs: &Mat, accumulate: bool, par: Parallelism) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k && dst.len() >= m * n && lhs.fits() && rhs.fits(),
        "matmul: operands do not match"
    );
    // SAFETY: the assert above checks that every element the sizes and strides address lies inside the
    // slices; dst is written as m×n row-major and does not alias the (shared, immutable) operands.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Parallel over images when there are at least as many as threads (then each GEMM runs on one
/// thread); otherwise the GEMM splits its work.
fn gemm_parallelism(images: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if images >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// One contiguous run of the convolution window over an input plane: for kernel tap `tap = i·kw + j`
/// and output row `oy`, output columns `ox_lo..ox_hi` read the input at `x_start + (ox − ox_lo)·sw`.
/// Output positions whose input lies in the padding are left out.
pub(super) struct Run {
    pub tap: usize,
    pub oy: usize,
    pub ox_lo: usize,
    pub ox_hi: usize,
    pub x_start: usize,
}

/// Calls `f` for every run of one `h × w` input plane (the index arithmetic shared by im2col, col2im and
/// the depthwise kernels).
pub(super) fn for_each_run(p: &Conv2dParams, mut f: impl FnMut(Run)) {
    let [h, w] = p.hw;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let [ho, wo] = p.out_hw();
    let (pt, pl) = (p.pads[0] as isize, p.pads[1] as isize);
    for i in 0..kh {
        for j in 0..kw {
            let dx = j as isize * dw as isize - pl;
            // Output columns whose input column is inside the image: ix = ox·sw + dx ∈ [0, w).
            let ox_lo = if dx >= 0 {
                0
            } else {
                ((-dx) as usize).div_ceil(sw)
            };
            let ox_hi = if (w as isize) <= dx {
                0
            } else {
                ((w as isize - dx) as usize).div_ceil(sw).min(wo)
            };
            if ox_lo >= ox_hi {
                continue;
            }
            for oy in 0..ho {
                let iy = (oy * sh) as isize + (i * dh) as isize - pt;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let x_start = iy as usize * w + (ox_lo as isize * sw as isize + dx) as usize;
                f(Run {
                    tap: i * kw + j,
                    oy,
                    ox_lo,
                    ox_hi,
                    x_start,
                });
            }
        }
    }
}

/// `col[(c·kh + i)·kw + j, oy·wo + ox] = x[c, oy·sh − pt + i·dh, ox·sw − pl + j·dw]` (0 outside), for
/// the `channels` planes in `x`.
fn im2col(x: &[f32], channels: usize, p: &Conv2dParams) -> Vec<f32> {
    let [ho, wo] = p.out_hw();
    let (hwo, taps, plane) = (ho * wo, p.kernel[0] * p.kernel[1], p.hw[0] * p.hw[1]);
    let sw = p.strides[1];
    let mut col = vec![0f32; channels * taps * hwo];
    for (c, rows) in col.chunks_mut(taps * hwo).enumerate() {
        let src = &x[c * plane..(c + 1) * plane];
        for_each_run(p, |r| {
            let dst = &mut rows[r.tap * hwo + r.oy * wo..][r.ox_lo..r.ox_hi];
            if sw == 1 {
                dst.copy_from_slice(&src[r.x_start..r.x_start + dst.len()]);
            } else {
                for (k, d) in dst.iter_mut().enumerate() {
                    *d = src[r.x_start + k * sw];
                }
            }
        });
    }
    col
}

/// The GEMM right-hand side of one group's `channels` input planes: the planes themselves for a pointwise
/// convolution, else their [`im2col`].
fn columns<'a>(x: &'a [f32], channels: usize, p: &Conv2dParams) -> Cow<'a, [f32]> {
    if p.pointwise() {
        Cow::Borrowed(x)
    } else {
        Cow::Owned(im2col(x, channels, p))
    }
}

/// The adjoint of [`im2col`]: adds every column entry back into the input position it was read from.
fn col2im_add(col: &[f32], channels: usize, p: &Conv2dParams, dx: &mut [f32]) {
    let [ho, wo] = p.out_hw();
    let (hwo, taps, plane) = (ho * wo, p.kernel[0] * p.kernel[1], p.hw[0] * p.hw[1]);
    let sw = p.strides[1];
    for c in 0..channels {
        let rows = &col[c * taps * hwo..(c + 1) * taps * hwo];
        let dst = &mut dx[c * plane..(c + 1) * plane];
        for_each_run(p, |r| {
            let src = &rows[r.tap * hwo + r.oy * wo..][r.ox_lo..r.ox_hi];
            if sw == 1 {
                dst[r.x_start..r.x_start + src.len()]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, s)| *d += s);
            } else {
                for (k, s) in src.iter().enumerate() {
                    dst[r.x_start + k * sw] += s;
                }
            }
        });
    }
}

/// Convolves `x` `[n, cin, h, w]` with `w` `[cout, cin/groups, kh, kw]` plus optional `bias` `[cout]`.
/// Returns `[n, cout, ho, wo]`. The caller has validated shapes (the engine does, before calling).
pub fn conv2d_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, p: &Conv2dParams) -> Vec<f32> {
    conv2d_forward_fused(x, w, bias, &Epilogue::NONE, p)
}

/// What an inference convolution does to its output before handing it on: add a residual of the
/// output's shape, then clamp (a following Relu, Clip or residual Add fused in). Done image by image
/// right after that image's GEMM, while the output is still in cache, instead of as separate passes
/// over the whole batch that each allocate a fresh activation.
pub struct Epilogue<'a> {
    /// Added elementwise, `[n, cout, ho, wo]`.
    pub residual: Option<&'a [f32]>,
    /// Lower clamp bound (`-inf`: none).
    pub lo: f32,
    /// Upper clamp bound (`inf`: none).
    pub hi: f32,
}

impl Epilogue<'_> {
    /// Nothing after the convolution.
    pub const NONE: Epilogue<'static> = Epilogue { residual: None, lo: f32::NEG_INFINITY, hi: f32::INFINITY };

    /// Whether it clamps (either bound finite).
    pub(super) fn clamps(&self) -> bool {
        self.lo > f32::NEG_INFINITY || self.hi < f32::INFINITY
    }

    /// Whether it does anything: a residual or a clamp.
    pub(super) fn is_some(&self) -> bool {
        self.residual.is_some() || self.clamps()
    }

    pub(super) fn apply(&self, dst: &mut [f32], image: usize) {
        let clamps = self.clamps();
        match self.residual {
            Some(r) => {
                let r = &r[image * dst.len()..(image + 1) * dst.len()];
                for (d, r) in dst.iter_mut().zip(r) {
                    *d = (*d + r).max(self.lo).min(self.hi);
                }
            }
            None if clamps => dst.iter_mut().for_each(|d| *d = d.max(self.lo).min(self.hi)),
            None => {}
        }
    }
}

/// [`conv2d_forward`] followed by `epilogue`; `epilogue.residual`, when given, has the output's length.
/// Dense convolutions other than the plain pointwise ones go to the direct AVX-512 kernel
/// ([`super::direct`]) where the CPU has it and `ZEROQ_DIRECT_CONV=0` does not turn it off; everything
/// else to im2col + GEMM (or the depthwise kernel).
///
/// 3×3 stride-1 convolutions run as Winograd F(2×2, 3×3) ([`super::winograd`]), which rounds
/// differently from the direct sum (about 1e-7 relative).
pub fn conv2d_forward_fused(x: &[f32], w: &[f32], bias: Option<&[f32]>, epilogue: &Epilogue, p: &Conv2dParams) -> Vec<f32> {
    conv2d_forward_keyed(x, w, None, bias, epilogue, p, true)
}

/// [`conv2d_forward_fused`] with the weight's identity, when the caller has one: the direct kernel's
/// packed weight is then built once per weight tensor ([`super::prepared`]) instead of on every call.
/// `winograd`: whether Winograd may run it. Inference plans allow it; the autodiff path (distillation,
/// reconstruction) does not: it measured no reliably faster there (ResNet20 distillation 37–46 against
/// 42–49 ms per iteration, 3 runs each), and its rounding changes the optimisation's trajectory and
/// with it where the early stop fires.
pub(super) fn conv2d_forward_keyed(
    x: &[f32],
    w: &[f32],
    key: Option<&WeightKey>,
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
    p: &Conv2dParams,
    winograd: bool,
) -> Vec<f32> {
    if direct::enabled() && direct::eligible(p) {
        let winograd = winograd && winograd::eligible(p);
        let prepared = prepared::get_or_build(key, p, Use::Forward { winograd }, || direct::prepare_with(w, p, winograd));
        if let Some(out) = prepared.and_then(|pr| direct::run(x, &pr, bias, epilogue, p.n)) {
            return out;
        }
    }
    conv2d_forward_fused_im2col(x, w, bias, epilogue, p)
}

/// [`conv2d_forward_fused`] without the direct kernel: depthwise, or im2col + GEMM per image and group.
pub(super) fn conv2d_forward_fused_im2col(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
    p: &Conv2dParams,
) -> Vec<f32> {
    let (in_per, out_per, hwo) = p.sizes();
    if p.is_depthwise() {
        if direct::enabled() {
            if let Some(out) = direct::depthwise_same(x, w, bias, epilogue, p) {
                return out;
            }
        }
        let mut out = depthwise::forward(x, w, bias, p);
        out.par_chunks_mut(out_per).enumerate().for_each(|(b, dst)| epilogue.apply(dst, b));
        return out;
    }
    let (cin_g, cout_g, k) = p.per_group();
    let plane_in = p.hw[0] * p.hw[1];
    let par = gemm_parallelism(p.n);
    let mut out = vec![0f32; p.n * out_per];
    out.par_chunks_mut(out_per)
        .enumerate()
        .for_each(|(b, dst)| {
            let src = &x[b * in_per..(b + 1) * in_per];
            if let Some(bias) = bias {
                for (o, row) in dst.chunks_mut(hwo).enumerate() {
                    row.fill(bias[o]);
                }
            }
            for g in 0..p.groups {
                let col = columns(
                    &src[g * cin_g * plane_in..(g + 1) * cin_g * plane_in],
                    cin_g,
                    p,
                );
                let wg = Mat::rows(&w[g * cout_g * k..(g + 1) * cout_g * k], cout_g, k);
                matmul(
                    &mut dst[g * cout_g * hwo..(g + 1) * cout_g * hwo],
                    &wg,
                    &Mat::rows(&col, k, hwo),
                    bias.is_some(),
                    par,
                );
            }
            epilogue.apply(dst, b);
        });
    out
}

/// Gradient of the convolution with respect to its input: `dy` `[n, cout, ho, wo]` and the weight give
/// `dx` `[n, cin, h, w]`.
pub fn conv2d_input_grad(dy: &[f32], w: &[f32], p: &Conv2dParams) -> Vec<f32> {
    conv2d_input_grad_keyed(dy, w, None, p)
}

/// [`conv2d_input_grad`] with the weight's identity (see [`conv2d_forward_keyed`]).
pub(super) fn conv2d_input_grad_keyed(dy: &[f32], w: &[f32], key: Option<&WeightKey>, p: &Conv2dParams) -> Vec<f32> {
    if direct::enabled() && direct::eligible(p) {
        let prepared = prepared::get_or_build(key, p, Use::InputGrad, || direct::prepare_input_grad(w, p));
        if let Some(dx) = prepared.and_then(|pr| direct::run(dy, &pr, None, &Epilogue::NONE, p.n)) {
            return dx;
        }
    }
    conv2d_input_grad_gemm(dy, w, p)
}

/// [`conv2d_input_grad`] without the direct kernel: depthwise, or `Wᵀ·dy` by GEMM and col2im.
pub(super) fn conv2d_input_grad_gemm(dy: &[f32], w: &[f32], p: &Conv2dParams) -> Vec<f32> {
    if p.is_depthwise() {
        if direct::enabled() {
            if let Some(dx) = direct::depthwise_input_grad(dy, w, p) {
                return dx;
            }
        }
        return depthwise::input_grad(dy, w, p);
    }
    let (in_per, out_per, hwo) = p.sizes();
    let (cin_g, cout_g, k) = p.per_group();
    let plane_in = p.hw[0] * p.hw[1];
    let par = gemm_parallelism(p.n);
    let mut dx = vec![0f32; p.n * in_per];
    dx.par_chunks_mut(in_per).enumerate().for_each(|(b, dst)| {
        let dyb = &dy[b * out_per..(b + 1) * out_per];
        for g in 0..p.groups {
            let wt = Mat::transposed(&w[g * cout_g * k..(g + 1) * cout_g * k], k, cout_g);
            let dyg = Mat::rows(&dyb[g * cout_g * hwo..(g + 1) * cout_g * hwo], cout_g, hwo);
            let dxg = &mut dst[g * cin_g * plane_in..(g + 1) * cin_g * plane_in];
            if p.pointwise() {
                matmul(dxg, &wt, &dyg, false, par);
            } else {
                let mut col = vec![0f32; k * hwo];
                matmul(&mut col, &wt, &dyg, false, par);
                col2im_add(&col, cin_g, p, dxg);
            }
        }
    });
    dx
}

/// Images per partial sum of the weight gradient. Fixed (not the thread count) so that the summation
/// order, hence the bits, is the same on any machine.
const WEIGHT_GRAD_CHUNK: usize = 4;

/// Gradient of the convolution with respect to its weight: `x` `[n, cin, h, w]` and `dy`
/// `[n, cout, ho, wo]` give `dw` `[cout, cin/groups, kh, kw]`.
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], p: &Conv2dParams) -> Vec<f32> {
    if p.is_depthwise() {
        return depthwise::weight_grad(x, dy, p);
    }
    let (in_per, out_per, hwo) = p.sizes();
    let (cin_g, cout_g, k) = p.per_group();
    let plane_in = p.hw[0] * p.hw[1];
    let chunks = p.n.div_ceil(WEIGHT_GRAD_CHUNK);
    let par = gemm_parallelism(chunks);
    let partial = |c: usize| -> Vec<f32> {
        let mut dw = vec![0f32; p.cout * k];
        for b in c * WEIGHT_GRAD_CHUNK..((c + 1) * WEIGHT_GRAD_CHUNK).min(p.n) {
            let (src, dyb) = (
                &x[b * in_per..(b + 1) * in_per],
                &dy[b * out_per..(b + 1) * out_per],
            );
            for g in 0..p.groups {
                let col = columns(
                    &src[g * cin_g * plane_in..(g + 1) * cin_g * plane_in],
                    cin_g,
                    p,
                );
                let dyg = Mat::rows(&dyb[g * cout_g * hwo..(g + 1) * cout_g * hwo], cout_g, hwo);
                let dwg = &mut dw[g * cout_g * k..(g + 1) * cout_g * k];
                matmul(
                    dwg,
                    &dyg,
                    &Mat::transposed(&col, hwo, k),
                    b > c * WEIGHT_GRAD_CHUNK,
                    par,
                );
            }
        }
        dw
    };
    let parts: Vec<Vec<f32>> = (0..chunks).into_par_iter().map(partial).collect();
    let mut parts = parts.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![0f32; p.cout * k]);
    for part in parts {
        dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    dw
}

/// Gradient of the convolution with respect to its bias: `dy` summed over images and positions, per
/// output channel, in a fixed order.
pub fn conv2d_bias_grad(dy: &[f32], p: &Conv2dParams) -> Vec<f32> {
    let (_, out_per, hwo) = p.sizes();
    (0..p.cout)
        .into_par_iter()
        .map(|o| {
            (0..p.n)
                .map(|b| dy[b * out_per + o * hwo..][..hwo].iter().sum::<f32>())
                .sum()
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Tensor, TensorData};

    pub fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "sizes differ");
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    /// burn's conv2d on an autodiff device (the plain path): output, and the gradients of
    /// `Σ y·r` (so `dy = r`) with respect to x, w and b.
    fn burn_reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        r: &[f32],
        p: &Conv2dParams,
    ) -> [Vec<f32>; 4] {
        let device = crate::engine::device::autodiff();
        let [h, wd] = p.hw;
        let [kh, kw] = p.kernel;
        let [ho, wo] = p.out_hw();
        let xt = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [p.n, p.cin, h, wd]), &device)
            .require_grad();
        let wt = Tensor::<4>::from_data(
            TensorData::new(w.to_vec(), [p.cout, p.cin / p.groups, kh, kw]),
            &device,
        )
        .require_grad();
        let bt =
            Tensor::<1>::from_data(TensorData::new(b.to_vec(), [p.cout]), &device).require_grad();
        let rt =
            Tensor::<4>::from_data(TensorData::new(r.to_vec(), [p.n, p.cout, ho, wo]), &device);
        let pads = [(p.pads[0], p.pads[2]), (p.pads[1], p.pads[3])];
        let opts = ConvOptions::new_with_padding(p.strides, pads, p.dilations, p.groups);
        let y = conv2d(xt.clone(), wt.clone(), Some(bt.clone()), opts);
        let grads = (y.clone() * rt).sum().backward();
        let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        let g = |t: &Tensor<4>| v(t.grad(&grads).unwrap());
        let db = bt
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        [v(y), g(&xt), g(&wt), db]
    }

    /// Shapes covering strides, asymmetric pads, dilations, 1×1, groups (dense per group, depthwise,
    /// depthwise with a channel multiplier), and batch sizes below, at and above the chunk and thread
    /// counts.
    pub const CASES: [(
        usize,
        usize,
        [usize; 2],
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        [usize; 2],
        usize,
    ); 12] = [
        (2, 3, [9, 7], 5, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        (1, 4, [8, 8], 6, [3, 3], [2, 2], [0, 1, 1, 0], [1, 1], 1),
        (3, 2, [10, 9], 4, [3, 2], [1, 2], [2, 0, 1, 2], [2, 1], 1),
        (4, 8, [5, 5], 3, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1),
        (2, 5, [6, 6], 7, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 1),
        (1, 3, [7, 7], 2, [5, 5], [3, 3], [2, 2, 2, 2], [1, 1], 1),
        (9, 6, [7, 6], 4, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2),
        (5, 8, [9, 9], 8, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 8),
        (3, 6, [11, 10], 6, [5, 5], [2, 2], [2, 1, 2, 2], [1, 1], 6),
        (2, 4, [8, 9], 4, [3, 3], [2, 1], [0, 1, 2, 1], [2, 2], 4),
        (6, 3, [6, 7], 6, [3, 3], [1, 2], [1, 1, 1, 1], [1, 1], 3),
        (1, 4, [4, 4], 4, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 4),
    ];

    fn params(i: usize) -> Conv2dParams {
        let (n, cin, hw, cout, kernel, strides, pads, dilations, groups) = CASES[i];
        Conv2dParams {
            n,
            cin,
            hw,
            cout,
            kernel,
            strides,
            pads,
            dilations,
            groups,
        }
    }

    /// Forward, input gradient, weight gradient and bias gradient against burn's conv2d and its
    /// autodiff backward, over [`CASES`].
    #[test]
    fn matches_burn_conv2d_and_its_gradients() {
        for i in 0..CASES.len() {
            let p = params(i);
            let [ho, wo] = p.out_hw();
            let x = lcg(p.n * p.cin * p.hw[0] * p.hw[1], i as u64);
            let w = lcg(
                p.cout * p.cin / p.groups * p.kernel[0] * p.kernel[1],
                100 + i as u64,
            );
            let b = lcg(p.cout, 200 + i as u64);
            let r = lcg(p.n * p.cout * ho * wo, 300 + i as u64);
            let [y, dx, dw, db] = burn_reference(&x, &w, &b, &r, &p);
            // Sums of ≤ 200 products of values in [-0.5, 0.5] (forward, input gradient) or ≤ 9·121
            // (weight gradient): f32 reordering error stays far below the bounds.
            let checks = [
                (
                    "forward",
                    max_diff(&conv2d_forward(&x, &w, Some(&b), &p), &y),
                    1e-5,
                ),
                (
                    "input gradient",
                    max_diff(&conv2d_input_grad(&r, &w, &p), &dx),
                    1e-5,
                ),
                (
                    "weight gradient",
                    max_diff(&conv2d_weight_grad(&x, &r, &p), &dw),
                    1e-4,
                ),
                (
                    "bias gradient",
                    max_diff(&conv2d_bias_grad(&r, &p), &db),
                    1e-4,
                ),
            ];
            for (what, diff, bound) in checks {
                assert!(diff < bound, "case {i} {p:?}: {what} max abs diff {diff}");
            }
        }
    }

    /// The weight gradient's bits do not depend on the number of threads (fixed chunking).
    #[test]
    fn weight_grad_is_deterministic_across_thread_counts() {
        let p = params(6);
        let [ho, wo] = p.out_hw();
        let x = lcg(p.n * p.cin * p.hw[0] * p.hw[1], 1);
        let dy = lcg(p.n * p.cout * ho * wo, 2);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                (
                    conv2d_weight_grad(&x, &dy, &p),
                    conv2d_input_grad(&dy, &x[..p.cout * 3 * 9], &p),
                )
            })
        };
        assert_eq!(run(1), run(3));
    }
}
