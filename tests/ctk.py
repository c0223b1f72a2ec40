"""ctypes access to libct_testkit.so: run one cortado layer on numpy arrays.

    with Layer('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 }',
               [x.shape]) as l:
        l.set_bottom(0, x); l.forward(); y = l.top(0)
        l.set_top_diff(0, g); l.backward(); dx = l.bottom_diff(0); dw = l.blob_diff(0)
"""
import ctypes
import os

import numpy as np

_lib = ctypes.CDLL(os.environ.get("CT_TESTKIT", "../build/tests/libct_testkit.so"))
_lib.ctk_create.restype = ctypes.c_void_p
_lib.ctk_create.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                            ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_ulonglong,
                            ctypes.c_char_p, ctypes.c_int]
_lib.ctk_free.argtypes = [ctypes.c_void_p]
for f in ("ctk_num_tops", "ctk_num_blobs"):
    getattr(_lib, f).argtypes = [ctypes.c_void_p]
_lib.ctk_shape.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
for f in ("ctk_data", "ctk_diff"):
    getattr(_lib, f).restype = ctypes.POINTER(ctypes.c_float)
    getattr(_lib, f).argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
_lib.ctk_forward.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
_lib.ctk_backward.argtypes = [ctypes.c_void_p, ctypes.c_uint]
_lib.ctk_reseed.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong]

BOTTOM, TOP, BLOB = 0, 1, 2


class LayerError(RuntimeError):
    pass


class Layer:
    def __init__(self, text, bottom_shapes, phase=0, seed=1701):
        naxes = (ctypes.c_int * max(1, len(bottom_shapes)))(*[len(s) for s in bottom_shapes])
        flat = [int(d) for s in bottom_shapes for d in s]
        shapes = (ctypes.c_int * max(1, len(flat)))(*flat)
        err = ctypes.create_string_buffer(1024)
        self.h = _lib.ctk_create(text.encode(), len(bottom_shapes), naxes, shapes, phase, seed, err, 1024)
        if not self.h:
            raise LayerError(err.value.decode())

    def close(self):
        if self.h:
            _lib.ctk_free(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _shape(self, which, i):
        buf = (ctypes.c_int * 8)()
        n = _lib.ctk_shape(self.h, which, i, buf)
        if n < 0:
            raise IndexError(i)
        return tuple(buf[k] for k in range(n))

    def _view(self, fn, which, i):
        shape = self._shape(which, i)
        count = int(np.prod(shape)) if shape else 1
        ptr = fn(self.h, which, i)
        return np.ctypeslib.as_array(ptr, shape=(count,)).reshape(shape)

    def num_tops(self):
        return _lib.ctk_num_tops(self.h)

    def num_blobs(self):
        return _lib.ctk_num_blobs(self.h)

    def set_bottom(self, i, x):
        self._view(_lib.ctk_data, BOTTOM, i)[...] = x

    def set_blob(self, i, x):
        self._view(_lib.ctk_data, BLOB, i)[...] = x

    def set_top_diff(self, i, g):
        self._view(_lib.ctk_diff, TOP, i)[...] = g

    def top(self, i):
        return self._view(_lib.ctk_data, TOP, i).copy()

    def blob(self, i):
        return self._view(_lib.ctk_data, BLOB, i).copy()

    def bottom_diff(self, i):
        return self._view(_lib.ctk_diff, BOTTOM, i).copy()

    def blob_diff(self, i):
        return self._view(_lib.ctk_diff, BLOB, i).copy()

    def forward(self):
        err = ctypes.create_string_buffer(1024)
        if _lib.ctk_forward(self.h, err, 1024):
            raise LayerError(err.value.decode())

    def backward(self, mask=0xFFFFFFFF):
        if _lib.ctk_backward(self.h, mask):
            raise LayerError("layer has no backward pass")
