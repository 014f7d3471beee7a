//! Import-time checks on a node's parameters, before the op is constant-folded or run: the sizes that an
//! attribute or a constant input multiplies (padding, `ConstantOfShape`'s shape, `Range`'s count), and the
//! values that would divide by zero (strides, dilations).

use crate::ir::{HostTensor, Op, Pool};
use crate::validate::{bounded_product, MAX_PAD, MAX_TENSOR_ELEMENTS};

type R = std::result::Result<(), String>;

/// Strides and dilations ≥ 1, padding ≤ [`MAX_PAD`] per side.
pub fn attributes(op: &Op) -> R {
    let window = |strides: [usize; 2], dil: [usize; 2], pads: [usize; 4]| -> R {
        if strides.contains(&0) || dil.contains(&0) {
            return Err(format!("strides {strides:?} and dilations {dil:?} must be at least 1"));
        }
        pads_at_most(pads.iter().map(|&p| p as i64))
    };
    match op {
        Op::Conv(c) => window(c.strides, c.dilations, c.pads),
        Op::MaxPool(Pool { strides, dilations, pads, .. }) | Op::AveragePool(Pool { strides, dilations, pads, .. }) => {
            window(*strides, *dilations, *pads)
        }
        Op::Pad { pads, .. } => pads_at_most(pads.iter().copied()),
        _ => Ok(()),
    }
}

fn pads_at_most(pads: impl Iterator<Item = i64>) -> R {
    let v: Vec<i64> = pads.collect();
    if v.iter().any(|p| p.unsigned_abs() > MAX_PAD as u64) {
        return Err(format!("pads {v:?}: more than {MAX_PAD} per side (zeroq's limit; a real network pads by a few pixels)"));
    }
    Ok(())
}

/// The output of folding `op` on constant `inputs` stays within [`MAX_TENSOR_ELEMENTS`], for the ops whose
/// output size comes from input *values* rather than input sizes.
pub fn folded_size(op: &Op, inputs: &[Option<&HostTensor>]) -> R {
    let ints = |i: usize| inputs.get(i).copied().flatten().map(HostTensor::to_i64_vec);
    let too_big = |what: String| Err(format!("{what} has more than {MAX_TENSOR_ELEMENTS} elements (zeroq's limit for one tensor)"));
    match op {
        Op::ConstantOfShape(_) => {
            let shape = ints(0).unwrap_or_default();
            if shape.iter().any(|&d| d < 0) {
                return Err(format!("shape {shape:?} has a negative dimension"));
            }
            if bounded_product(shape.iter().map(|&d| d as usize), MAX_TENSOR_ELEMENTS).is_none() {
                return too_big(format!("shape {shape:?}"));
            }
            Ok(())
        }
        Op::Range => {
            let first = |i: usize| ints(i).and_then(|v| v.first().copied());
            let (Some(s), Some(l), Some(d)) = (first(0), first(1), first(2)) else { return Ok(()) };
            if d == 0 {
                return Err("delta must not be 0".into());
            }
            let n = ((l as f64 - s as f64) / d as f64).ceil();
            if n > MAX_TENSOR_ELEMENTS as f64 {
                return too_big(format!("Range({s}, {l}, {d})"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
