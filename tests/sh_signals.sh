#!/usr/bin/env bash
# Caffe's signal handling, end to end through the CLI (issue 23). A small net (IDX Fashion-MNIST
# with shuffle, mirror, crop and dropout, Adam, fixed seed, no periodic snapshots) trains
# uninterrupted once; then, at random iterations:
#   - SIGINT and SIGTERM (default effect: stop) end the run with exit status 3 after exactly one
#     snapshot, at an iteration below max_iter, with the curves written; resuming from it gives
#     the uninterrupted run's final weights byte for byte;
#   - SIGHUP (default effect: snapshot) writes a snapshot mid-run and training goes on to the
#     uninterrupted run's final weights; resuming from that snapshot gives them too;
#   - --sigint_effect=none ignores SIGINT, --sigint_effect=snapshot snapshots and goes on,
#     --sighup_effect=stop stops;
#   - with mpirun (ALLREDUCE, 2 ranks), SIGINT to mpirun: one snapshot pair, written by rank 0,
#     and every rank stops.
# Env: CORTADO; CT_SIGNAL_SEED fixes the random iterations (default: the time).
set -u
: "${CORTADO:?}"
DATA=/usr/share/datasets/fashion-mnist
if [ ! -r "$DATA/t10k-images-idx3-ubyte.gz" ]; then
  echo "sh_signals: $DATA missing (Debian package dataset-fashion-mnist)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
SEED=${CT_SIGNAL_SEED:-$(date +%s)}
RANDOM=$SEED
MAX_ITER=5000
T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_sig.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
good() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL (seed $SEED): $*" >&2; }

cat >"$T/net.prototxt" <<NET
name: "signals"
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
NET
# solver DIR [EXTRA]: snapshots (only those the signals ask for, and the final one) go to DIR/s_iter_N.*
solver() {
  mkdir -p "$1"
  cat >"$1/solver.prototxt" <<SOLVER
net: "$T/net.prototxt"
type: "Adam" base_lr: 0.001 momentum: 0.9 momentum2: 0.999 lr_policy: "fixed"
max_iter: $MAX_ITER snapshot: 0 snapshot_prefix: "$1/s" random_seed: 5 display: 100 average_loss: 5
${2:-}
SOLVER
}
# states DIR: the iterations of DIR's .solverstate files, ascending, one per line
states() { ls "$1" 2>/dev/null | sed -n 's/^s_iter_\([0-9]*\)\.solverstate$/\1/p' | sort -n; }
FINAL=s_iter_$MAX_ITER.caffemodel

REF=$T/ref
solver "$REF"
if ! "$CORTADO" train --solver="$REF/solver.prototxt" >"$REF/log" 2>&1; then
  bad "the uninterrupted run failed"
  tail -5 "$REF/log" >&2
  echo "$pass passed, $fail failed"
  exit 1
fi
[ -s "$REF/$FINAL" ] && good || bad "the uninterrupted run wrote no $FINAL"
echo "sh_signals: seed $SEED"

# signal_run DIR SIGNAL [FLAGS...]: trains in DIR and sends SIGNAL once the log shows a random
# display iteration between 500 and 2500 (by progress, not by time: the load of a parallel test
# run changes the speed twofold); sets RC, and AT to that iteration.
signal_run() {
  local d=$1 sig=$2
  shift 2
  AT=$((100 * (5 + RANDOM % 21)))
  "$CORTADO" train --solver="$d/solver.prototxt" "$@" >"$d/log" 2>&1 &
  local pid=$!
  for _ in $(seq 6000); do
    grep -q "Iteration $AT, loss" "$d/log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -"$sig" "$pid" 2>/dev/null
  wait "$pid"
  RC=$?
}

# resume_equal DIR ITER WHAT: resumes from DIR's snapshot ITER in a fresh copy of the run and
# compares the final weights with the uninterrupted run's
resume_equal() {
  local d=$1 k=$2 what=$3 r=$1/resumed
  solver "$r"
  cp "$d/s_iter_$k.caffemodel" "$d/s_iter_$k.solverstate" "$r/"
  if "$CORTADO" train --solver="$r/solver.prototxt" --snapshot="$r/s_iter_$k.solverstate" >"$r/log" 2>&1 &&
    cmp -s "$r/$FINAL" "$REF/$FINAL"; then
    good
  else
    bad "$what: resuming from iteration $k did not give the uninterrupted run's final weights"
    tail -3 "$r/log" >&2
  fi
}

