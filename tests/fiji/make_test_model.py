#!/usr/bin/python3
"""Write a test classifier for the Fiji tests: torchvision resnet18(num_classes=K) after
torch.manual_seed(SEED), BN affine and running statistics randomised (so eval-mode BN matters;
tests/ref/model_reference.make_model), saved by tests/ref/safetensors_io with PneumoScope's
metadata. Not a trained model: the Fiji tests compare ImageJ with the CLI on the same file, so
any fixed weights do.      make_test_model.py OUT.safetensors [K] [SEED] [ROI: film|lungs|lungmask]"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import model_reference  # noqa: E402
import safetensors_io  # noqa: E402

out = sys.argv[1]
k = int(sys.argv[2]) if len(sys.argv) > 2 else 2
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
roi = sys.argv[4] if len(sys.argv) > 4 else "film"
model = model_reference.make_model(k, seed)
safetensors_io.save(out, model.state_dict(), {
    "task": "binary" if k == 2 else "multiclass",
    "classes": "NORMAL,PNEUMONIA" if k == 2 else "NORMAL,BACTERIA,VIRUS",
    "input_size": "224", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "threshold": "0.5",
    "roi": roi, "provenance": "Fiji test model: torchvision resnet18 seed %d, randomised BN, untrained" % seed})
