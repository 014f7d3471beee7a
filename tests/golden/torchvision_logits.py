#!/usr/bin/env python3
"""Reference logits of torchvision's ResNet18, ResNet50 and MobileNetV2 on deterministic weights, for
tests/it/torch_import.rs (no pretrained weights needed, so the test stays offline and small).

Usage:
    python3 tests/golden/torchvision_logits.py      (needs torch; written with torch 2.15)

The models are written out below with torchvision's module names and forward passes (torchvision 0.2x,
resnet.py and mobilenetv2.py: ResNet v1.5, stride on the bottleneck's 3x3; MobileNetV2 width 1.0), so
torchvision itself is not needed. Writes tests/golden/<arch>.logits.npy (float32 [1, 1000]) and
tests/golden/<arch>.keys.json ([[key, shape], ...] in state_dict order).

Weights (the Rust test makes the same values): one 64-bit LCG, state = 7, over the float tensors in
state_dict order, each element: state = state * 6364136223846793005 + 1442695040888963407 (mod 2**64),
u = (state >> 40) / 2**23 - 1 (in [-1, 1)), then by key suffix:
    conv/linear weight: u * sqrt(6 / fan_in)   BN weight: 1 + 0.1u   bias (BN or linear): 0.1u
    running_mean: 0.1u                         running_var: 1 + 0.25u
computed in float64, stored as float32. num_batches_tracked is left alone.
Input: 1 image, 3 x 224 x 224, pixels from the LCG with seed 42 (pixel = state >> 56), x = (pixel - 127) / 128.
"""
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
A, C, M = 6364136223846793005, 1442695040888963407, (1 << 64) - 1


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn_act(inp, oup, k, stride=1, groups=1):
    # torchvision.ops.misc.Conv2dNormActivation: children 0 conv, 1 BN, 2 ReLU6.
    return nn.Sequential(nn.Conv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(inp, hidden, 1))
        layers += [conv_bn_act(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        features = [conv_bn_act(3, 32, 3, 2)]
        inp = 32
        for t, c, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(conv_bn_act(inp, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def lcg_weights(model):
    s = 7
    sd = model.state_dict()
    for k, t in sd.items():
        if not t.is_floating_point():
            continue
        n = t.numel()
        u = np.empty(n, dtype=np.float64)
        for i in range(n):
            s = (s * A + C) & M
            u[i] = (s >> 40) / 2.0**23 - 1.0
        if k.endswith("running_var"):
            v = 1.0 + 0.25 * u
        elif k.endswith("running_mean") or k.endswith("bias"):
            v = 0.1 * u
        elif t.dim() == 1:  # BN weight
            v = 1.0 + 0.1 * u
        else:
            v = u * math.sqrt(6.0 / (n // t.shape[0]))
        t.copy_(torch.from_numpy(v.astype(np.float32)).reshape(t.shape))
    return sd


def lcg_pixels(n, seed=42):
    s = seed
    out = np.empty(n, dtype=np.uint8)
    for i in range(n):
        s = (s * A + C) & M
        out[i] = s >> 56
    return out


def main():
    torch.set_num_threads(2)
    x = torch.from_numpy((lcg_pixels(3 * 224 * 224).reshape(1, 3, 224, 224).astype(np.float32) - 127.0) / 128.0)
    for name, make in [("resnet18", lambda: ResNet(BasicBlock, [2, 2, 2, 2])), ("resnet50", lambda: ResNet(Bottleneck, [3, 4, 6, 3])), ("mobilenet-v2", MobileNetV2)]:
        model = make().eval()
        with torch.no_grad():
            sd = lcg_weights(model)
            y = model(x).numpy().astype(np.float32)
        np.save(HERE / f"{name}.logits.npy", y)
        (HERE / f"{name}.keys.json").write_text(json.dumps([[k, list(v.shape)] for k, v in sd.items()]) + "\n")
        print(f"{name}: {len(sd)} keys, logits |max| {np.abs(y).max():.3f}, argmax {y.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
