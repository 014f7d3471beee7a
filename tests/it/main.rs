//! Integration tests: the real pipeline on the real models and data in `../shared/assets`.

mod common;
mod distill;
mod errors;
mod eval_assets;
mod gradient;
mod onnxruntime;
mod preprocessing;
mod quantize;
mod run;
mod sensitivity;
mod torch_import;
