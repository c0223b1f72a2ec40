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
import traceback

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctk import Layer, LayerError  # noqa: E402

torch.set_default_dtype(torch.float64)
RTOL = 1e-4
rng = np.random.default_rng(20240921)
passed = failed = 0


def ok(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)


def close(name, got, want, rtol=RTOL):
    """Worst element error relative to the reference tensor's largest magnitude (at least 1e-3)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        ok(False, f"{name}: shape {got.shape} vs reference {want.shape}")
        return
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1e-3)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    ok(err <= rtol * scale and np.all(np.isfinite(got)),
       f"{name}: max error {err:.3g} (scale {scale:.3g}, tolerance {rtol * scale:.3g})")


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def t(a, grad=True):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def case(fn):
    """Runs one comparison; an exception counts as one failure and the rest go on."""
    def run(*args, **kw):
        try:
            fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            ok(False, f"{fn.__name__}{args}: {type(e).__name__}: {e}")
            traceback.print_exc()
    return run


def cortado(text, bottoms, phase=0, blobs=None, top_diffs=None, mask=0xFFFFFFFF):
    """Forward, then backward from top_diffs. Returns (tops, bottom diffs, blob diffs)."""
    with Layer(text, [b.shape for b in bottoms], phase=phase) as l:
        for i, b in enumerate(bottoms):
            l.set_bottom(i, b)
        for i, b in enumerate(blobs or []):
            l.set_blob(i, b)
        l.forward()
        tops = [l.top(i) for i in range(l.num_tops())]
        if top_diffs is not None:
            for i, g in enumerate(top_diffs):
                l.set_top_diff(i, g)
            l.backward(mask)
        bdiffs = [l.bottom_diff(i) for i in range(len(bottoms))]
        wdiffs = [l.blob_diff(i) for i in range(l.num_blobs())]
    return tops, bdiffs, wdiffs


def expect_error(text, shapes, needle, bottoms=None):
    """Setup or forward must fail with a message containing needle."""
    try:
        with Layer(text, shapes) as l:
            for i, b in enumerate(bottoms or []):
                l.set_bottom(i, b)
            l.forward()
        ok(False, f"{text}: accepted, expected an error mentioning {needle!r}")
    except LayerError as e:
        ok(needle in str(e), f"{text}: message {str(e)!r} lacks {needle!r}")


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


# ------------------------------------------------------------------ RNN, LSTM, LSTMUnit

def caffe_lstm_step(c_prev, gates, cont):
    """Caffe's LSTMUnit: gates i, f, o, g; f and the recurrent h are scaled by cont."""
    D = c_prev.shape[-1]
    i = torch.sigmoid(gates[..., :D])
    f = cont[..., None] * torch.sigmoid(gates[..., D:2 * D])
    o = torch.sigmoid(gates[..., 2 * D:3 * D])
    g = torch.tanh(gates[..., 3 * D:])
    c = f * c_prev + i * g
    return c, o * torch.tanh(c)


def recurrent_ref(kind, x, cont, W, h0, c0, xs=None):
    """Caffe's unrolled RNN / LSTM in torch (autograd for the reference gradients)."""
    T, N = x.shape[:2]
    xf = x.reshape(T, N, -1)
    k = 0
    Wx, bx = W[k], W[k + 1]
    k += 2
    pre = xf @ Wx.T + bx
    if xs is not None:
        pre = pre + (xs.reshape(N, -1) @ W[k].T)[None]
        k += 1
    Wh = W[k]
    h, c, outs = h0[0], (c0[0] if c0 is not None else None), []
    for t in range(T):
        hc = cont[t][:, None] * h
        a = pre[t] + hc @ Wh.T
        if kind == "LSTM":
            c, h = caffe_lstm_step(c, a, cont[t])
        else:
            h = torch.tanh(a)
        outs.append(h)
    H = torch.stack(outs)
    if kind == "RNN":
        return torch.tanh(H @ W[k + 1].T + W[k + 2]), h, None
    return H, h, c


