"""Solvers: pycaffe's Solver and its typed classes (SGDSolver, ..., AdamSolver), get_solver.

A solver's nets (.net, .test_nets) share the solver's lock and keep it alive; after the solver is
freed (close() or __del__), using them raises CortadoError. Callbacks (add_callback) run inside
step(); an exception in one stops the step and is raised from it; a callback that frees its
own solver stops the step too, and step() raises CortadoError once the solver is freed.
"""
import ctypes
import os
import weakref

from . import _lib
from ._lib import CortadoError, lib
from .net import Net, _defaults


class Solver:
    """A solver from a SolverParameter prototxt: .net, .test_nets, .iter, step(n), solve(),
    snapshot(), restore(), apply_update(), add_callback(), test(i), .param.

    Solver(file, weights=None, snapshot=None, quiet=False, log=None, devices=None, partitions=0):
    `weights` fine-tunes from a .caffemodel, `snapshot` resumes from a .solverstate, `log` (a
    callable taking a str) receives the log lines instead of stderr, `devices` ("cpu,emu:0")
    splits the nets over devices (default: cortado.set_devices's)."""

    _type = None  # the update rule of a typed class (SGDSolver, ...); None: the file's

    def __init__(self, filename, weights=None, snapshot=None, quiet=False, log=None, devices=None, partitions=0):
        self._own = None
        filename = os.fspath(filename)
        if not os.path.exists(filename):
            raise CortadoError("cannot open the solver prototxt '%s': no such file" % filename, "I/O error")
        self._filename = filename
        self._callbacks = []
        self._cb_error = None
        opt = _lib.SolverOptions()
        opt.weights = _lib.b(weights) if weights else None
        opt.snapshot = _lib.b(snapshot) if snapshot else None
        opt.quiet = 1 if quiet else 0
        opt.partitions = _lib.cint(partitions, "partitions")
        devices = devices if devices is not None else _defaults["devices"]
        opt.devices = _lib.b(_lib.check_name(devices, "devices")) if devices else None
        opt.type = _lib.b(self._type)
        me = weakref.ref(self)  # the C callbacks must not keep the solver alive
        if log is not None:
            if not callable(log):
                raise TypeError("log must be callable (it receives each log line as a str)")
            self._log_cb = _lib.LOG_FN(lambda ctx, line: log(_lib.s(line)))
            opt.log = self._log_cb
        self._hooks = (_lib.HOOK_FN(lambda ctx: _dispatch(me, 0)), _lib.HOOK_FN(lambda ctx: _dispatch(me, 1)))
        opt.on_start, opt.on_gradients = self._hooks
        h = _lib.P()
        _lib.call(lib.ct_solver_create, _lib.b(filename), ctypes.byref(opt), ctypes.byref(h))
        self._own = _lib.Handle(h.value, lib.ct_solver_free, "Solver")
        self.net = Net(None, _handle=lib.ct_solver_net(h.value), _owner=self, _index=-1)
        self.test_nets = [Net(None, _handle=lib.ct_solver_test_net(h.value, i), _owner=self, _index=i)
                          for i in range(lib.ct_solver_num_test_nets(h.value))]
        self._param = None

    def close(self):
        """Frees the solver and its nets now (deferred until step() returns when called from a
        callback). Views of their blobs keep their memory."""
        if getattr(self, "_own", None) is not None:
            self._own.close()

    def __del__(self):
        self.close()

    @property
    def iter(self):
        with self._own.use() as p:
            return lib.ct_solver_iter(p)

    def _run(self, fn, *args):
        self._cb_error = None
        try:
            with self._own.use() as p:
                err = _lib.Error()
                st = fn(p, *args, ctypes.byref(err))
        finally:
            exc, self._cb_error = self._cb_error, None
        if exc is not None:
            raise exc
        if self._own.ptr is None:
            raise CortadoError("the solver was freed by one of its callbacks; it stopped there", "freed")
        _lib.check(st, err)

    def step(self, iters):
        """Runs `iters` iterations (display, test and snapshot as the solver file says)."""
        self._run(lib.ct_solver_step, _lib.cint(iters, "step(iters)"))

    def solve(self, resume_file=None):
        """Runs to max_iter (restoring `resume_file`, a .solverstate, first), then the final
        snapshot and test as Caffe does."""
        if resume_file:
            self.restore(resume_file)
        self._run(lib.ct_solver_solve)

    def apply_update(self):
        """Caffe's ApplyUpdate: the update rule on the train net's current gradients (from your
        own forward/backward), at the current iteration, which does not advance."""
        self._run(lib.ct_solver_apply_update)

    def snapshot(self):
        """Writes <prefix>_iter_N.caffemodel and .solverstate; returns their paths. Under mpirun
        (a cluster, or a partitioned net's worker group over the ranks) every rank calls it and
        rank 0 writes the files: the other ranks get (None, None)."""
        mp, sp = _lib.P(), _lib.P()
        with self._own.use() as p:
            _lib.call(lib.ct_solver_snapshot, p, ctypes.byref(mp), ctypes.byref(sp))
        if not mp.value or not sp.value:  # not the root of a cluster: nothing written here
            return (None, None)
        paths = (_lib.s(ctypes.string_at(mp.value)), _lib.s(ctypes.string_at(sp.value)))
        _lib.libc.free(mp.value)
        _lib.libc.free(sp.value)
        return paths

    def restore(self, filename):
        with self._own.use() as p:
            _lib.call(lib.ct_solver_restore, p, _lib.b(filename))

    def test(self, which=0):
        """Runs test net `which` over its test_iter batches; returns its mean output values.
        Under mpirun (a cluster, or a partitioned net's worker group over the ranks) every rank
        calls it, as with snapshot(): rank 0 gathers the parameters the other ranks hold and
        tests; the other ranks get None."""
        which = _lib.cint(which, "which")
        cap = 4096
        buf = (ctypes.c_float * cap)()
        err = _lib.Error()
        with self._own.use() as p:
            n = lib.ct_solver_test(p, which, buf, cap, ctypes.byref(err))
            root = lib.ct_solver_is_root(p)
        if n < 0:
            _lib.check(err.status or 1, err)
        if not root:
            return None
        return list(buf[:min(n, cap)])

    def add_callback(self, on_start, on_gradients):
        """Calls on_start() at the start of every iteration (after the test nets ran, before the
        forward pass) and on_gradients() after backward, before the update, as Caffe does."""
        if not callable(on_start) or not callable(on_gradients):
            raise TypeError("add_callback(on_start, on_gradients) needs two callables")
        self._callbacks.append((on_start, on_gradients))

    @property
    def param(self):
        """The SolverParameter as read from the file (caffe_pb2; needs python3-protobuf)."""
        if self._param is None:
            from google.protobuf import text_format
            from .proto import caffe_pb2
            msg = caffe_pb2.SolverParameter()
            with open(self._filename) as f:
                text_format.Merge(f.read(), msg)
            if self._type:
                msg.type = self._type
            self._param = msg
        return self._param

    @property
    def type(self):
        return self._type or (self.param.type if self._param is not None else None)


def _dispatch(ref, which):
    """The C hook: runs the Python callbacks; non-zero stops the step."""
    solver = ref()
    if solver is None or solver._own is None or solver._own.doomed:
        return 1
    try:
        for pair in list(solver._callbacks):
            pair[which]()
            if solver._own.doomed:
                return 1
    except BaseException as e:  # raised from step() once the C call has returned
        solver._cb_error = e
        return 1
    return 0


class SGDSolver(Solver):
    _type = "SGD"


class NesterovSolver(Solver):
    _type = "Nesterov"


class AdaGradSolver(Solver):
    _type = "AdaGrad"


class RMSPropSolver(Solver):
    _type = "RMSProp"


class AdaDeltaSolver(Solver):
    _type = "AdaDelta"


class AdamSolver(Solver):
    _type = "Adam"


def get_solver(filename, **kwargs):
    """A solver of the type its file names (SGD by default)."""
    return Solver(filename, **kwargs)
