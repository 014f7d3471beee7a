//! Low-pass copies of distilled images, added to the calibration data that reconstruction learns from.
//!
//! Matching BatchNorm statistics leaves the images as pixel noise: on EfficientNet-Lite0 neighbouring
//! pixels differ about eight times more than in photographs at the same preprocessing. Learned rounding
//! fits whatever the calibration images excite, so on white-noise inputs it serves the high
//! frequencies, while real images put most of their energy in the low ones: Lite0 W4A8 reconstructed on
//! 12 distilled images ends 2–4 times further from FP32 on real images than on distilled ones already
//! after the first few blocks. A Gaussian-blurred copy of each image, with each channel's mean and
//! spread restored and clipped to the valid input box, has the spectrum of a photograph; learning on the
//! images and their copies together takes Lite0 W4A8 from 78.80 to 80.40 top-1 and W6A6 from 85.80 to
//! 86.40 (QUANTIZATION.md, with the seeds where it did not help). The blur scales with the input side (2 px at 224²); at CIFAR's 32² it would be
//! under half a pixel, the pixels are already coarse, and no copies are made.

use super::InputDomain;

/// Blur σ in pixels for a `side`-pixel input: `side / 112`, or `None` below half a pixel.
pub fn sigma_for(side: usize) -> Option<f32> {
    let s = side as f32 / 112.0;
    (s >= 0.5).then_some(s)
}

/// `data` (`[N, C, H, W]`) followed by one low-pass copy of each image, and its shape (`[2N, C, H, W]`):
/// each channel blurred with a Gaussian of `sigma` pixels (mirrored at the edges), shifted and scaled back
/// to the original channel's mean and standard deviation, and clipped to `domain`'s box.
pub fn with_lowpass_copies(data: &[f32], shape: [usize; 4], sigma: f32, domain: &InputDomain) -> (Vec<f32>, [usize; 4]) {
    let [n, c, h, w] = shape;
    let kernel = gaussian(sigma);
    let mut out = Vec::with_capacity(2 * data.len());
    out.extend_from_slice(data);
    for plane in data.chunks_exact(h * w).take(n * c) {
        let ch = (out.len() / (h * w)) % c;
        let blurred = blur(plane, h, w, &kernel);
        let (m0, s0) = mean_std(plane);
        let (m1, s1) = mean_std(&blurred);
        let scale = if s1 > 0.0 { s0 / s1 } else { 0.0 };
        let (lo, hi) = (domain.lo.get(ch).copied().unwrap_or(f32::NEG_INFINITY), domain.hi.get(ch).copied().unwrap_or(f32::INFINITY));
        out.extend(blurred.iter().map(|&v| ((v - m1) * scale + m0).clamp(lo, hi)));
    }
    (out, [2 * n, c, h, w])
}

fn gaussian(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let k: Vec<f32> = (-r..=r).map(|t| (-((t * t) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = k.iter().sum();
    k.into_iter().map(|v| v / sum).collect()
}

/// Index `i` mirrored into `0..len` (edge not repeated: −1 → 1, len → len − 2).
fn mirror(i: i64, len: usize) -> usize {
    let len = len as i64;
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let m = i.rem_euclid(period);
    (if m < len { m } else { period - m }) as usize
}

/// Separable blur of one `h × w` plane.
fn blur(plane: &[f32], h: usize, w: usize, k: &[f32]) -> Vec<f32> {
    let r = (k.len() / 2) as i64;
    let mut rows = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            rows[y * w + x] = k.iter().enumerate().map(|(j, kv)| kv * plane[y * w + mirror(x as i64 + j as i64 - r, w)]).sum();
        }
    }
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = k.iter().enumerate().map(|(j, kv)| kv * rows[mirror(y as i64 + j as i64 - r, h) * w + x]).sum();
        }
    }
    out
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
    (m as f32, var.sqrt() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn neighbour_diff(plane: &[f32], w: usize) -> f32 {
        let d: Vec<f32> = plane.chunks_exact(w).flat_map(|r| r.windows(2).map(|p| (p[1] - p[0]).abs())).collect();
        d.iter().sum::<f32>() / d.len() as f32
    }

    #[test]
    fn sigma_follows_the_input_side() {
        assert_eq!(sigma_for(224), Some(2.0));
        assert_eq!(sigma_for(32), None);
        assert!(sigma_for(56).is_some());
    }

    #[test]
    fn copies_are_smooth_keep_each_channels_spread_and_stay_in_the_box() {
        let shape = [2, 3, 40, 40];
        let data: Vec<f32> = noise(2 * 3 * 40 * 40, 7).iter().map(|v| v * 0.5).collect();
        let domain = InputDomain { lo: vec![-0.6; 3], hi: vec![1.0; 3], mean: vec![0.0; 3], std: vec![0.5; 3] };
        let (out, out_shape) = with_lowpass_copies(&data, shape, 2.0, &domain);
        assert_eq!((out.len(), out_shape), (2 * data.len(), [4, 3, 40, 40]));
        assert_eq!(&out[..data.len()], &data[..], "the originals come first, unchanged");
        for (i, (orig, copy)) in data.chunks_exact(1600).zip(out[data.len()..].chunks_exact(1600)).enumerate() {
            assert!(neighbour_diff(copy, 40) < 0.4 * neighbour_diff(orig, 40), "plane {i}: not smoothed");
            assert!(copy.iter().all(|v| (-0.6..=1.0).contains(v)), "plane {i}: left the box");
            let (m0, s0) = mean_std(orig);
            let (m1, s1) = mean_std(copy);
            // Clipping the far tail at −0.6 moves the mean and spread a little; without it they match.
            assert!((m1 - m0).abs() < 0.1 && (s1 - s0).abs() < 0.1 * s0.max(0.1), "plane {i}: mean {m0}→{m1}, std {s0}→{s1}");
        }
        let open = InputDomain::standard(3);
        let (out, _) = with_lowpass_copies(&data, shape, 2.0, &open);
        for (orig, copy) in data.chunks_exact(1600).zip(out[data.len()..].chunks_exact(1600)) {
            let ((m0, s0), (m1, s1)) = (mean_std(orig), mean_std(copy));
            assert!((m1 - m0).abs() < 1e-5 && (s1 - s0).abs() < 1e-4, "unclipped: mean {m0}→{m1}, std {s0}→{s1}");
        }
    }

    #[test]
    fn a_constant_plane_stays_constant_and_mirroring_is_symmetric() {
        let plane = vec![0.25f32; 9 * 7];
        assert!(blur(&plane, 9, 7, &gaussian(1.5)).iter().all(|v| (v - 0.25).abs() < 1e-6));
        assert_eq!((mirror(-1, 5), mirror(5, 5), mirror(-6, 5), mirror(0, 1)), (1, 3, 2, 0));
    }
}
