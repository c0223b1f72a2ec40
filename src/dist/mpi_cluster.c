/* The MPI backend of the cluster: worker groups, server groups and the four frameworks.
 *
 * Every process builds the whole solver (nets, update rule), so that any of them can take any
 * role; rank 0 is worker 0 and the root. A process hosts nworkers_per_procs workers (local.h):
 * worker 0 is the solver's loop, the others are threads with nets of their own; the members of
 * a worker group inside one process add their gradients in member order before the group's
 * update, and get its fresh parameters after it. Per update of a worker group:
 *  - a group spread over several processes (nworkers_per_group > nworkers_per_procs) adds the
 *    processes' sums with an allreduce; the sum over the J members divided by J is the gradient
 *    of the group's batch (each member ran a 1/J share of it: dim-0 partitioning);
 *  - ALLREDUCE: every process then applies the update itself (the group is the whole job);
 *  - SERVERS (Sandblaster with one worker group, Downpour with several): the group's leader (the
 *    process with member 0) clips the whole gradient by its global norm (clip_gradients, with the
 *    solver's own rule), sends slice k to server k (Update), which applies the solver's rule to
 *    its slice with its own history and replies with the fresh slice (Get); the leader
 *    broadcasts the fresh parameters to the group's other processes. Groups do this
 *    independently: asynchronous;
 *  - HOGWILD: every group updates its own copy; every sync_freq updates the groups exchange what
 *    they changed since the last sync and every copy takes the sum (SINGA's server-group sync):
 *    the groups of a process meet (ct_local_barrier), add their changes, and one allreduce adds
 *    the processes' sums.
 *
 * Who talks MPI: one thread per process. With one worker in the process it is the solver's own
 * thread, inside the update, as always. With several, a communication thread (SINGA's stub)
 * makes every MPI call after the start, so MPI must provide MPI_THREAD_SERIALIZED (never
 * MULTIPLE): the group leaders hand it jobs (allreduce, broadcast, the exchange with the
 * servers, the snapshot fetch, the end of training) and wait; it runs them one at a time, and
 * between jobs it serves the servers the process hosts, so they answer while its workers
 * compute. A process's jobs run one after the other, each complete before the next starts, so
 * replies from the servers never mix; collectives only run where a process hosts one worker
 * group (its jobs come in iteration order) or, for Hogwild's sync, once for all its groups, so
 * every process issues them in the same order.
 * Waits are polling loops that also serve requests for the servers hosted in the same process
 * and give up after CT_DIST_TIMEOUT seconds (default 300) with a message naming the rank waited
 * on. A process that dies is reported by mpirun, which ends the job. */
#include <mpi.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "dist/cluster.h"
#include "dist/local.h"

enum { TAG_SRV = 100, TAG_PARAMS = 1000, TAG_SNAP = 12000 };
enum { K_UPDATE = 1, K_DONE = 2, K_SNAPREQ = 3 };
#define MAX_SLICES 10000

static int g_thread_level = MPI_THREAD_SINGLE; /* what MPI_Init_thread provided */

typedef struct msg_head {
  int32_t kind, iter, slice, group;
} msg_head;

typedef struct server {
  int slice;
  size_t off, len;
  float *data, *grad, *reply; /* reply: data + history sets, for snapshots */
  ct_update_param *params;
  ct_update_ctx upd;
  bool upd_ok;
} server;

/* a worker group as this process sees it (its local leader's net) */
typedef struct lgs {
  int group;
  bool leads; /* member 0 is here: it talks to the servers */
  ct_net *net;
  float *data, *diff;
  ct_update_ctx *upd; /* ALLREDUCE, HOGWILD: the rule over this copy (group 0: the solver's) */
  ct_update_ctx own;
  bool own_ok;
} lgs;

typedef enum job_kind { JOB_REDUCE, JOB_BCAST, JOB_EXCHANGE, JOB_COLLECT, JOB_FINISH } job_kind;

