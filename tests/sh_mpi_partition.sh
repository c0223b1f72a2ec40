#!/usr/bin/env bash
# Issue 19 across processes: a worker group of 4 spread over 2, 3 and 4 ranks runs the
# transitions net and one of batch 7 (dim-1 layers split over the ranks, dim-0 layers over
# the ranks' batch slices, a pinned layer, bridges as MPI messages) with the loss, forward
# blobs and gradients of the unpartitioned net (test_partition_mpi.c); so do a Concat of 40
# bottoms from another rank (bridge tags) and a net of 1100 layers alternating between ranks.
# Skipped (exit 0, says so) without mpirun.
. "$(dirname "$0")/mpi_common.sh"
prog="$CT_BUILD_DIR/tests/test_partition_mpi"
for np in 2 3 4; do
  if timeout 120 "${MPIRUN[@]}" -np "$np" "$prog" > "$tmp/np$np.log" 2>&1; then ok
  else bad "$np ranks"; tail -20 "$tmp/np$np.log" >&2; fi
  for what in transitions "batch 7" "40 bottoms" "1100 layers"; do
    grep -q "^$what, $np ranks: loss" "$tmp/np$np.log" && ok || bad "$np ranks: no result line for $what"
  done
  [ "$(grep -c ' 0 failed' "$tmp/np$np.log")" = "$np" ] && ok || bad "$np ranks: not every rank passed"
done

