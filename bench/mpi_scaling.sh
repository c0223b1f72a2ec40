#!/usr/bin/env bash
# Cluster scaling on this machine (issue 5): images/s of the Fashion-MNIST LeNet against the
# number of MPI ranks (1, 2, 4) for each framework, and the bytes each rank sends per iteration,
# then what that predicts for N machines on a given link. Rows "2/proc" host 2 workers per rank
# as threads (nworkers_per_procs: 2): ALLREDUCE and SANDBLASTER with 4 workers on 2 ranks,
# DOWNPOUR and HOGWILD with 4 worker groups on 2 ranks (DOWNPOUR's server inside rank 0).
#
#   bench/mpi_scaling.sh [build dir, default build] [iterations, default 60] [link Gbit/s, default 10]
#
# ALLREDUCE and SANDBLASTER split the global batch of 64 among the workers (strong scaling: the
# same training as one process); DOWNPOUR and HOGWILD run one batch of 64 per worker group and
# are counted as rank 0's rate times the number of groups (asynchronous groups may differ).
# Ranks on one machine share its cores, so the curve here shows the communication overhead,
# not a speed-up; the prediction below is for one rank per machine. A run that fails prints 0.
set -eu
build=${1:-build}
iters=${2:-60}
gbit=${3:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
cortado="$here/$build/cortado"
[ -x "$cortado" ] || { echo "no $cortado; build first (make build)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # framework (or NONE), ranks[, cluster line, groups] -> prints "images/s bytes/iter"
  cat > "$tmp/s.prototxt" <<EOT
net: "$here/tests/dist_lenet.prototxt"
base_lr: 0.001
momentum: 0.9
lr_policy: "fixed"
display: 10
max_iter: $iters
snapshot_after_train: false
random_seed: 1701
EOT
  [ "$1" != NONE ] && echo "framework: $1" >> "$tmp/s.prototxt"
  [ -n "${3:-}" ] && echo "$3" >> "$tmp/s.prototxt"
  if [ "$1" = NONE ]; then
    "$cortado" train --solver="$tmp/s.prototxt" > "$tmp/log" 2>&1 || { echo "0 0"; return; }
  else
    mpirun --oversubscribe --host "localhost:$2" --mca btl self,vader -np "$2" \
      "$cortado" train --solver="$tmp/s.prototxt" > "$tmp/log" 2>&1 || { echo "0 0"; return; }
  fi
  # per-group images per root iteration: ALLREDUCE/SANDBLASTER 64 in all; DOWNPOUR/HOGWILD 64 per group
  local groups=1
  case "$1" in DOWNPOUR) groups=$(($2 - 1)) ;; HOGWILD) groups=$2 ;; esac
  [ -n "${4:-}" ] && groups=$4
  awk -v g="$groups" '
    /iter\/s,/ { s = $0; sub(/.*\(/, "", s); sub(/ iter\/s.*/, "", s); n++; if (n > 1) { sum += s; k++ } }
    /communication:/ { b = $0; sub(/.*communication: /, "", b); sub(/ bytes.*/, "", b); bytes = b }
    END { printf "%.0f %.0f\n", (k ? sum / k : 0) * 64 * g, bytes + 0 }' "$tmp/log"
}

params=431080 # LeNet's learnable floats
printf "%-18s %5s %10s %16s\n" framework ranks images/s bytes/iter/rank
read -r base _ < <(run NONE 1)
printf "%-18s %5d %10s %16s\n" single 1 "$base" 0
for fw in ALLREDUCE SANDBLASTER DOWNPOUR HOGWILD; do
  for np in 2 4; do
    [ "$fw" = DOWNPOUR ] && [ "$np" -lt 3 ] && np=3
    read -r ips b < <(run "$fw" "$np")
    printf "%-18s %5d %10s %16s\n" "$fw" "$np" "$ips" "$b"
  done
  # 2 workers per rank as threads
  case "$fw" in
    ALLREDUCE | SANDBLASTER) read -r ips b < <(run "$fw" 2 "cluster { nworkers_per_procs: 2 }" 1) ;;
    DOWNPOUR) read -r ips b < <(run "$fw" 2 "cluster { nworker_groups: 4 nworkers_per_procs: 2 server_worker_separate: false }" 4) ;;
    HOGWILD) read -r ips b < <(run "$fw" 2 "cluster { nworkers_per_procs: 2 }" 4) ;;
  esac
  printf "%-18s %5d %10s %16s\n" "$fw 2/proc" 2 "$ips" "$b"
done
link=$(awk -v g="$gbit" 'BEGIN { print g * 1e9 / 8 }')
cat <<EOT

Prediction for N machines, one rank each, on a ${gbit} Gbit/s link (${link} bytes/s), from the
single-process rate measured here ($base images/s on this machine's cores) and ALLREDUCE's
traffic: a ring allreduce sends 2 (N-1)/N x $params floats x 4 bytes per rank per iteration,
whatever N, so the time per iteration is (64/N)/rate + 2(N-1)/N x $((params * 4)) B / link
(latency and overlap ignored):
EOT
printf "%8s %12s %12s %10s\n" machines images/s comm_ms efficiency
for n in 1 2 4 8 16 32; do
  awk -v n="$n" -v r="$base" -v p="$params" -v L="$link" 'BEGIN {
    if (r <= 0) { print "no rate measured"; exit }
    comp = 64 / n / r; comm = 2 * (n - 1) / n * p * 4 / L; t = comp + comm
    printf "%8d %12.0f %12.2f %9.0f%%\n", n, 64 / t, comm * 1e3, 100 * (64 / t) / (n * r) }'
done
cat <<EOT
With a global batch of 64, LeNet's compute per machine shrinks as 1/N while its 3.4 MB of
allreduce traffic per rank stays, so scaling flattens once 64/N images take less time than
moving 3.4 MB; larger batches (or DOWNPOUR/HOGWILD, whose groups each run a full batch and,
with sync_freq k, exchange 1/k as often) push that point out. SANDBLASTER's bytes are higher:
a group's leader gathers the gradient (allreduce), sends it to the servers and broadcasts the
fresh parameters, about 2.5x the allreduce traffic on the leader. DOWNPOUR moves one gradient
and one parameter copy per group per iteration (worker rank shown); its server receives that
from every group.
EOT