typedef struct job {
  job_kind kind;
  float *buf;
  MPI_Comm comm;
  const char *what;
  lgs *g;
  int iter;
  ct_status st;
  ct_error err;
  bool done;
  struct job *next;
} job;

typedef struct mpi_ctx {
  ct_topology t;
  const Caffe__SolverParameter *sp;
  Caffe__SolverParameter sp_srv; /* the servers' copy: no clip_gradients (the leader clips the whole) */
  int rank, world;
  MPI_Comm group_comm, workers_comm;
  int nsrv;
  server *srv;
  int ndone, expect_done;
  char *inbox;
  size_t inbox_cap;
  /* the workers' side */
  ct_local *local;
  int nlg;
  lgs *lg;
  ct_update_ctx *upd;     /* the solver's */
  ct_update_ctx clip_tpl; /* its layout, for clipping any group's gradient */
  size_t total;
  int nslices;
  char **outbox;
  MPI_Request *reqs;
  int *peers;
  float *snapbuf;
  float *base, *syncbuf; /* HOGWILD: the parameters at the last sync; the changes */
  double timeout_s;
  /* the communication thread (several workers in this process) */
  bool threaded, comm_started;
  pthread_t comm;
  pthread_mutex_t mu;
  pthread_cond_t cv_job, cv_done;
  job *head, *tail;
  bool stop;
  atomic_int abort;
  ct_status comm_st; /* a failure while serving between jobs */
  ct_error comm_err;
  /* what the log shows */
  pthread_mutex_t stats_mu;
  double bytes, wait_s;
  int updates;
} mpi_ctx;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void add_stats(mpi_ctx *c, double bytes, double wait_s) {
  pthread_mutex_lock(&c->stats_mu);
  c->bytes += bytes;
  c->wait_s += wait_s;
  pthread_mutex_unlock(&c->stats_mu);
}

static ct_status mpi_fail(mpi_ctx *c, ct_error *err, int rc, const char *what, int peer) {
  char es[MPI_MAX_ERROR_STRING] = "";
  int n = 0;
  MPI_Error_string(rc, es, &n);
  if (peer >= 0)
    return ct_fail(err, CT_EIO, "rank %d: MPI failed while %s rank %d: %s (has rank %d died?)", c->rank, what, peer,
                   es, peer);
  return ct_fail(err, CT_EIO, "rank %d: MPI failed while %s: %s", c->rank, what, es);
}

#define MPI_TRY(c, call, what, peer)                                   \
  do {                                                                 \
    int rc_ = (call);                                                  \
    if (rc_ != MPI_SUCCESS) return mpi_fail((c), err, rc_, what, peer); \
  } while (0)

ct_status ct_dist_mpi_init(int *world, int *rank, ct_error *err) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    /* SERIALIZED: a process with several workers makes its MPI calls on a thread of its own */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &g_thread_level) != MPI_SUCCESS)
      return ct_fail(err, CT_EIO, "MPI_Init failed");
  } else {
    MPI_Query_thread(&g_thread_level);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_size(MPI_COMM_WORLD, world);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  return CT_OK;
}

