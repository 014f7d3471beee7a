//! The one place that chooses where tensors live, and which kernels run on them.
//!
//! burn 0.22 picks the backend at run time through [`Device`]. zeroq uses the pure-Rust `flex` CPU backend;
//! a GPU backend (burn's CUDA device) would be added here behind a cargo feature, and nothing else in the
//! crate names a backend.
//!
//! On the flex device, Conv, BatchNormalization, Relu/Clip and the distillation loss's BN statistics run on
//! zeroq's own kernels ([`super::kernels`], burn backend-extension ops with their own backward steps); on
//! any other device, or with `ZEROQ_KERNELS=burn` in the environment, they run on burn's ops, the reference
//! the kernels are tested against.

use std::sync::OnceLock;

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

/// Whether tensors on `device` use zeroq's own CPU kernels: the device is flex (plain or autodiff) and
/// `ZEROQ_KERNELS` is not `burn` (read once per process).
pub fn own_kernels(device: &Device) -> bool {
    static PLAIN_BURN: OnceLock<bool> = OnceLock::new();
    let plain =
        *PLAIN_BURN.get_or_init(|| std::env::var("ZEROQ_KERNELS").is_ok_and(|v| v == "burn"));
    !plain && device.clone().without_autodiff() == Device::flex()
}

/// Bounds the CPU thread pool used by the kernels. Call once, before any tensor work; later calls are
/// ignored (the pool is global). `None` keeps rayon's default (all cores).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global();
    }
}
