//! The input gradient against central finite differences, on ResNet20 and on a grouped/depthwise graph.


use burn::tensor::{Tensor, TensorData};
use zeroq::engine::{device, input_gradient, to_rank, Plan};
use zeroq::ir::{AutoPad, Conv, Dim, Graph, HostTensor, Node, Op, Pool};

use crate::common;

/// Loss = Σ y·r + 0.05·Σ y², a smooth nonlinear scalar of the logits.
fn loss_of(y: Tensor<2>, r: &[f32]) -> Tensor<1> {
    let rt = Tensor::<2>::from_data(TensorData::new(r.to_vec(), y.dims()), &y.device());
    (y.clone() * rt).sum() + (y.clone() * y).sum().mul_scalar(0.05)
}

fn check_fd(graph: Graph, shape: [usize; 4], seed: u64) {
    let ad = Plan::new(graph.clone(), &device::autodiff()).expect("autodiff plan");
    let fwd = Plan::new(graph, &device::inference()).expect("plan");
    let n: usize = shape.iter().product();
    let x = common::lcg(n, seed);
    let classes = fwd
        .forward(Tensor::<4>::from_data(TensorData::new(x.clone(), shape), fwd.device()))
        .expect("forward")
        .dims()[1];
    let r = common::lcg(shape[0] * classes, seed + 1);
    let g = input_gradient(&ad, &x, shape, &[], |_, y, _| Ok(loss_of(to_rank::<2>(y.clone()), &r))).expect("gradient");
    assert_eq!(g.grad.len(), n);
    // The same loss on the host in f64, so that summation rounding does not blur the difference quotient.
    let eval = |xs: &[f32]| -> f64 {
        let y = fwd.forward(Tensor::<4>::from_data(TensorData::new(xs.to_vec(), shape), fwd.device())).expect("forward");
        let y = y.to_host().expect("host").to_f32_vec();
        y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64 + 0.05 * a as f64 * a as f64).sum()
    };
    // ε: large enough that f32 rounding of the logits (~1e-7 relative) stays below the signal
    // ε·(g·d), small enough that few ReLU pre-activations change sign within ±2ε. The 4-point stencil
    // cancels the curvature term, so the remaining error is rounding plus kink crossings, which are
    // random per direction: the check is on the whole set of directions (relative L2 error).
    let eps = 1e-2f32;
    let (mut num, mut den) = (0f64, 0f64);
    for k in 0..6 {
        let mut d = common::lcg(n, seed + 10 + k);
        let norm = d.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt() as f32;
        d.iter_mut().for_each(|v| *v /= norm);
        let at = |h: f32| -> f64 {
            let xs: Vec<f32> = x.iter().zip(&d).map(|(a, b)| a + h * b).collect();
            eval(&xs)
        };
        let h = eps as f64;
        let fd = (8.0 * (at(eps) - at(-eps)) - (at(2.0 * eps) - at(-2.0 * eps))) / (12.0 * h);
        let an: f64 = g.grad.iter().zip(&d).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        num += (fd - an).powi(2);
        den += an.powi(2);
    }
    let rel = (num / den).sqrt();
    assert!(rel < 1e-2, "relative L2 error {rel:.2e} between finite differences and the input gradient");
}

/// ResNet20's real weights and every op of its graph, with each Relu swapped for SiLU (x·sigmoid(x)).
///
/// Why the swap: with ReLU, some of the ~375k pre-activations of a batch lie within 1e-4 of their kink,
/// and a difference quotient across a kink measures neither one-sided derivative. Measured here on the
/// unmodified ResNet20 (ε = 0.01, 6 directions): 5 directions agree within 0.1–1.5%, one is off by 55%
/// at every ε from 0.002 to 0.02, the signature of a kink at the point itself. SiLU is smooth and close to
/// ReLU, so the check tests the gradients of Conv/BN/Slice/Pad/Add/GAP/Gemm on the real network; the ReLU
/// gradient itself is checked on the small graphs below.
fn resnet20_smooth() -> Graph {
    let mut g = zeroq::onnx::load_onnx(common::model("resnet20")).expect("load");
    let mut i = 0;
    let mut swapped = 0;
    while i < g.nodes.len() {
        if g.nodes[i].op == Op::Relu {
            let a = g.nodes[i].inputs[0].expect("relu input");
            let sig = g.add_value(format!("{}_sigmoid", g.nodes[i].name));
            let name = g.nodes[i].name.clone();
            g.nodes[i].op = Op::Mul;
            g.nodes[i].inputs = vec![Some(a), Some(sig)];
            g.nodes.insert(i, Node { name: format!("{name}_sigmoid"), op: Op::Sigmoid, inputs: vec![Some(a)], outputs: vec![sig] });
            swapped += 1;
            i += 1;
        }
        i += 1;
    }
    assert_eq!(swapped, 19);
    g
}

#[test]
fn resnet20_input_gradient_matches_finite_differences() {
    check_fd(resnet20_smooth(), [2, 3, 32, 32], 7);
}

