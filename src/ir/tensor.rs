//! Host-resident tensors: initializers, folded constants and shape arithmetic.
//!
//! The graph keeps its constants on the host, independent of any execution device, so that passes (BN
//! folding, quantization) can rewrite them with plain Rust and the engine uploads them once per plan.

/// Element storage of a [`HostTensor`]. Integer types all widen to `i64`: ONNX shape arithmetic is int64 and
/// zeroq never computes with other integer tensors.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// 32-bit floats (weights, biases, BN statistics, float constants).
    F32(Vec<f32>),
    /// Integers of any ONNX integer or bool type, widened.
    I64(Vec<i64>),
}

/// A dense row-major tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// Row-major elements; `shape.iter().product()` of them.
    pub data: HostData,
}

impl HostTensor {
    /// A float tensor. The caller guarantees `data.len() == shape.iter().product()`.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data: HostData::F32(data) }
    }

    /// An integer tensor. The caller guarantees `data.len() == shape.iter().product()`.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data: HostData::I64(data) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The float elements, if this is a float tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            HostData::F32(v) => Some(v),
            HostData::I64(_) => None,
        }
    }

    /// The elements as integers (floats are truncated): used where ONNX allows either for a parameter.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
        }
    }

    /// The elements as floats.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// True for a float tensor.
    pub fn is_float(&self) -> bool {
        matches!(self.data, HostData::F32(_))
    }
}
