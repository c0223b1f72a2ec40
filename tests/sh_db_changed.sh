#!/usr/bin/env bash
# A training run whose database is cut short under it, or before it starts (issue 23): the run
# ends with exit status 1 and a message naming the database, never death by SIGBUS. The LevelDB
# comes from `cortado convert --backend=leveldb` (its table files are mapped by libleveldb), the
# LMDB from Python's lmdb module (liblmdb's own writer; cortado reads it with pread).
# Env: CORTADO.
set -u
: "${CORTADO:?}"
FM=/usr/share/datasets/fashion-mnist
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_dbchg.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

"$CORTADO" convert --images=$FM/t10k-images-idx3-ubyte.gz --labels=$FM/t10k-labels-idx1-ubyte.gz \
  --db="$T/ldb" --backend=leveldb >"$T/convert.log" 2>&1 || bad "convert to LevelDB: $(tail -2 "$T/convert.log")"
"$PY" - "$T/lmdb" <<'PY' || bad "writing the LMDB with python"
import gzip, lmdb, sys
FM = "/usr/share/datasets/fashion-mnist/"
img = gzip.open(FM + "t10k-images-idx3-ubyte.gz").read()[16:]
lab = gzip.open(FM + "t10k-labels-idx1-ubyte.gz").read()[8:]
def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return out + bytes([v])
env = lmdb.open(sys.argv[1], map_size=1 << 28)
with env.begin(write=True) as t:
    for i in range(len(lab)):
        px = img[i * 784:(i + 1) * 784]
        d = b"\x08\x01\x10\x1c\x18\x1c\x22" + varint(784) + px + b"\x28" + varint(lab[i])
        t.put(b"%08d" % i, d)
env.close()
PY

# net DB BACKEND: a solver over a net reading DB
setup() {
  cat >"$T/net_$2.prototxt" <<NET
layer { name: "d" type: "Data" top: "x" top: "y" transform_param { scale: 0.00390625 }
  data_param { source: "$1" backend: $2 batch_size: 64 } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" top: "loss" }
NET
  cat >"$T/solver_$2.prototxt" <<SOLVER
net: "$T/net_$2.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 1000000 display: 10
snapshot_prefix: "$T/out_$2"
SOLVER
}

# cut DB BACKEND: LevelDB's table files to one page, LMDB's data file to four
cut() {
  if [ "$2" = LEVELDB ]; then
    local n=0
    for f in "$1"/*.ldb "$1"/*.sst; do [ -f "$f" ] && truncate -s 4096 "$f" && n=$((n + 1)); done
    [ "$n" -gt 0 ] || bad "$1: no table file to cut"
  else
    truncate -s 16384 "$1/data.mdb"
  fi
}

# check WHAT DB LOG RC: exit 1, the database named, no signal
check() {
  if [ "$4" -eq 1 ] && grep -Fq "$2" "$3" && ! grep -Eiq 'bus error|core dumped' "$3"; then ok; else
    bad "$1: exit $4 (want 1), stderr: $(grep -v '^I[0-9]' "$3" | tail -3)"
  fi
}

# A run whose LevelDB read was cut leaves through the guard's longjmp: LevelDB's frames between
# the guard and the fault are abandoned with what they had allocated, and the process exits
# (status 1) right after the error. The sanitizer build's LeakSanitizer would count those bytes
# and abort the run, so it is off for the runs that meet a cut (everything else still checked).
nolsan=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
for b in LEVELDB LMDB; do
  db="$T/ldb"
  [ $b = LMDB ] && db="$T/lmdb"
  setup "$db" $b
  # while training: cut once a few iterations have been displayed
  cp -r "$db" "$db.orig"
  timeout -s KILL 120 "${nolsan[@]}" "$CORTADO" train --solver="$T/solver_$b.prototxt" >"$T/run_$b.out" 2>"$T/run_$b.log" &
  pid=$!
  for _ in $(seq 600); do
    grep -q "Iteration 20" "$T/run_$b.log" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  cut "$db" $b
  wait $pid
  rc=$?
  check "$b cut during training" "$db" "$T/run_$b.log" $rc
  grep -q "changed while being read" "$T/run_$b.log" && ok || bad "$b cut during training: no 'changed while being read'"
  # before the run: the cut database from the start
  rm -rf "$db"
  cp -r "$db.orig" "$db"
  if [ $b = LEVELDB ]; then # one read-only pass turns the writer's log into table files to cut
    "$CORTADO" train --solver="$T/solver_$b.prototxt" --iterations=1 >/dev/null 2>&1
  fi
  cut "$db" $b
  "${nolsan[@]}" "$CORTADO" train --solver="$T/solver_$b.prototxt" >"$T/pre_$b.out" 2>"$T/pre_$b.log"
  check "$b cut before training" "$db" "$T/pre_$b.log" $?
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
