//! Logits against ONNX Runtime on the same images (tests/scripts/ort_logits.py; CI installs onnxruntime).

use std::process::Command;

use crate::common;

/// Max |zeroq − ORT| over the logits of 1,000 strided test images.
fn max_logit_diff(name: &str) -> f32 {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = dir.path().join("zeroq.npy");
    let theirs = dir.path().join("ort.npy");
    let data = format!("cifar10:{}", common::cifar_test().display());
    let st = common::zeroq()
        .args(["eval", "--quiet", "--limit", "1000", "--data", &data, "--save-logits"])
        .arg(&ours)
        .arg(common::model(name))
        .status()
        .expect("run zeroq");
    assert!(st.success(), "zeroq eval failed");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/ort_logits.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(common::model(name))
        .arg(common::cifar_test())
        .arg(&theirs)
        .args(["--limit", "1000"])
        .output()
        .expect("python3 must be installed (see .ci/run)");
    assert!(
        out.status.success(),
        "ort_logits.py failed (pip install -r tests/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, sa) = zeroq::data::npy::read_f32(&ours).expect("zeroq logits");
    let (b, sb) = zeroq::data::npy::read_f32(&theirs).expect("ort logits");
    assert_eq!(sa, sb, "logit shapes differ");
    assert_eq!(sa, vec![1000, 10]);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn resnet20_logits_match_onnxruntime() {
    let d = max_logit_diff("resnet20");
    assert!(d < 1e-3, "max abs logit difference {d}");
}

#[test]
fn resnet56_logits_match_onnxruntime() {
    let d = max_logit_diff("resnet56");
    assert!(d < 1e-3, "max abs logit difference {d}");
}
