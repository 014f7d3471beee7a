//! The graph: a plain data structure of values and nodes in execution order.
//!
//! Values are numbered ([`ValueId`]); a value is a graph input, a constant (host tensor) or the output of
//! exactly one node. Nodes are kept topologically sorted, so the engine runs them front to back and a pass
//! that inserts a node only has to put it after its producer.

use std::collections::{BTreeMap, HashMap};

use super::op::Op;
use super::tensor::HostTensor;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size such as the batch `N`.
    Dynamic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(s) if s.is_empty() => write!(f, "?"),
            Dim::Dynamic(s) => write!(f, "{s}"),
        }
    }
}

/// Name and declared shape of a value.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    /// The ONNX tensor name.
    pub name: String,
    /// Declared shape, where the model declares one (graph inputs and outputs).
    pub shape: Option<Vec<Dim>>,
}

/// A node: an op applied to values.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The ONNX node name (made unique and non-empty on import, for error messages).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Inputs in ONNX order; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs in ONNX order.
    pub outputs: Vec<ValueId>,
}

impl Node {
    /// The `i`-th input if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// A weight layer: a Conv/Gemm/MatMul whose weight is a constant.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightLayer {
    /// Index of the node in [`Graph::nodes`].
    pub node: usize,
    /// Node name.
    pub name: String,
    /// ONNX op type.
    pub op_type: &'static str,
    /// The constant weight value.
    pub weight: ValueId,
    /// Shape of the weight.
    pub weight_shape: Vec<usize>,
    /// Number of weights (bias excluded: ZeroQ sizes count weights only).
    pub params: usize,
}

impl WeightLayer {
    /// Weight storage at `bits` per weight, in bytes.
    pub fn size_bytes(&self, bits: u32) -> f64 {
        self.params as f64 * bits as f64 / 8.0
    }
}

/// A BatchNormalization node with the value feeding it: the tensor whose statistics ZeroQ matches.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormSite {
    /// Index of the BN node in [`Graph::nodes`].
    pub node: usize,
    /// Node name.
    pub name: String,
    /// The BN's input value.
    pub input: ValueId,
    /// Running mean per channel.
    pub mean: Vec<f32>,
    /// Running variance per channel.
    pub var: Vec<f32>,
    /// The BN's epsilon (from the model; ZeroQ's loss uses its own).
    pub epsilon: f32,
}

/// A model graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every value.
    pub values: Vec<ValueInfo>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Graph inputs (constants excluded).
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
    /// Constant values (initializers and folded results).
    pub consts: BTreeMap<ValueId, HostTensor>,
    /// Default-domain opset version of the source model.
    pub opset: i64,
    /// Model metadata (ONNX `metadata_props`), kept through passes and written back on export; zeroq
    /// records the model's preprocessing there (`zeroq.preprocess`).
    pub metadata: BTreeMap<String, String>,
}

impl Graph {
    /// Adds a value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>) -> ValueId {
        self.values.push(ValueInfo { name: name.into(), shape: None });
        self.values.len() - 1
    }

    /// Adds a constant value.
    pub fn add_const(&mut self, name: impl Into<String>, t: HostTensor) -> ValueId {
        let id = self.add_value(name);
        self.consts.insert(id, t);
        id
    }

    /// The name of a value.
    pub fn name(&self, v: ValueId) -> &str {
        &self.values[v].name
    }

    /// The constant behind a value, if it is one.
    pub fn constant(&self, v: ValueId) -> Option<&HostTensor> {
        self.consts.get(&v)
    }

    /// Index of the node producing `v`, if any.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.outputs.contains(&v))
    }

    /// Indices of the nodes reading `v`.
    pub fn consumers(&self, v: ValueId) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.contains(&Some(v)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Count of nodes per op type, sorted by name.
    pub fn op_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for n in &self.nodes {
            *m.entry(n.op.onnx_name()).or_insert(0) += 1;
        }
        m
    }

    /// Every BatchNormalization node with its input and running statistics.
    pub fn batch_norm_sites(&self) -> Vec<BatchNormSite> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let Op::BatchNormalization { epsilon } = n.op else { return None };
                let mean = self.constant(n.input(3)?)?.to_f32_vec();
                let var = self.constant(n.input(4)?)?.to_f32_vec();
                Some(BatchNormSite { node: i, name: n.name.clone(), input: n.input(0)?, mean, var, epsilon })
            })
            .collect()
    }

    /// Every Conv/Gemm/MatMul whose weight (input 1) is a constant, in execution order.
    pub fn weight_layers(&self) -> Vec<WeightLayer> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op.is_weight_layer())
            .filter_map(|(i, n)| {
                let w = n.input(1)?;
                let t = self.constant(w)?;
                if !t.is_float() {
                    return None;
                }
                Some(WeightLayer {
                    node: i,
                    name: n.name.clone(),
                    op_type: n.op.onnx_name(),
                    weight: w,
                    weight_shape: t.shape.clone(),
                    params: t.len(),
                })
            })
            .collect()
    }

    /// Inserts `op` on value `v`: every consumer of `v` (and the graph outputs) now reads the new node's
    /// output instead. Returns the new value. This is how quantizers are placed on tensors.
    pub fn insert_after(&mut self, v: ValueId, op: Op, name: impl Into<String>) -> ValueId {
        let all = self.consumers(v);
        let out = self.insert_on_edges(v, &all, op, name);
        for o in self.outputs.iter_mut() {
            if *o == v {
                *o = out;
            }
        }
        out
    }

    /// Inserts `op` on value `v` for the consumers `only` (node indices) alone: they read the new node's
    /// output, every other reader keeps reading `v`. Returns the new value. Deployable quantization uses
    /// this to quantize the input edge of a Conv without touching a residual branch that reads the same tensor.
    pub fn insert_on_edges(&mut self, v: ValueId, only: &[usize], op: Op, name: impl Into<String>) -> ValueId {
        let name = name.into();
        let out = self.add_value(format!("{name}_out"));
        for &i in only {
            for inp in self.nodes[i].inputs.iter_mut() {
                if *inp == Some(v) {
                    *inp = Some(out);
                }
            }
        }
        let node = Node { name, op, inputs: vec![Some(v)], outputs: vec![out] };
        let at = self.producer(v).map_or(0, |p| p + 1);
        self.nodes.insert(at, node);
        out
    }

    /// Replaces every use of `old` by `new` (node inputs and graph outputs).
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in &mut self.nodes {
            for i in n.inputs.iter_mut() {
                if *i == Some(old) {
                    *i = Some(new);
                }
            }
        }
        for o in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Last node index reading each value (`usize::MAX` for graph outputs, which live to the end), so the
    /// engine can free intermediate tensors as soon as they are dead.
    pub fn last_uses(&self) -> HashMap<ValueId, usize> {
        let mut m = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                m.insert(*v, i);
            }
        }
        for o in &self.outputs {
            m.insert(*o, usize::MAX);
        }
        m
    }
}
