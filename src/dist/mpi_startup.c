/* The start-up agreement over MPI (issue 24; the records and the verdict are startup.c's).
 *
 * Point to point, not a collective: rank 0 polls for the other ranks' records until all have
 * come or CT_DIST_TIMEOUT has passed, so it knows, and can say, which ranks never reported;
 * then it sends its verdict to each. A collective would only say "not everybody came".
 * The other ranks wait for the verdict a little longer than rank 0 waits for them, so that rank
 * 0's own timeout speaks first.
 *
 * When every rank has the verdict and it is a failure, every rank returns it and prints it
 * (the CLI does), and they leave together: mpirun drops the output of processes that it ends
 * after another exits non-zero, so a rank that printed and left at once could silence the
 * others. ct_dist_mpi_exit_together holds each exit at a barrier that every rank reaches only
 * after printing. */
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "dist/cluster.h"
#include "dist/startup.h"

enum { TAG_STARTUP = 40, TAG_VERDICT = 41 }; /* below the cluster's tags (mpi_cluster.c) */

typedef struct verdict {
  int32_t status;
  char msg[sizeof(((ct_error *)0)->msg)];
} verdict;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void nap(void) {
  struct timespec ts = {0, 1000000L}; /* 1 ms: start-up is not a hot loop */
  nanosleep(&ts, NULL);
}

/* Waits for n requests until deadline; true when all completed. */
static bool wait_until(int n, MPI_Request *reqs, double deadline) {
  for (;;) {
    int done = 0;
    if (MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (now_s() > deadline) return false;
    nap();
  }
}

static ct_status root_agree(const ct_startup_rec *mine, int world, double timeout_s, bool *all_know,
                            ct_error *err) {
  ct_startup_rec *got = calloc((size_t)world, sizeof *got);
  const ct_startup_rec **recs = calloc((size_t)world, sizeof *recs);
  MPI_Request *sends = calloc((size_t)world, sizeof *sends);
  verdict *v = calloc(1, sizeof *v);
  if (!got || !recs || !sends || !v) {
    free(got), free(recs), free(sends), free(v);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  recs[0] = mine;
  int missing = world - 1;
  double deadline = now_s() + timeout_s;
  while (missing > 0 && now_s() < deadline) {
    int flag = 0, nbytes = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_STARTUP, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) break;
    if (!flag) {
      nap();
      continue;
    }
    MPI_Get_count(&st, MPI_BYTE, &nbytes);
    char *buf = malloc(nbytes > 0 ? (size_t)nbytes : 1);
    if (!buf) break;
    MPI_Recv(buf, nbytes, MPI_BYTE, st.MPI_SOURCE, TAG_STARTUP, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    int r = st.MPI_SOURCE;
    if (r > 0 && r < world && !recs[r]) {
      ct_startup_rec *g = &got[r];
      if ((size_t)nbytes == sizeof *g) memcpy(g, buf, sizeof *g);
      if ((size_t)nbytes != sizeof *g || g->magic != CT_STARTUP_MAGIC || g->size != sizeof *g) {
        /* another layout: another cortado, which is all that can be said about it */
        memset(g, 0, sizeof *g);
        g->magic = CT_STARTUP_MAGIC;
        g->size = (uint32_t)sizeof *g;
        g->rank = r;
        snprintf(g->digest.version, sizeof g->digest.version, "(another version: a %d-byte start-up record)",
                 nbytes);
      }
      recs[r] = g;
      missing--;
    }
    free(buf);
  }
  v->status = (int32_t)ct_startup_verdict(recs, world, timeout_s, v->msg, sizeof v->msg);
  int n = 0;
  for (int r = 1; r < world; r++)
    if (recs[r]) MPI_Isend(v, (int)sizeof *v, MPI_BYTE, r, TAG_VERDICT, MPI_COMM_WORLD, &sends[n++]);
  /* small messages leave at once; the wait only keeps v alive until they have */
  bool sent = wait_until(n, sends, now_s() + 10);
  *all_know = missing == 0 && sent;
  ct_status out = (ct_status)v->status;
  if (out != CT_OK) ct_fail(err, out, "%s", v->msg);
  free(got), free(recs), free(sends), free(v);
  return out;
}

ct_status ct_dist_mpi_agree(const ct_startup_rec *mine, int rank, int world, double timeout_s, bool *all_know,
                            ct_error *err) {
  *all_know = false;
  if (world <= 1) return mine->status == CT_OK ? CT_OK : ct_fail(err, (ct_status)mine->status, "%s", mine->msg);
  if (rank == 0) return root_agree(mine, world, timeout_s, all_know, err);
  verdict *v = calloc(1, sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  MPI_Request reqs[2];
  MPI_Isend((void *)mine, (int)sizeof *mine, MPI_BYTE, 0, TAG_STARTUP, MPI_COMM_WORLD, &reqs[0]);
  MPI_Irecv(v, (int)sizeof *v, MPI_BYTE, 0, TAG_VERDICT, MPI_COMM_WORLD, &reqs[1]);
  double wait_s = timeout_s + 15; /* rank 0 speaks first about the ranks it waited for */
  if (!wait_until(2, reqs, now_s() + wait_s)) {
    free(v);
    return ct_fail(err, CT_EIO, "rank %d: no word from rank 0 within %.0f s of start-up; rank 0 is stopped or stuck "
                   "(CT_DIST_TIMEOUT sets the limit)", rank, wait_s);
  }
  *all_know = true;
  ct_status out = (ct_status)v->status;
  if (out != CT_OK) ct_fail(err, out, "%s", v->msg);
  free(v);
  return out;
}

static void exit_together(void) {
  MPI_Request r;
  if (MPI_Ibarrier(MPI_COMM_WORLD, &r) != MPI_SUCCESS) return;
  if (wait_until(1, &r, now_s() + 10)) MPI_Finalize();
}

void ct_dist_mpi_exit_together(void) {
  static bool armed; /* MPI itself is once per process; so is this */
  if (!armed && atexit(exit_together) == 0) armed = true;
}

ct_status ct_dist_mpi_share_text(char **text, int rank, ct_error *err) {
  long long len = rank == 0 ? (*text ? (long long)strlen(*text) : -1) : 0;
  if (MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
    return ct_fail(err, CT_EIO, "rank %d: MPI failed while receiving rank 0's data stand-ins", rank);
  if (len < 0) return ct_fail(err, CT_ENOMEM, "rank %d: rank 0 ran out of memory describing its data layers", rank);
  if (len > 0x7fffffff) return ct_fail(err, CT_EUNSUPPORTED, "rank %d: %lld bytes of data stand-ins", rank, len);
  if (rank != 0) {
    *text = malloc((size_t)len + 1);
    if (!*text) return ct_fail(err, CT_ENOMEM, "out of memory");
    (*text)[len] = 0;
  }
  if (len && MPI_Bcast(*text, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
    return ct_fail(err, CT_EIO, "rank %d: MPI failed while receiving rank 0's data stand-ins", rank);
  return CT_OK;
}
