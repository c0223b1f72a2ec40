"""cortado.io, cortado.proto.caffe_pb2, NetSpec and the module-level functions against
hand-computed values: the Transformer's steps on a 2 x 3 image, resize_image's interpolation,
oversample's crops, BlobProto / Datum conversions (checked against the wire bytes written by
cortado itself), load_image on PNGs written by PIL, NetSpec text that cortado builds, devices.
"""
import subprocess
import os

import numpy as np

from pyc_util import Checks, cortado as caffe

T = Checks("cortado_io.")
io = caffe.io

# ---------------------------------------------------------------- Transformer, by hand
img = np.arange(18, dtype=np.float32).reshape(2, 3, 3) / 17.0  # H=2, W=3, C=3 (RGB), in [0, 1]
tf = io.Transformer({"data": (1, 3, 2, 3)})
tf.set_transpose("data", (2, 0, 1))
tf.set_channel_swap("data", (2, 1, 0))
tf.set_raw_scale("data", 255)
tf.set_mean("data", np.array([10.0, 20.0, 30.0]))
tf.set_input_scale("data", 0.5)
out = tf.preprocess("data", img)
expect = np.empty((3, 2, 3), np.float32)
for c in range(3):  # output channel c is input channel 2 - c (BGR)
    for y in range(2):
        for x in range(3):
            expect[c, y, x] = (img[y, x, 2 - c] * 255 - [10.0, 20.0, 30.0][c]) * 0.5
T.check(out.shape == (3, 2, 3) and np.allclose(out, expect, atol=1e-4), "preprocess: transpose, swap, scales, mean",
        (out, expect))
T.check(np.allclose(tf.deprocess("data", out), img, atol=1e-6), "deprocess inverts preprocess")
T.check(np.array_equal(img, np.arange(18, dtype=np.float32).reshape(2, 3, 3) / 17.0), "the input is left alone")
tf2 = io.Transformer({"data": (1, 1, 2, 2)})
tf2.set_mean("data", np.array([[1.0, 2.0], [3.0, 4.0]]))  # H x W mean for one channel
tf2.set_transpose("data", (2, 0, 1))
r = tf2.preprocess("data", np.full((2, 2, 1), 10.0, np.float32))
T.check(np.array_equal(r, np.array([[[9.0, 8.0], [7.0, 6.0]]])), "an elementwise mean", r)
r = tf2.preprocess("data", np.full((4, 4, 1), 10.0, np.float32))  # resized to 2 x 2 first
T.check(r.shape == (1, 2, 2) and np.array_equal(r, np.array([[[9.0, 8.0], [7.0, 6.0]]])), "preprocess resizes", r)
T.expect_raise(ValueError, lambda: tf.set_mean("data", np.zeros(4)), "a mean with the wrong channels raises")
T.expect_raise(ValueError, lambda: tf.set_mean("data", np.zeros((3, 5, 5))), "a mean of the wrong size raises")
T.expect_raise(ValueError, lambda: tf.set_transpose("data", (1, 0)), "a transpose of the wrong length raises")
T.expect_raise(ValueError, lambda: tf.set_channel_swap("data", (1, 0)), "a channel swap of the wrong length raises")
T.expect_raise(KeyError, lambda: tf.preprocess("nope", img), "an unknown input raises")

# ---------------------------------------------------------------- resize_image, by hand
a = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)[:, :, None]
up = io.resize_image(a, (4, 4))
# bilinear, pixel centres aligned: output x samples input (x + .5) / 2 - .5 -> -.25 .25 .75 1.25, clamped
cols = np.array([0.0, 0.25, 0.75, 1.0])
expect = (cols[:, None] * 2 + cols[None, :])[:, :, None]
T.check(up.shape == (4, 4, 1) and up.dtype == np.float32 and np.allclose(up, expect), "bilinear upsampling", up[:, :, 0])
down = io.resize_image(np.arange(16, dtype=np.float32).reshape(4, 4, 1), (2, 2))
T.check(np.allclose(down[:, :, 0], [[2.5, 4.5], [10.5, 12.5]]), "bilinear downsampling averages pixel pairs",
        down[:, :, 0])
near = io.resize_image(a, (4, 2), interp_order=0)
T.check(np.array_equal(near[:, :, 0], [[0, 1], [0, 1], [2, 3], [2, 3]]), "nearest neighbour", near[:, :, 0])
flat = io.resize_image(np.full((3, 3, 3), 0.5, np.float32), (5, 7))
T.check(flat.shape == (5, 7, 3) and np.all(flat == 0.5), "a constant image stays constant")
T.expect_raise(ValueError, lambda: io.resize_image(a, (4, 4), interp_order=3), "interp_order 3 is refused")

