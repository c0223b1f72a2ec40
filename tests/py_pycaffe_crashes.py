"""Each way the Python module used to crash Python (issue 22), as a regression test; run under
the ASan build too (make check-sanitize), where a use-after-free or an overflow of cortado's
memory fails the run even when the values happen to look right.

1. a view outliving its Net; 2. a view taken before a reshape that grows the blob; 3. a Net or
Solver used after __del__, and a Solver's .net after the Solver is freed; 4. stages that are
not str; 5. two threads calling forward() on one Net; 6. a Solver freed inside its own
callback; 7. integers that do not fit C's int.
"""
import gc
import threading

import numpy as np

from pyc_util import Checks, cortado as caffe

T = Checks("cortado_crash.")
N, D, K = 8, 6, 4
NET = T.path("net.prototxt", """name: "small"
layer { name: "input" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %d dim: %d } shape { dim: %d } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""" % (N, D, N, K))
rng = np.random.RandomState(3)
X = rng.randn(N, D).astype(np.float32)
Y = rng.randint(0, K, N).astype(np.float32)


def numpy_outputs(W, b, x=X, y=Y):
    z = x @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return float(np.mean(z.argmax(1) == y)), float(-np.mean(np.log(p[np.arange(len(y)), y.astype(int)])))


# ---------------------------------------------------------------- 1. views outliving their net
def run_once():
    net = caffe.Net(NET, caffe.TEST)
    W, b = net.params["ip"][0].data.copy(), net.params["ip"][1].data.copy()
    return net.forward(data=X, label=Y), net.params["ip"][0].data, (W, b)


out, wview, (W, b) = run_once()
gc.collect()
junk = [np.ones(4096, np.float32) * i for i in range(64)]  # reuse of freed memory shows here
acc, loss = numpy_outputs(W, b)
T.check(abs(float(out["accuracy"]) - acc) < 1e-6 and abs(float(out["loss"]) - loss) < 1e-5,
        "outputs returned from a function whose Net is gone keep their values", (out, acc, loss))
T.check(np.array_equal(wview, W), "a parameter view outliving its net reads the weights")
wview[...] = 7  # writes to memory the view owns; no longer any net's
T.check(float(wview.sum()) == 7 * W.size, "a parameter view outliving its net can be written")
del out, wview, junk
gc.collect()

# ---------------------------------------------------------------- 2. a view before a reshape that grows
net = caffe.Net(NET, caffe.TEST)
old_data, old_ip = net.blobs["data"].data, net.blobs["ip"].data
old_diff = net.blobs["ip"].diff
net.blobs["data"].reshape(64, D)
net.blobs["label"].reshape(64)
net.reshape()
x64 = rng.randn(64, D).astype(np.float32)
y64 = rng.randint(0, K, 64).astype(np.float32)
net.forward(data=x64, label=y64)
net.backward()
old_data[...] = 1.0  # would write past a freed 8 x 6 buffer
old_ip[...] = 2.0
old_diff[...] = 3.0
T.check(old_data.shape == (N, D) and float(old_data.sum()) == N * D, "the old view stays usable after the grow")
Wn, bn = net.params["ip"][0].data.copy(), net.params["ip"][1].data.copy()
T.check(net.blobs["ip"].data.shape == (64, K) and np.allclose(net.blobs["ip"].data, x64 @ Wn.T + bn, atol=1e-5),
        "the net computes on the grown blob, untouched by writes to old views")
net.blobs["data"].reshape(2, D)  # shrink: same storage, a fresh view sees the new shape
T.check(net.blobs["data"].data.shape == (2, D), "a view after shrinking has the new shape")
v = net.blobs["data"].data
v[...] = 5
T.check(np.all(net.blobs["data"].data == 5), "a view of a shrunk blob writes through")
del old_data, old_ip, old_diff, v

