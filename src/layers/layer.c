#include "layers/layer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ct_layer_plan_saved(ct_layer *l, ct_tensor *t) {
  for (int i = 0; i < l->nsaved; i++)
    if (l->saved[i] == t) return;
  if (l->nsaved < 4) l->saved[l->nsaved++] = t;
}

ct_status ct_layer_alloc_blobs(ct_layer *l, int n, ct_error *err) {
  l->blobs = calloc((size_t)(n ? n : 1), sizeof *l->blobs);
  l->param_propagate_down = calloc((size_t)(n ? n : 1), sizeof *l->param_propagate_down);
  if (!l->blobs || !l->param_propagate_down) return ct_fail(err, CT_ENOMEM, "out of memory");
  l->nblobs = n;
  for (int i = 0; i < n; i++) {
    l->blobs[i] = ct_tensor_create();
    if (!l->blobs[i]) return ct_fail(err, CT_ENOMEM, "out of memory");
    l->param_propagate_down[i] = true;
  }
  return CT_OK;
}

ct_status ct_layer_fail(const ct_layer *l, ct_error *err, ct_status s, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ct_fail(err, s, "layer \"%s\" (%s): %s", l->name ? l->name : "?", l->ops->type, msg);
}

ct_status ct_layer_check_axes(const ct_layer *l, int i, int naxes, ct_error *err) {
  if (l->bottom[i]->naxes != naxes) {
    char buf[128];
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom %d must have %d axes, got shape %s", i, naxes,
                         ct_tensor_shape_str(l->bottom[i], buf, sizeof buf));
  }
  return CT_OK;
}

ct_status ct_layer_broadcast_axes(const ct_layer *l, const ct_tensor *x, const ct_tensor *b, int axis_param,
                                  const char *what, size_t *outer, size_t *dim, size_t *inner, ct_error *err) {
  char buf[128], buf2[128];
  int axis = 0;
  if (b->naxes > 0) {
    axis = ct_tensor_axis(x, axis_param);
    if (axis < 0)
      return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", axis_param,
                           ct_tensor_shape_str(x, buf, sizeof buf));
  }
  bool fits = x->naxes >= axis + b->naxes;
  for (int i = 0; fits && i < b->naxes; i++) fits = x->shape[axis + i] == b->shape[i];
  if (!fits)
    return ct_layer_fail(l, err, CT_ESHAPE, "%s shape %s does not match bottom[0] shape %s from axis %d", what,
                         ct_tensor_shape_str(b, buf, sizeof buf), ct_tensor_shape_str(x, buf2, sizeof buf2), axis);
  *outer = ct_tensor_count_range(x, 0, axis);
  *dim = b->count;
  *inner = ct_tensor_count_range(x, axis + b->naxes, x->naxes);
  return CT_OK;
}

const ct_driver *ct_layer_driver(const ct_layer *l) { return l->plan.n ? l->plan.part[0].d : ct_driver_cpu(); }

static bool ops_have(const ct_driver_ops *o, size_t entry) {
  void (*f)(void);
  memcpy(&f, (const char *)o + entry, sizeof f);
  return f != NULL;
}

bool ct_layer_drivers_have(const ct_layer *l, size_t entry) {
  for (int i = 0; i < l->plan.n; i++)
    if (!ops_have(l->plan.part[i].d->ops, entry)) return false;
  return ops_have(ct_layer_driver(l)->ops, entry);
}

bool ct_layer_splits_always(const ct_layer *l) {
  (void)l;
  return true;
}

ct_status ct_part_scratch_reserve(ct_part_scratch *s, const ct_layer *l, size_t bytes, ct_error *err) {
  const int n = l->plan.n ? l->plan.n : 1;
  for (int i = 0; i < n; i++) {
    const ct_driver *d = l->plan.n ? l->plan.part[i].d : ct_driver_cpu();
    if (i < s->n && s->p[i] && s->d[i] == d && s->bytes[i] >= bytes) continue;
    void *p = d->ops->alloc(d, bytes ? bytes : 64);
    if (!p)
      return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu bytes of scratch on %s", bytes, d->name);
    if (i < s->n && s->d[i]) s->d[i]->ops->free(s->d[i], s->p[i]);
    s->p[i] = p;
    s->d[i] = d;
    s->bytes[i] = bytes;
  }
  if (n > s->n) s->n = n;
  return CT_OK;
}

