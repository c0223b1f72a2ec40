/* The servers a process hosts (SINGA's server group): each owns a slice of the parameters and
 * the update history for it, applies a worker group's gradient slice with the solver's rule and
 * answers with the fresh slice (mpi_internal.h, mpi_cluster.c for the design). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/mpi_internal.h"
#include "dist/part.h"

/* ---- the server side ---- */

static server *find_server(mpi_ctx *c, int slice) {
  for (int i = 0; i < c->nsrv; i++)
    if (c->srv[i].slice == slice) return &c->srv[i];
  return NULL;
}

/* Sends a server's answer to rank dst. Not MPI_Send: a large message waits for the receiver to
 * take it, and a worker stopped after asking would hold the server, and every other group with
 * it, for good; this wait gives up after CT_DIST_TIMEOUT naming the worker. The buffer is not
 * touched again before the send completes. */
static ct_status reply(mpi_ctx *c, const float *buf, int count, int dst, int tag, const char *what, ct_error *err) {
  MPI_Request r;
  MPI_TRY(c, MPI_Isend(buf, count, MPI_FLOAT, dst, tag, MPI_COMM_WORLD, &r), "answering", dst);
  double t0 = ct_mpi_now();
  for (int idle = 0;; ct_mpi_backoff(idle++)) {
    int done = 0;
    MPI_TRY(c, MPI_Test(&r, &done, MPI_STATUS_IGNORE), "answering", dst);
    if (done) return CT_OK;
    ct_mpi_answer_pings(c);
    double dt = ct_mpi_now() - t0;
    if (dt > c->timeout_s)
      return ct_fail(err, CT_EIO, "rank %d (server): rank %d has not taken %s for %.0f s; rank %d is stopped or stuck "
                     "(CT_DIST_TIMEOUT sets the limit)", c->rank, dst, what, dt, dst);
  }
}

/* Handles one request for the servers of this process, if one is waiting (*did). */
ct_status ct_mpi_serve_one(mpi_ctx *c, bool *did, ct_error *err) {
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
  if (h.group >= 0 && h.group < c->t.nworker_groups) c->heard[h.group] = ct_mpi_now();
  if (h.kind == K_DONE) {
    c->ndone++;
    if (h.group >= 0 && h.group < c->t.nworker_groups) c->group_done[h.group] = true;
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
    CT_TRY(reply(c, v->data, (int)v->len, src, TAG_PARAMS + h.slice, "its parameters", err));
    if (src != c->rank) ct_mpi_add_stats(c, (double)v->len * sizeof(float), 0);
  } else if (h.kind == K_SNAPREQ) {
    int nsets = v->upd.nsets;
    memcpy(v->reply, v->data, v->len * sizeof(float));
    for (int k = 0; k < nsets; k++) memcpy(v->reply + (size_t)(k + 1) * v->len, v->upd.history[k], v->len * sizeof(float));
    CT_TRY(reply(c, v->reply, (int)(v->len * (size_t)(1 + nsets)), src, TAG_SNAP + h.slice, "a snapshot", err));
  } else {
    return ct_fail(err, CT_EINTERNAL, "rank %d: unknown request %d from rank %d", c->rank, h.kind, src);
  }
  return CT_OK;
}

ct_status ct_mpi_check_silence(mpi_ctx *c, double since, ct_error *err) {
  double now = ct_mpi_now();
  for (int g = 0; g < c->t.nworker_groups; g++) {
    double last = c->heard[g] > since ? c->heard[g] : since;
    if (c->group_done[g] || now - last <= c->timeout_s) continue;
    int leader = ct_topology_worker_proc(&c->t, g * c->t.nworkers_per_group);
    return ct_fail(err, CT_EIO, "rank %d (server): no request from worker group %d (rank %d) for %.0f s; rank %d is "
                   "stopped or stuck (CT_DIST_TIMEOUT sets the limit)", c->rank, g, leader, now - last, leader);
  }
  return CT_OK;
}

ct_status ct_mpi_serve_until_done(mpi_ctx *c, ct_error *err) {
  int idle = 0;
  double t0 = ct_mpi_now(), next_check = t0 + 1;
  while (c->ndone < c->expect_done) {
    bool did = false;
    CT_TRY(ct_mpi_serve_one(c, &did, err));
    ct_mpi_answer_pings(c);
    if (did)
      idle = 0;
    else
      ct_mpi_backoff(idle++);
    if (atomic_load(&c->abort)) return ct_mpi_aborted(c, "serving", err);
    if (ct_mpi_now() < next_check) continue;
    next_check = ct_mpi_now() + 1;
    CT_TRY(ct_mpi_check_silence(c, t0, err));
  }
  return CT_OK;
}

