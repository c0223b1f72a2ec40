/* The training loop: Caffe's Solver (Step, Solve, TestAll, Snapshot, Restore) over one train
 * net and its test nets, which view the train net's parameters. */
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
#include "proto/blob.h"
#include "proto/prototxt.h"
#include "core/pool.h"
#include "proto/h5io.h"
#include "proto/upgrade.h"
#include "solvers/setup.h"
#include "solvers/update.h"

#define CT_MAX_SCAN_PARTS 64

struct ct_solver {
  Caffe__SolverParameter *sp;
  ct_srcmap *map; /* positions in the solver file, for messages about its inline nets */
  char *path, *dir;
  char *prefix; /* snapshot prefix */
  uint64_t seed;
  ct_net *net;
  int ntest;
  ct_net **test_nets;
  int *test_iter;
  ct_update_ctx upd;
  int iter;
  /* smoothed loss over average_loss iterations */
  float *losses;
  int nloss, loss_pos, loss_window;
  ct_solver_options opt;
  struct timespec last_display;
  int last_display_iter;
  struct timespec created;
  ct_cluster *cluster; /* issue 5: SINGA's cluster (src/dist); NULL in a single-process run */
};

/* cluster (issue 5): display, test and snapshot happen on the root process only */
static bool is_root(const ct_solver *s) { return !s->cluster || ct_cluster_is_root(s->cluster); }

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static void logf_(ct_solver *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(ct_solver *s, const char *fmt, ...) {
  if (s->opt.quiet || !is_root(s)) return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (s->opt.log)
    s->opt.log(s->opt.log_ctx, line);
  else
    fprintf(stderr, "%s\n", line);
}

/* A path as given when it exists (Caffe resolves from the working directory), else relative
 * to the solver file's directory. Returns malloc'ed. */
static char *resolve(const ct_solver *s, const char *path) {
  if (path[0] == '/' || access(path, F_OK) == 0 || !s->dir[0]) return xstrdup(path);
  size_t n = strlen(s->dir) + strlen(path) + 1;
  char *p = malloc(n);
  if (!p) return NULL;
  snprintf(p, n, "%s%s", s->dir, path);
  if (access(p, F_OK) != 0) {
    free(p);
    return xstrdup(path);
  }
  return p;
}

static const char *const *state_stages(const Caffe__NetState *st) {
  return st && st->n_stage ? (const char *const *)st->stage : NULL;
}

/* NetState stage lists are not NULL-terminated in protobuf-c; make a terminated copy. */
static const char **stages_copy(const Caffe__NetState *st) {
  if (!st || !st->n_stage) return NULL;
  const char **v = calloc(st->n_stage + 1, sizeof *v);
  if (!v) return NULL;
  for (size_t i = 0; i < st->n_stage; i++) v[i] = st->stage[i];
  return v;
}

/* A solver's net: inline (a message of the solver file) or read from `file`; `phase` is the
 * default, which the net's own state and the solver's `state` may change (Caffe's merge). */
static ct_status build_net(ct_solver *s, const Caffe__NetParameter *inline_param, const char *file, ct_phase phase,
                           const Caffe__NetState *state, uint64_t seed, ct_net **out, ct_error *err) {
  const char **stages = stages_copy(state);
  (void)state_stages;
  int level = 0;
  ct_status st;
  if (inline_param && s->cluster && phase == CT_TRAIN) {
    /* cluster (issue 5): this worker's share of the batch, on a copy of the inline net */
    Caffe__NetParameter *copy = NULL;
    size_t n = protobuf_c_message_get_packed_size(&inline_param->base);
    uint8_t *buf = malloc(n + 1);
    if (buf) {
      protobuf_c_message_pack(&inline_param->base, buf);
      copy = caffe__net_parameter__unpack(NULL, n, buf);
      free(buf);
    }
    ct_solver_net_state(inline_param, state, phase, &phase, &level);
    st = copy ? ct_cluster_prepare_train_param(s->cluster, copy, err) : ct_fail(err, CT_ENOMEM, "out of memory");
    if (st == CT_OK) st = ct_net_create_from_param(copy, s->path, s->dir, phase, level, stages, seed, out, err);
    if (copy) caffe__net_parameter__free_unpacked(copy, NULL);
  } else if (inline_param) {
    ct_solver_net_state(inline_param, state, phase, &phase, &level);
    st = ct_net_create_mapped(inline_param, s->map, s->path, s->dir, phase, level, stages, seed, out, err);
  } else {
    char *p = resolve(s, file);
    if (!p) {
      free(stages);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    ProtobufCMessage *m = NULL;
    ct_srcmap *map = NULL;
    st = ct_prototxt_read_file_mapped(p, &caffe__net_parameter__descriptor, &m, &map, err);
    Caffe__NetParameter *np = (Caffe__NetParameter *)m;
    if (st == CT_OK && ct_net_needs_upgrade(np)) st = ct_upgrade_net(np, p, map, err);
    if (st == CT_OK && s->cluster && phase == CT_TRAIN) /* cluster (issue 5): this worker's share */
      st = ct_cluster_prepare_train_param(s->cluster, np, err);
    if (st == CT_OK) {
      const char *slash = strrchr(p, '/');
      char dir[4096] = "";
      if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - p + 1), p);
      ct_solver_net_state(np, state, phase, &phase, &level);
      st = ct_net_create_mapped(np, map, p, dir, phase, level, stages, seed, out, err);
    }
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    ct_srcmap_free(map);
    free(p);
  }
  free(stages);
  return st;
}

