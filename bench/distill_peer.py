#!/usr/bin/env python3
"""PyTorch reference of ZeroQ distillation (CPU), to compare against `zeroq distill`.

Recipe (shared/DESIGN.md, "Distilled data"): model in eval mode, weights frozen; x ~ N(0, 1) of shape
[B, 3, 32, 32]; loss = ZeroQ BN-statistics loss (per-sample, per-channel mean/std of every BN input vs
running stats, plus the network input vs mean 0 / std 1, see engine_peer.py); Adam(lr 0.5) on x,
ReduceLROnPlateau(mode 'min', factor 0.1, patience 100, min_lr 1e-4) stepped with loss.item() after each
optimizer step.

Reports ms/iteration (loop wall time / iters), the loss of iteration 0 and of the last iteration (computed
in that iteration, before its step), the iterations where the lr changed, and the statistics match of the
final x: for each BN input, batch statistics per channel over (N, H, W): mean m, std s (unbiased);
sigma = sqrt(running_var + bn.eps). A channel is "within 10%" if
  default:       |m - running_mean| <= 0.1*sigma       and |s - sigma| <= 0.1*sigma
  rel_mean (a):  |m - running_mean| <= 0.1*|running_mean| and |s - sigma| <= 0.1*sigma
  std_only (b):  |s - sigma| <= 0.1*sigma
fractions over all channels of all BN layers.
A human summary goes to stderr; one JSON object is the last line of stdout.

With --onnx PATH the model is that ONNX file converted to PyTorch with the PyPI package onnx2torch (its
BatchNormalization nodes become nn.BatchNorm2d, which the loss hooks), e.g. the file `zeroq export-onnx` writes
for a zoo model; the input shape is the ONNX input's [C, H, W]. The JSON also gives the process's peak RSS.

Usage (from the repo root):
  python3 bench/distill_peer.py [--model-th PATH | --onnx PATH] [--threads 2] [--batch 32] [--iters 500]
                                [--seed 0] [--save PATH.npy]
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_peer import ASSETS, ZeroQLoss, load_resnet  # noqa: E402


def bn_match(model, zq, x):
    """Batch-statistics match of the BN inputs for x; returns (default, rel_mean, std_only, channels)."""
    zq.inputs.clear()
    with torch.no_grad():
        model(x)
        ok = ok_rel = ok_std = n = 0
        for bn, xin in zq.inputs:
            m = xin.mean(dim=(0, 2, 3))
            s = xin.std(dim=(0, 2, 3), unbiased=True)
            rm = bn.running_mean
            sigma = torch.sqrt(bn.running_var + bn.eps)
            std_ok = (s - sigma).abs() <= 0.1 * sigma
            ok += int(((m - rm).abs() <= 0.1 * sigma).logical_and(std_ok).sum())
            ok_rel += int(((m - rm).abs() <= 0.1 * rm.abs()).logical_and(std_ok).sum())
            ok_std += int(std_ok.sum())
            n += m.numel()
    zq.inputs.clear()
    return ok / n, ok_rel / n, ok_std / n, n


def load_onnx(path):
    """The ONNX model as a frozen PyTorch module (onnx2torch), a name, and its input's (C, H, W)."""
    import onnx
    from onnx2torch import convert

    proto = onnx.load(path)
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    # onnx2torch looks trailing empty (absent optional) inputs up as initializers, and reads an integer
    # attribute whose value 0 is left implicit as the attribute itself (truthy): normalise both.
    for node in proto.graph.node:
        while node.input and node.input[-1] == "":
            node.input.pop()
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.INT and not attr.HasField("i"):
                attr.i = 0
    model = convert(proto).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, os.path.basename(path), tuple(dims[1:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-th", default=f"{ASSETS}/models/cifar10/resnet20-12fca82f.th")
    p.add_argument("--onnx", default=None, help="an ONNX model instead (converted with onnx2torch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="save the distilled x as float32 NCHW .npy")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.onnx:
        model, depth, chw = load_onnx(a.onnx)
    else:
        model, depth = load_resnet(a.model_th)  # eval mode, requires_grad False
        chw = (3, 32, 32)
    zq = ZeroQLoss(model)

    x = torch.randn(a.batch, *chw, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.5)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1,
                                                       patience=100, min_lr=1e-4)
    losses, lr_changes = [], []
    lr = opt.param_groups[0]["lr"]
    t0 = time.perf_counter()
    for it in range(a.iters):
        opt.zero_grad(set_to_none=True)
        loss = zq.loss(model, x)
        loss.backward()
        opt.step()
        lv = loss.item()
        sched.step(lv)
        losses.append(lv)
        new_lr = opt.param_groups[0]["lr"]
        if new_lr != lr:
            lr_changes.append((it, lr, new_lr))
            lr = new_lr
    wall = time.perf_counter() - t0
    ms_per_iter = 1e3 * wall / a.iters

    within, within_rel, within_std, channels = bn_match(model, zq, x.detach())
    if a.save:
        np.save(a.save, x.detach().numpy().astype(np.float32))

    res = {
        "model": os.path.basename(a.onnx or a.model_th), "depth": depth, "threads": a.threads,
        "batch": a.batch, "iters": a.iters, "seed": a.seed, "torch_version": torch.__version__,
        "torch_ms_per_iter": ms_per_iter, "torch_wall_s": wall,
        "torch_loss_start": losses[0], "torch_loss_end": losses[-1],
        "torch_loss_min": min(losses),
        "torch_lr_changes": [{"iter": i, "from": f, "to": t} for i, f, t in lr_changes],
        "torch_bn_channels": channels,
        "torch_within_10pct": within,
        "torch_within_10pct_rel_mean": within_rel,
        "torch_within_10pct_std_only": within_std,
        "torch_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    err = sys.stderr
    print(f"{depth if a.onnx else f'ResNet{depth}'} ZeroQ distillation (PyTorch {torch.__version__})  threads={a.threads}  "
          f"batch={a.batch}  iters={a.iters}  seed={a.seed}", file=err)
    print(f"  {ms_per_iter:.2f} ms/iteration  ({wall:.1f} s total)", file=err)
    print(f"  loss {losses[0]:.4g} (iter 0) -> {losses[-1]:.4g} (iter {a.iters - 1}), "
          f"min {min(losses):.4g}", file=err)
    marks = sorted({i for i in (0, 10, 50, 100, 200, 300, 400) if i < a.iters} | {a.iters - 1})
    print("  loss curve: " + ", ".join(f"[{i}] {losses[i]:.4g}" for i in marks), file=err)
    if lr_changes:
        for i, f, t in lr_changes:
            print(f"  lr {f:g} -> {t:g} after the step of iteration {i}", file=err)
    else:
        print("  lr never changed (stayed 0.5)", file=err)
    print(f"  BN channels within 10% ({channels} channels, batch stats of final x):", file=err)
    print(f"    |m-mu|<=0.1*sigma & |s-sigma|<=0.1*sigma   {100 * within:6.2f}%", file=err)
    print(f"    |m-mu|<=0.1*|mu|  & |s-sigma|<=0.1*sigma   {100 * within_rel:6.2f}%", file=err)
    print(f"    |s-sigma|<=0.1*sigma only                  {100 * within_std:6.2f}%", file=err)
    if a.save:
        print(f"  saved {a.save}", file=err)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
