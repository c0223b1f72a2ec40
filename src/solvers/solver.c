/* The training loop: Caffe's Solver (Step, Solve, TestAll) over one train net and its test nets,
 * which view the train net's parameters. Building a solver is create.c's; Snapshot and Restore
 * are snapshot.c's. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "dist/cluster.h"
#include "net/net.h"
#include "proto/prototxt.h"
#include "core/pool.h"
#include "solvers/solver_internal.h"
#include "solvers/update.h"

#define CT_MAX_SCAN_PARTS 64

/* cluster (issue 5): display, test and snapshot happen on the root process only */
static bool is_root(const ct_solver *s) { return !s->cluster || ct_cluster_is_root(s->cluster); }

void ct_solver_log_at(ct_solver *s, const char *file, int line_no, const char *fmt, ...) {
  if (s->opt.quiet || !is_root(s)) return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  const char *base = strrchr(file, '/');
  if (s->opt.log_at)
    s->opt.log_at(s->opt.log_ctx, base ? base + 1 : file, line_no, line);
  else if (s->opt.log)
    s->opt.log(s->opt.log_ctx, line);
  else
    fprintf(stderr, "%s\n", line);
}

int ct_solver_iter(const ct_solver *s) { return s->iter; }
int ct_solver_is_root(const ct_solver *s) { return is_root(s); }
ct_net *ct_solver_net(ct_solver *s) { return s->net; }
int ct_solver_num_test_nets(const ct_solver *s) { return s->ntest; }
ct_net *ct_solver_test_net(ct_solver *s, int i) { return i >= 0 && i < s->ntest ? s->test_nets[i] : NULL; }

/* ------------------------------------------------------------------ testing */

#define CT_EVENT_MAX_OUTPUTS 64

/* Elements of output blob o of net. */
static size_t output_size(ct_net *net, int o) {
  int shape[8], na = ct_net_blob_shape(net, ct_net_output_name(net, o), shape);
  size_t c = 1;
  for (int d = 0; d < na; d++) c *= (size_t)shape[d];
  return c;
}

static int net_output_count(ct_net *net) {
  int n = 0;
  for (int o = 0; o < ct_net_num_outputs(net); o++) {
    n += (int)output_size(net, o);
  }
  return n;
}

int ct_solver_test(ct_solver *s, int which, float *scores, int n, ct_error *err) {
  if (which < 0 || which >= s->ntest) {
    ct_fail(err, CT_EINVAL, "no test net #%d (the solver has %d)", which, s->ntest);
    return -1;
  }
  if (s->cluster) { /* issue 19: rank 0 tests with the shards the other ranks own, as they are now */
    if (ct_cluster_sync_params(s->cluster, err)) return -1;
    if (!is_root(s)) return 0;
  }
  ct_net *net = s->test_nets[which];
  int total = net_output_count(net);
  double *acc = calloc((size_t)total + 1, sizeof(double));
  if (!acc) {
    ct_fail(err, CT_ENOMEM, "out of memory");
    return -1;
  }
  double loss_sum = 0;
  for (int it = 0; it < s->test_iter[which]; it++) {
    float loss;
    if (ct_net_forward(net, &loss, err)) {
      ct_error_prefix(err, "test net #%d", which);
      free(acc);
      return -1;
    }
    loss_sum += loss;
    int k = 0;
    for (int o = 0; o < ct_net_num_outputs(net); o++) {
      const char *name = ct_net_output_name(net, o);
      size_t c = output_size(net, o);
      const float *v = ct_net_blob_data(net, name);
      for (size_t e = 0; e < c; e++) acc[k++] += v[e];
    }
  }
  int k = 0;
  const char *ev_names[CT_EVENT_MAX_OUTPUTS];
  float ev_vals[CT_EVENT_MAX_OUTPUTS], ev_w[CT_EVENT_MAX_OUTPUTS];
  for (int o = 0; o < ct_net_num_outputs(net); o++) {
    const char *name = ct_net_output_name(net, o);
    size_t c = output_size(net, o);
    float w = ct_net_output_loss_weight(net, o);
    for (size_t e = 0; e < c; e++, k++) {
      float mean = (float)(acc[k] / s->test_iter[which]);
      if (k < n && scores) scores[k] = mean;
      if (k < CT_EVENT_MAX_OUTPUTS) {
        ev_names[k] = name;
        ev_vals[k] = mean;
        ev_w[k] = w;
      }
      if (w != 0)
        logf_(s, "    Test net output #%d: %s = %g (* %g = %g loss)", k, name, mean, w, w * mean);
      else
        logf_(s, "    Test net output #%d: %s = %g", k, name, mean);
    }
  }
  if (s->sp->test_compute_loss) logf_(s, "Test loss: %g", loss_sum / s->test_iter[which]);
  ct_event ev = {.kind = CT_EVENT_TEST, .test_net = which, .noutputs = k < CT_EVENT_MAX_OUTPUTS ? k : CT_EVENT_MAX_OUTPUTS,
                 .output_names = ev_names, .outputs = ev_vals, .output_loss_weights = ev_w};
  ct_solver_emit(s, &ev);
  free(acc);
  return total;
}

