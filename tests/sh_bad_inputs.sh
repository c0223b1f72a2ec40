#!/usr/bin/env bash
# Bad inputs, one table: malformed prototxt, shape mismatches, missing / truncated / corrupt
# files, wrong Datum sizes, bad flags, impossible cluster settings. Each case runs the CLI and
# must give
#   - the expected exit status (1: the run failed, 2: a usage error) -- non-zero, below 128,
#   - the case's key phrase in the message on stderr,
#   - no sanitizer report (the sanitizer build runs this script too),
#   - no output written: no file appears in the work directory (no half-written snapshot,
#     weights, database or temporary file).
#
#   sh_bad_inputs.sh              run every case (ctest); prints "N passed, N failed"
#   sh_bad_inputs.sh --markdown   run every case and print the README's table (so the README and
#                                 the cases cannot drift apart: paste the output there)
#
# Env: CORTADO = the built binary.
set -u

MARKDOWN=0
[ "${1:-}" = "--markdown" ] && MARKDOWN=1
if [ -z "${CORTADO:-}" ] || [ ! -x "${CORTADO}" ]; then
  echo "sh_bad_inputs: set CORTADO to the built cortado binary" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_bad.XXXXXX")
L=$(mktemp -d "${TMPDIR:-/tmp}/cortado_bad_log.XXXXXX") # logs live outside the watched directory
trap 'rm -rf "$T" "$L"' EXIT
FM=/usr/share/datasets/fashion-mnist

# ---------------------------------------------------------------- fixtures
# put NAME TEXT: a text file in the work directory
put() { printf '%s\n' "$2" >"$T/$1"; }
# net NAME LAYERS...: a net whose data layer is DummyData (x: 4x3x8x8, y: 4) followed by LAYERS
DUMMY='layer { name: "data" type: "DummyData" top: "x" top: "y" dummy_data_param {
  shape { dim: 4 dim: 3 dim: 8 dim: 8 } shape { dim: 4 }
  data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }'
net() { put "$1" "name: \"$1\"
$DUMMY
$2"; }
LOSS='layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss" }'
# solver NAME LINES: a solver over @/net.prototxt (unless LINES names a net) writing to @/out/
solver() {
  local net_line="net: \"$T/net.prototxt\"" policy='lr_policy: "fixed"'
  case $2 in *net:* | *net_param* | *train_net*) net_line="" ;; esac
  case $2 in *lr_policy*) policy="" ;; esac
  put "$1" "$net_line