void ct_dist_mpi_finalize(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

static void backoff(int idle) {
  if (idle < 16) return;
  long ns = idle < 64 ? 20000L : idle < 256 ? 100000L : 1000000L;
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

/* ---- the server side ---- */

static server *find_server(mpi_ctx *c, int slice) {
  for (int i = 0; i < c->nsrv; i++)
    if (c->srv[i].slice == slice) return &c->srv[i];
  return NULL;
}

/* Handles one request for the servers of this process, if one is waiting (*did). */
static ct_status serve_one(mpi_ctx *c, bool *did, ct_error *err) {
  int flag = 0;
  MPI_Status st;
  *did = false;
  MPI_TRY(c, MPI_Iprobe(MPI_ANY_SOURCE, TAG_SRV, MPI_COMM_WORLD, &flag, &st), "waiting for requests from", -1);
  if (!flag) return CT_OK;
  int nbytes = 0, src = st.MPI_SOURCE;
  MPI_Get_count(&st, MPI_BYTE, &nbytes);
  if (nbytes < (int)sizeof(msg_head) || (size_t)nbytes > c->inbox_cap)
    return ct_fail(err, CT_EINTERNAL, "rank %d: a request of %d bytes from rank %d", c->rank, nbytes, src);
  MPI_TRY(c, MPI_Recv(c->inbox, nbytes, MPI_BYTE, src, TAG_SRV, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receiving from",
          src);
  *did = true;
  msg_head h;
  memcpy(&h, c->inbox, sizeof h);
  if (h.kind == K_DONE) {
    c->ndone++;
    return CT_OK;
  }
  server *v = find_server(c, h.slice);
  if (!v) return ct_fail(err, CT_EINTERNAL, "rank %d: rank %d asked for slice %d, not hosted here", c->rank, src, h.slice);
  if (h.kind == K_UPDATE) {
    if ((size_t)nbytes != sizeof h + v->len * sizeof(float))
      return ct_fail(err, CT_EINTERNAL, "rank %d: an update of %d bytes for slice %d of %zu floats", c->rank, nbytes,
                     h.slice, v->len);
    memcpy(v->grad, c->inbox + sizeof h, v->len * sizeof(float));
    ct_update_apply(&v->upd, h.iter);
    MPI_TRY(c, MPI_Send(v->data, (int)v->len, MPI_FLOAT, src, TAG_PARAMS + h.slice, MPI_COMM_WORLD),
            "sending parameters to", src);
    if (src != c->rank) add_stats(c, (double)v->len * sizeof(float), 0);
  } else if (h.kind == K_SNAPREQ) {
    int nsets = v->upd.nsets;
    memcpy(v->reply, v->data, v->len * sizeof(float));
    for (int k = 0; k < nsets; k++) memcpy(v->reply + (size_t)(k + 1) * v->len, v->upd.history[k], v->len * sizeof(float));
    MPI_TRY(c, MPI_Send(v->reply, (int)(v->len * (size_t)(1 + nsets)), MPI_FLOAT, src, TAG_SNAP + h.slice, MPI_COMM_WORLD),
            "sending a snapshot to", src);
  } else {
    return ct_fail(err, CT_EINTERNAL, "rank %d: unknown request %d from rank %d", c->rank, h.kind, src);
  }
  return CT_OK;
}

static ct_status aborted(mpi_ctx *c, const char *what, ct_error *err) {
  return ct_fail(err, CT_EIO, "rank %d: stopped while %s (another worker failed)", c->rank, what);
}

/* Completes n requests, serving this process's servers meanwhile. peers[i] names the rank of
 * request i (-1: a collective of the group). */
static ct_status wait_serving(mpi_ctx *c, int n, MPI_Request *reqs, const int *peers, const char *what,
                              ct_error *err) {
  double t0 = now_s();
  int idle = 0;
  for (;;) {
    int flag = 0;
    MPI_TRY(c, MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE), what, n == 1 ? peers[0] : -1);
    if (flag) break;
    bool did = false;
    if (c->nsrv) CT_TRY(serve_one(c, &did, err));
    if (did)
      idle = 0;
    else
      backoff(idle++);
    if (atomic_load(&c->abort)) return aborted(c, what, err);
    double dt = now_s() - t0;
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
  add_stats(c, 0, now_s() - t0);
  return CT_OK;
}

static ct_status serve_until_done(mpi_ctx *c, ct_error *err) {
  int idle = 0;
  while (c->ndone < c->expect_done) {
    bool did = false;
    CT_TRY(serve_one(c, &did, err));
    if (did)
      idle = 0;
    else
      backoff(idle++);
    if (atomic_load(&c->abort)) return aborted(c, "serving", err);
  }
  return CT_OK;
}

/* ---- the worker side: the jobs (run by the one thread that talks MPI) ---- */

/* buf summed over the processes of comm */
static ct_status allreduce(mpi_ctx *c, float *buf, MPI_Comm comm, const char *what, ct_error *err) {
  int p = 1;
  MPI_Comm_size(comm, &p);
  if (p == 1) return CT_OK;
  MPI_Request r;
  int peer = -1;
  MPI_TRY(c, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)c->total, MPI_FLOAT, MPI_SUM, comm, &r), what, -1);
  CT_TRY(wait_serving(c, 1, &r, &peer, what, err));
  /* what a ring allreduce sends from each process */
  add_stats(c, 2.0 * (double)(p - 1) / p * (double)c->total * sizeof(float), 0);
  return CT_OK;
}

static ct_status bcast(mpi_ctx *c, float *buf, MPI_Comm comm, const char *what, ct_error *err) {
  int p = 1, me = 0;
  MPI_Comm_size(comm, &p);
  MPI_Comm_rank(comm, &me);
  if (p == 1) return CT_OK;
  MPI_Request r;
  int peer = -1;
  MPI_TRY(c, MPI_Ibcast(buf, (int)c->total, MPI_FLOAT, 0, comm, &r), what, -1);
  CT_TRY(wait_serving(c, 1, &r, &peer, what, err));
  if (me == 0) add_stats(c, (double)c->total * sizeof(float), 0);
  return CT_OK;
}

/* group g's gradient slices to the servers, fresh slices back into its parameters */
static ct_status exchange(mpi_ctx *c, lgs *g, int iter, ct_error *err) {
  int S = c->nslices, n = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
    int peer = ct_topology_server_proc(&c->t, k);
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Irecv(g->data + off, (int)len, MPI_FLOAT, peer, TAG_PARAMS + k, MPI_COMM_WORLD, &c->reqs[n++]),
            "asking for parameters from", peer);
  }
  double bytes = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
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
  add_stats(c, bytes, 0);
  return wait_serving(c, n, c->reqs, c->peers, "exchanging gradients for parameters with the servers", err);
}

