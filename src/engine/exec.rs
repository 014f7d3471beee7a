//! Executing a graph: a [`Plan`] binds a [`Graph`] to a device (constants uploaded once) and runs it on
//! input batches, optionally keeping intermediate tensors ("taps") such as every BatchNorm input.

use std::collections::HashMap;

use burn::tensor::Tensor;
use burn::tensor::Device;

use super::ops::run_op;
use super::value::{DynTensor, Value};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, HostTensor, Node, Op, ValueId};

/// A graph ready to run on one device.
pub struct Plan {
    graph: Graph,
    device: Device,
    consts: HashMap<ValueId, Value>,
    last_use: HashMap<ValueId, usize>,
}

/// A run stopped between two nodes: the next node and every value still alive. Cloning it is cheap
/// (tensors are shared), so several continuations can start from one prefix.
#[derive(Clone)]
pub struct RunState {
    next: usize,
    env: Vec<Option<Value>>,
}

impl RunState {
    /// A value computed so far and still alive (dead values are freed as the run advances).
    pub fn value(&self, id: ValueId) -> Option<&Value> {
        self.env.get(id).and_then(Option::as_ref)
    }
}

/// A caller's replacement for some nodes: given the node's index and its inputs, `Some(outputs)` takes the
/// node over, `None` lets the engine run it. Reconstruction swaps each FakeQuant for a learnable one this way.
pub type NodeHook<'a> = dyn FnMut(usize, &Node, &[Option<Value>]) -> Option<Result<Vec<Value>>> + 'a;

/// Which intermediate values [`Plan::execute`] keeps.
enum Keep<'a> {
    None,
    Taps(&'a [ValueId], &'a mut HashMap<ValueId, Value>),
}

/// What a run returns.
pub struct RunOutput {
    /// The graph outputs, in order.
    pub outputs: Vec<Value>,
    /// The requested intermediate values, by id.
    pub taps: HashMap<ValueId, Value>,
}

impl Plan {
    /// Uploads the graph's constants to `device`.
    pub fn new(graph: Graph, device: &Device) -> Result<Self> {
        let consts = graph
            .consts
            .iter()
            .map(|(&id, t)| Ok((id, Value::from_host(t, device)?)))
            .collect::<Result<_>>()?;
        let last_use = graph.last_uses();
        Ok(Self { graph, device: device.clone(), consts, last_use })
    }

    /// A plan for inference on the CPU: BatchNorm folded into the preceding Conv (one op instead of two;
    /// numerically equal to float rounding), on [`super::device::inference`].
    pub fn for_inference(mut graph: Graph) -> Result<Self> {
        crate::ir::passes::fold_batch_norm(&mut graph);
        Self::new(graph, &super::device::inference())
    }

    /// [`Plan::for_inference`] with each Conv's following residual Add and Relu/Clip fused into it
    /// ([`crate::ir::passes::fuse_conv_epilogues`]): the fastest plan for running whole graphs (`eval`,
    /// predictions). Its nodes and intermediate values differ from the graph given, so partial runs
    /// and taps belong on [`Plan::for_inference`].
    pub fn for_eval(mut graph: Graph) -> Result<Self> {
        crate::ir::passes::fold_batch_norm(&mut graph);
        if std::env::var_os("ZEROQ_NO_FUSION").is_none() {
            crate::ir::passes::fuse_conv_epilogues(&mut graph);
        }
        Self::new(graph, &super::device::inference())
    }

    /// The graph this plan runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the graph on `inputs` (one per graph input) and keeps the values listed in `taps`.
    pub fn run(&self, inputs: Vec<Value>, taps: &[ValueId]) -> Result<RunOutput> {
        let mut env = self.bind_inputs(inputs)?;
        let mut kept = HashMap::new();
        for &t in taps {
            if let Some(v) = env[t].as_ref().or_else(|| self.consts.get(&t)) {
                kept.insert(t, v.clone());
            }
        }
        self.execute(&mut env, 0..self.graph.nodes.len(), &HashMap::new(), Keep::Taps(taps, &mut kept), None)?;
        let outputs = self.take_outputs(&mut env)?;
        Ok(RunOutput { outputs, taps: kept })
    }

