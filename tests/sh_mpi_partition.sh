#!/usr/bin/env bash
# Issue 19 across processes: a worker group of 4 spread over 2 and 4 ranks runs the
# transitions net (dim-1 layers split over the ranks, a pinned layer, bridges as MPI
# messages) with the loss and gradients of the unpartitioned net (test_partition_mpi.c).
# Skipped (exit 0, says so) without mpirun.
. "$(dirname "$0")/mpi_common.sh"
prog="$CT_BUILD_DIR/tests/test_partition_mpi"
for np in 2 4; do
  if timeout 120 "${MPIRUN[@]}" -np "$np" "$prog" > "$tmp/np$np.log" 2>&1; then ok
  else bad "$np ranks"; tail -20 "$tmp/np$np.log" >&2; fi
  grep -q "^$np ranks: loss" "$tmp/np$np.log" && ok || bad "$np ranks: no result line"
  [ "$(grep -c ' 0 failed' "$tmp/np$np.log")" = "$np" ] && ok || bad "$np ranks: not every rank passed"
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
