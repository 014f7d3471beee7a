/*!
zeroq: data-free (zero-shot) quantization of neural networks, after ZeroQ (Cai et al., CVPR 2020).

The crate reads like the pipeline:

1. [`onnx`] imports an ONNX model into the graph IR ([`ir`]), folding shape arithmetic.
2. [`engine`] runs the graph on the CPU (burn's `flex` backend), keeps intermediate tensors and
   differentiates a loss with respect to the input.
3. [`data`] reads labelled sets (CIFAR-10 binary, image folders) with explicit preprocessing, and `.npy`.
4. [`distill`] synthesises input batches whose BatchNorm statistics match the model's.
5. [`sensitivity`] measures how much each layer suffers at each bit-width; [`pareto`] picks one bit-width
   per layer under a size budget, exactly, and gives the whole size/sensitivity frontier.
6. [`quant`] calibrates activation ranges and simulates the quantized model; [`reconstruct`] learns the
   weight rounding and activation steps against the FP32 model on the calibration data; [`export`] writes
   it as ONNX QDQ for real runtimes.
7. [`pipeline`] runs all of it in one call, the job of `zeroq run`.
8. [`eval`] measures top-1/top-5 accuracy and agreement between models; [`report`] draws pictures.

Models come from ONNX files, or from PyTorch `state_dict` checkpoints ([`torch`]) of a built-in
architecture ([`arch`]), or by name from the [`zoo`]; [`source::ModelSource`] is the one entry point.
*/
#![deny(missing_docs)]

pub mod arch;
pub mod data;
pub mod distill;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod fuzz;
pub mod ir;
pub mod model;
pub mod onnx;
pub mod pareto;
pub mod pipeline;
pub mod quant;
pub mod reconstruct;
pub mod report;
pub mod sensitivity;
pub mod source;
pub mod torch;
pub mod validate;
pub mod zoo;

pub use error::{Error, Result};
