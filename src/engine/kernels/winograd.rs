//! Winograd F(2×2, 3×3) for dense 3×3 stride-1 convolutions, the bulk of ResNet-style CNNs.
//!
//! Why: the direct kernel ([`super::direct`]) runs these at 80–95% of the FMA peak of this CPU, and
//! they were still 79% of ResNet20 eval. Winograd's minimal filtering computes each 2×2 output tile
//! from a 4×4 input tile with 16 multiplies per input–output channel pair instead of 36 (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016):
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The 16 element-wise products summed over input channels are 16
//! independent GEMMs `M_e = U_e · V_e` (`U_e` `[cout, cin]` the transformed weights, built once per
//! weight tensor; `V_e` `[cin, tiles]` the transformed input), run with the same register blocking
//! as the direct kernel. The input and output transforms are additions only.
//!
//! Layout: tiles are numbered row by row over all images of a block, so a 4×4-tile plane (8×8 output)
//! still fills whole 16-lane vectors in the GEMM; the transforms work one tile row at a time (lanes
//! are the tiles of a row), gathering the stride-2 tile columns with two-register permutes.
//! A block of tile rows is transformed, multiplied and transformed back while its `V` and `M` stay in
//! the core's L2 cache.
//!
//! Numerics: the transforms use only ±1 and ±½, so the result differs from the direct sum by rounding
//! alone (about 1e-7 relative here; the tests hold it to 1e-5 of the output's magnitude).

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv::{Conv2dParams, Epilogue};

/// Output channels per register block of the GEMM (the weights are padded to a multiple).
const R: usize = 8;
/// 16-lane vectors of tiles per register block of the GEMM.
const V: usize = 3;
const LANES: usize = 16;
/// Elements of a 4×4 transformed tile.
const E: usize = 16;
/// Fewest input and output channels for which Winograd is used: with fewer, the transforms cost more
/// than the multiplies they save (ResNet20's first 3-channel convolution stays on the direct kernel).
const MIN_CHANNELS: usize = 8;
/// Bytes of `V` and `M` per block of tile rows: within the 1 MiB L2 of one core here, with room for
/// the weights and the block's input and output planes.
const BLOCK_BYTES: usize = 512 << 10;

/// Whether Winograd runs `p`: dense 3×3, stride 1, dilation 1, at least [`MIN_CHANNELS`] in and out,
/// and not turned off by `ZEROQ_WINOGRAD=0` (read once; for A/B timing in one binary).
pub(super) fn eligible(p: &Conv2dParams) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("ZEROQ_WINOGRAD").map_or(true, |v| v.trim() != "0"));
    on && applies(p)
}

/// [`eligible`] without the environment switch (tests compare both paths in one process).
pub(super) fn applies(p: &Conv2dParams) -> bool {
    p.kernel == [3, 3]
        && p.strides == [1, 1]
        && p.dilations == [1, 1]
        && p.groups == 1
        && p.cin >= MIN_CHANNELS
        && p.cout >= MIN_CHANNELS
        && p.hw[0] + p.pads[0] + p.pads[2] >= 3
        && p.hw[1] + p.pads[1] + p.pads[3] >= 3
}

/// Output channels rounded up to whole register blocks.
fn padded_cout(cout: usize) -> usize {
    cout.div_ceil(R) * R
}

/// `U = G g Gᵀ` for every output–input channel pair of `w` `[cout, cin, 3, 3]`, stored per transformed
/// element `e` and block of [`R`] output channels as `[e][block][cin][r]` (the GEMM's broadcasts in
/// order), the output channels zero-padded to whole blocks.
// The transforms index rows and columns of 4×4 tiles by their math names (i, j, a).
#[allow(clippy::needless_range_loop)]
pub(super) fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let coutp = padded_cout(cout);
    let mut u = vec![0f32; E * coutp * cin];
    // G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
    let g_rows = |k: [f32; 3]| [k[0], 0.5 * (k[0] + k[1] + k[2]), 0.5 * (k[0] - k[1] + k[2]), k[2]];
    for co in 0..cout {
        for ci in 0..cin {
            let k = &w[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
            // G applied to the columns of each kernel row, then to the rows of the result.
            let rows: [[f32; 4]; 3] = std::array::from_fn(|i| g_rows([k[3 * i], k[3 * i + 1], k[3 * i + 2]]));
            for j in 0..4 {
                let col = g_rows([rows[0][j], rows[1][j], rows[2][j]]);
                for (i, &v) in col.iter().enumerate() {
                    let e = 4 * i + j;
                    u[((e * (coutp / R) + co / R) * cin + ci) * R + co % R] = v;
                }
            }
        }
    }
    u
}

