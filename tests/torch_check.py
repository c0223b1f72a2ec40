"""Helpers the PyTorch comparisons of cortado's layers share (py_torch_layers.py,
py_torch_caffe1.py, py_torch_recurrent.py): the pass/fail counters, the comparison measure, float64 torch tensors
from float32 arrays, and one cortado layer run forward and backward through ctk."""
import sys
import traceback

import numpy as np
import torch

from ctk import Layer, LayerError

torch.set_default_dtype(torch.float64)
RTOL = 1e-4
rng = np.random.default_rng(20240921)
counts = {"passed": 0, "failed": 0}


def ok(cond, what):
    if cond:
        counts["passed"] += 1
    else:
        counts["failed"] += 1
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


def cortado(text, bottoms, phase=0, blobs=None, top_diffs=None, mask=0xFFFFFFFF, final_blobs=False):
    """Forward, then backward from top_diffs. Returns (tops, bottom diffs, blob diffs), and the
    blobs as the passes left them (BatchNorm's running statistics) after those with final_blobs."""
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
        if final_blobs:
            return tops, bdiffs, wdiffs, [l.blob(i) for i in range(l.num_blobs())]
    return tops, bdiffs, wdiffs


def expect_error(text, shapes, needle, bottoms=None, phase=0):
    """Setup or forward must fail with a message containing needle."""
    try:
        with Layer(text, shapes, phase=phase) as l:
            for i, b in enumerate(bottoms or []):
                l.set_bottom(i, b)
            l.forward()
        ok(False, f"{text}: accepted, expected an error mentioning {needle!r}")
    except LayerError as e:
        ok(needle in str(e), f"{text}: message {str(e)!r} lacks {needle!r}")


def run_tests(namespace):
    """Runs every test_* function of a module's namespace; prints the counts, returns the exit status."""
    for k, v in sorted(namespace.items()):
        if k.startswith("test_") and callable(v):
            v()
    print(f"{counts['passed']} passed, {counts['failed']} failed")
    return 1 if counts["failed"] else 0
