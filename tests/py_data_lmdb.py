"""Caffe Datum databases written by an independent writer, read back bit-exactly by cortado.

The writer here is Debian's `lmdb` module plus a Datum encoded by hand from Caffe's published
field numbers (channels = 1, height = 2, width = 3, data = 4, label = 5, float_data = 6,
encoded = 7); images are encoded by PIL. No cortado code takes part in writing. cortado reads the
records through a Data layer (ctypes on libct_testkit.so: ct_net_create_from_text, forward, blob
data), raw, float_data (packed and unpacked) and encoded PNG/JPEG; colour comes out in Caffe's
B, G, R plane order. The other way round, databases and mean files made by `cortado convert` /
`cortado compute-mean` are decoded here field by field. Damaged inputs give errors naming the
record or file.
"""
import ctypes
import gzip
import io
import os
import struct
import subprocess
import sys
import tempfile

import lmdb
import numpy as np
from PIL import Image

lib = ctypes.CDLL(os.environ.get("CT_TESTKIT", "../build/tests/libct_testkit.so"))
CORTADO = os.environ.get("CORTADO", "../build/cortado")


class Err(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]


lib.ct_net_create_from_text.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Err)]
lib.ct_net_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(Err)]
lib.ct_net_free.argtypes = [ctypes.c_void_p]
lib.ct_net_blob_data.restype = ctypes.POINTER(ctypes.c_float)
lib.ct_net_blob_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.ct_net_blob_shape.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
lib.ct_net_set_memory_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_float),
                                       ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.POINTER(Err)]

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)


# ---------------------------------------------------------------- the independent Datum codec

def varint(v):
    v &= (1 << 64) - 1  # negative int32 values take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def datum(channels=None, height=None, width=None, data=None, label=None, floats=None, packed=False, encoded=None):
    out = b""
    for f, v in ((1, channels), (2, height), (3, width)):
        if v is not None:
            out += key(f, 0) + varint(v)
    if data is not None:
        out += key(4, 2) + varint(len(data)) + data
    if label is not None:
        out += key(5, 0) + varint(label)
    if floats is not None:
        if packed:
            payload = struct.pack("<%df" % len(floats), *floats)
            out += key(6, 2) + varint(len(payload)) + payload
        else:
            for x in floats:
                out += key(6, 5) + struct.pack("<f", x)
    if encoded is not None:
        out += key(7, 0) + varint(1 if encoded else 0)
    return out


def read_varint(buf, i):
    v = s = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << s
        s += 7
        if not b & 0x80:
            return v, i


def decode(buf):
    """[(field, wire, value)] of one message level."""
    out, i = [], 0
    while i < len(buf):
        k, i = read_varint(buf, i)
        f, w = k >> 3, k & 7
        if w == 0:
            v, i = read_varint(buf, i)
        elif w == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif w == 5:
            v, i = buf[i:i + 4], i + 4
        elif w == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % w)
        out.append((f, w, v))
    return out


def write_lmdb(path, records):
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, v in records:
            txn.put(k.encode(), v)
    env.close()


# ---------------------------------------------------------------- reading through cortado

def forward(text, batches=1, phase=1):
    """Runs a net `batches` times; returns [(data, label)] or the error message."""
    net = ctypes.c_void_p()
    err = Err()
    if lib.ct_net_create_from_text(text.encode(), b"py", None, phase, ctypes.byref(net), ctypes.byref(err)):
        return err.msg.decode()
    out = []
    for _ in range(batches):
        if lib.ct_net_forward(net, None, ctypes.byref(err)):
            lib.ct_net_free(net)
            return err.msg.decode()
        res = []
        for name in (b"data", b"label"):
            shape = (ctypes.c_int * 8)()
            n = lib.ct_net_blob_shape(net, name, shape)
            dims = tuple(shape[i] for i in range(n))
            ptr = lib.ct_net_blob_data(net, name)
            res.append(np.ctypeslib.as_array(ptr, shape=(int(np.prod(dims)),)).reshape(dims).copy())
        out.append(tuple(res))
    lib.ct_net_free(net)
    return out


def data_net(path, batch, tp="", extra=""):
    return ("layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { %s } "
            "data_param { source: '%s' backend: LMDB batch_size: %d %s } }" % (tp, path, batch, extra))


def bgr_planes(rgb):
    """An H x W x 3 RGB array as Caffe's C x H x W planes: B, G, R."""
    return rgb[:, :, ::-1].transpose(2, 0, 1)


