#!/usr/bin/python3
"""torch references for tests/test_torch.c: seeded inputs and the results of the ops the C
wrapper exposes, each a .npy in OUTDIR.   usage: model_ops_reference.py OUTDIR"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(3)


def save(name, t):
    np.save(os.path.join(out, name + ".npy"), t.detach().numpy())


x = torch.randn(2, 3, 9, 9)
w = torch.randn(4, 3, 3, 3)
b = torch.randn(4)
save("x", x), save("w", w), save("b", b)
save("conv", F.conv2d(x, w, b, stride=2, padding=1))
g, beta = torch.rand(3) + 0.5, torch.randn(3)
rm, rv = torch.randn(3) * 0.1, torch.rand(3) + 0.5
save("bn_g", g), save("bn_beta", beta), save("bn_rm0", rm), save("bn_rv0", rv)
save("bn_eval", F.batch_norm(x, rm.clone(), rv.clone(), g, beta, training=False, eps=1e-5))
rm2, rv2 = rm.clone(), rv.clone()
save("bn_train", F.batch_norm(x, rm2, rv2, g, beta, training=True, momentum=0.1, eps=1e-5))
save("bn_rm1", rm2), save("bn_rv1", rv2)
save("maxpool", F.max_pool2d(x, 3, 2, 1))
save("aap", F.adaptive_avg_pool2d(x, (4, 3)))
save("mean23", x.mean(dim=(2, 3), keepdim=True))
save("interp", F.interpolate(x, size=(13, 5), mode="bilinear", align_corners=False))
lx = torch.randn(5, 7, requires_grad=True)
lw, lb = torch.randn(4, 7), torch.randn(4)
save("lin_x", lx), save("lin_w", lw), save("lin_b", lb)
y = F.linear(lx, lw, lb)
save("lin", y)
save("softmax", torch.softmax(y, 1))
save("log_softmax", torch.log_softmax(y, 1))
t = torch.tensor([0, 3, 1, 1, 2])
cw = torch.tensor([1.0, 0.5, 2.0, 1.5])
np.save(os.path.join(out, "ce_t.npy"), t.numpy())
save("ce_w", cw)
ce = F.cross_entropy(y, t, weight=cw)
save("ce", ce.reshape(1))
save("ce_ls", F.cross_entropy(y, t, weight=cw, label_smoothing=0.1).reshape(1))
save("ce_plain", F.cross_entropy(y, t).reshape(1))
ce.backward()
save("ce_grad_x", lx.grad)
# Adam on a quadratic: p <- argmin sum((p - target)^2), 5 steps.
p = torch.nn.Parameter(torch.randn(6))
target = torch.randn(6)
save("adam_p0", p), save("adam_target", target)
opt = torch.optim.Adam([p], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)
for _ in range(5):
    opt.zero_grad()
    ((p - target) ** 2).sum().backward()
    opt.step()
save("adam_p5", p)
