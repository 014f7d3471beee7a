//! torchvision's ResNet18 and ResNet50 (`torchvision.models.resnet`, v1.5: the stride of a bottleneck is on
//! its 3x3 convolution). Key names: `conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`, `.bn{1,2,3}`,
//! `.downsample.{0,1}`, `fc`. BN ε 1e-5.

use super::builder::{Builder, ConvSpec};
use crate::error::Result;
use crate::ir::Graph;
use crate::torch::StateDict;

const EPS: f32 = 1e-5;

/// Builds ResNet18 (`bottleneck = false`, blocks 2,2,2,2) or ResNet50 (`true`, blocks 3,4,6,3).
pub(crate) fn build(sd: &StateDict, bottleneck: bool, arch: &'static str) -> Result<Graph> {
    let (blocks, expansion) = if bottleneck { ([3, 4, 6, 3], 4) } else { ([2, 2, 2, 2], 1) };
    let (mut b, x) = Builder::new(sd, arch, 224);
    let mut x = b.conv(x, "conv1", &ConvSpec::same(3, 64, 7, 2, 1))?;
    x = b.bn(x, "bn1", 64, EPS)?;
    x = b.relu(x, "relu");
    x = b.max_pool(x, "maxpool", 3, 2, 1);
    let mut cin = 64;
    for (l, &n) in blocks.iter().enumerate() {
        let planes = 64 << l;
        for i in 0..n {
            let s = if i == 0 && l > 0 { 2 } else { 1 };
            let p = format!("layer{}.{i}", l + 1);
            let input = x;
            let cout = planes * expansion;
            if bottleneck {
                x = b.conv(x, &format!("{p}.conv1"), &ConvSpec::same(cin, planes, 1, 1, 1))?;
                x = b.bn(x, &format!("{p}.bn1"), planes, EPS)?;
                x = b.relu(x, &format!("{p}.relu1"));
                x = b.conv(x, &format!("{p}.conv2"), &ConvSpec::same(planes, planes, 3, s, 1))?;
                x = b.bn(x, &format!("{p}.bn2"), planes, EPS)?;
                x = b.relu(x, &format!("{p}.relu2"));
                x = b.conv(x, &format!("{p}.conv3"), &ConvSpec::same(planes, cout, 1, 1, 1))?;
                x = b.bn(x, &format!("{p}.bn3"), cout, EPS)?;
            } else {
                x = b.conv(x, &format!("{p}.conv1"), &ConvSpec::same(cin, planes, 3, s, 1))?;
                x = b.bn(x, &format!("{p}.bn1"), planes, EPS)?;
                x = b.relu(x, &format!("{p}.relu1"));
                x = b.conv(x, &format!("{p}.conv2"), &ConvSpec::same(planes, planes, 3, 1, 1))?;
                x = b.bn(x, &format!("{p}.bn2"), planes, EPS)?;
            }
            let skip = if s != 1 || cin != cout {
                let d = b.conv(input, &format!("{p}.downsample.0"), &ConvSpec::same(cin, cout, 1, s, 1))?;
                b.bn(d, &format!("{p}.downsample.1"), cout, EPS)?
            } else {
                input
            };
            x = b.add(x, skip, &format!("{p}.add"));
            x = b.relu(x, &format!("{p}.relu"));
            cin = cout;
        }
    }
    let logits = b.classifier(x, "fc", cin)?;
    b.finish(logits)
}
