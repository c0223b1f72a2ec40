"""Caffe 1.0's remaining layers (issue 21) against PyTorch: float64 references built here from
torch operations (autograd for the gradients) or, where PyTorch has no twin, from numpy loops
written to Caffe's definitions.

Run with Debian's python (torch 1.13, numpy):
    CT_TESTKIT=build/tests/libct_testkit.so /usr/bin/python3 tests/py_torch_caffe1.py
Prints "N passed, N failed" last and exits non-zero on any failure.
"""
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctk import Layer  # noqa: E402
from torch_check import case, close, cortado, expect_error, ok, randn, rng, run_tests, t  # noqa: E402


# ------------------------------------------------------------------ Deconvolution

@case
def deconv(shape, K, kernel, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1, bias=True, lowering=None):
    N, C, H, W = shape
    kh, kw = kernel
    params = (f"num_output: {K} kernel_h: {kh} kernel_w: {kw} stride_h: {stride[0]} stride_w: {stride[1]} "
              f"pad_h: {pad[0]} pad_w: {pad[1]} dilation: {dilation[0]} dilation: {dilation[1]} group: {group} "
              f"bias_term: {'true' if bias else 'false'}")
    low = f"lowering: {lowering} " if lowering else ""
    x = randn(*shape)
    w = randn(C, K // group, kh, kw)
    b = randn(K)
    xt, wt, bt = t(x), t(w), t(b)
    y = F.conv_transpose2d(xt, wt, bt if bias else None, stride=stride, padding=pad, dilation=dilation,
                           groups=group)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    tops, bd, wd = cortado(f'type: "Deconvolution" {low}convolution_param {{ {params} }}', [x],
                           blobs=[w, b] if bias else [w], top_diffs=[dy])
    name = f"Deconvolution {shape} K={K} k={kernel} s={stride} p={pad} d={dilation} g={group} {lowering or 'AUTO'}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dw", wd[0], wt.grad.numpy())
    if bias:
        close(name + " db", wd[1], bt.grad.numpy())
    # the weight gradient alone (no bottom gradient): the lowering is not there to reuse
    _, _, wd0 = cortado(f'type: "Deconvolution" {low}convolution_param {{ {params} }}', [x],
                        blobs=[w, b] if bias else [w], top_diffs=[dy], mask=0)
    close(name + " dw without dx", wd0[0], wt.grad.numpy())


def test_deconv():
    deconv((2, 3, 5, 4), 4, (3, 3))
    deconv((2, 4, 6, 6), 3, (4, 4), stride=(2, 2), pad=(1, 1))     # FCN's upsampling by 2
    deconv((1, 5, 4, 4), 2, (16, 16), stride=(8, 8), pad=(4, 4))   # FCN-8s's last, smaller
    deconv((2, 4, 5, 6), 6, (3, 3), pad=(1, 1), group=2)
    deconv((1, 4, 5, 5), 4, (3, 3), stride=(2, 2), group=4, bias=False)  # depthwise
    deconv((2, 2, 4, 5), 3, (3, 2), stride=(1, 3), pad=(1, 0), dilation=(2, 1))
    deconv((3, 5, 4, 4), 3, (1, 1))
    for lowering in ("TYPE1", "TYPE2", "TYPE3"):
        deconv((2, 3, 5, 4), 4, (3, 3), stride=(2, 2), pad=(1, 1), lowering=lowering)
    deconv((2, 3, 5, 4), 4, (3, 3), pad=(1, 1), lowering="WINOGRAD")
    deconv((2, 6, 40, 36), 5, (3, 3), pad=(1, 1))  # large planes: type 1's per-image GEMMs


# ------------------------------------------------------------------ element-wise: Threshold, Clip, Swish

