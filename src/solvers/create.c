/* Building a solver: reading the solver file, its train and test nets (inline or from files,
 * NetStates merged as Caffe merges them), the update rule, the starting point (weights,
 * snapshot), and in a cluster the agreement of every process on the job before the first
 * collective (issue 24). The training loop is solver.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/files.h"
#include "core/status.h"
#include "dist/cluster.h"
#include "dist/startup.h"
#include "net/net.h"
#include "proto/h5io.h"
#include "proto/prototxt.h"
#include "proto/upgrade.h"
#include "solvers/setup.h"
#include "solvers/solver_internal.h"
#include "solvers/update.h"

/* issue 24: a process of a cluster that hosts only servers: no data, no test nets */
static bool serves_only(const ct_solver *s) { return s->cluster && !ct_cluster_has_worker(s->cluster); }

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
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
  if (st == CT_OK && out && !train) st = ct_net_set_forward_only(*out, err); /* tests never run backward */
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

void ct_solver_debug_log(void *ctx, const char *line) { logf_((ct_solver *)ctx, "%s", line); }

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
    /* the caller's devices (--device, --gpu) win over solver_mode: GPU, as Caffe's --gpu does */
    const char *devices = s->opt.devices;
    char gpu[24];
    if (!devices && sp->has_solver_mode && sp->solver_mode == CAFFE__SOLVER_PARAMETER__SOLVER_MODE__GPU) {
      snprintf(gpu, sizeof gpu, "cuda:%d", sp->has_device_id ? sp->device_id : 0);
      devices = gpu;
    }
    if (devices) {
      /* the cluster exchanges parameters and gradients through host buffers it holds from the
       * start: a device elsewhere would leave them stale, so it is refused rather than wrong */
      if (s->cluster && strcmp(devices, "cpu") != 0)
        return ct_fail(err, CT_EUNSUPPORTED,
                       "%s: --device=%s: cluster training (cluster / framework settings) runs on the CPU only",
                       s->path, devices);
      CT_TRY(ct_net_set_devices(s->net, devices, err));
      for (int k = 0; k < s->ntest; k++) CT_TRY(ct_net_set_devices(s->test_nets[k], devices, err));
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
    if (ct_net_debug(s->test_nets[k])) ct_net_set_debug(s->test_nets[k], true, ct_solver_debug_log, s);
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

