//! The preprocessing a model expects: never guessed silently, recorded in the models zeroq writes, and
//! followed by distillation (valid input box, input prior) and by the input quantizer (through Pad).

use std::path::{Path, PathBuf};

use zeroq::data::Preprocess;
use zeroq::onnx::proto::{data_type, AttributeProto, NodeProto, TensorProto};

use crate::common;

/// A 224×224 model: input → Pad(1) → Conv 3→4 (3×3) → BatchNormalization → Relu → `y`. Like
/// EfficientNet's stem, the first Conv reads a Pad of the input, not the input itself.
fn tiny_224(dir: &Path) -> PathBuf {
    tiny_224_with(dir, false)
}

/// [`tiny_224`], with `classifier`: GlobalAveragePool and Flatten after the Relu, so `y` is `[N, 4]`
/// logits (what sensitivity, and so `zeroq run`, needs).
fn tiny_224_with(dir: &Path, classifier: bool) -> PathBuf {
    let f = |name: &str, dims: Vec<i64>, v: Vec<f32>| TensorProto { name: name.into(), dims, data_type: data_type::FLOAT, float_data: v, ..Default::default() };
    let w: Vec<f32> = (0..4 * 3 * 9).map(|i| ((i * 37 % 17) as f32 - 8.0) / 20.0).collect();
    let inits = vec![
        TensorProto { name: "pads".into(), dims: vec![8], data_type: data_type::INT64, int64_data: vec![0, 0, 1, 1, 0, 0, 1, 1], ..Default::default() },
        f("w", vec![4, 3, 3, 3], w),
        f("gamma", vec![4], vec![1.0, 0.5, 2.0, 1.5]),
        f("beta", vec![4], vec![0.1, -0.2, 0.0, 0.3]),
        f("mean", vec![4], vec![0.05, -0.1, 0.2, 0.0]),
        f("var", vec![4], vec![0.3, 0.5, 0.8, 0.2]),
    ];
    let node = |name: &str, op: &str, i: &[&str], o: &str| NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        ..Default::default()
    };
    let mut conv = node("stem", "Conv", &["xp", "w"], "c");
    conv.attribute = vec![AttributeProto { name: "kernel_shape".into(), r#type: 7, ints: vec![3, 3], ..Default::default() }];
    let mut nodes = vec![node("pad", "Pad", &["x", "pads"], "xp"), conv, node("bn", "BatchNormalization", &["c", "gamma", "beta", "mean", "var"], "b")];
    if classifier {
        nodes.extend([node("relu", "Relu", &["b"], "r"), node("gap", "GlobalAveragePool", &["r"], "g"), node("flat", "Flatten", &["g"], "y")]);
    } else {
        nodes.push(node("relu", "Relu", &["b"], "y"));
    }
    let p = dir.join(if classifier { "tiny224c.onnx" } else { "tiny224.onnx" });
    std::fs::write(&p, common::tiny_onnx("tiny224", nodes, inits, [3, 224, 224], "y")).unwrap();
    p
}

fn run(args: &[&str]) -> std::process::Output {
    common::zeroq().args(args).output().expect("run zeroq")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Per-channel (min, max, mean, std) of an NCHW batch.
fn channel_stats(data: &[f32], shape: &[usize]) -> Vec<(f32, f32, f64, f64)> {
    let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
    (0..c)
        .map(|ch| {
            let v: Vec<f32> = (0..n).flat_map(|b| data[(b * c + ch) * hw..(b * c + ch + 1) * hw].iter().copied()).collect();
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            (v.iter().copied().fold(f32::INFINITY, f32::min), v.iter().copied().fold(f32::NEG_INFINITY, f32::max), mean, std)
        })
        .collect()
}

#[test]
fn a_224_model_without_a_recorded_preset_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_224(dir.path());
    let out_npy = dir.path().join("d.npy");
    let out_onnx = dir.path().join("q.onnx");
    for args in [vec!["distill", "--iters", "2", "-o", &s(&out_npy), &s(&m)], vec!["quantize", "--calib", "gaussian", "-o", &s(&out_onnx), &s(&m)]] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        for want in ["[N, 3, 224, 224]", "--preset", "imagenet", "efficientnet-lite0", "--mean", "--std"] {
            assert!(err.contains(want), "{args:?}: error lacks '{want}': {err}");
        }
    }
    assert!(!out_npy.exists() && !out_onnx.exists(), "no output on refusal");
}