@case
def neuron(text, fn, shape=(2, 3, 4, 5), away_from=()):
    x = randn(*shape)
    for k in away_from:  # no input within 1e-3 of a kink: the gradient there is a matter of convention
        x[np.abs(x - k) < 1e-3] += 0.01
    xt = t(x)
    y = fn(xt)
    dy = randn(*shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    tops, bd, _ = cortado(text, [x], top_diffs=[dy])
    close(text + " forward", tops[0], y.detach().numpy())
    close(text + " dx", bd[0], xt.grad.numpy() if xt.grad is not None else np.zeros_like(x))


def test_neurons():
    neuron('type: "Threshold"', lambda x: (x > 0).double() + 0 * x, away_from=(0,))
    neuron('type: "Threshold" threshold_param { threshold: 0.4 }', lambda x: (x > 0.4).double() + 0 * x,
           away_from=(0.4,))
    neuron('type: "Clip" clip_param { min: -0.5 max: 0.75 }', lambda x: torch.clamp(x, -0.5, 0.75),
           away_from=(-0.5, 0.75))
    neuron('type: "Swish"', lambda x: x * torch.sigmoid(x))
    neuron('type: "Swish"', F.silu)
    neuron('type: "Swish" swish_param { beta: 1.7 }', lambda x: x * torch.sigmoid(1.7 * x))
    neuron('type: "Swish" swish_param { beta: -0.6 }', lambda x: x * torch.sigmoid(-0.6 * x))
    # Caffe's bounds pass the gradient: x exactly at min or max
    x = np.array([[-0.5, 0.75, 0.0, 2.0, -3.0]], dtype=np.float32)
    tops, bd, _ = cortado('type: "Clip" clip_param { min: -0.5 max: 0.75 }', [x], top_diffs=[np.ones_like(x)])
    close("Clip at its bounds forward", tops[0], np.clip(x, -0.5, 0.75))
    close("Clip at its bounds dx", bd[0], np.array([[1, 1, 1, 0, 0]]))


# ------------------------------------------------------------------ Crop

@case
def crop(shape, ref_shape, axis=2, offsets=()):
    x = randn(*shape)
    ref = randn(*ref_shape)
    a = axis if axis >= 0 else len(shape) + axis
    offs = [0] * len(shape)
    for i in range(a, len(shape)):
        offs[i] = (offsets[0] if len(offsets) == 1 else offsets[i - a]) if offsets else 0
    sl = tuple(slice(offs[i], offs[i] + (ref_shape[i] if i >= a else shape[i])) for i in range(len(shape)))
    xt = t(x)
    y = xt[sl]
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    params = f"axis: {axis} " + " ".join(f"offset: {o}" for o in offsets)
    tops, bd, _ = cortado(f'type: "Crop" crop_param {{ {params} }}', [x, ref], top_diffs=[dy], mask=1)
    name = f"Crop {shape} to {ref_shape} axis {axis} offsets {offsets}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())


def test_crop():
    crop((2, 21, 44, 46), (2, 3, 32, 32), offsets=(5,))          # FCN's score crop
    crop((2, 3, 10, 9), (2, 1, 6, 7), offsets=(3, 1))
    crop((2, 3, 10, 9), (2, 1, 10, 9))
    crop((3, 5, 6, 7), (3, 2, 3, 4), axis=1, offsets=(2, 1, 3))
    crop((4, 5, 6), (2, 3, 6), axis=0, offsets=(1, 2, 0))
    crop((2, 3, 4, 5, 6), (2, 3, 2, 5, 3), axis=-3, offsets=(1, 0, 2))
    crop((9,), (4,), axis=0, offsets=(3,))


# ------------------------------------------------------------------ Reduction, Tile

@case
def reduction(op, shape, axis=0, coeff=1.0):
    x = randn(*shape)
    xt = t(x)
    a = axis if axis >= 0 else len(shape) + axis
    flat = xt.reshape(*shape[:a], -1)
    f = {"SUM": lambda v: v.sum(-1), "ASUM": lambda v: v.abs().sum(-1), "SUMSQ": lambda v: (v * v).sum(-1),
         "MEAN": lambda v: v.mean(-1)}[op]
    y = coeff * f(flat)
    dy = randn(*y.shape) if y.dim() else np.float32(rng.standard_normal())
    y.backward(torch.tensor(dy, dtype=torch.float64))
    text = f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: {coeff} }}'
    tops, bd, _ = cortado(text, [x], top_diffs=[np.asarray(dy).reshape(y.shape)])
    close(text + " forward", tops[0], y.detach().numpy())
    close(text + " dx", bd[0], xt.grad.numpy())


