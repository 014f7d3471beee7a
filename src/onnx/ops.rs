//! ONNX op type → typed [`Op`]. One builder per op; each reads its attributes (and constant parameter
//! inputs, for ops whose parameters moved to inputs in later opsets) and validates them.

use super::attrs::Attrs;
use super::proto::NodeProto;
use crate::error::{Error, Result};
use crate::ir::{AutoPad, Conv, HostTensor, Op, PadKind, Pool};

/// What a builder can see besides the node: the opset and the constant value of each input, if constant.
pub struct BuildCtx<'a> {
    /// The node.
    pub node: &'a NodeProto,
    /// Its attributes.
    pub attrs: Attrs<'a>,
    /// Default-domain opset.
    pub opset: i64,
    /// Constant value of each input (None: not constant or omitted).
    pub consts: Vec<Option<&'a HostTensor>>,
    /// Whether each input is present (non-empty name).
    pub present: Vec<bool>,
    /// ONNX element type of each input that is an initializer (integer types are widened on load).
    pub input_types: Vec<Option<i32>>,
}

impl BuildCtx<'_> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::node(&self.node.name, &self.node.op_type, reason)
    }

    /// Constant integer parameter input `i`: `Ok(None)` if omitted, an error if present but not constant.
    fn const_ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        if !self.present.get(i).copied().unwrap_or(false) {
            return Ok(None);
        }
        match self.consts.get(i).copied().flatten() {
            Some(t) => Ok(Some(t.to_i64_vec())),
            None => Err(self.err(format!("input {i} ({what}) must be a constant (computed from initializers); dynamic {what} is not supported"))),
        }
    }

    fn const_f32(&self, i: usize, what: &str) -> Result<Option<f32>> {
        if !self.present.get(i).copied().unwrap_or(false) {
            return Ok(None);
        }
        match self.consts.get(i).copied().flatten() {
            Some(t) => Ok(t.to_f32_vec().first().copied()),
            None => Err(self.err(format!("input {i} ({what}) must be a constant"))),
        }
    }

    fn auto_pad(&self) -> Result<AutoPad> {
        match self.attrs.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => Ok(AutoPad::NotSet),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            "VALID" => Ok(AutoPad::Valid),
            other => Err(self.err(format!("unknown auto_pad '{other}'"))),
        }
    }

    fn pool(&self) -> Result<Pool> {
        let kernel = self.attrs.sizes("kernel_shape", [0, 0])?;
        if kernel.contains(&0) {
            return Err(self.err("kernel_shape must be given as 2 positive values (only 2-D pooling is supported)"));
        }
        Ok(Pool {
            kernel,
            strides: self.attrs.sizes("strides", [1, 1])?,
            pads: self.attrs.sizes("pads", [0; 4])?,
            dilations: self.attrs.sizes("dilations", [1, 1])?,
            ceil_mode: self.attrs.int("ceil_mode", 0)? != 0,
            count_include_pad: self.attrs.int("count_include_pad", 0)? != 0,
            auto_pad: self.auto_pad()?,
        })
    }
}

