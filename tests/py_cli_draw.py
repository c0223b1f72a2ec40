"""`cortado draw`: the layer graph of a net through Graphviz. The DOT it writes is checked for
every layer (name, type) and every blob with its shape in the chosen phase; SVG output is parsed
as XML and PNG output decoded; without Graphviz's `dot` on PATH the DOT is written and the user
told; a net that cannot be built is drawn without shapes, saying so; errors name the file or flag.

Env: CORTADO = the cortado binary.
Prints "N passed, N failed"; exits non-zero on a failure.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

CORTADO = os.environ.get("CORTADO", "../build/cortado")
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)
        if detail:
            print("  " + str(detail)[-3000:].replace("\n", "\n  "), file=sys.stderr)


def run(*args, env=None):
    p = subprocess.run([CORTADO] + list(args), capture_output=True, text=True, timeout=120, env=env)
    return p.returncode, p.stdout, p.stderr


def dot_graph(path):
    """(node labels by id, edges as (src, dst, label)) from the DOT cortado writes."""
    text = open(path, encoding="utf-8").read()
    nodes = dict(re.findall(r'^\s*(\w+) \[shape=[^\]]*label="((?:[^"\\]|\\.)*)"\];$', text, re.M))
    edges = re.findall(r'^\s*(\w+) -> (\w+) \[label="((?:[^"\\]|\\.)*)"\];$', text, re.M)
    return text, nodes, edges


T = tempfile.mkdtemp(prefix="cortado_draw.")
# Caffe's LeNet (as in examples/fashion_mnist), reading Debian's Fashion-MNIST IDX files, so the
# test does not depend on databases made elsewhere.
FM = "/usr/share/datasets/fashion-mnist/"
LENET = os.path.join(T, "lenet_train_test.prototxt")
with open(LENET, "w") as f:
    f.write("""name: "LeNet"
layer { name: "fashion" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  idx_data_param { images: "%(d)strain-images-idx3-ubyte.gz" labels: "%(d)strain-labels-idx1-ubyte.gz"
                   batch_size: 64 } }
layer { name: "fashion" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 }
  idx_data_param { images: "%(d)st10k-images-idx3-ubyte.gz" labels: "%(d)st10k-labels-idx1-ubyte.gz"
                   batch_size: 100 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 stride: 1 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 stride: 1 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
""" % {"d": FM})
have_data = os.path.exists(FM + "train-images-idx3-ubyte.gz")
have_dot = shutil.which("dot") is not None

# ---------------------------------------------------------------- DOT, both phases
for phase, batch in (("TRAIN", 64), ("TEST", 100)):
    out = os.path.join(T, "lenet_%s.dot" % phase)
    rc, _, err = run("draw", LENET, "-o", out, "--phase=" + phase)
    check(rc == 0 and os.path.exists(out), "draw %s to .dot" % phase, err)
    text, nodes, edges = dot_graph(out)
    check(text.startswith("digraph") and text.rstrip().endswith("}"), "a DOT digraph")
    layers = {lab.split("\\n")[0]: lab for lab in nodes.values() if "\\n(" in lab}
    want = ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]
    want += ["accuracy"] if phase == "TEST" else []
    check(sorted(layers) == sorted(want + ["fashion"]), "%s: every layer of the phase drawn once" % phase,
          sorted(layers))
    check("(Convolution)" in layers["conv1"] and "20 outputs, 5x5 kernel, stride 1" in layers["conv1"],
          "conv1's box: type and settings", layers.get("conv1"))
    check("(Pooling)" in layers["pool1"] and "MAX 2x2, stride 2" in layers["pool1"], "pool1's box")
    labels = [lab for _, _, lab in edges]
    if have_data:
        for blob, shape in (("data", "%d×1×28×28"), ("conv1", "%d×20×24×24"), ("pool2", "%d×50×4×4"),
                            ("ip2", "%d×10"), ("label", "%d")):
            check("%s\\n%s" % (blob, shape % batch) in labels, "%s: blob %s with its shape" % (phase, blob),
                  labels)
    check(len(edges) == (13 if phase == "TEST" else 10), "%s: edge count" % phase, edges)

# ---------------------------------------------------------------- --lr-mult (pycaffe's display_lrm)
MULT = os.path.join(T, "mult.prototxt")
with open(MULT, "w") as f:
    f.write("""name: "mult"
input: "x" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "x" top: "c"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "frozen" type: "InnerProduct" bottom: "c" top: "f" param { lr_mult: 0 }
  inner_product_param { num_output: 5 bias_term: false } }
