#!/usr/bin/env python3
"""Copies a PneumoScope model without what `pneumoscope calibrate` fits again (the out-of-distribution
detector's tensors and metadata, the temperature): the weights alone, about 15 % smaller, so three
float16 models fit the GPU machine's 64 MiB transfer back (tests/bench/gpu_models_call.sh). Python's
standard library only (safetensors: 8-byte header length, JSON header, data).

    tests/bench/strip_fitted.py IN.safetensors OUT.safetensors"""
import json
import struct
import sys

FITTED_META = ("ood_threshold", "ood_method", "ood_layers", "temperature")


def main(src, dst):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = {k: v for k, v in header.pop("__metadata__", {}).items() if k not in FITTED_META}
    out, blobs, off = {"__metadata__": meta}, [], 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if name.startswith("ood."):
            continue
        b = data[t["data_offsets"][0]:t["data_offsets"][1]]
        out[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(out, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
