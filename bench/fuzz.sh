#!/usr/bin/env bash
# Long fuzz run of zeroq's file readers (ONNX, PyTorch checkpoint, .npy, CIFAR-10, labels.txt): ITERS
# mutated inputs per reader (default 1,000,000), one thread per reader, seeded from ../shared/assets and
# tiny hand-made files (benches/fuzz.rs, the same targets as the short run in tests/it/fuzz.rs). Pass: no
# panic and no single allocation above 256 MiB. Keeps the per-reader JSON under bench/runs/ and writes any
# panicking input to target/fuzz-findings/. Env: ITERS (1000000), SEED (14), TARGETS (all; e.g. onnx,npy).
# Run it on an otherwise idle machine: the numbers are inputs per second.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--iters "${ITERS:-1000000}" --seed "${SEED:-14}")
[[ -n "${TARGETS:-}" ]] && args+=(--targets "$TARGETS")
mkdir -p bench/runs
out="bench/runs/fuzz-$(date +%Y-%m-%d-%H%M).json"
cargo bench --bench fuzz -- "${args[@]}" > "$out"
echo "fuzz.sh: results in $out" >&2
