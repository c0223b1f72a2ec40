#!/usr/bin/env bash
# Crash-safe snapshots, end to end through the CLI: train a small net (IDX Fashion-MNIST with
# shuffle, mirror, crop and dropout, Adam, fixed seed) uninterrupted once; then 20 times start the
# same training, kill -9 it after a random delay, and
#   - check that every .caffemodel / .solverstate it left is byte-identical to the uninterrupted
#     run's file of the same name (so none is torn: each is the old file or the complete new one),
#   - resume with --snapshot=<latest .solverstate> (or start over when none was written yet),
#   - check that the final .caffemodel is byte-identical to the uninterrupted run's.
#
# Env: CORTADO = the built binary; CT_KILL_SEED fixes the random delays (default: the time);
# CT_KILL_CYCLES (default 20). Prints "N passed, N failed" and exits non-zero on any failure.
set -u

if [ -z "${CORTADO:-}" ] || [ ! -x "${CORTADO}" ]; then
  echo "sh_kill_resume: set CORTADO to the built cortado binary" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
DATA=/usr/share/datasets/fashion-mnist
if [ ! -r "$DATA/t10k-images-idx3-ubyte.gz" ]; then
  echo "sh_kill_resume: $DATA missing (Debian package dataset-fashion-mnist)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

CYCLES=${CT_KILL_CYCLES:-20}
SEED=${CT_KILL_SEED:-$(date +%s)}
RANDOM=$SEED
MAX_ITER=600
T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_kill.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
good() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL (seed $SEED): $*" >&2
}

cat >"$T/net.prototxt" <<EOF
name: "kill_resume"
layer { name: "d" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 mirror: true crop_size: 24 }
  idx_data_param { images: "$DATA/t10k-images-idx3-ubyte.gz" labels: "$DATA/t10k-labels-idx1-ubyte.gz"
    batch_size: 8 shuffle: true } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 5 stride: 2 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" dropout_param { dropout_ratio: 0.2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
EOF

# solver DIR: a solver whose snapshots go to DIR/kr_iter_N.*
solver() {
  mkdir -p "$1"
  cat >"$1/solver.prototxt" <<EOF
net: "$T/net.prototxt"
type: "Adam" base_lr: 0.001 momentum: 0.9 momentum2: 0.999 lr_policy: "fixed"
max_iter: $MAX_ITER snapshot: 15 snapshot_prefix: "$1/kr" random_seed: 5 display: 0 average_loss: 5
EOF
}

# latest DIR: the .solverstate of the highest iteration in DIR (temporary files excluded), or "".
latest() {
  ls "$1" 2>/dev/null | sed -n 's/^kr_iter_\([0-9]*\)\.solverstate$/\1/p' | sort -n | tail -1 |
    sed "s|.*|$1/kr_iter_&.solverstate|"
}

REF=$T/r00 # the same length as each cycle's c01..c99, so the .solverstate bytes line up
solver "$REF"
start=$(date +%s.%N)
if ! "$CORTADO" train --solver="$REF/solver.prototxt" >"$REF.log" 2>&1; then
  bad "the uninterrupted run failed"
  tail -5 "$REF.log" >&2
  echo "$pass passed, $fail failed"
  exit 1
fi
ref_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
FINAL=kr_iter_$MAX_ITER.caffemodel
[ -s "$REF/$FINAL" ] && good || bad "the uninterrupted run wrote no $FINAL"
# delays up to 1.2 x the uninterrupted run, in milliseconds (some kills land after the end)
span_ms=$(awk -v s="$ref_s" 'BEGIN { printf "%d", s * 1200 }')
[ "$span_ms" -lt 100 ] && span_ms=100
echo "sh_kill_resume: uninterrupted run ${ref_s}s; $CYCLES kills within ${span_ms} ms; seed $SEED"

killed_at=""
for c in $(seq 1 "$CYCLES"); do
  d=$(printf "%s/c%02d" "$T" "$c")
  solver "$d"
  delay_ms=$(((RANDOM * 32768 + RANDOM) % span_ms))
  "$CORTADO" train --solver="$d/solver.prototxt" >"$d/run1.log" 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  # every snapshot left behind is complete: the same bytes as the uninterrupted run's
  torn=0
  for f in "$d"/kr_iter_*.caffemodel "$d"/kr_iter_*.solverstate; do
    [ -e "$f" ] || continue
    b=$(basename "$f")
    if [ "${b%.solverstate}" != "$b" ]; then
      # a .solverstate names its own directory's .caffemodel: compare all but that path
      cmp -s <(LC_ALL=C sed "s|$d|DIR|g" "$f") <(LC_ALL=C sed "s|$REF|DIR|g" "$REF/$b") || torn=$((torn + 1))
    else
      cmp -s "$f" "$REF/$b" || torn=$((torn + 1))
    fi
  done
  [ "$torn" -eq 0 ] && good || bad "cycle $c: $torn snapshot files differ from the uninterrupted run's (killed after ${delay_ms} ms)"
  st=$(latest "$d")
  if [ -n "$st" ]; then
    it=$(basename "$st" .solverstate)
    killed_at="$killed_at ${it#kr_iter_}"
  else
    killed_at="$killed_at scratch"
  fi
  if [ -n "$st" ]; then
    "$CORTADO" train --solver="$d/solver.prototxt" --snapshot="$st" >"$d/run2.log" 2>&1
  else
    "$CORTADO" train --solver="$d/solver.prototxt" >"$d/run2.log" 2>&1
  fi
  rc=$?
  if [ "$rc" -ne 0 ]; then
    bad "cycle $c: resuming from '${st:-scratch}' exited $rc"
    tail -5 "$d/run2.log" >&2
    continue
  fi
  if cmp -s "$d/$FINAL" "$REF/$FINAL"; then
    good
  else
    bad "cycle $c: resumed from '${st:-scratch}' (killed after ${delay_ms} ms), the final weights differ"
  fi
  rm -rf "$d"
done
echo "sh_kill_resume: resumed from iterations:$killed_at"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
