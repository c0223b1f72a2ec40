/* The MPI backend of the cluster: worker groups, server groups and the four frameworks.
 *
 * Every process builds the whole solver (nets, update rule), so that any of them can take any
 * role; rank 0 is worker 0 and the root. Per update:
 *  - inside a worker group, the members' gradients are averaged with an allreduce over the
 *    group (each member ran a 1/J share of the group's batch: dim-0 partitioning);
 *  - ALLREDUCE: every member then applies the update itself (the group is the whole job);
 *  - SERVERS (Sandblaster with one worker group, Downpour with several): the group's leader
 *    sends slice k of the gradient to server k (Update), which applies the solver's rule to its
 *    slice with its own history and replies with the fresh slice (Get); the leader broadcasts
 *    the fresh parameters to its group. Groups do this independently: asynchronous;
 *  - HOGWILD: every group updates its own copy; every sync_freq updates the groups exchange what
 *    they changed since the last sync and every copy takes the sum (SINGA's server-group sync).
 * Waits are polling loops that also serve requests for the servers hosted in the same process
 * (so co-located workers and servers need no threads) and give up after CT_DIST_TIMEOUT seconds
 * (default 300) with a message naming the rank waited on. A process that dies is reported by
 * mpirun, which ends the job. */
#include <mpi.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "dist/cluster.h"

enum { TAG_SRV = 100, TAG_PARAMS = 1000, TAG_SNAP = 12000 };
enum { K_UPDATE = 1, K_DONE = 2, K_SNAPREQ = 3 };
#define MAX_SLICES 10000

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

typedef struct mpi_ctx {
  ct_topology t;
  const Caffe__SolverParameter *sp;
  int rank, world;
  int worker, group, member; /* worker -1: none here */
  MPI_Comm group_comm, workers_comm;
  int nsrv;
  server *srv;
  int ndone, expect_done;
  char *inbox;
  size_t inbox_cap;
  /* the worker's side */
  ct_update_ctx *upd;
  float *data, *diff;
  size_t total;
  int nslices;
  char **outbox;
  MPI_Request *reqs;
  int *peers;
  float *snapbuf;
  float *base; /* HOGWILD: the parameters at the last sync */
  double bytes, wait_s;
  int updates;
  double timeout_s;
} mpi_ctx;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
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
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return ct_fail(err, CT_EIO, "MPI_Init failed");
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
    if (src != c->rank) c->bytes += (double)v->len * sizeof(float);
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
  c->wait_s += now_s() - t0;
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
  }
  return CT_OK;
}

/* ---- the worker side ---- */

static ct_status allreduce(mpi_ctx *c, float *buf, MPI_Comm comm, float scale, const char *what, ct_error *err) {
  int p = 1;
  MPI_Comm_size(comm, &p);
  if (p == 1) return CT_OK;
  MPI_Request r;
  int peer = -1;
  MPI_TRY(c, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)c->total, MPI_FLOAT, MPI_SUM, comm, &r), what, -1);
  CT_TRY(wait_serving(c, 1, &r, &peer, what, err));
  /* what a ring allreduce sends from each process */
  c->bytes += 2.0 * (double)(p - 1) / p * (double)c->total * sizeof(float);
  for (size_t i = 0; i < c->total; i++) buf[i] *= scale;
  return CT_OK;
}

static ct_status exchange(mpi_ctx *c, int iter, ct_error *err) {
  int S = c->nslices, n = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
    int peer = ct_topology_server_proc(&c->t, k);
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Irecv(c->data + off, (int)len, MPI_FLOAT, peer, TAG_PARAMS + k, MPI_COMM_WORLD, &c->reqs[n++]),
            "asking for parameters from", peer);
  }
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_topology_slice(c->total, S, k, &off, &len);
    int peer = ct_topology_server_proc(&c->t, k);
    msg_head h = {K_UPDATE, iter, k, c->group};
    memcpy(c->outbox[k], &h, sizeof h);
    memcpy(c->outbox[k] + sizeof h, c->diff + off, len * sizeof(float));
    c->peers[n] = peer;
    MPI_TRY(c, MPI_Isend(c->outbox[k], (int)(sizeof h + len * sizeof(float)), MPI_BYTE, peer, TAG_SRV, MPI_COMM_WORLD,
                         &c->reqs[n++]),
            "sending gradients to", peer);
    if (peer != c->rank) c->bytes += (double)(sizeof h + len * sizeof(float)); /* not to itself */
  }
  return wait_serving(c, n, c->reqs, c->peers, "exchanging gradients for parameters with the servers", err);
}

