"""cortado's update rules and lr policies (src/solvers/update.c) against PyTorch and numpy.

Runs ct_update_apply through ctypes on flat float32 buffers holding several parameters (with a
gap between two of them that must stay untouched) and compares, step by step, the parameters,
the update left in diff and the history buffers with:

  (a) torch.optim where its rule coincides with Caffe's (SGD and Nesterov at a constant rate,
      AdaGrad, RMSprop, Adadelta, Adam), the gradient clipping, iter_size normalisation and L1
      decay that torch lacks done by hand on .grad before step();
  (b) a float64 numpy transcription of Caffe's rules, for every rule, including varying rates.

Notes on where torch and Caffe differ:
  - SGD momentum: Caffe accumulates h = m*h + lr*g, torch buf = m*buf + g then lr*buf; the
    trajectories coincide only while lr is constant, so torch runs use lr_policy "fixed".
  - Adam: torch adds eps to sqrt(v)/sqrt(1-b2^t), Caffe to sqrt(v) before the correction; with
    eps = 1e-8 and gradients of order 1 the difference is far below the tolerance.
  - torch's clip_grad_norm_ divides by (norm + 1e-6); Caffe by norm, so clipping is done by hand.

The SolverParameter is encoded by hand in protobuf wire format (field numbers from
src/proto/cortado.proto) and parsed by the library's own caffe__solver_parameter__unpack.
"""
import ctypes
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

lib = ctypes.CDLL(os.environ.get("CT_TESTKIT", "../build/tests/libct_testkit.so"))

# ----------------------------------------------------------------------------- protobuf wire

# name -> (field number, kind): f float (fixed32), i int32/enum (varint), s string, ri repeated int32
SOLVER_FIELDS = {
    "base_lr": (5, "f"), "max_iter": (7, "i"), "lr_policy": (8, "s"), "gamma": (9, "f"),
    "power": (10, "f"), "momentum": (11, "f"), "weight_decay": (12, "f"), "stepsize": (13, "i"),
    "regularization_type": (29, "s"), "solver_type": (30, "i"), "delta": (31, "f"),
    "stepvalue": (34, "ri"), "clip_gradients": (35, "f"), "iter_size": (36, "i"),
    "rms_decay": (38, "f"), "momentum2": (39, "f"), "type": (40, "s"),
}


def _varint(n):
    n &= (1 << 64) - 1  # negative int32 goes out as ten bytes of two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_solver(fields):
    out = bytearray()
    for name, value in fields.items():
        num, kind = SOLVER_FIELDS[name]
        if kind == "f":
            out += _varint(num << 3 | 5) + struct.pack("<f", value)
        elif kind == "i":
            out += _varint(num << 3 | 0) + _varint(int(value))
        elif kind == "s":
            raw = value.encode()
            out += _varint(num << 3 | 2) + _varint(len(raw)) + raw
        elif kind == "ri":
            for v in value:
                out += _varint(num << 3 | 0) + _varint(int(v))
    return bytes(out)


# ----------------------------------------------------------------------------- ctypes view of update.h

class CtError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]


class UpdateParam(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_size_t), ("count", ctypes.c_size_t),
                ("lr_mult", ctypes.c_float), ("decay_mult", ctypes.c_float)]


class UpdateCtx(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("type", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float)), ("diff", ctypes.POINTER(ctypes.c_float)),
                ("total", ctypes.c_size_t), ("params", ctypes.POINTER(UpdateParam)),
                ("nparams", ctypes.c_int), ("nsets", ctypes.c_int),
                ("history", ctypes.POINTER(ctypes.c_float) * 2), ("pool", ctypes.c_void_p),
                ("hist", ctypes.c_void_p * 2)]


