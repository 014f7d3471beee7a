//! The default size of a distillation, from what one iteration costs on the model.
//!
//! ZeroQ's 32 images × 500 iterations take a few minutes for a CIFAR ResNet on a CPU but hours at 224²:
//! one image-iteration of EfficientNet-Lite0 took 67x as long as one of ResNet20 here. The default keeps
//! ZeroQ's recipe wherever it costs no more than on the CIFAR ResNets and bounds the work beyond: fewer
//! iterations first (down to 100; the early stop often ends a batch sooner anyway), then fewer images
//! (down to 8). The cost is counted in activation elements (the outputs of the weight layers), which
//! follows the time far better than multiply-accumulates on depthwise networks (Lite0/ResNet20: about
//! 50x in activations, 9.6x in multiply-accumulates, 67x in time), and which, unlike a timing, gives the
//! same model the same defaults on every machine, and so the same seed the same bytes.

use burn::tensor::{Tensor, TensorData};

use crate::engine::{device, Plan};
use crate::error::Result;
use crate::ir::Graph;

/// Weight-layer output elements one batch may cost: the CIFAR-10 ResNet56 (0.53 M per 32 × 32 image) at
/// 32 images × 500 iterations, so that the CIFAR ResNets keep ZeroQ's recipe.
pub const BATCH_BUDGET: f64 = 8.6e9;

/// Output elements of every weight layer (Conv, Gemm, MatMul with a constant weight) for one image.
/// Runs the model once on a zero image to learn the output shapes.
pub fn activations_per_image(g: &Graph, chw: [usize; 3]) -> Result<f64> {
    let outputs: Vec<usize> = g.weight_layers().iter().filter_map(|l| g.nodes[l.node].outputs.first().copied()).collect();
    let plan = Plan::new(g.clone(), &device::inference())?;
    let x = Tensor::<4>::from_data(TensorData::new(vec![0f32; chw.iter().product()], [1, chw[0], chw[1], chw[2]]), plan.device());
    let (_, tapped) = plan.forward_with_taps(x, &outputs)?;
    Ok(outputs.iter().filter_map(|o| tapped.get(o)).map(|t| t.numel() as f64).sum())
}

/// Default `(batch, iterations cap)` for a model with `per_image` activation elements: (32, 500) up
/// to [`BATCH_BUDGET`]; beyond, 32 images and the iterations that fit, down to 100; beyond that, the
/// batch that fits 100 iterations, down to 8 images (and then 8 × 100 whatever the cost).
pub fn default_size(per_image: f64) -> (usize, usize) {
    let per_image = per_image.max(1.0);
    let fit = |batch: usize| (BATCH_BUDGET / (batch as f64 * per_image)).floor() as usize;
    if fit(32) >= 100 {
        return (32, fit(32).min(500));
    }
    let batch = ((BATCH_BUDGET / (100.0 * per_image)).floor() as usize).clamp(8, 32);
    (batch, fit(batch).clamp(100, 500))
}

/// [`default_size`] for `g`; an error when its input is not a fixed `[N, C, H, W]`.
pub fn default_size_for(g: &Graph) -> Result<(usize, usize)> {
    let chw = super::input_chw(g)?;
    Ok(default_size(activations_per_image(g, chw)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_keep_zeroq_and_large_ones_are_bounded() {
        assert_eq!(default_size(0.19e6), (32, 500));
        // Twice as costly as the budget allows at 500: fewer iterations.
        assert_eq!(default_size(2.0 * BATCH_BUDGET / (32.0 * 500.0)), (32, 250));
        // Ten times: 16 images fit 100 iterations, and then some.
        assert_eq!(default_size(BATCH_BUDGET / 1600.0), (16, 100));
        // Far larger: never below 8 images × 100 iterations.
        assert_eq!(default_size(1e9), (8, 100));
        assert_eq!(default_size(0.0), (32, 500));
    }
}
