"""In the style of Caffe's net_surgery notebook, with `import cortado as caffe`: editing
parameters in place (a hand-set Gaussian-blur and edge filter, checked against PyTorch's
conv2d), casting a classifier's fully-connected layers into convolutions (the fully
convolutional outputs equal the classifier's at every position, checked against numpy),
saving and loading .caffemodel and HDF5 (read back with h5py), forward/backward from/to a layer
with keyword diffs against numpy, forward_all / forward_backward_all, MemoryData through
set_input_arrays, share_with, layer_dict and blob_loss_weights.
"""
import h5py
import numpy as np
import torch
import torch.nn.functional as F

from pyc_util import Checks, cortado as caffe

T = Checks("cortado_surgery.")
rng = np.random.RandomState(7)

# ---------------------------------------------------------------- editing a filter in place
CONV = T.path("conv.prototxt", """name: "convolution"
input: "data"
input_shape { dim: 1 dim: 1 dim: 20 dim: 24 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 5 stride: 1 weight_filler { type: "gaussian" std: 0.01 }
                      bias_filler { type: "constant" value: 0 } } }
""")
net = caffe.Net(CONV, caffe.TEST)
T.check(net.inputs == ["data"] and [(k, v.shape) for k, v in net.blobs.items()]
        == [("data", (1, 1, 20, 24)), ("conv", (1, 3, 16, 20))], "blobs of a net with a legacy input",
        [(k, v.shape) for k, v in net.blobs.items()])
img = rng.rand(20, 24).astype(np.float32)
net.blobs["data"].reshape(1, 1, 20, 24)
net.blobs["data"].data[...] = img
yy, xx = np.mgrid[-2:3, -2:3]
gauss = np.exp(-(xx ** 2 + yy ** 2) / 2.0)
gauss /= gauss.sum()
sobel = np.zeros((5, 5))
sobel[1:4, 1:4] = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
net.params["conv"][0].data[0, 0] = gauss
net.params["conv"][0].data[1, 0] = sobel
net.params["conv"][0].data[2, 0] = sobel.T
net.params["conv"][1].data[...] = [0.0, 0.5, -0.5]
net.forward()
ref = F.conv2d(torch.from_numpy(img)[None, None], torch.from_numpy(net.params["conv"][0].data.copy()),
               torch.from_numpy(net.params["conv"][1].data.copy())).numpy()
T.check(np.allclose(net.blobs["conv"].data, ref, atol=1e-5), "hand-set filters vs PyTorch conv2d",
        np.abs(net.blobs["conv"].data - ref).max())
# reshape the input (pycaffe: net.blobs['data'].reshape(...)), then the whole net
net.blobs["data"].reshape(2, 1, 30, 12)
net.reshape()
c = net.blobs["conv"]
T.check(c.shape == (2, 3, 26, 8) and (c.num, c.channels, c.height, c.width, c.count) == (2, 3, 26, 8, 2 * 3 * 26 * 8),
        "reshape propagates", c.shape)

# ---------------------------------------------------------------- fully-connected -> convolution
FC = """name: "%s"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %d dim: 2 dim: %d dim: %d } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "pool1" top: "pool1" }
%s
layer { name: "prob" type: "Softmax" bottom: "%s" top: "prob" }
"""
fc_layers = """layer { name: "fc6" type: "InnerProduct" bottom: "pool1" top: "fc6"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "gaussian" std: 1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.2 } } }"""
conv_layers = """layer { name: "fc6-conv" type: "Convolution" bottom: "pool1" top: "fc6-conv"
  convolution_param { num_output: 5 kernel_size: 4 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6-conv" top: "fc6-conv" }
layer { name: "fc7-conv" type: "Convolution" bottom: "fc6-conv" top: "fc7-conv"
  convolution_param { num_output: 3 kernel_size: 1 } }"""
