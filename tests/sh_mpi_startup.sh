#!/usr/bin/env bash
# Start-up in a cluster job (issue 24). Every failure before training ends the whole job, on
# every rank, within 10 s (or twice a plain start and stop, if slower here), with the cause
# named: a batch that does not split over a group's workers (SANDBLASTER, DOWNPOUR), a data file
# missing on one rank (each framework, different ranks), a solver that does not parse or is
# missing on one rank, a net that does not build, a topology that needs other process counts; a
# rank that never reports is named by rank 0. Ranks that read different jobs (base_lr, max_iter,
# framework, the net) stop with a message naming the rank and what differs, without a crash. A
# TEST batch that does not split does not matter (only rank 0 tests, on its whole batch), and a
# process that hosts only servers trains without the data files. Skipped without mpirun.
. "$(dirname "$0")/mpi_common.sh"
# Two working directories: in A the net's relative data paths resolve, in B they do not. Both
# phases read the 10000 test images: start-up loads them 6 times faster than the 60000, and
# nothing here measures accuracy.
mkdir -p "$tmp/A" "$tmp/B"
ln -s /usr/share/datasets/fashion-mnist "$tmp/A/data"
sed -e 's|/usr/share/datasets/fashion-mnist/|data/|' -e 's|data/train-|data/t10k-|' "$net" > "$tmp/net.prototxt"

solver() { # name, framework, extra lines
  cat > "$tmp/$1.prototxt" <<EOT
net: "$tmp/net.prototxt"
base_lr: 0.01
momentum: 0.9
lr_policy: "fixed"
display: 2
max_iter: 4
snapshot_after_train: false
random_seed: 1701
framework: $2
${3:-}
EOT
}
# runs mpirun with the given app contexts (each "np:dir:solver", or "np:dir:solver:slow" for
# processes that report 30 s late: CT_DIST_TEST_STALL), logs to $tmp/$name.log; sets rc and dt
launch() {
  local name=$1
  shift
  local apps=() first=1 spec rank=0
  for spec in "$@"; do
    IFS=: read -r np dir s mode <<< "$spec"
    [ $first = 1 ] || apps+=(:)
    first=0
    apps+=(-np "$np" --wdir "$tmp/$dir")
    [ "${mode:-}" = slow ] && apps+=(-x CT_DIST_TEST_STALL="$rank")
    apps+=("$CORTADO" train --solver="$tmp/$s.prototxt")
    rank=$((rank + np))
  done
  local t0
  t0=$(date +%s.%N)
  rc=0
  local mpirun=("${MPIRUN[@]}")
  [ -n "${TIMEOUT:-}" ] && mpirun=("${MPIRUN[@]/CT_DIST_TIMEOUT=*/CT_DIST_TIMEOUT=$TIMEOUT}")
  timeout 60 "${mpirun[@]}" "${apps[@]}" > "$tmp/$name.log" 2>&1 || rc=$?
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}
# name, ranks, pattern the message must match, app contexts...
fails() {
  local name=$1 ranks=$2 pattern=$3
  shift 3
  launch "$name" "$@"
  local said
  said=$(grep -c "^cortado: .*$pattern" "$tmp/$name.log")
  echo "$name: exit status $rc after $dt s; $said of $ranks ranks print: $(grep -m1 "^cortado: " "$tmp/$name.log")"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || bad "$name: exit status $rc"
  awk -v d="$dt" -v l="$limit" 'BEGIN { exit !(d < l) }' && ok || bad "$name: took $dt s (limit $limit s)"
  [ "$said" -eq "$ranks" ] && ok || { bad "$name: $said of $ranks ranks print /$pattern/"; tail -20 "$tmp/$name.log" >&2; }
  ! grep -qiE "segmentation|signal 6|signal 11|corrupt|double free" "$tmp/$name.log" && ok || bad "$name: crashed"
}

solver sb "SANDBLASTER"
# The bound on the time to fail: 10 s, or twice what a job that starts and stops without
# training takes here and now, if more. Most of a failing job's time is the same start-up
# (mpirun, data, nets), which the sanitizer build or a busy machine makes several times slower.
sed 's/^max_iter: 4/max_iter: 0/' "$tmp/sb.prototxt" > "$tmp/sb0.prototxt"
launch ref 2:A:sb0
limit=$(awk -v d="$dt" 'BEGIN { print (2 * d > 10 ? 2 * d : 10) }')
echo "a job of 2 ranks that starts and stops: exit status $rc after $dt s; failures must end within $limit s"
[ "$rc" -eq 0 ] && ok || { bad "a job without training failed"; tail -5 "$tmp/ref.log" >&2; }
# a batch of 64 over 3 workers of a group
fails split_sb 3 'every rank: .*net.prototxt: layer "fashion" (phase TRAIN): idx_data_param.batch_size 64 does not split' 3:A:sb
solver dp3 DOWNPOUR "cluster { nworkers_per_group: 3 }"
fails split_dp 4 'ranks 0, 1 and 2: .*"fashion" (phase TRAIN).*does not split evenly across the 3 workers' 4:A:dp3
# only the TEST net's batch (100) does not split over 3: it trains, rank 0 tests
sed 's/batch_size: 64/batch_size: 63/' "$tmp/net.prototxt" > "$tmp/net63.prototxt"
solver test63 SANDBLASTER "test_iter: 2
test_interval: 4"
sed -i "s|$tmp/net.prototxt|$tmp/net63.prototxt|" "$tmp/test63.prototxt"
launch test63 3:A:test63
echo "test63: exit status $rc after $dt s"
[ "$rc" -eq 0 ] && grep -q "Test net output #0: accuracy" "$tmp/test63.log" && ok ||
  { bad "a TEST batch of 100 over 3 workers stopped training"; tail -5 "$tmp/test63.log" >&2; }
