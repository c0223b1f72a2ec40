/* Snapshots and their restore: Caffe's Snapshot / Restore, with cortado's extensions that make a
 * resume exact (layer states, the loss window) and that catch a state of another solver. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "proto/blob.h"
#include "proto/h5io.h"
#include "proto/prototxt.h"
#include "solvers/solver_internal.h"

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
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

static const char *solver_type_name(ct_solver_type t) {
  static const char *const names[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
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
    /* issue 19: a worker group over ranks brings its shards to the root first (every process
     * takes a snapshot: the loop's agreed ones, or pycaffe's snapshot() called on each rank) */
    CT_TRY(ct_cluster_sync(s->cluster, err));
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
  st->solver_type = xstrdup(solver_type_name(s->upd.type));
  if (!st->solver_type) {
    rc = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
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
    ct_solver_emit(s, &ev);
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
  if (st->solver_type && strcmp(st->solver_type, solver_type_name(s->upd.type)) != 0) {
    rc = ct_fail(err, CT_EINVAL, "%s holds the history of a %s solver, but %s sets type \"%s\"; resume with the "
                 "solver that wrote it", path, st->solver_type, s->path, solver_type_name(s->upd.type));
    goto done;
  }
  if (st->n_history != (size_t)(s->upd.nsets * nl)) {
    rc = ct_fail(err, CT_ESHAPE, "%s: holds %zu history blobs, but this solver and net need %d", path, st->n_history,
                 s->upd.nsets * nl);
    goto done;
  }
  /* issue 23: a state without its weights would resume from the fillers' values */
  if (!st->learned_net || !st->learned_net[0]) {
    rc = ct_fail(err, CT_EPARSE, "%s names no .caffemodel (learned_net is %s); not a complete .solverstate", path,
                 st->learned_net ? "empty" : "missing");
    goto done;
  }
  {
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
  for (size_t i = 0; i < st->n_loss_history; i++) ct_solver_smooth_loss(s, st->loss_history[i]);
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
