//! Shape operators: rank changes, axes, Reshape, Concat, Split, Slice, Pad, Gather, Transpose.

use super::*;

/// Reshapes a tensor to rank `D`, adding leading 1s (ONNX broadcasting aligns shapes on the right).
/// The caller guarantees `t.rank() <= D`.
pub fn to_rank<const D: usize>(t: DynTensor) -> Tensor<D> {
    let dims = t.dims();
    let mut arr = [1usize; D];
    arr[D - dims.len()..].copy_from_slice(&dims);
    dyn_with!(t, s => s.reshape(arr))
}

/// Axis in `0..rank` from an ONNX axis that may be negative.
pub fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(inv(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// The integer values of a shape-like input (int tensor, or a float constant holding integers).
pub(super) fn int_values(v: &Value) -> R<Vec<i64>> {
    match v {
        Value::I(h) => Ok(h.to_i64_vec()),
        Value::F(..) => Ok(v.to_host().map_err(|e| e.to_string())?.to_i64_vec()),
    }
}

/// ONNX Reshape semantics: 0 copies the input dim (unless `allowzero`), one -1 is inferred.
pub(super) fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> R<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| inv(format!("shape {target:?}: 0 at {i} has no input dim to copy")))?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(inv(format!("invalid target shape {target:?}"))),
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || total % known != 0 {
            return Err(inv(format!("cannot reshape {input:?} to {target:?}")));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(inv(format!("cannot reshape {input:?} ({total} elements) to {target:?}")));
    }
    Ok(out)
}

pub(super) fn reshape_value(v: &Value, shape: &[usize]) -> R<Value> {
    match v {
        Value::F(t, _) => Ok(Value::F(t.clone().reshape(shape).map_err(|e| e.to_string())?, shape.to_vec())),
        Value::I(h) => {
            if h.len() != shape.iter().product::<usize>() {
                return Err(inv(format!("cannot reshape {:?} to {shape:?}", h.shape)));
            }
            Ok(Value::I(HostTensor { shape: shape.to_vec(), data: h.data.clone() }))
        }
    }
}

pub(super) fn concat(inputs: &[Option<Value>], axis: i64) -> R<Vec<Value>> {
    let vals: Vec<&Value> = inputs.iter().flatten().collect();
    let first = vals.first().ok_or_else(|| inv("needs at least one input"))?;
    let r = first.shape().len();
    let a = norm_axis(axis, r.max(1))?;
    for v in &vals {
        let s = v.shape();
        if s.len() != r || s.iter().enumerate().any(|(i, &d)| i != a && d != first.shape()[i]) {
            return Err(inv(format!("inputs {:?} and {:?} differ outside axis {a}", first.shape(), s)));
        }
    }
    if vals.iter().all(|v| matches!(v, Value::I(_))) {
        if r != 1 {
            return Err(inv("integer Concat is supported for 1-D tensors only"));
        }
        let v: Vec<i64> = vals.iter().map(|v| int_values(v)).collect::<R<Vec<_>>>()?.concat();
        return Ok(vec![Value::I(HostTensor::i64(vec![v.len()], v))]);
    }
    let ts: Vec<DynTensor> = vals
        .iter()
        .map(|v| match v {
            Value::F(t, _) => Ok(t.clone()),
            Value::I(h) => DynTensor::from_vec(h.to_f32_vec(), &h.shape, &crate::engine::device::inference()).map_err(|e| e.to_string()),
        })
        .collect::<R<_>>()?;
    macro_rules! cat {
        ($($var:ident),*) => {
            match &ts[0] {
                $(DynTensor::$var(_) => DynTensor::$var(Tensor::cat(
                    ts.iter().map(|t| match t { DynTensor::$var(x) => x.clone(), _ => unreachable!("ranks checked above") }).collect(),
                    a,
                )),)*
            }
        };
    }
    Ok(vec![Value::float(cat!(R1, R2, R3, R4, R5, R6))])
}

pub(super) fn split(t: &DynTensor, axis: i64, sizes: Option<&[usize]>, n_out: usize) -> R<Vec<Value>> {
    let d = t.dims();
    let a = norm_axis(axis, d.len())?;
    let sizes: Vec<usize> = match sizes {
        Some(s) => s.to_vec(),
        None => {
            let per = d[a].div_ceil(n_out);
            (0..n_out).map(|i| per.min(d[a].saturating_sub(i * per))).collect()
        }
    };
    if sizes.iter().sum::<usize>() != d[a] {
        return Err(inv(format!("split sizes {sizes:?} do not add up to {} along axis {a}", d[a])));
    }
    let mut start = 0;
    let mut out = Vec::new();
    for s in sizes {
        out.push(Value::float(dyn_map!(t.clone(), t => t.narrow(a, start, s))));
        start += s;
    }
    Ok(out)
}

