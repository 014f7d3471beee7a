//! Hand-written CPU kernels for the spots where a profile showed burn's `flex` backend to be the
//! bottleneck, and their bridge into burn's graph ([`conv2d`], a backend extension with its own backward
//! step). Each kernel has a test against the plain-burn path (its reference).
//!
//! Profiles that motivated them:
//! - inference (ResNet20, 1,000 CIFAR images, batch 500, 2 threads): Conv took 3.0 s of 3.5 s, mostly in
//!   flex's NHWC conversion and tiled im2col rather than in the GEMM itself;
//! - distillation (ResNet20 batch 32, EfficientNet-Lite0 224² batch 8): burn's conv forward and its
//!   conv-transpose input gradient made distillation 2–3x slower than PyTorch (BENCHMARKS.md);
//! - eval on the direct kernel ([`direct`]): 79% in 3×3 stride-1 convolutions at 80–95% of the FMA
//!   peak, hence Winograd F(2×2, 3×3) for them in inference plans ([`winograd`]), with the packed and
//!   transformed weights kept per weight tensor ([`prepared`]).

mod bn_stats;
mod burn_op;
mod conv;
mod depthwise;
mod direct;
mod elementwise;
mod prepared;
mod winograd;

pub use bn_stats::channel_stats;
pub use burn_op::{
    channel_affine, clamp, conv2d, conv2d_fused, fake_quant, stat_matching_loss, ChannelAffine, ClampBounds,
    ConvAttrs, CpuKernels, FakeQuantParams, StatTargets,
};
pub use conv::{
    conv2d_bias_grad, conv2d_forward, conv2d_forward_fused, conv2d_input_grad, conv2d_weight_grad, Conv2dParams, Epilogue,
};
