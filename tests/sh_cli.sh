#!/usr/bin/env bash
# The cortado CLI end to end: help texts, flag spellings, usage errors (exit 2, one line naming
# the command's --help), library errors (exit 1, the path or file:line:col in the message), and
# train / test / time on a tiny net written here.
#
# Env: CORTADO = the built binary; CT_SOURCE_DIR = the repo root (unused beyond a sanity check).
# Prints "N passed, N failed" and exits non-zero on any failure.
set -u

if [ -z "${CORTADO:-}" ] || [ ! -x "${CORTADO}" ]; then
  echo "sh_cli: set CORTADO to the built cortado binary (got '${CORTADO:-}')" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/cortado_cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
# Seconds a single cortado run may take before it counts as hung.
LIMIT=${CT_CLI_TIMEOUT:-300}

show() {
  echo "  --- stdout (tail):" >&2
  tail -n 15 "$T/out" | sed 's/^/  | /' >&2
  echo "  --- stderr (tail):" >&2
  tail -n 15 "$T/err" | sed 's/^/  | /' >&2
}
good() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*" >&2
}

# run ARGS... : runs cortado, leaving stdout in $T/out, stderr in $T/err, status in $RC.
run() {
  timeout "$LIMIT" "$CORTADO" "$@" >"$T/out" 2>"$T/err"
  RC=$?
}

# t DESC WANT_RC STREAM(out|err|any) ERE ARGS... : exit status and (if ERE is not empty) a line.
t() {
  local desc=$1 want=$2 stream=$3 pat=$4
  shift 4
  run "$@"
  if [ "$RC" != "$want" ]; then
    bad "$desc: exit status $RC, want $want (cortado $*)"
    show
    return 1
  fi
  if [ -n "$pat" ]; then
    local files
    case $stream in
      out) files=("$T/out") ;;
      err) files=("$T/err") ;;
      *) files=("$T/out" "$T/err") ;;
    esac
    if ! grep -Eq -- "$pat" "${files[@]}"; then
      bad "$desc: no line matching /$pat/ on $stream (cortado $*)"
      show
      return 1
    fi
  fi
  good
}

# usage DESC CMD ERE ARGS... : a usage error: exit 2, exactly one line on stderr, nothing on
# stdout, matching ERE and pointing at 'cortado CMD --help' (CMD empty: 'cortado --help').
usage() {
  local desc=$1 cmd=$2 pat=$3
  shift 3
  local hint="see 'cortado --help'"
  [ -n "$cmd" ] && hint="see 'cortado $cmd --help'"
  run "$@"
  local lines
  lines=$(wc -l <"$T/err")
  if [ "$RC" != 2 ]; then
    bad "$desc: exit status $RC, want 2 (cortado $*)"
    show
  elif [ "$lines" != 1 ] || [ -s "$T/out" ]; then
    bad "$desc: want exactly one line on stderr and none on stdout, got $lines (cortado $*)"
    show
  elif ! grep -Eq -- "^cortado: .*$pat" "$T/err"; then
    bad "$desc: stderr does not match /^cortado: .*$pat/ (cortado $*)"
    show
  elif ! grep -Fq -- "$hint" "$T/err"; then
    bad "$desc: stderr lacks \"$hint\" (cortado $*)"
    show
  else
    good
  fi
}

# has DESC FILE ERE : FILE (out|err) of the last run has a line matching ERE.
has() {
  if grep -Eq -- "$3" "$T/$2"; then good; else
    bad "$1: no line matching /$3/ on $2"
    show
  fi
}
# lacks DESC FILE ERE : ... has no such line.
lacks() {
  if grep -Eq -- "$3" "$T/$2"; then
    bad "$1: unexpected line matching /$3/ on $2"
    show
  else good; fi
}

# ---------------------------------------------------------------- help and version

t "--help" 0 out "train" --help
has "--help lists test" out "test"
has "--help lists time" out "time"
t "help" 0 out "train" help
t "-h" 0 out "train" -h
t "--version" 0 out "^cortado .*[0-9]+\.[0-9]+" --version

for flag in --solver --weights --snapshot --iterations --quiet --gpu; do
  t "train --help explains $flag" 0 out "^ *$flag" train --help
done
for flag in --model --weights --iterations --phase --level --stage; do
  t "test --help explains $flag" 0 out "^ *$flag" test --help
