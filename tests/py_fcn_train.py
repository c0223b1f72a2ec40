"""An FCN-style net trains in cortado exactly as a PyTorch reference built here by hand.

The net (a small FCN-16s): a VGG-like stack of 3x3 convolutions and ReLUs with 2x2 max pooling
(conv1_1 padded as FCN pads it, so that the crops have room), fc6 and score_fr as convolutions,
a learnable 2x upsampling (Deconvolution) fused by Eltwise SUM with the pool2 skip scores cut
to its size (Crop), a fixed bilinear 4x upsampling (Deconvolution, lr_mult 0) and a Crop back
to the input, then SoftmaxWithLoss over every pixel. Caffe's SGD with momentum and weight
decay runs a few iterations through the `cortado` Python module; the same net, written in
torch operations (conv_transpose2d for the deconvolutions, slices for the crops), runs the same
update rule in float64. The losses and the final weights must agree to 1e-4 (relative to
each tensor's largest magnitude).

Env: CT_SOURCE_DIR (the repository root), CORTADO or CT_BUILD_DIR (where libcortado.so was
built). Prints "N passed, N failed"; exits non-zero on a failure.
"""
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

SRC = os.environ.get("CT_SOURCE_DIR", "..")
sys.path.insert(0, os.path.join(SRC, "python"))
import cortado  # noqa: E402

torch.set_default_dtype(torch.float64)
passed = failed = 0
N, K, S = 2, 4, 24          # images, classes, image side
LR, MOM, WD, ITERS = 0.1, 0.9, 5e-4, 8


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)


def conv(name, bottom, top, n, k, pad=0, std=0.1, relu=True):
    s = f"""layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"
  convolution_param {{ num_output: {n} kernel_size: {k} pad: {pad}
    weight_filler {{ type: "gaussian" std: {std} }} bias_filler {{ type: "gaussian" std: 0.05 }} }} }}
"""
    if relu:
        s += f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{top}" top: "{top}" }}\n'
    return s


def pool(name, bottom, top):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{top}" '
            f'pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\n')


NET = f"""name: "fcn_small"
layer {{ name: "input" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: {N} dim: 3 dim: {S} dim: {S} }} shape {{ dim: {N} dim: 1 dim: {S} dim: {S} }} }} }}
{conv("conv1_1", "data", "conv1_1", 8, 3, pad=20)}{conv("conv1_2", "conv1_1", "conv1_2", 8, 3, pad=1)}
{pool("pool1", "conv1_2", "pool1")}{conv("conv2_1", "pool1", "conv2_1", 16, 3, pad=1)}{pool("pool2", "conv2_1", "pool2")}
{conv("conv3_1", "pool2", "conv3_1", 16, 3, pad=1)}{pool("pool3", "conv3_1", "pool3")}
{conv("fc6", "pool3", "fc6", 32, 3)}{conv("score_fr", "fc6", "score_fr", K, 1, relu=False)}
layer {{ name: "upscore2" type: "Deconvolution" bottom: "score_fr" top: "upscore2"
  convolution_param {{ num_output: {K} kernel_size: 4 stride: 2 bias_term: false
    weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
{conv("score_pool2", "pool2", "score_pool2", K, 1, std=0.05, relu=False)}
layer {{ name: "score_pool2c" type: "Crop" bottom: "score_pool2" bottom: "upscore2" top: "score_pool2c"
  crop_param {{ axis: 2 offset: 1 }} }}
layer {{ name: "fuse" type: "Eltwise" bottom: "upscore2" bottom: "score_pool2c" top: "fuse"
  eltwise_param {{ operation: SUM }} }}
layer {{ name: "upscore4" type: "Deconvolution" bottom: "fuse" top: "upscore4"
  param {{ lr_mult: 0 }}
  convolution_param {{ num_output: {K} kernel_size: 8 stride: 4 group: {K} bias_term: false
    weight_filler {{ type: "bilinear" }} }} }}
layer {{ name: "score" type: "Crop" bottom: "upscore4" bottom: "data" top: "score" crop_param {{ offset: 18 }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }}
"""

LEARNED = ["conv1_1", "conv1_2", "conv2_1", "conv3_1", "fc6", "score_fr", "upscore2", "score_pool2"]


