//! ONNX file → [`Graph`], in named phases: decode, initializers, inputs, nodes (constant-folding shape
//! arithmetic as it goes), outputs, clean-up.

use std::collections::HashMap;
use std::path::{Component, Path};

use prost::Message;

use super::attrs::Attrs;
use super::ops::{build, param_inputs, BuildCtx};
use super::proto::{data_type as dt, ModelProto, TensorProto, ValueInfoProto, DATA_LOCATION_EXTERNAL};
use crate::engine::eval_on_host;
use crate::error::{Error, Result};
use crate::ir::{passes, Dim, Graph, HostTensor, Node};

/// Loads an ONNX model file. External tensor data (`*.onnx.data`) is read relative to the model's folder.
pub fn load_onnx(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    from_bytes(&bytes, Some(dir)).map_err(|e| match e {
        Error::OnnxDecode { reason, .. } => Error::OnnxDecode { path: path.to_path_buf(), reason },
        other => other,
    })
}

/// Decodes an ONNX model from memory. `base_dir` resolves external data; without it, external data is an error.
pub fn from_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Graph> {
    let decode_err = |reason: String| Error::OnnxDecode { path: "<memory>".into(), reason };
    let model = ModelProto::decode(bytes).map_err(|e| decode_err(format!("protobuf decode failed: {e}")))?;
    let gp = model.graph.as_ref().ok_or_else(|| decode_err("it has no graph".into()))?;
    if gp.node.is_empty() {
        return Err(decode_err("its graph has no nodes".into()));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);

    let mut g = Graph { opset, ..Graph::default() };
    g.metadata = model.metadata_props.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let init_types: HashMap<&str, i32> = gp.initializer.iter().map(|t| (t.name.as_str(), t.data_type)).collect();

    // Phase 1: initializers.
    for t in &gp.initializer {
        let h = tensor_from_proto(t, base_dir)?;
        let id = g.add_const(t.name.clone(), h);
        ids.insert(t.name.clone(), id);
    }
    let initializers: std::collections::HashSet<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();

    // Phase 2: graph inputs (older exporters list initializers among the inputs too; skip those).
    for vi in &gp.input {
        if ids.contains_key(&vi.name) {
            continue;
        }
        let id = g.add_value(vi.name.clone());
        g.values[id].shape = declared_shape(vi);
        g.inputs.push(id);
        ids.insert(vi.name.clone(), id);
    }

    // Phase 3: nodes, folding every node whose inputs are all constant.
    for (k, np) in gp.node.iter().enumerate() {
        let name = if np.name.is_empty() { format!("{}_{k}", np.op_type) } else { np.name.clone() };
        let mut np = np.clone();
        np.name = name.clone();
        let mut inputs = Vec::with_capacity(np.input.len());
        for i in &np.input {
            if i.is_empty() {
                inputs.push(None);
            } else {
                let id = *ids.get(i).ok_or_else(|| {
                    Error::node(&name, &np.op_type, format!("input '{i}' is not produced by any earlier node, initializer or graph input"))
                })?;
                inputs.push(Some(id));
            }
        }
        // A tensor has one definition (ONNX is SSA; ONNX Runtime refuses "Duplicate definition"): a second
        // one would silently shadow the first for every later reader.
        if let Some(o) = np.output.iter().find(|o| !o.is_empty() && (ids.contains_key(o.as_str()) || initializers.contains(o.as_str()))) {
            return Err(Error::node(
                &name,
                &np.op_type,
                format!("output '{o}' is already defined by an earlier node, initializer or graph input; every tensor must have exactly one definition (rename one of them)"),
            ));
        }
        let consts: Vec<Option<&HostTensor>> = inputs.iter().map(|i| i.and_then(|i| g.constant(i))).collect();
        let present: Vec<bool> = inputs.iter().map(Option::is_some).collect();
        let input_types = np.input.iter().map(|i| init_types.get(i.as_str()).copied()).collect();
        let ctx = BuildCtx { node: &np, attrs: Attrs::new(&np), opset, consts: consts.clone(), present, input_types };
        let op = build(&ctx)?;
        super::check::attributes(&op).map_err(|e| Error::node(&name, &np.op_type, e))?;
        let all_const = inputs.iter().zip(&consts).all(|(i, c)| i.is_none() || c.is_some());
        if all_const {
            super::check::folded_size(&op, &consts).map_err(|e| Error::node(&name, &np.op_type, e))?;
            let outs = eval_on_host(&op, &consts).map_err(|e| Error::node(&name, &np.op_type, e))?;
            for (o, t) in np.output.iter().zip(outs) {
                let id = g.add_const(o.clone(), t);
                ids.insert(o.clone(), id);
            }
            continue;
        }
        for &p in param_inputs(&op, opset) {
            if let Some(slot) = inputs.get_mut(p) {
                *slot = None;
            }
        }
        let mut outputs = Vec::new();
        for o in np.output.iter().filter(|o| !o.is_empty()) {
            let id = g.add_value(o.clone());
            ids.insert(o.clone(), id);
            outputs.push(id);
        }
        g.nodes.push(Node { name, op, inputs, outputs });
    }

    // Phase 4: outputs.
    for vi in &gp.output {
        let id = *ids
            .get(&vi.name)
            .ok_or_else(|| decode_err(format!("graph output '{}' is not produced by any node", vi.name)))?;
        if g.values[id].shape.is_none() {
            g.values[id].shape = declared_shape(vi);
        }
        g.outputs.push(id);
    }

    // Phase 5: clean-up.
    passes::remove_identities(&mut g);
    passes::remove_dead_nodes(&mut g);
    crate::validate::check_graph(&g)?;
    Ok(g)
}

