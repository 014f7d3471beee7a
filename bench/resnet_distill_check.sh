#!/usr/bin/env bash
# Distillation recipes on the CIFAR-10 ResNets: ZeroQ's (`--zeroq-recipe`) against zeroq's default, and
# what each gives W8A8 and W4A8 on the 10,000 test images (default `zeroq quantize` otherwise).
# Usage: bench/resnet_distill_check.sh [resnet20 resnet56 ...]. Prints markdown rows.
set -euo pipefail
cd "$(dirname "$0")/.."
zq=${ZQ:-./target/release/zeroq}
[[ -x $zq ]] || { echo "run cargo build --release first" >&2; exit 1; }
data="cifar10:../shared/assets/cifar10/test_batch.bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| model | recipe | iterations | seconds | final loss | BN within 10% | W8A8 | W4A8 | FP32 |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for name in "${@:-resnet20}"; do
  model="../shared/assets/models/cifar10/${name}_cifar10.onnx"
  for recipe in zeroq zeroq-default; do
    flags=(); [[ $recipe == zeroq ]] && flags=(--zeroq-recipe)
    $zq distill "$model" "${flags[@]}" -o "$tmp/d.npy" --quiet --json | tail -n 1 > "$tmp/d.json"
    for cfg in "8 8" "4 8"; do
      set -- $cfg
      $zq quantize "$model" --wbits "$1" --abits "$2" --distilled "$tmp/d.npy" -o "$tmp/q.onnx" --eval "$data" --quiet --json | tail -n 1 > "$tmp/w$1a$2.json"
    done
    python3 - "$tmp" "$name" "$recipe" <<'PY'
import json, sys
tmp, name, recipe = sys.argv[1:]
d = json.load(open(f"{tmp}/d.json"))
q8, q4 = (json.load(open(f"{tmp}/w{w}a8.json")) for w in (8, 4))
print(f"| {name} | {recipe} | {d['iterations'][0]} | {d['seconds']:.0f} | {d['loss_end'][0]:.3f} | {100 * d['channels_within_10pct']:.1f}% | {q8['quantized_top1']:.2f} | {q4['quantized_top1']:.2f} | {q8['fp32_top1']:.2f} |")
PY
  done
done