@case
def recurrent(kind, T, N, I, D, static=False, expose=False, cont=None):
    G = 4 * D if kind == "LSTM" else D
    x = randn(T, N, *I)
    Itot = int(np.prod(I))
    if cont is None:
        cont = (rng.uniform(size=(T, N)) > 0.25).astype(np.float32)
        cont[0] = 0
    xs = randn(N, 5) if static else None
    shapes = [(G, Itot), (G,)] + ([(G, 5)] if static else []) + [(G, D)] + ([(D, D), (D,)] if kind == "RNN" else [])
    blobs = [randn(*s) * 0.5 for s in shapes]
    h0 = randn(1, N, D) if expose else np.zeros((1, N, D), np.float32)
    c0 = (randn(1, N, D) if expose else np.zeros((1, N, D), np.float32)) if kind == "LSTM" else None
    xt, Wt = t(x), [t(b) for b in blobs]
    h0t = t(h0)
    c0t = t(c0) if c0 is not None else None
    xst = t(xs) if static else None
    out, hT, cT = recurrent_ref(kind, xt, torch.tensor(cont, dtype=torch.float64), Wt, h0t, c0t, xst)
    dy = randn(*out.shape)
    loss = (out * torch.tensor(dy, dtype=torch.float64)).sum()
    extra_diffs = []
    if expose:
        dhT = randn(1, N, D)
        loss = loss + (hT * torch.tensor(dhT[0], dtype=torch.float64)).sum()
        extra_diffs.append(dhT)
        if kind == "LSTM":
            dcT = randn(1, N, D)
            loss = loss + (cT * torch.tensor(dcT[0], dtype=torch.float64)).sum()
            extra_diffs.append(dcT)
    loss.backward()
    bottoms = [x, cont] + ([xs] if static else []) + ([h0] + ([c0] if kind == "LSTM" else []) if expose else [])
    tops = ' top: "out" top: "hT"' + (' top: "cT"' if kind == "LSTM" else "") if expose else ""
    text = (f'type: "{kind}"{tops} recurrent_param {{ num_output: {D} expose_hidden: '
            f'{"true" if expose else "false"} }}')
    mask = (1 << len(bottoms)) - 1 - 2  # every bottom but cont
    got, bd, wd = cortado(text, bottoms, blobs=blobs, top_diffs=[dy] + extra_diffs, mask=mask)
    name = f"{kind} T={T} N={N} I={I} D={D} static={static} expose={expose}"
    close(name + " forward", got[0], out.detach().numpy())
    if expose:
        close(name + " h_T", got[1], hT.detach().numpy()[None])
        if kind == "LSTM":
            close(name + " c_T", got[2], cT.detach().numpy()[None])
    close(name + " dx", bd[0], xt.grad.numpy())
    if static:
        close(name + " dx_static", bd[2], xst.grad.numpy())
    if expose:
        k = 3 if static else 2
        close(name + " dh_0", bd[k], h0t.grad.numpy())
        if kind == "LSTM":
            close(name + " dc_0", bd[k + 1], c0t.grad.numpy())
    for j, w in enumerate(Wt):
        close(f"{name} blob {j} gradient", wd[j], w.grad.numpy())