# cortado train under mpirun: the train net's worker group of 4 over 2 and 4 ranks (CaffeNet's
# shape, convolutions on dim 0, fc6 / fc7 on dim 1, fc8 pinned to worker 3) ends 20 iterations
# with the weights of one unpartitioned process, from the same starting weights.
cnet() { # name, net-level line, conv field, fc field, fc8 field
  cat > "$tmp/$1.prototxt" <<EOT
name: "small"
$2
layer { name: "data" type: "DummyData" top: "data" top: "label" dummy_data_param {
  shape { dim: 8 dim: 3 dim: 35 dim: 35 } shape { dim: 8 }
  data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: 0 max: 9.99 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" $3 convolution_param { num_output: 12
  kernel_size: 5 stride: 2 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" $3 convolution_param { num_output: 16 pad: 1
  kernel_size: 3 weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc6" type: "InnerProduct" bottom: "conv2" top: "fc6" $4 inner_product_param { num_output: 30
  weight_filler { type: "gaussian" std: 0.05 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" $4 }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" $4 inner_product_param { num_output: 30
  weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" $4 }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" $5 inner_product_param { num_output: 10
  weight_filler { type: "gaussian" std: 0.05 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc8" bottom: "label" top: "loss" }
EOT
  cat > "$tmp/$1_solver.prototxt" <<EOT
net: "$tmp/$1.prototxt"
base_lr: ${6:-0.05}
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
display: 10
max_iter: ${7:-20}
snapshot_prefix: "$tmp/$1"
random_seed: 7
EOT
}
cnet init "" "" "" "" 0 1
cnet ref "" "" "" ""
cnet part "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
"$CORTADO" train --solver="$tmp/init_solver.prototxt" > "$tmp/init.log" 2>&1 && ok || { bad "initial weights"; tail -5 "$tmp/init.log" >&2; }
"$CORTADO" train --solver="$tmp/ref_solver.prototxt" --weights="$tmp/init_iter_1.caffemodel" > "$tmp/ref.log" 2>&1 && ok ||
  { bad "unpartitioned training"; tail -5 "$tmp/ref.log" >&2; }
# What rank 0 sends per iteration, counted here from the shapes of the net above (batch 8):
# conv2's output 16x8x8 = 1024 floats an image (conv1: (35-5)/2+1 = 16, pool1: ceil((16-3)/2)+1
# = 8, conv2 pad 1: 8); fc6 and fc7 of 30 outputs in shards of 8, 8, 7, 7 rows on workers 0..3
# (worker w on rank w mod np); fc8's 8x10 output on worker 3; the loss on rank 0, and the data
# layer. conv1 .. conv2 and the connections around the shards (the Split that hands conv2 and
# the joined fc6 to the shards, the Concat that joins fc6) are dim-0 layers placed by the net:
# every rank runs them on its rows of the batch, rank r rows 8r/np .. 8(r+1)/np; the Concat
# that joins fc7 for fc8 is on worker 3, whole. So rank 0 sends: each other rank its rows of
# the data; forward, its rows of conv2 and of fc6 to each remote shard, the other rows of each
# of its own fc6 shards to their ranks, its fc7 shards whole to fc8's rank; backward, its rows
# of each remote fc6 shard's gradient, the other rows of the gradients of its own shards'
# inputs (conv2's 1024 and fc6's 30 per image), fc8's gradient from the loss (or, when fc8 is
# on rank 0, its Concat's gradients of the remote fc7 shards, whole); then conv1's and
# conv2's parameter gradients (each rank's sum over its rows) summed over the ranks; and the
# 4-byte action agreement. Whole layers' parameters never cross: each rank updates its own
# (the log's line covers iterations 1..10, none followed by a test or snapshot: no gather).
rows=(8 8 7 7)
expect_sent() { # np -> bytes rank 0 sends per iteration
  local np=$1 w mine=$((8 / np)) f
  local others=$((8 - mine))
  f=$((others * 3 * 35 * 35))
  for w in 0 1 2 3; do
    if [ $((w % np)) != 0 ]; then
      f=$((f + mine * (1024 + 30) + mine * ${rows[$w]}))
      [ $((3 % np)) = 0 ] && f=$((f + 8 * ${rows[$w]})) # fc8 here: its Concat's gradient of fc7@w back
    else
      f=$((f + others * ${rows[$w]} + others * (1024 + 30)))
      [ $((3 % np)) != 0 ] && f=$((f + 8 * ${rows[$w]}))
    fi
  done
  [ $((3 % np)) != 0 ] && f=$((f + 80))
  f=$((f + 12 * 3 * 5 * 5 + 12 + 16 * 12 * 3 * 3 + 16))
  echo $((f * 4 + 4))
}
# Every bridge between workers (in one process or not), forward and backward, from the same shapes.
bridge_f=$((3 * 8192 + 8 * (8 + 7 + 7) + 3 * 240 + 8 * (8 + 8 + 7) + 80))
for np in 2 3 4; do # 3: slices of 2, 3, 3 images
  rm -f "$tmp/part_iter_20.caffemodel"
  if timeout 180 "${MPIRUN[@]}" -np "$np" "$CORTADO" train --solver="$tmp/part_solver.prototxt" \
       --weights="$tmp/init_iter_1.caffemodel" > "$tmp/train$np.log" 2>&1; then ok
  else bad "train on $np ranks"; tail -20 "$tmp/train$np.log" >&2; fi
  grep -q "one worker group of a partitioned net over $np processes" "$tmp/train$np.log" && ok ||
    bad "$np ranks: no cluster line"
  want=$(expect_sent "$np")
  got=$(sed -n 's/.*At iteration 10, communication: \([0-9]*\) bytes sent per iteration.*/\1/p' "$tmp/train$np.log")
  [ "$got" = "$want" ] && ok || bad "$np ranks: rank 0 sent ${got:-?} bytes per iteration, expected $want"
  grep -q "bridges move $((2 * bridge_f * 4)) bytes per iteration ($((bridge_f * 4)) forward, $((bridge_f * 4)) backward)" \
    "$tmp/train$np.log" && ok || bad "$np ranks: the bridges' bytes are not $((2 * bridge_f * 4))"
  if "$CT_BUILD_DIR/tests/test_dist" cmp "$tmp/ref.prototxt" "$tmp/ref_iter_20.caffemodel" \
       "$tmp/part_iter_20.caffemodel" 1e-4; then ok; else bad "$np ranks: weights differ from one process"; fi
done

# Gradient clipping over a group spread over ranks: the norm is the group's (each rank's own
# ranges, one float summed), so 2 ranks clip exactly as one process does.
cnet cref "" "" "" ""
cnet cpart "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
echo "clip_gradients: 0.5" >> "$tmp/cref_solver.prototxt"
echo "clip_gradients: 0.5" >> "$tmp/cpart_solver.prototxt"
"$CORTADO" train --solver="$tmp/cref_solver.prototxt" --weights="$tmp/init_iter_1.caffemodel" > "$tmp/cref.log" 2>&1 &&
  ok || bad "clipped training in one process"
if timeout 180 "${MPIRUN[@]}" -np 2 "$CORTADO" train --solver="$tmp/cpart_solver.prototxt" \
     --weights="$tmp/init_iter_1.caffemodel" > "$tmp/cpart.log" 2>&1; then ok
else bad "clipped training on 2 ranks"; tail -20 "$tmp/cpart.log" >&2; fi
if "$CT_BUILD_DIR/tests/test_dist" cmp "$tmp/ref.prototxt" "$tmp/cref_iter_20.caffemodel" \
     "$tmp/cpart_iter_20.caffemodel" 1e-4; then ok; else bad "clipping on 2 ranks differs from one process"; fi
"$CT_BUILD_DIR/tests/test_dist" cmp "$tmp/ref.prototxt" "$tmp/cref_iter_20.caffemodel" "$tmp/ref_iter_20.caffemodel" \
  1e-2 > /dev/null 2>&1 && bad "clip_gradients 0.5 changed nothing: the check above proves nothing" || ok

# A snapshot at iteration 10 on 4 ranks (rank 0 gathers every rank's parameters and momentum)
# resumes in one unpartitioned process and ends at the reference's weights.
cnet snap "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
echo "snapshot: 10" >> "$tmp/snap_solver.prototxt"
if timeout 180 "${MPIRUN[@]}" -np 4 "$CORTADO" train --solver="$tmp/snap_solver.prototxt" \
     --weights="$tmp/init_iter_1.caffemodel" > "$tmp/snap.log" 2>&1; then ok
else bad "train with a snapshot on 4 ranks"; tail -20 "$tmp/snap.log" >&2; fi
cnet resume "" "" "" ""
"$CORTADO" train --solver="$tmp/resume_solver.prototxt" --snapshot="$tmp/snap_iter_10.solverstate" \
  > "$tmp/resume.log" 2>&1 && ok || { bad "resume in one process"; tail -5 "$tmp/resume.log" >&2; }
if "$CT_BUILD_DIR/tests/test_dist" cmp "$tmp/ref.prototxt" "$tmp/ref_iter_20.caffemodel" \
     "$tmp/resume_iter_20.caffemodel" 1e-4; then ok; else bad "resumed from 4 ranks' snapshot: weights differ"; fi

# pycaffe under mpirun: step(7) stops short of any planned snapshot (none), test (every 1000,
# and the one at iteration 0) or max_iter, then test() and snapshot() on every rank; rank 0's
# test and snapshot see the other ranks' fc shards as they are at iteration 7 (it gathers
# first): the test's outputs equal those of the same script in one unpartitioned process, and
# the snapshot 7 iterations of one unpartitioned process.
cnet py7 "" "" "" "" 0.05 7
cnet pyref "" "" "" ""
cnet pysnap "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
for s in pyref pysnap; do
  printf 'test_net: "%s"\ntest_iter: 2\ntest_interval: 1000\n' "$tmp/$s.prototxt" >> "$tmp/${s}_solver.prototxt"
done
"$CORTADO" train --solver="$tmp/py7_solver.prototxt" --weights="$tmp/init_iter_1.caffemodel" > "$tmp/py7.log" 2>&1 &&
  ok || bad "7 iterations in one process"
# a sanitizer build's libcortado.so needs the ASan runtime loaded before Python (check-sanitize
# preloads it for the Python tests; mpirun passes it on here)
asan_rt=$(ldd "$(dirname "$CORTADO")/libcortado.so" 2>/dev/null | awk '/libasan/ { print $3 }')
PRELOAD=()
[ -n "$asan_rt" ] && PRELOAD=(-x "LD_PRELOAD=$asan_rt")
LD_PRELOAD="${asan_rt:-}" /usr/bin/python3 "$CT_SOURCE_DIR/tests/mpi_step_snapshot.py" "$tmp/pyref_solver.prototxt" \
  "$tmp/init_iter_1.caffemodel" 7 > "$tmp/pyref.log" 2>&1 && ok || { bad "pycaffe in one process"; tail -5 "$tmp/pyref.log" >&2; }
want_test=$(sed -n 's/^test outputs: //p' "$tmp/pyref.log")
[ -n "$want_test" ] && ok || bad "pycaffe in one process: no test outputs"
for np in 2 4; do
  rm -f "$tmp/pysnap_iter_7.caffemodel"
  if timeout 180 "${MPIRUN[@]}" "${PRELOAD[@]}" -np "$np" -x CT_SOURCE_DIR -x CORTADO /usr/bin/python3 \
       "$CT_SOURCE_DIR/tests/mpi_step_snapshot.py" "$tmp/pysnap_solver.prototxt" "$tmp/init_iter_1.caffemodel" 7 \
       > "$tmp/pysnap$np.log" 2>&1; then ok
  else bad "pycaffe step + snapshot on $np ranks"; tail -20 "$tmp/pysnap$np.log" >&2; fi
  # occurrences, not lines: mpirun forwards the ranks' output as it comes, and two ranks' lines can
  # arrive joined
  [ "$(grep -o "stepped 7, iteration 7, snapshot taken" "$tmp/pysnap$np.log" | wc -l)" = "$np" ] && ok ||
    bad "pycaffe on $np ranks: not every rank stepped and snapshotted"
  if "$CT_BUILD_DIR/tests/test_dist" cmp "$tmp/ref.prototxt" "$tmp/py7_iter_7.caffemodel" \
       "$tmp/pysnap_iter_7.caffemodel" 1e-4; then ok; else bad "pycaffe snapshot on $np ranks: stale or wrong weights"; fi
  got_test=$(grep -o "test outputs: [-0-9.e+ ]*[0-9]" "$tmp/pysnap$np.log" | sed 's/^test outputs: //')
  echo "pycaffe test() after step(7) on $np ranks: ${got_test:-none}; one process: $want_test"
  if [ -n "$got_test" ] && awk -v a="$got_test" -v b="$want_test" 'BEGIN { n = split(a, x, " "); m = split(b, y, " ")
       if (n != m || n == 0) exit 1
       for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-4 * (1 + (y[i] < 0 ? -y[i] : y[i]))) exit 1 }
     }'; then ok; else bad "pycaffe test() on $np ranks: ${got_test:-no outputs}, one process: $want_test"; fi
done

# Two worker groups of a partitioned LeNet, each over 2 ranks (mpirun -np 4, no cluster
# setting): ip1 (500 outputs) on dim 1 over each group's 2 workers, ip2 pinned to worker 1;
# groups read alternate blocks of 32 images and average their shards' gradients with the same
# shards' owners in the other group. 20 iterations equal one unpartitioned process on the
# batch of 64 (both groups' images).
lenet_solver() { # name, net
  cat > "$tmp/$1_solver.prototxt" <<EOT
net: "$2"
base_lr: ${3:-0.01}
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 10
max_iter: ${4:-20}
snapshot_prefix: "$tmp/$1"
random_seed: 1701
EOT
}
lnet="$CT_SOURCE_DIR/tests/dist_lenet.prototxt"
awk 'BEGIN {done = 0} /batch_size: 64/ && !done {sub(/64/, "32"); done = 1} {print}' "$lnet" |
  sed -e 's/^name: "LeNet"/name: "LeNet"\npartition_workers: 2/' \
      -e '/name: "ip1"/a\  partition_dim: 1' -e '/name: "relu1"/a\  partition_dim: 1' \
      -e '/name: "ip2"/a\  location: 1' > "$tmp/lenet_part.prototxt"
grep -q "batch_size: 32" "$tmp/lenet_part.prototxt" && ok || bad "could not make the partitioned LeNet"
lenet_solver linit "$lnet" 0 1
lenet_solver lref "$lnet"
lenet_solver lpart "$tmp/lenet_part.prototxt"
"$CORTADO" train --solver="$tmp/linit_solver.prototxt" > "$tmp/linit.log" 2>&1 && ok || bad "LeNet initial weights"
"$CORTADO" train --solver="$tmp/lref_solver.prototxt" --weights="$tmp/linit_iter_1.caffemodel" > "$tmp/lref.log" 2>&1 &&
  ok || { bad "LeNet in one process"; tail -5 "$tmp/lref.log" >&2; }
if timeout 180 "${MPIRUN[@]}" -np 4 "$CORTADO" train --solver="$tmp/lpart_solver.prototxt" \
     --weights="$tmp/linit_iter_1.caffemodel" > "$tmp/lpart.log" 2>&1; then ok
else bad "2 groups of a partitioned LeNet over 4 ranks"; tail -20 "$tmp/lpart.log" >&2; fi
grep -q "2 worker groups of a partitioned net, each over 2 processes" "$tmp/lpart.log" && ok || bad "no groups line"
if "$CT_BUILD_DIR/tests/test_dist" cmp "$lnet" "$tmp/lref_iter_20.caffemodel" "$tmp/lpart_iter_20.caffemodel" 1e-4
then ok; else bad "2 groups of a partitioned LeNet: weights differ from one process on the batch of 64"; fi
# rank 0 (worker 0 of group 0) per iteration, from LeNet's shapes at batch 32, its rows 0..15:
# the other 16 images of the data (1x28x28) to rank 1, which runs conv1 .. pool2 and the Split
# before ip1 on them; forward its rows of pool2's output (50x4x4 = 800 an image) to ip1's shard
# on worker 1, its own ip1 shard 32x250 to ip2's Concat on worker 1; backward the loss's
# gradient of ip2 (32x10), and the other 16 rows of the gradient of its ip1 shard's input
# (800 each); its ip1 rows 0..249 (250x800 + 250) summed with group 1's rank 2; the gradients
# of conv1 (20x1x5x5 + 20) and conv2 (50x20x5x5 + 50), each rank's sum over its rows, summed
# over the 4 ranks; and the 4-byte action agreement.
lwant=$(( (16 * 784 + 16 * 800 + 32 * 250 + 32 * 10 + 16 * 800) * 4 + (250 * 800 + 250) * 4 +
          (20 * 25 + 20 + 50 * 20 * 25 + 50) * 4 + 4 ))
lgot=$(sed -n 's/.*At iteration 10, communication: \([0-9]*\) bytes sent per iteration.*/\1/p' "$tmp/lpart.log")
[ "$lgot" = "$lwant" ] && ok || bad "2 groups: rank 0 sent ${lgot:-?} bytes per iteration, expected $lwant"

# A cluster framework over the partitioned net: SANDBLASTER with one worker group (one process
# running the net over its 4 worker threads) and 2 servers on processes of their own, whose
# slices end at shard boundaries; 20 iterations equal the unpartitioned process's weights.
cnet sb "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
cat >> "$tmp/sb_solver.prototxt" <<EOT
framework: SANDBLASTER
cluster { nworker_groups: 1 nworkers_per_group: 1 nserver_groups: 1 nservers_per_group: 2 server_worker_separate: true }
EOT
if timeout 180 "${MPIRUN[@]}" -np 3 "$CORTADO" train --solver="$tmp/sb_solver.prototxt" \
     --weights="$tmp/init_iter_1.caffemodel" > "$tmp/sb.log" 2>&1; then ok
else bad "SANDBLASTER over the partitioned net"; tail -20 "$tmp/sb.log" >&2; fi
if "$CT_BUILD_DIR/tests/test_dist" cmp "$tmp/ref.prototxt" "$tmp/ref_iter_20.caffemodel" \
     "$tmp/sb_iter_20.caffemodel" 1e-4; then ok; else bad "SANDBLASTER: weights differ from one process"; fi
# DOWNPOUR: 2 worker groups, each one process running the partitioned net over its threads,
# asynchronous against 2 servers that hold whole shards: it trains to the end on every rank.
cnet dpr "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
cat >> "$tmp/dpr_solver.prototxt" <<EOT
framework: DOWNPOUR
cluster { nworker_groups: 2 nworkers_per_group: 1 nserver_groups: 1 nservers_per_group: 2 server_worker_separate: true }
EOT
if timeout 180 "${MPIRUN[@]}" -np 4 "$CORTADO" train --solver="$tmp/dpr_solver.prototxt" \
     --weights="$tmp/init_iter_1.caffemodel" > "$tmp/dpr.log" 2>&1; then ok
else bad "DOWNPOUR over the partitioned net"; tail -20 "$tmp/dpr.log" >&2; fi
grep -q "Cluster DOWNPOUR: 2 worker groups of 1 worker" "$tmp/dpr.log" && grep -q "Optimization Done" "$tmp/dpr.log" &&
  [ -s "$tmp/dpr_iter_20.caffemodel" ] && ok || bad "DOWNPOUR: no cluster line, end or snapshot"
# Several workers per group with a partitioned net would be data-parallel copies of it inside
# the group: refused on every rank, before training.
cnet dp "partition_workers: 4" "partition_dim: 0" "partition_dim: 1" "location: 3"
echo "framework: ALLREDUCE" >> "$tmp/dp_solver.prototxt"
if timeout 60 "${MPIRUN[@]}" -np 2 "$CORTADO" train --solver="$tmp/dp_solver.prototxt" > "$tmp/dp.log" 2>&1; then
  bad "ALLREDUCE with 2 workers per group over a partitioned net exited 0"
else ok; fi
grep -q "puts 2 workers in each worker group: a partitioned net's worker group is its partition workers" "$tmp/dp.log" &&
  ok || { bad "no refusal for workers per group"; tail -5 "$tmp/dp.log" >&2; }
grep -q "Iteration 0" "$tmp/dp.log" && bad "the refused run trained" || ok
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
