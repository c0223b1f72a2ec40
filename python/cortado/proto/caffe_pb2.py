"""pycaffe's caffe_pb2, for cortado's schema: every message and enum of cortado.proto as a
module attribute (classes, and the values of top-level enums: TRAIN, TEST, ...). See
cortado/proto/__init__.py."""
import ctypes

try:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.internal import enum_type_wrapper
except ImportError as e:
    raise ImportError("cortado.proto.caffe_pb2 needs Python's protobuf runtime (Debian's python3-protobuf): %s"
                      % e) from None

from .. import _lib


def _descriptor_set():
    n = ctypes.c_size_t()
    ptr = _lib.lib.ctpy_proto_descriptor(ctypes.byref(n))
    return descriptor_pb2.FileDescriptorSet.FromString(ctypes.string_at(ptr, n.value))


_pool = descriptor_pool.DescriptorPool()
for _f in _descriptor_set().file:
    _pool.Add(_f)
DESCRIPTOR = _pool.FindFileByName("cortado.proto")


def _classes():
    if hasattr(message_factory, "GetMessageClassesForFiles"):
        return message_factory.GetMessageClassesForFiles(["cortado.proto"], _pool)
    factory = message_factory.MessageFactory(_pool)
    return {d.full_name: factory.GetPrototype(d) for d in DESCRIPTOR.message_types_by_name.values()}


_all = _classes()
for _name, _desc in DESCRIPTOR.message_types_by_name.items():
    globals()[_name] = _all[_desc.full_name]
for _name, _edesc in DESCRIPTOR.enum_types_by_name.items():
    globals()[_name] = enum_type_wrapper.EnumTypeWrapper(_edesc)
    for _v in _edesc.values:
        globals()[_v.name] = _v.number
del _name, _desc, _f
