/* Bridges between processes for a partitioned net (part.h): non-blocking sends from staging
 * buffers that live as long as the bridge (grown once, on the first pass), blocking receives
 * straight into the reader's tensor, and one wait for the pass's sends at its end. Every wait
 * polls and gives up after CT_DIST_TIMEOUT naming the ranks that do not answer a liveness
 * check (part_wait), as the cluster's waits do: a stopped or stuck rank ends the job instead of
 * holding it. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "dist/cluster.h"
#include "dist/mpi_internal.h"
#include "dist/part.h"
#include "solvers/update.h"

typedef struct slot {
  int to, tag;
  float *buf;
  size_t cap;
  MPI_Request req;
  bool busy;
} slot;

struct ct_dist_part {
  MPI_Comm comm;  /* this worker group's processes: the bridges */
  MPI_Comm all;   /* every process of the job */
  MPI_Comm peers; /* the processes at this one's place in every group (same shards) */
  int rank, world; /* in the group */
  int group, groups;
  double sent; /* bytes this process sent since the last ct_dist_part_take_sent */
  slot *slots;
  int nslots, cap;
};

static int rank_of(void *ctx, int worker) {
  const ct_dist_part *p = ctx;
  return worker % p->world;
}

static ct_status mpi_fail(ct_error *err, int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return ct_fail(err, CT_EIO, "%s: %.*s", what, len, msg);
}

/* A wait that gave up after dt seconds (part_wait): names the ranks that do not answer a
 * liveness check on p->all (ct_mpi_silent). Every rank of the job answers while it polls in
 * part_wait, so a live rank answers within milliseconds, and a stopped (SIGSTOP) or stuck one
 * not at all. The peer of a message is asked first; when it answers, it waits on someone too,
 * so then the whole job is asked. A collective names the ranks that do not answer. */
static ct_status part_timeout(const ct_dist_part *p, MPI_Comm comm, int peer, const char *what, double dt,
                              ct_error *err) {
  int me = -1, *members = NULL, *job = NULL;
  MPI_Comm_rank(p->all, &me);
  const int size = ct_mpi_members(comm, p->all, &members), njob = ct_mpi_members(p->all, p->all, &job);
  const int other = peer >= 0 && peer < size ? members[peer] : -1;
  free(members);
  const double limit = ct_dist_timeout_s(), grace = limit < 3 ? limit : 3;
  char who[256];
  ct_status st;
  if (other >= 0 && ct_mpi_silent(p->all, &other, 1, grace, NULL, NULL, who, sizeof who) != 0) {
    st = ct_fail(err, CT_EIO, "rank %d: no answer from rank %d for %.0f s while %s; rank %d is stopped or stuck "
                 "(CT_DIST_TIMEOUT sets the limit)", me, other, dt, what, other);
  } else {
    const int silent = njob ? ct_mpi_silent(p->all, job, njob, grace, NULL, NULL, who, sizeof who) : -1;
    char head[512];
    if (other >= 0)
      snprintf(head, sizeof head, "rank %d: no answer from rank %d for %.0f s while %s, although rank %d is alive: it "
               "waits on another rank", me, other, dt, what, other);
    else
      snprintf(head, sizeof head, "rank %d: %s, a collective over %d ranks, did not complete within %.0f s", me, what,
               size, dt);
    if (silent > 0)
      st = ct_fail(err, CT_EIO, "%s; %s %s not answer: stopped or stuck (CT_DIST_TIMEOUT sets the limit)", head, who,
                   silent > 1 ? "do" : "does");
    else if (silent == 0)
      st = ct_fail(err, CT_EIO, "%s, although every rank of the job answers: one is much slower than the others "
                   "(CT_DIST_TIMEOUT sets the limit)", head);
    else /* no memory to ask */
      st = ct_fail(err, CT_EIO, "%s: one of the ranks is stopped or stuck (CT_DIST_TIMEOUT sets the limit)", head);
  }
  free(job);
  return st;
}

/* Waits for *req: a message from rank `peer` of comm, or (peer < 0) a collective over comm.
 * Polls with the cluster's backoff, answering the other ranks' liveness checks once it idles;
 * gives up after CT_DIST_TIMEOUT (part_timeout). Who the peer is in the job is only looked up
 * then. */
