#!/usr/bin/env bash
# Distillation benchmark: `zeroq distill` vs the PyTorch reference (bench/distill_peer.py), ResNet20,
# batch 32, Gaussian init, seed 0, same iterations and threads, same machine, same run.
# Prints ms/iteration (with the ratio zeroq/PyTorch), loss start/end and the fraction of BN channels whose
# batch mean and std are within 10% of sigma of the running statistics; keeps the result under bench/runs/.
# Needs: python3 -m pip install -r bench/requirements.txt, and a release build (cargo build --release).
# Env: ITERS (default 500), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-2}"
iters="${ITERS:-500}"
zeroq=./target/release/zeroq
if [[ ! -x "$zeroq" ]]; then
    echo "distill.sh: $zeroq not found; run \`cargo build --release\` first" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
zq=$("$zeroq" distill ../shared/assets/models/cifar10/resnet20_cifar10.onnx -o "$tmp/d.npy" --json --quiet \
    --iters "$iters" --batch 32 --seed 0 --threads "$threads" | tail -n 1)
peer=$(python3 bench/distill_peer.py --threads "$threads" --batch 32 --iters "$iters" --seed 0 | tail -n 1)
mkdir -p bench/runs
out="bench/runs/distill-$(date +%Y-%m-%d-%H%M).json"
python3 - "$zq" "$peer" "$out" "$iters" "$threads" <<'PY'
import json, sys
z, p, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
iters, threads = int(sys.argv[4]), int(sys.argv[5])
zs, ze = z["loss_start"][0], z["loss_end"][0]
print(f"ResNet20 distillation, batch 32, {iters} iterations, {threads} threads")
print(f"{'':40} {'zeroq':>10} {'PyTorch':>10} {'zeroq/torch':>12}")
a, b = z["ms_per_iteration"], p["torch_ms_per_iter"]
print(f"{'ms/iteration (lower is better)':40} {a:10.1f} {b:10.1f} {a / b:11.2f}x")
print(f"{'loss, iteration 0':40} {zs:10.4g} {p['torch_loss_start']:10.4g}")
print(f"{'loss, last iteration':40} {ze:10.4g} {p['torch_loss_end']:10.4g}")
print(f"{'BN channels within 10% of sigma (%)':40} {100 * z['channels_within_10pct']:10.1f} "
      f"{100 * p['torch_within_10pct']:10.1f}")
print(f"{'  PyTorch, |m-mu|<=0.1|mu| variant (%)':40} {'':10} {100 * p['torch_within_10pct_rel_mean']:10.1f}")
print(f"{'  PyTorch, std only (%)':40} {'':10} {100 * p['torch_within_10pct_std_only']:10.1f}")
json.dump({"iters": iters, "threads": threads, "zeroq": z, "peer": p}, open(out, "w"), indent=1)
print(f"saved {out}")
PY
