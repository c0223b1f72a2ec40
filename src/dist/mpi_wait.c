/* Waiting on MPI requests while serving this process's servers, with a timeout that names the
 * rank waited on (mpi_internal.h).
 *
 * A collective that never completes does not say who is missing. So a rank that times out in
 * one asks every other rank of the communicator whether it is alive (a ping on TAG_PING), gives
 * them a few seconds to answer, and names those that did not: a stopped (SIGSTOP) or stuck
 * rank answers nothing, while the live ones are polling, in the same collective or elsewhere,
 * and every polling loop of the backend answers pings (ct_mpi_answer_pings). */
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

void ct_mpi_answer_pings_on(MPI_Comm comm) {
  /* the answer's contents are never read: one constant serves every answer in flight */
  static const int pong = 1;
  for (;;) {
    int flag = 0, nonce = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_PING, comm, &flag, &st) != MPI_SUCCESS || !flag) return;
    MPI_Recv(&nonce, 1, MPI_INT, st.MPI_SOURCE, TAG_PING, comm, MPI_STATUS_IGNORE);
    MPI_Request r;
    if (MPI_Isend(&pong, 1, MPI_INT, st.MPI_SOURCE, TAG_PONG, comm, &r) == MPI_SUCCESS) MPI_Request_free(&r);
  }
}

void ct_mpi_answer_pings(mpi_ctx *c) {
  (void)c;
  ct_mpi_answer_pings_on(MPI_COMM_WORLD);
}

int ct_mpi_silent(MPI_Comm comm, const int *w, int size, double grace_s, void (*serve)(void *), void *ctx, char *buf,
                  size_t n) {
  buf[0] = 0;
  int self = -1;
  MPI_Comm_rank(comm, &self);
  int *got = calloc((size_t)size + 1, sizeof(int));
  MPI_Request *reqs = malloc(sizeof(MPI_Request) * 2 * ((size_t)size + 1));
  if (!got || !reqs) {
    free(got), free(reqs);
    return -1;
  }
  static const int nonce = 1; /* one buffer for every ping in flight, whatever its fate */
  for (int i = 0; i < size; i++) {
    reqs[2 * i] = reqs[2 * i + 1] = MPI_REQUEST_NULL;
    if (w[i] == self || w[i] == MPI_UNDEFINED) continue;
    MPI_Irecv(&got[i], 1, MPI_INT, w[i], TAG_PONG, comm, &reqs[2 * i]);
    MPI_Isend(&nonce, 1, MPI_INT, w[i], TAG_PING, comm, &reqs[2 * i + 1]);
  }
  double end = ct_mpi_now() + grace_s;
  int idle = 0, silent = 0;
  for (;;) {
    silent = 0;
    for (int i = 0; i < size; i++) {
      int done = 1;
      if (reqs[2 * i] != MPI_REQUEST_NULL) MPI_Test(&reqs[2 * i], &done, MPI_STATUS_IGNORE);
      silent += !done;
    }
    if (!silent || ct_mpi_now() > end) break;
    ct_mpi_answer_pings_on(comm); /* the others are asking too */
    if (serve) serve(ctx);
    ct_mpi_backoff(idle++);
  }
  size_t len = 0;
  int k = 0;
  for (int i = 0; i < size; i++) {
    if (reqs[2 * i] != MPI_REQUEST_NULL) { /* no answer: rank w[i] */
      MPI_Cancel(&reqs[2 * i]);
      MPI_Request_free(&reqs[2 * i]);
      const char *sep = k == 0 ? (silent > 1 ? "ranks " : "rank ") : k == silent - 1 ? " and " : ", ";
      if (len < n) len += (size_t)snprintf(buf + len, n - len, "%s%d", sep, w[i]);
      k++;
    }
    if (reqs[2 * i + 1] != MPI_REQUEST_NULL) MPI_Request_free(&reqs[2 * i + 1]); /* a ping nobody took */
  }
  free(got), free(reqs);
  return silent;
}