static ct_status test_all(ct_solver *s, ct_error *err) {
  if (!is_root(s)) return CT_OK; /* cluster (issue 5) */
  for (int k = 0; k < s->ntest; k++) {
    logf_(s, "Iteration %d, Testing net (#%d)", s->iter, k);
    if (ct_solver_test(s, k, NULL, 0, err) < 0) return err ? err->status : CT_EINTERNAL;
  }
  return CT_OK;
}

/* ------------------------------------------------------------------ training */

float ct_solver_smooth_loss(ct_solver *s, float loss) {
  s->losses[s->loss_pos] = loss;
  s->loss_pos = (s->loss_pos + 1) % s->loss_window;
  if (s->nloss < s->loss_window) s->nloss++;
  double sum = 0;
  for (int i = 0; i < s->nloss; i++) sum += s->losses[i];
  return (float)(sum / s->nloss);
}

static ct_status numeric_error(ct_solver *s, const char *what, ct_error *err) {
  int li = ct_net_first_nonfinite_layer(s->net);
  if (li >= 0)
    return ct_fail(err, CT_ENUMERIC, "iteration %d: %s is not finite; the first non-finite values appear in the output "
                   "of layer \"%s\" (%s). Lower base_lr or check the input data",
                   s->iter, what, ct_net_layer_name(s->net, li), ct_net_layer_type(s->net, li));
  return ct_fail(err, CT_ENUMERIC, "iteration %d: %s is not finite. Lower base_lr or check the input data", s->iter,
                 what);
}

static void display_outputs(ct_solver *s) {
  ct_net *net = s->net;
  int k = 0;
  for (int o = 0; o < ct_net_num_outputs(net); o++) {
    const char *name = ct_net_output_name(net, o);
    size_t c = output_size(net, o);
    const float *v = ct_net_blob_data(net, name);
    float w = ct_net_output_loss_weight(net, o);
    for (size_t e = 0; e < c; e++, k++) {
      if (w != 0)
        logf_(s, "    Train net output #%d: %s = %g (* %g = %g loss)", k, name, v[e], w, w * v[e]);
      else
        logf_(s, "    Train net output #%d: %s = %g", k, name, v[e]);
    }
  }
}

static double seconds_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

/* A NaN or Inf gradient stops training before it reaches the weights, so the last snapshot
 * stays good. x * 0 is 0 for every finite x and NaN otherwise, so one vectorisable pass
 * answers whether anything is non-finite. */
/* Whether every gradient is finite: x * 0 is 0 for finite x and NaN otherwise, summed in 16
 * independent lanes so that the loop vectorises (one accumulator would serialise on the adds),
 * over the net's threads. CaffeNet's 61M gradients: one memory-bound pass. */
typedef struct finite_scan {
  const float *g;
  size_t n;
  int parts;
  float bad[CT_MAX_SCAN_PARTS];
} finite_scan;

