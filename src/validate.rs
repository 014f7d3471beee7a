//! Checks on what a file declares, made once at load, before anything trusts it.
//!
//! Two kinds. **Sizes**: every size read from a file (input dims, tensor dims, `.npy` headers, image
//! sizes, element counts) is checked against a fixed limit before memory is allocated for it, so a
//! hostile or corrupt file gets a one-line error instead of a 24 TB allocation (an abort) or a machine
//! slowly filling its RAM. **Parameters**: weights, biases and BatchNorm statistics must be finite and
//! variances non-negative; a NaN or Inf weight otherwise runs through the whole pipeline and comes out
//! as a quantized model with nonsense logits, or as a distillation loss that blames the learning rate.

use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, HostData, Op};

/// Largest tensor (elements) zeroq creates from a size a file declares: 2^30 float32 values, 4 GiB.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 30;

/// Largest model input per sample (elements, batch axis excluded): 2^24 values, e.g. 3 × 2364 × 2364.
/// zeroq's distillation keeps every activation of a batch of such inputs, tens of times the input.
pub const MAX_SAMPLE_ELEMENTS: usize = 1 << 24;

/// Largest image zeroq decodes (pixels): 2^26, e.g. 8192 × 8192.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// Largest padding (per side) of Conv, pooling and Pad: an attribute that multiplies output sizes.
pub const MAX_PAD: i64 = 1 << 12;

/// The product of `dims` when it is at most `limit`, else `None` (also on overflow).
pub fn bounded_product(dims: impl IntoIterator<Item = usize>, limit: usize) -> Option<usize> {
    dims.into_iter().try_fold(1usize, |acc, d| acc.checked_mul(d)).filter(|&n| n <= limit)
}

/// `dims` as a tensor shape of at most [`MAX_TENSOR_ELEMENTS`] elements, or a message saying why not.
pub fn tensor_size(dims: &[usize]) -> std::result::Result<usize, String> {
    bounded_product(dims.iter().copied(), MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| format!("shape {dims:?} has more than {MAX_TENSOR_ELEMENTS} elements (zeroq's limit for one tensor, 4 GiB of float32)"))
}

/// Distillation settings, each named with its flag when it is out of range.
pub fn distill_settings(batch: usize, batches: usize, iters: usize, lr: f32) -> Result<()> {
    let bad = [("--batch", batch), ("--batches", batches), ("--iters", iters)].into_iter().find(|&(_, v)| v == 0);
    if let Some((flag, _)) = bad {
        return Err(Error::Invalid(format!("distillation: {flag} is 0; it must be at least 1")));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::Invalid(format!("distillation: --lr is {lr}; it must be a positive number (default 0.5)")));
    }
    Ok(())
}

/// A batch of `dims` (`[batches, batch, C, H, W]` or `[N, C, H, W]`) fits in [`MAX_TENSOR_ELEMENTS`].
pub fn batch_size(dims: &[usize]) -> Result<()> {
    tensor_size(dims).map(|_| ()).map_err(|e| Error::Invalid(format!("a batch of {e}: use a smaller --batch/--batches")))
}

/// Checks a loaded graph: declared input sizes, and every weight, bias and BatchNorm parameter.
pub fn check_graph(g: &Graph) -> Result<()> {
    check_inputs(g)?;
    check_parameters(g)
}

/// An image input's `[C, H, W]` as declared, refused by name when an axis is 0 (an empty tensor is valid
/// ONNX, but there is nothing to distil, calibrate or measure on it).
pub fn nonzero_chw(input: &str, chw: [usize; 3]) -> Result<[usize; 3]> {
    match chw.iter().position(|&d| d == 0) {
        Some(k) => Err(Error::Invalid(format!(
            "input '{input}' declares axis {} of [N, {}, {}, {}] as 0: a tensor with no elements; fix the model's input shape (re-export it with the real input size)",
            k + 1,
            chw[0],
            chw[1],
            chw[2]
        ))),
        None => Ok(chw),
    }
}

