#!/usr/bin/env python3
"""PyTorch reference of the whole ZeroQ pipeline (CPU), to compare against `zeroq run MODEL --out DIR`.

Same recipe as shared/DESIGN.md and zeroq's defaults, each stage timed on its own (wall-clock seconds):
  load         build the akamaster CIFAR ResNet from its .th checkpoint (engine_peer.load_resnet).
  distill      two batches of 32 (torch seeds seed and seed+1): x ~ N(0, 1), Adam(lr 0.5) on x, ITERS
               iterations each, ReduceLROnPlateau(factor 0.1, patience 100, min_lr 1e-4) stepped with the
               loss; ZeroQ BN-statistics loss (engine_peer.ZeroQLoss), as in distill_peer.py. Batch 0
               calibrates and measures sensitivity; batch 1 is held out for the agreement.
  sensitivity  BN folded into the convs (fp32, as zeroq's fold_batch_norm); for every Conv/Linear and bits
               in {2, 4, 8}: only that layer's weights fake-quantized per output channel (asymmetric
               min/max, range widened to contain 0, signed grid, round half to even), the WHOLE network
               rerun on batch 0 (no prefix reuse, as the ZeroQ reference code); reference = the folded
               FP32 model. Omega = mean over images of KL(softmax(fp32) || softmax(quantized)) (float64).
  pareto       exact: the non-dominated (size, sum Omega) set per layer prefix (as src/pareto.rs), then the
               least sum Omega with sum params_i*bits_i <= 4 * sum params_i (MP4).
  quantize     weights fake-quantized per channel at the chosen bits (BN folded); 8-bit per-tensor
               asymmetric min/max activation ranges calibrated on batch 0 (one pass, FP32 activations,
               quantized weights) at the input of every Conv/Linear; the classifier's input takes the range
               of the pre-pool tensor (zeroq's range_source); biases rounded to int32 at scale s_x*s_w[c]
               (zeroq's quantize_biases). Activations use torch.fake_quantize_per_tensor_affine, so that the
               export below writes QuantizeLinear/DequantizeLinear pairs.
  export       torch.onnx.export (TorchScript exporter, dynamo=False, opset 17) of the fake-quantized model
               to a temporary file: activation QDQ pairs, weights as dequantized float constants
               (zeroq writes int8 weights + DequantizeLinear; the work is comparable, not identical).
               --no-export skips it (reported as null).
  agreement    FP32 (unfolded) vs quantized on the held-out batch 1: top-1 match rate (%) and mean KL.
The time to import torch is reported separately (python_import_s), outside the stages and total.
The load average at the start and the end is reported: on a busy machine, libgomp's default active wait
makes PyTorch at 2 threads up to ~10x slower (measured: distillation 2272 vs 221 ms/iteration with
OMP_WAIT_POLICY=PASSIVE at load ~6 on 2 CPUs); set OMP_WAIT_POLICY=PASSIVE there, or benchmark on an idle one.
A human summary goes to stderr; one JSON object is the last line of stdout.

Usage (from the repo root):
  python3 bench/run_peer.py [--model resnet20|resnet32|resnet44|resnet56] [--threads 2] [--iters 500]
                            [--seed 0] [--no-export]
"""
import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import copy  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_peer import ASSETS, ZeroQLoss, load_resnet  # noqa: E402

_IMPORT_S = time.perf_counter() - _T_START
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BITS = (2, 4, 8)
ABITS = 8
BATCH = 32


# ---------------------------------------------------------------- quantization (DESIGN.md "Quantization")
def signed_range(bits):
    half = 1 << (bits - 1)
    return -half, half - 1


def qparams(lo, hi, bits):
    """Asymmetric (scale, zero_point) tensors for ranges [lo, hi] (same shape), as zeroq's
    QParams::asymmetric: range widened to contain 0; a zero-width range gets scale 1, zero point 0."""
    qmin, qmax = signed_range(bits)
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    width = hi - lo
    ok = width > torch.finfo(torch.float32).tiny
    scale = torch.where(ok, width / float((1 << bits) - 1), torch.ones_like(width))
    zp = torch.where(ok, (torch.round(-lo / scale) + qmin).clamp(qmin, qmax), torch.zeros_like(width))
    return scale, zp