static void finite_part(void *ctx, int p) {
  finite_scan *f = ctx;
  size_t lo = f->n * (size_t)p / (size_t)f->parts, hi = f->n * (size_t)(p + 1) / (size_t)f->parts;
  const float *restrict g = f->g;
  float acc[16] = {0};
  size_t i = lo;
  for (; i + 16 <= hi; i += 16)
    for (int k = 0; k < 16; k++) acc[k] += g[i + k] * 0.0f;
  for (; i < hi; i++) acc[0] += g[i] * 0.0f;
  float s = 0;
  for (int k = 0; k < 16; k++) s += acc[k];
  f->bad[p] = s;
}

/* Whether every gradient is finite, where the gradients are: on the host the scan above, on a
 * device the driver's sum of squares (in double: NaN or Inf only when an element is). */
static ct_status gradients_finite(ct_solver *s, bool *finite, ct_error *err) {
  const ct_driver *d = ct_net_driver(s->net);
  ct_tensor *p = ct_net_params(s->net);
  float *g;
  CT_TRY(ct_tensor_deref(p, CT_DIFF, d->mem, CT_READ, 0, p->count, &ct_net_placement(s->net)->stats, &g, err));
  if (d->mem != &ct_mem_host) {
    double ss = 0;
    ct_status st = d->ops->sumsq(d, ct_net_param_total(s->net), g, 0.0, &ss);
    if (st) {
      ct_driver_error(d, err, st, "checking the gradients");
      return st;
    }
    *finite = isfinite(ss);
    return CT_OK;
  }
  finite_scan f = {.g = g, .n = ct_net_param_total(s->net), .parts = 1};
  struct ct_pool *pool = ct_net_placement(s->net)->pool;
  if (pool && f.n >= ((size_t)1 << 20)) f.parts = ct_pool_size(pool) < CT_MAX_SCAN_PARTS ? ct_pool_size(pool)
                                                                                        : CT_MAX_SCAN_PARTS;
  ct_pool_run(f.parts > 1 ? pool : NULL, f.parts, finite_part, &f);
  float acc = 0;
  for (int k = 0; k < f.parts; k++) acc += f.bad[k];
  *finite = acc == 0;
  return CT_OK;
}

static ct_status check_gradients(ct_solver *s, ct_error *err) {
  bool finite;
  CT_TRY(gradients_finite(s, &finite, err));
  if (finite) return CT_OK;
  int li = ct_net_first_nonfinite_grad_layer(s->net);
  return ct_fail(err, CT_ENUMERIC,
                 "iteration %d: a parameter gradient is not finite; it first appears (going backward) in layer \"%s\" "
                 "(%s). Lower base_lr, set clip_gradients, or check the input data",
                 s->iter, li >= 0 ? ct_net_layer_name(s->net, li) : "?", li >= 0 ? ct_net_layer_type(s->net, li) : "?");
}

/* Collects every element of every output blob of `net` for an event. Returns the count. */
static int gather_outputs(ct_net *net, const char **names, float *vals, float *weights, int cap) {
  int k = 0;
  for (int o = 0; o < ct_net_num_outputs(net); o++) {
    const char *name = ct_net_output_name(net, o);
    size_t c = output_size(net, o);
    const float *v = ct_net_blob_data(net, name);
    for (size_t e = 0; e < c && k < cap; e++, k++) {
      names[k] = name;
      vals[k] = v[e];
      weights[k] = ct_net_output_loss_weight(net, o);
    }
  }
  return k;
}

void ct_solver_emit(ct_solver *s, ct_event *e) {
  if (!s->opt.event || !is_root(s)) return;
  e->iter = s->iter;
  e->max_iter = s->sp->max_iter;
  e->elapsed_s = seconds_since(&s->created);
  s->opt.event(s->opt.event_ctx, e);
}

static void emit_train(ct_solver *s, float loss, float rate, double images_per_s) {
  if (!s->opt.event) return;
  const char *names[CT_EVENT_MAX_OUTPUTS];
  float vals[CT_EVENT_MAX_OUTPUTS], w[CT_EVENT_MAX_OUTPUTS];
  ct_event e = {.kind = CT_EVENT_TRAIN, .loss = loss, .lr = rate, .images_per_s = images_per_s};
  e.noutputs = gather_outputs(s->net, names, vals, w, CT_EVENT_MAX_OUTPUTS);
  e.output_names = names;
  e.outputs = vals;
  e.output_loss_weights = w;
  ct_solver_emit(s, &e);
}

