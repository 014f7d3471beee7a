//! Engine throughput on ResNet20 (CIFAR-10), the numbers the engine issue asks for:
//! - ms per forward, batch 32 (inference plan: BN folded, hand-written conv);
//! - ms per forward + input-backward of the ZeroQ BN-statistics loss, batch 32 (autodiff plan);
//! - eval images/s over the 10,000 CIFAR-10 test images (batch 100, loading included).
//!
//! Prints a table on stderr and one JSON line on stdout. `bench/engine.sh` runs it beside PyTorch and
//! ONNX Runtime (bench/engine_peer.py) and prints the ratios.
//! Run: `cargo bench --bench engine -- [--iters N] [--threads N]`.

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use zeroq::data::{self, Preprocess};
use zeroq::distill::loss::{bn_statistics_loss, StatLoss};
use zeroq::engine::{device, input_gradient, Plan};

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let iters = opt("--iters", 20);
    device::set_threads(Some(opt("--threads", 2)));
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/assets");
    let model = root.join("models/cifar10/resnet20_cifar10.onnx");
    let graph = zeroq::onnx::load_onnx(&model)?;
    let batch = 32;
    let shape = [batch, 3, 32, 32];
    let x: Vec<f32> = (0..batch * 3 * 32 * 32).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();

    let inf = Plan::for_eval(graph.clone())?;
    let mut fwd = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let y = inf.forward(Tensor::<4>::from_data(TensorData::new(x.clone(), shape), inf.device()))?;
        let _ = y.to_host()?;
        if i >= 3 {
            fwd.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }

    let sites = zeroq::model::require_batch_norm(&graph, "the benchmark")?;
    let taps: Vec<usize> = sites.iter().map(|s| s.input).collect();
    let ad = Plan::new(graph, &device::autodiff())?;
    let mut bwd = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let g = input_gradient(&ad, &x, shape, &taps, |input, _, tapped| bn_statistics_loss(input.clone(), tapped, &sites, (&[0.0; 3], &[1.0; 3]), StatLoss::ZeroQ))?;
        std::hint::black_box(g.grad.len());
        if i >= 3 {
            bwd.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }

    let ds = data::Cifar10::open(root.join("cifar10/test_batch.bin"), Preprocess::cifar10())?;
    let idx = data::strided_subset(data::Dataset::len(&ds), None);
    let r = zeroq::eval::evaluate(&inf, &ds, &idx, 100, false, &mut |_, _| {})?;

    let (fm, fmin) = stats(fwd);
    let (bm, bmin) = stats(bwd);
    eprintln!("zeroq ResNet20, batch {batch}, {} threads", rayon::current_num_threads());
    eprintln!("  forward              {fm:8.1} ms median  {fmin:8.1} ms min");
    eprintln!("  forward+input-bwd    {bm:8.1} ms median  {bmin:8.1} ms min");
    eprintln!("  eval 10k images      {:8.0} images/s  top-1 {:.2}%", r.images_per_s, r.top1);
    println!(
        "{{\"zeroq_forward_ms\": {fm:.2}, \"zeroq_forward_min_ms\": {fmin:.2}, \"zeroq_fwd_bwd_ms\": {bm:.2}, \"zeroq_fwd_bwd_min_ms\": {bmin:.2}, \"zeroq_images_per_s\": {:.1}, \"zeroq_top1\": {:.2}}}",
        r.images_per_s, r.top1
    );
    Ok(())
}
