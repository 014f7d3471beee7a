//! `--preset`, `--mean`, `--std`: the preprocessing a model expects, shared by every command that needs
//! it. Never guessed silently: without flags it comes from the model's own record, or the input size
//! when only one reading fits (see `Preprocess::for_model`).

use anyhow::{ensure, Context};
use clap::Args;
use zeroq::data::Preprocess;
use zeroq::ir::Graph;

/// Which preprocessing the model expects.
#[derive(Args, Debug, Clone, Default)]
pub struct PreprocessArgs {
    /// Preprocessing the model expects: cifar10, imagenet (torchvision: resize 256, crop 224,
    /// (x/255 − mean)/std) or efficientnet-lite0|1|2 ((v − 127)/128). It fixes the valid input box and
    /// prior of distillation and the input quantizer's range. (Default: what the model records — zeroq
    /// writes it into every model it exports, and --zoo/--arch models carry theirs — else cifar10 for a
    /// 32×32 input; any other model needs --preset or --mean/--std.)
    #[arg(long)]
    pub preset: Option<String>,
    /// Per-channel mean of the pixels scaled to 0..1, e.g. 0.485,0.456,0.406 (overrides the preset's).
    #[arg(long, value_delimiter = ',', num_args = 3, value_name = "A,B,C")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel std of the pixels scaled to 0..1, e.g. 0.229,0.224,0.225 (overrides the preset's).
    #[arg(long, value_delimiter = ',', num_args = 3, value_name = "A,B,C")]
    pub std: Option<Vec<f32>>,
}

impl PreprocessArgs {
    /// The preprocessing for `g`: `--preset`, else the model's record, else (with `--mean/--std`) pixels
    /// scaled to 0..1 without resizing, else what the input size allows; then the mean/std overrides.
    /// `model` names the model in errors.
    pub fn resolve(&self, g: &Graph, model: &str) -> anyhow::Result<Preprocess> {
        let mut p = match (&self.preset, self.mean.is_some() || self.std.is_some()) {
            (Some(name), _) => Preprocess::preset(name)?,
            (None, true) => Preprocess::from_metadata(g).with_context(|| model.to_string())?.unwrap_or(Preprocess { resize: None, crop: None, ..Preprocess::cifar10() }),
            (None, false) => Preprocess::for_model(g).with_context(|| model.to_string())?,
        };
        if let Some(m) = &self.mean {
            ensure!(m.iter().all(|v| v.is_finite()), "--mean values must be finite numbers, got {m:?}");
            p.mean = [m[0], m[1], m[2]];
        }
        if let Some(s) = &self.std {
            ensure!(s.iter().all(|&v| v.is_finite() && v > 0.0), "--std values must be positive, got {s:?}");
            p.std = [s[0], s[1], s[2]];
        }
        Ok(p)
    }

    /// [`PreprocessArgs::resolve`], recorded in `g`'s metadata so that models written from it keep it.
    pub fn resolve_and_record(&self, g: &mut Graph, model: &str) -> anyhow::Result<Preprocess> {
        let p = self.resolve(g, model)?;
        p.record(g);
        Ok(p)
    }
}
