"""cortado from Python, in the spirit of pycaffe: nets and solvers over libcortado.so (ctypes),
blobs and parameters as numpy arrays that view cortado's memory (no copies).

    import cortado
    net = cortado.Net("lenet_train_test.prototxt", weights="lenet_iter_10000.caffemodel",
                      phase=cortado.TEST)
    out = net.forward()                       # {"accuracy": array(0.9), "loss": array(0.3)}
    net.blobs["conv1"].data                   # numpy view, shape (64, 20, 24, 24)
    net.params["conv1"][0].data               # the weights, a view: writing it changes the net
    solver = cortado.Solver("lenet_solver.prototxt")
    solver.step(100); solver.snapshot()

The library is found through $CORTADO_LIB (a path to libcortado.so), else beside $CORTADO (the
cortado binary) or in $CT_BUILD_DIR, else in build*/ of the source tree this file lives in, else
on the system's library path. Every failure raises cortado.CortadoError with cortado's message.

Views stay valid until the blob is reshaped; .data and .diff make a fresh view on every access,
as pycaffe's do, so take them again after a reshape.
"""
import collections
import ctypes
import ctypes.util
import glob
import os

import numpy as np

from .layer import Layer  # Python layers (type: "Python"): pycaffe's caffe.Layer

__all__ = ["TRAIN", "TEST", "Net", "Solver", "CortadoError", "library_path", "Layer"]

TRAIN = 0
TEST = 1


class CortadoError(RuntimeError):
    """A cortado call failed; `status` is the status name, `args[0]` cortado's message."""

    def __init__(self, message, status="error"):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ the library

class _Error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]


_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
_EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _SolverOptions(ctypes.Structure):
    # Mirrors ct_solver_options in include/cortado.h, field for field.
    _fields_ = [("weights", ctypes.c_char_p), ("snapshot", ctypes.c_char_p), ("quiet", ctypes.c_int),
                ("log", _LOG_FN), ("log_ctx", ctypes.c_void_p), ("event", _EVENT_FN),
                ("event_ctx", ctypes.c_void_p), ("partitions", ctypes.c_int), ("devices", ctypes.c_char_p)]


def _candidates():
    env = os.environ.get("CORTADO_LIB")
    if env:
        yield env
        return
    if os.environ.get("CORTADO"):
        yield os.path.join(os.path.dirname(os.path.abspath(os.environ["CORTADO"])), "libcortado.so")
    if os.environ.get("CT_BUILD_DIR"):
        yield os.path.join(os.environ["CT_BUILD_DIR"], "libcortado.so")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    yield os.path.join(root, "build", "libcortado.so")
    for p in sorted(glob.glob(os.path.join(root, "build*", "libcortado.so"))):
        yield p
    found = ctypes.util.find_library("cortado")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        tried.append(path)
        if os.path.exists(path) or not os.path.dirname(path):
            try:
                return ctypes.CDLL(path), path
            except OSError as e:
                raise ImportError("cortado: cannot load %s: %s; rebuild it with 'make build' or point "
                                  "CORTADO_LIB at a working libcortado.so" % (path, e))
    raise ImportError("cortado: libcortado.so not found (looked at: %s); build it with 'make build' "
                      "(target cortado_shared) or set CORTADO_LIB to its path" % ", ".join(tried))


_lib, library_path = _load()
# Python layers of nets made here run in this interpreter (python/pylayer.c); a library built
# without Python's headers has no runtime and refuses them
if hasattr(_lib, "ctpy_install"):
    _lib.ctpy_install.argtypes = [ctypes.c_int]
    _lib.ctpy_install.restype = None
    _lib.ctpy_install(0)
_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int
_FP = ctypes.POINTER(ctypes.c_float)
_SHAPE = ctypes.c_int * 8


