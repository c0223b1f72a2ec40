"""Old Caffe formats read as Caffe reads them (issue 21), against an independent writer: the V1 and
V0 weight files here are written by Python's protobuf runtime (Debian's python3-protobuf) from
message definitions made in this file, not by cortado.

- A V1 LeNet prototxt (`layers { type: CONVOLUTION blobs_lr: 1 }`, net-level input_dim) and a V1
  .caffemodel load and give the same outputs as their upgraded forms (`cortado upgrade`), and
  those outputs equal a numpy forward pass of LeNet with the weights the writer wrote.
- A V0 net (`layers { layer { type: "conv" } }`, with a "padding" layer folded into the
  convolution) and a V0 .caffemodel give the same outputs too.
- `cortado upgrade` output parses, is already upgraded (upgrading it again changes nothing),
  holds what Caffe's upgrade makes (types, param { lr_mult decay_mult }, an Input layer,
  transform_param from the old data_param fields, type: "Nesterov" from solver_type), and the
  upgraded .caffemodel read back by the Python runtime holds the writer's values.

Env: CT_SOURCE_DIR, CORTADO (the tool), CT_BUILD_DIR / CORTADO_LIB (libcortado.so).
Prints "N passed, N failed"; exits non-zero on a failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

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


# ---------------------------------------------------------------- an independent writer
# Caffe's wire facts for the messages a V0 / V1 / current weight file uses, declared here.
F = descriptor_pb2.FieldDescriptorProto
fd = descriptor_pb2.FileDescriptorProto(name="oldcaffe.proto", package="oldcaffe", syntax="proto2")


def message(name, fields):
    m = fd.message_type.add(name=name)
    for fname, number, ftype, label, tname, packed in fields:
        f = m.field.add(name=fname, number=number, type=ftype, label=label)
        if tname:
            f.type_name = ".oldcaffe." + tname
        if packed:
            f.options.packed = True


OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
message("BlobShape", [("dim", 1, F.TYPE_INT64, REP, None, True)])
message("BlobProto", [("num", 1, F.TYPE_INT32, OPT, None, False), ("channels", 2, F.TYPE_INT32, OPT, None, False),
                      ("height", 3, F.TYPE_INT32, OPT, None, False), ("width", 4, F.TYPE_INT32, OPT, None, False),
                      ("data", 5, F.TYPE_FLOAT, REP, None, True), ("shape", 7, F.TYPE_MESSAGE, OPT, "BlobShape", False)])
message("V0Layer", [("name", 1, F.TYPE_STRING, OPT, None, False), ("type", 2, F.TYPE_STRING, OPT, None, False),
                    ("blobs", 50, F.TYPE_MESSAGE, REP, "BlobProto", False)])
message("V1Layer", [("layer", 1, F.TYPE_MESSAGE, OPT, "V0Layer", False), ("bottom", 2, F.TYPE_STRING, REP, None, False),
                    ("top", 3, F.TYPE_STRING, REP, None, False), ("name", 4, F.TYPE_STRING, OPT, None, False),
                    ("type", 5, F.TYPE_INT32, OPT, None, False), ("blobs", 6, F.TYPE_MESSAGE, REP, "BlobProto", False)])
message("Layer", [("name", 1, F.TYPE_STRING, OPT, None, False), ("type", 2, F.TYPE_STRING, OPT, None, False),
                  ("blobs", 7, F.TYPE_MESSAGE, REP, "BlobProto", False)])
message("Net", [("name", 1, F.TYPE_STRING, OPT, None, False), ("layers", 2, F.TYPE_MESSAGE, REP, "V1Layer", False),
                ("layer", 100, F.TYPE_MESSAGE, REP, "Layer", False)])
pool = descriptor_pool.DescriptorPool()
pool.Add(fd)
factory = message_factory.MessageFactory(pool)
Net = factory.GetPrototype(pool.FindMessageTypeByName("oldcaffe.Net"))

V1_CONVOLUTION, V1_INNER_PRODUCT = 4, 14
rng = np.random.RandomState(21)
W = {
    "conv1": [rng.randn(4, 1, 5, 5) * 0.3, rng.randn(4) * 0.1],
    "conv2": [rng.randn(6, 4, 3, 3) * 0.2, rng.randn(6) * 0.1],
    "ip1": [rng.randn(16, 6 * 3 * 3) * 0.1, rng.randn(16) * 0.1],
    "ip2": [rng.randn(10, 16) * 0.2, rng.randn(10) * 0.1],
}
W = {k: [a.astype(np.float32) for a in v] for k, v in W.items()}


def legacy_blob(b, arr):
    """A 2014-style blob: the 4-D num/channels/height/width, no BlobShape."""
    dims = list(arr.shape)
    dims = [1] * (4 - len(dims)) + dims if len(dims) < 4 else dims
    if arr.ndim == 2:  # Caffe's V1 inner product weights: 1 x 1 x out x in
        dims = [1, 1] + list(arr.shape)
    if arr.ndim == 1:  # a bias: 1 x 1 x 1 x n
        dims = [1, 1, 1, arr.shape[0]]
    b.num, b.channels, b.height, b.width = dims
    b.data.extend(arr.ravel().tolist())


T = tempfile.mkdtemp(prefix="cortado_upgrade.")


def path(name):
    return os.path.join(T, name)


v1 = Net(name="LeNet")
for name, t in (("conv1", V1_CONVOLUTION), ("conv2", V1_CONVOLUTION), ("ip1", V1_INNER_PRODUCT),
                ("ip2", V1_INNER_PRODUCT)):
    layer = v1.layers.add(name=name, type=t)
    for arr in W[name]:
        legacy_blob(layer.blobs.add(), arr)
with open(path("v1.caffemodel"), "wb") as f:
    f.write(v1.SerializeToString())

v0 = Net(name="LeNet")
for name, t in (("conv1", "conv"), ("conv2", "conv"), ("ip1", "innerproduct"), ("ip2", "innerproduct")):
    layer = v0.layers.add()
    layer.layer.name, layer.layer.type = name, t
    for arr in W[name]:
        legacy_blob(layer.layer.blobs.add(), arr)
with open(path("v0.caffemodel"), "wb") as f:
    f.write(v0.SerializeToString())

# ---------------------------------------------------------------- the nets
V1_NET = '''name: "LeNet"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 16 input_dim: 16
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2
  weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 5 stride: 1 } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "conv2" type: CONVOLUTION bottom: "pool1" top: "conv2" blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layers { name: "pool2" type: POOLING bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool2" top: "ip1" inner_product_param { num_output: 16 } }
layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
layers { name: "ip2" type: INNER_PRODUCT bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layers { name: "prob" type: SOFTMAX bottom: "ip2" top: "prob" }
'''
# the same net before 2014: "padding" as a layer of its own, folded into conv2 by the upgrade
V0_NET = '''name: "LeNet"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 16 input_dim: 16
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 5 stride: 1 blobs_lr: 1 blobs_lr: 2 }
  bottom: "data" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 2 stride: 2 } bottom: "conv1" top: "pool1" }
layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "pool1" top: "pad2" }
layers { layer { name: "conv2" type: "conv" num_output: 6 kernelsize: 3 } bottom: "pad2" top: "conv2" }
layers { layer { name: "pool2" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "conv2" top: "pool2" }
layers { layer { name: "ip1" type: "innerproduct" num_output: 16 } bottom: "pool2" top: "ip1" }
layers { layer { name: "relu1" type: "relu" } bottom: "ip1" top: "ip1" }
layers { layer { name: "ip2" type: "innerproduct" num_output: 10 } bottom: "ip1" top: "ip2" }
layers { layer { name: "prob" type: "softmax" } bottom: "ip2" top: "prob" }
'''
for name, text in (("v1.prototxt", V1_NET), ("v0.prototxt", V0_NET)):
    with open(path(name), "w") as f:
        f.write(text)


def upgrade(src, dst):
    p = subprocess.run([CORTADO, "upgrade", path(src), "-o", path(dst)], capture_output=True, text=True, timeout=120)
    check(p.returncode == 0 and os.path.exists(path(dst)), "cortado upgrade %s" % src, p.stderr)
    return p


for old in ("v1", "v0"):
    upgrade(old + ".prototxt", old + "_up.prototxt")
    upgrade(old + ".caffemodel", old + "_up.caffemodel")

x = rng.rand(2, 1, 16, 16).astype(np.float32)


def run(net_file, weights):
    net = cortado.Net(path(net_file), weights=path(weights), phase=cortado.TEST)
    return net.forward(data=x)["prob"].copy()


# ---------------------------------------------------------------- numpy's LeNet
def conv(a, w, b, pad=0):
    n, c, h, wd = a.shape
    o, _, kh, kw = w.shape
    a = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = a.shape[2] - kh + 1, a.shape[3] - kw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("ncxy,oc->noxy", a[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return out + b[None, :, None, None]


def pool(a, how):
    n, c, h, w = a.shape
    oh, ow = -(-(h - 2) // 2) + 1, -(-(w - 2) // 2) + 1  # Caffe's ceil
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = a[:, :, 2 * i:min(2 * i + 2, h), 2 * j:min(2 * j + 2, w)]
            out[:, :, i, j] = win.max(axis=(2, 3)) if how == "max" else win.sum(axis=(2, 3)) / 4.0
    return out


def lenet(x):
    a = pool(conv(x.astype(np.float64), W["conv1"][0], W["conv1"][1]), "max")
    a = pool(conv(a, W["conv2"][0], W["conv2"][1], pad=1), "ave")
    a = np.maximum(a.reshape(len(a), -1) @ W["ip1"][0].T + W["ip1"][1], 0)
    z = a @ W["ip2"][0].T + W["ip2"][1]
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


want = lenet(x)
got = {}
for old in ("v1", "v0"):
    for net_file, weights in ((old + ".prototxt", old + ".caffemodel"), (old + "_up.prototxt", old + "_up.caffemodel"),
                              (old + ".prototxt", old + "_up.caffemodel"), (old + "_up.prototxt", old + ".caffemodel")):
        try:
            got[(net_file, weights)] = run(net_file, weights)
        except cortado.CortadoError as e:
            check(False, "%s with %s loads" % (net_file, weights), e)
for key, out in got.items():
    check(np.allclose(out, want, rtol=1e-4, atol=1e-6), "%s with %s gives numpy's LeNet" % key, np.abs(out - want).max())
    check(np.array_equal(out, got.get(("v1.prototxt", "v1.caffemodel"), out)),
          "%s with %s equals the V1 net with the V1 weights exactly" % key)
check(len(got) == 8, "all eight combinations ran", list(got))

# ---------------------------------------------------------------- what the upgrade wrote
up = open(path("v1_up.prototxt")).read()
check("layers {" not in up and "input_dim" not in up and 'type: "Convolution"' in up and 'type: "Input"' in up and
      'type: "InnerProduct"' in up and 'type: "Softmax"' in up, "the upgraded text is the current form", up)
check(len(re.findall(r"^\s*param \{", up, re.M)) == 4 and "lr_mult: 2" in up and "decay_mult: 0" in up,
      "blobs_lr and weight_decay became param { lr_mult decay_mult }", up)
v0up = open(path("v0_up.prototxt")).read()
check('"pad2"' not in v0up and 'bottom: "pool1"' in v0up and "pad: 1" in v0up,
      "the V0 padding layer folded into conv2", v0up)
check(v0up.count('type: "Convolution"') == 2 and "kernel_size: 3" in v0up and "pool: AVE" in v0up,
      "the V0 fields moved into their messages", v0up)
again = upgrade("v1_up.prototxt", "v1_up2.prototxt")
check("already in the latest format" in again.stderr, "an upgraded file needs no upgrade", again.stderr)
check(open(path("v1_up2.prototxt")).read() == up, "upgrading again changes nothing")

# the upgraded weights, read by the Python runtime
cur = Net()
cur.ParseFromString(open(path("v1_up.caffemodel"), "rb").read())
check(len(cur.layers) == 0 and [l.name for l in cur.layer] == ["conv1", "conv2", "ip1", "ip2"],
      "the upgraded .caffemodel holds current layers", [l.name for l in cur.layer])
check([l.type for l in cur.layer] == ["Convolution", "Convolution", "InnerProduct", "InnerProduct"],
      "with their type strings", [l.type for l in cur.layer])
for l in cur.layer:
    for k, b in enumerate(l.blobs):
        check(np.array_equal(np.array(b.data, dtype=np.float32), W[l.name][k].ravel()),
              "%s blob %d: the writer's values" % (l.name, k))

# the old data-layer transform fields, and the solver's enum
with open(path("v1_data.prototxt"), "w") as f:
    f.write('''layers { name: "d" type: DATA top: "data" top: "label"
  data_param { source: "db" batch_size: 4 scale: 0.5 mean_file: "mean.binaryproto" crop_size: 7 mirror: true } }
layers { name: "i" type: IMAGE_DATA top: "idata" top: "ilabel" image_data_param { source: "list.txt" scale: 2 } }
''')
upgrade("v1_data.prototxt", "v1_data_up.prototxt")
d = open(path("v1_data_up.prototxt")).read()
t0 = d.index("transform_param")
check(d.count("transform_param") == 2 and "scale: 0.5" in d[t0:] and "crop_size: 7" in d and "mirror: true" in d and
      'mean_file: "mean.binaryproto"' in d, "data_param's transform fields moved to transform_param", d)
check(d.index("scale: 0.5") > d.index("transform_param"), "... and left data_param", d)
with open(path("old_solver.prototxt"), "w") as f:
    f.write('net: "v1.prototxt"\nbase_lr: 0.01\nsolver_type: NESTEROV\nmomentum: 0.9\n')
upgrade("old_solver.prototxt", "new_solver.prototxt")
s = open(path("new_solver.prototxt")).read()
check('type: "Nesterov"' in s and "solver_type" not in s, "solver_type: NESTEROV became type: \"Nesterov\"", s)

# a file that is none of the three
with open(path("junk.bin"), "wb") as f:
    f.write(b"\x00\x01\x02not a proto")
p = subprocess.run([CORTADO, "upgrade", path("junk.bin"), "-o", path("junk.out")], capture_output=True, text=True)
check(p.returncode == 1 and not os.path.exists(path("junk.out")) and "none of" in p.stderr,
      "an unrecognised file is refused and nothing is written", p.stderr)

shutil.rmtree(T, ignore_errors=True)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
