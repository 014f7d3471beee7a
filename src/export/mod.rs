//! Writing models: the graph as ONNX ([`write_onnx`]), and a quantized model as standard ONNX QDQ
//! ([`qdq`]): int8 weights behind DequantizeLinear (per output channel), QuantizeLinear→DequantizeLinear
//! pairs on activations, loadable by ONNX Runtime and TensorRT.

mod onnx_writer;
pub mod qdq;

pub use onnx_writer::{graph_to_model, write_onnx, EXPORT_OPSET};
