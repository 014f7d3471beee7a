#!/usr/bin/env bash
# Distillation benchmark: `zeroq distill` vs the PyTorch reference (bench/distill_peer.py) with the same
# recipe (Gaussian init, seed 0, Adam lr 0.5, plateau 0.1/100/1e-4), same batch, iterations and threads, same
# machine, back to back, over several models; then ResNet20 eval and EfficientNet-Lite0 inference
# throughput (benches/forward.rs) vs ONNX Runtime.
# Prints one table: ms/iteration and peak RSS of both with the ratios zeroq/PyTorch, and the loss at the first
# and last iteration (bench/distill_table.py); keeps the result under bench/runs/.
# Needs: python3 -m pip install -r bench/requirements.txt, a release build (cargo build --release), and for the
# EfficientNet-Lite0 rows `zeroq zoo fetch efficientnet-lite0` once.
# Env: ITERS (default 30), THREADS (default 2), CASES (comma list, default
#      resnet20,resnet56,lite0-b8,lite0-b32,mobilenetv2-b8), EVAL=0 to skip the eval row,
#      ZEROQ (the binary, default ./target/release/zeroq).
set -euo pipefail
cd "$(dirname "$0")/.."
zeroq="${ZEROQ:-./target/release/zeroq}"
if [[ ! -x "$zeroq" ]]; then
    echo "distill.sh: $zeroq not found; run \`cargo build --release\` first" >&2
    exit 1
fi
mkdir -p bench/runs
out="bench/runs/distill-$(date +%Y-%m-%d-%H%M).json"
eval_flag=()
[[ "${EVAL:-1}" == 0 ]] && eval_flag=(--no-eval)
ZEROQ="$zeroq" python3 bench/distill_table.py --iters "${ITERS:-30}" --threads "${THREADS:-2}" \
    --cases "${CASES:-resnet20,resnet56,lite0-b8,lite0-b32,mobilenetv2-b8}" --out "$out" "${eval_flag[@]}"
