"""libcortado.so through ctypes: finding and loading it, the C signatures, errors, integer
checks, owned handles (with their lock) and pinned numpy views.

Everything here is private to the package; the public names live in net.py, solver.py, ...
"""
import contextlib
import ctypes
import ctypes.util
import glob
import operator
import os
import threading

import numpy as np

INT_MAX = 2 ** 31 - 1


class CortadoError(RuntimeError):
    """A cortado call failed; `status` is the status name, `args[0]` cortado's message."""

    def __init__(self, message, status="error"):
        super().__init__(message)
        self.status = status


CortadoError.__module__ = "cortado"  # shown as cortado.CortadoError in tracebacks


# ------------------------------------------------------------------ finding the library

def _candidates():
    env = os.environ.get("CORTADO_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    # installed: the library beside the package, or in the lib/ of the same prefix
    yield os.path.join(here, "libcortado.so")
    if os.environ.get("CORTADO"):
        yield os.path.join(os.path.dirname(os.path.abspath(os.environ["CORTADO"])), "libcortado.so")
    if os.environ.get("CT_BUILD_DIR"):
        yield os.path.join(os.environ["CT_BUILD_DIR"], "libcortado.so")
    root = os.path.dirname(os.path.dirname(here))  # the source tree: python/cortado -> .
    yield os.path.join(root, "build", "libcortado.so")
    for p in sorted(glob.glob(os.path.join(root, "build*", "libcortado.so"))):
        yield p
    for up in ("../../../lib", "../../../../lib"):  # <prefix>/lib/python3/dist-packages/cortado
        yield os.path.normpath(os.path.join(here, up, "libcortado.so"))
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


lib, library_path = _load()


class Error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]


LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
HOOK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class SolverOptions(ctypes.Structure):
    # Mirrors ct_solver_options in include/cortado.h, field for field.
    _fields_ = [("weights", ctypes.c_char_p), ("snapshot", ctypes.c_char_p), ("quiet", ctypes.c_int),
                ("log", LOG_FN), ("log_ctx", ctypes.c_void_p), ("event", EVENT_FN),
                ("event_ctx", ctypes.c_void_p), ("partitions", ctypes.c_int),
                ("log_at", ctypes.c_void_p), ("action", ctypes.c_void_p), ("action_ctx", ctypes.c_void_p),
                ("has_level", ctypes.c_int), ("level", ctypes.c_int), ("stages", ctypes.c_void_p),
                ("allow_nonfinite", ctypes.c_int), ("devices", ctypes.c_char_p),
                ("type", ctypes.c_char_p), ("on_start", HOOK_FN), ("on_gradients", HOOK_FN),
                ("hook_ctx", ctypes.c_void_p)]


P = ctypes.c_void_p
S = ctypes.c_char_p
I = ctypes.c_int  # noqa: E741
FP = ctypes.POINTER(ctypes.c_float)
SHAPE = ctypes.c_int * 8
E = ctypes.POINTER(Error)