def png_bytes(arr, mode):
    b = io.BytesIO()
    Image.fromarray(arr, mode).save(b, format="PNG")
    return b.getvalue()


def jpeg_bytes(arr, mode, quality=90):
    b = io.BytesIO()
    Image.fromarray(arr, mode).save(b, format="JPEG", quality=quality)
    return b.getvalue()


def pil_decode(buf, mode):
    return np.asarray(Image.open(io.BytesIO(buf)).convert(mode))


rng = np.random.default_rng(7)
tmp = tempfile.mkdtemp(prefix="ct_py_data_")

# raw bytes, 3 channels, labels including negative ones
raw = rng.integers(0, 256, size=(6, 3, 5, 7), dtype=np.uint8)
labels = [i * 3 - 4 for i in range(6)]
p = os.path.join(tmp, "raw_lmdb")
write_lmdb(p, [("%08d" % i, datum(3, 5, 7, raw[i].tobytes(), labels[i])) for i in range(6)])
r = forward(data_net(p, 6))
check(isinstance(r, list), "raw: %s" % r)
if isinstance(r, list):
    d, l = r[0]
    check(d.shape == (6, 3, 5, 7) and np.array_equal(d, raw.astype(np.float32)), "raw bytes read bit-exactly")
    check(np.array_equal(l, np.array(labels, np.float32)), "labels (negative too): %s" % l)

# the transform on an independently written record: centre crop in TEST, per-channel mean, scale
r = forward(data_net(p, 6, "crop_size: 3 mean_value: [10, 20.5, 30] scale: 0.25"))
if isinstance(r, list):
    want = (raw[:, :, 1:4, 2:5].astype(np.float32) - np.array([10, 20.5, 30], np.float32)[None, :, None, None]) \
        * np.float32(0.25)
    check(np.array_equal(r[0][0], want), "centre crop + mean_value + scale match numpy")
else:
    check(False, "transform: %s" % r)

# keys are read in key order whatever the insertion order; the stream wraps
p = os.path.join(tmp, "order_lmdb")
write_lmdb(p, [("%08d" % i, datum(1, 1, 2, bytes([i, 255 - i]), i)) for i in (4, 0, 3, 1, 2)])
r = forward(data_net(p, 3), batches=3)
if isinstance(r, list):
    seen = np.concatenate([b[1] for b in r])
    check(list(seen) == [0, 1, 2, 3, 4, 0, 1, 2, 3], "key order and wrap: %s" % seen)
else:
    check(False, "order: %s" % r)

# float_data, unpacked (as Caffe writes it) and packed
fl = rng.standard_normal((4, 2, 3, 4)).astype(np.float32)
for packed in (False, True):
    p = os.path.join(tmp, "float_lmdb_%d" % packed)
    write_lmdb(p, [("%08d" % i, datum(2, 3, 4, None, i, list(map(float, fl[i].ravel())), packed)) for i in range(4)])
    r = forward(data_net(p, 4, "scale: 2"))
    check(isinstance(r, list) and np.array_equal(r[0][0], fl * np.float32(2)),
          "float_data (packed=%s) read bit-exactly: %s" % (packed, r if not isinstance(r, list) else ""))

# encoded PNG: colour (B, G, R planes) and gray, lossless so exact
rgb = rng.integers(0, 256, size=(3, 9, 11, 3), dtype=np.uint8)
gray = rng.integers(0, 256, size=(3, 9, 11), dtype=np.uint8)
p = os.path.join(tmp, "png_lmdb")
write_lmdb(p, [("%08d" % i, datum(data=png_bytes(rgb[i], "RGB"), label=i, encoded=True)) for i in range(3)])
r = forward(data_net(p, 3))
check(isinstance(r, list) and np.array_equal(r[0][0], np.stack([bgr_planes(x) for x in rgb]).astype(np.float32)),
      "encoded colour PNG decodes to B, G, R planes exactly: %s" % ("" if isinstance(r, list) else r))
p = os.path.join(tmp, "pngg_lmdb")
write_lmdb(p, [("%08d" % i, datum(data=png_bytes(gray[i], "L"), label=i, encoded=True)) for i in range(3)])
r = forward(data_net(p, 3))
check(isinstance(r, list) and np.array_equal(r[0][0], gray[:, None].astype(np.float32)),
      "encoded gray PNG decodes exactly")
