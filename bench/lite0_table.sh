#!/usr/bin/env bash
# EfficientNet-Lite0 on the 1,000 labelled ImageNet images of ../shared/assets/imagenet-sample1000: FP32 vs
# quantized top-1 and top-1 agreement with FP32, for W8A8, W6A6 and MP4/8 (default `zeroq quantize`
# otherwise), calibrated on data distilled by ZeroQ's recipe (`--zeroq-recipe`, the README's former zoo
# settings) and by zeroq's (the defaults). The images only measure; they never calibrate.
# Usage: bench/lite0_table.sh [MODEL_ARGS...]   (default: --zoo efficientnet-lite0; e.g. an ONNX path and
# --preset efficientnet-lite0 to show the file path). Env: OLD (default "--zeroq-recipe --batch 12 --iters 420"),
# NEW (default: none, zeroq's defaults, 12 × 420 at most on Lite0): the distill flags of each recipe, the same
# budget by default. About an hour on 2 cores (set both to "--batch 8 --iters 100" for a quick look).
# Prints markdown rows; keeps the reports under bench/runs/lite0-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
model=("$@")
[[ ${#model[@]} -gt 0 ]] || model=(--zoo efficientnet-lite0)
data="folder:../shared/assets/imagenet-sample1000"
zq=${ZQ:-./target/release/zeroq}
[[ -x $zq ]] || { echo "run cargo build --release first" >&2; exit 1; }
out="bench/runs/lite0-$(date +%Y-%m-%d-%H%M)"
mkdir -p "$out"
read -r -a old <<< "${OLD:---zeroq-recipe --batch 12 --iters 420}"
read -r -a new <<< "${NEW:-}"
$zq eval "${model[@]}" --data "$data" --quiet --save-logits "$out/fp32.npy" --json | tail -n 1 > "$out/fp32.json"
echo "| distillation | distill (s) | BN within 10% | config | FP32 top-1 | quantized top-1 | Δ | agreement |"
echo "|---|---:|---:|---|---:|---:|---:|---:|"
for recipe in old new; do
  if [[ $recipe == old ]]; then flags=("${old[@]}"); else flags=("${new[@]}"); fi
  $zq distill "${model[@]}" "${flags[@]}" -o "$out/$recipe.npy" --quiet --json | tail -n 1 > "$out/distill-$recipe.json"
  for cfg in "--wbits 8 --abits 8" "--wbits 6 --abits 6" "--mp 4 --abits 8"; do
    read -r -a c <<< "$cfg"
    tag=$(echo "$cfg" | tr -d ' -')
    $zq quantize "${model[@]}" "${c[@]}" --distilled "$out/$recipe.npy" -o "$out/q.onnx" --quiet --report "$out/$recipe-$tag.json"
    $zq eval "$out/q.onnx" --data "$data" --quiet --save-logits "$out/q.npy" --json | tail -n 1 > "$out/eval-$recipe-$tag.json"
    python3 - "$out" "$recipe" "$cfg" "${flags[*]:-defaults}" <<'PY'
import json, sys, numpy as np
out, recipe, cfg, flags = sys.argv[1:]
labels = [int(l.split()[1]) for l in open("../shared/assets/imagenet-sample1000/labels.txt") if l.strip()]
fp, q = np.load(f"{out}/fp32.npy").argmax(1), np.load(f"{out}/q.npy").argmax(1)
y = np.array(labels[: len(fp)])
d = json.load(open(f"{out}/distill-{recipe}.json"))
name = {"--wbits 8 --abits 8": "W8A8", "--wbits 6 --abits 6": "W6A6", "--mp 4 --abits 8": "MP4/8"}[cfg]
t1f, t1q = 100 * (fp == y).mean(), 100 * (q == y).mean()
print(f"| {recipe}: {flags} | {d['seconds']:.0f} | {100 * d['channels_within_10pct']:.1f}% | {name} | {t1f:.2f} | {t1q:.2f} | {t1q - t1f:+.2f} | {100 * (fp == q).mean():.1f}% |")
PY
  done
done
rm -f "$out/q.onnx" "$out/q.npy" "$out"/*.npy
