"""In the style of Caffe's 00-classification notebook, with `import cortado as caffe`, on a
small CaffeNet-shaped net (grouped convolutions, LRN, max pooling, dropout, fully connected,
softmax) with filler weights saved as a .caffemodel: load an image, set up the Transformer,
classify a batch, look at the features and parameters; then caffe.Classifier (ten-crop and
centre-crop), caffe.Detector (windows, context padding) and caffe.draw. Every output is checked
against the same net computed in PyTorch from the weights cortado holds.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from google.protobuf import text_format
from PIL import Image

from pyc_util import Checks, cortado as caffe

T = Checks("cortado_cls.")
S = 35
DEPLOY = T.path("deploy.prototxt", """name: "MiniCaffeNet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 10 dim: 3 dim: %d dim: %d } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 5 stride: 2 weight_filler { type: "gaussian" std: 0.1 }
                      bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1" lrn_param { local_size: 5 alpha: 0.001 beta: 0.75 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
  convolution_param { num_output: 12 kernel_size: 3 pad: 1 group: 2 weight_filler { type: "gaussian" std: 0.1 }
                      bias_filler { type: "constant" value: 0.05 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6"
  inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.05 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "prob" type: "Softmax" bottom: "fc7" top: "prob" }
""" % (S, S))
WEIGHTS = T.path("mini.caffemodel")
caffe.set_mode_cpu()
caffe.set_random_seed(11)
caffe.Net(DEPLOY, caffe.TEST).save(WEIGHTS)
net = caffe.Net(DEPLOY, caffe.TEST, weights=WEIGHTS)
W = {k: [torch.from_numpy(p.data.copy()) for p in v] for k, v in net.params.items()}


def torch_net(x):
    """The same net in PyTorch (Caffe pools with ceil; LRN's alpha is divided by local_size in both)."""
    x = torch.from_numpy(np.ascontiguousarray(x))
    feats = {}
    x = F.relu(F.conv2d(x, *W["conv1"], stride=2))
    feats["conv1"] = x
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = F.local_response_norm(x, 5, alpha=0.001, beta=0.75, k=1.0)
    feats["norm1"] = x
    x = F.relu(F.conv2d(x, *W["conv2"], padding=1, groups=2))
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = F.relu(F.linear(x.flatten(1), *W["fc6"]))
    feats["fc6"] = x
    x = F.linear(x, *W["fc7"])
    feats["prob"] = F.softmax(x, 1)
    return {k: v.numpy() for k, v in feats.items()}


# ---------------------------------------------------------------- the notebook's first cells
rng = np.random.RandomState(2)
pixels = (rng.rand(48, 40, 3) * 255).astype(np.uint8)
pixels[10:30, 5:25, 0] = 250  # a red square, so the classes differ between crops
IMG = T.path("cat.png")
Image.fromarray(pixels).save(IMG)
mu = np.array([104.0, 117.0, 123.0])  # BGR, as the ImageNet mean the notebook loads
transformer = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
transformer.set_transpose("data", (2, 0, 1))
transformer.set_mean("data", mu)
transformer.set_raw_scale("data", 255)
transformer.set_channel_swap("data", (2, 1, 0))
net.blobs["data"].reshape(3, 3, S, S)
image = caffe.io.load_image(IMG)
T.check(image.shape == (48, 40, 3) and np.allclose(image, pixels / 255.0), "load_image")
transformed = transformer.preprocess("data", image)
net.blobs["data"].data[...] = transformed
output = net.forward()
output_prob = output["prob"][0]
ref = torch_net(net.blobs["data"].data.copy())
T.check(output["prob"].shape == (3, 5) and np.allclose(output["prob"], ref["prob"], atol=1e-5),
        "class probabilities vs PyTorch", np.abs(output["prob"] - ref["prob"]).max())
T.check(output_prob.argmax() == ref["prob"][0].argmax(), "the predicted class")
shapes = [(k, v.data.shape) for k, v in net.blobs.items()]
T.check(shapes[:3] == [("data", (3, 3, S, S)), ("conv1", (3, 8, 16, 16)), ("pool1", (3, 8, 8, 8))]
        and dict(shapes)["pool2"] == (3, 12, 4, 4) and dict(shapes)["prob"] == (3, 5), "blob shapes", shapes)
T.check([(k, v[0].data.shape, v[1].data.shape) for k, v in net.params.items()]
        == [("conv1", (8, 3, 5, 5), (8,)), ("conv2", (12, 4, 3, 3), (12,)), ("fc6", (16, 192), (16,)),
            ("fc7", (5, 16), (5,))], "parameter shapes")
for name in ("conv1", "norm1", "fc6"):
    T.check(np.allclose(net.blobs[name].data, ref[name], atol=1e-5), "features %s vs PyTorch" % name)
filters = net.params["conv1"][0].data
T.check(filters.transpose(0, 2, 3, 1).shape == (8, 5, 5, 3), "filters viewed for display")

# ---------------------------------------------------------------- Classifier
clf = caffe.Classifier(DEPLOY, WEIGHTS, image_dims=(40, 40), mean=mu, raw_scale=255, channel_swap=(2, 1, 0))
image2 = np.ascontiguousarray(image[::-1])
pred = clf.predict([image, image2])
pred_c = clf.predict([image, image2], oversample=False)


def manual(img, oversample):
    resized = caffe.io.resize_image(img, (40, 40))
    crops = caffe.io.oversample([resized], (S, S)) if oversample else resized[None, 2:2 + S, 2:2 + S]
    x = np.stack([transformer.preprocess("data", c) for c in crops])
    return torch_net(x)["prob"].mean(0)


T.check(pred.shape == (2, 5) and np.allclose(pred[0], manual(image, True), atol=1e-5)
        and np.allclose(pred[1], manual(image2, True), atol=1e-5), "Classifier.predict, ten crops", pred)
T.check(np.allclose(pred_c[0], manual(image, False), atol=1e-5), "Classifier.predict, centre crop", pred_c)

# ---------------------------------------------------------------- Detector
det = caffe.Detector(DEPLOY, WEIGHTS, mean=mu, raw_scale=255, channel_swap=(2, 1, 0))
windows = [(0, 0, 30, 30), (5, 10, 48, 40), (10, 5, 30, 25)]
dets = det.detect_windows([(IMG, windows)])
for d, (y0, x0, y1, x1) in zip(dets, windows):
    want = torch_net(transformer.preprocess("data", image[y0:y1, x0:x1])[None])["prob"][0]
    T.check(np.allclose(d["prediction"], want, atol=1e-5) and d["filename"] == IMG, "Detector window %s" % (d["window"],))
ctx = caffe.Detector(DEPLOY, WEIGHTS, mean=mu, raw_scale=255, channel_swap=(2, 1, 0), context_pad=4)
crop = ctx.crop(image, (0, 0, 20, 20))
T.check(crop.shape == (S, S, 3) and np.allclose(crop[0, 0], mu[::-1] / 255.0), "context padding fills with the mean",
        crop[0, 0])
T.check(len(ctx.detect_windows([(IMG, windows[:1])])) == 1, "detection with context padding runs")
T.expect_raise(caffe.CortadoError, lambda: det.detect_selective_search([IMG]), "selective search is refused",
               "detect_windows")

# ---------------------------------------------------------------- draw
import cortado.draw  # noqa: E402  (as `import caffe.draw`)
netparam = caffe.proto.caffe_pb2.NetParameter()
with open(DEPLOY) as f:
    text_format.Merge(f.read(), netparam)
dot = T.path("net.dot")
cortado.draw.draw_net_to_file(netparam, dot, "LR")
with open(dot) as f:
    g = f.read()
T.check("rankdir=LR" in g and "conv2" in g and "fc7" in g, "draw_net_to_file writes the graph", g[:300])
# display_lrm: every layer with param entries shows its multipliers as the NetParameter holds them
T.check("lr_mult" not in g, "no multipliers unless asked")
conv1 = next(lp for lp in netparam.layer if lp.name == "conv1")
conv1.param.add(lr_mult=3, decay_mult=0.5)
conv1.param.add(lr_mult=6)
g = cortado.draw.draw_net(netparam, "LR", "dot", display_lrm=True).decode()
T.check(g.count("lr_mult") == 1 and "lr_mult 3, 6; decay_mult 0.5, 1" in g, "display_lrm shows conv1's multipliers",
        g[:600])
svg = T.path("net.svg")
caffe.draw.draw_net_to_file(DEPLOY, svg, "TB", phase=caffe.TEST)
with open(svg) as f:
    T.check("<svg" in f.read(), "and an SVG through Graphviz")
T.check(os.path.getsize(svg) > 1000, "a drawing of some size")
T.finish()
