//! Integration tests: the real pipeline on the real models and data in `../shared/assets`.

mod common;
mod conformance;
mod distill;
mod errors;
mod eval_assets;
mod fuzz;
mod gradient;
mod hostile;
mod onnxruntime;
mod preprocessing;
mod python;
mod quantize;
mod reconstruct;
mod run;
mod sensitivity;
mod torch_import;

// Counts memory per thread so the fuzz tests can check that no reader allocates by what a file claims
// (a thin layer over the system allocator; see zeroq::fuzz).
#[global_allocator]
static ALLOC: zeroq::fuzz::TrackingAlloc = zeroq::fuzz::TrackingAlloc;
