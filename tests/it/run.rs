//! `zeroq run` end to end on ResNet20: every output exists and parses, the numbers in report.json agree
//! with `zeroq eval` on the exported model and with ONNX Runtime, and an existing folder is refused.

use std::process::Command;

use crate::common;

fn json_last_line(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON on the last line of stdout")
}

#[test]
fn run_writes_a_complete_trustworthy_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let model = common::model("resnet20").display().to_string();
    let cifar = common::cifar_test();
    let eval = format!("cifar10:{}", cifar.display());
    // Few distillation iterations: this checks the plumbing; distillation quality has its own tests.
    let args = ["run", &model, "--out", dir.to_str().unwrap(), "--mp", "4", "--abits", "8", "--iters", "30", "--recon-iters", "20", "--eval", &eval, "--limit", "1000", "--json"];
    let out = common::zeroq().args(args).output().expect("run zeroq");
    assert!(out.status.success(), "zeroq run failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout_report = json_last_line(&out);

    // Every file is there and parses.
    for f in zeroq::pipeline::files::ALL {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["config"], stdout_report["config"]);
    for f in ["sensitivity.json", "pareto.json"] {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(dir.join(f)).unwrap()).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    // Reconstruction runs (MP4), so the sensitivity that chose the bits scored bias-corrected layers.
    let sens: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("sensitivity.json")).unwrap()).unwrap();
    assert_eq!(sens["bias_corrected"], true, "MP with reconstruction measures bias-corrected Ω");
    let (d, shape) = zeroq::data::npy::read_f32(&dir.join("distilled.npy")).unwrap();
    assert_eq!(shape, vec![64, 3, 32, 32]);
    assert!(d.iter().all(|v| v.is_finite()));
    let png = image::open(dir.join("distilled.png")).expect("distilled.png decodes");
    assert!(png.width() > 100 && png.height() > 100);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("data:image/png;base64,"), "report.html embeds its charts and images");
    for external in ["src=\"http", "href=\"http", "url(http", "<script src", "<link"] {
        assert!(!html.contains(external), "report.html must be self-contained, found '{external}'");
    }

    // SVGs are well-formed XML, and the ONNX model runs in ONNX Runtime (a Python check).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/check_run_folder.py");
    let py = Command::new("python3").arg(script).arg(&dir).arg(&cifar).arg("1000").output().expect("python3");
    assert!(py.status.success(), "check_run_folder.py: {}", String::from_utf8_lossy(&py.stderr));
    let ort_top1: f64 = String::from_utf8_lossy(&py.stdout).trim().parse().expect("ORT top-1");

    // The report's numbers are what `zeroq eval` gives on the exported file and on the FP32 model.
    let acc = &report["accuracy"];
    assert_eq!(acc["images"], 1000);
    let q = common::zeroq().args(["eval", dir.join("quantized.onnx").to_str().unwrap(), "--data", &eval, "--limit", "1000", "--json"]).output().unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let qj = json_last_line(&q);
    assert_eq!(acc["quantized_top1"].as_f64(), qj["top1"].as_f64(), "report vs zeroq eval on quantized.onnx");
    let f = common::zeroq().args(["eval", &model, "--data", &eval, "--limit", "1000", "--json"]).output().unwrap();
    assert_eq!(acc["fp32_top1"].as_f64(), json_last_line(&f)["top1"].as_f64(), "report vs zeroq eval on the FP32 model");
    let qt = acc["quantized_top1"].as_f64().unwrap();
    assert!((qt - ort_top1).abs() <= 0.3, "ONNX Runtime top-1 {ort_top1} vs zeroq {qt} on the same 1,000 images");

    // Mixed precision within the MP4 budget, recorded per layer; agreement and stages reported.
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 20);
    let bits: f64 = layers.iter().map(|l| l["params"].as_f64().unwrap() * l["bits"].as_f64().unwrap()).sum();
    assert!(bits / 8.0 <= report["budget_bytes"].as_f64().unwrap() + 1e-9);
    assert!((report["quantized_size_bytes"].as_f64().unwrap() - bits / 8.0).abs() < 1e-6);
    let ag = &report["holdout_agreement"];
    assert_eq!(ag["n"], 32);
    assert!(ag["top1_match"].as_f64().unwrap() > 0.0 && ag["mean_kl"].as_f64().unwrap() >= 0.0);
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["load", "distill", "sensitivity", "pareto", "quantize", "reconstruct", "export", "agreement", "evaluate", "report"]);
    // MP4 has sub-8-bit layers, so BRECQ ran, block by block, and the HTML shows it.
    let rec = &report["reconstruction"];
    assert_eq!(rec["config"]["method"], "Brecq");
    assert_eq!(rec["units"].as_array().map(|u| u.iter().filter(|u| u["method"] == "Brecq").count()), Some(11));
    assert!(html.contains("Reconstruction") && html.contains("error before"), "report.html shows the reconstruction");

    // Running again into the same folder is refused without --force and changes nothing.
    let before = std::fs::read(dir.join("report.json")).unwrap();
    let again = common::zeroq().args(["run", &model, "--out", dir.to_str().unwrap(), "--iters", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.join("report.json")).unwrap(), before);
}
