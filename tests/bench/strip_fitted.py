#!/usr/bin/env python3
"""Copies a PneumoScope model without what `pneumoscope calibrate` fits again (the out-of-distribution
detector's tensors and metadata, the temperature): the weights alone, about 15 % smaller, so three
float16 models fit the GPU machine's 64 MiB transfer back (tests/bench/gpu_models_call.sh). Reads
and writes through tests/ref/safetensors_io.py (torch, as on the GPU machine and in Debian's python3).

    tests/bench/strip_fitted.py IN.safetensors OUT.safetensors"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io  # noqa: E402

FITTED_META = ("ood_threshold", "ood_method", "ood_layers", "temperature")

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    weights, meta, _ = safetensors_io.load_model(sys.argv[1])  # without the "ood.*" tensors
    safetensors_io.save(sys.argv[2], weights, {k: v for k, v in meta.items() if k not in FITTED_META})
