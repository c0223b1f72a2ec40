"""Python layers: pycaffe's Layer API for `type: "Python"` layers.

    layer { name: "loss" type: "Python" bottom: "ip" bottom: "label" top: "loss" loss_weight: 1
            python_param { module: "pyloss" layer: "EuclideanLoss" param_str: "{'scale': 1}" } }

    # pyloss.py, on sys.path (PYTHONPATH) or beside the net's prototxt
    import cortado            # `import caffe` works too in `cortado train` when no caffe is installed
    class EuclideanLoss(cortado.Layer):
        def setup(self, bottom, top): ...          # once; self.param_str and self.phase are set
        def reshape(self, bottom, top): top[0].reshape(1)
        def forward(self, bottom, top): top[0].data[...] = ...
        def backward(self, top, propagate_down, bottom): bottom[0].diff[...] = ...

bottom and top are lists of blobs with pycaffe's Blob API: .data and .diff (numpy float32 views of
cortado's memory, made afresh on each access, so take them again after a reshape), .shape,
.count, .num, .channels, .height, .width, .reshape(*shape). self.blobs holds learnable
parameters: self.blobs.add_blob(*shape) in setup adds one (fill its .data there); cortado's
solver updates them from the .diff backward writes, with the layer's param { lr_mult } entries.

The layer runs on the CPU, on the whole batch, with the interpreter's lock held: from the cortado
command line an embedded interpreter, from `import cortado` the running one. An exception
becomes a cortado error naming the layer, with the traceback.

This file needs nothing but numpy: the command line runs it without loading libcortado.so.
"""
import numpy as np

TRAIN = 0
TEST = 1


class Layer:
    """Base class of Python layers (pycaffe's caffe.Layer). cortado sets `param_str` (the
    python_param's string) and `phase` (TRAIN or TEST) before setup. A subclass defines setup,
    reshape, forward and backward; a data layer's backward may simply pass."""

    def __init__(self, param=None):
        self.param = param
        self.param_str = getattr(param, "param_str", "")
        self.phase = getattr(param, "phase", TRAIN)
        self.blobs = BlobVec(None)

    def setup(self, bottom, top):
        raise NotImplementedError("%s must define setup(self, bottom, top)" % type(self).__name__)

    def reshape(self, bottom, top):
        raise NotImplementedError("%s must define reshape(self, bottom, top)" % type(self).__name__)

    def forward(self, bottom, top):
        raise NotImplementedError("%s must define forward(self, bottom, top)" % type(self).__name__)

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError("%s must define backward(self, top, propagate_down, bottom)" % type(self).__name__)


class Blob:
    """One of a Python layer's bottoms, tops or parameters: pycaffe's Blob over cortado's memory."""

    __slots__ = ("_native", "_handle")

    def __init__(self, native, handle):
        self._native = native
        self._handle = handle

    @property
    def shape(self):
        return tuple(self._native.shape(self._handle))

    @property
    def count(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def _axis(self, i):
        s = self.shape
        return s[i] if len(s) > i else 1

    @property
    def num(self):
        return self._axis(0)

    @property
    def channels(self):
        return self._axis(1)

    @property
    def height(self):
        return self._axis(2)

    @property
    def width(self):
        return self._axis(3)

    def _view(self, side):
        shape = self.shape
        mem = self._native.view(self._handle, side)
        if mem is None:
            return np.zeros(shape, dtype=np.float32)
        return np.frombuffer(mem, dtype=np.float32).reshape(shape)

    @property
    def data(self):
        return self._view(0)

    @data.setter
    def data(self, value):
        self._view(0)[...] = value

    @property
    def diff(self):
        return self._view(1)

    @diff.setter
    def diff(self, value):
        self._view(1)[...] = value

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self._native.reshape(self._handle, tuple(int(d) for d in shape))

    def __repr__(self):
        return "<cortado Python-layer blob %s>" % (self.shape,)


class BlobVec(list):
    """self.blobs: the layer's learnable parameters. add_blob(*shape) is for setup."""

    def __init__(self, adder):
        super().__init__()
        self._adder = adder

    def add_blob(self, *shape):
        if self._adder is None:
            raise RuntimeError("add_blob is for setup, when cortado builds the layer")
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self.append(self._adder(tuple(int(d) for d in shape)))


class LayerParam:
    """What a Python layer's constructor receives (pycaffe passes the LayerParameter)."""

    def __init__(self, name, type, bottom, top, module, layer, param_str, phase):
        self.name, self.type, self.bottom, self.top = name, type, list(bottom), list(top)
        self.module, self.layer, self.param_str, self.phase = module, layer, param_str, phase


def _make(native, cls, name, bottom_names, top_names, module, layer, param_str, phase, bottoms, tops, adder):
    """Called by cortado: the layer object, with its blobs, before setup."""
    param = LayerParam(name, "Python", bottom_names, top_names, module, layer, param_str, phase)
    obj = cls(param)
    # set whatever the subclass's __init__ did: pycaffe sets these before setup
    obj.param_str = param_str
    obj.phase = phase
    if not isinstance(getattr(obj, "blobs", None), BlobVec):
        obj.blobs = BlobVec(None)
    obj.blobs._adder = lambda shape: Blob(native, adder(shape))
    return obj, [Blob(native, h) for h in bottoms], [Blob(native, h) for h in tops]


def _setup_done(obj):
    obj.blobs._adder = None
