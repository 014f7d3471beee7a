#!/usr/bin/env bash
# Accuracy table for the quantization issue: FP32 vs quantized top-1 on the 10,000 CIFAR-10 test images,
# for W8A8/W6A6/W4A8/W4A4, calibration on distilled data / Gaussian noise / real images, in the ZeroQ and
# the deployable placement. Usage: bench/quant_table.sh MODEL_NAME [PLACEMENTS] (e.g. resnet20 "zeroq deployable").
# Prints markdown rows; keeps the JSON reports under bench/runs/quant-<model>-<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-resnet20}"
placements="${2:-zeroq deployable}"
calibs="${CALIBS:-distilled gaussian real}"
model="../shared/assets/models/cifar10/${name}_cifar10.onnx"
data="cifar10:../shared/assets/cifar10/test_batch.bin"
zq=./target/release/zeroq
[[ -x $zq ]] || { echo "run cargo build --release first" >&2; exit 1; }
out="bench/runs/quant-${name}-$(date +%Y-%m-%d-%H%M)"
mkdir -p "$out"
distilled="$out/distilled.npy"
$zq distill "$model" -o "$distilled" --quiet --seed 0 > "$out/distill.txt"
echo "| model | placement | calibration | config | FP32 | quantized | Δ |"
echo "|---|---|---|---|---:|---:|---:|"
for placement in $placements; do
  for calib in $calibs; do
    case $calib in
      distilled) c=(--distilled "$distilled") ;;
      gaussian) c=(--calib gaussian) ;;
      real) c=(--calib "$data") ;;
    esac
    for cfg in "8 8" "6 6" "4 8" "4 4"; do
      set -- $cfg
      j=$($zq quantize "$model" -o "$out/q.onnx" --wbits "$1" --abits "$2" --placement "$placement" "${c[@]}" \
          --eval "$data" --json --quiet --report "$out/${placement}-${calib}-w$1a$2.json" | tail -n 1)
      python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"| $name | $placement | $calib | W$1A$2 | {j['fp32_top1']:.2f} | {j['quantized_top1']:.2f} | {j['quantized_top1']-j['fp32_top1']:+.2f} |\")" "$j"
    done
  done
done
rm -f "$out/q.onnx" "$distilled"
