"""In the style of Caffe's 02-fine-tuning and pascal-multilabel-with-datalayer notebooks, with
`import cortado as caffe`, on Fashion-MNIST:

fine-tuning: a LeNet "pretrained" on the ten classes; a new task (upper-body garment or not)
read by an ImageData layer from PNGs and a list file; a net whose last layer is new loads the
pretrained weights by layer name (the new layer keeps its filler values), is fine-tuned with
the lower layers frozen (lr_mult 0: they must not move) and against a net trained from
scratch; the trained weights are then served by a deploy net whose outputs equal the training
net's, checked with numpy's softmax.

multi-label: attributes of each garment (upper body, footwear, sleeves) as multi-hot labels fed
from Python into Input blobs before each solver step (what the notebook's Python data layer
does), a SigmoidCrossEntropyLoss checked against numpy, and the Hamming accuracy the notebook
computes.
"""
import os

import numpy as np
from PIL import Image

from pyc_util import Checks, cortado as caffe, read_idx

T = Checks("cortado_ft.")
L, P = caffe.layers, caffe.params
pb = caffe.proto.caffe_pb2
caffe.set_mode_cpu()
frozen = [dict(lr_mult=0, decay_mult=0)] * 2
learned = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]


def body(n, bottom, learn_all, nclass, last):
    param = learned if learn_all else frozen
    n.conv1 = L.Convolution(bottom, kernel_size=5, num_output=16, weight_filler=dict(type="xavier"), param=param)
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=32, weight_filler=dict(type="xavier"), param=param)
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=64, weight_filler=dict(type="xavier"), param=learned)
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n[last] = L.InnerProduct(n.relu1, num_output=nclass, weight_filler=dict(type="gaussian", std=0.01), param=learned)
    return n[last]


def solver(train_net, base_lr=0.01, test_net=None):
    s = pb.SolverParameter(train_net=train_net, base_lr=base_lr, momentum=0.9, weight_decay=5e-4, lr_policy="fixed",
                           display=0, max_iter=100000, random_seed=3, snapshot_prefix=os.path.join(T.tmp, "ft"))
    if test_net:
        s.test_net.append(test_net)
        s.test_iter.append(1)
        s.test_interval = 100000
    return T.path("solver_%d.prototxt" % len(os.listdir(T.tmp)), str(s))


# ---------------------------------------------------------------- pretraining on the 10 classes
n = caffe.NetSpec()
n.data, n.label = L.Data(idx_data_param=dict(images="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                                             labels="/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
                                             batch_size=64), transform_param=dict(scale=1. / 255), ntop=2)
n.loss = L.SoftmaxWithLoss(body(n, n.data, True, 10, "score"), n.label)
pre = caffe.SGDSolver(solver(T.path("pre.prototxt", str(n.to_proto()))), quiet=True)
pre.step(150)
PRETRAINED = T.path("pretrained.caffemodel")
pre.net.save(PRETRAINED)

# ---------------------------------------------------------------- the new task, as images on disk
UPPER = {0, 2, 4, 6}  # T-shirt, pullover, coat, shirt
imgs, labels = read_idx("train-images-idx3-ubyte.gz", 30000)[20000:21000], read_idx("train-labels-idx1-ubyte.gz", 30000)[20000:21000]
timgs, tlabels = read_idx("t10k-images-idx3-ubyte.gz", 500), read_idx("t10k-labels-idx1-ubyte.gz", 500)
os.makedirs(T.path("img"))
with open(T.path("train.txt"), "w") as f:
    for i, (im, lab) in enumerate(zip(imgs, labels)):
        Image.fromarray(im).save(T.path("img/%d.png" % i))
        f.write("img/%d.png %d\n" % (i, int(lab) in UPPER))
ybin = np.array([int(lab) in UPPER for lab in tlabels], np.float32)


def style_net(learn_all, name):
    n = caffe.NetSpec()
    n.data, n.label = L.ImageData(image_data_param=dict(source=T.path("train.txt"), root_folder=T.tmp + "/",
                                                        batch_size=50, is_color=False),
                                  transform_param=dict(scale=1. / 255), ntop=2)
    n.loss = L.SoftmaxWithLoss(body(n, n.data, learn_all, 2, "score_ft"), n.label)
    n.acc = L.Accuracy(n.score_ft, n.label)
    return T.path(name, str(n.to_proto()))


def deploy(batch):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 1, 28, 28]))
    n.prob = L.Softmax(body(n, n.data, True, 2, "score_ft"))
    return T.path("deploy_%d.prototxt" % batch, str(n.to_proto()))


FROZEN = style_net(False, "style_frozen.prototxt")
SCRATCH = style_net(True, "style_all.prototxt")
untrained = caffe.Net(FROZEN, caffe.TRAIN, weights=PRETRAINED)
T.check(np.array_equal(untrained.params["conv1"][0].data, pre.net.params["conv1"][0].data)
        and np.array_equal(untrained.params["fc1"][1].data, pre.net.params["fc1"][1].data),
        "weights= copies the pretrained layers by name")
T.check(untrained.params["score_ft"][0].shape == (2, 64) and np.all(untrained.params["score_ft"][1].data == 0),
        "the new layer keeps its filler values")
