"""Python layers (type: "Python", pycaffe's Layer API), from the cortado tool (an embedded
interpreter) and from the cortado module (the running one):

- LeNet trains on Fashion-MNIST with a Python data layer and a Python softmax loss. The reference
  is the same net with cortado's own layers (an IDX Data layer reading the same files in the same
  order, SoftmaxWithLoss): the losses of every iteration and the final weights must agree, so a
  wrong batch, a wrong loss or a wrong gradient from the Python side fails. The loss falls too.
- self.blobs.add_blob (a learnable parameter): its gradient against numpy, and the solver
  updating it.
- An exception in a Python layer is a cortado error naming the layer, with the traceback;
  from the tool the exit status is 1.
- pycaffe's spelling (`import caffe`, caffe.Layer) runs unchanged in the tool.
- A library without a Python runtime (the test kit) refuses the layer with a clear message.

Env: CT_SOURCE_DIR (the repository), CORTADO (the tool), CT_BUILD_DIR / CORTADO_LIB (libcortado.so),
CT_TESTKIT (the test kit). Prints "N passed, N failed"; exits non-zero on a failure.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

SRC = os.environ.get("CT_SOURCE_DIR", "..")
sys.path.insert(0, os.path.join(SRC, "python"))
import cortado  # noqa: E402

CORTADO = os.environ.get("CORTADO", os.path.join(SRC, "build", "cortado"))
FMNIST = "/usr/share/datasets/fashion-mnist"
ITERS = 25

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


T = tempfile.mkdtemp(prefix="cortado_pylayer.")
sys.path.insert(0, T)  # the layer modules, for the module half

# ---------------------------------------------------------------- the layers
with open(os.path.join(T, "fmnist_layers.py"), "w") as f:
    f.write('''
import gzip
import numpy as np
import cortado


def idx(path):
    with gzip.open(path, "rb") as g:
        raw = g.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionData(cortado.Layer):
    """Images and labels in file order, scaled by 1/256 as the IDX Data layer does."""

    def setup(self, bottom, top):
        images, labels, batch = self.param_str.split()
        self.images = idx(images)
        self.labels = idx(labels)
        self.batch = int(batch)
        self.pos = 0
        assert self.phase == cortado.TRAIN

    def reshape(self, bottom, top):
        top[0].reshape(self.batch, 1, 28, 28)
        top[1].reshape(self.batch)

    def forward(self, bottom, top):
        n = len(self.images)
        at = (self.pos + np.arange(self.batch)) % n
        top[0].data[...] = self.images[at][:, None].astype(np.float32) * np.float32(0.00390625)
        top[1].data[...] = self.labels[at]
        self.pos = (self.pos + self.batch) % n

    def backward(self, top, propagate_down, bottom):
        pass


class SoftmaxLoss(cortado.Layer):
    """Mean cross-entropy of softmax(bottom[0]) at the labels bottom[1]."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise ValueError("SoftmaxLoss takes scores and labels")

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        z = bottom[0].data.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        self.p = p
        self.y = bottom[1].data.astype(np.int64)
        top[0].data[0] = -np.mean(np.log(p[np.arange(len(p)), self.y]))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            g = self.p.copy()
            g[np.arange(len(g)), self.y] -= 1
            bottom[0].diff[...] = g / len(g) * top[0].diff[0]