    /// Binds `inputs` and stops before the first node: a [`RunState`] that [`Plan::advance`] moves forward
    /// and [`Plan::finish`] completes.
    pub fn start(&self, inputs: Vec<Value>) -> Result<RunState> {
        Ok(RunState { next: 0, env: self.bind_inputs(inputs)? })
    }

    /// Runs nodes up to (not including) `until` with some constants replaced (`overrides`), freeing
    /// values that are dead from there on.
    pub fn advance(&self, state: &mut RunState, until: usize, overrides: &HashMap<ValueId, Value>) -> Result<()> {
        let until = until.min(self.graph.nodes.len());
        if until > state.next {
            self.execute(&mut state.env, state.next..until, overrides, Keep::None, None)?;
            state.next = until;
        }
        Ok(())
    }

    /// Runs the rest of the graph from `state` with some constants replaced (`overrides`, e.g. one layer's
    /// quantized weight) and returns the graph outputs. Cloning a state first and finishing the clone
    /// reuses everything computed before it: measuring each of L layers this way costs about half of
    /// L full passes on a chain-like network.
    pub fn finish(&self, mut state: RunState, overrides: &HashMap<ValueId, Value>) -> Result<Vec<Value>> {
        self.execute(&mut state.env, state.next..self.graph.nodes.len(), overrides, Keep::None, None)?;
        self.take_outputs(&mut state.env)
    }

    /// Runs the nodes `range` alone, from `inputs` (every non-constant value the range reads but does not
    /// compute), with some constants replaced (`overrides`) and some nodes taken over by `hook`, and
    /// returns the values `want` in order. This runs one block of a network on cached inputs, the unit
    /// of block reconstruction.
    pub fn run_nodes(&self, inputs: Vec<(ValueId, Value)>, range: std::ops::Range<usize>, overrides: &HashMap<ValueId, Value>, want: &[ValueId], hook: Option<&mut NodeHook<'_>>) -> Result<Vec<Value>> {
        let g = &self.graph;
        let mut env: Vec<Option<Value>> = vec![None; g.values.len()];
        for (id, v) in inputs {
            *env.get_mut(id).ok_or_else(|| Error::Invalid(format!("value {id} is not in the graph")))? = Some(v);
        }
        let mut kept = HashMap::new();
        for &t in want {
            if let Some(v) = env[t].clone() {
                kept.insert(t, v);
            }
        }
        let range = range.start..range.end.min(g.nodes.len());
        self.execute(&mut env, range, overrides, Keep::Taps(want, &mut kept), hook)?;
        want.iter()
            .map(|&w| kept.remove(&w).or_else(|| overrides.get(&w).or_else(|| self.consts.get(&w)).cloned()).ok_or_else(|| Error::Invalid(format!("'{}' was not computed by the nodes run", g.name(w)))))
            .collect()
    }

