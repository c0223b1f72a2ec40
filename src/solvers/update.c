/* Caffe 1.0's SGDSolver family: GetLearningRate, ClipGradients, Normalize, Regularize and each
 * rule's ComputeUpdateValue, then Net::Update (data -= diff). The arithmetic follows Caffe's
 * order of operations (float throughout, rates in double as C++'s pow promotes them) so that a
 * run matches Caffe's to float rounding; the per-element work is the driver's update entry. */
#include "solvers/update.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/status.h"
#include "drivers/driver.h"

static const struct {
  const char *name;
  ct_solver_type type;
} k_solver_types[] = {
    {"SGD", CT_SOLVER_SGD},           {"Nesterov", CT_SOLVER_NESTEROV},
    {"AdaGrad", CT_SOLVER_ADAGRAD},   {"RMSProp", CT_SOLVER_RMSPROP},
    {"AdaDelta", CT_SOLVER_ADADELTA}, {"Adam", CT_SOLVER_ADAM},
};
#define NTYPES (sizeof k_solver_types / sizeof k_solver_types[0])
#define VALID_TYPES "SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam"

typedef enum lr_policy {
  LR_FIXED,
  LR_STEP,
  LR_EXP,
  LR_INV,
  LR_MULTISTEP,
  LR_POLY,
  LR_SIGMOID,
  LR_UNKNOWN
} lr_policy;

static const char *const k_lr_policies[] = {"fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid"};
#define VALID_POLICIES "fixed, step, exp, inv, multistep, poly, sigmoid"

static lr_policy policy_of(const char *name) {
  if (!name) return LR_UNKNOWN;
  for (int i = 0; i < LR_UNKNOWN; i++)
    if (strcmp(name, k_lr_policies[i]) == 0) return (lr_policy)i;
  return LR_UNKNOWN;
}

/* The `type` string wins; the deprecated enum is read when `type` is left at its default "SGD".
 * Caffe refuses a file that sets both; we only refuse one where they name different rules. */
static ct_status solver_type_of(const Caffe__SolverParameter *sp, ct_solver_type *out, ct_error *err) {
  const char *name = sp->type ? sp->type : "SGD";
  int by_name = -1;
  for (size_t i = 0; i < NTYPES; i++)
    if (strcmp(name, k_solver_types[i].name) == 0) by_name = (int)k_solver_types[i].type;
  if (by_name < 0)
    return ct_fail(err, CT_EINVAL, "type \"%s\" is not a solver type (valid: " VALID_TYPES ")", name);
  if (!sp->has_solver_type) {
    *out = (ct_solver_type)by_name;
    return CT_OK;
  }
  int by_enum = (int)sp->solver_type;
  if (by_enum < 0 || by_enum >= (int)NTYPES)
    return ct_fail(err, CT_EINVAL, "solver_type %d is not a solver type (valid: SGD, NESTEROV, ADAGRAD, "
                   "RMSPROP, ADADELTA, ADAM)", by_enum);
  if (by_name != CT_SOLVER_SGD && by_name != by_enum)
    return ct_fail(err, CT_EINVAL, "type \"%s\" and the deprecated solver_type (%s) disagree; give only type",
                   name, k_solver_types[by_enum].name);
  *out = (ct_solver_type)by_enum;
  return CT_OK;
}

