#!/usr/bin/env bash
# The GPU check of the CUDA driver (issue 18), one command on a machine with a GPU and a copy of
# the working tree (`make test-gpu` runs it):
#
#   1. builds (CUDA found: src/drivers/cuda/ compiled), then cortado device_query;
#   2. test_cuda_kernels (the kernel bodies on the host, as CI runs it);
#   3. every driver entry on cuda:0 against the CPU driver within 1e-4: test_driver,
#      test_driver_nn and test_bn_chain with CT_DC_BACKEND=cuda:0 (the same tests CI runs against
#      emu:0: DIRECT convolution, the fused BatchNorm chain, the two-stage reductions, Dropout's
#      mask included);
#   4. every layer's gradient check on cuda:0 and split cpu 0.4 + cuda:0 0.6: test_gradcheck with
#      CT_GRADCHECK_DEVICE=cuda:0;
#   5. LeNet (DummyData) 20 iterations on the CPU, with --gpu=0, with solver_mode: GPU and on
#      --device=cpu,cuda:0 (automatic shares): the weights equal the CPU's within 1e-4;
#   6. a MobileNet-like net (tests/gpu/mobile_dummy.prototxt: depthwise DIRECT convolutions,
#      fused BatchNorm -> Scale -> ReLU chains, Dropout) the same way, and --gpu=0 twice: the two
#      GPU runs must give the same bits (the reductions and the dropout masks are deterministic);
#   7. with two GPUs or more: LeNet and the MobileNet-like net on --gpu=0,1 (gradients summed on
#      cuda:0 in device order, copies between the GPUs straight when they are peers) = the CPU's
#      within 1e-4, and the copy counts between the devices;
#   8. the timings of bench/gpu_bench.sh (CaffeNet b256: CPU, GPU, hybrid; GPU b32 against
#      PyTorch's CUDA path when torch sees the GPU).
#
# Every step runs even when one before failed (so one run shows everything); the summary lists
# each step's result and the exit status is 1 if any failed. Output also goes to $OUT/gpu_check.log
# when $OUT is set (the device tool's folder). Knobs: BUILD (default build-gpu), JOBS (nproc),
# SKIP_BENCH=1, ITERS (bench iterations, default 3).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
BUILD=$(realpath -m "${BUILD:-build-gpu}")
JOBS=${JOBS:-$(nproc)}
LOG=${OUT:+$OUT/gpu_check.log}
if [ -n "$LOG" ]; then exec > >(tee "$LOG") 2>&1; fi
results=()
failed=0
step() { # step NAME CMD...: runs CMD, records its result
  local name=$1 t0 rc
  shift
  echo "==== $name"
  t0=$(date +%s)
  "$@"
  rc=$?
  results+=("$([ $rc = 0 ] && echo PASS || echo "FAIL($rc)")  $name  ($(($(date +%s) - t0)) s)")
  [ $rc = 0 ] || failed=1
  return $rc
}

echo "gpu check: $(date -u), $(nproc) cores, $(uname -r)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/nvidia-smi: /'

build() {
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CUDA_ARCH:+-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH} >"$BUILD.cmake.log" 2>&1 ||
    { tail -30 "$BUILD.cmake.log"; return 1; }
  grep "CUDA driver" "$BUILD.cmake.log"
  grep -q "CUDA driver: nvcc" "$BUILD.cmake.log" || { echo "nvcc was not found: no CUDA driver built"; return 1; }
  cmake --build "$BUILD" -j"$JOBS" --target cortado cortado_shared test_cuda_kernels test_driver test_driver_nn \
    test_bn_chain test_gradcheck >"$BUILD.make.log" 2>&1 || { grep -E "error|Error" "$BUILD.make.log" | head -40; return 1; }
}
mkdir -p "$BUILD"
if ! step "build" build; then
  printf '%s\n' "${results[@]}"
  exit 1
fi
step "device_query" "$BUILD/cortado" device_query || { printf '%s\n' "${results[@]}"; exit 1; }
step "kernel bodies on the host (test_cuda_kernels)" "$BUILD/tests/test_cuda_kernels"
cd tests || exit 1
step "driver entries on cuda:0 vs cpu, 1e-4 (test_driver)" env CT_DC_BACKEND=cuda:0 "$BUILD/tests/test_driver"
step "driver entries on cuda:0 vs cpu, 1e-4 (test_driver_nn)" env CT_DC_BACKEND=cuda:0 "$BUILD/tests/test_driver_nn"
step "fused BatchNorm chain entries on cuda:0 vs cpu, 1e-4 (test_bn_chain)" env CT_DC_BACKEND=cuda:0 \
  "$BUILD/tests/test_bn_chain"