# ---------------------------------------------------------------- oversample, by hand
ims = [np.arange(5 * 6 * 2, dtype=np.float32).reshape(5, 6, 2)]
crops = io.oversample(ims, (3, 4))
im = ims[0]
want = [im[0:3, 0:4], im[0:3, 2:6], im[2:5, 0:4], im[2:5, 2:6], im[1:4, 1:5]]
want += [w[:, ::-1] for w in want]
T.check(crops.shape == (10, 3, 4, 2) and all(np.array_equal(crops[i], want[i]) for i in range(10)),
        "oversample: corners, centre, mirrored")

# ---------------------------------------------------------------- protobuf conversions
pb = caffe.proto.caffe_pb2
arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5
blob = io.array_to_blobproto(arr, diff=arr * 2)
T.check(list(blob.shape.dim) == [2, 3, 4] and np.array_equal(io.blobproto_to_array(blob), arr)
        and np.array_equal(io.blobproto_to_array(blob, return_diff=True), arr * 2), "BlobProto round trip")
legacy = pb.BlobProto(num=1, channels=2, height=1, width=3, data=[1, 2, 3, 4, 5, 6])
T.check(io.blobproto_to_array(legacy).shape == (1, 2, 1, 3), "legacy 4-D BlobProto shape")
s = io.arraylist_to_blobprotovector_str([arr, arr[0]])
back = io.blobprotovector_str_to_arraylist(s)
T.check(len(back) == 2 and np.array_equal(back[0], arr) and np.array_equal(back[1], arr[0]), "BlobProtoVector")
u8 = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
d = io.array_to_datum(u8, label=7)
T.check(d.channels == 3 and d.label == 7 and d.data == u8.tobytes() and np.array_equal(io.datum_to_array(d), u8),
        "uint8 Datum")
df = io.array_to_datum(u8.astype(np.float32) / 2)
T.check(len(df.data) == 0 and np.allclose(io.datum_to_array(df), u8 / 2.0), "float Datum")
T.expect_raise(ValueError, lambda: io.array_to_datum(np.zeros((2, 2))), "a 2-D Datum raises")

# cortado writes a .caffemodel; caffe_pb2 (built from cortado's schema) reads it
NET = T.path("n.prototxt", 'name: "n"\nlayer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 '
             'dim: 3 } } }\nlayer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param '
             '{ num_output: 4 weight_filler { type: "gaussian" std: 1 } bias_filler { type: "constant" value: 0.5 } } }\n')
net = caffe.Net(NET, caffe.TEST)
model = T.path("n.caffemodel")
net.save(model)
with open(model, "rb") as f:
    msg = pb.NetParameter.FromString(f.read())
ip = [l for l in msg.layer if l.name == "ip"][0]
T.check(np.array_equal(io.blobproto_to_array(ip.blobs[0]), net.params["ip"][0].data)
        and np.array_equal(io.blobproto_to_array(ip.blobs[1]), net.params["ip"][1].data),
        "caffe_pb2 reads cortado's .caffemodel")
ip.blobs[1].CopyFrom(io.array_to_blobproto(np.array([1.0, 2.0, 3.0, 4.0])))
with open(model, "wb") as f:
    f.write(msg.SerializeToString())
net.copy_from(model)
T.check(np.array_equal(net.params["ip"][1].data, [1, 2, 3, 4]), "cortado reads a caffemodel written by caffe_pb2")
T.check(pb.TRAIN == caffe.TRAIN and pb.TEST == caffe.TEST and pb.PoolingParameter.MAX == 0, "enums")

# ---------------------------------------------------------------- load_image
from PIL import Image  # noqa: E402
rgb = np.random.RandomState(0).randint(0, 256, (5, 7, 3)).astype(np.uint8)
Image.fromarray(rgb).save(T.path("rgb.png"))
Image.fromarray(rgb[:, :, 0]).save(T.path("gray.png"))
Image.fromarray(np.dstack([rgb, np.full((5, 7), 9, np.uint8)])).save(T.path("rgba.png"))
im = io.load_image(T.path("rgb.png"))
T.check(im.shape == (5, 7, 3) and im.dtype == np.float32 and np.allclose(im, rgb / 255.0), "load_image color")
g = io.load_image(T.path("rgb.png"), color=False)
T.check(g.shape == (5, 7, 1) and np.allclose(g[:, :, 0], rgb @ np.array([0.2125, 0.7154, 0.0721]) / 255.0, atol=1e-6),
        "load_image gray from color")
g3 = io.load_image(T.path("gray.png"))
T.check(g3.shape == (5, 7, 3) and np.allclose(g3[:, :, 1], rgb[:, :, 0] / 255.0), "a gray image loads as color")
T.check(io.load_image(T.path("rgba.png")).shape == (5, 7, 3), "alpha dropped")

# ---------------------------------------------------------------- NetSpec
L, P = caffe.layers, caffe.params
n = caffe.NetSpec()
n.data = L.Input(shape=[dict(dim=[2, 1, 8, 8])])
n.conv = L.Convolution(n.data, kernel_size=3, num_output=4, weight_filler=dict(type="xavier"),
                       param=[dict(lr_mult=1), dict(lr_mult=2)])
