#!/usr/bin/env bash
# SINGA's partitionings of CaffeNet (issue 19), side by side in one run:
#   all-dim-0     the worker group splits the batch: every worker holds every parameter, and a
#                 data-parallel group exchanges the whole gradient and the fresh parameters
#                 every iteration (2 x parameter bytes per worker)
#   conv0-fc1     the "one weird trick" plan: convolutions on dim 0, fc6 / fc7 (and their ReLUs)
#                 on dim 1 over the workers: the fc shards stay on their workers, the bridges
#                 move activations (and their gradients) instead
# For W = 2 and 4 workers it prints the bytes per iteration each plan moves (from `cortado
# time`'s partitioning line) and the images/s of a training run of the partitioned net with its
# workers as threads in this process, against the unpartitioned net on the same cores, and with
# MPI=1 of the partitioned net's workers over 2 and 4 ranks (`mpirun cortado train`, bridges as
# messages) against the unpartitioned net in one process. The bytes lines are the plans' own
# (what a group whose server side serves the shards moves); today's MPI path also sums the whole
# gradient over the ranks every iteration, which its training log's "communication" line counts.
# A note on link speeds closes the output: the seconds each plan's bytes take on 1 GbE, 10 GbE
# and 100 Gb/s links.
#
#   bench/partition_bench.sh [build dir, default build] [batch, default 32] [side, default 227]
#                            [iterations, default 6]
set -eu
build=${1:-build}
batch=${2:-32}
side=${3:-227}
iters=${4:-6}
here=$(cd "$(dirname "$0")/.." && pwd)
cortado="$here/$build/cortado"
[ -x "$cortado" ] || { echo "no $cortado; build first (make build)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$here/examples/caffenet/time_b32.prototxt"
# the net at this batch and input side, without dropout (its masks would differ per plan)
sed -e "s/dim: 32 dim: 3 dim: 227 dim: 227 } shape { dim: 32 }/dim: $batch dim: 3 dim: $side dim: $side } shape { dim: $batch }/" \
    "$src" | awk '/^layer \{/{buf=$0; inlayer=1; next} inlayer{buf=buf"\n"$0; if ($0 ~ /^\}/) {inlayer=0; if (buf !~ /type: "Dropout"/) print buf}; next} {print}' \
    | sed -e 's/bottom: "fc6"\(.*\)/bottom: "fc6"\1/' > "$tmp/all0.prototxt"
grep -q "dim: $batch dim: 3 dim: $side" "$tmp/all0.prototxt" || { echo "could not set the input shape" >&2; exit 2; }
plan() { # workers -> conv0-fc1 net
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
rate() { # solver -> images/s after the first display
  "$cortado" train --solver="$1" 2>&1 | sed -n 's/.*loss = .* (\([0-9.]*\) iter\/s.*/\1/p' | tail -n +2 |
    awk -v b="$batch" '{s += $1; n++} END {if (n) printf "%.2f", s / n * b; else print "?"}'
}
core=$("$cortado" time --model="$tmp/all0.prototxt" --iterations=1 2>&1 | tee "$tmp/all0.time" |
       sed -n 's/.*OpenBLAS core: \([A-Za-z0-9]*\).*/\1/p' | head -1)
echo "partition_bench: CaffeNet, batch $batch, input ${side}x$side, $iters iterations; OpenBLAS core: ${core:-?}" \
     "(OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
solver all0 "$tmp/all0.prototxt"
for w in 2 4; do
  plan "$w"
  line=$("$cortado" time --model="$tmp/fc1_$w.prototxt" --iterations=1 2>&1 | grep "Partitioning over" || true)
  bridges=$(echo "$line" | sed -n 's/.*bridges move \([0-9]*\) bytes.*/\1/p')
  rep=$(echo "$line" | sed -n 's/.*parameters: \([0-9]*\) bytes replicated.*/\1/p')
  shard=$(echo "$line" | sed -n 's/.*replicated, \([0-9]*\) bytes in shards.*/\1/p')
  [ -n "$bridges" ] || { echo "no partitioning line for $w workers" >&2; exit 1; }
  all=$(( (rep + shard) * 2 ))   # all-dim-0: gradient out, parameters in, per worker
  mixed=$(( rep * 2 + bridges )) # conv0-fc1: the conv parameters as above, plus the bridges
  solver "fc1_$w" "$tmp/fc1_$w.prototxt"
  # side by side: the unpartitioned run right before each partitioned one
  base=$(rate "$tmp/all0_solver.prototxt")
  r=$(rate "$tmp/fc1_${w}_solver.prototxt")
  echo "partition_bench: $w workers: all-dim-0 moves $all bytes/iter per worker; conv0-fc1 moves $mixed" \
       "(bridges $bridges, replicated parameters $((rep * 2)))"
  echo "partition_bench: $w workers: images/s conv0-fc1 (threads) $r vs unpartitioned $base" \
       "($(awk -v a="$r" -v b="$base" 'BEGIN {if (b > 0 && a > 0) printf "%.2f", a / b; else print "?"}') x)"
  if [ "${MPI:-0}" = 1 ] && command -v mpirun > /dev/null; then
    for np in 2 4; do
      mr=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --host localhost:4 \
             --mca btl self,vader -np "$np" "$cortado" train --solver="$tmp/fc1_${w}_solver.prototxt" 2>&1 |
           sed -n 's/.*loss = .* (\([0-9.]*\) iter\/s.*/\1/p' | tail -n +2 |
           awk -v b="$batch" '{s += $1; n++} END {if (n) printf "%.2f", s / n * b; else print "?"}')
      echo "partition_bench: $w workers over $np ranks: images/s conv0-fc1 $mr vs unpartitioned (one process) $base"
    done
  fi
  for link in 1 10 100; do
    awk -v l="$link" -v a="$all" -v m="$mixed" 'BEGIN {bps = l * 1e9 / 8;
      printf "partition_bench:   %3d Gb/s link: all-dim-0 %.3f s/iter, conv0-fc1 %.3f s/iter\n", l, a / bps, m / bps}'
  done
done
echo "partition_bench: note: the plan that moves fewer bytes wins wherever the link, not the compute, bounds" \
     "the iteration (slow links); on fast links both are compute-bound and the images/s lines decide."
