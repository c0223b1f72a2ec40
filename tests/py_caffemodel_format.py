"""Caffe's .caffemodel wire format, checked with an independent protobuf encoder/decoder.

Files are written here by hand from Caffe's published field numbers (NetParameter.layer = 100,
LayerParameter.name = 1 / type = 2 / blobs = 7, BlobProto.shape = 7 / data = 5 (packed) /
legacy num..width = 1..4, BlobShape.dim = 1 (packed); the V1 format's NetParameter.layers = 2
with V1LayerParameter.name = 4 / blobs = 6), in both the current and the legacy layouts, and
loaded by cortado; files cortado writes are decoded here and checked field by field. No cortado
code takes part in the encoding or decoding.
"""
import ctypes
import os
import struct
import sys
import tempfile

import numpy as np

lib = ctypes.CDLL(os.environ.get("CT_TESTKIT", "../build/tests/libct_testkit.so"))


class Err(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]


lib.ct_net_create_from_text.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Err)]
lib.ct_net_load_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(Err)]
lib.ct_net_save_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(Err)]
lib.ct_net_free.argtypes = [ctypes.c_void_p]
lib.ct_net_param_data.restype = ctypes.POINTER(ctypes.c_float)
lib.ct_net_param_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)


# ---------------------------------------------------------------- a minimal protobuf codec

def varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint((field << 3) | wire)


def ld(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def packed_floats(field, values):
    return ld(field, struct.pack("<%df" % len(values), *values))


def packed_varints(field, values):
    return ld(field, b"".join(varint(v) for v in values))


def v_int(field, v):
    return key(field, 0) + varint(v)


def decode(buf):
    """bytes -> list of (field, wire, value) with value bytes for length-delimited."""
    i, out = 0, []
    while i < len(buf):
        k, i = read_varint(buf, i)
        field, wire = k >> 3, k & 7
        if wire == 0:
            v, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wire)
        out.append((field, wire, v))
    return out


def read_varint(buf, i):
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def blob(shape, values, legacy=False):
    if legacy:
        dims = [1] * (4 - len(shape)) + list(shape)
        head = b"".join(v_int(f, d) for f, d in zip((1, 2, 3, 4), dims))
    else:
        head = ld(7, packed_varints(1, shape))
    return head + packed_floats(5, values)


NET = """
name: 'fmt'
layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
layer { name: 'conv' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: 'fc' type: 'InnerProduct' bottom: 'c' top: 'f' inner_product_param { num_output: 5 } }
"""
SHAPES = {"conv": [(4, 3, 3, 3), (4,)], "fc": [(5, 64), (5,)]}


def make_net():
    h = ctypes.c_void_p()
    e = Err()
    rc = lib.ct_net_create_from_text(NET.encode(), b"fmt.prototxt", None, 1, ctypes.byref(h), ctypes.byref(e))
    assert rc == 0, e.msg.decode()
    return h


def params(h, layer, j, shape):
    n = int(np.prod(shape))
    return np.ctypeslib.as_array(lib.ct_net_param_data(h, layer.encode(), j), shape=(n,)).reshape(shape).copy()


rng = np.random.default_rng(3)
values = {(l, j): rng.standard_normal(s).astype(np.float32) for l, ss in SHAPES.items() for j, s in enumerate(ss)}

with tempfile.TemporaryDirectory() as tmp:
    # current layout, legacy 4-D blob shapes, and the V1 layers layout
    for variant in ("current", "legacy-shape", "v1"):
        msg = ld(1, b"fmt")
        for layer in ("conv", "fc", "not_in_net"):
            shapes = SHAPES.get(layer, [(2,)])
            blobs = b""
            for j, s in enumerate(shapes):
                vals = values.get((layer, j), np.ones(s, np.float32)).ravel().tolist()
                blobs += ld(6 if variant == "v1" else 7, blob(s, vals, legacy=(variant == "legacy-shape")))
            if variant == "v1":
                msg += ld(2, ld(4, layer.encode()) + blobs)
            else:
                msg += ld(100, ld(1, layer.encode()) + ld(2, b"Whatever") + blobs)
        path = os.path.join(tmp, variant + ".caffemodel")
        with open(path, "wb") as f:
            f.write(msg)
        h = make_net()
        e = Err()
        rc = lib.ct_net_load_weights(h, path.encode(), ctypes.byref(e))
        check(rc == 0, "%s: load failed: %s" % (variant, e.msg.decode()))
        for (layer, j), v in values.items():
            got = params(h, layer, j, v.shape)
            check(np.array_equal(got, v), "%s: %s blob %d differs" % (variant, layer, j))
        lib.ct_net_free(h)

    # a wrong shape is refused with the layer named
    bad = ld(100, ld(1, b"conv") + ld(7, blob((4, 3, 5, 5), [0.0] * 300)) + ld(7, blob((4,), [0.0] * 4)))
    path = os.path.join(tmp, "bad.caffemodel")
    with open(path, "wb") as f:
        f.write(bad)
    h = make_net()
    e = Err()
    rc = lib.ct_net_load_weights(h, path.encode(), ctypes.byref(e))
    check(rc != 0 and b"conv" in e.msg, "shape mismatch refused naming the layer: %s" % e.msg.decode())
    # truncated file: an error, not a crash
    with open(path, "wb") as f:
        f.write(bad[:len(bad) // 2])
    rc = lib.ct_net_load_weights(h, path.encode(), ctypes.byref(e))
    check(rc != 0 and path.encode() in e.msg, "truncated file refused naming it: %s" % e.msg.decode())
    lib.ct_net_free(h)

    # what cortado writes, decoded independently
    h = make_net()
    src = os.path.join(tmp, "current.caffemodel")
    check(lib.ct_net_load_weights(h, src.encode(), ctypes.byref(e)) == 0, "reload")
    out = os.path.join(tmp, "written.caffemodel")
    check(lib.ct_net_save_weights(h, out.encode(), ctypes.byref(e)) == 0, "save: %s" % e.msg.decode())
    lib.ct_net_free(h)
    top = decode(open(out, "rb").read())
    names = [v.decode() for f, w, v in top if f == 1]
    check(names == ["fmt"], "net name field 1: %r" % names)
    layers = [decode(v) for f, w, v in top if f == 100]
    check(len(layers) == 3, "three layers under field 100, got %d" % len(layers))
    for lay in layers:
        lname = [v.decode() for f, w, v in lay if f == 1][0]
        ltype = [v.decode() for f, w, v in lay if f == 2][0]
        blobs = [decode(v) for f, w, v in lay if f == 7]
        check(len(blobs) == len(SHAPES.get(lname, [])), "%s: %d blobs" % (lname, len(blobs)))
        check(ltype in ("Input", "Convolution", "InnerProduct"), "%s: type %s" % (lname, ltype))
        for j, b in enumerate(blobs):
            shape_msg = [decode(v) for f, w, v in b if f == 7][0]
            dims = []
            for f, w, v in shape_msg:
                if f == 1 and w == 2:
                    i = 0
                    while i < len(v):
                        d, i = read_varint(v, i)
                        dims.append(d)
                elif f == 1:
                    dims.append(v)
            data = b"".join(v for f, w, v in b if f == 5 and w == 2)
            arr = np.frombuffer(data, dtype="<f4")
            want = values[(lname, j)]
            check(tuple(dims) == want.shape, "%s blob %d shape %r" % (lname, j, dims))
            check(arr.size == want.size and np.array_equal(arr.reshape(want.shape), want),
                  "%s blob %d data" % (lname, j))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
