#!/usr/bin/env bash
# SINGA's partitionings of CaffeNet (issue 19), side by side in one run:
#   all-dim-0   every worker holds every parameter and splits the batch: over N ranks it is a
#               data-parallel group (mpirun without a cluster setting: ALLREDUCE), which sums
#               the whole gradient over the ranks every iteration
#   conv0-fc1   the "one weird trick" plan: convolutions on dim 0, fc6 / fc7 (and their ReLUs)
#               on dim 1 over the N workers; over N ranks (partition_workers: N, mpirun -np N)
#               each rank runs the dim-0 layers on its slice of the batch (rank 0 hands out the
#               data's slices, the convolutions' gradients are summed over the ranks), keeps and
#               updates its own fc shards, and the bridges move the activations around fc6/fc7
#               (each rank's rows in, whole batches to the shards) and their gradients back
#
# 1. Threads in one process: images/s of conv0-fc1 with 1 worker (partition_workers: 1, the
#    plain net) and with 2 and 4 workers as threads, alternated A B A B in the same run, and
#    the ratio. The fc shards of different workers run at once, each on its own share of the
#    cores (part_run.c); convolutions run on worker 0 with every core.
# 2. Ranks (skipped without mpirun): for N = 2 and 4, the bytes rank 0 sends per iteration (the
#    training log's "communication" line) and the images/s of each plan, then the seconds those
#    bytes take on 1 GbE, 10 GbE and 100 Gb/s links against the measured seconds per iteration.
#
#   bench/partition_bench.sh [build dir, default build] [batch, default 32] [side, default 227]
#                            [iterations, default 5]
# The machine's load is printed first: numbers taken while other work runs are marked as such.
set -eu
build=${1:-build}
batch=${2:-32}
side=${3:-227}
iters=${4:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
cortado="$here/$build/cortado"
[ -x "$cortado" ] || { echo "no $cortado; build first (make build)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$here/examples/caffenet/time_b32.prototxt"
# the net at this batch and input side, without dropout (both plans run the same layers; a whole
# dim-0 Dropout in a partitioned net draws from another stream than the plain net's)
sed -e "s/dim: 32 dim: 3 dim: 227 dim: 227 } shape { dim: 32 }/dim: $batch dim: 3 dim: $side dim: $side } shape { dim: $batch }/" \
    "$src" | awk '/^layer \{/{buf=$0; inlayer=1; next} inlayer{buf=buf"\n"$0; if ($0 ~ /^\}/) {inlayer=0; if (buf !~ /type: "Dropout"/) print buf}; next} {print}' \
    > "$tmp/all0.prototxt"
grep -q "dim: $batch dim: 3 dim: $side" "$tmp/all0.prototxt" || { echo "could not set the input shape" >&2; exit 2; }
plan() { # workers -> the conv0-fc1 net
  sed -e "s/^name: \"CaffeNet\"/name: \"CaffeNet\"\npartition_workers: $1/" \
      -e '/name: "fc6"/a\  partition_dim: 1' -e '/name: "fc7"/a\  partition_dim: 1' \
      -e '/name: "relu6"/a\  partition_dim: 1' -e '/name: "relu7"/a\  partition_dim: 1' \
      -e '/name: "conv[1-5]"/a\  partition_dim: 0' "$tmp/all0.prototxt" > "$tmp/fc1_$1.prototxt"
}
solver() { # name, net
  cat > "$tmp/$1_solver.prototxt" <<EOT
net: "$2"
base_lr: 0.0001
lr_policy: "fixed"
momentum: 0.9
display: 1
max_iter: $iters
snapshot_after_train: false
EOT
}
# images/s from a training log: the "(X iter/s" of every display after the first, times the batch
ips() { sed -n 's/.*loss = .* (\([0-9.]*\) iter\/s.*/\1/p' "$1" | tail -n +2 |
        awk -v b="$batch" '{s += $1; n++} END {if (n) printf "%.2f", s / n * b; else print "?"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0 && a > 0) printf "%.2f", a / b; else print "?"}'; }
core=$("$cortado" time --model="$tmp/all0.prototxt" --iterations=1 2>&1 |
       sed -n 's/.*OpenBLAS core: \([A-Za-z0-9]*\).*/\1/p' | head -1)
echo "partition_bench: CaffeNet without dropout, batch $batch, input ${side}x$side, $iters iterations;" \
     "OpenBLAS core: ${core:-?} (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}); $(nproc) cores;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)$([ "$(awk '{print ($1 > 1.5)}' /proc/loadavg)" = 1 ] &&
     echo ' -- UNDER LOAD: timings are noisy')"

# ---- 1. workers as threads in one process
for w in 1 2 4; do plan "$w"; solver "fc1_$w" "$tmp/fc1_$w.prototxt"; done
declare -A sum
for round in 1 2; do
  for w in 1 2 4; do
    "$cortado" train --solver="$tmp/fc1_${w}_solver.prototxt" > "$tmp/t$w.log" 2>&1 ||
      { echo "training with $w workers failed:" >&2; tail -5 "$tmp/t$w.log" >&2; exit 1; }
    sum[$w]=$(awk -v a="${sum[$w]:-0}" -v b="$(ips "$tmp/t$w.log")" 'BEGIN {printf "%.2f", a + b / 2}')
  done
done
for w in 2 4; do
  echo "partition_bench: threads: conv0-fc1 images/s with $w workers ${sum[$w]} vs 1 worker ${sum[1]}" \
       "($(ratio "${sum[$w]}" "${sum[1]}") x; mean of 2 alternated runs each)"
done

# ---- 2. over ranks
if ! command -v mpirun > /dev/null; then
  echo "partition_bench: no mpirun: the ranks part is skipped"
  exit 0
fi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --host localhost:4 --mca btl self,vader)
solver all0 "$tmp/all0.prototxt"
for np in 2 4; do
  [ $((batch % np)) = 0 ] || { echo "partition_bench: batch $batch does not split over $np ranks; skipped"; continue; }
  plan "$np"
  solver "fc1_$np" "$tmp/fc1_$np.prototxt"
  for p in all0 "fc1_$np"; do
    timeout 1200 "${MPIRUN[@]}" -np "$np" "$cortado" train --solver="$tmp/${p}_solver.prototxt" > "$tmp/m$p.log" 2>&1 ||
      { echo "mpirun -np $np with $p failed:" >&2; tail -5 "$tmp/m$p.log" >&2; exit 1; }
  done
  b0=$(sed -n 's/.*communication: \([0-9]*\) bytes sent per iteration.*/\1/p' "$tmp/mall0.log" | tail -1)
  b1=$(sed -n 's/.*communication: \([0-9]*\) bytes sent per iteration.*/\1/p' "$tmp/mfc1_$np.log" | tail -1)
  r0=$(ips "$tmp/mall0.log")
  r1=$(ips "$tmp/mfc1_$np.log")
  echo "partition_bench: $np ranks: bytes rank 0 sends per iteration: all-dim-0 ${b0:-?}, conv0-fc1 ${b1:-?}" \
       "($(ratio "${b0:-0}" "${b1:-0}") x fewer)"
  echo "partition_bench: $np ranks: images/s all-dim-0 $r0, conv0-fc1 $r1 (conv0-fc1 / all-dim-0 $(ratio "$r1" "$r0") x)"
  for link in 1 10 100; do
    awk -v l="$link" -v a="${b0:-0}" -v m="${b1:-0}" -v ra="$r0" -v rm="$r1" -v b="$batch" 'BEGIN {bps = l * 1e9 / 8;
      ca = ra > 0 ? b / ra : 0; cm = rm > 0 ? b / rm : 0;
      ta = a / bps + ca; tm = m / bps + cm;
      printf "partition_bench:   %3d Gb/s link: all-dim-0 %.3f s/iter on the wire + %.3f s/iter measured here; " \
             "conv0-fc1 %.3f + %.3f: %s wins\n", l, a / bps, ca, m / bps, cm, ta < tm ? "all-dim-0" : "conv0-fc1"}'
  done
done
echo "partition_bench: note: all-dim-0 sends the whole gradient (CaffeNet: ~61M parameters, 94% in fc6-fc8)" \
     "every iteration, conv0-fc1 the activations around fc6/fc7, rank 0's data slices and the convolutions'" \
     "gradients (~2.3M parameters; and its ranks' own shards with several groups). The wire time of all-dim-0 grows with the link's slowness and the parameter count, conv0-fc1's" \
     "with the batch: on 1-10 Gb/s links conv0-fc1 wins unless its compute is far slower; on 100 Gb/s and" \
     "shared memory the wire hardly counts and the measured seconds decide. Both plans split the convolutions'" \
     "batch over the ranks (conv0-fc1's dim-0 layers run on each rank's slice), so their compute differs by the" \
     "fc layers and the bridges' copies; conv0-fc1 also sends the data's slices from rank 0 (its data layer" \
     "runs there), which all-dim-0's ranks read themselves. fc8 (dim 0, 4.1M parameters) runs over the slices" \
     "too, and its gradient sum is most of conv0-fc1's bytes (at batch 8, 99x99: 16.4 MB of the 26.5 MB rank 0" \
     "sends on 2 ranks); a location on fc8 keeps it whole on one rank, with no gradient to sum."
