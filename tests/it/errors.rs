//! Bad input gives a one-line error naming the problem, a non-zero exit, and no panic.

use std::path::Path;

use prost::Message;
use zeroq::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto};

use crate::common;

/// Runs zeroq and returns stderr, asserting failure without a panic and a single error line.
pub(crate) fn fails(args: &[&str]) -> String {
    let out = common::zeroq().args(args).output().expect("run zeroq");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_eq!(out.status.code(), Some(1), "exit code for {args:?}: {err}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "expected one error line for {args:?}: {err}");
    err
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn truncated_onnx_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::model("resnet20")).unwrap();
    let p = dir.path().join("truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    let err = fails(&["inspect", &s(&p)]);
    assert!(err.contains("truncated.onnx") && err.contains("not a valid ONNX model"), "{err}");
}

#[test]
fn garbage_onnx_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("garbage.onnx");
    std::fs::write(&p, b"this is not a protobuf \xff\xff\xff\xff").unwrap();
    let err = fails(&["inspect", &s(&p)]);
    assert!(err.contains("garbage.onnx") && err.contains("not a valid ONNX model"), "{err}");
}

#[test]
fn unsupported_op_names_op_and_node() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("custom.onnx");
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                name: "my_fancy_node".into(),
                op_type: "FancyAttention".into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![ValueInfoProto { name: "x".into(), ..Default::default() }],
            output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(&p, model.encode_to_vec()).unwrap();
    let err = fails(&["inspect", &s(&p)]);
    assert!(err.contains("FancyAttention") && err.contains("my_fancy_node"), "{err}");
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]));
    img.save(dir.path().join("a.png")).unwrap();
    std::fs::write(dir.path().join("labels.txt"), "a.png 3\n").unwrap();
    let data = format!("folder:{}", s(dir.path()));
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", &data]);
    assert!(err.contains("input 'input'") && err.contains("expected shape [N, 3, 32, 32]") && err.contains("got [1, 3, 8, 8]"), "{err}");
}

#[test]
fn missing_dataset_file_is_a_clear_error() {
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", "cifar10:/nonexistent/test_batch.bin"]);
    assert!(err.contains("/nonexistent/test_batch.bin"), "{err}");
}

#[test]
fn short_dataset_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::cifar_test()).unwrap();
    let p = dir.path().join("short.bin");
    std::fs::write(&p, &bytes[..3073 * 2 + 100]).unwrap();
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", &format!("cifar10:{}", s(&p))]);
    assert!(err.contains("short.bin") && err.contains("truncated"), "{err}");
}

#[test]
fn labels_naming_a_missing_image_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("labels.txt"), "cat_001.jpg 3\n").unwrap();
    let data = format!("folder:{}", s(dir.path()));
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", &data]);
    assert!(err.contains("labels.txt") && err.contains("line 1") && err.contains("cat_001.jpg") && err.contains("does not exist"), "{err}");
}

#[test]
fn inspect_json_reports_weight_layers() {
    let out = common::zeroq().args(["inspect", "--json", &s(&common::model("resnet20"))]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["batch_norms"], 19);
    assert_eq!(v["weight_layers"].as_array().unwrap().len(), 20);
    assert_eq!(v["total_params"], 268_336);
    assert_eq!(v["op_counts"]["Conv"], 19);
}
