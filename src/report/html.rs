//! The self-contained HTML report of `zeroq run`: one file, plots inline (SVG) and the distilled images
//! as a data URI, so it opens anywhere without a network or the files beside it.

use base64::Engine as _;

use crate::pareto::fmt_bytes;
use crate::pipeline::RunReport;

/// The pictures the report embeds.
pub struct Charts {
    /// Sensitivity per layer (SVG text).
    pub sensitivity: String,
    /// Pareto frontier (SVG text).
    pub pareto: String,
    /// Bits per layer (SVG text).
    pub bits: String,
    /// Distilled images (PNG bytes).
    pub distilled_png: Vec<u8>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the report.
pub fn render(r: &RunReport, c: &Charts) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("zeroq report: {} ({})", r.model, r.config);
    h += &format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n",
        esc(&title),
        STYLE
    );
    h += &format!("<h1>{}</h1>\n<p class=\"sub\">zeroq {} · data-free quantization (ZeroQ) · no training data was used</p>\n", esc(&title), esc(&r.zeroq_version));

    // Headline cards.
    h += "<div class=\"cards\">\n";
    let ratio = r.fp32_size_bytes / r.quantized_size_bytes.max(1.0);
    h += &card("Weight size", &format!("{} → {}", fmt_bytes(r.fp32_size_bytes), fmt_bytes(r.quantized_size_bytes)), &format!("{ratio:.1}× smaller (FP32 → {})", esc(&r.config)));
    let a = &r.holdout_agreement;
    h += &card("Agreement with FP32", &format!("{:.1}% top-1", a.top1_match), &format!("mean KL {:.2e} on {} held-out distilled images", a.mean_kl, a.n));
    if let Some(acc) = &r.accuracy {
        h += &card(
            "Accuracy (top-1)",
            &format!("{:.2}% → {:.2}%", acc.fp32_top1, acc.quantized_top1),
            &format!("FP32 → quantized ({:+.2}), {} images of {}", acc.quantized_top1 - acc.fp32_top1, acc.images, esc(&acc.dataset)),
        );
    } else {
        h += &card("Accuracy", "not measured", "pass --eval cifar10:FILE or folder:DIR to measure it");
    }
    h += &card("Time", &format!("{:.1} s", r.total_seconds), &format!("{} stages, details below", r.stages.len()));
    h += "</div>\n";

    // Bits per layer.
    h += "<h2>Bits per layer</h2>\n";
    match r.budget_bytes {
        Some(b) => {
            h += &format!(
                "<p>Mixed precision: the least total sensitivity (Σ Ω = {:.3e}) within a weight budget of {}, from candidate widths {:?}. Activations: {}.</p>\n",
                r.total_sensitivity,
                fmt_bytes(b),
                r.candidate_bits,
                r.abits.map_or("FP32".to_string(), |a| format!("{a}-bit"))
            )
        }
        None => {
            h += &format!("<p>Uniform weights (Σ Ω = {:.3e}). Activations: {}.</p>\n", r.total_sensitivity, r.abits.map_or("FP32".to_string(), |a| format!("{a}-bit")))
        }
    }
    h += &format!("<div class=\"chart\">{}</div>\n", strip_xml_decl(&c.bits));
    h += "<details><summary>Table of layers</summary><table><tr><th>#</th><th>layer</th><th>weights</th><th>bits</th></tr>\n";
    for (i, l) in r.layers.iter().enumerate() {
        h += &format!("<tr><td>{i}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n", esc(&l.name), l.params, l.bits);
    }
    h += "</table></details>\n";

    // Reconstruction.
    if let Some(rc) = &r.reconstruction {
        h += "<h2>Reconstruction</h2>\n";
        h += &format!(
            "<p>{} on the {} calibration images: {} iterations per block, batch {}. Output error relative to FP32 (Σ(ŷ − y)² / Σy² on the calibration images): network output {:.4} → {:.4}; {:.1} s.</p>\n",
            esc(method_label(rc.config.method)),
            rc.images,
            rc.config.iters,
            rc.config.batch.min(rc.images),
            rc.output_error.0,
            rc.output_error.1,
            rc.seconds
        );
        h += "<details><summary>Table of blocks</summary><table><tr><th>#</th><th>pass</th><th>layers</th><th>bits</th><th>error before</th><th>error after</th><th>undecided roundings</th><th>time (s)</th></tr>\n";
        for (i, u) in rc.units.iter().enumerate() {
            let bits = u.bits.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(" ");
            let after = if u.kept { format!("{:.4}", u.error_after) } else { format!("{:.4} (learned {:.4}: not kept)", u.error_after, u.error_learned) };
            h += &format!(
                "<tr><td>{i}</td><td>{}</td><td>{}</td><td class=\"num\">{bits}</td><td class=\"num\">{:.4}</td><td class=\"num\">{after}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td></tr>\n",
                u.method.name(),
                esc(&u.layers.join(", ")),
                u.error_before,
                if u.method == crate::reconstruct::Method::BiasCorrection { "–".to_string() } else { format!("{:.1}%", 100.0 * u.undecided) },
                u.seconds
            );
        }
        h += "</table></details>\n";
    }

    // Sensitivity and Pareto.
    h += "<h2>Sensitivity</h2>\n<p>Ω = mean KL divergence between the FP32 output and the output with only that layer's weights quantized, on the distilled calibration images (ZeroQ §3.2).</p>\n";
    h += &format!("<div class=\"chart\">{}</div>\n", strip_xml_decl(&c.sensitivity));
    h += "<h2>Size vs. sensitivity</h2>\n<p>The exact Pareto frontier: for each weight size, the least total sensitivity any per-layer assignment reaches (ZeroQ §3.3).</p>\n";
    h += &format!("<div class=\"chart\">{}</div>\n", strip_xml_decl(&c.pareto));

    // Distilled data.
    let d = &r.distillation;
    h += "<h2>Distilled data</h2>\n";
    h += &format!(
        "<p>{} calibration images and {} held-out images synthesised from the BatchNorm statistics ({} Adam iterations per batch, stopped once the BN match stopped improving; loss {}). {:.1}% of BN channels match their running mean and std within 10% of σ.</p>\n",
        d.calibration_images,
        d.holdout_images,
        d.iterations.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" and "),
        d.loss.iter().map(|(a, b)| format!("{a:.1} → {b:.3}")).collect::<Vec<_>>().join(", "),
        100.0 * d.channels_within_10pct
    );
    h += &format!(
        "<img class=\"grid\" alt=\"distilled calibration images\" src=\"data:image/png;base64,{}\">\n",
        base64::engine::general_purpose::STANDARD.encode(&c.distilled_png)
    );

    // Model.
    let s = &r.summary;
    h += "<h2>Model</h2>\n<table>\n";
    let shapes = |v: &[crate::model::TensorSummary]| v.iter().map(|t| format!("{} [{}]", esc(&t.name), t.shape.join(", "))).collect::<Vec<_>>().join("; ");
    h += &format!("<tr><th>model</th><td>{}</td></tr>\n", esc(&r.model));
    h += &format!("<tr><th>inputs</th><td>{}</td></tr>\n<tr><th>outputs</th><td>{}</td></tr>\n", shapes(&s.inputs), shapes(&s.outputs));
    h += &format!("<tr><th>opset</th><td>{}</td></tr>\n", s.opset);
    h += &format!("<tr><th>operators</th><td>{}</td></tr>\n", s.op_counts.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", "));
    h += &format!("<tr><th>BatchNorm nodes</th><td>{}</td></tr>\n", s.batch_norms);
    h += &format!("<tr><th>weight layers</th><td>{} ({} weights)</td></tr>\n", s.weight_layers.len(), s.total_params);
    h += &format!("<tr><th>exported file</th><td>quantized.onnx, {} (ONNX QDQ; sub-8-bit weights are stored in int8 containers)</td></tr>\n", fmt_bytes(r.onnx_file_bytes as f64));
    h += "</table>\n";

    // Stages.
    h += "<h2>Stages</h2>\n<table><tr><th>stage</th><th>time (s)</th><th>peak memory</th></tr>\n";
    for st in &r.stages {
        let mem = st.peak_rss_bytes.map_or("–".to_string(), |b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)));
        h += &format!("<tr><td>{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{mem}</td></tr>\n", esc(&st.name), st.seconds);
    }
    h += &format!("<tr><th>total</th><th class=\"num\">{:.2}</th><th></th></tr>\n</table>\n", r.total_seconds);
    h += "<p class=\"sub\">Peak memory is the process's peak resident set during the stage (Linux).</p>\n";
    h += "</body></html>\n";
    h
}

fn method_label(m: crate::reconstruct::Method) -> &'static str {
    use crate::reconstruct::Method;
    match m {
        Method::Off => "None",
        Method::BiasCorrection => "Bias correction",
        Method::AdaRound => "AdaRound (learned rounding, layer by layer)",
        Method::Brecq => "BRECQ (learned rounding per block) with LSQ activation steps and QDrop",
    }
}

fn card(title: &str, value: &str, note: &str) -> String {
    format!("<div class=\"card\"><div class=\"t\">{}</div><div class=\"v\">{}</div><div class=\"n\">{}</div></div>\n", esc(title), esc(value), note)
}

/// SVG documents embed in HTML without their XML declaration.
fn strip_xml_decl(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#222}\
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.sub{color:#666;font-size:13px;margin-top:0}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}\
.card{flex:1 1 200px;border:1px solid #ddd;border-radius:8px;padding:10px 14px;background:#fafafa}\
.card .t{font-size:12px;color:#666;text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:20px;font-weight:600;margin:4px 0}\
.card .n{font-size:12px;color:#555}table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.chart svg{max-width:100%;height:auto}img.grid{image-rendering:pixelated;max-width:100%}\
details{margin:8px 0}summary{cursor:pointer;color:#555}";
