"""Nets: pycaffe's Net, its blobs and parameters as numpy views, forward/backward with start/end,
forward_all, set_input_arrays, weights in .caffemodel and HDF5.

Thread safety: every call on a Net takes its lock (a solver's nets share the solver's), so two
Python threads calling forward() on one Net take turns rather than corrupt it; different Nets
run in parallel.
"""
import collections
import ctypes
import os

import numpy as np

from . import _lib
from ._lib import CortadoError, lib

TRAIN = 0
TEST = 1

_defaults = {"seed": 1701, "devices": None}


def _phase(p):
    if isinstance(p, bool) or p not in (TRAIN, TEST):
        raise ValueError("phase must be cortado.TRAIN (0) or cortado.TEST (1), got %r" % (p,))
    return int(p)


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, np.ndarray)):
        shape = tuple(shape[0])
    if len(shape) > 8:
        raise ValueError("a blob has at most 8 axes, got %d" % len(shape))
    return [_lib.cint(d, "axis %d" % i) for i, d in enumerate(shape)]


class Blob:
    """A named blob of a net: .data and .diff are numpy views made afresh on every access (the
    host copy is brought up to date then), .shape, .count, .num/.channels/.height/.width."""

    def __init__(self, net, name):
        self._net = net
        self.name = name

    def _shape_now(self, ptr):
        shp = _lib.shape_of(lib.ct_net_blob_shape, ptr, _lib.b(self.name))
        if shp is None:
            raise CortadoError("no blob named '%s' in net %s" % (self.name, self._net._source), "not found")
        return shp

    @property
    def shape(self):
        with self._net._use() as ptr:
            return self._shape_now(ptr)

    def _side(self, side):
        with self._net._use() as ptr:
            return _lib.view(ptr, self._shape_now(ptr), side, blob=self.name)

    data = property(lambda self: self._side(0), doc="the values, a numpy view (writes go to the net)")
    diff = property(lambda self: self._side(1), doc="the gradient, a numpy view")

    @property
    def count(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def _legacy(self, axis):
        shp = self.shape
        return shp[axis] if axis < len(shp) else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def reshape(self, *shape):
        """Sets this blob's shape (an input's, usually). Views taken before stay valid memory but
        are detached from the blob when it grows: take .data again."""
        dims = _shape_arg(shape)
        arr = (_lib.I * max(1, len(dims)))(*dims)
        with self._net._use() as ptr:
            _lib.call(lib.ct_net_blob_reshape, ptr, _lib.b(self.name), len(dims), arr)

    def __repr__(self):
        return "<cortado.Blob %s %s>" % (self.name, self.shape)


class ParamBlob(Blob):
    """A learnable parameter: net.params[layer][i] (0 weights, 1 bias, ...)."""

    def __init__(self, net, layer, index):
        super().__init__(net, "%s[%d]" % (layer, index))
        self.layer = layer
        self.index = index

    def _shape_now(self, ptr):
        shp = _lib.shape_of(lib.ct_net_param_shape, ptr, _lib.b(self.layer), self.index)
        if shp is None:
            raise CortadoError("layer '%s' has no parameter #%d" % (self.layer, self.index), "not found")
        return shp

    def _side(self, side):
        with self._net._use() as ptr:
            return _lib.view(ptr, self._shape_now(ptr), side, layer=self.layer, index=self.index)

    def reshape(self, *shape):
        raise CortadoError("parameter %s cannot be reshaped: its shape comes from the layer's settings"
                           % self.name, "unsupported")

    def __repr__(self):
        return "<cortado.ParamBlob %s %s>" % (self.name, self.shape)


class LayerView:
    """net.layers[i]: the layer's .name, .type and .blobs (its parameters)."""

    def __init__(self, net, index, name, type_):
        self._net, self.index, self.name, self.type = net, index, name, type_

    @property
    def blobs(self):
        with self._net._use() as ptr:
            n = lib.ct_net_param_count(ptr, _lib.b(self.name))
        return [ParamBlob(self._net, self.name, i) for i in range(max(0, n))]

    def __repr__(self):
        return "<cortado layer %s (%s)>" % (self.name, self.type)


class Net:
    """A net built from a NetParameter prototxt for one phase, as pycaffe's:

        Net(prototxt, phase[, level, stages, weights=...])   Net(prototxt, weights, phase)
        Net(prototxt, phase=TEST, weights=None, level=0, stages=None, devices=None)

    `stages` is a list of str; `devices` a cortado device list ("cpu,emu:0"; default: the one
    given to cortado.set_devices, else the CPU).

    Every blob keeps its values after a pass, as in pycaffe. memplan=True lets blobs whose
    lifetimes do not meet share memory (far less of it); then only the outputs, losses, input
    blobs and the blobs named in `keep` are sure to hold their own values after forward()."""

    def __init__(self, network_file, *args, phase=None, weights=None, level=0, stages=None, devices=None,
                 partitions=None, memplan=False, keep=(), **legacy):
        self._own = None
        if "_handle" in legacy:  # a solver's net
            self._init_owned(legacy.pop("_handle"), legacy.pop("_owner"), legacy.pop("_index", 0))
            return
        if legacy:
            raise TypeError("Net() got unexpected keyword arguments: %s" % ", ".join(sorted(legacy)))
        args = list(args)
        if args and isinstance(args[0], (str, bytes, os.PathLike)):
            weights = args.pop(0)  # Net(prototxt, weights, phase)
        elif args and args[0] is None:
            args.pop(0)
        if args:
            phase = args.pop(0)
        if args:
            level = args.pop(0)
        if args:
            stages = args.pop(0)
        if args:
            weights = args.pop(0)
        if args:
            raise TypeError("Net() takes at most 5 positional arguments")
        phase = TEST if phase is None else _phase(phase)
        level = _lib.cint(level, "level", lo=-_lib.INT_MAX)
        network_file = os.fspath(network_file)
        if not isinstance(network_file, str):
            network_file = network_file.decode()
        self._source = network_file
        st = None
        if stages is not None:
            if isinstance(stages, (str, bytes)) or not isinstance(stages, (list, tuple)):
                raise TypeError("stages must be a list of str, got %r" % (stages,))
            for x in stages:
                _lib.check_name(x, "each stage")
            st = (_lib.S * (len(stages) + 1))(*[_lib.b(x) for x in stages], None)
        if not os.path.exists(network_file):
            raise CortadoError("cannot open the net prototxt '%s': no such file" % network_file, "I/O error")
        if weights is not None and not os.path.exists(os.fspath(weights)):
            raise CortadoError("cannot open the weights '%s': no such file" % os.fspath(weights), "I/O error")
        h = _lib.P()
        _lib.call(lib.ctpy_net_create, _lib.b(network_file), phase, level, st, _lib.b(weights),
                  _defaults["seed"], ctypes.byref(h))
        self._own = _lib.Handle(h.value, lib.ct_net_free, "Net")
        self._net_ptr = None
        self.phase = phase
        if memplan:  # blobs share memory; only outputs, losses, inputs and `keep` stay readable
            _lib.call(lib.ctpy_net_memplan, h.value, 1)
            for name in keep:
                _lib.call(lib.ctpy_net_keep_blob, h.value, _lib.b(_lib.check_name(name, "each kept blob")))
        devices = devices if devices is not None else _defaults["devices"]
        if devices:
            self.set_devices(devices)
        if partitions is not None:
            self.set_partitions(partitions)

    def _init_owned(self, ptr, owner, index):
        self._own = owner._own  # the solver's handle: its lock, its lifetime
        self._net_ptr = ptr
        self._owner = owner  # keeps the solver alive while its nets are used
        self._source = "(solver net)" if index < 0 else "(solver test net #%d)" % index
        self.phase = TRAIN if index < 0 else TEST
        # as Net's: every blob stays readable (the solver has not run a pass yet)
        lib.ctpy_net_memplan(ptr, 0, None)

    def _ptr(self, owner_ptr):
        return owner_ptr if self._net_ptr is None else self._net_ptr

    def _use(self):
        """A context giving this net's C pointer, holding its lock."""
        own = self._own
        if own is None:
            raise CortadoError("this Net was never built", "freed")
        net = self

        class _Ctx:
            def __enter__(self):
                self._cm = own.use()
                return net._ptr(self._cm.__enter__())

            def __exit__(self, *exc):
                return self._cm.__exit__(*exc)
        return _Ctx()

    @property
    def lock(self):
        """The lock every call on this net takes (re-entrant): hold it across several calls
        (`with net.lock: net.forward(...); out = net.blobs[...].data.copy()`) so that another
        thread's pass does not come in between."""
        return self._own.lock

    def close(self):
        """Frees the net now (views keep their memory). A solver's nets go with their solver."""
        if self._own is not None and self._net_ptr is None:
            self._own.close()

    def __del__(self):
        self.close()

    # -- devices (cortado extension)
    def set_devices(self, devices):
        """Splits every layer's batch over these devices: "cpu", "emu:0", "cpu,emu:0",
        "cpu=0.3,emu:0=0.7" (ct_net_set_devices)."""
        _lib.check_name(devices, "devices")
        with self._use() as p:
            _lib.call(lib.ct_net_set_devices, p, _lib.b(devices))

    def set_partitions(self, n):
        """CcT's partitions: each layer's batch split over n CPU threads."""
        n = _lib.cint(n, "partitions", lo=1)
        with self._use() as p:
            _lib.call(lib.ct_net_set_partitions, p, n)

    # -- structure
    @property
    def _blob_names(self):
        names = []
        with self._use() as p:
            while True:
                name = lib.ct_net_blob_name(p, len(names))
                if name is None:
                    return names
                names.append(_lib.s(name))

    @property
    def blobs(self):
        """OrderedDict name -> Blob, in creation order."""
        return collections.OrderedDict((n, Blob(self, n)) for n in self._blob_names)

    @property
    def _layer_names(self):
        with self._use() as p:
            return [_lib.s(lib.ct_net_layer_name(p, i)) for i in range(lib.ct_net_num_layers(p))]

    layer_names = _layer_names

    @property
    def layer_types(self):
        with self._use() as p:
            return [_lib.s(lib.ct_net_layer_type(p, i)) for i in range(lib.ct_net_num_layers(p))]

    @property
    def layers(self):
        return [LayerView(self, i, n, t) for i, (n, t) in enumerate(zip(self._layer_names, self.layer_types))]

    @property
    def layer_dict(self):
        return collections.OrderedDict((lv.name, lv) for lv in self.layers)

    @property
    def params(self):
        """OrderedDict layer name -> [ParamBlob, ...] for every layer with parameters."""
        d = collections.OrderedDict()
        with self._use() as p:
            for name in self._layer_names:
                n = lib.ct_net_param_count(p, _lib.b(name))
                if n > 0:
                    d[name] = [ParamBlob(self, name, i) for i in range(n)]
        return d

    def _layer_blobs(self, i, top):
        with self._use() as p:
            return [_lib.s(lib.ctpy_layer_blob(p, i, top, j)) for j in range(max(0, lib.ctpy_layer_num_blobs(p, i, top)))]

    @property
    def bottom_names(self):
        return collections.OrderedDict((n, self._layer_blobs(i, 0)) for i, n in enumerate(self._layer_names))

    @property
    def top_names(self):
        return collections.OrderedDict((n, self._layer_blobs(i, 1)) for i, n in enumerate(self._layer_names))

    @property
    def inputs(self):
        """The tops of the Input layers: the blobs forward(**kwargs) fills."""
        names = []
        for i, t in enumerate(self.layer_types):
            if t == "Input":
                names += self._layer_blobs(i, 1)
        return names

    @property
    def outputs(self):
        with self._use() as p:
            return [_lib.s(lib.ct_net_output_name(p, i)) for i in range(lib.ct_net_num_outputs(p))]

    @property
    def blob_loss_weights(self):
        """OrderedDict blob name -> its loss weight (0 for a blob that is not a loss)."""
        d = collections.OrderedDict((n, 0.0) for n in self._blob_names)
        with self._use() as p:
            for i in range(lib.ct_net_num_outputs(p)):
                d[_lib.s(lib.ct_net_output_name(p, i))] = float(lib.ct_net_output_loss_weight(p, i))
        return d

    _blob_loss_weights = blob_loss_weights

    # -- running
    def reshape(self):
        """Re-derives every top's shape from the inputs' (after Blob.reshape)."""
        with self._use() as p:
            _lib.call(lib.ct_net_reshape, p)

    def _layer_index(self, name, what):
        names = self._layer_names
        if name not in names:
            raise ValueError("%s=%r: no layer of that name; the layers are: %s" % (what, name, ", ".join(names)))
        return names.index(name)

    def _fill(self, arrays, names, what, side):
        if set(arrays) != set(names):
            raise CortadoError("%s arguments (%s) do not match the net's %s (%s)%s"
                               % (what, ", ".join(sorted(arrays)) or "none", "inputs" if side == 0 else "outputs",
                                  ", ".join(names) or "none",
                                  "; this net has no Input layer: its data layer feeds it" if not names else ""),
                               "invalid argument")
        for name, arr in arrays.items():
            blob = Blob(self, name)
            arr = np.asarray(arr)
            shp = blob.shape
            if arr.ndim == 0 or not shp or arr.shape[0] != shp[0]:
                raise CortadoError("%s '%s' has %s items; the blob's batch is %s (reshape the blob first: "
                                   "net.blobs['%s'].reshape(...))" % (what, name, arr.shape[:1] or "no",
                                                                        shp[:1], name), "invalid argument")
            dst = blob.data if side == 0 else blob.diff
            dst[...] = arr

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Runs the layers from `start` to `end` (names; default all) forward, after copying the
        keyword arrays into the input blobs of those names (their first axis must match the
        blob's: reshape the blob for another batch size). Returns {name: view} for the outputs
        (the tops of `end` when given) and the blobs named in `blobs`."""
        blobs = list(blobs or [])
        for n in blobs:
            _lib.check_name(n, "each name in blobs")
        with self._use() as p:
            names = self._layer_names
            i0 = 0 if start is None else self._layer_index(start, "start")
            i1 = len(names) - 1 if end is None else self._layer_index(end, "end")
            outs = set((self.outputs if end is None else self.top_names[end]) + blobs)
            if kwargs:
                self._fill(kwargs, self.inputs, "forward input", 0)
            if i0 == 0 and i1 == len(names) - 1:
                loss = ctypes.c_float()
                _lib.call(lib.ct_net_forward, p, ctypes.byref(loss))
            else:
                for i in range(i0, i1 + 1):
                    _lib.call(lib.ct_net_forward_layer, p, i)
            return {n: self._blob(n).data for n in outs}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Runs the layers from `start` down to `end` backward (default: all, from the losses),
        after copying keyword arrays into the diffs of the output blobs of those names.
        Parameter gradients accumulate (clear_param_diffs). Returns {name: diff view} for the
        inputs (the bottoms of `end` when given) and the blobs named in `diffs`."""
        diffs = list(diffs or [])
        with self._use() as p:
            names = self._layer_names
            i0 = len(names) - 1 if start is None else self._layer_index(start, "start")
            i1 = 0 if end is None else self._layer_index(end, "end")
            outs = set((self.inputs if end is None else self.bottom_names[end]) + diffs)
            if kwargs:
                self._fill(kwargs, self.outputs, "backward top diff", 1)
            if i0 == len(names) - 1 and i1 == 0:
                _lib.call(lib.ct_net_backward, p)
            else:
                for i in range(i0, i1 - 1, -1):
                    _lib.call(lib.ct_net_backward_layer, p, i)
            return {n: self._blob(n).diff for n in outs}

    def clear_param_diffs(self):
        with self._use() as p:
            lib.ct_net_clear_param_diffs(p)

    def set_seed(self, seed):
        with self._use() as p:
            lib.ct_net_set_seed(p, _lib.cint(seed, "seed", hi=2 ** 64 - 1))

    def _blob(self, name):
        with self._use() as p:
            if lib.ct_net_blob_shape(p, _lib.b(_lib.check_name(name, "a blob name")), _lib.SHAPE()) < 0:
                raise CortadoError("no blob named '%s' in net %s; its blobs are: %s"
                                   % (name, self._source, ", ".join(self._blob_names)), "not found")
        return Blob(self, name)

    def _batch(self, arrays):
        """Yields dicts of batch-sized slices of `arrays`, the last padded with zeros."""
        n = len(next(iter(arrays.values())))
        bs = self.blobs[next(iter(arrays))].shape[0]
        for i in range(0, n, bs):
            batch = {}
            for name, arr in arrays.items():
                chunk = np.asarray(arr[i:i + bs], dtype=np.float32)
                if len(chunk) < bs:
                    pad = np.zeros((bs - len(chunk),) + chunk.shape[1:], dtype=np.float32)
                    chunk = np.concatenate([chunk, pad])
                batch[name] = chunk
            yield batch

    def forward_all(self, blobs=None, **kwargs):
        """forward() over inputs of any length, batch by batch; returns {name: stacked copies}."""
        outs = {n: [] for n in set(self.outputs + list(blobs or []))}
        if not kwargs:
            for name, v in self.forward(blobs=blobs).items():
                outs[name].extend(v.copy())
            return {n: np.asarray(v) for n, v in outs.items()}
        n = len(next(iter(kwargs.values())))
        for batch in self._batch(kwargs):
            for name, v in self.forward(blobs=blobs, **batch).items():
                outs[name].extend(v.copy())
        return {name: np.asarray(v)[:n] for name, v in outs.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """forward_all and backward over batches: keyword arrays named after inputs feed forward,
        those named after outputs are the top diffs. Returns (outputs, diffs), stacked copies."""
        fwd_in = {k: v for k, v in kwargs.items() if k in self.inputs}
        bwd_in = {k: v for k, v in kwargs.items() if k in self.outputs}
        outs = {n: [] for n in set(self.outputs + list(blobs or []))}
        douts = {n: [] for n in set(self.inputs + list(diffs or []))}
        n = len(next(iter(kwargs.values()))) if kwargs else None
        fb = self._batch(fwd_in) if fwd_in else iter([{}])
        bb = self._batch(bwd_in) if bwd_in else None
        for fbatch in fb:
            bbatch = next(bb) if bb is not None else {}
            for k, v in self.forward(blobs=blobs, **fbatch).items():
                outs[k].extend(v.copy())
            for k, v in self.backward(diffs=diffs, **bbatch).items():
                douts[k].extend(v.copy())
        cut = (lambda a: a[:n]) if n is not None else (lambda a: a)
        return ({k: cut(np.asarray(v)) for k, v in outs.items()}, {k: cut(np.asarray(v)) for k, v in douts.items()})

    def set_input_arrays(self, data, labels, layer=None):
        """Hands data (N x C x H x W) and labels (N, or N x 1 x 1 x 1) to a MemoryData layer
        (`layer`, default the first MemoryData layer). Both are copied; each forward serves the
        next batch, wrapping at the end."""
        data = np.ascontiguousarray(data, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.float32)
        if layer is None:
            md = [n for n, t in zip(self._layer_names, self.layer_types) if t == "MemoryData"]
            if not md:
                raise CortadoError("set_input_arrays needs a MemoryData layer; this net has none", "invalid argument")
            layer = md[0]
        if data.ndim != 4:
            raise ValueError("data must be 4-D (N x C x H x W), got shape %s" % (data.shape,))
        if labels.ndim not in (1, 4) or labels.shape[0] != data.shape[0] or labels.size != data.shape[0]:
            raise ValueError("labels must hold one value per image (shape (%d,) or (%d, 1, 1, 1)), got %s"
                             % (data.shape[0], data.shape[0], labels.shape))
        n = _lib.cint(data.shape[0], "the number of images", lo=1)
        fp = ctypes.POINTER(ctypes.c_float)
        with self._use() as p:
            _lib.call(lib.ct_net_set_memory_data, p, _lib.b(_lib.check_name(layer, "layer")),
                      data.ctypes.data_as(fp), labels.ctypes.data_as(fp), n)

    # -- weights
    def copy_from(self, caffemodel):
        """Loads weights by layer name from a .caffemodel."""
        with self._use() as p:
            _lib.call(lib.ct_net_load_weights, p, _lib.b(caffemodel))

    def save(self, filename):
        """Writes the weights as a .caffemodel."""
        with self._use() as p:
            _lib.call(lib.ct_net_save_weights, p, _lib.b(filename))

    def share_with(self, other):
        """Makes this net's parameters view `other`'s values, by layer name (Caffe's
        ShareTrainedLayersWith: the values are shared, the gradients stay each net's own)."""
        if not isinstance(other, Net):
            raise TypeError("share_with needs a cortado.Net, got %r" % (other,))
        with other._use() as src, self._use() as dst:
            _lib.call(lib.ct_net_share_weights_from, dst, src)

    def save_hdf5(self, filename):
        """Writes the weights in Caffe's HDF5 layout (/data/<layer>/<i>); needs h5py."""
        h5py = _h5py()
        with h5py.File(filename, "w") as f:
            data = f.create_group("data")
            for name, ps in self.params.items():
                g = data.create_group(name)
                for i, pb in enumerate(ps):
                    g.create_dataset(str(i), data=pb.data)

    def load_hdf5(self, filename):
        """Loads weights from Caffe's HDF5 layout, by layer name; shapes must match."""
        h5py = _h5py()
        with h5py.File(filename, "r") as f:
            if "data" not in f:
                raise CortadoError("%s has no /data group: not a Caffe HDF5 weights file" % filename, "parse error")
            data = f["data"]
            for name, ps in self.params.items():
                if name not in data:
                    continue
                g = data[name]
                if len(g) != len(ps):
                    raise CortadoError("%s: layer '%s' has %d blobs in the file, %d in the net"
                                       % (filename, name, len(g), len(ps)), "shape error")
                for i, pb in enumerate(ps):
                    arr = np.asarray(g[str(i)], dtype=np.float32)
                    dst = pb.data
                    if arr.shape != dst.shape:
                        raise CortadoError("%s: layer '%s' blob %d has shape %s in the file, %s in the net"
                                           % (filename, name, i, arr.shape, dst.shape), "shape error")
                    dst[...] = arr

    def __repr__(self):
        return "<cortado.Net %s>" % self._source


def _h5py():
    try:
        import h5py
    except ImportError:
        raise CortadoError("HDF5 weights need h5py (Debian's python3-h5py)", "unsupported") from None
    return h5py
