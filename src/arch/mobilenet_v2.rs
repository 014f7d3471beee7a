//! torchvision's MobileNetV2 (width 1.0). Key names: `features.0.{0,1}` (stem conv, BN),
//! `features.{1..17}.conv.*` (inverted residuals: `conv.0.{0,1}` expand, `conv.1.{0,1}` depthwise,
//! `conv.2` project, `conv.3` its BN; without expansion `conv.0` is the depthwise pair, `conv.1`/`conv.2`
//! the projection), `features.18.{0,1}` (1x1 to 1280), `classifier.1` (linear). ReLU6, BN ε 1e-5.

use super::builder::{Builder, ConvSpec};
use crate::error::Result;
use crate::ir::Graph;
use crate::torch::StateDict;

const EPS: f32 = 1e-5;

/// `(expand t, channels c, repeats n, stride s)` of torchvision's `inverted_residual_setting`.
const SETTING: [(usize, usize, usize, usize); 7] = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// Builds MobileNetV2 from its state_dict.
pub(crate) fn build(sd: &StateDict, arch: &'static str) -> Result<Graph> {
    let (mut b, x) = Builder::new(sd, arch, 224);
    let mut x = b.conv(x, "features.0.0", &ConvSpec::same(3, 32, 3, 2, 1))?;
    x = b.bn(x, "features.0.1", 32, EPS)?;
    x = b.relu6(x, "features.0.2");
    let mut cin = 32;
    let mut idx = 1;
    for &(t, c, n, s) in &SETTING {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}.conv");
            let input = x;
            let hidden = cin * t;
            let mut j = 0;
            if t != 1 {
                x = b.conv(x, &format!("{p}.0.0"), &ConvSpec::same(cin, hidden, 1, 1, 1))?;
                x = b.bn(x, &format!("{p}.0.1"), hidden, EPS)?;
                x = b.relu6(x, &format!("{p}.0.2"));
                j = 1;
            }
            x = b.conv(x, &format!("{p}.{j}.0"), &ConvSpec::same(hidden, hidden, 3, stride, hidden))?;
            x = b.bn(x, &format!("{p}.{j}.1"), hidden, EPS)?;
            x = b.relu6(x, &format!("{p}.{j}.2"));
            x = b.conv(x, &format!("{p}.{}", j + 1), &ConvSpec::same(hidden, c, 1, 1, 1))?;
            x = b.bn(x, &format!("{p}.{}", j + 2), c, EPS)?;
            if stride == 1 && cin == c {
                x = b.add(x, input, &format!("features.{idx}.add"));
            }
            cin = c;
            idx += 1;
        }
    }
    x = b.conv(x, "features.18.0", &ConvSpec::same(cin, 1280, 1, 1, 1))?;
    x = b.bn(x, "features.18.1", 1280, EPS)?;
    x = b.relu6(x, "features.18.2");
    let logits = b.classifier(x, "classifier.1", 1280)?;
    b.finish(logits)
}