def reference_forward(P, x):
    """The net in torch; P maps a layer name to [weight, bias?]."""
    def c(name, v, pad=0, relu=True):
        y = F.conv2d(v, P[name][0], P[name][1], padding=pad)
        return F.relu(y) if relu else y
    mp = lambda v: F.max_pool2d(v, 2, 2, ceil_mode=True)  # noqa: E731
    h = c("conv1_2", c("conv1_1", x, pad=20), pad=1)
    p2 = mp(c("conv2_1", mp(h), pad=1))
    p3 = mp(c("conv3_1", p2, pad=1))
    score_fr = c("score_fr", c("fc6", p3), relu=False)
    up2 = F.conv_transpose2d(score_fr, P["upscore2"][0], stride=2)
    sp2 = c("score_pool2", p2, relu=False)
    fuse = up2 + sp2[:, :, 1:1 + up2.shape[2], 1:1 + up2.shape[3]]
    up4 = F.conv_transpose2d(fuse, P["upscore4"][0], stride=4, groups=K)
    return up4[:, :, 18:18 + S, 18:18 + S]


def main():
    T = tempfile.mkdtemp(prefix="cortado_fcn.")
    try:
        net_path = os.path.join(T, "fcn.prototxt")
        with open(net_path, "w") as f:
            f.write(NET)
        solver_path = os.path.join(T, "solver.prototxt")
        with open(solver_path, "w") as f:
            f.write(f'net: "{net_path}"\nbase_lr: {LR}\nmomentum: {MOM}\nweight_decay: {WD}\n'
                    f'lr_policy: "fixed"\nmax_iter: 100\ndisplay: 0\nrandom_seed: 17\n'
                    f'snapshot_prefix: "{T}/fcn"\n')
        s = cortado.Solver(solver_path, quiet=True)
        net = s.net
        check(net.blobs["score"].shape == (N, K, S, S), f"score is N x K x S x S: {net.blobs['score'].shape}")
        check(net.blobs["upscore2"].shape == (N, K, 14, 14), f"upscore2: {net.blobs['upscore2'].shape}")
        rng = np.random.default_rng(3)
        x = rng.standard_normal((N, 3, S, S)).astype(np.float32)
        # labels in blocks, so that the upsampled coarse scores can learn them
        lab = (np.add.outer(np.arange(S) // 6, np.arange(S) // 8) % K).astype(np.float32)
        labels = np.stack([lab, (lab + 1) % K])[:, None]
        net.blobs["data"].data[...] = x
        net.blobs["label"].data[...] = labels
        # the reference starts from cortado's initial weights
        P = {name: [torch.tensor(b.data.astype(np.float64), requires_grad=True) for b in net.params[name]]
             for name in LEARNED + ["upscore4"]}
        bil = P["upscore4"][0].detach().numpy()
        f, c = 4, 3.5  # Caffe's bilinear filler for kernel 8: f = ceil(8 / 2), c = (2f - 1 - f % 2) / (2f)
        want_bil = np.outer(1 - np.abs(np.arange(8) / f - c / f * 1), 1 - np.abs(np.arange(8) / f - c / f * 1))
        check(np.allclose(bil, np.broadcast_to(want_bil, bil.shape), atol=1e-6), "upscore4 holds a bilinear kernel")
        hist = {name: [torch.zeros_like(p) for p in P[name]] for name in LEARNED}
        xt = torch.tensor(x.astype(np.float64))
        yt = torch.tensor(labels[:, 0], dtype=torch.long)
        losses, want_losses = [], []
        for it in range(ITERS):
            s.step(1)
            losses.append(float(net.blobs["loss"].data))
            score = reference_forward(P, xt)
            loss = F.cross_entropy(score, yt)  # the mean over every pixel: Caffe's VALID normalization
            want_losses.append(float(loss))
            for ps in P.values():
                for p in ps:
                    p.grad = None
            loss.backward()
            with torch.no_grad():  # Caffe's SGD: v = m v + lr (g + wd w); w -= v
                for name in LEARNED:
                    for p, v in zip(P[name], hist[name]):
                        v.mul_(MOM).add_(LR * (p.grad + WD * p))
                        p -= v
        err = max(abs(a - b) / max(abs(b), 1e-3) for a, b in zip(losses, want_losses))
        check(err < 1e-4, f"losses {losses} vs the reference {want_losses} (worst relative error {err:.3g})")
        check(want_losses[-1] < want_losses[0], f"the loss falls: {want_losses[0]:.4f} -> {want_losses[-1]:.4f}")
        for name in LEARNED + ["upscore4"]:
            for j, (blob, p) in enumerate(zip(net.params[name], P[name])):
                want = p.detach().numpy()
                scale = max(float(np.abs(want).max()), 1e-3)
                e = float(np.abs(blob.data - want).max())
                check(e <= 1e-4 * scale, f"{name} blob {j} after {ITERS} iterations: max error {e:.3g} (scale {scale:.3g})")
        check(np.array_equal(net.params["upscore4"][0].data, bil), "lr_mult 0 keeps the bilinear upsampling fixed")
    finally:
        shutil.rmtree(T, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
