#!/usr/bin/env bash
# Eltwise SUM -> in-place ReLU fusion (src/net/fuse.c, layers/eltwise_relu.c) against the same
# net with the pair as two layers, in one run, with `cortado time` of one binary: CT_FUSE=1
# (everything fused) against CT_FUSE=bn (the BatchNorm chains alone), so the pairs are the only
# difference. Prints the Eltwise layers' and the ReLUs' after them summed forward and backward
# ms, and the whole forward and backward passes, two-layer / fused as a ratio.
#
#   bench/eltwise_relu_bench.sh [net.prototxt] [batch] [iterations]
#       default: ../shared/zoo/ResNet-50-deploy.prototxt, batch 16, 3 iterations
#
# The deploy net is made trainable by bench/zoo_bench.py's rewrite (an Input of `batch` images
# and labels, a SoftmaxWithLoss), with use_global_stats removed (batch statistics, as training
# runs). The two configurations are interleaved over ROUNDS rounds (default 2) and each figure
# is the median over the rounds; this host is shared, so read the ratios, and `Steal:` in the
# logs. OpenBLAS's core is left to autodetection (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset).
# KEEP=dir keeps every `cortado time` log there (the per-layer figures).
. "$(dirname "$0")/lib/timing_setup.sh" "$@"

"$PY" bench/zoo_bench.py rewrite "$NET" "$tmp/net.prototxt" "$BATCH"
sed -i '/^[[:space:]]*use_global_stats:/d' "$tmp/net.prototxt"

run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
for r in $(seq "$ROUNDS"); do
  for f in 1 bn; do
    run env CT_FUSE=$f "$BUILD/cortado" time --model="$tmp/net.prototxt" --iterations="$ITERS" \
      > "$tmp/fuse_$f.round$r.log" 2>&1
  done
done
grep -h "OpenBLAS core" "$tmp"/*.log | head -1 | sed 's/.*\] //'
grep -h "Steal:" "$tmp"/*.log | sed 's/.*\] /  /'

"$PY" - "$tmp" "$ROUNDS" <<'EOF'
import re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
row = re.compile(r'\] (\S+)\s+(\S+)\s+(?:(fused|in chain)\s+)?([\d.]+) /\s+([\d.]+) ms$', re.M)
def parse(path):
    t = open(path).read()
    rows = row.findall(t)
    fwd = bwd = 0.0
    pairs = 0
    for k, (name, typ, note, f, b) in enumerate(rows):
        nxt = rows[k + 1] if k + 1 < len(rows) else None
        if typ == 'Eltwise' and nxt and nxt[1] == 'ReLU':
            pairs += 1
            fwd += float(f) + float(nxt[3])
            bwd += float(b) + float(nxt[4])
    tot = lambda k: float(re.search(r'Average %s pass: (\S+) ms' % k, t).group(1))
    return {'pair fwd': fwd, 'pair bwd': bwd, 'forward': tot('Forward'), 'backward': tot('Backward'),
            'pairs': pairs}
runs = {f: [parse('%s/fuse_%s.round%d.log' % (tmp, f, r)) for r in range(1, rounds + 1)] for f in ('1', 'bn')}
print('%d Eltwise -> ReLU pairs' % runs['1'][0]['pairs'])
print('  %-22s %10s %10s %8s' % ('ms (median of rounds)', 'fused', 'two-layer', 'ratio'))
for k in ('pair fwd', 'pair bwd', 'forward', 'backward'):
    a = statistics.median(x[k] for x in runs['1'])
    b = statistics.median(x[k] for x in runs['bn'])
    print('  %-22s %10.1f %10.1f %8.2f' % (k, a, b, b / a if a else float('nan')))
EOF
