/* A collective of a partitioned net's worker group over 3 ranks that one rank never joins
 * (sh_mpi_stuck.sh runs it under mpirun -np 3 with a short CT_DIST_TIMEOUT): rank 2 stops itself
 * (SIGSTOP) while ranks 0 and 1 sum over the group (ct_dist_part_sum, an allreduce). Both must
 * give up with an error that names rank 2 as the one that does not answer, and says how many
 * ranks the collective spans; a message that blames a live rank, or none, fails. Each live rank
 * prints "stuck check: rank R: ok: <message>" or "... FAILED: ..."; rank 0 then kills rank 2,
 * so the job ends (mpirun reports the killed rank; the script reads the lines). Run outside
 * mpirun, or on other than 3 ranks, it says so and passes. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"
#include "partition_nets.h"
#ifdef CT_HAVE_MPI
#include "dist/cluster.h"
#include "dist/part.h"
#endif

int main(void) {
#ifndef CT_HAVE_MPI
  printf("SKIPPED: built without MPI\n");
  return 0;
#else
  int world = 1, rank = 0;
  if (!ct_dist_launched(&world, &rank) || world != 3) {
    printf("SKIPPED: run by sh_mpi_stuck.sh under mpirun with 3 processes\n");
    return 0;
  }
  char text[8192];
  transitions_net(text, sizeof text, 4, true);
  ct_error err;
  memset(&err, 0, sizeof err);
  ct_net *net = NULL;
  ct_dist_part *dp = NULL;
  if (ct_net_create_from_text(text, "p.prototxt", NULL, CT_TRAIN, &net, &err) ||
      ct_dist_part_create(net, &dp, &err)) {
    printf("stuck check: rank %d: FAILED: set-up: %s\n", rank, err.msg);
    return 1;
  }
  /* every rank's pid, so that rank 0 can end the stopped one (pids fit a float exactly) */
  float pids[3] = {0, 0, 0};
  pids[rank] = (float)getpid();
  if (ct_dist_part_sum(dp, pids, 3, &err)) {
    printf("stuck check: rank %d: FAILED: the first sum: %s\n", rank, err.msg);
    return 1;
  }
  fflush(stdout);
  if (rank == 2) {
    raise(SIGSTOP); /* never joins the next sum; rank 0 kills it */
    return 1;
  }
  float one = 1;
  ct_status st = ct_dist_part_sum(dp, &one, 1, &err);
  const bool named = st && strstr(err.msg, "rank 2 does not answer") && strstr(err.msg, "a collective over 3 ranks") &&
                     !strstr(err.msg, "rank 0 does") && !strstr(err.msg, "rank 1 does");
  printf("stuck check: rank %d: %s: %s\n", rank, named ? "ok" : "FAILED", st ? err.msg : "the sum completed");
  fflush(stdout);
  /* rank 1 stays (answering nothing, but rank 0's check has long ended by then) */
  sleep(rank == 0 ? 1 : 3);
  if (rank == 0) kill((pid_t)pids[2], SIGKILL);
  _exit(named ? 0 : 1);
#endif
}
