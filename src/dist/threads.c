/* In-process Hogwild: several worker groups in one process, as threads sharing one set of
 * parameters (SINGA's nworkers_per_procs > 1 with one worker per group).
 *
 * The shared parameters and the update history live here, guarded by one mutex. Each group
 * (group 0 is the solver's own loop, groups 1.. are threads with their own train net) computes
 * its gradient on its own copy, then, holding the lock, applies the solver's rule to the shared
 * parameters and copies them back. Groups run asynchronously, each on its own data shard; the
 * lock keeps every read of the shared values whole (C11 data-race free), and is held only for
 * the update and one copy. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

#include "core/status.h"
#include "dist/cluster.h"

typedef struct thr_ctx thr_ctx;

typedef struct group {
  thr_ctx *owner;
  int index;
  ct_net *net; /* groups >= 1: owned */
  pthread_t thread;
  bool started;
  int iter;
  ct_status status;
  ct_error err;
} group;

struct thr_ctx {
  ct_topology t;
  const Caffe__SolverParameter *sp;
  pthread_mutex_t lock;
  ct_update_ctx mu; /* over `shared` */
  bool mu_ok;
  float *shared, *scratch;
  size_t total;
  ct_update_ctx *upd; /* the solver's: its history is copied in and out for snapshots */
  ct_net *net0;
  int ngroups;
  group *groups;
  atomic_int stop, failed;
  atomic_int limit; /* the groups stop at this iteration: max_iter, or where group 0 stopped */
  int reached;      /* the iteration after group 0's last update */
  double wait_s;
  int updates;
};

static const ct_cluster_ops k_thread_ops;

ct_status ct_dist_threads_create(const ct_topology *t, const Caffe__SolverParameter *sp, void **out,
                                 const ct_cluster_ops **ops, ct_error *err) {
  thr_ctx *c = calloc(1, sizeof *c);
  if (!c) return ct_fail(err, CT_ENOMEM, "out of memory");
  c->t = *t;
  c->sp = sp;
  pthread_mutex_init(&c->lock, NULL);
  *out = c;
  *ops = &k_thread_ops;
  return CT_OK;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Applies group g's gradient (in its net's diff buffer) to the shared parameters and copies
 * them back into its net. Returns the rate used. */
static float apply(thr_ctx *c, ct_net *net, int iter) {
  double t0 = now_s();
  pthread_mutex_lock(&c->lock);
  c->wait_s += now_s() - t0;
  c->mu.diff = ct_net_diff_buffer(net);
  float rate = ct_update_apply(&c->mu, iter);
  c->mu.diff = c->scratch;
  memcpy(ct_net_param_buffer(net), c->shared, c->total * sizeof(float));
  c->updates++;
  pthread_mutex_unlock(&c->lock);
  return rate;
}

static void *group_main(void *arg) {
  group *g = arg;
  thr_ctx *c = g->owner;
  const Caffe__SolverParameter *sp = c->sp;
  while (g->iter < atomic_load(&c->limit) && !atomic_load(&c->stop)) {
    ct_net_clear_param_diffs(g->net);
    for (int k = 0; k < sp->iter_size; k++) {
      float loss;
      if ((g->status = ct_net_forward(g->net, &loss, &g->err)) || (g->status = ct_net_backward(g->net, &g->err)))
        goto fail;
      ct_dist_next_batch(g->net, c->ngroups); /* the other groups' blocks (data layers skip them themselves) */
      if (!isfinite(loss)) {
        g->status = ct_fail(&g->err, CT_ENUMERIC, "worker group %d, iteration %d: the loss is not finite", g->index,
                            g->iter);
        goto fail;
      }
    }
    apply(c, g->net, g->iter);
    g->iter++;
  }
  return NULL;
fail:
  ct_error_prefix(&g->err, "worker group %d (thread)", g->index);
  atomic_store(&c->failed, 1);
  return NULL;
}

static ct_status first_failure(thr_ctx *c, ct_error *err) {
  for (int i = 1; i < c->ngroups; i++)
    if (c->groups[i].status) {
      if (err) *err = c->groups[i].err;
      return c->groups[i].status;
    }
  return CT_OK;
}

static ct_status t_update(void *ctx, int iter, float *rate, ct_error *err) {
  thr_ctx *c = ctx;
  if (atomic_load(&c->failed)) return first_failure(c, err);
  *rate = apply(c, c->net0, iter);
  c->reached = iter + 1;
  return CT_OK;
}

