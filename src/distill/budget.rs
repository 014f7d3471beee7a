//! The default size of a distillation, from what one iteration costs on the model.
//!
//! ZeroQ's 32 images × 500 iterations take a few minutes for a CIFAR ResNet on a CPU but hours at 224²:
//! one image-iteration of EfficientNet-Lite0 took 67x as long as one of ResNet20 here. The default keeps
//! ZeroQ's recipe wherever it fits the budget and bounds the work beyond: fewer iterations first (down
//! to [`MIN_ITERS`]; the early stop often ends a batch sooner anyway), then fewer images (down to 8).
//! The cost is counted in activation elements (the outputs of the weight layers), which follows the time
//! far better than multiply-accumulates on depthwise networks (Lite0/ResNet20: about 50x in activations,
//! 9.6x in multiply-accumulates, 67x in time), and which, unlike a timing, gives the same model the same
//! defaults on every machine, and so the same seed the same bytes.

use burn::tensor::{Tensor, TensorData};

use crate::engine::{device, Plan};
use crate::error::Result;
use crate::ir::Graph;

/// Weight-layer output elements one batch may cost: 12 EfficientNet-Lite0 images (6.74 M per 224² image)
/// × 420 iterations, what the pooled loss needs to match Lite0's BN statistics (94% of channels within
/// 10% at its early stop, 92% at 300 iterations); four times the CIFAR-10 ResNet56 (0.53 M per image) at
/// ZeroQ's 32 × 500, so the CIFAR ResNets keep ZeroQ's recipe.
pub const BATCH_BUDGET: f64 = 3.4e10;

/// Output elements of every weight layer (Conv, Gemm, MatMul with a constant weight) for one image.
/// Runs the model once on a zero image to learn the output shapes.
pub fn activations_per_image(g: &Graph, chw: [usize; 3]) -> Result<f64> {
    let outputs: Vec<usize> = g.weight_layers().iter().filter_map(|l| g.nodes[l.node].outputs.first().copied()).collect();
    let plan = Plan::new(g.clone(), &device::inference())?;
    let x = Tensor::<4>::from_data(TensorData::new(vec![0f32; chw.iter().product()], [1, chw[0], chw[1], chw[2]]), plan.device());
    let (_, tapped) = plan.forward_with_taps(x, &outputs)?;
    Ok(outputs.iter().filter_map(|o| tapped.get(o)).map(|t| t.numel() as f64).sum())
}

/// Fewest iterations a default batch gets before it gives up images: on Lite0 the BN match is still
/// rising by a point per 10 iterations at 200 (pooled loss), so fewer images for longer beats more
/// images for a short run.
pub const MIN_ITERS: usize = 400;

/// Default `(batch, iterations cap)` for a model with `per_image` activation elements: (32, 500) up
/// to [`BATCH_BUDGET`]; beyond, 32 images and the iterations that fit, down to [`MIN_ITERS`]; beyond
/// that, the batch that fits [`MIN_ITERS`] iterations, down to 8 images (and then 8 × [`MIN_ITERS`]
/// whatever the cost).
pub fn default_size(per_image: f64) -> (usize, usize) {
    let per_image = per_image.max(1.0);
    let fit = |batch: usize| (BATCH_BUDGET / (batch as f64 * per_image)).floor() as usize;
    if fit(32) >= MIN_ITERS {
        return (32, fit(32).min(500));
    }
    let batch = ((BATCH_BUDGET / (MIN_ITERS as f64 * per_image)).floor() as usize).clamp(8, 32);
    (batch, fit(batch).clamp(MIN_ITERS, 500))
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
        // EfficientNet-Lite0.
        assert_eq!(default_size(6.74e6), (12, 420));
        // A little too costly for 500 iterations: fewer iterations.
        assert_eq!(default_size(BATCH_BUDGET / (32.0 * 450.5)), (32, 450));
        // Too costly for 32 images × MIN_ITERS: 16 images fit it, and a little more.
        assert_eq!(default_size(BATCH_BUDGET / (16.0 * 400.5)), (16, 400));
        // Far larger: never below 8 images × MIN_ITERS.
        assert_eq!(default_size(1e12), (8, MIN_ITERS));
        assert_eq!(default_size(0.0), (32, 500));
    }
}