step "gradient checks on cuda:0 and cpu+cuda:0 (test_gradcheck)" env CT_GRADCHECK_DEVICE=cuda:0 \
  timeout 900 "$BUILD/tests/test_gradcheck"
cd "$ROOT" || exit 1

# ---- LeNet and the MobileNet-like net, 20 iterations, on each placement
W=$(mktemp -d "${TMPDIR:-/tmp}/ct_gpu.XXXXXX")
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
solver() { # solver NET NAME [EXTRA]
  printf 'net: "%s"\nbase_lr: 0.01 momentum: 0.9 weight_decay: 0.0005\nlr_policy: "inv" gamma: 0.0001 power: 0.75\n' \
    "$ROOT/tests/gpu/$1.prototxt" >"$W/$1_$2.prototxt"
  printf 'max_iter: 20 display: 10 random_seed: 7 snapshot_prefix: "%s/%s_%s"\n%s\n' "$W" "$1" "$2" "${3:-}" \
    >>"$W/$1_$2.prototxt"
}
train() { # train NET NAME FLAGS...
  local name=$1_$2
  shift 2
  "$BUILD/cortado" train --solver="$W/$name.prototxt" "$@" 2>"$W/$name.log"
  local rc=$?
  grep -E "Iteration (10|20)|placement|plan" "$W/$name.log" | head -6
  [ $rc = 0 ] || tail -5 "$W/$name.log"
  return $rc
}
compare() { # compare NET TOL NAME...: each run's weights against the first's
  local net=$1 tol=$2 files=()
  shift 2
  for n in "$@"; do files+=("$W/${net}_${n}_iter_20.caffemodel"); done
  PYTHONPATH="$ROOT/python" CORTADO_LIB="$BUILD/libcortado.so" /usr/bin/python3 tests/gpu/compare_weights.py \
    "tests/gpu/$net.prototxt" "$tol" "${files[@]}"
}
placements() { # placements NET: cpu, --gpu=0, solver_mode: GPU, cpu+cuda:0 (auto and 0.5/0.5) = cpu within 1e-4
  local net=$1
  solver "$net" cpu && solver "$net" gpu && solver "$net" mode 'solver_mode: GPU device_id: 0' &&
    solver "$net" hybrid && solver "$net" hybrid_fixed || return 1
  train "$net" cpu && train "$net" gpu --gpu=0 && train "$net" mode && train "$net" hybrid --device=cpu,cuda:0 &&
    train "$net" hybrid_fixed --device=cpu=0.5,cuda:0=0.5 || return 1
  compare "$net" 1e-4 cpu gpu mode hybrid hybrid_fixed
}
gpu_twice() { # the MobileNet-like net on --gpu=0 again: the same bits as the first GPU run
  solver mobile_dummy gpu2 && train mobile_dummy gpu2 --gpu=0 && compare mobile_dummy 0 gpu gpu2
}
multi_gpu() { # --gpu=0,1 = cpu within 1e-4, and the copies between the devices
  local net
  for net in lenet_dummy mobile_dummy; do
    solver "$net" gpus && train "$net" gpus --gpu=0,1 && compare "$net" 1e-4 cpu gpus || return 1
  done
  # cuda:1 -> cuda:0 appears here without a cpu hop when the two are peers
  "$BUILD/cortado" time --model="tests/gpu/lenet_dummy.prototxt" --gpu=0,1 --iterations=3 2>&1 |
    grep -E "Copies between devices"
}
step "LeNet 20 iterations: --gpu=0, solver_mode: GPU, cpu+cuda:0 (auto and 0.5/0.5) = cpu within 1e-4" \
  placements lenet_dummy
step "MobileNet-like (depthwise DIRECT, fused BatchNorm chains, Dropout) 20 iterations, the same placements" \
  placements mobile_dummy
step "MobileNet-like on --gpu=0 twice: bit for bit the same" gpu_twice
if [ "${NGPU:-0}" -ge 2 ]; then
  step "LeNet and MobileNet-like on --gpu=0,1 = cpu within 1e-4" multi_gpu
else
  echo "==== one GPU ($NGPU): the --gpu=0,1 step is skipped"
fi
rm -rf "$W"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "timings (bench/gpu_bench.sh)" env BUILD="$BUILD" ITERS="${ITERS:-3}" bash bench/gpu_bench.sh
fi

echo "==== summary"
printf '%s\n' "${results[@]}"
exit $failed
