//! Run-time values: float tensors of any rank on the execution device, and small integer tensors (shape
//! arithmetic) on the host.
//!
//! burn tensors carry their rank in the type (`Tensor<4>`); ONNX values do not. [`DynTensor`] closes the gap
//! with one variant per rank and the `dyn_map!`/`dyn_with!` macros, so op code is written once per op.

use burn::tensor::{Tensor, TensorData};
use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::ir::HostTensor;

/// Highest tensor rank the engine handles.
pub const MAX_RANK: usize = 6;

/// A float tensor of rank 0..=6 on a device (rank 0 is stored as rank 1 with one element and an empty
/// logical shape).
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub enum DynTensor {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R3(Tensor<3>),
    R4(Tensor<4>),
    R5(Tensor<5>),
    R6(Tensor<6>),
}

/// Applies an expression generic over the rank and re-wraps the result in the same rank.
macro_rules! dyn_map {
    ($v:expr, $t:ident => $body:expr) => {
        match $v {
            DynTensor::R1($t) => DynTensor::R1($body),
            DynTensor::R2($t) => DynTensor::R2($body),
            DynTensor::R3($t) => DynTensor::R3($body),
            DynTensor::R4($t) => DynTensor::R4($body),
            DynTensor::R5($t) => DynTensor::R5($body),
            DynTensor::R6($t) => DynTensor::R6($body),
        }
    };
}

/// Evaluates an expression generic over the rank.
macro_rules! dyn_with {
    ($v:expr, $t:ident => $body:expr) => {
        match $v {
            DynTensor::R1($t) => $body,
            DynTensor::R2($t) => $body,
            DynTensor::R3($t) => $body,
            DynTensor::R4($t) => $body,
            DynTensor::R5($t) => $body,
            DynTensor::R6($t) => $body,
        }
    };
}

/// Reshapes a burn tensor of any rank into a `DynTensor` of rank `dims.len()`.
macro_rules! reshape_to {
    ($t:expr, $dims:expr) => {{
        let d: &[usize] = $dims;
        match d.len() {
            0 | 1 => DynTensor::R1($t.reshape([d.iter().product::<usize>()])),
            2 => DynTensor::R2($t.reshape([d[0], d[1]])),
            3 => DynTensor::R3($t.reshape([d[0], d[1], d[2]])),
            4 => DynTensor::R4($t.reshape([d[0], d[1], d[2], d[3]])),
            5 => DynTensor::R5($t.reshape([d[0], d[1], d[2], d[3], d[4]])),
            _ => DynTensor::R6($t.reshape([d[0], d[1], d[2], d[3], d[4], d[5]])),
        }
    }};
}

pub(crate) use {dyn_map, dyn_with};

impl DynTensor {
    /// Uploads host floats with the given shape (empty shape = scalar).
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Self> {
        if shape.len() > MAX_RANK {
            return Err(Error::Invalid(format!("tensor of rank {} exceeds the engine's maximum rank {MAX_RANK}", shape.len())));
        }
        if shape.contains(&0) {
            return Ok(Self::empty(shape, device));
        }
        let flat = Tensor::<1>::from_data(TensorData::new(data, [shape.iter().product::<usize>()]), device);
        Ok(reshape_to!(flat, shape))
    }

    /// A tensor with no elements. burn's `reshape` reads a 0 in the target as "keep this dimension", so
    /// a shape with a 0 axis is built directly instead of reshaped to.
    fn empty(d: &[usize], device: &Device) -> Self {
        match d.len() {
            0 | 1 => DynTensor::R1(Tensor::zeros([d.iter().product::<usize>()], device)),
            2 => DynTensor::R2(Tensor::zeros([d[0], d[1]], device)),
            3 => DynTensor::R3(Tensor::zeros([d[0], d[1], d[2]], device)),
            4 => DynTensor::R4(Tensor::zeros([d[0], d[1], d[2], d[3]], device)),
            5 => DynTensor::R5(Tensor::zeros([d[0], d[1], d[2], d[3], d[4]], device)),
            _ => DynTensor::R6(Tensor::zeros([d[0], d[1], d[2], d[3], d[4], d[5]], device)),
        }
    }

