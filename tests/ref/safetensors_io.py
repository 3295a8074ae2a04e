"""Tiny safetensors reader/writer for the reference scripts (Debian's python3 has no
`safetensors` package). Format: u64 little-endian header length, JSON header
{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}, raw data.
Written from the format description (huggingface/safetensors README), independently of
native/model/safetensors.c."""
import json
import struct

import numpy as np
import torch

_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
       "F64": torch.float64, "I32": torch.int32, "U8": torch.uint8}
_NAME = {v: k for k, v in _DT.items()}


def save(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor (order kept); metadata: dict str -> str."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()
        header[name] = {"dtype": _NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns (dict name -> torch.Tensor, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = _DT[e["dtype"]]
        raw = bytearray(body[b:end])
        if len(raw) == 0:
            t = torch.zeros(e["shape"], dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt).reshape(e["shape"]).clone()
        out[name] = t
    return out, meta


def load_model(path):
    """A PneumoScope model file as torchvision needs it: (ResNet18 state_dict without the
    out-of-distribution detector's "ood.*" tensors, metadata dict, temperature T: probabilities
    are softmax(logits / T), 1 when the file stores none)."""
    sd, meta = load(path)
    sd = {n: t for n, t in sd.items() if not n.startswith("ood.")}
    return sd, meta, float(meta.get("temperature", "1"))


def torchvision_model(path):
    """torchvision.models.resnet18 with a PneumoScope model file's weights, in eval mode:
    (net, metadata dict, temperature)."""
    import torchvision
    sd, meta, temperature = load_model(path)
    net = torchvision.models.resnet18(num_classes=sd["fc.weight"].shape[0])
    net.load_state_dict({n: (t.float() if t.is_floating_point() else t) for n, t in sd.items()}, strict=True)
    return net.eval(), meta, temperature


def layer_outputs(net, x):
    """The outputs of a torchvision ResNet18's layer1..layer4 for the batch x (no grad is taken
    here; call under torch.no_grad()): what the out-of-distribution detector pools."""
    h, out = net.maxpool(net.relu(net.bn1(net.conv1(x)))), []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        h = layer(h)
        out.append(h)
    return out
