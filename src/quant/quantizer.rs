//! Uniform affine quantization (DESIGN.md "Quantization").
//!
//! For a range [a, b] and k bits: `s = (b − a)/(2^k − 1)`, `z = round(−a/s) + qmin`, and
//! `q = clamp(round(x/s) + z, qmin, qmax)`, `x̂ = s·(q − z)` with the signed range
//! `[qmin, qmax] = [−2^(k−1), 2^(k−1) − 1]`. The range is widened to contain 0 so that 0 is exactly
//! representable and the zero point is an integer in range, as ONNX QuantizeLinear requires.
//! Rounding is half to even, as in ONNX Runtime and burn.

use serde::Serialize;

/// Quantization parameters of one tensor or one channel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QParams {
    /// Step between grid points (> 0).
    pub scale: f32,
    /// Integer that represents 0.0.
    pub zero_point: i32,
    /// Smallest integer.
    pub qmin: i32,
    /// Largest integer.
    pub qmax: i32,
}

/// `[−2^(k−1), 2^(k−1) − 1]`.
pub fn signed_range(bits: u32) -> (i32, i32) {
    let half = 1i32 << (bits - 1);
    (-half, half - 1)
}

/// The range grown to contain 0; a zero-width range becomes one that maps 0 exactly with scale 1
/// (any scale would do: every value equals the single representable one).
fn widen(a: f32, b: f32) -> (f32, f32) {
    (a.min(0.0), b.max(0.0))
}

impl QParams {
    /// Asymmetric parameters for [a, b] at `bits` (ZeroQ's default).
    pub fn asymmetric(a: f32, b: f32, bits: u32) -> Self {
        let (qmin, qmax) = signed_range(bits);
        let (a, b) = widen(a, b);
        let width = b - a;
        if !(width > f32::MIN_POSITIVE) || !width.is_finite() {
            return Self { scale: 1.0, zero_point: 0, qmin, qmax };
        }
        let scale = width / ((1u64 << bits) - 1) as f32;
        let zero_point = ((-a / scale).round_ties_even() as i64 + qmin as i64).clamp(qmin as i64, qmax as i64) as i32;
        Self { scale, zero_point, qmin, qmax }
    }

    /// Symmetric parameters (zero point 0) covering max(|a|, |b|): what integer kernels such as
    /// ONNX Runtime's QLinearConv and TensorRT need for weights.
    pub fn symmetric(a: f32, b: f32, bits: u32) -> Self {
        let (qmin, qmax) = signed_range(bits);
        let m = a.abs().max(b.abs());
        if !(m > f32::MIN_POSITIVE) || !m.is_finite() {
            return Self { scale: 1.0, zero_point: 0, qmin, qmax };
        }
        Self { scale: m / qmax as f32, zero_point: 0, qmin, qmax }
    }

    /// The integer for `x`.
    pub fn quantize(&self, x: f32) -> i32 {
        ((x / self.scale).round_ties_even() as i64 + self.zero_point as i64).clamp(self.qmin as i64, self.qmax as i64) as i32
    }

    /// The value an integer stands for.
    pub fn dequantize(&self, q: i32) -> f32 {
        self.scale * (q - self.zero_point) as f32
    }

    /// Quantize then dequantize.
    pub fn fake(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// Smallest and largest representable values.
    pub fn bounds(&self) -> (f32, f32) {
        (self.dequantize(self.qmin), self.dequantize(self.qmax))
    }
}

/// How weight ranges are chosen per output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum WeightRange {
    /// Channel min/max, asymmetric (ZeroQ).
    MinMax,
    /// Channel max |w|, zero point 0.
    Symmetric,
    /// Asymmetric, with the clipping range that minimises the channel's squared quantization error
    /// (searched over 100 shrink factors of the min/max range).
    Mse,
}

/// Per-output-channel quantization of a weight whose first axis is the output channel.
/// Returns the dequantized weights and the parameters of each channel.
pub fn quantize_per_channel(w: &[f32], out_channels: usize, bits: u32, range: WeightRange) -> (Vec<f32>, Vec<QParams>) {
    let per = w.len() / out_channels.max(1);
    let mut out = Vec::with_capacity(w.len());
    let mut params = Vec::with_capacity(out_channels);
    for ch in w.chunks(per.max(1)) {
        let (lo, hi) = ch.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let p = match range {
            WeightRange::MinMax => QParams::asymmetric(lo, hi, bits),
            WeightRange::Symmetric => QParams::symmetric(lo, hi, bits),
            WeightRange::Mse => mse_params(ch, lo, hi, bits),
        };
        out.extend(ch.iter().map(|&v| p.fake(v)));
        params.push(p);
    }
    (out, params)
}

