#!/usr/bin/env bash
# Memory planning on the zoo nets: `cortado time` with planning off (CT_MEMPLAN=0) and on, side
# by side in one run, on the deploy prototxt as published (an Input layer, no loss: Caffe's time
# runs forward only, so does ours) and with force_backward: true (every layer runs backward, as
# in training). Prints the planned bytes, peak RSS and pass times of each, and the RSS ratio.
# Usage: bench/memplan_zoo.sh [iterations] (default 1; one untimed warm-up pass comes first).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cortado=${CORTADO:-$here/build/cortado}
zoo=${ZOO:-$here/../shared/zoo}
iters=${1:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for spec in ResNet-50-deploy:16 mobilenet_v2_deploy:32 DenseNet_121:16; do
  net=${spec%%:*}
  batch=${spec##*:}
  # the batch: the first input_dim (or shape dim) of the file
  /usr/bin/python3 - "$zoo/$net.prototxt" "$batch" "$tmp/$net.prototxt" "$tmp/${net}_fb.prototxt" <<'PY'
import re, sys
src, batch, out, out_fb = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = open(src).read()
s = re.sub(r"input_dim:\s*\d+", "input_dim: %d" % batch, s, count=1) if re.search(r"input_dim:", s) \
    else re.sub(r"dim:\s*\d+", "dim: %d" % batch, s, count=1)
open(out, "w").write(s)
open(out_fb, "w").write("force_backward: true\n" + s)
PY
  for variant in "" _fb; do
    rss_off=0
    for plan in 0 1; do
      log=$tmp/log
      if [ $plan = 0 ]; then env CT_MEMPLAN=0 "$cortado" time --model="$tmp/$net$variant.prototxt" --iterations="$iters" >"$log" 2>&1
      else "$cortado" time --model="$tmp/$net$variant.prototxt" --iterations="$iters" >"$log" 2>&1; fi
      core=$(grep -o "OpenBLAS core: [A-Za-z0-9]*" "$log" | head -1 || true)
      rss=$(sed -n 's/.*Peak RSS: \([0-9.]*\) MB.*/\1/p' "$log")
      fwd=$(sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p' "$log")
      bwd=$(sed -n 's/.*Average Backward pass: \([0-9.]*\) ms.*/\1/p' "$log")
      planline=$(sed -n 's/.*\(Memory plan: .*\)/\1/p' "$log")
      echo "$net b$batch ${variant:+force_backward }memplan=$plan: peak RSS $rss MB, forward $fwd ms, backward $bwd ms"
      echo "    $planline"
      [ $plan = 0 ] && rss_off=$rss
      [ $plan = 1 ] && echo "    peak RSS planned/unplanned: $(/usr/bin/python3 -c "print('%.2f' % ($rss / $rss_off))")"
    done
  done
  echo "    ($core)"
done
