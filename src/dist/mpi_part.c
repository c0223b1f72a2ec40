/* Bridges between processes for a partitioned net (part.h): non-blocking sends from staging
 * buffers that live as long as the bridge (grown once, on the first pass), blocking receives
 * straight into the reader's tensor, and one wait for the pass's sends at its end. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "dist/cluster.h"
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
  MPI_Comm comm;
  int rank, world;
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

static ct_status send_bridge(void *ctx, int to, int tag, const float *v, size_t n, ct_error *err) {
  ct_dist_part *p = ctx;
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
  int rc = MPI_Recv(v, (int)n, MPI_FLOAT, from, tag, p->comm, MPI_STATUS_IGNORE);
  return rc == MPI_SUCCESS ? CT_OK : mpi_fail(err, rc, "receiving a bridge");
}

static ct_status flush_bridges(void *ctx, ct_error *err) {
  ct_dist_part *p = ctx;
  for (int k = 0; k < p->nslots; k++)
    if (p->slots[k].busy) {
      int rc = MPI_Wait(&p->slots[k].req, MPI_STATUS_IGNORE);
      p->slots[k].busy = false;
      if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "finishing a bridge");
    }
  return CT_OK;
}

ct_status ct_dist_part_create(ct_net *net, ct_dist_part **out, ct_error *err) {
  *out = NULL;
  int world, rank;
  CT_TRY(ct_dist_mpi_init(&world, &rank, err));
  ct_dist_part *p = calloc(1, sizeof *p);
  if (!p) return ct_fail(err, CT_ENOMEM, "out of memory");
  p->rank = rank;
  p->world = world;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &p->comm);
  if (rc != MPI_SUCCESS) {
    free(p);
    return mpi_fail(err, rc, "MPI_Comm_dup");
  }
  MPI_Comm_set_errhandler(p->comm, MPI_ERRORS_RETURN);
  ct_bridge_ops ops = {.ctx = p, .rank = rank, .rank_of = rank_of, .send = send_bridge, .recv = recv_bridge,
                       .flush = flush_bridges};
  ct_status st = ct_net_set_bridges(net, &ops, err);
  if (st) {
    MPI_Comm_free(&p->comm);
    free(p);
    return st;
  }
  *out = p;
  return CT_OK;
}

void ct_dist_part_free(ct_dist_part *p, ct_net *net) {
  if (!p) return;
  ct_error e;
  if (net) ct_net_set_bridges(net, NULL, &e);
  (void)flush_bridges(p, &e);
  for (int k = 0; k < p->nslots; k++) free(p->slots[k].buf);
  free(p->slots);
  MPI_Comm_free(&p->comm);
  free(p);
}

int ct_dist_part_rank(const ct_dist_part *p) { return p->rank; }
int ct_dist_part_world(const ct_dist_part *p) { return p->world; }

ct_status ct_dist_part_sum(ct_dist_part *p, float *v, size_t n, ct_error *err) {
  for (size_t off = 0; off < n;) { /* in pieces an int can count */
    int k = n - off > (size_t)(1 << 30) ? 1 << 30 : (int)(n - off);
    p->sent += (double)k * sizeof(float);
    int rc = MPI_Allreduce(MPI_IN_PLACE, v + off, k, MPI_FLOAT, MPI_SUM, p->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "summing over the processes");
    off += (size_t)k;
  }
  return CT_OK;
}

ct_status ct_dist_part_reduce(ct_dist_part *p, ct_net *net, ct_error *err) {
  float *g = ct_net_diff_buffer(net);
  if (!g) return ct_fail(err, CT_EIO, "the gradients could not be brought to the host");
  return ct_dist_part_sum(p, g, ct_net_param_total(net), err);
}

/* ---- the cluster backend (cluster.c picks it): one worker group over every process ---- */

typedef struct part_cluster {
  ct_dist_part *p;
  ct_net *net;
  ct_update_ctx *upd;
  int updates;
} part_cluster;

static ct_status pc_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                          ct_error *err) {
  (void)nets;
  part_cluster *c = ctx;
  c->net = net;
  c->upd = upd;
  CT_TRY(ct_dist_part_create(net, &c->p, err));
  /* rank 0's parameters and iteration (a snapshot or weights file read there) on every rank */
  float *v = ct_net_param_buffer(net);
  if (!v) return ct_fail(err, CT_EIO, "the parameters could not be brought to the host");
  const size_t n = ct_net_param_total(net);
  for (size_t off = 0; off < n;) {
    int k = n - off > (size_t)(1 << 30) ? 1 << 30 : (int)(n - off);
    int rc = MPI_Bcast(v + off, k, MPI_FLOAT, 0, c->p->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "sending rank 0's parameters");
    off += (size_t)k;
  }
  int rc = MPI_Bcast(iter, 1, MPI_INT, 0, c->p->comm);
  return rc == MPI_SUCCESS ? CT_OK : mpi_fail(err, rc, "sending rank 0's iteration");
}

/* Every gradient was made on one process: their sum is the group's gradient, and each process
 * applies the same update to the same parameters (SINGA's group of one server per worker). */
static ct_status pc_update(void *ctx, int iter, float *rate, ct_error *err) {
  part_cluster *c = ctx;
  CT_TRY(ct_dist_part_reduce(c->p, c->net, err));
  *rate = ct_update_apply(c->upd, iter);
  c->updates++;
  return CT_OK;
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
  ct_dist_part_free(c->p, c->net);
  free(c);
}

static const ct_cluster_ops k_part_ops = {.start = pc_start, .update = pc_update, .serve = pc_nothing,
                                          .collect = pc_nothing, .finish = pc_nothing, .stats = pc_stats,
                                          .destroy = pc_destroy};

ct_status ct_dist_part_cluster_create(void **ctx, const ct_cluster_ops **ops, ct_error *err) {
  if (!(*ctx = calloc(1, sizeof(part_cluster)))) return ct_fail(err, CT_ENOMEM, "out of memory");
  *ops = &k_part_ops;
  return CT_OK;
}
