#!/usr/bin/env bash
# cortado against PyTorch (Debian's python3-torch) on the same nets, batches and thread count,
# in one run, with an OpenBLAS SGEMM roof probe. Whole training iterations on both sides
# (forward + backward + SGD update with momentum and weight decay), on random inputs.
#
#   bench/cnn_bench.sh [iterations]        (after `make`; BUILD=build by default)
#
# This host's speed drifts by tens of percent from minute to minute (a shared virtual machine),
# so every quantity is measured ROUNDS times (default 3), the configurations interleaved within
# each round. Each time is the median of its iterations (a stall of a few seconds in one
# iteration is then ignored), each ratio is taken within a round and the median over the rounds
# is reported (a slow spell hits both sides of a ratio alike), and each configuration's time is
# the median of its rounds. The main source of the drift is the hypervisor taking the cores
# (steal time in /proc/stat: minutes of it in half an hour, seen here), so every measurement
# records the share it lost, and the medians use only measurements that lost at most
# STEAL_MAX percent (default 2). The roof is probed twice in every round, and fractions are
# taken against the best probe of the whole run. Two quantities are paired more tightly still,
# in one process: the partition scaling (scaling_bench alternates 1-partition and N-partition
# iterations) and forward+backward against SGEMM (roof_bench alternates them). Every round's own
# figures are printed too.
#
# OpenBLAS's core: this script unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for its own
# commands so OpenBLAS detects the core itself (the issue's setting). OpenBLAS 0.3.21 does not
# know some recent CPUs and falls back to its slow generic Prescott kernels; the cortado tool
# then restarts itself with the core that serves the CPU (see choose_blas_core in
# tools/cortado.c), and the roof probe runs that same core so the fraction compares like with
# like. Set CT_BENCH_CORE (e.g. SkylakeX, Haswell) to force a core on every command. The core
# OpenBLAS detected and the one each side ran are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${1:-10}
THREADS=${THREADS:-$(nproc)}
PY=${PY:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { if [ -n "${CT_BENCH_CORE:-}" ]; then env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$CT_BENCH_CORE" "$@";
        else env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; fi; }
TUNED='glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.top_pad=268435456'

detected=$(run "$BUILD/sgemm_roof" 1 64 | sed -n 's/.*core=\([A-Za-z0-9]*\).*/\1/p')
ct_core=$(run "$BUILD/cortado" time --model=bench/lenet_time_b64.prototxt --iterations=1 2>&1 |
          sed -n 's/.*OpenBLAS core: \([A-Za-z0-9]*\).*/\1/p')
ROUNDS=${ROUNDS:-3}
probe_roof() { # one probe: the roof line of sgemm_roof
  run env OPENBLAS_CORETYPE="${CT_BENCH_CORE:-$ct_core}" "$BUILD/sgemm_roof" "$THREADS" 2048
}
core=$(probe_roof | sed -n 's/.*core=\([A-Za-z0-9]*\).*/\1/p')
echo "OpenBLAS detects: $detected   cortado runs: $ct_core   roof probe runs: $core"
echo "$ROUNDS rounds of $N iterations per configuration, interleaved; threads: $THREADS"

median() { sort -g | awk '{ v[n++] = $1 } END { if (n) printf "%.2f", n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; else print "nan" }'; }

# cortado: a solver over the timing net; the median of the iterations' times, from the display
# lines (set-up and the first iteration excluded)
cortado_ms() { # model partitions blas-threads iterations (1 partition on 1 core: the scaling baseline)
  cat > "$tmp/solver.prototxt" <<EOS
net: "$1"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "fixed"
max_iter: $(($4 + 1))
display: 1
snapshot_after_train: false
random_seed: 1
EOS
  run env OPENBLAS_NUM_THREADS="$3" "$BUILD/cortado" train --solver="$tmp/solver.prototxt" --partitions="$2" 2>&1 |
    sed -n 's/.*Iteration [0-9]*.* (\([0-9.e+-]*\) iter\/s.*/\1/p' | tail -n +2 | awk '{ print 1000 / $1 }' | median
}
# The scaling: scaling_bench builds the training run twice in one process, 1 partition on 1 core
# and N partitions on the cores, and alternates their iterations, so each pair's ratio sees the
# host as it was within seconds (separate runs minutes apart see its drift in full).
paired_to_file() { # model pairs -> scaling_bench's line in $tmp/paired.out (LeNet's turns are blocks
  # of iterations, see bench/scaling_bench.c, so both nets take the same number of pairs)
  cat > "$tmp/paired.prototxt" <<EOS
net: "$1"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "fixed"
max_iter: $(($2 + 1))
snapshot_after_train: false
random_seed: 1
EOS
  run env OPENBLAS_CORETYPE="${CT_BENCH_CORE:-$ct_core}" "$BUILD/scaling_bench" "$tmp/paired.prototxt" "$2" "$THREADS" \
    > "$tmp/paired.out"
  echo done
}
# The roof at the same moments: roof_bench alternates forward+backward passes with SGEMMs on all
# cores, turns of equal length, and gives the median of the pairs' GFLOP/s fractions.
# CaffeNet's is taken twice: as cortado runs it (conv3-5 on Winograd's F(2x2, 3x3), which saves
# FLOPs the fraction still counts), and with CT_WINOGRAD=0 (CcT's three lowering types only).
paired_roof_to_file() { # model pairs [VAR=value...] -> roof_bench's line in $tmp/proof.out
  local model=$1 pairs=$2
  shift 2
  run env OPENBLAS_CORETYPE="${CT_BENCH_CORE:-$ct_core}" "$@" "$BUILD/roof_bench" "$model" "$pairs" > "$tmp/proof.out"
  echo done
}
cortado_time() { # model iterations -> `cortado time` output (whole-iteration GFLOP, GEMM vs other layers)
  run "$BUILD/cortado" time --model="$1" --iterations="$2" --partitions="$THREADS" 2>&1
}


# One round of one net: each quantity once, in a fixed order; a line "key value" per quantity.
# The CPU time the hypervisor took from this machine (steal, /proc/stat) while a command ran, as a
# percentage of the machine's cores x the wall time: a figure measured while another guest held
# our cores says nothing about cortado or PyTorch. "key value steal%"; the command prints value.
steal_jiffies() { awk '/^cpu / { print $9 }' /proc/stat; }
measured() { # key command...
  local key=$1 s0 t0 v s1 t1
  shift
  s0=$(steal_jiffies); t0=$(date +%s.%N)
  v=$("$@")
  s1=$(steal_jiffies); t1=$(date +%s.%N)
  awk -v k="$key" -v v="$v" -v ds=$((s1 - s0)) -v dt="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    -v hz="$(getconf CLK_TCK)" -v cores="$(nproc)" 'BEGIN { printf "%s %s %.1f\n", k, v, 100 * ds / hz / (dt * cores) }'
}
time_to_file() { cortado_time "$@" > "$tmp/time.out"; echo done; }
roof_gflops() { probe_roof | sed -n 's/.*gflops=\([0-9.]*\).*/\1/p'; }
sustained_gflops() { # threads: SGEMM's mean rate over 2 s, what the cores sustain over a stretch
  run env OPENBLAS_CORETYPE="${CT_BENCH_CORE:-$ct_core}" "$BUILD/sgemm_roof" "$1" 2048 2 | sed -n 's/.*gflops=\([0-9.]*\).*/\1/p'
}
torch_ms() { # name batch iterations [tuned]
  if [ -n "${4:-}" ]; then
    run env GLIBC_TUNABLES="$TUNED" OMP_NUM_THREADS="$THREADS" "$PY" bench/torch_bench.py "$1" "$2" "$3" "$THREADS"
  else
    run env OMP_NUM_THREADS="$THREADS" "$PY" bench/torch_bench.py "$1" "$2" "$3" "$THREADS"
  fi | awk '{ print $4 }'
}

# One round of one net: each quantity once, in a fixed order; a line "key value steal%" each.
round() { # name model batch iterations
  local tout steal
  measured roof roof_gflops
  measured sus sustained_gflops "$THREADS"
  measured c2 cortado_ms "$2" "$THREADS" "$THREADS" "$4"
  steal=$(measured paired paired_to_file "$2" "$((N > 4 ? N : 4))" | awk '{ print $3 }')
  echo "c1 $(sed -n 's/.* 1-partition=\([0-9.]*\)ms.*/\1/p' "$tmp/paired.out") $steal"
  echo "s $(sed -n 's/.* ratio=\([0-9.]*\) .*/\1/p' "$tmp/paired.out") $steal"
  echo "gs $(sed -n 's/.* sgemm_ratio=\([0-9.]*\).*/\1/p' "$tmp/paired.out") $steal"
  steal=$(measured time time_to_file "$2" "$4" | awk '{ print $3 }')
  tout=$(cat "$tmp/time.out")
  echo "fb $(sed -n 's/.*Iteration: [0-9]* forward-backward time: \([0-9.]*\) ms.*/\1/p' <<<"$tout" | median) $steal"
  echo "gf $(sed -n 's/.*Whole iteration: \([0-9.]*\) GFLOP.*/\1/p' <<<"$tout") $steal"
  echo "gemm $(sed -n 's/.*GEMM layers: \([0-9.]*\) ms.*/\1/p' <<<"$tout") $steal"
  echo "other $(sed -n 's/.*Other layers: \([0-9.]*\) ms.*/\1/p' <<<"$tout") $steal"
  steal=$(measured proof paired_roof_to_file "$2" "$((N > 4 ? N : 4))" | awk '{ print $3 }')
  echo "pf $(sed -n 's/.* fraction=\([0-9.]*\) .*/\1/p' "$tmp/proof.out") $steal"
  echo "pg $(sed -n 's/.* sgemm=\([0-9.]*\)GFLOP.*/\1/p' "$tmp/proof.out") $steal"
  if [ "$1" = caffenet ]; then
    steal=$(measured proof paired_roof_to_file "$2" "$((N > 4 ? N : 4))" CT_WINOGRAD=0 | awk '{ print $3 }')
    echo "pf0 $(sed -n 's/.* fraction=\([0-9.]*\) .*/\1/p' "$tmp/proof.out") $steal"
  fi
  measured t torch_ms "$1" "$3" "$4"
  measured tt torch_ms "$1" "$3" "$4" tuned
  measured roof roof_gflops
}

# LeNet's iterations are 50 times shorter: it runs 20 times as many
nets=("caffenet examples/caffenet/time_b32.prototxt 32 $N" "lenet bench/lenet_time_b64.prototxt 64 $((20 * N))")
for r in $(seq "$ROUNDS"); do
  for spec in "${nets[@]}"; do
    set -- $spec
    round "$@" | sed "s/^/$1 $r /" >> "$tmp/rounds"
  done
done

# Per round: cortado N partitions (c2); 1 partition on 1 core (c1), the paired scaling (s) and
# SGEMM's own (gs), all from scaling_bench; torch as installed (t)
# and tuned (tt), forward+backward alone (fb), all in ms; roof in GFLOP/s; the most CPU time
# stolen by the hypervisor during any of the round's measurements.
STEAL_MAX=${STEAL_MAX:-2}
echo
printf "%-9s %5s %10s %10s %10s %10s %10s %8s %8s %8s %8s %7s\n" net round "cortado" "1 core" "torch" "torch+mall" \
  "f+b" "roof" "sustain" "scaling" "sgemm" "stolen"
awk '{ v[$1" "$2" "$3] = $4; if ($3 == "roof" && $4 > roof[$1" "$2]) roof[$1" "$2] = $4; k[$1" "$2] = 1
       if ($3 != "roof" && $5 > st[$1" "$2]) st[$1" "$2] = $5 }
  END { for (x in k) print x, v[x" c2"], v[x" c1"], v[x" t"], v[x" tt"], v[x" fb"], roof[x], v[x" sus"],
          v[x" s"], v[x" gs"], st[x] + 0 }' "$tmp/rounds" |
  sort -k1,1 -k2,2n | awk '{ printf "%-9s %5d %10.2f %10.2f %10.2f %10.2f %10.2f %8.1f %8.1f %7.2fx %7.2fx %6.1f%%\n",
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }'

