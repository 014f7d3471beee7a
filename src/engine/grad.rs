//! Gradient of a scalar loss with respect to the model input, through frozen weights.
//!
//! The plan must live on an autodiff device ([`super::device::autodiff`]); its weights are uploaded as
//! constants there, so burn records no gradient for them and only the input's gradient is computed.

use std::collections::HashMap;

use burn::tensor::{Tensor, TensorData};

use super::exec::Plan;
use super::value::DynTensor;
use crate::error::{Error, Result};
use crate::ir::ValueId;

/// The loss value and its gradient with respect to the input batch.
pub struct InputGradient {
    /// Loss at the given input.
    pub loss: f32,
    /// dLoss/dInput, same layout as the input (NCHW, row-major).
    pub grad: Vec<f32>,
}

/// Runs the plan on `x` (`shape` NCHW) keeping `taps`, evaluates `loss(input, output, taps)` (the input is
/// the tracked tensor, for loss terms on the input itself) and returns the loss with its input gradient.
pub fn input_gradient(
    plan: &Plan,
    x: &[f32],
    shape: [usize; 4],
    taps: &[ValueId],
    loss: impl FnOnce(&Tensor<4>, &DynTensor, &HashMap<ValueId, DynTensor>) -> Result<Tensor<1>>,
) -> Result<InputGradient> {
    let device = plan.device();
    if !device.is_autodiff() {
        return Err(Error::Invalid("input_gradient needs a plan on an autodiff device (engine::device::autodiff())".into()));
    }
    let xt = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), device).require_grad();
    let (y, tapped) = plan.forward_with_taps(xt.clone(), taps)?;
    let l = loss(&xt, &y, &tapped)?;
    let loss_value = l.clone().into_data().try_to_vec::<f32>().map_err(|e| Error::Invalid(format!("{e:?}")))?[0];
    let grads = l.backward();
    let g = xt
        .grad(&grads)
        .ok_or_else(|| Error::Invalid("the loss does not depend on the input".into()))?;
    let grad = g.into_data().try_to_vec::<f32>().map_err(|e| Error::Invalid(format!("{e:?}")))?;
    Ok(InputGradient { loss: loss_value, grad })
}