@case
def lstm_vs_torch(T, N, I, D):
    """nn.LSTM on sequences that start at step 0 and run on (cont 0, then 1): Caffe's gates i, f, o,
    g against torch's i, f, g, o, and torch's two biases as Caffe's one."""
    x = randn(T, N, I)
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    Wx, bx, Wh = randn(4 * D, I) * 0.5, randn(4 * D) * 0.5, randn(4 * D, D) * 0.5
    perm = np.concatenate([np.arange(0, D), np.arange(D, 2 * D), np.arange(3 * D, 4 * D), np.arange(2 * D, 3 * D)])
    lstm = torch.nn.LSTM(I, D)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(Wx[perm], dtype=torch.float64))
        lstm.weight_hh_l0.copy_(torch.tensor(Wh[perm], dtype=torch.float64))
        lstm.bias_ih_l0.copy_(torch.tensor(bx[perm], dtype=torch.float64))
        lstm.bias_hh_l0.zero_()
    xt = t(x)
    y, _ = lstm(xt)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    got, bd, wd = cortado(f'type: "LSTM" recurrent_param {{ num_output: {D} }}', [x, cont], blobs=[Wx, bx, Wh],
                          top_diffs=[dy], mask=1)
    inv = np.argsort(perm)
    name = f"LSTM vs nn.LSTM T={T} N={N} I={I} D={D}"
    close(name + " forward", got[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dW_xc", wd[0], lstm.weight_ih_l0.grad.numpy()[inv])
    close(name + " db_c", wd[1], lstm.bias_ih_l0.grad.numpy()[inv])
    close(name + " dW_hc", wd[2], lstm.weight_hh_l0.grad.numpy()[inv])


@case
def rnn_vs_torch(T, N, I, D):
    x = randn(T, N, I)
    cont = np.ones((T, N), np.float32)
    cont[0] = 0
    blobs = [randn(D, I) * 0.5, randn(D) * 0.5, randn(D, D) * 0.5, randn(D, D) * 0.5, randn(D) * 0.5]
    rnn = torch.nn.RNN(I, D)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(blobs[0], dtype=torch.float64))
        rnn.bias_ih_l0.copy_(torch.tensor(blobs[1], dtype=torch.float64))
        rnn.weight_hh_l0.copy_(torch.tensor(blobs[2], dtype=torch.float64))
        rnn.bias_hh_l0.zero_()
    xt = t(x)
    h, _ = rnn(xt)
    o = torch.tanh(h @ torch.tensor(blobs[3], dtype=torch.float64).T + torch.tensor(blobs[4], dtype=torch.float64))
    dy = randn(*o.shape)
    o.backward(torch.tensor(dy, dtype=torch.float64))
    got, bd, wd = cortado(f'type: "RNN" recurrent_param {{ num_output: {D} }}', [x, cont], blobs=blobs,
                          top_diffs=[dy], mask=1)
    name = f"RNN vs nn.RNN T={T} N={N} I={I} D={D}"
    close(name + " forward", got[0], o.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dW_xh", wd[0], rnn.weight_ih_l0.grad.numpy())
    close(name + " dW_hh", wd[2], rnn.weight_hh_l0.grad.numpy())


@case
def carried_state(kind):
    """Without expose_hidden, a forward starts from the last one's final state: two batches of T
    steps whose second continues (cont 1) equal one run over 2T steps."""
    T, N, I, D = 3, 2, 4, 3
    G = 4 * D if kind == "LSTM" else D
    x = randn(2 * T, N, I)
    cont = np.ones((2 * T, N), np.float32)
    cont[0] = 0
    cont[4, 1] = 0  # one stream restarts in the second batch
    shapes = [(G, I), (G,), (G, D)] + ([(D, D), (D,)] if kind == "RNN" else [])
    blobs = [randn(*s) * 0.5 for s in shapes]
    zeros = torch.zeros(1, N, D, dtype=torch.float64)
    want, _, _ = recurrent_ref(kind, t(x, False), torch.tensor(cont, dtype=torch.float64),
                               [t(b, False) for b in blobs], zeros, zeros if kind == "LSTM" else None)
    with Layer(f'type: "{kind}" recurrent_param {{ num_output: {D} }}', [(T, N, I), (T, N)]) as l:
        for j, b in enumerate(blobs):
            l.set_blob(j, b)
        got = []
        for k in range(2):
            l.set_bottom(0, x[k * T:(k + 1) * T])
            l.set_bottom(1, cont[k * T:(k + 1) * T])
            l.forward()
            got.append(l.top(0))
    close(f"{kind}: the state carries over to the next forward", np.concatenate(got), want.numpy())


@case
def lstm_unit(N, D):
    cp, x = randn(1, N, D), randn(1, N, 4 * D) * 2
    cont = np.array([[1, 0, 1, 1, 0][:N]], np.float32)
    cpt, xt = t(cp), t(x)
    c, h = caffe_lstm_step(cpt, xt, torch.tensor(cont, dtype=torch.float64))
    dc, dh = randn(1, N, D), randn(1, N, D)
    ((c * torch.tensor(dc, dtype=torch.float64)).sum() + (h * torch.tensor(dh, dtype=torch.float64)).sum()).backward()
    got, bd, _ = cortado('type: "LSTMUnit" top: "c" top: "h"', [cp, x, cont], top_diffs=[dc, dh], mask=3)
    close(f"LSTMUnit N={N} D={D} c", got[0], c.detach().numpy())
    close(f"LSTMUnit N={N} D={D} h", got[1], h.detach().numpy())
    close(f"LSTMUnit N={N} D={D} dc_prev", bd[0], cpt.grad.numpy())
    close(f"LSTMUnit N={N} D={D} dx", bd[1], xt.grad.numpy())


def test_recurrent():
    for kind in ("RNN", "LSTM"):
        recurrent(kind, 5, 3, (4,), 3)
        recurrent(kind, 4, 2, (2, 3), 5, static=True)
        recurrent(kind, 3, 2, (3,), 2, expose=True)
        recurrent(kind, 4, 3, (3,), 4, static=True, expose=True)
        carried_state(kind)
    lstm_vs_torch(6, 3, 5, 4)
    rnn_vs_torch(6, 3, 5, 4)
    lstm_unit(5, 3)
    lstm_unit(2, 7)


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
    expect_error('type: "LSTM"', [(3, 2, 4), (3, 2)], "num_output")
    expect_error('type: "RNN" recurrent_param { num_output: 3 }', [(3, 2, 4), (3, 3)], "cont must be T x N")
    expect_error('type: "LSTM" recurrent_param { num_output: 3 }', [(3,), (3, 2)], "at least 2 axes")
    expect_error('type: "LSTM" recurrent_param { num_output: 3 expose_hidden: true }', [(3, 2, 4), (3, 2)],
                 "expose_hidden")
    expect_error('type: "LSTM" top: "h" top: "hT" top: "cT" recurrent_param { num_output: 3 expose_hidden: true }',
                 [(3, 2, 4), (3, 2), (1, 2, 3), (1, 2, 4)], "c_0 must be 1 x 2 x 3")
    expect_error('type: "RNN" recurrent_param { num_output: 3 debug_info: true }', [(3, 2, 4), (3, 2)], "debug_info")
    expect_error('type: "RNN" recurrent_param { num_output: 3 }', [(3, 2, 4), (3, 2), (3, 5)], "x_static")
    expect_error('type: "LSTMUnit" top: "c" top: "h"', [(1, 2, 3), (1, 2, 11), (1, 2)], "4D")
    expect_error('type: "Embed" embed_param { num_output: 4 }', [(3,)], "input_dim")
    expect_error('type: "Embed" embed_param { num_output: 4 input_dim: 3 }', [(3,)], "not in [0, 3)",
                 bottoms=[np.array([0, 3, 1], np.float32)])
    expect_error('type: "Embed" embed_param { num_output: 4 input_dim: 3 }', [(3,)], "not in [0, 3)",
                 bottoms=[np.array([0, 1.5, 1], np.float32)])


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    for test in tests:
        test()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
