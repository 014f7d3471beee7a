#!/usr/bin/env python3
"""Checks a `zeroq run` output folder from outside zeroq: every SVG (alone and inside report.html's
charts) is well-formed XML, and quantized.onnx loads and runs in ONNX Runtime. Prints ONNX Runtime's
top-1 (%) on an evenly strided subset of N CIFAR-10 test images (the rule of ort_logits.py).

Usage: check_run_folder.py DIR CIFAR_BIN N
"""
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import numpy as np


def main():
    out_dir, cifar, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for name in ("sensitivity.svg", "pareto.svg", "bits.svg"):
        root = ET.parse(os.path.join(out_dir, name)).getroot()
        if not root.tag.endswith("svg"):
            sys.exit(f"{name}: root element is {root.tag}, not svg")
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        logits = os.path.join(tmp, "logits.npy")
        subprocess.run([sys.executable, os.path.join(here, "ort_logits.py"), os.path.join(out_dir, "quantized.onnx"), cifar, logits, "--limit", str(n)], check=True)
        pred = np.load(logits).argmax(axis=1)
    raw = np.fromfile(cifar, dtype=np.uint8).reshape(-1, 3073)
    k = len(raw) // n
    labels = raw[[i * k for i in range(n)], 0]
    print(f"{100.0 * float((pred == labels).mean()):.2f}")


if __name__ == "__main__":
    main()
