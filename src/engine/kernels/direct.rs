//! Direct (no im2col) AVX-512 forward for dense convolutions, the bulk of ResNet-style CNNs.
//!
//! Why: a single-thread profile of `zeroq eval` on the CIFAR ResNet20 (3×3 convolutions with 16–64
//! channels on 32×32 to 8×8 planes) spent 38% in the GEMM microkernels but 19% building im2col columns,
//! 12% in the GEMM's packing copies, 8% zeroing the freshly allocated column buffers and 4% faulting in
//! their pages. At these sizes the GEMM's operands are tiny, so everything around the multiply costs
//! more than the multiply itself. This kernel reads the image instead: per tap the 16-lane input vector
//! is an unaligned load at a fixed offset, the weight a broadcast, and the accumulators land in NCHW
//! order, so there is no column matrix, no packing of the input and no transpose.
//!
//! Two layouts of the input:
//! - [`Same`] (stride 1, output rows as wide as the input's, e.g. every 3×3 with padding 1): the
//!   unpadded image read in place; the padding's zeros are the lanes masked off in the load.
//! - [`Geom`] (everything else: strided, or output narrower than the input): each image copied once
//!   into a per-thread buffer with the padding materialised (`Hp × Wp` planes, split into phases for
//!   strides). Output pixel `(oy, ox)` is computed at the flattened position `q = oy·Wq + ox`, whose
//!   input for tap `(i, j)` sits at a fixed offset from `q`: one contiguous run for the whole plane. The
//!   `Wq − wo` positions per row that are not outputs are computed and dropped: each vector is
//!   compressed to its valid lanes (in register — a compressing store to memory is microcoded and slow
//!   on Zen 4) before a masked store.
//!
//! Register blocking: [`R`] output channels × [`V`] vectors of accumulators (24 of the 32 zmm
//! registers), weights pre-packed so that each step's `R` weights are contiguous broadcasts.

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv::{Conv2dParams, Epilogue};
use super::winograd;

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

/// An output buffer of `len` elements that the kernel will write exactly once each, so it is not
/// zeroed first (a memset would only be overwritten). In tests every element starts as NaN, so one the
/// kernel misses shows instead of whatever the memory held. Hand it back with [`assume_written`].
pub(super) fn unwritten_output(len: usize) -> Vec<std::mem::MaybeUninit<f32>> {
    let mut out = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation; the length is the capacity just reserved.
    unsafe { out.set_len(len) };
    #[cfg(test)]
    out.fill(std::mem::MaybeUninit::new(f32::NAN));
    out
}

/// The buffer of [`unwritten_output`] as floats.
///
/// # Safety
/// Every element must have been written.
pub(super) unsafe fn assume_written(out: Vec<std::mem::MaybeUninit<f32>>) -> Vec<f32> {
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: all elements are initialised (the caller's contract); `MaybeUninit<f32>` has `f32`'s
    // layout, and the pointer, length and capacity come from that same vector.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<f32>(), out.len(), out.capacity()) }
}

/// What the kernel derives from a convolution's weights and geometry alone, not from the batch.
/// [`super::prepared`] keeps one per weight tensor, so an inference plan or a distillation loop builds
/// it once.
pub(super) struct Prepared {
    /// The geometry it was built for (any batch size).
    params: Conv2dParams,
    kind: Kind,
}

/// How a [`Prepared`] convolution runs. (One per weight tensor, behind an `Arc`: the variants' sizes
/// do not matter.)
#[allow(clippy::large_enum_variant)]
enum Kind {
    /// The direct kernel: the layout, its per-vector tables and the packed weights ([`pack`]).
    /// `vectors` ([`Geom::vectors`]) serve the padded layout and are empty with `same`.
    Direct { geom: Geom, same: Option<Same>, packed: Vec<f32>, vectors: Vec<(u16, usize)> },
    /// Winograd F(2×2, 3×3) ([`super::winograd`]) with the transformed weights.
    Winograd(Vec<f32>),
}

/// [`Prepared`] for `w` `[cout, cin, kh, kw]` and `p`, or `None` when the kernel does not apply (not
/// [`eligible`], no AVX-512, or a weight of the wrong length). With `winograd`, 3×3 stride-1
/// convolutions with enough channels run as Winograd F(2×2, 3×3) ([`winograd::applies`]).
pub(super) fn prepare_with(w: &[f32], p: &Conv2dParams, winograd: bool) -> Option<Prepared> {
    if !eligible(p) || !available() || w.len() != p.cout * p.cin * p.kernel[0] * p.kernel[1] {
        return None;
    }
    if winograd && winograd::applies(p) {
        return Some(Prepared { params: *p, kind: Kind::Winograd(winograd::transform_weights(w, p.cout, p.cin)) });
    }
    let same = Same::new(p);
    let geom = Geom::new(p);
    let packed = pack(w, p.cout, p.cin, geom.taps.len(), same.is_some());
    let vectors = if same.is_none() { geom.vectors() } else { Vec::new() };
    Some(Prepared { params: *p, kind: Kind::Direct { geom, same, packed, vectors } })
}

/// The direct convolution (never Winograd) with `epilogue` applied, or `None` when the kernel does not
/// apply (see [`prepare`]). Ignores `ZEROQ_DIRECT_CONV`, so tests can compare paths in one process.
#[cfg(test)]
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
    p: &Conv2dParams,
) -> Option<Vec<f32>> {
    run(x, &prepare_with(w, p, false)?, bias, epilogue, p.n)
}

