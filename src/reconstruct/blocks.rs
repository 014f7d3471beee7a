//! Cutting a quantized graph into the units that reconstruction learns one after another.
//!
//! A *cut* is a position between two nodes; the values live across it (computed before, read after) are
//! what a unit starting there reads. Where exactly one tensor is live the network is a chain at that
//! point: between two such cuts lies a residual block (its skip branch is live only inside it) or a plain
//! stretch of layers. BRECQ learns each residual block as a whole against its FP32 output, and a plain
//! stretch up to its first linear output (the projection of an inverted residual block, whose output is
//! not followed by an activation). Layer-wise methods (AdaRound, bias correction) cut around every
//! weight layer instead. Any graph gets a partition: where no single-tensor cut exists the block is
//! simply larger.

use std::collections::HashSet;
use std::ops::Range;

use crate::ir::{Graph, Op, ValueId};

/// A contiguous run of nodes learned (or only propagated) as one unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// Node indices.
    pub nodes: Range<usize>,
    /// Values the unit reads and does not compute (no constants), in first-use order.
    pub inputs: Vec<ValueId>,
    /// Values the unit computes that are read after it (or are graph outputs).
    pub outputs: Vec<ValueId>,
    /// Weight-layer node indices inside the unit.
    pub layers: Vec<usize>,
}

/// How the graph is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Every weight layer its own unit (units without layers in between).
    Layer,
    /// Residual blocks and plain stretches up to a linear output, at most `max_layers` layers each.
    Block {
        /// Most weight layers in a plain stretch.
        max_layers: usize,
    },
}

/// Number of non-constant values live across each cut `k` (between node `k − 1` and node `k`), for
/// `k` in `0..=nodes`.
fn live_counts(g: &Graph) -> Vec<usize> {
    let n = g.nodes.len();
    let last = g.last_uses();
    // +1 where a value becomes live (after its producer, or at 0 for inputs), −1 after its last reader.
    let mut delta = vec![0i64; n + 2];
    let mut born = |v: ValueId, at: usize| {
        if g.constant(v).is_some() {
            return;
        }
        let end = match last.get(&v) {
            Some(&usize::MAX) => n + 1,
            Some(&l) => l + 1,
            None => return,
        };
        if end > at {
            delta[at] += 1;
            delta[end] -= 1;
        }
    };
    for &v in &g.inputs {
        born(v, 0);
    }
    for (i, node) in g.nodes.iter().enumerate() {
        for &o in &node.outputs {
            born(o, i + 1);
        }
    }
    let mut live = Vec::with_capacity(n + 1);
    let mut cur = 0i64;
    for d in delta.iter().take(n + 1) {
        cur += d;
        live.push(cur.max(0) as usize);
    }
    live
}

/// The unit over `nodes`: what it reads from before and what it leaves for after.
pub fn unit(g: &Graph, nodes: Range<usize>) -> Unit {
    let last = g.last_uses();
    let mut produced = HashSet::new();
    let mut inputs = Vec::new();
    let mut layers = Vec::new();
    for i in nodes.clone() {
        let node = &g.nodes[i];
        for v in node.inputs.iter().flatten() {
            if !produced.contains(v) && g.constant(*v).is_none() && !inputs.contains(v) {
                inputs.push(*v);
            }
        }
        produced.extend(node.outputs.iter().copied());
        if node.op.is_weight_layer() && node.input(1).and_then(|w| g.constant(w)).is_some_and(|t| t.is_float()) {
            layers.push(i);
        }
    }
    let mut outputs = Vec::new();
    for i in nodes.clone() {
        for &o in &g.nodes[i].outputs {
            if last.get(&o).is_some_and(|&l| l == usize::MAX || l >= nodes.end) {
                outputs.push(o);
            }
        }
    }
    Unit { nodes, inputs, outputs, layers }
}

/// Cuts `g` into consecutive units covering every node.
pub fn partition(g: &Graph, granularity: Granularity) -> Vec<Unit> {
    let n = g.nodes.len();
    let ranges: Vec<Range<usize>> = match granularity {
        Granularity::Layer => {
            let mut bounds = vec![0];
            for (i, node) in g.nodes.iter().enumerate() {
                if node.op.is_weight_layer() {
                    bounds.extend([i, i + 1]);
                }
            }
            bounds.push(n);
            bounds.dedup();
            bounds.windows(2).map(|w| w[0]..w[1]).filter(|r| !r.is_empty()).collect()
        }
        Granularity::Block { max_layers } => blocks(g, max_layers.max(1)),
    };
    ranges.into_iter().map(|r| unit(g, r)).collect()
}

