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

#include "core/files.h"
#include "core/status.h"
#include "dist/cluster.h"
#include "net/net.h"
#include "proto/blob.h"
#include "proto/prototxt.h"
#include "dist/startup.h"
#include "core/pool.h"
#include "proto/h5io.h"
#include "proto/upgrade.h"
#include "solvers/setup.h"
#include "solvers/solver_internal.h"
#include "solvers/update.h"

#define CT_MAX_SCAN_PARTS 64

/* issue 24: a process of a cluster that hosts only servers: no data, no test nets */
static bool serves_only(const ct_solver *s) { return s->cluster && !ct_cluster_has_worker(s->cluster); }


/* cluster (issue 5): display, test and snapshot happen on the root process only */
static bool is_root(const ct_solver *s) { return !s->cluster || ct_cluster_is_root(s->cluster); }

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

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

/* NetState stage lists are not NULL-terminated in protobuf-c; make a terminated copy, with
 * `extra` (NULL-terminated, may be NULL: the CLI's --stage) after them. *oom on failure. */
static const char **stages_copy(const Caffe__NetState *st, const char *const *extra, bool *oom) {
  size_t n = st ? st->n_stage : 0, m = 0;
  while (extra && extra[m]) m++;
  *oom = false;
  if (!n && !m) return NULL;
  const char **v = calloc(n + m + 1, sizeof *v);
  if (!v) {
    *oom = true;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) v[i] = st->stage[i];
  for (size_t i = 0; i < m; i++) v[n + i] = extra[i];
  return v;
}

/* Builds net `which` (0 train, 1 + k test net k) from an inline NetParameter or a file. On the
 * way (issue 24) it records the net as parsed in s->digest, splits a cluster worker's batch
 * (naming `file` or the solver in messages) and puts a server-only process's stand-ins in place
 * of the data layers. out == NULL: parse and record only. */
static ct_status build_net(ct_solver *s, const Caffe__NetParameter *inline_param, const char *file, int which,
                           ct_phase phase, const Caffe__NetState *state, uint64_t seed, ct_net **out, ct_error *err) {
  /* Caffe's train --level / --stage change the train state only */
  const bool train = phase == CT_TRAIN;
  bool oom;
  const char **stages = stages_copy(state, train ? s->opt.stages : NULL, &oom);
  if (oom) return ct_fail(err, CT_ENOMEM, "out of memory");
  (void)state_stages;
  int level = 0;
  ct_status st = CT_OK;
  Caffe__NetParameter *np = NULL; /* owned: a copy of the inline net, or the parsed file */
  ct_srcmap *map = NULL;          /* the file's positions, for plan errors (file:line:col) */
  char *p = NULL, dir[4096] = "";
  if (inline_param) {
    size_t n = protobuf_c_message_get_packed_size(&inline_param->base);
    uint8_t *buf = malloc(n + 1);
    if (buf) {
      protobuf_c_message_pack(&inline_param->base, buf);
      np = caffe__net_parameter__unpack(NULL, n, buf);
      free(buf);
    }
    if (!np) st = ct_fail(err, CT_ENOMEM, "out of memory");
    if (!st) snprintf(dir, sizeof dir, "%s", s->dir);
  } else if (!(p = resolve(s, file))) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
  } else {
    ProtobufCMessage *m = NULL;
    st = ct_prototxt_read_file_mapped(p, &caffe__net_parameter__descriptor, &m, &map, err);
    np = (Caffe__NetParameter *)m;
    if (st == CT_OK && ct_net_needs_upgrade(np)) st = ct_upgrade_net(np, p, map, err);
    const char *slash = strrchr(p, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - p + 1), p);
  }
  /* Caffe's merge of NetStates: the default phase, the net's own state, the solver's; then the
   * CLI's --level for the train net */
  if (st == CT_OK) ct_solver_net_state(np, state, phase, &phase, &level);
  if (train && s->opt.has_level) level = s->opt.level;
  const char *source = p ? p : s->path;
  if (st == CT_OK && s->digest) ct_digest_net(s->digest, which, np);
  if (st == CT_OK && out && s->cluster && phase == CT_TRAIN) /* cluster (issue 5): this worker's share */
    st = ct_cluster_prepare_train_param(s->cluster, np, source, level, stages, err);
  if (st == CT_OK && out && s->stand_ins && phase == CT_TRAIN)
    st = ct_dist_use_stand_ins(np, s->stand_ins, level, stages, err);
  /* an inline net left as written is built from the solver's own message, whose positions the
   * solver file's map knows (the copy's pointers are not in it) */
  const bool as_written = inline_param && !(s->cluster && phase == CT_TRAIN) && !(s->stand_ins && phase == CT_TRAIN);
  if (st == CT_OK && out)
    st = ct_net_create_mapped(as_written ? inline_param : np, as_written ? s->map : map, source, dir, phase, level,
                              stages, seed, out, err);
  if (np) protobuf_c_message_free_unpacked(&np->base, NULL);
  ct_srcmap_free(map);
  free(p);
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

