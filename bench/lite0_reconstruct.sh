#!/usr/bin/env bash
# EfficientNet-Lite0 (zoo) on the 1,000 labelled images of ../shared/assets/imagenet-sample1000: FP32 vs
# quantized top-1 and agreement with FP32, per configuration, without and with reconstruction, calibrated
# on one default distilled batch (seed 0; the images only measure, they never calibrate).
# Usage: bench/lite0_reconstruct.sh ["CONFIGS"] ["METHODS"]   e.g. "W6A6 W4A8 MP4/8 W4A4" "off brecq"
# Env: ZQ (binary), DISTILLED (reuse a .npy), EXTRA (more quantize flags).
# Prints markdown rows; keeps the reports under bench/runs/lite0-recon-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
configs="${1:-W6A6 W4A8 MP4/8 W4A4}"
methods="${2:-off brecq}"
model=(--zoo efficientnet-lite0)
data="folder:../shared/assets/imagenet-sample1000"
zq=${ZQ:-./target/release/zeroq}
[[ -x $zq ]] || { echo "run cargo build --release first" >&2; exit 1; }
out="bench/runs/lite0-recon-$(date +%Y-%m-%d-%H%M)"
mkdir -p "$out"
distilled=${DISTILLED:-$out/distilled.npy}
[[ -f $distilled ]] || $zq distill "${model[@]}" -o "$distilled" --quiet --seed 0 > "$out/distill.txt"
read -r -a extra <<< "${EXTRA:-}"
$zq eval "${model[@]}" --data "$data" --quiet --save-logits "$out/fp32.npy" --json > /dev/null
echo "| config | reconstruction | FP32 top-1 | quantized top-1 | Δ | agreement | reconstruction time |"
echo "|---|---|---:|---:|---:|---:|---:|"
for cfg in $configs; do
  case $cfg in
    MP*) mp=${cfg#MP}; w=(--mp "${mp%/*}"); a=${cfg#*/} ;;
    W*) wb=${cfg#W}; wb=${wb%A*}; w=(--wbits "$wb"); a=${cfg#*A} ;;
  esac
  for m in $methods; do
    tag="$(echo "$cfg" | tr -d '/')-$m"
    $zq quantize "${model[@]}" "${w[@]}" --abits "$a" --distilled "$distilled" --reconstruct "$m" -o "$out/q.onnx" \
      --report "$out/$tag.json" --quiet "${extra[@]}" > /dev/null
    $zq eval "$out/q.onnx" --data "$data" --quiet --save-logits "$out/q.npy" --json > /dev/null
    python3 - "$out" "$tag" "$cfg" "$m" <<'PY'
import json, sys, numpy as np
out, tag, cfg, m = sys.argv[1:]
labels = [int(l.split()[1]) for l in open("../shared/assets/imagenet-sample1000/labels.txt") if l.strip()]
fp, q = np.load(f"{out}/fp32.npy").argmax(1), np.load(f"{out}/q.npy").argmax(1)
y = np.array(labels[: len(fp)])
r = json.load(open(f"{out}/{tag}.json")).get("reconstruction")
t = f"{r['seconds']:.0f} s ({r['config']['iters']} it/block)" if r else "–"
t1f, t1q = 100 * (fp == y).mean(), 100 * (q == y).mean()
print(f"| {cfg} | {m} | {t1f:.2f} | {t1q:.2f} | {t1q - t1f:+.2f} | {100 * (fp == q).mean():.1f}% | {t} |")
PY
  done
done
rm -f "$out/q.onnx" "$out/q.npy" "$out/fp32.npy"