/// The convolution of the `n` images `x` with a [`Prepared`] weight; `None` when `x` or `bias` do not
/// have the lengths it was prepared for.
pub(super) fn run(x: &[f32], pr: &Prepared, bias: Option<&[f32]>, epilogue: &Epilogue, n: usize) -> Option<Vec<f32>> {
    let p = Conv2dParams { n, ..pr.params };
    let [ho, wo] = p.out_hw();
    let out_len = n * p.cout * ho * wo;
    if x.len() != n * p.cin * p.hw[0] * p.hw[1]
        || bias.is_some_and(|b| b.len() != p.cout)
        || epilogue.residual.is_some_and(|r| r.len() != out_len)
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(x86::forward(x, pr, bias, epilogue, &p))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, bias, epilogue, p);
        None
    }
}

/// The input gradient of a stride-1 convolution as a convolution of `dy`: `dx = dy ⋆ W′` with
/// `W′[ci][co][i][j] = W[co][ci][kh−1−i][kw−1−j]` and padding `k − 1 − p` on each side, which gives back
/// the input's size. Distillation needs this gradient for every conv on every iteration; as a
/// convolution it runs on the direct kernel (no `Wᵀ·dy` column matrix, no col2im). `None` where that
/// does not apply (strided, grouped, dilated, pointwise, padding wider than the kernel, or no AVX-512).
#[cfg(test)]
pub(super) fn input_grad(dy: &[f32], w: &[f32], p: &Conv2dParams) -> Option<Vec<f32>> {
    run(dy, &prepare_input_grad(w, p)?, None, &Epilogue::NONE, p.n)
}

/// The geometry of the convolution that gives the input gradient of the stride-1 convolution `p`
/// (see [`input_grad`]): `dy` as its input, input and output channels swapped, padding `k − 1 − p`.
/// `None` unless that gives back the input's size (strided, or padding as wide as the kernel).
fn gradient_geometry(p: &Conv2dParams) -> Option<Conv2dParams> {
    let [kh, kw] = p.kernel;
    let [pt, pl, pb, pr] = p.pads;
    if p.strides != [1, 1] || pt >= kh || pb >= kh || pl >= kw || pr >= kw {
        return None;
    }
    let t = Conv2dParams {
        cin: p.cout,
        hw: p.out_hw(),
        cout: p.cin,
        pads: [kh - 1 - pt, kw - 1 - pl, kh - 1 - pb, kw - 1 - pr],
        ..*p
    };
    (t.out_hw() == p.hw).then_some(t)
}

/// The [`Prepared`] weight that [`input_grad`] convolves `dy` with (see there), or `None` where that
/// does not apply. Always the direct kernel: like the forward on the autodiff path, the gradient keeps
/// the direct sum (see [`super::conv::conv2d_forward_keyed`]).
pub(super) fn prepare_input_grad(w: &[f32], p: &Conv2dParams) -> Option<Prepared> {
    let t = gradient_geometry(p)?;
    let taps = p.kernel[0] * p.kernel[1];
    if !eligible(p) || !eligible(&t) || w.len() != p.cout * p.cin * taps {
        return None;
    }
    let mut flipped = vec![0f32; w.len()];
    for co in 0..p.cout {
        for ci in 0..p.cin {
            for k in 0..taps {
                flipped[(ci * p.cout + co) * taps + (taps - 1 - k)] = w[(co * p.cin + ci) * taps + k];
            }
        }
    }
    prepare_with(&flipped, &t, false)
}

/// Depthwise convolution (one input channel per output channel) on the [`Same`] layout: stride 1,
/// output rows as wide as the input's, dilation 1. `None` where that does not apply, or without
/// AVX-512; then the caller runs [`super::depthwise::forward`].
///
/// Why: the run-based depthwise kernel adds each tap's weighted row into the output, so every output
/// element is read and written once per tap (9 times for 3×3, 25 for 5×5) and planes of 112² do not
/// stay in L1; it was 40% of EfficientNet-Lite0 inference. Here each 16-output vector keeps its sum in
/// a register over all taps (masked loads supply the padding's zeros) and is stored once, with the
/// epilogue. The sum runs in the same order with the same roundings (bias first, then each tap's
/// product added in tap order, no fused multiply-add), so the result equals the run-based kernel's
/// bit for bit, apart from the sign of a zero.
pub(super) fn depthwise_same(x: &[f32], w: &[f32], bias: Option<&[f32]>, e: &Epilogue, p: &Conv2dParams) -> Option<Vec<f32>> {
    depthwise_same_ordered(x, w, bias, e, p, false)
}