/* The train net (out NULL: parse and record it only, see build_net). */
static ct_status train_net(ct_solver *s, ct_net **out, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  if (sp->train_net_param || sp->net_param)
    return build_net(s, sp->train_net_param ? sp->train_net_param : sp->net_param, NULL, 0, CT_TRAIN, sp->train_state,
                     s->seed, out, err);
  return build_net(s, NULL, sp->train_net ? sp->train_net : sp->net, 0, CT_TRAIN, sp->train_state, s->seed, out, err);
}

/* issue 5: one more train net, for worker groups that run as threads of this process */
static ct_status cluster_train_net(void *ctx, ct_net **out, ct_error *err) { return train_net(ctx, out, err); }

/* The train net and the test nets; with parse_only (issue 24: a process that only serves) the
 * nets are read and recorded in the digest, not built. */
static ct_status make_nets(ct_solver *s, bool parse_only, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  int ntrain = (sp->net != NULL) + (sp->net_param != NULL) + (sp->train_net != NULL) + (sp->train_net_param != NULL);
  if (ntrain != 1)
    return ct_fail(err, CT_EINVAL,
                   "%s: give exactly one of net, net_param, train_net, train_net_param (found %d)", s->path, ntrain);
  CT_TRY(train_net(s, parse_only ? NULL : &s->net, err));
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
  int ntest = (int)sp->n_test_iter;
  if (!parse_only) {
    s->ntest = ntest;
    s->test_nets = calloc((size_t)s->ntest + 1, sizeof *s->test_nets);
    s->test_iter = calloc((size_t)s->ntest + 1, sizeof *s->test_iter);
    if (!s->test_nets || !s->test_iter) return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  for (int k = 0; k < ntest; k++) {
    const Caffe__NetState *state = sp->n_test_state ? sp->test_state[k] : NULL;
    uint64_t seed = ct_rng_derive(s->seed, 1000 + (uint64_t)k);
    if (sp->test_iter[k] <= 0)
      return ct_fail(err, CT_EINVAL, "%s: test_iter %d must be positive", s->path, sp->test_iter[k]);
    if (!parse_only) s->test_iter[k] = sp->test_iter[k];
    ct_net **out = parse_only ? NULL : &s->test_nets[k];
    ct_status st;
    if ((size_t)k < sp->n_test_net_param)
      st = build_net(s, sp->test_net_param[k], NULL, 1 + k, CT_TEST, state, seed, out, err);
    else if ((size_t)k < sp->n_test_net_param + sp->n_test_net)
      st = build_net(s, NULL, sp->test_net[(size_t)k - sp->n_test_net_param], 1 + k, CT_TEST, state, seed, out, err);
    else
      st = build_net(s, sp->net_param, sp->net, 1 + k, CT_TEST, state, seed, out, err);
    if (st) return ct_error_prefix(err, "test net #%d", k);
    if (!parse_only) CT_TRY(ct_net_share_weights_from(s->test_nets[k], s->net, err));
  }
  return CT_OK;
}

/* Every real-valued setting (base_lr, gamma, power, momentum, weight_decay, delta, ...) must be
 * finite: a NaN gamma would reach the weights through the learning rate and be blamed, a few
 * iterations on, on a gradient (issue 23). Walks the descriptor, so new fields are covered. */
static ct_status check_finite_settings(const Caffe__SolverParameter *sp, const char *path, ct_error *err) {
  const ProtobufCMessageDescriptor *d = sp->base.descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->label == PROTOBUF_C_LABEL_REPEATED) continue;
    const char *at = (const char *)sp + f->offset;
    double v;
    if (f->type == PROTOBUF_C_TYPE_FLOAT)
      v = *(const float *)at;
    else if (f->type == PROTOBUF_C_TYPE_DOUBLE)
      v = *(const double *)at;
    else
      continue;
    if (!isfinite(v))
      return ct_fail(err, CT_EINVAL, "%s: %s is %g; a solver setting must be a finite number", path, f->name, v);
  }
  return CT_OK;
}

/* Caffe's "Ignoring source layer ..." lines while fine-tuning. */
static void weights_note(void *ctx, const char *line) { logf_((ct_solver *)ctx, "%s", line); }

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