base_lr: 0.01 $policy max_iter: 2 snapshot_prefix: \"$T/out/s\"
$2"
}
# idx NAME HEADER_HEX DATA_BYTES: an IDX file from a hex header and N bytes of pixels
idx() { { printf '%b' "$(echo "$2" | sed 's/\(..\)/\\x\1/g')"; head -c "$3" /dev/zero; } >"$T/$1"; }
# hex HEX...: those bytes on stdout
hex() { printf '%b' "$(printf '%s' "$@" | sed 's/\(..\)/\\x\1/g')"; }
# jpeg_lie W H: a 156-byte baseline JPEG written from ITU T.81 -- a quantisation table of ones, a
# DC and an AC Huffman table of one 1-bit code each, a 1-component frame of W x H, its scan and 16
# bytes of entropy-coded data (enough for 64 blocks; W x H needs W*H/256 bytes at least)
jpeg_lie() {
  local ones="" zeros=""
  for _ in $(seq 64); do ones="${ones}01"; done
  for _ in $(seq 16); do zeros="${zeros}00"; done
  hex ffd8 ffdb004300 "$ones" ffc0000b08 "$(printf '%04x%04x' "$2" "$1")" 01011100 \
    ffc400140001 "${zeros:2}" 00 ffc400141001 "${zeros:2}" 00 ffda0008010100003f00 "$zeros" ffd9
}
# a data net over IDX files
idxnet() {
  put "$1" "layer { name: \"d\" type: \"Data\" top: \"x\" top: \"y\" ${4:-}
  idx_data_param { images: \"$2\" labels: \"$3\" batch_size: 4 } }
layer { name: \"ip\" type: \"InnerProduct\" bottom: \"x\" top: \"ip\" inner_product_param { num_output: 10 } }
layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"ip\" bottom: \"y\" top: \"loss\" }"
}
# lmdbnet NAME DB [TRANSFORM]: a net over an LMDB of Datum records
lmdbnet() {
  put "$1" "layer { name: \"d\" type: \"Data\" top: \"x\" top: \"y\" ${3:-}
  data_param { source: \"$2\" backend: LMDB batch_size: 2 } }
layer { name: \"ip\" type: \"InnerProduct\" bottom: \"x\" top: \"ip\" inner_product_param { num_output: 10 } }
layer { name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"ip\" bottom: \"y\" top: \"loss\" }"
}

fixtures() {
  net net.prototxt "$LOSS"
  solver solver.prototxt ""
  mkdir -p "$T/good"
  solver good/solver.prototxt "snapshot: 2"
  sed -i "s|$T/out/s|$T/good/g|" "$T/good/solver.prototxt"
  "$CORTADO" train --solver="$T/good/solver.prototxt" >"$L/fixture.log" 2>&1 ||
    { echo "sh_bad_inputs: the fixture training failed:" >&2; tail -5 "$L/fixture.log" >&2; }
  rm -f "$T/good/"*metrics* "$T/good/"*curves*
  # malformed prototxt
  put p_unclosed.prototxt 'name: "x" layer { name: "a" type: "Input"'
  put p_stray_brace.prototxt 'name: "x" }'
  put p_unknown_field.prototxt 'name: "x" layer { nmae: "a" }'
  put p_unquoted_string.prototxt 'name: x'
  put p_unterminated_string.prototxt 'name: "abc'
  put p_bad_escape.prototxt 'name: "a\qb"'
  put p_bad_enum.prototxt "$DUMMY"'
layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: MEDIAN kernel_size: 2 } }'
  put p_int_overflow.prototxt "$DUMMY"'
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 99999999999 } }'
  put p_negative_unsigned.prototxt "$DUMMY"'
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: -3 } }'
  put p_float_for_int.prototxt "$DUMMY"'
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 2.5 } }'
  put p_bool_word.prototxt 'force_backward: maybe'
  put p_missing_colon.prototxt 'name "x"'
  put p_twice.prototxt 'name: "a" name: "b"'
  put p_scalar_as_block.prototxt 'name { }'
  # random bytes behind a fixed non-text first byte: a random file that happened to start with
  # "#" and hold no newline would be one comment, i.e. a valid empty net
  { printf '\200\001'; head -c 298 /dev/urandom; } >"$T/p_binary.prototxt"
  printf 'name: "a\0b"\n' >"$T/p_nul.prototxt"
  : >"$T/p_empty.prototxt"
  mkdir -p "$T/p_dir.prototxt"
  # net structure and shapes
  net n_unknown_type.prototxt 'layer { name: "c" type: "Convolutionn" bottom: "x" top: "c" }'
  net n_missing_bottom.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "nothere" top: "ip" inner_product_param { num_output: 2 } }'
  net n_stray_param.prototxt 'layer { name: "r" type: "ReLU" bottom: "x" top: "r" convolution_param { num_output: 2 } }'
  net n_eltwise_shapes.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "e" type: "Eltwise" bottom: "ip" bottom: "x" top: "e" }'
  net n_concat_shapes.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "c" type: "Concat" bottom: "ip" bottom: "x" top: "c" concat_param { axis: 1 } }'
  net n_ip_zero.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 0 } }'
  net n_conv_too_big.prototxt 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 2 kernel_size: 11 } }'
  net n_conv_no_kernel.prototxt 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 2 } }'
  net n_conv_group.prototxt 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 4 kernel_size: 3 group: 2 } }'
  net n_pool_stride0.prototxt 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { kernel_size: 2 stride: 0 } }'
  net n_reshape_two_infer.prototxt 'layer { name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param { shape { dim: -1 dim: -1 } } }'
  net n_reshape_count.prototxt 'layer { name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param { shape { dim: 5 dim: 7 } } }'
  net n_slice_point.prototxt 'layer { name: "s" type: "Slice" bottom: "x" top: "a" top: "b" slice_param { axis: 1 slice_point: 9 } }'
  net n_loss_labels.prototxt 'layer { name: "d2" type: "DummyData" top: "y3" dummy_data_param { shape { dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y3" top: "loss" }'
  net n_dropout_ratio.prototxt 'layer { name: "dr" type: "Dropout" bottom: "x" top: "x" dropout_param { dropout_ratio: 1.5 } }'
  net n_too_few_bottoms.prototxt 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" top: "loss" }'
  put n_input_huge.prototxt 'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1000000 dim: 1000000 } } }'
  put n_input_negative.prototxt 'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 2 dim: -3 } } }'
  net n_inline_blob_shape.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 2 bias_term: false }
  blobs { shape { dim: 3 dim: 192 } } }'
  net n_param_specs.prototxt 'layer { name: "r" type: "ReLU" bottom: "x" top: "r" param { lr_mult: 1 } }'
  # data files
  idxnet d_missing.prototxt "$T/nothere-idx3" "$T/nothere-idx1"
  idx i_truncated "0000080300000064000000080000000800" 100
  idxnet d_truncated.prototxt "$T/i_truncated" "$FM/t10k-labels-idx1-ubyte.gz"
  idx i_huge "00000803000027100000271000002710" 20
  idxnet d_huge.prototxt "$T/i_huge" "$FM/t10k-labels-idx1-ubyte.gz"
  printf '\x89PNG\r\n\x1a\n....' >"$T/i_png"
  idxnet d_magic.prototxt "$T/i_png" "$FM/t10k-labels-idx1-ubyte.gz"
  idxnet d_count_mismatch.prototxt "$FM/t10k-images-idx3-ubyte.gz" "$FM/train-labels-idx1-ubyte.gz"
  idxnet d_labels_3d.prototxt "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-images-idx3-ubyte.gz"
  printf '\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage-not-deflate' >"$T/i_badgz.gz"
  idxnet d_bad_gzip.prototxt "$T/i_badgz.gz" "$FM/t10k-labels-idx1-ubyte.gz"
  idx i_crc_src "00000803000000020000000200000002" 8
  gzip -9nc "$T/i_crc_src" >"$T/i_crc.gz" && rm -f "$T/i_crc_src"
  printf '\xde\xad\xbe\xef' | dd of="$T/i_crc.gz" bs=1 seek=$(($(stat -c %s "$T/i_crc.gz") - 8)) conv=notrunc 2>/dev/null
  idxnet d_gzip_crc.prototxt "$T/i_crc.gz" "$FM/t10k-labels-idx1-ubyte.gz"
  jpeg_lie 10000 5000 >"$T/i_liar.jpg"
  put i_liar.txt "i_liar.jpg 0"
  put d_jpeg_header.prototxt "layer { name: \"d\" type: \"ImageData\" top: \"x\" top: \"y\"
  image_data_param { source: \"$T/i_liar.txt\" root_folder: \"$T/\" batch_size: 2 } }"
  idxnet d_crop.prototxt "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" 'transform_param { crop_size: 40 }'
  idxnet d_mean_values.prototxt "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" 'transform_param { mean_value: 1 mean_value: 2 }'
  idxnet d_mean_missing.prototxt "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" "transform_param { mean_file: \"$T/nothere.binaryproto\" }"
  printf 'garbage!' >"$T/garbage.binaryproto"
  idxnet d_mean_garbage.prototxt "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" "transform_param { mean_file: \"$T/garbage.binaryproto\" }"
  put d_no_param.prototxt 'layer { name: "d" type: "Data" top: "x" top: "y" }'
  # LMDBs of Datum records (python3-lmdb), hand-encoded
  "${PYTHON:-/usr/bin/python3}" - "$T" <<'PY' || echo "sh_bad_inputs: could not write the Datum fixtures" >&2
import lmdb, struct, sys
def varint(v):
    out = b""
    v &= (1 << 64) - 1
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return out + bytes([v])
def datum(c, h, w, data=None, floats=None, label=1, encoded=False):
    b = b"\x08" + varint(c) + b"\x10" + varint(h) + b"\x18" + varint(w)
    if data is not None: b += b"\x22" + varint(len(data)) + data
    if floats is not None: b += b"\x32" + varint(4 * len(floats)) + struct.pack("<%df" % len(floats), *floats)
    b += b"\x28" + varint(label)
    if encoded: b += b"\x38\x01"
    return b
def db(name, records):
    env = lmdb.open(sys.argv[1] + "/" + name, map_size=1 << 20)
    with env.begin(write=True) as t:
        for i, r in enumerate(records): t.put(b"%08d" % i, r)
    env.close()
db("lmdb_short", [datum(1, 4, 4, bytes(16)), datum(1, 4, 4, bytes(10))])
db("lmdb_sizes", [datum(1, 4, 4, bytes(16)), datum(1, 5, 5, bytes(25))])
db("lmdb_negative", [datum(1, -4, 4, bytes(16))])
db("lmdb_huge", [datum(1, 1000000, 1000000, bytes(16))])
db("lmdb_garbage", [b"\xff\xff\xff\xff\xff"])
db("lmdb_floats", [datum(1, 4, 4, floats=[0.5] * 7)])
db("lmdb_encoded", [datum(0, 0, 0, data=b"\x89PNG\r\n\x1a\nnot really", encoded=True)])
db("lmdb_empty", [])
db("lmdb_nodata", [datum(1, 4, 4)])
import zlib
def png(w, h, colour=False, fill=7):
    row = b"\x00" + bytes([fill]) * (w * (3 if colour else 1))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if colour else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * h, 9)) +
            chunk(b"IEND", b""))
