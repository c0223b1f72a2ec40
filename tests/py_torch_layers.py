"""cortado's vision layers against PyTorch (float64 references, autograd for the gradients).

Run with Debian's python (torch 1.13, numpy):
    CT_TESTKIT=build/tests/libct_testkit.so /usr/bin/python3 tests/py_torch_layers.py
Prints "N passed, N failed" last and exits non-zero on any failure.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_check  # noqa: E402
from ctk import Layer, LayerError  # noqa: E402
from torch_check import case, close, ok, randn, t  # noqa: E402

torch_check.rng = rng = np.random.default_rng(20240611)  # this file's own draws, as before the helpers moved


def cortado(text, bottoms, phase=0, blobs=None, top_diffs=None, mask=0xFFFFFFFF):
    """Forward, then backward from top_diffs. Returns (tops, bottom diffs, blob diffs, final blobs)."""
    return torch_check.cortado(text, bottoms, phase, blobs, top_diffs, mask, final_blobs=True)


# ------------------------------------------------------------------ Convolution

@case
def conv(shape, K, kernel, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1, bias=True):
    N, C, H, W = shape
    kh, kw = kernel
    params = (f"num_output: {K} kernel_h: {kh} kernel_w: {kw} stride_h: {stride[0]} stride_w: {stride[1]} "
              f"pad_h: {pad[0]} pad_w: {pad[1]} dilation: {dilation[0]} dilation: {dilation[1]} group: {group} "
              f"bias_term: {'true' if bias else 'false'}")
    x = randn(*shape)
    w = randn(K, C // group, kh, kw)
    b = randn(K)
    xt, wt, bt = t(x), t(w), t(b)
    y = F.conv2d(xt, wt, bt if bias else None, stride=stride, padding=pad, dilation=dilation, groups=group)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    tops, bd, wd, _ = cortado(f'type: "Convolution" convolution_param {{ {params} }}', [x],
                              blobs=[w, b] if bias else [w], top_diffs=[dy])
    name = f"Convolution {shape} K={K} k={kernel} s={stride} p={pad} d={dilation} g={group}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dw", wd[0], wt.grad.numpy())
    if bias:
        close(name + " db", wd[1], bt.grad.numpy())


def test_conv():
    conv((2, 3, 7, 6), 4, (3, 3))
    conv((2, 3, 8, 8), 5, (3, 3), stride=(2, 2), pad=(1, 1))
    conv((2, 4, 6, 7), 6, (3, 3), pad=(1, 1), group=2)
    conv((1, 6, 5, 5), 6, (3, 3), pad=(1, 1), group=6)          # depthwise
    conv((2, 2, 9, 8), 3, (3, 3), pad=(2, 2), dilation=(2, 2))
    conv((2, 3, 9, 10), 2, (3, 2), stride=(1, 2), pad=(1, 0), dilation=(2, 3))  # rectangular
    conv((2, 3, 7, 5), 4, (2, 4), stride=(3, 1), pad=(0, 2))
    conv((3, 5, 4, 4), 3, (1, 1))                                 # 1x1, no lowering
    conv((2, 6, 4, 5), 4, (1, 1), group=2, bias=False)
    conv((1, 3, 11, 11), 8, (5, 5), stride=(4, 4), pad=(2, 2))
    conv((2, 2, 5, 5), 3, (5, 5))                                 # kernel = input
    conv((1, 16, 9, 9), 12, (3, 3), stride=(2, 2), pad=(1, 1), group=4)


# ------------------------------------------------------------------ Pooling

def caffe_out(n, k, p, s, ceil_mode):
    span = (n + 2 * p - k) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    return out


def caffe_pool_ref(x, method, k, s, p, ceil_mode):
    """Caffe's pooling written out: windows clipped to the image; AVE divides by the window clipped
    only to the padded image. Differentiable (torch ops). One deliberate difference: a window wholly
    past the image (CEIL, no padding, stride > kernel) gives 0 in cortado, where Caffe gives
    -FLT_MAX (MAX) or 0/0 (AVE)."""
    N, C, H, W = x.shape
    OH, OW = caffe_out(H, k[0], p[0], s[0], ceil_mode), caffe_out(W, k[1], p[1], s[1], ceil_mode)
    rows = []
    for oh in range(OH):
        cols = []
        for ow in range(OW):
            h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
            size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            if h0 >= h1 or w0 >= w1:
                cols.append(x[:, :, 0, 0] * 0)
                continue
            win = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)
            cols.append(win.max(dim=2).values if method == "MAX" else win.sum(dim=2) / size)
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


@case
def pool(shape, method, kernel, stride, pad=(0, 0), ceil_mode=True, global_pool=False, with_mask=False):
    N, C, H, W = shape
    if global_pool:
        kernel, stride, pad = (H, W), (1, 1), (0, 0)
        params = f"pool: {method} global_pooling: true"
    else:
        params = (f"pool: {method} kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} "
                  f"stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} "
                  f"round_mode: {'CEIL' if ceil_mode else 'FLOOR'}")
    tops_text = 'top: "y" top: "mask" ' if with_mask else ""
    # distinct values: MAX has a unique argmax, so its gradient is well defined
    x = (rng.permutation(N * C * H * W).reshape(shape) * 0.01 - 1).astype(np.float32)
    xt = t(x)
    y = caffe_pool_ref(xt, method, kernel, stride, pad, ceil_mode)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    name = f"Pooling {method} {shape} k={kernel} s={stride} p={pad} {'ceil' if ceil_mode else 'floor'}"
    tops, bd, _, _ = cortado(f'type: "Pooling" {tops_text}pooling_param {{ {params} }}', [x],
                             top_diffs=[dy] + ([np.zeros_like(dy)] if with_mask else []))
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    # Where torch's pooling agrees with Caffe's definition, hold the written-out reference to it as
    # well. torch drops a last window that starts past image + pad in ceil mode even without
    # padding (Caffe only with padding), and needs pad <= kernel / 2; for AVE, count_include_pad
    # divides like Caffe (the window clipped to the padded image).
    torch_ok = (2 * pad[0] <= kernel[0] and 2 * pad[1] <= kernel[1] and
                (not ceil_mode or pad != (0, 0) or (stride[0] <= kernel[0] and stride[1] <= kernel[1])))
    if torch_ok:
        xt2 = t(x)
        if method == "MAX":
            yt, idx = F.max_pool2d(xt2, kernel, stride, pad, ceil_mode=ceil_mode, return_indices=True)
            if with_mask:
                close(name + " mask", tops[1], idx.numpy().astype(np.float64))
        else:
            yt = F.avg_pool2d(xt2, kernel, stride, pad, ceil_mode=ceil_mode, count_include_pad=True)
        yt.backward(torch.tensor(dy, dtype=torch.float64))
        close(name + " forward vs torch", tops[0], yt.detach().numpy())
        close(name + " dx vs torch", bd[0], xt2.grad.numpy())


def test_pool():
    for method in ("MAX", "AVE"):
        pool((2, 3, 7, 6), method, (3, 3), (2, 2))                       # ceil adds a clipped window
        pool((2, 2, 6, 7), method, (3, 3), (2, 2), pad=(1, 1))
        pool((2, 2, 8, 8), method, (3, 3), (2, 2), pad=(1, 1))
        pool((2, 2, 6, 7), method, (3, 3), (2, 2), pad=(1, 1), ceil_mode=False)
        pool((1, 3, 9, 7), method, (2, 2), (2, 2), ceil_mode=False)
        pool((1, 3, 6, 5), method, (3, 2), (2, 1), pad=(1, 1))
        pool((1, 2, 7, 7), method, (4, 4), (3, 3), pad=(2, 2))           # the drop rule applies
        pool((1, 2, 5, 5), method, (3, 3), (2, 2), pad=(2, 2))           # pad > k/2: Caffe only
        pool((2, 3, 4, 5), method, None, None, global_pool=True)
        pool((1, 2, 6, 7), method, (2, 2), (3, 3))                       # Caffe-only: empty last window
    pool((2, 2, 5, 4), "MAX", (2, 2), (2, 2), with_mask=True)
    pool((2, 2, 7, 6), "MAX", (3, 3), (2, 2), pad=(1, 1), with_mask=True)


# ------------------------------------------------------------------ InnerProduct

@case
def inner_product(shape, N_out, axis=1, transpose=False, bias=True):
    x = randn(*shape)
    ax = axis % len(shape)
    M, K = int(np.prod(shape[:ax])), int(np.prod(shape[ax:]))
    w = randn(K, N_out) if transpose else randn(N_out, K)
    b = randn(N_out)
    xt, wt, bt = t(x), t(w), t(b)
    y = F.linear(xt.reshape(M, K), wt.t() if transpose else wt, bt if bias else None)
    y = y.reshape(tuple(shape[:ax]) + (N_out,))
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    params = (f"num_output: {N_out} axis: {axis} transpose: {'true' if transpose else 'false'} "
              f"bias_term: {'true' if bias else 'false'}")
    tops, bd, wd, _ = cortado(f'type: "InnerProduct" inner_product_param {{ {params} }}', [x],
                              blobs=[w, b] if bias else [w], top_diffs=[dy])
    name = f"InnerProduct {shape} N={N_out} axis={axis} transpose={transpose}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dw", wd[0], wt.grad.numpy())
    if bias:
        close(name + " db", wd[1], bt.grad.numpy())


def test_inner_product():
    inner_product((4, 3, 2, 2), 5)
    inner_product((5, 7), 3, transpose=True)
    inner_product((2, 3, 4, 5), 6, axis=2)
    inner_product((2, 3, 4), 2, axis=-1, transpose=True, bias=False)
    inner_product((16, 64), 32)


# ------------------------------------------------------------------ LRN

@case
def lrn(shape, size=5, alpha=1.0, beta=0.75, k=1.0, within=False):
    x = randn(*shape)
    xt = t(x)
    if within:
        # Caffe: AVE pooling of x^2 (kernel size, pad (size-1)/2, stride 1; its divisor is size^2
        # everywhere), then (1 + alpha * avg)^-beta: k plays no part.
        avg = F.avg_pool2d(xt * xt, size, 1, (size - 1) // 2, count_include_pad=True)
        y = xt * (1 + alpha * avg) ** (-beta)
    else:
        y = F.local_response_norm(xt, size, alpha=alpha, beta=beta, k=k)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    region = "WITHIN_CHANNEL" if within else "ACROSS_CHANNELS"
    params = f"local_size: {size} alpha: {alpha} beta: {beta} k: {k} norm_region: {region}"
    tops, bd, _, _ = cortado(f'type: "LRN" lrn_param {{ {params} }}', [x], top_diffs=[dy])
    name = f"LRN {region} {shape} size={size} alpha={alpha} beta={beta} k={k}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())


def test_lrn():
    lrn((2, 7, 4, 3))
    lrn((2, 4, 3, 3), size=3, alpha=0.5, beta=0.6, k=2.0)
    lrn((1, 3, 2, 2), size=7, alpha=2e-4, beta=0.75, k=1.0)          # window wider than C
    lrn((2, 2, 6, 5), size=3, alpha=0.8, beta=0.75, within=True)
    lrn((1, 3, 3, 4), size=5, alpha=2.0, beta=0.5, k=3.0, within=True)


# ------------------------------------------------------------------ BatchNorm

@case
def batch_norm_train(shape, eps=1e-5, maf=0.999):
    x1, x2 = randn(*shape) * 2 + 0.5, randn(*shape) - 1
    text = f'type: "BatchNorm" batch_norm_param {{ eps: {eps} moving_average_fraction: {maf} }}'
    name = f"BatchNorm train {shape}"
    xt = t(x2)
    # Caffe normalises with the biased batch variance, as torch's training mode does
    y = F.batch_norm(xt, None, None, training=True, eps=eps)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    with Layer(text, [shape], phase=0) as l:
        l.set_bottom(0, x1)
        l.forward()
        l.set_bottom(0, x2)
        l.forward()
        close(name + " forward", l.top(0), y.detach().numpy())
        l.set_top_diff(0, dy)
        l.backward()
        close(name + " dx", l.bottom_diff(0), xt.grad.numpy())
        # running sums: factor 1 then 1 + maf; mean_sum = mean2 + maf * mean1;
        # var_sum = m/(m-1) var2 + maf * m/(m-1) var1 (unbiased)
        axes = (0,) + tuple(range(2, len(shape)))
        m = x1.size // shape[1]
        mean = lambda a: a.astype(np.float64).mean(axis=axes)  # noqa: E731
        var = lambda a: a.astype(np.float64).var(axis=axes) * m / (m - 1)  # noqa: E731
        close(name + " mean sum", l.blob(0), mean(x2) + maf * mean(x1))
        close(name + " variance sum", l.blob(1), var(x2) + maf * var(x1))
        close(name + " factor", l.blob(2), np.array([1 + maf]))
        ok(np.all(l.blob_diff(0) == 0) and np.all(l.blob_diff(1) == 0) and np.all(l.blob_diff(2) == 0),
           name + ": statistics blobs got a gradient")


@case
def batch_norm_global(shape, phase, eps=1e-5, factor=2.5, explicit=False):
    C = shape[1]
    x = randn(*shape)
    mean_sum = randn(C) * factor
    var_sum = (rng.random(C).astype(np.float32) + 0.5) * factor
    xt = t(x)
    y = F.batch_norm(xt, torch.tensor(mean_sum / factor, dtype=torch.float64),
                     torch.tensor(var_sum / factor, dtype=torch.float64), training=False, eps=eps)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    extra = "use_global_stats: true " if explicit else ""
    tops, bd, _, blobs = cortado(f'type: "BatchNorm" batch_norm_param {{ {extra}eps: {eps} }}', [x], phase=phase,
                                 blobs=[mean_sum, var_sum, np.array([factor], np.float32)], top_diffs=[dy])
    name = f"BatchNorm global stats {shape} phase={phase}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " statistics unchanged", blobs[0], mean_sum)


def test_batch_norm():
    batch_norm_train((4, 3, 5, 6))
    batch_norm_train((8, 5), eps=1e-3, maf=0.9)
    batch_norm_global((2, 3, 4, 4), phase=1)
    batch_norm_global((6, 4), phase=1, eps=1e-3)
    batch_norm_global((2, 3, 4, 4), phase=0, explicit=True)


# ------------------------------------------------------------------ Scale, Bias

@case
def scale(shape, sshape, axis=1, two_bottoms=False, bias=False):
    x, s, b = randn(*shape), randn(*sshape), randn(*sshape)
    xt, st, bt = t(x), t(s), t(b)
    view = (1,) * axis + tuple(sshape) + (1,) * (len(shape) - axis - len(sshape))
    y = xt * st.reshape(view) + (bt.reshape(view) if bias else 0)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    params = f"axis: {axis} bias_term: {'true' if bias else 'false'}"
    if not two_bottoms:
        params += f" num_axes: {len(sshape)}"
    blobs = ([] if two_bottoms else [s]) + ([b] if bias else [])
    tops, bd, wd, _ = cortado(f'type: "Scale" scale_param {{ {params} }}', [x, s] if two_bottoms else [x],
                              blobs=blobs, top_diffs=[dy])
    name = f"Scale {shape} by {sshape} axis={axis} two={two_bottoms} bias={bias}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dscale", bd[1] if two_bottoms else wd[0], st.grad.numpy())
    if bias:
        close(name + " dbias", wd[-1], bt.grad.numpy())


@case
def bias_layer(shape, bshape, axis=1, two_bottoms=False):
    x, b = randn(*shape), randn(*bshape)
    xt, bt = t(x), t(b)
    view = (1,) * axis + tuple(bshape) + (1,) * (len(shape) - axis - len(bshape))
    y = xt + bt.reshape(view)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    params = f"axis: {axis}" + ("" if two_bottoms else f" num_axes: {len(bshape)}")
    tops, bd, wd, _ = cortado(f'type: "Bias" bias_param {{ {params} }}', [x, b] if two_bottoms else [x],
                              blobs=[] if two_bottoms else [b], top_diffs=[dy])
    name = f"Bias {shape} by {bshape} axis={axis} two={two_bottoms}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    close(name + " dbias", bd[1] if two_bottoms else wd[0], bt.grad.numpy())


def test_scale_bias():
    scale((2, 3, 4, 5), (3,))
    scale((2, 3, 4, 5), (3, 4), bias=True)
    scale((2, 3, 4, 5), (4, 5), axis=2, two_bottoms=True)
    scale((2, 3, 4), (2,), axis=0, two_bottoms=True, bias=True)
    bias_layer((2, 3, 4, 5), (3,))
    bias_layer((2, 3, 4, 5), (3, 4, 5), two_bottoms=True)


# ------------------------------------------------------------------ Softmax, SoftmaxWithLoss

@case
def softmax(shape, axis=1):
    x = randn(*shape) * 3
    xt = t(x)
    y = F.softmax(xt, dim=axis)
    dy = randn(*y.shape)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    tops, bd, _, _ = cortado(f'type: "Softmax" softmax_param {{ axis: {axis} }}', [x], top_diffs=[dy])
    name = f"Softmax {shape} axis={axis}"
    close(name + " forward", tops[0], y.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())


@case
def softmax_loss(shape, axis=1, ignore=None, normalization=None, normalize=None, loss_weight=1.0, probs=False):
    C = shape[axis]
    x = randn(*shape) * 2
    lshape = shape[:axis] + shape[axis + 1:]
    labels = rng.integers(0, C, size=lshape).astype(np.float32)
    if ignore is not None:
        labels.flat[0] = ignore  # at least one ignored position, even when ignore is outside [0, C)
    xt = t(x)
    xm = torch.movedim(xt, axis, 1)  # torch wants the classes on axis 1
    lt = torch.tensor(labels.astype(np.int64))
    summed = F.cross_entropy(xm, lt, ignore_index=-100 if ignore is None else ignore, reduction="sum")
    valid = int(np.sum(labels != ignore)) if ignore is not None else labels.size
    mode = normalization or ("VALID" if normalize in (None, True) else "BATCH_SIZE")
    outer = int(np.prod(shape[:axis]))
    norm = {"FULL": labels.size, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    loss = summed / max(1, norm)
    (loss * loss_weight).backward()
    params = [f"softmax_param {{ axis: {axis} }}"]
    lp = ""
    if ignore is not None:
        lp += f" ignore_label: {ignore}"
    if normalization:
        lp += f" normalization: {normalization}"
    if normalize is not None:
        lp += f" normalize: {'true' if normalize else 'false'}"
    if lp:
        params.append(f"loss_param {{{lp} }}")
    tops_text = 'top: "loss" top: "prob" ' if probs else ""
    text = f'type: "SoftmaxWithLoss" {tops_text}' + " ".join(params)
    diffs = [np.array(loss_weight, np.float32)] + ([np.zeros(shape, np.float32)] if probs else [])
    tops, bd, _, _ = cortado(text, [x, labels], top_diffs=diffs, mask=1)
    name = f"SoftmaxWithLoss {shape} axis={axis} ignore={ignore} {mode} weight={loss_weight}"
    close(name + " loss", tops[0], loss.detach().numpy())
    close(name + " dx", bd[0], xt.grad.numpy())
    if probs:
        close(name + " probabilities", tops[1], F.softmax(t(x, False), dim=axis).numpy())


@case
def softmax_loss_bad_label():
    x = randn(3, 4)
    for bad in (4, -1, 7.0):
        labels = np.array([0, bad, 2], np.float32)
        try:
            cortado('type: "SoftmaxWithLoss"', [x, labels])
            ok(False, f"SoftmaxWithLoss: label {bad} outside [0, 4) was accepted")
        except LayerError as e:
            ok("outside" in str(e), f"SoftmaxWithLoss: label {bad}: unexpected message {e}")


def test_softmax():
    softmax((4, 10))
    softmax((2, 5, 3, 4))
    softmax((2, 3, 6), axis=-1 % 3)
    softmax((3, 4, 5), axis=0)
    softmax_loss((6, 5))
    softmax_loss((2, 4, 3, 3), ignore=1)
    softmax_loss((2, 4, 3, 3), ignore=-1)                                    # an ignore value outside [0, C)
    for mode in ("FULL", "VALID", "BATCH_SIZE", "NONE"):
        softmax_loss((3, 5, 2, 2), ignore=2, normalization=mode, loss_weight=0.7)
    softmax_loss((3, 5, 2, 2), normalize=False)
    softmax_loss((3, 5, 2, 2), normalize=True, ignore=0)
    softmax_loss((2, 3, 4), axis=2, loss_weight=2.0)
    softmax_loss((4, 6), probs=True)
    softmax_loss_bad_label()


# ------------------------------------------------------------------ parameter errors

expect_error = case(torch_check.expect_error)


def test_errors():
    s4 = [(2, 3, 6, 6)]
    expect_error('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }', s4, "STOCHASTIC")
    expect_error('type: "Pooling" pooling_param { kernel_size: 3 pad: 3 }', s4, "smaller than the kernel")
    expect_error('type: "Pooling" pooling_param { kernel_size: 3 kernel_h: 3 kernel_w: 3 }', s4, "not both")
    expect_error('type: "Pooling" pooling_param { kernel_h: 3 }', s4, "kernel_w")
    expect_error('type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }', s4, "global_pooling")
    expect_error('type: "Pooling" pooling_param { global_pooling: true stride: 2 }', s4, "global_pooling")
    expect_error('type: "Pooling" pooling_param { pad: 1 pad_h: 1 kernel_size: 3 }', s4, "pad")
    expect_error('type: "Pooling" top: "a" top: "b" pooling_param { pool: AVE kernel_size: 2 }', s4, "MAX")
    expect_error('type: "Pooling" pooling_param { kernel_size: 2 }', [(2, 3, 6)], "4 axes")
    expect_error('type: "LRN" lrn_param { local_size: 4 }', s4, "odd")
    expect_error('type: "InnerProduct"', s4, "num_output")
    expect_error('type: "InnerProduct" inner_product_param { num_output: 2 axis: 4 }', s4, "axis")
    expect_error('type: "Scale" scale_param { axis: 2 num_axes: 3 }', s4, "extends past")
    expect_error('type: "Scale"', [(2, 3, 4), (4,)], "does not match")
    expect_error('type: "Bias"', [(2, 3, 4), (3, 5)], "does not match")
    expect_error('type: "Softmax" softmax_param { axis: 3 }', [(2, 3, 4)], "axis")
    expect_error('type: "SoftmaxWithLoss"', [(4, 5), (3,)], "first dimension")
    expect_error('type: "SoftmaxWithLoss"', [(2, 5, 3), (2, 4)], "number of labels")
    expect_error('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 group: 2 }', s4,
                 "multiple of group")


if __name__ == "__main__":
    sys.exit(torch_check.run_tests(globals()))
