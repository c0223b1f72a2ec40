#!/usr/bin/env bash
# cortado against PyTorch (Debian's python3-torch) on the same nets, batches and thread count,
# in one run, with an OpenBLAS SGEMM roof probe. Whole training iterations on both sides
# (forward + backward + SGD update with momentum and weight decay), on random inputs.
#
#   bench/cnn_bench.sh [iterations]        (after `make`; BUILD=build by default)
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
# The roof: the best of three probes (now, and again after the nets, below), so that a moment's
# load from elsewhere does not lower it.
probe_roof() {
  for _ in 1 2 3; do run env OPENBLAS_CORETYPE="${CT_BENCH_CORE:-$ct_core}" "$BUILD/sgemm_roof" "$THREADS" 2048; done |
    sort -t= -k5 -g | tail -1
}
roof_line=$(probe_roof)
roof=$(sed -n 's/.*gflops=\([0-9.]*\).*/\1/p' <<<"$roof_line")
core=$(sed -n 's/.*core=\([A-Za-z0-9]*\).*/\1/p' <<<"$roof_line")
echo "OpenBLAS detects: $detected   cortado runs: $ct_core   roof probe runs: $core"
echo "SGEMM roof on $THREADS threads (best of 3 probes before the nets): $roof GFLOP/s"

# cortado: a solver over the timing net; iter/s from the display lines (set-up excluded)
cortado_ms() { # model partitions blas-threads (1 partition on 1 core: the scaling baseline)
  cat > "$tmp/solver.prototxt" <<EOS
net: "$1"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "fixed"
max_iter: $((N + 2))
display: 2
snapshot_after_train: false
random_seed: 1
EOS
  run env OPENBLAS_NUM_THREADS="$3" "$BUILD/cortado" train --solver="$tmp/solver.prototxt" --partitions="$2" 2>&1 |
    sed -n 's/.*Iteration [0-9]* (\([0-9.e+-]*\) iter\/s.*/\1/p' | tail -n +2 |
    awk '{ s += 1 / $1; n++ } END { if (n) printf "%.2f", 1000 * s / n; else print "nan" }'
}
cortado_time() { # model -> `cortado time` output (whole-iteration GFLOP, GEMM vs other layers)
  run "$BUILD/cortado" time --model="$1" --iterations="$N" --partitions="$THREADS" 2>&1
}

printf "\n%-10s %6s %12s %12s %12s %12s %9s %9s %8s\n" net batch "cortado ms" "1 core ms" "torch ms" "torch+malloc" \
  "vs torch" "vs tuned" "of roof"
# cortado ms / 1 core ms / torch ms: whole training iterations (forward, backward, SGD update);
# "of roof": the training iteration's GFLOP/s against the SGEMM roof
for spec in "caffenet examples/caffenet/time_b32.prototxt 32" "lenet bench/lenet_time_b64.prototxt 64"; do
  set -- $spec
  c2=$(cortado_ms "$2" "$THREADS" "$THREADS")
  c1=$(cortado_ms "$2" 1 1)
  tout=$(cortado_time "$2")
  gf=$(sed -n 's/.*Whole iteration: \([0-9.]*\) GFLOP.*/\1/p' <<<"$tout")
  other=$(sed -n 's/.*Other layers: \([0-9.]* ms ([0-9.]*%)\).*/\1/p' <<<"$tout")
  gemm=$(sed -n 's/.*GEMM layers: \([0-9.]*\) ms.*/\1/p' <<<"$tout")
  fb=$(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p' <<<"$tout")
  t=$(run env OMP_NUM_THREADS="$THREADS" "$PY" bench/torch_bench.py "$1" "$3" "$N" "$THREADS" | awk '{print $4}')
  tt=$(run env GLIBC_TUNABLES="$TUNED" OMP_NUM_THREADS="$THREADS" "$PY" bench/torch_bench.py "$1" "$3" "$N" "$THREADS" |
       awk '{print $4}')
  awk -v n="$1" -v b="$3" -v c2="$c2" -v c1="$c1" -v t="$t" -v tt="$tt" -v gf="$gf" -v roof="$roof" -v fb="$fb" 'BEGIN {
    printf "%-10s %6d %12.2f %12.2f %12.2f %12.2f %8.2fx %8.2fx %7.0f%%\n", n, b, c2, c1, t, tt, t / c2, tt / c2,
      100 * (gf / (c2 / 1000)) / roof
    printf "%-10s %d partitions on %d cores vs 1 on 1 core = %.2fx; whole iteration %.1f GFLOP at %.1f GFLOP/s\n", "", '"$THREADS"', '"$THREADS"', c1 / c2,
      gf, gf / (c2 / 1000)
    printf "%-10s forward+backward alone (cortado time): %.2f ms, %.1f GFLOP/s = %.0f%% of the roof\n", "", fb,
      gf / (fb / 1000), 100 * (gf / (fb / 1000)) / roof }'
  echo "           outside the GEMM layers (cortado time): $other of the layers' time"
  awk -v g="$gemm" -v c2="$c2" 'BEGIN { if (g > 0 && c2 > 0) printf "%-10s outside the GEMM layers in a training iteration (data, other layers, update): %.1f%%\n", "", 100 * (1 - g / c2) }'
done
roof2=$(probe_roof | sed -n 's/.*gflops=\([0-9.]*\).*/\1/p')
echo
echo "SGEMM roof again after the nets: $roof2 GFLOP/s (the fractions above use $roof; they hold for the"
echo "higher of the two only if it is no more than a few percent above)"