void ct_solver_free(ct_solver *s) {
  if (!s) return;
  ct_cluster_free(s->cluster); /* issue 5: tells the servers, finalizes MPI */
  ct_update_free(&s->upd);
  for (int i = 0; i < s->ntest; i++) ct_net_free(s->test_nets[i]);
  free(s->test_nets);
  free(s->test_iter);
  ct_net_free(s->net);
  free(s->losses);
  free(s->prefix);
  free(s->path);
  free(s->dir);
  if (s->sp) protobuf_c_message_free_unpacked(&s->sp->base, NULL);
  ct_srcmap_free(s->map);
  free(s);
}

/* issue 5: one more train net, for worker groups that run as threads of this process */
static ct_status cluster_train_net(void *ctx, ct_net **out, ct_error *err) {
  ct_solver *s = ctx;
  const Caffe__SolverParameter *sp = s->sp;
  if (sp->train_net_param || sp->net_param)
    return build_net(s, sp->train_net_param ? sp->train_net_param : sp->net_param, NULL, CT_TRAIN, sp->train_state,
                     s->seed, out, err);
  return build_net(s, NULL, sp->train_net ? sp->train_net : sp->net, CT_TRAIN, sp->train_state, s->seed, out, err);
}

static ct_status make_nets(ct_solver *s, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  int ntrain = (sp->net != NULL) + (sp->net_param != NULL) + (sp->train_net != NULL) + (sp->train_net_param != NULL);
  if (ntrain != 1)
    return ct_fail(err, CT_EINVAL,
                   "%s: give exactly one of net, net_param, train_net, train_net_param (found %d)", s->path, ntrain);
  const Caffe__NetState *tstate = sp->train_state;
  if (sp->train_net_param || sp->net_param)
    CT_TRY(build_net(s, sp->train_net_param ? sp->train_net_param : sp->net_param, NULL, CT_TRAIN, tstate, s->seed,
                     &s->net, err));
  else
    CT_TRY(build_net(s, NULL, sp->train_net ? sp->train_net : sp->net, CT_TRAIN, tstate, s->seed, &s->net, err));
  /* test nets: test_net_param, then test_net, then instances of the general net */
  int nspecific = (int)(sp->n_test_net_param + sp->n_test_net);
  int generic = (int)sp->n_test_iter - nspecific;
  bool has_generic = sp->net || sp->net_param;
  if (generic < 0 || (!has_generic && generic > 0))
    return ct_fail(err, CT_EINVAL, "%s: %zu test_iter values for %d test nets; give one test_iter per test net",
                   s->path, sp->n_test_iter, nspecific + (has_generic ? (generic > 0 ? generic : 0) : 0));
  if (sp->n_test_state && sp->n_test_state != sp->n_test_iter)
    return ct_fail(err, CT_EINVAL, "%s: %zu test_state entries for %zu test nets", s->path, sp->n_test_state,
                   sp->n_test_iter);
  if (sp->n_test_iter && sp->test_interval <= 0 && !sp->has_test_interval) {
    /* Caffe tests only when test_interval is set; nothing to check */
  }
  s->ntest = (int)sp->n_test_iter;
  s->test_nets = calloc((size_t)s->ntest + 1, sizeof *s->test_nets);
  s->test_iter = calloc((size_t)s->ntest + 1, sizeof *s->test_iter);
  if (!s->test_nets || !s->test_iter) return ct_fail(err, CT_ENOMEM, "out of memory");
  for (int k = 0; k < s->ntest; k++) {
    const Caffe__NetState *state = sp->n_test_state ? sp->test_state[k] : NULL;
    uint64_t seed = ct_rng_derive(s->seed, 1000 + (uint64_t)k);
    s->test_iter[k] = sp->test_iter[k];
    if (s->test_iter[k] <= 0)
      return ct_fail(err, CT_EINVAL, "%s: test_iter %d must be positive", s->path, s->test_iter[k]);
    ct_status st;
    if ((size_t)k < sp->n_test_net_param)
      st = build_net(s, sp->test_net_param[k], NULL, CT_TEST, state, seed, &s->test_nets[k], err);
    else if ((size_t)k < sp->n_test_net_param + sp->n_test_net)
      st = build_net(s, NULL, sp->test_net[(size_t)k - sp->n_test_net_param], CT_TEST, state, seed, &s->test_nets[k],
                     err);
    else
      st = build_net(s, sp->net_param, sp->net, CT_TEST, state, seed, &s->test_nets[k], err);
    if (st) return ct_error_prefix(err, "test net #%d", k);
    CT_TRY(ct_net_share_weights_from(s->test_nets[k], s->net, err));
  }
  return CT_OK;
}

