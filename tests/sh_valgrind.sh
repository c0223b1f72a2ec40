#!/usr/bin/env bash
# A short training under valgrind's memcheck: 20 iterations of a small conv net on IDX
# Fashion-MNIST (512 images cut from the test set, shuffle, crop, mirror, dropout), test passes,
# snapshots, the training curves the CLI draws, a resume, `cortado test` and an error exit. Any invalid
# read or write, use of uninitialised memory, or leaked block (definite, indirect or possible)
# fails the test.
#
# Valgrind cannot run an ASan binary, so the sanitizer build leaves this test out (Makefile).
# OpenBLAS runs single-threaded on a core type valgrind emulates (no AVX-512). tests/valgrind.supp
# names the only leaks tolerated: caches inside fontconfig and cairo, which never free them.
#
# Env: CORTADO = the built binary. Prints "N passed, N failed"; exits non-zero on any failure.
set -u

if [ -z "${CORTADO:-}" ] || [ ! -x "${CORTADO}" ]; then
  echo "sh_valgrind: set CORTADO to the built cortado binary" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if ! command -v valgrind >/dev/null; then
  echo "sh_valgrind: valgrind is not installed (Debian package valgrind; 'make deps' installs it)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
DATA=/usr/share/datasets/fashion-mnist
T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_vg.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
good() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*" >&2
}

# 512 records as plain IDX: memcheck runs ~50x slower, and inflating the whole gzipped set
# would dominate the run
"${PYTHON:-/usr/bin/python3}" - "$DATA" "$T" <<'PY' || bad "cannot cut the IDX subset"
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for kind, rec in (("images-idx3", 28 * 28), ("labels-idx1", 1)):
    raw = gzip.open(f"{src}/t10k-{kind}-ubyte.gz").read()
    ndim = raw[3]
    hdr = bytearray(raw[:4 + 4 * ndim])
    hdr[4:8] = struct.pack(">I", 512)
    open(f"{dst}/{kind}", "wb").write(bytes(hdr) + raw[4 + 4 * ndim:4 + 4 * ndim + 512 * rec])
PY
cat >"$T/net.prototxt" <<EOF
name: "vg"
layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 mirror: true crop_size: 24 }
  idx_data_param { images: "$T/images-idx3" labels: "$T/labels-idx1"
    batch_size: 8 shuffle: true } }
layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 crop_size: 24 }
  idx_data_param { images: "$T/images-idx3" labels: "$T/labels-idx1"
    batch_size: 8 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "relu" type: "ReLU" bottom: "pool" top: "pool" }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" dropout_param { dropout_ratio: 0.2 } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
EOF
cat >"$T/solver.prototxt" <<EOF
net: "$T/net.prototxt"
type: "Adam" base_lr: 0.001 lr_policy: "fixed" max_iter: 20 display: 5
test_iter: 2 test_interval: 10 snapshot: 10 snapshot_prefix: "$T/out/vg" random_seed: 3
EOF

export OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell OMP_NUM_THREADS=1
VG=(valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible
  --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes --num-callers=30
  --suppressions="$(dirname "$0")/valgrind.supp")

# vg NAME ARGS...: runs cortado ARGS under memcheck; the log goes to $T/NAME.vg
vg() {
  local name=$1
  shift
  "${VG[@]}" --log-file="$T/$name.vg" "$CORTADO" "$@" >"$T/$name.out" 2>&1
  local rc=$?
  local errs
  errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$T/$name.vg" | tail -1)
  echo "sh_valgrind: $name: exit $rc, $(grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable' "$T/$name.vg" | sed 's/^==[0-9]*== *//' | tr '\n' ';')"
  if [ "$rc" -eq 0 ] && [ "${errs:-1}" -eq 0 ]; then
    good
  else
    bad "$name: exit $rc, ${errs:-?} valgrind errors"
    grep -E -A12 'Invalid|uninitialised|Conditional jump|definitely lost in|indirectly lost in|possibly lost in' \
      "$T/$name.vg" | head -80 >&2
    tail -3 "$T/$name.out" >&2
  fi
}

vg train train --solver="$T/solver.prototxt"
[ -s "$T/out/vg_iter_20.caffemodel" ] && good || bad "no final snapshot"
vg resume train --solver="$T/solver.prototxt" --snapshot="$T/out/vg_iter_10.solverstate"
vg test test --model="$T/net.prototxt" --weights="$T/out/vg_iter_20.caffemodel" --iterations=2
# an error path: a weights file of the wrong shape frees everything on the way out
printf 'not a caffemodel' >"$T/bad.caffemodel"
"${VG[@]}" --log-file="$T/bad.vg" "$CORTADO" train --solver="$T/solver.prototxt" --weights="$T/bad.caffemodel" \
  >"$T/bad.out" 2>&1
rc=$?
errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$T/bad.vg" | tail -1)
echo "sh_valgrind: bad weights: exit $rc, ${errs:-?} errors"
[ "$rc" -eq 1 ] && [ "${errs:-1}" -eq 0 ] && good || bad "bad weights: exit $rc (want 1), ${errs:-?} valgrind errors"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
