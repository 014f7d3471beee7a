//! Paths to the shared assets. A missing asset fails the test with the path, never skips it.

use std::path::PathBuf;

/// `../shared/assets` relative to the crate root.
pub fn assets() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/assets");
    assert!(p.is_dir(), "shared assets not found at {} (tests need ../shared beside the checkout)", p.display());
    p
}

/// A CIFAR-10 ResNet ONNX model, e.g. `model("resnet20")`.
pub fn model(name: &str) -> PathBuf {
    let p = assets().join(format!("models/cifar10/{name}_cifar10.onnx"));
    assert!(p.is_file(), "missing model {}", p.display());
    p
}

/// The CIFAR-10 test split (binary format).
pub fn cifar_test() -> PathBuf {
    let p = assets().join("cifar10/test_batch.bin");
    assert!(p.is_file(), "missing dataset {}", p.display());
    p
}

/// ONNX Runtime's predicted class per record, from `<name>_cifar10.predictions.txt`.
pub fn reference_predictions(name: &str) -> Vec<u32> {
    let p = assets().join(format!("models/cifar10/{name}_cifar10.predictions.txt"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .collect()
}

/// The FP32 top-1 accuracy (percent) that `assets/MANIFEST.md` records for ONNX Runtime.
pub fn manifest_top1(display_name: &str) -> f64 {
    let p = assets().join("MANIFEST.md");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("| {display_name} |")) && l.contains('%'))
        .unwrap_or_else(|| panic!("no accuracy row for {display_name} in {}", p.display()));
    let cell = row.split('|').nth(2).expect("accuracy column");
    cell.trim().trim_end_matches('%').trim().parse().expect("accuracy value")
}

/// The `zeroq` binary built for these tests.
pub fn zeroq() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_zeroq"))
}

/// Deterministic pseudo-random values in [-1, 1) (tests need no RNG dependency).
pub fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// zeroq's default distillation on ResNet20 (as `zeroq distill` runs it: CIFAR-10 preprocessing's box
/// and prior) for two batches (seeds 0 and 1), computed once per test run and shared by the tests that
/// need distilled data.
pub fn distilled_resnet20() -> &'static zeroq::distill::Distilled {
    static D: std::sync::OnceLock<zeroq::distill::Distilled> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let g = zeroq::onnx::load_onnx(model("resnet20")).expect("load");
        let domain = zeroq::distill::InputDomain::from_preprocess(&zeroq::data::Preprocess::cifar10(), 3);
        let cfg = zeroq::distill::DistillConfig { batches: 2, domain: Some(domain), ..Default::default() };
        zeroq::distill::distill(&g, &cfg, &mut |_, _, _, _| {}).expect("distill")
    })
}

/// A small ONNX model (opset 17) with one float input `x` of shape `[N, c, h, w]` and one output:
/// for tests that need a model with or without particular operators.
pub fn tiny_onnx(name: &str, nodes: Vec<zeroq::onnx::proto::NodeProto>, initializer: Vec<zeroq::onnx::proto::TensorProto>, chw: [i64; 3], output: &str) -> Vec<u8> {
    use prost::Message;
    use zeroq::onnx::proto::*;
    let dim = |v: i64| Dimension { dim_value: Some(v), ..Default::default() };
    let mut dims = vec![Dimension { dim_param: Some("N".into()), ..Default::default() }];
    dims.extend(chw.map(dim));
    let input = ValueInfoProto {
        name: "x".into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: data_type::FLOAT, shape: Some(TensorShapeProto { dim: dims }) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            name: name.into(),
            node: nodes,
            initializer,
            input: vec![input],
            output: vec![ValueInfoProto { name: output.into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// ONNX Runtime's predicted class for each of the 10,000 CIFAR-10 test images with the model at `path`
/// (tests/scripts/ort_logits.py).
pub fn onnxruntime_cifar_predictions(path: &std::path::Path) -> Vec<u32> {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("ort.npy");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/ort_logits.py");
    let out = std::process::Command::new("python3").arg(script).arg(path).arg(cifar_test()).arg(&logits).output().expect("python3");
    assert!(out.status.success(), "ONNX Runtime failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let (l, shape) = zeroq::data::npy::read_f32(&logits).unwrap();
    assert_eq!(shape, vec![10_000, 10]);
    l.chunks(10).map(|r| (0..10).fold(0, |b, i| if r[i] > r[b] { i } else { b }) as u32).collect()
}

/// The model at `path` passes `onnx.checker` with the full check.
pub fn onnx_check(path: &std::path::Path) {
    let check = std::process::Command::new("python3")
        .args(["-c", "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)"])
        .arg(path)
        .output()
        .expect("python3");
    assert!(check.status.success(), "onnx.checker on {}: {}", path.display(), String::from_utf8_lossy(&check.stderr));
}
