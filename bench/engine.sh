#!/usr/bin/env bash
# Engine benchmark: zeroq vs PyTorch (forward, forward+input-backward, batch 32) and vs ONNX Runtime
# (eval images/s on the 10,000 CIFAR-10 test images), ResNet20, same machine, same run.
# Prints a table with the ratios and keeps the result under bench/runs/.
# Needs: python3 -m pip install -r bench/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-2}"
iters="${ITERS:-20}"
zq=$(cargo bench --quiet --bench engine -- --iters "$iters" --threads "$threads" | tail -n 1)
peer=$(python3 bench/engine_peer.py --threads "$threads" --batch 32 --iters "$iters" | tail -n 1)
mkdir -p bench/runs
out="bench/runs/engine-$(date +%Y-%m-%d-%H%M).json"
python3 - "$zq" "$peer" "$out" <<'PY'
import json, sys
z, p, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
rows = [
    ("forward, batch 32 (ms, median)", z["zeroq_forward_ms"], p["torch_forward_ms"], "PyTorch"),
    ("forward, batch 32 (ms, min)", z["zeroq_forward_min_ms"], p.get("torch_forward_min_ms", float("nan")), "PyTorch"),
    ("fwd + input-bwd, batch 32 (ms, median)", z["zeroq_fwd_bwd_ms"], p["torch_fwd_bwd_ms"], "PyTorch"),
    ("fwd + input-bwd, batch 32 (ms, min)", z["zeroq_fwd_bwd_min_ms"], p.get("torch_fwd_bwd_min_ms", float("nan")), "PyTorch"),
]
print(f"{'ResNet20':42} {'zeroq':>10} {'peer':>10} {'zeroq/peer':>11}")
for name, a, b, peer in rows:
    print(f"{name:42} {a:10.1f} {b:10.1f} {a / b:10.2f}x  ({peer}; lower is better)")
zi, oi = z["zeroq_images_per_s"], p["ort_images_per_s"]
print(f"{'eval 10k images (images/s)':42} {zi:10.0f} {oi:10.0f} {zi / oi:10.2f}x  (ONNX Runtime; higher is better)")
print(f"{'eval top-1 (%)':42} {z['zeroq_top1']:10.2f} {p['ort_top1']:10.2f}")
json.dump({"zeroq": z, "peer": p}, open(out, "w"), indent=1)
print(f"saved {out}")
PY
