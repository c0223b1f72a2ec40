#!/usr/bin/env bash
# Issue 20's goal, measured: cortado against PyTorch on nets of the public Caffe zoo, each built
# from the same deploy prototxt (../shared/zoo/), in one run, on the same thread count.
#
#   bench/zoo_bench.sh [iterations]       (after `make`; BUILD=build, THREADS=2, ITERS=3)
#
# For each net: bench/zoo_bench.py rewrites the deploy net for training at the batch below (an
# Input layer with data and labels, a SoftmaxWithLoss on the classifier), checks that PyTorch's
# net built by hand from the prototxt has as many learnable parameters as cortado's (BatchNorm's
# statistics aside), then times
#   cortado  `cortado time` on the rewritten net: --partitions=THREADS, single-threaded OpenBLAS
#            per partition; its Average Forward pass and Average Forward-Backward;
#   PyTorch  the same net, torch.set_num_threads(THREADS), training mode: the median forward +
#            loss + backward, and the median forward alone (autograd recording, as in training);
#            glibc's malloc tuned as bench/cnn_bench.sh tunes it (no jemalloc or tcmalloc is
#            installed here), and OpenMP's idle threads sleeping (OMP_WAIT_POLICY=PASSIVE; set
#            TORCH_WAIT=ACTIVE on a quiet machine): on a loaded host its spinning threads made
#            PyTorch 10x slower here, which says nothing about either side's kernels;
# each under /usr/bin/time -v for its peak RSS. BatchNorm: both sides normalise by the batch's
# statistics (BN_STATS=batch, the default: the rewrite drops the deploy nets' use_global_stats:
# true, as their training prototxts have it); BN_STATS=prototxt keeps the prototxt's setting on
# both sides (cortado's BatchNorm on the stored statistics, PyTorch's BatchNorm2d in eval mode for
# those layers). Ratios are PyTorch's time over cortado's (above 1:
# cortado faster) and cortado's peak RSS over PyTorch's.
#
# OpenBLAS's core is autodetected: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for these
# commands only, and the core cortado ran is printed (cortado may correct a core OpenBLAS does not
# know; see tools/cortado.c). Timings on a shared host drift: run it on a quiet machine, or read
# the figures as measured under whatever load there was.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ITERS=${1:-${ITERS:-3}}
THREADS=${THREADS:-2}
PY=${PY:-/usr/bin/python3}
ZOO=${ZOO:-../shared/zoo}
NETS=${NETS:-"ResNet-50-deploy:16 mobilenet_v2_deploy:32 DenseNet_121:16"}
TUNED='glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.top_pad=268435456'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
rss_mb() { sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }

export BN_STATS=${BN_STATS:-batch}
echo "zoo_bench: $ITERS iterations, $THREADS threads, BatchNorm statistics: $BN_STATS, PyTorch OMP_WAIT_POLICY=${TORCH_WAIT:-PASSIVE}," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %5s %12s %12s %10s %12s %12s %10s %9s %9s %8s\n' net batch ct_fb_ms torch_fb_ms fb_ratio \
  ct_fwd_ms torch_fwd_ms fwd_ratio ct_rss_MB th_rss_MB rss_ratio > "$tmp/table"
for spec in $NETS; do
  net=${spec%%:*}
  batch=${spec##*:}
  src="$ZOO/$net.prototxt"
  [ -f "$src" ] || src="bench/zoo/$net.prototxt" # more nets of the kind (bench/zoo/README.md)
  "$PY" bench/zoo_bench.py rewrite "$src" "$tmp/$net.prototxt" "$batch"
  echo "== $net, batch $batch"
  CT_SOURCE_DIR=$PWD CT_BUILD_DIR=$BUILD run "$PY" bench/zoo_bench.py params "$src"
  run env OPENBLAS_NUM_THREADS=1 /usr/bin/time -v "$BUILD/cortado" time --model="$tmp/$net.prototxt" \
    --iterations="$ITERS" --partitions="$THREADS" > "$tmp/ct.out" 2> "$tmp/ct.err" || {
    tail -20 "$tmp/ct.err"
    exit 1
  }
  grep -h "OpenBLAS core" "$tmp/ct.out" "$tmp/ct.err" | sed 's/.*\] /cortado: /' | head -1
  ct_fb=$(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p' "$tmp/ct.out" "$tmp/ct.err" | head -1)
  ct_fw=$(sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p' "$tmp/ct.out" "$tmp/ct.err" | head -1)
  ct_rss=$(rss_mb "$tmp/ct.err")
  run env GLIBC_TUNABLES="$TUNED" OMP_NUM_THREADS="$THREADS" OMP_WAIT_POLICY="${TORCH_WAIT:-PASSIVE}" /usr/bin/time -v "$PY" bench/zoo_bench.py torch "$src" \
    "$batch" "$ITERS" "$THREADS" > "$tmp/th.out" 2> "$tmp/th.err" || {
    tail -20 "$tmp/th.err"
    exit 1
  }
  cat "$tmp/th.out"
  if [ -n "${LOGS:-}" ]; then # LOGS=dir keeps each side's output (cortado's per-layer times)
    mkdir -p "$LOGS" && cat "$tmp/ct.out" "$tmp/ct.err" > "$LOGS/$net.cortado.log" && cp "$tmp/th.out" "$LOGS/$net.torch.log"
  fi
  th_fb=$(sed -n 's/.*fwdbwd_ms=\([0-9.]*\).*/\1/p' "$tmp/th.out")
  th_fw=$(sed -n 's/.* fwd_ms=\([0-9.]*\).*/\1/p' "$tmp/th.out")
  th_rss=$(rss_mb "$tmp/th.err")
  echo "cortado: fwd+bwd $ct_fb ms, fwd $ct_fw ms, peak RSS $ct_rss MB"
  awk -v n="$net" -v b="$batch" -v cf="$ct_fb" -v tf="$th_fb" -v cw="$ct_fw" -v tw="$th_fw" -v cr="$ct_rss" \
    -v tr="$th_rss" 'BEGIN { printf "%-22s %5d %12.1f %12.1f %10.2f %12.1f %12.1f %10.2f %9d %9d %8.2f\n",
      n, b, cf, tf, tf / cf, cw, tw, tw / cw, cr, tr, cr / tr }' >> "$tmp/table"
done
echo
echo "ratios: fb_ratio and fwd_ratio = PyTorch ms / cortado ms (goal: >= 1.3 and >= 1.5); rss_ratio = cortado / PyTorch (goal: <= 1)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$tmp/table"
