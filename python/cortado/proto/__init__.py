"""cortado.proto.caffe_pb2: protobuf message classes (NetParameter, SolverParameter, BlobProto,
Datum, ...) for cortado's own schema (src/proto/cortado.proto, package `caffe`), as pycaffe's
caffe.proto.caffe_pb2. They are built from the descriptor set embedded in libcortado.so at build
time, so they always match the library in use. Needs Python's protobuf runtime (Debian's
python3-protobuf); without it, importing caffe_pb2 raises ImportError saying so."""
