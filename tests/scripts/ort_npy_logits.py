#!/usr/bin/env python3
"""Runs an ONNX model in ONNX Runtime on a float32 .npy input and saves its first output.

Usage:
    python3 ort_npy_logits.py MODEL.onnx INPUT.npy OUT.npy

CPUExecutionProvider, intra_op_num_threads=2, the whole input as one batch; output saved as float32.
"""
import sys

import numpy as np
import onnxruntime as ort


def main(argv=None):
    model, inp, out = (argv or sys.argv[1:])[:3]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.load(inp).astype(np.float32)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
    np.save(out, y)
    print(f"{out}: {y.shape}", file=sys.stderr)


if __name__ == "__main__":
    main()
