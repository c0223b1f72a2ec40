#!/usr/bin/env bash
# Cluster scaling on this machine (issues 5, 24): images/s of the Fashion-MNIST LeNet against the
# number of MPI ranks (1, 2, 4) for each framework, and the bytes each rank sends per iteration,
# then a model of ALLREDUCE built from measurements, checked against the 2- and 4-rank runs it
# just made, and what it predicts for N machines on a given link. Rows "2/proc" host 2 workers
# per rank as threads (nworkers_per_procs: 2): ALLREDUCE and SANDBLASTER with 4 workers on 2
# ranks, DOWNPOUR and HOGWILD with 4 worker groups on 2 ranks (DOWNPOUR's server inside rank 0).
#
#   bench/mpi_scaling.sh [build dir, default build] [iterations, default 60] [link Gbit/s, default 10]
#
# ALLREDUCE and SANDBLASTER split the global batch of 64 among the workers (strong scaling: the
# same training as one process); DOWNPOUR and HOGWILD run one batch of 64 per worker group and
# are counted as rank 0's rate times the number of groups (asynchronous groups may differ).
# Ranks on one machine share its cores. A run that fails prints 0.
#
# The model (ALLREDUCE, N ranks, global batch 64, P parameters): one iteration takes
#   compute(N) + 2(N-1) alpha + 2(N-1)/N x 4P / beta
# - compute(N): 64/N images at the rate measured in one process at batch 64/N (small batches run
#   well below batch 64's rate): here, as one of N copies of that process running at once with
#   cores/N partitions each, which is what a rank gets from a machine it shares with the other
#   ranks (and with whatever else runs there); for N machines, alone with every core;
# - alpha: the wait per message of a ring allreduce, measured as the waiting cortado logs on 2
#   ranks for a net of 7850 parameters (nothing to move: latency, polling, scheduling);
# - beta: the bytes per second of that wait, measured the same way on a net of 1.6 M parameters.
# The probes are separate runs, so the 2- and 4-rank checks are out of sample. For N machines
# the link's bandwidth replaces beta and each rank has every core; alpha stays this machine's
# (a real network adds its own latency: read those rows as a lower bound on the time).
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
cores=$(nproc)
lenet="$here/tests/dist_lenet.prototxt"

