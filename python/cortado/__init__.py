"""cortado from Python with pycaffe's names: `import cortado as caffe` runs pycaffe code.

    import cortado as caffe
    caffe.set_mode_cpu()
    net = caffe.Net("lenet.prototxt", "lenet.caffemodel", caffe.TEST)
    net.blobs["data"].data[...] = images          # numpy views of cortado's memory
    out = net.forward()                            # {"prob": array(...)}
    net.params["conv1"][0].data                    # the weights (writes change the net)
    solver = caffe.SGDSolver("lenet_solver.prototxt")
    solver.step(100)

Modules: cortado.io (Transformer, load_image, ...), cortado.net_spec (NetSpec, layers, params,
to_proto), cortado.proto.caffe_pb2 (NetParameter, ... from cortado's own schema; needs Debian's
python3-protobuf), cortado.draw (draw_net_to_file, through `cortado draw`), Classifier, Detector.

Pure Python over libcortado.so (ctypes). The library is found through $CORTADO_LIB (its path),
else beside this package, beside $CORTADO (the cortado binary) or in $CT_BUILD_DIR, else in
build*/ of the source tree this package lives in, else on the system's library path.

Differences from pycaffe, on purpose:
  - Views: .data / .diff give a fresh numpy view on every access (as pycaffe's properties do):
    the host copy is brought up to date then, because a device may hold newer values. A view
    keeps its memory alive: after a reshape that grows the blob, or after the net is freed, it
    stays valid but is no longer the net's (take .data again). Never a crash.
  - Devices: set_mode_gpu() and set_device(N) run new nets on CUDA device N (CortadoError where
    there is none). cortado's other devices are reached with set_devices("cpu,emu:0") or
    Net(..., devices=...) / Solver(..., devices=...) (cortado's device lists: cpu, emu:N, cuda:N).
  - Threads: calls on one Net (or on one Solver and its nets) take turns under a lock; two
    threads calling forward() on one Net are safe, and run one after the other; hold
    net.lock across several calls to keep another thread's pass from coming between them.
  - Freed objects: after close() or an explicit __del__(), a Net or Solver (and a solver's
    nets) raises CortadoError instead of crashing.
  - Integers that do not fit C's int raise OverflowError; stages must be str (TypeError).
Every failure inside cortado raises CortadoError (a RuntimeError) with cortado's message.
"""
import ctypes
from . import _lib
from ._lib import CortadoError, library_path
from .net import TRAIN, TEST, Blob, LayerView, Net, ParamBlob, _defaults
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver, SGDSolver, Solver,
                     get_solver)
from . import io  # noqa: E402  (pycaffe's caffe.io)
from . import draw  # noqa: E402  (pycaffe's caffe.draw)
from .classifier import Classifier
from .detector import Detector

__version__ = "1.0.0"  # the pycaffe surface this module follows (Caffe 1.0)

__all__ = ["TRAIN", "TEST", "Net", "Blob", "ParamBlob", "LayerView", "Solver", "SGDSolver", "NesterovSolver",
           "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver", "AdamSolver", "get_solver", "CortadoError",
           "library_path", "set_mode_cpu", "set_mode_gpu", "set_device", "set_devices", "set_random_seed",
           "layer_type_list", "Classifier", "Detector", "io", "draw", "__version__"]

# Python layers of nets made here run in this interpreter: libcortado_pylayer.so (python/pylayer.c,
# beside libcortado.so) installs its runtime into the library; without it (a build without
# Python's headers) Python layers are refused with a message saying so
def _install_python_layers():
    import ctypes as _ctypes
    import os as _os
    path = _os.path.join(_os.path.dirname(library_path), "libcortado_pylayer.so")
    if not _os.path.exists(path):
        return
    pylayer = _ctypes.CDLL(path)
    pylayer.ctpy_install.argtypes = [_ctypes.c_int]
    pylayer.ctpy_install.restype = None
    pylayer.ctpy_install(0)
    return pylayer


_pylayer = _install_python_layers()

try:  # Python layers (type: "Python") live in layer.py when that part of cortado is present
    from .layer import Layer  # noqa: F401
    __all__.append("Layer")
except ImportError:
    pass

try:  # net_spec and caffe_pb2 need Python's protobuf runtime (Debian's python3-protobuf)
    from . import proto  # noqa: F401
    from .proto import caffe_pb2  # noqa: F401
    from .net_spec import NetSpec, layers, params, to_proto  # noqa: F401
    __all__ += ["proto", "NetSpec", "layers", "params", "to_proto"]
except ImportError:
    pass


def set_mode_cpu():
    """Runs new nets and solvers on the CPU (the default)."""
    _defaults["devices"] = None


_gpu = {"id": 0}


def _usable_gpu(device_id, what):
    """Raises CortadoError unless CUDA device device_id is there to run on."""
    why = ctypes.create_string_buffer(300)
    count = _lib.lib.ct_driver_cuda_devices(why, len(why))
    if count == 0:
        raise CortadoError("%s: no GPU to run on: %s; nets run on the CPU (set_mode_cpu), or split over "
                           "cortado's devices with cortado.set_devices('cpu,emu:0')" % (what, why.value.decode()),
                           "unsupported")
    if device_id >= count:
        raise CortadoError("%s: there is no GPU %d: this machine has %d (0 to %d)" % (what, device_id, count,
                                                                                    count - 1), "invalid")


def set_mode_gpu():
    """Runs new nets and solvers on the GPU set_device chose (0 by default): cortado's device
    "cuda:N". CortadoError where no GPU is usable (no device, or a library built without the
    CUDA driver)."""
    _usable_gpu(_gpu["id"], "set_mode_gpu()")
    _defaults["devices"] = "cuda:%d" % _gpu["id"]


def set_device(device_id):
    """The GPU that set_mode_gpu (and, once in GPU mode, new nets) use, as Caffe's. CortadoError
    where there is no such GPU."""
    _lib.cint(device_id, "device_id")
    _usable_gpu(device_id, "set_device(%d)" % device_id)
    _gpu["id"] = device_id
    if (_defaults["devices"] or "").startswith("cuda:"):
        _defaults["devices"] = "cuda:%d" % device_id


def set_devices(devices):
    """cortado extension: the devices new Nets and Solvers split their layers' batches over, as
    a device list: "cpu", "emu:0", "cpu,emu:0", "cpu=0.3,emu:0=0.7" (None or "cpu": the CPU). The
    list is checked when a net is built with it."""
    if devices is not None:
        _lib.check_name(devices, "devices")
    _defaults["devices"] = devices or None


def set_random_seed(seed):
    """The seed of every random stream (fillers, dropout, shuffles) of the Nets made from now
    on. Solvers take theirs from the solver file's random_seed, as Caffe's do when it is set."""
    _defaults["seed"] = _lib.cint(seed, "seed", hi=2 ** 64 - 1)


def layer_type_list():
    """The layer types cortado knows, as prototxt `type:` strings."""
    return [_lib.s(_lib.lib.ctpy_layer_type_name(i)) for i in range(_lib.lib.ctpy_num_layer_types())]
