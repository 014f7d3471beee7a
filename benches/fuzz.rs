//! Long fuzz run of every file reader (issue 14): the targets and seeds of `tests/it/fuzz.rs` (the short
//! run in the test suite), for `--iters N` mutated inputs each (default 1,000,000), one thread per target.
//! Measures inputs/s, inputs accepted, panics and the peak memory of one input; every panicking input is
//! written to `--findings DIR` (default `target/fuzz-findings`) as `<target>-<iteration>.bin`, ready to be
//! fixed and moved to `tests/fixtures/fuzz/`. One JSON object per target on stdout, a markdown table on
//! stderr.
//!
//! Run: `cargo bench --bench fuzz -- [--iters N] [--seed S] [--targets onnx,torch,npy,cifar10,labels]
//! [--findings DIR]`, or `bench/fuzz.sh`.

#[allow(dead_code)]
#[path = "../tests/it/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/it/fuzz.rs"]
mod fuzz_targets;

use std::path::PathBuf;

use zeroq::fuzz;

#[global_allocator]
static ALLOC: fuzz::TrackingAlloc = fuzz::TrackingAlloc;

/// Same cap as the short run: no single request above 256 MiB.
const CAP_BYTES: usize = 256 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let iters: usize = flag("--iters").map_or(1_000_000, |v| v.parse().expect("--iters N"));
    let seed: u64 = flag("--seed").map_or(14, |v| v.parse().expect("--seed S"));
    let findings = PathBuf::from(flag("--findings").unwrap_or_else(|| "target/fuzz-findings".into()));
    let wanted: Option<Vec<String>> = flag("--targets").map(|v| v.split(',').map(str::to_string).collect());
    let targets: Vec<fuzz::Target> =
        fuzz_targets::targets().into_iter().filter(|t| wanted.as_ref().is_none_or(|w| w.iter().any(|n| n == t.name))).collect();
    // The reports come back in target order; each thread fuzzes one reader, with its own seed.
    let reports: Vec<fuzz::Report> = std::thread::scope(|s| {
        let handles: Vec<_> = targets.iter().map(|t| s.spawn(move || fuzz::fuzz(t, iters, seed, CAP_BYTES))).collect();
        handles.into_iter().map(|h| h.join().expect("fuzz thread")).collect()
    });
    eprintln!("| reader | inputs | accepted | panics | peak MiB / input | inputs/s |\n|---|---|---|---|---|---|");
    for r in &reports {
        for f in &r.panics {
            std::fs::create_dir_all(&findings).expect("findings folder");
            let p = findings.join(format!("{}-{}.bin", r.target, f.iteration));
            std::fs::write(&p, &f.input).expect("write finding");
            eprintln!("{}: panic at iteration {}: {} -> {}", r.target, f.iteration, f.message, p.display());
        }
        eprintln!(
            "| {} | {} | {} | {} | {:.1} | {:.0} |",
            r.target,
            r.inputs,
            r.accepted,
            r.panics.len(),
            r.peak_bytes as f64 / (1 << 20) as f64,
            r.inputs_per_s()
        );
        println!(
            "{}",
            serde_json::json!({
                "target": r.target, "inputs": r.inputs, "accepted": r.accepted, "panics": r.panics.len(),
                "peak_bytes": r.peak_bytes, "seconds": r.seconds, "inputs_per_s": r.inputs_per_s(), "seed": seed,
            })
        );
    }
    if reports.iter().any(|r| !r.panics.is_empty()) {
        std::process::exit(1);
    }
}