class Scale(cortado.Layer):
    """y = w * x with one learnable w (self.blobs)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = float(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


class Broken(cortado.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        return self.helper(bottom)

    def helper(self, bottom):
        return 1 / 0

    def backward(self, top, propagate_down, bottom):
        pass
''')

# pycaffe's spelling, as Caffe's own examples write a Python loss
with open(os.path.join(T, "pycaffe_loss.py"), "w") as f:
    f.write('''
import numpy as np
import caffe


class SoftmaxLoss(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        z = bottom[0].data.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        self.p, self.y = p, bottom[1].data.astype(np.int64)
        top[0].data[0] = -np.mean(np.log(p[np.arange(len(p)), self.y]))

    def backward(self, top, propagate_down, bottom):
        g = self.p.copy()
        g[np.arange(len(g)), self.y] -= 1
        bottom[0].diff[...] = g / len(g) * top[0].diff[0]
''')

# ---------------------------------------------------------------- the nets
with open(os.path.join(SRC, "examples", "fashion_mnist", "lenet_train_test_idx.prototxt")) as f:
    REFERENCE = f.read()
TRAIN_DATA = re.search(r'layer \{\s*name: "fashion".*?include \{ phase: TRAIN \}.*?\n\}\n', REFERENCE, re.S).group(0)
PY_DATA = '''layer {
  name: "fashion"
  type: "Python"
  top: "data"
  top: "label"
  include { phase: TRAIN }
  python_param { module: "fmnist_layers" layer: "FashionData"
                 param_str: "%s/train-images-idx3-ubyte.gz %s/train-labels-idx1-ubyte.gz 64" }
}
''' % (FMNIST, FMNIST)
LOSS = re.search(r'layer \{\s*name: "loss".*?\n\}\n', REFERENCE, re.S).group(0)


def py_loss(module):
    return ('layer { name: "loss" type: "Python" bottom: "ip2" bottom: "label" top: "loss" loss_weight: 1\n'
            '  python_param { module: "%s" layer: "SoftmaxLoss" } }\n' % module)


def write(name, text):
    path = os.path.join(T, name)
    with open(path, "w") as f:
        f.write(text)
    return path


write("ref.prototxt", REFERENCE)
write("py.prototxt", REFERENCE.replace(TRAIN_DATA, PY_DATA).replace(LOSS, py_loss("fmnist_layers")))
write("pycaffe.prototxt", REFERENCE.replace(TRAIN_DATA, PY_DATA).replace(LOSS, py_loss("pycaffe_loss")))
check(REFERENCE.count("SoftmaxWithLoss") == 1 and "Python" not in REFERENCE, "the reference net is cortado's own")


def solver(name, net):
    return write(name, '''net: "%s"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 1
max_iter: %d
random_seed: 7
snapshot_after_train: false
solver_mode: CPU
''' % (net, ITERS))


S_REF = solver("ref_solver.prototxt", "ref.prototxt")
S_PY = solver("py_solver.prototxt", "py.prototxt")
S_PYCAFFE = solver("pycaffe_solver.prototxt", "pycaffe.prototxt")


def cli(*args):
    env = dict(os.environ, CT_BLAS_CORE="keep", PYTHONPATH=T)
    return subprocess.run([CORTADO] + list(args), capture_output=True, text=True, timeout=600, env=env, cwd=T)


def losses(stderr):
    """The loss of iterations 0 .. ITERS-1 (display: 1, average_loss: 1: each iteration's own)."""
    by_iter = {}
    for it, v in re.findall(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-0-9.eE+naif]+)", stderr):
        by_iter.setdefault(int(it), float(v))
    return [by_iter[i] for i in range(ITERS) if i in by_iter]


# ---------------------------------------------------------------- from the tool
ref = cli("train", "--solver=" + S_REF, "--partitions=1")
check(ref.returncode == 0, "the reference trains", ref.stderr)
py = cli("train", "--solver=" + S_PY, "--partitions=1")
check(py.returncode == 0, "LeNet with a Python data layer and a Python loss trains from the tool", py.stderr)
lr, lp = losses(ref.stderr), losses(py.stderr)
check(len(lr) == ITERS and len(lp) == ITERS, "a loss per iteration", (len(lr), len(lp), py.stderr[-1500:]))
if len(lr) == len(lp) == ITERS:
    check(np.allclose(lp, lr, rtol=2e-4, atol=2e-5), "the tool: Python layers' losses equal cortado's own",
          list(zip(lr, lp)))
    check(lp[-1] < 0.75 * lp[0], "the loss falls", (lp[0], lp[-1]))
pc = cli("train", "--solver=" + S_PYCAFFE, "--partitions=1")
check(pc.returncode == 0, "a pycaffe-style layer (import caffe; caffe.Layer) runs in the tool", pc.stderr)
if pc.returncode == 0 and len(lr) == ITERS:
    check(np.allclose(losses(pc.stderr), lr, rtol=2e-4, atol=2e-5), "... with the same losses")

# an exception: exit status 1, the layer named, the traceback
write("broken.prototxt", REFERENCE.replace(TRAIN_DATA, PY_DATA).replace(LOSS, LOSS + '''layer {
  name: "oops" type: "Python" bottom: "ip2" top: "o"
  python_param { module: "fmnist_layers" layer: "Broken" } }
'''))
br = cli("time", "--model=broken.prototxt", "--phase=TRAIN", "--iterations=1")
check(br.returncode == 1, "an exception ends the tool with status 1", br.returncode)
check('layer "oops" (Python): forward raised ZeroDivisionError: division by zero' in br.stderr and
      "fmnist_layers.py" in br.stderr and "in helper" in br.stderr and "return 1 / 0" in br.stderr,
      "the tool's message names the layer and carries the traceback", br.stderr)
