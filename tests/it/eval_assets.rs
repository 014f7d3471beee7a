//! FP32 evaluation of every shared CIFAR-10 ResNet on all 10,000 test images: the accuracy in
//! assets/MANIFEST.md exactly, and ONNX Runtime's prediction for ≥ 99.9% of images.

use zeroq::data::{self, Preprocess};
use zeroq::engine::Plan;

use crate::common;

fn check(name: &str, display: &str) {
    let g = zeroq::onnx::load_onnx(common::model(name)).expect("load model");
    let plan = Plan::for_inference(g).expect("plan");
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