static ct_status check_lr_policy(const Caffe__SolverParameter *sp, ct_error *err) {
  const char *name = sp->lr_policy;
  if (!name || !*name) return ct_fail(err, CT_EINVAL, "lr_policy is not set (valid: " VALID_POLICIES ")");
  lr_policy p = policy_of(name);
  switch (p) {
    case LR_FIXED: return CT_OK;
    case LR_STEP:
      if (!sp->has_stepsize || sp->stepsize <= 0)
        return ct_fail(err, CT_EINVAL, "lr_policy \"step\" needs stepsize > 0 (got %d)", sp->stepsize);
      if (!sp->has_gamma) return ct_fail(err, CT_EINVAL, "lr_policy \"step\" needs gamma");
      return CT_OK;
    case LR_EXP:
      if (!sp->has_gamma) return ct_fail(err, CT_EINVAL, "lr_policy \"exp\" needs gamma");
      return CT_OK;
    case LR_INV:
      if (!sp->has_gamma) return ct_fail(err, CT_EINVAL, "lr_policy \"inv\" needs gamma");
      if (!sp->has_power) return ct_fail(err, CT_EINVAL, "lr_policy \"inv\" needs power");
      return CT_OK;
    case LR_MULTISTEP:
      if (!sp->has_gamma) return ct_fail(err, CT_EINVAL, "lr_policy \"multistep\" needs gamma");
      return CT_OK;
    case LR_POLY:
      if (!sp->has_max_iter || sp->max_iter <= 0)
        return ct_fail(err, CT_EINVAL, "lr_policy \"poly\" needs max_iter > 0 (got %d)", sp->max_iter);
      if (!sp->has_power) return ct_fail(err, CT_EINVAL, "lr_policy \"poly\" needs power");
      return CT_OK;
    case LR_SIGMOID:
      if (!sp->has_gamma) return ct_fail(err, CT_EINVAL, "lr_policy \"sigmoid\" needs gamma");
      if (!sp->has_stepsize) return ct_fail(err, CT_EINVAL, "lr_policy \"sigmoid\" needs stepsize");
      return CT_OK;
    case LR_UNKNOWN: break;
  }
  return ct_fail(err, CT_EINVAL, "lr_policy \"%s\" is unknown (valid: " VALID_POLICIES ")", name);
}

static ct_status check_rule(const Caffe__SolverParameter *sp, ct_solver_type type, ct_error *err) {
  switch (type) {
    case CT_SOLVER_SGD:
    case CT_SOLVER_NESTEROV:
    case CT_SOLVER_ADADELTA: return CT_OK;
    case CT_SOLVER_ADAGRAD:
      if (sp->momentum != 0.f)
        return ct_fail(err, CT_EINVAL, "momentum cannot be used with AdaGrad (got %g)", (double)sp->momentum);
      return CT_OK;
    case CT_SOLVER_RMSPROP:
      if (sp->momentum != 0.f)
        return ct_fail(err, CT_EINVAL, "momentum cannot be used with RMSProp (got %g)", (double)sp->momentum);
      if (!(sp->rms_decay >= 0.f && sp->rms_decay < 1.f))
        return ct_fail(err, CT_EINVAL, "rms_decay must lie in [0, 1) (got %g)", (double)sp->rms_decay);
      return CT_OK;
    case CT_SOLVER_ADAM:
      if (!(sp->momentum >= 0.f && sp->momentum < 1.f))
        return ct_fail(err, CT_EINVAL, "momentum (Adam's beta1) must lie in [0, 1) (got %g)",
                       (double)sp->momentum);
      if (!(sp->momentum2 >= 0.f && sp->momentum2 < 1.f))
        return ct_fail(err, CT_EINVAL, "momentum2 (Adam's beta2) must lie in [0, 1) (got %g)",
                       (double)sp->momentum2);
      return CT_OK;
  }
  return ct_fail(err, CT_EINTERNAL, "solver type %d has no checks", (int)type);
}