pub(super) fn slice(v: &Value, starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]) -> R<Value> {
    let shape = v.shape().to_vec();
    let r = shape.len();
    let mut ranges: Vec<(usize, usize, usize)> = shape.iter().map(|&d| (0, d, 1)).collect();
    for i in 0..starts.len() {
        let a = match axes.get(i) {
            Some(&a) => norm_axis(a, r)?,
            None => i,
        };
        let step = steps.get(i).copied().unwrap_or(1);
        if step <= 0 {
            return Err(inv(format!("step {step} is not supported (only positive steps)")));
        }
        let dim = shape[a] as i64;
        let clampi = |x: i64| (if x < 0 { x + dim } else { x }).clamp(0, dim) as usize;
        let (s, e) = (clampi(starts[i]), clampi(*ends.get(i).ok_or_else(|| inv("ends shorter than starts"))?));
        ranges[a] = (s, e.max(s), step as usize);
    }
    let out_shape: Vec<usize> = ranges.iter().map(|&(s, e, st)| (e - s).div_ceil(st)).collect();
    match v {
        Value::F(t, _) => {
            let sl: Vec<Slice> = ranges.iter().map(|&(s, e, st)| Slice::new(s as isize, Some(e as isize), st as isize)).collect();
            Ok(Value::F(dyn_map!(t.clone(), t => t.slice(sl.as_slice())), out_shape))
        }
        Value::I(h) => {
            if r != 1 {
                return Err(inv("integer Slice is supported for 1-D tensors only"));
            }
            let vals = h.to_i64_vec();
            let (s, e, st) = ranges[0];
            let o: Vec<i64> = (s..e).step_by(st).map(|i| vals[i]).collect();
            Ok(Value::I(HostTensor::i64(vec![o.len()], o)))
        }
    }
}

pub(super) fn pad(t: DynTensor, pads: &[i64], value: f32, mode: PadKind) -> R<DynTensor> {
    let r = t.rank();
    if pads.len() != 2 * r || pads.iter().any(|&p| p < 0) {
        return Err(inv(format!("pads {pads:?} must be {} non-negative values for rank {r}", 2 * r)));
    }
    let pairs: Vec<(usize, usize)> = (0..r).map(|i| (pads[i] as usize, pads[i + r] as usize)).collect();
    let m = match mode {
        PadKind::Constant => PadMode::Constant(value),
        PadKind::Reflect => PadMode::Reflect,
        PadKind::Edge => PadMode::Edge,
    };
    Ok(dyn_map!(t, t => t.pad(pairs.clone(), m)))
}

pub(super) fn gather(data: &Value, idx: &Value, axis: i64) -> R<Value> {
    let ds = data.shape().to_vec();
    let a = norm_axis(axis, ds.len())?;
    let idx_shape = idx.shape().to_vec();
    let raw = int_values(idx)?;
    let n = ds[a] as i64;
    let ind: Vec<i64> = raw
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n { Err(inv(format!("index {i} out of range for axis {a} of size {n}"))) } else { Ok(j) }
        })
        .collect::<R<_>>()?;
    if idx_shape.len() > 1 {
        return Err(inv("Gather with indices of rank > 1 is not supported"));
    }
    let mut out_shape = ds[..a].to_vec();
    out_shape.extend(&idx_shape);
    out_shape.extend(&ds[a + 1..]);
    match data {
        Value::I(h) => {
            let v = h.to_i64_vec();
            let outer: usize = ds[..a].iter().product();
            let inner: usize = ds[a + 1..].iter().product();
            let mut o = Vec::with_capacity(outer * ind.len() * inner);
            for p in 0..outer {
                for &j in &ind {
                    let base = (p * ds[a] + j as usize) * inner;
                    o.extend_from_slice(&v[base..base + inner]);
                }
            }
            Ok(Value::I(HostTensor::i64(out_shape, o)))
        }
        Value::F(t, _) => {
            let device = t.device();
            let it = Tensor::<1, Int>::from_data(TensorData::new(ind.clone(), [ind.len()]), &device);
            let sel = dyn_map!(t.clone(), t => t.select(a, it.clone()));
            Ok(Value::F(sel.reshape(&out_shape).map_err(|e| e.to_string())?, out_shape))
        }
    }
}

pub(super) fn permute<const D: usize>(t: Tensor<D>, p: &[usize]) -> Tensor<D> {
    let mut arr = [0usize; D];
    arr.copy_from_slice(p);
    t.permute(arr)
}