/// Sizes of one convolution's tiling.
struct Tiling {
    cin: usize,
    cout: usize,
    coutp: usize,
    hw: [usize; 2],
    out: [usize; 2],
    /// Top and left padding.
    pt: usize,
    pl: usize,
    /// Tiles per column and per row of one image.
    ty: usize,
    tx: usize,
    /// Tile rows per block.
    rows: usize,
}

/// Extra floats between the 16 element planes of `V` and `M`. Why: a plane is `channels × tpad` floats,
/// often a multiple of 4 KiB, and then the 16 stores (loads) of one transformed tile hit the same L1
/// set and alias in the store-to-load check; one cache line of skew per plane spreads them.
const SKEW: usize = LANES;

impl Tiling {
    /// Floats per element plane of `V` (`cin` rows of `tpad` tiles, skewed).
    fn v_plane(&self, tpad: usize) -> usize {
        self.cin * tpad + SKEW
    }

    /// Floats per element plane of `M` (`coutp` rows of `tpad` tiles, skewed).
    fn m_plane(&self, tpad: usize) -> usize {
        self.coutp * tpad + SKEW
    }

    fn new(p: &Conv2dParams) -> Self {
        let out = p.out_hw();
        let (ty, tx) = (out[0].div_ceil(2), out[1].div_ceil(2));
        let coutp = padded_cout(p.cout);
        let tiles = (BLOCK_BYTES / (E * (p.cin + coutp) * std::mem::size_of::<f32>())).max(LANES);
        Self {
            cin: p.cin,
            cout: p.cout,
            coutp,
            hw: p.hw,
            out,
            pt: p.pads[0],
            pl: p.pads[1],
            ty,
            tx,
            rows: (tiles / tx).max(1),
        }
    }
}

