//! Direct (no im2col) AVX-512 forward for dense convolutions, the bulk of ResNet-style CNNs.
//!
//! Why: a single-thread profile of `zeroq eval` on the CIFAR ResNet20 (3×3 convolutions with 16–64
//! channels on 32×32 to 8×8 planes) spent 38% in the GEMM microkernels but 19% building im2col columns,
//! 12% in the GEMM's packing copies, 8% zeroing the freshly allocated column buffers and 4% faulting in
//! their pages. At these sizes the GEMM's operands are tiny, so everything around the multiply costs
//! more than the multiply itself. This kernel reads the (zero-padded) image in place instead: per tap
//! the 16-lane input vector is an unaligned load at offset `i·Wp + j`, the weight a broadcast, and the
//! accumulators land in NCHW order, so there is no column matrix, no packing of the input and no
//! transpose.
//!
//! Layout trick: each image is copied once into a per-thread buffer with the padding materialised
//! (`Hp × Wp` planes, `Wp = pl + w + pr`). Output pixel `(oy, ox)` is then computed at the flattened
//! position `q = oy·Wp + ox`, whose input for tap `(i, j)` sits at `q + i·Wp + j`: one contiguous run for
//! the whole plane, vectorised 16 positions at a time regardless of the row width. The `Wp − wo`
//! positions per row that are not outputs are computed and dropped: each vector is compressed to its
//! valid lanes (in register — a compressing store to memory is microcoded and slow on Zen 4) before a
//! masked store. An 8×8 plane with padding 1 thus uses 80% of the lanes instead of 50% for one masked
//! vector per row.
//!
//! Register blocking: [`R`] output channels × [`V`] vectors of accumulators (24 of the 32 zmm
//! registers), the input channels and taps innermost, weights pre-packed so that each tap's `R` weights
//! are contiguous broadcasts.

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv::{Conv2dParams, Epilogue};

/// Output channels per register block.
const R: usize = 8;
/// 16-lane vectors of positions per register block.
const V: usize = 3;
/// f32 lanes of a zmm register.
const LANES: usize = 16;

/// Whether the direct kernel handles `p`: dense, dilation 1, any stride (the stride-2 downsampling
/// 3×3s of ResNet20 spent a further ~8% in im2col and its GEMM), and not a pointwise (1×1, stride 1,
/// unpadded) convolution, which the GEMM already runs without im2col and with the cache blocking that
/// large channel counts (EfficientNet's 1152-channel 1×1s) need.
pub(super) fn eligible(p: &Conv2dParams) -> bool {
    let pointwise = p.kernel == [1, 1] && p.strides == [1, 1] && p.pads == [0; 4];
    p.groups == 1
        && p.strides[0] > 0
        && p.strides[1] > 0
        && p.dilations == [1, 1]
        && !pointwise
        && p.n > 0
        && p.cin > 0
        && p.cout > 0
}

/// Whether this CPU has AVX-512F (detected once).
pub(super) fn available() -> bool {
    static AVX512: OnceLock<bool> = OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// [`available`], unless `ZEROQ_DIRECT_CONV=0` turns the kernel off (for A/B timing in one binary).
/// Read once.
pub(super) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| available() && std::env::var("ZEROQ_DIRECT_CONV").map_or(true, |v| v.trim() != "0"))
}

/// The direct convolution with `epilogue` applied, or `None` when the kernel does not apply (not
/// [`eligible`], or no AVX-512): then the caller takes the im2col path. Ignores `ZEROQ_DIRECT_CONV`
/// (the caller checks [`enabled`]), so tests can compare both paths in one process.
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
    p: &Conv2dParams,
) -> Option<Vec<f32>> {
    if !eligible(p) || !available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(x86::forward(x, w, bias, epilogue, p))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, bias, epilogue);
        None
    }
}

