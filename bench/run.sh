#!/usr/bin/env bash
# Whole-pipeline benchmark: `zeroq run MODEL --out DIR --mp 4` (distillation of a calibration and a held-out
# batch, sensitivity, Pareto MP4, quantize + calibrate, export, agreement; otherwise default settings) vs the
# PyTorch reference of the same pipeline (bench/run_peer.py), same threads, same machine, same run.
# `--mp 4` because zeroq run's default weights are uniform 8-bit (it still computes the sensitivity table and
# the frontier, so the stage times barely depend on it), while the peer always picks MP4.
# Prints per stage the seconds of both and the ratio zeroq/PyTorch, then the total; keeps the result
# under bench/runs/run-<date>.json. Stage names zeroq reports that the peer does not have (or the reverse)
# are listed with "-" on the other side and left out of the ratio.
# Needs: python3 -m pip install -r bench/requirements.txt, and a release build (cargo build --release).
# Env: THREADS (default 2), MODEL (resnet20|resnet32|resnet44|resnet56, default resnet20),
#      ITERS (distillation iterations per batch, default 500, passed to both),
#      PEER_ONLY=1 (run only the PyTorch half, e.g. without a release build), ZEROQ (the binary, default
#      ./target/release/zeroq), KEEP=DIR (keep zeroq's output folder there, e.g. to look at report.html).
# Benchmark on an idle machine: under CPU contention PyTorch's OpenMP active wait collapses (~10x slower at
# 2 threads); OMP_WAIT_POLICY=PASSIVE (passed through) avoids it. The peer records the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-2}"
model="${MODEL:-resnet20}"
iters="${ITERS:-500}"
peer_only="${PEER_ONLY:-0}"
zeroq="${ZEROQ:-./target/release/zeroq}"
if [[ $peer_only != 1 && ! -x "$zeroq" ]]; then
    echo "run.sh: $zeroq not found; run \`cargo build --release\` first (or PEER_ONLY=1 for the PyTorch half)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
zq='null'
if [[ $peer_only != 1 ]]; then
    zq=$("$zeroq" run "../shared/assets/models/cifar10/${model}_cifar10.onnx" --out "$tmp/out" --json --quiet \
        --mp 4 --iters "$iters" --seed 0 --threads "$threads" | tail -n 1)
    if [[ -n "${KEEP:-}" ]]; then rm -rf "$KEEP"; cp -r "$tmp/out" "$KEEP"; fi
fi
peer=$(python3 bench/run_peer.py --model "$model" --threads "$threads" --iters "$iters" --seed 0 | tail -n 1)
mkdir -p bench/runs
out="bench/runs/run-$(date +%Y-%m-%d-%H%M).json"
python3 - "$zq" "$peer" "$out" "$model" "$threads" "$iters" <<'PY'
import json, sys
z, p, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
model, threads, iters = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
# zeroq: "stages": [{"name": ..., "seconds": ...}, ...]; peer: "stages": {name: seconds or null}
zs = {}
for s in (z or {}).get("stages", []):
    name = str(s.get("name", "?"))
    if s.get("seconds") is not None:
        zs[name] = zs.get(name, 0.0) + float(s["seconds"])
ps = {k: v for k, v in p["stages"].items()}
names = list(zs) + [k for k in ps if k not in zs]
fmt = lambda v: f"{v:10.2f}" if v is not None else f"{'-':>10}"
print(f"{model} whole pipeline (zeroq run vs PyTorch), {iters} distillation iterations, {threads} threads")
print(f"{'stage':16} {'zeroq s':>10} {'PyTorch s':>10} {'zeroq/torch':>12}")
for n in names:
    a, b = zs.get(n), ps.get(n)
    r = f"{a / b:11.2f}x" if a is not None and b else f"{'-':>12}"
    print(f"{n:16} {fmt(a)} {fmt(b)} {r}")
zt = (z or {}).get("total_seconds")
pt = p["total_s"]
r = f"{zt / pt:11.2f}x" if zt is not None and pt else f"{'-':>12}"
print(f"{'total':16} {fmt(zt)} {fmt(pt)} {r}")
# The like-for-like figure: only the stages both pipelines run (zeroq's reconstruction, which the peer
# lacks, runs by default whenever a layer is below 8 bits).
both = [n for n in names if zs.get(n) is not None and ps.get(n) is not None]
zb, pb = sum(zs[n] for n in both), sum(ps[n] for n in both)
if zs and pb:
    print(f"{'total, both run':16} {fmt(zb)} {fmt(pb)} {zb / pb:11.2f}x")
if z:
    bits = [l.get("bits") for l in z.get("layers", []) if isinstance(l, dict)]
    ag = z.get("holdout_agreement") or {}
    print(f"zeroq:   {z.get('config', '?')}, bits {bits}; held-out agreement: top-1 match "
          f"{ag.get('top1_match', float('nan')):.2f}%, mean KL {ag.get('mean_kl', float('nan')):.4g}")
print(f"PyTorch: MP4 bits {p['mp_bits']}; held-out agreement: top-1 match "
      f"{p['agreement']['top1_match']:.2f}%, mean KL {p['agreement']['mean_kl']:.4g}; torch import "
      f"{p['python_import_s']:.2f} s not counted; load average {p['loadavg_start']:.1f} -> "
      f"{p['loadavg_end']:.1f} on {p['cpus']} CPUs")
print("(the two distil different random batches, so bits and agreement can differ; the PyTorch export "
      "writes float weights, and its sensitivity reruns the whole network for each layer)")
json.dump({"model": model, "iters": iters, "threads": threads, "peer_only": z is None,
           "zeroq": z, "peer": p}, open(out, "w"), indent=1)
print(f"saved {out}")
PY
