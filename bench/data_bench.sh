#!/usr/bin/env bash
# Images per second of the data path alone (a net holding only the data layer, timed by
# `cortado time`), with the prefetch thread off (prefetch: 0) and on (prefetch: 4), for:
#   idx      Fashion-MNIST t10k IDX (gzipped, in memory)     1x28x28, scale
#   lmdb     the same converted to an LMDB of raw Datums     1x28x28, scale
#   lmdb-aug the same with crop_size 24 + mirror (TRAIN)     1x24x24
#   jpeg     2000 colour 96x96 JPEGs, encoded in an LMDB     3x80x80 crop + mirror + mean
# "data wait" is the time the layer's forward waited for a batch; with prefetch off it is the
# whole time spent reading, decoding and transforming. A last pair adds a LeNet-sized compute
# step after the data layer to show the overlap: with prefetch the data cost hides behind it.
#
#   bench/data_bench.sh [build-dir]      (default: build; needs /usr/bin/python3 with PIL for jpeg)
set -eu
BUILD=${1:-build}
CORTADO=${CORTADO:-$BUILD/cortado}
ITER=${ITER:-200}
FM=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$CORTADO" convert --images=$FM/t10k-images-idx3-ubyte.gz --labels=$FM/t10k-labels-idx1-ubyte.gz \
  --db="$tmp/fm_lmdb" 2>/dev/null
have_jpeg=0
if /usr/bin/python3 -c 'import PIL' 2>/dev/null; then
  /usr/bin/python3 - "$tmp" <<'PY'
import os, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
os.mkdir(os.path.join(d, "img"))
rng = np.random.default_rng(0)
base = np.add.outer(np.arange(96), np.arange(96))[:, :, None] * np.array([1, 2, 3])
with open(os.path.join(d, "list.txt"), "w") as f:
    for i in range(2000):
        a = ((base + i * 7 + rng.integers(0, 30, size=(96, 96, 3))) % 256).astype(np.uint8)
        Image.fromarray(a, "RGB").save(os.path.join(d, "img", "%d.jpg" % i), quality=90)
        f.write("img/%d.jpg %d\n" % (i, i % 10))
PY
  "$CORTADO" convert --list="$tmp/list.txt" --root="$tmp/" --encoded --db="$tmp/jpeg_lmdb" 2>/dev/null
  have_jpeg=1
fi

net() { # name, batch, prefetch, layer text (with PREFETCH), extra layers
  printf 'name: "%s"\n%s\n%s\n' "$1" "${4//PREFETCH/$3}" "${5:-}" > "$tmp/net.prototxt"
}
run() { # label, batch, prefetch, layer, extra
  net "$1" "$2" "$3" "$4" "${5:-}"
  local log fwd wait
  log=$("$CORTADO" time --model="$tmp/net.prototxt" --iterations="$ITER" 2>&1) || { echo "$log" | tail -3; exit 1; }
  fwd=$(echo "$log" | sed -n 's/.*Average Forward pass: \([0-9.e+-]*\) ms.*/\1/p')
  wait=$(echo "$log" | sed -n 's/.*data wait: \([0-9.e+-]*\) ms.*/\1/p' | head -1)
  awk -v l="$1" -v p="$3" -v b="$2" -v f="$fwd" -v w="$wait" \
    'BEGIN { printf "%-18s prefetch %d  %10.0f images/s  forward %8.3f ms  data wait %8.3f ms\n", l, p, b * 1000 / f, f, w }'
}

IDX="layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 }
  idx_data_param { images: '$FM/t10k-images-idx3-ubyte.gz' labels: '$FM/t10k-labels-idx1-ubyte.gz' batch_size: 64 }
  data_param { prefetch: PREFETCH } }"
LMDB="layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 }
  data_param { source: '$tmp/fm_lmdb' backend: LMDB batch_size: 64 prefetch: PREFETCH } }"
AUG="layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 crop_size: 24 mirror: true }
  data_param { source: '$tmp/fm_lmdb' backend: LMDB batch_size: 64 prefetch: PREFETCH } }"
JPEG="layer { name: 'd' type: 'Data' top: 'data' top: 'label'
  transform_param { crop_size: 80 mirror: true mean_value: [104, 117, 123] }
  data_param { source: '$tmp/jpeg_lmdb' backend: LMDB batch_size: 32 prefetch: PREFETCH } }"
COMPUTE="layer { name: 'c1' type: 'Convolution' bottom: 'data' top: 'c1' convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: 'xavier' } } }
layer { name: 'p1' type: 'Pooling' bottom: 'c1' top: 'p1' pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: 'c2' type: 'Convolution' bottom: 'p1' top: 'c2' convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: 'xavier' } } }"

echo "data path alone, $ITER batches after one warm-up (cortado time):"
for p in 0 4; do run idx 64 $p "$IDX"; done
for p in 0 4; do run lmdb 64 $p "$LMDB"; done
for p in 0 4; do run lmdb-aug 64 $p "$AUG"; done
if [ $have_jpeg = 1 ]; then for p in 0 4; do run jpeg 32 $p "$JPEG"; done; fi
if [ $have_jpeg = 1 ]; then
  echo "with a compute step after the data layer (jpeg + 2 convolutions), forward includes compute:"
  for p in 0 4; do run jpeg+compute 32 $p "$JPEG" "$COMPUTE"; done
fi
