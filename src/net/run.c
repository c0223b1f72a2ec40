/* Running a built net: forward and backward passes layer by layer, the loss, and the accessors
 * the API and the solver read blobs and parameters through. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "net/net_impl.h"

/* ------------------------------------------------------------------ debug_info */

/* Caffe's debug_info lines: the mean absolute value of each top's data after a layer's forward
 * and of each gradient after its backward. */
static ct_status debug_line(ct_net *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ct_status debug_line(ct_net *net, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (net->debug_log)
    net->debug_log(net->debug_ctx, line);
  else
    fprintf(stderr, "%s\n", line);
  return CT_OK;
}

static ct_status abs_mean(ct_net *net, ct_tensor *t, ct_side side, double *out, ct_error *err) {
  float *v;
  *out = 0;
  if (!t->count) return CT_OK;
  CT_TRY(ct_tensor_deref(t, side, &ct_mem_host, CT_READ, 0, t->count, &net->place->stats, &v, err));
  double s = 0;
  for (size_t k = 0; k < t->count; k++) s += fabs((double)v[k]);
  *out = s / (double)t->count;
  return CT_OK;
}

/* Caffe's name for a parameter in these lines: its ParamSpec name, else its index. */
static const char *param_label(const net_layer *nl, int j, char *buf, size_t n) {
  if ((size_t)j < nl->lp->n_param && nl->lp->param[j]->name && nl->lp->param[j]->name[0]) return nl->lp->param[j]->name;
  snprintf(buf, n, "%d", j);
  return buf;
}

static ct_status debug_forward(ct_net *net, int i, ct_error *err) {
  net_layer *nl = &net->layers[i];
  double m;
  char buf[16];
  for (int t = 0; t < nl->l.ntop; t++) {
    CT_TRY(abs_mean(net, nl->l.top[t], CT_DATA, &m, err));
    debug_line(net, "    [Forward] Layer %s, top blob %s data: %g", nl->l.name, net->blob_names[nl->top_ids[t]], m);
  }
  for (int j = 0; j < nl->l.nblobs; j++) {
    CT_TRY(abs_mean(net, nl->l.blobs[j], CT_DATA, &m, err));
    debug_line(net, "    [Forward] Layer %s, param blob %s data: %g", nl->l.name, param_label(nl, j, buf, sizeof buf),
               m);
  }
  return CT_OK;
}

static ct_status debug_backward(ct_net *net, int i, ct_error *err) {
  net_layer *nl = &net->layers[i];
  double m;
  for (int b = 0; b < nl->l.nbottom; b++) {
    if (!nl->l.propagate_down[b]) continue;
    CT_TRY(abs_mean(net, nl->l.bottom[b], CT_DIFF, &m, err));
    debug_line(net, "    [Backward] Layer %s, bottom blob %s diff: %g", nl->l.name, net->blob_names[nl->bottom_ids[b]],
               m);
  }
  for (int j = 0; j < nl->l.nblobs; j++) {
    if (!nl->l.param_propagate_down[j]) continue;
    CT_TRY(abs_mean(net, nl->l.blobs[j], CT_DIFF, &m, err));
    debug_line(net, "    [Backward] Layer %s, param blob %d diff: %g", nl->l.name, j, m);
  }
  return CT_OK;
}

void ct_net_set_debug(ct_net *net, bool on, void (*log)(void *ctx, const char *line), void *ctx) {
  net->debug = on;
  net->debug_log = log;
  net->debug_ctx = ctx;
}

bool ct_net_debug(const ct_net *net) { return net->debug; }

/* ------------------------------------------------------------------ running */

static const ct_plan *prev_plan(const ct_net *net, const net_layer *nl) {
  return nl->producer >= 0 ? &net->layers[nl->producer].l.plan : NULL;
}

/* fuse: a chain that starts here may run fused (net/fuse.c); a pass over the whole net, or one
 * layer at a time where the caller said it runs whole chains (ct_net_set_layerwise_fusion) */
static ct_status forward_layer(ct_net *net, int i, bool fuse, ct_error *err) {
  net_layer *nl = &net->layers[i];
  ct_layer *l = &nl->l;
  const unsigned long long before = ct_copy_stats_bytes(&net->place->stats);
  CT_TRY(ct_layer_plan_reshape(l, prev_plan(net, nl), err));
  CT_TRY(nl->fusion ? ct_net_fuse_forward(net, i, fuse, err) : ct_layer_forward(l, err));
  /* Caffe's convention: a loss top's diff holds its loss weight (loss layers read it there) */
  for (int t = 0; t < l->ntop; t++)
    if (nl->loss_weight[t] != 0) {
      float *g;
      CT_TRY(ct_tensor_deref(l->top[t], CT_DIFF, &ct_mem_host, CT_WRITE, 0, l->top[t]->count, &net->place->stats,
                             &g, err));
      for (size_t k = 0; k < l->top[t]->count; k++) g[k] = nl->loss_weight[t];
    }
  nl->copied_fwd += ct_copy_stats_bytes(&net->place->stats) - before;
  return net->debug ? debug_forward(net, i, err) : CT_OK;
}

static ct_status backward_layer(ct_net *net, int i, ct_error *err) {
  net_layer *nl = &net->layers[i];
  if (!nl->need_backward && !nl->fusion) return CT_OK; /* a fused chain may need it for a later member */
  const unsigned long long before = ct_copy_stats_bytes(&net->place->stats);
  CT_TRY(nl->fusion ? ct_net_fuse_backward(net, i, err) : ct_layer_backward(&nl->l, err));
  nl->copied_bwd += ct_copy_stats_bytes(&net->place->stats) - before;
  return net->debug ? debug_backward(net, i, err) : CT_OK;
}

ct_status ct_net_forward(ct_net *net, float *loss, ct_error *err) {
  double total = 0;
  CT_TRY(ct_net_memplan(net, err));
  if (net->bridges) /* a partitioned net's workers: spread over processes, or threads */
    CT_TRY(ct_part_dist_run(net, false, err));
  else if (net->exec)
    CT_TRY(ct_part_exec_run(net->exec, false, err));
  for (int i = 0; i < net->nlayers; i++) {
    if (!net->exec && !net->bridges) CT_TRY(forward_layer(net, i, true, err));
    net_layer *nl = &net->layers[i];
    for (int t = 0; t < nl->l.ntop; t++)
      if (nl->loss_weight[t] != 0) {
        ct_tensor *y = nl->l.top[t];
        float *v;
        CT_TRY(ct_tensor_deref(y, CT_DATA, &ct_mem_host, CT_READ, 0, y->count, &net->place->stats, &v, err));
        for (size_t k = 0; k < y->count; k++) total += (double)v[k] * nl->loss_weight[t];
      }
  }
  if (loss) *loss = (float)total;
  return CT_OK;
}

ct_status ct_net_backward(ct_net *net, ct_error *err) {
  CT_TRY(ct_net_memplan(net, err));
  CT_TRY(ct_net_memplan_check_backward(net, err));
  if (net->bridges) return ct_part_dist_run(net, true, err);
  if (net->exec) return ct_part_exec_run(net->exec, true, err);
  for (int i = net->nlayers - 1; i >= 0; i--) CT_TRY(backward_layer(net, i, err));
  return CT_OK;
}

ct_status ct_net_forward_layer(ct_net *net, int i, ct_error *err) {
  if (i < 0 || i >= net->nlayers) return ct_fail(err, CT_EINVAL, "layer index %d out of range", i);
  CT_TRY(ct_net_memplan(net, err));
  return forward_layer(net, i, net->fuse_layerwise, err);
}

ct_status ct_net_backward_layer(ct_net *net, int i, ct_error *err) {
  if (i < 0 || i >= net->nlayers) return ct_fail(err, CT_EINVAL, "layer index %d out of range", i);
  CT_TRY(ct_net_memplan(net, err));
  CT_TRY(ct_net_memplan_check_backward(net, err));
  return backward_layer(net, i, err);
}

ct_status ct_net_clear_param_diffs_on(ct_net *net, ct_error *err) {
  const ct_driver *m = ct_net_driver(net);
  float *g;
  CT_TRY(ct_tensor_deref(net->params, CT_DIFF, m->mem, CT_WRITE, 0, net->params->count, &net->place->stats, &g,
                         err));
  ct_status s = m->ops->memset(m, g, 0, net->params->count * sizeof(float));
  if (s) ct_driver_error(m, err, s, "clearing the parameter gradients");
  return s;
}

void ct_net_clear_param_diffs(ct_net *net) {
  ct_error e;
  (void)ct_net_clear_param_diffs_on(net, &e);
}

ct_status ct_net_reshape(ct_net *net, ct_error *err) {
  for (int i = 0; i < net->nlayers; i++)
    CT_TRY(ct_layer_plan_reshape(&net->layers[i].l, prev_plan(net, &net->layers[i]), err));
  return CT_OK;
}

void ct_net_layer_copied(const ct_net *net, int i, unsigned long long *fwd, unsigned long long *bwd) {
  *fwd = i >= 0 && i < net->nlayers ? net->layers[i].copied_fwd : 0;
  *bwd = i >= 0 && i < net->nlayers ? net->layers[i].copied_bwd : 0;
}

void ct_net_reset_copy_stats(ct_net *net) {
  for (int i = 0; i < net->nlayers; i++) net->layers[i].copied_fwd = net->layers[i].copied_bwd = 0;
  ct_copy_stats_reset(&net->place->stats);
}

const char *ct_net_layer_plan(const ct_net *net, int i, char *buf, size_t n) {
  if (i < 0 || i >= net->nlayers || !net->layers[i].l.plan.n) {
    snprintf(buf, n, "-");
    return buf;
  }
  return ct_plan_str(&net->layers[i].l.plan, buf, n);
}

/* ------------------------------------------------------------------ accessors */

const char *ct_net_name(const ct_net *net) { return net->name; }
ct_layer *ct_net_layer(ct_net *net, int i) { return i >= 0 && i < net->nlayers ? &net->layers[i].l : NULL; }
int ct_net_num_layers(const ct_net *net) { return net->nlayers; }
const char *ct_net_layer_name(const ct_net *net, int i) {
  return i >= 0 && i < net->nlayers ? net->layers[i].l.name : NULL;
}
const char *ct_net_layer_type(const ct_net *net, int i) {
  return i >= 0 && i < net->nlayers ? net->layers[i].l.ops->type : NULL;
}
int ct_net_num_learnable(const ct_net *net) { return net->nlearn; }
const ct_param_range *ct_net_learnable(const ct_net *net) { return net->learn; }
const ct_tensor *ct_net_learnable_tensor(const ct_net *net, int i) { return net->learn_tensor[i]; }
ct_tensor *ct_net_params(ct_net *net) { return net->params; }

/* t's side on the host, up to date and the one valid copy (the caller may write it). */
static float *host_view(ct_net *net, ct_tensor *t, ct_side side) {
  float *p;
  ct_error e;
  return ct_tensor_deref(t, side, &ct_mem_host, CT_READWRITE, 0, t->count, &net->place->stats, &p, &e) ? NULL : p;
}

float *ct_net_param_buffer(ct_net *net) { return host_view(net, net->params, CT_DATA); }
float *ct_net_diff_buffer(ct_net *net) { return host_view(net, net->params, CT_DIFF); }
size_t ct_net_param_total(const ct_net *net) { return net->param_total; }
int ct_net_num_outputs(const ct_net *net) { return net->noutputs; }
const char *ct_net_output_name(const ct_net *net, int i) {
  return i >= 0 && i < net->noutputs ? net->blob_names[net->outputs[i]] : NULL;
}
float ct_net_output_loss_weight(const ct_net *net, int i) {
  return i >= 0 && i < net->noutputs ? net->output_loss_weight[i] : 0;
}
const char *ct_net_blob_name(const ct_net *net, int i) {
  return i >= 0 && i < net->nblobs ? net->blob_names[i] : NULL;
}

static int copy_shape(const ct_tensor *t, int shape[8]) {
  for (int k = 0; k < t->naxes && k < 8; k++) shape[k] = t->shape[k];
  return t->naxes;
}

int ct_net_blob_shape(const ct_net *net, const char *name, int shape[8]) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? -1 : copy_shape(net->blobs[id], shape);
}
float *ct_net_blob_data(ct_net *net, const char *name) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? NULL : host_view(net, net->blobs[id], CT_DATA);
}
float *ct_net_blob_diff(ct_net *net, const char *name) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? NULL : host_view(net, net->blobs[id], CT_DIFF);
}
ct_status ct_net_blob_reshape(ct_net *net, const char *name, int naxes, const int *shape, ct_error *err) {
  int id = ct_net_find_blob(net, name);
  if (id < 0) return ct_fail(err, CT_ENOTFOUND, "no blob named \"%s\" in net \"%s\"", name, net->name);
  return ct_tensor_reshape(net->blobs[id], naxes, shape, err);
}