static void debug_log(void *ctx, const char *line) { logf_(ctx, "%s", line); }

/* SolverParameter.weights: each entry a comma-separated list of .caffemodel files, copied into
 * the train net in order (the test nets share its values). */
static ct_status load_param_weights(ct_solver *s, ct_error *err) {
  for (size_t i = 0; i < s->sp->n_weights; i++) {
    char *list = xstrdup(s->sp->weights[i]);
    if (!list) return ct_fail(err, CT_ENOMEM, "out of memory");
    ct_status st = CT_OK;
    for (char *tok = list, *next; tok && st == CT_OK; tok = next) {
      next = strchr(tok, ',');
      if (next) *next++ = '\0';
      if (!*tok) continue;
      char *p = resolve(s, tok);
      if (!p) st = ct_fail(err, CT_ENOMEM, "out of memory");
      if (st == CT_OK) logf_(s, "Finetuning from %s (the solver's weights)", p);
      if (st == CT_OK && (st = ct_net_load_weights(s->net, p, err))) ct_error_prefix(err, "%s: weights", s->path);
      free(p);
    }
    free(list);
    CT_TRY(st);
  }
  return CT_OK;
}

ct_status ct_solver_create(const char *path, const ct_solver_options *opt, ct_solver **out, ct_error *err) {
  *out = NULL;
  ct_solver *s = calloc(1, sizeof *s);
  if (!s) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (opt) s->opt = *opt;
  clock_gettime(CLOCK_MONOTONIC, &s->created);
  ct_status st;
  if ((st = ct_solver_param_read(path, &s->sp, &s->map, err))) goto fail;
  s->path = xstrdup(path);
  const char *slash = strrchr(path, '/');
  s->dir = malloc(slash ? (size_t)(slash - path) + 2 : 1);
  if (!s->path || !s->dir) goto oom;
  if (slash)
    snprintf(s->dir, (size_t)(slash - path) + 2, "%s", path);
  else
    s->dir[0] = 0;
  const Caffe__SolverParameter *sp = s->sp;
  if (sp->random_seed >= 0) {
    s->seed = (uint64_t)sp->random_seed;
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  if (sp->display < 0 || sp->snapshot < 0 || sp->test_interval < 0 || sp->iter_size < 1 || sp->average_loss < 1) {
    st = ct_fail(err, CT_EINVAL, "%s: display, snapshot and test_interval must be >= 0, iter_size and average_loss >= 1",
                 path);
    goto fail;
  }
  if (sp->max_iter < 0) {
    st = ct_fail(err, CT_EINVAL, "%s: max_iter must be >= 0 (got %d)", path, sp->max_iter);
    goto fail;
  }
  if (sp->snapshot_format == CAFFE__SOLVER_PARAMETER__SNAPSHOT_FORMAT__HDF5 && !ct_h5_available()) {
    st = ct_fail(err, CT_EUNSUPPORTED, "%s: snapshot_format: HDF5 needs libhdf5, which this build was made without; "
                 "use BINARYPROTO or rebuild with Debian's libhdf5-dev", path);
    goto fail;
  }
  /* cluster (issue 5): decided before the nets, whose batch and data shard depend on it */
  if ((st = ct_cluster_create(sp, path, &s->cluster, err))) goto fail;
  if ((st = make_nets(s, err))) goto fail;
  if (s->cluster && s->opt.partitions <= 0) /* issue 5: the processes on a machine share its cores */
    s->opt.partitions = ct_cluster_local_partitions(s->cluster);
  if (s->opt.partitions > 0) {
    if ((st = ct_net_set_partitions(s->net, s->opt.partitions, err))) goto fail;
    for (int k = 0; k < s->ntest; k++)
      if ((st = ct_net_set_partitions(s->test_nets[k], s->opt.partitions, err))) goto fail;
  }
  if (s->opt.devices) {
    /* the cluster exchanges parameters and gradients through host buffers it holds from the
     * start: a device elsewhere would leave them stale, so it is refused rather than wrong */
    if (s->cluster && strcmp(s->opt.devices, "cpu") != 0) {
      st = ct_fail(err, CT_EUNSUPPORTED,
                   "%s: --device=%s: cluster training (cluster / framework settings) runs on the CPU only", path,
                   s->opt.devices);
      goto fail;
    }
    if ((st = ct_net_set_devices(s->net, s->opt.devices, err))) goto fail;
    for (int k = 0; k < s->ntest; k++)
      if ((st = ct_net_set_devices(s->test_nets[k], s->opt.devices, err))) goto fail;
  }
  ct_update_param *params = (ct_update_param *)ct_net_learnable(s->net);
  if ((st = ct_update_init(&s->upd, sp, ct_net_param_buffer(s->net), ct_net_diff_buffer(s->net),
                           ct_net_param_total(s->net), params, ct_net_num_learnable(s->net), err))) {
    ct_error_prefix(err, "%s", path);
    goto fail;
  }
  if (sp->snapshot_prefix) {
    s->prefix = xstrdup(sp->snapshot_prefix);
  } else {
    /* Caffe's default: the solver file's name without its extension */
    s->prefix = xstrdup(path);
    if (s->prefix) {
      char *dot = strrchr(s->prefix, '.');
      if (dot && (!strrchr(s->prefix, '/') || dot > strrchr(s->prefix, '/'))) *dot = 0;
    }
  }
  s->loss_window = sp->average_loss;
  s->losses = calloc((size_t)s->loss_window, sizeof(float));
  if (!s->prefix || !s->losses) goto oom;
  if (s->opt.weights && (st = ct_net_load_weights(s->net, s->opt.weights, err))) goto fail;
  /* the solver's own weights, as Caffe's train: --weights and --snapshot replace them */
  if (!s->opt.weights && !s->opt.snapshot && (st = load_param_weights(s, err))) goto fail;
  for (int k = 0; k < s->ntest; k++) /* a test net's own debug_info speaks through the solver's log */
    if (ct_net_debug(s->test_nets[k])) ct_net_set_debug(s->test_nets[k], true, debug_log, s);
  if (s->opt.snapshot && (st = ct_solver_restore(s, s->opt.snapshot, err))) goto fail;
  if (s->cluster) { /* issue 5: one starting point for every process */
    logf_(s, "Cluster %s", ct_cluster_describe(s->cluster));
    ct_net_builder nets = {cluster_train_net, s};
    if ((st = ct_cluster_start(s->cluster, s->net, &s->upd, &s->iter, &nets, err))) goto fail;
  }
  *out = s;
  return CT_OK;
oom:
  st = ct_fail(err, CT_ENOMEM, "out of memory");
fail:
  ct_solver_free(s);
  return st;
}

int ct_solver_iter(const ct_solver *s) { return s->iter; }
int ct_solver_is_root(const ct_solver *s) { return is_root(s); }
ct_net *ct_solver_net(ct_solver *s) { return s->net; }
int ct_solver_num_test_nets(const ct_solver *s) { return s->ntest; }
ct_net *ct_solver_test_net(ct_solver *s, int i) { return i >= 0 && i < s->ntest ? s->test_nets[i] : NULL; }

/* ------------------------------------------------------------------ testing */

static void emit(ct_solver *s, ct_event *e);
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
  emit(s, &ev);
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

static float smoothed_loss(ct_solver *s, float loss) {
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

static void emit(ct_solver *s, ct_event *e) {
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
  emit(s, &e);
}

static ct_status step(ct_solver *s, int n, ct_error *err);

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
    return CT_OK;
  }
  bool diffs_zero = false; /* the last local update left the gradients zeroed */
  while (s->iter < stop) {
    if (!diffs_zero) CT_TRY(ct_net_clear_param_diffs_on(s->net, err));
    diffs_zero = false;
    if (sp->test_interval > 0 && s->iter % sp->test_interval == 0 && (s->iter > 0 || sp->test_initialization))
      CT_TRY(test_all(s, err));
    /* Caffe's debug_info: the train net logs its blobs on display iterations */
    ct_net_set_debug(s->net, sp->debug_info && sp->display > 0 && s->iter % sp->display == 0 && is_root(s), debug_log,
                     s);
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
    float smoothed = smoothed_loss(s, (float)loss);
    bool display = sp->display > 0 && s->iter % sp->display == 0;
    double images_per_s = 0;
    if (display) {
      double dt = seconds_since(&s->last_display);
      int iters = s->iter - s->last_display_iter;
      if (iters > 0 && dt > 0) images_per_s = iters * (double)sp->iter_size * ct_net_batch_size(s->net) / dt;
      if (s->cluster) images_per_s *= ct_cluster_nworkers(s->cluster); /* issue 5: the whole job's */
      if (iters > 0 && dt > 0)
        logf_(s, "Iteration %d (%g iter/s, %.3fs/%d iters), loss = %g", s->iter, iters / dt, dt, iters, smoothed);
      else
        logf_(s, "Iteration %d, loss = %g", s->iter, smoothed);
      clock_gettime(CLOCK_MONOTONIC, &s->last_display);
      s->last_display_iter = s->iter;
      display_outputs(s);
    }
    CT_TRY(check_gradients(s, err));
    float rate;
    s->upd.pool = ct_net_placement(s->net)->pool; /* the update splits over the net's current threads */
    if (s->cluster) /* issue 5: exchange gradients, get fresh parameters */
      CT_TRY(ct_cluster_update(s->cluster, s->iter, &rate, err));
    else { /* on the net's device, zeroing the gradients for the next iteration as it goes */
      const ct_driver *d = ct_net_driver(s->net);
      ct_tensor *p = ct_net_params(s->net);
      ct_copy_stats *cs = &ct_net_placement(s->net)->stats;
      CT_TRY(ct_tensor_deref(p, CT_DATA, d->mem, CT_READWRITE, 0, p->count, cs, &s->upd.data, err));
      CT_TRY(ct_tensor_deref(p, CT_DIFF, d->mem, CT_READWRITE, 0, p->count, cs, &s->upd.diff, err));
      CT_TRY(ct_update_apply_clear(&s->upd, d, s->iter, true, &rate, err));
      diffs_zero = true;
    }
    if (display) {
      logf_(s, "Iteration %d, lr = %g", s->iter, rate);
      if (s->cluster) { /* issue 5: this process's traffic since the last display */
        double bytes, wait_s;
        int updates;
        ct_cluster_take_stats(s->cluster, &bytes, &wait_s, &updates);
        if (updates > 0)
          logf_(s, "Iteration %d, communication: %.0f bytes sent per iteration, %.2f ms per iteration waiting (rank 0)",
                s->iter, bytes / updates, 1e3 * wait_s / updates);
      }
      emit_train(s, smoothed, rate, images_per_s);
    } else if (s->opt.event) {
      double dt = seconds_since(&s->last_display);
      int iters = s->iter - s->last_display_iter;
      ct_event e = {.kind = CT_EVENT_ITER, .loss = smoothed, .lr = rate};
      if (iters > 0 && dt > 0) e.images_per_s = iters * (double)sp->iter_size * ct_net_batch_size(s->net) / dt;
      emit(s, &e);
    }
    s->iter++;
    if (sp->snapshot > 0 && s->iter % sp->snapshot == 0) CT_TRY(ct_solver_snapshot(s, NULL, NULL, err));
  }
  return CT_OK;
}

