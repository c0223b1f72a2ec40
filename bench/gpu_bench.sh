#!/usr/bin/env bash
# CcT's comparison on a real GPU (issue 18): CaffeNet at batch 256, `cortado time` per training
# iteration (forward + backward) on the CPU alone, on cuda:0 alone, and on both with the
# automatic FLOP-proportional shares (--device=cpu,cuda:0); then CaffeNet at batch 32 on cuda:0
# against PyTorch's CUDA path (bench/torch_bench.py ... cuda) when torch sees a GPU; and the
# depthwise layers of a MobileNet-like net (tests/gpu/mobile_dummy.prototxt at batch 64) on cuda:0
# with DIRECT kernels against the cost model without them (CT_DIRECT=0: grouped type 1). The
# configurations take turns for ROUNDS rounds; the report is the median ms of each and the ratios
# within a round: hybrid / GPU alone (CcT reported 2.35 s / 2.75 s = 0.85 for AlexNet b256 on its
# machine; compare ratios, not milliseconds, across machines).
#
#   BUILD=build-gpu ROUNDS=2 ITERS=3 bash bench/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
ROUNDS=${ROUNDS:-2}
ITERS=${ITERS:-3}
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/ct_gpu_bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
sed 's/dim: 32 /dim: 256 /g' examples/caffenet/time_b32.prototxt >"$T/caffenet_b256.prototxt"
grep -q "dim: 256 dim: 3 dim: 227" "$T/caffenet_b256.prototxt" || { echo "gpu_bench: cannot make the b256 net" >&2; exit 1; }

# ms per forward+backward of one `cortado time` run (OpenBLAS on every core: the CPU's best)
time_ms() {
  local model=$1
  shift
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$BUILD/cortado" time --model="$model" --iterations="$ITERS" "$@" \
    2>"$T/time.log" || { tail -5 "$T/time.log" >&2; echo nan; return; }
  sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p' "$T/time.log"
}
median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

core=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$BUILD/cortado" time --model=bench/lenet_time_b64.prototxt --iterations=1 2>&1 |
  sed -n 's/.*OpenBLAS core: \(.*\)/\1/p' | head -1)
echo "gpu_bench: $("$BUILD/cortado" device_query | head -1); $(nproc) cores, OpenBLAS core ${core:-?}; $ROUNDS rounds of $ITERS iterations"

cpu=() gpu=() hyb=() ratio=()
for r in $(seq "$ROUNDS"); do
  c=$(time_ms "$T/caffenet_b256.prototxt" --device=cpu)
  g=$(time_ms "$T/caffenet_b256.prototxt" --device=cuda:0)
  h=$(time_ms "$T/caffenet_b256.prototxt" --device=cpu,cuda:0)
  grep -E "^ *conv1 |Placement|plan" "$T/time.log" | head -3 || true
  cpu+=("$c") gpu+=("$g") hyb+=("$h")
  ratio+=("$(awk -v h="$h" -v g="$g" 'BEGIN {printf "%.3f", h / g}')")
  echo "round $r: CaffeNet b256 ms/iteration: cpu $c, cuda:0 $g, cpu+cuda:0 (automatic) $h"
done
mc=$(printf '%s\n' "${cpu[@]}" | median) mg=$(printf '%s\n' "${gpu[@]}" | median)
mh=$(printf '%s\n' "${hyb[@]}" | median) mr=$(printf '%s\n' "${ratio[@]}" | median)
echo "CaffeNet b256 (median ms per iteration): CPU alone $mc, 1 GPU alone $mg, GPU+CPU $mh"
echo "CcT's comparison: GPU+CPU / 1 GPU alone = $mr (CcT: 2.35 / 2.75 = 0.85); GPU alone / CPU alone = $(awk -v g="$mg" -v c="$mc" 'BEGIN {printf "%.3f", g / c}')"

# GPU b32 against PyTorch's CUDA path
b32=$(time_ms examples/caffenet/time_b32.prototxt --device=cuda:0)
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  t=$("$PY" bench/torch_bench.py caffenet 32 "$((ITERS * 5))" "$(nproc)" cuda | awk '{print $4}')
  echo "CaffeNet b32 on cuda:0 (ms per iteration): cortado $b32, PyTorch $t; cortado / PyTorch = $(awk -v a="$b32" -v b="$t" 'BEGIN {printf "%.3f", a / b}')"
else
  echo "CaffeNet b32 on cuda:0: cortado $b32 ms per iteration; PyTorch with CUDA is not available here"
fi

# depthwise on cuda:0: DIRECT kernels against grouped type 1 (every layer left to the cost model)
sed -e 's/dim: 12 /dim: 64 /' -e 's/ lowering: DIRECT//' tests/gpu/mobile_dummy.prototxt >"$T/mobile_b64.prototxt"
dw=() t1=()
for r in $(seq "$ROUNDS"); do
  dw+=("$(time_ms "$T/mobile_b64.prototxt" --device=cuda:0)")
  grep -E "^ *dw[123] " "$T/time.log" | head -3 || true
  t1+=("$(CT_DIRECT=0 time_ms "$T/mobile_b64.prototxt" --device=cuda:0)")
done
md=$(printf '%s\n' "${dw[@]}" | median) m1=$(printf '%s\n' "${t1[@]}" | median)
echo "MobileNet-like b64 on cuda:0 (median ms per iteration): cost model with DIRECT $md, without (CT_DIRECT=0) $m1; with / without = $(awk -v a="$md" -v b="$m1" 'BEGIN {printf "%.3f", a / b}')"
