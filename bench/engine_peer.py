#!/usr/bin/env python3
"""Peer timings (PyTorch + ONNX Runtime, CPU) to compare against zeroq's engine.

Builds the akamaster CIFAR ResNet (option-A shortcut) from a .th checkpoint,
checks it against the ONNX export, then times on this machine:
  (a) torch eval forward                      (no_grad, batch B)
  (b) torch forward + backward w.r.t. the INPUT of the ZeroQ BN-statistics loss
  (c) (b) + one Adam step on the input (lr 0.5) = one ZeroQ distillation iteration
  (d) ONNX Runtime eval over the whole CIFAR-10 file (batches of 500): images/s, top-1
A human table goes to stderr; one JSON object is the last line of stdout.

Usage (from the repo root):
  python3 bench/engine_peer.py [--model-th PATH] [--onnx PATH] [--data PATH]
                               [--threads 2] [--batch 32] [--iters 20]

ZeroQ loss (per BN layer with input x [B,C,H,W], and once for the network input
against mean 0 / std 1):
  mu = x.mean((2,3)); sigma = sqrt(x.var((2,3), unbiased) + 1e-6)
  loss += ((mu - running_mean)**2).sum()/B + ((sigma - sqrt(running_var + 1e-6))**2).sum()/B
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ASSETS = "../shared/assets"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
RECORD = 3073


# ---------------------------------------------------------------- model
class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0

    def shortcut(self, x):
        if not self.pad:
            return x
        # option A: stride-2 subsample + zero channel padding planes//4 each side
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n_blocks, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n_blocks):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def load_resnet(path):
    """Load an akamaster .th checkpoint; depth = 6 * blocks_per_stage + 2."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("layer1.")})
    model = CifarResNet(n_blocks)
    model.load_state_dict(sd, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, 6 * n_blocks + 2


# ---------------------------------------------------------------- ZeroQ loss
def _stat_loss(x, mean, std, eps=1e-6):
    b = x.shape[0]
    mu = x.mean(dim=(2, 3))
    sigma = torch.sqrt(x.var(dim=(2, 3), unbiased=True) + eps)
    return ((mu - mean) ** 2).sum() / b + ((sigma - std) ** 2).sum() / b


class ZeroQLoss:
    """Collects BN inputs with forward hooks; loss() returns the ZeroQ BN-stat loss."""

    def __init__(self, model):
        self.bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.inputs = []
        for bn in self.bns:
            bn.register_forward_hook(lambda m, inp, out: self.inputs.append((m, inp[0])))

    def loss(self, model, x):
        self.inputs.clear()
        model(x)
        total = _stat_loss(x, 0.0, 1.0)
        for bn, xin in self.inputs:
            total = total + _stat_loss(xin, bn.running_mean, torch.sqrt(bn.running_var + 1e-6))
        self.inputs.clear()
        return total


# ---------------------------------------------------------------- helpers
def load_cifar(path):
    recs = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD)
    x = (recs[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0) - MEAN) / STD
    return x, recs[:, 0].astype(np.int64)


def ort_session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def bench(fn, iters, warmup=3):
    """Run fn warmup times, then iters timed times; return (median_ms, min_ms)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts)), float(np.min(ts))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-th", default=f"{ASSETS}/models/cifar10/resnet20-12fca82f.th")
    p.add_argument("--onnx", default=f"{ASSETS}/models/cifar10/resnet20_cifar10.onnx")
    p.add_argument("--data", default=f"{ASSETS}/cifar10/test_batch.bin")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, depth = load_resnet(a.model_th)
    sess = ort_session(a.onnx, a.threads)
    in_name = sess.get_inputs()[0].name

    # correctness: torch vs ORT on the same random input
    x = torch.randn(a.batch, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {in_name: x.numpy()})[0]
    max_diff = float(np.abs(ref - got).max())
    assert max_diff < 1e-4, f"torch vs ORT max abs diff {max_diff:.3g} >= 1e-4"

    # (a) forward
    def fwd():
        with torch.no_grad():
            model(x)
    fwd_med, fwd_min = bench(fwd, a.iters)

    # (b) forward + backward of the ZeroQ loss w.r.t. the input
    zq = ZeroQLoss(model)
    xg = torch.randn(a.batch, 3, 32, 32, requires_grad=True)

    def fwd_bwd():
        xg.grad = None
        zq.loss(model, xg).backward()
    fb_med, fb_min = bench(fwd_bwd, a.iters)

    # (c) one distillation iteration: (b) + Adam step on the input
    xd = torch.randn(a.batch, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([xd], lr=0.5)

    def distill_iter():
        opt.zero_grad(set_to_none=True)
        loss = zq.loss(model, xd)
        loss.backward()
        opt.step()
        return loss
    loss0 = float(zq.loss(model, xd).detach())
    di_med, di_min = bench(distill_iter, a.iters)
    loss1 = float(zq.loss(model, xd).detach())

    # (d) ORT eval over the full data file
    data, labels = load_cifar(a.data)
    sess.run(None, {in_name: data[:500]})  # warm-up
    t0 = time.perf_counter()
    logits = np.concatenate([sess.run(None, {in_name: data[i:i + 500]})[0]
                             for i in range(0, len(data), 500)])
    ort_s = time.perf_counter() - t0
    top1 = 100.0 * float((logits.argmax(1) == labels).mean())

    res = {
        "model": os.path.basename(a.model_th), "depth": depth, "threads": a.threads,
        "batch": a.batch, "iters": a.iters,
        "torch_version": torch.__version__, "onnxruntime_version": ort.__version__,
        "torch_ort_max_abs_diff": max_diff,
        "torch_forward_ms": fwd_med, "torch_forward_min_ms": fwd_min,
        "torch_fwd_bwd_ms": fb_med, "torch_fwd_bwd_min_ms": fb_min,
        "torch_distill_iter_ms": di_med, "torch_distill_iter_min_ms": di_min,
        "distill_loss_start": loss0, "distill_loss_end": loss1,
        "ort_images": int(len(data)), "ort_seconds": ort_s,
        "ort_images_per_s": len(data) / ort_s, "ort_top1": round(top1, 2),
    }
    err = sys.stderr
    print(f"ResNet{depth}  threads={a.threads}  batch={a.batch}  iters={a.iters}  "
          f"torch {torch.__version__}  onnxruntime {ort.__version__}", file=err)
    print(f"  torch vs ORT max |diff|         {max_diff:.3g}", file=err)
    print(f"  {'measure':32s} {'median ms':>10s} {'min ms':>10s}", file=err)
    for name, med, mn in (("(a) torch forward", fwd_med, fwd_min),
                          ("(b) torch fwd+bwd (input grad)", fb_med, fb_min),
                          ("(c) torch distill iter (+Adam)", di_med, di_min)):
        print(f"  {name:32s} {med:10.2f} {mn:10.2f}", file=err)
    print(f"  distill loss {loss0:.4g} -> {loss1:.4g} after {a.iters + 3} Adam steps", file=err)
    print(f"  (d) ORT eval: {len(data)} images in {ort_s:.2f} s = {len(data) / ort_s:.0f} img/s, "
          f"top-1 {top1:.2f}%", file=err)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
