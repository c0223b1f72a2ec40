"""In the style of Caffe's 01-learning-lenet notebook, with `import cortado as caffe`, on
Fashion-MNIST (Debian's dataset-fashion-mnist IDX files): LeNet written with NetSpec, a solver
written through caffe_pb2.SolverParameter, the first batches checked against the IDX files read
by numpy, a step-by-step training loop that scores the test net with forward(start='conv1'),
the SGD update (apply_update) against numpy, the callbacks' order, and a typed solver class
overriding the file's type (AdamSolver's first step against Adam's formula).
"""
import os

import numpy as np

from pyc_util import FMNIST, Checks, cortado as caffe, read_idx

T = Checks("cortado_lenet.")
L, P = caffe.layers, caffe.params
pb = caffe.proto.caffe_pb2
ITERS = int(os.environ.get("CT_LENET_ITERS", "200"))


def lenet(images, labels, batch_size):
    n = caffe.NetSpec()
    n.data, n.label = L.Data(idx_data_param=dict(images=os.path.join(FMNIST, images),
                                                 labels=os.path.join(FMNIST, labels), batch_size=batch_size),
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


TRAIN = T.path("lenet_auto_train.prototxt", str(lenet("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 64)))
TEST = T.path("lenet_auto_test.prototxt", str(lenet("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 100)))


def solver_file(name, **extra):
    s = pb.SolverParameter()
    s.train_net = TRAIN
    s.test_net.append(TEST)
    s.test_interval = 500
    s.test_iter.append(10)
    s.base_lr = 0.01
    s.momentum = 0.9
    s.weight_decay = 5e-4
    s.lr_policy = "inv"
    s.gamma = 1e-4
    s.power = 0.75
    s.display = 0
    s.max_iter = 10000
    s.snapshot_prefix = os.path.join(T.tmp, "lenet")
    s.random_seed = 1
    for k, v in extra.items():
        setattr(s, k, v)
    return T.path(name, str(s))


SOLVER = solver_file("lenet_auto_solver.prototxt")
caffe.set_mode_cpu()
solver = caffe.SGDSolver(SOLVER, quiet=True)
shapes = [(k, v.data.shape) for k, v in solver.net.blobs.items()]
T.check(shapes[:2] == [("data", (64, 1, 28, 28)), ("label", (64,))] and dict(shapes)["fc1"] == (64, 500)
        and dict(shapes)["score"] == (64, 10), "train net blob shapes", shapes)
T.check([(k, v[0].data.shape) for k, v in solver.net.params.items()]
        == [("conv1", (20, 1, 5, 5)), ("conv2", (50, 20, 5, 5)), ("fc1", (500, 800)), ("score", (10, 500))],
        "parameter shapes")
T.check(solver.param.base_lr == np.float32(0.01) and solver.param.lr_policy == "inv" and solver.param.type == "SGD",
        "solver.param")

train_x, train_y = read_idx("train-images-idx3-ubyte.gz", 128), read_idx("train-labels-idx1-ubyte.gz", 128)
test_x, test_y = read_idx("t10k-images-idx3-ubyte.gz", 1000), read_idx("t10k-labels-idx1-ubyte.gz", 1000)
solver.net.forward()
solver.test_nets[0].forward()
T.check(np.allclose(solver.net.blobs["data"].data[:, 0], train_x[:64] / np.float32(255), atol=1e-6)
        and np.array_equal(solver.net.blobs["label"].data, train_y[:64]), "the first train batch is the IDX file's")
T.check(np.allclose(solver.test_nets[0].blobs["data"].data[:, 0], test_x[:100] / np.float32(255), atol=1e-6)
        and np.array_equal(solver.test_nets[0].blobs["label"].data, test_y[:100]), "and the first test batch")

T.expect_raise(caffe.CortadoError, lambda: solver.net.forward(data=np.zeros((64, 1, 28, 28))),
               "forward(data=...) on a net fed by a Data layer is an error", "Input")
solver.step(1)
T.check(solver.iter == 1 and np.abs(solver.net.params["conv1"][0].diff).sum() == 0
        and np.abs(solver.net.params["conv1"][0].data).sum() > 0, "step(1): the update left the gradients cleared")

# ---------------------------------------------------------------- the training loop
test_interval = max(ITERS // 4, 1)
train_loss = np.zeros(ITERS)
test_acc = []
for it in range(ITERS):
    solver.step(1)
    train_loss[it] = solver.net.blobs["loss"].data
    solver.test_nets[0].forward(start="conv1")
    if it % test_interval == 0:
        correct = 0
        for _ in range(10):
            solver.test_nets[0].forward()
            correct += (solver.test_nets[0].blobs["score"].data.argmax(1) == solver.test_nets[0].blobs["label"].data).sum()
        test_acc.append(correct / 1000.0)
correct = 0
labels_seen = []
for _ in range(10):
    solver.test_nets[0].forward()
    labels_seen.append(solver.test_nets[0].blobs["label"].data.copy())
    correct += (solver.test_nets[0].blobs["score"].data.argmax(1) == solver.test_nets[0].blobs["label"].data).sum()
acc = correct / 1000.0
k = max(ITERS // 10, 1)
T.check(train_loss[-k:].mean() < 0.7 * train_loss[:k].mean(), "the training loss falls",
        (train_loss[:k].mean(), train_loss[-k:].mean()))
T.check(acc > (0.65 if ITERS >= 200 else 0.3), "test accuracy after %d iterations" % ITERS, (acc, test_acc))
T.check(solver.iter == ITERS + 1, "iter counts the steps", solver.iter)
scores = solver.test(0)
T.check(len(scores) == 1 and 0 < scores[0] < 3, "solver.test(0) gives the test loss", scores)

# ---------------------------------------------------------------- apply_update against numpy
FIXED = solver_file("fixed.prototxt", lr_policy="fixed")
s = caffe.SGDSolver(FIXED, quiet=True)
net = s.net
lr, mom, wd = 0.01, 0.9, 5e-4
hist = {k: np.zeros_like(v[0].data) for k, v in net.params.items()}
ok = True
for step in range(2):
    net.forward()
    net.clear_param_diffs()
    net.backward()
    before = {k: (v[0].data.copy(), v[0].diff.copy()) for k, v in net.params.items()}
    s.apply_update()
    for k, (w, g) in before.items():
        hist[k] = mom * hist[k] + lr * (g + wd * w)
        ok &= np.allclose(net.params[k][0].data, w - hist[k], atol=1e-6, rtol=1e-5)
        ok &= np.allclose(net.params[k][0].diff, hist[k], atol=1e-7, rtol=1e-4)
T.check(ok and s.iter == 0, "apply_update: SGD with momentum and weight decay vs numpy, iter unchanged", s.iter)

# ---------------------------------------------------------------- callbacks
calls = []
s.add_callback(lambda: calls.append(("start", s.iter, float(np.abs(net.params["conv1"][0].diff).sum()))),
               lambda: calls.append(("grad", s.iter, float(np.abs(net.params["conv1"][0].diff).sum()))))
s.step(3)
T.check([c[:2] for c in calls] == [("start", 0), ("grad", 0), ("start", 1), ("grad", 1), ("start", 2), ("grad", 2)],
        "callbacks: on_start then on_gradients, every iteration", calls)
T.check(all(c[2] == 0 for c in calls if c[0] == "start") and all(c[2] > 0 for c in calls if c[0] == "grad"),
        "on_start sees cleared gradients, on_gradients the fresh ones", calls)

# ---------------------------------------------------------------- typed classes
ADAM = solver_file("adam.prototxt", lr_policy="fixed", weight_decay=0.0, base_lr=0.001)
a = caffe.AdamSolver(ADAM, quiet=True)
T.check(a.param.type == "Adam", "AdamSolver reports its type")
a.net.forward()
a.net.clear_param_diffs()
a.net.backward()
w0, g0 = a.net.params["fc1"][0].data.copy(), a.net.params["fc1"][0].diff.copy()
a.apply_update()
big = np.abs(g0) > 1e-4
step = (w0 - a.net.params["fc1"][0].data)[big]
T.check(big.sum() > 100 and np.allclose(step, 0.001 * np.sign(g0[big]), rtol=0.02),
        "AdamSolver on an SGD file: Adam's first step (lr * sign(g))", step[:5])
T.check(caffe.get_solver(ADAM, quiet=True).param.type == "SGD", "get_solver: the file's type")
T.finish()
