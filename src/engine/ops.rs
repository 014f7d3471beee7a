//! One function per operator, on run-time [`Value`]s. Shapes are checked here, before burn sees them,
//! so a bad model or input is an error naming the problem rather than a panic inside a kernel.

use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, batch_norm, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Int, Slice, Tensor, TensorData};

use super::kernels::{self, ConvAttrs};
use super::value::{dyn_map, dyn_with, DynTensor, Value};

use crate::ir::{AutoPad, FakeQuant, HostData, HostTensor, Op, PadKind, Pool};

type R<T> = std::result::Result<T, String>;

fn inv(msg: impl Into<String>) -> String {
    msg.into()
}

/// Input `i` when it is present.
fn optional(inputs: &[Option<Value>], i: usize, f: &dyn Fn(usize) -> R<DynTensor>) -> R<Option<DynTensor>> {
    match inputs.get(i).and_then(|v| v.as_ref()) {
        Some(_) => f(i).map(Some),
        None => Ok(None),
    }
}

/// Conv of `x` with `w` and optional bias `b`, checked; `fused`: a residual added to the output and the
/// clamp bounds after it (an inference plan's [`Op::FusedConv`]). A residual that broadcasts, rather than
/// one of the output's shape, is added after the Conv as its own op.
fn convolve(c: &crate::ir::Conv, x: DynTensor, w: DynTensor, b: Option<DynTensor>, fused: Option<(Option<DynTensor>, f32, f32)>) -> R<DynTensor> {
    let xt = x.into_r4("Conv").map_err(|e| e.to_string())?;
    let w = w.into_r4("Conv weight").map_err(|e| e.to_string())?;
    let [n, cin, h, wd] = xt.dims();
    let [cout, cpg, kh, kw] = w.dims();
    if c.group == 0 || cin != cpg * c.group || cout % c.group != 0 {
        return Err(inv(format!(
            "input has {cin} channels but the weight {:?} with group={} expects {}",
            [cout, cpg, kh, kw],
            c.group,
            cpg * c.group
        )));
    }
    let b = b.map(|b| b.into_flat());
    if let Some(b) = &b {
        if b.dims()[0] != cout {
            return Err(inv(format!("bias has {} values for {cout} output channels", b.dims()[0])));
        }
    }
    let pads = resolve_pads(c.auto_pad, c.pads, [h, wd], [kh, kw], c.strides, c.dilations);
    check_window([h, wd], pads, [kh, kw], c.dilations)?;
    let is_fused = fused.is_some();
    let (residual, lo, hi) = fused.unwrap_or((None, f32::NEG_INFINITY, f32::INFINITY));
    let clamps = lo > f32::NEG_INFINITY || hi < f32::INFINITY;
    let side = |i: usize, size: usize, k: usize| (size + pads[i] + pads[i + 2] - c.dilations[i] * (k - 1) - 1) / c.strides[i] + 1;
    let out = [n, cout, side(0, h, kh), side(1, wd, kw)];
    let (residual, late) = match residual {
        Some(r) if r.dims() != out => (None, Some(r)),
        r => (r.map(|r| r.into_r4("the residual").map_err(|e| e.to_string())).transpose()?, None),
    };
    let y = if super::device::own_kernels(&xt.device()) {
        let attrs = ConvAttrs { strides: c.strides, pads, dilations: c.dilations, groups: c.group };
        let b = b.unwrap_or_else(|| Tensor::zeros([cout], &xt.device()));
        if is_fused && late.is_none() {
            kernels::conv2d_fused(xt, w, b, residual, attrs, lo, hi)
        } else {
            kernels::conv2d(xt, w, b, attrs)
        }
    } else {
        let opts = ConvOptions::new_with_padding(c.strides, [(pads[0], pads[2]), (pads[1], pads[3])], c.dilations, c.group);
        let y = conv2d(xt, w, b, opts);
        let y = match residual {
            Some(r) => y.add(r),
            None => y,
        };
        if clamps && late.is_none() { y.clamp(lo, hi) } else { y }
    };
    let Some(r) = late else { return Ok(DynTensor::R4(y)) };
    let Value::F(sum, _) = binary(&Op::Add, &Value::float(DynTensor::R4(y)), &Value::float(r))? else {
        return Err(inv("the residual Add gave an integer tensor"));
    };
    Ok(if clamps { dyn_map!(sum, t => t.clamp(lo, hi)) } else { sum })
}