static ct_status step(ct_solver *s, int n, ct_error *err);

/* What the caller asks for at this iteration boundary; in a cluster every process's request
 * counts (issue 23: a signal to mpirun reaches every rank, not at the same iteration). */
static ct_status requested_action(ct_solver *s, ct_solver_action *out, ct_error *err) {
  ct_solver_action a = s->opt.action ? s->opt.action(s->opt.action_ctx) : CT_ACTION_NONE;
  *out = a;
  if (!s->cluster) return CT_OK;
  /* ranked so that the largest wins: a stop snapshots too (snapshot_after_train) */
  int rank = a == CT_ACTION_STOP ? 2 : a == CT_ACTION_SNAPSHOT ? 1 : 0;
  CT_TRY(ct_cluster_agree_action(s->cluster, rank, &rank, err));
  *out = rank == 2 ? CT_ACTION_STOP : rank == 1 ? CT_ACTION_SNAPSHOT : CT_ACTION_NONE;
  return CT_OK;
}

/* The learning rate comes from the solver's settings alone: a NaN or Inf one is their fault
 * (gamma, power, base_lr, ...), and is caught before it reaches the weights, where it would
 * later be blamed on a gradient. */
static ct_status check_rate(ct_solver *s, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  float rate = ct_update_rate(sp, s->iter);
  if (isfinite(rate)) return CT_OK;
  return ct_fail(err, CT_ENUMERIC,
                 "%s: iteration %d: the learning rate is %g: lr_policy \"%s\" with base_lr %g, gamma %g, power %g, "
                 "stepsize %d gives no finite rate; check these settings",
                 s->path, s->iter, rate, sp->lr_policy ? sp->lr_policy : "fixed", sp->base_lr, sp->gamma, sp->power,
                 sp->stepsize);
}

/* pycaffe's callbacks (ct_solver_options.on_start / on_gradients): non-zero stops the step. */
static ct_status hook(ct_solver *s, int (*fn)(void *), const char *name, ct_error *err) {
  if (fn && fn(s->opt.hook_ctx))
    return ct_fail(err, CT_EINVAL, "iteration %d: stopped by the %s callback", s->iter, name);
  return CT_OK;
}

/* The update rule on the net's device over its flat parameters; zero_diff leaves the gradients
 * zeroed for the next iteration instead of holding the step. */
static ct_status local_update(ct_solver *s, bool zero_diff, float *rate, ct_error *err) {
  s->upd.pool = ct_net_placement(s->net)->pool; /* the update splits over the net's current threads */
  const ct_driver *d = ct_net_driver(s->net);
  ct_tensor *p = ct_net_params(s->net);
  ct_copy_stats *cs = &ct_net_placement(s->net)->stats;
  CT_TRY(ct_tensor_deref(p, CT_DATA, d->mem, CT_READWRITE, 0, p->count, cs, &s->upd.data, err));
  CT_TRY(ct_tensor_deref(p, CT_DIFF, d->mem, CT_READWRITE, 0, p->count, cs, &s->upd.diff, err));
  return ct_update_apply_clear(&s->upd, d, s->iter, zero_diff, rate, err);
}

ct_status ct_solver_apply_update(ct_solver *s, ct_error *err) {
  if (s->cluster)
    return ct_fail(err, CT_EUNSUPPORTED, "%s: apply_update is not available in cluster training", s->path);
  float rate;
  return local_update(s, false, &rate, err);
}

ct_status ct_solver_step(ct_solver *s, int n, ct_error *err) {
  ct_status st = step(s, n, err);
  if (st && s->cluster) ct_cluster_abandon(s->cluster); /* issue 5: let mpirun end the job */
  return st;
}