/* the root before a snapshot: the servers' parameters and history into worker 0's net */
static ct_status collect(mpi_ctx *c, ct_error *err) {
  int S = c->nslices, n = 0, nsets = c->upd->nsets;
  float *data = c->lg[0].data;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
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
  CT_TRY(wait_serving(c, n, c->reqs, c->peers, "collecting the servers' parameters for a snapshot", err));
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
    const float *b = c->snapbuf + off * (size_t)(1 + nsets);
    memcpy(data + off, b, len * sizeof(float));
    for (int s = 0; s < nsets; s++) memcpy(c->upd->history[s] + off, b + (size_t)(s + 1) * len, len * sizeof(float));
  }
  return CT_OK;
}

/* the end of training here: every group led from here tells every server process, which then
 * serve until all groups have */
static ct_status finish_servers(mpi_ctx *c, ct_error *err) {
  for (int i = 0; i < c->nlg; i++) {
    if (!c->lg[i].leads) continue;
    int n = 0, last = -1;
    msg_head h = {K_DONE, 0, 0, c->lg[i].group};
    for (int k = 0; k < c->nslices; k++) {
      int peer = ct_topology_server_proc(&c->t, k);
      if (peer == last) continue;
      last = peer;
      memcpy(c->outbox[k], &h, sizeof h);
      c->peers[n] = peer;
      MPI_TRY(c, MPI_Isend(c->outbox[k], (int)sizeof h, MPI_BYTE, peer, TAG_SRV, MPI_COMM_WORLD, &c->reqs[n++]),
              "telling it training is done:", peer);
    }
    CT_TRY(wait_serving(c, n, c->reqs, c->peers, "telling the servers training is done", err));
  }
  if (c->nsrv) CT_TRY(serve_until_done(c, err));
  return CT_OK;
}

static ct_status run_job(mpi_ctx *c, job *j, ct_error *err) {
  switch (j->kind) {
    case JOB_REDUCE: return allreduce(c, j->buf, j->comm, j->what, err);
    case JOB_BCAST: return bcast(c, j->buf, j->comm, j->what, err);
    case JOB_EXCHANGE: return exchange(c, j->g, j->iter, err);
    case JOB_COLLECT: return collect(c, err);
    case JOB_FINISH: return finish_servers(c, err);
  }
  return ct_fail(err, CT_EINTERNAL, "job %d", (int)j->kind);
}