layer { name: "r" type: "ReLU" bottom: "f" top: "f" }
""")
want_mult = {"c": "lr_mult 1, 2; decay_mult 1, 0", "frozen": "lr_mult 0; decay_mult 1", "r": None}
for flag in ([], ["--lr-mult"]):
    out = os.path.join(T, "mult%d.dot" % len(flag))
    rc, _, err = run("draw", MULT, "-o", out, *flag)
    check(rc == 0, "draw %s" % flag, err)
    _, nodes, _ = dot_graph(out)
    layers = {lab.split("\\n")[0]: lab for lab in nodes.values() if "\\n(" in lab}
    for name, text in want_mult.items():
        shown = "lr_mult" in layers.get(name, "")
        expect = bool(flag) and text is not None
        check(shown == expect and (not expect or layers[name].endswith("\\n" + text)),
              "%s: multipliers %s" % (name, "shown" if expect else "absent"), layers.get(name))

# ---------------------------------------------------------------- images through Graphviz
if have_dot:
    svg = os.path.join(T, "lenet.svg")
    rc, _, err = run("draw", LENET, "-o", svg)
    check(rc == 0, "draw to .svg", err)
    root = ET.parse(svg).getroot()
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    check("conv1" in texts and "Convolution" in texts, "the SVG holds the layer names", texts[:300])
    png = os.path.join(T, "lenet.png")
    rc, _, err = run("draw", LENET, "-o", png)
    data = open(png, "rb").read() if os.path.exists(png) else b""
    check(rc == 0 and data[:8] == b"\x89PNG\r\n\x1a\n", "draw to .png", err)
    if data:
        w, h = struct.unpack(">II", data[16:24])
        check(w > 100 and h > 300, "the PNG has a plausible size", (w, h))
        idat = b"".join(data[m.start() + 4:m.start() + 4 + struct.unpack(">I", data[m.start() - 4:m.start()])[0]]
                        for m in re.finditer(b"IDAT", data))
        check(len(zlib.decompress(idat)) > 0, "the PNG's pixels inflate")
else:
    print("note: Graphviz's dot is not installed; image output not checked", file=sys.stderr)

# ---------------------------------------------------------------- without dot on PATH
nodot = os.path.join(T, "nodot")
os.mkdir(nodot)
env = dict(os.environ, PATH=nodot)
out = os.path.join(T, "fallback.svg")
rc, _, err = run("draw", LENET, "-o", out, env=env)
check(rc == 0 and os.path.exists(os.path.join(T, "fallback.dot")) and not os.path.exists(out),
      "without dot: DOT written beside the output", err)
check("not installed" in err and "fallback.dot" in err and "apt-get install graphviz" in err,
      "without dot: the user is told what happened and what to do", err)

# ---------------------------------------------------------------- a net that cannot be built
nodata = os.path.join(T, "nodata.prototxt")
with open(nodata, "w") as f:
    f.write("""name: "nodata"
layer { name: "d" type: "Data" top: "data" top: "label"
  idx_data_param { images: "/nonexistent/imgs.gz" labels: "/nonexistent/labels.gz" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
""")
out = os.path.join(T, "nodata.dot")
rc, _, err = run("draw", nodata, "-o", out)
check(rc == 0 and os.path.exists(out), "an unbuildable net is still drawn", err)
check("without shapes" in err and "nodata.prototxt" in err and "/nonexistent/imgs.gz" in err,
      "and the user is told why the shapes are missing", err)
text, nodes, edges = dot_graph(out)
check(len(edges) == 4 and "×" not in text, "no shapes, every edge", edges)

# ---------------------------------------------------------------- errors
rc, _, err = run("draw", os.path.join(T, "missing.prototxt"), "-o", os.path.join(T, "m.svg"))
check(rc == 1 and "missing.prototxt" in err, "a missing prototxt is named", err)
broken = os.path.join(T, "broken.prototxt")
with open(broken, "w") as f:
    f.write('name: "x"\nlayer { name: "a" type: "ReLU" bottom: "x" top: "x"\n')
rc, _, err = run("draw", broken, "-o", os.path.join(T, "b.svg"))
check(rc == 1 and re.search(r"broken\.prototxt:\d+:\d+", err), "a malformed prototxt is named file:line:col", err)
rc, _, err = run("draw", LENET, "-o", os.path.join(T, "x.jpg"))
check(rc == 2 and "x.jpg" in err and ".svg, .png, .pdf or .dot" in err, "an unknown output format", err)
rc, _, err = run("draw", LENET)
check(rc == 2 and "--output" in err, "-o is required", err)
rc, _, err = run("draw", LENET, "-o", os.path.join(T, "x.svg"), "--phase=VAL")
check(rc == 2 and "--phase" in err, "a bad --phase", err)
rc, _, err = run("draw", LENET, "extra", "-o", os.path.join(T, "x.svg"))
check(rc == 2 and "extra" in err, "an extra argument", err)

print("%d passed, %d failed" % (passed, failed))
if not failed:
    shutil.rmtree(T)
sys.exit(1 if failed else 0)