/// Runs `op` on `inputs`. Errors are plain strings; the executor wraps them with the node's name.
pub fn run_op(op: &Op, inputs: &[Option<Value>]) -> R<Vec<Value>> {
    let x = |i: usize| -> R<&Value> {
        inputs.get(i).and_then(|v| v.as_ref()).ok_or_else(|| inv(format!("missing input {i}")))
    };
    let f = |i: usize| -> R<DynTensor> {
        match x(i)? {
            Value::F(t, _) => Ok(t.clone()),
            Value::I(h) => Err(inv(format!("input {i} must be a float tensor, got an integer tensor of shape {:?}", h.shape))),
        }
    };
    let one = |v: DynTensor| Ok(vec![Value::float(v)]);
    match op {
        Op::Conv(c) => one(convolve(c, f(0)?, f(1)?, optional(inputs, 2, &f)?, None)?),
        Op::FusedConv { conv: c, residual, lo, hi } => {
            let r = if *residual { Some(f(3)?) } else { None };
            one(convolve(c, f(0)?, f(1)?, optional(inputs, 2, &f)?, Some((r, *lo, *hi)))?)
        }
        Op::BatchNormalization { epsilon } => {
            let xt = f(0)?;
            let ch = *xt.dims().get(1).ok_or_else(|| inv("input must have a channel axis"))?;
            let p: Vec<Tensor<1>> = (1..5).map(|i| f(i).map(|t| t.into_flat())).collect::<R<_>>()?;
            if p.iter().any(|t| t.dims()[0] != ch) {
                return Err(inv(format!("parameters must have {ch} values (one per channel)")));
            }
            let [g, b, m, v]: [Tensor<1>; 4] = p.try_into().map_err(|_| inv("BatchNormalization needs 5 inputs"))?;
            if super::device::own_kernels(&xt.device()) && xt.rank() >= 2 {
                // The parameters are graph constants: fold them into one scale and shift per channel.
                let host = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().map_err(|e| inv(format!("reading BN parameters: {e:?}")));
                let (g, b, m, v) = (host(g)?, host(b)?, host(m)?, host(v)?);
                let scale: Vec<f32> = g.iter().zip(&v).map(|(g, v)| g / (v + epsilon).sqrt()).collect();
                let shift: Vec<f32> = b.iter().zip(&m).zip(&scale).map(|((b, m), s)| b - m * s).collect();
                return one(dyn_map!(xt, t => kernels::channel_affine(t, &scale, &shift)));
            }
            let eps = *epsilon as f64;
            Ok(vec![Value::float(dyn_map!(xt, t => batch_norm(t, g.clone(), b.clone(), m.clone(), v.clone(), eps)))])
        }
        Op::Relu | Op::Clip { .. } if super::device::own_kernels(&f(0)?.device()) => {
            let (lo, hi) = match op {
                Op::Clip { min, max } => (*min, *max),
                _ => (0.0, f32::INFINITY),
            };
            one(dyn_map!(f(0)?, t => kernels::clamp(t, lo, hi)))
        }
        Op::Relu => one(dyn_map!(f(0)?, t => activation::relu(t))),
        Op::Clip { min, max } => one(dyn_map!(f(0)?, t => clip(t, *min, *max))),
        Op::HardSwish => one(dyn_map!(f(0)?, t => activation::hard_swish(t))),
        Op::HardSigmoid { alpha, beta } => {
            one(dyn_map!(f(0)?, t => activation::hard_sigmoid(t, *alpha as f64, *beta as f64)))
        }
        Op::Sigmoid => one(dyn_map!(f(0)?, t => activation::sigmoid(t))),
        Op::Add | Op::Sub | Op::Mul | Op::Div => binary(op, x(0)?, x(1)?).map(|v| vec![v]),
        Op::Concat { axis } => concat(inputs, *axis),
        Op::Split { axis, sizes, parts } => split(&f(0)?, *axis, sizes.as_deref(), (*parts).max(1)),
        Op::Slice { starts, ends, axes, steps } => slice(x(0)?, starts, ends, axes, steps).map(|v| vec![v]),
        Op::Reshape { allowzero } => {
            let target = int_values(x(1)?)?;
            let shape = reshape_target(x(0)?.shape(), &target, *allowzero)?;
            reshape_value(x(0)?, &shape).map(|v| vec![v])
        }
        Op::Flatten { axis } => {
            let s = x(0)?.shape();
            // axis is in [-r, r]: a negative one counts from the rank, not from r + 1.
            let a = if *axis < 0 { norm_axis(*axis, s.len())? } else { norm_axis(*axis, s.len() + 1)? };
            let shape = vec![s[..a].iter().product(), s[a..].iter().product()];
            reshape_value(x(0)?, &shape).map(|v| vec![v])
        }
        Op::Transpose { perm } => {
            let t = f(0)?;
            let r = t.rank();
            let p: Vec<usize> = perm.clone().unwrap_or_else(|| (0..r).rev().collect());
            let mut seen = p.clone();
            seen.sort_unstable();
            if seen != (0..r).collect::<Vec<_>>() {
                return Err(inv(format!("perm {p:?} is not a permutation of 0..{r}")));
            }
            one(dyn_map!(t, t => permute(t, &p)))
        }
        Op::Pad { pads, value, mode } => pad(f(0)?, pads, *value, *mode).map(|v| vec![Value::float(v)]),
        Op::MaxPool(p) | Op::AveragePool(p) => {
            let xt = f(0)?.into_r4(op.onnx_name()).map_err(|e| e.to_string())?;
            let [_, _, h, w] = xt.dims();
            let pads = resolve_pads(p.auto_pad, p.pads, [h, w], p.kernel, p.strides, p.dilations);
            check_window([h, w], pads, p.kernel, p.dilations)?;
            let pairs = [(pads[0], pads[2]), (pads[1], pads[3])];
            let y = if matches!(op, Op::MaxPool(_)) {
                let o = MaxPoolOptions::new(p.kernel)
                    .with_stride(p.strides)
                    .with_padding_pairs(pairs)
                    .with_dilation(p.dilations)
                    .with_ceil_mode(p.ceil_mode);
                max_pool2d(xt, o)
            } else {
                avg_pool(xt, p, pairs)
            };
            one(DynTensor::R4(y))
        }
        Op::GlobalAveragePool => {
            let t = f(0)?;
            let d = t.dims();
            if d.len() < 3 {
                return Err(inv(format!("expects N x C x spatial..., got {d:?}")));
            }
            let (n, c) = (d[0], d[1]);
            let hw: usize = d[2..].iter().product();
            let m = dyn_with!(t, t => t.reshape([n, c, hw])).mean_dim(2);
            let mut out = vec![n, c];
            out.extend(std::iter::repeat_n(1, d.len() - 2));
            one(DynTensor::R3(m).reshape(&out).map_err(|e| e.to_string())?)
        }
        Op::ReduceMean { axes, keepdims } => {
            let t = f(0)?;
            let r = t.rank();
            let axes: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&a| norm_axis(a, r)).collect::<R<_>>()?,
                None => (0..r).collect(),
            };
            let mut y = t;
            for &a in &axes {
                y = dyn_map!(y, t => t.mean_dim(a));
            }
            let d = y.dims();
            if *keepdims {
                one(y)
            } else {
                let shape: Vec<usize> = d.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &v)| v).collect();
                let v = y.reshape(&shape).map_err(|e| e.to_string())?;
                Ok(vec![Value::F(v, shape)])
            }
        }
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            let mut a = f(0)?.into_r2("Gemm A").map_err(|e| e.to_string())?;
            let mut b = f(1)?.into_r2("Gemm B").map_err(|e| e.to_string())?;
            if *trans_a {
                a = a.transpose();
            }
            if *trans_b {
                b = b.transpose();
            }
            let ([m, k], [k2, n]) = (a.dims(), b.dims());
            if k != k2 {
                return Err(inv(format!("A is {m}x{k} but B is {k2}x{n}")));
            }
            let mut y = a.matmul(b);
            if *alpha != 1.0 {
                y = y.mul_scalar(*alpha);
            }
            if let Some(c) = inputs.get(2).and_then(|v| v.as_ref()) {
                let c = if *beta != 1.0 { scale_value(c, *beta)? } else { c.clone() };
                let yv = Value::float(DynTensor::R2(y));
                return binary(&Op::Add, &yv, &c).map(|v| vec![v]);
            }
            one(DynTensor::R2(y))
        }
        Op::MatMul => matmul(f(0)?, f(1)?).map(|v| vec![Value::float(v)]),
        Op::Softmax { axis } => {
            let t = f(0)?;
            let a = norm_axis(*axis, t.rank())?;
            one(dyn_map!(t, t => activation::softmax(t, a)))
        }
        Op::Identity => Ok(vec![x(0)?.clone()]),
        Op::Shape { start, end } => {
            let s = x(0)?.shape();
            let r = s.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (a, b) = (clampi(*start), clampi(end.unwrap_or(r)));
            let dims: Vec<i64> = s[a..b.max(a)].iter().map(|&d| d as i64).collect();
            Ok(vec![Value::I(HostTensor::i64(vec![dims.len()], dims))])
        }
        Op::Gather { axis } => gather(x(0)?, x(1)?, *axis).map(|v| vec![v]),
        Op::Unsqueeze { axes } => {
            let s = x(0)?.shape();
            let r = s.len() + axes.len();
            let mut ax: Vec<usize> = axes.iter().map(|&a| norm_axis(a, r)).collect::<R<_>>()?;
            ax.sort_unstable();
            let mut out = s.to_vec();
            for a in ax {
                out.insert(a.min(out.len()), 1);
            }
            reshape_value(x(0)?, &out).map(|v| vec![v])
        }
        Op::Squeeze { axes } => {
            let s = x(0)?.shape();
            let ax: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&a| norm_axis(a, s.len())).collect::<R<_>>()?,
                None => (0..s.len()).filter(|&i| s[i] == 1).collect(),
            };
            if let Some(&a) = ax.iter().find(|&&a| s[a] != 1) {
                return Err(inv(format!("cannot squeeze axis {a} of size {}", s[a])));
            }
            let out: Vec<usize> = s.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect();
            reshape_value(x(0)?, &out).map(|v| vec![v])
        }
        Op::Cast { to_float } => {
            let v = x(0)?;
            match (v, to_float) {
                (Value::F(..), true) | (Value::I(_), false) => Ok(vec![v.clone()]),
                (Value::I(h), true) => {
                    let dev = super::device::inference();
                    Ok(vec![Value::from_host(&HostTensor::f32(h.shape.clone(), h.to_f32_vec()), &dev).map_err(|e| e.to_string())?])
                }
                (Value::F(..), false) => {
                    let h = v.to_host().map_err(|e| e.to_string())?;
                    Ok(vec![Value::I(HostTensor::i64(h.shape.clone(), h.to_i64_vec()))])
                }
            }
        }
        Op::Constant(t) => Ok(vec![Value::from_host(t, &super::device::inference()).map_err(|e| e.to_string())?]),
        Op::ConstantOfShape(fill) => {
            let shape: Vec<usize> = int_values(x(0)?)?.iter().map(|&d| d.max(0) as usize).collect();
            let n: usize = shape.iter().product();
            let t = match &fill.data {
                HostData::F32(v) => HostTensor::f32(shape, vec![v.first().copied().unwrap_or(0.0); n]),
                HostData::I64(v) => HostTensor::i64(shape, vec![v.first().copied().unwrap_or(0); n]),
            };
            Ok(vec![Value::from_host(&t, &super::device::inference()).map_err(|e| e.to_string())?])
        }
        Op::Range => {
            let scalar = |i: usize, what: &str| -> R<i64> { int_values(x(i)?)?.first().copied().ok_or_else(|| inv(format!("{what} is empty; it must hold one value"))) };
            let (s, l, d) = (scalar(0, "start")?, scalar(1, "limit")?, scalar(2, "delta")?);
            if d == 0 {
                return Err(inv("delta must not be 0"));
            }
            let n = ((l as f64 - s as f64) / d as f64).ceil().max(0.0);
            if n > crate::validate::MAX_TENSOR_ELEMENTS as f64 {
                return Err(inv(format!("Range({s}, {l}, {d}) has more than {} elements", crate::validate::MAX_TENSOR_ELEMENTS)));
            }
            let n = n as usize;
            let v: Vec<i64> = (0..n as i64).map(|i| s.wrapping_add(i.wrapping_mul(d))).collect();
            Ok(vec![Value::I(HostTensor::i64(vec![n], v))])
        }
        Op::FakeQuant(q) => one(fake_quant(f(0)?, q)?),
        Op::QuantizeLinear { axis, qmin, qmax } => {
            let (x, s, z) = qdq_inputs(inputs, *axis)?;
            let (lo, hi) = (*qmin as f32, *qmax as f32);
            one(dyn_map!(x, t => (t / to_rank(s.clone())).round().add(to_rank(z.clone())).clamp(lo, hi)))
        }
        Op::DequantizeLinear { axis } => {
            let (x, s, z) = qdq_inputs(inputs, *axis)?;
            one(dyn_map!(x, t => (t - to_rank(z.clone())).mul(to_rank(s.clone()))))
        }
    }
}

