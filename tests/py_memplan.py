"""Memory planning from Python: a cortado.Net keeps every blob readable after forward (as
pycaffe's), and one built with memplan=True gives the same outputs bit for bit while still
keeping the blobs named in `keep`.

Env: as tests/pyc_util.py. Prints "N passed, N failed"; exits non-zero on a failure."""
import numpy as np

from pyc_util import Checks, cortado

NET = """name: 'mp'
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'c1'
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } } }
layer { name: 'bn1' type: 'BatchNorm' bottom: 'c1' top: 'b1' }
layer { name: 'relu1' type: 'ReLU' bottom: 'b1' top: 'r1' }
layer { name: 'conv2' type: 'Convolution' bottom: 'r1' top: 'c2'
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } } }
layer { name: 'relu2' type: 'ReLU' bottom: 'c2' top: 'r2' }
layer { name: 'ip' type: 'InnerProduct' bottom: 'r2' top: 'ip'
  inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.3 } } }
"""


def main():
    c = Checks("ct_py_memplan_")
    path = c.path("mp.prototxt", NET)
    x = np.random.RandomState(7).uniform(-1, 1, size=(2, 3, 8, 8)).astype(np.float32)
    nets = {
        "default": cortado.Net(path, cortado.TEST),
        "keep": cortado.Net(path, cortado.TEST, memplan=True, keep=["c1"]),
        "planned": cortado.Net(path, cortado.TEST, memplan=True),
    }
    out = {}
    for name, net in nets.items():
        net.blobs["data"].data[...] = x
        net.forward()
        out[name] = {b: net.blobs[b].data.copy() for b in ("c1", "b1", "r1", "c2", "r2", "ip")}
    d = out["default"]
    # every blob of a default net holds its own values after the pass
    c.check(np.array_equal(d["r1"], np.maximum(d["b1"], 0)), "default net: b1 and r1 both readable")
    c.check(np.array_equal(d["r2"], np.maximum(d["c2"], 0)), "default net: c2 and r2 both readable")
    for name in ("keep", "planned"):
        c.check(np.array_equal(out[name]["ip"], d["ip"]), "%s net: the output equals the default net's" % name)
    c.check(np.array_equal(out["keep"]["c1"], d["c1"]), "memplan=True keeps the blob named in keep")
    # c1 is dead once BatchNorm has read it (neither its backward nor conv1's reads it): the
    # planner lends its memory to a later blob, which the default net must not do
    c.check(not np.array_equal(out["planned"]["c1"], d["c1"]), "memplan=True without keep reuses c1's memory")
    c.expect_raise(cortado.CortadoError, lambda: cortado.Net(path, cortado.TEST, memplan=True, keep=["nope"]),
                   "keeping an unknown blob", "nope")
    c.finish()


main()