thread_local! {
    /// The transformed input `V` and the products `M` of the current block, reused across blocks and
    /// calls on this thread.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Tiles per segment: up to 8 consecutive tiles of one tile row, whose 16 + 2 input columns two
/// 16-lane loads cover. Two segments fill one vector, so planes narrower than 32 columns (8×8 at
/// the end of ResNet20: 4 tiles per row) still use most lanes of the transforms.
const SEG: usize = 8;

/// Up to [`SEG`] consecutive tiles of one tile row.
#[derive(Clone, Copy)]
struct Segment {
    img: usize,
    /// Tile row in the image.
    ty: usize,
    /// First tile's column, and the tiles.
    tx0: usize,
    cnt: usize,
    /// Position of the first tile in the block's tile numbering (`V` and `M` columns).
    pos: usize,
}

/// What [`x86::input_block`] precomputes per pair of segments: per segment and tile row, the input
/// offset (channel 0) and the load masks at the segment's column and two further; the store masks and
/// positions.
#[derive(Clone, Copy)]
struct Pair {
    base: [[isize; 4]; 2],
    masks: [[[u16; 2]; 4]; 2],
    /// The pair's tiles: see [`Lanes`].
    lanes: Lanes,
}

/// Where a pair of segments' tiles sit in a vector and in `V`/`M`: lanes 0..cnt of the first
/// segment and 8..8+cnt of the second (`mask`), stored as `count` consecutive tiles from `pos` (the
/// second segment's tiles follow the first's in the block's numbering). `in_place` when the first
/// segment is full, so the lanes are already consecutive; otherwise they are compressed before the
/// store and expanded after the load, in register.
#[derive(Clone, Copy)]
struct Lanes {
    mask: u16,
    count: usize,
    pos: usize,
    in_place: bool,
}

impl Lanes {
    fn new(sa: Segment, sb: Option<Segment>) -> Self {
        debug_assert!(sb.is_none_or(|b| b.pos == sa.pos + sa.cnt));
        let cb = sb.map_or(0, |b| b.cnt);
        let mask = (((1u32 << sa.cnt) - 1) | (((1u32 << cb) - 1) << SEG)) as u16;
        Self { mask, count: sa.cnt + cb, pos: sa.pos, in_place: sa.cnt == SEG }
    }
}

/// The output pointer shared by the blocks, which write disjoint tiles.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each block writes only the output pixels of its own tiles (see `forward`), so no two threads
// write the same element, and nothing reads the output until the parallel loop has ended.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// The convolution of the `p.n` images `x` with the transformed weights `u` ([`transform_weights`]),
/// plus `bias`, then `e`. The caller has checked the lengths of `x`, `bias` and the residual, and that
/// AVX-512F is present.
#[cfg(target_arch = "x86_64")]
pub(super) fn forward(x: &[f32], u: &[f32], bias: Option<&[f32]>, e: &Epilogue, p: &Conv2dParams) -> Vec<f32> {
    let t = Tiling::new(p);
    assert_eq!(u.len(), E * t.coutp * t.cin, "winograd: transformed weight of the wrong size");
    let out_per = t.cout * t.out[0] * t.out[1];
    let in_per = t.cin * t.hw[0] * t.hw[1];
    // The tiles cover every output pixel of every channel exactly once (a tile's pixels beyond the
    // plane are not stored).
    let mut out = super::direct::unwritten_output(p.n * out_per);
    let zeros = vec![0f32; t.cout];
    let bias = bias.unwrap_or(&zeros);
    let total_rows = p.n * t.ty;
    let out_len = out.len();
    let dst = Out(out.as_mut_ptr().cast::<f32>());
    (0..total_rows.div_ceil(t.rows)).into_par_iter().for_each(|b| {
        let rows = b * t.rows..((b + 1) * t.rows).min(total_rows);
        let tpad = (rows.len() * t.tx).div_ceil(LANES) * LANES;
        let segs: Vec<Segment> = rows
            .clone()
            .enumerate()
            .flat_map(|(k, r)| {
                (0..t.tx).step_by(SEG).map(move |tx0| Segment {
                    img: r / t.ty,
                    ty: r % t.ty,
                    tx0,
                    cnt: SEG.min(t.tx - tx0),
                    pos: k * t.tx + tx0,
                })
            })
            .collect();
        BUFFERS.with(|bufs| {
            let (vbuf, mbuf) = &mut *bufs.borrow_mut();
            vbuf.resize(vbuf.len().max(E * t.v_plane(tpad)), 0.0);
            mbuf.resize(mbuf.len().max(E * t.m_plane(tpad)), 0.0);
            // SAFETY (all three): AVX-512F is present (the caller's contract); each step checks
            // the bounds of its slices.
            unsafe {
                x86::input_block(x, in_per, &t, &segs, tpad, vbuf);
                x86::multiply_block(u, &t, tpad, vbuf, mbuf);
                x86::output_block(mbuf, &t, &segs, tpad, bias, e, dst, out_len);
            }
        });
    });
    // SAFETY: every element was written (see above).
    unsafe { super::direct::assume_written(out) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Lanes `l` with `0 ≤ start + l < len` (the columns of a row that exist).
    fn inside(start: isize, len: usize) -> __mmask16 {
        let lo = (-start).clamp(0, LANES as isize) as u32;
        let hi = (len as isize - start).clamp(0, LANES as isize) as u32;
        let upto = |k: u32| if k >= 16 { u32::MAX } else { (1u32 << k) - 1 };
        (upto(hi) & !upto(lo)) as u16
    }

    /// The first `k` lanes.
    fn first(k: usize) -> __mmask16 {
        if k >= LANES { 0xffff } else { ((1u32 << k) - 1) as u16 }
    }

    /// `V = Bᵀ d B` for every tile of the block's segments, every input channel, stored as
    /// `v[e][ci][tile]` (planes of [`Tiling::v_plane`]).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)]
    pub(super) fn input_block(x: &[f32], in_per: usize, t: &Tiling, segs: &[Segment], tpad: usize, v: &mut [f32]) {
        let [h, w] = t.hw;
        let estride = t.v_plane(tpad);
        assert!(v.len() >= E * estride);
        assert!(segs.iter().all(|s| s.pos + s.cnt <= tpad && s.cnt <= SEG && (s.img + 1) * in_per <= x.len()));
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        // Per pair of segments (lanes 0–7: the first, 8–15: the second) and tile row `i`: where input
        // row 2·ty + i − pt of channel 0 starts, offset to the segment's first column 2·tx0 − pl,
        // and the lanes of the loads from that column (`+0`) and two further (`+2`) that exist.
        // Rows outside the image load nothing. Computed once for all input channels.
        let pairs: Vec<Pair> = segs
            .chunks(2)
            .map(|pair| {
                let (sa, sb) = (pair[0], pair.get(1).copied());
                let mut p = Pair {
                    base: [[0; 4]; 2],
                    masks: [[[0; 2]; 4]; 2],
                    lanes: Lanes::new(sa, sb),
                };
                for (k, seg) in [Some(sa), sb].into_iter().enumerate() {
                    let Some(seg) = seg else { continue };
                    let c = (2 * seg.tx0) as isize - t.pl as isize;
                    for i in 0..4 {
                        let iy = (2 * seg.ty + i) as isize - t.pt as isize;
                        if (0..h as isize).contains(&iy) {
                            p.base[k][i] = (seg.img * in_per) as isize + iy * w as isize + c;
                            p.masks[k][i] = [inside(c, w), inside(c + 2, w)];
                        }
                    }
                }
                p
            })
            .collect();
        let hw = (h * w) as isize;
        // Channels outermost: the loads then walk each input plane in order (with pairs outermost,
        // the same rows of every channel, 4 KiB apart on a 32×32 plane, fought over one L1 set).
        for ci in 0..t.cin {
            for &Pair { base, masks, lanes } in &pairs {
                let mut d = [[_mm512_setzero_ps(); 4]; 4];
                for (i, di) in d.iter_mut().enumerate() {
                    // The 16 columns from the segment's start hold columns 0 and 1 of its 8 tiles
                    // (even and odd lanes), those from two further columns 2 and 3.
                    let load = |k: usize, dc: usize| {
                        let at = x.as_ptr().wrapping_offset(base[k][i] + ci as isize * hw + dc as isize);
                        // SAFETY: the mask keeps only the columns `0 ≤ c < w` of a row `0 ≤ iy < h`
                        // of channel `ci` of image `img`, inside `x` (asserted); masked-off lanes are
                        // neither read nor faulted on, so the pointer may lie outside (wrapping).
                        unsafe { _mm512_maskz_loadu_ps(masks[k][i][dc / 2], at) }
                    };
                    let (a0, b0, a2, b2) = (load(0, 0), load(1, 0), load(0, 2), load(1, 2));
                    *di = [
                        _mm512_permutex2var_ps(a0, even, b0),
                        _mm512_permutex2var_ps(a0, odd, b0),
                        _mm512_permutex2var_ps(a2, even, b2),
                        _mm512_permutex2var_ps(a2, odd, b2),
                    ];
                }
                // Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]], on rows then columns.
                let bt = |a: [__m512; 4]| {
                    [
                        _mm512_sub_ps(a[0], a[2]),
                        _mm512_add_ps(a[1], a[2]),
                        _mm512_sub_ps(a[2], a[1]),
                        _mm512_sub_ps(a[1], a[3]),
                    ]
                };
                let cols: [[__m512; 4]; 4] = std::array::from_fn(|j| bt([d[0][j], d[1][j], d[2][j], d[3][j]]));
                for i in 0..4 {
                    let vi = bt([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]);
                    for (j, &val) in vi.iter().enumerate() {
                        let packed = if lanes.in_place { val } else { _mm512_maskz_compress_ps(lanes.mask, val) };
                        // SAFETY: the pair's `count` tiles are `pos..pos + count ≤ tpad` of row `ci`
                        // of plane `4i + j`, inside `v` (asserted).
                        unsafe {
                            let plane = v.as_mut_ptr().add((4 * i + j) * estride + ci * tpad);
                            _mm512_mask_storeu_ps(plane.add(lanes.pos), first(lanes.count), packed);
                        }
                    }
                }
            }
        }
    }

    /// `M_e = U_e · V_e` for the 16 elements `e`: `[coutp, tpad]` each, stored as `m[e][co][tile]`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn multiply_block(u: &[f32], t: &Tiling, tpad: usize, v: &[f32], m: &mut [f32]) {
        let nvec = tpad / LANES;
        for e in 0..E {
            let ve = &v[e * t.v_plane(tpad)..e * t.v_plane(tpad) + t.cin * tpad];
            for blk in 0..t.coutp / R {
                let ub = &u[(e * (t.coutp / R) + blk) * t.cin * R..(e * (t.coutp / R) + blk + 1) * t.cin * R];
                let mb = &mut m[e * t.m_plane(tpad) + blk * R * tpad..e * t.m_plane(tpad) + (blk + 1) * R * tpad];
                for v0 in (0..nvec).step_by(V) {
                    match V.min(nvec - v0) {
                        3 => gemm::<3>(ub, ve, mb, tpad, v0),
                        2 => gemm::<2>(ub, ve, mb, tpad, v0),
                        _ => gemm::<1>(ub, ve, mb, tpad, v0),
                    }
                }
            }
        }
    }

    /// [`R`] output channels × `VB` vectors of tiles from vector `v0`: the sum over input channels.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn gemm<const VB: usize>(u: &[f32], v: &[f32], m: &mut [f32], tpad: usize, v0: usize) {
        let cin = u.len() / R;
        assert!(u.len() == cin * R && v.len() == cin * tpad && m.len() == R * tpad && (v0 + VB) * LANES <= tpad);
        let mut acc = [[_mm512_setzero_ps(); VB]; R];
        let (weights, _) = u.as_chunks::<R>();
        let base = v.as_ptr();
        for (ci, wr) in weights.iter().enumerate() {
            let mut xv = [_mm512_setzero_ps(); VB];
            for (k, xk) in xv.iter_mut().enumerate() {
                // SAFETY: `ci < cin` and `(v0 + VB)·16 ≤ tpad` (asserted): inside `v`.
                *xk = unsafe { _mm512_loadu_ps(base.add(ci * tpad + (v0 + k) * LANES)) };
            }
            for (a, &wv) in acc.iter_mut().zip(wr) {
                let wv = _mm512_set1_ps(wv);
                for (a, &xk) in a.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(xk, wv, *a);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (k, &y) in a.iter().enumerate() {
                // SAFETY: `r < R` and `(v0 + VB)·16 ≤ tpad`: inside `m`.
                unsafe { _mm512_storeu_ps(m.as_mut_ptr().add(r * tpad + (v0 + k) * LANES), y) };
            }
        }
    }

    /// `Y = Aᵀ M A` for every tile of the block's segments and output channel, plus the bias and the
    /// epilogue, written to the output pixels of those tiles.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub(super) fn output_block(
        m: &[f32],
        t: &Tiling,
        segs: &[Segment],
        tpad: usize,
        bias: &[f32],
        ep: &Epilogue,
        out: Out,
        out_len: usize,
    ) {
        let [ho, wo] = t.out;
        let out_per = t.cout * ho * wo;
        let estride = t.m_plane(tpad);
        assert!(m.len() >= E * estride && bias.len() == t.cout);
        assert!(segs.iter().all(|s| s.pos + s.cnt <= tpad && s.cnt <= SEG && (s.img + 1) * out_per <= out_len));
        assert!(ep.residual.is_none_or(|r| r.len() == out_len));
        let lo_half = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let hi_half = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        let epilogue = ep.is_some();
        let (lo, hi) = (_mm512_set1_ps(ep.lo), _mm512_set1_ps(ep.hi));
        for pair in segs.chunks(2) {
            let (sa, sb) = (pair[0], pair.get(1).copied());
            let lanes = Lanes::new(sa, sb);
            for co in 0..t.cout {
                let b = _mm512_set1_ps(bias[co]);
                // SAFETY: the pair's `count` tiles are `pos..pos + count ≤ tpad` of row `co` of each
                // plane, inside `m` (asserted).
                let me: [__m512; E] = std::array::from_fn(|e| {
                    let v = unsafe { _mm512_maskz_loadu_ps(first(lanes.count), m.as_ptr().add(e * estride + co * tpad + lanes.pos)) };
                    if lanes.in_place { v } else { _mm512_maskz_expand_ps(lanes.mask, v) }
                });
                // Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]], on rows then columns.
                let at2 = |a: [__m512; 4]| {
                    [
                        _mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]),
                        _mm512_sub_ps(_mm512_sub_ps(a[1], a[2]), a[3]),
                    ]
                };
                let cols: [[__m512; 2]; 4] = std::array::from_fn(|j| at2([me[j], me[4 + j], me[8 + j], me[12 + j]]));
                for a in 0..2 {
                    let y = at2([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
                    let (y0, y1) = (_mm512_add_ps(y[0], b), _mm512_add_ps(y[1], b));
                    // A tile's two pixels are output columns 2·tx and 2·tx + 1: interleaving the
                    // lanes gives segment `sa`'s 16 output columns, then segment `sb`'s.
                    let halves = [_mm512_permutex2var_ps(y0, lo_half, y1), _mm512_permutex2var_ps(y0, hi_half, y1)];
                    for (s, v) in [Some(sa), sb].into_iter().zip(halves) {
                        let Some(s) = s else { continue };
                        let oy = 2 * s.ty + a;
                        let ox = 2 * s.tx0;
                        let keep = inside(ox as isize, wo);
                        if oy >= ho || keep == 0 {
                            continue;
                        }
                        let idx = s.img * out_per + (co * ho + oy) * wo + ox;
                        let mut v = v;
                        if epilogue {
                            if let Some(res) = ep.residual {
                                // SAFETY: the kept lanes are columns `< wo` of output row `oy < ho`
                                // of plane `co` of image `img`, inside `res` (the output's length).
                                v = _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(keep, res.as_ptr().add(idx)) });
                            }
                            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                        }
                        // SAFETY: as for the residual, inside the output (`out_len` elements); this
                        // pixel belongs to this segment's tile alone.
                        unsafe { _mm512_mask_storeu_ps(out.0.add(idx), keep, v) };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::lcg;
    use super::super::conv::{conv2d_forward_fused_im2col, Conv2dParams, Epilogue};
    use super::*;

    /// Against im2col + GEMM: paddings (symmetric, asymmetric, none), odd and even planes from 1×1
    /// up to 33 wide (one and several 16-tile vectors per row), channel counts that are not multiples
    /// of the register block, several images per block, every epilogue.
    #[test]
    fn matches_im2col_gemm() {
        if !super::super::direct::available() {
            println!("winograd: no AVX-512F on this CPU, test skipped");
            return;
        }
        let mut case = 0u64;
        for pads in [[1, 1, 1, 1], [0, 0, 0, 0], [2, 2, 2, 2], [0, 1, 2, 1], [1, 0, 0, 2]] {
            for (h, w) in [(32, 32), (8, 8), (5, 7), (1, 1), (3, 33), (16, 17), (2, 40)] {
                case += 1;
                let (cin, cout, n) = ([8, 16, 19][case as usize % 3], [8, 17, 32][case as usize / 3 % 3], 1 + case as usize % 3);
                let p = Conv2dParams { n, cin, hw: [h, w], cout, kernel: [3, 3], strides: [1, 1], pads, dilations: [1, 1], groups: 1 };
                if !applies(&p) {
                    continue;
                }
                let [ho, wo] = p.out_hw();
                let x = lcg(n * cin * h * w, case);
                let wt = lcg(cout * cin * 9, 100 + case);
                let b = lcg(cout, 200 + case);
                let res = lcg(n * cout * ho * wo, 300 + case);
                let u = transform_weights(&wt, cout, cin);
                for e in [
                    Epilogue::NONE,
                    Epilogue { residual: Some(&res), lo: 0.0, hi: f32::INFINITY },
                    Epilogue { residual: None, lo: -0.1, hi: 0.2 },
                ] {
                    for bias in [None, Some(&b[..])] {
                        let want = conv2d_forward_fused_im2col(&x, &wt, bias, &e, &p);
                        let got = forward(&x, &u, bias, &e, &p);
                        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                        // NaN (an unwritten element, see `forward`) counts as infinitely far.
                        let d = got.iter().zip(&want).map(|(a, b)| if a.is_nan() { f32::INFINITY } else { (a - b).abs() }).fold(0f32, f32::max) / scale;
                        assert!(d < 1e-5, "{p:?} bias {} residual {}: rel diff {d}", bias.is_some(), e.residual.is_some());
                    }
                }
            }
        }
        assert!(case >= 30);
    }
}