static ct_status m_update(void *ctx, int iter, float *rate, ct_error *err) {
  mpi_ctx *c = ctx;
  int J = c->t.nworkers_per_group;
  if (J > 1) CT_TRY(allreduce(c, c->diff, c->group_comm, 1.0f / (float)J, "averaging gradients in the worker group", err));
  switch (c->t.mode) {
    case CT_DIST_ALLREDUCE: *rate = ct_update_apply(c->upd, iter); break;
    case CT_DIST_HOGWILD:
      *rate = ct_update_apply(c->upd, iter);
      if (c->t.nworker_groups > 1 && (iter + 1) % c->t.sync_freq == 0) {
        /* server groups exchange what they changed since the last sync, and every copy takes
         * all of it: progress per epoch as in one process, not an average of the groups */
        for (size_t i = 0; i < c->total; i++) c->diff[i] = c->data[i] - c->base[i];
        CT_TRY(allreduce(c, c->diff, c->workers_comm, 1.0f / (float)c->t.nworkers_per_group,
                         "summing the worker groups' updates", err));
        for (size_t i = 0; i < c->total; i++) c->data[i] = c->base[i] += c->diff[i];
      }
      break;
    case CT_DIST_SERVERS:
      if (c->member == 0) CT_TRY(exchange(c, iter, err));
      if (J > 1) {
        MPI_Request r;
        int peer = -1;
        MPI_TRY(c, MPI_Ibcast(c->data, (int)c->total, MPI_FLOAT, 0, c->group_comm, &r), "broadcasting parameters", -1);
        CT_TRY(wait_serving(c, 1, &r, &peer, "receiving parameters from the group's leader", err));
        if (c->member == 0) c->bytes += (double)c->total * sizeof(float);
      }
      *rate = ct_update_rate(c->sp, iter);
      break;
  }
  c->updates++;
  return CT_OK;
}