static ct_status part_wait(const ct_dist_part *p, MPI_Request *req, MPI_Comm comm, int peer, const char *what,
                           ct_error *err) {
  const double t0 = ct_mpi_now(), limit = ct_dist_timeout_s();
  for (int idle = 0;; idle++) {
    int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, what);
    if (done) return CT_OK;
    if (idle < 16) continue; /* a wait that ends at once looks at nothing else */
    ct_mpi_answer_pings_on(p->all);
    ct_mpi_backoff(idle);
    const double dt = ct_mpi_now() - t0;
    if (dt > limit) return part_timeout(p, comm, peer, what, dt, err);
  }
}

/* A collective or point-to-point call started as a request, then part_wait. */
#define PART_WAIT(p, start, comm, peer, what, err)            \
  do {                                                        \
    MPI_Request req_;                                         \
    int rc_ = (start);                                        \
    if (rc_ != MPI_SUCCESS) return mpi_fail(err, rc_, what);  \
    CT_TRY(part_wait(p, &req_, comm, peer, what, err));       \
  } while (0)

/* The bridges' tags start above the ones this file uses itself (gather_owned's). */
enum { TAG_GATHER = 7, TAG_BRIDGE0 = 8 };

static ct_status send_bridge(void *ctx, int to, int tag, const float *v, size_t n, ct_error *err) {
  ct_dist_part *p = ctx;
  tag += TAG_BRIDGE0;
  slot *s = NULL;
  for (int k = 0; k < p->nslots && !s; k++)
    if (p->slots[k].to == to && p->slots[k].tag == tag) s = &p->slots[k];
  if (!s) {
    if (p->nslots == p->cap) {
      int cap = p->cap ? 2 * p->cap : 16;
      slot *v2 = realloc(p->slots, (size_t)cap * sizeof *v2);
      if (!v2) return ct_fail(err, CT_ENOMEM, "out of memory");
      p->slots = v2;
      p->cap = cap;
    }
    s = &p->slots[p->nslots++];
    *s = (slot){.to = to, .tag = tag};
  }
  if (s->cap < n) {
    float *b = realloc(s->buf, n * sizeof *b);
    if (!b) return ct_fail(err, CT_ENOMEM, "out of memory for a bridge of %zu values", n);
    s->buf = b;
    s->cap = n;
  }
  if (n > (size_t)INT32_MAX) return ct_fail(err, CT_EINVAL, "a bridge of %zu values is too large for MPI", n);
  memcpy(s->buf, v, n * sizeof *v);
  p->sent += (double)n * sizeof(float);
  int rc = MPI_Isend(s->buf, (int)n, MPI_FLOAT, to, tag, p->comm, &s->req);
  if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "sending a bridge");
  s->busy = true;
  return CT_OK;
}

static ct_status recv_bridge(void *ctx, int from, int tag, float *v, size_t n, ct_error *err) {
  ct_dist_part *p = ctx;
  tag += TAG_BRIDGE0;
  PART_WAIT(p, MPI_Irecv(v, (int)n, MPI_FLOAT, from, tag, p->comm, &req_), p->comm, from, "receiving a bridge", err);
  return CT_OK;
}

static ct_status flush_bridges(void *ctx, ct_error *err) {
  ct_dist_part *p = ctx;
  for (int k = 0; k < p->nslots; k++)
    if (p->slots[k].busy) {
      ct_status st = part_wait(p, &p->slots[k].req, p->comm, p->slots[k].to, "finishing a bridge", err);
      p->slots[k].busy = false;
      if (st) return st;
    }
  return CT_OK;
}