write("nomodule.prototxt", REFERENCE.replace(LOSS, LOSS.replace('type: "SoftmaxWithLoss"', 'type: "Python"')
                                             .replace("}\n", 'python_param { module: "no_such_module" layer: "X" }\n}\n',
                                                      1)))
nm = cli("time", "--model=nomodule.prototxt", "--phase=TRAIN", "--iterations=1")
check(nm.returncode == 1 and 'layer "loss" (Python): importing module "no_such_module"' in nm.stderr and
      "ModuleNotFoundError" in nm.stderr, "a missing module is named", nm.stderr)

# ---------------------------------------------------------------- from the module
os.chdir(T)
s_ref = cortado.Solver(S_REF, quiet=True)
s_py = cortado.Solver(S_PY, quiet=True)
s_ref.step(ITERS)
s_py.step(ITERS)
for layer in ("conv1", "conv2", "ip1", "ip2"):
    for i in range(2):
        a = s_ref.net.params[layer][i].data
        b = s_py.net.params[layer][i].data
        check(np.allclose(a, b, rtol=1e-3, atol=2e-5), "the module: %s[%d] after %d iterations equals cortado's own"
              % (layer, i, ITERS), np.abs(a - b).max())
check(s_py.net.layer_types[0] == "Python" and s_py.net.layer_types[-1] == "Python", "the Python layers are there",
      s_py.net.layer_types)
s_ref.net.forward()
s_py.net.forward()
check(abs(float(s_py.net.blobs["loss"].data[0]) - float(s_ref.net.blobs["loss"].data)) < 1e-3,
      "the module: the next batch's loss agrees")
del s_ref, s_py

# a learnable parameter of a Python layer
write("scale.prototxt", '''force_backward: true
layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 3 dim: 4 } } }
layer { name: "scale" type: "Python" bottom: "x" top: "y" param { lr_mult: 1 }
  python_param { module: "fmnist_layers" layer: "Scale" param_str: "2.5" } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
''')
net = cortado.Net("scale.prototxt", cortado.TRAIN)
rng = np.random.RandomState(3)
x = rng.randn(3, 4).astype(np.float32)
t = rng.randn(3, 4).astype(np.float32)
check(list(net.params) == ["scale"] and net.params["scale"][0].shape == (1,), "add_blob makes a parameter",
      list(net.params))
check(net.params["scale"][0].data[0] == np.float32(2.5), "the parameter holds what setup wrote")
net.clear_param_diffs()
out = net.forward(x=x, t=t)
net.backward()
w = 2.5
ref_loss = np.sum((w * x - t) ** 2) / 3 / 2
ref_dw = np.sum((w * x - t) / 3 * x)
check(abs(float(out["loss"]) - ref_loss) < 1e-4 * max(1, ref_loss), "forward with the parameter", (out["loss"], ref_loss))
check(abs(float(net.params["scale"][0].diff[0]) - ref_dw) < 1e-4 * max(1, abs(ref_dw)), "its gradient",
      (net.params["scale"][0].diff[0], ref_dw))
check(np.allclose(net.blobs["x"].diff, w * (w * x - t) / 3, atol=1e-5), "the bottom's gradient")

# an exception from the module
try:
    bad = cortado.Net("broken.prototxt", cortado.TRAIN)
    bad.forward()
    check(False, "the module raises on a Python exception")
except cortado.CortadoError as e:
    msg = str(e)
    check('layer "oops" (Python): forward raised ZeroDivisionError' in msg and "in helper" in msg,
          "the module's CortadoError names the layer and carries the traceback", msg)

# ---------------------------------------------------------------- without a Python runtime
kit = os.environ.get("CT_TESTKIT")
if kit and os.path.exists(kit):
    lib = ctypes.CDLL(kit)

    class Err(ctypes.Structure):
        _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]

    lib.ct_net_create_from_text.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Err)]
    h, err = ctypes.c_void_p(), Err()
    text = open("scale.prototxt").read().encode()
    st = lib.ct_net_create_from_text(text, b"scale.prototxt", T.encode(), 0, ctypes.byref(h), ctypes.byref(err))
    check(st != 0 and b"Python layers need cortado's Python support" in err.msg,
          "a library without Python refuses the layer, saying why", err.msg)
else:
    check(False, "CT_TESTKIT points at the test kit", kit)

os.chdir("/")
shutil.rmtree(T, ignore_errors=True)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