# force_color on a gray PNG: three equal planes
r = forward(data_net(p, 3, "force_color: true"))
check(isinstance(r, list) and r[0][0].shape == (3, 3, 9, 11) and
      np.array_equal(r[0][0], np.repeat(gray[:, None], 3, axis=1).astype(np.float32)), "force_color on gray PNG")

# encoded JPEG against PIL's decode (both libjpeg: expect exact, allow 1)
smooth = np.clip(np.add.outer(np.arange(16) * 9, np.arange(20) * 6)[:, :, None] + np.array([0, 40, 90]), 0, 255)
jpg = [jpeg_bytes(smooth.astype(np.uint8), "RGB"), jpeg_bytes(rgb[0], "RGB", 75)]
r = []
for i, j in enumerate(jpg):  # two sizes: one database each
    p = os.path.join(tmp, "jpeg%d_lmdb" % i)
    write_lmdb(p, [("00000000", datum(data=j, label=i, encoded=True))])
    ri = forward(data_net(p, 1))
    r = r + ri if isinstance(r, list) and isinstance(ri, list) else ri
if isinstance(r, list):
    for i, j in enumerate(jpg):
        want = bgr_planes(pil_decode(j, "RGB")).astype(np.float32)
        got = r[i][0][0]
        diff = np.abs(got - want).max() if got.shape == want.shape else 999
        print("JPEG %d: max |cortado - PIL| = %s" % (i, diff)); check(diff <= 1, "JPEG %d within 1 of PIL's decode (max diff %s, exact: %s)" % (i, diff, diff == 0))
    jg = jpeg_bytes(gray[0], "L")
    p2 = os.path.join(tmp, "jpegg_lmdb")
    write_lmdb(p2, [("00000000", datum(data=jg, label=0, encoded=True))])
    r2 = forward(data_net(p2, 1))
    check(isinstance(r2, list) and np.abs(r2[0][0][0, 0] - pil_decode(jg, "L")).max() <= 1, "gray JPEG")
else:
    check(False, "jpeg: %s" % r)

# ---------------------------------------------------------------- damaged records and files

