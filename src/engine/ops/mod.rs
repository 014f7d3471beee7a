//! One function per operator, on run-time [`Value`]s; the operator families live in the submodules
//! ([`window`], [`shape`], [`arith`], [`quant`]) and [`run_op`] dispatches to them. Shapes are checked here, before burn sees them,
//! so a bad model or input is an error naming the problem rather than a panic inside a kernel.

use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, batch_norm, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Int, Slice, Tensor, TensorData};

use super::kernels::{self, ConvAttrs};
use super::value::{dyn_map, dyn_with, DynTensor, Value};

use crate::ir::{AutoPad, FakeQuant, HostData, HostTensor, Op, PadKind, Pool};

mod arith;
mod quant;
mod shape;
mod window;

use arith::*;
use quant::*;
use shape::*;
use window::*;

pub use quant::fake_quant;
pub use shape::to_rank;

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
            one(DynTensor::R4(pool(xt, p, matches!(op, Op::MaxPool(_)))?))
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