    /// Dimensions (a rank-1 tensor stands for a scalar only where the op semantics say so).
    pub fn dims(&self) -> Vec<usize> {
        dyn_with!(self, t => t.dims().to_vec())
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        dyn_with!(self, t => t.dims().len())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// Same elements, new shape (of any rank ≤ 6).
    pub fn reshape(self, dims: &[usize]) -> Result<Self> {
        if dims.len() > MAX_RANK {
            return Err(Error::Invalid(format!("reshape to rank {} exceeds the engine's maximum rank {MAX_RANK}", dims.len())));
        }
        if dims.iter().product::<usize>() != self.numel() {
            return Err(Error::Invalid(format!("cannot reshape {:?} ({} elements) to {dims:?}", self.dims(), self.numel())));
        }
        if dims.contains(&0) {
            return Ok(Self::empty(dims, &self.device()));
        }
        Ok(dyn_with!(self, t => reshape_to!(t, dims)))
    }

    /// The rank-4 tensor, or an error naming what was expected.
    pub fn into_r4(self, what: &str) -> Result<Tensor<4>> {
        match self {
            DynTensor::R4(t) => Ok(t),
            other => Err(Error::Invalid(format!("{what} expects a 4-D NCHW tensor, got shape {:?}", other.dims()))),
        }
    }

    /// The rank-2 tensor, or an error naming what was expected.
    pub fn into_r2(self, what: &str) -> Result<Tensor<2>> {
        match self {
            DynTensor::R2(t) => Ok(t),
            other => Err(Error::Invalid(format!("{what} expects a 2-D tensor, got shape {:?}", other.dims()))),
        }
    }

    /// The rank-1 tensor (flattened if needed).
    pub fn into_flat(self) -> Tensor<1> {
        let n = self.numel();
        dyn_with!(self, t => t.reshape([n]))
    }

    /// Downloads to the host.
    pub fn to_host(&self) -> Result<HostTensor> {
        let dims = self.dims();
        let data = dyn_with!(self.clone(), t => t.into_data());
        let v = data.try_into_vec::<f32>().map_err(|e| Error::Invalid(format!("reading tensor back: {e:?}")))?;
        Ok(HostTensor::f32(dims, v))
    }

    /// Device the tensor lives on.
    pub fn device(&self) -> Device {
        dyn_with!(self, t => t.device())
    }
}

/// A run-time value.
#[derive(Clone, Debug)]
pub enum Value {
    /// A float tensor on the device, with its logical shape (differs from the tensor's dims only for
    /// scalars, whose logical shape is empty).
    F(DynTensor, Vec<usize>),
    /// An integer tensor on the host (shapes, indices).
    I(HostTensor),
}

impl Value {
    /// A float value whose logical shape equals its tensor's dims.
    pub fn float(t: DynTensor) -> Self {
        let d = t.dims();
        Value::F(t, d)
    }

    /// Logical shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F(_, s) => s,
            Value::I(t) => &t.shape,
        }
    }

    /// Uploads a host constant: floats go to `device`, integers stay on the host.
    pub fn from_host(t: &HostTensor, device: &Device) -> Result<Self> {
        match &t.data {
            crate::ir::HostData::F32(v) => Ok(Value::F(DynTensor::from_vec(v.clone(), &t.shape, device)?, t.shape.clone())),
            crate::ir::HostData::I64(_) => Ok(Value::I(t.clone())),
        }
    }

    /// Downloads to the host.
    pub fn to_host(&self) -> Result<HostTensor> {
        match self {
            Value::F(t, s) => {
                let mut h = t.to_host()?;
                h.shape = s.clone();
                Ok(h)
            }
            Value::I(t) => Ok(t.clone()),
        }
    }
}
