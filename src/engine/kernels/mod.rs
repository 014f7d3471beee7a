//! Hand-written CPU kernels for the spots where a profile showed burn's `flex` backend to be the
//! bottleneck. Each kernel has a test against the plain-burn path (its reference).
//!
//! Profile that motivated `conv2d` (ResNet20, 1,000 CIFAR images, batch 500, 2 threads): Conv took 3.0 s
//! of 3.5 s, mostly in flex's NHWC conversion and tiled im2col rather than in the GEMM itself.

mod conv;

pub use conv::{conv2d_nchw, Conv2dParams};