echo
echo "Medians over the rounds in which the hypervisor took at most $STEAL_MAX% of the CPU time (all rounds,"
echo "marked *, where none did); times in ms per iteration; ratios taken within each round; the roof is"
echo "the best probe of the whole run:"
printf "\n%-10s %6s %12s %12s %12s %12s %9s %9s %8s\n" net batch "cortado ms" "1 core ms" "torch ms" "torch+malloc" \
  "vs torch" "vs tuned" "of roof"
# cortado ms / 1 core ms / torch ms: whole training iterations (forward, backward, SGD update);
# "of roof": the training iteration's GFLOP/s against the SGEMM roof
awk -v threads="$THREADS" -v smax="$STEAL_MAX" '
  function med(key,   n, i, j, t, a, src) { src = clean[key] != "" ? clean[key] : all[key]
    mark = clean[key] != "" ? "" : "*"
    n = split(src, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function add(key, val, ok) { all[key] = all[key] " " val; if (ok) clean[key] = clean[key] " " val }
  { v[$1 " " $2 " " $3] = $4; ok[$1 " " $2 " " $3] = $5 <= smax; add($1 " " $3, $4, $5 <= smax); r[$2] = 1
    if ($3 == "roof" && $4 > roof) roof = $4
    if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
  END {
    for (j = 1; j <= n; j++) {
      m = order[j]
      for (x in r) { b = m " " x
        add(m " rt", v[b " t"] / v[b " c2"], ok[b " t"] && ok[b " c2"])
        add(m " rtt", v[b " tt"] / v[b " c2"], ok[b " tt"] && ok[b " c2"])
        }
      c2 = med(m " c2") ; c2m = mark; c1 = med(m " c1"); c1m = mark; t = med(m " t"); tm = mark
      tt = med(m " tt"); ttm = mark; fb = med(m " fb"); fbm = mark; gf = med(m " gf")
      gemm = med(m " gemm"); other = med(m " other"); om = mark
      rt = med(m " rt"); rtm = mark; rtt = med(m " rtt"); rttm = mark; sc = med(m " s"); scm = mark
      ms = med(m " gs"); sus = med(m " sus"); pf = med(m " pf"); pfm = mark; pg = med(m " pg")
      b = m == "caffenet" ? 32 : 64
      printf "%-10s %6d %11.2f%1s %11.2f%1s %11.2f%1s %11.2f%1s %7.2fx%1s %7.2fx%1s %7.0f%%\n", m, b, c2, c2m, c1, c1m,
        t, tm, tt, ttm, rt, rtm, rtt, rttm, 100 * (gf / (c2 / 1000)) / roof
      printf "%-10s %d partitions on %d cores vs 1 on 1 core, paired in one process = %.2fx%s (SGEMM itself at the same moments: %d threads vs 1 = %.2fx)\n",
        "", threads, threads, sc, scm, threads, ms
      printf "%-10s whole iteration %.1f GFLOP at %.1f GFLOP/s\n", "", gf, gf / (c2 / 1000)
      printf "%-10s forward+backward alone (cortado time): %.2f ms%s, %.1f GFLOP/s = %.0f%% of the roof, %.0f%% of SGEMM sustained (%.1f)\n",
        "", fb, fbm, gf / (fb / 1000), 100 * (gf / (fb / 1000)) / roof, 100 * (gf / (fb / 1000)) / sus, sus
      printf "%-10s forward+backward against SGEMM at the same moments (roof_bench, SGEMM there %.1f GFLOP/s): %.0f%%%s\n",
        "", pg, 100 * pf, pfm
      if ((m " pf0") in all) {
        pf0 = med(m " pf0")
        printf "%-10s the same with CcT'"'"'s three lowering types only (CT_WINOGRAD=0): %.0f%%%s\n", "", 100 * pf0, mark
      }
      printf "%-10s outside the GEMM layers (cortado time): %.2f ms (%.1f%% of the layers'"'"' time)%s\n", "", other,
        100 * other / (gemm + other), om
    }
    printf "\nSGEMM roof on %d threads: best probe %.1f GFLOP/s (\"of roof\" uses it; \"sustained\" is the median of the\n", threads, roof
    printf "rounds'"'"' 2-second SGEMM runs on %d threads, measured next to the nets)\n", threads
  }' "$tmp/rounds"
# A figure the logs did not give (a changed log line) must not pass as a measurement
if awk '$3 == "c2" && $4 == "nan" { bad = 1 } END { exit !bad }' "$tmp/rounds"; then
  echo "cnn_bench: no iter/s read from cortado's training log (the display line's format?)" >&2
  exit 1
fi
