//! Inference throughput of one ONNX model on a fixed synthetic batch: the "eval images/s" rows of the
//! engine-speed table for models whose labelled data would make decoding part of the timing (ImageNet
//! JPEGs). The input is deterministic, in [−1, 1], the shape from the model; the plan is the inference
//! one `zeroq eval` uses (BN folded, own kernels). `bench/distill_table.py` runs it beside ONNX Runtime on
//! the same file and the same input, back to back.
//!
//! Prints one JSON line on stdout: median and min ms per batch, images/s from the median.
//! Run: `cargo bench --bench forward -- MODEL.onnx [--batch 32] [--iters 10] [--threads 2]`.

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use zeroq::engine::{device, Plan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let opt = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let model = args.first().filter(|a| !a.starts_with("--")).ok_or("usage: forward MODEL.onnx [--batch N] [--iters N] [--threads N]")?;
    let (batch, iters) = (opt("--batch", 32), opt("--iters", 10).max(1));
    device::set_threads(Some(opt("--threads", 2)));
    let graph = zeroq::onnx::load_onnx(model)?;
    let [c, h, w] = zeroq::distill::input_chw(&graph)?;
    let shape = [batch, c, h, w];
    let x: Vec<f32> = (0..batch * c * h * w).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let plan = Plan::for_eval(graph)?;
    let mut ms = Vec::with_capacity(iters);
    for i in 0..iters + 2 {
        let t = Instant::now();
        let y = plan.forward(Tensor::<4>::from_data(TensorData::new(x.clone(), shape), plan.device()))?;
        std::hint::black_box(y.to_host()?);
        if i >= 2 {
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let (median, min) = (ms[ms.len() / 2], ms[0]);
    println!(
        "{{\"batch\": {batch}, \"iters\": {iters}, \"zeroq_ms_per_batch\": {median:.2}, \"zeroq_min_ms_per_batch\": {min:.2}, \"zeroq_images_per_s\": {:.1}}}",
        batch as f64 * 1e3 / median
    );
    Ok(())
}
