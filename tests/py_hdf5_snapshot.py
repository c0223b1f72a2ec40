"""HDF5 snapshots (snapshot_format: HDF5) in Caffe's layout, checked with h5py (Debian's
python3-h5py), an independent reader and writer:

- LeNet trained with Adam on Fashion-MNIST writes <prefix>_iter_N.caffemodel.h5 and
  .solverstate.h5; h5py finds Caffe's layout in them (/data/<layer>/<i> with each parameter's
  shape, /iter, /learned_net, /current_step, /history/<i>, Adam's two sets) and the values the
  module shows, and the weights equal those of the same run snapshotted as binary protos;
- training 10 iterations straight equals training 5, stopping, and resuming from the
  .solverstate.h5 for 5 more (the tool's --snapshot), bit for bit;
- files h5py writes (float64 weights, a variable-length learned_net string) are read: --weights
  and the module's copy_from load the values h5py wrote, and --snapshot resumes from h5py's
  solver state at its iteration;
- a damaged .h5 is refused with a message and nothing else happens.

Env: CT_SOURCE_DIR, CORTADO, CT_BUILD_DIR / CORTADO_LIB. Prints "N passed, N failed".
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SRC = os.environ.get("CT_SOURCE_DIR", "..")
sys.path.insert(0, os.path.join(SRC, "python"))
import cortado  # noqa: E402

CORTADO = os.environ.get("CORTADO", os.path.join(SRC, "build", "cortado"))
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)
        if detail != "":
            print("  " + str(detail)[-3000:], file=sys.stderr)


T = tempfile.mkdtemp(prefix="cortado_h5.")


def path(name):
    return os.path.join(T, name)


with open(os.path.join(SRC, "examples", "fashion_mnist", "lenet_train_test_idx.prototxt")) as f:
    net = f.read().replace("batch_size: 64", "batch_size: 16")
with open(path("lenet.prototxt"), "w") as f:
    f.write(net)
PARAMS = [("conv1", (20, 1, 5, 5)), ("conv1", (20,)), ("conv2", (50, 20, 5, 5)), ("conv2", (50,)),
          ("ip1", (500, 800)), ("ip1", (500,)), ("ip2", (10, 500)), ("ip2", (10,))]


def solver(name, fmt, prefix, max_iter=10):
    with open(path(name), "w") as f:
        f.write('''net: "lenet.prototxt"
type: "Adam"
base_lr: 0.001
momentum: 0.9
momentum2: 0.999
lr_policy: "fixed"
display: 1
max_iter: %d
snapshot: 5
snapshot_prefix: "%s"
snapshot_format: %s
random_seed: 3
solver_mode: CPU
''' % (max_iter, path(prefix), fmt))
    return path(name)


def cli(*args):
    env = dict(os.environ, CT_BLAS_CORE="keep")
    return subprocess.run([CORTADO] + list(args), capture_output=True, text=True, timeout=600, env=env, cwd=T)


def h5_params(fname):
    with h5py.File(fname, "r") as f:
        return [np.array(f["data"][layer][str(i)]) for layer, i in
                [(n, k) for n, k in zip([p[0] for p in PARAMS], [0, 1] * 4)]]


# ---------------------------------------------------------------- straight and resumed
s_h5 = solver("h5_solver.prototxt", "HDF5", "straight")
r = cli("train", "--solver=" + s_h5, "--partitions=1")
check(r.returncode == 0, "training with snapshot_format: HDF5", r.stderr)
for it in (5, 10):
    for kind in ("caffemodel.h5", "solverstate.h5"):
        check(os.path.exists(path("straight_iter_%d.%s" % (it, kind))), "wrote straight_iter_%d.%s" % (it, kind))
check("Snapshotting to HDF5 file" in r.stderr and "Snapshotting solver state to HDF5 file" in r.stderr,
      "Caffe's log lines", r.stderr[-800:])

s_bin = solver("bin_solver.prototxt", "BINARYPROTO", "binary")
rb = cli("train", "--solver=" + s_bin, "--partitions=1")
check(rb.returncode == 0, "the same run snapshotted as binary protos", rb.stderr)

s_half = solver("half_solver.prototxt", "HDF5", "resumed")
r1 = cli("train", "--solver=" + s_half, "--partitions=1", "--iterations=5")
check(r1.returncode == 0 and os.path.exists(path("resumed_iter_5.solverstate.h5")), "5 iterations", r1.stderr)
r2 = cli("train", "--solver=" + s_half, "--partitions=1", "--snapshot=" + path("resumed_iter_5.solverstate.h5"))
check(r2.returncode == 0 and os.path.exists(path("resumed_iter_10.caffemodel.h5")), "resumed from the .h5 to 10",
      r2.stderr)


def losses(text):
    return {int(i): float(v) for i, v in re.findall(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-0-9.eE+naif]+)", text)}


if r.returncode == 0 and r2.returncode == 0:
    a, b = h5_params(path("straight_iter_10.caffemodel.h5")), h5_params(path("resumed_iter_10.caffemodel.h5"))
    check(all(np.array_equal(x, y) for x, y in zip(a, b)), "resuming from the .solverstate.h5 is exact",
          [float(np.abs(x - y).max()) for x, y in zip(a, b)])
    la, lb = losses(r.stderr), losses(r1.stderr + r2.stderr)
    check(all(la.get(i) == lb.get(i) for i in range(10)) and len(la) >= 10, "the same losses, iteration by iteration",
          (la, lb))

# ---------------------------------------------------------------- Caffe's layout, read by h5py
with h5py.File(path("straight_iter_10.caffemodel.h5"), "r") as f:
    check(set(f.keys()) == {"data"}, "the weights file holds /data", list(f.keys()))
    layers = list(f["data"].keys())
    for name in ("fashion", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"):
        check(name in layers, "a group for layer %s, as Caffe makes for every layer" % name, layers)
    for (layer, shape), i in zip(PARAMS, [0, 1] * 4):
        d = f["data"][layer][str(i)]
        check(d.shape == shape and d.dtype == np.float32, "/data/%s/%d: %s float32" % (layer, i, shape), (d.shape, d.dtype))
    check(len(f["data"]["pool1"].keys()) == 0, "a layer without weights has an empty group")
with h5py.File(path("straight_iter_10.solverstate.h5"), "r") as f:
    check(int(f["iter"][()]) == 10 and f["iter"].shape == (), "/iter is the scalar 10", f["iter"][()])
    ln = f["learned_net"][()]
    ln = ln.decode() if isinstance(ln, bytes) else ln
    check(ln == path("straight_iter_10.caffemodel.h5"), "/learned_net names the weights", ln)
    check("current_step" in f and f["current_step"].shape == (), "/current_step")
    hist = f["history"]
    check(len(hist) == 16, "Adam's two history sets, 8 parameters each", len(hist))
    for k in range(16):
        check(hist[str(k)].shape == PARAMS[k % 8][1], "/history/%d has parameter %d's shape" % (k, k % 8))
    v = np.array(hist["8"])  # Adam's second moment of conv1's weights: never negative, not all zero
    check(v.min() >= 0 and v.max() > 0, "the second set is Adam's second moments", (v.min(), v.max()))
    check("cortado_state" in f, "cortado's resumption state rides along")

if rb.returncode == 0:
    net_h5 = cortado.Net(path("lenet.prototxt"), weights=path("straight_iter_10.caffemodel.h5"), phase=cortado.TEST)
    net_bin = cortado.Net(path("lenet.prototxt"), weights=path("binary_iter_10.caffemodel"), phase=cortado.TEST)
    via_h5py = h5_params(path("straight_iter_10.caffemodel.h5"))
    for k, ((layer, _), i) in enumerate(zip(PARAMS, [0, 1] * 4)):
        check(np.array_equal(net_h5.params[layer][i].data, via_h5py[k]), "%s[%d]: the module reads what h5py reads"
              % (layer, i))
        check(np.array_equal(net_h5.params[layer][i].data, net_bin.params[layer][i].data),
              "%s[%d]: the HDF5 snapshot equals the binary one" % (layer, i))

# ---------------------------------------------------------------- files h5py writes
rng = np.random.RandomState(5)
mine = {}
with h5py.File(path("h5py.caffemodel.h5"), "w") as f:
    for (layer, shape), i in zip(PARAMS, [0, 1] * 4):
        mine[(layer, i)] = rng.randn(*shape) * 0.01  # float64 on disk: read as float
        f.create_dataset("data/%s/%d" % (layer, i), data=mine[(layer, i)])
    f.create_group("data/not_in_the_net")  # Caffe ignores layers the net does not have
net = cortado.Net(path("lenet.prototxt"), phase=cortado.TEST)
net.copy_from(path("h5py.caffemodel.h5"))
for (layer, i), want in mine.items():
    check(np.array_equal(net.params[layer][i].data, want.astype(np.float32)), "copy_from reads h5py's %s[%d]" % (layer, i))

with h5py.File(path("h5py.solverstate.h5"), "w") as f:
    f["iter"] = np.int64(7)
    f["current_step"] = np.int64(0)
    f.create_dataset("learned_net", data=path("h5py.caffemodel.h5"), dtype=h5py.string_dtype())
    for k in range(16):
        f.create_dataset("history/%d" % k, data=np.zeros(PARAMS[k % 8][1], dtype=np.float32))
rr = cli("train", "--solver=" + s_h5, "--partitions=1", "--snapshot=" + path("h5py.solverstate.h5"), "--iterations=1")
check(rr.returncode == 0, "--snapshot resumes from a state h5py wrote", rr.stderr)
check(os.path.exists(path("straight_iter_8.caffemodel.h5")), "at its iteration (7, one more: 8)", os.listdir(T))
rw = cli("test", "--model=" + path("lenet.prototxt"), "--weights=" + path("h5py.caffemodel.h5"), "--iterations=1")
check(rw.returncode == 0, "--weights takes a .caffemodel.h5", rw.stderr)

# ---------------------------------------------------------------- damaged files
with h5py.File(path("no_data.caffemodel.h5"), "w") as f:
    f["something"] = np.zeros(3)
rd = cli("test", "--model=" + path("lenet.prototxt"), "--weights=" + path("no_data.caffemodel.h5"), "--iterations=1")
check(rd.returncode == 1 and "no group /data" in rd.stderr, "an .h5 without /data is refused", rd.stderr)
with h5py.File(path("wrong_shape.caffemodel.h5"), "w") as f:
    f["data/conv1/0"] = np.zeros((3, 3), dtype=np.float32)
    f["data/conv1/1"] = np.zeros((20,), dtype=np.float32)
rs = cli("test", "--model=" + path("lenet.prototxt"), "--weights=" + path("wrong_shape.caffemodel.h5"), "--iterations=1")
check(rs.returncode == 1 and "conv1" in rs.stderr and "shape" in rs.stderr, "a wrong shape is named", rs.stderr)
with open(path("truncated.solverstate.h5"), "wb") as f:
    f.write(open(path("straight_iter_5.solverstate.h5"), "rb").read()[:300])
rt = cli("train", "--solver=" + s_h5, "--snapshot=" + path("truncated.solverstate.h5"), "--iterations=1")
check(rt.returncode == 1 and "truncated.solverstate.h5" in rt.stderr, "a truncated state is refused", rt.stderr)

shutil.rmtree(T, ignore_errors=True)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