def _sig(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_sig("ct_status_name", S, I)
_sig("ct_driver_cuda_devices", I, ctypes.c_char_p, ctypes.c_size_t)
_sig("ctpy_net_create", I, S, I, I, ctypes.POINTER(S), S, ctypes.c_ulonglong, ctypes.POINTER(P), E)
_sig("ctpy_net_memplan", I, P, I, E)
_sig("ctpy_net_keep_blob", I, P, S, E)
_sig("ct_net_free", None, P)
_sig("ct_net_set_seed", None, P, ctypes.c_uint64)
_sig("ct_net_set_devices", I, P, S, E)
_sig("ct_net_set_partitions", I, P, I, E)
_sig("ct_net_forward", I, P, FP, E)
_sig("ct_net_backward", I, P, E)
_sig("ct_net_forward_layer", I, P, I, E)
_sig("ct_net_backward_layer", I, P, I, E)
_sig("ct_net_clear_param_diffs", None, P)
_sig("ct_net_reshape", I, P, E)
_sig("ct_net_blob_shape", I, P, S, SHAPE)
_sig("ct_net_blob_reshape", I, P, S, I, ctypes.POINTER(I), E)
_sig("ct_net_blob_name", S, P, I)
_sig("ct_net_num_outputs", I, P)
_sig("ct_net_output_name", S, P, I)
_sig("ct_net_output_loss_weight", ctypes.c_float, P, I)
_sig("ct_net_set_memory_data", I, P, S, FP, FP, I, E)
_sig("ct_net_param_count", I, P, S)
_sig("ct_net_param_shape", I, P, S, I, SHAPE)
_sig("ct_net_num_layers", I, P)
_sig("ct_net_layer_name", S, P, I)
_sig("ct_net_layer_type", S, P, I)
_sig("ct_net_load_weights", I, P, S, E)
_sig("ct_net_save_weights", I, P, S, E)
_sig("ct_net_share_weights_from", I, P, P, E)
_sig("ctpy_layer_num_blobs", I, P, I, I)
_sig("ctpy_layer_blob", S, P, I, I, I)
_sig("ctpy_pin", P, P, S, S, I, I, ctypes.POINTER(FP), E)
_sig("ctpy_unpin", None, P)
_sig("ctpy_num_layer_types", I)
_sig("ctpy_layer_type_name", S, I)
_sig("ctpy_proto_descriptor", ctypes.POINTER(ctypes.c_ubyte), ctypes.POINTER(ctypes.c_size_t))
_sig("ct_solver_create", I, S, ctypes.POINTER(SolverOptions), ctypes.POINTER(P), E)
_sig("ct_solver_free", None, P)
_sig("ct_solver_step", I, P, I, E)
_sig("ct_solver_solve", I, P, E)
_sig("ct_solver_snapshot", I, P, ctypes.POINTER(P), ctypes.POINTER(P), E)
_sig("ct_solver_restore", I, P, S, E)
_sig("ct_solver_apply_update", I, P, E)
_sig("ct_solver_test", I, P, I, FP, I, E)
_sig("ct_solver_iter", I, P)
_sig("ct_solver_is_root", I, P)
_sig("ct_solver_net", P, P)
_sig("ct_solver_num_test_nets", I, P)
_sig("ct_solver_test_net", P, P, I)

libc = ctypes.CDLL(None)
libc.free.argtypes = [P]
libc.free.restype = None


# ------------------------------------------------------------------ small helpers

def b(s):
    """str (or path) -> bytes for C; None stays None."""
    if s is None:
        return None
    s = os.fspath(s) if not isinstance(s, (str, bytes)) else s
    return s.encode() if isinstance(s, str) else s


def s(raw):
    return raw.decode("utf-8", "replace") if raw is not None else None


def check(status, err):
    if status != 0:
        msg = err.msg.decode("utf-8", "replace") or s(lib.ct_status_name(status))
        raise CortadoError(msg, s(lib.ct_status_name(status)))


def call(fn, *args):
    """fn(*args, &err), raising CortadoError on a non-zero status."""
    err = Error()
    check(fn(*args, ctypes.byref(err)), err)


def cint(value, what, lo=0, hi=INT_MAX):
    """An integer argument that must fit C's int: TypeError when it is not an integer,
    OverflowError when it does not fit, ValueError when it is below `lo`. ctypes alone would
    silently keep the low 32 bits."""
    if isinstance(value, bool):
        raise TypeError("%s must be an integer, not a bool" % what)
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, got %s %r" % (what, type(value).__name__, value)) from None
    if v > hi or v < -INT_MAX - 1:
        raise OverflowError("%s = %d does not fit cortado's 32-bit int (at most %d)" % (what, v, hi))
    if v < lo:
        raise ValueError("%s must be >= %d, got %d" % (what, lo, v))
    return v


def check_name(value, what):
    if not isinstance(value, str):
        raise TypeError("%s must be a str, got %s %r" % (what, type(value).__name__, value))
    return value


# ------------------------------------------------------------------ owned handles

class Handle:
    """A C object (a net or a solver) with one lock for every call on it and on the objects it
    owns (a solver's nets). The lock makes calls from several Python threads take turns (ctypes
    releases the GIL, and a net runs one pass at a time). A close requested while a call is in
    progress on the same thread (from inside a callback) is deferred until that call returns;
    the object refuses new calls from then on."""

    def __init__(self, ptr, free, what):
        self.ptr = ptr
        self._free = free
        self.what = what
        self.lock = threading.RLock()
        self.busy = 0
        self.doomed = False

    def get(self):
        if self.ptr is None or self.doomed:
            raise CortadoError("this %s was freed (its __del__ or close() ran); make a new one" % self.what,
                               "freed")
        return self.ptr

    @contextlib.contextmanager
    def use(self):
        with self.lock:
            ptr = self.get()
            self.busy += 1
            try:
                yield ptr
            finally:
                self.busy -= 1
                if self.busy == 0 and self.doomed:
                    self._release()

    def close(self):
        """Frees now, or when the call in progress on this thread returns. Idempotent."""
        lock = getattr(self, "lock", None)
        if lock is None:
            return
        with lock:
            if self.ptr is None:
                return
            self.doomed = True
            if self.busy == 0:
                self._release()

    def _release(self):
        ptr, self.ptr = self.ptr, None
        if ptr is not None and self._free is not None:
            self._free(ptr)


# ------------------------------------------------------------------ pinned views

class _Pin:
    """The memory under a numpy view: a reference to a cortado storage, dropped when the last
    array over it goes. numpy keeps this object as the array's base."""

    def __init__(self, storage, ptr, shape):
        self._storage = storage
        self.__array_interface__ = {"data": (ptr, False), "shape": tuple(shape), "typestr": "<f4",
                                    "version": 3}

    def __del__(self):
        st, self._storage = getattr(self, "_storage", None), None
        if st and lib is not None and getattr(lib, "ctpy_unpin", None) is not None:
            lib.ctpy_unpin(st)


def view(net_ptr, shape, side, blob=None, layer=None, index=0):
    """A float32 numpy array over a blob's (or a parameter's) host memory, brought up to date now.
    It keeps that memory alive: after a reshape that grows the blob, or after the net is freed,
    it still reads and writes valid memory (no longer the net's: take .data again)."""
    ptr = FP()
    err = Error()
    st = lib.ctpy_pin(net_ptr, b(blob), b(layer), index, side, ctypes.byref(ptr), ctypes.byref(err))
    if not st:
        check(err.status or 1, err)
    addr = ctypes.cast(ptr, ctypes.c_void_p).value
    return np.asarray(_Pin(st, addr, shape))


def shape_of(fn, *args):
    buf = SHAPE()
    n = fn(*args, buf)
    return None if n < 0 else tuple(buf[:n])