/// Builds the typed op for `ctx.node`, or [`Error::UnsupportedOp`].
pub fn build(ctx: &BuildCtx) -> Result<Op> {
    let n = ctx.node;
    let a = &ctx.attrs;
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return Err(Error::UnsupportedOp { node: n.name.clone(), op_type: n.op_type.clone(), domain: format!(" (domain '{}')", n.domain) });
    }
    let op = match n.op_type.as_str() {
        "Conv" => {
            let w_shape = ctx.consts.get(1).copied().flatten().map(|t| t.shape.clone());
            if let Some(s) = &w_shape {
                if s.len() != 4 {
                    return Err(ctx.err(format!("weight of shape {s:?}: only 2-D convolution (4-D weights) is supported")));
                }
            }
            let default_k = w_shape.as_ref().map_or([0, 0], |s| [s[2], s[3]]);
            let kernel = a.sizes("kernel_shape", default_k)?;
            Op::Conv(Conv {
                kernel,
                strides: a.sizes("strides", [1, 1])?,
                pads: a.sizes("pads", [0; 4])?,
                dilations: a.sizes("dilations", [1, 1])?,
                group: a.int("group", 1)?.max(1) as usize,
                auto_pad: ctx.auto_pad()?,
            })
        }
        "BatchNormalization" => {
            if a.int("training_mode", 0)? != 0 || n.output.iter().filter(|o| !o.is_empty()).count() > 1 {
                return Err(ctx.err("training-mode BatchNormalization (several outputs) is not supported: export the model in eval mode with TrainingMode.PRESERVE"));
            }
            Op::BatchNormalization { epsilon: a.float("epsilon", 1e-5)? }
        }
        "Relu" => Op::Relu,
        "Clip" => {
            let (min, max) = if ctx.opset >= 11 {
                (ctx.const_f32(1, "min")?.unwrap_or(f32::NEG_INFINITY), ctx.const_f32(2, "max")?.unwrap_or(f32::INFINITY))
            } else {
                (a.float("min", f32::NEG_INFINITY)?, a.float("max", f32::INFINITY)?)
            };
            Op::Clip { min, max }
        }
        "HardSwish" => Op::HardSwish,
        "HardSigmoid" => Op::HardSigmoid { alpha: a.float("alpha", 0.2)?, beta: a.float("beta", 0.5)? },
        "Sigmoid" => Op::Sigmoid,
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        "Div" => Op::Div,
        "Concat" => Op::Concat { axis: a.int("axis", 0)? },
        "Split" => {
            let sizes = match ctx.const_ints(1, "split")? {
                Some(v) => Some(v),
                None => a.ints("split")?,
            };
            let sizes = sizes.map(|v| v.into_iter().map(|x| x.max(0) as usize).collect());
            let parts = n.output.iter().filter(|o| !o.is_empty()).count();
            Op::Split { axis: a.int("axis", 0)?, sizes, parts }
        }
        "Slice" => {
            if ctx.opset >= 10 {
                let starts = ctx.const_ints(1, "starts")?.ok_or_else(|| ctx.err("missing starts"))?;
                let ends = ctx.const_ints(2, "ends")?.ok_or_else(|| ctx.err("missing ends"))?;
                let axes = ctx.const_ints(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = ctx.const_ints(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
                Op::Slice { starts, ends, axes, steps }
            } else {
                let starts = a.ints("starts")?.unwrap_or_default();
                let ends = a.ints("ends")?.unwrap_or_default();
                let axes = a.ints("axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = vec![1; starts.len()];
                Op::Slice { starts, ends, axes, steps }
            }
        }
        "Reshape" => Op::Reshape { allowzero: a.int("allowzero", 0)? != 0 },
        "Flatten" => Op::Flatten { axis: a.int("axis", 1)? },
        "Transpose" => Op::Transpose { perm: a.ints("perm")?.map(|p| p.into_iter().map(|x| x.max(0) as usize).collect()) },
        "Pad" => {
            let mode = match a.string("mode", "constant")?.as_str() {
                "constant" => PadKind::Constant,
                "reflect" => PadKind::Reflect,
                "edge" => PadKind::Edge,
                m => return Err(ctx.err(format!("pad mode '{m}' is not supported"))),
            };
            if ctx.opset >= 11 {
                let pads = ctx.const_ints(1, "pads")?.ok_or_else(|| ctx.err("missing pads"))?;
                if ctx.present.get(3).copied().unwrap_or(false) {
                    return Err(ctx.err("the axes input of Pad (opset 18) is not supported"));
                }
                Op::Pad { pads, value: ctx.const_f32(2, "constant_value")?.unwrap_or(0.0), mode }
            } else {
                Op::Pad { pads: a.ints("pads")?.unwrap_or_default(), value: a.float("value", 0.0)?, mode }
            }
        }
        "MaxPool" => {
            if n.output.len() > 1 && n.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(ctx.err("the Indices output of MaxPool is not supported"));
            }
            Op::MaxPool(ctx.pool()?)
        }
        "AveragePool" => {
            let p = ctx.pool()?;
            if p.dilations != [1, 1] {
                return Err(ctx.err(format!("AveragePool with dilations {:?} is not supported (only 1, 1)", p.dilations)));
            }
            Op::AveragePool(p)
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "ReduceMean" => {
            let axes = if ctx.opset >= 18 { ctx.const_ints(1, "axes")? } else { a.ints("axes")? };
            Op::ReduceMean { axes, keepdims: a.int("keepdims", 1)? != 0 }
        }
        "Gemm" => Op::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.int("transA", 0)? != 0,
            trans_b: a.int("transB", 0)? != 0,
        },
        "MatMul" => Op::MatMul,
        "Softmax" => Op::Softmax { axis: a.int("axis", if ctx.opset >= 13 { -1 } else { 1 })? },
        "Identity" => Op::Identity,
        "Dropout" => {
            // Inference: the identity, which is only what Dropout computes outside training and without its mask.
            let training = if ctx.opset >= 12 { ctx.const_ints(2, "training_mode")?.and_then(|v| v.first().copied()).unwrap_or(0) } else { 0 };
            if training != 0 {
                return Err(ctx.err("training-mode Dropout is not supported: export the model in eval mode"));
            }
            if n.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(ctx.err("the mask output of Dropout is not supported"));
            }
            Op::Identity
        }
        "Shape" => Op::Shape { start: a.int("start", 0)?, end: if a.has("end") { Some(a.int("end", 0)?) } else { None } },
        "Gather" => Op::Gather { axis: a.int("axis", 0)? },
        "Unsqueeze" => {
            let axes = if ctx.opset >= 13 { ctx.const_ints(1, "axes")? } else { a.ints("axes")? };
            Op::Unsqueeze { axes: axes.ok_or_else(|| ctx.err("missing axes"))? }
        }
        "Squeeze" => Op::Squeeze { axes: if ctx.opset >= 13 { ctx.const_ints(1, "axes")? } else { a.ints("axes")? } },
        "Cast" => {
            use super::proto::data_type as dt;
            let to = a.int("to", 0)? as i32;
            Op::Cast { to_float: matches!(to, dt::FLOAT | dt::DOUBLE | dt::FLOAT16) }
        }
        "Constant" => {
            let t = if let Some(t) = a.tensor("value")? {
                super::load::tensor_from_proto(t, None).map_err(|e| ctx.err(e.to_string()))?
            } else if a.has("value_float") {
                HostTensor::f32(vec![], vec![a.float("value_float", 0.0)?])
            } else if a.has("value_int") {
                HostTensor::i64(vec![], vec![a.int("value_int", 0)?])
            } else if let Some(v) = a.ints("value_ints")? {
                HostTensor::i64(vec![v.len()], v)
            } else {
                return Err(ctx.err("Constant without a supported value attribute"));
            };
            Op::Constant(t)
        }
        "ConstantOfShape" => {
            let fill = match a.tensor("value")? {
                Some(t) => super::load::tensor_from_proto(t, None).map_err(|e| ctx.err(e.to_string()))?,
                None => HostTensor::f32(vec![1], vec![0.0]),
            };
            Op::ConstantOfShape(fill)
        }
        "Range" => Op::Range,
        "QuantizeLinear" => {
            use super::proto::data_type as dt;
            let (qmin, qmax) = match ctx.input_types.get(2).copied().flatten() {
                Some(dt::INT8) => (-128, 127),
                Some(dt::UINT8) | None => (0, 255),
                Some(t) => return Err(ctx.err(format!("zero point of type {t} is not supported (int8 or uint8)"))),
            };
            if ctx.present.get(2).copied().unwrap_or(false) && ctx.input_types.get(2).copied().flatten().is_none() {
                return Err(ctx.err("the zero point must be an initializer (its type decides int8 or uint8)"));
            }
            Op::QuantizeLinear { axis: a.int("axis", 1)?, qmin, qmax }
        }
        "DequantizeLinear" => Op::DequantizeLinear { axis: a.int("axis", 1)? },
        _ => {
            return Err(Error::UnsupportedOp { node: n.name.clone(), op_type: n.op_type.clone(), domain: String::new() });
        }
    };
    Ok(op)
}

/// Inputs that were folded into the op's parameters and need not stay wired to the node.
pub fn param_inputs(op: &Op, opset: i64) -> &'static [usize] {
    match op {
        Op::Clip { .. } if opset >= 11 => &[1, 2],
        Op::Split { .. } => &[1],
        Op::Slice { .. } if opset >= 10 => &[1, 2, 3, 4],
        Op::Pad { .. } if opset >= 11 => &[1, 2, 3],
        Op::ReduceMean { .. } if opset >= 18 => &[1],
        Op::Unsqueeze { .. } | Op::Squeeze { .. } if opset >= 13 => &[1],
        _ => &[],
    }
}