for sig in INT TERM; do
  d=$T/$sig
  solver "$d"
  signal_run "$d" "$sig"
  k=$(states "$d")
  if [ "$RC" -eq 3 ] && [ "$(echo "$k" | grep -c .)" -eq 1 ] && [ "$k" -gt "$AT" ] && [ "$k" -lt "$MAX_ITER" ] &&
    grep -q "Optimization stopped early" "$d/log" && [ -s "$d/s_iter_$k.caffemodel" ]; then
    good
  else
    bad "SIG$sig after iteration $AT: exit $RC (want 3), snapshots at '$(echo $k)' (want one after $AT, below $MAX_ITER)"
    tail -3 "$d/log" >&2
    continue
  fi
  [ -s "$d/s_curves.svg" ] && [ -s "$d/s_metrics.jsonl" ] && good || bad "SIG$sig: no curves written"
  grep -q "Stopped by a signal at iteration $k" "$d/log" && good || bad "SIG$sig: the log does not say where it stopped"
  resume_equal "$d" "$k" "SIG$sig"
done

d=$T/HUP
solver "$d"
signal_run "$d" HUP
k=$(states "$d" | head -1)
if [ "$RC" -eq 0 ] && [ -n "$k" ] && [ "$k" -lt "$MAX_ITER" ] && cmp -s "$d/$FINAL" "$REF/$FINAL"; then
  good
  resume_equal "$d" "$k" "SIGHUP"
else
  bad "SIGHUP after iteration $AT: exit $RC (want 0), first snapshot at '${k:-none}' (want one below $MAX_ITER), or final weights differ"
  tail -3 "$d/log" >&2
fi

# the effects changed by flags
d=$T/int_none
solver "$d"
signal_run "$d" INT --sigint_effect=none
[ "$RC" -eq 0 ] && [ "$(states "$d")" = "$MAX_ITER" ] && good ||
  bad "--sigint_effect=none: exit $RC, snapshots at '$(states "$d" | tr '\n' ' ')' (want 0 and the final one only)"
d=$T/int_snapshot
solver "$d"
signal_run "$d" INT --sigint_effect=snapshot
[ "$RC" -eq 0 ] && [ "$(states "$d" | grep -c .)" -eq 2 ] && cmp -s "$d/$FINAL" "$REF/$FINAL" && good ||
  bad "--sigint_effect=snapshot: exit $RC, snapshots at '$(states "$d" | tr '\n' ' ')' (want 0, one mid-run and the final)"
d=$T/hup_stop
solver "$d"
signal_run "$d" HUP --sighup_effect=stop
[ "$RC" -eq 3 ] && [ "$(states "$d" | grep -c .)" -eq 1 ] && good ||
  bad "--sighup_effect=stop: exit $RC, snapshots at '$(states "$d" | tr '\n' ' ')' (want 3 and one)"

# a cluster: the signal goes to mpirun, which passes SIGTERM on to every rank
if command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  d=$T/mpi
  solver "$d" "framework: ALLREDUCE"
  sed -i "s/max_iter: $MAX_ITER/max_iter: 1000000/" "$d/solver.prototxt"
  mpirun --oversubscribe --host localhost:4 --mca btl self,vader -x ASAN_OPTIONS=detect_leaks=0 -np 2 \
    "$CORTADO" train --solver="$d/solver.prototxt" >"$d/log" 2>&1 &
  pid=$!
  # until both ranks train (the first display line after iteration 0), at most 60 s
  for _ in $(seq 600); do grep -q "Iteration 500, loss" "$d/log" && break; sleep 0.1; done
  kill -INT "$pid"
  wait "$pid"
  n=$(states "$d" | grep -c .)
  stops=$(grep -c 'Optimization stopped early' "$d/log")
  [ "$n" -eq 1 ] && [ "$stops" -eq 1 ] && good ||
    bad "mpirun -np 2, SIGINT: $n snapshots and $stops 'stopped early' lines (want 1 and 1)"
  # every rank has ended: nothing is left running this solver
  sleep 1
  if pgrep -f "$d/solver.prototxt" >/dev/null; then bad "mpirun -np 2, SIGINT: a rank is still running"; else good; fi
else
  echo "sh_signals: no mpirun, the cluster case is skipped"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