static ct_tensor *param_tensor(const ct_net *net, const char *layer, int index) {
  int li = ct_net_find_layer(net, layer);
  bool whole = false;
  if (li < 0 && (li = ct_partition_find(net, layer)) >= 0) whole = true; /* split by partition.c */
  if (li < 0 || index < 0 || index >= net->layers[li].l.nblobs) return NULL;
  return whole ? ct_partition_whole_blobs(net->part, li)[index] : net->layers[li].l.blobs[index];
}
ct_tensor *ct_net_blob_tensor(ct_net *net, const char *name) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? NULL : net->blobs[id];
}
ct_tensor *ct_net_param_tensor(ct_net *net, const char *layer, int index) { return param_tensor(net, layer, index); }
int ct_net_param_count(const ct_net *net, const char *layer) {
  int li = ct_net_find_layer(net, layer);
  if (li < 0) li = ct_partition_find(net, layer); /* a layer split by partition.c: its shard 0 */
  return li < 0 ? -1 : net->layers[li].l.nblobs;
}
int ct_net_param_shape(const ct_net *net, const char *layer, int index, int shape[8]) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? copy_shape(t, shape) : -1;
}
float *ct_net_param_data(ct_net *net, const char *layer, int index) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? host_view(net, t, CT_DATA) : NULL;
}
float *ct_net_param_diff(ct_net *net, const char *layer, int index) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? host_view(net, t, CT_DIFF) : NULL;
}

