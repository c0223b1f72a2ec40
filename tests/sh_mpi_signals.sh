#!/usr/bin/env bash
# A signal to mpirun in every framework (issue 23). Open MPI passes SIGINT, SIGTERM and SIGHUP
# on to every rank as SIGTERM, each rank at its own iteration; the ranks that meet in
# collectives agree on it (mpi_cluster.c). For SANDBLASTER (one group over 2 processes),
# HOGWILD (2 processes; 4 groups as 2 threads in each), DOWNPOUR (2 worker processes and a
# server-only one; 4 groups as 2 threads in each of 2 processes), SIGINT to mpirun mid-run:
#   - exactly one snapshot (one .caffemodel, one .solverstate), written by rank 0;
#   - every rank exits with status 3 (stopped by a signal), none is killed or times out;
#   - the job resumes from that snapshot on the same topology and trains to max_iter.
# The same for worker groups as threads of one process (HOGWILD, SANDBLASTER), SIGINT to it.
# And SIGHUP sent to the ranks themselves (mpirun cannot forward it: it ends the job): one
# snapshot, training goes on; then SIGINT to mpirun stops it with a second one.
# mpirun's odls_base_sigkill_timeout is raised from 1 s: Open MPI SIGKILLs a rank that has not
# ended that long after its SIGTERM, and on a loaded machine the last iteration, the snapshot
# and the servers' end take more. Skipped (exit 0, says so) without mpirun.
. "$(dirname "$0")/mpi_common.sh"
MPIRUN+=(--mca odls_base_sigkill_timeout 5)
# each rank's exit status, in $tmp/<name>.rc.<rank> (the wrapper ignores the signals; the
# process group gets them, so cortado does)
cat > "$tmp/wrap.sh" <<'EOT'
#!/usr/bin/env bash
trap '' INT TERM HUP
out=$1
shift
"$@"
echo $? > "$out.rc.$OMPI_COMM_WORLD_RANK"
EOT
chmod +x "$tmp/wrap.sh"
solver() { # name, framework, extra lines
  cat > "$tmp/$1.prototxt" <<EOT
net: "$net"
base_lr: 0.01
momentum: 0.5
lr_policy: "fixed"
display: 5
max_iter: 100000
snapshot_prefix: "$tmp/$1"
random_seed: 1701
framework: $2
${3:-}
EOT
}
states() { ls "$tmp/$1"_iter_*.solverstate 2> /dev/null; }
wait_for() { # log, pattern: at most 120 s
  local t=0
  while ! grep -qs "$2" "$1" && [ $t -lt 1200 ]; do sleep 0.1; t=$((t + 1)); done
  grep -qs "$2" "$1"
}
wait_job() { # pid: at most 60 s, then kill it
  local t=0
  while kill -0 "$1" 2> /dev/null && [ $t -lt 600 ]; do sleep 0.1; t=$((t + 1)); done
  if kill -0 "$1" 2> /dev/null; then kill -9 "$1"; return 1; fi
  wait "$1" 2> /dev/null
  return 0
}
rank_pids() { # name -> the pids of its ranks (not mpirun's, not the wrappers')
  pgrep -f "^$CORTADO train --solver=$tmp/$1.prototxt"
}
check_ranks() { # name, processes, status wanted
  local r rc
  for r in $(seq 0 $(($2 - 1))); do
    rc=$(cat "$tmp/$1.rc.$r" 2> /dev/null)
    [ "$rc" = "$3" ] && ok || bad "$1: rank $r exited with status '${rc:-none: killed?}', want $3"
  done
}
sigint_run() { # name, framework, processes, extra lines
  local name=$1
  solver "$name" "$2" "${4:-}"
  "${MPIRUN[@]}" -np "$3" "$tmp/wrap.sh" "$tmp/$name" "$CORTADO" train --solver="$tmp/$name.prototxt" \
    > "$tmp/$name.log" 2>&1 &
  local mpi=$!
  wait_for "$tmp/$name.log" "Iteration 20, loss" || bad "$name: did not train"
  sleep "0.$((RANDOM % 10))"
  kill -INT "$mpi"
  wait_job "$mpi" || bad "$name: still running 60 s after SIGINT"
  check_ranks "$name" "$3" 3
  local n
  n=$(states "$name" | grep -c .)
  [ "$n" -eq 1 ] && [ "$(ls "$tmp/$name"_iter_*.caffemodel | grep -c .)" -eq 1 ] && ok ||
    bad "$name: $n snapshots after SIGINT, want 1"
  grep -q "Optimization stopped early" "$tmp/$name.log" && ok || bad "$name: no 'Optimization stopped early'"
  grep -E "timeout|stopped or stuck|does not answer|MPI failed" "$tmp/$name.log" && bad "$name: a rank failed" || ok
  [ "$n" -eq 1 ] || { tail -20 "$tmp/$name.log" >&2; return; }
  # resume on the same topology, 10 iterations on
  local state it
  state=$(states "$name")
  it=${state##*_iter_}
  it=${it%.solverstate}
  sed -e "s/^max_iter: .*/max_iter: $((it + 10))/" -e "s|^snapshot_prefix: .*|snapshot_prefix: \"$tmp/$name.res\"|" \
    "$tmp/$name.prototxt" > "$tmp/$name.res.prototxt"
  if timeout 180 "${MPIRUN[@]}" -np "$3" "$CORTADO" train --solver="$tmp/$name.res.prototxt" --snapshot="$state" \
    > "$tmp/$name.res.log" 2>&1 && [ -s "$tmp/$name.res_iter_$((it + 10)).caffemodel" ] &&
    grep -q "Resumed from $state" "$tmp/$name.res.log"; then
    ok
  else
    bad "$name: resuming from iteration $it failed"
    tail -8 "$tmp/$name.res.log" >&2
  fi
  echo "$name: stopped at iteration $it; every rank exited 3; resumed to $((it + 10))"
}
sigint_run sandblaster SANDBLASTER 2
sigint_run hogwild HOGWILD 2
sigint_run hogwild_threads HOGWILD 2 "cluster { nworker_groups: 4 nworkers_per_procs: 2 }"
sigint_run downpour DOWNPOUR 3
sigint_run downpour_threads DOWNPOUR 2 "cluster { nworker_groups: 4 nworkers_per_procs: 2 server_worker_separate: false }"

# worker groups as threads of one process (no mpirun): SIGINT to the process
local_run() { # name, framework, cluster line
  local name=$1 rc=0
  solver "$name" "$2" "$3"
  "$CORTADO" train --solver="$tmp/$name.prototxt" > "$tmp/$name.log" 2>&1 &
  local pid=$!
  wait_for "$tmp/$name.log" "Iteration 20, loss" || bad "$name: did not train"
  sleep "0.$((RANDOM % 10))"
  kill -INT "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 3 ] && ok || bad "$name: exit status $rc after SIGINT, want 3"
  local state it
  state=$(states "$name")
  [ "$(echo "$state" | grep -c .)" -eq 1 ] && ok || { bad "$name: snapshots '$state' after SIGINT, want 1"; return; }
  it=${state##*_iter_}
  it=${it%.solverstate}
  sed -e "s/^max_iter: .*/max_iter: $((it + 10))/" -e "s|^snapshot_prefix: .*|snapshot_prefix: \"$tmp/$name.res\"|" \
    "$tmp/$name.prototxt" > "$tmp/$name.res.prototxt"
  if timeout 180 "$CORTADO" train --solver="$tmp/$name.res.prototxt" --snapshot="$state" > "$tmp/$name.res.log" 2>&1 &&
    [ -s "$tmp/$name.res_iter_$((it + 10)).caffemodel" ]; then ok; else bad "$name: resuming from iteration $it failed"; fi
  echo "$name: stopped at iteration $it with exit status $rc; resumed to $((it + 10))"
}
local_run local_hogwild HOGWILD "cluster { nworkers_per_procs: 2 }"
local_run local_sandblaster SANDBLASTER "cluster { nworkers_per_group: 2 nworkers_per_procs: 2 }"

# SIGHUP to the ranks: a snapshot, and training goes on
name=hup
solver "$name" HOGWILD
"${MPIRUN[@]}" -np 2 "$tmp/wrap.sh" "$tmp/$name" "$CORTADO" train --solver="$tmp/$name.prototxt" > "$tmp/$name.log" 2>&1 &
mpi=$!
wait_for "$tmp/$name.log" "Iteration 20, loss" || bad "$name: did not train"
# shellcheck disable=SC2046
kill -HUP $(rank_pids "$name")
t=0
while [ "$(states "$name" | grep -c .)" -lt 1 ] && [ $t -lt 600 ]; do sleep 0.1; t=$((t + 1)); done
first=$(states "$name")
it=${first##*_iter_}
it=${it%.solverstate}
[ -n "$first" ] && ok || bad "$name: no snapshot after SIGHUP"
if [ -n "$first" ] && wait_for "$tmp/$name.log" "Iteration $(((it / 5 + 2) * 5)), loss"; then ok; else bad "$name: training did not go on after SIGHUP"; fi
kill -0 "$mpi" 2> /dev/null && ok || bad "$name: the job ended after SIGHUP"
kill -INT "$mpi"
wait_job "$mpi" || bad "$name: still running 60 s after SIGINT"
check_ranks "$name" 2 3
n=$(states "$name" | grep -c .)
[ "$n" -eq 2 ] && ok || bad "$name: $n snapshots after SIGHUP and SIGINT, want 2"
echo "$name: SIGHUP snapshot at iteration ${it:-none}, training went on; SIGINT: $n snapshots in all"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