/// The asymmetric parameters over `[α·lo, α·hi]`, α ∈ {0.01, …, 1}, with the least squared error on `v`.
pub fn mse_params(v: &[f32], lo: f32, hi: f32, bits: u32) -> QParams {
    let mut best = (f64::INFINITY, QParams::asymmetric(lo, hi, bits));
    for i in 1..=100 {
        let alpha = i as f32 / 100.0;
        let p = QParams::asymmetric(alpha * lo, alpha * hi, bits);
        let err: f64 = v.iter().map(|&x| ((p.fake(x) - x) as f64).powi(2)).sum();
        if err < best.0 {
            best = (err, p);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_8bit_by_hand() {
        // [-1, 3] at 8 bits: s = 4/255, z = round(255/4) - 128 = 64 - 128 = -64.
        let p = QParams::asymmetric(-1.0, 3.0, 8);
        assert!((p.scale - 4.0 / 255.0).abs() < 1e-9);
        assert_eq!((p.zero_point, p.qmin, p.qmax), (-64, -128, 127));
        assert_eq!(p.quantize(0.0), -64);
        assert_eq!(p.fake(0.0), 0.0);
        assert_eq!(p.quantize(3.0), 127);
        assert_eq!(p.quantize(-1.0), -128);
        assert_eq!(p.quantize(100.0), 127, "saturates");
        // 1.0 / s = 63.75 → 64 → q = 0 → x̂ = 64·s = 1.00392…
        assert_eq!(p.quantize(1.0), 0);
        assert!((p.fake(1.0) - 64.0 * 4.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn asymmetric_4bit_relu_range() {
        // [0, 6] at 4 bits: s = 6/15 = 0.4, z = 0 - 8 = -8, grid 0, 0.4, ..., 6.
        let p = QParams::asymmetric(0.0, 6.0, 4);
        assert!((p.scale - 0.4).abs() < 1e-7);
        assert_eq!((p.zero_point, p.qmin, p.qmax), (-8, -8, 7));
        assert!((p.fake(2.5) - 2.4).abs() < 1e-6, "2.5/0.4 = 6.25 → 6 → 2.4");
        assert!((p.fake(7.0) - 6.0).abs() < 1e-6);
        assert_eq!(p.fake(-3.0), 0.0);
    }

    #[test]
    fn symmetric_by_hand() {
        let p = QParams::symmetric(-0.5, 0.25, 8);
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 0.5 / 127.0).abs() < 1e-9);
        assert_eq!(p.quantize(-0.5), -127);
        assert_eq!(p.quantize(0.25), 64); // 63.5 → 64 (ties to even)
    }

    #[test]
    fn ties_round_to_even() {
        let p = QParams { scale: 1.0, zero_point: 0, qmin: -128, qmax: 127 };
        assert_eq!((p.quantize(2.5), p.quantize(3.5), p.quantize(-2.5)), (2, 4, -2));
    }

    #[test]
    fn constant_tensors_give_finite_parameters() {
        for p in [QParams::asymmetric(0.0, 0.0, 8), QParams::symmetric(0.0, 0.0, 4), QParams::asymmetric(2.0, 2.0, 8)] {
            assert!(p.scale.is_finite() && p.scale > 0.0, "{p:?}");
            for x in [0.0f32, 2.0, -1.0] {
                assert!(p.fake(x).is_finite());
            }
        }
        // A constant positive channel: the range [0, 2] keeps 2 exactly representable at 8 bits.
        let p = QParams::asymmetric(2.0, 2.0, 8);
        assert!((p.fake(2.0) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn per_channel_uses_each_channels_range() {
        let w = [-1.0, 1.0, 0.5, -0.01, 0.02, 0.0];
        let (q, p) = quantize_per_channel(&w, 2, 8, WeightRange::MinMax);
        assert_eq!(p.len(), 2);
        assert!(p[1].scale < p[0].scale / 10.0, "small channel gets a fine grid: {p:?}");
        for (a, b) in w.iter().zip(&q) {
            assert!((a - b).abs() <= 0.5 * 2.0 / 255.0 + 1e-7);
        }
    }

    #[test]
    fn mse_clipping_never_worse_than_minmax() {
        let mut v: Vec<f32> = (0..200).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
        v.push(2.0); // an outlier
        let (lo, hi) = (v.iter().cloned().fold(f32::INFINITY, f32::min), 2.0);
        let err = |p: QParams| v.iter().map(|&x| ((p.fake(x) - x) as f64).powi(2)).sum::<f64>();
        let (m, a) = (mse_params(&v, lo, hi, 4), QParams::asymmetric(lo, hi, 4));
        assert!(err(m) <= err(a));
    }
}