/// Sizes of the padded image and of the flattened output run, checked once against the slices.
///
/// A strided convolution is turned into a stride-1 one over phases: the padded image is stored as
/// `sh × sw` sub-images `X_ab[y][x] = Xp[sh·y + a][sw·x + b]`, each `Hq × Wq`; tap `(i, j)` then reads
/// phase `(i mod sh, j mod sw)` at `(oy + i/sh, ox + j/sw)`, contiguous in `ox` again. At stride 1 there
/// is one phase, the padded image itself.
struct Geom {
    cin: usize,
    cout: usize,
    /// Strides.
    sh: usize,
    sw: usize,
    /// Padded height and width.
    hp: usize,
    wp: usize,
    /// Phase height and row length.
    hq: usize,
    wq: usize,
    /// Padded plane of one channel, all phases: `sh·sw·Hq·Wq`.
    plane_p: usize,
    /// Output width and plane.
    wo: usize,
    hwo: usize,
    /// Flattened output run `(ho − 1)·Wq + wo`, and its vectors `⌈len/16⌉`.
    len: usize,
    nvec: usize,
    /// Input offset of each tap: its phase's start plus `(i/sh)·Wq + j/sw`.
    taps: Vec<usize>,
    /// The largest of `taps`.
    max_tap: usize,
}

impl Geom {
    fn new(p: &Conv2dParams) -> Self {
        let [ho, wo] = p.out_hw();
        let [sh, sw] = p.strides;
        let hp = p.hw[0] + p.pads[0] + p.pads[2];
        let wp = p.hw[1] + p.pads[1] + p.pads[3];
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let len = (ho - 1) * wq + wo;
        let taps: Vec<usize> = (0..p.kernel[0])
            .flat_map(|i| {
                (0..p.kernel[1]).map(move |j| ((i % sh) * sw + j % sw) * hq * wq + (i / sh) * wq + j / sw)
            })
            .collect();
        let max_tap = taps.iter().copied().max().unwrap_or(0);
        Self {
            cin: p.cin,
            cout: p.cout,
            sh,
            sw,
            hp,
            wp,
            hq,
            wq,
            plane_p: sh * sw * hq * wq,
            wo,
            hwo: ho * wo,
            len,
            nvec: len.div_ceil(LANES),
            taps,
            max_tap,
        }
    }

    /// Length of the padded-image buffer: the planes plus slack, because the last vector's dropped
    /// lanes read past the last plane. The second term is one past the largest index any block reads.
    fn padded_len(&self) -> usize {
        (self.cin * self.plane_p).max((self.cin - 1) * self.plane_p + self.nvec * LANES + self.max_tap)
    }

    /// Per vector of the flattened run: the lanes that are outputs, and the output index of the first.
    fn vectors(&self) -> Vec<(u16, usize)> {
        (0..self.nvec)
            .map(|v| {
                let q0 = v * LANES;
                let mask = (0..LANES)
                    .filter(|l| q0 + l < self.len && (q0 + l) % self.wq < self.wo)
                    .fold(0u16, |m, l| m | (1 << l));
                (mask, (q0 / self.wq) * self.wo + (q0 % self.wq).min(self.wo))
            })
            .collect()
    }
}

