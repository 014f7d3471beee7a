//! Built-in architectures: a PyTorch `state_dict` ([`crate::torch::StateDict`]) → the graph IR, with
//! BatchNormalization kept (ZeroQ needs its running statistics).
//!
//! Each builder takes the checkpoint's tensors by their PyTorch key names and checks their shapes, so a
//! checkpoint of another architecture fails naming the first key that is missing, unexpected or of the wrong
//! shape. The graph has one input `input` of shape `[N, 3, S, S]` and one output `logits`.

mod builder;
mod efficientnet_lite;
mod mobilenet_v2;
mod resnet;

use std::path::Path;
use std::str::FromStr;

use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::torch::StateDict;

/// An architecture zeroq can build from a state_dict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// EfficientNet-Lite0 (224 px), key names of the `efficientnet-lite-pytorch` package.
    EfficientNetLite0,
    /// EfficientNet-Lite1 (240 px).
    EfficientNetLite1,
    /// EfficientNet-Lite2 (260 px).
    EfficientNetLite2,
    /// torchvision ResNet18 (224 px).
    ResNet18,
    /// torchvision ResNet50 (224 px).
    ResNet50,
    /// torchvision MobileNetV2 (224 px).
    MobileNetV2,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 6] = [Arch::EfficientNetLite0, Arch::EfficientNetLite1, Arch::EfficientNetLite2, Arch::ResNet18, Arch::ResNet50, Arch::MobileNetV2];

    /// The name used on the command line (`efficientnet-lite0`, `resnet18`, `mobilenet-v2`, …).
    pub fn name(self) -> &'static str {
        match self {
            Arch::EfficientNetLite0 => "efficientnet-lite0",
            Arch::EfficientNetLite1 => "efficientnet-lite1",
            Arch::EfficientNetLite2 => "efficientnet-lite2",
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
            Arch::MobileNetV2 => "mobilenet-v2",
        }
    }

    /// Input side in pixels.
    pub fn resolution(self) -> usize {
        match self {
            Arch::EfficientNetLite0 => efficientnet_lite::params(0).2,
            Arch::EfficientNetLite1 => efficientnet_lite::params(1).2,
            Arch::EfficientNetLite2 => efficientnet_lite::params(2).2,
            Arch::ResNet18 | Arch::ResNet50 | Arch::MobileNetV2 => 224,
        }
    }

    /// The preprocessing the pretrained weights expect: `(v − 127) / 128` for EfficientNet-Lite (resize to
    /// S/0.875, centre crop S), torchvision's ImageNet preset for the others.
    pub fn preprocess(self) -> Preprocess {
        match self {
            Arch::EfficientNetLite0 | Arch::EfficientNetLite1 | Arch::EfficientNetLite2 => Preprocess::efficientnet_lite(self.resolution()),
            Arch::ResNet18 | Arch::ResNet50 | Arch::MobileNetV2 => Preprocess::imagenet(),
        }
    }

    /// The name of [`Arch::preprocess`] as a `--preset`.
    pub fn preset_name(self) -> &'static str {
        match self {
            Arch::EfficientNetLite0 | Arch::EfficientNetLite1 | Arch::EfficientNetLite2 => self.name(),
            Arch::ResNet18 | Arch::ResNet50 | Arch::MobileNetV2 => "imagenet",
        }
    }

    /// Builds the graph from a state_dict of this architecture, with its preprocessing recorded in the
    /// graph's metadata (and so in any ONNX written from it).
    pub fn build(self, sd: &StateDict) -> Result<Graph> {
        let name = self.name();
        let mut g = match self {
            Arch::EfficientNetLite0 => efficientnet_lite::build(sd, 0, name),
            Arch::EfficientNetLite1 => efficientnet_lite::build(sd, 1, name),
            Arch::EfficientNetLite2 => efficientnet_lite::build(sd, 2, name),
            Arch::ResNet18 => resnet::build(sd, false, name),
            Arch::ResNet50 => resnet::build(sd, true, name),
            Arch::MobileNetV2 => mobilenet_v2::build(sd, name),
        }?;
        self.preprocess().record(&mut g);
        Ok(g)
    }

    /// Reads the checkpoint at `weights` and builds the graph.
    pub fn load(self, weights: &Path) -> Result<Graph> {
        let g = self.build(&crate::torch::load_state_dict(weights)?)?;
        crate::validate::check_graph(&g).map_err(|e| crate::Error::Checkpoint { path: weights.to_path_buf(), reason: e.to_string() })?;
        Ok(g)
    }
}

impl FromStr for Arch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let norm = s.to_ascii_lowercase().replace('_', "-");
        let norm = if norm == "mobilenetv2" { "mobilenet-v2".to_string() } else { norm };
        Arch::ALL.into_iter().find(|a| a.name() == norm).ok_or_else(|| {
            let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            Error::Invalid(format!("unknown architecture '{s}' (expected one of {})", names.join(", ")))
        })
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