/* Runs a job on the thread that talks MPI and waits for it. */
static ct_status submit(mpi_ctx *c, job *j, ct_error *err) {
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

static void *comm_main(void *arg) {
  mpi_ctx *c = arg;
  int idle = 0;
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
    if (!c->nsrv || c->comm_st) { /* nothing to serve: sleep until a job comes */
      pthread_cond_wait(&c->cv_job, &c->mu);
      continue;
    }
    pthread_mutex_unlock(&c->mu);
    bool did = false;
    ct_status st = serve_one(c, &did, &c->comm_err);
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

static void stop_comm(mpi_ctx *c) {
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

/* ---- the update of one worker group, on its local leader's thread ---- */

static ct_status hogwild_sync(void *arg, ct_error *err) {
  mpi_ctx *c = arg;
  size_t n = c->total;
  memset(c->syncbuf, 0, n * sizeof(float));
  for (int i = 0; i < c->nlg; i++) { /* this process's groups, in order */
    const float *d = c->lg[i].data;
    for (size_t e = 0; e < n; e++) c->syncbuf[e] += d[e] - c->base[e];
  }
  job j = {.kind = JOB_REDUCE, .buf = c->syncbuf, .comm = c->workers_comm, .what = "summing the worker groups' updates"};
  CT_TRY(submit(c, &j, err));
  /* every process of a group spread over several sent the group's change */
  int R = ct_topology_ranks_per_group(&c->t);
  if (R > 1)
    for (size_t e = 0; e < n; e++) c->syncbuf[e] *= 1.0f / (float)R;
  for (size_t e = 0; e < n; e++) c->base[e] += c->syncbuf[e];
  for (int i = 0; i < c->nlg; i++) memcpy(c->lg[i].data, c->base, n * sizeof(float));
  return CT_OK;
}

static ct_status group_update(void *ctx, int lgi, int iter, float *rate, ct_error *err) {
  mpi_ctx *c = ctx;
  lgs *g = &c->lg[lgi];
  int J = c->t.nworkers_per_group;
  if (ct_topology_ranks_per_group(&c->t) > 1) {
    job j = {.kind = JOB_REDUCE, .buf = g->diff, .comm = c->group_comm, .what = "adding gradients in the worker group"};
    CT_TRY(submit(c, &j, err));
  }
  if (J > 1) {
    const float scale = 1.0f / (float)J;
    for (size_t i = 0; i < c->total; i++) g->diff[i] *= scale;
  }
  switch (c->t.mode) {
    case CT_DIST_ALLREDUCE: *rate = ct_update_apply(g->upd, iter); break;
    case CT_DIST_HOGWILD:
      *rate = ct_update_apply(g->upd, iter);
      if (c->t.nworker_groups > 1 && (iter + 1) % c->t.sync_freq == 0)
        CT_TRY(ct_local_barrier(c->local, hogwild_sync, c, err));
      break;
    case CT_DIST_SERVERS:
      if (g->leads) {
        if (c->sp->clip_gradients >= 0) ct_update_clip_diff(&c->clip_tpl, g->diff); /* the global norm */
        job j = {.kind = JOB_EXCHANGE, .g = g, .iter = iter};
        CT_TRY(submit(c, &j, err));
      }
      if (ct_topology_ranks_per_group(&c->t) > 1) {
        job j = {.kind = JOB_BCAST, .buf = g->data, .comm = c->group_comm,
                 .what = "receiving parameters from the group's leader"};
        CT_TRY(submit(c, &j, err));
      }
      *rate = ct_update_rate(c->sp, iter);
      break;
  }
  return CT_OK;
}

static ct_status m_update(void *ctx, int iter, float *rate, ct_error *err) {
  mpi_ctx *c = ctx;
  CT_TRY(ct_local_update(c->local, iter, rate, err));
  pthread_mutex_lock(&c->stats_mu);
  c->updates++;
  pthread_mutex_unlock(&c->stats_mu);
  return CT_OK;
}

/* ---- start, end ---- */

static ct_status start_servers(mpi_ctx *c, ct_net *net, ct_update_ctx *upd, ct_error *err) {
  int S = c->t.nservers_per_group;
  if (S > MAX_SLICES) return ct_fail(err, CT_EUNSUPPORTED, "cluster: at most %d servers per group", MAX_SLICES);
  c->nslices = S;
  size_t maxlen = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
    if (len > maxlen) maxlen = len;
  }
  c->inbox_cap = sizeof(msg_head) + maxlen * sizeof(float);
  c->inbox = malloc(c->inbox_cap);
  if (!c->inbox) return ct_fail(err, CT_ENOMEM, "out of memory");
  int nl = ct_net_num_learnable(net);
  const ct_update_param *lp = ct_net_learnable(net);
  const float *data = ct_net_param_buffer(net);
  for (int i = 0; i < c->nsrv; i++) {
    server *v = &c->srv[i];
    ct_topology_slice(c->total, S, v->slice, &v->off, &v->len);
    v->data = malloc((v->len + 1) * sizeof(float));
    v->grad = calloc(v->len + 1, sizeof(float));
    v->reply = malloc((v->len * (size_t)(1 + upd->nsets) + 1) * sizeof(float));
    v->params = calloc((size_t)nl + 1, sizeof *v->params);
    if (!v->data || !v->grad || !v->reply || !v->params) return ct_fail(err, CT_ENOMEM, "out of memory");
    memcpy(v->data, data + v->off, v->len * sizeof(float));
    int np = 0;
    for (int p = 0; p < nl; p++) {
      size_t lo = lp[p].offset > v->off ? lp[p].offset : v->off;
      size_t hi = lp[p].offset + lp[p].count < v->off + v->len ? lp[p].offset + lp[p].count : v->off + v->len;
      if (lo >= hi) continue;
      v->params[np] = lp[p];
      v->params[np].offset = lo - v->off;
      v->params[np].count = hi - lo;
      np++;
    }
    CT_TRY(ct_update_init(&v->upd, &c->sp_srv, v->data, v->grad, v->len, v->params, np, err));
    v->upd_ok = true;
    for (int k = 0; k < upd->nsets; k++) memcpy(v->upd.history[k], upd->history[k] + v->off, v->len * sizeof(float));
  }
  bool leads = false;
  for (int i = 0; i < c->nlg; i++) leads |= c->lg[i].leads;
  if (leads) {
    c->outbox = calloc((size_t)S, sizeof *c->outbox);
    c->reqs = calloc(2 * (size_t)S, sizeof *c->reqs);
    c->peers = calloc(2 * (size_t)S, sizeof *c->peers);
    if (!c->outbox || !c->reqs || !c->peers) return ct_fail(err, CT_ENOMEM, "out of memory");
    for (int k = 0; k < S; k++) {
      size_t off, len;
      ct_topology_slice(c->total, S, k, &off, &len);
      if (!(c->outbox[k] = malloc(sizeof(msg_head) + len * sizeof(float)))) return ct_fail(err, CT_ENOMEM, "out of memory");
    }
  }
  if (c->rank == 0 && !(c->snapbuf = malloc((c->total * (size_t)(1 + upd->nsets) + 1) * sizeof(float))))
    return ct_fail(err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status m_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                         ct_error *err) {
  mpi_ctx *c = ctx;
  /* the first collectives: only after every process has agreed to start (ct_cluster_agree) */
  int first, nw = ct_topology_workers_on(&c->t, c->rank, &first);
  int group = nw ? first / c->t.nworkers_per_group : -1;
  MPI_TRY(c, MPI_Comm_split(MPI_COMM_WORLD, nw ? group : MPI_UNDEFINED, c->rank, &c->group_comm),
          "making the worker group's communicator", -1);
  MPI_TRY(c, MPI_Comm_split(MPI_COMM_WORLD, nw ? 0 : MPI_UNDEFINED, c->rank, &c->workers_comm),
          "making the workers' communicator", -1);
  c->upd = upd;
  c->clip_tpl = *upd;
  c->clip_tpl.pool = NULL;
  c->total = ct_net_param_total(net);
  if (c->total > (size_t)INT_MAX / 4)
    return ct_fail(err, CT_EUNSUPPORTED, "%zu parameters are too many for one MPI message", c->total);
  /* one set of starting values for everybody: rank 0's (weights or snapshot as it loaded them) */
  float *data = ct_net_param_buffer(net);
  MPI_TRY(c, MPI_Bcast(data, (int)c->total, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcasting parameters from", 0);
  for (int k = 0; k < upd->nsets; k++)
    MPI_TRY(c, MPI_Bcast(upd->history[k], (int)c->total, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcasting history from", 0);
  MPI_TRY(c, MPI_Bcast(iter, 1, MPI_INT, 0, MPI_COMM_WORLD), "broadcasting the iteration from", 0);
  if (c->local) {
    CT_TRY(ct_local_build(c->local, net, *iter, nets, err));
    c->nlg = ct_local_ngroups(c->local);
    if (!(c->lg = calloc((size_t)c->nlg, sizeof *c->lg))) return ct_fail(err, CT_ENOMEM, "out of memory");
    for (int i = 0; i < c->nlg; i++) {
      lgs *g = &c->lg[i];
      g->group = ct_local_group(c->local, i);
      g->leads = ct_local_leads(c->local, i);
      g->net = ct_local_net(c->local, i);
      g->data = ct_net_param_buffer(g->net);
      g->diff = ct_net_diff_buffer(g->net);
      if (i == 0) {
        g->upd = upd;
      } else if (c->t.mode != CT_DIST_SERVERS) { /* a copy of its own: the rule and its own history */
        CT_TRY(ct_update_init(&g->own, c->sp, g->data, g->diff, c->total, ct_net_learnable(g->net),
                              ct_net_num_learnable(g->net), err));
        g->own_ok = true;
        g->own.pool = ct_net_pool(g->net);
        for (int k = 0; k < upd->nsets; k++) memcpy(g->own.history[k], upd->history[k], c->total * sizeof(float));
        g->upd = &g->own;
      }
    }
  }
  if (c->t.mode == CT_DIST_HOGWILD && c->local) {
    c->base = malloc((c->total + 1) * sizeof(float));
    c->syncbuf = malloc((c->total + 1) * sizeof(float));
    if (!c->base || !c->syncbuf) return ct_fail(err, CT_ENOMEM, "out of memory");
    memcpy(c->base, data, c->total * sizeof(float));
  }
  if (c->t.mode == CT_DIST_SERVERS) CT_TRY(start_servers(c, net, upd, err));
  if (c->local && ct_local_nworkers(c->local) > 1) {
    c->threaded = true; /* from here on only the communication thread talks MPI */
    if (pthread_create(&c->comm, NULL, comm_main, c) != 0)
      return ct_fail(err, CT_ENOMEM, "rank %d: cannot start the communication thread", c->rank);
    c->comm_started = true;
  }
  if (c->local) CT_TRY(ct_local_run(c->local, group_update, c, err));
  return CT_OK;
}

static ct_status m_serve(void *ctx, ct_error *err) { return serve_until_done(ctx, err); }

static ct_status m_collect(void *ctx, ct_error *err) {
  mpi_ctx *c = ctx;
  if (c->t.mode != CT_DIST_SERVERS || c->rank != 0) return CT_OK;
  job j = {.kind = JOB_COLLECT};
  return submit(c, &j, err);
}

static ct_status m_finish(void *ctx, ct_error *err) {
  mpi_ctx *c = ctx;
  if (c->local) CT_TRY(ct_local_finish(c->local, err)); /* the threads' last iterations */
  if (c->t.mode == CT_DIST_SERVERS) {
    job j = {.kind = JOB_FINISH};
    CT_TRY(submit(c, &j, err));
  }
  stop_comm(c);
  return CT_OK;
}

static void m_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  mpi_ctx *c = ctx;
  pthread_mutex_lock(&c->stats_mu);
  *bytes = c->bytes, *wait_s = c->wait_s, *updates = c->updates;
  c->bytes = 0, c->wait_s = 0, c->updates = 0;
  pthread_mutex_unlock(&c->stats_mu);
}

static void m_destroy(void *ctx, bool clean) {
  mpi_ctx *c = ctx;
  if (!c) return;
  if (!clean) atomic_store(&c->abort, 1);
  stop_comm(c);
  ct_local_free(c->local); /* joins the worker threads */
  for (int i = 0; i < c->nlg; i++)
    if (c->lg[i].own_ok) ct_update_free(&c->lg[i].own);
  free(c->lg);
  for (int i = 0; i < c->nsrv; i++) {
    server *v = &c->srv[i];
    if (v->upd_ok) ct_update_free(&v->upd);
    free(v->data);
    free(v->grad);
    free(v->reply);
    free(v->params);
  }
  free(c->srv);
  if (c->outbox)
    for (int k = 0; k < c->nslices; k++) free(c->outbox[k]);
  free(c->outbox);
  free(c->reqs);
  free(c->peers);
  free(c->inbox);
  free(c->snapbuf);
  free(c->base);
  free(c->syncbuf);
  if (clean) {
    /* after a failure MPI is left alone: mpirun sees the non-zero exit and ends the job */
    if (c->group_comm != MPI_COMM_NULL) MPI_Comm_free(&c->group_comm);
    if (c->workers_comm != MPI_COMM_NULL) MPI_Comm_free(&c->workers_comm);
    ct_dist_mpi_finalize();
  }
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv_job);
  pthread_cond_destroy(&c->cv_done);
  pthread_mutex_destroy(&c->stats_mu);
  free(c);
}

static const ct_cluster_ops k_mpi_ops = {
    .start = m_start, .update = m_update, .serve = m_serve, .collect = m_collect,
    .finish = m_finish, .stats = m_stats, .destroy = m_destroy,
};

ct_status ct_dist_mpi_create(const ct_topology *t, int rank, const Caffe__SolverParameter *sp, void **out,
                             const ct_cluster_ops **ops, ct_error *err) {
  mpi_ctx *c = calloc(1, sizeof *c);
  if (!c) return ct_fail(err, CT_ENOMEM, "out of memory");
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv_job, NULL);
  pthread_cond_init(&c->cv_done, NULL);
  pthread_mutex_init(&c->stats_mu, NULL);
  atomic_init(&c->abort, 0);
  *out = c;
  *ops = &k_mpi_ops;
  c->t = *t;
  c->sp = sp;
  c->sp_srv = *sp;
  c->sp_srv.clip_gradients = -1;
  c->rank = rank;
  MPI_Comm_size(MPI_COMM_WORLD, &c->world);
  c->group_comm = c->workers_comm = MPI_COMM_NULL;
  c->timeout_s = ct_dist_timeout_s();
  int first, nw = ct_topology_workers_on(t, rank, &first);
  if (nw > 1 && g_thread_level < MPI_THREAD_SERIALIZED)
    return ct_fail(err, CT_EUNSUPPORTED, "rank %d hosts %d workers (nworkers_per_procs), which needs an MPI with "
                   "MPI_THREAD_SERIALIZED; this one provides thread level %d", rank, nw, g_thread_level);
  if (nw) CT_TRY(ct_local_create(t, rank, sp, &c->local, err));
  int sfirst, ns = t->mode == CT_DIST_SERVERS ? ct_topology_servers_on(t, rank, &sfirst) : 0;
  if (ns > 0) {
    c->srv = calloc((size_t)ns, sizeof *c->srv);
    if (!c->srv) return ct_fail(err, CT_ENOMEM, "out of memory");
    c->nsrv = ns;
    for (int i = 0; i < ns; i++) c->srv[i].slice = (sfirst + i) % t->nservers_per_group;
    c->expect_done = t->nworker_groups;
  }
  return CT_OK;
}
