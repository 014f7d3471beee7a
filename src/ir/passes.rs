//! Graph rewrites. Each pass takes the graph by `&mut`, returns how many places it changed, and leaves a
//! valid, topologically sorted graph behind.

use std::collections::HashSet;

use super::graph::{Graph, ValueId};
use super::op::Op;
use super::tensor::HostTensor;

/// Folds every `BatchNormalization` that directly follows a `Conv` (whose output nothing else reads) into
/// that Conv's weight and bias:
///
/// `W'[o] = W[o]·γ[o]/√(σ²[o]+ε)`, `b'[o] = (b[o] − μ[o])·γ[o]/√(σ²[o]+ε) + β[o]`.
///
/// Per-output-channel weight quantization after this fold is what a deployed integer kernel computes.
/// Returns the number of BN nodes removed.
pub fn fold_batch_norm(g: &mut Graph) -> usize {
    let mut folded = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        if let Some(conv_idx) = foldable_conv(g, i) {
            let bn = g.nodes[i].clone();
            let conv = &g.nodes[conv_idx];
            let (Some(w_id), Op::BatchNormalization { epsilon }) = (conv.input(1), &bn.op) else {
                i += 1;
                continue;
            };
            let eps = *epsilon;
            let param = |k: usize| bn.input(k).and_then(|v| g.constant(v)).map(|t| t.to_f32_vec());
            let (Some(gamma), Some(beta), Some(mean), Some(var)) = (param(1), param(2), param(3), param(4))
            else {
                i += 1;
                continue;
            };
            let w = g.consts[&w_id].clone();
            let out_ch = w.shape[0];
            let per_out = w.len() / out_ch.max(1);
            let bias = conv.input(2).and_then(|b| g.constant(b)).map(|t| t.to_f32_vec());
            let mut w_new = w.to_f32_vec();
            let mut b_new = vec![0f32; out_ch];
            for o in 0..out_ch {
                let k = gamma[o] / (var[o] + eps).sqrt();
                for x in &mut w_new[o * per_out..(o + 1) * per_out] {
                    *x *= k;
                }
                let b0 = bias.as_ref().map_or(0.0, |b| b[o]);
                b_new[o] = (b0 - mean[o]) * k + beta[o];
            }
            let conv_name = g.nodes[conv_idx].name.clone();
            let w_id2 = g.add_const(format!("{conv_name}.weight_folded"), HostTensor::f32(w.shape.clone(), w_new));
            let b_id2 = g.add_const(format!("{conv_name}.bias_folded"), HostTensor::f32(vec![out_ch], b_new));
            let conv = &mut g.nodes[conv_idx];
            conv.inputs = vec![conv.inputs[0], Some(w_id2), Some(b_id2)];
            let conv_out = conv.outputs[0];
            let bn_out = bn.outputs[0];
            g.nodes.remove(i);
            g.replace_uses(bn_out, conv_out);
            // Keep the BN's output name on the conv output so downstream names stay recognisable.
            g.values[conv_out].name = g.values[bn_out].name.clone();
            folded += 1;
        } else {
            i += 1;
        }
    }
    remove_unused_constants(g);
    folded
}

/// The Conv feeding BN node `bn_idx`, if the pair can be folded.
fn foldable_conv(g: &Graph, bn_idx: usize) -> Option<usize> {
    let bn = &g.nodes[bn_idx];
    if !matches!(bn.op, Op::BatchNormalization { .. }) {
        return None;
    }
    let x = bn.input(0)?;
    let p = g.producer(x)?;
    let conv = &g.nodes[p];
    if !matches!(conv.op, Op::Conv(_)) || g.outputs.contains(&x) || g.consumers(x).len() != 1 {
        return None;
    }
    let w = g.constant(conv.input(1)?)?;
    if !w.is_float() || w.shape.first().copied() != Some(g.constant(bn.input(1)?)?.len()) {
        return None;
    }
    Some(p)
}