FLOATP = ctypes.POINTER(ctypes.c_float)
lib.caffe__solver_parameter__unpack.restype = ctypes.c_void_p
lib.caffe__solver_parameter__unpack.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
lib.caffe__solver_parameter__free_unpacked.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
lib.ct_update_init.restype = ctypes.c_int
lib.ct_update_init.argtypes = [ctypes.POINTER(UpdateCtx), ctypes.c_void_p, FLOATP, FLOATP, ctypes.c_size_t,
                               ctypes.POINTER(UpdateParam), ctypes.c_int, ctypes.POINTER(CtError)]
lib.ct_update_free.argtypes = [ctypes.POINTER(UpdateCtx)]
lib.ct_update_rate.restype = ctypes.c_float
lib.ct_update_rate.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.ct_update_apply.restype = ctypes.c_float
lib.ct_update_apply.argtypes = [ctypes.POINTER(UpdateCtx), ctypes.c_int]

SOLVER_TYPES = ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"]


class SolverParam:
    def __init__(self, fields):
        raw = encode_solver(fields)
        self.ptr = lib.caffe__solver_parameter__unpack(None, len(raw), raw)
        if not self.ptr:
            raise RuntimeError("caffe__solver_parameter__unpack failed on %r" % fields)

    def close(self):
        if self.ptr:
            lib.caffe__solver_parameter__free_unpacked(self.ptr, None)
            self.ptr = None


class CtUpdate:
    """cortado's updater over one flat buffer; params: list of (offset, values, lr_mult, decay_mult)."""

    def __init__(self, fields, params, total):
        self.sp = SolverParam(fields)
        self.data = np.full(total, 7.25, np.float32)  # the sentinel marks floats outside any param
        self.diff = np.full(total, -3.5, np.float32)
        self.layout = [(off, len(v)) for off, v, _, _ in params]
        for off, v, _, _ in params:
            self.data[off:off + len(v)] = v
        table = (UpdateParam * len(params))(*[UpdateParam(off, len(v), lm, dm) for off, v, lm, dm in params])
        self.ctx = UpdateCtx()
        err = CtError()
        s = lib.ct_update_init(ctypes.byref(self.ctx), self.sp.ptr, self.data.ctypes.data_as(FLOATP),
                               self.diff.ctypes.data_as(FLOATP), total, table, len(params), ctypes.byref(err))
        if s != 0:
            self.sp.close()
            raise RuntimeError("ct_update_init: " + err.msg.decode())
        self.total = total

    def step(self, grads, it):
        for (off, n), g in zip(self.layout, grads):
            self.diff[off:off + n] = g
        return lib.ct_update_apply(ctypes.byref(self.ctx), it)

    def params(self):
        return [self.data[off:off + n].astype(np.float64) for off, n in self.layout]

    def updates(self):
        return [self.diff[off:off + n].astype(np.float64) for off, n in self.layout]

    def history(self, k):
        h = np.ctypeslib.as_array(self.ctx.history[k], shape=(self.total,))
        return [h[off:off + n].astype(np.float64) for off, n in self.layout]

    def close(self):
        lib.ct_update_free(ctypes.byref(self.ctx))
        self.sp.close()


# ----------------------------------------------------------------------------- numpy reference