net = caffe.Net(T.path("fc.prototxt", FC % ("fc", 1, 10, 10, fc_layers, "fc7")), caffe.TEST)
full = caffe.Net(T.path("full.prototxt", FC % ("full", 1, 16, 14, conv_layers, "fc7-conv")), caffe.TEST)
params = ["fc6", "fc7"]
fc_params = {pr: (net.params[pr][0].data, net.params[pr][1].data) for pr in params}
T.check(fc_params["fc6"][0].shape == (5, 64) and fc_params["fc7"][0].shape == (3, 5), "fc shapes")
params_full = ["fc6-conv", "fc7-conv"]
conv_params = {pr: (full.params[pr][0].data, full.params[pr][1].data) for pr in params_full}
T.check(conv_params["fc6-conv"][0].shape == (5, 4, 4, 4), "conv shapes")
full.params["conv1"][0].data[...] = net.params["conv1"][0].data
full.params["conv1"][1].data[...] = net.params["conv1"][1].data
for pr, pr_conv in zip(params, params_full):
    conv_params[pr_conv][0].flat = fc_params[pr][0].flat  # flat copy: the notebook's idiom
    conv_params[pr_conv][1][...] = fc_params[pr][1]
big = rng.randn(1, 2, 16, 14).astype(np.float32)
out_full = full.forward(data=big)["prob"].copy()
T.check(out_full.shape == (1, 3, 4, 3), "fully convolutional output map", out_full.shape)
worst = 0.0
for i in range(4):
    for j in range(3):  # the classifier's window at (2i, 2j) of the input (pool stride 2)
        p = net.forward(data=big[:, :, 2 * i:2 * i + 10, 2 * j:2 * j + 10])["prob"][0]
        worst = max(worst, np.abs(p - out_full[0, :, i, j]).max())
T.check(worst < 1e-5, "every position of the FCN equals the classifier on that window", worst)
model = T.path("full.caffemodel")
full.save(model)
again = caffe.Net(T.path("full.prototxt"), model, caffe.TEST)
T.check(all(np.array_equal(again.params[k][i].data, full.params[k][i].data) for k in full.params for i in range(2)),
        "save, then Net(prototxt, weights, phase)")

# ---------------------------------------------------------------- HDF5
h5 = T.path("full.h5")
full.save_hdf5(h5)
with h5py.File(h5, "r") as f:
    T.check(sorted(f["data"].keys()) == sorted(full.params) and np.array_equal(f["data/fc6-conv/0"][()],
            full.params["fc6-conv"][0].data), "save_hdf5 writes /data/<layer>/<i>")
with h5py.File(h5, "r+") as f:
    f["data/fc7-conv/1"][...] = [9.0, 8.0, 7.0]
again.load_hdf5(h5)
T.check(np.array_equal(again.params["fc7-conv"][1].data, [9, 8, 7]), "load_hdf5 reads a file edited by h5py")
with h5py.File(h5, "r+") as f:
    del f["data/fc7-conv/1"]
    f["data/fc7-conv/1"] = np.zeros(4)
T.expect_raise(caffe.CortadoError, lambda: again.load_hdf5(h5), "load_hdf5 refuses a wrong shape", "fc7-conv")

# ---------------------------------------------------------------- partial forward / backward, loss weights
LOSS = T.path("loss.prototxt", """name: "loss"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "target" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "tanh" type: "TanH" bottom: "ip1" top: "h" }
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "ip2" inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip2" bottom: "target" top: "loss" loss_weight: 3 }
""")
net = caffe.Net(LOSS, caffe.TRAIN)
T.check(list(net.layer_dict) == ["data", "ip1", "tanh", "ip2", "loss"] and net.layer_dict["ip1"].type == "InnerProduct"
        and len(net.layers[1].blobs) == 2 and net._layer_names == list(net.layer_dict), "layers and layer_dict")
T.check(net.blob_loss_weights["loss"] == 3 and net.blob_loss_weights["h"] == 0, "blob_loss_weights",
        net.blob_loss_weights)
W1, b1 = net.params["ip1"][0].data.copy(), net.params["ip1"][1].data.copy()
W2, b2 = net.params["ip2"][0].data.copy(), net.params["ip2"][1].data.copy()
x, t = rng.randn(4, 3).astype(np.float32), rng.randn(4, 2).astype(np.float32)
net.blobs["data"].data[...] = x
net.blobs["target"].data[...] = t
h = np.tanh(x @ W1.T + b1)
part = net.forward(start="ip1", end="tanh")
T.check(set(part) == {"h"} and np.allclose(part["h"], h, atol=1e-5), "forward(start, end) returns end's tops", part)
full_out = net.forward()
y = h @ W2.T + b2
T.check(np.isclose(float(full_out["loss"]), ((y - t) ** 2).sum() / 8, rtol=1e-5), "the loss blob vs numpy",
        (full_out, ((y - t) ** 2).sum() / 8))