def fake_quant_weight(w, bits):
    """Per-output-channel asymmetric min/max fake quantization; returns (w_hat, scale per channel)."""
    qmin, qmax = signed_range(bits)
    flat = w.reshape(w.shape[0], -1)
    scale, zp = qparams(flat.min(dim=1).values, flat.max(dim=1).values, bits)
    s, z = scale[:, None], zp[:, None]
    q = (torch.round(flat / s) + z).clamp(qmin, qmax)  # torch.round: half to even
    return (s * (q - z)).reshape(w.shape), scale


def fold_bn(model):
    """A copy of model with every BatchNorm2d folded into the conv before it (fp32, as zeroq)."""
    m = copy.deepcopy(model)
    for parent in m.modules():
        for name, bn in list(parent.named_children()):
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            conv = getattr(parent, name.replace("bn", "conv"))
            k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            b0 = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight = nn.Parameter(conv.weight * k[:, None, None, None], requires_grad=False)
            conv.bias = nn.Parameter((b0 - bn.running_mean) * k + bn.bias, requires_grad=False)
            setattr(parent, name, nn.Identity())
    return m


def weight_layers(model):
    """Conv/Linear modules in network (= ONNX graph) order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class QuantInput(nn.Module):
    """Wraps a Conv/Linear: 'observe' records the min/max of its input, 'quant' fake-quantizes it."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.mode = "observe"
        self.lo, self.hi = float("inf"), float("-inf")
        self.scale, self.zp = 1.0, 0

    def forward(self, x):
        if self.mode == "observe":
            self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        else:
            qmin, qmax = signed_range(ABITS)
            x = torch.fake_quantize_per_tensor_affine(x, self.scale, self.zp, qmin, qmax)
        return self.layer(x)


def kl_rows(ref_logits, q_logits):
    """KL(softmax(ref) || softmax(q)) per row, float64, clamped at 0 (as zeroq's kl_divergence)."""
    lp = F.log_softmax(ref_logits.double(), dim=1)
    lq = F.log_softmax(q_logits.double(), dim=1)
    return (lp.exp() * (lp - lq)).sum(dim=1).clamp(min=0.0)


# ---------------------------------------------------------------- stages
def distill_batch(model, zq, seed, iters):
    """One ZeroQ distillation batch (the loop of distill_peer.py); returns (x, first loss, last loss)."""
    torch.manual_seed(seed)
    x = torch.randn(BATCH, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.5)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1,
                                                       patience=100, min_lr=1e-4)
    first = last = None
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        loss = zq.loss(model, x)
        loss.backward()
        opt.step()
        last = loss.item()
        sched.step(last)
        first = last if first is None else first
    return x.detach(), first, last


def sensitivity(folded, x):
    """Omega[layer][bit index] with the whole network rerun for each (layer, bits)."""
    layers = weight_layers(folded)
    with torch.no_grad():
        ref = folded(x)
        table = []
        for _, m in layers:
            w = m.weight.data
            row = []
            for b in BITS:
                m.weight.data = fake_quant_weight(w, b)[0]
                row.append(float(kl_rows(ref, folded(x)).mean()))
            m.weight.data = w
            table.append(row)
    return [n for n, _ in layers], [m.weight.numel() for _, m in layers], table


def pareto(params, table, budget_bits):
    """Exact mixed precision: non-dominated (size, sum Omega) set per prefix; best point within budget."""
    points, back = [(0, 0.0)], []
    for p, row in zip(params, table):
        cand = sorted(((size + p * b, om + o, pi, j)
                       for pi, (size, om) in enumerate(points)
                       for j, (b, o) in enumerate(zip(BITS, row))), key=lambda c: (c[0], c[1]))
        nxt, ptr = [], []
        for size, om, pi, j in cand:
            if not nxt or om < nxt[-1][1]:
                nxt.append((size, om))
                ptr.append((pi, j))
        points = nxt
        back.append(ptr)
    fits = [i for i, (size, _) in enumerate(points) if size <= budget_bits]
    if not fits:
        raise SystemExit(f"run_peer.py: budget {budget_bits} bits is below the smallest size {points[0][0]}")
    at = fits[-1]
    size, omega = points[at]
    bits = [0] * len(back)
    for li in range(len(back) - 1, -1, -1):
        prev, j = back[li][at]
        bits[li] = BITS[j]
        at = prev
    return bits, size, omega, len(points)