#[test]
fn a_model_zeroq_exported_keeps_its_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_224(dir.path());
    let exported = dir.path().join("exported.onnx");
    let o = run(&["export-onnx", "--quiet", "--preset", "efficientnet-lite0", "-o", &s(&exported), &s(&m)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = zeroq::onnx::load_onnx(&exported).expect("load export");
    assert_eq!(Preprocess::from_metadata(&g).expect("metadata parses"), Some(Preprocess::efficientnet_lite(224)));
    // Later commands need no --preset, and what they write keeps it too.
    let q = dir.path().join("q.onnx");
    let o = run(&["quantize", "--quiet", "--calib", "gaussian", "-o", &s(&q), &s(&exported)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gq = zeroq::onnx::load_onnx(&q).expect("load quantized");
    assert_eq!(Preprocess::from_metadata(&gq).unwrap(), Some(Preprocess::efficientnet_lite(224)));
    // A model that records a preprocessing other than the flag's gets the flag's (the user said so).
    let o = run(&["quantize", "--quiet", "--calib", "gaussian", "--preset", "imagenet", "-o", &s(&q), &s(&exported)]);
    assert!(o.status.success());
    assert_eq!(Preprocess::from_metadata(&zeroq::onnx::load_onnx(&q).unwrap()).unwrap(), Some(Preprocess::imagenet()));
}

/// The input quantizer's range and bits follow the graph input through the Pad: the preset's exact box
/// at 8 bits, whatever the calibration batch spans (here Gaussian noise of std 1, well outside
/// EfficientNet-Lite's [−0.99, 1.0]) and whatever --abits asks.
#[test]
fn the_input_quantizer_sees_through_pad_to_the_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_224(dir.path());
    let (q, report) = (dir.path().join("q.onnx"), dir.path().join("r.json"));
    let o = run(&["quantize", "--quiet", "--calib", "gaussian", "--abits", "6", "--reconstruct", "off", "--preset", "efficientnet-lite0", "--report", &s(&report), "-o", &s(&q), &s(&m)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let acts = r["activations"].as_array().expect("activations");
    let first = acts.iter().find(|a| a["tensor"] == "xp").unwrap_or_else(|| panic!("no quantizer on the padded input: {acts:?}"));
    let range = (first["range"][0].as_f64().unwrap(), first["range"][1].as_f64().unwrap());
    assert!((range.0 + 127.0 / 128.0).abs() < 1e-6 && (range.1 - 1.0).abs() < 1e-6, "range {range:?}");
    assert_eq!(first["bits"], 8, "the model input stays at 8 bits");
}

/// Distilled images stay inside the box pixels 0..255 map to, and start from the preset's prior:
/// N(0, 1) for CIFAR-10's mean/std normalisation, about N(−0.03, 0.46) for EfficientNet-Lite's (v − 127)/128.
#[test]
fn distillation_keeps_images_in_the_valid_box_and_starts_from_the_preset_prior() {
    let dir = tempfile::tempdir().unwrap();
    let resnet = s(&common::model("resnet20"));
    for preset in ["cifar10", "efficientnet-lite0"] {
        let pre = Preprocess::preset(preset).unwrap();
        let bounds = pre.input_box();
        let (mean, std) = pre.input_prior();
        // After 40 iterations: inside the box (ZeroQ's recipe leaves it: ResNet20's pixels reach [−6.2, 4.7]).
        let p = dir.path().join(format!("{preset}.npy"));
        let o = run(&["distill", "--quiet", "--iters", "40", "--batch", "4", "--no-early-stop", "--preset", preset, "-o", &s(&p), &resnet]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (data, shape) = zeroq::data::npy::read_f32(&p).unwrap();
        for (c, &(lo, hi, _, _)) in channel_stats(&data, &shape).iter().enumerate() {
            assert!(lo >= bounds[c].0 && hi <= bounds[c].1, "{preset} channel {c}: [{lo}, {hi}] outside {:?}", bounds[c]);
            assert!(hi - lo > 0.5 * (bounds[c].1 - bounds[c].0), "{preset} channel {c}: images collapsed to [{lo}, {hi}]");
        }
        // One iteration with early stop returns the best batch seen at a check: the initial one.
        let p0 = dir.path().join(format!("{preset}-0.npy"));
        let o = run(&["distill", "--quiet", "--iters", "1", "--batch", "16", "--preset", preset, "-o", &s(&p0), &resnet]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (data, shape) = zeroq::data::npy::read_f32(&p0).unwrap();
        for (c, &(_, _, m, sd)) in channel_stats(&data, &shape).iter().enumerate() {
            // Clipping to the box trims the tails a little (about 2.2σ either side here).
            assert!((m - mean[c] as f64).abs() < 0.03 * std[c] as f64 + 0.01, "{preset} channel {c}: mean {m} vs prior {}", mean[c]);
            assert!(sd > 0.9 * std[c] as f64 && sd < 1.01 * std[c] as f64, "{preset} channel {c}: std {sd} vs prior {}", std[c]);
        }
    }
}

/// On a 224² input, reconstruction (and the activation ranges before it) learns on the distilled images
/// plus a low-pass copy of each (σ 2 px), and only then: not with `--recon-no-lowpass`, not without
/// reconstruction, not on Gaussian calibration data.
#[test]
fn distilled_calibration_gets_low_pass_copies_when_reconstruction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_224(dir.path());
    let d = dir.path().join("d.npy");
    let o = run(&["distill", "--quiet", "--preset", "efficientnet-lite0", "--batch", "2", "--iters", "2", "-o", &s(&d), &s(&m)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let calibration = |extra: &[&str]| -> (u64, String) {
        let (q, report) = (dir.path().join("q.onnx"), dir.path().join("r.json"));
        let mut args = vec!["quantize", "--quiet", "--preset", "efficientnet-lite0", "--recon-iters", "2", "--report", report.to_str().unwrap(), "-o", q.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(m.to_str().unwrap());
        let o = run(&args);
        assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (r["calibration_images"].as_u64().unwrap(), r["calibration"].as_str().unwrap().to_string())
    };
    let (n, source) = calibration(&["--wbits", "4", "--distilled", d.to_str().unwrap()]);
    assert_eq!(n, 4, "2 distilled images and their copies: {source}");
    assert!(source.contains("2 low-pass copies (σ 2.00 px)"), "{source}");
    assert_eq!(calibration(&["--wbits", "4", "--recon-no-lowpass", "--distilled", d.to_str().unwrap()]).0, 2);
    assert_eq!(calibration(&["--wbits", "8", "--distilled", d.to_str().unwrap()]).0, 2, "no reconstruction at W8A8");
    let (n, source) = calibration(&["--wbits", "4", "--calib", "gaussian", "--calib-images", "3"]);
    assert_eq!((n, source.contains("low-pass")), (3, false), "{source}");

    // `zeroq run` does the same and says so in its report (it needs logits for the sensitivity).
    let out = dir.path().join("run");
    let classifier = tiny_224_with(dir.path(), true);
    let o = run(&["run", "--quiet", "--preset", "efficientnet-lite0", "--wbits", "4", "--batch", "2", "--iters", "2", "--recon-iters", "2", "--out", &s(&out), &s(&classifier)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["distillation"]["lowpass_sigma"], 2.0, "{}", r["distillation"]);
}