# ---------------------------------------------------------------- 3. use after __del__
net = caffe.Net(NET, caffe.TEST)
blob = net.blobs["ip"]
param = net.params["ip"][0]
kept = blob.data
net.__del__()
T.expect_raise(caffe.CortadoError, net.forward, "forward after __del__ raises", "freed")
T.expect_raise(caffe.CortadoError, lambda: net.blobs, "blobs after __del__ raises", "freed")
T.expect_raise(caffe.CortadoError, lambda: blob.data, "a Blob of a freed net raises", "freed")
T.expect_raise(caffe.CortadoError, lambda: param.diff, "a ParamBlob of a freed net raises", "freed")
T.expect_raise(caffe.CortadoError, lambda: net.save(T.path("x.caffemodel")), "save after __del__ raises")
net.__del__()  # twice: harmless
kept[...] = 1  # a view taken before keeps its memory
T.check(float(kept.sum()) == kept.size, "a view taken before __del__ stays valid")
del net, blob, param, kept

TRAIN_NET = T.path("train.prototxt", """name: "t"
layer { name: "d" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""")
SOLVER = T.path("solver.prototxt", 'net: "%s"\ntest_iter: 1\ntest_interval: 1000\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                'display: 0\nmax_iter: 10\nsnapshot_prefix: "%s/snap"\nrandom_seed: 5\n' % (TRAIN_NET, T.tmp))
s = caffe.SGDSolver(SOLVER, quiet=True)
snet, tnet = s.net, s.test_nets[0]
s.__del__()
T.expect_raise(caffe.CortadoError, lambda: s.step(1), "step after __del__ raises", "freed")
T.expect_raise(caffe.CortadoError, lambda: s.iter, "iter after __del__ raises", "freed")
T.expect_raise(caffe.CortadoError, snet.forward, "a solver's net after the solver is freed raises", "freed")
T.expect_raise(caffe.CortadoError, lambda: tnet.params["ip"][0].data, "a test net after the solver is freed raises")
T.expect_raise(caffe.CortadoError, lambda: snet.close() or snet.blobs, "close() on a solver's net does not free it",
               "freed")
s2 = caffe.SGDSolver(SOLVER, quiet=True)
n2 = s2.net
del s2
gc.collect()
n2.forward()
T.check(n2.blobs["ip"].data.shape == (4, 2), "a solver's net keeps its solver alive after `del solver`")
del n2, snet, tnet, s

# ---------------------------------------------------------------- 4. stages that are not str
T.expect_raise(TypeError, lambda: caffe.Net(NET, caffe.TEST, stages=[1, 2]), "stages=[1, 2] raises TypeError",
               "stage")
T.expect_raise(TypeError, lambda: caffe.Net(NET, caffe.TEST, stages="deploy"), "stages='deploy' raises TypeError")
T.expect_raise(TypeError, lambda: caffe.Net(NET, caffe.TEST, stages=[None]), "stages=[None] raises TypeError")
T.expect_raise(ValueError, lambda: caffe.Net(NET, 7), "phase 7 raises ValueError")
T.check(caffe.Net(NET, caffe.TEST, stages=["a", "b"]).blobs["ip"].shape == (N, K), "str stages work")

# ---------------------------------------------------------------- 5. two threads on one net
net = caffe.Net(NET, caffe.TEST)
Wt, bt = net.params["ip"][0].data.copy(), net.params["ip"][1].data.copy()
xs = [rng.randn(N, D).astype(np.float32) for _ in range(2)]
expect = [xi @ Wt.T + bt for xi in xs]
errors, wrong = [], []


def worker(k):
    try:
        for _ in range(30):
            # forward and the read of its result under one lock, as a caller that wants its own
            # result must do; each forward alone is safe without it
            with net.lock:
                net.forward(data=xs[k], label=Y)
                got = net.blobs["ip"].data.copy()
            if not np.allclose(got, expect[k], atol=1e-5):
                wrong.append(k)
            net.forward()  # unsynchronised calls: must not crash or deadlock
    except Exception as e:  # noqa: BLE001
        errors.append(e)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
T.check(not any(t.is_alive() for t in threads), "two threads calling forward() on one net finish (no deadlock)")
T.check(not errors and not wrong, "and each sees its own results", (errors, wrong))

# ---------------------------------------------------------------- 6. a solver freed inside its callback
s = caffe.SGDSolver(SOLVER, quiet=True)
seen = []


def free_me():
    seen.append(s.iter)
    if len(seen) == 3:
        s.__del__()


s.add_callback(free_me, lambda: None)
r = T.raises(caffe.CortadoError, lambda: s.step(10), "freed")
T.check(r is True and seen == [0, 1, 2], "a solver freed in its callback stops step() with an error", (r, seen))
T.expect_raise(caffe.CortadoError, lambda: s.step(1), "and is unusable afterwards", "freed")
s = caffe.SGDSolver(SOLVER, quiet=True)
fails = [1]
s.add_callback(lambda: None, lambda: 1 // (fails.pop() - 1) if fails else None)
T.expect_raise(ZeroDivisionError, lambda: s.step(3), "an exception in a callback comes out of step()")
T.check(s.iter == 0, "and the update did not run", s.iter)
s.step(2)
T.check(s.iter == 2, "the solver goes on afterwards", s.iter)
del s

# ---------------------------------------------------------------- 7. integers that do not fit C's int
s = caffe.SGDSolver(SOLVER, quiet=True)
T.expect_raise(OverflowError, lambda: s.step(2 ** 32 + 1), "step(2**32+1) raises OverflowError")
T.expect_raise(OverflowError, lambda: s.step(2 ** 31), "step(2**31) raises OverflowError")
T.expect_raise(ValueError, lambda: s.step(-1), "step(-1) raises ValueError")
T.expect_raise(TypeError, lambda: s.step(1.5), "step(1.5) raises TypeError")
T.check(s.iter == 0, "none of them ran an iteration", s.iter)
s.step(np.int64(2))
T.check(s.iter == 2, "a numpy integer is fine", s.iter)
net = caffe.Net(NET, caffe.TEST)
T.expect_raise(OverflowError, lambda: net.blobs["data"].reshape(2 ** 40, D), "reshape(2**40, ...) raises OverflowError")
T.expect_raise(OverflowError, lambda: net.blobs["data"].reshape(2 ** 32 + 4, D), "reshape(2**32+4) raises")
T.expect_raise(ValueError, lambda: net.blobs["data"].reshape(-1, D), "a negative axis raises ValueError")
T.expect_raise(caffe.CortadoError, lambda: net.blobs["data"].reshape(2 ** 20, 2 ** 20), "a huge count is refused")
T.check(net.blobs["data"].shape == (N, D), "the blob kept its shape", net.blobs["data"].shape)
T.expect_raise(OverflowError, lambda: caffe.Net(NET, caffe.TEST, level=2 ** 40), "level=2**40 raises")
T.expect_raise(OverflowError, lambda: caffe.set_random_seed(2 ** 64), "a seed past 64 bits raises")
T.expect_raise(OverflowError, lambda: caffe.set_device(2 ** 33), "set_device(2**33) raises OverflowError")

# ---------------------------------------------------------------- (the typed solver classes, on the tiny net)
for cls in (caffe.SGDSolver, caffe.NesterovSolver, caffe.AdaGradSolver, caffe.RMSPropSolver, caffe.AdaDeltaSolver,
            caffe.AdamSolver):
    s = cls(SOLVER, quiet=True)
    w = s.net.params["ip"][0].data.copy()
    s.step(2)
    T.check(s.iter == 2 and s.param.type == cls.__name__[:-len("Solver")]
            and not np.array_equal(w, s.net.params["ip"][0].data), "%s steps" % cls.__name__)
T.finish()
