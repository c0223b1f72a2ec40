/* The workers of one process as threads; see local.h. One mutex and one condition variable
 * guard every handshake (a handful of threads, a few handshakes per iteration). */
#include "dist/local.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"

typedef struct lgroup {
  int group, first, n; /* local workers first .. first + n - 1; first leads */
  bool leads;
  /* under w->mu */
  long go;       /* the members may compute iterations [0, go) (counted from the start) */
  long released; /* iterations the leader has completed */
  int arrived;   /* members whose gradient of the current iteration is ready */
  bool finished; /* the leader stopped: so do the members */
} lgroup;

typedef struct lworker {
  ct_local *w;
  int k, lg;
  ct_net *net; /* k >= 1: owned */
  pthread_t thread;
  bool started;
  int iter;
  long done; /* iterations completed */
} lworker;

struct ct_local {
  ct_topology t;
  const Caffe__SolverParameter *sp;
  int first; /* the first worker (in the job) hosted here */
  int nworkers, ngroups;
  lworker *workers;
  lgroup *groups;
  size_t total;
  ct_local_update_fn update;
  void *ctx;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int limit;     /* thread leaders stop at this iteration */
  int reached;   /* the iteration worker 0 (the solver's loop) has reached */
  bool stop;     /* a failure or ct_local_free: every thread leaves */
  bool ending;   /* ct_local_finish was called */
  bool failed;
  ct_status fail_st;
  ct_error fail_err;
  int running;   /* local groups whose leader still iterates */
  /* ct_local_barrier */
  int b_arrived;
  long b_gen;
  bool b_busy;
  ct_status b_st;
  ct_error b_err;
};