int ct_mpi_members(MPI_Comm comm, MPI_Comm in, int **out) {
  *out = NULL;
  int size = 0;
  if (comm == MPI_COMM_NULL || MPI_Comm_size(comm, &size) != MPI_SUCCESS || size < 1) return 0;
  int *r = malloc(sizeof(int) * (size_t)size), *w = malloc(sizeof(int) * (size_t)size);
  MPI_Group g, world;
  if (!r || !w || MPI_Comm_group(comm, &g) != MPI_SUCCESS) {
    free(r), free(w);
    return 0;
  }
  for (int i = 0; i < size; i++) r[i] = i;
  int rc = MPI_Comm_group(in, &world);
  if (rc == MPI_SUCCESS) {
    rc = MPI_Group_translate_ranks(g, size, r, world, w);
    MPI_Group_free(&world);
  }
  MPI_Group_free(&g);
  free(r);
  if (rc != MPI_SUCCESS) {
    free(w);
    return 0;
  }
  *out = w;
  return size;
}

static void serve_servers(void *ctx) {
  mpi_ctx *c = ctx;
  bool did = false;
  ct_error e;
  if (c->nsrv) ct_mpi_serve_one(c, &did, &e);
}

/* Of the `size` ranks w[] (world ranks), those that do not answer a ping (ct_mpi_silent). */
static int silent_of(mpi_ctx *c, const int *w, int size, double grace_s, char *buf, size_t n) {
  const int silent = ct_mpi_silent(MPI_COMM_WORLD, w, size, grace_s, serve_servers, c, buf, n);
  return silent < 0 ? 0 : silent; /* no memory to ask: as if all answered */
}

/* The ranks of comm that do not answer a ping (silent_of). */
static int silent_ranks(mpi_ctx *c, MPI_Comm comm, double grace_s, char *buf, size_t n) {
  buf[0] = 0;
  int *w = NULL;
  const int size = ct_mpi_members(comm, MPI_COMM_WORLD, &w);
  int silent = size >= 2 ? silent_of(c, w, size, grace_s, buf, n) : 0;
  free(w);
  return silent;
}

ct_status ct_mpi_wait_serving(mpi_ctx *c, int n, MPI_Request *reqs, const int *peers, MPI_Comm comm,
                              const char *what, ct_error *err) {
  double t0 = ct_mpi_now();
  int idle = 0;
  for (;;) {
    int flag = 0;
    MPI_TRY(c, MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE), what, n == 1 ? peers[0] : -1);
    if (flag) break;
    bool did = false;
    if (c->nsrv) CT_TRY(ct_mpi_serve_one(c, &did, err));
    ct_mpi_answer_pings(c);
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
      char who[256];
      double grace = c->timeout_s < 3 ? c->timeout_s : 3;
      /* a peer that answers a ping is alive, only held up: a server answering a stopped worker,
       * which names that worker itself (mpi_server.c) */
      if (peer >= 0 && !silent_of(c, &peer, 1, grace, who, sizeof who))
        return ct_fail(err, CT_EIO, "rank %d: no answer from rank %d for %.0f s while %s, although rank %d is alive: it "
                       "waits on another rank (CT_DIST_TIMEOUT sets the limit)", c->rank, peer, dt, what, peer);
      if (peer >= 0)
        return ct_fail(err, CT_EIO, "rank %d: no answer from rank %d for %.0f s while %s; rank %d is stopped or stuck "
                       "(CT_DIST_TIMEOUT sets the limit)", c->rank, peer, dt, what, peer);
      /* a collective: ask who is alive; a live rank answers within milliseconds of polling */
      int silent = silent_ranks(c, comm, grace, who, sizeof who);
      if (silent)
        return ct_fail(err, CT_EIO, "rank %d: %s did not complete within %.0f s; %s %s not answer: stopped or stuck "
                       "(CT_DIST_TIMEOUT sets the limit)", c->rank, what, dt, who, silent > 1 ? "do" : "does");
      return ct_fail(err, CT_EIO, "rank %d: %s did not complete within %.0f s, although every rank of it answers: "
                     "one is much slower than the others (CT_DIST_TIMEOUT sets the limit)", c->rank, what, dt);
    }
  }
  ct_mpi_add_stats(c, 0, ct_mpi_now() - t0);
  return CT_OK;
}
