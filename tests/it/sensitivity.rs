//! Per-layer sensitivity, the Pareto choice and mixed-precision quantization on ResNet20.

use std::collections::HashMap;

use prost::Message;
use zeroq::engine::Plan;
use zeroq::eval::kl_divergence;
use zeroq::ir::passes;
use zeroq::quant::{output_axis, quantize_weight, WeightRange};
use zeroq::sensitivity::{measure, SensitivityConfig};

use crate::common;

fn logits(g: zeroq::ir::Graph, x: &[f32], shape: [usize; 4]) -> Vec<f32> {
    zeroq::quant::predict(&Plan::for_inference(g).expect("plan"), x, shape, 32).expect("predict")
}

/// Every Ω of `reused` (measured continuing from the activations before each layer) within `rel` of
/// `rerun`'s (the whole network rerun for each measurement).
fn assert_same_omega(reused: &zeroq::sensitivity::Sensitivity, rerun: &zeroq::sensitivity::Sensitivity, rel: f64) {
    for (a, b) in reused.layers.iter().zip(&rerun.layers) {
        for (x, y) in a.omega.iter().zip(&b.omega) {
            assert!((x - y).abs() <= rel * y.abs().max(1e-9), "layer {}: {x} with reuse vs {y} without", a.name);
        }
    }
}

/// Continuing from the FP32 activations before each layer gives the same Ω as rerunning the whole
/// network, and both equal a direct computation: quantize one layer's weights in a copy of the graph,
/// run it, average the KL.
#[test]
fn sensitivity_reuses_prefix_without_changing_results() {
    let g = zeroq::onnx::load_onnx(common::model("resnet20")).expect("load");
    let d = common::distilled_resnet20();
    let cfg = SensitivityConfig::default();
    let fast = measure(&g, "resnet20", &d.data, d.shape, &cfg, &mut |_, _| {}).expect("measure");
    let slow = measure(&g, "resnet20", &d.data, d.shape, &SensitivityConfig { reuse_prefix: false, ..cfg }, &mut |_, _| {}).expect("measure");
    assert_eq!(fast.layers.len(), 20, "ResNet20 has 19 convolutions and one Gemm");
    assert_eq!(fast.images, d.shape[0]);
    assert_same_omega(&fast, &slow, 1e-6);

    // Direct: layer 7 and the classifier at 4 bits.
    let mut folded = g.clone();
    passes::fold_batch_norm(&mut folded);
    let reference = logits(folded.clone(), &d.data, d.shape);
    for li in [7, 19] {
        let layer = &folded.weight_layers()[li];
        let w = &folded.consts[&layer.weight];
        let (deq, _) = quantize_weight(w, output_axis(&folded.nodes[layer.node].op, w.shape.len()), 4, WeightRange::MinMax);
        let mut q = folded.clone();
        q.consts.insert(layer.weight, deq);
        let ql = logits(q, &d.data, d.shape);
        let direct = reference.chunks(10).zip(ql.chunks(10)).map(|(p, q)| kl_divergence(p, q)).sum::<f64>() / d.shape[0] as f64;
        let got = fast.omega(li, 4).expect("4-bit");
        assert!((got - direct).abs() <= 1e-6 * direct, "layer {li}: Ω(4) {got} vs direct {direct}");
    }

    // In context (every other layer at 4 bits), Ω_i(4) is the KL of the all-4-bit model for every i.
    let ctx = measure(&g, "resnet20", &d.data, d.shape, &SensitivityConfig { context_bits: Some(vec![4]), ..SensitivityConfig::default() }, &mut |_, _| {}).expect("measure");
    let mut all4 = folded.clone();
    for l in folded.weight_layers() {
        let w = &folded.consts[&l.weight];
        all4.consts.insert(l.weight, quantize_weight(w, output_axis(&folded.nodes[l.node].op, w.shape.len()), 4, WeightRange::MinMax).0);
    }
    let q4 = logits(all4, &d.data, d.shape);
    let kl4 = reference.chunks(10).zip(q4.chunks(10)).map(|(p, q)| kl_divergence(p, q)).sum::<f64>() / d.shape[0] as f64;
    for i in 0..ctx.layers.len() {
        let got = ctx.omega(i, 4).unwrap();
        assert!((got - kl4).abs() <= 1e-6 * kl4, "layer {i} in context: Ω(4) {got} vs all-4-bit KL {kl4}");
        assert!(ctx.omega(i, 2).unwrap() > got, "layer {i}: 2 bits must hurt more than 4, in context");
    }
    let mean8 = (0..ctx.layers.len()).map(|i| ctx.omega(i, 8).unwrap()).sum::<f64>() / ctx.layers.len() as f64;
    assert!(mean8 < kl4, "raising one layer to 8 bits lowers the KL on average: {mean8} vs {kl4}");
    assert_eq!(ctx.context_bits.as_deref(), Some(&[4u32; 20][..]));

    // Fewer bits hurt more: for every layer at 2 vs 8 bits, and in total at 2 > 4 > 8.
    let total = |b: u32| (0..fast.layers.len()).map(|i| fast.omega(i, b).unwrap()).sum::<f64>();
    assert!(total(2) > total(4) && total(4) > total(8), "Σ Ω: {} {} {}", total(2), total(4), total(8));
    for l in &fast.layers {
        assert!(l.omega[0] > l.omega[2], "layer {}: Ω(2) {} ≤ Ω(8) {}", l.name, l.omega[0], l.omega[2]);
    }
}

