//! Elementwise arithmetic with ONNX broadcasting, MatMul, Clip.

use super::*;

pub(super) fn scale_value(v: &Value, k: f32) -> R<Value> {
    match v {
        Value::F(t, s) => Ok(Value::F(dyn_map!(t.clone(), t => t.mul_scalar(k)), s.clone())),
        Value::I(_) => Err(inv("expected a float tensor")),
    }
}

/// Output shape of ONNX multidirectional broadcasting.
pub(super) fn broadcast_shape(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(inv(format!("shapes {a:?} and {b:?} cannot be broadcast together"))),
        };
    }
    Ok(out)
}

pub(super) fn binary(op: &Op, a: &Value, b: &Value) -> R<Value> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    match (a, b) {
        (Value::F(x, _), Value::F(y, _)) => {
            let (x, y) = (x.clone(), y.clone());
            let t = if x.rank() >= y.rank() {
                dyn_map!(x, t => float_binary(op, t, to_rank(y.clone())))
            } else {
                dyn_map!(y, t => float_binary(op, to_rank(x.clone()), t))
            };
            // Scalars broadcast to scalars stay scalars logically.
            Ok(Value::F(t, shape))
        }
        (Value::I(x), Value::I(y)) => {
            let (xv, yv) = (x.to_i64_vec(), y.to_i64_vec());
            let n: usize = shape.iter().product();
            if !(xv.len() == n || xv.len() == 1) || !(yv.len() == n || yv.len() == 1) {
                return Err(inv("integer broadcasting beyond scalars is not supported"));
            }
            let v = (0..n)
                .map(|i| {
                    let (p, q) = (xv[i % xv.len()], yv[i % yv.len()]);
                    match op {
                        // Wrapping as int64 does (no panic on a file's extreme values); Div truncates
                        // toward zero as ONNX (and C) integer division does.
                        Op::Add => Ok(p.wrapping_add(q)),
                        Op::Sub => Ok(p.wrapping_sub(q)),
                        Op::Mul => Ok(p.wrapping_mul(q)),
                        _ if q == 0 => Err(inv("integer division by zero")),
                        _ => Ok(p.wrapping_div(q)),
                    }
                })
                .collect::<R<Vec<i64>>>()?;
            Ok(Value::I(HostTensor::i64(shape, v)))
        }
        _ => {
            // Mixed int/float: compute in float.
            let dev = crate::engine::device::inference();
            let fa = Value::from_host(&HostTensor::f32(a.shape().to_vec(), a.to_host().map_err(|e| e.to_string())?.to_f32_vec()), &dev).map_err(|e| e.to_string())?;
            let fb = Value::from_host(&HostTensor::f32(b.shape().to_vec(), b.to_host().map_err(|e| e.to_string())?.to_f32_vec()), &dev).map_err(|e| e.to_string())?;
            binary(op, &fa, &fb)
        }
    }
}

pub(super) fn float_binary<const D: usize>(op: &Op, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        _ => a / b,
    }
}

pub(super) fn matmul(a: DynTensor, b: DynTensor) -> R<DynTensor> {
    let (da, db) = (a.dims(), b.dims());
    if da.len() < 2 || db.len() < 2 {
        return Err(inv(format!("MatMul of {da:?} and {db:?}: 1-D operands are not supported")));
    }
    if da[da.len() - 1] != db[db.len() - 2] {
        return Err(inv(format!("MatMul of {da:?} and {db:?}: inner dimensions differ")));
    }
    broadcast_shape(&da[..da.len() - 2], &db[..db.len() - 2])?;
    Ok(if a.rank() >= b.rank() {
        dyn_map!(a, t => t.matmul(to_rank(b.clone())))
    } else {
        dyn_map!(b, t => to_rank(a.clone()).matmul(t))
    })
}

pub(super) fn clip<const D: usize>(t: Tensor<D>, min: f32, max: f32) -> Tensor<D> {
    match (min.is_finite(), max.is_finite()) {
        (true, true) => t.clamp(min, max),
        (true, false) => t.clamp_min(min),
        (false, true) => t.clamp_max(max),
        (false, false) => t,
    }
}