enc = lambda p: datum(0, 0, 0, data=p, encoded=True)
# the first record fixes the size; the second declares another (16x16, or a real 37 MB image)
db("lmdb_enc_sizes", [enc(png(8, 8)), enc(png(16, 16)), enc(png(8, 8))])
db("lmdb_enc_big", [enc(png(8, 8)), enc(png(3500, 3500, True, 0)), enc(png(8, 8))])
for name, side in (("i_8.png", 8), ("i_16.png", 16)):
    open(sys.argv[1] + "/" + name, "wb").write(png(side, side))
db("lmdb_one", [datum(1, 4, 4, bytes(range(16)))])
# .caffemodels written by hand: NetParameter.layer (100) { name (1), blobs (7) { shape (7) { dim
# (1, packed) }, data (5, packed floats), legacy num (1) } }
def ld(field, payload): return varint(field << 3 | 2) + varint(len(payload)) + payload
def blob(dims, values, legacy_num=None):
    b = ld(7, ld(1, b"".join(varint(d) for d in dims))) + ld(5, struct.pack("<%df" % len(values), *values))
    if legacy_num is not None: b += b"\x08" + varint(legacy_num)
    return b
def model(path, layers):
    out = b""
    for name, blobs in layers:
        out += ld(100, ld(1, name.encode()) + b"".join(ld(7, b) for b in blobs))
    open(sys.argv[1] + "/" + path, "wb").write(out)
w = [0.01] * 1920
model("w_nan.caffemodel", [("ip", [blob([10, 192], w[:7] + [float("nan")] + w[8:]), blob([10], [0.0] * 10)])])
model("w_other_names.caffemodel", [("fc7", [blob([10, 192], w), blob([10], [0.0] * 10)])])
model("w_legacy.caffemodel", [("ip", [blob([10, 192], w, legacy_num=5), blob([10], [0.0] * 10)])])
import socket  # a socket file stays after its socket closes: an output path that is a socket
sk = socket.socket(socket.AF_UNIX)
sk.bind(sys.argv[1] + "/sock")
sk.close()
PY
  for d in short sizes negative huge garbage floats encoded empty nodata enc_sizes enc_big; do
    lmdbnet "db_$d.prototxt" "$T/lmdb_$d"
  done
  put i_sizes.txt "i_8.png 0
