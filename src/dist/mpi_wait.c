/* Waiting on MPI requests while serving this process's servers, with a timeout that names the
 * rank waited on (mpi_internal.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/mpi_internal.h"

double ct_mpi_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void ct_mpi_add_stats(mpi_ctx *c, double bytes, double wait_s) {
  pthread_mutex_lock(&c->stats_mu);
  c->bytes += bytes;
  c->wait_s += wait_s;
  pthread_mutex_unlock(&c->stats_mu);
}

ct_status ct_mpi_fail(mpi_ctx *c, ct_error *err, int rc, const char *what, int peer) {
  char es[MPI_MAX_ERROR_STRING] = "";
  int n = 0;
  MPI_Error_string(rc, es, &n);
  if (peer >= 0)
    return ct_fail(err, CT_EIO, "rank %d: MPI failed while %s rank %d: %s (has rank %d died?)", c->rank, what, peer,
                   es, peer);
  return ct_fail(err, CT_EIO, "rank %d: MPI failed while %s: %s", c->rank, what, es);
}

void ct_mpi_backoff(int idle) {
  if (idle < 16) return;
  long ns = idle < 64 ? 20000L : idle < 256 ? 100000L : 1000000L;
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

ct_status ct_mpi_aborted(mpi_ctx *c, const char *what, ct_error *err) {
  return ct_fail(err, CT_EIO, "rank %d: stopped while %s (another worker failed)", c->rank, what);
}

/* Completes n requests, serving this process's servers meanwhile. peers[i] names the rank of
 * request i (-1: a collective of the group). */
ct_status ct_mpi_wait_serving(mpi_ctx *c, int n, MPI_Request *reqs, const int *peers, const char *what,
                              ct_error *err) {
  double t0 = ct_mpi_now();
  int idle = 0;
  for (;;) {
    int flag = 0;
    MPI_TRY(c, MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE), what, n == 1 ? peers[0] : -1);
    if (flag) break;
    bool did = false;
    if (c->nsrv) CT_TRY(ct_mpi_serve_one(c, &did, err));
    if (did)
      idle = 0;
    else
      ct_mpi_backoff(idle++);
    if (atomic_load(&c->abort)) return ct_mpi_aborted(c, what, err);
    double dt = ct_mpi_now() - t0;
    if (dt > c->timeout_s) {
      int peer = -1;
      for (int i = 0; i < n && peer < 0; i++) {
        int done = 0;
        if (reqs[i] != MPI_REQUEST_NULL && MPI_Request_get_status(reqs[i], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS &&
            !done)
          peer = peers[i];
      }
      if (peer >= 0)
        return ct_fail(err, CT_EIO, "rank %d: no answer from rank %d for %.0f s while %s; rank %d is dead or stuck "
                       "(CT_DIST_TIMEOUT sets the limit)", c->rank, peer, dt, what, peer);
      return ct_fail(err, CT_EIO, "rank %d: the worker group did not complete %s within %.0f s; a rank is dead or "
                     "stuck (CT_DIST_TIMEOUT sets the limit)", c->rank, what, dt);
    }
  }
  ct_mpi_add_stats(c, 0, ct_mpi_now() - t0);
  return CT_OK;
}
