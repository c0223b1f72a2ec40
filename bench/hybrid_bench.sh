#!/usr/bin/env bash
# CcT's hybrid on a machine without a GPU: a net's batch split between the CPU and the emu device
# (src/drivers/emu), each given one core: OPENBLAS_NUM_THREADS=1 and --partitions=1 put the
# CPU's share on one thread, and the emu device runs its calls on the pool's other thread. emu
# runs the CPU's kernels, at two speeds (CT_EMU_SPEED: 1, the speed of a CPU core; 0.5, each call
# waits as long again), with CT_EMU_GUARD=off (closing its arena between calls costs more than
# the work on a virtual machine; the tests keep it on).
#
# For each net and speed, `cortado time` gives the forward+backward time of: the CPU alone, emu
# alone, and the automatic plan over both (--device=cpu,emu:0); the configurations take turns for
# ROUNDS rounds, and the ratio of the hybrid to the best single device is taken within each
# round (host speed drifts from minute to minute here). A ratio below 1 means the hybrid is
# faster than either device alone; the scheduler's promise is that it is never above 1 by more
# than the noise.
#
#   ROUNDS=3 ITERS=10 BUILD=build bash bench/hybrid_bench.sh [nets...]     (nets: lenet caffenet)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3}
ITERS=${ITERS:-10}
nets=("$@")
[ ${#nets[@]} -gt 0 ] || nets=(lenet caffenet)

model_of() {
  case "$1" in
    lenet) echo bench/lenet_time_b64.prototxt ;;
    caffenet) echo examples/caffenet/time_b32.prototxt ;;
    *) echo "hybrid_bench: unknown net $1 (lenet, caffenet)" >&2; exit 2 ;;
  esac
}

# ms per forward+backward of one `cortado time` run
time_ms() {
  local model=$1 iters=$2 speed=$3
  shift 3
  env OPENBLAS_NUM_THREADS=1 CT_EMU_GUARD=off CT_EMU_SPEED="$speed" \
    "$BUILD/cortado" time --model="$model" --iterations="$iters" --partitions=1 "$@" 2>&1 |
    sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p'
}

median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

core=$("$BUILD/cortado" time --model=bench/lenet_time_b64.prototxt --iterations=1 2>&1 |
  sed -n 's/.*OpenBLAS core: \(.*\)/\1/p' | head -1)
echo "hybrid_bench: OpenBLAS core: ${core:-?}; $ROUNDS rounds of $ITERS iterations; one core per device"

for net in "${nets[@]}"; do
  model=$(model_of "$net")
  iters=$ITERS
  [ "$net" = caffenet ] && iters=$(( (ITERS + 3) / 4 ))
  for speed in 1 0.5; do
    cpu=() emu=() hyb=() ratio=()
    for r in $(seq "$ROUNDS"); do
      c=$(time_ms "$model" "$iters" "$speed" --device=cpu)
      e=$(time_ms "$model" "$iters" "$speed" --device=emu:0)
      h=$(time_ms "$model" "$iters" "$speed" --device=cpu,emu:0)
      best=$(awk -v a="$c" -v b="$e" 'BEGIN {print a < b ? a : b}')
      q=$(awk -v h="$h" -v b="$best" 'BEGIN {printf "%.3f", h / b}')
      cpu+=("$c") emu+=("$e") hyb+=("$h") ratio+=("$q")
      printf '  %-8s speed %-3s round %d: cpu %8.2f ms  emu:0 %8.2f ms  hybrid %8.2f ms  hybrid/best %s\n' \
        "$net" "$speed" "$r" "$c" "$e" "$h" "$q"
    done
    printf '%-8s emu speed %-3s medians: cpu %.2f ms, emu:0 %.2f ms, hybrid %.2f ms; hybrid/best single device %s\n' \
      "$net" "$speed" "$(printf '%s\n' "${cpu[@]}" | median)" "$(printf '%s\n' "${emu[@]}" | median)" \
      "$(printf '%s\n' "${hyb[@]}" | median)" "$(printf '%s\n' "${ratio[@]}" | median)"
  done
  # the plan the scheduler chose, at speed 0.5
  env OPENBLAS_NUM_THREADS=1 CT_EMU_GUARD=off CT_EMU_SPEED=0.5 "$BUILD/cortado" time --model="$model" \
    --iterations=1 --partitions=1 --device=cpu,emu:0 2>&1 | sed -n 's/^.*\] \(.* plan: .*\)$/    \1/p;s/^.*\] \(Copies between devices.*\)$/    \1/p'
done
