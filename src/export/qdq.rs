//! A [`QuantizedModel`] as standard ONNX QDQ.
//!
//! - Weights: an int8 initializer (values in the k-bit range) → DequantizeLinear(axis = output channel,
//!   per-channel scale and int8 zero point) → the layer.
//! - Activations: QuantizeLinear → DequantizeLinear with int8 scale/zero point; below 8 bits a Clip to the
//!   k-bit grid's bounds comes first, which is equivalent to clamping the integer to [qmin, qmax].
//!
//! - Bias of a layer with quantized input and weights: int32 at scale `s_x·s_w[c]` behind DequantizeLinear,
//!   as integer kernels hold it (other biases stay FP32).
//!
//! The numbers are exactly those zeroq simulated.

use std::collections::HashMap;

use super::onnx_writer::{assemble, float_tensor, int32_tensor, int8_tensor, node_proto, Emitter};
use crate::error::Result;
use crate::ir::{HostData, Op};
use crate::onnx::proto::{AttributeProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto};
use crate::quant::QuantizedModel;

/// Builds the QDQ model.
pub fn to_qdq(q: &QuantizedModel) -> Result<ModelProto> {
    let g = &q.graph;
    let mut em = Emitter::new();
    let axis_attr = |axis: usize| AttributeProto { name: "axis".into(), r#type: crate::onnx::proto::attribute_type::INT, i: axis as i64, ..Default::default() };
    // Weight constants become int8 + DequantizeLinear.
    let quantized: HashMap<usize, &crate::quant::WeightQuant> = q.weights.iter().map(|w| (w.value, w)).collect();
    let biases: HashMap<usize, &crate::quant::BiasQuant> = q.weights.iter().filter_map(|w| w.bias.as_ref().map(|b| (b.value, b))).collect();
    let mut initializer: Vec<TensorProto> = Vec::new();
    for (&v, t) in &g.consts {
        let name = g.name(v).to_string();
        match (quantized.get(&v), &t.data) {
            (Some(w), HostData::F32(vals)) => {
                let n = t.shape[w.axis];
                let inner: usize = t.shape[w.axis + 1..].iter().product();
                let ints: Vec<i32> = vals.iter().enumerate().map(|(i, &x)| w.qparams[(i / inner) % n].quantize(x)).collect();
                let qn = em.init(&format!("{name}_int"), int8_tensor(&t.shape, &ints));
                let sn = em.init(&format!("{name}_scale"), float_tensor(&[n], &w.qparams.iter().map(|p| p.scale).collect::<Vec<_>>()));
                let zn = em.init(&format!("{name}_zero_point"), int8_tensor(&[n], &w.qparams.iter().map(|p| p.zero_point).collect::<Vec<_>>()));
                em.nodes.push(NodeProto {
                    name: format!("{}_dequantize", w.layer),
                    op_type: "DequantizeLinear".into(),
                    input: vec![qn, sn, zn],
                    output: vec![name],
                    attribute: vec![axis_attr(w.axis)],
                    doc_string: format!("{}-bit weights (values in [{}, {}]) stored as int8", w.bits, crate::quant::signed_range(w.bits).0, crate::quant::signed_range(w.bits).1),
                    ..Default::default()
                });
            }
            _ => match biases.get(&v) {
                Some(b) => {
                    let n = b.ints.len();
                    let qn = em.init(&format!("{name}_int32"), int32_tensor(&[n], &b.ints));
                    let sn = em.init(&format!("{name}_scale"), float_tensor(&[n], &b.scale));
                    let zn = em.init(&format!("{name}_zero_point"), int32_tensor(&[n], &vec![0; n]));
                    em.nodes.push(NodeProto {
                        name: format!("{name}_dequantize"),
                        op_type: "DequantizeLinear".into(),
                        input: vec![qn, sn, zn],
                        output: vec![name],
                        attribute: vec![axis_attr(0)],
                        ..Default::default()
                    });
                }
                None => initializer.push(TensorProto { name, ..super::onnx_writer::host_tensor(t) }),
            },
        }
    }
    for n in &g.nodes {
        let Op::FakeQuant(fq) = &n.op else {
            node_proto(g, n, &mut em)?;
            continue;
        };
        let x = n.input(0).map(|v| g.name(v).to_string()).unwrap_or_default();
        let out = g.name(n.outputs[0]).to_string();
        let (s, z) = (fq.scale[0], fq.zero_point[0]);
        let sn = em.init(&format!("{}_scale", n.name), float_tensor(&[], &[s]));
        let zn = em.init(&format!("{}_zero_point", n.name), int8_tensor(&[], &[z]));
        let mut src = x;
        if fq.qmin > -128 || fq.qmax < 127 {
            let (lo, hi) = (s * (fq.qmin - z) as f32, s * (fq.qmax - z) as f32);
            let lon = em.init(&format!("{}_min", n.name), float_tensor(&[], &[lo]));
            let hin = em.init(&format!("{}_max", n.name), float_tensor(&[], &[hi]));
            let clipped = format!("{}_clipped", n.name);
            em.nodes.push(NodeProto { name: format!("{}_clip", n.name), op_type: "Clip".into(), input: vec![src, lon, hin], output: vec![clipped.clone()], ..Default::default() });
            src = clipped;
        }
        let qname = format!("{}_int8", n.name);
        em.nodes.push(NodeProto { name: format!("{}_q", n.name), op_type: "QuantizeLinear".into(), input: vec![src, sn.clone(), zn.clone()], output: vec![qname.clone()], ..Default::default() });
        em.nodes.push(NodeProto { name: format!("{}_dq", n.name), op_type: "DequantizeLinear".into(), input: vec![qname, sn, zn], output: vec![out], ..Default::default() });
    }
    let mut model = assemble(g, em, initializer);
    // The chosen bit-widths travel with the model, for tools and people that read it later.
    let wbits: serde_json::Map<String, serde_json::Value> = q.weights.iter().map(|w| (w.layer.clone(), w.bits.into())).collect();
    let abits: serde_json::Map<String, serde_json::Value> = q.activations.iter().map(|a| (a.tensor.clone(), a.bits.into())).collect();
    for (key, map) in [("zeroq.weight_bits", wbits), ("zeroq.activation_bits", abits)] {
        model.metadata_props.retain(|e| e.key != key);
        model.metadata_props.push(StringStringEntryProto { key: key.into(), value: serde_json::Value::Object(map).to_string() });
    }
    Ok(model)
}