static int cmp_offset(const void *a, const void *b) {
  const ct_update_param *x = a, *y = b;
  return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Ranges must lie inside the buffers and not overlap: each parameter is regularised from its data
 * before the whole net's data is updated in Caffe, which we fuse into one pass per parameter. */
static ct_status check_params(const ct_update_param *params, int nparams, size_t total, ct_error *err) {
  for (int i = 0; i < nparams; i++)
    if (params[i].offset > total || params[i].count > total - params[i].offset)
      return ct_fail(err, CT_EINVAL, "parameter %d range [%zu, %zu+%zu) exceeds the buffer of %zu floats", i,
                     params[i].offset, params[i].offset, params[i].count, total);
  if (nparams < 2) return CT_OK;
  ct_update_param *sorted = malloc((size_t)nparams * sizeof *sorted);
  if (!sorted) return ct_fail(err, CT_ENOMEM, "out of memory sorting %d parameter ranges", nparams);
  memcpy(sorted, params, (size_t)nparams * sizeof *sorted);
  qsort(sorted, (size_t)nparams, sizeof *sorted, cmp_offset);
  ct_status s = CT_OK;
  for (int i = 1; i < nparams; i++)
    if (sorted[i - 1].count && sorted[i].count && sorted[i - 1].offset + sorted[i - 1].count > sorted[i].offset) {
      s = ct_fail(err, CT_EINVAL, "parameter ranges [%zu, +%zu) and [%zu, +%zu) overlap", sorted[i - 1].offset,
                  sorted[i - 1].count, sorted[i].offset, sorted[i].count);
      break;
    }
  free(sorted);
  return s;
}

ct_status ct_update_init(ct_update_ctx *u, const Caffe__SolverParameter *sp, float *data, float *diff,
                         size_t total, const ct_update_param *params, int nparams, ct_error *err) {
  if (!u) return ct_fail(err, CT_EINVAL, "ct_update_init: no context");
  memset(u, 0, sizeof *u);
  if (!sp) return ct_fail(err, CT_EINVAL, "ct_update_init: no SolverParameter");
  if (nparams < 0 || (nparams > 0 && !params))
    return ct_fail(err, CT_EINVAL, "ct_update_init: %d parameters without a table", nparams);
  if (total > 0 && (!data || !diff)) return ct_fail(err, CT_EINVAL, "ct_update_init: no data or diff buffer");

  ct_solver_type type = CT_SOLVER_SGD;
  CT_TRY(solver_type_of(sp, &type, err));
  CT_TRY(check_rule(sp, type, err));
  CT_TRY(check_lr_policy(sp, err));
  const char *reg = sp->regularization_type ? sp->regularization_type : "L2";
  if (strcmp(reg, "L2") != 0 && strcmp(reg, "L1") != 0)
    return ct_fail(err, CT_EINVAL, "regularization_type \"%s\" is unknown (valid: L1, L2)", reg);
  if (sp->iter_size < 1) return ct_fail(err, CT_EINVAL, "iter_size must be >= 1 (got %d)", sp->iter_size);
  CT_TRY(check_params(params, nparams, total, err));

  u->sp = sp;
  u->type = type;
  u->data = data;
  u->diff = diff;
  u->total = total;
  u->nparams = nparams;
  u->nsets = (type == CT_SOLVER_ADADELTA || type == CT_SOLVER_ADAM) ? 2 : 1;
  size_t n = total ? total : 1;
  if (nparams > 0) {
    u->params = malloc((size_t)nparams * sizeof *u->params);
    if (!u->params) goto nomem;
    memcpy(u->params, params, (size_t)nparams * sizeof *u->params);
  }
  for (int k = 0; k < u->nsets; k++) {
    if (!(u->hist[k] = ct_storage_create()) || ct_storage_reserve(u->hist[k], n, err) ||
        ct_storage_deref(u->hist[k], &ct_mem_host, CT_WRITE, 0, n, NULL, &u->history[k], err))
      goto nomem;
    memset(u->history[k], 0, n * sizeof(float));
  }
  return CT_OK;

nomem:
  ct_update_free(u);
  return ct_fail(err, CT_ENOMEM, "out of memory for %d solver history buffers of %zu floats",
                 type == CT_SOLVER_ADADELTA || type == CT_SOLVER_ADAM ? 2 : 1, total);
}

void ct_update_free(ct_update_ctx *u) {
  if (!u) return;
  free(u->params);
  ct_storage_release(u->hist[0]);
  ct_storage_release(u->hist[1]);
  memset(u, 0, sizeof *u);
}

float ct_update_rate(const Caffe__SolverParameter *sp, int iter) {
  const double base = sp->base_lr, gamma = sp->gamma, power = sp->power;
  switch (policy_of(sp->lr_policy)) {
    case LR_FIXED: return (float)base;
    case LR_STEP: return (float)(base * pow(gamma, (double)(iter / sp->stepsize)));
    case LR_EXP: return (float)(base * pow(gamma, (double)iter));
    case LR_INV: return (float)(base * pow(1.0 + gamma * iter, -power));
    case LR_MULTISTEP: {
      /* Caffe advances current_step by one per call while iter >= stepvalue[current_step]; called
       * every iteration, that is the length of the prefix of stepvalues already reached. */
      size_t step = 0;
      while (step < sp->n_stepvalue && iter >= sp->stepvalue[step]) step++;
      return (float)(base * pow(gamma, (double)step));
    }
    case LR_POLY: {
      float frac = (float)iter / (float)sp->max_iter;
      return (float)(base * pow(1.0 - frac, power));
    }
    case LR_SIGMOID: return (float)(base * (1.0 / (1.0 + exp(-gamma * ((double)iter - sp->stepsize)))));
    case LR_UNKNOWN: break;
  }
  return NAN; /* ct_update_init refuses unknown policies */
}

/* ---------------------------------------------------------------- the update, on a driver */

static ct_status clip_gradients(ct_update_ctx *u, const ct_driver *d) {
  const float clip = u->sp->clip_gradients;
  if (clip < 0.f) return CT_OK; /* Caffe: only a negative value turns clipping off */
  double sumsq = 0.0;
  for (int p = 0; p < u->nparams; p++)
    CT_TRY(d->ops->sumsq(d, u->params[p].count, u->diff + u->params[p].offset, sumsq, &sumsq));
  const float norm = (float)sqrt(sumsq);
  if (norm > clip) {
    const float factor = clip / norm;
    for (int p = 0; p < u->nparams; p++) {
      float *g = u->diff + u->params[p].offset;
      CT_TRY(d->ops->scal(d, u->params[p].count, factor, g, g));
    }
  }
  return CT_OK;
}

/* One iteration's update of every element is independent of every other, so the work is done
 * in cache-sized blocks (all steps of the rule on a block while it is in cache) over element
 * ranges split across the pool's threads; the result does not depend on the split. */
typedef struct apply_job {
  const ct_update_ctx *u;
  const ct_driver *d;
  float *h[2]; /* the history on d */
  float rate, adam_corr, accum_norm;
  int l1, parts;
  bool zero_grad;
  size_t elems;
  _Atomic ct_status st;
} apply_job;

#define CT_UPDATE_BLOCK 4096

static ct_update_rule rule_of(ct_solver_type t) {
  switch (t) {
    case CT_SOLVER_NESTEROV: return CT_RULE_NESTEROV;
    case CT_SOLVER_ADAGRAD: return CT_RULE_ADAGRAD;
    case CT_SOLVER_RMSPROP: return CT_RULE_RMSPROP;
    case CT_SOLVER_ADADELTA: return CT_RULE_ADADELTA;
    case CT_SOLVER_ADAM: return CT_RULE_ADAM;
    default: return CT_RULE_SGD;
  }
}

static void apply_block(apply_job *j, const ct_update_param *pp, size_t lo, size_t n) {
  const ct_update_ctx *u = j->u;
  const Caffe__SolverParameter *sp = u->sp;
  float *w = u->data + pp->offset + lo, *g = u->diff + pp->offset + lo;
  float *h0 = j->h[0] + pp->offset + lo;
  float *h1 = u->nsets > 1 ? j->h[1] + pp->offset + lo : NULL;
  const float local_rate = j->rate * pp->lr_mult;
  const ct_update_step step = {
      .rule = rule_of(u->type),
      .grad_scale = sp->iter_size > 1 ? j->accum_norm : 1.f,
      .decay = sp->weight_decay * pp->decay_mult,
      .l1 = j->l1 != 0,
      .rate = u->type == CT_SOLVER_ADAM ? local_rate * j->adam_corr : local_rate,
      .momentum = sp->momentum,
      .momentum2 = sp->momentum2,
      .rms_decay = sp->rms_decay,
      .delta = sp->delta,
      .zero_grad = j->zero_grad,
  };
  ct_status s = j->d->ops->update(j->d, &step, n, w, g, h0, h1);
  if (s) j->st = s;
}

/* Elements [b, e) of the parameters laid end to end (by count, in parameter order). */
static void apply_range(void *ctx, int part) {
  apply_job *j = ctx;
  size_t b = j->elems * (size_t)part / (size_t)j->parts, e = j->elems * (size_t)(part + 1) / (size_t)j->parts;
  size_t base = 0;
  for (int p = 0; p < j->u->nparams && base < e; p++) {
    const ct_update_param *pp = &j->u->params[p];
    size_t lo = b > base ? b - base : 0, hi = e - base < pp->count ? e - base : pp->count;
    for (size_t k = lo; k < hi; k += CT_UPDATE_BLOCK)
      apply_block(j, pp, k, hi - k < CT_UPDATE_BLOCK ? hi - k : CT_UPDATE_BLOCK);
    base += pp->count;
  }
}

float ct_update_apply(ct_update_ctx *u, int iter) {
  float rate = NAN;
  ct_error e;
  (void)ct_update_apply_clear(u, ct_driver_cpu(), iter, false, &rate, &e); /* the CPU does not fail */
  return rate;
}

ct_status ct_update_apply_on(ct_update_ctx *u, const ct_driver *d, int iter, float *rate, ct_error *err) {
  return ct_update_apply_clear(u, d, iter, false, rate, err);
}

ct_status ct_update_history_host(ct_update_ctx *u, int k, float **out, ct_error *err) {
  size_t n = u->total ? u->total : 1;
  return ct_storage_deref(u->hist[k], &ct_mem_host, CT_READWRITE, 0, n, NULL, out, err);
}

ct_status ct_update_apply_clear(ct_update_ctx *u, const ct_driver *d, int iter, bool zero_diff, float *rate,
                                ct_error *err) {
  const Caffe__SolverParameter *sp = u->sp;
  *rate = ct_update_rate(sp, iter);
  apply_job j = {.u = u, .d = d, .rate = *rate, .adam_corr = 1.f, .accum_norm = 1.f / (float)sp->iter_size,
                 .zero_grad = zero_diff, .st = CT_OK};
  const size_t n = u->total ? u->total : 1;
  for (int k = 0; k < u->nsets; k++)
    CT_TRY(ct_storage_deref(u->hist[k], d->mem, CT_READWRITE, 0, n, NULL, &j.h[k], err));
  ct_status s = clip_gradients(u, d);
  if (s) {
    ct_driver_error(d, err, s, "clipping gradients");
    return s;
  }
  j.l1 = sp->regularization_type && strcmp(sp->regularization_type, "L1") == 0;
  if (u->type == CT_SOLVER_ADAM) {
    const int t = iter + 1;
    j.adam_corr = (float)(sqrt(1.0 - pow((double)sp->momentum2, t)) / (1.0 - pow((double)sp->momentum, t)));
  }
  for (int p = 0; p < u->nparams; p++) j.elems += u->params[p].count;
  /* small nets are not worth waking the workers; a device runs its update as one call per block */
  j.parts = u->pool && d->mem == &ct_mem_host && j.elems >= ((size_t)1 << 16) ? ct_pool_size(u->pool) : 1;
  ct_pool_run(j.parts > 1 ? u->pool : NULL, j.parts, apply_range, &j);
  if (j.st) ct_driver_error(d, err, j.st, "the solver update");
  return j.st;
}

/* issue 5 (src/dist): a worker group clips its whole gradient before slicing it for several
 * servers, with the same rule as ct_update_apply, so every slice gets the global factor.
 * Declared in src/dist/cluster.h. */
void ct_update_clip_diff(const ct_update_ctx *u, float *diff) {
  ct_update_ctx v = *u;
  v.diff = diff;
  (void)clip_gradients(&v, ct_driver_cpu()); /* the CPU does not fail */
}
