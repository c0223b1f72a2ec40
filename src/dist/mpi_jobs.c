/* The jobs of the one thread per process that talks MPI, and that thread (mpi_internal.h,
 * mpi_cluster.c for the design). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/mpi_internal.h"

/* ---- the worker side: the jobs (run by the one thread that talks MPI) ---- */

/* buf summed over the processes of comm */
static ct_status allreduce(mpi_ctx *c, float *buf, MPI_Comm comm, const char *what, ct_error *err) {
  int p = 1;
  MPI_Comm_size(comm, &p);
  if (p == 1) return CT_OK;
  MPI_Request r;
  int peer = -1;
  MPI_TRY(c, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)c->total, MPI_FLOAT, MPI_SUM, comm, &r), what, -1);
  CT_TRY(ct_mpi_wait_serving(c, 1, &r, &peer, comm, what, err));
  /* what a ring allreduce sends from each process */
  ct_mpi_add_stats(c, 2.0 * (double)(p - 1) / p * (double)c->total * sizeof(float), 0);
  return CT_OK;
}

/* *v replaced by its maximum over comm (issue 23: the processes' action requests). Nonblocking
 * and waited on like the gradients' allreduce, so that a stopped rank is named, not waited on
 * for ever (issue 24). */
static ct_status agree_max(mpi_ctx *c, int *v, MPI_Comm comm, const char *what, ct_error *err) {
  int p = 1;
  MPI_Comm_size(comm, &p);
  if (p == 1) return CT_OK;
  MPI_Request r;
  int peer = -1;
  MPI_TRY(c, MPI_Iallreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MAX, comm, &r), what, -1);
  return ct_mpi_wait_serving(c, 1, &r, &peer, comm, what, err);
}

static ct_status bcast(mpi_ctx *c, float *buf, MPI_Comm comm, const char *what, ct_error *err) {
  int p = 1, me = 0;
  MPI_Comm_size(comm, &p);
  MPI_Comm_rank(comm, &me);
  if (p == 1) return CT_OK;
  MPI_Request r;
  int peer = -1;
  MPI_TRY(c, MPI_Ibcast(buf, (int)c->total, MPI_FLOAT, 0, comm, &r), what, -1);
  CT_TRY(ct_mpi_wait_serving(c, 1, &r, &peer, comm, what, err));
  if (me == 0) ct_mpi_add_stats(c, (double)c->total * sizeof(float), 0);
  return CT_OK;
}

/* group g's gradient slices to the servers, fresh slices back into its parameters */
static ct_status exchange(mpi_ctx *c, lgs *g, int iter, ct_error *err) {
  int S = c->nslices, n = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_mpi_slice(c, k, &off, &len);
    int peer = ct_topology_server_proc(&c->t, k);
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Irecv(g->data + off, (int)len, MPI_FLOAT, peer, TAG_PARAMS + k, MPI_COMM_WORLD, &c->reqs[n++]),
            "asking for parameters from", peer);
  }
  double bytes = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_mpi_slice(c, k, &off, &len);
    int peer = ct_topology_server_proc(&c->t, k);
    msg_head h = {K_UPDATE, iter, k, g->group};
    memcpy(c->outbox[k], &h, sizeof h);
    memcpy(c->outbox[k] + sizeof h, g->diff + off, len * sizeof(float));
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Isend(c->outbox[k], (int)(sizeof h + len * sizeof(float)), MPI_BYTE, peer, TAG_SRV, MPI_COMM_WORLD,
                         &c->reqs[n++]),
            "sending gradients to", peer);
    if (peer != c->rank) bytes += (double)(sizeof h + len * sizeof(float)); /* not to itself */
  }
  ct_mpi_add_stats(c, bytes, 0);
  return ct_mpi_wait_serving(c, n, c->reqs, c->peers, MPI_COMM_NULL, "exchanging gradients for parameters with the servers", err);
}

/* the root before a snapshot: the servers' parameters and history into worker 0's net */
static ct_status collect(mpi_ctx *c, ct_error *err) {
  int S = c->nslices, n = 0, nsets = c->upd->nsets;
  float *data = c->lg[0].data;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_mpi_slice(c, k, &off, &len);
    int peer = ct_topology_server_proc(&c->t, k);
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Irecv(c->snapbuf + off * (size_t)(1 + nsets), (int)(len * (size_t)(1 + nsets)), MPI_FLOAT, peer,
                         TAG_SNAP + k, MPI_COMM_WORLD, &c->reqs[n++]),
            "asking for a snapshot from", peer);
  }
  for (int k = 0; k < S; k++) {
    int peer = ct_topology_server_proc(&c->t, k);
    msg_head h = {K_SNAPREQ, 0, k, c->lg[0].group};
    memcpy(c->outbox[k], &h, sizeof h);
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Isend(c->outbox[k], (int)sizeof h, MPI_BYTE, peer, TAG_SRV, MPI_COMM_WORLD, &c->reqs[n++]),
            "asking for a snapshot from", peer);
  }
  CT_TRY(ct_mpi_wait_serving(c, n, c->reqs, c->peers, MPI_COMM_NULL, "collecting the servers' parameters for a snapshot", err));
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_mpi_slice(c, k, &off, &len);
    const float *b = c->snapbuf + off * (size_t)(1 + nsets);
    memcpy(data + off, b, len * sizeof(float));
    for (int s = 0; s < nsets; s++) memcpy(c->upd->history[s] + off, b + (size_t)(s + 1) * len, len * sizeof(float));
  }
  return CT_OK;
}

