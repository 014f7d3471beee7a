//! Explicit image preprocessing: resize (bilinear, half-pixel centres), centre crop, scale, mean/std.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::{Dim, Graph};

/// The names [`Preprocess::preset`] knows, for messages.
pub const PRESETS: &str = "cifar10, imagenet, efficientnet-lite0|1|2";

/// The ONNX metadata key under which zeroq records a model's preprocessing (JSON of [`Preprocess`]).
pub const METADATA_KEY: &str = "zeroq.preprocess";

/// How raw 8-bit RGB pixels become model input (`x = (pixel·scale − mean[c]) / std[c]`, CHW).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
            other => Err(Error::Invalid(format!("unknown preset '{other}' (expected one of {PRESETS})"))),
        }
    }

    /// The preprocessing recorded in `g`'s metadata (by `zeroq export-onnx`, `quantize` or `run`, or a
    /// built-in architecture), if any.
    pub fn from_metadata(g: &Graph) -> Result<Option<Self>> {
        let Some(v) = g.metadata.get(METADATA_KEY) else { return Ok(None) };
        let p: Self = serde_json::from_str(v).map_err(|e| Error::Invalid(format!("model metadata '{METADATA_KEY}' is not a zeroq preprocessing ({e}): {v}")))?;
        if !(p.scale.is_finite() && p.scale > 0.0 && p.std.iter().all(|s| s.is_finite() && *s != 0.0) && p.mean.iter().all(|m| m.is_finite())) {
            return Err(Error::Invalid(format!("model metadata '{METADATA_KEY}' has a zero or non-finite scale, mean or std: {v}")));
        }
        Ok(Some(p))
    }

    /// Records this preprocessing in `g`'s metadata, so that a model zeroq writes keeps it.
    pub fn record(&self, g: &mut Graph) {
        let json = serde_json::to_string(self).unwrap_or_default();
        g.metadata.insert(METADATA_KEY.to_string(), json);
    }

    /// The preprocessing `g` expects when the user named none: its recorded metadata, else the only
    /// reading its input size allows (32 × 32 → `cifar10`). Anything else is an error that lists the
    /// choices, because a wrong guess silently gives a worse quantized model (input quantizer range,
    /// distillation box and prior all follow from it).
    pub fn for_model(g: &Graph) -> Result<Self> {
        if let Some(p) = Self::from_metadata(g)? {
            return Ok(p);
        }
        let dims = g.inputs.first().and_then(|&i| g.values[i].shape.clone());
        if let Some([_, Dim::Fixed(3), Dim::Fixed(32), Dim::Fixed(32)]) = dims.as_deref() {
            return Ok(Self::cifar10());
        }
        let shape = dims.map_or("undeclared".to_string(), |d| format!("[{}]", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")));
        Err(Error::Invalid(format!(
            "cannot tell which preprocessing this model expects (input {shape}, no '{METADATA_KEY}' metadata); \
             give --preset ({PRESETS}: imagenet is torchvision's (x/255 − mean)/std at 224, efficientnet-lite* is (v − 127)/128) \
             or --mean a,b,c --std a,b,c (of pixels scaled to 0..1)"
        )))
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
        self.input_box().iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(l, h)| (lo.min(l), hi.max(h)))
    }

    /// Per-channel range `(lo, hi)` that pixels 0..255 map to: the box every real input lies in.
    pub fn input_box(&self) -> [(f32, f32); 3] {
        std::array::from_fn(|c| {
            let v = |p: f32| (p * self.scale - self.mean[c]) / self.std[c];
            (v(0.0).min(v(255.0)), v(0.0).max(v(255.0)))
        })
    }

    /// Per-channel mean and std that natural images have after this preprocessing: the ImageNet pixel
    /// statistics (mean 0.485, 0.456, 0.406 and std 0.229, 0.224, 0.225 of the 0..1 range) mapped through
    /// scale, mean and std. For mean/std-normalised presets this is ZeroQ's N(0, 1) input prior; for
    /// EfficientNet-Lite's `(v − 127) / 128` it is about N(−0.03, 0.46), where N(0, 1) would push every
    /// image against the edges of the valid box [−0.99, 1.0].
    pub fn input_prior(&self) -> ([f32; 3], [f32; 3]) {
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        let mean = std::array::from_fn(|c| (MEAN[c] * 255.0 * self.scale - self.mean[c]) / self.std[c]);
        let std = std::array::from_fn(|c| STD[c] * 255.0 * self.scale / self.std[c].abs());
        (mean, std)
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
    fn input_box_and_prior_follow_the_preset() {
        let c = Preprocess::cifar10();
        let (m, s) = c.input_prior();
        // ImageNet mean/std normalisation: the prior is N(0, 1), ZeroQ's.
        assert!(m.iter().all(|v| v.abs() < 1e-6) && s.iter().all(|v| (v - 1.0).abs() < 1e-6), "{m:?} {s:?}");
        let b = c.input_box();
        assert!((b[0].0 - (-0.485 / 0.229)).abs() < 1e-6 && (b[2].1 - (1.0 - 0.406) / 0.225).abs() < 1e-6, "{b:?}");
        let l = Preprocess::efficientnet_lite(224);
        assert_eq!(l.input_box(), [(-127.0 / 128.0, 1.0); 3]);
        let (m, s) = l.input_prior();
        assert!((m[0] - (0.485 * 255.0 - 127.0) / 128.0).abs() < 1e-6 && (s[1] - 0.224 * 255.0 / 128.0).abs() < 1e-6, "{m:?} {s:?}");
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