# net file, framework (or NONE), ranks[, cluster line, groups[, extra cortado flags]]
#   -> prints "images/s bytes/iter/rank wait-ms/iter"
run() {
  cat > "$tmp/s.prototxt" <<EOT
net: "$1"
base_lr: 0.001
momentum: 0.9
lr_policy: "fixed"
display: 10
max_iter: $iters
snapshot_after_train: false
random_seed: 1701
EOT
  [ "$2" != NONE ] && echo "framework: $2" >> "$tmp/s.prototxt"
  [ -n "${4:-}" ] && echo "$4" >> "$tmp/s.prototxt"
  if [ "$2" = NONE ]; then
    # shellcheck disable=SC2086
    "$cortado" train --solver="$tmp/s.prototxt" ${6:-} > "$tmp/log" 2>&1 || { echo "0 0 0"; return; }
  else
    mpirun --oversubscribe --host "localhost:$3" --mca btl self,vader -np "$3" \
      "$cortado" train --solver="$tmp/s.prototxt" > "$tmp/log" 2>&1 || { echo "0 0 0"; return; }
  fi
  # per-group images per root iteration: the batch (64 for LeNet) in all, or per group
  local groups=1 batch
  batch=$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$1" | head -1)
  case "$2" in DOWNPOUR) groups=$(($3 - 1)) ;; HOGWILD) groups=$3 ;; esac
  [ -n "${5:-}" ] && groups=$5
  awk -v g="$groups" -v b="$batch" '
    /iter\/s,/ { s = $0; sub(/.*\(/, "", s); sub(/ iter\/s.*/, "", s); n++; if (n > 1) { sum += s; k++ } }
    /communication:/ { c = $0; sub(/.*communication: /, "", c); split(c, f, " "); bytes = f[1]; m++;
                       if (m > 1) { w = c; sub(/.*sent per iteration, /, "", w); sub(/ ms.*/, "", w); ws += w; wk++ } }
    END { printf "%.0f %.0f %.3f\n", (k ? sum / k : 0) * b * g, bytes + 0, wk ? ws / wk : 0 }' "$tmp/log"
}
# LeNet with the TRAIN batch set to $1
lenet_batch() {
  sed "0,/batch_size: 64/s//batch_size: $1/" "$lenet" > "$tmp/lenet_$1.prototxt"
  echo "$tmp/lenet_$1.prototxt"
}
# data (batch 2) -> one InnerProduct of $1 outputs -> loss: the probes' nets
probe_net() {
  local images labels
  images=$(sed -n 's/^ *images: *"\(.*train-images[^"]*\)".*/\1/p' "$lenet")
  labels=$(sed -n 's/^ *labels: *"\(.*train-labels[^"]*\)".*/\1/p' "$lenet")
  cat > "$tmp/probe_$1.prototxt" <<EOT
name: "probe"
layer { name: "d" type: "Data" top: "data" top: "label" transform_param { scale: 0.00390625 }
        idx_data_param { images: "$images" labels: "$labels" batch_size: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: $1 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
EOT
  echo "$tmp/probe_$1.prototxt"
}

params=431080 # LeNet's learnable floats
printf "%-18s %5s %10s %16s %12s\n" framework ranks images/s bytes/iter/rank wait_ms/iter
read -r base _ _ < <(run "$lenet" NONE 1)
printf "%-18s %5d %10s %16s %12s\n" single 1 "$base" 0 0
declare -A measured wait
for fw in ALLREDUCE SANDBLASTER DOWNPOUR HOGWILD; do
  for np in 2 4; do
    [ "$fw" = DOWNPOUR ] && [ "$np" -lt 3 ] && np=3
    read -r ips b w < <(run "$lenet" "$fw" "$np")
    printf "%-18s %5d %10s %16s %12s\n" "$fw" "$np" "$ips" "$b" "$w"
    measured[$fw$np]=$ips
    wait[$fw$np]=$w
  done
  # 2 workers per rank as threads
  case "$fw" in
    ALLREDUCE | SANDBLASTER) read -r ips b w < <(run "$lenet" "$fw" 2 "cluster { nworkers_per_procs: 2 }" 1) ;;
    DOWNPOUR)
      read -r ips b w < <(run "$lenet" "$fw" 2 \
        "cluster { nworker_groups: 4 nworkers_per_procs: 2 server_worker_separate: false }" 4) ;;
    HOGWILD) read -r ips b w < <(run "$lenet" "$fw" 2 "cluster { nworkers_per_procs: 2 }" 4) ;;
  esac
  printf "%-18s %5d %10s %16s %12s\n" "$fw 2/proc" 2 "$ips" "$b" "$w"
done

