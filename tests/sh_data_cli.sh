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
# the README's `--db=demo-out/...` in a fresh directory: the directories above it are made, as a
# snapshot prefix's are (issue 23's first minutes)
expect "convert makes the directories above --db" 0 "Wrote 10000 records" "$CORTADO" convert \
  --images=$FM/t10k-images-idx3-ubyte.gz --labels=$FM/t10k-labels-idx1-ubyte.gz --db="$tmp/fresh/out/t10k_lmdb"
[ -f "$tmp/fresh/out/t10k_lmdb/data.mdb" ] && ok || bad "no data.mdb under the made directories"
# an output compute-mean may not write is refused before the database is read
out=$("$CORTADO" compute-mean --db="$tmp/t10k_lmdb" -o /dev/null 2>&1)
rc=$?
[ "$rc" -eq 1 ] && echo "$out" | grep -q "character device" && ! echo "$out" | grep -q "Processed" && ok ||
  bad "compute-mean -o /dev/null: exit $rc, refused only after reading: $(echo "$out" | tail -2)"
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
# Caffe's positional forms: compute_image_mean INPUT_DB [OUTPUT_FILE], convert_imageset ROOT/ LIST DB
expect "compute-mean DB OUT (compute_image_mean's form)" 0 "mean_value channel" "$CORTADO" compute-mean \
  "$tmp/t10k_lmdb" "$tmp/mean3.binaryproto"
cmp -s "$tmp/mean.binaryproto" "$tmp/mean3.binaryproto" && ok || bad "the positional compute-mean wrote another mean"
mkdir -p "$tmp/imgs"
/usr/bin/python3 - "$tmp/imgs" <<'EOT'
import struct, sys, zlib
def png(w, h, fill):
    row = b"\x00" + bytes([fill]) * (3 * w)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))
for i in range(3):
    open("%s/a%d.png" % (sys.argv[1], i), "wb").write(png(5, 4, 30 * i))
EOT
printf 'a0.png 0\na1.png 1\na2.png 2\n' >"$tmp/list.txt"
expect "convert ROOT/ LIST DB (convert_imageset's form)" 0 "Wrote 3 records" "$CORTADO" convert --gray \
  "$tmp/imgs/" "$tmp/list.txt" "$tmp/pos_lmdb"
expect "its mean: the three images' average, 30" 0 "mean_value channel \[0\]: 30$" "$CORTADO" compute-mean \
  "$tmp/pos_lmdb"
expect "convert with two positionals" 2 "ROOTFOLDER/ LISTFILE DB_NAME" "$CORTADO" convert "$tmp/imgs/" "$tmp/list.txt"
expect "convert: positionals and --db together" 2 "not both" "$CORTADO" convert "$tmp/imgs/" "$tmp/list.txt" \
  "$tmp/x" --db="$tmp/y"

# a full disk (a 1 MiB tmpfs, where mounting is allowed): said as such, nothing left behind
mnt="$tmp/mnt"
mkdir -p "$mnt"
if mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
  expect "convert onto a full disk" 1 "No space left on device" "$CORTADO" convert \
    --images=$FM/t10k-images-idx3-ubyte.gz --labels=$FM/t10k-labels-idx1-ubyte.gz --db="$mnt/full_lmdb"
  [ -z "$(ls -A "$mnt")" ] && ok || bad "a convert that filled the disk left $(ls -A "$mnt")"
  printf 'net: "%s"\nbase_lr: 0.01 lr_policy: "fixed" max_iter: 1 snapshot_prefix: "%s/s"\n' "$tmp/big.prototxt" \
    "$mnt" >"$tmp/full_solver.prototxt"
  printf 'layer { name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param { shape { dim: 2 dim: 512 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 1024 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss" }\n' >"$tmp/big.prototxt"
  expect "a snapshot onto a full disk" 1 "s_iter_1.caffemodel: write failed: No space left on device" "$CORTADO" train \
    --solver="$tmp/full_solver.prototxt"
  [ -z "$(ls -A "$mnt" | grep -v '_metrics.jsonl$')" ] && ok || bad "a failed snapshot left $(ls -A "$mnt")"
  umount "$mnt"
else
  echo "sh_data_cli: cannot mount a tmpfs here; the full-disk checks are skipped"
fi

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