n.pool = L.Pooling(n.conv, kernel_size=2, stride=2, pool=P.Pooling.MAX)
n.relu = L.ReLU(n.pool, in_place=True)
n.ip = L.InnerProduct(n.relu, num_output=3)
n.prob = L.Softmax(n.ip)
proto = n.to_proto()
text = str(proto)
T.check('type: "Convolution"' in text and "kernel_size: 3" in text and "pool: MAX" in text
        and 'top: "pool"' in text.split('name: "relu"')[1] and "lr_mult: 2" in text, "NetSpec text", text)
spec_net = caffe.Net(T.path("spec.prototxt", text), caffe.TEST)
T.check(spec_net.blobs["prob"].shape == (2, 3) and spec_net.params["conv"][0].shape == (4, 1, 3, 3),
        "cortado builds the NetSpec net", spec_net.blobs["prob"].shape)
x = L.Input(shape=dict(dim=[1, 2]))
auto = str(caffe.to_proto(L.Sigmoid(x)))
T.check('name: "Sigmoid1"' in auto and 'name: "Input1"' in auto, "automatic names", auto)
T.expect_raise(AttributeError, lambda: str(caffe.to_proto(L.ReLU(x, no_such_field=1))), "an unknown setting raises",
               "no_such_field")
a, b = L.Slice(x, ntop=2, slice_point=[1])
T.check('slice_point: 1' in str(caffe.to_proto(a, b)), "ntop=2 gives two tops")

# ---------------------------------------------------------------- module functions and devices
T.check(caffe.__version__ and "Convolution" in caffe.layer_type_list() and "Input" in caffe.layer_type_list(),
        "layer_type_list and __version__")
if subprocess.run([os.environ.get("CORTADO", "cortado"), "device_query"], capture_output=True).returncode != 0:
    # no GPU to run on (CI): Caffe's GPU calls raise, saying why (tests/gpu/run.sh has the GPU side)
    T.expect_raise(caffe.CortadoError, caffe.set_mode_gpu, "set_mode_gpu raises without a GPU", "no GPU to run on")
    T.expect_raise(caffe.CortadoError, lambda: caffe.set_device(0), "set_device raises too", "set_devices")
else:
    caffe.set_device(0)
    caffe.set_mode_gpu()
    T.check(caffe.net._defaults["devices"] == "cuda:0", "set_mode_gpu puts new nets on cuda:0")
    T.expect_raise(caffe.CortadoError, lambda: caffe.set_device(999), "set_device of a GPU not there", "no GPU 999")
caffe.set_mode_cpu()
caffe.set_random_seed(5)
w5 = caffe.Net(NET, caffe.TEST).params["ip"][0].data.copy()
caffe.set_random_seed(6)
w6 = caffe.Net(NET, caffe.TEST).params["ip"][0].data.copy()
caffe.set_random_seed(5)
T.check(np.array_equal(caffe.Net(NET, caffe.TEST).params["ip"][0].data, w5) and not np.array_equal(w5, w6),
        "set_random_seed decides the fillers of the nets made after it")
T.check(hasattr(caffe, "Layer") == os.path.exists(os.path.join(os.path.dirname(caffe.__file__), "layer.py")),
        "Layer is exported exactly when layer.py exists")
cpu = caffe.Net(T.path("spec.prototxt"), caffe.TEST)
rng = np.random.RandomState(1)
xin = rng.randn(2, 1, 8, 8).astype(np.float32)
for p in ("conv", "ip"):
    for i, blob_ in enumerate(spec_net.params[p]):
        blob_.data[...] = rng.randn(*blob_.shape)
        cpu.params[p][i].data[...] = blob_.data
caffe.set_devices("cpu,emu:0")
hyb = caffe.Net(T.path("spec.prototxt"), caffe.TEST)
caffe.set_mode_cpu()
for p in ("conv", "ip"):
    for i in range(2):
        hyb.params[p][i].data[...] = cpu.params[p][i].data
o_cpu = cpu.forward(data=xin)["prob"].copy()
o_hyb = hyb.forward(data=xin)["prob"].copy()
T.check(np.allclose(o_cpu, o_hyb, atol=1e-5), "set_devices('cpu,emu:0'): the same outputs as the CPU", (o_cpu, o_hyb))
emu = caffe.Net(T.path("spec.prototxt"), caffe.TEST, devices="emu:0")
for p in ("conv", "ip"):
    for i in range(2):
        emu.params[p][i].data[...] = cpu.params[p][i].data
emu.forward(data=xin)
T.check(np.allclose(emu.blobs["prob"].data, o_cpu, atol=1e-5), "devices='emu:0': .data brings the device's values")
T.expect_raise(caffe.CortadoError, lambda: caffe.Net(T.path("spec.prototxt"), caffe.TEST, devices="cuda:0"),
               "an absent device is an error naming it", "cuda")
T.finish()