done
for flag in --model --iterations --phase; do
  t "time --help explains $flag" 0 out "^ *$flag" time --help
done
t "help train" 0 out "^ *--solver" help train
t "-help after a command" 0 out "^ *--model" time -help
t "--help beside other flags" 0 out "^ *--model" test --model=x --help

# ---------------------------------------------------------------- usage errors (exit 2)

usage "no command" "" "no command" 
usage "unknown command" "" "unknown command 'frobnicate'" frobnicate
usage "help for an unknown command" "" "unknown command 'frobnicate'" help frobnicate
usage "unknown flag" train "unknown flag '--bogus'" train --solver=s.prototxt --bogus=1
usage "unknown single-dash flag" time "unknown flag '-bogus'" time -bogus 1 --model=m
usage "unknown flag before the command" test "unknown flag '--bogus'" --bogus test
usage "missing value at the end" test "'--model' needs a value" test --weights=w --model
usage "missing value before a flag" test "'--model' needs a value" test --model --weights=w
usage "empty value" time "'--model' needs a value" time --model=
usage "train without --solver" train "needs --solver" train
usage "test without --model" test "needs --model" test --weights=w.caffemodel
usage "test without --weights" test "needs --weights" test --model=m.prototxt
usage "time without --model" time "needs --model" time
usage "non-numeric --iterations" time "--iterations must be a positive integer, got 'abc'" time --model=m --iterations=abc
usage "zero --iterations" test "--iterations must be a positive integer" test --model=m --weights=w --iterations 0
usage "negative --iterations" time "--iterations must be a positive integer, got '-5'" time --model=m -iterations -5
usage "trailing junk in --iterations" time "--iterations must be a positive integer" time --model=m --iterations=10x
usage "bad --phase" test "--phase must be TRAIN or TEST" test --model=m --weights=w --phase=VAL
usage "weights and snapshot together" train "not both" train --solver=s --weights=w --snapshot=x
usage "a flag of another command" train "'--model' does not apply to 'train'" train --solver=s --model=m
usage "a stray argument" time "unexpected argument 'extra'" time --model=m extra
usage "a switch given a value" train "takes no value" train --solver=s --quiet=maybe

# --gpu without a GPU to run on (no device, or a build without the CUDA driver): one line saying
# why, exit 2, before anything loads. A machine with a GPU trains instead (tests/gpu/run.sh).
if ! "$CORTADO" device_query >/dev/null 2>&1; then
  for spelling in --gpu=0 "--gpu 0" -gpu=all "-gpu all"; do
    # shellcheck disable=SC2086
    run train --solver=s.prototxt $spelling
    if [ "$RC" = 2 ] && grep -q "no GPU to run on" "$T/err" && [ "$(wc -l <"$T/err")" = 1 ]; then
      good
    else
      bad "train $spelling: want exit 2 and one line saying there is no GPU to run on (got $RC)"
      show
    fi
  done
  t "device_query: no GPU devices" 1 err "no GPU devices" device_query
fi
usage "--gpu with --device" train "give one of them" train --solver=s --gpu=0 --device=cpu
usage "--gpu with a bad list" train "expected device numbers" train --solver=s --gpu=0,x

# ---------------------------------------------------------------- library errors (exit 1)

missing="$T/no/such/file.prototxt"
t "train: missing solver names the path" 1 err "^cortado: .*$missing" train --solver="$missing"
t "test: missing model names the path" 1 err "^cortado: .*$missing" test --model="$missing" --weights=w
t "time: missing model names the path" 1 err "^cortado: .*$missing" time --model="$missing"
# Each spelling of a value flag has to deliver the value: the missing path shows up in the error.
t "spelling --model value" 1 err "$missing" time --model "$missing"
t "spelling -model=value" 1 err "$missing" time -model="$missing"
t "spelling -model value" 1 err "$missing" time -model "$missing"
t "flags before the command" 1 err "$missing" --model "$missing" time

# A malformed prototxt: an unknown field on line 4, column 3.
cat >"$T/bad.prototxt" <<'EOF'
name: "bad"
layer {
  name: "data" type: "Input" top: "data"
  bogus_field: 3
}
EOF
t "malformed model gives file:line:col" 1 err "^cortado: .*bad\.prototxt:4:[0-9]+" time --model="$T/bad.prototxt"
t "malformed model in test gives file:line:col" 1 err "bad\.prototxt:4:[0-9]+" test --model="$T/bad.prototxt" \
  --weights="$T/bad.prototxt"