struct ct_ws_pool {
  int n;
  ct_ws_slot slot[CT_MAX_PARTITIONS * CT_MAX_DRIVERS];
  size_t asked;
  size_t asked_private; /* of that, by users whose backward gains from a private one */
  ct_part_scratch **user; /* the scratches that reserved here (NULL: freed since) */
  int nuser, capuser;
  bool keep;     /* users get private workspaces while `asked_private` fits the budget */
  size_t budget; /* bytes */
};

void ct_part_scratch_free(ct_part_scratch *s) {
  for (int i = 0; i < s->n; i++)
    if (s->d[i] && !s->slot[i]) s->d[i]->ops->free(s->d[i], s->p[i]);
  if (s->pool) s->pool->user[s->user] = NULL;
  memset(s, 0, sizeof *s);
}

ct_status ct_ws_pool_create(ct_ws_pool **out, ct_error *err) {
  if (!(*out = calloc(1, sizeof **out))) return ct_fail(err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

void ct_ws_pool_free(ct_ws_pool *pool) {
  if (!pool) return;
  for (int i = 0; i < pool->n; i++)
    if (pool->slot[i].p) pool->slot[i].d->ops->free(pool->slot[i].d, pool->slot[i].p);
  for (int u = 0; u < pool->nuser; u++)
    if (pool->user[u]) pool->user[u]->pool = NULL; /* a layer that outlives the pool */
  free(pool->user);
  free(pool);
}

void ct_ws_pool_bytes(const ct_ws_pool *pool, size_t *held, size_t *asked) {
  *held = *asked = 0;
  if (!pool) return;
  for (int i = 0; i < pool->n; i++) *held += pool->slot[i].bytes;
  for (int u = 0; u < pool->nuser; u++) {
    const ct_part_scratch *s = pool->user[u];
    for (int i = 0; s && i < s->n; i++)
      if (!s->slot[i] && s->p[i]) *held += s->bytes[i];
  }
  *asked = pool->asked;
}

bool ct_ws_pool_keeps(const ct_ws_pool *pool) { return pool && pool->keep; }

ct_status ct_ws_pool_keep(ct_ws_pool *pool, size_t budget, bool *kept, ct_error *err) {
  *kept = false;
  if (!pool || pool->asked_private > budget) return CT_OK;
  for (int u = 0; u < pool->nuser; u++) {
    ct_part_scratch *s = pool->user[u];
    for (int i = 0; s && !s->shared_only && i < s->n; i++) {
      if (!s->slot[i]) continue;
      void *p = s->d[i]->ops->alloc(s->d[i], s->bytes[i]);
      if (!p)
        return ct_fail(err, CT_ENOMEM, "cannot allocate %zu bytes of workspace on %s", s->bytes[i], s->d[i]->name);
      s->p[i] = p;
      s->slot[i] = NULL;
    }
  }
  for (int i = 0; i < pool->n; i++) { /* the shared buffers now serve the shared-only users */
    ct_ws_slot *w = &pool->slot[i];
    size_t most = 0;
    for (int u = 0; u < pool->nuser; u++) {
      const ct_part_scratch *s = pool->user[u];
      for (int k = 0; s && k < s->n; k++)
        if (s->slot[k] == w && s->bytes[k] > most) most = s->bytes[k];
    }
    if (most == w->bytes) continue;
    if (w->p) w->d->ops->free(w->d, w->p);
    w->p = most ? w->d->ops->alloc(w->d, most) : NULL;
    if (most && !w->p) return ct_fail(err, CT_ENOMEM, "cannot allocate %zu bytes of workspace on %s", most, w->d->name);
    w->bytes = most;
    w->last = NULL;
  }
  pool->keep = true;
  pool->budget = budget;
  *kept = true;
  return CT_OK;
}

static ct_status pool_add_user(ct_ws_pool *pool, ct_part_scratch *s, ct_error *err) {
  if (s->pool == pool) return CT_OK;
  if (pool->nuser == pool->capuser) {
    const int cap = pool->capuser ? 2 * pool->capuser : 64;
    ct_part_scratch **u = realloc(pool->user, (size_t)cap * sizeof *u);
    if (!u) return ct_fail(err, CT_ENOMEM, "out of memory");
    pool->user = u;
    pool->capuser = cap;
  }
  s->pool = pool;
  s->user = pool->nuser;
  pool->user[pool->nuser++] = s;
  return CT_OK;
}

static ct_ws_slot *pool_slot(ct_ws_pool *pool, int index, const ct_driver *d) {
  for (int i = 0; i < pool->n; i++)
    if (pool->slot[i].index == index && pool->slot[i].d == d) return &pool->slot[i];
  if (pool->n == CT_MAX_PARTITIONS * CT_MAX_DRIVERS) return NULL;
  ct_ws_slot *w = &pool->slot[pool->n++];
  w->index = index;
  w->d = d;
  return w;
}

ct_status ct_part_workspace_reserve(ct_part_scratch *s, const ct_layer *l, size_t bytes, ct_error *err) {
  ct_ws_pool *pool = l->place ? l->place->ws : NULL;
  if (!pool) return ct_part_scratch_reserve(s, l, bytes, err);
  if (!bytes) bytes = 64;
  CT_TRY(pool_add_user(pool, s, err));
  const int n = l->plan.n ? l->plan.n : 1;
  if (pool->keep && !s->shared_only) { /* private while everything asked fits the budget */
    size_t grow = 0;
    for (int i = 0; i < n; i++) {
      const size_t had = i < s->n && (s->p[i] || s->slot[i]) ? s->bytes[i] : 0;
      if (bytes > had) grow += bytes - had;
    }
    if (pool->asked_private + grow <= pool->budget) {
      for (int i = 0; i < n && i < s->n; i++)
        if (s->slot[i]) s->slot[i] = NULL, s->p[i] = NULL, s->d[i] = NULL, s->bytes[i] = 0;
      CT_TRY(ct_part_scratch_reserve(s, l, bytes, err));
      pool->asked += grow;
      pool->asked_private += grow;
      return CT_OK;
    }
  }
  for (int i = 0; i < n; i++) {
    const ct_driver *d = l->plan.n ? l->plan.part[i].d : ct_driver_cpu();
    if (i < s->n && s->d[i] && !s->slot[i]) { /* a private buffer from before: give it up */
      s->d[i]->ops->free(s->d[i], s->p[i]);
      s->p[i] = NULL;
      s->bytes[i] = 0;
    }
    ct_ws_slot *w = pool_slot(pool, i, d);
    if (!w) return ct_layer_fail(l, err, CT_EINTERNAL, "no shared workspace slot left for partition %d", i);
    if (w->bytes < bytes) {
      void *p = d->ops->alloc(d, bytes);
      if (!p)
        return ct_layer_fail(l, err, CT_ENOMEM, "cannot allocate %zu bytes of workspace on %s", bytes, d->name);
      if (w->p) d->ops->free(d, w->p);
      w->p = p;
      w->bytes = bytes;
      w->last = NULL; /* the contents are gone */
    }
    const size_t before = i < s->n && s->slot[i] == w ? s->bytes[i] : 0;
    if (bytes > before) pool->asked += bytes - before;
    if (bytes > before && !s->shared_only) pool->asked_private += bytes - before;
    s->slot[i] = w;
    s->p[i] = NULL;
    s->d[i] = d;
    if (bytes > before) s->bytes[i] = bytes;
  }
  if (n > s->n) s->n = n;
  return CT_OK;
}

/* ---------------------------------------------------------------- plans */

static bool batch_first(const ct_tensor *t, int N) { return t->naxes >= 1 && t->shape[0] == N; }

/* What automatic shares weigh: FLOPs, bytes moved, and the bytes per image of the first bottom
 * a partition fetches when it lies elsewhere. */
static void work_of(const ct_layer *l, ct_plan_request *rq) {
  rq->flops = l->ops->flops ? l->ops->flops(l) : 0;
  double bytes = 0;
  for (int i = 0; i < l->nbottom; i++) bytes += (double)l->bottom[i]->count * sizeof(float);
  for (int i = 0; i < l->ntop; i++) bytes += (double)l->top[i]->count * sizeof(float);
  rq->bytes = bytes;
  rq->copy_bytes = l->nbottom && rq->N > 0 ? (double)l->bottom[0]->count * sizeof(float) / rq->N : 0;
}

static ct_status fit_part_grads(ct_layer *l, ct_error *err) {
  if (l->plan.n < 2 || !l->nblobs) return CT_OK;
  if (!l->part_grad) {
    l->part_grad = calloc((size_t)l->nblobs, sizeof *l->part_grad);
    if (!l->part_grad) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  }
  for (int j = 0; j < l->nblobs; j++) {
    if (!l->part_grad[j] && !(l->part_grad[j] = ct_tensor_create()))
      return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    int shape[2] = {l->plan.n, (int)l->blobs[j]->count};
    CT_TRY(ct_tensor_reshape(l->part_grad[j], 2, shape, err));
  }
  return CT_OK;
}

void ct_layer_free_part_grads(ct_layer *l) {
  for (int j = 0; l->part_grad && j < l->nblobs; j++) ct_tensor_free(l->part_grad[j]);
  free(l->part_grad);
  l->part_grad = NULL;
}

ct_status ct_layer_plan_reshape(ct_layer *l, const ct_plan *prev, ct_error *err) {
  const int N = l->nbottom ? (l->bottom[0]->naxes ? l->bottom[0]->shape[0] : -1) : -1;
  bool splits = N > 0 && l->ops->splits && l->ops->splits(l);
  for (int i = 0; splits && i < l->nbottom; i++) splits = batch_first(l->bottom[i], N);
  static const ct_plan_spec host_spec = {.n = 1, .driver = {0}, .share = {1.0}, .has_share = true};
  ct_plan_request rq = {.spec = l->ops->host ? &host_spec : l->spec.n ? &l->spec : NULL,
                        .N = N > 0 ? N : (l->ntop && l->top[0]->naxes ? l->top[0]->shape[0] : 0),
                        .splits = splits,
                        .gains = l->ops->gains,
                        .kind = l->ops->kind,
                        .prev = prev};
  if (!l->place) { /* a layer outside a net: the CPU, one partition */
    ct_plan *p = &l->plan;
    memset(p, 0, sizeof *p);
    p->n = 1;
    p->N = splits ? N : 0;
    p->part[0] = (ct_part){.d = ct_driver_cpu(), .index = 0, .begin = 0, .end = rq.N, .whole = !splits, .threads = 1};
    return l->ops->reshape(l, err);
  }
  /* the work estimate needs the layer shaped: reshape on the plan it has (or one partition on
   * the master) first, then plan, then reshape for the plan's partitions */
  if (!l->plan.n) CT_TRY(ct_plan_make(l->place, &(ct_plan_request){.N = rq.N}, &l->plan, err));
  CT_TRY(l->ops->reshape(l, err));
  for (int i = 0; splits && i < l->ntop; i++) splits = batch_first(l->top[i], N);
  rq.splits = splits;
  work_of(l, &rq);
  ct_plan plan;
  CT_TRY(ct_plan_make(l->place, &rq, &plan, err));
  if (!ct_plan_same(&plan, &l->plan)) {
    l->plan = plan;
    CT_TRY(ct_placement_fit_pool(l->place, plan.n, err));
    CT_TRY(l->ops->reshape(l, err));
  }
  return fit_part_grads(l, err);
}