@case
def tile(shape, axis, tiles):
    x = randn(*shape)
    xt = t(x)
    a = axis if axis >= 0 else len(shape) + axis
    reps = [1] * len(shape)
    reps[a] = tiles
    # Caffe tiles the whole block from `axis` on: shape[:a] x tiles x block
    y = xt.reshape(*shape[:a], 1, -1).repeat(*([1] * a), tiles, 1).reshape(
        *shape[:a], shape[a] * tiles, *shape[a + 1:])
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    text = f'type: "Tile" tile_param {{ axis: {axis} tiles: {tiles} }}'
    tops, bd, _ = cortado(text, [x], top_diffs=[dy])
    close(f"{text} {shape} forward", tops[0], y.detach().numpy())
    close(f"{text} {shape} dx", bd[0], xt.grad.numpy())


def test_reduction_tile():
    for op in ("SUM", "ASUM", "SUMSQ", "MEAN"):
        reduction(op, (3, 4, 5))
        reduction(op, (3, 4, 5), axis=1, coeff=-0.7)
        reduction(op, (2, 3, 4, 5), axis=-1, coeff=2.5)
    reduction("MEAN", (6, 5), axis=1)
    tile((2, 3, 4), 1, 3)
    tile((2, 3, 4), 0, 2)
    tile((2, 3, 4, 5), 2, 5)
    tile((3, 2), -1, 1)
    tile((2, 16), 1, 7)


# ------------------------------------------------------------------ MVN