ct_status ct_solver_solve(ct_solver *s, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  logf_(s, "Solving %s", ct_net_name(s->net));
  logf_(s, "Learning Rate Policy: %s", sp->lr_policy ? sp->lr_policy : "(none)");
  CT_TRY(ct_solver_step(s, sp->max_iter - s->iter, err));
  if (sp->snapshot_after_train && (sp->snapshot <= 0 || s->iter % sp->snapshot != 0))
    CT_TRY(ct_solver_snapshot(s, NULL, NULL, err));
  if (sp->display > 0 && s->iter % sp->display == 0) {
    float loss;
    CT_TRY(ct_net_forward(s->net, &loss, err));
    logf_(s, "Iteration %d, loss = %g", s->iter, loss);
  }
  if (sp->test_interval > 0 && s->iter % sp->test_interval == 0) CT_TRY(test_all(s, err));
  if (s->cluster) CT_TRY(ct_cluster_finish(s->cluster, err)); /* issue 5 */
  logf_(s, "Optimization Done.");
  ct_event ev = {.kind = CT_EVENT_DONE};
  emit(s, &ev);
  return CT_OK;
}

/* ------------------------------------------------------------------ snapshots */

/* Creates the directories of the snapshot prefix, so that a fresh checkout can train without
 * preparing folders by hand. */