static ct_status m_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                         ct_error *err) {
  (void)nets;
  mpi_ctx *c = ctx;
  c->upd = upd;
  c->data = ct_net_param_buffer(net);
  c->diff = ct_net_diff_buffer(net);
  c->total = ct_net_param_total(net);
  if (c->total > (size_t)INT_MAX / 4)
    return ct_fail(err, CT_EUNSUPPORTED, "%zu parameters are too many for one MPI message", c->total);
  /* one set of starting values for everybody: rank 0's (weights or snapshot as it loaded them) */
  MPI_TRY(c, MPI_Bcast(c->data, (int)c->total, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcasting parameters from", 0);
  for (int k = 0; k < upd->nsets; k++)
    MPI_TRY(c, MPI_Bcast(upd->history[k], (int)c->total, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcasting history from", 0);
  MPI_TRY(c, MPI_Bcast(iter, 1, MPI_INT, 0, MPI_COMM_WORLD), "broadcasting the iteration from", 0);
  if (c->t.mode == CT_DIST_HOGWILD) {
    if (!(c->base = malloc((c->total + 1) * sizeof(float)))) return ct_fail(err, CT_ENOMEM, "out of memory");
    memcpy(c->base, c->data, c->total * sizeof(float));
  }
  if (c->t.mode != CT_DIST_SERVERS) return CT_OK;
  int S = c->t.nservers_per_group;
  if (S > MAX_SLICES) return ct_fail(err, CT_EUNSUPPORTED, "cluster: at most %d servers per group", MAX_SLICES);
  if (S > 1 && c->sp->clip_gradients >= 0)
    return ct_fail(err, CT_EUNSUPPORTED, "clip_gradients needs the global gradient norm, which servers holding "
                   "slices do not see; use nservers_per_group: 1 or no clip_gradients");
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
  for (int i = 0; i < c->nsrv; i++) {
    server *v = &c->srv[i];
    ct_topology_slice(c->total, S, v->slice, &v->off, &v->len);
    v->data = malloc((v->len + 1) * sizeof(float));
    v->grad = calloc(v->len + 1, sizeof(float));
    v->reply = malloc((v->len * (size_t)(1 + upd->nsets) + 1) * sizeof(float));
    v->params = calloc((size_t)nl + 1, sizeof *v->params);
    if (!v->data || !v->grad || !v->reply || !v->params) return ct_fail(err, CT_ENOMEM, "out of memory");
    memcpy(v->data, c->data + v->off, v->len * sizeof(float));
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
    CT_TRY(ct_update_init(&v->upd, c->sp, v->data, v->grad, v->len, v->params, np, err));
    v->upd_ok = true;
    for (int k = 0; k < upd->nsets; k++) memcpy(v->upd.history[k], upd->history[k] + v->off, v->len * sizeof(float));
  }
  if (c->worker >= 0 && c->member == 0) {
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

static ct_status m_serve(void *ctx, ct_error *err) { return serve_until_done(ctx, err); }

static ct_status m_collect(void *ctx, ct_error *err) {
  mpi_ctx *c = ctx;
  if (c->t.mode != CT_DIST_SERVERS || c->rank != 0) return CT_OK;
  int S = c->nslices, n = 0, nsets = c->upd->nsets;
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
    msg_head h = {K_SNAPREQ, 0, k, c->group};
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
    memcpy(c->data + off, b, len * sizeof(float));
    for (int s = 0; s < nsets; s++) memcpy(c->upd->history[s] + off, b + (size_t)(s + 1) * len, len * sizeof(float));
  }
  return CT_OK;
}

static ct_status m_finish(void *ctx, ct_error *err) {
  mpi_ctx *c = ctx;
  if (c->t.mode == CT_DIST_SERVERS && c->worker >= 0 && c->member == 0) {
    /* one Done to every process that hosts servers */
    int n = 0, last = -1;
    msg_head h = {K_DONE, 0, 0, c->group};
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

static void m_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  mpi_ctx *c = ctx;
  *bytes = c->bytes, *wait_s = c->wait_s, *updates = c->updates;
  c->bytes = 0, c->wait_s = 0, c->updates = 0;
}

static void m_destroy(void *ctx, bool clean) {
  mpi_ctx *c = ctx;
  if (!c) return;
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
  if (clean) {
    /* after a failure MPI is left alone: mpirun sees the non-zero exit and ends the job */
    if (c->group_comm != MPI_COMM_NULL) MPI_Comm_free(&c->group_comm);
    if (c->workers_comm != MPI_COMM_NULL) MPI_Comm_free(&c->workers_comm);
    ct_dist_mpi_finalize();
  }
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
  *out = c;
  *ops = &k_mpi_ops;
  c->t = *t;
  c->sp = sp;
  c->rank = rank;
  MPI_Comm_size(MPI_COMM_WORLD, &c->world);
  c->group_comm = c->workers_comm = MPI_COMM_NULL;
  const char *to = getenv("CT_DIST_TIMEOUT");
  c->timeout_s = to && atof(to) > 0 ? atof(to) : 300;
  int first, nw = ct_topology_workers_on(t, rank, &first);
  if (nw > 1)
    return ct_fail(err, CT_EUNSUPPORTED, "rank %d: %d workers in one MPI process are not supported; set "
                   "nworkers_per_procs: 1", rank, nw);
  c->worker = nw ? first : -1;
  c->group = nw ? first / t->nworkers_per_group : -1;
  c->member = nw ? first % t->nworkers_per_group : -1;
  MPI_TRY(c, MPI_Comm_split(MPI_COMM_WORLD, nw ? c->group : MPI_UNDEFINED, c->member, &c->group_comm),
          "making the worker group's communicator", -1);
  MPI_TRY(c, MPI_Comm_split(MPI_COMM_WORLD, nw ? 0 : MPI_UNDEFINED, c->worker, &c->workers_comm),
          "making the workers' communicator", -1);
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
