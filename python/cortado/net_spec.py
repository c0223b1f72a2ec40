"""pycaffe's NetSpec: nets written as Python, turned into NetParameter messages (caffe_pb2, from
cortado's schema) whose text cortado and Caffe parse.

    from cortado import layers as L, params as P, NetSpec
    n = NetSpec()
    n.data, n.label = L.Data(batch_size=64, backend=P.Data.LMDB, source="train_lmdb",
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.conv1, n.label)
    open("net.prototxt", "w").write(str(n.to_proto()))

L.<Type>(*bottoms, **settings): settings that are fields of the type's own parameter message go
there (kernel_size -> convolution_param.kernel_size); others are LayerParameter fields (name,
loss_weight, include, param, ...); `ntop` sets the number of tops, `in_place=True` makes the
tops the bottoms. A dict sets a message, a list a repeated field (a list of dicts: messages).
Layers are named after their first top as assigned on the NetSpec, else <Type><k>.
"""
import collections

from .proto import caffe_pb2

# types whose parameter message is not named after them (Caffe's convention otherwise)
_ALIASES = {"Deconvolution": "convolution", "Im2col": "convolution", "SoftmaxWithLoss": "softmax"}


def param_name_dict():
    """Layer type -> the prefix of its parameter field ("Convolution" -> "convolution")."""
    layer = caffe_pb2.LayerParameter()
    out = {}
    for f in layer.DESCRIPTOR.fields:
        if f.name.endswith("_param") and f.message_type is not None:
            msg = f.message_type.name
            if msg.endswith("Parameter"):
                out[msg[:-len("Parameter")]] = f.name[:-len("_param")]
    return out


def to_proto(*tops):
    """A NetParameter with the layers needed to compute `tops`."""
    layers = collections.OrderedDict()
    autonames = collections.Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


def assign_proto(proto, name, val):
    """Sets field `name` of message `proto` from a Python value: a dict fills a message, a list
    a repeated field (dicts in it add messages), anything else is set as is."""
    field = getattr(proto, name)
    repeated = hasattr(field, "extend")
    if repeated and not isinstance(val, (list, tuple)):
        val = [val]
    if isinstance(val, (list, tuple)):
        if val and isinstance(val[0], dict):
            for item in val:
                sub = field.add()
                for k, v in item.items():
                    assign_proto(sub, k, v)
        else:
            field.extend(val)
    elif isinstance(val, dict):
        for k, v in val.items():
            assign_proto(field, k, v)
    else:
        setattr(proto, name, val)


class Top:
    """One output of a layer function (the n-th top of fn)."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function:
    """A layer: its type, its bottoms (Tops) and its settings."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for i, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError("%s: bottom %d is %r, not the top of a layer (L.<Type>(...))" % (type_name, i, inp))
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        if self.in_place and self.ntop != len(inputs):
            raise ValueError("%s: in_place needs as many tops (%d) as bottoms (%d)" % (type_name, self.ntop,
                                                                                         len(inputs)))
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames):
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] += 1
            names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottoms = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottoms.append(layers[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)
        prefix = _ALIASES.get(self.type_name) or param_name_dict().get(self.type_name)
        for k, v in self.params.items():
            if k.endswith("param"):
                assign_proto(layer, k, v)
                continue
            target = getattr(layer, prefix + "_param") if prefix else None
            if target is not None and k in target.DESCRIPTOR.fields_by_name:
                assign_proto(target, k, v)
            elif k in layer.DESCRIPTOR.fields_by_name:
                assign_proto(layer, k, v)
            else:
                raise AttributeError("%s: '%s' is neither a field of %s nor of LayerParameter"
                                     % (self.type_name, k, (prefix + "_param") if prefix else "its parameters"))
        layers[self] = layer


class NetSpec:
    """Named tops: assign layer outputs as attributes (or items); to_proto() writes them all."""

    def __init__(self):
        super().__setattr__("tops", collections.OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def __getitem__(self, item):
        return self.__getattr__(item)

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def to_proto(self):
        names = {v: k for k, v in self.tops.items()}
        autonames = collections.Counter()
        layers = collections.OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """L.<Type>(*bottoms, **settings): one top, a tuple of tops (ntop > 1), or the layer
    function itself (ntop=0)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        return layer_fn


class Parameters:
    """P.<Type>.<ENUM_VALUE>: an enum value of <Type>Parameter (P.Pooling.MAX)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        msg = getattr(caffe_pb2, name + "Parameter")

        class Param:
            def __getattr__(self, param_name):
                return getattr(msg, param_name)
        return Param()


layers = Layers()
params = Parameters()
