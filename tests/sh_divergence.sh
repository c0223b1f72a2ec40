#!/usr/bin/env bash
# The divergence guard through the CLI: a regression net trained with too high a learning rate
# (deterministic: DummyData with a fixed seed) blows up; cortado must stop with exit status 1 and
# a message naming the iteration and the first layer with non-finite values, leave every snapshot
# written before intact, write none after, and resuming from the last snapshot must reach the same
# failure at the same iteration (the snapshot holds the good state, not the diverged one). NaN in
# the input data stops training at iteration 0 naming the data layer.
#
# Env: CORTADO = the built binary. Prints "N passed, N failed"; exits non-zero on any failure.
set -u

if [ -z "${CORTADO:-}" ] || [ ! -x "${CORTADO}" ]; then
  echo "sh_divergence: set CORTADO to the built cortado binary" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_div.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
good() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*" >&2
}

# net FILE FILLER: a two-layer regression net; FILLER is the data_filler of x
net() {
  cat >"$1" <<EOF
name: "diverge"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 4 dim: 8 } shape { dim: 4 dim: 2 }
    data_filler { $2 } data_filler { type: "constant" value: 1 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "x" top: "fc1"
  inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc2" bottom: "y" top: "loss" }
EOF
}
net "$T/net.prototxt" 'type: "gaussian" std: 1'
cat >"$T/solver.prototxt" <<EOF
net: "$T/net.prototxt"
type: "SGD" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed"
max_iter: 1000 snapshot: 2 snapshot_prefix: "$T/out/div" random_seed: 5 display: 1
EOF

"$CORTADO" train --solver="$T/solver.prototxt" >"$T/log" 2>&1
rc=$?
msg=$(grep '^cortado:' "$T/log" | tail -1)
echo "sh_divergence: $msg"
[ "$rc" -eq 1 ] && good || { bad "exit status $rc, want 1"; tail -20 "$T/log" >&2; }
if [[ "$msg" =~ iteration\ ([0-9]+):\ .*not\ finite.*layer\ \"([a-z0-9]+)\" ]]; then
  good
  it=${BASH_REMATCH[1]}
  layer=${BASH_REMATCH[2]}
else
  bad "the message does not name the iteration and the layer: '$msg'"
  it=-1
  layer=""
fi
# snapshots: every one written is at or before the failing iteration, with its pair
last=$(ls "$T/out" | sed -n 's/^div_iter_\([0-9]*\)\.solverstate$/\1/p' | sort -n | tail -1)
if [ -z "$last" ]; then
  bad "no snapshot was written before the divergence at iteration $it"
else
  [ "$last" -le "$it" ] && good || bad "a snapshot (iteration $last) was written after the divergence at $it"
  [ -s "$T/out/div_iter_$last.caffemodel" ] && good || bad "div_iter_$last.caffemodel missing"
  n_tmp=$(ls -A "$T/out" | grep -c 'tmp' || true)
  [ "$n_tmp" -eq 0 ] && good || bad "$n_tmp temporary files left in the snapshot directory"
  # the last good snapshot resumes and diverges again at the same iteration with the same message
  "$CORTADO" train --solver="$T/solver.prototxt" --snapshot="$T/out/div_iter_$last.solverstate" >"$T/log2" 2>&1
  rc2=$?
  msg2=$(grep '^cortado:' "$T/log2" | tail -1)
  [ "$rc2" -eq 1 ] && [ "$msg2" = "$msg" ] && good ||
    { bad "resuming from iteration $last: exit $rc2, '$msg2' (want exit 1, '$msg')"; tail -20 "$T/log2" >&2; }
  # and its weights are all finite (decoded here with a few lines of protobuf, no cortado code)
  if "${PYTHON:-/usr/bin/python3}" - "$T/out/div_iter_$last.caffemodel" <<'PY'; then good; else bad "div_iter_$last.caffemodel holds non-finite or no weights"; fi
import math, struct, sys
def fields(b):
    i = 0
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0: v, i = varint(b, i)
        elif w == 1: v, i = b[i:i + 8], i + 8
        elif w == 5: v, i = b[i:i + 4], i + 4
        else:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        yield f, v
def varint(b, i):
    x = s = 0
    while True:
        c = b[i]; i += 1; x |= (c & 0x7f) << s; s += 7
        if c < 0x80: return x, i
vals = []
for f, layer in fields(open(sys.argv[1], "rb").read()):
    if f != 100: continue
    for g, blob in fields(layer):
        if g != 7: continue
        for h, data in fields(blob):
            if h == 5: vals += struct.unpack("<%df" % (len(data) // 4), data)
sys.exit(0 if vals and all(math.isfinite(v) for v in vals) else 1)
PY
fi

# NaN in the data: stops at iteration 0 and names the data layer
net "$T/nan_net.prototxt" 'type: "constant" value: nan'
sed "s|$T/net.prototxt|$T/nan_net.prototxt|; s|out/div|out/nan|" "$T/solver.prototxt" >"$T/nan_solver.prototxt"
"$CORTADO" train --solver="$T/nan_solver.prototxt" >"$T/log4" 2>&1
rc=$?
msg=$(grep '^cortado:' "$T/log4" | tail -1)
[ "$rc" -eq 1 ] && good || { bad "NaN data: exit status $rc, want 1"; tail -20 "$T/log4" >&2; }
[[ "$msg" == *"iteration 0:"*"not finite"*'layer "data" (DummyData)'* ]] && good ||
  bad "NaN data: the message does not name iteration 0 and layer \"data\": '$msg'"
[ -z "$(ls "$T/out" | grep '^nan_iter_')" ] && good || bad "NaN data: a snapshot was written"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
