"""The `cortado` Python module (python/cortado) on a small net: forward outputs against numpy,
backward gradients against numpy, blobs and parameters as zero-copy views that write through,
weights saved and loaded, a solver whose steps change the weights and whose snapshot resumes,
and CortadoError carrying cortado's message on bad input.

Env: CT_SOURCE_DIR = the repository root (the module is imported from its python/ folder),
CORTADO or CT_BUILD_DIR = where libcortado.so was built (or CORTADO_LIB = its path).
Prints "N passed, N failed"; exits non-zero on a failure.
"""
import os
import shutil
import sys
import tempfile

import numpy as np

SRC = os.environ.get("CT_SOURCE_DIR", "..")
sys.path.insert(0, os.path.join(SRC, "python"))
import cortado  # noqa: E402

passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)
        if detail != "":
            print("  " + str(detail)[-2000:], file=sys.stderr)


def raises(fn, *words):
    """Calls fn; returns the CortadoError's message when it raised one mentioning every word."""
    try:
        fn()
    except cortado.CortadoError as e:
        msg = str(e)
        return msg if all(w in msg for w in words) else "wrong message: " + msg
    return None


T = tempfile.mkdtemp(prefix="cortado_py.")
N, D, K = 4, 5, 3
NET = os.path.join(T, "net.prototxt")
with open(NET, "w") as f:
    f.write("""name: "small"
force_backward: true
layer { name: "input" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %d dim: %d } shape { dim: %d } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""" % (N, D, N, K))

rng = np.random.RandomState(0)
x = rng.randn(N, D).astype(np.float32)
y = np.array([0, 2, 1, 2], dtype=np.float32)


def reference(W, b):
    """numpy: logits, mean cross-entropy, d loss / d logits."""
    z = x @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(N), y.astype(int)]))
    g = p.copy()
    g[np.arange(N), y.astype(int)] -= 1
    return z, loss, g / N


# ---------------------------------------------------------------- Net
net = cortado.Net(NET, phase=cortado.TRAIN)
check(list(net.blobs) == ["data", "label", "ip", "loss"], "blob names in order", list(net.blobs))
check(net.blobs["data"].shape == (N, D) and net.blobs["ip"].shape == (N, K), "blob shapes")
check(list(net.params) == ["ip"] and [p.shape for p in net.params["ip"]] == [(K, D), (K,)], "params",
      [p.shape for p in net.params["ip"]])
check(net.inputs == ["data", "label"] and net.outputs == ["loss"], "inputs and outputs", (net.inputs, net.outputs))
check(net.layer_types == ["Input", "InnerProduct", "SoftmaxWithLoss"], "layer types", net.layer_types)
check(net.bottom_names["loss"] == ["ip", "label"] and net.top_names["ip"] == ["ip"], "bottom and top names")

W = net.params["ip"][0].data
b = net.params["ip"][1].data
check(np.allclose(b, 0.1) and W.dtype == np.float32 and W.std() > 0.1, "fillers ran", (b, W.std()))
out = net.forward(data=x, label=y)
z, loss, g = reference(W.copy(), b.copy())
check(set(out) == {"loss"} and abs(float(out["loss"]) - loss) < 1e-5, "forward loss vs numpy", (out, loss))
check(np.allclose(net.blobs["ip"].data, z, atol=1e-5), "forward logits vs numpy")
check(np.array_equal(net.blobs["data"].data, x), "inputs copied into the data blob")

# zero-copy: two views share memory, writes go through to the net
v1, v2 = net.blobs["ip"].data, net.blobs["ip"].data
check(v1.__array_interface__["data"][0] == v2.__array_interface__["data"][0], "blob views are not copies")
net.params["ip"][0].data[...] = 0
out = net.forward()
check(np.allclose(net.blobs["ip"].data, 0.1), "writing params.data changes the net's weights",
      net.blobs["ip"].data)
net.params["ip"][0].data[...] = W_init = rng.randn(K, D).astype(np.float32) * 0.3
net.params["ip"][1].data[...] = b_init = np.array([0.1, -0.2, 0.05], dtype=np.float32)
net.blobs["data"].data[...] = x
net.forward()
z, loss, g = reference(W_init, b_init)
check(abs(float(net.blobs["loss"].data) - loss) < 1e-5, "forward after writing blobs in place")

# backward
net.clear_param_diffs()
grads = net.backward()
check(set(grads) == {"data", "label"}, "backward returns the inputs' diffs", list(grads))
check(np.allclose(net.blobs["ip"].diff, g, atol=1e-6), "d loss / d logits vs numpy")
check(np.allclose(net.params["ip"][0].diff, g.T @ x, atol=1e-5), "weight gradient vs numpy")
check(np.allclose(net.params["ip"][1].diff, g.sum(0), atol=1e-6), "bias gradient vs numpy")
check(np.allclose(grads["data"], g @ W_init, atol=1e-5), "data gradient vs numpy")
net.backward()
check(np.allclose(net.params["ip"][0].diff, 2 * g.T @ x, atol=1e-5), "parameter gradients accumulate")
net.clear_param_diffs()
check(not net.params["ip"][0].diff.any(), "clear_param_diffs")

# another batch size: an error as in pycaffe, until the inputs are reshaped
x6 = rng.randn(6, D).astype(np.float32)
msg = raises(lambda: net.forward(data=x6, label=np.zeros(6, np.float32)), "reshape")
check(msg and not msg.startswith("wrong"), "a batch of another size is refused", msg)
net.blobs["data"].reshape(6, D)
net.blobs["label"].reshape(6)
out = net.forward(data=x6, label=np.zeros(6, np.float32))
check(net.blobs["ip"].shape == (6, K) and np.allclose(net.blobs["ip"].data, x6 @ W_init.T + b_init, atol=1e-5),
      "forward with a new batch size reshapes")

