#!/usr/bin/env bash
# The data commands through the CLI: convert and compute-mean (help, usage errors exit 2, work
# errors exit 1 naming the file), and `cortado time` reporting each data layer's wait.
set -u
: "${CORTADO:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }
expect() { # description, want-exit, grep-pattern (on stdout+stderr), command...
  local what=$1 want=$2 pat=$3
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$want" ] && echo "$out" | grep -Eq -- "$pat"; then ok; else
    bad "$what: exit $rc (want $want), output: $(echo "$out" | tail -3)"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FM=/usr/share/datasets/fashion-mnist

expect "help lists convert" 0 "convert" "$CORTADO" --help
expect "help lists compute-mean" 0 "compute-mean" "$CORTADO" help
for f in --list --root --images --labels --db --backend --resize_height --resize_width --shuffle --gray --encoded; do
  expect "convert --help explains $f" 0 "^ *$f" "$CORTADO" convert --help
done
expect "compute-mean --help explains -o" 0 "^ *--output" "$CORTADO" compute-mean --help
expect "convert needs --db" 2 "needs --db" "$CORTADO" convert --images=x
expect "convert needs one input" 2 "--list=FILE.*--images=FILE" "$CORTADO" convert --db="$tmp/x"
expect "convert: both inputs" 2 "not both" "$CORTADO" convert --db="$tmp/x" --list=a --images=b
expect "convert: bad backend" 2 "lmdb or leveldb" "$CORTADO" convert --db="$tmp/x" --images=a --backend=bdb
expect "convert: bad resize" 2 "resize_height" "$CORTADO" convert --db="$tmp/x" --list=a --resize_height=big
expect "convert: list flags with IDX" 2 "apply to --list" "$CORTADO" convert --db="$tmp/x" --images=a --gray
expect "convert: missing IDX names it" 1 "$tmp/nothere.gz" "$CORTADO" convert --db="$tmp/x" --images="$tmp/nothere.gz"
[ ! -e "$tmp/x" ] && ok || bad "a failed convert left $tmp/x"
expect "convert: missing list names it" 1 "$tmp/list.txt" "$CORTADO" convert --db="$tmp/x" --list="$tmp/list.txt"
expect "convert IDX to LMDB" 0 "Wrote 10000 records" "$CORTADO" convert --images=$FM/t10k-images-idx3-ubyte.gz \
  --labels=$FM/t10k-labels-idx1-ubyte.gz --db="$tmp/t10k_lmdb"
[ -f "$tmp/t10k_lmdb/data.mdb" ] && ok || bad "no data.mdb"
expect "convert IDX to LevelDB" 0 "LevelDB" "$CORTADO" convert --images=$FM/t10k-images-idx3-ubyte.gz \
  --labels=$FM/t10k-labels-idx1-ubyte.gz --db="$tmp/t10k_leveldb" --backend=leveldb
[ -f "$tmp/t10k_leveldb/CURRENT" ] && ok || bad "no LevelDB CURRENT file"
expect "convert refuses an existing target" 1 "already exists" "$CORTADO" convert \
  --images=$FM/t10k-images-idx3-ubyte.gz --db="$tmp/t10k_lmdb"
expect "compute-mean needs a database" 2 "needs --db" "$CORTADO" compute-mean -o "$tmp/m0.binaryproto"
# without an output file only the channel means are printed, as compute_image_mean does
expect "compute-mean without -o prints the means" 0 "mean_value channel \[0\]: 7[0-9]\." "$CORTADO" compute-mean \
  --db="$tmp/t10k_lmdb"
[ ! -e "$tmp/m0.binaryproto" ] && ok || bad "compute-mean without a database wrote its output"
expect "compute-mean: missing db" 1 "$tmp/nodb" "$CORTADO" compute-mean --db="$tmp/nodb" -o "$tmp/m.binaryproto"
expect "compute-mean" 0 "mean_value channel \[0\]: 7[0-9]\." "$CORTADO" compute-mean --db="$tmp/t10k_lmdb" \
  -o "$tmp/mean.binaryproto"
expect "compute-mean LevelDB" 0 "mean_value channel \[0\]" "$CORTADO" compute-mean --db="$tmp/t10k_leveldb" \
  --backend=leveldb -o "$tmp/mean2.binaryproto"
cmp -s "$tmp/mean.binaryproto" "$tmp/mean2.binaryproto" && ok || bad "LMDB and LevelDB means differ"

cat > "$tmp/data.prototxt" <<EOT
layer { name: "fm" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 mean_file: "$tmp/mean.binaryproto" crop_size: 24 mirror: true }
  data_param { source: "$tmp/t10k_lmdb" backend: LMDB batch_size: 64 } }
EOT
expect "time reports the data wait" 0 "fm +Data +data wait: [0-9.e+-]+ ms" "$CORTADO" time \
  --model="$tmp/data.prototxt" --iterations=5
sed -e 's/backend: LMDB/backend: LEVELDB/' "$tmp/data.prototxt" > "$tmp/wrong.prototxt"
expect "LMDB read as LevelDB: a hint" 1 "backend: LMDB" "$CORTADO" time --model="$tmp/wrong.prototxt" --iterations=1
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
