#!/usr/bin/env bash
# The Fashion-MNIST LeNet example trains to at least 0.85 test accuracy in the demo's short run,
# through the CLI, and the snapshot it writes scores the same with `cortado test`.
set -u
: "${CORTADO:?}" "${CT_SOURCE_DIR:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ex="$CT_SOURCE_DIR/examples/fashion_mnist"
sed -e "s|^net: .*|net: \"$ex/lenet_train_test_idx.prototxt\"|" \
    -e "s|^snapshot_prefix: .*|snapshot_prefix: \"$tmp/lenet\"|" \
    "$ex/lenet_demo_solver.prototxt" > "$tmp/solver.prototxt"
iters=$(sed -n 's/^max_iter: *\([0-9]*\).*/\1/p' "$tmp/solver.prototxt")
if "$CORTADO" train --solver="$tmp/solver.prototxt" > "$tmp/log" 2>&1; then ok; else bad "train exited non-zero"; tail -5 "$tmp/log" >&2; fi
acc=$(sed -n 's/.*Test net output #[0-9]*: accuracy = \([0-9.]*\).*/\1/p' "$tmp/log" | tail -1)
echo "test accuracy after $iters iterations: ${acc:-none}"
if [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a >= 0.85) }'; then ok; else bad "accuracy ${acc:-none} < 0.85"; fi
grep -q "Iteration 100.*loss = " "$tmp/log" && ok || bad "no Caffe-style 'Iteration 100 ..., loss = ' line"
model="$tmp/lenet_iter_$iters.caffemodel"
[ -f "$model" ] && ok || bad "no final snapshot $model"
"$CORTADO" test --model="$ex/lenet_train_test_idx.prototxt" --weights="$model" --iterations=100 > "$tmp/test.log" 2>&1 \
  && ok || bad "cortado test exited non-zero"
acc2=$(sed -n 's/.*accuracy = \([0-9.]*\)$/\1/p' "$tmp/test.log" | tail -1)
if [ -n "$acc2" ] && awk -v a="$acc" -v b="$acc2" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }'; then ok
else bad "cortado test accuracy ${acc2:-none} differs from training's ${acc:-none}"; tail -3 "$tmp/test.log" >&2; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