    fn bind_inputs(&self, inputs: Vec<Value>) -> Result<Vec<Option<Value>>> {
        let g = &self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(Error::Invalid(format!("the model has {} inputs, {} were given", g.inputs.len(), inputs.len())));
        }
        let mut env: Vec<Option<Value>> = vec![None; g.values.len()];
        for (&id, v) in g.inputs.iter().zip(inputs) {
            check_input_shape(g, id, v.shape())?;
            env[id] = Some(v);
        }
        Ok(env)
    }

    fn take_outputs(&self, env: &mut [Option<Value>]) -> Result<Vec<Value>> {
        let g = &self.graph;
        g.outputs
            .iter()
            .map(|&o| {
                // Cloned, not taken: a graph may list the same tensor twice as an output (valid ONNX).
                env[o].clone().or_else(|| self.consts.get(&o).cloned()).ok_or_else(|| Error::Invalid(format!("output '{}' was never computed", g.name(o))))
            })
            .collect()
    }

    /// Runs `nodes` in order on `env`, looking constants up in `overrides` first.
    fn execute(&self, env: &mut [Option<Value>], nodes: std::ops::Range<usize>, overrides: &HashMap<ValueId, Value>, mut keep: Keep<'_>, mut hook: Option<&mut NodeHook<'_>>) -> Result<()> {
        let g = &self.graph;
        let profile = std::env::var_os("ZEROQ_PROFILE").is_some();
        for (i, node) in g.nodes.iter().enumerate().take(nodes.end).skip(nodes.start) {
            let ins: Vec<Option<Value>> = node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| env[v].clone().or_else(|| overrides.get(&v).or_else(|| self.consts.get(&v)).cloned())))
                .collect();
            if let Some(missing) = node.inputs.iter().zip(&ins).find(|(v, x)| v.is_some() && x.is_none()) {
                return Err(node_error(node, format!("input '{}' was never computed", g.name(missing.0.unwrap_or(0)))));
            }
            let t0 = profile.then(std::time::Instant::now);
            let taken = hook.as_mut().and_then(|h| h(i, node, &ins));
            let outs = match taken {
                Some(outs) => outs?,
                None => run_op(&node.op, &ins).map_err(|e| node_error(node, e))?,
            };
            if let Some(t0) = t0 {
                eprintln!("zeroq-profile {:<20} {:>8.3} ms  {}", node.op.onnx_name(), t0.elapsed().as_secs_f64() * 1e3, node.name);
            }
            drop(ins);
            for (&o, v) in node.outputs.iter().zip(outs) {
                if let Keep::Taps(taps, kept) = &mut keep {
                    if taps.contains(&o) {
                        kept.insert(o, v.clone());
                    }
                }
                env[o] = Some(v);
            }
            // Free what is dead, so kernels can reuse buffers in place.
            for v in node.inputs.iter().flatten() {
                if self.last_use.get(v) == Some(&i) {
                    env[*v] = None;
                }
            }
        }
        Ok(())
    }

    /// Runs a single-input, single-output float model: `x` (e.g. `[N,3,H,W]`) to its first output.
    pub fn forward(&self, x: Tensor<4>) -> Result<DynTensor> {
        self.forward_with_taps(x, &[]).map(|(y, _)| y)
    }

    /// Like [`Plan::forward`], also returning the tapped values as float tensors.
    pub fn forward_with_taps(&self, x: Tensor<4>, taps: &[ValueId]) -> Result<(DynTensor, HashMap<ValueId, DynTensor>)> {
        let out = self.run(vec![Value::float(DynTensor::R4(x))], taps)?;
        let first = out.outputs.into_iter().next().ok_or_else(|| Error::Invalid("the model has no output".into()))?;
        let Value::F(y, _) = first else { return Err(Error::Invalid("the model's output is not a float tensor".into())) };
        let taps = out
            .taps
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::F(t, _) => Some((k, t)),
                Value::I(_) => None,
            })
            .collect();
        Ok((y, taps))
    }
}

fn node_error(node: &Node, reason: String) -> Error {
    Error::node(&node.name, node.op.onnx_name(), reason)
}

fn check_input_shape(g: &Graph, id: ValueId, got: &[usize]) -> Result<()> {
    let Some(decl) = &g.values[id].shape else { return Ok(()) };
    let ok = decl.len() == got.len()
        && decl.iter().zip(got).all(|(d, &n)| match d {
            Dim::Fixed(f) => *f == n,
            Dim::Dynamic(_) => true,
        });
    if ok {
        return Ok(());
    }
    Err(Error::InputShape {
        input: g.name(id).to_string(),
        expected: decl.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        got: got.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// Evaluates one op on host constants (constant folding at import).
pub fn eval_on_host(op: &Op, inputs: &[Option<&HostTensor>]) -> std::result::Result<Vec<HostTensor>, String> {
    let device = super::device::inference();
    let ins: Vec<Option<Value>> = inputs
        .iter()
        .map(|t| t.map(|t| Value::from_host(t, &device)).transpose())
        .collect::<Result<_>>()
        .map_err(|e| e.to_string())?;
    run_op(op, &ins)?.iter().map(|v| v.to_host().map_err(|e| e.to_string())).collect()
}
