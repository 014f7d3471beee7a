//! FP32 evaluation of every shared CIFAR-10 ResNet on all 10,000 test images: the accuracy in
//! assets/MANIFEST.md exactly, and ONNX Runtime's prediction for ≥ 99.9% of images.

use zeroq::data::{self, Preprocess};
use zeroq::engine::Plan;

use crate::common;

fn check(name: &str, display: &str) {
    let g = zeroq::onnx::load_onnx(common::model(name)).expect("load model");
    let plan = Plan::for_eval(g).expect("plan");
    let ds = data::Cifar10::open(common::cifar_test(), Preprocess::cifar10()).expect("dataset");
    let idx = data::strided_subset(data::Dataset::len(&ds), None);
    let r = zeroq::eval::evaluate(&plan, &ds, &idx, 100, false, &mut |_, _| {}).expect("eval");
    assert_eq!(r.n, 10_000);
    let want = common::manifest_top1(display);
    assert_eq!(format!("{:.2}", r.top1), format!("{want:.2}"), "{name}: top-1 {} vs manifest {want}", r.top1);
    let reference = common::reference_predictions(name);
    assert_eq!(reference.len(), 10_000, "{name}: reference predictions");
    let agree = r.predictions.iter().zip(&reference).filter(|(a, b)| a == b).count();
    assert!(agree >= 9_990, "{name}: only {agree}/10000 predictions agree with ONNX Runtime's");
}

#[test]
fn resnet20_matches_manifest() {
    check("resnet20", "ResNet20");
}

#[test]
fn resnet32_matches_manifest() {
    check("resnet32", "ResNet32");
}

#[test]
fn resnet44_matches_manifest() {
    check("resnet44", "ResNet44");
}

#[test]
fn resnet56_matches_manifest() {
    check("resnet56", "ResNet56");
}

/// The eval plan (Relu/Clip and residual Adds fused into the Convs) gives exactly the unfused plan's
/// logits, with every ReLU and residual Add of ResNet20 inside a Conv.
#[test]
fn fused_eval_plan_matches_the_unfused_one_bit_for_bit() {
    let g = zeroq::onnx::load_onnx(common::model("resnet20")).expect("load model");
    let ds = data::Cifar10::open(common::cifar_test(), Preprocess::cifar10()).expect("dataset");
    let (x, shape) = data::load_batch(&ds, &(0..16).collect::<Vec<_>>()).expect("batch");
    let plain = Plan::for_inference(g.clone()).expect("plan");
    let fused = Plan::for_eval(g).expect("plan");
    let count = |p: &Plan, f: fn(&zeroq::ir::Op) -> bool| p.graph().nodes.iter().filter(|n| f(&n.op)).count();
    assert_eq!(count(&plain, |o| matches!(o, zeroq::ir::Op::Relu)), 19);
    assert_eq!(count(&fused, |o| matches!(o, zeroq::ir::Op::Relu)), 0, "every ReLU follows a Conv or a residual Add");
    assert_eq!(count(&fused, |o| matches!(o, zeroq::ir::Op::FusedConv { residual: true, .. })), 9, "one residual Add per block");
    let a = zeroq::quant::predict(&plain, &x, shape, 16).expect("predict");
    let b = zeroq::quant::predict(&fused, &x, shape, 16).expect("predict");
    assert_eq!(a, b);
}