/// Fuses what follows a Conv into it, for inference: a residual `Add` whose other operand already
/// exists when the Conv runs, then a `Relu` or `Clip`, each only when the Conv's (or the Add's) output
/// has that one reader and is not a graph output. The fused node is an [`Op::FusedConv`] producing the
/// last fused node's output, so its readers see the same value. Intermediate values disappear: run the
/// result whole, never with taps. Returns how many Convs were fused.
pub fn fuse_conv_epilogues(g: &mut Graph) -> usize {
    let single_reader = |g: &Graph, v: ValueId| -> Option<usize> {
        match g.consumers(v).as_slice() {
            [j] if !g.outputs.contains(&v) => Some(*j),
            _ => None,
        }
    };
    let mut moved = HashSet::new();
    let mut fused = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let Op::Conv(conv) = &g.nodes[i].op else {
            i += 1;
            continue;
        };
        let conv = conv.clone();
        let mut out = g.nodes[i].outputs[0];
        let mut drop = Vec::new();
        let mut residual = None;
        if let Some(j) = single_reader(g, out) {
            let n = &g.nodes[j];
            if let (Op::Add, [Some(a), Some(b)]) = (&n.op, n.inputs.as_slice()) {
                let other = if *a == out { *b } else { *a };
                if other != out && (*a == out || *b == out) {
                    // The other operand must exist before the Conv runs. When it is computed between
                    // the Conv and the Add (a shortcut branch listed after the main one), the Conv
                    // moves down to just before the Add: only the Add reads its output, so the order
                    // stays valid, and the loop meets it again there. It moves at most once: when both
                    // operands of the Add are Convs, each would otherwise move below the other forever;
                    // the second one met fuses the Add instead.
                    let later = g.producer(other).is_some_and(|p| p > i);
                    if later && moved.insert(g.nodes[i].name.clone()) {
                        let node = g.nodes.remove(i);
                        g.nodes.insert(j - 1, node);
                        continue;
                    }
                    if !later {
                        residual = Some(other);
                        out = n.outputs[0];
                        drop.push(j);
                    }
                }
            }
        }
        let (mut lo, mut hi) = (f32::NEG_INFINITY, f32::INFINITY);
        if let Some(j) = single_reader(g, out) {
            let bounds = match g.nodes[j].op {
                Op::Relu => Some((0.0, f32::INFINITY)),
                Op::Clip { min, max } => Some((min, max)),
                _ => None,
            };
            if let Some((a, b)) = bounds.filter(|_| g.nodes[j].input(0) == Some(out)) {
                (lo, hi) = (a, b);
                out = g.nodes[j].outputs[0];
                drop.push(j);
            }
        }
        if drop.is_empty() {
            i += 1;
            continue;
        }
        let node = &mut g.nodes[i];
        let mut inputs = vec![node.inputs[0], node.input(1), node.input(2)];
        if let Some(r) = residual {
            inputs.push(Some(r));
        }
        node.inputs = inputs;
        node.op = Op::FusedConv { conv, residual: residual.is_some(), lo, hi };
        node.outputs = vec![out];
        drop.sort_unstable();
        for &j in drop.iter().rev() {
            g.nodes.remove(j);
        }
        fused += 1;
        i += 1;
    }
    fused
}

/// Removes nodes whose outputs nobody reads (dead code), then constants nobody reads.
/// Returns the number of nodes removed.
pub fn remove_dead_nodes(g: &mut Graph) -> usize {
    let mut removed = 0;
    loop {
        let mut live: HashSet<usize> = g.outputs.iter().copied().collect();
        for n in &g.nodes {
            live.extend(n.inputs.iter().flatten().copied());
        }
        let before = g.nodes.len();
        g.nodes.retain(|n| n.outputs.iter().any(|o| live.contains(o)));
        let now = before - g.nodes.len();
        removed += now;
        if now == 0 {
            break;
        }
    }
    remove_unused_constants(g);
    removed
}

/// Drops constants that no node reads and that are not graph outputs.
pub fn remove_unused_constants(g: &mut Graph) {
    let mut used: HashSet<usize> = g.outputs.iter().copied().collect();
    for n in &g.nodes {
        used.extend(n.inputs.iter().flatten().copied());
    }
    g.consts.retain(|k, _| used.contains(k));
}

/// Bypasses `Identity` nodes (and `Dropout`, imported as `Identity`). Returns how many were removed.
pub fn remove_identities(g: &mut Graph) -> usize {
    let mut removed = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        let n = &g.nodes[i];
        if let (Op::Identity, Some(x)) = (&n.op, n.input(0)) {
            let out = n.outputs[0];
            if g.outputs.contains(&out) {
                i += 1;
                continue;
            }
            g.nodes.remove(i);
            g.replace_uses(out, x);
            removed += 1;
        } else {
            i += 1;
        }
    }
    removed
}