/* Whether t's side holds a NaN or Inf (read on the host; a device failure counts as "no": the
 * diagnostics below only name a layer). */
static bool nonfinite(const ct_net *net, ct_tensor *t, ct_side side) {
  const float *v;
  ct_error e;
  if (ct_tensor_deref(t, side, &ct_mem_host, CT_READ, 0, t->count, &net->place->stats, (float **)&v, &e))
    return false;
  for (size_t k = 0; k < t->count; k++)
    if (!isfinite(v[k])) return true;
  return false;
}

static bool tops_nonfinite(const ct_net *net, int i) {
  const ct_layer *l = &net->layers[i].l;
  for (int t = 0; t < l->ntop; t++)
    if (nonfinite(net, l->top[t], CT_DATA)) return true;
  return false;
}

int ct_net_first_nonfinite_layer(ct_net *net) {
  if (!net->mp.done || net->mp.off) {
    for (int i = 0; i < net->nlayers; i++)
      if (tops_nonfinite(net, i)) return i;
    return -1;
  }
  /* Planned: after the pass a top may hold a later blob's values (a finite blob's storage now
   * holding a NaN made downstream), so the pass runs again, one layer at a time and unfused, and
   * each layer's tops are looked at as soon as it has run. Sources (no bottoms) are not run
   * again: the planner keeps their tops, so the batch that failed is the one looked at. */
  const bool fuse = net->fuse_layerwise;
  net->fuse_layerwise = false;
  int found = -1;
  for (int i = 0; i < net->nlayers && found < 0; i++) {
    ct_error e = {0};
    if (net->layers[i].l.nbottom > 0 && forward_layer(net, i, false, &e)) {
      found = i; /* the layer failed on its input: the nearest place to blame */
      break;
    }
    if (tops_nonfinite(net, i)) found = i;
  }
  net->fuse_layerwise = fuse;
  return found;
}

int ct_net_first_nonfinite_grad_layer(const ct_net *net) {
  for (int i = net->nlayers - 1; i >= 0; i--) {
    const ct_layer *l = &net->layers[i].l;
    for (int j = 0; j < l->nblobs; j++)
      if (nonfinite(net, l->blobs[j], CT_DIFF)) return i;
  }
  return -1;
}

int ct_net_batch_size(const ct_net *net) {
  if (!net->nlayers || !net->layers[0].l.ntop || !net->layers[0].l.top[0]->naxes) return 0;
  return net->layers[0].l.top[0]->shape[0];
}

