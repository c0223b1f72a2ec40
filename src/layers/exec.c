/* Running a layer's plan: every partition's forward or backward, concurrently on the net's pool
 * (each on its own driver, bracketed by the driver's enter/leave), the first failure reported
 * with the layer and the device; and the parameter gradients of a partitioned layer summed into
 * the blobs' diffs in partition order, so that a run does not depend on thread timing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/status.h"
#include "layers/layer.h"

static ct_copy_stats *stats_of(const ct_layer *l) { return l->place ? &l->place->stats : NULL; }

ct_status ct_part_io(const ct_layer *l, const ct_part *p, ct_tensor *t, ct_side side, ct_access mode, float **out,
                     ct_error *err) {
  size_t first, n;
  ct_part_span(p, t, &first, &n);
  return ct_tensor_deref(t, side, p->d->mem, mode, first, first + n, stats_of(l), out, err);
}

ct_status ct_part_all(const ct_layer *l, const ct_part *p, ct_tensor *t, ct_side side, ct_access mode, float **out,
                      ct_error *err) {
  return ct_tensor_deref(t, side, p->d->mem, mode, 0, t->count, stats_of(l), out, err);
}

ct_status ct_part_param_grad(const ct_layer *l, const ct_part *p, int j, float **out, ct_error *err) {
  ct_tensor *g = l->plan.n > 1 && l->part_grad ? l->part_grad[j] : NULL;
  if (!g) return ct_part_all(l, p, l->blobs[j], CT_DIFF, CT_READWRITE, out, err);
  size_t c = l->blobs[j]->count;
  float *base;
  CT_TRY(ct_tensor_deref(g, CT_DATA, p->d->mem, CT_READWRITE, (size_t)p->index * c, (size_t)(p->index + 1) * c,
                         stats_of(l), &base, err));
  *out = base + (size_t)p->index * c;
  return CT_OK;
}

ct_status ct_layer_loss_scale(const ct_layer *l, float *scale, ct_error *err) {
  float *g;
  CT_TRY(ct_tensor_deref(l->top[0], CT_DIFF, &ct_mem_host, CT_READ, 0, 1, stats_of(l), &g, err));
  *scale = g[0];
  return CT_OK;
}

ct_status ct_layer_host_value(const ct_layer *l, ct_tensor *t, size_t i, float *v, ct_error *err) {
  float *h;
  CT_TRY(ct_tensor_deref(t, CT_DATA, &ct_mem_host, CT_READ, i, i + 1, stats_of(l), &h, err));
  *v = h[i];
  return CT_OK;
}

ct_status ct_layer_set_scalar(const ct_layer *l, ct_tensor *t, float v, ct_error *err) {
  float *y;
  CT_TRY(ct_tensor_deref(t, CT_DATA, &ct_mem_host, CT_WRITE, 0, 1, stats_of(l), &y, err));
  y[0] = v;
  return CT_OK;
}

/* ---------------------------------------------------------------- running the partitions */

typedef struct run_ctx {
  ct_layer *l;
  bool backward;
  pthread_mutex_t mu;
  ct_status st;
  ct_error *err;
} run_ctx;

/* The first failure, named: "layer "x" (T) on <device>: <reason>". */
static void record(run_ctx *r, const ct_part *p, ct_status s, const ct_error *e) {
  const ct_layer *l = r->l;
  pthread_mutex_lock(&r->mu);
  if (r->st == CT_OK) {
    r->st = s;
    if (!e->msg[0]) {
      char why[800];
      if (p->d->ops->error_message)
        p->d->ops->error_message(p->d, why, sizeof why);
      else
        snprintf(why, sizeof why, "%s", ct_status_name(s));
      ct_fail(r->err, s, "layer \"%s\" (%s) on %s: %s", l->name, l->ops->type, p->d->name, why);
    } else if (strncmp(e->msg, "layer \"", 7) != 0) {
      ct_fail(r->err, s, "layer \"%s\" (%s) on %s: %s", l->name, l->ops->type, p->d->name, e->msg);
    } else if (r->err) {
      *r->err = *e;
    }
  }
  pthread_mutex_unlock(&r->mu);
}

/* Zeroes partition p's private gradients (backward accumulates into them). */
static ct_status clear_part_grads(ct_layer *l, const ct_part *p, ct_error *err) {
  if (l->plan.n < 2 || !l->part_grad) return CT_OK;
  for (int j = 0; j < l->nblobs; j++) {
    if (!l->param_propagate_down[j] || !l->part_grad[j]) continue;
    size_t c = l->blobs[j]->count;
    float *g;
    CT_TRY(ct_tensor_deref(l->part_grad[j], CT_DATA, p->d->mem, CT_WRITE, (size_t)p->index * c,
                           (size_t)(p->index + 1) * c, stats_of(l), &g, err));
    CT_TRY(p->d->ops->memset(p->d, g + (size_t)p->index * c, 0, c * sizeof(float)));
  }
  return CT_OK;
}