/* After the nets: their threads and devices, the update rule, and the starting point (weights,
 * snapshot), which a server-only process takes from rank 0 instead (issue 24). */
static ct_status finish_setup(ct_solver *s, ct_error *err) {
  const Caffe__SolverParameter *sp = s->sp;
  if (!serves_only(s)) {
    if (s->cluster && s->opt.partitions <= 0) /* issue 5: the processes on a machine share its cores */
      s->opt.partitions = ct_cluster_local_partitions(s->cluster);
    if (s->opt.partitions > 0) {
      CT_TRY(ct_net_set_partitions(s->net, s->opt.partitions, err));
      for (int k = 0; k < s->ntest; k++) CT_TRY(ct_net_set_partitions(s->test_nets[k], s->opt.partitions, err));
    }
    if (s->opt.devices) {
      /* the cluster exchanges parameters and gradients through host buffers it holds from the
       * start: a device elsewhere would leave them stale, so it is refused rather than wrong */
      if (s->cluster && strcmp(s->opt.devices, "cpu") != 0)
        return ct_fail(err, CT_EUNSUPPORTED,
                       "%s: --device=%s: cluster training (cluster / framework settings) runs on the CPU only",
                       s->path, s->opt.devices);
      CT_TRY(ct_net_set_devices(s->net, s->opt.devices, err));
      for (int k = 0; k < s->ntest; k++) CT_TRY(ct_net_set_devices(s->test_nets[k], s->opt.devices, err));
    }
  }
  ct_update_param *params = (ct_update_param *)ct_net_learnable(s->net);
  if (ct_update_init(&s->upd, sp, ct_net_param_buffer(s->net), ct_net_diff_buffer(s->net), ct_net_param_total(s->net),
                     params, ct_net_num_learnable(s->net), err))
    return ct_error_prefix(err, "%s", s->path);
  if (serves_only(s)) return CT_OK;
  if (s->opt.weights) {
    ct_weights_opts wo = {.note = weights_note, .ctx = s, .allow_nonfinite = s->opt.allow_nonfinite};
    CT_TRY(ct_net_load_weights_ex(s->net, s->opt.weights, &wo, err));
  }
  /* the solver's own weights, as Caffe's train: --weights and --snapshot replace them */
  if (!s->opt.weights && !s->opt.snapshot) CT_TRY(load_param_weights(s, err));
  for (int k = 0; k < s->ntest; k++) /* a test net's own debug_info speaks through the solver's log */
    if (ct_net_debug(s->test_nets[k])) ct_net_set_debug(s->test_nets[k], true, debug_log, s);
  if (s->opt.snapshot) CT_TRY(ct_solver_restore(s, s->opt.snapshot, err));
  return CT_OK;
}

/* Everything a process does before the cluster's processes compare notes (ct_cluster_agree). */
static ct_status setup(ct_solver *s, const char *path, ct_error *err) {
  CT_TRY(ct_solver_param_read(path, &s->sp, &s->map, err));
  if (s->opt.type) { /* pycaffe's typed solver classes choose the rule whatever the file says */
    char *t = xstrdup(s->opt.type);
    if (!t) return ct_fail(err, CT_ENOMEM, "out of memory");
    if (s->sp->type != caffe__solver_parameter__type__default_value) free(s->sp->type);
    s->sp->type = t;
    s->sp->has_solver_type = 0; /* the deprecated enum must not contradict the chosen type */
  }
  ct_digest_solver(s->digest, s->sp);
  s->path = xstrdup(path);
  const char *slash = strrchr(path, '/');
  s->dir = malloc(slash ? (size_t)(slash - path) + 2 : 1);
  if (!s->path || !s->dir) return ct_fail(err, CT_ENOMEM, "out of memory");
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
  if (sp->average_loss > 10000000) /* issue 23: name the field rather than fail to allocate */
    return ct_fail(err, CT_EINVAL, "%s: average_loss %d is too large (at most 10000000): the smoothing window would "
                   "hold %.1f GB of losses", path, sp->average_loss, (double)sp->average_loss * sizeof(float) / 1e9);
  if (sp->display < 0 || sp->snapshot < 0 || sp->test_interval < 0 || sp->iter_size < 1 || sp->average_loss < 1)
    return ct_fail(err, CT_EINVAL, "%s: display, snapshot and test_interval must be >= 0, iter_size and average_loss >= 1",
                   path);
  CT_TRY(check_finite_settings(sp, path, err));
  if (sp->max_iter < 0) return ct_fail(err, CT_EINVAL, "%s: max_iter must be >= 0 (got %d)", path, sp->max_iter);
  if (sp->snapshot_format == CAFFE__SOLVER_PARAMETER__SNAPSHOT_FORMAT__HDF5 && !ct_h5_available())
    return ct_fail(err, CT_EUNSUPPORTED, "%s: snapshot_format: HDF5 needs libhdf5, which this build was made without; "
                   "use BINARYPROTO or rebuild with Debian's libhdf5-dev", path);
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
  if (!s->prefix) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (!s->losses) /* issue 23: name the setting rather than a bare "out of memory" */
    return ct_fail(err, CT_ENOMEM, "%s: average_loss %d: no memory for a window of that many losses (%.1f GB)", path,
                   sp->average_loss, (double)sp->average_loss * sizeof(float) / 1e9);
  /* cluster (issue 5): decided before the nets, whose batch and data shard depend on it */
  CT_TRY(ct_cluster_create(sp, path, &s->cluster, err));
  /* issue 23: temporaries of snapshots and curves that a killed run left (the root writes them) */
  if (!s->cluster || ct_cluster_is_root(s->cluster)) {
    int stale = ct_file_remove_stale_temps(s->prefix);
    if (stale) logf_(s, "Removed %d temporary file%s left by an interrupted run under %s", stale, stale == 1 ? "" : "s",
                     s->prefix);
  }
  CT_TRY(make_nets(s, serves_only(s), err));
  if (serves_only(s)) return CT_OK; /* issue 24: its net comes after the agreement */
  return finish_setup(s, err);
}

