//! Building a graph from a state_dict: each layer takes its tensors by key, checking the shape the
//! architecture expects, and the unused keys left at the end are reported, so a checkpoint of another
//! architecture fails naming the first tensor that does not fit.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::ir::{AutoPad, Conv, Dim, Graph, Node, Op, ValueId};
use crate::torch::StateDict;

/// A graph under construction over a state_dict.
pub(crate) struct Builder<'a> {
    pub g: Graph,
    sd: &'a StateDict,
    arch: &'static str,
    used: HashSet<String>,
}

/// Convolution geometry.
pub(crate) struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// PyTorch-style symmetric padding `k / 2`.
    pub fn same(cin: usize, cout: usize, kernel: usize, stride: usize, groups: usize) -> Self {
        let p = (kernel - 1) / 2;
        Self { cin, cout, kernel, stride, pads: [p; 4], groups, bias: false }
    }

    /// TensorFlow `SAME` padding for an input of side `h` (extra pixel at the bottom/right), as the
    /// EfficientNet ports compute it statically.
    pub fn tf_same(cin: usize, cout: usize, kernel: usize, stride: usize, groups: usize, h: usize) -> Self {
        let out = h.div_ceil(stride);
        let total = ((out - 1) * stride + kernel).saturating_sub(h);
        let (a, b) = (total / 2, total - total / 2);
        Self { cin, cout, kernel, stride, pads: [a, a, b, b], groups, bias: false }
    }

    /// Output side for an input of side `h`.
    pub fn out_side(&self, h: usize) -> usize {
        (h + self.pads[0] + self.pads[2] - self.kernel) / self.stride + 1
    }
}

impl<'a> Builder<'a> {
    /// A graph with one input `input` of shape `[N, 3, side, side]`.
    pub fn new(sd: &'a StateDict, arch: &'static str, side: usize) -> (Self, ValueId) {
        let mut g = Graph { opset: crate::export::EXPORT_OPSET, ..Graph::default() };
        let x = g.add_value("input");
        g.values[x].shape = Some(vec![Dim::Dynamic("N".into()), Dim::Fixed(3), Dim::Fixed(side), Dim::Fixed(side)]);
        g.inputs.push(x);
        (Self { g, sd, arch, used: HashSet::new() }, x)
    }

    fn err(&self, reason: String) -> Error {
        Error::Checkpoint { path: self.sd.path.clone(), reason }
    }

    /// The float tensor `key`, which must have shape `shape`, as a graph constant.
    pub fn weight(&mut self, key: &str, shape: &[usize]) -> Result<ValueId> {
        let t =
            self.sd.get(key).ok_or_else(|| self.err(format!("no tensor '{key}' (shape {shape:?}), which {} needs: is this a {} state_dict?", self.arch, self.arch)))?;
        if t.shape != shape {
            return Err(
                self.err(format!("tensor '{key}' has shape {:?}, but {} expects {shape:?}: the checkpoint is of another architecture or variant", t.shape, self.arch))
            );
        }
        if !t.is_float() {
            return Err(self.err(format!("tensor '{key}' is an integer tensor; {} needs floats there", self.arch)));
        }
        self.used.insert(key.to_string());
        Ok(self.g.add_const(key, t.clone()))
    }

    /// The shape of tensor `key` (marks nothing as used).
    pub fn shape_of(&self, key: &str) -> Result<Vec<usize>> {
        self.sd.get(key).map(|t| t.shape.clone()).ok_or_else(|| self.err(format!("no tensor '{key}', which {} needs: is this a {} state_dict?", self.arch, self.arch)))
    }

    fn node(&mut self, name: &str, op: Op, inputs: Vec<Option<ValueId>>) -> ValueId {
        let out = self.g.add_value(format!("{name}_out"));
        self.g.nodes.push(Node { name: name.to_string(), op, inputs, outputs: vec![out] });
        out
    }