ct_status ct_local_create(const ct_topology *t, int rank, const Caffe__SolverParameter *sp, ct_local **out,
                          ct_error *err) {
  *out = NULL;
  int first, n = ct_topology_workers_on(t, rank, &first);
  if (n < 1) return ct_fail(err, CT_EINTERNAL, "process %d hosts no worker", rank);
  ct_local *w = calloc(1, sizeof *w);
  if (!w) return ct_fail(err, CT_ENOMEM, "out of memory");
  w->t = *t;
  w->sp = sp;
  w->first = first;
  w->nworkers = n;
  w->limit = sp->max_iter;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->workers = calloc((size_t)n, sizeof *w->workers);
  w->groups = calloc((size_t)n, sizeof *w->groups);
  if (!w->workers || !w->groups) {
    ct_local_free(w);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  int J = t->nworkers_per_group;
  for (int k = 0; k < n; k++) {
    int g = (first + k) / J;
    if (k == 0 || g != w->groups[w->ngroups - 1].group) {
      lgroup *lg = &w->groups[w->ngroups++];
      lg->group = g;
      lg->first = k;
      lg->leads = (first + k) % J == 0;
    }
    w->groups[w->ngroups - 1].n++;
    w->workers[k] = (lworker){.w = w, .k = k, .lg = w->ngroups - 1};
  }
  w->running = w->ngroups;
  *out = w;
  return CT_OK;
}

int ct_local_nworkers(const ct_local *w) { return w->nworkers; }
int ct_local_ngroups(const ct_local *w) { return w->ngroups; }
int ct_local_group(const ct_local *w, int lg) { return w->groups[lg].group; }
bool ct_local_leads(const ct_local *w, int lg) { return w->groups[lg].leads; }
ct_net *ct_local_net(ct_local *w, int lg) { return w->workers[w->groups[lg].first].net; }

ct_status ct_local_build(ct_local *w, ct_net *net0, int iter, const ct_net_builder *nets, ct_error *err) {
  w->total = ct_net_param_total(net0);
  w->workers[0].net = net0;
  for (int k = 0; k < w->nworkers; k++) w->workers[k].iter = iter;
  w->reached = iter;
  if (iter >= w->limit) w->limit = iter; /* nothing left: the threads start finished */
  for (int k = 1; k < w->nworkers; k++) {
    lworker *x = &w->workers[k];
    if (!nets) return ct_fail(err, CT_EINTERNAL, "worker threads need a net builder");
    CT_TRY(nets->build(nets->ctx, &x->net, err));
    CT_TRY(ct_net_set_partitions(x->net, ct_net_partitions(net0), err));
    if (ct_net_param_total(x->net) != w->total)
      return ct_fail(err, CT_EINTERNAL, "worker %d's net has %zu parameters, worker %d's %zu", w->first + k,
                     ct_net_param_total(x->net), w->first, w->total);
    memcpy(ct_net_param_buffer(x->net), ct_net_param_buffer(net0), w->total * sizeof(float));
    ct_dist_place_worker(x->net, net0, &w->t, w->first, w->first + k);
  }
  /* members may compute their first iteration right away */
  for (int g = 0; g < w->ngroups; g++) w->groups[g].go = iter < w->limit ? 1 : 0;
  return CT_OK;
}

static void fail_locked(ct_local *w, ct_status st, const ct_error *e) {
  if (!w->failed) {
    w->failed = true;
    w->fail_st = st;
    if (e)
      w->fail_err = *e;
    else
      ct_fail(&w->fail_err, st, "a worker failed");
  }
  pthread_cond_broadcast(&w->cv);
}

static ct_status failure(ct_local *w, ct_error *err) {
  if (err) *err = w->fail_err;
  return w->fail_st;
}

/* One iteration's gradient on worker x's net. */
static ct_status gradient(lworker *x, ct_error *err) {
  const Caffe__SolverParameter *sp = x->w->sp;
  ct_net_clear_param_diffs(x->net);
  for (int i = 0; i < sp->iter_size; i++) {
    float loss;
    CT_TRY(ct_net_forward(x->net, &loss, err));
    ct_dist_next_batch(x->net, ct_topology_nworkers(&x->w->t));
    if (!isfinite(loss))
      return ct_fail(err, CT_ENUMERIC, "iteration %d: the loss is not finite; lower base_lr or set clip_gradients",
                     x->iter);
    CT_TRY(ct_net_backward(x->net, err));
  }
  return CT_OK;
}

/* The leader's part of an iteration (its gradient is in its net). */
static ct_status lead(ct_local *w, lworker *x, float *rate, ct_error *err) {
  lgroup *g = &w->groups[x->lg];
  pthread_mutex_lock(&w->mu);
  if (g->go <= x->done) { /* the members were held back (the loop went past max_iter): go now */
    g->go = x->done + 1;
    pthread_cond_broadcast(&w->cv);
  }
  while (g->arrived < g->n - 1 && !w->failed && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
  if (w->failed || w->stop) {
    ct_status st = w->failed ? failure(w, err) : ct_fail(err, CT_EINTERNAL, "the workers were stopped");
    pthread_mutex_unlock(&w->mu);
    return st;
  }
  g->arrived = 0;
  pthread_mutex_unlock(&w->mu);
  /* the members wait for their release: their gradients are stable */
  float *sum = ct_net_diff_buffer(x->net);
  for (int k = g->first + 1; k < g->first + g->n; k++) {
    const float *d = ct_net_diff_buffer(w->workers[k].net);
    for (size_t i = 0; i < w->total; i++) sum[i] += d[i];
  }
  CT_TRY(w->update(w->ctx, x->lg, x->iter, rate, err));
  const float *p = ct_net_param_buffer(x->net);
  for (int k = g->first + 1; k < g->first + g->n; k++)
    memcpy(ct_net_param_buffer(w->workers[k].net), p, w->total * sizeof(float));
  pthread_mutex_lock(&w->mu);
  g->released++;
  x->done++;
  if (x->iter + 1 < w->limit) g->go = x->done + 1; /* the next iteration, in parallel */
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return CT_OK;
}

static void *member_main(lworker *x) {
  ct_local *w = x->w;
  lgroup *g = &w->groups[x->lg];
  ct_error e;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (g->go <= x->done && !g->finished && !w->stop && !w->failed) pthread_cond_wait(&w->cv, &w->mu);
    if (g->go <= x->done) break;
    pthread_mutex_unlock(&w->mu);
    ct_status st = gradient(x, &e);
    pthread_mutex_lock(&w->mu);
    if (st) {
      ct_error_prefix(&e, "worker %d (thread)", w->first + x->k);
      fail_locked(w, st, &e);
      break;
    }
    g->arrived++;
    pthread_cond_broadcast(&w->cv);
    while (g->released <= x->done && !g->finished && !w->stop && !w->failed) pthread_cond_wait(&w->cv, &w->mu);
    if (g->released <= x->done) break;
    x->done++;
    x->iter++;
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void *leader_main(lworker *x) {
  ct_local *w = x->w;
  lgroup *g = &w->groups[x->lg];
  ct_error e;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    bool go = x->iter < w->limit && !w->stop && !w->failed;
    pthread_mutex_unlock(&w->mu);
    if (!go) break;
    ct_status st = gradient(x, &e);
    if (!st) st = lead(w, x, &(float){0}, &e);
    if (st) {
      ct_error_prefix(&e, "worker %d (thread, worker group %d)", w->first + x->k, g->group);
      pthread_mutex_lock(&w->mu);
      fail_locked(w, st, &e);
      pthread_mutex_unlock(&w->mu);
      break;
    }
    x->iter++;
  }
  pthread_mutex_lock(&w->mu);
  g->finished = true;
  w->running--;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void *worker_main(void *arg) {
  lworker *x = arg;
  return x->k == x->w->groups[x->lg].first ? leader_main(x) : member_main(x);
}

ct_status ct_local_run(ct_local *w, ct_local_update_fn update, void *ctx, ct_error *err) {
  w->update = update;
  w->ctx = ctx;
  for (int k = 1; k < w->nworkers; k++) {
    if (pthread_create(&w->workers[k].thread, NULL, worker_main, &w->workers[k]) != 0) {
      ct_local_stop(w);
      return ct_fail(err, CT_ENOMEM, "cannot start the thread of worker %d", w->first + k);
    }
    w->workers[k].started = true;
  }
  return CT_OK;
}

ct_status ct_local_update(ct_local *w, int iter, float *rate, ct_error *err) {
  lworker *x = &w->workers[0];
  pthread_mutex_lock(&w->mu);
  bool failed = w->failed;
  pthread_mutex_unlock(&w->mu);
  if (failed) return failure(w, err);
  x->iter = iter;
  ct_status st = lead(w, x, rate, err);
  pthread_mutex_lock(&w->mu);
  if (st)
    fail_locked(w, st, err);
  else
    w->reached = iter + 1;
  pthread_mutex_unlock(&w->mu);
  return st;
}

ct_status ct_local_barrier(ct_local *w, ct_status (*fn)(void *arg, ct_error *err), void *arg, ct_error *err) {
  pthread_mutex_lock(&w->mu);
  long gen = w->b_gen;
  w->b_arrived++;
  for (;;) {
    if (w->b_gen != gen) { /* done by another leader */
      ct_status st = w->b_st;
      if (st && err) *err = w->b_err;
      pthread_mutex_unlock(&w->mu);
      return st;
    }
    if (w->failed) {
      ct_status st = failure(w, err);
      pthread_mutex_unlock(&w->mu);
      return st;
    }
    if (w->stop) {
      pthread_mutex_unlock(&w->mu);
      return ct_fail(err, CT_EINTERNAL, "the workers were stopped");
    }
    if (w->ending) { /* worker 0 is done: no more meetings */
      pthread_mutex_unlock(&w->mu);
      return CT_OK;
    }
    if (!w->b_busy && w->b_arrived >= w->running) break; /* everybody is here: this one runs fn */
    pthread_cond_wait(&w->cv, &w->mu);
  }
  w->b_busy = true;
  pthread_mutex_unlock(&w->mu);
  ct_error e;
  ct_status st = fn(arg, &e);
  pthread_mutex_lock(&w->mu);
  w->b_st = st;
  if (st) w->b_err = e;
  w->b_arrived = 0;
  w->b_busy = false;
  w->b_gen++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  if (st && err) *err = e;
  return st;
}

static void join_all(ct_local *w) {
  for (int k = 1; k < w->nworkers; k++)
    if (w->workers[k].started) {
      pthread_join(w->workers[k].thread, NULL);
      w->workers[k].started = false;
    }
}

ct_status ct_local_finish(ct_local *w, ct_error *err) {
  pthread_mutex_lock(&w->mu);
  if (w->reached < w->limit) w->limit = w->reached; /* the threads stop where the solver's loop stopped */
  w->ending = true;
  if (!w->groups[0].finished) {
    w->groups[0].finished = true;
    w->running--;
  }
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  join_all(w);
  if (w->failed) return failure(w, err);
  return CT_OK;
}

void ct_local_stop(ct_local *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void ct_local_free(ct_local *w) {
  if (!w) return;
  ct_local_stop(w);
  if (w->workers) {
    join_all(w);
    for (int k = 1; k < w->nworkers; k++) ct_net_free(w->workers[k].net);
  }
  free(w->workers);
  free(w->groups);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

/* ---- the one-process backend: one worker group of several workers as threads ---- */

typedef struct one_ctx {
  ct_topology t;
  const Caffe__SolverParameter *sp;
  ct_local *w;
  ct_update_ctx *upd;
  int updates;
} one_ctx;

static ct_status one_group_update(void *ctx, int lg, int iter, float *rate, ct_error *err) {
  (void)lg, (void)err;
  one_ctx *c = ctx;
  const float scale = 1.0f / (float)c->t.nworkers_per_group; /* the members' gradients averaged */
  float *d = c->upd->diff;
  for (size_t i = 0; i < c->upd->total; i++) d[i] *= scale;
  *rate = ct_update_apply(c->upd, iter); /* the servers' rule on the whole: the same numbers */
  return CT_OK;
}

static ct_status one_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                           ct_error *err) {
  one_ctx *c = ctx;
  c->upd = upd;
  CT_TRY(ct_local_create(&c->t, 0, c->sp, &c->w, err));
  CT_TRY(ct_local_build(c->w, net, *iter, nets, err));
  return ct_local_run(c->w, one_group_update, c, err);
}
static ct_status one_update(void *ctx, int iter, float *rate, ct_error *err) {
  one_ctx *c = ctx;
  CT_TRY(ct_local_update(c->w, iter, rate, err));
  c->updates++;
  return CT_OK;
}
static ct_status one_serve(void *ctx, ct_error *err) {
  (void)ctx;
  return ct_fail(err, CT_EINTERNAL, "a one-process cluster has no server-only process");
}
static ct_status one_collect(void *ctx, ct_error *err) {
  (void)ctx, (void)err;
  return CT_OK; /* worker 0's net and the solver's history are the group's */
}
static ct_status one_finish(void *ctx, ct_error *err) {
  one_ctx *c = ctx;
  return c->w ? ct_local_finish(c->w, err) : CT_OK;
}
static void one_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  one_ctx *c = ctx;
  *bytes = 0, *wait_s = 0, *updates = c->updates;
  c->updates = 0;
}
static void one_destroy(void *ctx, bool clean) {
  (void)clean;
  one_ctx *c = ctx;
  if (!c) return;
  ct_local_free(c->w);
  free(c);
}
static const ct_cluster_ops k_one_ops = {
    .start = one_start, .update = one_update, .serve = one_serve, .collect = one_collect,
    .finish = one_finish, .stats = one_stats, .destroy = one_destroy,
};

ct_status ct_dist_local_create(const ct_topology *t, const Caffe__SolverParameter *sp, void **ctx,
                               const ct_cluster_ops **ops, ct_error *err) {
  if (t->nworker_groups != 1)
    return ct_fail(err, CT_EINTERNAL, "one process with %d worker groups of %d workers", t->nworker_groups,
                   t->nworkers_per_group);
  one_ctx *c = calloc(1, sizeof *c);
  if (!c) return ct_fail(err, CT_ENOMEM, "out of memory");
  c->t = *t;
  c->sp = sp;
  *ctx = c;
  *ops = &k_one_ops;
  return CT_OK;
}
