//! Graph → ONNX (opset 17). Parameters that the IR keeps inside ops go back to where opset 17 wants
//! them: attributes, or constant inputs (Clip min/max, Slice starts/ends, Pad pads, Split sizes, axes).

use std::path::Path;

use prost::Message;

use crate::data::write_atomic;
use crate::error::{Error, Result};
use crate::ir::{AutoPad, Dim, Graph, HostData, HostTensor, Node, Op, PadKind, ValueId};
use crate::onnx::proto::{
    attribute_type as at, data_type as dt, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// The opset zeroq writes.
pub const EXPORT_OPSET: i64 = 17;

/// Extra nodes and initializers an op needs when written out.
pub(crate) struct Emitter {
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    counter: usize,
}

impl Emitter {
    pub(crate) fn new() -> Self {
        Self { nodes: Vec::new(), inits: Vec::new(), counter: 0 }
    }

    /// Adds an initializer with a unique name derived from `hint` and returns the name.
    pub(crate) fn init(&mut self, hint: &str, t: TensorProto) -> String {
        self.counter += 1;
        let name = format!("{hint}__{}", self.counter);
        self.inits.push(TensorProto { name: name.clone(), ..t });
        name
    }
}

fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::INT, i, ..Default::default() }
}
fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::FLOAT, f, ..Default::default() }
}
fn attr_is(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::INTS, ints: ints.to_vec(), ..Default::default() }
}
fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: at::STRING, s: s.as_bytes().to_vec(), ..Default::default() }
}
fn us(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// A float tensor as an ONNX initializer (raw little-endian).
pub(crate) fn float_tensor(shape: &[usize], v: &[f32]) -> TensorProto {
    TensorProto { dims: us(shape), data_type: dt::FLOAT, raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(), ..Default::default() }
}
/// An int64 tensor as an ONNX initializer.
pub(crate) fn int64_tensor(shape: &[usize], v: &[i64]) -> TensorProto {
    TensorProto { dims: us(shape), data_type: dt::INT64, raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(), ..Default::default() }
}
/// An int32 tensor as an ONNX initializer.
pub(crate) fn int32_tensor(shape: &[usize], v: &[i32]) -> TensorProto {
    TensorProto { dims: us(shape), data_type: dt::INT32, raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(), ..Default::default() }
}
/// An int8 tensor as an ONNX initializer.
pub(crate) fn int8_tensor(shape: &[usize], v: &[i32]) -> TensorProto {
    TensorProto { dims: us(shape), data_type: dt::INT8, raw_data: v.iter().map(|&x| x.clamp(-128, 127) as i8 as u8).collect(), ..Default::default() }
}

pub(crate) fn host_tensor(t: &HostTensor) -> TensorProto {
    match &t.data {
        HostData::F32(v) => float_tensor(&t.shape, v),
        HostData::I64(v) => int64_tensor(&t.shape, v),
    }
}

fn value_info(g: &Graph, v: ValueId) -> ValueInfoProto {
    let shape = g.values[v].shape.as_ref().map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Dimension { dim_value: Some(*n as i64), ..Default::default() },
                Dim::Dynamic(p) => Dimension { dim_param: Some(if p.is_empty() { "N".into() } else { p.clone() }), ..Default::default() },
            })
            .collect(),
    });
    ValueInfoProto {
        name: g.name(v).to_string(),
        r#type: Some(TypeProto { tensor_type: Some(TypeProtoTensor { elem_type: dt::FLOAT, shape }), ..Default::default() }),
        ..Default::default()
    }
}

fn pool_attrs(p: &crate::ir::Pool, max: bool) -> Vec<AttributeProto> {
    let mut a = vec![attr_is("kernel_shape", &us(&p.kernel)), attr_is("strides", &us(&p.strides)), attr_is("pads", &us(&p.pads)), attr_i("ceil_mode", p.ceil_mode as i64)];
    if max {
        a.push(attr_is("dilations", &us(&p.dilations)));
    } else {
        a.push(attr_i("count_include_pad", p.count_include_pad as i64));
    }
    if let Some(s) = auto_pad(p.auto_pad) {
        a.retain(|x| x.name != "pads");
        a.push(attr_s("auto_pad", s));
    }
    a
}

fn auto_pad(a: AutoPad) -> Option<&'static str> {
    match a {
        AutoPad::NotSet => None,
        AutoPad::SameUpper => Some("SAME_UPPER"),
        AutoPad::SameLower => Some("SAME_LOWER"),
        AutoPad::Valid => Some("VALID"),
    }
}

