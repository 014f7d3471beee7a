//! The one place that chooses where tensors live.
//!
//! burn 0.22 picks the backend at run time through [`Device`]. zeroq uses the pure-Rust `flex` CPU backend;
//! a GPU backend (burn's CUDA device) would be added here behind a cargo feature, and nothing else in the
//! crate names a backend.

use burn::tensor::Device;

/// Device for inference: forward passes, evaluation, calibration.
pub fn inference() -> Device {
    Device::flex()
}

/// Device for passes that need gradients (distillation: gradient of the loss w.r.t. the input batch).
/// Weights uploaded to it are constants, so no gradient is computed for them.
pub fn autodiff() -> Device {
    Device::flex().autodiff()
}

/// Bounds the CPU thread pool used by the kernels. Call once, before any tensor work; later calls are
/// ignored (the pool is global). `None` keeps rayon's default (all cores).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global();
    }
}