/// A small graph with a grouped conv, BN, ReLU6, a depthwise strided conv with asymmetric padding,
/// max-pool with padding, an Add, global average pool and a Gemm.
fn grouped_graph() -> Graph {
    let mut g = Graph { opset: 17, ..Graph::default() };
    let x = g.add_value("x");
    g.values[x].shape = Some(vec![Dim::Dynamic("N".into()), Dim::Fixed(4), Dim::Fixed(9), Dim::Fixed(9)]);
    g.inputs.push(x);
    let c = |g: &mut Graph, name: &str, shape: Vec<usize>, seed: u64, scale: f32| {
        let n = shape.iter().product();
        let v = common::lcg(n, seed).into_iter().map(|v| v * scale).collect();
        g.add_const(name, HostTensor::f32(shape, v))
    };
    let conv = |group: usize, strides: [usize; 2], pads: [usize; 4]| {
        Op::Conv(Conv { kernel: [3, 3], strides, pads, dilations: [1, 1], group, auto_pad: AutoPad::NotSet })
    };
    let node = |g: &mut Graph, name: &str, op: Op, inputs: Vec<usize>| {
        let out = g.add_value(format!("{name}_out"));
        g.nodes.push(Node { name: name.into(), op, inputs: inputs.into_iter().map(Some).collect(), outputs: vec![out] });
        out
    };
    let w1 = c(&mut g, "w1", vec![8, 2, 3, 3], 1, 0.4);
    let b1 = c(&mut g, "b1", vec![8], 2, 0.1);
    let y = node(&mut g, "grouped", conv(2, [1, 1], [1, 1, 1, 1]), vec![x, w1, b1]);
    let gamma = c(&mut g, "gamma", vec![8], 3, 1.0);
    let beta = c(&mut g, "beta", vec![8], 4, 0.2);
    let mean = c(&mut g, "mean", vec![8], 5, 0.1);
    let var = g.add_const("var", HostTensor::f32(vec![8], vec![0.5, 1.0, 1.5, 0.8, 1.2, 0.9, 2.0, 0.7]));
    let y = node(&mut g, "bn", Op::BatchNormalization { epsilon: 1e-5 }, vec![y, gamma, beta, mean, var]);
    let y = node(&mut g, "relu6", Op::Clip { min: 0.0, max: 6.0 }, vec![y]);
    let w2 = c(&mut g, "w2", vec![8, 1, 3, 3], 6, 0.5);
    let z = node(&mut g, "depthwise", conv(8, [2, 2], [0, 1, 1, 0]), vec![y, w2]);
    let pool = Pool { kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], ceil_mode: false, count_include_pad: false, auto_pad: AutoPad::NotSet };
    let p = node(&mut g, "maxpool", Op::MaxPool(pool), vec![z]);
    let s = node(&mut g, "add", Op::Add, vec![p, z]);
    let gap = node(&mut g, "gap", Op::GlobalAveragePool, vec![s]);
    let f = node(&mut g, "flatten", Op::Flatten { axis: 1 }, vec![gap]);
    let wf = c(&mut g, "wf", vec![5, 8], 7, 0.5);
    let bf = c(&mut g, "bf", vec![5], 8, 0.1);
    let out = node(&mut g, "fc", Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true }, vec![f, wf, bf]);
    g.outputs.push(out);
    g
}

#[test]
fn grouped_and_depthwise_input_gradient_matches_finite_differences() {
    check_fd(grouped_graph(), [3, 4, 9, 9], 11);
}

#[test]
fn fold_batch_norm_preserves_outputs() {
    let g = grouped_graph();
    let mut folded = g.clone();
    assert_eq!(zeroq::ir::passes::fold_batch_norm(&mut folded), 1);
    assert!(folded.batch_norm_sites().is_empty());
    let shape = [2, 4, 9, 9];
    let x = common::lcg(shape.iter().product(), 3);
    let run = |g: Graph| -> Vec<f32> {
        let p = Plan::new(g, &device::inference()).expect("plan");
        let y = p.forward(Tensor::<4>::from_data(TensorData::new(x.clone(), shape), p.device())).expect("forward");
        y.to_host().expect("host").to_f32_vec()
    };
    let (a, b) = (run(g), run(folded));
    let max = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(max < 1e-4, "folded BN changes outputs by {max}");
}

/// The option-A shortcut of the CIFAR ResNets: a stride-2 Slice and a channel Pad, then ReLU and a Gemm.
fn shortcut_graph() -> Graph {
    let mut g = Graph { opset: 17, ..Graph::default() };
    let x = g.add_value("x");
    g.inputs.push(x);
    let node = |g: &mut Graph, name: &str, op: Op, inputs: Vec<usize>| {
        let out = g.add_value(format!("{name}_out"));
        g.nodes.push(Node { name: name.into(), op, inputs: inputs.into_iter().map(Some).collect(), outputs: vec![out] });
        out
    };
    let s = node(&mut g, "slice", Op::Slice { starts: vec![0, 0], ends: vec![i64::MAX, i64::MAX], axes: vec![2, 3], steps: vec![2, 2] }, vec![x]);
    let p = node(&mut g, "pad", Op::Pad { pads: vec![0, 2, 0, 0, 0, 2, 0, 0], value: 0.0, mode: zeroq::ir::PadKind::Constant }, vec![s]);
    let r = node(&mut g, "relu", Op::Relu, vec![p]);
    let f = node(&mut g, "flatten", Op::Flatten { axis: 1 }, vec![r]);
    let w = g.add_const("w", HostTensor::f32(vec![3, 8 * 16], common::lcg(3 * 8 * 16, 5)));
    let out = node(&mut g, "fc", Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true }, vec![f, w]);
    g.outputs.push(out);
    g
}

#[test]
fn shortcut_slice_pad_input_gradient_matches_finite_differences() {
    check_fd(shortcut_graph(), [2, 4, 8, 8], 13);
}