/// Writes one node; FakeQuant is written by the caller (QDQ export) and is an error here.
pub(crate) fn node_proto(g: &Graph, n: &Node, em: &mut Emitter) -> Result<()> {
    let name = |v: &Option<ValueId>| v.map(|v| g.name(v).to_string()).unwrap_or_default();
    let mut input: Vec<String> = n.inputs.iter().map(name).collect();
    let output: Vec<String> = n.outputs.iter().map(|&o| g.name(o).to_string()).collect();
    let mut attribute = Vec::new();
    let op_type = n.op.onnx_name().to_string();
    let ints = |em: &mut Emitter, hint: &str, v: &[i64]| em.init(&format!("{}_{hint}", n.name), int64_tensor(&[v.len()], v));
    match &n.op {
        Op::Conv(c) => {
            attribute = vec![attr_is("kernel_shape", &us(&c.kernel)), attr_is("strides", &us(&c.strides)), attr_is("dilations", &us(&c.dilations)), attr_i("group", c.group as i64)];
            match auto_pad(c.auto_pad) {
                Some(s) => attribute.push(attr_s("auto_pad", s)),
                None => attribute.push(attr_is("pads", &us(&c.pads))),
            }
        }
        Op::BatchNormalization { epsilon } => attribute.push(attr_f("epsilon", *epsilon)),
        Op::Clip { min, max } => {
            let lo = em.init(&format!("{}_min", n.name), float_tensor(&[], &[*min]));
            let hi = em.init(&format!("{}_max", n.name), float_tensor(&[], &[*max]));
            input.truncate(1);
            input.extend([lo, hi]);
        }
        Op::HardSigmoid { alpha, beta } => attribute = vec![attr_f("alpha", *alpha), attr_f("beta", *beta)],
        Op::Concat { axis } => attribute.push(attr_i("axis", *axis)),
        Op::Split { axis, sizes, .. } => {
            attribute.push(attr_i("axis", *axis));
            input.truncate(1);
            if let Some(s) = sizes {
                input.push(ints(em, "split", &us(s)));
            }
        }
        Op::Slice { starts, ends, axes, steps } => {
            input.truncate(1);
            input.extend([ints(em, "starts", starts), ints(em, "ends", ends), ints(em, "axes", axes), ints(em, "steps", steps)]);
        }
        Op::Reshape { allowzero } => attribute.push(attr_i("allowzero", *allowzero as i64)),
        Op::Flatten { axis } => attribute.push(attr_i("axis", *axis)),
        Op::Transpose { perm } => {
            if let Some(p) = perm {
                attribute.push(attr_is("perm", &us(p)));
            }
        }
        Op::Pad { pads, value, mode } => {
            input.truncate(1);
            input.push(ints(em, "pads", pads));
            input.push(em.init(&format!("{}_value", n.name), float_tensor(&[], &[*value])));
            let m = match mode {
                PadKind::Constant => "constant",
                PadKind::Reflect => "reflect",
                PadKind::Edge => "edge",
            };
            attribute.push(attr_s("mode", m));
        }
        Op::MaxPool(p) => attribute = pool_attrs(p, true),
        Op::AveragePool(p) => attribute = pool_attrs(p, false),
        Op::ReduceMean { axes, keepdims } => {
            if let Some(a) = axes {
                attribute.push(attr_is("axes", a));
            }
            attribute.push(attr_i("keepdims", *keepdims as i64));
        }
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            attribute = vec![attr_f("alpha", *alpha), attr_f("beta", *beta), attr_i("transA", *trans_a as i64), attr_i("transB", *trans_b as i64)]
        }
        Op::Softmax { axis } => attribute.push(attr_i("axis", *axis)),
        Op::Shape { start, end } => {
            attribute.push(attr_i("start", *start));
            if let Some(e) = end {
                attribute.push(attr_i("end", *e));
            }
        }
        Op::Gather { axis } => attribute.push(attr_i("axis", *axis)),
        Op::Unsqueeze { axes } => {
            input.truncate(1);
            input.push(ints(em, "axes", axes));
        }
        Op::Squeeze { axes } => {
            input.truncate(1);
            if let Some(a) = axes {
                input.push(ints(em, "axes", a));
            }
        }
        Op::Cast { to_float } => attribute.push(attr_i("to", if *to_float { dt::FLOAT as i64 } else { dt::INT64 as i64 })),
        Op::Constant(t) => attribute.push(AttributeProto { name: "value".into(), r#type: at::TENSOR, t: Some(host_tensor(t)), ..Default::default() }),
        Op::ConstantOfShape(t) => attribute.push(AttributeProto { name: "value".into(), r#type: at::TENSOR, t: Some(host_tensor(t)), ..Default::default() }),
        Op::QuantizeLinear { axis, .. } | Op::DequantizeLinear { axis } => attribute.push(attr_i("axis", *axis)),
        Op::FakeQuant(_) => return Err(Error::node(&n.name, "FakeQuant", "is written by the QDQ exporter, not as a plain ONNX node")),
        Op::FusedConv { .. } => return Err(Error::node(&n.name, "FusedConv", "exists only in inference plans; export the graph before fusing")),
        Op::Relu | Op::HardSwish | Op::Sigmoid | Op::Add | Op::Sub | Op::Mul | Op::Div | Op::GlobalAveragePool | Op::MatMul | Op::Identity | Op::Range => {}
    }
    em.nodes.push(NodeProto { name: n.name.clone(), op_type, input, output, attribute, ..Default::default() });
    Ok(())
}

/// The graph as an ONNX model: every constant an initializer, every node written with [`node_proto`].
pub fn graph_to_model(g: &Graph) -> Result<ModelProto> {
    let mut em = Emitter::new();
    for n in &g.nodes {
        node_proto(g, n, &mut em)?;
    }
    Ok(assemble(g, em, g.consts.iter().map(|(&v, t)| TensorProto { name: g.name(v).to_string(), ..host_tensor(t) }).collect()))
}

pub(crate) fn assemble(g: &Graph, em: Emitter, mut initializer: Vec<TensorProto>) -> ModelProto {
    initializer.extend(em.inits);
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: EXPORT_OPSET }],
        producer_name: "zeroq".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: "zeroq".into(),
            node: em.nodes,
            initializer,
            input: g.inputs.iter().map(|&v| value_info(g, v)).collect(),
            output: g.outputs.iter().map(|&v| value_info(g, v)).collect(),
            ..Default::default()
        }),
        metadata_props: g.metadata.iter().map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() }).collect(),
        ..Default::default()
    }
}

/// Writes a model atomically.
pub fn write_onnx(path: &Path, model: &ModelProto) -> Result<()> {
    write_atomic(path, &model.encode_to_vec())
}
