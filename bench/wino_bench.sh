#!/usr/bin/env bash
# WINOGRAD blocked (the CPU driver's conv_wino_block: a partition's tiles a block of tile rows at
# a time, V and M in cache) against WINOGRAD staged (CT_WINO_BLOCKED=0: the partition's V and M
# whole, through memory), in one run of the same binary:
#   1. bench/zoo_bench_conv's ResNet 3x3 layers, one partition of BATCH/2 images on one thread
#      (blocked, staged and type 1, best of 3 rounds each);
#   2. `cortado time` on a net (default ResNet-50 at batch BATCH, made trainable by
#      bench/zoo_bench.py rewrite) with 2 partitions, blocked and staged interleaved over ROUNDS
#      rounds (default 2): the WINOGRAD layers' summed forward and backward ms and the whole
#      passes of the median round by WINOGRAD forward ms (the lower one of two), the workspace line, and blocked / staged as ratios.
# PEER=path/to/cortado adds a third configuration: another build (e.g. main's) timed the same way.
#
#   bench/wino_bench.sh [net.prototxt] [batch] [iterations]
#       default: ../shared/zoo/ResNet-50-deploy.prototxt, batch 16, 3 iterations
#
# The host is shared: read the ratios, and `Steal:` and the load average printed with them.
# OpenBLAS runs single-threaded per partition (OPENBLAS_NUM_THREADS=1); its core is whatever the
# environment selects (printed). KEEP=dir keeps every log there.
. "$(dirname "$0")/lib/timing_setup.sh" "$@"
export OPENBLAS_NUM_THREADS=1
echo "OpenBLAS core: ${OPENBLAS_CORETYPE:-autodetected}; load: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== zoo_bench_conv, $((BATCH / 2)) images, 3x3 layers"
"$BUILD/zoo_bench_conv" $((BATCH / 2)) 3x3

"$PY" bench/zoo_bench.py rewrite "$NET" "$tmp/net.prototxt" "$BATCH" >/dev/null
configs=(blocked staged)
[ -n "${PEER:-}" ] && configs+=(peer)
for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    bin="$BUILD/cortado" blocked=1
    [ "$c" = staged ] && blocked=0
    [ "$c" = peer ] && bin=$PEER
    # CT_WINOGRAD4=0: the model's picks stay WINOGRAD where F(4x4, 3x3) would take them over
    CT_WINOGRAD4=0 CT_WINO_BLOCKED=$blocked "$bin" time --model="$tmp/net.prototxt" --iterations="$ITERS" --partitions=2 \
      >"$tmp/$c.$r.log" 2>&1
  done
done

echo "== cortado time, batch $BATCH, 2 partitions, $ROUNDS rounds (the median round); load: $(cut -d' ' -f1-3 /proc/loadavg)"
summary() { # summary <config>: "wino_fwd wino_bwd fwd bwd" of the median round by wino_fwd
  for f in "$tmp/$1".*.log; do
    awk '$6 == "Convolution" && $7 == "wino" {wf += $8; wb += $10}
         /Average Forward pass:/ {F = $(NF - 1)} /Average Backward pass:/ {B = $(NF - 1)}
         END {printf "%.1f %.1f %.1f %.1f\n", wf, wb, F, B}' "$f"
  done | sort -n | awk '{for (i = 1; i <= 4; i++) v[NR, i] = $i} END {m = int((NR + 1) / 2);
    printf "%s %s %s %s\n", v[m, 1], v[m, 2], v[m, 3], v[m, 4]}'
}
read -r bwf bwb bf bb <<<"$(summary blocked)"
read -r swf swb sf sb <<<"$(summary staged)"
printf "%-8s %14s %14s %12s %12s\n" config "wino fwd ms" "wino bwd ms" "fwd ms" "bwd ms"
printf "%-8s %14s %14s %12s %12s\n" blocked "$bwf" "$bwb" "$bf" "$bb"
printf "%-8s %14s %14s %12s %12s\n" staged "$swf" "$swb" "$sf" "$sb"
if [ -n "${PEER:-}" ]; then
  read -r pwf pwb pf pb <<<"$(summary peer)"
  printf "%-8s %14s %14s %12s %12s\n" peer "$pwf" "$pwb" "$pf" "$pb"
fi
awk -v a="$bwf" -v b="$swf" -v c="$bwb" -v d="$swb" 'BEGIN {printf "blocked / staged: wino forward %.2f, wino backward %.2f\n", a / b, c / d}'
for c in "${configs[@]}"; do
  echo "$c: $(grep -h -o 'workspaces .*' "$tmp/$c.1.log" | head -1); $(grep -h -o 'Peak RSS: .*' "$tmp/$c.1.log" | head -1)"
  grep -h -o 'Steal: .*' "$tmp/$c".*.log | sed "s/^/$c: /"
done