fn clip<const D: usize>(t: Tensor<D>, min: f32, max: f32) -> Tensor<D> {
    match (min.is_finite(), max.is_finite()) {
        (true, true) => t.clamp(min, max),
        (true, false) => t.clamp_min(min),
        (false, true) => t.clamp_max(max),
        (false, false) => t,
    }
}

fn permute<const D: usize>(t: Tensor<D>, p: &[usize]) -> Tensor<D> {
    let mut arr = [0usize; D];
    arr.copy_from_slice(p);
    t.permute(arr)
}

/// `(x, scale, zero point)` of a QuantizeLinear/DequantizeLinear, as floats shaped to broadcast along `axis`
/// (per-tensor when the scale has one element).
fn qdq_inputs(inputs: &[Option<Value>], axis: i64) -> R<(DynTensor, DynTensor, DynTensor)> {
    let device = super::device::inference();
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

/// Reshapes a tensor to rank `D`, adding leading 1s (ONNX broadcasting aligns shapes on the right).
/// The caller guarantees `t.rank() <= D`.
pub fn to_rank<const D: usize>(t: DynTensor) -> Tensor<D> {
    let dims = t.dims();
    let mut arr = [1usize; D];
    arr[D - dims.len()..].copy_from_slice(&dims);
    dyn_with!(t, s => s.reshape(arr))
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

/// Explicit `[top, left, bottom, right]` padding for a window op, resolving `auto_pad` from the input size.
fn resolve_pads(auto: AutoPad, pads: [usize; 4], input: [usize; 2], kernel: [usize; 2], strides: [usize; 2], dil: [usize; 2]) -> [usize; 4] {
    match auto {
        AutoPad::NotSet => pads,
        AutoPad::Valid => [0; 4],
        AutoPad::SameUpper | AutoPad::SameLower => {
            let mut p = [0usize; 4];
            for i in 0..2 {
                let out = input[i].div_ceil(strides[i].max(1));
                let eff = (kernel[i] - 1) * dil[i] + 1;
                let total = ((out - 1) * strides[i] + eff).saturating_sub(input[i]);
                let (small, big) = (total / 2, total - total / 2);
                let (begin, end) = if auto == AutoPad::SameUpper { (small, big) } else { (big, small) };
                p[i] = begin;
                p[i + 2] = end;
            }
            p
        }
    }
}

fn check_window(input: [usize; 2], pads: [usize; 4], kernel: [usize; 2], dil: [usize; 2]) -> R<()> {
    for i in 0..2 {
        let eff = (kernel[i].max(1) - 1) * dil[i] + 1;
        if input[i] + pads[i] + pads[i + 2] < eff {
            return Err(inv(format!(
                "spatial size {:?} (padded by {pads:?}) is smaller than the window {kernel:?}; check the input resolution",
                input
            )));
        }
    }
    Ok(())
}

fn avg_pool(x: Tensor<4>, p: &Pool, pairs: [(usize, usize); 2]) -> Tensor<4> {
    let o = AvgPoolOptions::new(p.kernel)
        .with_stride(p.strides)
        .with_padding_pairs(pairs)
        .with_count_include_pad(p.count_include_pad)
        .with_ceil_mode(p.ceil_mode);
    avg_pool2d(x, o)
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
fn int_values(v: &Value) -> R<Vec<i64>> {
    match v {
        Value::I(h) => Ok(h.to_i64_vec()),
        Value::F(..) => Ok(v.to_host().map_err(|e| e.to_string())?.to_i64_vec()),
    }
}

/// ONNX Reshape semantics: 0 copies the input dim (unless `allowzero`), one -1 is inferred.
fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> R<Vec<usize>> {
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

fn reshape_value(v: &Value, shape: &[usize]) -> R<Value> {
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

fn scale_value(v: &Value, k: f32) -> R<Value> {
    match v {
        Value::F(t, s) => Ok(Value::F(dyn_map!(t.clone(), t => t.mul_scalar(k)), s.clone())),
        Value::I(_) => Err(inv("expected a float tensor")),
    }
}

/// Output shape of ONNX multidirectional broadcasting.
fn broadcast_shape(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
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

fn binary(op: &Op, a: &Value, b: &Value) -> R<Value> {
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
            let dev = super::device::inference();
            let fa = Value::from_host(&HostTensor::f32(a.shape().to_vec(), a.to_host().map_err(|e| e.to_string())?.to_f32_vec()), &dev).map_err(|e| e.to_string())?;
            let fb = Value::from_host(&HostTensor::f32(b.shape().to_vec(), b.to_host().map_err(|e| e.to_string())?.to_f32_vec()), &dev).map_err(|e| e.to_string())?;
            binary(op, &fa, &fb)
        }
    }
}

fn float_binary<const D: usize>(op: &Op, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        _ => a / b,
    }
}

fn concat(inputs: &[Option<Value>], axis: i64) -> R<Vec<Value>> {
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
            Value::I(h) => DynTensor::from_vec(h.to_f32_vec(), &h.shape, &super::device::inference()).map_err(|e| e.to_string()),
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

fn split(t: &DynTensor, axis: i64, sizes: Option<&[usize]>, n_out: usize) -> R<Vec<Value>> {
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

fn slice(v: &Value, starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]) -> R<Value> {
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

fn pad(t: DynTensor, pads: &[i64], value: f32, mode: PadKind) -> R<DynTensor> {
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

fn matmul(a: DynTensor, b: DynTensor) -> R<DynTensor> {
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

fn gather(data: &Value, idx: &Value, axis: i64) -> R<Value> {
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