static ct_status step(ct_solver *s, int n, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  if (n > 0 && s->iter > INT_MAX - n) /* issue 7: a restored iteration near INT_MAX */
    return ct_fail(err, CT_EINVAL, "iteration %d: %d more iterations would overflow the counter", s->iter, n);
  int stop = s->iter + n;
  clock_gettime(CLOCK_MONOTONIC, &s->last_display);
  s->last_display_iter = s->iter;
  if (s->cluster && !ct_cluster_has_worker(s->cluster)) { /* issue 5: a server-only process */
    CT_TRY(ct_cluster_serve(s->cluster, err));
    s->iter = stop;
    /* issue 23: mpirun signals every rank; the workers stopped on theirs, and this process
     * served until they had: it ends as stopped too, with the same exit status */
    if (s->opt.action && s->opt.action(s->opt.action_ctx) == CT_ACTION_STOP) s->stopped = true;
    return CT_OK;
  }
  bool diffs_zero = false; /* the last local update left the gradients zeroed */
  while (s->iter < stop) {
    if (!diffs_zero) CT_TRY(ct_net_clear_param_diffs_on(s->net, err));
    diffs_zero = false;
    if (sp->test_interval > 0 && s->iter % sp->test_interval == 0 && (s->iter > 0 || sp->test_initialization))
      CT_TRY(test_all(s, err));
    /* Caffe's debug_info: the train net logs its blobs on display iterations */
    ct_net_set_debug(s->net, sp->debug_info && sp->display > 0 && s->iter % sp->display == 0 && is_root(s), ct_solver_debug_log,
                     s);
    CT_TRY(hook(s, s->opt.on_start, "on_start", err));
    double loss = 0;
    for (int k = 0; k < sp->iter_size; k++) {
      float l;
      CT_TRY(ct_net_forward(s->net, &l, err));
      if (s->cluster) ct_cluster_next_batch(s->cluster, s->net); /* issue 5: skip the other workers' data */
      if (!isfinite(l)) return numeric_error(s, "the loss", err);
      CT_TRY(ct_net_backward(s->net, err));
      loss += l;
    }
    loss /= sp->iter_size;
    float smoothed = ct_solver_smooth_loss(s, (float)loss);
    bool display = sp->display > 0 && s->iter % sp->display == 0;
    double images_per_s = 0;
    if (display) {
      double dt = seconds_since(&s->last_display);
      int iters = s->iter - s->last_display_iter;
      if (iters > 0 && dt > 0) images_per_s = iters * (double)sp->iter_size * ct_net_batch_size(s->net) / dt;
      if (s->cluster) images_per_s *= ct_cluster_nworkers(s->cluster); /* issue 5: the whole job's */
      /* The loss is the 9th blank-separated field of the line, glog's prefix included, where
       * Caffe's parse_log.sh reads it; the speed follows. */
      if (iters > 0 && dt > 0)
        logf_(s, "Iteration %d, loss = %g (%g iter/s, %.3fs/%d iters)", s->iter, smoothed, iters / dt, dt, iters);
      else
        logf_(s, "Iteration %d, loss = %g", s->iter, smoothed);
      clock_gettime(CLOCK_MONOTONIC, &s->last_display);
      s->last_display_iter = s->iter;
      display_outputs(s);
    }
    CT_TRY(hook(s, s->opt.on_gradients, "on_gradients", err));
    CT_TRY(check_gradients(s, err));
    CT_TRY(check_rate(s, err));
    float rate;
    if (s->cluster) /* issue 5: exchange gradients, get fresh parameters */
      CT_TRY(ct_cluster_update(s->cluster, s->iter, &rate, err));
    else { /* on the net's device, zeroing the gradients for the next iteration as it goes */
      CT_TRY(local_update(s, true, &rate, err));
      diffs_zero = true;
    }
    if (display) {
      logf_(s, "Iteration %d, lr = %g", s->iter, rate);
      if (s->cluster) { /* issue 5: this process's traffic since the last display */
        double bytes, wait_s;
        int updates;
        ct_cluster_take_stats(s->cluster, &bytes, &wait_s, &updates);
        /* not "Iteration N, ...": parse_log.sh counts every such line as a test row */
        if (updates > 0)
          logf_(s, "At iteration %d, communication: %.0f bytes sent per iteration, %.2f ms per iteration waiting "
                "(rank 0)", s->iter, bytes / updates, 1e3 * wait_s / updates);
      }
      if (ct_net_partition_workers(s->net) > 1) { /* issue 19: what the partitioning moves */
        unsigned long long bf, bb, rep, shard;
        ct_net_partition_bytes(s->net, &bf, &bb);
        ct_net_partition_param_bytes(s->net, &rep, &shard);
        logf_(s, "At iteration %d, partitioning over %d workers: bridges move %llu bytes per iteration (%llu forward, "
              "%llu backward); parameters %llu bytes replicated, %llu bytes in shards",
              s->iter, ct_net_partition_workers(s->net), bf + bb, bf, bb, rep, shard);
      }
      emit_train(s, smoothed, rate, images_per_s);
    } else if (s->opt.event) {
      double dt = seconds_since(&s->last_display);
      int iters = s->iter - s->last_display_iter;
      ct_event e = {.kind = CT_EVENT_ITER, .loss = smoothed, .lr = rate};
      if (iters > 0 && dt > 0) e.images_per_s = iters * (double)sp->iter_size * ct_net_batch_size(s->net) / dt;
      ct_solver_emit(s, &e);
    }
    s->iter++;
    ct_solver_action act;
    CT_TRY(requested_action(s, &act, err));
    if ((sp->snapshot > 0 && s->iter % sp->snapshot == 0) || act == CT_ACTION_SNAPSHOT)
      CT_TRY(ct_solver_snapshot(s, NULL, NULL, err));
    if (act == CT_ACTION_STOP) {
      s->stopped = true;
      break;
    }
  }
  return CT_OK;
}