/// Residual blocks and plain stretches (see the module doc).
fn blocks(g: &Graph, max_layers: usize) -> Vec<Range<usize>> {
    let n = g.nodes.len();
    let live = live_counts(g);
    let mut cuts: Vec<usize> = (1..n).filter(|&k| live[k] == 1).collect();
    cuts.insert(0, 0);
    cuts.push(n);
    cuts.dedup();
    let activation = |op: &Op| matches!(op, Op::Relu | Op::Clip { .. } | Op::HardSwish | Op::HardSigmoid { .. } | Op::Sigmoid);
    // A block ends where its output is linear: computed by a layer or a sum and not fed to an activation
    // (the projection of an inverted residual block), or at the end of the graph.
    let linear_end = |k: usize| {
        if k >= n {
            return true;
        }
        let last = &g.nodes[k - 1];
        let ends_linear = last.op.is_weight_layer() || matches!(last.op, Op::Add | Op::Sub);
        ends_linear && last.outputs.iter().all(|&v| g.consumers(v).iter().all(|&c| !activation(&g.nodes[c].op)))
    };
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut open: Option<(Range<usize>, usize)> = None;
    for w in cuts.windows(2) {
        let r = w[0]..w[1];
        if r.is_empty() {
            continue;
        }
        let layers = unit(g, r.clone()).layers.len();
        // A join: some node reads two computed values (Add, Concat, Mul…): a residual block.
        let join = r.clone().any(|i| g.nodes[i].inputs.iter().flatten().filter(|v| g.constant(**v).is_none()).count() >= 2);
        if join && layers > 0 {
            if let Some((o, _)) = open.take() {
                out.push(o);
            }
            out.push(r);
            continue;
        }
        // The activation after a block's sum belongs to the block: its output is what the next one reads.
        if layers == 0 && open.is_none() && r.clone().all(|i| activation(&g.nodes[i].op)) {
            if let Some(last) = out.last_mut() {
                last.end = r.end;
                continue;
            }
        }
        let (range, count) = match open.take() {
            Some((o, c)) => (o.start..r.end, c + layers),
            None => (r.clone(), layers),
        };
        if count > 0 && (linear_end(r.end) || count >= max_layers) {
            out.push(range);
        } else {
            open = Some((range, count));
        }
    }
    if let Some((o, c)) = open {
        // Trailing nodes without layers join the last unit.
        match out.last_mut() {
            Some(last) if c == 0 => last.end = o.end,
            _ => out.push(o),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{HostTensor, Node};

    fn conv_node(g: &mut Graph, name: &str, x: ValueId) -> ValueId {
        let w = g.add_const(format!("{name}.w"), HostTensor::f32(vec![2, 2, 1, 1], vec![1.0; 4]));
        let y = g.add_value(format!("{name}.y"));
        let op = Op::Conv(crate::ir::Conv { kernel: [1, 1], strides: [1, 1], pads: [0; 4], dilations: [1, 1], group: 1, auto_pad: crate::ir::AutoPad::NotSet });
        g.nodes.push(Node { name: name.into(), op, inputs: vec![Some(x), Some(w)], outputs: vec![y] });
        y
    }

    fn unary(g: &mut Graph, name: &str, op: Op, x: ValueId) -> ValueId {
        let y = g.add_value(format!("{name}.y"));
        g.nodes.push(Node { name: name.into(), op, inputs: vec![Some(x)], outputs: vec![y] });
        y
    }

    /// stem conv → relu → [conv → relu → conv → add(skip) → relu] → conv (linear head).
    fn residual_net() -> Graph {
        let mut g = Graph::default();
        let x = g.add_value("x");
        g.inputs.push(x);
        let a = conv_node(&mut g, "stem", x);
        let a = unary(&mut g, "stem_relu", Op::Relu, a);
        let b = conv_node(&mut g, "c1", a);
        let b = unary(&mut g, "c1_relu", Op::Relu, b);
        let b = conv_node(&mut g, "c2", b);
        let s = g.add_value("sum");
        g.nodes.push(Node { name: "add".into(), op: Op::Add, inputs: vec![Some(b), Some(a)], outputs: vec![s] });
        let s = unary(&mut g, "relu", Op::Relu, s);
        let y = conv_node(&mut g, "head", s);
        g.outputs.push(y);
        g
    }

    #[test]
    fn residual_blocks_are_units_and_cover_the_graph() {
        let g = residual_net();
        let units = partition(&g, Granularity::Block { max_layers: 4 });
        let ranges: Vec<_> = units.iter().map(|u| u.nodes.clone()).collect();
        // stem+relu alone (a residual block follows), the block with its final ReLU, the head.
        assert_eq!(ranges, vec![0..2, 2..7, 7..8]);
        assert_eq!(units[1].layers, vec![2, 4]);
        assert_eq!(units[1].inputs.len(), 1, "the block reads one tensor: {:?}", units[1].inputs);
        assert_eq!(units[1].outputs.len(), 1);
        assert_eq!(units[2].outputs, g.outputs);
    }

    #[test]
    fn layer_units_carry_the_skip_tensor_across() {
        let g = residual_net();
        let units = partition(&g, Granularity::Layer);
        assert_eq!(units.iter().map(|u| u.nodes.clone()).collect::<Vec<_>>(), vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..7, 7..8]);
        // The unit of c2 reads c1's output; the add's unit reads c2's output and the skip tensor.
        assert_eq!(units[5].inputs.len(), 2);
        assert!(units.iter().all(|u| u.layers.len() <= 1));
    }

    #[test]
    fn plain_stretches_close_at_a_linear_output() {
        // conv → relu → conv → relu → conv (linear) → conv → relu → conv (output)
        let mut g = Graph::default();
        let x = g.add_value("x");
        g.inputs.push(x);
        let mut v = x;
        for (i, act) in [true, true, false, true, false].into_iter().enumerate() {
            v = conv_node(&mut g, &format!("c{i}"), v);
            if act {
                v = unary(&mut g, &format!("r{i}"), Op::Relu, v);
            }
        }
        g.outputs.push(v);
        let units = partition(&g, Granularity::Block { max_layers: 4 });
        let layers: Vec<usize> = units.iter().map(|u| u.layers.len()).collect();
        assert_eq!(layers, vec![3, 2]);
        assert_eq!(units.last().map(|u| u.nodes.end), Some(g.nodes.len()));
    }
}