def quantize(folded, bits, x_calib):
    """Fake-quantized model: weights at `bits` per layer, 8-bit activations at every Conv/Linear input."""
    q = copy.deepcopy(folded)
    layers = weight_layers(q)
    wscales = []
    for (_, m), b in zip(layers, bits):
        w_hat, s = fake_quant_weight(m.weight.data, b)
        m.weight.data = w_hat
        wscales.append(s)
    # wrap every weight layer's input
    wraps = []
    for name, m in layers:  # network order, the same as the weight scales
        parent, _, attr = name.rpartition(".")
        w = QuantInput(m)
        setattr(q.get_submodule(parent), attr, w)
        wraps.append(w)
    # calibrate (one pass, FP32 activations); the classifier's input takes the pre-pool range
    pre_pool = {}
    h = q.layer3.register_forward_hook(
        lambda m, i, o: pre_pool.update(lo=float(o.min()), hi=float(o.max())))
    with torch.no_grad():
        q(x_calib)
    h.remove()
    wraps[-1].lo, wraps[-1].hi = pre_pool["lo"], pre_pool["hi"]
    for w, sw in zip(wraps, wscales):
        s, z = qparams(torch.tensor(w.lo), torch.tensor(w.hi), ABITS)
        w.scale, w.zp, w.mode = float(s), int(z), "quant"
        if w.layer.bias is not None:  # int32 bias at scale s_x * s_w[c], round half to even
            sb = (s.double() * sw.double())
            ints = torch.round(w.layer.bias.data.double() / sb).clamp(-2**31, 2**31 - 1)
            w.layer.bias.data = (ints * sb).float()
    return q, [(w.lo, w.hi) for w in wraps]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20", choices=["resnet20", "resnet32", "resnet44", "resnet56"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export stage")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    stages = {}
    err = sys.stderr

    def stage(name, t0):
        stages[name] = time.perf_counter() - t0
        print(f"  {name:12s} {stages[name]:8.2f} s", file=err, flush=True)

    load_start = os.getloadavg()[0]
    omp_wait = os.environ.get("OMP_WAIT_POLICY")
    print(f"{a.model} ZeroQ pipeline, PyTorch {torch.__version__}, threads={a.threads}, "
          f"iters={a.iters}, seed={a.seed} (torch import {_IMPORT_S:.2f} s, not counted)", file=err)
    print(f"  load average {load_start:.2f} on {os.cpu_count()} CPUs at the start"
          f"{', OMP_WAIT_POLICY=' + omp_wait if omp_wait else ''}", file=err)

    t0 = time.perf_counter()
    paths = glob.glob(os.path.join(REPO, ASSETS, "models", "cifar10", f"{a.model}-*.th"))
    if len(paths) != 1:
        raise SystemExit(f"run_peer.py: expected one {a.model}-*.th under {ASSETS}/models/cifar10, "
                         f"found {len(paths)}")
    model, depth = load_resnet(paths[0])
    stage("load", t0)

    t0 = time.perf_counter()
    zq = ZeroQLoss(model)
    batches, losses = [], []
    for b in range(2):
        x, l0, l1 = distill_batch(model, zq, a.seed + b, a.iters)
        batches.append(x)
        losses.append((l0, l1))
    zq.inputs.clear()
    stage("distill", t0)

    t0 = time.perf_counter()
    folded = fold_bn(model)
    names, params, table = sensitivity(folded, batches[0])
    stage("sensitivity", t0)

    t0 = time.perf_counter()
    total_params = sum(params)
    budget = 4 * total_params
    mp_bits, mp_size, mp_omega, n_front = pareto(params, table, budget)
    stage("pareto", t0)

    t0 = time.perf_counter()
    qmodel, act_ranges = quantize(folded, mp_bits, batches[0])
    stage("quantize", t0)

    export_s, onnx_bytes = None, None
    if not a.no_export:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "q.onnx")
            with warnings.catch_warnings():  # the legacy exporter's deprecation/constant-folding notes
                warnings.simplefilter("ignore")
                torch.onnx.export(qmodel, (batches[0],), path, dynamo=False, opset_version=17,
                                  input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
            onnx_bytes = os.path.getsize(path)
        stage("export", t0)
        export_s = stages["export"]
    else:
        stages["export"] = None

    t0 = time.perf_counter()
    with torch.no_grad():
        ref, got = model(batches[1]), qmodel(batches[1])
    top1 = 100.0 * float((ref.argmax(1) == got.argmax(1)).double().mean())
    mean_kl = float(kl_rows(ref, got).mean())
    stage("agreement", t0)

    total = sum(v for v in stages.values() if v is not None)
    uni4 = sum(r[BITS.index(4)] for r in table)
    print(f"  {'total':12s} {total:8.2f} s", file=err)
    print(f"  distill loss per batch (first -> last): "
          + ", ".join(f"{l0:.4g} -> {l1:.4g}" for l0, l1 in losses), file=err)
    print(f"  sensitivity: {len(names)} layers x bits {list(BITS)} = {len(names) * len(BITS)} full forwards "
          f"of {BATCH} images", file=err)
    print(f"  {'layer':18s} {'params':>7s} " + " ".join(f"{'Omega(' + str(b) + ')':>11s}" for b in BITS)
          + "  MP4", file=err)
    for n, pc, row, b in zip(names, params, table, mp_bits):
        print(f"  {n:18s} {pc:7d} " + " ".join(f"{o:11.4g}" for o in row) + f"  {b}", file=err)
    print(f"  MP4: {mp_size / 8 / 1e3:.2f} KB of weights (budget {budget / 8 / 1e3:.2f} KB = uniform 4-bit), "
          f"sum Omega {mp_omega:.4g} (uniform 4-bit {uni4:.4g}); frontier {n_front} points", file=err)
    if onnx_bytes is not None:
        print(f"  export: {onnx_bytes} bytes of ONNX (activation QDQ, float weights)", file=err)
    print(f"  agreement on held-out batch 1 ({BATCH} images): top-1 match {top1:.2f}%, "
          f"mean KL {mean_kl:.4g}", file=err)
    load_end = os.getloadavg()[0]
    if max(load_start, load_end) > os.cpu_count():
        print(f"  WARNING: the machine was busy (load average {load_start:.2f} -> {load_end:.2f} on "
              f"{os.cpu_count()} CPUs); the times are not representative. With libgomp's default active "
              f"wait, PyTorch at 2+ threads slows down up to ~10x when the CPUs are oversubscribed "
              f"(OMP_WAIT_POLICY=PASSIVE avoids that)", file=err)

    res = {
        "model": a.model, "depth": depth, "threads": a.threads, "iters": a.iters, "seed": a.seed,
        "batch": BATCH, "torch_version": torch.__version__, "python_import_s": _IMPORT_S,
        "stages": stages, "total_s": total, "mp_bits": mp_bits,
        "agreement": {"top1_match": top1, "mean_kl": mean_kl},
        "distill_loss": [{"first": l0, "last": l1} for l0, l1 in losses],
        "sensitivity": {"bits": list(BITS), "layers": [
            {"name": n, "params": pc, "omega": row} for n, pc, row in zip(names, params, table)]},
        "mp": {"budget_bits": budget, "size_bits": mp_size, "omega": mp_omega,
               "uniform4_omega": uni4, "frontier_points": n_front},
        "act_ranges": act_ranges, "onnx_bytes": onnx_bytes,
        "loadavg_start": load_start, "loadavg_end": load_end, "cpus": os.cpu_count(),
        "omp_wait_policy": omp_wait,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
