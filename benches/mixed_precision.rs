//! Mixed precision vs. uniform and baseline bit assignments at the same weight size, on the 10,000
//! CIFAR-10 test images (the table the sensitivity/Pareto issue asks for).
//!
//! For a model: FP32; uniform W4A8 and the Pareto choice at the same size (MP4/8); random bit
//! assignments at that size (mean ± std over 5 seeds); first and last layer 8-bit with the rest at the
//! largest uniform width that fits; uniform W6A6 and MP6/6. Prints a markdown table on stderr and one
//! JSON object per row on stdout.
//!
//! Run: `cargo bench --bench mixed_precision -- --model resnet20 [--distilled FILE] [--placement
//! deployable|zeroq] [--weight-range minmax|mse] [--candidates 2,4,8] [--context] [--limit N]
//! [--threads N] [--rows all|mp]` (`mp`: only the MP rows and their uniform peers, for trying variants;
//! `--context`: Ω measured with the other layers at the budget's bits).

use std::time::Instant;

use zeroq::data::{self, Dataset, Preprocess};
use zeroq::distill::{init::SplitMix64, DistillConfig};
use zeroq::engine::{device, Plan};
use zeroq::pareto::{Budget, Frontier};
use zeroq::quant::{self, Placement, QuantConfig, WeightRange};
use zeroq::sensitivity::{self, Sensitivity, SensitivityConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Ctx {
    graph: zeroq::ir::Graph,
    calib: (Vec<f32>, [usize; 4]),
    test: data::Cifar10,
    idx: Vec<usize>,
    placement: Placement,
    weight_range: WeightRange,
}

impl Ctx {
    fn top1(&self, wbits: Vec<u32>, abits: Option<u32>) -> Res<f64> {
        let cfg = QuantConfig { wbits, abits, weight_range: self.weight_range, placement: self.placement, input_range: Some(Preprocess::cifar10().input_range()), ..QuantConfig::uniform(8, abits) };
        let q = quant::quantize(&self.graph, &self.calib.0, self.calib.1, &cfg)?;
        Ok(zeroq::eval::evaluate(&Plan::for_eval(q.graph)?, &self.test, &self.idx, 100, false, &mut |_, _| {})?.top1)
    }
}

fn size_bits(sens: &Sensitivity, bits: &[u32]) -> u64 {
    sens.layers.iter().zip(bits).map(|(l, &b)| l.params as u64 * b as u64).sum()
}

/// A random assignment from the candidates whose size is within 90–100% of `budget` (rejection sampling).
fn random_bits(sens: &Sensitivity, budget: u64, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    loop {
        let bits: Vec<u32> = sens.layers.iter().map(|_| sens.bits[(rng.next_u64() % sens.bits.len() as u64) as usize]).collect();
        let s = size_bits(sens, &bits);
        if s <= budget && s as f64 >= 0.9 * budget as f64 {
            return bits;
        }
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    device::set_threads(Some(opt("--threads").and_then(|v| v.parse().ok()).unwrap_or(2)));
    let name = opt("--model").unwrap_or_else(|| "resnet20".into());
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/assets");
    let graph = zeroq::onnx::load_onnx(root.join(format!("models/cifar10/{name}_cifar10.onnx")))?;
    let placement = match opt("--placement").as_deref() {
        Some("zeroq") => Placement::ZeroQ,
        _ => Placement::Deployable,
    };
    let weight_range = match opt("--weight-range").as_deref() {
        Some("mse") => WeightRange::Mse,
        _ => WeightRange::MinMax,
    };
    let candidates: Vec<u32> = opt("--candidates").unwrap_or_else(|| "2,4,8".into()).split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let only_mp = opt("--rows").as_deref() == Some("mp");
    // `--context`: measure each layer with the others at the budget's bits (interaction-aware Ω).
    let in_context = args.iter().any(|a| a == "--context");
    let calib = match opt("--distilled") {
        Some(p) => {
            let (d, s) = data::npy::read_f32(std::path::Path::new(&p))?;
            (d, [s[0], s[1], s[2], s[3]])
        }
        None => {
            let domain = zeroq::distill::InputDomain::from_preprocess(&zeroq::data::Preprocess::cifar10(), 3);
            let d = zeroq::distill::distill(&graph, &DistillConfig { domain: Some(domain), ..DistillConfig::default() }, &mut |_, _, _, _| {})?;
            (d.data, d.shape)
        }
    };
    let test = data::Cifar10::open(root.join("cifar10/test_batch.bin"), Preprocess::cifar10())?;
    let idx = data::strided_subset(test.len(), opt("--limit").and_then(|v| v.parse().ok()));
    let ctx = Ctx { graph, calib, test, idx, placement, weight_range };

    let t = Instant::now();
    let scfg = SensitivityConfig { bits: candidates.clone(), weight_range, ..SensitivityConfig::default() };
    let sens = sensitivity::measure(&ctx.graph, &name, &ctx.calib.0, ctx.calib.1, &scfg, &mut |_, _| {})?;
    let front = Frontier::new(&sens)?;
    let sens_s = t.elapsed().as_secs_f64();
    let params = sens.total_params();
    let fp32 = zeroq::eval::evaluate(&Plan::for_eval(ctx.graph.clone())?, &ctx.test, &ctx.idx, 100, false, &mut |_, _| {})?.top1;
    let label = format!(
        "{name}, {placement:?} placement, {weight_range:?} weights, candidates {candidates:?}{}, {} test images",
        if in_context { ", Ω in context" } else { "" },
        ctx.idx.len()
    );
    eprintln!("{label}; sensitivity {sens_s:.1} s; FP32 {fp32:.2}");
    eprintln!("| config | avg bits | top-1 | Δ FP32 | bits per layer |\n|---|---:|---:|---:|---|");
    let row = |what: &str, bits: &[u32], top1: String, delta: f64| {
        let avg = size_bits(&sens, bits) as f64 / params as f64;
        let b: Vec<String> = bits.iter().map(|b| b.to_string()).collect();
        eprintln!("| {what} | {avg:.2} | {top1} | {delta:+.2} | {} |", b.join(" "));
        println!("{}", serde_json::json!({ "model": name, "setup": label, "config": what, "avg_bits": avg, "top1": top1, "fp32": fp32, "bits": bits }));
    };

    for (w, a) in [(4u32, 8u32), (6, 6)] {
        let budget = Budget::BitsPerWeight(w as f64).to_bits(params);
        let uniform = vec![w; sens.layers.len()];
        let u = ctx.top1(uniform.clone(), Some(a))?;
        row(&format!("uniform W{w}A{a}"), &uniform, format!("{u:.2}"), u - fp32);
        let mp = if in_context {
            let c = SensitivityConfig { context_bits: Some(vec![w]), ..scfg.clone() };
            let s = sensitivity::measure(&ctx.graph, &name, &ctx.calib.0, ctx.calib.1, &c, &mut |_, _| {})?;
            Frontier::new(&s)?.best_within(budget)?
        } else {
            front.best_within(budget)?
        };
        let m = ctx.top1(mp.bits.clone(), Some(a))?;
        row(&format!("MP{w}/{a}"), &mp.bits, format!("{m:.2}"), m - fp32);
        if only_mp || w != 4 {
            continue;
        }
        let mut accs = Vec::new();
        for seed in 0..5 {
            let bits = random_bits(&sens, budget, seed);
            accs.push(ctx.top1(bits, Some(a))?);
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let sd = (accs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (accs.len() - 1) as f64).sqrt();
        let bits = random_bits(&sens, budget, 0);
        row(&format!("random bits at the MP{w} size (5 seeds: {})", accs.iter().map(|a| format!("{a:.2}")).collect::<Vec<_>>().join(", ")), &bits, format!("{mean:.2} ± {sd:.2}"), mean - fp32);
        // First and last layer at 8 bits, the rest at the largest uniform width that fits the budget.
        let n = sens.layers.len();
        let rest = (2..=8u32)
            .rev()
            .find(|&r| size_bits(&sens, &(0..n).map(|i| if i == 0 || i == n - 1 { 8 } else { r }).collect::<Vec<_>>()) <= budget)
            .unwrap_or(2);
        let fl: Vec<u32> = (0..n).map(|i| if i == 0 || i == n - 1 { 8 } else { rest }).collect();
        let f = ctx.top1(fl.clone(), Some(a))?;
        row(&format!("first/last 8-bit, rest {rest}-bit"), &fl, format!("{f:.2}"), f - fp32);
    }
    Ok(())
}
