#!/usr/bin/env bash
# BatchNorm -> Scale (-> ReLU) fusion (src/net/fuse.c) against the same net unfused (CT_FUSE=0),
# in one run, with `cortado time`: the BatchNorm, Scale and ReLU layers' summed forward and
# backward ms, and the whole forward and backward passes, fused / unfused as a ratio.
#
#   bench/fuse_bench.sh [net.prototxt] [batch] [iterations]
#       default: ../shared/zoo/ResNet-50-deploy.prototxt, batch 16, 3 iterations
#
# A deploy net (input_dim or an Input layer, no loss) is made trainable here: its batch becomes
# `batch` and a SoftmaxWithLoss on its last InnerProduct, with constant labels, closes it (Caffe
# runs no backward for layers that do not reach a loss). Two variants are timed: the prototxt's
# BatchNorm settings as published (ResNet-50's deploy net sets use_global_stats: true: the
# stored statistics) and with use_global_stats removed (batch statistics, as training runs).
# The configurations are interleaved over ROUNDS rounds (default 2) and each figure is the
# median over the rounds; this host is shared, so read the ratios, and `Steal:` in the logs.
# OpenBLAS's core is left to autodetection (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset).
# KEEP=dir keeps every `cortado time` log there (the per-layer figures).
. "$(dirname "$0")/lib/timing_setup.sh" "$@"

"$PY" - "$NET" "$BATCH" "$tmp" <<'EOF'
import re, sys
src, batch, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(src).read()
# the batch: the first input_dim, or the first dim of an Input layer's shape
if re.search(r'^\s*input_dim:\s*\d+', text, re.M):
    text = re.sub(r'^(\s*input_dim:\s*)\d+', lambda m: m.group(1) + str(batch), text, count=1, flags=re.M)
else:
    text = re.sub(r'(shape\s*\{\s*dim:\s*)\d+', lambda m: m.group(1) + str(batch), text, count=1)
# the top of the last InnerProduct layer
last = None
for m in re.finditer(r'layer\s*\{', text):
    depth, i = 0, m.start()
    while True:
        c = text[i]
        depth += c == '{'
        depth -= c == '}'
        i += 1
        if depth == 0 and c == '}':
            break
    body = text[m.start():i]
    if re.search(r'type:\s*"InnerProduct"', body):
        last = re.search(r'top:\s*"([^"]+)"', body).group(1)
if last is None:
    sys.exit("no InnerProduct layer to put a loss on")
text += ('\nlayer { name: "bench_label" type: "DummyData" top: "bench_label" dummy_data_param { '
         'shape { dim: %d } data_filler { type: "constant" value: 1 } } }\n'
         'layer { name: "bench_loss" type: "SoftmaxWithLoss" bottom: "%s" bottom: "bench_label" '
         'top: "bench_loss" }\n' % (batch, last))
open(out + '/published.prototxt', 'w').write(text)
open(out + '/batchstats.prototxt', 'w').write(re.sub(r'^\s*use_global_stats:\s*\w+\s*$', '', text, flags=re.M))
EOF

run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
for r in $(seq "$ROUNDS"); do
  for v in batchstats published; do
    for f in 1 0; do
      run env CT_FUSE=$f "$BUILD/cortado" time --model="$tmp/$v.prototxt" --iterations="$ITERS" \
        > "$tmp/$v.fuse$f.round$r.log" 2>&1
    done
  done
done
grep -h "OpenBLAS core" "$tmp"/*.log | head -1 | sed 's/.*\] //'
grep -h "Steal:" "$tmp"/*.log | sed 's/.*\] /  /'

"$PY" - "$tmp" "$ROUNDS" <<'EOF'
import re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def parse(path):
    t = open(path).read()
    types = dict(re.findall(r'\] (\S+)\s+(\S+)\s+plan:', t))
    fw = {n: float(v) for n, v in re.findall(r'\]\s+(\S+)\tforward: (\S+) ms', t)}
    bw = {n: float(v) for n, v in re.findall(r'\]\s+(\S+)\tbackward: (\S+) ms', t)}
    chain = [n for n in fw if types.get(n) in ('BatchNorm', 'Scale', 'ReLU')]
    tot = lambda k: float(re.search(r'Average %s pass: (\S+) ms' % k, t).group(1))
    return {'chain fwd': sum(fw[n] for n in chain), 'chain bwd': sum(bw.get(n, 0) for n in chain),
            'forward': tot('Forward'), 'backward': tot('Backward'), 'layers': len(chain)}
for v, label in (('batchstats', 'batch statistics (training)'), ('published', 'as published')):
    runs = {f: [parse('%s/%s.fuse%d.round%d.log' % (tmp, v, f, r)) for r in range(1, rounds + 1)] for f in (1, 0)}
    print('%s: %d BatchNorm/Scale/ReLU layers' % (label, runs[1][0]['layers']))
    print('  %-22s %10s %10s %8s' % ('ms (median of rounds)', 'fused', 'unfused', 'ratio'))
    for k in ('chain fwd', 'chain bwd', 'forward', 'backward'):
        a = statistics.median(x[k] for x in runs[1])
        b = statistics.median(x[k] for x in runs[0])
        print('  %-22s %10.1f %10.1f %8.2f' % (k, a, b, b / a if a else float('nan')))
EOF
