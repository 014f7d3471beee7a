//! Reconstruction on distilled data: it beats rounding to nearest on the real test set, the exported
//! learned integers run in ONNX Runtime exactly as zeroq simulated them, and the same seed gives the
//! same bytes.

use zeroq::data::Preprocess;
use zeroq::quant::{self, QuantConfig};
use zeroq::reconstruct::{self, Method, ReconstructConfig};

use crate::common;
use crate::quantize::top1;

fn quantized(wbits: u32, abits: u32) -> (zeroq::ir::Graph, quant::QuantizedModel) {
    let g = zeroq::onnx::load_onnx(common::model("resnet20")).expect("load");
    let d = common::distilled_resnet20();
    let cfg = QuantConfig { input_range: Some(Preprocess::cifar10().input_range()), ..QuantConfig::uniform(wbits, Some(abits)) };
    let q = quant::quantize(&g, &d.data, d.shape, &cfg).expect("quantize");
    (g, q)
}

fn w4a4() -> (zeroq::ir::Graph, quant::QuantizedModel) {
    quantized(4, 4)
}

/// W4A4 ResNet20, BRECQ with a short schedule (100 iterations per block): at least 2 points above round
/// to nearest on the 10,000 test images, no block's output further from FP32 than before, and ONNX Runtime gives zeroq's simulated prediction for ≥ 99.5% of the images.
#[test]
fn brecq_w4a4_beats_round_to_nearest_and_exports_exactly() {
    let (g, rtn) = w4a4();
    let d = common::distilled_resnet20();
    let mut q = w4a4().1;
    let cfg = ReconstructConfig { iters: 100, ..ReconstructConfig::new(Method::Brecq) };
    let r = reconstruct::reconstruct(&g, &mut q, &d.data, d.shape, &cfg, &mut |_| {}).expect("reconstruct");
    // Bias correction layer by layer first, then the blocks.
    assert_eq!(r.units.iter().filter(|u| u.method == Method::BiasCorrection).count(), 20);
    let blocks: Vec<_> = r.units.iter().filter(|u| u.method == Method::Brecq).collect();
    assert_eq!(blocks.len(), 11, "stem, nine residual blocks, classifier: {:?}", blocks.iter().map(|u| &u.layers).collect::<Vec<_>>());
    // A block whose learned rounding did not lower its error is left as it was (at 100 iterations after
    // bias correction, about a third of them); none gets worse.
    let kept = blocks.iter().filter(|u| u.kept).count();
    assert!(kept >= 3, "only {kept} of 11 blocks improved: {blocks:?}");
    for u in &blocks {
        assert!(u.error_after <= u.error_before && (u.kept || u.error_learned >= u.error_before), "{u:?}");
    }
    assert!(r.output_error.1 < r.output_error.0, "network output error {:?}", r.output_error);

    let (base, _) = top1(rtn.graph.clone());
    let (ours_top1, ours) = top1(q.graph.clone());
    assert!(ours_top1 >= base + 2.0, "BRECQ W4A4 top-1 {ours_top1} vs round to nearest {base}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w4a4_brecq.onnx");
    zeroq::export::write_onnx(&path, &zeroq::export::qdq::to_qdq(&q).expect("qdq")).expect("write");
    common::onnx_check(&path);
    let theirs = common::onnxruntime_cifar_predictions(&path);
    let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    assert!(agree >= 9_950, "ONNX Runtime agrees with the reconstructed model on {agree}/10000 predictions");
}

/// In a short run β reaches its end value halfway through ([`reconstruct::default_anneal`]), so that
/// the roundings are decided by the time they are hardened; AdaRound's schedule, annealing over every
/// iteration, leaves many of them open at 100 iterations per block.
#[test]
fn short_runs_decide_their_roundings_before_hardening() {
    let (g, _) = w4a4();
    let d = common::distilled_resnet20();
    let undecided = |anneal: Option<f32>| {
        let mut q = w4a4().1;
        let cfg = ReconstructConfig { iters: 100, anneal, ..ReconstructConfig::new(Method::Brecq) };
        let r = reconstruct::reconstruct(&g, &mut q, &d.data, d.shape, &cfg, &mut |_| {}).expect("reconstruct");
        let blocks: Vec<f64> = r.units.iter().filter(|u| u.method == Method::Brecq).map(|u| u.undecided).collect();
        (blocks.iter().sum::<f64>() / blocks.len() as f64, r.config.anneal)
    };
    let (short, used) = undecided(None);
    assert_eq!(used, Some(0.5), "the default anneal at 100 iterations");
    let (full, _) = undecided(Some(1.0));
    eprintln!("mean undecided share per block at 100 iterations: {short:.3} (default anneal), {full:.3} (anneal 1.0)");
    assert!(short < 0.05 && short < 0.5 * full, "undecided roundings: {short:.3} with β annealed over half the iterations, {full:.3} over all");
}

