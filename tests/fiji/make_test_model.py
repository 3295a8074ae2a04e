#!/usr/bin/python3
"""Write a test classifier for the Fiji tests: torchvision resnet18(num_classes=K) after
torch.manual_seed(SEED), BN affine and running statistics randomised (so eval-mode BN matters),
saved as .safetensors (format from the huggingface/safetensors README: u64 LE header length,
JSON header with __metadata__ and per-tensor dtype/shape/data_offsets, raw LE data) with
PneumoScope's metadata. Not a trained model: the Fiji tests compare ImageJ with the CLI on the same
file, so any fixed weights do.      make_test_model.py OUT.safetensors [K] [SEED]"""
import json
import struct
import sys

import torch
import torchvision

out = sys.argv[1]
k = int(sys.argv[2]) if len(sys.argv) > 2 else 2
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
torch.manual_seed(seed)
model = torchvision.models.resnet18(num_classes=k)
g = torch.Generator().manual_seed(seed + 1)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.copy_(0.75 + 0.5 * torch.rand(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.75 + 0.5 * torch.rand(c, generator=g))

names = {torch.float32: "F32", torch.int64: "I64"}
header = {"__metadata__": {
    "task": "binary" if k == 2 else "multiclass",
    "classes": "NORMAL,PNEUMONIA" if k == 2 else "NORMAL,BACTERIA,VIRUS",
    "input_size": "224", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "threshold": "0.5",
    "provenance": "Fiji test model: torchvision resnet18 seed %d, randomised BN, untrained" % seed}}
blobs, off = [], 0
for name, t in model.state_dict().items():
    b = t.detach().contiguous().numpy().tobytes()
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for b in blobs:
        f.write(b)