@case
def mvn(shape, variance=True, across=False, eps=None):
    x = randn(*shape) * 2 + 0.5
    xt = t(x)
    g = xt.reshape(shape[0], -1) if across or len(shape) < 2 else xt.reshape(shape[0] * shape[1], -1)
    c = g - g.mean(1, keepdim=True)
    e = 1e-9 if eps is None else eps
    std = c.pow(2).mean(1, keepdim=True).sqrt() + e
    y = (c / std if variance else c).reshape(shape)
    dy = randn(*shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    params = f"normalize_variance: {'true' if variance else 'false'} across_channels: {'true' if across else 'false'}"
    if eps is not None:
        params += f" eps: {eps}"
    tops, bd, _ = cortado(f'type: "MVN" mvn_param {{ {params} }}', [x], top_diffs=[dy])
    name = f"MVN {shape} {params}"
    close(name + " forward", tops[0], y.detach().numpy())
    if eps is None or not variance:
        close(name + " dx", bd[0], xt.grad.numpy())
        return
    # a large eps: Caffe's backward formula, which uses y where the exact gradient has (x - mean) / std
    yv = y.detach().numpy().reshape(g.shape)
    dyv = dy.astype(np.float64).reshape(g.shape)
    n = yv.shape[1]
    want = (dyv - ((dyv * yv).sum(1, keepdims=True) * yv + dyv.sum(1, keepdims=True)) / n) / std.detach().numpy()
    close(name + " dx (Caffe's formula)", bd[0], want.reshape(shape))


def test_mvn():
    mvn((2, 3, 4, 5))
    mvn((2, 3, 4, 5), across=True)
    mvn((2, 3, 4, 5), variance=False)
    mvn((3, 4, 7), variance=False, across=True)
    mvn((2, 3, 4, 5), eps=0.5)
    mvn((4, 6), across=True)


# ------------------------------------------------------------------ losses

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def blob_proto(values, legacy_shape):
    """A BlobProto in Caffe's wire format, encoded here by hand: num/channels/height/width (fields
    1-4) and packed float data (field 5)."""
    msg = b"".join(bytes([(f + 1) << 3]) + varint(d) for f, d in enumerate(legacy_shape))
    data = struct.pack(f"<{len(values)}f", *values)
    return msg + bytes([(5 << 3) | 2]) + varint(len(data)) + data


def labels(n, k, shape=None):
    return rng.integers(0, k, size=n).astype(np.float32).reshape(shape or (n,))


@case
def multinomial(N, K):
    p = rng.uniform(0.05, 1.0, size=(N, K)).astype(np.float32)
    y = labels(N, K)
    pt = t(p)
    loss = -torch.log(pt[torch.arange(N), torch.tensor(y, dtype=torch.long)].clamp(min=1e-20)).mean()
    loss.backward()
    tops, bd, _ = cortado('type: "MultinomialLogisticLoss"', [p, y], top_diffs=[np.float32(1)], mask=1)
    close(f"MultinomialLogisticLoss {N}x{K} loss", tops[0], loss.detach().numpy())
    close(f"MultinomialLogisticLoss {N}x{K} dx", bd[0], pt.grad.numpy())
    # a loss weight scales the gradient
    _, bd2, _ = cortado('type: "MultinomialLogisticLoss"', [p, y], top_diffs=[np.float32(0.25)], mask=1)
    close(f"MultinomialLogisticLoss {N}x{K} dx at loss weight 0.25", bd2[0], 0.25 * pt.grad.numpy())


@case
def infogain(shape, axis=1, H_from="bottom", ignore=None, normalization=None, second_top=False):
    K = shape[axis]
    outer = int(np.prod(shape[:axis]))
    inner = int(np.prod(shape[axis + 1:]))
    x = randn(*shape)
    lab_shape = shape[:axis] + shape[axis + 1:]
    y = labels(outer * inner, K, lab_shape)
    if ignore is not None:
        y.reshape(-1)[::3] = ignore
    H = rng.uniform(0, 1.5, size=(K, K)).astype(np.float32)
    xt = t(x)
    prob = torch.softmax(xt, dim=axis)
    pm = prob.movedim(axis, -1).reshape(-1, K)
    yl = torch.tensor(y.reshape(-1), dtype=torch.long)
    keep = torch.ones(len(yl), dtype=torch.bool) if ignore is None else yl != ignore
    Ht = torch.tensor(H, dtype=torch.float64)
    per = -(Ht[yl.clamp(0, K - 1)] * torch.log(pm.clamp(min=1e-20))).sum(1)
    total = per[keep].sum()
    norm = {"VALID": max(1, int(keep.sum())), None: max(1, int(keep.sum())), "FULL": outer * inner,
            "BATCH_SIZE": outer, "NONE": 1}[normalization]
    loss = total / norm
    loss.backward()
    params = f"infogain_loss_param {{ axis: {axis}"
    bottoms = [x, y]
    tmp = None
    if H_from == "source":
        tmp = tempfile.NamedTemporaryFile(suffix=".binaryproto", delete=False)
        tmp.write(blob_proto(H.reshape(-1).tolist(), (1, 1, K, K)))
        tmp.close()
        params += f' source: "{tmp.name}"'
    else:
        bottoms.append(H)
    params += " }"
    lp = []
    if ignore is not None:
        lp.append(f"ignore_label: {ignore}")
    if normalization:
        lp.append(f"normalization: {normalization}")
    if lp:
        params += " loss_param { " + " ".join(lp) + " }"
    tops_decl = ' top: "loss" top: "prob"' if second_top else ""
    try:
        tops, bd, _ = cortado(f'type: "InfogainLoss"{tops_decl} {params}', bottoms,
                              top_diffs=[np.float32(1)] + ([np.zeros(shape, np.float32)] if second_top else []),
                              mask=1)
    finally:
        if tmp:
            os.unlink(tmp.name)
    name = f"InfogainLoss {shape} axis {axis} H from {H_from} ignore {ignore} {normalization}"
    close(name + " loss", tops[0], loss.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    if second_top:
        close(name + " prob", tops[1], prob.detach().numpy())


@case
def hinge(N, K, norm):
    x = randn(N, K)
    y = labels(N, K)
    xt = t(x)
    sign = -torch.ones(N, K, dtype=torch.float64)
    sign[torch.arange(N), torch.tensor(y, dtype=torch.long)] = 1
    m = torch.relu(1 - sign * xt)
    loss = (m.sum() if norm == "L1" else (m * m).sum()) / N
    loss.backward()
    tops, bd, _ = cortado(f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}', [x, y],
                          top_diffs=[np.float32(1)], mask=1)
    close(f"HingeLoss {norm} loss", tops[0], loss.detach().numpy())
    close(f"HingeLoss {norm} dx", bd[0], xt.grad.numpy())


@case
def contrastive(N, C, margin, legacy=False):
    a, b = randn(N, C), randn(N, C)
    y = (rng.uniform(size=N) < 0.5).astype(np.float32)
    at, bt = t(a), t(b)
    d2 = ((at - bt) ** 2).sum(1)
    yt = torch.tensor(y, dtype=torch.float64)
    if legacy:
        dis = torch.relu(margin - d2)
    else:
        dis = torch.relu(margin - d2.sqrt()) ** 2
    loss = (yt * d2 + (1 - yt) * dis).sum() / N / 2
    loss.backward()
    text = f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: {margin} legacy_version: ' \
           f'{"true" if legacy else "false"} }}'
    tops, bd, _ = cortado(text, [a, b, y], top_diffs=[np.float32(1)], mask=3)
    close(text + " loss", tops[0], loss.detach().numpy())
    # Caffe's dissimilar gradient divides by d + 1e-4 where the exact one has d (a 1e-4 / d change)
    close(text + " da", bd[0], at.grad.numpy(), rtol=1e-3)
    close(text + " db", bd[1], bt.grad.numpy(), rtol=1e-3)