/// Each block learns its rounding from the FP32 network (FP32 weights and biases) and has its biases
/// corrected once the rounding is fixed ([`ReconstructConfig::bias_after`]); learning from biases
/// already corrected for round to nearest instead starts the block off the FP32 network and leaves the
/// learned rounding with a mean error nothing removes. Blocks with 2-bit layers are left out. W4A4, 100
/// iterations per block; measured: summed learned block error 0.204 against 0.245, network output error
/// 0.019 against 0.0245.
#[test]
fn blocks_learn_from_the_fp32_biases_and_are_corrected_after() {
    let g = zeroq::onnx::load_onnx(common::model("resnet20")).expect("load");
    let d = common::distilled_resnet20();
    let run = |bias_after: bool| {
        let mut q = w4a4().1;
        let cfg = ReconstructConfig { iters: 100, bias_after, ..ReconstructConfig::new(Method::Brecq) };
        let r = reconstruct::reconstruct(&g, &mut q, &d.data, d.shape, &cfg, &mut |_| {}).expect("reconstruct");
        let blocks: Vec<_> = r.units.iter().filter(|u| u.method == Method::Brecq).cloned().collect();
        (blocks, r.output_error.1)
    };
    let (after, err_after) = run(true);
    let (before, err_before) = run(false);
    let kept = |b: &[reconstruct::UnitRecord]| b.iter().filter(|u| u.kept).count();
    let learned: f64 = after.iter().map(|u| u.error_learned).sum();
    let learned_before: f64 = before.iter().map(|u| u.error_learned).sum();
    assert!(kept(&after) >= kept(&before), "blocks kept: {} with the biases corrected after learning, {} before", kept(&after), kept(&before));
    assert!(learned < learned_before && err_after < err_before, "learned block error {learned} vs {learned_before}, network output error {err_after} vs {err_before}");
    // Not at 2 bits (`BIAS_AFTER_MIN_BITS`): there the same model either way.
    let two = |bias_after: bool| {
        let (g, mut q) = quantized(2, 4);
        let cfg = ReconstructConfig { iters: 20, bias_after, ..ReconstructConfig::new(Method::Brecq) };
        reconstruct::reconstruct(&g, &mut q, &d.data, d.shape, &cfg, &mut |_| {}).expect("reconstruct").output_error
    };
    assert_eq!(two(true), two(false));
}

/// Bias correction never makes a layer's output error larger (the per-channel mean is the
/// least-squares shift) and lifts W4A4 above round to nearest.
#[test]
fn bias_correction_reduces_every_layers_error() {
    let (g, rtn) = w4a4();
    let d = common::distilled_resnet20();
    let mut q = w4a4().1;
    let r = reconstruct::reconstruct(&g, &mut q, &d.data, d.shape, &ReconstructConfig::new(Method::BiasCorrection), &mut |_| {}).expect("bias correction");
    assert_eq!(r.units.len(), 20);
    for u in &r.units {
        assert!(u.error_after <= u.error_before * (1.0 + 1e-4), "{:?}: {} → {}", u.layers, u.error_before, u.error_after);
    }
    let (base, _) = top1(rtn.graph);
    let (corrected, _) = top1(q.graph);
    assert!(corrected > base + 0.5, "bias-corrected W4A4 {corrected} vs round to nearest {base}");
}

/// `zeroq quantize` with reconstruction twice with the same seed writes the same bytes; the report
/// lists each block's error before and after; a bad setting is a clear error that writes nothing.
#[test]
fn reconstruction_is_deterministic_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let d = common::distilled_resnet20();
    zeroq::data::npy::write_f32(std::path::Path::new(&p("d.npy")), &d.data, &d.shape).unwrap();
    let model = common::model("resnet20").display().to_string();
    let args = |out: &str, report: &str| {
        vec!["quantize".to_string(), model.clone(), "--distilled".into(), p("d.npy"), "--wbits".into(), "4".into(), "--abits".into(), "4".into(), "--recon-iters".into(), "8".into(), "-o".into(), p(out), "--report".into(), p(report), "--quiet".into()]
    };
    for (o, r) in [("a.onnx", "a.json"), ("b.onnx", "b.json")] {
        let out = common::zeroq().args(args(o, r)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read(p("a.onnx")).unwrap(), std::fs::read(p("b.onnx")).unwrap(), "same seed, same bytes");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(p("a.json")).unwrap()).unwrap();
    let rec = &r["reconstruction"];
    assert_eq!(rec["config"]["method"], "Brecq", "W4A4 reconstructs by default with BRECQ");
    let units = rec["units"].as_array().expect("units");
    assert_eq!(units.iter().filter(|u| u["method"] == "Brecq").count(), 11);
    assert_eq!(units.iter().filter(|u| u["method"] == "BiasCorrection").count(), 20, "biases are corrected first");
    for u in units {
        assert!(u["error_before"].as_f64().unwrap() > 0.0 && u["error_after"].as_f64().unwrap() > 0.0, "{u}");
        let undecided = u["undecided"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&undecided), "{u}");
    }
    // The report states the learning rate and regulariser weight that ran (8 iterations: the short-run ends).
    assert!((rec["config"]["round_lr"].as_f64().unwrap() - 0.03).abs() < 1e-6, "{}", rec["config"]);
    assert!((rec["config"]["lambda"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{}", rec["config"]);

    let mut bad = args("c.onnx", "c.json");
    bad[9] = "0".into();
    let out = common::zeroq().args(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--recon-iters") && !err.contains("panicked"), "{err}");
    assert!(!dir.path().join("c.onnx").exists());
    let mut bad = args("c.onnx", "c.json");
    bad.extend(["--recon-lr".into(), "0".into()]);
    let out = common::zeroq().args(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--recon-lr") && !err.contains("panicked"), "{err}");
    assert!(!dir.path().join("c.onnx").exists());
}