i_16.png 1"
  put d_image_sizes.prototxt "layer { name: \"d\" type: \"ImageData\" top: \"x\" top: \"y\"
  image_data_param { source: \"$T/i_sizes.txt\" root_folder: \"$T/\" batch_size: 2 } }"
  lmdbnet db_missing.prototxt "$T/lmdb_nothere"
  # solvers
  put s_no_net.prototxt 'base_lr: 0.01 max_iter: 2'
  solver s_net_missing.prototxt "net: \"$T/nothere.prototxt\""
  solver s_type.prototxt 'type: "SGDD"'
  solver s_policy.prototxt 'lr_policy: "sometimes"'
  solver s_step_no_size.prototxt 'lr_policy: "step" gamma: 0.1'
  solver s_iter_size.prototxt 'iter_size: 0'
  solver s_display.prototxt 'display: -5'
  solver s_gpu.prototxt 'solver_mode: GPU'
  solver s_snapshot_diff.prototxt 'snapshot_diff: true'
  solver s_test_iter.prototxt "train_net: \"$T/net.prototxt\" test_net: \"$T/net.prototxt\" test_iter: 5 test_iter: 6 test_interval: 10"
  solver s_regularization.prototxt 'regularization_type: "L3"'
  solver s_bad_net.prototxt "net: \"$T/p_unclosed.prototxt\""
  put s_snapshot_dir.prototxt "net: \"$T/net.prototxt\" base_lr: 0.01 lr_policy: \"fixed\" max_iter: 2 snapshot: 1
snapshot_prefix: \"$T/p_empty.prototxt/sub/s\""
  # cluster settings
  solver c_zero_groups.prototxt 'cluster { nworker_groups: 0 }'
  solver c_allreduce_groups.prototxt 'framework: ALLREDUCE cluster { nworker_groups: 2 }'
  solver c_downpour_noserver.prototxt 'framework: DOWNPOUR cluster { nserver_groups: 0 }'
  solver c_batch_split.prototxt 'framework: SANDBLASTER cluster { nworkers_per_group: 3 }'
  solver c_procs.prototxt 'framework: DOWNPOUR cluster { nworker_groups: 4 nworkers_per_procs: 3 }'
  # weights and snapshots
  cp "$T/good/g_iter_2.caffemodel" "$T/w_good.caffemodel" 2>/dev/null
  head -c 40 "$T/good/g_iter_2.caffemodel" >"$T/w_truncated.caffemodel"
  printf 'this is not a caffemodel' >"$T/w_text.caffemodel"
  # 27 bytes: layer "ip" with blob 0 of shape 10^6 x 10^6 holding one float, and an empty blob 1
  printf '\xa2\x06\x18\x0a\x02ip\x3a\x10\x3a\x08\x0a\x06\xc0\x84\x3d\xc0\x84\x3d\x2a\x04\x00\x00\x80\x3f\x3a\x00' >"$T/w_huge.caffemodel"
  printf '\xa2\x06\x80\xa0\x94\xa5\x8d\x1d\x0a\x01x' >"$T/w_length.caffemodel"
  net other.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 7 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss" }'
  head -c 30 "$T/good/g_iter_2.solverstate" >"$T/st_truncated.solverstate"
  printf '\x08\xfb\xff\xff\xff\xff\xff\xff\xff\xff\x01' >"$T/st_negative.solverstate"
  printf '\x08\x05\x1a\x00' >"$T/st_history.solverstate"
  printf '\x08\x02\x12\x0d/nothere/w.cm' >"$T/st_weights_gone.solverstate"
  printf 'x' >"$T/empty_ok.solverstate"
  solver s_other.prototxt "net: \"$T/other.prototxt\""
  # issue 23: files that are not regular files, silent fallbacks, values past int range
  mkfifo "$T/fifo"
  mkdir -p "$T/outdir"
  ln -s /dev/null "$T/link_null"
  idxnet d_fifo.prototxt "$T/fifo" "$FM/t10k-labels-idx1-ubyte.gz"
  : >"$T/w_empty.caffemodel"
  printf '\x08\x02\x1a\x00\x1a\x00' >"$T/st_no_net.solverstate"
  printf '\x08\x02\x12\x00\x1a\x00\x1a\x00' >"$T/st_empty_net.solverstate"
  printf '\x08\x02\x1a\x00\x1a\x00\xda\x3e\x07AdaGrad' >"$T/st_adagrad.solverstate"
  # the good state at iteration 2^31 - 2 (field 1 rewritten; its learned_net stays valid)
  { printf '\x08\xfe\xff\xff\xff\x07'; tail -c +3 "$T/good/g_iter_2.solverstate"; } >"$T/st_intmax.solverstate"
  net n_ip_huge.prototxt 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3000000000 } }'
  net n_conv_dilation.prototxt 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 2 kernel_size: 3 dilation: 3000000000 } }'
  net n_conv_kernel.prototxt 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 2 kernel_size: 3000000000 } }'
  net n_lrn_size.prototxt 'layer { name: "n" type: "LRN" bottom: "x" top: "n" lrn_param { local_size: 3000000001 } }'
  net n_top_k.prototxt "$LOSS"'
layer { name: "a" type: "Accuracy" bottom: "ip" bottom: "y" top: "a" accuracy_param { top_k: 3000000000 } }'
  put n_memory_dims.prototxt 'layer { name: "m" type: "MemoryData" top: "x" top: "y" memory_data_param { batch_size: 2 channels: 3000000000 height: 2 width: 2 } }'
  solver s_gamma_nan.prototxt 'lr_policy: "step" stepsize: 1 gamma: nan'
  solver s_average_loss.prototxt 'average_loss: 2000000000'
  cp -r "$T/lmdb_one" "$T/lmdb_cut"
  truncate -s 8192 "$T/lmdb_cut/data.mdb"
  lmdbnet db_cut.prototxt "$T/lmdb_cut"
  # the README's first command before `make demo` made the example's LMDBs (its databases and
  # snapshots moved under the work directory, where they do not exist)
  local ex=${CT_SOURCE_DIR:-$(dirname "$0")/..}/examples/fashion_mnist
  sed "s|\"demo-out/|\"$T/demo-out/|" "$ex/lenet_train_test.prototxt" >"$T/ex_net.prototxt"
  sed "s|^net: .*|net: \"$T/ex_net.prototxt\"|; s|\"demo-out/|\"$T/demo-out/|" "$ex/lenet_solver.prototxt" \
    >"$T/ex_solver.prototxt"
  mkdir -p "$T/out"
}