def test_losses():
    multinomial(5, 4)
    multinomial(8, 10)
    infogain((4, 5))
    infogain((4, 5), H_from="source")
    infogain((2, 4, 3, 2), ignore=1)
    infogain((2, 3, 4), axis=2, normalization="FULL", second_top=True)
    infogain((3, 4, 2), normalization="BATCH_SIZE")
    infogain((3, 4, 2), normalization="NONE", ignore=0)
    hinge(6, 5, "L1")
    hinge(6, 5, "L2")
    contrastive(10, 3, 2.0)
    contrastive(10, 3, 4.0)
    contrastive(10, 3, 5.0, legacy=True)


# ------------------------------------------------------------------ Embed

@case
def embed(shape, K, D, bias=True):
    idx = rng.integers(0, K, size=shape).astype(np.float32)
    w = randn(K, D)
    b = randn(D)
    wt, bt = t(w), t(b)
    y = F.embedding(torch.tensor(idx, dtype=torch.long), wt) + (bt if bias else 0)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    text = f'type: "Embed" embed_param {{ input_dim: {K} num_output: {D} bias_term: {"true" if bias else "false"} }}'
    tops, _, wd = cortado(text, [idx], blobs=[w, b] if bias else [w], top_diffs=[dy], mask=0)
    close(f"{text} {shape} forward", tops[0], y.detach().numpy())
    close(f"{text} {shape} dW", wd[0], wt.grad.numpy())
    if bias:
        close(f"{text} {shape} db", wd[1], bt.grad.numpy())


def test_embed():
    embed((5,), 4, 3)
    embed((3, 7), 10, 6)          # repeated indices sum their rows
    embed((2, 3, 4), 2, 5, bias=False)