def ref_rate(f, it):
    """Caffe's GetLearningRate, in float64."""
    base, policy = f.get("base_lr", 0.0), f["lr_policy"]
    gamma, power, stepsize = f.get("gamma", 0.0), f.get("power", 0.0), f.get("stepsize", 0)
    if policy == "fixed":
        return base
    if policy == "step":
        return base * gamma ** (it // stepsize)
    if policy == "exp":
        return base * gamma ** it
    if policy == "inv":
        return base * (1.0 + gamma * it) ** (-power)
    if policy == "multistep":
        k = 0
        sv = f.get("stepvalue", [])
        while k < len(sv) and it >= sv[k]:
            k += 1
        return base * gamma ** k
    if policy == "poly":
        # Caffe forms 1 - iter/max_iter in float (Dtype), which matters near max_iter.
        frac = np.float32(1) - np.float32(it) / np.float32(f["max_iter"])
        return base * float(frac) ** power
    if policy == "sigmoid":
        return base / (1.0 + math.exp(-gamma * (it - stepsize)))
    raise ValueError(policy)


class RefUpdate:
    """Caffe's ApplyUpdate transcribed in float64 (clip, normalise, regularise, rule, subtract)."""

    def __init__(self, fields, params):
        self.f = fields
        self.type = fields.get("type", SOLVER_TYPES[fields.get("solver_type", 0)])
        self.w = [np.asarray(v, np.float64).copy() for _, v, _, _ in params]
        self.mults = [(lm, dm) for _, _, lm, dm in params]
        self.h = [np.zeros_like(w) for w in self.w]
        self.u = [np.zeros_like(w) for w in self.w]  # AdaDelta's update history, Adam's v
        self.upd = [np.zeros_like(w) for w in self.w]

    def step(self, grads, it):
        f = self.f
        rate = ref_rate(f, it)
        g = [np.asarray(x, np.float64).copy() for x in grads]
        clip = f.get("clip_gradients", -1.0)
        if clip >= 0:
            norm = math.sqrt(sum(float(np.sum(x * x)) for x in g))
            if norm > clip:
                g = [x * (clip / norm) for x in g]
        iter_size = f.get("iter_size", 1)
        g = [x / iter_size for x in g]
        wd, l1 = f.get("weight_decay", 0.0), f.get("regularization_type", "L2") == "L1"
        mom, delta = f.get("momentum", 0.0), f.get("delta", 1e-8)
        for i, (lm, dm) in enumerate(self.mults):
            w, h, u = self.w[i], self.h[i], self.u[i]
            x = g[i] + wd * dm * (np.sign(w) if l1 else w)
            lr = rate * lm
            if self.type == "SGD":
                h[:] = mom * h + lr * x
                upd = h.copy()
            elif self.type == "Nesterov":
                prev = h.copy()
                h[:] = mom * h + lr * x
                upd = (1 + mom) * h - mom * prev
            elif self.type == "AdaGrad":
                h += x * x
                upd = lr * x / (np.sqrt(h) + delta)
            elif self.type == "RMSProp":
                rd = f.get("rms_decay", 0.99)
                h[:] = rd * h + (1 - rd) * x * x
                upd = lr * x / (np.sqrt(h) + delta)
            elif self.type == "AdaDelta":
                h[:] = mom * h + (1 - mom) * x * x
                s = x * np.sqrt(u + delta) / np.sqrt(h + delta)
                u[:] = mom * u + (1 - mom) * s * s
                upd = lr * s
            elif self.type == "Adam":
                b1, b2, t = mom, f.get("momentum2", 0.999), it + 1
                h[:] = b1 * h + (1 - b1) * x
                u[:] = b2 * u + (1 - b2) * x * x
                corr = math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                upd = lr * corr * h / (np.sqrt(u) + delta)
            else:
                raise ValueError(self.type)
            self.upd[i] = upd
            w -= upd
        return rate


# ----------------------------------------------------------------------------- torch reference

class TorchUpdate:
    """torch.optim with one param group per parameter (lr*lr_mult, weight_decay*decay_mult)."""

    def __init__(self, fields, params):
        self.f = fields
        kind = fields.get("type", SOLVER_TYPES[fields.get("solver_type", 0)])
        assert fields["lr_policy"] == "fixed"
        self.l1 = fields.get("regularization_type", "L2") == "L1"
        lr, wd = fields["base_lr"], fields.get("weight_decay", 0.0)
        self.w = [torch.tensor(np.asarray(v, np.float64), requires_grad=True) for _, v, _, _ in params]
        self.decay = [wd * dm for _, _, _, dm in params]
        groups = [{"params": [w], "lr": lr * lm, "weight_decay": 0.0 if self.l1 else wd * dm}
                  for w, (_, _, lm, dm) in zip(self.w, params)]
        mom, delta = fields.get("momentum", 0.0), fields.get("delta", 1e-8)
        if kind in ("SGD", "Nesterov"):
            self.opt = torch.optim.SGD(groups, lr=lr, momentum=mom, dampening=0, nesterov=kind == "Nesterov")
        elif kind == "AdaGrad":
            self.opt = torch.optim.Adagrad(groups, lr=lr, lr_decay=0, initial_accumulator_value=0, eps=delta)
        elif kind == "RMSProp":
            self.opt = torch.optim.RMSprop(groups, lr=lr, alpha=fields.get("rms_decay", 0.99), eps=delta,
                                           momentum=0, centered=False)
        elif kind == "AdaDelta":
            self.opt = torch.optim.Adadelta(groups, lr=lr, rho=mom, eps=delta)
        elif kind == "Adam":
            self.opt = torch.optim.Adam(groups, lr=lr, betas=(mom, fields.get("momentum2", 0.999)), eps=delta)
        else:
            raise ValueError(kind)

    def step(self, grads, it):
        g = [torch.tensor(np.asarray(x, np.float64)) for x in grads]
        clip = self.f.get("clip_gradients", -1.0)
        if clip >= 0:
            norm = math.sqrt(sum(float((x * x).sum()) for x in g))
            if norm > clip:
                g = [x * (clip / norm) for x in g]
        g = [x / self.f.get("iter_size", 1) for x in g]
        with torch.no_grad():
            for w, x, d in zip(self.w, g, self.decay):
                w.grad = x + d * torch.sign(w) if self.l1 else x
        self.opt.step()

    def params(self):
        return [w.detach().numpy().copy() for w in self.w]


# ----------------------------------------------------------------------------- checks

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what)