/// Values of `id` over all images, from a run of `g` (already BN-folded) on `x`: `([n, c, …], data)`.
fn tapped(g: &zeroq::ir::Graph, x: &[f32], shape: [usize; 4], id: zeroq::ir::ValueId) -> (Vec<usize>, Vec<f32>) {
    use burn::tensor::{Tensor, TensorData};
    let plan = Plan::for_inference(g.clone()).expect("plan");
    let per: usize = shape[1..].iter().product();
    let (mut dims, mut data) = (Vec::new(), Vec::new());
    for chunk in x.chunks(per * 32) {
        let n = chunk.len() / per;
        let t = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, shape[1], shape[2], shape[3]]), plan.device());
        let out = plan.run(vec![zeroq::engine::Value::float(zeroq::engine::DynTensor::R4(t))], &[id]).expect("run");
        let v = &out.taps[&id];
        dims = v.shape().to_vec();
        data.extend(v.to_host().expect("host").to_f32_vec());
    }
    dims[0] = shape[0];
    (dims, data)
}

/// With `bias_corrected`, Ω_i(k) is the KL of the network whose layer i has k-bit weights and a bias
/// shifted by the mean output change per channel over all the images (two batches of 32 here, so
/// the mean is pooled across batches), computed directly below; the correction lowers Ω overall.
#[test]
fn bias_corrected_sensitivity_scores_the_corrected_layer() {
    let g = zeroq::onnx::load_onnx(common::model("resnet20")).expect("load");
    let d = common::distilled_resnet20();
    assert!(d.shape[0] > 32, "the check needs more than one batch");
    let cfg = SensitivityConfig { bits: vec![2, 4], bias_corrected: true, ..SensitivityConfig::default() };
    let bc = measure(&g, "resnet20", &d.data, d.shape, &cfg, &mut |_, _| {}).expect("measure");
    let slow = measure(&g, "resnet20", &d.data, d.shape, &SensitivityConfig { reuse_prefix: false, ..cfg.clone() }, &mut |_, _| {}).expect("measure");
    let plain = measure(&g, "resnet20", &d.data, d.shape, &SensitivityConfig { bits: vec![2, 4], ..SensitivityConfig::default() }, &mut |_, _| {}).expect("measure");
    assert!(bc.bias_corrected && !plain.bias_corrected);
    assert_same_omega(&bc, &slow, 1e-5);

    let mut folded = g.clone();
    passes::fold_batch_norm(&mut folded);
    let reference = logits(folded.clone(), &d.data, d.shape);
    for li in [7, 19] {
        let layer = folded.weight_layers()[li].clone();
        let node = &folded.nodes[layer.node];
        let (out, bias) = (node.outputs[0], node.input(2).expect("a folded layer has a bias"));
        let w = &folded.consts[&layer.weight];
        let (deq, _) = quantize_weight(w, output_axis(&node.op, w.shape.len()), 4, WeightRange::MinMax);
        let mut q = folded.clone();
        q.consts.insert(layer.weight, deq);
        let ((dims, fp), (_, qv)) = (tapped(&folded, &d.data, d.shape, out), tapped(&q, &d.data, d.shape, out));
        let (c, spatial) = (dims[1], dims[2..].iter().product::<usize>());
        let mut shift = vec![0f64; c];
        for (i, (a, b)) in fp.iter().zip(&qv).enumerate() {
            shift[(i / spatial) % c] += (a - b) as f64 / (dims[0] * spatial) as f64;
        }
        let b = q.consts[&bias].clone();
        let corrected: Vec<f32> = b.to_f32_vec().iter().zip(&shift).map(|(x, s)| x + *s as f32).collect();
        q.consts.insert(bias, zeroq::ir::HostTensor::f32(b.shape.clone(), corrected));
        let ql = logits(q, &d.data, d.shape);
        let direct = reference.chunks(10).zip(ql.chunks(10)).map(|(p, q)| kl_divergence(p, q)).sum::<f64>() / d.shape[0] as f64;
        let got = bc.omega(li, 4).expect("4-bit");
        assert!((got - direct).abs() <= 1e-4 * direct, "layer {li}: bias-corrected Ω(4) {got} vs direct {direct}");
    }
    let total = |s: &zeroq::sensitivity::Sensitivity, b: u32| (0..s.layers.len()).map(|i| s.omega(i, b).unwrap()).sum::<f64>();
    for b in [2, 4] {
        assert!(total(&bc, b) < total(&plain, b), "{b} bits: Σ Ω corrected {} vs plain {}", total(&bc, b), total(&plain, b));
    }
}

