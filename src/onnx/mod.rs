//! ONNX import (and, for export, the protobuf types): protobuf via `prost`, attributes, the op table.

mod attrs;
mod check;
mod load;
pub(crate) mod ops;
pub mod proto;

pub use load::{from_bytes, load_onnx, tensor_from_proto};