fn declared_shape(vi: &ValueInfoProto) -> Option<Vec<Dim>> {
    let shape = vi.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match (d.dim_value, &d.dim_param) {
                // 0 stays a fixed 0 (checked and refused by name), not "unknown".
                (Some(v), _) if v >= 0 => Dim::Fixed(v as usize),
                (_, Some(p)) => Dim::Dynamic(p.clone()),
                _ => Dim::Dynamic(String::new()),
            })
            .collect(),
    )
}

/// Converts an ONNX tensor to a host tensor: raw or typed fields, or external data under `base_dir`.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<HostTensor> {
    let bad = |reason: String| Error::OnnxDecode { path: "<memory>".into(), reason: format!("tensor '{}': {reason}", t.name) };
    if t.dims.iter().any(|&d| d < 0) {
        return Err(bad(format!("negative dimension in {:?}", t.dims)));
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let n = crate::validate::tensor_size(&shape).map_err(bad)?;
    let external;
    let raw: &[u8] = if t.data_location == DATA_LOCATION_EXTERNAL {
        external = read_external(t, base_dir).map_err(bad)?;
        &external
    } else {
        &t.raw_data
    };
    let elem = match t.data_type {
        dt::FLOAT | dt::INT32 => 4,
        dt::DOUBLE | dt::INT64 => 8,
        dt::FLOAT16 => 2,
        dt::INT8 | dt::UINT8 | dt::BOOL => 1,
        other => return Err(bad(format!("data type {other} is not supported"))),
    };
    let check_len = |got: usize| if got == n { Ok(()) } else { Err(bad(format!("holds {got} values for shape {shape:?}"))) };
    if !raw.is_empty() {
        if raw.len() != n * elem {
            return Err(bad(format!("has {} bytes of data for shape {shape:?} ({} expected)", raw.len(), n * elem)));
        }
        let t = match t.data_type {
            dt::FLOAT => HostTensor::f32(shape, raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            dt::DOUBLE => HostTensor::f32(shape, raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()),
            dt::FLOAT16 => HostTensor::f32(shape, raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()),
            dt::INT64 => HostTensor::i64(shape, raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
            dt::INT32 => HostTensor::i64(shape, raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
            dt::INT8 => HostTensor::i64(shape, raw.iter().map(|&b| b as i8 as i64).collect()),
            _ => HostTensor::i64(shape, raw.iter().map(|&b| b as i64).collect()),
        };
        return Ok(t);
    }
    match t.data_type {
        dt::FLOAT => {
            check_len(t.float_data.len())?;
            Ok(HostTensor::f32(shape, t.float_data.clone()))
        }
        dt::DOUBLE => {
            check_len(t.double_data.len())?;
            Ok(HostTensor::f32(shape, t.double_data.iter().map(|&x| x as f32).collect()))
        }
        dt::FLOAT16 => {
            check_len(t.int32_data.len())?;
            Ok(HostTensor::f32(shape, t.int32_data.iter().map(|&x| f16_to_f32(x as u16)).collect()))
        }
        dt::INT64 => {
            check_len(t.int64_data.len())?;
            Ok(HostTensor::i64(shape, t.int64_data.clone()))
        }
        _ => {
            check_len(t.int32_data.len())?;
            Ok(HostTensor::i64(shape, t.int32_data.iter().map(|&x| x as i64).collect()))
        }
    }
}

fn read_external(t: &TensorProto, base_dir: Option<&Path>) -> std::result::Result<Vec<u8>, String> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
    let location = get("location").ok_or("external data without a 'location'")?;
    let rel = Path::new(&location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("external data location '{location}' must be a relative path inside the model's folder"));
    }
    let dir = base_dir.ok_or("external data needs the model to be loaded from a file")?;
    let path = dir.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| format!("reading external data {}: {e}", path.display()))?;
    let offset: usize = get("offset").map(|s| s.parse().map_err(|_| format!("bad offset '{s}'"))).transpose()?.unwrap_or(0);
    let length: usize = match get("length") {
        Some(s) => s.parse().map_err(|_| format!("bad length '{s}'"))?,
        None => bytes.len().saturating_sub(offset),
    };
    bytes
        .get(offset..offset.saturating_add(length))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("external data {} is shorter than offset {offset} + length {length}", path.display()))
}

/// IEEE half → single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}
