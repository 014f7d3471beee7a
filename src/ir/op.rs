//! Typed operators. Import turns each ONNX node into one of these, with its attributes parsed and
//! validated once, so the engine and the passes never look at protobuf again.
//!
//! Op names keep their ONNX spelling. Parameters that newer opsets pass as (constant) inputs, such as
//! Slice's starts/ends or Pad's pads, are moved into the op by import when they are constant.

use super::tensor::HostTensor;

/// 2-D convolution parameters (`Conv`, opset 1/11). Inputs: X, W, optional B.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Kernel height and width (from the weight when the attribute is absent).
    pub kernel: [usize; 2],
    /// Strides along H and W.
    pub strides: [usize; 2],
    /// Padding as `[top, left, bottom, right]`; `auto_pad` is resolved into this at run time via `auto_pad`.
    pub pads: [usize; 4],
    /// Dilations along H and W.
    pub dilations: [usize; 2],
    /// Number of groups (`C_in / group` input channels per output channel).
    pub group: usize,
    /// `SAME_UPPER`/`SAME_LOWER` padding, computed from the input size when set.
    pub auto_pad: AutoPad,
}

/// ONNX `auto_pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    /// Explicit `pads`.
    NotSet,
    /// Output size `ceil(in / stride)`, extra padding at the end.
    SameUpper,
    /// Output size `ceil(in / stride)`, extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// 2-D pooling window (`MaxPool`, `AveragePool`).
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Strides along H and W.
    pub strides: [usize; 2],
    /// Padding as `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Dilations (MaxPool only; AveragePool requires 1).
    pub dilations: [usize; 2],
    /// Output size rounds up instead of down.
    pub ceil_mode: bool,
    /// AveragePool: padded zeros count in the divisor.
    pub count_include_pad: bool,
    /// `auto_pad`.
    pub auto_pad: AutoPad,
}

/// Fake quantization of a tensor: quantize to a k-bit integer grid, then dequantize, in FP32.
///
/// One scale and zero point per tensor (`axis: None`) or per slice along `axis` (per-channel weights).
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuant {
    /// Step between grid points, one per channel or one in all.
    pub scale: Vec<f32>,
    /// Integer zero point, in the signed range like `q`.
    pub zero_point: Vec<i32>,
    /// Smallest integer (e.g. -128 for 8 bits).
    pub qmin: i32,
    /// Largest integer (e.g. 127 for 8 bits).
    pub qmax: i32,
    /// Channel axis for per-channel parameters.
    pub axis: Option<usize>,
}

/// Every operator zeroq executes.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Conv(Conv),
    /// A Conv with what followed it fused in (inference plans only, [`crate::ir::passes::fuse_conv_epilogues`];
    /// never imported or exported). Inputs: X, W, B (optional), then the residual added to the output
    /// when `residual`; the sum is clamped to `[lo, hi]` (infinite: no clamp).
    FusedConv { conv: Conv, residual: bool, lo: f32, hi: f32 },
    /// Inference-mode batch norm. Inputs: X, scale, B, mean, var.
    BatchNormalization { epsilon: f32 },
    Relu,
    /// Clip to `[min, max]` (ReLU6 is `Clip(0, 6)`).
    Clip { min: f32, max: f32 },
    HardSwish,
    HardSigmoid { alpha: f32, beta: f32 },
    Sigmoid,
    Add,
    Sub,
    Mul,
    Div,
    Concat { axis: i64 },
    /// Split into `sizes` along `axis`, or into `parts` equal parts (the node's outputs) when `sizes` is None.
    Split { axis: i64, sizes: Option<Vec<usize>>, parts: usize },
    /// Starts/ends/axes/steps as in ONNX (negative values count from the end).
    Slice { starts: Vec<i64>, ends: Vec<i64>, axes: Vec<i64>, steps: Vec<i64> },
    /// Target shape is input 1 (possibly computed at run time from `Shape`).
    Reshape { allowzero: bool },
    Flatten { axis: i64 },
    Transpose { perm: Option<Vec<usize>> },
    /// Constant padding: `pads` is `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]` as in ONNX.
    Pad { pads: Vec<i64>, value: f32, mode: PadKind },
    MaxPool(Pool),
    AveragePool(Pool),
    GlobalAveragePool,
    ReduceMean { axes: Option<Vec<i64>>, keepdims: bool },
    Gemm { alpha: f32, beta: f32, trans_a: bool, trans_b: bool },
    MatMul,
    Softmax { axis: i64 },
    Identity,
    /// `Shape` of the input, as int64, dims `start..end`.
    Shape { start: i64, end: Option<i64> },
    Gather { axis: i64 },
    Unsqueeze { axes: Vec<i64> },
    Squeeze { axes: Option<Vec<i64>> },
    /// Cast to float (`true`) or to an integer type (`false`).
    Cast { to_float: bool },
    Constant(HostTensor),
    ConstantOfShape(HostTensor),
    Range,
    FakeQuant(FakeQuant),
    /// ONNX QuantizeLinear: `clamp(round(x/scale) + zp, qmin, qmax)` (kept as float values in the engine).
    /// Inputs: x, scale, optional zero point; `qmin/qmax` from the zero point's type (int8 or uint8).
    QuantizeLinear { axis: i64, qmin: i32, qmax: i32 },
    /// ONNX DequantizeLinear: `(x − zp)·scale`. Inputs: x, scale, optional zero point.
    DequantizeLinear { axis: i64 },
}

/// `Pad` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadKind {
    /// Fill with a constant value.
    Constant,
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge value.
    Edge,
}

impl Op {
    /// The ONNX op type this op was imported from (and is exported as).
    pub fn onnx_name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::FusedConv { .. } => "FusedConv",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::Relu => "Relu",
            Op::Clip { .. } => "Clip",
            Op::HardSwish => "HardSwish",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::Sigmoid => "Sigmoid",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Reshape { .. } => "Reshape",
            Op::Flatten { .. } => "Flatten",
            Op::Transpose { .. } => "Transpose",
            Op::Pad { .. } => "Pad",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
            Op::Shape { .. } => "Shape",
            Op::Gather { .. } => "Gather",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Squeeze { .. } => "Squeeze",
            Op::Cast { .. } => "Cast",
            Op::Constant(_) => "Constant",
            Op::ConstantOfShape(_) => "ConstantOfShape",
            Op::Range => "Range",
            Op::FakeQuant(_) => "FakeQuant",
            Op::QuantizeLinear { .. } => "QuantizeLinear",
            Op::DequantizeLinear { .. } => "DequantizeLinear",
        }
    }

    /// Weight layers are the ops whose constant weight zeroq quantizes per layer.
    pub fn is_weight_layer(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul)
    }
}