/* After the agreement: a server-only process builds its net on rank 0's stand-ins for the data
 * layers (issue 24), then every process takes rank 0's starting point (issue 5). */
static ct_status cluster_begin(ct_solver *s, ct_error *err) {
  if (ct_cluster_has_server_only(s->cluster)) {
    char *text = NULL;
    ct_status st = ct_cluster_share_stand_ins(s->cluster, s->net, &text, err);
    if (st == CT_OK && serves_only(s)) {
      s->stand_ins = text;
      st = train_net(s, &s->net, err);
      s->stand_ins = NULL;
      if (st == CT_OK) st = finish_setup(s, err);
    }
    free(text);
    CT_TRY(st);
  }
  logf_(s, "Cluster %s", ct_cluster_describe(s->cluster));
  ct_net_builder nets = {cluster_train_net, s};
  return ct_cluster_start(s->cluster, s->net, &s->upd, &s->iter, &nets, err);
}

ct_status ct_solver_create(const char *path, const ct_solver_options *opt, ct_solver **out, ct_error *err) {
  *out = NULL;
  ct_solver *s = calloc(1, sizeof *s);
  if (!s) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (opt) s->opt = *opt;
  clock_gettime(CLOCK_MONOTONIC, &s->created);
  ct_digest digest;
  ct_digest_init(&digest);
  s->digest = &digest;
  ct_status st = setup(s, path, err);
  s->digest = NULL;
  /* issue 24: under mpirun, every process learns of a failure on any of them, and whether they
   * all read the same job, before the first collective that a failed one would never join */
  st = ct_cluster_agree(s->cluster, st, &digest, err);
  if (st == CT_OK && s->cluster) st = cluster_begin(s, err);
  if (st == CT_OK) {
    *out = s;
    return CT_OK;
  }
  if (s->cluster) ct_cluster_abandon(s->cluster); /* nothing to finish: leave MPI to mpirun */
  ct_solver_free(s);
  return st;
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
static ct_solver_action requested_action(ct_solver *s) {
  ct_solver_action a = s->opt.action ? s->opt.action(s->opt.action_ctx) : CT_ACTION_NONE;
  if (!s->cluster) return a;
  /* ranked so that the largest wins: a stop snapshots too (snapshot_after_train) */
  int rank = a == CT_ACTION_STOP ? 2 : a == CT_ACTION_SNAPSHOT ? 1 : 0;
  rank = ct_cluster_agree_action(s->cluster, rank);
  return rank == 2 ? CT_ACTION_STOP : rank == 1 ? CT_ACTION_SNAPSHOT : CT_ACTION_NONE;
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
      emit_train(s, smoothed, rate, images_per_s);
    } else if (s->opt.event) {
      double dt = seconds_since(&s->last_display);
      int iters = s->iter - s->last_display_iter;
      ct_event e = {.kind = CT_EVENT_ITER, .loss = smoothed, .lr = rate};
      if (iters > 0 && dt > 0) e.images_per_s = iters * (double)sp->iter_size * ct_net_batch_size(s->net) / dt;
      ct_solver_emit(s, &e);
    }
    s->iter++;
    ct_solver_action act = requested_action(s);
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
  if (sp->display > 0 && s->iter % sp->display == 0 && is_root(s)) { /* only the root displays */
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