static ct_status run_job(mpi_ctx *c, job *j, ct_error *err) {
  switch (j->kind) {
    case JOB_REDUCE: return allreduce(c, j->buf, j->comm, j->what, err);
    case JOB_BCAST: return bcast(c, j->buf, j->comm, j->what, err);
    case JOB_EXCHANGE: return exchange(c, j->g, j->iter, err);
    case JOB_COLLECT: return collect(c, err);
    case JOB_FINISH: return ct_mpi_finish_servers(c, err);
    case JOB_AGREE: return agree_max(c, j->ival, j->comm, j->what, err);
  }
  return ct_fail(err, CT_EINTERNAL, "job %d", (int)j->kind);
}

/* Runs a job on the thread that talks MPI and waits for it. */
ct_status ct_mpi_submit(mpi_ctx *c, job *j, ct_error *err) {
  if (!c->threaded) return run_job(c, j, err);
  j->done = false;
  j->next = NULL;
  pthread_mutex_lock(&c->mu);
  if (c->stop) {
    pthread_mutex_unlock(&c->mu);
    return ct_fail(err, CT_EIO, "rank %d: the communication thread has stopped", c->rank);
  }
  if (c->tail)
    c->tail->next = j;
  else
    c->head = j;
  c->tail = j;
  pthread_cond_signal(&c->cv_job);
  while (!j->done) pthread_cond_wait(&c->cv_done, &c->mu);
  pthread_mutex_unlock(&c->mu);
  if (j->st && err) *err = j->err;
  return j->st;
}

void *ct_mpi_comm_main(void *arg) {
  mpi_ctx *c = arg;
  int idle = 0;
  double t0 = ct_mpi_now(), next_check = t0 + 1;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    job *j = c->head;
    if (j) {
      c->head = j->next;
      if (!c->head) c->tail = NULL;
      pthread_mutex_unlock(&c->mu);
      if (c->comm_st) {
        j->st = c->comm_st;
        j->err = c->comm_err;
      } else {
        j->st = run_job(c, j, &j->err);
      }
      pthread_mutex_lock(&c->mu);
      j->done = true;
      pthread_cond_broadcast(&c->cv_done);
      idle = 0;
      continue;
    }
    if (c->stop) break;
    if (!c->nsrv || c->comm_st) { /* nothing to serve: sleep until a job comes, answering pings */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 20000000L;
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      if (pthread_cond_timedwait(&c->cv_job, &c->mu, &ts) != 0 && !c->head && !c->stop) {
        pthread_mutex_unlock(&c->mu);
        ct_mpi_answer_pings(c);
        pthread_mutex_lock(&c->mu);
      }
      continue;
    }
    pthread_mutex_unlock(&c->mu);
    bool did = false;
    ct_status st = ct_mpi_serve_one(c, &did, &c->comm_err);
    ct_mpi_answer_pings(c);
    if (!st && ct_mpi_now() > next_check) {
      next_check = ct_mpi_now() + 1;
      st = ct_mpi_check_silence(c, t0, &c->comm_err);
    }
    if (st) c->comm_st = st; /* the next job reports it */
    pthread_mutex_lock(&c->mu);
    if (did) {
      idle = 0;
    } else if (++idle >= 16 && !c->head && !c->stop) { /* back off, but wake for a job */
      long ns = idle < 64 ? 20000L : idle < 256 ? 100000L : 1000000L;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += ns;
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      pthread_cond_timedwait(&c->cv_job, &c->mu, &ts);
    }
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

void ct_mpi_stop_comm(mpi_ctx *c) {
  if (!c->comm_started) return;
  pthread_mutex_lock(&c->mu);
  c->stop = true;
  pthread_cond_broadcast(&c->cv_job);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->comm, NULL);
  c->comm_started = false;
  /* nobody runs jobs any more: fail what is left (submit refuses new ones) */
  pthread_mutex_lock(&c->mu);
  for (job *j = c->head; j; j = j->next) {
    j->st = ct_fail(&j->err, CT_EIO, "rank %d: the communication thread has stopped", c->rank);
    j->done = true;
  }
  c->head = c->tail = NULL;
  pthread_cond_broadcast(&c->cv_done);
  pthread_mutex_unlock(&c->mu);
}