net.backward()
T.check(np.allclose(net.blobs["ip2"].diff, 3 * (y - t) / 4, atol=1e-5), "its gradient carries the loss weight")
g_y = rng.randn(4, 2).astype(np.float32)
net.clear_param_diffs()
net.blobs["ip2"].diff[...] = g_y
bw = net.backward(start="ip2", end="ip1", diffs=["h"])
g_h = g_y @ W2
g_x = (g_h * (1 - h ** 2)) @ W1
T.check(set(bw) == {"data", "h"} and np.allclose(bw["h"], g_h, atol=1e-5) and np.allclose(bw["data"], g_x, atol=1e-5),
        "backward(start, end) from a hand-set diff vs numpy", bw)
T.check(np.allclose(net.params["ip2"][0].diff, g_y.T @ h, atol=1e-5), "weight gradient of the partial backward")
T.expect_raise(caffe.CortadoError, lambda: net.backward(nope=g_y), "backward(**kwargs) must name the outputs", "outputs")
T.expect_raise(ValueError, lambda: net.forward(start="nope"), "an unknown start layer raises", "nope")

# ---------------------------------------------------------------- forward_all, forward_backward_all
CLS = T.path("cls.prototxt", """name: "cls"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
""")
net = caffe.Net(CLS, caffe.TEST)
W = net.params["ip"][0].data.copy()
many = rng.randn(10, 3).astype(np.float32)
allout = net.forward_all(data=many)
T.check(allout["ip"].shape == (10, 2) and np.allclose(allout["ip"], many @ W.T, atol=1e-5), "forward_all pads and trims")
T.expect_raise(caffe.CortadoError, lambda: net.forward(data=many), "a batch of another size is refused", "reshape")
gtop = rng.randn(10, 2).astype(np.float32)
fo, bo = net.forward_backward_all(data=many, ip=gtop)
T.check(np.allclose(fo["ip"], many @ W.T, atol=1e-5) and np.allclose(bo["data"], gtop @ W, atol=1e-5),
        "forward_backward_all vs numpy")

# ---------------------------------------------------------------- MemoryData
MEM = T.path("mem.prototxt", """name: "mem"
layer { name: "md" type: "MemoryData" top: "data" top: "label" memory_data_param { batch_size: 3 channels: 1 height: 2 width: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 1 weight_filler { type: "constant" value: 1 } } }
""")
net = caffe.Net(MEM, caffe.TEST)
imgs = np.arange(6 * 4, dtype=np.float32).reshape(6, 1, 2, 2)
net.set_input_arrays(imgs, np.arange(6, dtype=np.float32))
net.forward()
T.check(np.array_equal(net.blobs["data"].data, imgs[:3]) and np.array_equal(net.blobs["label"].data, [0, 1, 2])
        and np.allclose(net.blobs["ip"].data[:, 0], imgs[:3].sum((1, 2, 3))), "set_input_arrays: the first batch")
net.forward()
T.check(np.array_equal(net.blobs["label"].data, [3, 4, 5]), "the second batch")
T.expect_raise(ValueError, lambda: net.set_input_arrays(imgs, np.zeros(5)), "labels of the wrong length raise")
T.expect_raise(caffe.CortadoError, lambda: caffe.Net(CLS, caffe.TEST).set_input_arrays(imgs, np.zeros(6)),
               "a net without MemoryData raises", "MemoryData")

# ---------------------------------------------------------------- share_with
a = caffe.Net(CLS, caffe.TEST)
b = caffe.Net(CLS, caffe.TEST)
a.params["ip"][0].data[...] = 1.5
b.share_with(a)
T.check(np.all(b.params["ip"][0].data == 1.5), "share_with: the other's values")
a.params["ip"][0].data[...] = -2
T.check(np.all(b.params["ip"][0].data == -2), "and later changes, through shared memory")
del a
b.forward(data=many[:4])
T.check(np.allclose(b.blobs["ip"].data, many[:4] @ np.full((3, 2), -2.0), atol=1e-5), "after the source net is gone")
T.finish()
