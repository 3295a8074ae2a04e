"""Grad-CAM reference for tests/test_gradcam.c, computed with torchvision + torch.autograd only
(independently of native/gradcam): the definitions of Selvaraju et al. (Grad-CAM) and of
pytorch-grad-cam's Grad-CAM++ closed form, on torchvision.models.resnet18.

  gradcam_reference.py make OUT.safetensors SEED K
      model_reference.make_model: torchvision resnet18(num_classes=K) after torch.manual_seed(SEED),
      BatchNorm running statistics and affine parameters randomised (so eval-mode BN is not the
      identity), saved with tests/ref/safetensors_io.py and PneumoScope's metadata keys.
  gradcam_reference.py cam MODEL.safetensors JOBS OUTDIR
      JOBS: one line per map: "<film> <layer 1..4> <gradcam|gradcampp> <class or -1> <name>".
      The film is read with Pillow (convert("L") then "RGB"), preprocessed with torchvision
      (Resize((S, S)), ToTensor(), Normalize(mean, std)) at the model's input size. Writes
      OUTDIR/<name>.npy (film-resolution map in [0, 1], float32) and OUTDIR/<name>.low.npy (raw
      map after ReLU at feature resolution) and prints one JSON line per job (probs, class, raw_max).
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference  # noqa: E402
import safetensors_io  # noqa: E402

torch.set_num_threads(2)


def make(out, seed, k):
    m = model_reference.make_model(k, seed)
    classes = "NORMAL,PNEUMONIA" if k == 2 else ",".join(["NORMAL", "BACTERIA", "VIRUS"][:k])
    meta = {"task": "binary" if k == 2 else "multiclass", "classes": classes, "input_size": "224",
            "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "threshold": "0.5",
            "provenance": "tests/ref/gradcam_reference.py make seed=%d" % seed}
    safetensors_io.save(out, m.state_dict(), meta)


def load(path):
    m, meta, _ = safetensors_io.torchvision_model(path)
    return m, meta


def cam(model_path, jobs, outdir):
    m, meta = load(model_path)
    size = int(meta.get("input_size", "224"))
    mean = [float(v) for v in meta.get("mean", "0.485,0.456,0.406").split(",")]
    std = [float(v) for v in meta.get("std", "0.229,0.224,0.225").split(",")]
    thr = float(meta.get("threshold", "0.5"))
    binary = meta.get("task", "binary") == "binary"
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])
    layers = {1: m.layer1, 2: m.layer2, 3: m.layer3, 4: m.layer4}
    for line in open(jobs):
        if not line.strip():
            continue
        film, layer, method, cls, name = line.split()
        layer, cls = int(layer), int(cls)
        im = Image.open(film).convert("L")
        w, h = im.size
        x = tf(im.convert("RGB")).unsqueeze(0)
        store = {}
        hook = layers[layer].register_forward_hook(lambda mod, i, o: store.__setitem__("a", o))
        logits = m(x)
        hook.remove()
        probs = torch.softmax(logits, 1)[0]
        if binary:
            pred = 1 if probs[1].item() >= thr else 0
        else:
            pred = int(torch.argmax(probs).item())
        c = pred if cls < 0 else cls
        a = store["a"]
        (g,) = torch.autograd.grad(logits[0, c], a)
        a, g = a.detach().double(), g.double()
        if method == "gradcam":
            wts = g.mean(dim=(2, 3))
        else:  # Grad-CAM++ as in pytorch-grad-cam (GradCAMPlusPlus.get_cam_weights)
            g2, g3 = g ** 2, g ** 3
            sum_a = a.sum(dim=(2, 3))
            aij = g2 / (2 * g2 + sum_a[:, :, None, None] * g3 + 1e-7)
            aij = torch.where(g != 0, aij, torch.zeros_like(aij))
            wts = (torch.clamp(g, min=0) * aij).sum(dim=(2, 3))
        low = torch.relu((wts[:, :, None, None] * a).sum(1, keepdim=True))
        up = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        mx = low.max().item()
        up = up / mx if mx > 0 else up * 0
        np.save(os.path.join(outdir, name + ".npy"), up.float().numpy())
        np.save(os.path.join(outdir, name + ".low.npy"), low[0, 0].float().numpy())
        print(json.dumps({"name": name, "probs": probs.tolist(), "class": c, "predicted": pred,
                          "raw_max": mx, "size": [h, w]}))
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "cam":
        cam(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: gradcam_reference.py make|cam ...")
