#!/usr/bin/env python3
"""Reference FP32 logits from ONNX Runtime for a CIFAR-10 binary file.

Usage:
    python3 ort_logits.py MODEL.onnx CIFAR_BIN OUT.npy [--limit N]

CIFAR_BIN is the CIFAR-10 binary format: records of 3073 bytes, 1 label byte
followed by 3072 pixel bytes (1024 R, 1024 G, 1024 B; each plane 32x32
row-major, i.e. CHW).

Subset rule for --limit N (the Rust side MUST use the same rule):
    total = number of records in the file (file size // 3073)
    if N is not given or N >= total: use all records 0..total-1
    else: k = total // N  (integer division; k >= 1)
          indices = [0, k, 2k, ..., (N-1)k]   (exactly N records)
For the 10,000-record test set, k = 10000 // N.

Preprocessing (per channel c, RGB order):
    x = (pixel / 255 - mean[c]) / std[c]
    mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225)
computed in float32 (pixel/255 in float32, then subtract, then divide).

The model must have one input of shape [N,3,32,32] (dynamic N). It is run
with onnxruntime CPUExecutionProvider, intra_op_num_threads=2, in batches of
500; the first output is saved as float32 [N, num_classes] with np.save.
"""
import argparse
import sys

import numpy as np
import onnxruntime as ort

RECORD = 3073
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def subset_indices(total, limit=None):
    """Indices of the records to use (see module docstring)."""
    if limit is None or limit >= total:
        return np.arange(total)
    if limit <= 0:
        raise ValueError("--limit must be positive")
    k = total // limit
    return np.arange(limit) * k


def load_cifar(path, limit=None):
    """Return (images uint8 [N,3,32,32], labels uint8 [N])."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % RECORD:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of {RECORD}")
    recs = raw.reshape(-1, RECORD)[subset_indices(raw.size // RECORD, limit)]
    return recs[:, 1:].reshape(-1, 3, 32, 32), recs[:, 0]


def preprocess(images):
    """uint8 [N,3,32,32] -> normalized float32 [N,3,32,32]."""
    return (images.astype(np.float32) / np.float32(255.0) - MEAN) / STD


def make_session(model_path, threads=2):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])


def run_logits(sess, x, batch=500):
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("cifar_bin")
    p.add_argument("out")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)

    images, labels = load_cifar(a.cifar_bin, a.limit)
    logits = run_logits(make_session(a.model), preprocess(images))
    np.save(a.out, logits)
    top1 = 100.0 * float((logits.argmax(1) == labels).mean())
    print(f"{a.out}: logits {logits.shape}, top-1 {top1:.2f}%", file=sys.stderr)


if __name__ == "__main__":
    main()