# save / load
model = os.path.join(T, "small.caffemodel")
net.save(model)
net2 = cortado.Net(NET, model, cortado.TEST)  # pycaffe's positional form
check(np.array_equal(net2.params["ip"][0].data, W_init) and np.array_equal(net2.params["ip"][1].data, b_init),
      "save, then Net(prototxt, weights, phase) loads the same weights")
net3 = cortado.Net(NET, cortado.TEST)
net3.copy_from(model)
check(np.array_equal(net3.params["ip"][0].data, W_init), "copy_from")
del net2, net3

# ---------------------------------------------------------------- errors
msg = raises(lambda: cortado.Net(os.path.join(T, "nope.prototxt")), "nope.prototxt")
check(msg and not msg.startswith("wrong"), "a missing prototxt raises, naming it", msg)
bad = os.path.join(T, "bad.prototxt")
with open(bad, "w") as f:
    f.write('name: "x"\nlayer { name: "a" type: "NoSuchType" top: "t" }\n')
msg = raises(lambda: cortado.Net(bad), "NoSuchType")
check(msg and not msg.startswith("wrong"), "an unknown layer type raises with cortado's message", msg)
with open(bad, "w") as f:
    f.write('name: "x"\nlayer { name: "a" type: "Input" \n')
msg = raises(lambda: cortado.Net(bad), "bad.prototxt:")
check(msg and not msg.startswith("wrong"), "a malformed prototxt raises with file:line", msg)
msg = raises(lambda: net.forward(nosuch=np.zeros(3)), "nosuch")
check(msg and not msg.startswith("wrong"), "forward with an unknown blob raises", msg)
other = os.path.join(T, "other.prototxt")
with open(other, "w") as f:
    f.write(open(NET).read().replace("num_output: %d" % K, "num_output: 7"))
msg = raises(lambda: cortado.Net(other, model, cortado.TEST), "ip")
check(msg and not msg.startswith("wrong"), "weights of the wrong shape raise, naming the layer", msg)
try:
    cortado.Net(NET, phase=5)
    check(False, "a bad phase raises")
except ValueError:
    check(True, "a bad phase raises")
try:
    raise cortado.CortadoError("x", "y")
except RuntimeError as e:
    check(e.status == "y", "CortadoError is a RuntimeError with a status")

# ---------------------------------------------------------------- Solver
SOLVER = os.path.join(T, "solver.prototxt")
TRAIN_NET = os.path.join(T, "train.prototxt")
with open(TRAIN_NET, "w") as f:
    f.write("""name: "small_train"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 4 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" include { phase: TEST } }
""")
with open(SOLVER, "w") as f:
    f.write('net: "%s"\ntest_iter: 2\ntest_interval: 1000\nbase_lr: 0.1\nlr_policy: "fixed"\ndisplay: 0\n'
            'max_iter: 30\nsnapshot_prefix: "%s/snap/small"\nrandom_seed: 7\n' % (TRAIN_NET, T))
lines = []
s = cortado.Solver(SOLVER, log=lines.append)
check(s.iter == 0 and len(s.test_nets) == 1, "a solver with one test net")
w0 = s.net.params["ip"][0].data.copy()
s.step(10)
w1 = s.net.params["ip"][0].data.copy()
check(s.iter == 10 and not np.array_equal(w0, w1), "step(10) changes the weights", s.iter)
check(np.array_equal(s.test_nets[0].params["ip"][0].data, w1), "test nets see the train net's weights")
scores = s.test(0)
check(len(scores) == 2 and 0 <= scores[1] <= 1, "test(0) gives the loss and the accuracy", scores)
model_path, state_path = s.snapshot()
check(os.path.exists(model_path) and state_path.endswith("small_iter_10.solverstate"), "snapshot paths",
      (model_path, state_path))
s.solve()
check(s.iter == 30, "solve() runs to max_iter", s.iter)
check(any("Snapshotting" in l for l in lines), "log lines go to the log callback", lines[-3:])
w30 = s.net.params["ip"][0].data.copy()
# resume from the snapshot and reach the same weights
r = cortado.Solver(SOLVER, snapshot=state_path, quiet=True)
check(r.iter == 10 and np.array_equal(r.net.params["ip"][0].data, w1), "resume from the snapshot")
r.step(20)
check(np.allclose(r.net.params["ip"][0].data, w30, atol=1e-6), "a resumed solver reaches the same weights")
net_alive = s.net
del s
check(net_alive.params["ip"][0].data.shape == (3, 4), "a solver's net keeps its solver alive")
msg = raises(lambda: cortado.Solver(os.path.join(T, "none.prototxt")), "none.prototxt")
check(msg and not msg.startswith("wrong"), "a missing solver file raises, naming it", msg)
badsolver = os.path.join(T, "badsolver.prototxt")
with open(badsolver, "w") as f:
    f.write('net: "%s"\nbase_lr: 0.1\nmax_iter: -3\n' % TRAIN_NET)
msg = raises(lambda: cortado.Solver(badsolver), "max_iter")
check(msg and not msg.startswith("wrong"), "a bad solver setting raises, naming it", msg)

print("%d passed, %d failed" % (passed, failed))
if not failed:
    shutil.rmtree(T)
sys.exit(1 if failed else 0)