fn run_ok(args: &[&str]) -> serde_json::Value {
    let out = common::zeroq().args(args).arg("--json").arg("--quiet").output().expect("run zeroq");
    assert!(out.status.success(), "zeroq {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON on the last line")
}

fn is_chart(path: &std::path::Path, must_mention: &[&str]) {
    let svg = std::fs::read_to_string(path).expect("svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}: not an SVG document", path.display());
    for s in must_mention {
        assert!(svg.contains(s), "{}: no '{s}' in the chart", path.display());
    }
}

/// `sensitivity` → `pareto` → `quantize --mp 4`: the files parse, the choice fits the budget and is no
/// more sensitive than uniform 4-bit, the exported ONNX records the chosen bits, and MP4/8 on 2,000 test
/// images stays close to FP32.
#[test]
fn mixed_precision_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let d = common::distilled_resnet20();
    zeroq::data::npy::write_f32(std::path::Path::new(&p("d.npy")), &d.data, &d.shape).unwrap();
    let model = common::model("resnet20").display().to_string();

    run_ok(&["sensitivity", &model, "--distilled", &p("d.npy"), "-o", &p("sens.json"), "--plot", &p("sens.svg")]);
    is_chart(dir.path().join("sens.svg").as_path(), &["2-bit", "4-bit", "8-bit", "weight layer", "mean KL"]);
    let pareto = run_ok(&["pareto", &p("sens.json"), "--mp", "4", "-o", &p("pareto.json"), "--plot", &p("pareto.svg")]);
    is_chart(dir.path().join("pareto.svg").as_path(), &["Pareto frontier", "uniform 4-bit", "chosen", "weight size (KB)"]);
    let chosen = &pareto["chosen"];
    let u4 = pareto["uniform"].as_array().unwrap().iter().find(|u| u["avg_bits"].as_f64() == Some(4.0)).expect("uniform 4-bit point");
    assert!(chosen["size_bytes"].as_f64().unwrap() <= u4["size_bytes"].as_f64().unwrap());
    assert!(chosen["omega"].as_f64().unwrap() <= u4["omega"].as_f64().unwrap());

    let eval = format!("cifar10:{}", common::cifar_test().display());
    let r = run_ok(&[
        "quantize", &model, "--distilled", &p("d.npy"), "--mp", "4", "--abits", "8", "--sensitivity", &p("sens.json"), "-o", &p("q.onnx"), "--report", &p("r.json"), "--eval", &eval, "--limit", "2000",
        "--reconstruct", "off",
    ]);
    let mp = &r["mixed_precision"];
    let bits: Vec<u64> = mp["bits"].as_array().unwrap().iter().map(|x| x[1].as_u64().unwrap()).collect();
    let chosen_bits: Vec<u64> = chosen["layers"].as_array().unwrap().iter().map(|x| x[1].as_u64().unwrap()).collect();
    assert_eq!(bits, chosen_bits, "quantize picks what pareto picked");
    assert!(bits.iter().any(|&b| b != 4), "MP4 is not simply uniform 4-bit: {bits:?}");
    let weights: Vec<u64> = r["weights"].as_array().unwrap().iter().map(|w| w["bits"].as_u64().unwrap()).collect();
    assert_eq!(weights, bits, "the quantized weights use the chosen bits");

    // The bits travel in the ONNX metadata.
    let m = zeroq::onnx::proto::ModelProto::decode(std::fs::read(p("q.onnx")).unwrap().as_slice()).unwrap();
    let meta = m.metadata_props.iter().find(|e| e.key == "zeroq.weight_bits").expect("zeroq.weight_bits metadata");
    let meta: HashMap<String, u64> = serde_json::from_str(&meta.value).unwrap();
    for x in mp["bits"].as_array().unwrap() {
        assert_eq!(meta[x[0].as_str().unwrap()], x[1].as_u64().unwrap());
    }

    let (fp, q) = (r["fp32_top1"].as_f64().unwrap(), r["quantized_top1"].as_f64().unwrap());
    assert!(q >= fp - 3.0, "MP4/8 top-1 {q} vs FP32 {fp} on 2,000 images");

    // A budget below all-2-bit is refused with the smallest possible size, and nothing is written.
    let out = common::zeroq().args(["quantize", &model, "--distilled", &p("d.npy"), "--size-budget", "1KB", "-o", &p("no.onnx")]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("smallest possible weight size") && err.contains("KB"), "{err}");
    assert!(!dir.path().join("no.onnx").exists());
}