# ------------------------------------------------------------------ SPP, Im2col

def caffe_pool(x, k, s, pad, out, method):
    """Caffe's pooling of a 4-D tensor, window by window (torch ops, so autograd gives backward):
    MAX over the window clipped to the image; AVE summing the window clipped to the image and
    dividing by its size clipped to the padded image."""
    N, C, H, W = x.shape
    rows = []
    for oh in range(out[0]):
        cols = []
        for ow in range(out[1]):
            h0, w0 = oh * s[0] - pad[0], ow * s[1] - pad[1]
            h1, w1 = min(h0 + k[0], H + pad[0]), min(w0 + k[1], W + pad[1])
            size = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            win = x[:, :, h0c:h1c, w0c:w1c].reshape(N, C, -1)
            cols.append(win.amax(-1) if method == "MAX" else win.sum(-1) / size)
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


@case
def spp(shape, height, method="MAX"):
    N, C, H, W = shape
    x = rng.permutation(N * C * H * W).reshape(shape).astype(np.float32) * 0.01  # no ties for MAX
    xt = t(x)
    levels = []
    for i in range(height):
        b = 2 ** i
        kh, kw = -(-H // b), -(-W // b)
        ph, pw = (kh * b - H + 1) // 2, (kw * b - W + 1) // 2
        levels.append(caffe_pool(xt, (kh, kw), (kh, kw), (ph, pw), (b, b), method))
    y = levels[0] if height == 1 else torch.cat([v.reshape(N, -1) for v in levels], 1)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    text = f'type: "SPP" spp_param {{ pyramid_height: {height} pool: {method} }}'
    tops, bd, _ = cortado(text, [x], top_diffs=[dy])
    close(f"{text} {shape} forward", tops[0], y.detach().numpy())
    close(f"{text} {shape} dx", bd[0], xt.grad.numpy())


@case
def im2col(shape, kernel, stride=(1, 1), pad=(0, 0), dilation=(1, 1)):
    x = randn(*shape)
    xt = t(x)
    N, C, H, W = shape
    cols = F.unfold(xt, kernel, dilation=dilation, padding=pad, stride=stride)
    OH = (H + 2 * pad[0] - (dilation[0] * (kernel[0] - 1) + 1)) // stride[0] + 1
    OW = (W + 2 * pad[1] - (dilation[1] * (kernel[1] - 1) + 1)) // stride[1] + 1
    y = cols.reshape(N, C * kernel[0] * kernel[1], OH, OW)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    text = (f'type: "Im2col" convolution_param {{ kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} '
            f'stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} dilation: {dilation[0]} dilation: {dilation[1]} }}')
    tops, bd, _ = cortado(text, [x], top_diffs=[dy])
    close(f"{text} {shape} forward", tops[0], y.detach().numpy())
    close(f"{text} {shape} dx", bd[0], xt.grad.numpy())


def test_spp_im2col():
    spp((2, 3, 13, 13), 3)
    spp((2, 3, 13, 11), 3, "AVE")
    spp((1, 2, 7, 9), 2)
    spp((2, 2, 6, 5), 1, "AVE")
    spp((1, 4, 32, 24), 4)
    im2col((2, 3, 6, 5), (3, 3))
    im2col((2, 2, 7, 7), (3, 3), stride=(2, 2), pad=(1, 1))
    im2col((1, 3, 8, 9), (2, 3), stride=(1, 2), pad=(1, 0), dilation=(2, 1))
    im2col((3, 4, 5, 5), (1, 1))


# ------------------------------------------------------------------ Parameter, BatchReindex, Filter

@case
def test_parameter():
    w = randn(3, 4, 2)
    dy = randn(3, 4, 2)
    tops, _, wd = cortado('type: "Parameter" parameter_param { shape { dim: 3 dim: 4 dim: 2 } }', [], blobs=[w],
                          top_diffs=[dy])
    close("Parameter forward", tops[0], w)
    close("Parameter blob gradient", wd[0], dy)
    with Layer('type: "Parameter" parameter_param { shape { dim: 2 dim: 5 } }', []) as l:
        l.forward()
        ok(np.array_equal(l.top(0), np.zeros((2, 5), np.float32)), "Parameter starts at zero, as in Caffe")


@case
def batch_reindex(shape, idx):
    x = randn(*shape)
    xt = t(x)
    y = xt[torch.tensor(idx)]
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    tops, bd, _ = cortado('type: "BatchReindex"', [x, np.array(idx, np.float32)], top_diffs=[dy], mask=1)
    close(f"BatchReindex {shape} {idx} forward", tops[0], y.detach().numpy())
    close(f"BatchReindex {shape} {idx} dx", bd[0], xt.grad.numpy())


@case
def filter_(shapes, selector):
    xs = [randn(*s) for s in shapes]
    xts = [t(x) for x in xs]
    keep = torch.tensor(np.asarray(selector) != 0)
    ys = [xt[keep] for xt in xts]
    dys = [randn(*y.shape) for y in ys]
    for y, dy in zip(ys, dys):
        y.backward(torch.tensor(dy, dtype=torch.float64))
    tops_decl = " ".join(f'top: "t{i}"' for i in range(len(shapes)))
    sel = np.asarray(selector, np.float32).reshape(len(selector), 1)
    tops, bd, _ = cortado(f'type: "Filter" {tops_decl}', xs + [sel], top_diffs=dys, mask=(1 << len(xs)) - 1)
    for i in range(len(xs)):
        close(f"Filter {shapes} {selector} top {i}", tops[i], ys[i].detach().numpy())
        close(f"Filter {shapes} {selector} dx {i}", bd[i], xts[i].grad.numpy())


def test_reindex_filter():
    batch_reindex((4, 3, 2), [3, 0, 0, 2, 1, 3])
    batch_reindex((5, 2), [4])
    filter_([(5, 3), (5, 2, 2)], [1, 0, 0, 2.5, 1])
    filter_([(4, 6)], [0, 0, 1, 0])


def test_errors():
    s4 = [(2, 3, 6, 6)]
    expect_error('type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 group: 2 }', s4,
                 "multiple of group")
    expect_error('type: "Deconvolution" convolution_param { kernel_size: 3 }', s4, "num_output")
    expect_error('type: "Deconvolution" convolution_param { num_output: 2 }', s4, "kernel_size")
    expect_error('type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 1 pad: 1 }', [(1, 3, 1, 1)],
                 "output would be")
    expect_error('type: "Deconvolution" lowering: WINOGRAD convolution_param { num_output: 2 kernel_size: 3 '
                 'stride: 2 }', s4, "WINOGRAD")
    expect_error('type: "Deconvolution" convolution_param { num_output: 2 kernel_size: 3 }', [(2, 3, 6)], "4 axes")
    expect_error('type: "Crop" crop_param { offset: 1 offset: 2 offset: 3 }', [(2, 3, 6, 6), (2, 3, 4, 4)],
                 "one per cropped axis")
    expect_error('type: "Crop" crop_param { offset: 3 }', [(2, 3, 6, 6), (2, 3, 4, 4)], "invalid crop in axis 2")
    expect_error('type: "Crop"', [(2, 3, 6, 6), (2, 3, 4)], "same number of axes")
    expect_error('type: "Crop" crop_param { axis: 4 }', [(2, 3, 6, 6), (2, 3, 4, 4)], "out of range")
    expect_error('type: "Reduction" reduction_param { axis: 3 }', [(2, 3, 4)], "out of range")
    expect_error('type: "Reduction" reduction_param { coeff: inf }', [(2, 3, 4)], "finite")
    expect_error('type: "Tile"', [(2, 3)], "tiles must be given")
    expect_error('type: "Tile" tile_param { tiles: 0 }', [(2, 3)], "positive")
    expect_error('type: "Tile" tile_param { tiles: 2 axis: -3 }', [(2, 3)], "out of range")
    expect_error('type: "Clip" clip_param { min: 1 max: 0 }', [(2, 3)], "must not exceed")
    expect_error('type: "Clip"', [(2, 3)], "clip_param")
    expect_error('type: "Swish" swish_param { beta: nan }', [(2, 3)], "finite")
    expect_error('type: "MVN" mvn_param { eps: -1 }', [(2, 3)], "eps")
    expect_error('type: "MultinomialLogisticLoss"', [(4, 3), (3,)], "same first dimension")
    expect_error('type: "MultinomialLogisticLoss"', [(4, 3), (4, 2)], "one value per item")
    expect_error('type: "MultinomialLogisticLoss"', [(2, 3), (2,)], "not a class",
                 bottoms=[np.full((2, 3), 0.3, np.float32), np.array([1, 3], np.float32)])
    expect_error('type: "HingeLoss"', [(2, 3), (2,)], "not a class",
                 bottoms=[np.zeros((2, 3), np.float32), np.array([0.5, 1], np.float32)])
    expect_error('type: "InfogainLoss"', [(2, 3), (2,)], "source or a third bottom")
    expect_error('type: "InfogainLoss"', [(2, 3), (2,), (2, 2)], "3 x 3")
    expect_error('type: "InfogainLoss" infogain_loss_param { source: "/nonexistent/H.binaryproto" }', [(2, 3), (2,)],
                 "/nonexistent/H.binaryproto")
    expect_error('type: "InfogainLoss"', [(2, 3), (2,), (3, 3)], "not a class",
                 bottoms=[np.zeros((2, 3), np.float32), np.array([0, -1], np.float32), np.eye(3, dtype=np.float32)])
    expect_error('type: "ContrastiveLoss"', [(2, 3), (2, 4), (2,)], "same shape")
    expect_error('type: "ContrastiveLoss"', [(2, 3), (2, 3), (3,)], "one value per pair")
    expect_error('type: "Embed" embed_param { input_dim: 4 }', [(3,)], "num_output")
    expect_error('type: "SPP"', [(2, 3, 8, 8)], "pyramid_height")
    expect_error('type: "SPP" spp_param { pyramid_height: 3 }', [(2, 3, 5, 5)], "does not fit")
    expect_error('type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }', [(2, 3, 8, 8)], "TEST")
    expect_error('type: "Im2col" convolution_param { kernel_size: 7 }', [(2, 3, 5, 5)], "does not fit")
    expect_error('type: "Im2col"', [(2, 3, 5, 5)], "kernel_size")
    expect_error('type: "Parameter"', [], "parameter_param")
    expect_error('type: "BatchReindex"', [(4, 3), (2,)], "not an item of the batch",
                 bottoms=[np.zeros((4, 3), np.float32), np.array([1, 4], np.float32)])
    expect_error('type: "BatchReindex"', [(4, 3), (2, 1)], "one axis")
    expect_error('type: "Filter" top: "a" top: "b"', [(4, 3), (4,)], "one top per filtered bottom")
    expect_error('type: "Filter"', [(4, 3), (3, 1)], "first axis")
    expect_error('type: "Filter"', [(4, 3), (4, 2)], "must be 1 on every axis")
    expect_error('type: "Embed" embed_param { num_output: 4 }', [(3,)], "input_dim")
    expect_error('type: "Embed" embed_param { num_output: 4 input_dim: 3 }', [(3,)], "not in [0, 3)",
                 bottoms=[np.array([0, 3, 1], np.float32)])
    expect_error('type: "Embed" embed_param { num_output: 4 input_dim: 3 }', [(3,)], "not in [0, 3)",
                 bottoms=[np.array([0, 1.5, 1], np.float32)])


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
