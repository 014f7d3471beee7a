//! Per-layer sensitivity (ZeroQ §3.2): how far the network's output moves when one layer's weights,
//! and only those, are quantized to k bits.
//!
//! Ω_i(k) = mean over the images of KL(softmax(FP32 logits) ‖ softmax(logits with layer i at k bits)).
//!
//! The FP32 run is advanced layer by layer and each measurement continues from the activations just
//! before layer i (a cloned [`RunState`]), so the prefix is computed once instead of L·|bits| times.

use std::collections::HashMap;

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::engine::{DynTensor, Plan, RunState, Value};
use crate::error::{Error, Result};
use crate::eval::kl_divergence;
use crate::ir::{Graph, HostTensor, ValueId};
use crate::quant::{output_axis, quantize_weight, WeightRange};
use crate::reconstruct::{bias, cache::Batch};

/// How sensitivities are measured.
#[derive(Clone, Debug)]
pub struct SensitivityConfig {
    /// Candidate weight bit-widths (ZeroQ: 2, 4, 8).
    pub bits: Vec<u32>,
    /// Weight range used for the quantized layer (the same choice the final quantization makes).
    pub weight_range: WeightRange,
    /// Images per forward pass.
    pub batch: usize,
    /// Continue from the activations before each layer (`true`, the default) or rerun the whole
    /// network for every measurement (for the benchmark that shows what the reuse saves).
    pub reuse_prefix: bool,
    /// Measure each layer in context: every other layer's weights quantized at these bits (one entry
    /// for all layers, or one per layer) instead of FP32. ZeroQ's Ω assumes layers do not interact;
    /// measured around the operating point (e.g. all layers at 4 bits for an MP4 budget), Ω_i(k)
    /// includes how layer i's error combines with everyone else's. `None`: ZeroQ's definition.
    pub context_bits: Option<Vec<u32>>,
    /// Measure each quantized layer with its bias corrected (each output channel's mean shift on these
    /// images added back, as reconstruction's bias correction does), so Ω scores the error that is
    /// left once a mean shift is removed rather than the shift itself.
    pub bias_corrected: bool,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        Self { bits: vec![2, 4, 8], weight_range: WeightRange::MinMax, batch: 32, reuse_prefix: true, context_bits: None, bias_corrected: false }
    }
}

/// Sensitivity of one weight layer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayerSensitivity {
    /// Node name.
    pub name: String,
    /// ONNX op type (Conv, Gemm, MatMul).
    pub op_type: String,
    /// Number of weights.
    pub params: usize,
    /// Ω for each bit-width of [`Sensitivity::bits`], in the same order.
    pub omega: Vec<f64>,
}

/// The sensitivity table: what `zeroq sensitivity` writes and `zeroq pareto` reads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sensitivity {
    /// The model it was measured on (a label: file name or zoo name).
    pub model: String,
    /// Candidate bit-widths, ascending.
    pub bits: Vec<u32>,
    /// Weight range used (`MinMax`, `Symmetric`, `Mse`).
    pub weight_range: WeightRange,
    /// Images the KL is averaged over.
    pub images: usize,
    /// Weight layers in network order (the order of [`Graph::weight_layers`] after BN folding).
    pub layers: Vec<LayerSensitivity>,
    /// The bits of the other layers while each layer was measured (`None`: FP32, ZeroQ's definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_bits: Option<Vec<u32>>,
    /// Whether each layer was measured with its bias corrected ([`SensitivityConfig::bias_corrected`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bias_corrected: bool,
}

impl Sensitivity {
    /// Total number of weights.
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Ω of layer `layer` at `bits` (which must be one of [`Sensitivity::bits`]).
    pub fn omega(&self, layer: usize, bits: u32) -> Option<f64> {
        let j = self.bits.iter().position(|&b| b == bits)?;
        self.layers.get(layer)?.omega.get(j).copied()
    }

