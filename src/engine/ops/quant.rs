//! QuantizeLinear/DequantizeLinear inputs and fake quantization.

use super::*;

/// `(x, scale, zero point)` of a QuantizeLinear/DequantizeLinear, as floats shaped to broadcast along `axis`
/// (per-tensor when the scale has one element).
pub(super) fn qdq_inputs(inputs: &[Option<Value>], axis: i64) -> R<(DynTensor, DynTensor, DynTensor)> {
    let device = crate::engine::device::inference();
    let as_float = |v: &Value| -> R<DynTensor> {
        match v {
            Value::F(t, _) => Ok(t.clone()),
            Value::I(h) => DynTensor::from_vec(h.to_f32_vec(), &h.shape, &device).map_err(|e| e.to_string()),
        }
    };
    let x = as_float(inputs.first().and_then(|v| v.as_ref()).ok_or_else(|| inv("missing input 0"))?)?;
    let s = inputs.get(1).and_then(|v| v.as_ref()).ok_or_else(|| inv("missing scale"))?.to_host().map_err(|e| e.to_string())?.to_f32_vec();
    let z = match inputs.get(2).and_then(|v| v.as_ref()) {
        Some(v) => v.to_host().map_err(|e| e.to_string())?.to_f32_vec(),
        None => vec![0.0; s.len()],
    };
    if z.len() != s.len() || s.is_empty() {
        return Err(inv(format!("scale ({}) and zero point ({}) sizes differ", s.len(), z.len())));
    }
    let dims = x.dims();
    let mut shape = vec![1usize; dims.len().max(1)];
    if s.len() > 1 {
        let a = norm_axis(axis, dims.len())?;
        if dims[a] != s.len() {
            return Err(inv(format!("{} scales for axis {a} of size {}", s.len(), dims[a])));
        }
        shape[a] = s.len();
    }
    let dev = x.device();
    let st = DynTensor::from_vec(s, &shape, &dev).map_err(|e| e.to_string())?;
    let zt = DynTensor::from_vec(z, &shape, &dev).map_err(|e| e.to_string())?;
    Ok((x, st, zt))
}

/// Fake quantization: `s·(clamp(round(x/s) + z, qmin, qmax) − z)`, per tensor or per channel.
pub fn fake_quant(t: DynTensor, q: &FakeQuant) -> R<DynTensor> {
    let dims = t.dims();
    let device = t.device();
    let mut shape = vec![1usize; dims.len()];
    let (scale, zp): (Vec<f32>, Vec<f32>) = match q.axis {
        None => (vec![q.scale[0]], vec![q.zero_point[0] as f32]),
        Some(a) => {
            if a >= dims.len() || dims[a] != q.scale.len() || q.zero_point.len() != q.scale.len() {
                return Err(inv(format!("per-channel parameters ({}) do not match axis {a} of {dims:?}", q.scale.len())));
            }
            shape[a] = dims[a];
            (q.scale.clone(), q.zero_point.iter().map(|&z| z as f32).collect())
        }
    };
    let s = DynTensor::from_vec(scale, &shape, &device).map_err(|e| e.to_string())?;
    let z = DynTensor::from_vec(zp, &shape, &device).map_err(|e| e.to_string())?;
    let (qmin, qmax) = (q.qmin as f32, q.qmax as f32);
    Ok(dyn_map!(t, t => {
        let s = to_rank(s.clone());
        let z = to_rank(z.clone());
        let qv = (t / s.clone()).round().add(z.clone()).clamp(qmin, qmax);
        qv.sub(z).mul(s)
    }))
}