/// The input gradient of a stride-1 same-width depthwise convolution as [`depthwise_same`] on `dy`
/// with each channel's kernel flipped and padding `k − 1 − p` (as [`input_grad`] does for dense ones).
/// The taps are summed in reverse, which is the original taps' order, so the result equals the
/// run-based [`super::depthwise::input_grad`] bit for bit (apart from the sign of a zero). `None` where
/// that does not apply.
pub(super) fn depthwise_input_grad(dy: &[f32], w: &[f32], p: &Conv2dParams) -> Option<Vec<f32>> {
    // Depthwise: as many input as output channels, so the swap in the geometry changes nothing.
    let t = gradient_geometry(p)?;
    let taps = p.kernel[0] * p.kernel[1];
    if w.len() != p.cout * taps {
        return None;
    }
    let flipped: Vec<f32> = w.chunks_exact(taps).flat_map(|k| k.iter().rev().copied()).collect();
    depthwise_same_ordered(dy, &flipped, None, &Epilogue::NONE, &t, true)
}

/// [`depthwise_same`], the taps summed last to first when `reverse`.
fn depthwise_same_ordered(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    e: &Epilogue,
    p: &Conv2dParams,
    reverse: bool,
) -> Option<Vec<f32>> {
    if !available() || !p.is_depthwise() || p.dilations != [1, 1] || p.n == 0 {
        return None;
    }
    let s = Same::new(&Conv2dParams { cin: 1, cout: 1, groups: 1, ..*p })?;
    let taps = p.kernel[0] * p.kernel[1];
    let out_len = p.n * p.cout * s.hwo;
    if x.len() != p.n * p.cin * s.hw
        || w.len() != p.cout * taps
        || bias.is_some_and(|b| b.len() != p.cout)
        || e.residual.is_some_and(|r| r.len() != out_len)
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(x86::depthwise(x, w, bias, e, p, &s, reverse))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
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
    /// Padded plane of one channel, all stored phases: `phases·Hq·Wq`.
    plane_p: usize,
    /// The stored phases `(a, b)` (row and column offset), in storage order.
    phases: Vec<(usize, usize)>,
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
        let [kh, kw] = p.kernel;
        // Only the phases some tap reads are stored (a strided 1×1 reads one of four).
        let phases: Vec<(usize, usize)> =
            (0..sh.min(kh)).flat_map(|a| (0..sw.min(kw)).map(move |b| (a, b))).collect();
        let phase_of = |i: usize, j: usize| (i % sh) * sw.min(kw) + j % sw;
        let taps: Vec<usize> = (0..kh)
            .flat_map(|i| (0..kw).map(move |j| phase_of(i, j) * hq * wq + (i / sh) * wq + j / sw))
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
            plane_p: phases.len() * hq * wq,
            phases,
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

/// The padding-free layout for stride-1 convolutions whose output rows are as wide as the input's
/// ("same" padding along the width, e.g. every 3×3 with padding 1): output position `q = oy·w + ox`
/// reads tap `(i, j)` at `q + (i − pt)·w + (j − pl)` of the unpadded image, one offset for all lanes,
/// so the image is read in place. The lanes whose tap falls into the padding are masked off in the
/// load (AVX-512 masked loads neither read nor fault on them), which is where the zeros come from.
/// Compared with [`Geom`] this drops the padded copy of every image (9% of ResNet20 eval), the
/// `Wp − wo` dropped lanes per row and the compress before each store.
struct Same {
    cin: usize,
    /// Input plane `h·w` and output plane `ho·w`.
    hw: usize,
    hwo: usize,
    /// Vectors per output plane, `⌈hwo/16⌉`.
    nvec: usize,
    /// Per tap, its input offset `(i − pt)·w + (j − pl)` relative to the output position.
    offs: Vec<isize>,
    /// Per vector and tap (`[nvec][taps]`), the lanes whose input lies inside the image.
    masks: Vec<u16>,
}

impl Same {
    /// The layout for `p`, or `None` when it does not apply (strided, or output width ≠ input width).
    fn new(p: &Conv2dParams) -> Option<Self> {
        let [h, w] = p.hw;
        let [ho, wo] = p.out_hw();
        if p.strides != [1, 1] || wo != w {
            return None;
        }
        let [pt, pl, ..] = p.pads;
        let [kh, kw] = p.kernel;
        let hwo = ho * wo;
        let nvec = hwo.div_ceil(LANES);
        let offs = (0..kh)
            .flat_map(|i| (0..kw).map(move |j| (i as isize - pt as isize) * w as isize + j as isize - pl as isize))
            .collect();
        let mut masks = Vec::with_capacity(nvec * kh * kw);
        for v in 0..nvec {
            for i in 0..kh {
                for j in 0..kw {
                    let valid = |l: usize| {
                        let q = v * LANES + l;
                        let (iy, ix) = ((q / w + i) as isize - pt as isize, (q % w + j) as isize - pl as isize);
                        q < hwo && (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix)
                    };
                    masks.push((0..LANES).filter(|&l| valid(l)).fold(0u16, |m, l| m | (1 << l)));
                }
            }
        }
        Some(Self { cin: p.cin, hw: h * w, hwo, nvec, offs, masks })
    }

    /// The lanes of vector `v` that are outputs (all but the tail of the last vector).
    fn store_mask(&self, v: usize) -> u16 {
        let count = (self.hwo - v * LANES).min(LANES);
        ((1u32 << count) - 1) as u16
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
        // Strided (downsampling layers): each stored phase element is written once, zero where the
        // padded position falls into the padding.
        buf.resize(g.padded_len(), 0.0);
        let (planes, slack) = buf.split_at_mut(g.cin * g.plane_p);
        slack.fill(0.0);
        let phase = g.hq * g.wq;
        for (dst, src) in planes.chunks_exact_mut(g.plane_p).zip(x.chunks_exact(h * w)) {
            for (d, &(a, b)) in dst.chunks_exact_mut(phase).zip(&g.phases) {
                for (k, row) in d.chunks_exact_mut(g.wq).enumerate() {
                    let yp = a + k * g.sh;
                    if !(pt..pt + h).contains(&yp) {
                        row.fill(0.0);
                        continue;
                    }
                    // Columns `c` with `pl ≤ b + c·sw < pl + w` come from the image, the rest are zeros.
                    let s = &src[(yp - pt) * w..(yp - pt + 1) * w];
                    let c0 = pl.saturating_sub(b).div_ceil(g.sw).min(g.wq);
                    let c1 = (pl + w).saturating_sub(b).div_ceil(g.sw).clamp(c0, g.wq);
                    row[..c0].fill(0.0);
                    if c1 > c0 {
                        let first = b + c0 * g.sw - pl;
                        gather_strided(&mut row[c0..c1], &s[first..], g.sw);
                    }
                    row[c1..].fill(0.0);
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

/// `dst[k] = src[k·step]` for every `k` of `dst` (the caller guarantees `src` is long enough). Stride 2,
/// every strided layer of ResNet-style CNNs, runs vectorised: a scalar gather here was 6% of ResNet20
/// eval, as much as those layers' own multiply.
fn gather_strided(dst: &mut [f32], src: &[f32], step: usize) {
    #[cfg(target_arch = "x86_64")]
    if step == 2 && available() {
        // SAFETY: AVX-512F is present (checked just above).
        unsafe { x86::gather_stride2(dst, src) };
        return;
    }
    for (o, &v) in dst.iter_mut().zip(src.iter().step_by(step)) {
        *o = v;
    }
}

/// `w` `[cout, cin, kh, kw]` regrouped per block of [`R`] output channels as `[cin, tap, r]` (or
/// `[tap, cin, r]` with `tap_major`, the loop order of [`Same`]), so the innermost loop reads its
/// broadcasts contiguously. Block `b` starts at `b·R·cin·taps`.
fn pack(w: &[f32], cout: usize, cin: usize, taps: usize, tap_major: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(cout * cin * taps);
    for co0 in (0..cout).step_by(R) {
        let rb = R.min(cout - co0);
        for a in 0..if tap_major { taps } else { cin } {
            for b in 0..if tap_major { cin } else { taps } {
                let (ci, t) = if tap_major { (b, a) } else { (a, b) };
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
        /// The output planes of this block's channels, `RB·hwo`, written exactly once.
        out: &'a mut [std::mem::MaybeUninit<f32>],
        /// The residual of the same channels, when there is one.
        residual: Option<&'a [f32]>,
        lo: f32,
        hi: f32,
        /// Apply the residual / clamp at all (off: store the plain sums, NaNs included).
        epilogue: bool,
    }

    /// [`super::run`], its lengths checked.
    pub(super) fn forward(x: &[f32], pr: &Prepared, bias: Option<&[f32]>, e: &Epilogue, p: &Conv2dParams) -> Vec<f32> {
        let (g, same, packed, vectors) = match &pr.kind {
            Kind::Winograd(u) => return winograd::forward(x, u, bias, e, p),
            Kind::Direct { geom, same, packed, vectors } => (geom, same, packed, vectors),
        };
        let taps = g.taps.len();
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = vec![0f32; g.cout];
                &zeros
            }
        };
        let in_per = p.cin * p.hw[0] * p.hw[1];
        let out_per = g.cout * g.hwo;
        let epilogue = e.is_some();
        // Few images: also split each image's output channels across threads.
        let split_channels = p.n < rayon::current_num_threads();
        // Not zeroed: the blocks store every output element exactly once (each plane's vectors cover
        // it, and every channel belongs to one block), so a memset would only be overwritten.
        let mut out = unwritten_output(p.n * out_per);
        let channel_block = |inp: &[f32], residual: Option<&[f32]>, (k, out): (usize, &mut [std::mem::MaybeUninit<f32>])| {
            let co0 = k * R;
            let rb = R.min(g.cout - co0);
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
            // SAFETY (both): `forward` is only reached when `available()` found AVX-512F on this CPU.
            match same {
                Some(sm) => {
                    for v0 in (0..sm.nvec).step_by(V) {
                        unsafe { dispatch_same(rb, V.min(sm.nvec - v0), &mut blk, sm, v0) };
                    }
                }
                None => {
                    for v0 in (0..g.nvec).step_by(V) {
                        unsafe { dispatch(rb, V.min(g.nvec - v0), &mut blk, g, v0, vectors) };
                    }
                }
            }
        };
        out.par_chunks_mut(out_per).enumerate().for_each(|(b, dst)| {
            let src = &x[b * in_per..(b + 1) * in_per];
            let residual = e.residual.map(|r| &r[b * out_per..(b + 1) * out_per]);
            let run = |inp: &[f32], dst: &mut [std::mem::MaybeUninit<f32>]| {
                if split_channels {
                    dst.par_chunks_mut(R * g.hwo).enumerate().for_each(|kb| channel_block(inp, residual, kb));
                } else {
                    dst.chunks_mut(R * g.hwo).enumerate().for_each(|kb| channel_block(inp, residual, kb));
                }
            };
            if same.is_some() {
                run(src, dst);
            } else if split_channels {
                // Not the thread-local buffer: while this thread waits for the channel blocks, rayon
                // may run another image on it, which would need the buffer too.
                let mut buf = Vec::new();
                pad_into(&mut buf, src, g, p);
                run(&buf, dst);
            } else {
                PADDED.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    pad_into(&mut buf, src, g, p);
                    run(&buf, dst);
                });
            }
        });
        // SAFETY: every element was written (see above).
        unsafe { assume_written(out) }
    }

    /// [`super::gather_strided`] at step 2: 32 source elements per two (masked) loads, their even lanes
    /// picked by one two-register permute.
    #[target_feature(enable = "avx512f")]
    pub(super) fn gather_stride2(dst: &mut [f32], src: &[f32]) {
        let n = dst.len();
        if n == 0 {
            return;
        }
        // The last element read is `src[2(n − 1)]`.
        assert!(2 * (n - 1) < src.len(), "gather_stride2: source too short");
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let lanes = |k: usize| -> __mmask16 { ((1u32 << k.min(LANES)) - 1) as u16 };
        for k in (0..n).step_by(LANES) {
            let count = (n - k).min(LANES);
            // Source elements `2k .. 2k + 2·count − 1`, split over two 16-lane loads.
            let span = 2 * count - 1;
            // SAFETY: the masks keep both loads inside `src[2k .. 2k + span]`, which ends at
            // `2(n − 1) + 1 ≤ src.len()` (asserted); the store's mask keeps it inside `dst[k .. n]`.
            unsafe {
                let lo = _mm512_maskz_loadu_ps(lanes(span), src.as_ptr().add(2 * k));
                // Wrapping: with an empty mask the pointer may lie past the slice's end.
                let hi = _mm512_maskz_loadu_ps(lanes(span.saturating_sub(LANES)), src.as_ptr().wrapping_add(2 * k + LANES));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(k), lanes(count), _mm512_permutex2var_ps(lo, even, hi));
            }
        }
    }

    /// [`super::depthwise_same`], its lengths checked.
    pub(super) fn depthwise(x: &[f32], w: &[f32], bias: Option<&[f32]>, e: &Epilogue, p: &Conv2dParams, s: &Same, reverse: bool) -> Vec<f32> {
        let taps = s.offs.len();
        let epilogue = e.is_some();
        // Every element is stored once below (each plane's vectors cover it).
        let mut out = unwritten_output(p.n * p.cout * s.hwo);
        out.par_chunks_mut(s.hwo).enumerate().for_each(|(bc, dst)| {
            let c = bc % p.cout;
            let plane = Plane {
                src: &x[bc * s.hw..(bc + 1) * s.hw],
                w: &w[c * taps..(c + 1) * taps],
                bias: bias.map_or(0.0, |b| b[c]),
                residual: e.residual.map(|r| &r[bc * s.hwo..(bc + 1) * s.hwo]),
                lo: e.lo,
                hi: e.hi,
                epilogue,
            };
            // SAFETY: only reached when `available()` found AVX-512F.
            unsafe {
                if reverse {
                    depthwise_plane::<true>(&plane, s, dst)
                } else {
                    depthwise_plane::<false>(&plane, s, dst)
                }
            };
        });
        // SAFETY: every element was written (see above).
        unsafe { assume_written(out) }
    }

    /// One `(image, channel)` plane of [`depthwise`].
    struct Plane<'a> {
        src: &'a [f32],
        w: &'a [f32],
        bias: f32,
        residual: Option<&'a [f32]>,
        lo: f32,
        hi: f32,
        epilogue: bool,
    }

    /// Vectors of one depthwise plane summed together (independent adds in flight).
    const DW: usize = 4;

    /// `REVERSE`: the taps summed last to first (see [`super::depthwise_input_grad`]).
    #[target_feature(enable = "avx512f")]
    fn depthwise_plane<const REVERSE: bool>(pl: &Plane, s: &Same, dst: &mut [std::mem::MaybeUninit<f32>]) {
        let taps = s.offs.len();
        assert!(
            pl.src.len() == s.hw
                && pl.w.len() == taps
                && dst.len() == s.hwo
                && pl.residual.is_none_or(|r| r.len() == s.hwo)
                && s.masks.len() == s.nvec * taps,
            "depthwise: plane out of bounds"
        );
        let base = pl.src.as_ptr();
        let (lo, hi) = (_mm512_set1_ps(pl.lo), _mm512_set1_ps(pl.hi));
        for v0 in (0..s.nvec).step_by(DW) {
            let vb = DW.min(s.nvec - v0);
            let mut acc = [_mm512_set1_ps(pl.bias); DW];
            for k in 0..taps {
                let t = if REVERSE { taps - 1 - k } else { k };
                let (off, wv) = (s.offs[t], _mm512_set1_ps(pl.w[t]));
                for (k, a) in acc.iter_mut().enumerate().take(vb) {
                    let v = v0 + k;
                    // SAFETY: a lane is set in the mask only when its input lies inside the plane
                    // (see [`Same`]); masked-off lanes are neither read nor faulted on, so the pointer
                    // may point outside the slice (wrapping arithmetic).
                    let xv = unsafe { _mm512_maskz_loadu_ps(s.masks[v * taps + t], base.wrapping_offset((v * LANES) as isize + off)) };
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(xv, wv));
                }
            }
            for (k, &a) in acc.iter().enumerate().take(vb) {
                let v = v0 + k;
                let store = s.store_mask(v);
                let at = v * LANES;
                let mut y = a;
                if pl.epilogue {
                    if let Some(res) = pl.residual {
                        // SAFETY: the stored lanes are the plane's outputs `at..at + count`, inside
                        // `res` (asserted length).
                        y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(store, res.as_ptr().add(at)) });
                    }
                    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
                }
                // SAFETY: as for the residual, inside `dst`; masked-off lanes are not written.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().cast::<f32>().add(at), store, y) };
            }
        }
    }

    /// Calls `$f::<RB, VB> $args` for the run-time `rb` (1..=R) and `vb` (1..=V).
    macro_rules! instantiate {
        ($f:ident, $rb:expr, $vb:expr, $args:tt) => {
            instantiate!(@arms $f, $rb, $vb, $args; 1 2 3 4 5 6 7 8)
        };
        (@arms $f:ident, $rb:expr, $vb:expr, $args:tt; $($r:literal)*) => {
            match ($rb, $vb) {
                $(($r, 1) => $f::<$r, 1> $args,
                  ($r, 2) => $f::<$r, 2> $args,
                  ($r, 3) => $f::<$r, 3> $args,)*
                (rb, vb) => unreachable!("register block {rb}×{vb} out of range"),
            }
        };
    }

    /// Runs [`block_same`] instantiated for `rb` channels and `vb` vectors.
    #[target_feature(enable = "avx512f")]
    fn dispatch_same(rb: usize, vb: usize, b: &mut Block, s: &Same, v0: usize) {
        instantiate!(block_same, rb, vb, (b, s, v0))
    }

    /// [`block`] on the unpadded image ([`Same`]): taps outermost so each tap's `VB` lane masks stay
    /// in mask registers over the input channels; the padding's zeros are the masked-off lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn block_same<const RB: usize, const VB: usize>(b: &mut Block, s: &Same, v0: usize) {
        let taps = s.offs.len();
        assert!(
            b.inp.len() == s.cin * s.hw
                && b.w.len() == s.cin * taps * RB
                && b.bias.len() == RB
                && b.out.len() == RB * s.hwo
                && b.residual.is_none_or(|r| r.len() == RB * s.hwo)
                && v0 + VB <= s.nvec
                && s.masks.len() == s.nvec * taps,
            "direct conv: block out of bounds"
        );
        let mut acc = [[_mm512_setzero_ps(); VB]; RB];
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [_mm512_set1_ps(b.bias[r]); VB];
        }
        let (weights, _) = b.w.as_chunks::<RB>();
        let base = b.inp.as_ptr();
        for (t, (&off, wt)) in s.offs.iter().zip(weights.chunks_exact(s.cin)).enumerate() {
            let masks: [__mmask16; VB] = std::array::from_fn(|v| s.masks[(v0 + v) * taps + t]);
            let mut at = (v0 * LANES) as isize + off;
            for w in wt {
                let mut xv = [_mm512_setzero_ps(); VB];
                for (v, x) in xv.iter_mut().enumerate() {
                    // SAFETY: a lane is set in the mask only when its input `(iy, ix)` lies inside the
                    // image, i.e. at `ci·hw + iy·w + ix < inp.len()`; masked-off lanes are neither read
                    // nor faulted on, so the pointer may point outside the slice (wrapping arithmetic).
                    *x = unsafe { _mm512_maskz_loadu_ps(masks[v], base.wrapping_offset(at + (v * LANES) as isize)) };
                }
                for (a, &wv) in acc.iter_mut().zip(w) {
                    let wv = _mm512_set1_ps(wv);
                    for (a, &x) in a.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(x, wv, *a);
                    }
                }
                at += s.hw as isize;
            }
        }
        let (lo, hi) = (_mm512_set1_ps(b.lo), _mm512_set1_ps(b.hi));
        let out = b.out.as_mut_ptr().cast::<f32>();
        for (r, a) in acc.iter().enumerate() {
            for (v, &y) in a.iter().enumerate() {
                let store = s.store_mask(v0 + v);
                let at = r * s.hwo + (v0 + v) * LANES;
                let mut y = y;
                if b.epilogue {
                    if let Some(res) = b.residual {
                        // SAFETY: the stored lanes are `at..at + count` with `count` the plane's
                        // remaining outputs, inside channel `r`'s plane of `res` (asserted length).
                        y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(store, res.as_ptr().add(at)) });
                    }
                    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
                }
                // SAFETY: as for the residual, inside `out`; masked-off lanes are not written.
                unsafe { _mm512_mask_storeu_ps(out.add(at), store, y) };
            }
        }
    }

    /// Runs [`block`] instantiated for `rb` channels and `vb` vectors.
    #[target_feature(enable = "avx512f")]
    fn dispatch(rb: usize, vb: usize, b: &mut Block, g: &Geom, v0: usize, vt: &[(u16, usize)]) {
        instantiate!(block, rb, vb, (b, g, v0, vt))
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
                unsafe { _mm512_mask_storeu_ps(b.out.as_mut_ptr().cast::<f32>().add(at), store, y) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::lcg;
    use super::super::conv::{conv2d_forward_fused_im2col, Conv2dParams, Epilogue};
    use super::*;

    /// Largest difference relative to `b`'s magnitude; infinite where `a` has a NaN (`f32::max` would
    /// skip it), which is what an unwritten output element holds in tests.
    fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        if a.iter().zip(b).any(|(a, b)| a.is_nan() && !b.is_nan()) {
            return f32::INFINITY;
        }
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
        // Cases run with the padded layout and with the in-place one ([`Same`]).
        let mut layouts = [0; 2];
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
                    layouts[usize::from(Same::new(&p).is_some())] += 1;
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
        assert!(layouts.iter().all(|&c| c > 20), "padded / in-place layout cases: {layouts:?}");
    }

    /// The input gradient as a convolution of `dy` equals `Wᵀ·dy` + col2im, over kernels, paddings
    /// (including ones the direct path refuses) and widths.
    #[test]
    fn input_grad_matches_gemm() {
        if !available() {
            println!("direct conv: no AVX-512F on this CPU, test skipped");
            return;
        }
        let (mut direct_cases, mut case) = (0, 0u64);
        for kernel in [[3, 3], [5, 5], [3, 1], [1, 1]] {
            for pads in [[1, 1, 1, 1], [0, 0, 0, 0], [2, 2, 2, 2], [0, 1, 2, 0], [1, 0, 0, 1]] {
                for (h, w) in [(8, 8), (5, 17), (32, 32), (3, 4)] {
                    case += 1;
                    let (cin, cout, n) = ([3, 16, 17][case as usize % 3], [16, 8, 5][case as usize / 3 % 3], 1 + case as usize % 2);
                    let p = Conv2dParams { n, cin, hw: [h, w], cout, kernel, strides: [1, 1], pads, dilations: [1, 1], groups: 1 };
                    if h + pads[0] + pads[2] < kernel[0] || w + pads[1] + pads[3] < kernel[1] {
                        continue;
                    }
                    let [ho, wo] = p.out_hw();
                    let dy = lcg(n * cout * ho * wo, case);
                    let wt = lcg(cout * cin * kernel[0] * kernel[1], 100 + case);
                    let want = super::super::conv::conv2d_input_grad_gemm(&dy, &wt, &p);
                    if let Some(got) = input_grad(&dy, &wt, &p) {
                        direct_cases += 1;
                        let d = rel_diff(&got, &want);
                        assert!(d < 1e-5, "{p:?}: rel diff {d}");
                    }
                }
            }
        }
        assert!(direct_cases > 30, "only {direct_cases} cases took the direct path");
    }

    /// The vectorised stride-2 gather equals the scalar one for every length and source slack.
    #[test]
    fn gather_stride2_matches_scalar() {
        let src: Vec<f32> = (0..100).map(|i| i as f32 * 0.5 - 7.0).collect();
        for n in 0..=40 {
            for extra in 0..3 {
                let len = if n == 0 { extra } else { 2 * (n - 1) + 1 + extra };
                let mut got = vec![f32::NAN; n];
                gather_strided(&mut got, &src[..len], 2);
                let want: Vec<f32> = src.iter().step_by(2).take(n).copied().collect();
                assert_eq!(got, want, "n {n}, source length {len}");
            }
        }
    }

    /// The register-sum depthwise kernel equals the run-based one plus the epilogue exactly (values;
    /// the sign of a zero may differ), over kernels, "same"-width pads, widths, channels, epilogues.
    #[test]
    fn depthwise_same_matches_run_based_exactly() {
        if !available() {
            println!("direct conv: no AVX-512F on this CPU, test skipped");
            return;
        }
        let cases = depthwise_cases();
        for (case, p) in cases.iter().enumerate() {
            let (case, p, [n, c, h, w]) = (case as u64, *p, [p.n, p.cin, p.hw[0], p.hw[1]]);
            {
                let [ho, wo] = p.out_hw();
                let x = lcg(n * c * h * w, case);
                let wt = lcg(c * p.kernel[0] * p.kernel[1], 100 + case);
                let b = lcg(c, 200 + case);
                let res = lcg(n * c * ho * wo, 300 + case);
                for e in [
                    Epilogue::NONE,
                    Epilogue { residual: Some(&res), lo: f32::NEG_INFINITY, hi: f32::INFINITY },
                    Epilogue { residual: None, lo: 0.0, hi: 0.3 },
                ] {
                    for bias in [None, Some(&b[..])] {
                        let mut want = super::super::depthwise::forward(&x, &wt, bias, &p);
                        for (b, dst) in want.chunks_mut(c * ho * wo).enumerate() {
                            e.apply(dst, b);
                        }
                        let got = depthwise_same(&x, &wt, bias, &e, &p).expect("same-width stride-1 depthwise");
                        assert_eq!(got.len(), want.len());
                        let same = got.iter().zip(&want).all(|(a, b)| a == b);
                        assert!(same, "{p:?} bias {} residual {}: differs (rel diff {})", bias.is_some(), e.residual.is_some(), rel_diff(&got, &want));
                    }
                }
            }
        }
        assert!(cases.len() >= 25, "only {} cases", cases.len());
    }

    /// Stride-1 same-width depthwise geometries: 3×3, 5×5 and 3×1 kernels, symmetric and asymmetric
    /// pads, planes from 1×1 to 3×40, channel counts 2–19, 1–3 images.
    fn depthwise_cases() -> Vec<Conv2dParams> {
        let mut cases = Vec::new();
        for (kernel, pads) in [([3, 3], [1, 1, 1, 1]), ([5, 5], [2, 2, 2, 2]), ([3, 3], [0, 1, 2, 1]), ([3, 1], [1, 0, 1, 0]), ([5, 5], [2, 2, 1, 2])] {
            for (h, w) in [(7, 7), (1, 1), (16, 16), (5, 17), (33, 9), (3, 40)] {
                let k = cases.len();
                let (c, n) = ([2, 3, 8, 19][k % 4], 1 + k % 3);
                if h + pads[0] + pads[2] >= kernel[0] {
                    cases.push(Conv2dParams { n, cin: c, hw: [h, w], cout: c, kernel, strides: [1, 1], pads, dilations: [1, 1], groups: c });
                }
            }
        }
        cases
    }

    /// The depthwise input gradient through [`depthwise_input_grad`] equals the run-based one exactly.
    #[test]
    fn depthwise_input_grad_matches_run_based_exactly() {
        if !available() {
            println!("direct conv: no AVX-512F on this CPU, test skipped");
            return;
        }
        let cases = depthwise_cases();
        for (case, p) in cases.iter().enumerate() {
            let [ho, wo] = p.out_hw();
            let dy = lcg(p.n * p.cout * ho * wo, case as u64);
            let wt = lcg(p.cout * p.kernel[0] * p.kernel[1], 100 + case as u64);
            let want = super::super::depthwise::input_grad(&dy, &wt, p);
            let got = depthwise_input_grad(&dy, &wt, p).expect("same-width stride-1 depthwise");
            assert!(got.iter().zip(&want).all(|(a, b)| a == b), "{p:?}: differs (rel diff {})", rel_diff(&got, &want));
        }
        assert!(cases.len() >= 25, "only {} cases", cases.len());
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