static ct_status make_prefix_dirs(const char *prefix, ct_error *err) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", prefix);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return ct_fail(err, CT_EIO, "cannot create the snapshot directory %s: %s", buf, strerror(errno));
    *p = '/';
  }
  return CT_OK;
}

static char *snapshot_name(const ct_solver *s, const char *ext) {
  size_t n = strlen(s->prefix) + 64;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s_iter_%d.%s", s->prefix, s->iter, ext);
  return p;
}

ct_status ct_solver_snapshot(ct_solver *s, char **model_path, char **state_path, ct_error *err) {
  if (s->cluster) { /* issue 5: the root writes the one snapshot, with the servers' values */
    if (model_path) *model_path = NULL;
    if (state_path) *state_path = NULL;
    if (!ct_cluster_is_root(s->cluster)) return CT_OK;
    CT_TRY(ct_cluster_collect(s->cluster, err));
  }
  /* Caffe's names and layouts: binary protos, or HDF5 files (proto/h5io.h) */
  const bool h5 = s->sp->snapshot_format == CAFFE__SOLVER_PARAMETER__SNAPSHOT_FORMAT__HDF5;
  char *mp = snapshot_name(s, h5 ? "caffemodel.h5" : "caffemodel");
  char *spath = snapshot_name(s, h5 ? "solverstate.h5" : "solverstate");
  Caffe__SolverState *st = malloc(sizeof *st);
  ct_status rc = CT_OK;
  if (!mp || !spath || !st) {
    free(st);
    st = NULL;
    rc = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  caffe__solver_state__init(st);
  if ((rc = make_prefix_dirs(s->prefix, err))) goto done;
  logf_(s, "Snapshotting to %s file %s", h5 ? "HDF5" : "binary proto", mp);
  if (h5) {
    Caffe__NetParameter *np = NULL;
    rc = ct_net_to_proto(s->net, &np, err);
    if (rc == CT_OK) rc = ct_h5_write_weights(mp, np, err);
    if (np) protobuf_c_message_free_unpacked(&np->base, NULL);
    if (rc) goto done;
  } else if ((rc = ct_net_save_weights(s->net, mp, err))) {
    goto done;
  }
  st->has_iter = 1;
  st->iter = s->iter;
  st->learned_net = xstrdup(mp);
  int nl = ct_net_num_learnable(s->net);
  st->history = calloc((size_t)(s->upd.nsets * nl) + 1, sizeof *st->history);
  st->loss_history = malloc(((size_t)s->nloss + 1) * sizeof(float));
  if (!st->learned_net || !st->history || !st->loss_history) {
    rc = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  const ct_update_param *lp = ct_net_learnable(s->net);
  for (int set = 0; set < s->upd.nsets; set++)
    for (int i = 0; i < nl; i++) {
      /* a tensor of the parameter's shape viewing its range of the history */
      const ct_tensor *p = ct_net_learnable_tensor(s->net, i);
      ct_tensor h = {.naxes = p->naxes, .count = p->count};
      memcpy(h.shape, p->shape, sizeof h.shape);
      ct_tensor_view(&h, CT_DATA, s->upd.hist[set], lp[i].offset);
      rc = ct_blob_to_proto(&h, false, &st->history[st->n_history], err);
      ct_tensor_view(&h, CT_DATA, NULL, 0);
      if (rc) goto done;
      st->n_history++;
    }
  /* Caffe's multistep position after the last update (made at iteration iter - 1), for
   * Caffe's own resume */
  st->has_current_step = 1;
  for (size_t k = 0; k < s->sp->n_stepvalue && s->iter - 1 >= s->sp->stepvalue[k]; k++) st->current_step++;
  /* the smoothing window, oldest first */
  for (int i = 0; i < s->nloss; i++) {
    int idx = s->nloss < s->loss_window ? i : (s->loss_pos + i) % s->loss_window;
    st->loss_history[st->n_loss_history++] = s->losses[idx];
  }
  st->has_solver_rng = 1;
  st->solver_rng = s->seed;
  if ((rc = ct_net_save_state(s->net, "", st, err))) goto done;
  for (int k = 0; k < s->ntest; k++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "test%d/", k);
    if ((rc = ct_net_save_state(s->test_nets[k], prefix, st, err))) goto done;
  }
  logf_(s, "Snapshotting solver state to %s file %s", h5 ? "HDF5" : "binary proto", spath);
  rc = h5 ? ct_h5_write_state(spath, st, err) : ct_proto_write_binary(spath, &st->base, err);
  if (rc == CT_OK) {
    ct_event ev = {.kind = CT_EVENT_SNAPSHOT, .path = mp, .path2 = spath};
    emit(s, &ev);
  }
done:
  if (st) protobuf_c_message_free_unpacked(&st->base, NULL);
  if (rc == CT_OK && model_path) {
    *model_path = mp;
    mp = NULL;
  }
  if (rc == CT_OK && state_path) {
    *state_path = spath;
    spath = NULL;
  }
  free(mp);
  free(spath);
  return rc;
}

ct_status ct_solver_restore(ct_solver *s, const char *path, ct_error *err) {
  ProtobufCMessage *m = NULL;
  /* Caffe tells the formats apart by the name's .h5 */
  size_t plen = strlen(path);
  if (plen > 3 && !strcmp(path + plen - 3, ".h5"))
    CT_TRY(ct_h5_read_state(path, (Caffe__SolverState **)&m, err));
  else
    CT_TRY(ct_proto_read_binary(path, &caffe__solver_state__descriptor, &m, err));
  Caffe__SolverState *st = (Caffe__SolverState *)m;
  ct_status rc = CT_OK;
  int nl = ct_net_num_learnable(s->net);
  /* issue 7: a damaged state must not set a negative iteration (the loop's counters and
   * snapshot names assume iter >= 0) */
  if (st->iter < 0) {
    rc = ct_fail(err, CT_EPARSE, "%s: iteration %d is negative; not a valid .solverstate", path, st->iter);
    goto done;
  }
  if (st->n_history != (size_t)(s->upd.nsets * nl)) {
    rc = ct_fail(err, CT_ESHAPE, "%s: holds %zu history blobs, but this solver and net need %d", path, st->n_history,
                 s->upd.nsets * nl);
    goto done;
  }
  if (st->learned_net && st->learned_net[0]) {
    char *model = NULL;
    if (access(st->learned_net, F_OK) == 0) {
      model = xstrdup(st->learned_net);
    } else {
      /* the snapshot pair may have moved together: look beside the .solverstate */
      const char *base = strrchr(st->learned_net, '/');
      base = base ? base + 1 : st->learned_net;
      const char *slash = strrchr(path, '/');
      size_t n = strlen(path) + strlen(base) + 2;
      model = malloc(n);
      if (model) snprintf(model, n, "%.*s%s", slash ? (int)(slash - path + 1) : 0, path, base);
    }
    if (!model) {
      rc = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    rc = ct_net_load_weights(s->net, model, err);
    free(model);
    if (rc) goto done;
  }
  const ct_update_param *lp = ct_net_learnable(s->net);
  for (int set = 0; set < s->upd.nsets; set++) {
    float *hist;
    if ((rc = ct_update_history_host(&s->upd, set, &hist, err))) goto done;
    for (int i = 0; i < nl; i++) {
      const Caffe__BlobProto *b = st->history[(size_t)(set * nl + i)];
      if (b->n_data != lp[i].count) {
        rc = ct_fail(err, CT_ESHAPE, "%s: history blob %d holds %zu values; parameter %d has %zu", path, set * nl + i,
                     b->n_data, i, lp[i].count);
        goto done;
      }
      memcpy(hist + lp[i].offset, b->data, lp[i].count * sizeof(float));
    }
  }
  s->iter = st->iter;
  s->nloss = 0;
  s->loss_pos = 0;
  for (size_t i = 0; i < st->n_loss_history; i++) smoothed_loss(s, st->loss_history[i]);
  ct_net_load_state(s->net, "", st);
  for (int k = 0; k < s->ntest; k++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "test%d/", k);
    ct_net_load_state(s->test_nets[k], prefix, st);
  }
done:
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}