p = os.path.join(tmp, "bad_lmdb")
trunc_jpeg = jpg[0][:len(jpg[0]) // 2]
write_lmdb(p, [("00000000_ok", datum(1, 2, 2, b"abcd", 0)),
               ("00000001_short", datum(1, 2, 2, b"abc", 1))])
r = forward(data_net(p, 2))
check(isinstance(r, str) and "00000001_short" in r and "3 bytes" in r, "wrong-size record named: %s" % r)
p = os.path.join(tmp, "badjpeg_lmdb")
write_lmdb(p, [("00000000_ok", datum(data=jpg[0], label=0, encoded=True)),
               ("00000001_cut.jpg", datum(data=trunc_jpeg, label=1, encoded=True))])
r = forward(data_net(p, 2))
check(isinstance(r, str) and "00000001_cut.jpg" in r and "JPEG" in r, "truncated JPEG record named: %s" % r)
p = os.path.join(tmp, "trunc_lmdb")
write_lmdb(p, [("%08d" % i, datum(3, 5, 7, raw[i % 6].tobytes(), i)) for i in range(400)])
size = os.path.getsize(os.path.join(p, "data.mdb"))
with open(os.path.join(p, "data.mdb"), "r+b") as f:
    f.truncate(size // 2)
r = forward(data_net(p, 10), batches=50)
check(isinstance(r, str) and "trunc_lmdb" in r, "truncated LMDB written by python: %s" % r)

# ImageData: PIL-written files, a truncated JPEG and a missing file named
imgdir = os.path.join(tmp, "img")
os.mkdir(imgdir)
for i in range(3):
    Image.fromarray(rgb[i], "RGB").save(os.path.join(imgdir, "c%d.png" % i))
with open(os.path.join(imgdir, "cut.jpg"), "wb") as f:
    f.write(trunc_jpeg)
lst = os.path.join(tmp, "list.txt")
with open(lst, "w") as f:
    f.write("".join("img/c%d.png %d\n" % (i, 5 + i) for i in range(3)))


def image_net(listfile, batch, extra=""):
    return ("layer { name: 'd' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
            "root_folder: '%s/' batch_size: %d %s } }" % (listfile, tmp, batch, extra))


r = forward(image_net(lst, 3))
check(isinstance(r, list) and np.array_equal(r[0][0], np.stack([bgr_planes(x) for x in rgb]).astype(np.float32))
      and list(r[0][1]) == [5, 6, 7], "ImageData reads PIL's PNGs exactly")
r = forward(image_net(lst, 3, "new_height: 18 new_width: 22"))
if isinstance(r, list):
    # bilinear with pixel centres aligned: a 2x upscale of a smooth image stays within 1 of numpy's
    src = rgb[0].astype(np.float64)
    ys = np.clip((np.arange(18) + 0.5) / 2 - 0.5, 0, None)
    xs = np.clip((np.arange(22) + 0.5) / 2 - 0.5, 0, None)
    y0 = np.minimum(np.floor(ys).astype(int), 8)
    x0 = np.minimum(np.floor(xs).astype(int), 10)
    y1, x1 = np.minimum(y0 + 1, 8), np.minimum(x0 + 1, 10)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bot = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    want = bgr_planes(np.floor(top * (1 - fy) + bot * fy + 0.5))
    check(np.abs(r[0][0][0] - want).max() <= 1, "resize: bilinear, max diff %g" % np.abs(r[0][0][0] - want).max())
else:
    check(False, "resize: %s" % r)
for bad, name in (("img/cut.jpg 1\n", "img/cut.jpg"), ("img/missing.png 1\n", "img/missing.png")):
    with open(lst + ".bad", "w") as f:
        f.write("img/c0.png 0\n" + bad)
    r = forward(image_net(lst + ".bad", 2))
    check(isinstance(r, str) and name in r, "ImageData names %s: %s" % (name, r))

# ---------------------------------------------------------------- cortado convert, read here

def lmdb_items(path):
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        items = [(bytes(k).decode(), bytes(v)) for k, v in txn.cursor()]
    env.close()
    return items


def fields(buf):
    d = {}
    for f, w, v in decode(buf):
        d.setdefault(f, []).append(v)
    return d


def run(*args):
    return subprocess.run([CORTADO] + list(args), capture_output=True, text=True)


out = os.path.join(tmp, "conv_lmdb")
res = run("convert", "--list=" + lst, "--root=" + tmp + "/", "--db=" + out)
check(res.returncode == 0, "convert list: %s" % res.stderr)
if res.returncode == 0:
    items = lmdb_items(out)
    check([k for k, _ in items] == ["%08d_img/c%d.png" % (i, i) for i in range(3)], "Caffe's keys: %s" % items[:1])
    for i, (k, v) in enumerate(items):
        d = fields(v)
        check(d.get(1) == [3] and d.get(2) == [9] and d.get(3) == [11] and d.get(5) == [5 + i] and 7 not in d,
              "Datum fields of %s: %s" % (k, {f: d[f] for f in d if f != 4}))
        check(d.get(4, [b""])[0] == bgr_planes(rgb[i]).tobytes(), "raw pixels of %s are B, G, R planes" % k)
out = os.path.join(tmp, "conv_enc_lmdb")
res = run("convert", "--list=" + lst, "--root=" + tmp + "/", "--db=" + out, "--encoded", "--shuffle")
check(res.returncode == 0, "convert --encoded: %s" % res.stderr)
if res.returncode == 0:
    items = lmdb_items(out)
    check(sorted(k[9:] for k, _ in items) == ["img/c%d.png" % i for i in range(3)], "shuffled keys")
    for k, v in items:
        d = fields(v)
        with open(os.path.join(tmp, k[9:]), "rb") as f:
            check(d.get(7) == [1] and d.get(4, [b""])[0] == f.read(), "%s stores the file's bytes, encoded" % k)
out = os.path.join(tmp, "conv_gray_lmdb")
res = run("convert", "--list=" + lst, "--root=" + tmp + "/", "--db=" + out, "--gray", "--resize_height=4",
          "--resize_width=5", "--backend=lmdb")
check(res.returncode == 0, "convert --gray --resize: %s" % res.stderr)
if res.returncode == 0:
    d = fields(lmdb_items(out)[0][1])
    check(d.get(1) == [1] and d.get(2) == [4] and d.get(3) == [5] and len(d.get(4, [b""])[0]) == 20, "gray resized")
# IDX (plain and gzipped) -> "%08d" keys, 1 x H x W
idx_img = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
idx_lab = np.array([3, 1, 4, 1, 5], np.uint8)
with gzip.open(os.path.join(tmp, "img.idx.gz"), "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 4, 3) + idx_img.tobytes())
with open(os.path.join(tmp, "lab.idx"), "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + idx_lab.tobytes())
out = os.path.join(tmp, "idx_lmdb")
res = run("convert", "--images=" + os.path.join(tmp, "img.idx.gz"), "--labels=" + os.path.join(tmp, "lab.idx"),
          "--db=" + out)
check(res.returncode == 0, "convert IDX: %s" % res.stderr)
if res.returncode == 0:
    items = lmdb_items(out)
    check([k for k, _ in items] == ["%08d" % i for i in range(5)], "MNIST keys: %s" % [k for k, _ in items])
    ok = all(fields(v).get(4) == [idx_img[i].tobytes()] and fields(v).get(5) == [int(idx_lab[i])] and
             fields(v).get(1) == [1] and fields(v).get(2) == [4] and fields(v).get(3) == [3]
             for i, (_, v) in enumerate(items))
    check(ok, "IDX records as Datum")
    mean = os.path.join(tmp, "mean.binaryproto")
    res = run("compute-mean", "--db=" + out, "-o", mean)
    check(res.returncode == 0 and "mean_value channel [0]" in res.stderr, "compute-mean: %s" % res.stderr)
    if res.returncode == 0:
        with open(mean, "rb") as f:
            b = fields(f.read())
        vals = np.frombuffer(b.get(5, [b""])[0], "<f4")
        check(b.get(1) == [1] and b.get(2) == [1] and b.get(3) == [4] and b.get(4) == [3], "mean blob legacy shape")
        check(vals.shape == (12,) and np.allclose(vals, idx_img.reshape(5, -1).mean(0), atol=1e-4), "mean values")
# errors: a missing file named, nothing left at the target; an existing target refused
with open(lst + ".missing", "w") as f:
    f.write("img/c0.png 0\nimg/nothere.png 1\n")
out = os.path.join(tmp, "fail_lmdb")
res = run("convert", "--list=" + lst + ".missing", "--root=" + tmp + "/", "--db=" + out)
check(res.returncode == 1 and "img/nothere.png" in res.stderr and not os.path.exists(out) and
      not any(".tmp-" in n for n in os.listdir(tmp)), "missing image: %s" % res.stderr.strip())
res = run("convert", "--list=" + lst, "--db=" + os.path.join(tmp, "conv_lmdb"), "--root=" + tmp + "/")
check(res.returncode == 1 and "already exists" in res.stderr, "existing target: %s" % res.stderr.strip())
res = run("convert", "--list=" + lst, "--db=x", "--backend=rocksdb")
check(res.returncode == 2 and "rocksdb" in res.stderr, "bad backend is a usage error: %s" % res.stderr.strip())

# ---------------------------------------------------------------- MemoryData from the C API

net = ctypes.c_void_p()
err = Err()
text = ("layer { name: 'm' type: 'MemoryData' top: 'data' top: 'label' transform_param { scale: 0.5 } "
        "memory_data_param { batch_size: 2 channels: 2 height: 2 width: 2 } }")
check(lib.ct_net_create_from_text(text.encode(), b"mem", None, 1, ctypes.byref(net), ctypes.byref(err)) == 0,
      err.msg)
x = rng.standard_normal((4, 2, 2, 2)).astype(np.float32)
y = np.arange(4, dtype=np.float32) + 10
fp = ctypes.POINTER(ctypes.c_float)
check(lib.ct_net_set_memory_data(net, b"m", x.ctypes.data_as(fp), y.ctypes.data_as(fp), 4, ctypes.byref(err)) == 0,
      err.msg)
got = []
for _ in range(3):
    lib.ct_net_forward(net, None, ctypes.byref(err))
    got.append((np.ctypeslib.as_array(lib.ct_net_blob_data(net, b"data"), shape=(16,)).copy(),
                np.ctypeslib.as_array(lib.ct_net_blob_data(net, b"label"), shape=(2,)).copy()))
want = [(x[[0, 1]] * 0.5, y[[0, 1]]), (x[[2, 3]] * 0.5, y[[2, 3]]), (x[[0, 1]] * 0.5, y[[0, 1]])]
check(all(np.array_equal(g[0], w[0].ravel()) and np.array_equal(g[1], w[1]) for g, w in zip(got, want)),
      "MemoryData serves the arrays in order, wrapping")
lib.ct_net_free(net)

subprocess.run(["rm", "-rf", tmp])
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