fn fails(args: &[&str]) -> String {
    let out = common::zeroq().args(args).output().expect("run zeroq");
    assert!(!out.status.success(), "zeroq {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!err.contains("panicked"), "zeroq {args:?} panicked: {err}");
    err
}

/// Bad requests fail at once, with a message that names the value and what to do.
#[test]
fn bad_mixed_precision_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::model("resnet20").display().to_string();
    let out = dir.path().join("o.onnx").display().to_string();
    let err = fails(&["quantize", &model, "-o", &out, "--size-budget", "12parsecs"]);
    assert!(err.contains("12parsecs") && err.contains("120KB"), "{err}");
    let err = fails(&["quantize", &model, "-o", &out, "--mp", "4", "--mp-bits", "4,9"]);
    assert!(err.contains("--mp-bits") && err.contains('9'), "{err}");
    let err = fails(&["sensitivity", &model, "-o", &out, "--bits", "1,4"]);
    assert!(err.contains("--bits") && err.contains('1'), "{err}");
    let err = fails(&["run", &model, "--out", dir.path().join("r").to_str().unwrap(), "--mp", "0"]);
    assert!(err.contains("--mp"), "{err}");
    assert!(!dir.path().join("r").exists(), "a refused run creates nothing");

    // A sensitivity table that is not one, or is inconsistent, is refused naming the file.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"model\": \"x\"}").unwrap();
    let err = fails(&["pareto", bad.to_str().unwrap()]);
    assert!(err.contains("bad.json") && err.contains("zeroq sensitivity"), "{err}");
    std::fs::write(&bad, r#"{"model":"x","bits":[2,4],"weight_range":"MinMax","images":1,"layers":[{"name":"a","op_type":"Conv","params":3,"omega":[1.0]}]}"#).unwrap();
    let err = fails(&["pareto", bad.to_str().unwrap()]);
    assert!(err.contains("layer 'a'") && err.contains("regenerate"), "{err}");
    assert!(!dir.path().join("o.onnx").exists());
}