# ---------------------------------------------------------------- the cases
# CATEGORY | WHAT | EXIT | KEY PHRASE | ARGUMENTS ("@" is the work directory)
CASES=(
  "prototxt|unclosed block|1|unexpected end of input|time --model=@/p_unclosed.prototxt --iterations=1"
  "prototxt|stray closing brace|1|p_stray_brace.prototxt:1:|time --model=@/p_stray_brace.prototxt --iterations=1"
  "prototxt|unknown field|1|nmae|time --model=@/p_unknown_field.prototxt --iterations=1"
  "prototxt|unquoted string value|1|p_unquoted_string.prototxt:1:|time --model=@/p_unquoted_string.prototxt --iterations=1"
  "prototxt|unterminated string|1|p_unterminated_string.prototxt:1:|time --model=@/p_unterminated_string.prototxt --iterations=1"
  "prototxt|invalid escape in a string|1|p_bad_escape.prototxt:1:|time --model=@/p_bad_escape.prototxt --iterations=1"
  "prototxt|unknown enum value|1|MEDIAN|time --model=@/p_bad_enum.prototxt --iterations=1"
  "prototxt|integer out of range|1|99999999999|time --model=@/p_int_overflow.prototxt --iterations=1"
  "prototxt|negative value for an unsigned field|1|-3|time --model=@/p_negative_unsigned.prototxt --iterations=1"
  "prototxt|float for an integer field|1|2.5|time --model=@/p_float_for_int.prototxt --iterations=1"
  "prototxt|bad boolean|1|maybe|time --model=@/p_bool_word.prototxt --iterations=1"
  "prototxt|missing colon after a scalar field|1|p_missing_colon.prototxt:1:|time --model=@/p_missing_colon.prototxt --iterations=1"
  "prototxt|non-repeated field given twice|1|p_twice.prototxt:1:|time --model=@/p_twice.prototxt --iterations=1"
  "prototxt|scalar field written as a block|1|p_scalar_as_block.prototxt:1:|time --model=@/p_scalar_as_block.prototxt --iterations=1"
  "prototxt|random binary bytes|1|p_binary.prototxt:|time --model=@/p_binary.prototxt --iterations=1"
  "prototxt|NUL byte inside a string|1|p_nul.prototxt:1:|time --model=@/p_nul.prototxt --iterations=1"
  "solver|empty solver file|1|net|train --solver=@/p_empty.prototxt"
  "prototxt|a directory given as the model|1|directory|time --model=@/p_dir.prototxt --iterations=1"
  "prototxt|model file missing|1|nothere.prototxt|time --model=@/nothere.prototxt --iterations=1"
  "net|unknown layer type|1|Convolutionn|time --model=@/n_unknown_type.prototxt --iterations=1"
  "net|bottom blob that no layer produces|1|nothere|time --model=@/n_missing_bottom.prototxt --iterations=1"
  "net|a parameter its layer does not read|1|convolution_param is not read by ReLU|time --model=@/n_stray_param.prototxt --iterations=1"
  "shape|Eltwise over different shapes|1|\"e\"|time --model=@/n_eltwise_shapes.prototxt --iterations=1"
  "shape|Concat over mismatched axes|1|\"c\"|time --model=@/n_concat_shapes.prototxt --iterations=1"
  "shape|InnerProduct num_output 0|1|num_output|time --model=@/n_ip_zero.prototxt --iterations=1"
  "shape|Convolution kernel larger than its input|1|\"c\"|time --model=@/n_conv_too_big.prototxt --iterations=1"
  "shape|Convolution without kernel_size|1|kernel|time --model=@/n_conv_no_kernel.prototxt --iterations=1"
  "shape|Convolution group not dividing channels|1|group|time --model=@/n_conv_group.prototxt --iterations=1"
  "shape|Pooling stride 0|1|stride|time --model=@/n_pool_stride0.prototxt --iterations=1"
  "shape|Reshape with two inferred axes|1|-1|time --model=@/n_reshape_two_infer.prototxt --iterations=1"
  "shape|Reshape to a different count|1|\"r\"|time --model=@/n_reshape_count.prototxt --iterations=1"
  "shape|Slice point beyond the axis|1|slice_point|time --model=@/n_slice_point.prototxt --iterations=1"
  "shape|loss with labels for another batch size|1|\"loss\"|time --model=@/n_loss_labels.prototxt --iterations=1"
  "shape|too few bottoms for a layer|1|\"loss\"|time --model=@/n_too_few_bottoms.prototxt --iterations=1"
  "shape|Input of 10^12 elements|1|more than|time --model=@/n_input_huge.prototxt --iterations=1"
  "shape|Input with a negative dimension|1|is -3|time --model=@/n_input_negative.prototxt --iterations=1"
  "shape|inline blob of the wrong shape|1|shape|time --model=@/n_inline_blob_shape.prototxt --iterations=1"
  "net|param { } on a layer without parameters|1|param|time --model=@/n_param_specs.prototxt --iterations=1"
  "net|Dropout ratio 1.5|1|dropout_ratio|time --model=@/n_dropout_ratio.prototxt --iterations=1"
  "data|Data layer without a source|1|\"d\"|time --model=@/d_no_param.prototxt --iterations=1"
  "data|IDX files missing|1|nothere-idx3|time --model=@/d_missing.prototxt --iterations=1"
  "data|IDX data truncated|1|truncated|time --model=@/d_truncated.prototxt --iterations=1"
  "data|IDX header claiming 10^12 bytes|1|implausible|time --model=@/d_huge.prototxt --iterations=1"
  "data|a PNG given as an IDX file|1|not an unsigned-byte IDX file|time --model=@/d_magic.prototxt --iterations=1"
  "data|IDX labels for another image count|1|labels for|time --model=@/d_count_mismatch.prototxt --iterations=1"
  "data|an image file given as labels|1|must be 1-D|time --model=@/d_labels_3d.prototxt --iterations=1"
  "data|corrupt gzip|1|i_badgz.gz: corrupt gzip data: invalid block type|time --model=@/d_bad_gzip.prototxt --iterations=1"
  "data|gzip with a wrong CRC-32|1|i_crc.gz: corrupt gzip data: incorrect data check|time --model=@/d_gzip_crc.prototxt --iterations=1"
  "data|156-byte JPEG whose header declares 10000x5000 pixels|1|declares 10000x5000|time --model=@/d_jpeg_header.prototxt --iterations=1"
  "data|image list of two sizes, without new_height/new_width|1|i_16.png: PNG header declares a 3x16x16 image (channels x height x width) but 3x8x8 is expected|time --model=@/d_image_sizes.prototxt --iterations=1"
  "data|crop_size larger than the image|1|crop_size|time --model=@/d_crop.prototxt --iterations=1"
  "data|mean_value count not matching channels|1|mean_value|time --model=@/d_mean_values.prototxt --iterations=1"
  "data|mean_file missing|1|nothere.binaryproto|time --model=@/d_mean_missing.prototxt --iterations=1"
  "data|mean_file not a BlobProto|1|garbage.binaryproto|time --model=@/d_mean_garbage.prototxt --iterations=1"
  "datum|LMDB missing|1|lmdb_nothere|time --model=@/db_missing.prototxt --iterations=1"
  "datum|Datum with fewer bytes than C x H x W|1|data holds 10 bytes|time --model=@/db_short.prototxt --iterations=2"
  "datum|Datum sizes changing between records|1|1x5x5|time --model=@/db_sizes.prototxt --iterations=2"
  "datum|encoded Datum of 16x16 after one of 8x8|1|lmdb_enc_sizes: PNG header declares a 1x16x16 image (channels x height x width) but 1x8x8 is expected|time --model=@/db_enc_sizes.prototxt --iterations=1"
  "datum|encoded Datum of 3500x3500x3 (37 MB) after one of 8x8|1|PNG header declares a 3x3500x3500 image|time --model=@/db_enc_big.prototxt --iterations=1"
  "datum|Datum with a negative height|1|negative|time --model=@/db_negative.prototxt --iterations=1"
  "datum|Datum claiming 10^12 pixels|1|implausible Datum size|time --model=@/db_huge.prototxt --iterations=1"
  "datum|record that is not a Datum|1|not a Datum|time --model=@/db_garbage.prototxt --iterations=1"
  "datum|float_data count not matching C x H x W|1|float_data holds 7 values|time --model=@/db_floats.prototxt --iterations=1"
  "datum|encoded Datum that is not an image|1|lmdb_encoded|time --model=@/db_encoded.prototxt --iterations=1"
  "datum|empty LMDB|1|no records|time --model=@/db_empty.prototxt --iterations=1"
  "datum|Datum with neither data nor float_data|1|neither data nor float_data|time --model=@/db_nodata.prototxt --iterations=1"
  "solver|solver file missing|1|nothere.prototxt|train --solver=@/nothere.prototxt"
  "solver|solver without a net|1|net|train --solver=@/s_no_net.prototxt"
  "solver|net file missing|1|nothere.prototxt|train --solver=@/s_net_missing.prototxt"
  "solver|unknown solver type|1|SGDD|train --solver=@/s_type.prototxt"
  "solver|unknown lr_policy|1|sometimes|train --solver=@/s_policy.prototxt"
  "solver|step policy without stepsize|1|stepsize|train --solver=@/s_step_no_size.prototxt"
  "solver|iter_size 0|1|iter_size|train --solver=@/s_iter_size.prototxt"
  "solver|negative display|1|display|train --solver=@/s_display.prototxt"
  "solver|solver_mode: GPU without a GPU|1|no GPU to run on|train --solver=@/s_gpu.prototxt"
  "solver|a field cortado does not implement (snapshot_diff)|1|snapshot_diff is not supported|train --solver=@/s_snapshot_diff.prototxt"
  "solver|test_iter count not matching the test nets|1|test_iter|train --solver=@/s_test_iter.prototxt"
  "solver|unknown regularization_type|1|L3|train --solver=@/s_regularization.prototxt"
  "solver|malformed net behind a good solver|1|p_unclosed.prototxt:2:1|train --solver=@/s_bad_net.prototxt"
  "solver|snapshot prefix under a regular file|1|snapshot|train --solver=@/s_snapshot_dir.prototxt"
  "weights|weights file missing|1|nothere.caffemodel|train --solver=@/solver.prototxt --weights=@/nothere.caffemodel"
  "weights|text file as weights|1|w_text.caffemodel|train --solver=@/solver.prototxt --weights=@/w_text.caffemodel"
  "weights|truncated .caffemodel|1|w_truncated.caffemodel|train --solver=@/solver.prototxt --weights=@/w_truncated.caffemodel"
  "weights|weights of another net (shape mismatch)|1|shape|train --solver=@/s_other.prototxt --weights=@/w_good.caffemodel"
  "weights|27-byte file claiming a 10^12-element blob|1|1000000 1000000|train --solver=@/solver.prototxt --weights=@/w_huge.caffemodel"
  "weights|length prefix claiming 10^12 bytes|1|claims 1000000000000 bytes|train --solver=@/solver.prototxt --weights=@/w_length.caffemodel"
  "weights|`test` with a missing weights file|1|nothere.caffemodel|test --model=@/net.prototxt --weights=@/nothere.caffemodel --iterations=1"
  "snapshot|.solverstate missing|1|nothere.solverstate|train --solver=@/solver.prototxt --snapshot=@/nothere.solverstate"
  "snapshot|truncated .solverstate|1|st_truncated.solverstate|train --solver=@/solver.prototxt --snapshot=@/st_truncated.solverstate"
  "snapshot|negative iteration|1|iteration -5 is negative|train --solver=@/solver.prototxt --snapshot=@/st_negative.solverstate"
  "snapshot|history of another solver|1|history blobs|train --solver=@/solver.prototxt --snapshot=@/st_history.solverstate"
  "snapshot|.solverstate of another net|1|shape 10 192 in the weights file|train --solver=@/s_other.prototxt --snapshot=@/good/g_iter_2.solverstate"
  "snapshot|one garbage byte|1|empty_ok.solverstate|train --solver=@/solver.prototxt --snapshot=@/empty_ok.solverstate"
  "flags|no command|2|no command|"
  "flags|unknown command|2|unknown command|frobnicate"
  "flags|unknown flag|2|unknown flag '--bogus'|train --solver=@/solver.prototxt --bogus=1"
  "flags|train without --solver|2|--solver|train"
  "flags|--snapshot and --weights together|2|--snapshot|train --solver=@/solver.prototxt --snapshot=@/good/g_iter_2.solverstate --weights=@/w_good.caffemodel"
  "flags|non-numeric --iterations|2|--iterations|test --model=@/net.prototxt --weights=@/w_good.caffemodel --iterations=abc"
  "flags|negative --iterations|2|--iterations|test --model=@/net.prototxt --weights=@/w_good.caffemodel --iterations=-3"
  "flags|unknown --phase|2|--phase|test --model=@/net.prototxt --weights=@/w_good.caffemodel --phase=VALIDATE --iterations=1"
  "flags|flag missing its value|2|needs a value|test --weights=x --model"
  "flags|value given to a switch|2|takes no value|train --solver=@/solver.prototxt --quiet=loud"
  "files|output is a character device (compute-mean -o /dev/null)|1|is a character device|compute-mean --db=@/lmdb_one -o /dev/null"
  "files|output is a directory|1|is a directory|compute-mean --db=@/lmdb_one -o @/outdir"
  "files|output is a FIFO (not blocked on)|1|is a FIFO|compute-mean --db=@/lmdb_one -o @/fifo"
  "files|output is a symlink to a device|1|links to /dev/null|compute-mean --db=@/lmdb_one -o @/link_null"
  "files|output is a socket|1|is a socket|compute-mean --db=@/lmdb_one -o @/sock"
  "files|\`plot\` input is a FIFO (not blocked on)|1|is a FIFO|plot @/fifo -o @/curves.svg"
  "files|--weights is a FIFO (not blocked on)|1|is a FIFO|train --solver=@/solver.prototxt --weights=@/fifo"
  "files|--model is a FIFO|1|is a FIFO|time --model=@/fifo --iterations=1"
  "files|IDX data file is a FIFO|1|is a FIFO|time --model=@/d_fifo.prototxt --iterations=1"
  "files|database over the file size limit (ulimit -f; SIGXFSZ ignored)|1|File too large|@ulimit-f:64 convert --images=$FM/t10k-images-idx3-ubyte.gz --labels=$FM/t10k-labels-idx1-ubyte.gz --db=@/big_lmdb"
  "datum|LMDB data file cut short|1|truncated|time --model=@/db_cut.prototxt --iterations=1"
  "datum|the example trained before \`make demo\` made its LMDBs|1|run 'make demo' once|train --solver=@/ex_solver.prototxt"
  "net|empty net file (no layers)|1|no layers|time --model=@/p_empty.prototxt --iterations=1"
  "weights|weights holding a NaN|1|NaN or Inf|train --solver=@/solver.prototxt --weights=@/w_nan.caffemodel"
  "weights|\`test\` with weights holding a NaN|1|NaN or Inf|test --model=@/net.prototxt --weights=@/w_nan.caffemodel --iterations=1"
  "weights|weights sharing no layer with the net|1|weights of another model|train --solver=@/solver.prototxt --weights=@/w_other_names.caffemodel"
  "weights|empty weights file|1|holds no layers|train --solver=@/solver.prototxt --weights=@/w_empty.caffemodel"
  "weights|legacy num that does not match, beside a matching shape|1|shape|train --solver=@/solver.prototxt --weights=@/w_legacy.caffemodel"
  "snapshot|.solverstate without learned_net|1|learned_net is missing|train --solver=@/solver.prototxt --snapshot=@/st_no_net.solverstate"
  "snapshot|.solverstate with an empty learned_net|1|learned_net is empty|train --solver=@/solver.prototxt --snapshot=@/st_empty_net.solverstate"
  "snapshot|AdaGrad history into an SGD solver|1|history of a AdaGrad solver|train --solver=@/solver.prototxt --snapshot=@/st_adagrad.solverstate"
  "snapshot|iteration 2^31-2, then 5 more|1|largest iteration number|train --solver=@/solver.prototxt --snapshot=@/st_intmax.solverstate --iterations=5"
  "shape|InnerProduct num_output 3000000000|1|num_output 3000000000 is too large|time --model=@/n_ip_huge.prototxt --iterations=1"
  "shape|Convolution dilation 3000000000|1|dilation 3000000000 is too large|time --model=@/n_conv_dilation.prototxt --iterations=1"
  "shape|Convolution kernel_size 3000000000|1|kernel size 3000000000 is too large|time --model=@/n_conv_kernel.prototxt --iterations=1"
  "shape|LRN local_size 3000000001|1|local_size 3000000001 is too large|time --model=@/n_lrn_size.prototxt --iterations=1"
  "shape|Accuracy top_k 3000000000|1|top_k 3000000000 is too large|time --model=@/n_top_k.prototxt --iterations=1"
  "shape|MemoryData channels 3000000000|1|too large|time --model=@/n_memory_dims.prototxt --iterations=1"
  "solver|gamma: nan|1|gamma is nan|train --solver=@/s_gamma_nan.prototxt"
  "solver|average_loss 2000000000|1|average_loss 2000000000 is too large|train --solver=@/s_average_loss.prototxt"
  "flags|--iterations beyond int range|2|too large|train --solver=@/solver.prototxt --iterations=3000000000"
  "flags|unknown --sigint_effect|2|--sigint_effect|train --solver=@/solver.prototxt --sigint_effect=explode"
  "flags|--flagfile missing|2|--flagfile|train --flagfile=@/nothere.flags"
  "flags|--gpu without a GPU|2|no GPU to run on|train --solver=@/solver.prototxt --gpu=0"
  "flags|--gpu with a bad list|2|expected device numbers|train --solver=@/solver.prototxt --gpu=0,x"
  "flags|device_query without GPUs|1|no GPU devices|device_query"
  "cluster|zero worker groups|1|cluster|train --solver=@/c_zero_groups.prototxt"
  "cluster|AllReduce with two worker groups|1|ALLREDUCE|train --solver=@/c_allreduce_groups.prototxt"
  "cluster|Downpour without servers|1|server|train --solver=@/c_downpour_noserver.prototxt"
  "cluster|more workers than MPI processes|1|needs 3 MPI processes|train --solver=@/c_batch_split.prototxt"
  "cluster|more processes needed than started|1|processes|train --solver=@/c_procs.prototxt"
)

