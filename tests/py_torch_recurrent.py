"""RNN, LSTM and LSTMUnit (Caffe 1.0's recurrent layers) against PyTorch: the unrolled nets written
here in torch operations with Caffe's semantics (cont flushing, static input, expose_hidden, the
state carried between forwards), nn.LSTM and nn.RNN where sequences do not restart (with Caffe's
gate order i, f, o, g mapped onto torch's i, f, g, o), and bad parameters refused.

Run with Debian's python (torch 1.13, numpy):
    CT_TESTKIT=build/tests/libct_testkit.so /usr/bin/python3 tests/py_torch_recurrent.py
Prints "N passed, N failed" last and exits non-zero on any failure.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctk import Layer  # noqa: E402
from torch_check import case, close, cortado, expect_error, randn, rng, run_tests, t  # noqa: E402


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
    for step in range(T):
        hc = cont[step][:, None] * h
        a = pre[step] + hc @ Wh.T
        if kind == "LSTM":
            c, h = caffe_lstm_step(c, a, cont[step])
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


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
