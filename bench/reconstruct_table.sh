#!/usr/bin/env bash
# Reconstruction table (QUANTIZATION.md): top-1 of the exported QDQ model in ONNX Runtime on the 10,000
# CIFAR-10 test images, per configuration and reconstruction method, with the reconstruction time.
# Calibration: one batch distilled with zeroq's defaults (seed 0), the same for every row.
# Usage: bench/reconstruct_table.sh MODEL_NAME ["CONFIGS"] ["METHODS"]
#   e.g. bench/reconstruct_table.sh resnet20 "W4A4 W4A8 W3A8 W2A4 MP4/8" "off bias adaround brecq"
# Env: ZQ (binary, default ./target/release/zeroq), DISTILLED (reuse a .npy), EXTRA (more quantize flags,
#      e.g. "--recon-iters 500").
# Prints markdown rows; keeps the reports under bench/runs/recon-<model>-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-resnet20}"
configs="${2:-W4A4 W4A8 W3A8 W2A4 MP4/8}"
methods="${3:-off bias adaround brecq}"
model="../shared/assets/models/cifar10/${name}_cifar10.onnx"
cifar="../shared/assets/cifar10/test_batch.bin"
zq=${ZQ:-./target/release/zeroq}
[[ -x $zq ]] || { echo "run cargo build --release first" >&2; exit 1; }
out="bench/runs/recon-${name}-$(date +%Y-%m-%d-%H%M)"
mkdir -p "$out"
distilled=${DISTILLED:-$out/distilled.npy}
[[ -f $distilled ]] || $zq distill "$model" -o "$distilled" --quiet --seed 0 > "$out/distill.txt"
read -r -a extra <<< "${EXTRA:-}"
fp32=$(python3 tests/scripts/ort_logits.py "$model" "$cifar" "$out/fp32.npy" 2>&1 | sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p')
echo "FP32 (ONNX Runtime): $fp32"
printf '| %s (FP32 %s) |' "$name" "$fp32"; for m in $methods; do printf ' %s |' "$m"; done; echo
printf '|---|'; for m in $methods; do printf -- '---:|'; done; echo
for cfg in $configs; do
  case $cfg in
    MP*) mp=${cfg#MP}; w=(--mp "${mp%/*}"); a=${cfg#*/} ;;
    W*) wb=${cfg#W}; wb=${wb%A*}; w=(--wbits "$wb"); a=${cfg#*A} ;;
  esac
  printf '| %s |' "$cfg"
  for m in $methods; do
    tag="$(echo "$cfg" | tr -d '/')-$m"
    $zq quantize "$model" -o "$out/$tag.onnx" "${w[@]}" --abits "$a" --distilled "$distilled" --reconstruct "$m" \
      --report "$out/$tag.json" --quiet "${extra[@]}" > /dev/null
    top1=$(python3 tests/scripts/ort_logits.py "$out/$tag.onnx" "$cifar" "$out/q.npy" 2>&1 | sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p')
    secs=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])).get('reconstruction'); print(f\" ({r['seconds']:.0f} s)\" if r else '')" "$out/$tag.json")
    printf ' %s%s |' "$top1" "$secs"
    rm -f "$out/$tag.onnx"
  done
  echo
done
rm -f "$out/q.npy" "$out/fp32.npy"
