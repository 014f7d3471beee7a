#!/usr/bin/env bash
# Sensitivity-pass benchmark: `zeroq sensitivity` on ResNet20 and ResNet56 (bits 2,4,8, one distilled
# batch of 32), continuing from the FP32 activations before each layer (prefix reuse, the default) vs.
# rerunning the whole network for every (layer, bit-width). Same data, same machine, same run; checks the
# two tables agree and prints the times and the speed-up. Keeps the result under bench/runs/.
# The distilled batch comes from a short distillation (50 iterations): the timing does not depend on how
# well it converged. Needs a release build (cargo build --release). Env: MODELS (default "resnet20
# resnet56"), THREADS (2), BITS (default 2,4,8), ZEROQ (the binary, default ./target/release/zeroq).
set -euo pipefail
cd "$(dirname "$0")/.."
zeroq="${ZEROQ:-./target/release/zeroq}"
[[ -x $zeroq ]] || { echo "sensitivity.sh: $zeroq not found; run \`cargo build --release\` first" >&2; exit 1; }
threads="${THREADS:-2}"
bits="${BITS:-2,4,8}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p bench/runs
out="bench/runs/sensitivity-$(date +%Y-%m-%d-%H%M).json"
echo "[" > "$out"
first=1
printf '%-10s %7s %6s %14s %14s %9s %16s\n' model layers bits "reuse (s)" "no reuse (s)" speed-up "max rel. diff"
for name in ${MODELS:-resnet20 resnet56}; do
    model="../shared/assets/models/cifar10/${name}_cifar10.onnx"
    "$zeroq" distill "$model" -o "$tmp/$name.npy" --quiet --seed 0 --iters 50 --threads "$threads" > /dev/null
    a=$("$zeroq" sensitivity "$model" --distilled "$tmp/$name.npy" --bits "$bits" -o "$tmp/a.json" --json --quiet --threads "$threads" | tail -n 1)
    b=$("$zeroq" sensitivity "$model" --distilled "$tmp/$name.npy" --bits "$bits" -o "$tmp/b.json" --json --quiet --threads "$threads" --no-prefix-reuse | tail -n 1)
    row=$(python3 - "$a" "$b" "$name" <<'PY'
import json, sys
a, b, name = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
sa, sb = a["sensitivity"], b["sensitivity"]
diff = max(abs(x - y) / max(abs(y), 1e-12) for la, lb in zip(sa["layers"], sb["layers"]) for x, y in zip(la["omega"], lb["omega"]))
print(f"{name:<10} {len(sa['layers']):>7} {','.join(map(str, sa['bits'])):>6} {a['seconds']:>14.2f} {b['seconds']:>14.2f} {b['seconds'] / a['seconds']:>8.2f}x {diff:>16.1e}")
print(json.dumps({"model": name, "layers": len(sa["layers"]), "bits": sa["bits"], "images": sa["images"], "reuse_s": a["seconds"], "no_reuse_s": b["seconds"], "max_rel_diff": diff}))
PY
)
    echo "$row" | head -n 1
    [[ $first == 1 ]] || echo "," >> "$out"
    first=0
    echo "$row" | tail -n 1 >> "$out"
done
echo "]" >> "$out"
echo "threads $threads; kept $out"
