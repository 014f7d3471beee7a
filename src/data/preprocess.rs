//! Explicit image preprocessing: resize (bilinear, half-pixel centres), centre crop, scale, mean/std.

use crate::error::{Error, Result};

/// How raw 8-bit RGB pixels become model input (`x = (pixel·scale − mean[c]) / std[c]`, CHW).
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Resize so the shorter side has this many pixels (aspect kept), before cropping.
    pub resize: Option<usize>,
    /// Centre-crop to a square of this side.
    pub crop: Option<usize>,
    /// Multiplier applied to 0..255 pixels first (1/255 for the usual [0, 1] range).
    pub scale: f32,
    /// Per-channel mean subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl Preprocess {
    /// The shared CIFAR-10 ResNets: no resize or crop, ImageNet mean/std (as their training script used).
    pub fn cifar10() -> Self {
        Self { resize: None, crop: None, scale: 1.0 / 255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }

    /// torchvision ImageNet evaluation: resize 256, centre crop 224, ImageNet mean/std.
    pub fn imagenet() -> Self {
        Self { resize: Some(256), crop: Some(224), ..Self::cifar10() }
    }

    /// EfficientNet-Lite at side `s`: resize the shorter side to `s / 0.875`, centre-crop `s`, then
    /// `(v − 127) / 128` per pixel (what the TFLite models and the PyTorch port were trained with).
    pub fn efficientnet_lite(s: usize) -> Self {
        Self { resize: Some((s as f64 / 0.875).round() as usize), crop: Some(s), scale: 1.0, mean: [127.0; 3], std: [128.0; 3] }
    }

    /// A named preset (`cifar10`, `imagenet`, `efficientnet-lite0|1|2`).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "cifar10" => Ok(Self::cifar10()),
            "imagenet" => Ok(Self::imagenet()),
            "efficientnet-lite0" => Ok(Self::efficientnet_lite(224)),
            "efficientnet-lite1" => Ok(Self::efficientnet_lite(240)),
            "efficientnet-lite2" => Ok(Self::efficientnet_lite(260)),
            other => Err(Error::Invalid(format!("unknown preset '{other}' (expected cifar10, imagenet or efficientnet-lite0|1|2)"))),
        }
    }

    /// Normalises an interleaved RGB image (`h·w·3` bytes) into CHW floats, resizing and cropping first.
    pub fn apply(&self, rgb: &[u8], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
        let mut img: Vec<f32> = rgb.iter().map(|&p| p as f32).collect();
        let (mut h, mut w) = (h, w);
        if let Some(s) = self.resize {
            let (nh, nw) = if h <= w { (s, (w * s + h / 2) / h) } else { ((h * s + w / 2) / w, s) };
            if (nh, nw) != (h, w) {
                img = resize_bilinear(&img, h, w, nh, nw);
                (h, w) = (nh, nw);
            }
        }
        let (mut y0, mut x0, mut ch, mut cw) = (0, 0, h, w);
        if let Some(c) = self.crop {
            let (c_h, c_w) = (c.min(h), c.min(w));
            y0 = (h - c_h) / 2;
            x0 = (w - c_w) / 2;
            (ch, cw) = (c_h, c_w);
        }
        let mut out = vec![0f32; 3 * ch * cw];
        for c in 0..3 {
            let (m, s) = (self.mean[c], self.std[c]);
            for y in 0..ch {
                for x in 0..cw {
                    let p = img[((y0 + y) * w + (x0 + x)) * 3 + c];
                    out[(c * ch + y) * cw + x] = (p * self.scale - m) / s;
                }
            }
        }
        (out, ch, cw)
    }

    /// The exact range of normalised inputs: pixel 0 and 255 through scale, mean and std, over all channels.
    pub fn input_range(&self) -> (f32, f32) {
        let v = |p: f32, c: usize| (p * self.scale - self.mean[c]) / self.std[c];
        let lo = (0..3).map(|c| v(0.0, c).min(v(255.0, c))).fold(f32::INFINITY, f32::min);
        let hi = (0..3).map(|c| v(0.0, c).max(v(255.0, c))).fold(f32::NEG_INFINITY, f32::max);
        (lo, hi)
    }

    /// Maps normalised CHW values back to 0..255 pixels, for viewing.
    pub fn denormalize(&self, chw: &[f32], h: usize, w: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; h * w * 3];
        for c in 0..3 {
            for i in 0..h * w {
                let v = (chw[c * h * w + i] * self.std[c] + self.mean[c]) / self.scale;
                rgb[i * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
        rgb
    }
}

/// Bilinear resize of interleaved RGB floats with half-pixel centres (`src = (dst + 0.5)·in/out − 0.5`),
/// no antialiasing: what PyTorch's `interpolate(mode="bilinear", align_corners=False)` computes.
pub fn resize_bilinear(img: &[f32], h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    let mut out = vec![0f32; nh * nw * 3];
    let coord = |dst: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
        let src = ((dst as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, src - i0 as f32)
    };
    for y in 0..nh {
        let (y0, y1, fy) = coord(y, h, nh);
        for x in 0..nw {
            let (x0, x1, fx) = coord(x, w, nw);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| img[(yy * w + xx) * 3 + c];
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bot = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                out[(y * nw + x) * 3 + c] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_normalisation_matches_formula() {
        let p = Preprocess::cifar10();
        let rgb = [255u8, 0, 128];
        let (x, h, w) = p.apply(&rgb, 1, 1);
        assert_eq!((h, w), (1, 1));
        assert!((x[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((x[1] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((x[2] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
        assert_eq!(p.denormalize(&x, 1, 1), rgb.to_vec());
    }

    #[test]
    fn bilinear_half_pixel_upsample_2x() {
        // 1x2 image [0, 100] upsampled to 1x4: half-pixel centres give [0, 25, 75, 100].
        let img = [0.0, 0.0, 0.0, 100.0, 100.0, 100.0];
        let out = resize_bilinear(&img, 1, 2, 1, 4);
        let r: Vec<f32> = out.chunks(3).map(|c| c[0]).collect();
        assert_eq!(r, vec![0.0, 25.0, 75.0, 100.0]);
    }

    #[test]
    fn resize_then_centre_crop_shapes() {
        let p = Preprocess { resize: Some(8), crop: Some(6), ..Preprocess::cifar10() };
        let rgb = vec![10u8; 4 * 8 * 3];
        let (x, h, w) = p.apply(&rgb, 4, 8);
        assert_eq!((h, w, x.len()), (6, 6, 3 * 36));
    }
}