cat >"$T/bad_solver.prototxt" <<'EOF'
net: "net.prototxt"
max_iter: twenty
EOF
t "malformed solver gives file:line:col" 1 err "^cortado: .*bad_solver\.prototxt:2:[0-9]+" \
  train --solver="$T/bad_solver.prototxt"
if [ "$(wc -l <"$T/err")" != 1 ]; then
  bad "a library error is one line on stderr"
  show
else good; fi

# ---------------------------------------------------------------- a tiny net

# Random data from DummyData (label 1 of 3 classes); trainable in a few iterations.
cat >"$T/net.prototxt" <<'EOF'
name: "tiny"
layer {
  name: "data"
  type: "DummyData"
  top: "data"
  top: "label"
  dummy_data_param {
    shape { dim: 4 dim: 6 }
    shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 }
    data_filler { type: "constant" value: 1 }
  }
}
layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  inner_product_param {
    num_output: 3
    weight_filler { type: "gaussian" std: 0.1 }
    bias_filler { type: "constant" value: 0 }
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "ip"
  bottom: "label"
  top: "loss"
}
EOF

# The same net over an Input layer: the input stays zero, so every batch gives the same loss.
cat >"$T/input_net.prototxt" <<'EOF'
name: "tiny_input"
layer {
  name: "data"
  type: "Input"
  top: "data"
  top: "label"
  input_param {
    shape { dim: 4 dim: 6 }
    shape { dim: 4 }
  }
}
layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  inner_product_param {
    num_output: 3
    weight_filler { type: "gaussian" std: 0.1 }
    bias_filler { type: "constant" value: 0.5 }
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "ip"
  bottom: "label"
  top: "loss"
}
EOF

mkdir -p "$T/snap"
solver() { # solver FILE MAX_ITER
  cat >"$1" <<EOF
net: "$T/net.prototxt"
base_lr: 0.1
lr_policy: "fixed"
momentum: 0.9
max_iter: $2
display: 10
snapshot_prefix: "$T/snap/tiny"
random_seed: 1
EOF
}
solver "$T/solver.prototxt" 20
solver "$T/solver30.prototxt" 30

# ---- time
num='-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?'
if t "time on the tiny net" 0 err "Average Forward pass: $num ms\.$" time --model="$T/net.prototxt" --iterations=3; then
  has "time: backward summary" err "Average Backward pass: $num ms\.$"
  has "time: forward-backward summary" err "Average Forward-Backward: $num ms\.$"
  has "time: total" err "Total Time: $num ms\.$"
  # Caffe's two lines per layer: the name right-aligned in 10 columns, a tab, the time
  has "time: Caffe's forward line" err "\]         ip	forward: $num ms\.$"
  has "time: Caffe's backward line" err "\]         ip	backward: $num ms\.$"
  # then cortado's row: name, type, how it runs (the lowering type for convolutions), times, and
  # for layers that report FLOPs the achieved GFLOP/s forward / backward
  has "time: a row per layer" err " ip +InnerProduct +$num / +$num ms( +$num / +$num GFLOP/s)?$"
  has "time: whole-iteration rate" err "Partitions: [0-9]+\. Whole iteration: $num GFLOP, $num GFLOP/s\.$"
  has "time: glog's prefix" err "^I[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} +[0-9]+ cmd_score\.c:[0-9]+\] Average Forward pass"
  has "time: CPU time per iteration" err "CPU time: $num ms per iteration \($num cores busy\)\.$"
  if [ -r /proc/stat ]; then
    has "time: steal share" err "Steal: (the hypervisor took $num% of this machine's CPU time during the timed passes|not measured: the timed passes took less than one tick of /proc/stat)\.$"
  fi
fi
t "time with -phase TEST and the default iterations" 0 err "Total Time: $num ms\." time -model "$T/net.prototxt" \
  -phase TEST