# ---- the model's inputs, each measured ----
# n copies of one process at batch b with p partitions (OpenBLAS on p threads), at the same time:
# what one of n ranks computes here, sharing the machine (and its other tenants) with the others
rate_of() { # b n p -> mean images/s of the copies
  local i pids=() netf
  netf=$(lenet_batch "$1") # written once: the copies read it while later ones start
  for i in $(seq "$2"); do
    sed -e "s|^net: .*|net: \"$netf\"|" -e "s|^max_iter: .*|max_iter: $iters|" > "$tmp/c$i.prototxt" <<EOT
net: ""
base_lr: 0.001
momentum: 0.9
lr_policy: "fixed"
display: 10
max_iter: 0
snapshot_after_train: false
snapshot_prefix: "$tmp/c$i"
random_seed: 1701
EOT
    OPENBLAS_NUM_THREADS=$3 "$cortado" train --solver="$tmp/c$i.prototxt" --partitions="$3" > "$tmp/c$i.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  for i in $(seq "$2"); do cat "$tmp/c$i.log"; echo "END"; done | awk -v b="$1" '
    /iter\/s,/ { s = $0; sub(/.*\(/, "", s); sub(/ iter\/s.*/, "", s); n++; if (n > 1) { sum += s; k++ } }
    /^END$/ { if (k) { tot += sum / k; m++ } n = 0; sum = 0; k = 0 }
    END { printf "%.0f\n", m ? tot / m * b : 0 }'
}
echo
echo "Compute rate of one process at the per-rank batch: alone with all $cores cores (a machine of"
echo "its own), and as one of N copies running at once with cores/N partitions each (a rank here):"
printf "%8s %8s %10s %12s\n" batch copies images/s of_batch_64
declare -A rate
for b in 64 32 16 8 4 2; do
  rate[$b,1]=$(rate_of "$b" 1 "$cores")
  printf "%8d %8d %10s %11s%%\n" "$b" 1 "${rate[$b,1]}" \
    "$(awk -v a="${rate[$b,1]}" -v c="${rate[64,1]}" 'BEGIN { printf "%.0f", (c > 0 ? 100 * a / c : 0) }')"
done
for n in 2 4; do
  b=$((64 / n)) p=$((cores / n))
  [ "$p" -lt 1 ] && p=1
  rate[$b,$n]=$(rate_of "$b" "$n" "$p")
  printf "%8d %8d %10s %11s%%\n" "$b" "$n" "${rate[$b,$n]}" \
    "$(awk -v a="${rate[$b,$n]}" -v c="${rate[64,1]}" 'BEGIN { printf "%.0f", (c > 0 ? 100 * a / c : 0) }')"
done
read -r _ _ w_small < <(run "$(probe_net 10)" ALLREDUCE 2)
read -r _ _ w_big < <(run "$(probe_net 2000)" ALLREDUCE 2)
small=$((784 * 10 + 10)) big=$((784 * 2000 + 2000))
read -r alpha beta < <(awk -v ws="$w_small" -v wb="$w_big" -v s="$small" -v b="$big" 'BEGIN {
  a = ws / 1e3 / 2                                   # 2 (N-1) messages for N = 2
  t = wb / 1e3 - 2 * a; bytes = (b - s) * 4           # ring: 2 (N-1)/N x 4P bytes = 4P for N = 2
  printf "%.6g %.6g\n", a, (t > 0 ? bytes / t : 1e12) }')
echo
echo "Per-message wait (alpha), from ALLREDUCE on 2 ranks with $small parameters: $w_small ms per iteration ->"
echo "alpha = $(awk -v a="$alpha" 'BEGIN { printf "%.3f", a * 1e3 }') ms. Bandwidth (beta), from $big parameters: $w_big ms per iteration ->"
echo "beta = $(awk -v b="$beta" 'BEGIN { printf "%.2f", b / 1e9 }') GB/s."

# ---- the check: the model against the ALLREDUCE runs above ----
model() { # ranks, images/s of one rank at 64/N, bandwidth -> "images/s comm_ms"
  awk -v n="$1" -v r="$2" -v bw="$3" -v a="$alpha" -v p="$params" 'BEGIN {
    if (r <= 0) { print "0 0"; exit }
    comp = 64 / n / r; comm = 2 * (n - 1) * a + 2 * (n - 1) / n * p * 4 / bw
    printf "%.0f %.2f\n", 64 / (comp + comm), comm * 1e3 }'
}
echo
echo "The model against the ALLREDUCE runs above (this machine, $cores cores shared by the ranks):"
printf "%8s %10s %10s %8s %14s %12s\n" ranks predicted measured error comm_ms_model wait_ms_run
for n in 2 4; do
  read -r pred cms < <(model "$n" "${rate[$((64 / n)),$n]}" "$beta")
  printf "%8d %10s %10s %7s%% %14s %12s\n" "$n" "$pred" "${measured[ALLREDUCE$n]}" \
    "$(awk -v a="$pred" -v m="${measured[ALLREDUCE$n]}" 'BEGIN { printf "%+.0f", (m > 0 ? 100 * (a - m) / m : 0) }')" \
    "$cms" "${wait[ALLREDUCE$n]}"
done

link=$(awk -v g="$gbit" 'BEGIN { print g * 1e9 / 8 }')
echo
echo "Prediction for N machines, one rank each with all $cores cores, on a ${gbit} Gbit/s link (${link} bytes/s):"
printf "%8s %10s %12s %10s\n" machines images/s comm_ms efficiency
for n in 1 2 4 8 16 32; do
  b=$((64 / n))
  read -r pred cms < <(model "$n" "${rate[$b,1]}" "$link")
  printf "%8d %10s %12s %9s%%\n" "$n" "$pred" "$cms" \
    "$(awk -v a="$pred" -v n="$n" -v r="${rate[64,1]}" 'BEGIN { printf "%.0f", (r > 0 ? 100 * a / (n * r) : 0) }')"
done
cat <<EOT
With a global batch of 64, each machine's share shrinks as 64/N, and small batches run well below
batch 64's rate (table above), while the ring allreduce still moves 2(N-1)/N x $((params * 4)) bytes and
pays 2(N-1) message waits per iteration. Larger batches (or DOWNPOUR/HOGWILD, whose groups each run
a full batch and, with sync_freq k, exchange 1/k as often) push the flat part out. SANDBLASTER's
bytes are higher: a group's leader gathers the gradient (allreduce), sends it to the servers and
broadcasts the fresh parameters, about 2.5x the allreduce traffic on the leader. DOWNPOUR moves
one gradient and one parameter copy per group per iteration (worker rank shown); its server
receives that from every group.
EOT