int ct_solver_stopped(const ct_solver *s) { return s->stopped; }

ct_status ct_solver_solve_to(ct_solver *s, int stop_iter, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  if (stop_iter < s->iter)
    return ct_fail(err, CT_EINVAL, "%s: cannot solve to iteration %d: the solver is at iteration %d already", s->path,
                   stop_iter, s->iter);
  if (!s->solving_logged) {
    logf_(s, "Solving %s", ct_net_name(s->net));
    logf_(s, "Learning Rate Policy: %s", sp->lr_policy ? sp->lr_policy : "(none)");
    s->solving_logged = true;
  }
  CT_TRY(ct_solver_step(s, stop_iter - s->iter, err));
  if (sp->snapshot_after_train && (sp->snapshot <= 0 || s->iter % sp->snapshot != 0))
    CT_TRY(ct_solver_snapshot(s, NULL, NULL, err));
  if (s->stopped) { /* Caffe: no final display or test after an early exit */
    if (s->cluster) CT_TRY(ct_cluster_finish(s->cluster, err));
    logf_(s, "Optimization stopped early.");
    ct_event ev = {.kind = CT_EVENT_DONE};
    ct_solver_emit(s, &ev);
    return CT_OK;
  }
  /* only the root displays; a train net whose workers span the processes (issue 19) runs the
   * forward pass on each, for the bridges, and the root logs it */
  if (sp->display > 0 && s->iter % sp->display == 0 && (is_root(s) || ct_net_bridged(s->net))) {
    float loss;
    CT_TRY(ct_net_forward(s->net, &loss, err));
    logf_(s, "Iteration %d, loss = %g", s->iter, loss);
  }
  if (sp->test_interval > 0 && s->iter % sp->test_interval == 0) CT_TRY(test_all(s, err));
  if (s->cluster) CT_TRY(ct_cluster_finish(s->cluster, err)); /* issue 5 */
  logf_(s, "Optimization Done.");
  ct_event ev = {.kind = CT_EVENT_DONE};
  ct_solver_emit(s, &ev);
  return CT_OK;
}

/* Caffe's Solve after a resume past max_iter: no iterations, then the final snapshot and test. */
ct_status ct_solver_solve(ct_solver *s, ct_error *err) {
  return ct_solver_solve_to(s, s->sp->max_iter > s->iter ? s->sp->max_iter : s->iter, err);
}