ct_status ct_dist_part_create_groups(ct_net *net, int groups, ct_dist_part **out, ct_error *err) {
  *out = NULL;
  int world, rank;
  CT_TRY(ct_dist_mpi_init(&world, &rank, err));
  if (groups < 1 || world % groups)
    return ct_fail(err, CT_EINVAL, "%d processes do not split into %d worker groups", world, groups);
  ct_dist_part *p = calloc(1, sizeof *p);
  if (!p) return ct_fail(err, CT_ENOMEM, "out of memory");
  const int R = world / groups;
  p->rank = rank % R;
  p->world = R;
  p->group = rank / R;
  p->groups = groups;
  p->comm = p->all = p->peers = MPI_COMM_NULL;
  int rc = MPI_Comm_split(MPI_COMM_WORLD, p->group, rank, &p->comm);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_split(MPI_COMM_WORLD, p->rank, rank, &p->peers);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(MPI_COMM_WORLD, &p->all);
  ct_status st = rc == MPI_SUCCESS ? CT_OK : mpi_fail(err, rc, "making the worker groups' communicators");
  if (!st) {
    MPI_Comm_set_errhandler(p->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(p->peers, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(p->all, MPI_ERRORS_RETURN);
    /* MPI_TAG_UB: at least 32767 by the standard; Open MPI's is far larger */
    int *ub = NULL, flag = 0;
    if (MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag) != MPI_SUCCESS || !flag || !ub) ub = NULL;
    ct_bridge_ops ops = {.ctx = p, .rank = p->rank, .world = p->world, .max_tag = (ub ? *ub : 32767) - TAG_BRIDGE0,
                         .rank_of = rank_of, .send = send_bridge, .recv = recv_bridge, .flush = flush_bridges};
    st = ct_net_set_bridges(net, &ops, err);
  }
  if (st) {
    ct_dist_part_free(p, NULL);
    return st;
  }
  *out = p;
  return CT_OK;
}

ct_status ct_dist_part_create(ct_net *net, ct_dist_part **out, ct_error *err) {
  return ct_dist_part_create_groups(net, 1, out, err);
}

void ct_dist_part_free(ct_dist_part *p, ct_net *net) {
  if (!p) return;
  ct_error e;
  if (net) ct_net_set_bridges(net, NULL, &e);
  if (p->comm != MPI_COMM_NULL) (void)flush_bridges(p, &e);
  for (int k = 0; k < p->nslots; k++) free(p->slots[k].buf);
  free(p->slots);
  if (p->comm != MPI_COMM_NULL) MPI_Comm_free(&p->comm);
  if (p->peers != MPI_COMM_NULL) MPI_Comm_free(&p->peers);
  if (p->all != MPI_COMM_NULL) MPI_Comm_free(&p->all);
  free(p);
}

int ct_dist_part_rank(const ct_dist_part *p) { return p->rank; }
int ct_dist_part_world(const ct_dist_part *p) { return p->world; }

ct_status ct_dist_part_sum(ct_dist_part *p, float *v, size_t n, ct_error *err) {
  for (size_t off = 0; off < n;) { /* in pieces an int can count */
    int k = n - off > (size_t)(1 << 30) ? 1 << 30 : (int)(n - off);
    p->sent += (double)k * sizeof(float);
    PART_WAIT(p, MPI_Iallreduce(MPI_IN_PLACE, v + off, k, MPI_FLOAT, MPI_SUM, p->comm, &req_), p->comm, -1,
              "summing over the processes", err);
    off += (size_t)k;
  }
  return CT_OK;
}

ct_status ct_dist_part_reduce(ct_dist_part *p, ct_net *net, ct_error *err) {
  float *g = ct_net_diff_buffer(net);
  if (!g) return ct_fail(err, CT_EIO, "the gradients could not be brought to the host");
  return ct_dist_part_sum(p, g, ct_net_param_total(net), err);
}

/* ---- the cluster backend (cluster.c picks it): one worker group over every process ----
 *
 * SINGA's semantics inside a worker group: every parameter (a dim-1 shard's rows, or a whole
 * layer's parameters) belongs to the one worker that runs its layer, which alone computes its
 * gradient; so each process updates the parameters of its own layers with the solver's rule,
 * and nothing about parameters crosses the processes in an iteration: only the bridges do.
 * (Each process applies the rule to the whole flat buffer; the ranges it does not own have zero
 * gradients and are never read there, and rank 0 takes their owners' values before it needs
 * them.) Global gradient clipping needs the group's norm: one float per iteration.
 *
 * Rank 0 tests, displays and snapshots with the whole parameters: right after any iteration
 * where the loop will test or snapshot next (test_interval, snapshot, max_iter, or a snapshot /
 * stop that a signal asked for, agreed by every process in agree_action), each other process
 * sends rank 0 the values, and for a snapshot the update history, of the ranges it owns. */

typedef struct range {
  size_t off, n;
} range;

typedef struct part_cluster {
  ct_dist_part *p;
  ct_net *net;
  ct_update_ctx *upd;
  int updates, iter;
  int fresh;      /* the iteration at which rank 0 last held the group's parameters and history */
  int fresh_vals; /* ... and the group's parameters (a test needs no history) */
  int groups; /* worker groups, data-parallel with each other (each over world / groups ranks) */
  range **own; /* per rank: the ranges of the flat buffer its layers own (sorted, merged) */
  int *nown;
  size_t *own_total; /* per rank: floats in its ranges */
  range *shared;     /* the ranges of batch layers (ct_net_layer_batch): every rank's partial sums */
  int nshared;
  size_t shared_total;
  float *spack;      /* shared_total floats */
  float *pack;       /* own_total (max over ranks) x (1 + nsets) floats */
  ct_status pending; /* a failure in agree_action, reported by the next call that can */
  ct_error pending_err;
} part_cluster;

static int cmp_range(const void *a, const void *b) {
  const range *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Which ranges each rank owns, from the layers it runs (the same net on every process). */
static ct_status find_owners(part_cluster *c, ct_error *err) {
  const int W = c->p->world, n = ct_net_num_layers(c->net);
  const ct_bridge_ops ops = {.ctx = c->p, .rank_of = rank_of};
  /* entry W: the batch layers' ranges, which every rank shares */
  c->own = calloc((size_t)W + 1, sizeof *c->own);
  c->nown = calloc((size_t)W + 1, sizeof *c->nown);
  c->own_total = calloc((size_t)W + 1, sizeof *c->own_total);
  if (!c->own || !c->nown || !c->own_total) return ct_fail(err, CT_ENOMEM, "out of memory");
  int *cap = calloc((size_t)W + 1, sizeof *cap);
  if (!cap) return ct_fail(err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  for (int i = 0; i < n && !st; i++) {
    size_t off[8], cnt[8];
    int m = ct_net_layer_param_ranges(c->net, i, off, cnt, 8);
    if (m > 8) {
      st = ct_fail(err, CT_EUNSUPPORTED, "layer %d has %d parameter blobs; at most 8 here", i, m);
      break;
    }
    const bool batch = ct_net_layer_batch(c->net, i);
    const int r = batch ? W : ops.rank_of(ops.ctx, ct_net_layer_worker(c->net, i));
    for (int k = 0; k < m && !st; k++) {
      if (c->nown[r] == cap[r]) {
        int nc = cap[r] ? 2 * cap[r] : 16;
        range *v = realloc(c->own[r], (size_t)nc * sizeof *v);
        if (!v) {
          st = ct_fail(err, CT_ENOMEM, "out of memory");
          break;
        }
        c->own[r] = v;
        cap[r] = nc;
      }
      c->own[r][c->nown[r]++] = (range){off[k], cnt[k]};
    }
  }
  free(cap);
  if (st) return st;
  size_t most = 0;
  for (int r = 0; r <= W; r++) {
    qsort(c->own[r], (size_t)c->nown[r], sizeof(range), cmp_range);
    int m = 0; /* merge: a layer's shards of several blobs, or shared parameters, may touch */
    for (int k = 0; k < c->nown[r]; k++) {
      range v = c->own[r][k];
      if (m && c->own[r][m - 1].off + c->own[r][m - 1].n >= v.off) {
        size_t end = v.off + v.n > c->own[r][m - 1].off + c->own[r][m - 1].n ? v.off + v.n
                                                                              : c->own[r][m - 1].off + c->own[r][m - 1].n;
        c->own[r][m - 1].n = end - c->own[r][m - 1].off;
      } else {
        c->own[r][m++] = v;
      }
    }
    c->nown[r] = m;
    for (int k = 0; k < m; k++) c->own_total[r] += c->own[r][k].n;
    if (c->own_total[r] > most && r < W) most = c->own_total[r];
  }
  c->shared = c->own[W];
  c->nshared = c->nown[W];
  c->shared_total = c->own_total[W];
  /* two ranks that own one range would both update it: the partition gives each layer one
   * worker, so only parameters shared across workers (param name) can do that */
  for (int r = 0; r <= W; r++)
    for (int q = r + 1; q <= W; q++)
      for (int a = 0; a < c->nown[r]; a++)
        for (int b = 0; b < c->nown[q]; b++) {
          const range x = c->own[r][a], y = c->own[q][b];
          if (x.off < y.off + y.n && y.off < x.off + x.n)
            return ct_fail(err, CT_EUNSUPPORTED,
                           "a parameter is used by layers on rank %d and on %s (shared parameters, param "
                           "name): a worker group spread over processes needs each parameter on one worker, or "
                           "on layers that all run their batch slice on every rank; pin the layers that share it "
                           "to one location",
                           r, q == W ? "every rank (a layer over its batch slice)" : "another rank");
        }
  const size_t sets = 1 + (size_t)c->upd->nsets;
  if (!(c->pack = malloc((most * sets + 1) * sizeof(float))) ||
      !(c->spack = malloc((c->shared_total + 1) * sizeof(float))))
    return ct_fail(err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status pc_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                          ct_error *err) {
  (void)nets;
  part_cluster *c = ctx;
  c->net = net;
  c->upd = upd;
  CT_TRY(ct_dist_part_create_groups(net, c->groups, &c->p, err));
  CT_TRY(find_owners(c, err));
  /* rank 0's parameters and iteration (a snapshot or weights file read there) on every rank;
   * the history: each rank keeps the one of the ranges it owns */
  float *v = ct_net_param_buffer(net);
  if (!v) return ct_fail(err, CT_EIO, "the parameters could not be brought to the host");
  const size_t n = ct_net_param_total(net);
  for (int k = -1; k < upd->nsets; k++) {
    float *b = v;
    if (k >= 0) CT_TRY(ct_update_history_host(upd, k, &b, err));
    for (size_t off = 0; off < n;) {
      int m = n - off > (size_t)(1 << 30) ? 1 << 30 : (int)(n - off);
      PART_WAIT(c->p, MPI_Ibcast(b + off, m, MPI_FLOAT, 0, c->p->all, &req_), c->p->all, -1,
                "sending rank 0's parameters and history", err);
      off += (size_t)m;
    }
  }
  PART_WAIT(c->p, MPI_Ibcast(iter, 1, MPI_INT, 0, c->p->all, &req_), c->p->all, -1, "sending rank 0's iteration",
            err);
  c->iter = c->fresh = c->fresh_vals = *iter;
  return CT_OK;
}

/* The group's gradient norm is over every rank's own ranges (each gradient lives on its owner
 * alone); when it exceeds clip_gradients every rank scales its own by the same factor, and the
 * rule's own clipping, seeing a local norm below the threshold, leaves them. */
static ct_status clip_group(part_cluster *c, ct_error *err) {
  const float clip = c->upd->sp->clip_gradients;
  if (!(clip >= 0)) return CT_OK;
  float *g = ct_net_diff_buffer(c->net);
  if (!g) return ct_fail(err, CT_EIO, "the gradients could not be brought to the host");
  const int me = c->p->rank;
  double ss = 0;
  for (int k = 0; k < c->nown[me]; k++)
    for (size_t e = 0; e < c->own[me][k].n; e++) ss += (double)g[c->own[me][k].off + e] * g[c->own[me][k].off + e];
  for (int k = 0; k < c->nshared && me == 0; k++) /* the same sums on every rank: counted once */
    for (size_t e = 0; e < c->shared[k].n; e++) ss += (double)g[c->shared[k].off + e] * g[c->shared[k].off + e];
  PART_WAIT(c->p, MPI_Iallreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, c->p->comm, &req_), c->p->comm, -1,
            "summing the gradient norm over the processes", err);
  c->p->sent += sizeof ss;
  const double norm = sqrt(ss);
  if (norm <= clip) return CT_OK;
  const float f = (float)(clip / norm);
  for (int k = 0; k < c->nown[me]; k++)
    for (size_t e = 0; e < c->own[me][k].n; e++) g[c->own[me][k].off + e] *= f;
  for (int k = 0; k < c->nshared; k++)
    for (size_t e = 0; e < c->shared[k].n; e++) g[c->shared[k].off + e] *= f;
  return CT_OK;
}

/* Copies ranges v[0..nv) of g one after the other into q; returns q's end. */
static float *pack_ranges(float *q, const float *g, const range *v, int nv) {
  for (int k = 0; k < nv; k++) {
    memcpy(q, g + v[k].off, v[k].n * sizeof(float));
    q += v[k].n;
  }
  return q;
}

/* The reverse of pack_ranges; returns the end of what was read from q. */
static const float *unpack_ranges(float *g, const float *q, const range *v, int nv) {
  for (int k = 0; k < nv; k++) {
    memcpy(g + v[k].off, q, v[k].n * sizeof(float));
    q += v[k].n;
  }
  return q;
}

/* The gradient's ranges v[0..nv) (n floats in all, packed through buf) summed over comm and
 * divided by the worker groups: one group's gradient over the groups' whole batch. */
static ct_status sum_ranges(part_cluster *c, const range *v, int nv, size_t n, float *buf, MPI_Comm comm,
                            const char *what, ct_error *err) {
  if (n > (size_t)INT32_MAX) return ct_fail(err, CT_EINVAL, "%s: %zu values are too many for one message", what, n);
  float *g = ct_net_diff_buffer(c->net);
  if (!g) return ct_fail(err, CT_EIO, "the gradients could not be brought to the host");
  pack_ranges(buf, g, v, nv);
  PART_WAIT(c->p, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, comm, &req_), comm, -1, what, err);
  c->p->sent += (double)n * sizeof(float);
  const float inv = 1.0f / (float)c->groups;
  for (size_t e = 0; e < n; e++) buf[e] *= inv;
  unpack_ranges(g, buf, v, nv);
  return CT_OK;
}

/* Several worker groups (data-parallel with each other): each process's own gradient ranges
 * summed with those of the processes at its place in the other groups, which own the same
 * shards. */
static ct_status average_groups(part_cluster *c, ct_error *err) {
  const int me = c->p->rank;
  if (c->groups < 2 || !c->own_total[me]) return CT_OK;
  return sum_ranges(c, c->own[me], c->nown[me], c->own_total[me], c->pack, c->p->peers,
                    "summing the shards' gradients over the worker groups", err);
}

/* The batch layers' gradients: each rank's partial sums over its rows, added up over every
 * rank of every group, so every rank applies the same update. */
static ct_status sum_shared(part_cluster *c, ct_error *err) {
  if (!c->shared_total || c->p->world * c->groups < 2) return CT_OK;
  return sum_ranges(c, c->shared, c->nshared, c->shared_total, c->spack, c->p->all,
                    "summing the batch slices' gradients over the ranks", err);
}

static ct_status pc_update(void *ctx, int iter, float *rate, ct_error *err) {
  part_cluster *c = ctx;
  if (c->pending) {
    *err = c->pending_err;
    return c->pending;
  }
  CT_TRY(average_groups(c, err));
  CT_TRY(sum_shared(c, err));
  CT_TRY(clip_group(c, err));
  *rate = ct_update_apply(c->upd, iter);
  c->iter = iter + 1;
  c->updates++;
  return CT_OK;
}

/* Rank 0 receives every other rank's own ranges (values, then history sets when `history`). */
static ct_status gather_owned(part_cluster *c, bool history, ct_error *err) {
  const int me = c->p->rank, sets = history ? c->upd->nsets : 0;
  float *bufs[3];
  if (!(bufs[0] = ct_net_param_buffer(c->net))) return ct_fail(err, CT_EIO, "the parameters could not be read");
  for (int k = 0; k < sets; k++) CT_TRY(ct_update_history_host(c->upd, k, &bufs[1 + k], err));
  for (int r = 1; r < c->p->world; r++) {
    if (me != 0 && me != r) continue;
    const size_t n = c->own_total[r] * (size_t)(1 + sets);
    if (!n) continue;
    if (n > (size_t)INT32_MAX) return ct_fail(err, CT_EINVAL, "rank %d owns too many parameters for one message", r);
    if (me == r) {
      float *q = c->pack;
      for (int s = 0; s <= sets; s++) q = pack_ranges(q, bufs[s], c->own[r], c->nown[r]);
      c->p->sent += (double)n * sizeof(float);
      PART_WAIT(c->p, MPI_Isend(c->pack, (int)n, MPI_FLOAT, 0, TAG_GATHER, c->p->comm, &req_), c->p->comm, 0,
                "sending rank 0 this rank's parameters", err);
    } else {
      PART_WAIT(c->p, MPI_Irecv(c->pack, (int)n, MPI_FLOAT, r, TAG_GATHER, c->p->comm, &req_), c->p->comm, r,
                "receiving another rank's parameters", err);
      const float *q = c->pack;
      for (int s = 0; s <= sets; s++) q = unpack_ranges(bufs[s], q, c->own[r], c->nown[r]);
    }
  }
  return CT_OK;
}

/* Called by every process after each iteration (the loop's action check): the largest request
 * wins, and rank 0 gets the whole parameters when it will use them next. */
static ct_status pc_agree(void *ctx, int request, int *agreed, ct_error *err) {
  part_cluster *c = ctx;
  *agreed = request;
  if (c->pending || !c->p) return CT_OK;
  PART_WAIT(c->p, MPI_Iallreduce(&request, agreed, 1, MPI_INT, MPI_MAX, c->p->all, &req_), c->p->all, -1,
            "agreeing on the next action", err);
  c->p->sent += sizeof *agreed;
  const Caffe__SolverParameter *sp = c->upd->sp;
  const bool snap = *agreed > 0 || (sp->snapshot > 0 && c->iter % sp->snapshot == 0) || c->iter >= sp->max_iter;
  const bool test = sp->test_interval > 0 && c->iter % sp->test_interval == 0;
  /* every group holds the same parameters: rank 0's group gathers them */
  if ((snap || test) && c->p->world > 1 && c->p->group == 0) {
    c->pending = gather_owned(c, snap, &c->pending_err);
    if (!c->pending) c->fresh_vals = c->iter;
    if (snap && !c->pending) c->fresh = c->iter;
  }
  return CT_OK;
}

/* A snapshot or test the loop did not plan (pycaffe's snapshot() or test() after a step(n)
 * that stopped short of one): every rank of group 0 sends rank 0 its own ranges, values and
 * (history) the update history, unless rank 0 already has them from this iteration. Every
 * process calls it (a collective); where the loop tests, pc_agree has gathered already, so
 * rank 0 calling it alone does nothing. */
static ct_status pc_sync(void *ctx, bool history, ct_error *err) {
  part_cluster *c = ctx;
  if (c->pending) {
    *err = c->pending_err;
    return c->pending;
  }
  if (!c->p || c->p->world < 2 || c->p->group != 0 || (history ? c->fresh : c->fresh_vals) == c->iter) return CT_OK;
  CT_TRY(gather_owned(c, history, err));
  c->fresh_vals = c->iter;
  if (history) c->fresh = c->iter;
  return CT_OK;
}

static ct_status pc_collect(void *ctx, ct_error *err) {
  part_cluster *c = ctx;
  if (!c->pending) return CT_OK;
  *err = c->pending_err;
  return c->pending;
}

static ct_status pc_nothing(void *ctx, ct_error *err) {
  (void)ctx, (void)err;
  return CT_OK;
}

static void pc_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  part_cluster *c = ctx;
  *bytes = c->p ? c->p->sent : 0;
  *wait_s = 0;
  *updates = c->updates;
  if (c->p) c->p->sent = 0;
  c->updates = 0;
}

static void pc_destroy(void *ctx, bool clean) {
  (void)clean; /* cluster.c finalizes MPI */
  part_cluster *c = ctx;
  for (int r = 0; c->own && c->p && r <= c->p->world; r++) free(c->own[r]);
  free(c->spack);
  ct_dist_part_free(c->p, c->net);
  free(c->own);
  free(c->nown);
  free(c->own_total);
  free(c->pack);
  free(c);
}

static const ct_cluster_ops k_part_ops = {.start = pc_start, .update = pc_update, .serve = pc_nothing,
                                          .collect = pc_collect, .finish = pc_nothing, .stats = pc_stats,
                                          .destroy = pc_destroy, .agree_action = pc_agree,
                                          .sync = pc_sync};

ct_status ct_dist_part_cluster_create(int groups, void **ctx, const ct_cluster_ops **ops, ct_error *err) {
  part_cluster *c = calloc(1, sizeof *c);
  if (!(*ctx = c)) return ct_fail(err, CT_ENOMEM, "out of memory");
  c->groups = groups;
  *ops = &k_part_ops;
  return CT_OK;
}
