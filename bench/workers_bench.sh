#!/usr/bin/env bash
# Several workers in one process against one process on the same cores (issue 24): images/s of
# the Fashion-MNIST LeNet (tests/dist_lenet.prototxt, batch 64), no mpirun:
#   one process        the plain run: its partitions (CcT) use every core
#   2 workers (sync)   SANDBLASTER cluster { nworkers_per_group: 2 nworkers_per_procs: 2 }: one
#                      worker group of 2 worker threads with 32 images each, the same training
#   2 groups (async)   HOGWILD cluster { nworkers_per_procs: 2 }: 2 in-process Hogwild groups,
#                      64 images each, sharing one copy of the parameters
# Each run trains ITERS iterations per group; the rate is taken from the log's iter/s lines
# after the first display (start-up, data loading and warm-up excluded), in ROUNDS alternating
# rounds, and the median is printed with the ratio to one process, and the median of the
# per-round ratios (each run against the one-process run of its round). A line per configuration:
#   workers_bench: <config>: <images/s> images/s (<ratio> x one process; per-round ratio median
#   <r>) [rounds: ...] OpenBLAS core <core>
#
#   bench/workers_bench.sh [build dir, default build] [iterations, default 60] [rounds, default 3]
#
# OpenBLAS picks its own core: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for the runs
# (cortado may then restart itself on a better core: tools/cortado.c); the core each
# configuration ran is printed.
set -eu
build=${1:-build}
iters=${2:-60}
rounds=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
cortado="$here/$build/cortado"
[ -x "$cortado" ] || { echo "no $cortado; build first (make build)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

solver() { # name, extra lines
  cat > "$tmp/$1.prototxt" <<EOT
net: "$here/tests/dist_lenet.prototxt"
base_lr: 0.001
momentum: 0.9
lr_policy: "fixed"
display: 10
max_iter: $iters
snapshot_after_train: false
random_seed: 1701
$2
EOT
}
solver one ""
solver sync "framework: SANDBLASTER
cluster { nworkers_per_group: 2 nworkers_per_procs: 2 }"
solver async "framework: HOGWILD
cluster { nworkers_per_procs: 2 }"

rate() { # name, images per logged iteration -> images/s (0 when the run failed)
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$cortado" train --solver="$tmp/$1.prototxt" > "$tmp/$1.log" 2>&1 ||
    { echo 0; return; }
  awk -v img="$2" '
    /iter\/s,/ { s = $0; sub(/.*\(/, "", s); sub(/ iter\/s.*/, "", s); n++; if (n > 1) { sum += s; k++ } }
    END { printf "%.0f\n", (k ? sum / k : 0) * img }' "$tmp/$1.log"
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A all
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$rounds"); do
  all[one]+="$(rate one 64) "
  all[sync]+="$(rate sync 64) "  # the group's whole batch per logged iteration
  all[async]+="$(rate async 128) " # rank 0's group's rate, times 2 groups of 64
done
base=$(echo "${all[one]}" | median)
show() { # key, label
  local m core
  m=$(echo "${all[$1]}" | median)
  core=$(sed -n 's/.*OpenBLAS core: \([A-Za-z0-9]*\).*/\1/p' "$tmp/$1.log" | head -1) # the last round's
  # the load here drifts between rounds: the median of each round's ratio (its run against the
  # one-process run next to it) is steadier than the ratio of the medians
  local ratio
  ratio=$(paste <(echo "${all[$1]}" | tr ' ' '\n' | grep .) <(echo "${all[one]}" | tr ' ' '\n' | grep .) |
    awk '{ printf "%.3f ", ($2 > 0 ? $1 / $2 : 0) }' | median)
  printf "workers_bench: %-46s %6s images/s (%s x one process; per-round ratio median %s) [rounds: %s] OpenBLAS core %s\n" \
    "$2:" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" "$ratio" "${all[$1]% }" \
    "${core:-?}"
}
echo "LeNet batch 64 on $(nproc) cores, $iters iterations per group, median of $rounds alternating rounds;" \
  "load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
show one "one process"
show sync "2 workers as threads, one group (SANDBLASTER)"
show async "2 in-process Hogwild groups (HOGWILD)"
