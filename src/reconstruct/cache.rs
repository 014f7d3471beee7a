//! The tensors live at the current cut, for every calibration image, kept on the host: what the next unit
//! reads. Reconstruction keeps two of these side by side, one computed by the quantized network (with
//! every unit so far already learned) and one by the FP32 network.

use std::collections::HashMap;

use crate::engine::{DynTensor, NodeHook, Plan, Value};
use crate::error::{Error, Result};
use crate::ir::{Graph, ValueId};

use super::blocks::Unit;

/// Images per engine call when a unit runs over all calibration images.
const CHUNK: usize = 32;

/// One tensor over all images: its full shape (batch first) and its values.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Shape, `[N, …]`.
    pub dims: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl Batch {
    /// Values per image.
    pub fn per_image(&self) -> usize {
        self.dims[1..].iter().product()
    }

    /// The rows `idx`, as a tensor of `idx.len()` images.
    pub fn rows(&self, idx: &[usize]) -> (Vec<usize>, Vec<f32>) {
        let per = self.per_image();
        let mut data = Vec::with_capacity(per * idx.len());
        for &i in idx {
            data.extend_from_slice(&self.data[i * per..(i + 1) * per]);
        }
        let mut dims = self.dims.clone();
        dims[0] = idx.len();
        (dims, data)
    }
}

/// The live tensors at a cut, by value.
#[derive(Clone, Debug)]
pub struct Live {
    /// Number of images.
    pub n: usize,
    /// Tensors by value id.
    pub values: HashMap<ValueId, Batch>,
}

impl Live {
    /// The graph input `input` holding `data` of shape `shape`.
    pub fn input(input: ValueId, data: &[f32], shape: [usize; 4]) -> Self {
        let values = HashMap::from([(input, Batch { dims: shape.to_vec(), data: data.to_vec() })]);
        Self { n: shape[0], values }
    }

    /// The tensor of `v`, or an error naming it.
    pub fn get(&self, g: &Graph, v: ValueId) -> Result<&Batch> {
        self.values.get(&v).ok_or_else(|| Error::Invalid(format!("reconstruction: tensor '{}' is not available at this point of the network", g.name(v))))
    }

    /// Moves past `unit`: adds its outputs, drops what nothing after it reads.
    pub fn advance(&mut self, g: &Graph, unit: &Unit, outputs: Vec<Batch>) {
        for (&v, b) in unit.outputs.iter().zip(outputs) {
            self.values.insert(v, b);
        }
        let last = g.last_uses();
        self.values.retain(|v, _| last.get(v).is_some_and(|&l| l == usize::MAX || l >= unit.nodes.end));
    }
}

/// Runs `unit` on every image of `live` (in chunks), with `overrides` for constants and an optional
/// node hook, and returns its outputs over all images.
pub fn run_unit(plan: &Plan, unit: &Unit, live: &Live, overrides: &HashMap<ValueId, Value>, mut hook: Option<&mut NodeHook<'_>>) -> Result<Vec<Batch>> {
    let g = plan.graph();
    let inputs: Vec<&Batch> = unit.inputs.iter().map(|&v| live.get(g, v)).collect::<Result<_>>()?;
    let mut outs: Vec<Batch> = unit.outputs.iter().map(|_| Batch { dims: Vec::new(), data: Vec::new() }).collect();
    let all: Vec<usize> = (0..live.n).collect();
    for idx in all.chunks(CHUNK) {
        let vals = inputs
            .iter()
            .zip(&unit.inputs)
            .map(|(b, &v)| {
                let (dims, data) = b.rows(idx);
                Ok((v, Value::float(DynTensor::from_vec(data, &dims, plan.device())?)))
            })
            .collect::<Result<Vec<_>>>()?;
        let got = plan.run_nodes(vals, unit.nodes.clone(), overrides, &unit.outputs, hook.as_deref_mut())?;
        for ((o, v), &id) in outs.iter_mut().zip(got).zip(&unit.outputs) {
            let Value::F(t, _) = v else {
                return Err(Error::Invalid(format!("reconstruction: '{}' is an integer tensor; only float tensors can pass between blocks", g.name(id))));
            };
            let h = t.to_host()?;
            if h.shape.first() != Some(&idx.len()) {
                return Err(Error::Invalid(format!(
                    "reconstruction needs the batch as the first axis of every tensor between blocks; '{}' has shape {:?} for {} images",
                    g.name(id),
                    h.shape,
                    idx.len()
                )));
            }
            if o.dims.is_empty() {
                o.dims = h.shape.clone();
                o.dims[0] = live.n;
                o.data.reserve(h.len() / idx.len() * live.n);
            }
            o.data.extend(h.to_f32_vec());
        }
    }
    Ok(outs)
}

/// `Σ (a − b)² / Σ b²` over all outputs: the unit's output error relative to the FP32 output's energy.
pub fn relative_error(a: &[Batch], b: &[Batch]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        for (&p, &t) in x.data.iter().zip(&y.data) {
            num += ((p - t) as f64).powi(2);
            den += (t as f64).powi(2);
        }
    }
    if den > 0.0 {
        num / den
    } else {
        num
    }
}