/// Declared input shapes: at most [`MAX_SAMPLE_ELEMENTS`] per sample.
fn check_inputs(g: &Graph) -> Result<()> {
    for &id in &g.inputs {
        let Some(shape) = &g.values[id].shape else { continue };
        let text = || shape.iter().map(Dim::to_string).collect::<Vec<_>>().join(", ");
        let fixed = shape.iter().skip(1).filter_map(|d| match d {
            Dim::Fixed(n) => Some(*n),
            Dim::Dynamic(_) => None,
        });
        if bounded_product(fixed, MAX_SAMPLE_ELEMENTS).is_none() {
            return Err(Error::Invalid(format!(
                "input '{}' declares [{}]: more than {MAX_SAMPLE_ELEMENTS} values per sample (zeroq's limit, e.g. 3 x 2364 x 2364); check the model's input shape",
                g.name(id),
                text()
            )));
        }
    }
    Ok(())
}

/// Which inputs of a node are parameters to check, with what each is called in messages.
fn parameter_roles(op: &Op) -> &'static [(usize, &'static str)] {
    match op {
        Op::Conv(_) | Op::Gemm { .. } | Op::MatMul => &[(1, "weight"), (2, "bias")],
        Op::BatchNormalization { .. } => &[(1, "scale"), (2, "bias"), (3, "running mean"), (4, "running variance")],
        _ => &[],
    }
}

/// Weights, biases and BN statistics must be finite, weights non-empty, BN variances ≥ 0.
fn check_parameters(g: &Graph) -> Result<()> {
    for n in &g.nodes {
        for &(i, role) in parameter_roles(&n.op) {
            let Some(v) = n.input(i) else { continue };
            let Some(t) = g.constant(v) else { continue };
            let HostData::F32(data) = &t.data else { continue };
            let what = || format!("tensor '{}' ({role} of {} node '{}')", g.name(v), n.op.onnx_name(), n.name);
            if role == "weight" && data.is_empty() {
                return Err(Error::Invalid(format!("{} has shape {:?}, with no elements; the model file is corrupt: re-export it", what(), t.shape)));
            }
            if let Some(k) = data.iter().position(|x| !x.is_finite()) {
                return Err(Error::Invalid(format!(
                    "{} holds {} at index {k}; the weights are corrupt (diverged training or a damaged file): re-export the model from a checkpoint with finite weights",
                    what(),
                    data[k]
                )));
            }
            if role == "running variance" {
                if let Some(k) = data.iter().position(|&x| x < 0.0) {
                    return Err(Error::Invalid(format!(
                        "{} is {} at channel {k}; a variance cannot be negative: the model file is corrupt, re-export it",
                        what(),
                        data[k]
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{HostTensor, Node};

    fn bn_graph(var: Vec<f32>, weight: f32) -> Graph {
        let mut g = Graph::default();
        let x = g.add_value("x");
        g.inputs.push(x);
        let c = |g: &mut Graph, name: &str, v: f32| g.add_const(name, HostTensor::f32(vec![2], vec![v, v]));
        let s = c(&mut g, "bn.weight", weight);
        let b = c(&mut g, "bn.bias", 0.0);
        let m = c(&mut g, "bn.mean", 0.0);
        let var = g.add_const("bn.var", HostTensor::f32(vec![2], var));
        let y = g.add_value("y");
        g.nodes.push(Node {
            name: "bn1".into(),
            op: Op::BatchNormalization { epsilon: 1e-5 },
            inputs: vec![Some(x), Some(s), Some(b), Some(m), Some(var)],
            outputs: vec![y],
        });
        g.outputs.push(y);
        g
    }

    #[test]
    fn negative_variance_and_nan_are_named() {
        assert!(check_graph(&bn_graph(vec![1.0, 2.0], 1.0)).is_ok());
        let e = check_graph(&bn_graph(vec![1.0, -0.5], 1.0)).unwrap_err().to_string();
        assert!(e.contains("'bn.var'") && e.contains("-0.5") && e.contains("channel 1") && e.contains("'bn1'"), "{e}");
        let e = check_graph(&bn_graph(vec![1.0, 1.0], f32::NAN)).unwrap_err().to_string();
        assert!(e.contains("'bn.weight'") && e.contains("NaN") && e.contains("index 0"), "{e}");
    }

    #[test]
    fn products_are_bounded_without_overflow() {
        assert_eq!(bounded_product([2, 3, 4], 24), Some(24));
        assert_eq!(bounded_product([2, 3, 4], 23), None);
        assert_eq!(bounded_product([usize::MAX, 2], usize::MAX), None);
        assert_eq!(bounded_product([usize::MAX, 0], usize::MAX), Some(0));
        assert!(tensor_size(&[1, 3, 1_000_000, 1_000_000]).is_err());
    }
}