/* the end of training here: every group led from here tells every server process, which then
 * serve until all groups have */
ct_status ct_mpi_finish_servers(mpi_ctx *c, ct_error *err) {
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
    CT_TRY(ct_mpi_wait_serving(c, n, c->reqs, c->peers, MPI_COMM_NULL, "telling the servers training is done", err));
  }
  if (c->nsrv) CT_TRY(ct_mpi_serve_until_done(c, err));
  return CT_OK;
}

void ct_mpi_slice(const mpi_ctx *c, int k, size_t *off, size_t *len) {
  if (!c->cut) {
    ct_topology_slice(c->total, c->nslices, k, off, len);
    return;
  }
  *off = c->cut[k];
  *len = c->cut[k + 1] - c->cut[k];
}

static int cmp_size(const void *a, const void *b) {
  const size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* issue 19: on a partitioned net, slice boundaries only where a parameter shard (or a whole
 * layer's parameter) begins, each the one nearest to the equal-size cut that leaves room for
 * the cuts after it. Every process computes the same cuts from the same net. Fewer shards than
 * servers: equal slices (c->cut stays NULL). */
static ct_status shard_cuts(mpi_ctx *c, ct_net *net, int S, ct_error *err) {
  if (ct_net_partition_workers(net) < 2 || S < 2) return CT_OK;
  const int L = ct_net_num_layers(net);
  size_t nb = 2, cap = 64;
  size_t *b = malloc(cap * sizeof *b);
  if (!b) return ct_fail(err, CT_ENOMEM, "out of memory");
  b[0] = 0, b[1] = c->total;
  for (int i = 0; i < L; i++) {
    size_t off[8], cnt[8];
    int m = ct_net_layer_param_ranges(net, i, off, cnt, 8);
    for (int j = 0; j < m && j < 8; j++) {
      if (nb + 2 > cap) {
        size_t *v = realloc(b, 2 * cap * sizeof *v);
        if (!v) {
          free(b);
          return ct_fail(err, CT_ENOMEM, "out of memory");
        }
        b = v, cap *= 2;
      }
      b[nb++] = off[j];
      b[nb++] = off[j] + cnt[j];
    }
  }
  if (!(c->cut = malloc(((size_t)S + 1) * sizeof *c->cut))) {
    free(b);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  if (!ct_dist_cuts_at(b, nb, c->total, S, c->cut)) { /* fewer units than servers */
    free(c->cut);
    c->cut = NULL;
  }
  free(b);
  return CT_OK;
}

bool ct_dist_cuts_at(size_t *b, size_t nb, size_t total, int S, size_t *cut) {
  qsort(b, nb, sizeof *b, cmp_size);
  size_t u = 0;
  for (size_t i = 0; i < nb; i++)
    if (b[i] <= total && (!u || b[i] != b[u - 1])) b[u++] = b[i];
  if (u < 2 || b[0] != 0 || b[u - 1] != total || u - 1 < (size_t)S) return false;
  cut[0] = 0;
  cut[S] = total;
  size_t at = 0; /* index in b of the last cut */
  for (int k = 1; k < S; k++) {
    const double want = (double)total * k / S;
    const size_t last = u - 1 - (size_t)(S - k); /* room for the cuts after this one */
    size_t best = at + 1;
    for (size_t i = at + 1; i <= last; i++)
      if (fabs((double)b[i] - want) < fabs((double)b[best] - want)) best = i;
    cut[k] = b[best];
    at = best;
  }
  return true;
}

ct_status ct_mpi_start_servers(mpi_ctx *c, ct_net *net, ct_update_ctx *upd, ct_error *err) {
  int S = c->t.nservers_per_group;
  if (S > MAX_SLICES) return ct_fail(err, CT_EUNSUPPORTED, "cluster: at most %d servers per group", MAX_SLICES);
  c->nslices = S;
  CT_TRY(shard_cuts(c, net, S, err));
  size_t maxlen = 0;
  for (int k = 0; k < S; k++) {
    size_t off, len;
    ct_mpi_slice(c, k, &off, &len);
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
    ct_mpi_slice(c, v->slice, &v->off, &v->len);
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
      ct_mpi_slice(c, k, &off, &len);
      if (!(c->outbox[k] = malloc(sizeof(msg_head) + len * sizeof(float)))) return ct_fail(err, CT_ENOMEM, "out of memory");
    }
  }
  if (c->rank == 0 && !(c->snapbuf = malloc((c->total * (size_t)(1 + upd->nsets) + 1) * sizeof(float))))
    return ct_fail(err, CT_ENOMEM, "out of memory");
  return CT_OK;
}
