#!/usr/bin/env python3
"""Regenerates the small PyTorch checkpoints in tests/fixtures/torch/ (tests/it/torch_import.rs reads them).

Usage: python3 tests/scripts/make_torch_fixtures.py   (needs torch; written with torch 2.15)

- tiny_zip.pth / tiny_legacy.pth: the same state_dict in the zip (torch >= 1.6) and legacy formats, with a
  non-contiguous tensor (a transpose), a view at a storage offset sharing its storage with another tensor,
  float16/float64/bfloat16 tensors (read as float32) and an int64 buffer.
- tiny_expected.json: every tensor's shape and values, as float32 values zeroq must produce.
- evil.pth: a checkpoint whose pickle calls os.system (never run by zeroq: it must refuse the global).
- whole_model.pth: torch.save(model) rather than its state_dict (refers to __main__.Tiny).
"""
import json
import os
from collections import OrderedDict
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "torch"


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)


def state_dict():
    torch.manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    sd = OrderedDict()
    sd["conv.weight"] = torch.randn(2, 3, 2, 2)
    sd["transposed"] = base.t()  # shape (6, 4), strides (1, 6)
    sd["view"] = base[1:3, 2:5]  # offset 8, strides (6, 1), shares base's storage
    sd["base"] = base
    sd["half"] = torch.tensor([1.0, -2.5, 0.099975586], dtype=torch.float16)
    sd["double"] = torch.tensor([[1e-3, 2.0]], dtype=torch.float64)
    sd["bf16"] = torch.tensor([3.0, -0.5], dtype=torch.bfloat16)
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    sd["scalar"] = torch.tensor(0.25)
    return sd


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    torch.save(sd, OUT / "tiny_zip.pth")
    torch.save(sd, OUT / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
    expected = {k: {"shape": list(v.shape), "values": v.double().flatten().tolist(), "int": not v.is_floating_point()} for k, v in sd.items()}
    (OUT / "tiny_expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    torch.save({"w": torch.zeros(2), "payload": Evil()}, OUT / "evil.pth")
    torch.save(Tiny(), OUT / "whole_model.pth")
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)


if __name__ == "__main__":
    main()