    /// Checks that the table is usable: bit-widths ascending in 1..=8, one Ω per bit-width and layer,
    /// no negative or non-finite Ω. `source` names the file for the message.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("{source}: {why}; regenerate it with `zeroq sensitivity`")));
        if self.bits.is_empty() || self.bits.windows(2).any(|w| w[0] >= w[1]) || self.bits.iter().any(|b| !(1..=8).contains(b)) {
            return bad(format!("bit-widths must be distinct, ascending, in 1..=8 (got {:?})", self.bits));
        }
        if self.layers.is_empty() {
            return bad("it lists no layers".into());
        }
        for l in &self.layers {
            if l.omega.len() != self.bits.len() {
                return bad(format!("layer '{}' has {} values for {} bit-widths", l.name, l.omega.len(), self.bits.len()));
            }
            if let Some(v) = l.omega.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return bad(format!("layer '{}' has an invalid sensitivity {v}", l.name));
            }
        }
        Ok(())
    }
}

/// Measures Ω for every weight layer of `graph` and every bit-width of `cfg`, on `data` (`[N, C, H, W]`,
/// normalised). `progress(done, total)` is called after each layer.
pub fn measure(
    graph: &Graph,
    model: &str,
    data: &[f32],
    shape: [usize; 4],
    cfg: &SensitivityConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Sensitivity> {
    let mut bits = cfg.bits.clone();
    bits.sort_unstable();
    bits.dedup();
    if bits.is_empty() || bits.iter().any(|b| !(2..=8).contains(b)) {
        return Err(Error::Invalid(format!("sensitivity bit-widths must be in 2..=8, got {:?}", cfg.bits)));
    }
    let per: usize = shape[1..].iter().product();
    if shape[0] == 0 || per == 0 || data.len() != shape[0] * per {
        return Err(Error::Invalid(format!("sensitivity needs a non-empty batch of images; got {} values for shape {shape:?}", data.len())));
    }
    let plan = Plan::for_inference(graph.clone())?;
    let g = plan.graph();
    let layers = g.weight_layers();
    if layers.is_empty() {
        return Err(Error::Invalid("the model has no quantizable layer (Conv/Gemm/MatMul with a constant weight)".into()));
    }

    // The context: every layer's weights at its context bits (empty for ZeroQ's FP32 context).
    let context = match &cfg.context_bits {
        Some(b) if b.len() == 1 || b.len() == layers.len() => (0..layers.len()).map(|i| b[if b.len() == 1 { 0 } else { i }]).collect::<Vec<u32>>(),
        Some(b) => return Err(Error::Invalid(format!("{} context bit-widths given for {} weight layers", b.len(), layers.len()))),
        None => Vec::new(),
    };
    let quantized = |li: usize, bits: u32| -> Result<Value> {
        let l = &layers[li];
        let w = &g.consts[&l.weight];
        let (deq, _) = quantize_weight(w, output_axis(&g.nodes[l.node].op, w.shape.len()), bits, cfg.weight_range);
        Value::from_host(&deq, plan.device())
    };
    let mut ctx_overrides = HashMap::new();
    for (li, &b) in context.iter().enumerate() {
        ctx_overrides.insert(layers[li].weight, quantized(li, b)?);
    }

    // One run per batch, stopped before the first layer; the FP32 logits are the reference.
    let mut states = Vec::new();
    let mut reference = Vec::new();
    for chunk in data.chunks(per * cfg.batch.max(1)) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, shape[1], shape[2], shape[3]]), plan.device());
        let state = plan.start(vec![Value::float(DynTensor::R4(x))])?;
        reference.push(logits(plan.finish(state.clone(), &HashMap::new())?)?);
        states.push(state);
    }
    let fresh: Vec<RunState> = states.clone();

    let mut out = Vec::with_capacity(layers.len());
    for (li, layer) in layers.iter().enumerate() {
        let mut omega = Vec::with_capacity(bits.len());
        // The layer's FP32 output (in context too) on the images, the reference of the bias correction:
        // the same for every bit-width, so computed at the first.
        let mut fp32_output: Option<Batch> = None;
        for &b in &bits {
            let mut overrides = ctx_overrides.clone();
            overrides.insert(layer.weight, quantized(li, b)?);
            let mut starts = Vec::with_capacity(states.len());
            for (bi, state) in states.iter_mut().enumerate() {
                starts.push(if cfg.reuse_prefix {
                    // The prefix runs in the context (layers before this one at their context bits).
                    plan.advance(state, layer.node, &ctx_overrides)?;
                    state.clone()
                } else {
                    let mut s = fresh[bi].clone();
                    plan.advance(&mut s, layer.node, &ctx_overrides)?;
                    s
                });
            }
            if cfg.bias_corrected {
                let fp = match fp32_output.take() {
                    Some(fp) => fp,
                    None => {
                        let mut fp32_layer = ctx_overrides.clone();
                        fp32_layer.remove(&layer.weight);
                        layer_output(&plan, layer.node, &starts, &fp32_layer)?
                    }
                };
                let q = layer_output(&plan, layer.node, &starts, &overrides)?;
                correct_bias(&plan, layer.node, &fp, &q, &mut overrides)?;
                fp32_output = Some(fp);
            }
            let mut kl = 0f64;
            for (bi, from) in starts.into_iter().enumerate() {
                let q = logits(plan.finish(from, &overrides)?)?;
                let (r, classes) = &reference[bi];
                kl += r.chunks_exact(*classes).zip(q.0.chunks_exact(*classes)).map(|(p, q)| kl_divergence(p, q)).sum::<f64>();
            }
            omega.push(kl / shape[0] as f64);
        }
        out.push(LayerSensitivity { name: layer.name.clone(), op_type: layer.op_type.to_string(), params: layer.params, omega });
        progress(li + 1, layers.len());
    }
    let context_bits = (!context.is_empty()).then_some(context);
    Ok(Sensitivity { model: model.to_string(), bits, weight_range: cfg.weight_range, images: shape[0], layers: out, context_bits, bias_corrected: cfg.bias_corrected })
}