static ct_status t_collect(void *ctx, ct_error *err) {
  (void)err;
  thr_ctx *c = ctx;
  pthread_mutex_lock(&c->lock);
  memcpy(ct_net_param_buffer(c->net0), c->shared, c->total * sizeof(float));
  for (int k = 0; k < c->mu.nsets; k++) memcpy(c->upd->history[k], c->mu.history[k], c->total * sizeof(float));
  pthread_mutex_unlock(&c->lock);
  return CT_OK;
}

static void join_all(thr_ctx *c) {
  for (int i = 1; i < c->ngroups; i++)
    if (c->groups[i].started) {
      pthread_join(c->groups[i].thread, NULL);
      c->groups[i].started = false;
    }
}

static ct_status t_finish(void *ctx, ct_error *err) {
  thr_ctx *c = ctx;
  /* the other groups go on to their own max_iter, but no further than group 0 went: a run
   * stopped early (a signal, --iterations) stops them too (issue 23) */
  if (c->reached < atomic_load(&c->limit)) atomic_store(&c->limit, c->reached);
  join_all(c);
  return first_failure(c, err);
}

static ct_status t_serve(void *ctx, ct_error *err) {
  (void)ctx;
  return ct_fail(err, CT_EINTERNAL, "an in-process cluster has no server-only process");
}

static void t_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  thr_ctx *c = ctx;
  pthread_mutex_lock(&c->lock);
  *bytes = 0, *wait_s = c->wait_s, *updates = c->updates;
  c->wait_s = 0, c->updates = 0;
  pthread_mutex_unlock(&c->lock);
}

static void t_destroy(void *ctx, bool clean) {
  (void)clean;
  thr_ctx *c = ctx;
  if (!c) return;
  atomic_store(&c->stop, 1);
  if (c->groups) {
    join_all(c);
    for (int i = 1; i < c->ngroups; i++) ct_net_free(c->groups[i].net);
  }
  free(c->groups);
  if (c->mu_ok) ct_update_free(&c->mu);
  free(c->shared);
  free(c->scratch);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static ct_status t_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                         ct_error *err) {
  thr_ctx *c = ctx;
  c->net0 = net;
  c->upd = upd;
  c->total = ct_net_param_total(net);
  c->shared = malloc((c->total + 1) * sizeof(float));
  c->scratch = calloc(c->total + 1, sizeof(float));
  if (!c->shared || !c->scratch) return ct_fail(err, CT_ENOMEM, "out of memory");
  memcpy(c->shared, ct_net_param_buffer(net), c->total * sizeof(float));
  CT_TRY(ct_update_init(&c->mu, c->sp, c->shared, c->scratch, c->total, ct_net_learnable(net),
                        ct_net_num_learnable(net), err));
  c->mu_ok = true;
  for (int k = 0; k < upd->nsets; k++) memcpy(c->mu.history[k], upd->history[k], c->total * sizeof(float));
  atomic_store(&c->limit, c->sp->max_iter);
  c->reached = *iter;
  c->ngroups = c->t.nworker_groups;
  c->groups = calloc((size_t)c->ngroups, sizeof *c->groups);
  if (!c->groups) return ct_fail(err, CT_ENOMEM, "out of memory");
  for (int i = 1; i < c->ngroups; i++) {
    group *g = &c->groups[i];
    g->owner = c;
    g->index = i;
    g->iter = *iter;
    if (!nets) return ct_fail(err, CT_EINTERNAL, "in-process worker groups need a net builder");
    CT_TRY(nets->build(nets->ctx, &g->net, err));
    CT_TRY(ct_net_set_partitions(g->net, ct_net_partitions(net), err));
    if (ct_net_param_total(g->net) != c->total) return ct_fail(err, CT_EINTERNAL, "worker group %d's net differs", i);
    memcpy(ct_net_param_buffer(g->net), c->shared, c->total * sizeof(float));
    /* data cursors: the restored whole-stream position, then this group's first block */
    ct_dist_place_worker(g->net, net, &c->t, 0, i);
  }
  for (int i = 1; i < c->ngroups; i++) {
    if (pthread_create(&c->groups[i].thread, NULL, group_main, &c->groups[i]) != 0)
      return ct_fail(err, CT_ENOMEM, "cannot start the thread of worker group %d", i);
    c->groups[i].started = true;
  }
  return CT_OK;
}

static const ct_cluster_ops k_thread_ops = {
    .start = t_start, .update = t_update, .serve = t_serve, .collect = t_collect,
    .finish = t_finish, .stats = t_stats, .destroy = t_destroy,
};
