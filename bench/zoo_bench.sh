#!/usr/bin/env bash
# Issue 20's goal, measured: cortado against PyTorch on nets of the public Caffe zoo, each built
# from the same deploy prototxt (../shared/zoo/), in one run, on the same thread count.
#
#   bench/zoo_bench.sh [iterations]       (after `make`; BUILD=build, THREADS=2, ITERS=3, ROUNDS=3)
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
# Each net runs ROUNDS paired rounds: a round times cortado and PyTorch back to back (cortado first
# in odd rounds, PyTorch first in even ones), so that a slow spell of this shared host falls on
# both sides of a round's ratio; the table gives each side's median time over the rounds, the
# median of the rounds' ratios, and the lowest and highest round ratio (a wide spread says the
# host was not quiet). Peak RSS is the largest over the rounds.
#
# OpenBLAS's core is autodetected: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for these
# commands only, and the core cortado ran is printed (cortado may correct a core OpenBLAS does not
# know; see tools/cortado.c). Timings on a shared host drift: run it on a quiet machine, or read
# the figures as measured under whatever load there was.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ITERS=${1:-${ITERS:-3}}
ROUNDS=${ROUNDS:-3}
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
echo "zoo_bench: $ROUNDS rounds of $ITERS iterations, $THREADS threads, BatchNorm statistics: $BN_STATS, PyTorch OMP_WAIT_POLICY=${TORCH_WAIT:-PASSIVE}," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %5s %10s %11s %8s %11s %10s %12s %9s %12s %9s %9s %8s\n' net batch ct_fb_ms torch_fb_ms fb_ratio \
  fb_lo-hi ct_fwd_ms torch_fwd_ms fwd_ratio fwd_lo-hi ct_rss_MB th_rss_MB rss_ratio > "$tmp/table"
# One side's timing of $net at $batch: sets ct_fb, ct_fw, ct_rss (cortado) or th_fb, th_fw, th_rss.
time_cortado() {
  run env OPENBLAS_NUM_THREADS=1 /usr/bin/time -v "$BUILD/cortado" time --model="$tmp/$net.prototxt" \
    --iterations="$ITERS" --partitions="$THREADS" > "$tmp/ct.out" 2> "$tmp/ct.err" || {
    tail -20 "$tmp/ct.err"
    exit 1
  }
  [ "$round" -gt 1 ] || grep -h "OpenBLAS core" "$tmp/ct.out" "$tmp/ct.err" | sed 's/.*\] /cortado: /' | head -1
  ct_fb=$(sed -n 's/.*Average Forward-Backward: \([0-9.]*\) ms.*/\1/p' "$tmp/ct.out" "$tmp/ct.err" | head -1)
  ct_fw=$(sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p' "$tmp/ct.out" "$tmp/ct.err" | head -1)
  ct_rss=$(rss_mb "$tmp/ct.err")
}
time_torch() {
  run env GLIBC_TUNABLES="$TUNED" OMP_NUM_THREADS="$THREADS" OMP_WAIT_POLICY="${TORCH_WAIT:-PASSIVE}" /usr/bin/time -v "$PY" bench/zoo_bench.py torch "$src" \
    "$batch" "$ITERS" "$THREADS" > "$tmp/th.out" 2> "$tmp/th.err" || {
    tail -20 "$tmp/th.err"
    exit 1
  }
  th_fb=$(sed -n 's/.*fwdbwd_ms=\([0-9.]*\).*/\1/p' "$tmp/th.out")
  th_fw=$(sed -n 's/.* fwd_ms=\([0-9.]*\).*/\1/p' "$tmp/th.out")
  th_rss=$(rss_mb "$tmp/th.err")
}

for spec in $NETS; do
  net=${spec%%:*}
  batch=${spec##*:}
  src="$ZOO/$net.prototxt"
  [ -f "$src" ] || src="bench/zoo/$net.prototxt" # more nets of the kind (bench/zoo/README.md)
  "$PY" bench/zoo_bench.py rewrite "$src" "$tmp/$net.prototxt" "$batch"
  echo "== $net, batch $batch"
  CT_SOURCE_DIR=$PWD CT_BUILD_DIR=$BUILD run "$PY" bench/zoo_bench.py params "$src"
  : > "$tmp/rounds"
  for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
      time_cortado && time_torch
    else
      time_torch && time_cortado
    fi
    echo "round $round: cortado fwd+bwd $ct_fb ms, fwd $ct_fw ms; PyTorch fwd+bwd $th_fb ms, fwd $th_fw ms"
    echo "$ct_fb $th_fb $ct_fw $th_fw $ct_rss $th_rss" >> "$tmp/rounds"
  done
  if [ -n "${LOGS:-}" ]; then # LOGS=dir keeps each side's output of the last round (cortado's per-layer times)
    mkdir -p "$LOGS" && cat "$tmp/ct.out" "$tmp/ct.err" > "$LOGS/$net.cortado.log" && cp "$tmp/th.out" "$LOGS/$net.torch.log"
  fi
  # medians of each column and of the rounds' ratios (PyTorch / cortado), lowest and highest ratio
  awk -v n="$net" -v b="$batch" '
    function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    { k++; cf[k] = $1; tf[k] = $2; cw[k] = $3; tw[k] = $4; rf[k] = $2 / $1; rw[k] = $4 / $3
      if ($5 > cr) cr = $5; if ($6 > tr) tr = $6 }
    END { mf = med(rf, k); lf = rf[1]; hf = rf[k]; mw = med(rw, k); lw = rw[1]; hw = rw[k]
      printf "%-22s %5d %10.1f %11.1f %8.2f %5.2f-%-5.2f %10.1f %12.1f %9.2f %5.2f-%-5.2f %9d %9d %8.2f\n",
        n, b, med(cf, k), med(tf, k), mf, lf, hf, med(cw, k), med(tw, k), mw, lw, hw, cr, tr, cr / tr }' \
    "$tmp/rounds" >> "$tmp/table"
done
echo
echo "ratios: fb_ratio and fwd_ratio = the median over the rounds of PyTorch ms / cortado ms (goal: >= 1.3 and >= 1.5)," \
  "lo-hi their lowest and highest round; times: medians; rss_ratio = cortado / PyTorch (goal: <= 1)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$tmp/table"