static void run_part(void *ctx, int i) {
  run_ctx *r = ctx;
  ct_layer *l = r->l;
  const ct_part *p = &l->plan.part[i];
  ct_error e;
  e.status = CT_OK;
  e.msg[0] = 0;
  if (p->d->ops->enter) p->d->ops->enter(p->d, p->threads);
  ct_status s = CT_OK;
  if (r->backward) {
    s = clear_part_grads(l, p, &e);
    if (!s) s = l->ops->backward(l, p, &e);
  } else {
    s = l->ops->forward(l, p, &e);
  }
  if (p->d->ops->leave) p->d->ops->leave(p->d);
  if (s) record(r, p, s, &e);
}

static ct_status run_plan(ct_layer *l, bool backward, ct_error *err) {
  run_ctx r = {.l = l, .backward = backward, .st = CT_OK, .err = err};
  /* each driver of the plan once, in plan order, for the pass's process-wide settings */
  const ct_driver *ds[CT_MAX_PARTITIONS];
  int nd = 0;
  for (int i = 0; i < l->plan.n; i++) {
    bool seen = false;
    for (int k = 0; k < nd; k++) seen |= ds[k] == l->plan.part[i].d;
    if (!seen) ds[nd++] = l->plan.part[i].d;
  }
  for (int k = 0; k < nd; k++)
    if (ds[k]->ops->region) ds[k]->ops->region(ds[k], true);
  pthread_mutex_init(&r.mu, NULL);
  if (l->plan.n == 1 || !l->place)
    for (int i = 0; i < l->plan.n && r.st == CT_OK; i++) run_part(&r, i);
  else
    ct_pool_run(l->place->pool, l->plan.n, run_part, &r);
  pthread_mutex_destroy(&r.mu);
  for (int k = nd - 1; k >= 0; k--)
    if (ds[k]->ops->region) ds[k]->ops->region(ds[k], false);
  return r.st;
}

/* ---------------------------------------------------------------- gradient sums */

typedef struct reduce_ctx {
  const ct_driver *d;
  int nparts;
  size_t count;
  float *diff;
  const float *rows;
  ct_status st;
} reduce_ctx;

/* diff[b, e) += row 0 + row 1 + ... in that order, element by element */
static void reduce_range(void *ctx, int part, int nchunks) {
  reduce_ctx *r = ctx;
  size_t b = r->count * (size_t)part / (size_t)nchunks, e = r->count * (size_t)(part + 1) / (size_t)nchunks;
  for (int i = 0; i < r->nparts && b < e; i++) {
    ct_status s = r->d->ops->add(r->d, e - b, r->diff + b, r->rows + (size_t)i * r->count + b, r->diff + b);
    if (s) r->st = s;
  }
}

typedef struct reduce_job {
  reduce_ctx *r;
  int chunks;
} reduce_job;

static void reduce_task(void *ctx, int i) {
  reduce_job *j = ctx;
  reduce_range(j->r, i, j->chunks);
}

static ct_status sum_part_grads(ct_layer *l, ct_error *err) {
  if (l->plan.n < 2 || !l->part_grad) return CT_OK;
  const ct_driver *m = l->place ? l->place->driver[l->place->master] : ct_driver_cpu();
  for (int j = 0; j < l->nblobs; j++) {
    if (!l->param_propagate_down[j] || !l->part_grad[j]) continue;
    reduce_ctx r = {.d = m, .nparts = l->plan.n, .count = l->blobs[j]->count, .st = CT_OK};
    float *rows;
    CT_TRY(ct_tensor_deref(l->blobs[j], CT_DIFF, m->mem, CT_READWRITE, 0, r.count, stats_of(l), &r.diff, err));
    CT_TRY(ct_tensor_deref(l->part_grad[j], CT_DATA, m->mem, CT_READ, 0, l->part_grad[j]->count, stats_of(l), &rows,
                           err));
    r.rows = rows;
    /* large gradients split by element over the pool (each element still sums in order) */
    int chunks = l->place && m->mem == &ct_mem_host && r.count >= 8192 ? ct_pool_size(l->place->pool) : 1;
    reduce_job job = {&r, chunks};
    if (chunks > 1)
      ct_pool_run(l->place->pool, chunks, reduce_task, &job);
    else
      reduce_range(&r, 0, 1);
    if (r.st) {
      char why[800] = "";
      if (m->ops->error_message) m->ops->error_message(m, why, sizeof why);
      return ct_fail(err, r.st, "layer \"%s\" (%s) on %s: summing the partitions' gradients: %s", l->name,
                     l->ops->type, m->name, why);
    }
  }
  return CT_OK;
}

ct_status ct_layer_forward(ct_layer *l, ct_error *err) {
  if (l->ops->begin_forward) CT_TRY(l->ops->begin_forward(l, err));
  return run_plan(l, false, err);
}

ct_status ct_layer_backward(ct_layer *l, ct_error *err) {
  if (!l->ops->backward) return CT_OK;
  CT_TRY(run_plan(l, true, err));
  return sum_part_grads(l, err);
}
