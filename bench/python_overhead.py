#!/usr/bin/env python3
"""Overhead of the Python package against the CLI on the same job (target: under 2%).

Each job runs as `zeroq COMMAND ... --quiet` (a process: start, load, work, exit) and as the same call
from Python (`zeroq.COMMAND(..., progress=False)`, in this already running interpreter), alternately,
REPEATS times; the table gives the median wall time of each and the difference. The jobs, on the shared
ResNet20: a distillation (32 images x 100 iterations, no early stop), MP4 quantization (sensitivity
with the default candidates, then calibration and export) and W8A8 quantization (calibration and
export only, the shortest job: there a fixed per-call cost shows most). Also prints the one-off
`import zeroq` time. Keeps the result under bench/runs/.

Needs the package installed (`python3 -m pip install ./python`) and a release build of the binary.
Env: ZEROQ (the binary, default target/release/zeroq), THREADS (2), REPEATS (5).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

root = Path(__file__).resolve().parents[1]
zeroq_bin = os.environ.get("ZEROQ", str(root / "target/release/zeroq"))
threads = int(os.environ.get("THREADS", "2"))
repeats = int(os.environ.get("REPEATS", "5"))
model = root.parent / "shared/assets/models/cifar10/resnet20_cifar10.onnx"
for p in (zeroq_bin, model):
    if not Path(p).is_file():
        sys.exit(f"python_overhead.py: {p} not found (cargo build --release; ../shared beside the checkout)")

t0 = time.perf_counter()
import zeroq  # noqa: E402

import_s = time.perf_counter() - t0

tmp = Path(tempfile.mkdtemp(prefix="zeroq-bench-"))
distilled = tmp / "calib.npy"
subprocess.run([zeroq_bin, "--quiet", f"--threads={threads}", "distill", str(model), "-o", str(distilled), "--iters=50"], check=True, stdout=subprocess.DEVNULL)

jobs = [
    ("distill 32x100", ["distill", str(model), "-o", str(tmp / "cli.npy"), "--batch=32", "--iters=100", "--no-early-stop"],
     lambda: zeroq.distill(model, tmp / "py.npy", batch=32, iters=100, no_early_stop=True, threads=threads, progress=False)),
    ("quantize MP4", ["quantize", str(model), "-o", str(tmp / "cli_mp4.onnx"), "--mp=4", f"--distilled={distilled}"],
     lambda: zeroq.quantize(model, tmp / "py_mp4.onnx", mp=4, distilled=distilled, threads=threads, progress=False)),
    ("quantize W8A8", ["quantize", str(model), "-o", str(tmp / "cli_w8.onnx"), f"--distilled={distilled}"],
     lambda: zeroq.quantize(model, tmp / "py_w8.onnx", distilled=distilled, threads=threads, progress=False)),
]

rows = []
print(f"import zeroq: {import_s * 1e3:.0f} ms (once per process)")
print(f"{'job':<16} {'CLI (s)':>9} {'Python (s)':>11} {'overhead':>9}   (median of {repeats}, {threads} threads)")
for name, args, call in jobs:
    cli_s, py_s = [], []
    call()  # warm-up: page cache, allocator
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([zeroq_bin, "--quiet", f"--threads={threads}", *args], check=True, stdout=subprocess.DEVNULL)
        cli_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        call()
        py_s.append(time.perf_counter() - t)
    c, p = statistics.median(cli_s), statistics.median(py_s)
    rows.append({"job": name, "cli_s": c, "python_s": p, "overhead_pct": 100 * (p - c) / c, "cli_runs": cli_s, "python_runs": py_s})
    print(f"{name:<16} {c:>9.3f} {p:>11.3f} {100 * (p - c) / c:>+8.1f}%")

same = (tmp / "cli.npy").read_bytes() == (tmp / "py.npy").read_bytes() and (tmp / "cli_mp4.onnx").read_bytes() == (tmp / "py_mp4.onnx").read_bytes()
print("outputs identical:", same)
runs = root / "bench/runs"
runs.mkdir(exist_ok=True)
out = runs / f"python-overhead-{time.strftime('%Y-%m-%d-%H%M')}.json"
out.write_text(json.dumps({"threads": threads, "repeats": repeats, "import_s": import_s, "identical_outputs": same, "jobs": rows}, indent=1) + "\n")
print("kept", out.relative_to(root))