# a data file missing on one rank, in every framework
solver ar ALLREDUCE
solver dp DOWNPOUR
solver hw HOGWILD
fails nodata_sb 2 'rank 1: layer "fashion" (Data): cannot open IDX file data/t10k-images-idx3-ubyte.gz' 1:A:sb 1:B:sb
fails nodata_ar 2 'rank 0: layer "fashion" (Data): cannot open IDX file data/t10k-images-idx3-ubyte.gz' 1:B:ar 1:A:ar
fails nodata_dp 3 'rank 1: layer "fashion" (Data): cannot open IDX file data/t10k-images-idx3-ubyte.gz' 1:A:dp 1:B:dp 1:A:dp
fails nodata_hw 3 'rank 2: layer "fashion" (Data): cannot open IDX file data/t10k-images-idx3-ubyte.gz' 2:A:hw 1:B:hw
# the solver on one rank: does not parse, is missing
printf 'net: "%s"\nbase_lr: fast\n' "$tmp/net.prototxt" > "$tmp/garbled.prototxt"
fails parse 2 'rank 1: .*garbled.prototxt:2:10: ' 1:A:sb 1:A:garbled
fails missing 2 'rank 1: cannot open file .*nowhere.prototxt' 1:A:sb 1:A:nowhere
# a rank that never reports (CT_DIST_TEST_STALL holds it 30 s before its report, as a stuck
# start-up would) is named by rank 0 after CT_DIST_TIMEOUT (3 s here); the rank itself cannot
# speak. (A net file that is a FIFO nobody writes no longer stalls a rank: inputs that are not
# regular files are refused.)
TIMEOUT=3 fails silent 1 'rank 1 did not reach the start of training within 3 s' 1:A:sb 1:A:sb:slow
# a net that does not build (every rank), a topology that wants 3 processes
sed 's/type: "Pooling"/type: "Poolin"/' "$tmp/net.prototxt" > "$tmp/badnet.prototxt"
solver sb_badnet SANDBLASTER
sed -i "s|$tmp/net.prototxt|$tmp/badnet.prototxt|" "$tmp/sb_badnet.prototxt"
fails netbuild 2 'every rank: .*Poolin' 2:A:sb_badnet
solver three SANDBLASTER "cluster { nworkers_per_group: 3 }"
fails topology 2 'every rank: .*needs 3 MPI processes, but 2 were started' 2:A:three
# ranks that read different jobs
sed 's/base_lr: 0.01/base_lr: 0.02/' "$tmp/sb.prototxt" > "$tmp/sb_lr.prototxt"
sed 's/max_iter: 4/max_iter: 8/' "$tmp/sb.prototxt" > "$tmp/sb_iter.prototxt"
sed 's/framework: SANDBLASTER/framework: ALLREDUCE/' "$tmp/sb.prototxt" > "$tmp/sb_fw.prototxt"
sed 's/num_output: 500/num_output: 400/' "$tmp/net.prototxt" > "$tmp/net400.prototxt"
sed "s|$tmp/net.prototxt|$tmp/net400.prototxt|" "$tmp/sb.prototxt" > "$tmp/sb_net.prototxt"
cp "$tmp/net400.prototxt" "$tmp/A/net.prototxt"
sed "s|$tmp/net.prototxt|net.prototxt|" "$tmp/sb.prototxt" > "$tmp/sb_rel.prototxt" # the same text, another net
fails differ_lr 2 "rank 1 reads another job than rank 0: it differs in the solver's base_lr;" 1:A:sb 1:A:sb_lr
fails differ_iter 2 "rank 1 reads another job than rank 0: it differs in the solver's max_iter;" 1:A:sb 1:A:sb_iter
fails differ_fw 3 "ranks 1 and 2 read another job than rank 0 (rank 1 differs in the solver's framework)" \
  1:A:sb 2:A:sb_fw
fails differ_net 2 "rank 1 reads another job than rank 0: it differs in the solver's net; the train net;" \
  1:A:sb 1:A:sb_net
fails differ_file 2 "rank 1 reads another job than rank 0: it differs in the train net;" 1:B:sb_rel 1:A:sb_rel
# the server of DOWNPOUR on 3 processes (rank 2) runs where the data files are not
solver serve DOWNPOUR "snapshot_prefix: \"$tmp/serve\""
sed -i -e 's/^snapshot_after_train: false/snapshot_after_train: true/' -e 's/^max_iter: 4/max_iter: 20/' \
  "$tmp/serve.prototxt"
launch serve 2:A:serve 1:B:serve
echo "serve: exit status $rc after $dt s"
[ "$rc" -eq 0 ] && [ -f "$tmp/serve_iter_20.caffemodel" ] && ok ||
  { bad "DOWNPOUR with its server where the data is not did not train"; tail -8 "$tmp/serve.log" >&2; }
losses=$(sed -n 's/.*Iteration \([0-9]*\)[ ,(].*loss = \([0-9.]*\).*/\2/p' "$tmp/serve.log" | tr '\n' ' ')
echo "serve: losses $losses"
awk -v l="$losses" 'BEGIN { n = split(l, a, " "); exit !(n >= 3 && a[n] < a[1]) }' && ok ||
  bad "serve: the loss did not fall ($losses)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