def close(a, b, what, rtol=1e-5, atol=1e-6):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.abs(a - b) - (atol + rtol * np.maximum(np.abs(a), np.abs(b)))
    ok = a.shape == b.shape and bool(np.all(np.isfinite(a))) and bool(np.all(err <= 0))
    if not ok:
        i = int(np.argmax(err)) if a.shape == b.shape and a.size else 0
        what = "%s: max excess %.3g at %d (%r vs %r)" % (what, float(np.max(err)) if a.size else 0, i,
                                                         a.ravel()[i] if a.size else None,
                                                         b.ravel()[i] if b.size else None)
    check(ok, what)


RULE_FIELDS = {
    "SGD": {"momentum": 0.9},
    "Nesterov": {"momentum": 0.9},
    "AdaGrad": {"delta": 1e-7},
    "RMSProp": {"rms_decay": 0.9, "delta": 1e-7},
    "AdaDelta": {"momentum": 0.95, "delta": 1e-6},
    "Adam": {"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8},
}
# AdaDelta's steps start near sqrt(delta): give it a base_lr that makes them visible.
RULE_LR = {"SGD": 0.05, "Nesterov": 0.05, "AdaGrad": 0.05, "RMSProp": 0.02, "AdaDelta": 20.0, "Adam": 0.05}


def make_params(rng):
    """Three parameters with lr_mult / decay_mult != 1 on two, a gap between the 2nd and 3rd, and an
    exact zero in the first (sign(0) = 0 for L1)."""
    a = rng.standard_normal(7).astype(np.float32)
    a[3] = 0.0
    b = rng.standard_normal(5).astype(np.float32)
    c = rng.standard_normal(12).astype(np.float32)
    return [(0, a, 1.0, 1.0), (7, b, 2.0, 0.0), (15, c, 0.5, 3.0)], 27


def run_case(name, fields, nsteps=6, grad_scale=1.0, use_torch=True, seed=0, expect_moved=True):
    rng = np.random.default_rng(seed)
    params, total = make_params(rng)
    grads = [[(grad_scale * rng.standard_normal(len(v))).astype(np.float32) for _, v, _, _ in params]
             for _ in range(nsteps)]
    ct = CtUpdate(fields, params, total)
    ref = RefUpdate(fields, params)
    tor = TorchUpdate(fields, params) if use_torch else None
    try:
        kind = ref.type
        # The ctypes mirror of ct_update_ctx reads back what init stored (layout sanity).
        check(ct.ctx.total == total and ct.ctx.nparams == len(params) and ct.ctx.type == SOLVER_TYPES.index(kind)
              and ct.ctx.nsets == (2 if kind in ("AdaDelta", "Adam") else 1)
              and ct.ctx.params[1].offset == params[1][0] and ct.ctx.params[2].lr_mult == params[2][2],
              "%s: ct_update_ctx fields read back wrong" % name)
        for it in range(nsteps):
            rate = ct.step(grads[it], it)
            rrate = ref.step(grads[it], it)
            close([rate], [rrate], "%s it %d: rate" % (name, it))
            close([rate], [lib.ct_update_rate(ct.sp.ptr, it)], "%s it %d: returned rate = ct_update_rate" % (name, it),
                  rtol=0, atol=0)
            for i, (p, q) in enumerate(zip(ct.params(), ref.w)):
                close(p, q, "%s it %d param %d: data vs numpy" % (name, it, i))
            for i, (p, q) in enumerate(zip(ct.updates(), ref.upd)):
                close(p, q, "%s it %d param %d: update left in diff vs numpy" % (name, it, i), atol=1e-7)
            close(np.concatenate(ct.history(0)), np.concatenate(ref.h), "%s it %d: history set 0" % (name, it))
            if kind in ("AdaDelta", "Adam"):
                close(np.concatenate(ct.history(1)), np.concatenate(ref.u), "%s it %d: history set 1" % (name, it),
                      atol=1e-7)
            if tor:
                tor.step(grads[it], it)
                for i, (p, q) in enumerate(zip(ct.params(), tor.params())):
                    close(p, q, "%s it %d param %d: data vs torch" % (name, it, i))
        # The floats between parameters are nobody's: untouched.
        check(np.all(ct.data[12:15] == np.float32(7.25)) and np.all(ct.diff[12:15] == np.float32(-3.5)),
              "%s: the gap between parameters was written" % name)
        # The run moved every parameter with lr_mult > 0 (the test would be vacuous otherwise).
        moved = [float(np.max(np.abs(p - np.asarray(v, np.float64)))) for p, (_, v, _, _) in zip(ct.params(), params)]
        check(not expect_moved or min(moved) > 1e-3, "%s: parameters barely moved %r" % (name, moved))
    finally:
        ct.close()


def test_rules():
    for kind in SOLVER_TYPES:
        base = {"type": kind, "base_lr": RULE_LR[kind], "lr_policy": "fixed"}
        base.update(RULE_FIELDS[kind])
        run_case(kind + " L2", dict(base, weight_decay=0.01))
        run_case(kind + " L1", dict(base, weight_decay=0.05, regularization_type="L1"), seed=1)
        # Gradients of norm ~25 clipped to 2, accumulated over iter_size 2.
        run_case(kind + " clip+iter_size", dict(base, weight_decay=0.005, clip_gradients=2.0, iter_size=2),
                 grad_scale=5.0, seed=2)
        # A varying rate: numpy only (torch's momentum folds lr in differently).
        run_case(kind + " step policy", dict(base, weight_decay=0.01, lr_policy="step", gamma=0.5, stepsize=2),
                 use_torch=False, seed=3)
    # The deprecated enum selects the rule when `type` is absent.
    for code, kind in enumerate(SOLVER_TYPES):
        fields = {"solver_type": code, "base_lr": RULE_LR[kind], "lr_policy": "fixed", "weight_decay": 0.01}
        fields.update(RULE_FIELDS[kind])
        run_case("solver_type %d" % code, fields, nsteps=5, seed=4)
    # Caffe turns clipping off only for a negative clip_gradients: 0 scales every gradient to 0,
    # leaving weight decay alone to move the parameters.
    run_case("SGD clip 0", {"type": "SGD", "base_lr": 0.1, "lr_policy": "fixed", "momentum": 0.9,
                            "weight_decay": 0.1, "clip_gradients": 0.0}, nsteps=5, seed=6, expect_moved=False)
    # No momentum at all for SGD: plain gradient descent.
    run_case("SGD no momentum", {"type": "SGD", "base_lr": 0.1, "lr_policy": "fixed"}, nsteps=5, seed=5)


def test_policies():
    iters = [0, 1, 2, 3, 4, 6, 7, 9, 10, 19, 20, 21, 49, 50, 51, 99, 250, 999]
    cases = [
        {"lr_policy": "fixed", "base_lr": 0.01},
        {"lr_policy": "step", "base_lr": 0.01, "gamma": 0.1, "stepsize": 10},
        {"lr_policy": "exp", "base_lr": 0.01, "gamma": 0.99},
        {"lr_policy": "inv", "base_lr": 0.01, "gamma": 1e-4, "power": 0.75},
        {"lr_policy": "multistep", "base_lr": 0.01, "gamma": 0.5, "stepvalue": [3, 7, 20, 50]},
        {"lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.1, "stepvalue": []},
        {"lr_policy": "poly", "base_lr": 0.01, "power": 0.5, "max_iter": 1000},
        {"lr_policy": "poly", "base_lr": 0.02, "power": 2.0, "max_iter": 1000},
        {"lr_policy": "sigmoid", "base_lr": 0.01, "gamma": -0.1, "stepsize": 50},
        {"lr_policy": "sigmoid", "base_lr": 0.01, "gamma": 0.05, "stepsize": 20},
    ]
    for fields in cases:
        # The float32 wire values are what Caffe sees: round the reference's inputs the same way.
        ref_fields = {k: (float(np.float32(v)) if isinstance(v, float) else v) for k, v in fields.items()}
        sp = SolverParam(fields)
        try:
            got = [lib.ct_update_rate(sp.ptr, it) for it in iters]
        finally:
            sp.close()
        want = [ref_rate(ref_fields, it) for it in iters]
        close(got, want, "lr_policy %s %r" % (fields["lr_policy"], fields), atol=1e-30)
    # init accepts every policy above with the fields given.
    for fields in cases:
        try:
            CtUpdate(dict(fields, type="SGD"), [(0, np.zeros(2, np.float32), 1.0, 1.0)], 2).close()
            check(True, "")
        except RuntimeError as e:
            check(False, "init refused %r: %s" % (fields, e))


def test_init_errors():
    bad = [
        ({"type": "Adamax", "lr_policy": "fixed"}, "type"),
        ({"type": "SGD", "lr_policy": "cosine"}, "lr_policy"),
        ({"type": "SGD", "lr_policy": "step", "gamma": 0.1}, "stepsize"),
        ({"type": "SGD", "lr_policy": "poly", "power": 1.0}, "max_iter"),
        ({"type": "SGD", "lr_policy": "fixed", "regularization_type": "L3"}, "regularization_type"),
        ({"type": "AdaGrad", "lr_policy": "fixed", "momentum": 0.9}, "momentum"),
        ({"type": "SGD", "lr_policy": "fixed", "iter_size": 0}, "iter_size"),
    ]
    for fields, field in bad:
        try:
            CtUpdate(fields, [(0, np.zeros(2, np.float32), 1.0, 1.0)], 2).close()
            check(False, "init accepted %r" % fields)
        except RuntimeError as e:
            check(field in str(e), "init error for %r does not name %s: %s" % (fields, field, e))


def main():
    test_rules()
    test_policies()
    test_init_errors()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
