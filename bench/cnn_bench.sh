#!/usr/bin/env bash
# cortado against PyTorch (Debian's python3-torch) on the same nets, batches and thread count,
# in one run, with an OpenBLAS SGEMM roof probe. Whole training iterations on both sides
# (forward + backward + SGD update with momentum and weight decay), on random inputs.
#
#   bench/cnn_bench.sh [iterations]        (after `make`; BUILD=build by default)
#
# This host's speed drifts by tens of percent from minute to minute (a shared virtual machine),
# so every quantity is measured ROUNDS times (default 3), the configurations interleaved within
# each round, and each configuration's best round is reported: a slow spell then hits every
# configuration alike instead of the one that happened to run during it. The roof is probed in
# every round, and the fraction of it is taken against the best probe of the whole run. Each
# round's own figures are printed too, so the spread is visible.
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

# cortado: a solver over the timing net; iter/s from the display lines (set-up excluded)
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
    sed -n 's/.*Iteration [0-9]* (\([0-9.e+-]*\) iter\/s.*/\1/p' | tail -n +2 |
    awk '{ s += 1 / $1; n++ } END { if (n) printf "%.2f", 1000 * s / n; else print "nan" }'
}
cortado_time() { # model iterations -> `cortado time` output (whole-iteration GFLOP, GEMM vs other layers)
  run "$BUILD/cortado" time --model="$1" --iterations="$2" --partitions="$THREADS" 2>&1
}


# One round of one net: each quantity once, in a fixed order; a line "key value" per quantity.
round() { # name model batch iterations
  local tout
  echo "roof $(probe_roof | sed -n 's/.*gflops=\([0-9.]*\).*/\1/p')"
  echo "c2 $(cortado_ms "$2" "$THREADS" "$THREADS" "$4")"
  echo "c1 $(cortado_ms "$2" 1 1 "$4")"
  tout=$(cortado_time "$2" "$4")
  echo "fb $(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p' <<<"$tout")"
  echo "gf $(sed -n 's/.*Whole iteration: \([0-9.]*\) GFLOP.*/\1/p' <<<"$tout")"
  echo "gemm $(sed -n 's/.*GEMM layers: \([0-9.]*\) ms.*/\1/p' <<<"$tout")"
  echo "other $(sed -n 's/.*Other layers: \([0-9.]*\) ms.*/\1/p' <<<"$tout")"
  echo "t $(run env OMP_NUM_THREADS="$THREADS" "$PY" bench/torch_bench.py "$1" "$3" "$4" "$THREADS" | awk '{print $4}')"
  echo "tt $(run env GLIBC_TUNABLES="$TUNED" OMP_NUM_THREADS="$THREADS" "$PY" bench/torch_bench.py "$1" "$3" "$4" \
    "$THREADS" | awk '{print $4}')"
  echo "roof $(probe_roof | sed -n 's/.*gflops=\([0-9.]*\).*/\1/p')"
}

# LeNet's iterations are 50 times shorter: it runs 20 times as many
nets=("caffenet examples/caffenet/time_b32.prototxt 32 $N" "lenet bench/lenet_time_b64.prototxt 64 $((20 * N))")
for r in $(seq "$ROUNDS"); do
  for spec in "${nets[@]}"; do
    set -- $spec
    round "$@" | sed "s/^/$1 $r /" >> "$tmp/rounds"
  done
done

# Per round: cortado N partitions (c2) and 1 partition on 1 core (c1), torch as installed (t)
# and tuned (tt), forward+backward alone (fb), all in ms; roof in GFLOP/s.
echo
printf "%-9s %5s %10s %10s %10s %10s %10s %10s %8s\n" net round "cortado" "1 core" "torch" "torch+mall" "f+b" \
  "roof" "scaling"
awk '{ v[$1" "$2" "$3] = $4; if ($3 == "roof" && $4 > roof[$1" "$2]) roof[$1" "$2] = $4; k[$1" "$2] = 1 }
  END { for (x in k) print x, v[x" c2"], v[x" c1"], v[x" t"], v[x" tt"], v[x" fb"], roof[x] }' "$tmp/rounds" |
  sort -k1,1 -k2,2n | awk '{ printf "%-9s %5d %10.2f %10.2f %10.2f %10.2f %10.2f %10.1f %7.2fx\n", $1, $2, $3, $4,
    $5, $6, $7, $8, $4 / $3 }'

echo
echo "Best round of each configuration (ms per iteration); the roof is the best probe of the whole run:"
printf "\n%-10s %6s %12s %12s %12s %12s %9s %9s %8s\n" net batch "cortado ms" "1 core ms" "torch ms" "torch+malloc" \
  "vs torch" "vs tuned" "of roof"
# cortado ms / 1 core ms / torch ms: whole training iterations (forward, backward, SGD update);
# "of roof": the training iteration's GFLOP/s against the SGEMM roof
awk -v threads="$THREADS" '
  { key = $1 " " $3; if (!(key in best) || ($3 == "roof" ? $4 > best[key] : $4 < best[key])) best[key] = $4
    if ($3 == "roof" && $4 > roof) roof = $4
    if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
  END {
    for (j = 1; j <= n; j++) {
      m = order[j]; c2 = best[m " c2"]; c1 = best[m " c1"]; t = best[m " t"]; tt = best[m " tt"]
      fb = best[m " fb"]; gf = best[m " gf"]; gemm = best[m " gemm"]; other = best[m " other"]
      b = m == "caffenet" ? 32 : 64
      printf "%-10s %6d %12.2f %12.2f %12.2f %12.2f %8.2fx %8.2fx %7.0f%%\n", m, b, c2, c1, t, tt, t / c2, tt / c2,
        100 * (gf / (c2 / 1000)) / roof
      printf "%-10s %d partitions on %d cores vs 1 on 1 core = %.2fx; whole iteration %.1f GFLOP at %.1f GFLOP/s\n",
        "", threads, threads, c1 / c2, gf, gf / (c2 / 1000)
      printf "%-10s forward+backward alone (cortado time): %.2f ms, %.1f GFLOP/s = %.0f%% of the roof\n", "", fb,
        gf / (fb / 1000), 100 * (gf / (fb / 1000)) / roof
      printf "%-10s outside the GEMM layers (cortado time): %.2f ms (%.1f%% of the layers'"'"' time)\n", "", other,
        100 * other / (gemm + other)
      if (gemm > 0) printf "%-10s outside the GEMM layers in a training iteration (data, other layers, update): %.1f%%\n",
        "", 100 * (1 - gemm / c2)
    }
    printf "\nSGEMM roof on %d threads: best probe %.1f GFLOP/s (the fractions above use it)\n", threads, roof
  }' "$tmp/rounds"
