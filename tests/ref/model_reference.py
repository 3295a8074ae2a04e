#!/usr/bin/python3
"""torchvision ResNet18 references for tests/test_model.c and tests/test_classify.c
(torchvision is the program PneumoScope must match).

  parity OUTDIR K SEED FILE...
      model.safetensors  torchvision.models.resnet18(num_classes=K) after torch.manual_seed(SEED),
                         BN affine/running stats randomised (so eval BN is exercised), saved with
                         safetensors_io (no metadata)
      input.npy          (N,3,224,224) Compose([Resize((224,224)), ToTensor(), Normalize(ImageNet)])
                         of Image.open(FILE).convert("L").convert("RGB")
      logits.npy         model.eval()(input)                                            (N,K)
  roundtrip MODEL INPUT.npy OUT.npy
      loads a safetensors written by PneumoScope into torchvision resnet18 (strict state_dict),
      writes eval logits (N,K); prints the metadata as JSON on stdout.
  accum OUTDIR SEED
      model.safetensors (K=2), input.npy (5,3,64,64); one Adam(lr=1e-2) step over micro-batches of 3
      and 2 films, gradients accumulated with weights 3/5 and 2/5: fc.npy, conv1.npy, l4bn2.npy, loss.npy.
  grad OUTDIR SEED
      model.safetensors (K=3, randomised BN), input.npy (2,3,64,64), targets [0,2], class weights
      [1,2,0.5]; in train mode: loss.npy, grad_<name>.npy for a few parameters, running stats
      after the step (rm_<name>.npy/rv_<name>.npy); adam1_fc.npy / adam2_fc.npy: fc.weight after 1
      and 2 torch.optim.Adam(lr=1e-2, weight_decay=1e-3) steps on the same batch;
      then in eval mode: cam_act4.npy (layer4 output) and cam_grad4.npy = d(logits[:,1].sum())/d(layer4).
  classify MODEL OUT.json FILE...
      probabilities for each PNG/JPEG FILE (same preprocessing as parity) as JSON {file: [p...]}.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

torch.set_num_threads(max(1, os.cpu_count() or 1))
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def randomise_bn(model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.75 + 0.5 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.75 + 0.5 * torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(0, 1000, (1,), generator=g)))


def make_model(k, seed):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18(num_classes=k)
    randomise_bn(m, seed)
    return m


def preprocess(files, size=224):
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(MEAN, STD)])
    return torch.stack([tf(Image.open(f).convert("L").convert("RGB")) for f in files])


def cmd_parity(outdir, k, seed, files):
    os.makedirs(outdir, exist_ok=True)
    m = make_model(int(k), int(seed)).eval()
    safetensors_io.save(os.path.join(outdir, "model.safetensors"), m.state_dict())
    x = preprocess(files)
    np.save(os.path.join(outdir, "input.npy"), x.numpy().astype(np.float32))
    with torch.no_grad():
        y = m(x)
    np.save(os.path.join(outdir, "logits.npy"), y.numpy().astype(np.float32))


def load_ours(path):
    sd, meta, _ = safetensors_io.load_model(path)
    k = sd["fc.weight"].shape[0]
    m = torchvision.models.resnet18(num_classes=k)
    sd = {n: t.float() if t.is_floating_point() else t for n, t in sd.items()}
    m.load_state_dict(sd, strict=True)
    return m.eval(), meta


def cmd_roundtrip(model, inp, out):
    m, meta = load_ours(model)
    x = torch.from_numpy(np.load(inp))
    with torch.no_grad():
        y = m(x)
    np.save(out, y.numpy().astype(np.float32))
    print(json.dumps(meta))


def model_and_input(outdir, k, seed, n, input_seed):
    """make_model(k, seed) saved as OUTDIR/model.safetensors and n random 64 px inputs as input.npy."""
    os.makedirs(outdir, exist_ok=True)
    m = make_model(k, seed)
    safetensors_io.save(os.path.join(outdir, "model.safetensors"), m.state_dict())
    x = torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(input_seed))
    np.save(os.path.join(outdir, "input.npy"), x.numpy())
    return m, x


def cmd_grad(outdir, seed):
    seed = int(seed)
    m, x = model_and_input(outdir, 3, seed, 2, seed + 7)
    tg = torch.tensor([0, 2])
    w = torch.tensor([1.0, 2.0, 0.5])
    m.train()
    loss = torch.nn.functional.cross_entropy(m(x), tg, weight=w)
    loss.backward()
    np.save(os.path.join(outdir, "loss.npy"), np.array([loss.item()], dtype=np.float64))
    for name, p in m.named_parameters():
        np.save(os.path.join(outdir, "grad_%s.npy" % name), p.grad.numpy())
    for name, b in m.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            np.save(os.path.join(outdir, "buf_%s.npy" % name), b.numpy())
    # Adam: two steps from the same start on the same batch (train mode; BN stats move on).
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-3)
    opt.step()
    np.save(os.path.join(outdir, "adam1_fc.npy"), m.fc.weight.detach().numpy())
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), tg, weight=w).backward()
    opt.step()
    np.save(os.path.join(outdir, "adam2_fc.npy"), m.fc.weight.detach().numpy())
    np.save(os.path.join(outdir, "adam2_conv1.npy"), m.conv1.weight.detach().numpy())
    # Grad-CAM quantities in eval mode from the original weights.
    m2 = make_model(3, seed).eval()
    acts = {}
    m2.layer4.register_forward_hook(lambda mod, i, o: acts.__setitem__("a", o))
    y = m2(x)
    a = acts["a"]
    (ga,) = torch.autograd.grad(y[:, 1].sum(), a)
    np.save(os.path.join(outdir, "cam_logits.npy"), y.detach().numpy())
    np.save(os.path.join(outdir, "cam_act4.npy"), a.detach().numpy())
    np.save(os.path.join(outdir, "cam_grad4.npy"), ga.numpy())


def cmd_accum(outdir, seed):
    """One Adam step over two micro-batches (3 and 2 films) with gradients accumulated, each
    micro-batch's loss weighted by its share of the 5 films, BatchNorm per micro-batch: what
    ps_train_step does (and what 2 data-parallel ranks do)."""
    m, x = model_and_input(outdir, 2, int(seed), 5, int(seed) + 11)
    y = torch.tensor([0, 1, 1, 0, 1])
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    opt.zero_grad()
    total = 0.0
    for lo, hi in ((0, 3), (3, 5)):
        loss = torch.nn.functional.cross_entropy(m(x[lo:hi]), y[lo:hi])
        total += loss.item() * (hi - lo)
        (loss * ((hi - lo) / 5.0)).backward()
    opt.step()
    np.save(os.path.join(outdir, "loss.npy"), np.array([total / 5.0], dtype=np.float64))
    np.save(os.path.join(outdir, "fc.npy"), m.fc.weight.detach().numpy())
    np.save(os.path.join(outdir, "conv1.npy"), m.conv1.weight.detach().numpy())
    np.save(os.path.join(outdir, "l4bn2.npy"), m.layer4[1].bn2.weight.detach().numpy())


def cmd_classify(model, out, files):
    m, meta = load_ours(model)
    size = int(meta.get("input_size", 224))
    res = {}
    with torch.no_grad():
        for f in files:
            p = torch.softmax(m(preprocess([f], size)), 1)[0]
            res[f] = [float(v) for v in p]
    with open(out, "w") as fh:
        json.dump(res, fh)


def cmd_halves(outdir, dtype):
    """A binary model stored as F16 or BF16 whose layer4.0.conv2.weight holds every one of the
    65536 bit patterns (zeros, subnormals, normals, infinities, NaNs) in its first elements,
    and torch's own float32 conversion of that tensor (expected.npy)."""
    os.makedirs(outdir, exist_ok=True)
    m = make_model(2, 5)
    sd = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v) for k, v in m.state_dict().items()}
    w = sd["layer4.0.conv2.weight"]
    bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    flat = w.reshape(-1).clone()
    flat[:65536] = bits.view(getattr(torch, dtype))
    sd["layer4.0.conv2.weight"] = flat.reshape(w.shape)
    safetensors_io.save(os.path.join(outdir, "model.safetensors"), sd, {"task": "binary"})
    np.save(os.path.join(outdir, "expected.npy"), flat[:65536].float().numpy())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"parity": lambda: cmd_parity(args[0], args[1], args[2], args[3:]),
     "roundtrip": lambda: cmd_roundtrip(*args),
     "grad": lambda: cmd_grad(*args),
     "accum": lambda: cmd_accum(*args),
     "halves": lambda: cmd_halves(*args),
     "classify": lambda: cmd_classify(args[0], args[1], args[2:])}[cmd]()