def _sig(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_E = ctypes.POINTER(_Error)
_sig("ct_status_name", _S, _I)
_sig("ct_net_create", _I, _S, _I, _I, ctypes.POINTER(_S), _S, ctypes.POINTER(_P), _E)
_sig("ct_net_create_from_text", _I, _S, _S, _S, _I, ctypes.POINTER(_P), _E)
_sig("ct_net_free", None, _P)
_sig("ct_net_set_seed", None, _P, ctypes.c_uint64)
_sig("ct_net_forward", _I, _P, _FP, _E)
_sig("ct_net_backward", _I, _P, _E)
_sig("ct_net_clear_param_diffs", None, _P)
_sig("ct_net_reshape", _I, _P, _E)
_sig("ct_net_blob_shape", _I, _P, _S, _SHAPE)
_sig("ct_net_blob_data", _FP, _P, _S)
_sig("ct_net_blob_diff", _FP, _P, _S)
_sig("ct_net_blob_reshape", _I, _P, _S, _I, ctypes.POINTER(_I), _E)
_sig("ct_net_blob_name", _S, _P, _I)
_sig("ct_net_num_outputs", _I, _P)
_sig("ct_net_output_name", _S, _P, _I)
_sig("ct_net_param_count", _I, _P, _S)
_sig("ct_net_param_shape", _I, _P, _S, _I, _SHAPE)
_sig("ct_net_param_data", _FP, _P, _S, _I)
_sig("ct_net_param_diff", _FP, _P, _S, _I)
_sig("ct_net_num_layers", _I, _P)
_sig("ct_net_layer_name", _S, _P, _I)
_sig("ct_net_layer_type", _S, _P, _I)
_sig("ct_net_load_weights", _I, _P, _S, _E)
_sig("ct_net_save_weights", _I, _P, _S, _E)
_sig("ctpy_layer_num_blobs", _I, _P, _I, _I)
_sig("ctpy_layer_blob", _S, _P, _I, _I, _I)
_sig("ct_solver_create", _I, _S, ctypes.POINTER(_SolverOptions), ctypes.POINTER(_P), _E)
_sig("ct_solver_free", None, _P)
_sig("ct_solver_step", _I, _P, _I, _E)
_sig("ct_solver_solve", _I, _P, _E)
_sig("ct_solver_snapshot", _I, _P, ctypes.POINTER(_P), ctypes.POINTER(_P), _E)
_sig("ct_solver_restore", _I, _P, _S, _E)
_sig("ct_solver_test", _I, _P, _I, _FP, _I, _E)
_sig("ct_solver_iter", _I, _P)
_sig("ct_solver_net", _P, _P)
_sig("ct_solver_num_test_nets", _I, _P)
_sig("ct_solver_test_net", _P, _P, _I)

_libc = ctypes.CDLL(None)
_libc.free.argtypes = [_P]
_libc.free.restype = None


def _b(s):
    return s.encode() if isinstance(s, str) else s


def _s(b):
    return b.decode("utf-8", "replace") if b is not None else None


def _check(status, err):
    if status != 0:
        msg = err.msg.decode("utf-8", "replace") or _s(_lib.ct_status_name(status))
        raise CortadoError(msg, _s(_lib.ct_status_name(status)))


def _view(ptr, shape):
    """A numpy float32 array over cortado's memory (no copy)."""
    count = int(np.prod(shape)) if shape else 1
    if count == 0 or not ptr:
        return np.zeros(shape, dtype=np.float32)
    flat = np.ctypeslib.as_array(ptr, shape=(count,))
    return flat.reshape(shape)


# ------------------------------------------------------------------ blobs

class Blob:
    """A named blob (a layer's top) of a net: .data, .diff (numpy views), .shape, .count."""

    def __init__(self, net, name):
        self._net = net
        self.name = name

    @property
    def shape(self):
        buf = _SHAPE()
        n = _lib.ct_net_blob_shape(self._net._h, _b(self.name), buf)
        if n < 0:
            raise CortadoError("no blob named '%s' in net %s" % (self.name, self._net._source))
        return tuple(buf[:n])

    @property
    def count(self):
        return int(np.prod(self.shape))

    @property
    def num(self):
        return self.shape[0]

    @property
    def data(self):
        return _view(_lib.ct_net_blob_data(self._net._h, _b(self.name)), self.shape)

    @property
    def diff(self):
        return _view(_lib.ct_net_blob_diff(self._net._h, _b(self.name)), self.shape)

    def reshape(self, *shape):
        """Sets this blob's shape (an input's, usually); call net.reshape() to propagate it."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        arr = (_I * max(1, len(shape)))(*[int(d) for d in shape])
        err = _Error()
        _check(_lib.ct_net_blob_reshape(self._net._h, _b(self.name), len(shape), arr, ctypes.byref(err)), err)

    def __repr__(self):
        return "<cortado.Blob %s %s>" % (self.name, self.shape)


class ParamBlob:
    """A learnable parameter: net.params[layer][i] (0 weights, 1 bias)."""

    def __init__(self, net, layer, index):
        self._net = net
        self.layer = layer
        self.index = index

    @property
    def shape(self):
        buf = _SHAPE()
        n = _lib.ct_net_param_shape(self._net._h, _b(self.layer), self.index, buf)
        if n < 0:
            raise CortadoError("layer '%s' has no parameter #%d" % (self.layer, self.index))
        return tuple(buf[:n])

    @property
    def count(self):
        return int(np.prod(self.shape))

    @property
    def data(self):
        return _view(_lib.ct_net_param_data(self._net._h, _b(self.layer), self.index), self.shape)

    @property
    def diff(self):
        return _view(_lib.ct_net_param_diff(self._net._h, _b(self.layer), self.index), self.shape)

    def __repr__(self):
        return "<cortado.ParamBlob %s[%d] %s>" % (self.layer, self.index, self.shape)


# ------------------------------------------------------------------ nets

class Net:
    """A net built from a NetParameter prototxt for one phase.

    Net(prototxt, weights=None, phase=TEST, level=0, stages=None); pycaffe's positional forms
    Net(prototxt, phase) and Net(prototxt, weights, phase) work too.
    """

    def __init__(self, prototxt, weights=None, phase=TEST, level=0, stages=None, _handle=None, _owner=None):
        if _handle is not None:
            self._h, self._owner, self._owned = _handle, _owner, False
            self._source = "(solver net)"
            return
        if isinstance(weights, int) and not isinstance(weights, bool):
            weights, phase = None, weights  # Net(prototxt, phase)
        if phase not in (TRAIN, TEST):
            raise ValueError("phase must be cortado.TRAIN or cortado.TEST, got %r" % (phase,))
        self._source = str(prototxt)
        if not os.path.exists(prototxt):
            raise CortadoError("cannot open the net prototxt '%s': no such file" % prototxt, "I/O error")
        if weights is not None and not os.path.exists(weights):
            raise CortadoError("cannot open the weights '%s': no such file" % weights, "I/O error")
        st = None
        if stages:
            st = (_S * (len(stages) + 1))(*[_b(s) for s in stages], None)
        h = _P()
        err = _Error()
        self._h, self._owned = None, True
        _check(_lib.ct_net_create(_b(prototxt), phase, level, st, _b(weights) if weights else None,
                                  ctypes.byref(h), ctypes.byref(err)), err)
        self._h = h.value
        self._owner = None

    def __del__(self):
        if getattr(self, "_owned", False) and getattr(self, "_h", None):
            _lib.ct_net_free(self._h)
            self._h = None

    # -- structure
    @property
    def blobs(self):
        """OrderedDict name -> Blob, in creation order."""
        d = collections.OrderedDict()
        i = 0
        while True:
            name = _lib.ct_net_blob_name(self._h, i)
            if name is None:
                return d
            d[_s(name)] = Blob(self, _s(name))
            i += 1

    @property
    def params(self):
        """OrderedDict layer name -> [ParamBlob, ...] for every layer with parameters."""
        d = collections.OrderedDict()
        for name in self._layer_names:
            n = _lib.ct_net_param_count(self._h, _b(name))
            if n > 0:
                d[name] = [ParamBlob(self, name, i) for i in range(n)]
        return d

    @property
    def _layer_names(self):
        return [_s(_lib.ct_net_layer_name(self._h, i)) for i in range(_lib.ct_net_num_layers(self._h))]

    @property
    def layer_names(self):
        return self._layer_names

    @property
    def layer_types(self):
        return [_s(_lib.ct_net_layer_type(self._h, i)) for i in range(_lib.ct_net_num_layers(self._h))]

    def _layer_blobs(self, i, top):
        return [_s(_lib.ctpy_layer_blob(self._h, i, top, j))
                for j in range(max(0, _lib.ctpy_layer_num_blobs(self._h, i, top)))]

    @property
    def bottom_names(self):
        return collections.OrderedDict((n, self._layer_blobs(i, 0)) for i, n in enumerate(self._layer_names))

    @property
    def top_names(self):
        return collections.OrderedDict((n, self._layer_blobs(i, 1)) for i, n in enumerate(self._layer_names))

    @property
    def inputs(self):
        """The tops of the Input layers, the blobs forward(**kwargs) fills."""
        names = []
        for i, t in enumerate(self.layer_types):
            if t == "Input":
                names += self._layer_blobs(i, 1)
        return names

    @property
    def outputs(self):
        return [_s(_lib.ct_net_output_name(self._h, i)) for i in range(_lib.ct_net_num_outputs(self._h))]

    # -- running
    def reshape(self):
        err = _Error()
        _check(_lib.ct_net_reshape(self._h, ctypes.byref(err)), err)

    def forward(self, blobs=None, **kwargs):
        """Runs the net forward. Keyword arguments fill input blobs by name (reshaping them when
        the shape differs). Returns {output name: its data} plus any names in `blobs`."""
        inputs = {n: (self._blob(n), np.asarray(v, dtype=np.float32)) for n, v in kwargs.items()}
        reshaped = False
        for blob, arr in inputs.values():
            if tuple(arr.shape) != blob.shape:
                blob.reshape(arr.shape)
                reshaped = True
        if reshaped:
            self.reshape()
        for blob, arr in inputs.values():
            blob.data[...] = arr
        loss = ctypes.c_float()
        err = _Error()
        _check(_lib.ct_net_forward(self._h, ctypes.byref(loss), ctypes.byref(err)), err)
        self.loss = loss.value
        names = list(self.outputs) + list(blobs or [])
        return {n: self._blob(n).data for n in names}

    def backward(self, diffs=None):
        """Runs backward from the losses (parameter gradients accumulate; see
        clear_param_diffs). Returns {input name: its diff} plus any names in `diffs`."""
        err = _Error()
        _check(_lib.ct_net_backward(self._h, ctypes.byref(err)), err)
        names = list(self.inputs) + list(diffs or [])
        return {n: self._blob(n).diff for n in names}

    def clear_param_diffs(self):
        _lib.ct_net_clear_param_diffs(self._h)

    def set_seed(self, seed):
        _lib.ct_net_set_seed(self._h, int(seed))

    def _blob(self, name):
        if _lib.ct_net_blob_shape(self._h, _b(name), _SHAPE()) < 0:
            raise CortadoError("no blob named '%s' in net %s; its blobs are: %s"
                               % (name, self._source, ", ".join(self.blobs)), "not found")
        return Blob(self, name)

    # -- weights
    def copy_from(self, caffemodel):
        """Loads weights by layer name from a .caffemodel."""
        err = _Error()
        _check(_lib.ct_net_load_weights(self._h, _b(caffemodel), ctypes.byref(err)), err)

    def save(self, path):
        """Writes the weights as a .caffemodel."""
        err = _Error()
        _check(_lib.ct_net_save_weights(self._h, _b(path), ctypes.byref(err)), err)


# ------------------------------------------------------------------ solvers

class Solver:
    """A solver from a SolverParameter prototxt: its train net (.net), test nets (.test_nets),
    step(n), solve(), snapshot(), restore(), test(i). `quiet` turns off its log lines; `log` (a
    callable taking a str) receives them instead of stderr."""

    def __init__(self, solver_prototxt, weights=None, snapshot=None, quiet=False, log=None):
        if not os.path.exists(solver_prototxt):
            raise CortadoError("cannot open the solver prototxt '%s': no such file" % solver_prototxt,
                               "I/O error")
        self._h = None
        opt = _SolverOptions()
        opt.weights = _b(weights) if weights else None
        opt.snapshot = _b(snapshot) if snapshot else None
        opt.quiet = 1 if quiet else 0
        if log is not None:
            self._log_cb = _LOG_FN(lambda ctx, line: log(_s(line)))
            opt.log = self._log_cb
        h = _P()
        err = _Error()
        _check(_lib.ct_solver_create(_b(solver_prototxt), ctypes.byref(opt), ctypes.byref(h), ctypes.byref(err)),
               err)
        self._h = h.value
        self.net = Net(None, _handle=_lib.ct_solver_net(self._h), _owner=self)
        self.test_nets = [Net(None, _handle=_lib.ct_solver_test_net(self._h, i), _owner=self)
                          for i in range(_lib.ct_solver_num_test_nets(self._h))]

    def __del__(self):
        if getattr(self, "_h", None):
            _lib.ct_solver_free(self._h)
            self._h = None

    @property
    def iter(self):
        return _lib.ct_solver_iter(self._h)

    def step(self, n):
        if int(n) < 0:
            raise ValueError("step(n) needs n >= 0, got %r" % (n,))
        err = _Error()
        _check(_lib.ct_solver_step(self._h, int(n), ctypes.byref(err)), err)

    def solve(self):
        err = _Error()
        _check(_lib.ct_solver_solve(self._h, ctypes.byref(err)), err)

    def snapshot(self):
        """Writes <prefix>_iter_N.caffemodel and .solverstate; returns their paths."""
        mp, sp = _P(), _P()
        err = _Error()
        _check(_lib.ct_solver_snapshot(self._h, ctypes.byref(mp), ctypes.byref(sp), ctypes.byref(err)), err)
        paths = (_s(ctypes.string_at(mp.value)), _s(ctypes.string_at(sp.value)))
        _libc.free(mp.value)
        _libc.free(sp.value)
        return paths

    def restore(self, solverstate):
        err = _Error()
        _check(_lib.ct_solver_restore(self._h, _b(solverstate), ctypes.byref(err)), err)

    def test(self, which=0):
        """Runs test net `which` over its test_iter batches; returns its mean output values."""
        cap = 4096
        buf = (ctypes.c_float * cap)()
        err = _Error()
        n = _lib.ct_solver_test(self._h, which, buf, cap, ctypes.byref(err))
        if n < 0:
            _check(err.status or 1, err)
        return list(buf[:min(n, cap)])