    /// `Conv` with weight `{prefix}.weight` (and `{prefix}.bias` when `spec.bias`).
    pub fn conv(&mut self, x: ValueId, prefix: &str, spec: &ConvSpec) -> Result<ValueId> {
        let w = self.weight(&format!("{prefix}.weight"), &[spec.cout, spec.cin / spec.groups, spec.kernel, spec.kernel])?;
        let b = if spec.bias { Some(self.weight(&format!("{prefix}.bias"), &[spec.cout])?) } else { None };
        let op =
            Op::Conv(Conv { kernel: [spec.kernel; 2], strides: [spec.stride; 2], pads: spec.pads, dilations: [1, 1], group: spec.groups, auto_pad: AutoPad::NotSet });
        Ok(self.node(prefix, op, vec![Some(x), Some(w), b]))
    }

    /// Inference `BatchNormalization` from `{prefix}.weight/bias/running_mean/running_var`.
    pub fn bn(&mut self, x: ValueId, prefix: &str, c: usize, epsilon: f32) -> Result<ValueId> {
        let mut ins = vec![Some(x)];
        for p in ["weight", "bias", "running_mean", "running_var"] {
            ins.push(Some(self.weight(&format!("{prefix}.{p}"), &[c])?));
        }
        self.used.insert(format!("{prefix}.num_batches_tracked"));
        Ok(self.node(prefix, Op::BatchNormalization { epsilon }, ins))
    }

    /// `Relu`.
    pub fn relu(&mut self, x: ValueId, name: &str) -> ValueId {
        self.node(name, Op::Relu, vec![Some(x)])
    }

    /// ReLU6 as `Clip(0, 6)`.
    pub fn relu6(&mut self, x: ValueId, name: &str) -> ValueId {
        self.node(name, Op::Clip { min: 0.0, max: 6.0 }, vec![Some(x)])
    }

    /// `Add`.
    pub fn add(&mut self, a: ValueId, b: ValueId, name: &str) -> ValueId {
        self.node(name, Op::Add, vec![Some(a), Some(b)])
    }

    /// `MaxPool` with a square window, stride and symmetric padding.
    pub fn max_pool(&mut self, x: ValueId, name: &str, kernel: usize, stride: usize, pad: usize) -> ValueId {
        let p = crate::ir::Pool {
            kernel: [kernel; 2],
            strides: [stride; 2],
            pads: [pad; 4],
            dilations: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
            auto_pad: AutoPad::NotSet,
        };
        self.node(name, Op::MaxPool(p), vec![Some(x)])
    }

    /// Global average pool, flatten and the linear classifier `{prefix}.weight/bias`; the number of classes
    /// comes from the checkpoint. Returns the logits.
    pub fn classifier(&mut self, x: ValueId, prefix: &str, features: usize) -> Result<ValueId> {
        let shape = self.shape_of(&format!("{prefix}.weight"))?;
        let classes = match shape.as_slice() {
            [c, f] if *f == features => *c,
            _ => {
                return Err(self.err(format!(
                    "tensor '{prefix}.weight' has shape {shape:?}, but {} expects [classes, {features}]: the checkpoint is of another architecture or variant",
                    self.arch
                )))
            }
        };
        let w = self.weight(&format!("{prefix}.weight"), &[classes, features])?;
        let b = self.weight(&format!("{prefix}.bias"), &[classes])?;
        let p = self.node("avgpool", Op::GlobalAveragePool, vec![Some(x)]);
        let f = self.node("flatten", Op::Flatten { axis: 1 }, vec![Some(p)]);
        let logits = self.node(prefix, Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true }, vec![Some(f), Some(w), Some(b)]);
        self.g.values[logits].name = "logits".into();
        self.g.values[logits].shape = Some(vec![Dim::Dynamic("N".into()), Dim::Fixed(classes)]);
        Ok(logits)
    }

    /// The graph with output `out`; an error if the checkpoint holds float tensors the architecture did not use.
    pub fn finish(mut self, out: ValueId) -> Result<Graph> {
        if let Some((k, t)) = self.sd.entries.iter().find(|(k, t)| !self.used.contains(k) && (t.is_float() || !k.ends_with("num_batches_tracked"))) {
            return Err(self.err(format!("tensor '{k}' (shape {:?}) is not part of {}: the checkpoint is of another architecture or variant", t.shape, self.arch)));
        }
        self.g.outputs.push(out);
        Ok(self.g)
    }
}
