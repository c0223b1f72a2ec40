#!/usr/bin/env bash
# A process that dies ends the cluster job (issue 5): SIGKILL to a worker (SANDBLASTER, rank 1)
# and to a server (DOWNPOUR, rank 2) mid-run makes mpirun exit non-zero within 10 s with a
# message naming the rank, and the last snapshot still loads and resumes in one process.
# Skipped (exit 0, says so) without mpirun.
. "$(dirname "$0")/mpi_common.sh"
# the pid of MPI rank $2 among the descendants of process $1
rank_pid() {
  local p
  for p in $(pgrep -f "cortado train --solver=$tmp/$3.prototxt"); do
    [ "$p" = "$1" ] && continue
    if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$p"; return; fi
  done
}
kill_run() { # framework, processes, rank to kill
  local name="$1_kill$3"
  cat > "$tmp/$name.prototxt" <<EOT
net: "$net"
base_lr: 0.01
momentum: 0.9
lr_policy: "fixed"
display: 5
max_iter: 100000
snapshot: 4
snapshot_prefix: "$tmp/$name"
random_seed: 1701
framework: $1
EOT
  "${MPIRUN[@]}" -np "$2" "$CORTADO" train --solver="$tmp/$name.prototxt" > "$tmp/$name.log" 2>&1 &
  local mpi=$! t=0
  while [ ! -f "$tmp/${name}_iter_8.solverstate" ] && [ $t -lt 600 ]; do sleep 0.2; t=$((t + 1)); done
  local victim
  victim=$(rank_pid "$mpi" "$3" "$name")
  if [ -z "$victim" ]; then bad "$name: no rank $3 found"; kill "$mpi"; wait "$mpi"; return; fi
  local t0
  t0=$(date +%s.%N)
  kill -9 "$victim"
  local rc=0 waited=0
  while kill -0 "$mpi" 2> /dev/null && [ $waited -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$mpi" 2> /dev/null; then bad "$name: still running 15 s after rank $3 was killed"; kill -9 "$mpi"; fi
  wait "$mpi" || rc=$?
  local dt
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "$1: rank $3 killed, job ended after $dt s with exit status $rc"
  [ "$rc" -ne 0 ] && ok || bad "$name: exit status 0 after a rank was killed"
  awk -v d="$dt" 'BEGIN { exit !(d < 10) }' && ok || bad "$name: took $dt s to stop"
  grep -E "rank $3 .*(exited|killed|signal)|rank $3[: ].*(died|dead)" "$tmp/$name.log" && ok ||
    { bad "$name: no message naming rank $3"; tail -20 "$tmp/$name.log" >&2; }
  # the last complete snapshot resumes in one process
  local last
  last=$(ls -t "$tmp/${name}"_iter_*.solverstate | head -1)
  sed -e "s/^framework: .*//" -e "s|snapshot_prefix: .*|snapshot_prefix: \"$tmp/${name}_res\"|" \
    "$tmp/$name.prototxt" > "$tmp/${name}_res.prototxt"
  if "$CORTADO" train --solver="$tmp/${name}_res.prototxt" --snapshot="$last" --iterations=2 > "$tmp/${name}_res.log" 2>&1
  then ok; else bad "$name: the last snapshot $last does not resume"; tail -5 "$tmp/${name}_res.log" >&2; fi
}
kill_run SANDBLASTER 2 1
kill_run DOWNPOUR 3 2
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