thread_local! {
    /// The zero-padded copy of the current image, reused across images and calls on this thread (a
    /// fresh zeroed buffer per image is the allocation and memset cost the profile showed).
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Copies image `x` `[cin, h, w]` into `buf` as `[cin, Hp, Wp]` with zero borders, plus zero slack.
/// Every element is written exactly once.
fn pad_into(buf: &mut Vec<f32>, x: &[f32], g: &Geom, p: &Conv2dParams) {
    let [h, w] = p.hw;
    let [pt, pl, _, pr] = p.pads;
    if g.sh * g.sw > 1 {
        // Strided (rare: downsampling layers): zero everything, then scatter the image into its phases.
        buf.clear();
        buf.resize(g.padded_len(), 0.0);
        let phase = g.hq * g.wq;
        for (dst, src) in buf.chunks_exact_mut(g.plane_p).zip(x.chunks_exact(h * w)) {
            for (y, row) in src.chunks_exact(w).enumerate() {
                let (yp, xp0) = (y + pt, pl);
                let row_base = (yp % g.sh) * g.sw * phase + (yp / g.sh) * g.wq;
                for (x, &v) in row.iter().enumerate() {
                    let xp = x + xp0;
                    dst[row_base + (xp % g.sw) * phase + xp / g.sw] = v;
                }
            }
        }
        debug_assert!(g.hp <= g.sh * g.hq && g.wp <= g.sw * g.wq);
        return;
    }
    buf.resize(g.padded_len(), 0.0);
    let (planes, slack) = buf.split_at_mut(g.cin * g.plane_p);
    slack.fill(0.0);
    for (dst, src) in planes.chunks_exact_mut(g.plane_p).zip(x.chunks_exact(h * w)) {
        let (top, rest) = dst.split_at_mut(pt * g.wp);
        top.fill(0.0);
        let (mid, bottom) = rest.split_at_mut(h * g.wp);
        bottom.fill(0.0);
        for (row, s) in mid.chunks_exact_mut(g.wp).zip(src.chunks_exact(w)) {
            row[..pl].fill(0.0);
            row[pl..pl + w].copy_from_slice(s);
            row[pl + w..].fill(0.0);
            debug_assert_eq!(row.len(), pl + w + pr);
        }
    }
}

/// `w` `[cout, cin, kh, kw]` regrouped per block of [`R`] output channels as `[cin, tap, r]`, so the
/// innermost loop reads its broadcasts contiguously. Block `b` starts at `b·R·cin·taps`.
fn pack(w: &[f32], g: &Geom) -> Vec<f32> {
    let (cin, taps) = (g.cin, g.taps.len());
    let mut out = Vec::with_capacity(g.cout * cin * taps);
    for co0 in (0..g.cout).step_by(R) {
        let rb = R.min(g.cout - co0);
        for ci in 0..cin {
            for t in 0..taps {
                out.extend((0..rb).map(|r| w[((co0 + r) * cin + ci) * taps + t]));
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// What one register block needs besides its position.
    struct Block<'a> {
        /// The padded image, [`Geom::padded_len`] long.
        inp: &'a [f32],
        /// This block's packed weights, `cin·taps·RB`.
        w: &'a [f32],
        /// Bias of this block's channels (zeros without a bias).
        bias: &'a [f32],
        /// The output planes of this block's channels, `RB·hwo`.
        out: &'a mut [f32],
        /// The residual of the same channels, when there is one.
        residual: Option<&'a [f32]>,
        lo: f32,
        hi: f32,
        /// Apply the residual / clamp at all (off: store the plain sums, NaNs included).
        epilogue: bool,
    }

    pub(super) fn forward(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        e: &Epilogue,
        p: &Conv2dParams,
    ) -> Vec<f32> {
        let g = Geom::new(p);
        let packed = pack(w, &g);
        let vectors = g.vectors();
        let zeros = vec![0f32; g.cout];
        let bias = bias.unwrap_or(&zeros);
        let in_per = p.cin * p.hw[0] * p.hw[1];
        let out_per = g.cout * g.hwo;
        let epilogue = e.residual.is_some() || e.lo > f32::NEG_INFINITY || e.hi < f32::INFINITY;
        // Few images: also split each image's output channels across threads.
        let split_channels = p.n < rayon::current_num_threads();
        let mut out = vec![0f32; p.n * out_per];
        let channel_block = |inp: &[f32], residual: Option<&[f32]>, (k, out): (usize, &mut [f32])| {
            let co0 = k * R;
            let rb = R.min(g.cout - co0);
            let taps = g.taps.len();
            let mut blk = Block {
                inp,
                w: &packed[co0 * g.cin * taps..(co0 + rb) * g.cin * taps],
                bias: &bias[co0..co0 + rb],
                out,
                residual: residual.map(|r| &r[co0 * g.hwo..(co0 + rb) * g.hwo]),
                lo: e.lo,
                hi: e.hi,
                epilogue,
            };
            for v0 in (0..g.nvec).step_by(V) {
                let vb = V.min(g.nvec - v0);
                // SAFETY: `forward` is only reached when `available()` found AVX-512F on this CPU.
                unsafe { dispatch(rb, vb, &mut blk, &g, v0, &vectors) };
            }
        };
        out.par_chunks_mut(out_per).enumerate().for_each(|(b, dst)| {
            let src = &x[b * in_per..(b + 1) * in_per];
            let residual = e.residual.map(|r| &r[b * out_per..(b + 1) * out_per]);
            if split_channels {
                // Not the thread-local buffer: while this thread waits for the channel blocks, rayon
                // may run another image on it, which would need the buffer too.
                let mut buf = Vec::new();
                pad_into(&mut buf, src, &g, p);
                dst.par_chunks_mut(R * g.hwo).enumerate().for_each(|kb| channel_block(&buf, residual, kb));
            } else {
                PADDED.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    pad_into(&mut buf, src, &g, p);
                    dst.chunks_mut(R * g.hwo).enumerate().for_each(|kb| channel_block(&buf, residual, kb));
                });
            }
        });
        out
    }

    /// Runs [`block`] instantiated for `rb` channels (1..=R) and `vb` vectors (1..=V).
    #[target_feature(enable = "avx512f")]
    fn dispatch(rb: usize, vb: usize, b: &mut Block, g: &Geom, v0: usize, vt: &[(u16, usize)]) {
        macro_rules! arms {
            ($($r:literal)*) => {
                match (rb, vb) {
                    $(($r, 1) => block::<$r, 1>(b, g, v0, vt),
                      ($r, 2) => block::<$r, 2>(b, g, v0, vt),
                      ($r, 3) => block::<$r, 3>(b, g, v0, vt),)*
                    _ => unreachable!("register block {rb}×{vb} out of range"),
                }
            };
        }
        arms!(1 2 3 4 5 6 7 8)
    }

    /// `RB` output channels × `VB` vectors starting at vector `v0` of the flattened run: bias, the
    /// sum over input channels and taps, epilogue, then the valid lanes stored.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn block<const RB: usize, const VB: usize>(b: &mut Block, g: &Geom, v0: usize, vt: &[(u16, usize)]) {
        let taps = g.taps.len();
        // The bounds every unchecked access below relies on.
        assert!(
            b.inp.len() >= g.padded_len()
                && b.w.len() == g.cin * taps * RB
                && b.bias.len() == RB
                && b.out.len() == RB * g.hwo
                && b.residual.is_none_or(|r| r.len() == RB * g.hwo)
                && v0 + VB <= g.nvec
                && vt.len() == g.nvec
                && g.taps.iter().all(|&t| t <= g.max_tap),
            "direct conv: block out of bounds"
        );
        let mut acc = [[_mm512_setzero_ps(); VB]; RB];
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [_mm512_set1_ps(b.bias[r]); VB];
        }
        let (weights, _) = b.w.as_chunks::<RB>();
        let mut wi = weights.iter();
        let base = b.inp.as_ptr();
        for ci in 0..g.cin {
            let start = ci * g.plane_p + v0 * LANES;
            for (&tap, wt) in g.taps.iter().zip(wi.by_ref().take(taps)) {
                let mut xv = [_mm512_setzero_ps(); VB];
                for (v, x) in xv.iter_mut().enumerate() {
                    // SAFETY: `ci < cin`, `v0 + VB ≤ nvec` and `tap ≤ max_tap` (asserted above), so the
                    // 16 elements end at most at `Geom::padded_len() ≤ inp.len()`; loadu needs no alignment.
                    *x = unsafe { _mm512_loadu_ps(base.add(start + tap + v * LANES)) };
                }
                for (a, &wv) in acc.iter_mut().zip(wt) {
                    let wv = _mm512_set1_ps(wv);
                    for (a, &x) in a.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(x, wv, *a);
                    }
                }
            }
        }
        let (lo, hi) = (_mm512_set1_ps(b.lo), _mm512_set1_ps(b.hi));
        for (r, a) in acc.iter().enumerate() {
            for (v, &a) in a.iter().enumerate() {
                let (mask, off) = vt[v0 + v];
                let count = mask.count_ones() as usize;
                let store: __mmask16 = ((1u32 << count) - 1) as u16;
                let at = r * g.hwo + off;
                // The valid lanes of a vector are consecutive outputs of the plane, `off..off + count`.
                debug_assert!(off + count <= g.hwo);
                let mut y = _mm512_maskz_compress_ps(mask, a);
                if b.epilogue {
                    if let Some(res) = b.residual {
                        // SAFETY: `at + count ≤ (r + 1)·hwo ≤ res.len()` (asserted length, and the valid
                        // lanes lie inside the plane); masked-off lanes are not read.
                        y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(store, res.as_ptr().add(at)) });
                    }
                    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
                }
                // SAFETY: as for the residual, `at + count ≤ out.len()`; masked-off lanes are not
                // written.
                unsafe { _mm512_mask_storeu_ps(b.out.as_mut_ptr().add(at), store, y) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::lcg;
    use super::super::conv::{conv2d_forward_fused_im2col, Conv2dParams, Epilogue};
    use super::*;

    fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale
    }

    /// Kernels, pads (symmetric and not), strides, widths, channel counts, bias and every epilogue
    /// against the im2col + GEMM path.
    #[test]
    fn matches_im2col_gemm() {
        if !available() {
            println!("direct conv: no AVX-512F on this CPU, test skipped");
            return;
        }
        let kernels = [[1, 1], [3, 3], [5, 5], [3, 1]];
        let pads = [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [0, 1, 2, 1], [2, 0, 1, 2], [1, 0, 0, 1]];
        let widths = [1, 7, 8, 15, 16, 17, 32, 33];
        let channels = [1, 3, 16, 17];
        let mut case = 0u64;
        for kernel in kernels {
            for pad in pads {
                for (wi, &w) in widths.iter().enumerate() {
                    // Heights cycle so both square and non-square planes appear.
                    let h = [w, 5, 3, 9][wi % 4];
                    if h + pad[0] + pad[2] < kernel[0] || w + pad[1] + pad[3] < kernel[1] {
                        continue;
                    }
                    let (cin, cout) = (channels[case as usize % 4], channels[(case as usize / 4 + 1) % 4]);
                    let n = 1 + case as usize % 3;
                    let strides = [[1, 1], [2, 2], [1, 1], [1, 2], [1, 1], [3, 2]][(case as usize / 3) % 6];
                    case += 1;
                    let p = Conv2dParams {
                        n,
                        cin,
                        hw: [h, w],
                        cout,
                        kernel,
                        strides,
                        pads: pad,
                        dilations: [1, 1],
                        groups: 1,
                    };
                    if !eligible(&p) {
                        continue;
                    }
                    let [ho, wo] = p.out_hw();
                    let x = lcg(n * cin * h * w, case);
                    let wt = lcg(cout * cin * kernel[0] * kernel[1], 1000 + case);
                    let b = lcg(cout, 2000 + case);
                    let res = lcg(n * cout * ho * wo, 3000 + case);
                    let epilogues = [
                        Epilogue::NONE,
                        Epilogue { residual: Some(&res), lo: f32::NEG_INFINITY, hi: f32::INFINITY },
                        Epilogue { residual: None, lo: 0.0, hi: 0.3 },
                        Epilogue { residual: Some(&res), lo: 0.0, hi: f32::INFINITY },
                    ];
                    for e in &epilogues {
                        for bias in [None, Some(&b[..])] {
                            let want = conv2d_forward_fused_im2col(&x, &wt, bias, e, &p);
                            let got = forward(&x, &wt, bias, e, &p).expect("eligible and available");
                            let d = rel_diff(&got, &want);
                            assert!(d < 1e-5, "{p:?} bias {} residual {} clamp [{}, {}]: rel diff {d}",
                                bias.is_some(), e.residual.is_some(), e.lo, e.hi);
                        }
                    }
                }
            }
        }
        assert!(case > 100, "only {case} cases ran");
    }

    /// Threads splitting one image's channels (batch below the thread count) give the same result.
    #[test]
    fn single_image_on_many_threads() {
        if !available() {
            println!("direct conv: no AVX-512F on this CPU, test skipped");
            return;
        }
        let p = Conv2dParams {
            n: 1,
            cin: 16,
            hw: [8, 8],
            cout: 33,
            kernel: [3, 3],
            strides: [1, 1],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            groups: 1,
        };
        let x = lcg(16 * 64, 1);
        let w = lcg(33 * 16 * 9, 2);
        let b = lcg(33, 3);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let got = pool.install(|| forward(&x, &w, Some(&b), &Epilogue::NONE, &p)).unwrap();
        let want = conv2d_forward_fused_im2col(&x, &w, Some(&b), &Epilogue::NONE, &p);
        assert!(rel_diff(&got, &want) < 1e-5);
    }
}