t "time on an Input net" 0 err "Average Forward-Backward: $num ms\." time --model="$T/input_net.prototxt" --iterations 2
# A net without a loss runs no backward: its layers' backward rate is "-", and the whole
# iteration counts the forward FLOPs only (2 x 64 x 2048 x 2048 = 0.54 GFLOP; the weight
# gradient counted too would make it 1.07).
cat >"$T/forward_only.prototxt" <<'EOF'
name: "forward_only"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 64 dim: 2048 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2048 } }
EOF
if t "time on a net without backward" 0 err " ip +InnerProduct +$num / +$num ms +$num / +- GFLOP/s$" \
  time --model="$T/forward_only.prototxt" --iterations 2; then
  has "time: forward FLOPs only" err "Whole iteration: 0\.5 GFLOP"
  lacks "time: no backward rate" err "/ +$num GFLOP/s$"
fi

# ---- train
if t "train 20 iterations" 0 err "Iteration 10( \([^)]*\))?, loss = $num" train --solver="$T/solver.prototxt"; then
  has "train: Iteration 20 reported" err "Iteration 20"
  has "train: Caffe's closing line" err "Optimization Done\."
fi
for f in tiny_iter_20.caffemodel tiny_iter_20.solverstate; do
  if [ -s "$T/snap/$f" ]; then good; else bad "train did not write $T/snap/$f"; fi
done

t "train --quiet" 0 any "" train --solver="$T/solver.prototxt" --quiet
lacks "train --quiet prints no iteration lines" err "Iteration [0-9]+.*loss ="

if [ -s "$T/snap/tiny_iter_20.solverstate" ]; then
  t "resume with --snapshot" 0 err "Iteration 30" train --solver="$T/solver30.prototxt" \
    --snapshot="$T/snap/tiny_iter_20.solverstate"
  lacks "resume starts past iteration 10" err "Iteration 10[ ,]"
  if [ -s "$T/snap/tiny_iter_30.caffemodel" ]; then good; else bad "resume did not write tiny_iter_30.caffemodel"; fi
  t "fine-tune with -weights" 0 err "Iteration 10( \([^)]*\))?, loss" train -solver "$T/solver.prototxt" \
    -weights "$T/snap/tiny_iter_20.caffemodel"
  t "train --iterations runs N and snapshots" 0 any "" train --solver="$T/solver30.prototxt" --iterations=5
  if [ -s "$T/snap/tiny_iter_5.caffemodel" ]; then good; else bad "train --iterations=5 did not write tiny_iter_5"; fi
else
  bad "no snapshot to resume from; skipped the resume, fine-tune and --iterations runs"
fi
t "train: missing weights file names the path" 1 err "$missing" train --solver="$T/solver.prototxt" \
  --weights="$missing"

# ---- test
W="$T/snap/tiny_iter_20.caffemodel"
if t "test on the tiny net" 0 err "Batch 0, loss = $num$" test --model="$T/net.prototxt" --weights="$W" --iterations=3; then
  has "test: the last batch" err "Batch 2, loss = $num$"
  lacks "test: no batch past N" err "Batch 3,"
  has "test: the mean loss" err "Loss: $num$"
  has "test: the final score line, with Caffe's loss weight" err "\] loss = $num \(\* 1 = $num loss\)$"
fi
# A constant input: the mean of N equal batches is the batch value.
if t "test on an Input net" 0 err "Batch 0, loss = " test --model="$T/input_net.prototxt" --weights="$W" \
  --iterations 4 --phase=TEST; then
  b0=$(sed -nE 's/.* Batch 0, loss = ([^ ]+)$/\1/p' "$T/err")
  fin=$(sed -nE 's/^I[0-9]{4} [0-9:.]+ +[0-9]+ [^ ]+\] loss = ([^ ]+)( .*)?$/\1/p' "$T/err")
  if [ -n "$b0" ] && [ "$b0" = "$fin" ]; then good; else
    bad "test: mean of equal batches ($fin) differs from a batch ($b0)"
    show
  fi
fi
t "test: missing weights names the path" 1 err "^cortado: .*$missing" test --model="$T/net.prototxt" \
  --weights="$missing"

# ---------------------------------------------------------------- issue 23: Caffe's flags, files

