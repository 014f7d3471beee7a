#!/usr/bin/env python3
"""BN match of distilled batches, computed independently of zeroq by ONNX Runtime.

For every BatchNormalization input of MODEL.onnx, the batch statistics of each .npy (over N, H, W) against
the running ones: the share of channels whose batch mean is within 10% of σ of the running mean and whose
batch σ is within 10% of the running σ, σ as the BN divides by it (sqrt(var + ε), what `zeroq distill`
reports) and, second column, the batch σ without ε (the definition before 2026-12-05: a channel whose
running variance is near or below the BN's ε can then never count).
Usage: bench/bn_match.py MODEL.onnx BATCH.npy [BATCH.npy ...]
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main(model_path, batches):
    m = onnx.load(model_path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    outputs = {o.name for o in m.graph.output}
    for n in bns:
        if n.input[0] not in outputs:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.input[0]))
            outputs.add(n.input[0])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    print(f"| batch | images | within 10% (σ with ε) | within 10% (batch σ without ε) |")
    print("|---|---:|---:|---:|")
    for path in batches:
        x = np.load(path).astype(np.float32)
        taps = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {name: x})))
        ok_eps = ok_raw = total = 0
        for n in bns:
            eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
            mean, var = init[n.input[3]].astype(np.float64), init[n.input[4]].astype(np.float64)
            t = taps[n.input[0]].astype(np.float64)
            c = t.shape[1]
            v = np.moveaxis(t, 1, 0).reshape(c, -1)
            bm, bv = v.mean(1), v.var(1, ddof=1)
            sigma = np.sqrt(var + eps)
            dm = np.abs(bm - mean) / sigma <= 0.1
            ok_eps += int((dm & (np.abs(np.sqrt(bv + eps) - sigma) / sigma <= 0.1)).sum())
            ok_raw += int((dm & (np.abs(np.sqrt(bv) - sigma) / sigma <= 0.1)).sum())
            total += c
        print(f"| {path} | {x.shape[0]} | {100 * ok_eps / total:.1f}% | {100 * ok_raw / total:.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