first = untrained.forward()
T.check(untrained.blobs["data"].data.shape == (50, 1, 28, 28)
        and np.allclose(untrained.blobs["data"].data[:, 0], imgs[:50] / np.float32(255), atol=1e-6)
        and np.array_equal(untrained.blobs["label"].data, [int(lab) in UPPER for lab in labels[:50]]),
        "ImageData reads the PNGs and the list's labels")
del untrained, first

ft = caffe.SGDSolver(solver(FROZEN), quiet=True)
ft.net.copy_from(PRETRAINED)  # the notebook's idiom
conv_before = ft.net.params["conv2"][0].data.copy()
scratch = caffe.SGDSolver(solver(SCRATCH), quiet=True)
scratch_before = scratch.net.params["conv2"][0].data.copy()
for it in range(60):
    ft.step(1)
    scratch.step(1)
T.check(np.array_equal(ft.net.params["conv2"][0].data, conv_before), "frozen layers (lr_mult 0) do not move")
T.check(not np.array_equal(scratch.net.params["conv2"][0].data, scratch_before), "layers with lr_mult learn")
WFT = T.path("ft.caffemodel")
ft.net.save(WFT)
test_net = caffe.Net(deploy(100), WFT, caffe.TEST)
acc = {}
for name, w in (("ft", WFT), ("scratch", None)):
    if w is None:
        scratch.net.save(T.path("scratch.caffemodel"))
        test_net.copy_from(T.path("scratch.caffemodel"))
    probs = test_net.forward_all(data=timgs[:, None] / np.float32(255))["prob"]
    acc[name] = float(np.mean(probs.argmax(1) == ybin))
T.check(acc["ft"] > 0.85 and acc["ft"] >= acc["scratch"], "fine-tuned beats scratch on the new task", acc)
# the deploy net agrees with the training net on the same images
test_net.copy_from(WFT)
ft.net.forward()
x = ft.net.blobs["data"].data.copy()
score = ft.net.blobs["score_ft"].data.copy()
dn = caffe.Net(deploy(50), WFT, caffe.TEST)
p = dn.forward(data=x)["prob"]
e = np.exp(score - score.max(1, keepdims=True))
T.check(np.allclose(p, e / e.sum(1, keepdims=True), atol=1e-5), "deploy outputs equal the training net's softmax")

# ---------------------------------------------------------------- multi-label from a Python feeder
ATTRS = [UPPER, {5, 7, 9}, {0, 2, 4, 6, 3}]  # upper body, footwear, covers the torso


def multihot(labs):
    return np.array([[int(lab) in a for a in ATTRS] for lab in labs], np.float32)


class BatchLoader:
    """What the notebook's Python data layer does: the next batch of images and labels."""

    def __init__(self, images, labels, batch):
        self.images, self.labels, self.batch, self.cur = images, labels, batch, 0

    def load_next(self):
        idx = [(self.cur + i) % len(self.images) for i in range(self.batch)]
        self.cur = (self.cur + self.batch) % len(self.images)
        return self.images[idx, None] / np.float32(255), multihot(self.labels[idx])


def multilabel_net(batch):
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[batch, 1, 28, 28]), dict(dim=[batch, 3])], ntop=2)
    n.loss = L.SigmoidCrossEntropyLoss(body(n, n.data, True, 3, "score_ml"), n.label)
    return T.path("multilabel_%d.prototxt" % batch, str(n.to_proto()))


ml = caffe.SGDSolver(solver(multilabel_net(32), base_lr=0.01), quiet=True)
ml.net.copy_from(PRETRAINED)
loader = BatchLoader(read_idx("train-images-idx3-ubyte.gz", 8000), read_idx("train-labels-idx1-ubyte.gz", 8000), 32)
data, lab = loader.load_next()
ml.net.blobs["data"].data[...] = data
ml.net.blobs["label"].data[...] = lab
out = ml.net.forward()
z = ml.net.blobs["score_ml"].data
bce = np.sum(np.maximum(z, 0) - z * lab + np.log1p(np.exp(-np.abs(z)))) / 32
T.check(np.isclose(float(out["loss"]), bce, rtol=1e-4), "SigmoidCrossEntropyLoss vs numpy", (out["loss"], bce))
for it in range(80):
    data, lab = loader.load_next()
    ml.net.blobs["data"].data[...] = data
    ml.net.blobs["label"].data[...] = lab
    ml.step(1)


def hamming_distance(gt, est):
    return sum(1 for g, e in zip(gt, est) if g == e) / float(len(gt))


ev = caffe.Net(multilabel_net(100), caffe.TEST)
ev.share_with(ml.net)
accs = []
for k in range(5):
    ev.blobs["data"].data[...] = timgs[k * 100:(k + 1) * 100, None] / np.float32(255)
    ev.blobs["label"].data[...] = multihot(tlabels[k * 100:(k + 1) * 100])
    ev.forward()
    for gt, est in zip(ev.blobs["label"].data, ev.blobs["score_ml"].data > 0):
        accs.append(hamming_distance(gt, est))
baseline = np.mean([hamming_distance(g, np.zeros(3)) for g in multihot(tlabels)])
T.check(np.mean(accs) > 0.9 and np.mean(accs) > baseline + 0.2, "multi-label Hamming accuracy",
        (np.mean(accs), baseline))
T.finish()