/// Output of layer `node` over every batch, each run on from its state stopped just before the layer,
/// with `overrides`.
fn layer_output(plan: &Plan, node: usize, starts: &[RunState], overrides: &HashMap<ValueId, Value>) -> Result<Batch> {
    let g = plan.graph();
    let out = g.nodes[node].outputs[0];
    let (mut dims, mut data) = (Vec::new(), Vec::new());
    for s in starts {
        let mut s = s.clone();
        plan.advance(&mut s, node + 1, overrides)?;
        let v = s.value(out).ok_or_else(|| Error::Invalid(format!("{}: its output was not computed", g.nodes[node].name)))?;
        let n = dims.first().copied().unwrap_or(0);
        dims = v.shape().to_vec();
        dims[0] += n;
        data.extend(v.to_host()?.to_f32_vec());
    }
    Ok(Batch { dims, data })
}

/// Adds to `overrides` the bias of layer `node` corrected for its quantized weight: the FP32 bias plus
/// the mean of `fp − q` per output channel over all the images ([`bias::channel_shift`], as
/// reconstruction's bias correction), `fp` and `q` being the layer's FP32 and quantized outputs on the
/// same inputs. A layer without a bias input (MatMul, bias-free Conv) is left uncorrected.
fn correct_bias(plan: &Plan, node: usize, fp: &Batch, q: &Batch, overrides: &mut HashMap<ValueId, Value>) -> Result<()> {
    let g = plan.graph();
    let Some(bias_id) = g.nodes[node].input(2) else { return Ok(()) };
    let Some(bias) = g.consts.get(&bias_id) else { return Ok(()) };
    let values = bias.to_f32_vec();
    // `[n, c, …]` with one bias per channel c.
    if fp.dims.len() < 2 || fp.dims[1] != values.len() {
        return Ok(());
    }
    let corrected: Vec<f32> = values.iter().zip(bias::channel_shift(fp, q)).map(|(b, s)| b + s).collect();
    overrides.insert(bias_id, Value::from_host(&HostTensor::f32(bias.shape.clone(), corrected), plan.device())?);
    Ok(())
}

/// The first output as `[n, classes]` logits.
fn logits(outputs: Vec<Value>) -> Result<(Vec<f32>, usize)> {
    let y = outputs.into_iter().next().ok_or_else(|| Error::Invalid("the model has no output".into()))?;
    let dims = y.shape().to_vec();
    if dims.len() != 2 {
        return Err(Error::Invalid(format!("the model's output has shape {dims:?}; sensitivity needs [batch, classes] logits")));
    }
    Ok((y.to_host()?.to_f32_vec(), dims[1]))
}
