#!/usr/bin/env bash
# A chain of N ReLU layers (default 100000) through `cortado time --iterations=1`: how long the
# build (start to "Performing Forward"), the first pass (memory plan + forward) and the timed
# per-layer passes take (issue 23's scale point). Prints the OpenBLAS core it ran on.
#   CORTADO=build/cortado bench/deep_net_bench.sh [N]
set -u
: "${CORTADO:?}"
N=${1:-100000}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
{
  echo "name: 'deep'"
  echo "layer { name: 'in' type: 'Input' top: 'x0' input_param { shape { dim: 2 dim: 3 } } }"
  for ((i = 1; i < N; i++)); do echo "layer { name: 'r$i' type: 'ReLU' bottom: 'x$((i - 1))' top: 'x$i' }"; done
} >"$T/deep.prototxt"
t0=$(date +%s.%N)
"$CORTADO" time --model="$T/deep.prototxt" --iterations=1 >"$T/out" 2>"$T/log"
t1=$(date +%s.%N)
stamp() { grep -m1 "$1" "$T/log" | awk '{split($2, a, ":"); print a[1] * 3600 + a[2] * 60 + a[3]}'; }
start=$(date -d @"$t0" +%H:%M:%S.%N | awk '{split($1, a, ":"); print a[1] * 3600 + a[2] * 60 + a[3]}')
echo "$N layers: build $(echo "$(stamp 'Performing Forward') - $start" | bc) s," \
  "first pass $(echo "$(stamp 'Initial loss') - $(stamp 'Performing Forward')" | bc) s, total $(echo "$t1 - $t0" | bc) s"
grep -E "OpenBLAS core|Average (Forward|Backward) pass" "$T/log" | sed 's/^.*\] //'