# ---------------------------------------------------------------- running
pass=0
fail=0
rows=()
fixtures
# everything the fixtures wrote is older than the stamp; a case may add nothing
touch -d '1 minute ago' "$T/.stamp" 2>/dev/null || touch "$T/.stamp"
sleep 1
touch "$T/.stamp"

for c in "${CASES[@]}"; do
  IFS='|' read -r cat what want phrase argstr <<<"$c"
  read -ra args <<<"${argstr//@/$T}"
  limit=unlimited # "@ulimit-f:N ARGS": run under ulimit -f N (KiB)
  if [ "${#args[@]}" -gt 0 ] && [[ "${args[0]}" == "$T"ulimit-f:* ]]; then
    limit=${args[0]#"$T"ulimit-f:}
    args=("${args[@]:1}")
  fi
  (ulimit -f "$limit" && exec timeout 120 "$CORTADO" "${args[@]}") >"$L/out" 2>"$L/err"
  rc=$?
  msg=$(grep -v '^I[0-9]' "$L/err" | grep -v '^ *$' | head -3 | tr '\n' ' ' | sed 's/ *$//')
  problems=()
  [ "$rc" -eq "$want" ] || problems+=("exit status $rc, want $want")
  [ "$rc" -lt 128 ] || problems+=("killed by a signal")
  grep -Fq -- "$phrase" "$L/err" || problems+=("no '$phrase' on stderr")
  grep -Eq 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$L/err" &&
    problems+=("a sanitizer report")
  new=$(find "$T" -newer "$T/.stamp" -type f 2>/dev/null | sed "s|$T/||" | tr '\n' ' ')
  [ -z "$new" ] || problems+=("files written: $new")
  if [ "${#problems[@]}" -eq 0 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: [$cat] $what (cortado ${argstr}): ${problems[*]}" >&2
    echo "  stderr: $(head -c 600 "$L/err")" >&2
  fi
  # clean up whatever a failing case wrote, so the next case starts clean
  find "$T" -newer "$T/.stamp" -type f -delete 2>/dev/null
  shown=$(echo "$msg" | sed "s|$T/||g; s|$FM/||g; s/|/\\\\|/g")
  shown_cmd=$(echo "cortado ${argstr//@\//}" | sed "s|^cortado @ulimit-f:\([0-9]*\) |(ulimit -f \1) cortado |; s|$FM/||g")
  rows+=("| $cat | $what | \`$shown_cmd\` | $want | $phrase | $shown |")
done

# a refused device stays what it was
[ -c /dev/null ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: /dev/null is no longer a device" >&2; }

# The README's table must list the same cases (kind, input, command, exit, key phrase) in order.
README=${CT_SOURCE_DIR:-$(dirname "$0")/..}/README.md
if [ "$MARKDOWN" -eq 0 ] && [ -r "$README" ]; then
  key_cols() { cut -d'|' -f2-6; }
  if ! diff <(sed -n '/<!-- bad-inputs:begin -->/,/<!-- bad-inputs:end -->/p' "$README" | grep '^| [a-z]' |
    grep -v '^| kind |' | key_cols) <(printf '%s\n' "${rows[@]}" | key_cols) >"$L/drift"; then
    fail=$((fail + 1))
    echo "FAIL: README.md's bad-input table differs from the cases here; regenerate it with --markdown:" >&2
    head -20 "$L/drift" >&2
  else
    pass=$((pass + 1))
  fi
fi

if [ "$MARKDOWN" -eq 1 ]; then
  echo "| kind | bad input | command | exit | key phrase (checked) | message |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
fi
echo "$pass passed, $fail failed (${#CASES[@]} bad inputs)" >&2
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