# i23 DIR [EXTRA LINES]: a solver over the tiny net writing to DIR/t, 4 iterations
i23() {
  mkdir -p "$1"
  printf 'net: "%s"\nbase_lr: 0.1 lr_policy: "fixed" max_iter: 4 display: 1 snapshot_prefix: "%s/t"\n%s\n' \
    "$T/net.prototxt" "$1" "${2:-}" >"$1/solver.prototxt"
}
# --flagfile: gflags' one flag per line, comments skipped, as on the command line
i23 "$T/ff"
printf '# a flagfile\n--solver=%s\n\n  --iterations=3\n' "$T/ff/solver.prototxt" >"$T/ff/run.flags"
t "--flagfile supplies the flags" 0 err "Stopped after 3 iterations, at iteration 3" train --flagfile="$T/ff/run.flags"
printf -- '--flagfile=%s\n' "$T/ff/self.flags" >"$T/ff/self.flags"
usage "a flagfile naming itself" "" "nested more than" train --flagfile="$T/ff/self.flags"
printf 'solver.prototxt\n' >"$T/ff/bad.flags"
usage "a flagfile line that is not a flag" "" "is not a flag" train --flagfile="$T/ff/bad.flags"

# --level / --stage on train: the train net's NetState, as Caffe's train sets it
cat >"$T/staged.prototxt" <<EOF
$(sed -n '1,/^layer {$/{/^layer {$/!p}' "$T/net.prototxt")
layer { name: "data" type: "DummyData" top: "data" top: "label" dummy_data_param {
  shape { dim: 4 dim: 6 } shape { dim: 4 } data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "staged" type: "Power" bottom: "data" top: "staged_out" include { stage: "extra" } }
layer { name: "leveled" type: "Power" bottom: "data" top: "leveled_out" include { min_level: 2 } }
EOF
mkdir -p "$T/st"
printf 'net: "%s"\nbase_lr: 0.1 lr_policy: "fixed" max_iter: 1 display: 1 snapshot_prefix: "%s/st/t"\n' \
  "$T/staged.prototxt" "$T" >"$T/st/solver.prototxt"
t "train without --stage/--level" 0 err "Train net output" train --solver="$T/st/solver.prototxt"
lacks "no staged layer without --stage" err "staged_out|leveled_out"
t "train --stage=extra" 0 err "Train net output #[0-9]+: staged_out" train --solver="$T/st/solver.prototxt" --stage=extra
lacks "--stage alone leaves the level" err "leveled_out"
t "train --level=2" 0 err "Train net output #[0-9]+: leveled_out" train --solver="$T/st/solver.prototxt" --level=2

# time takes --weights and ignores it, with a note, as Caffe's does
t "time --weights is ignored with a note" 0 err "Ignoring --weights=" time --model="$T/net.prototxt" --iterations=1 \
  --weights="$T/nothere.caffemodel"

# a weights file with a layer the net lacks: Caffe's line for it
i23 "$T/wide"
sed 's/name: "tiny"/name: "wide"/' "$T/net.prototxt" >"$T/wide.prototxt"
printf 'layer { name: "extra" type: "InnerProduct" bottom: "data" top: "extra" inner_product_param { num_output: 2 } }\n' \
  >>"$T/wide.prototxt"
sed -i "s|$T/net.prototxt|$T/wide.prototxt|" "$T/wide/solver.prototxt"
if t "train the wider net" 0 any "" train --solver="$T/wide/solver.prototxt"; then
  i23 "$T/ft"
  t "fine-tune: Caffe's 'Ignoring source layer'" 0 err "\] Ignoring source layer extra$" train \
    --solver="$T/ft/solver.prototxt" --weights="$T/wide/t_iter_4.caffemodel"
fi

# NaN logits never score: the accuracy of NaN weights (allowed) is 0, with a warning
cat >"$T/acc.prototxt" <<'EOF'
layer { name: "data" type: "DummyData" top: "data" top: "label" dummy_data_param {
  shape { dim: 4 dim: 6 } shape { dim: 4 } data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" }
EOF
/usr/bin/python3 - "$T/nan.caffemodel" <<'EOF'
import struct, sys
def varint(v):
    out = b""
    while v >= 0x80: out += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return out + bytes([v])
def ld(f, p): return varint(f << 3 | 2) + varint(len(p)) + p
def blob(dims, vals): return ld(7, ld(1, b"".join(varint(d) for d in dims))) + ld(5, struct.pack("<%df" % len(vals), *vals))
open(sys.argv[1], "wb").write(ld(100, ld(1, b"ip") + ld(7, blob([3, 6], [float("nan")] * 18)) + ld(7, blob([3], [0.0] * 3))))
EOF
t "test refuses NaN weights" 1 err "NaN or Inf" test --model="$T/acc.prototxt" --weights="$T/nan.caffemodel" --iterations=2
if t "test --allow-nonfinite scores NaN weights" 0 err "accuracy = 0$" test --model="$T/acc.prototxt" \
  --weights="$T/nan.caffemodel" --iterations=2 --allow-nonfinite; then
  has "test warns of non-finite outputs" err "Warning: .*NaN or Inf"
fi

# files: long names, stale temporaries, symlinks written through, a metrics FIFO
long=$(printf 'n%.0s' $(seq 234)) # + "_iter_4.caffemodel" = 252 characters, the temporary's too
i23 "$T/long"
sed -i "s|$T/long/t|$T/long/$long|" "$T/long/solver.prototxt"
t "a 252-character snapshot name" 0 any "" train --solver="$T/long/solver.prototxt"
[ -s "$T/long/${long}_iter_4.caffemodel" ] && good || bad "no snapshot under a 252-character name"
i23 "$T/stale"
sh -c 'exit 0' &
dead=$!
wait "$dead"
: >"$T/stale/.t_iter_2.caffemodel.tmp-$dead-0000beef"
: >"$T/stale/.t_iter_2.caffemodel.tmp-$$-0000beef" # this shell is alive: its file stays
ln -s "$T/stale/real.caffemodel" "$T/stale/t_iter_4.caffemodel"
t "train removes a killed run's temporaries" 0 err "Removed 1 temporary file" train --solver="$T/stale/solver.prototxt"
[ ! -e "$T/stale/.t_iter_2.caffemodel.tmp-$dead-0000beef" ] && [ -e "$T/stale/.t_iter_2.caffemodel.tmp-$$-0000beef" ] &&
  good || bad "the dead process's temporary should be gone and the live one's kept"
[ -L "$T/stale/t_iter_4.caffemodel" ] && [ -s "$T/stale/real.caffemodel" ] && good ||
  bad "a snapshot path that is a symlink must be written through, the link kept"
i23 "$T/fifo"
mkfifo "$T/fifo/t_metrics.jsonl"
t "a metrics file that is a FIFO is reported, not blocked on" 0 err "cannot write the metrics file .*FIFO" train \
  --solver="$T/fifo/solver.prototxt"
# a snapshot over the file size limit (SIGXFSZ): the same clean error as a full disk, exit 1
i23 "$T/xfsz" "snapshot: 2"
sed 's/num_output: 3/num_output: 300/' "$T/net.prototxt" >"$T/xfsz/net.prototxt"
sed -i "s|$T/net.prototxt|$T/xfsz/net.prototxt|" "$T/xfsz/solver.prototxt"
(ulimit -f 4 && exec "$CORTADO" train --solver="$T/xfsz/solver.prototxt" 2>&1 >/dev/null) | cat >"$T/err"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 1 ] && grep -q "t_iter_2.caffemodel: write failed: File too large (the file size limit, ulimit -f, is 4096 bytes)" "$T/err" &&
  [ ! -e "$T/xfsz/t_iter_2.caffemodel" ] && good || bad "a snapshot over ulimit -f: exit $rc, $(grep -v '^I' "$T/err" | head -2)"
# the metrics file reaching the file size limit mid-run: reported once with the limit, training
# goes on (a display line per iteration outgrows 8 KiB; the snapshot is skipped, being over it too)
i23 "$T/fsize" "snapshot_after_train: false"
sed -i 's/max_iter: 4/max_iter: 200/' "$T/fsize/solver.prototxt"
# (the log goes through a pipe: a file would meet the same limit)
(ulimit -f 8 && exec "$CORTADO" train --solver="$T/fsize/solver.prototxt" 2>&1 >/dev/null) | cat >"$T/err"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && [ "$(grep -c 'cannot write the metrics file .*File too large (the file size limit' "$T/err")" -eq 1 ] &&
  good || bad "metrics file over ulimit -f: exit $rc, $(grep -c 'cannot write the metrics' "$T/err") reports"

# an empty batch through InnerProduct (a NULL buffer offset by 0 was undefined behaviour)
cat >"$T/batch0.prototxt" <<'EOF'
layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 0 dim: 5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3 } }
EOF
t "time on a batch of 0" 0 err "Total Time" time --model="$T/batch0.prototxt" --iterations=2

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
