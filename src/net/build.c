/* Net construction: filter and rewrite the layer list (rewrite.c), wire tops and bottoms (in
 * place where top == bottom), set up and reshape each layer in order, decide which layers need
 * backward, then pack every learnable parameter into one contiguous data buffer and one gradient
 * buffer (shared parameters view their owner). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/status.h"
#include "core/tensor.h"
#include "net/net_impl.h"
#include "layers/params.h"
#include "proto/audit.h"
#include "proto/blob.h"
#include "proto/prototxt.h"
#include "proto/upgrade.h"

int ct_net_find_blob(const ct_net *net, const char *name) { return ct_strmap_get(net->blob_index, name); }

/* The first layer of that name (only unnamed layers share one). */
int ct_net_find_layer(const ct_net *net, const char *name) { return ct_strmap_get(net->layer_index, name); }

/* ------------------------------------------------------------------ wiring */

static ct_status add_blob(ct_net *net, const char *name, int *id, ct_error *err) {
  if (net->nblobs == net->blob_cap) { /* growing by one copied the arrays once per blob */
    int cap = net->blob_cap ? 2 * net->blob_cap : 16;
    ct_tensor **b = realloc(net->blobs, (size_t)cap * sizeof *b);
    if (!b) return ct_fail(err, CT_ENOMEM, "out of memory");
    net->blobs = b;
    char **nm = realloc(net->blob_names, (size_t)cap * sizeof *nm);
    if (!nm) return ct_fail(err, CT_ENOMEM, "out of memory");
    net->blob_names = nm;
    int *pr = realloc(net->blob_producer, (size_t)cap * sizeof *pr);
    if (!pr) return ct_fail(err, CT_ENOMEM, "out of memory");
    net->blob_producer = pr;
    net->blob_cap = cap;
  }
  net->blob_producer[net->nblobs] = -1;
  net->blobs[net->nblobs] = ct_tensor_create();
  net->blob_names[net->nblobs] = strdup(name);
  if (!net->blobs[net->nblobs] || !net->blob_names[net->nblobs]) {
    ct_tensor_free(net->blobs[net->nblobs]);
    free(net->blob_names[net->nblobs]);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  ct_status st = ct_strmap_put(net->blob_index, net->blob_names[net->nblobs], net->nblobs, err);
  if (st) {
    ct_tensor_free(net->blobs[net->nblobs]);
    free(net->blob_names[net->nblobs]);
    return st;
  }
  *id = net->nblobs++;
  return CT_OK;
}

static ct_status check_arity(const ct_layer *l, ct_error *err) {
  const ct_layer_ops *o = l->ops;
  if (l->nbottom < o->min_bottom || (o->max_bottom >= 0 && l->nbottom > o->max_bottom)) {
    if (o->max_bottom < 0)
      return ct_layer_fail(l, err, CT_EINVAL, "takes at least %d bottom blob%s, got %d", o->min_bottom,
                           o->min_bottom == 1 ? "" : "s", l->nbottom);
    if (o->min_bottom == o->max_bottom)
      return ct_layer_fail(l, err, CT_EINVAL, "takes exactly %d bottom blob%s, got %d", o->min_bottom,
                           o->min_bottom == 1 ? "" : "s", l->nbottom);
    return ct_layer_fail(l, err, CT_EINVAL, "takes %d to %d bottom blobs, got %d", o->min_bottom,
                         o->max_bottom, l->nbottom);
  }
  if (l->ntop < o->min_top || (o->max_top >= 0 && l->ntop > o->max_top)) {
    if (o->min_top == o->max_top)
      return ct_layer_fail(l, err, CT_EINVAL, "produces exactly %d top blob%s, got %d", o->min_top,
                           o->min_top == 1 ? "" : "s", l->ntop);
    if (o->max_top < 0)
      return ct_layer_fail(l, err, CT_EINVAL, "produces at least %d top blobs, got %d", o->min_top, l->ntop);
    return ct_layer_fail(l, err, CT_EINVAL, "produces %d to %d top blobs, got %d", o->min_top, o->max_top,
                         l->ntop);
  }
  return CT_OK;
}

static ct_status wire_layer(ct_net *net, int li, ct_error *err) {
  net_layer *nl = &net->layers[li];
  ct_layer *l = &nl->l;
  Caffe__LayerParameter *lp = nl->lp;
  l->nbottom = (int)lp->n_bottom;
  l->ntop = (int)lp->n_top;
  l->bottom = calloc(lp->n_bottom + 1, sizeof *l->bottom);
  l->top = calloc(lp->n_top + 1, sizeof *l->top);
  l->propagate_down = calloc(lp->n_bottom + 1, sizeof *l->propagate_down);
  nl->bottom_ids = calloc(lp->n_bottom + 1, sizeof(int));
  nl->top_ids = calloc(lp->n_top + 1, sizeof(int));
  nl->loss_weight = calloc(lp->n_top + 1, sizeof(float));
  if (!l->bottom || !l->top || !l->propagate_down || !nl->bottom_ids || !nl->top_ids || !nl->loss_weight)
    return ct_fail(err, CT_ENOMEM, "out of memory");
  CT_TRY(check_arity(l, err));
  for (size_t b = 0; b < lp->n_bottom; b++) {
    int id = ct_net_find_blob(net, lp->bottom[b]);
    if (id < 0)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "bottom blob \"%s\" is not produced by any earlier layer (check the names of earlier "
                           "tops and the include/exclude rules for phase %s)",
                           lp->bottom[b], net->phase == CT_TRAIN ? "TRAIN" : "TEST");
    nl->bottom_ids[b] = id;
    l->bottom[b] = net->blobs[id];
  }
  nl->producer = lp->n_bottom ? net->blob_producer[nl->bottom_ids[0]] : -1;
  for (size_t t = 0; t < lp->n_top; t++) {
    int in_place = -1;
    for (size_t b = 0; b < lp->n_bottom; b++)
      if (!strcmp(lp->top[t], lp->bottom[b])) in_place = (int)b;
    if (in_place >= 0) {
      if (!l->ops->in_place || (size_t)in_place != t)
        return ct_layer_fail(l, err, CT_EINVAL, "cannot compute in place (top \"%s\" is also its bottom); give the "
                             "top a new name", lp->top[t]);
      nl->top_ids[t] = nl->bottom_ids[in_place];
    } else {
      if (ct_net_find_blob(net, lp->top[t]) >= 0)
        return ct_layer_fail(l, err, CT_EINVAL, "top blob \"%s\" is already produced by an earlier layer",
                             lp->top[t]);
      CT_TRY(add_blob(net, lp->top[t], &nl->top_ids[t], err));
    }
    l->top[t] = net->blobs[nl->top_ids[t]];
    net->blob_producer[nl->top_ids[t]] = li;
  }
  /* loss weights */
  if (lp->n_loss_weight && lp->n_loss_weight != lp->n_top)
    return ct_layer_fail(l, err, CT_EINVAL, "has %zu loss_weight values for %zu tops; give one per top or none",
                         lp->n_loss_weight, lp->n_top);
  for (size_t t = 0; t < lp->n_top; t++)
    nl->loss_weight[t] = lp->n_loss_weight ? lp->loss_weight[t] : (l->ops->is_loss && t == 0 ? 1.0f : 0.0f);
  if (lp->n_propagate_down && lp->n_propagate_down != lp->n_bottom)
    return ct_layer_fail(l, err, CT_EINVAL, "has %zu propagate_down values for %zu bottoms; give one per bottom",
                         lp->n_propagate_down, lp->n_bottom);
  return CT_OK;
}

/* Caffe's need_backward analysis: a layer runs backward when some bottom needs a gradient or it
 * has parameters to learn, and only when its outputs reach a loss. */
static void decide_backward(ct_net *net, bool force_backward) {
  bool *blob_need = calloc((size_t)net->nblobs + 1, 1);
  bool *under_loss = calloc((size_t)net->nblobs + 1, 1);
  if (!blob_need || !under_loss) {
    free(blob_need);
    free(under_loss);
    return; /* leaves every layer running backward: correct, only slower */
  }
  for (int i = 0; i < net->nlayers; i++) {
    net_layer *nl = &net->layers[i];
    ct_layer *l = &nl->l;
    bool need = false;
    for (int b = 0; b < l->nbottom; b++) {
      bool pd = nl->lp->n_propagate_down ? nl->lp->propagate_down[b] : true;
      if (b < 32 && (l->ops->label_bottoms >> b) & 1u) pd = false;
      l->propagate_down[b] = blob_need[nl->bottom_ids[b]] && pd;
      if (force_backward && pd) l->propagate_down[b] = true;
      need |= l->propagate_down[b];
    }
    for (int j = 0; j < l->nblobs; j++) need |= l->param_propagate_down[j];
    if (!l->ops->has_backward) {
      need = false;
      for (int b = 0; b < l->nbottom; b++) l->propagate_down[b] = false;
    }
    nl->need_backward = need;
    for (int t = 0; t < l->ntop; t++) blob_need[nl->top_ids[t]] = need;
  }
  /* prune layers whose outputs reach no loss */
  for (int i = net->nlayers - 1; i >= 0; i--) {
    net_layer *nl = &net->layers[i];
    ct_layer *l = &nl->l;
    bool contributes = false;
    for (int t = 0; t < l->ntop; t++)
      if (nl->loss_weight[t] != 0 || under_loss[nl->top_ids[t]]) contributes = true;
    if (!contributes && !force_backward) {
      nl->need_backward = false;
      for (int b = 0; b < l->nbottom; b++) l->propagate_down[b] = false;
    }
    if (contributes)
      for (int b = 0; b < l->nbottom; b++) under_loss[nl->bottom_ids[b]] = true;
  }
  free(blob_need);
  free(under_loss);
}

static float spec_lr_mult(const Caffe__LayerParameter *lp, int j) {
  return (size_t)j < lp->n_param ? lp->param[j]->lr_mult : 1.0f;
}
static float spec_decay_mult(const Caffe__LayerParameter *lp, int j) {
  return (size_t)j < lp->n_param ? lp->param[j]->decay_mult : 1.0f;
}

/* Packs learnable parameters into one data and one diff buffer; shared ones view the owner. */
static ct_status pack_params(ct_net *net, ct_error *err) {
  int total_blobs = 0;
  for (int i = 0; i < net->nlayers; i++) total_blobs += net->layers[i].l.nblobs;
  ct_tensor **owner = calloc((size_t)total_blobs + 1, sizeof *owner);
  net->learn = calloc((size_t)total_blobs + 1, sizeof *net->learn);
  net->learn_tensor = calloc((size_t)total_blobs + 1, sizeof *net->learn_tensor);
  const char **shared_name = calloc((size_t)total_blobs + 1, sizeof *shared_name);
  int *shared_owner = calloc((size_t)total_blobs + 1, sizeof *shared_owner);
  int nshared = 0;
  ct_status st = CT_OK;
  if (!owner || !net->learn || !net->learn_tensor || !shared_name || !shared_owner) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  /* first pass: owners and their total size */
  int k = 0;
  size_t total = 0;
  for (int i = 0; i < net->nlayers; i++) {
    ct_layer *l = &net->layers[i].l;
    const Caffe__LayerParameter *lp = net->layers[i].lp;
    for (int j = 0; j < l->nblobs; j++, k++) {
      const char *pname = (size_t)j < lp->n_param && lp->param[j]->name && lp->param[j]->name[0]
                              ? lp->param[j]->name : NULL;
      int found = -1;
      for (int s = 0; pname && s < nshared; s++)
        if (!strcmp(shared_name[s], pname)) found = shared_owner[s];
      /* a shard of a layer split on its outputs (partition.c): its rows of the whole tensor */
      const int shard = ct_partition_shard(net->part, i);
      const ct_tensor *lt = l->blobs[j];
      if (shard > 0) {
        owner[k] = l->blobs[j];
        continue;
      }
      if (shard == 0 && (st = ct_partition_whole(net->part, i, j, l->blobs[j], &lt, err))) goto done;
      if (found >= 0) {
        ct_tensor *o = owner[found];
        bool permissive = lp->param[j]->share_mode == CAFFE__PARAM_SPEC__DIM_CHECK_MODE__PERMISSIVE;
        if (permissive ? o->count != l->blobs[j]->count : !ct_tensor_same_shape(o, l->blobs[j])) {
          char a[128], b[128];
          st = ct_layer_fail(l, err, CT_ESHAPE, "shares parameter \"%s\" of shape %s but its own has shape %s",
                             pname, ct_tensor_shape_str(o, a, sizeof a),
                             ct_tensor_shape_str(l->blobs[j], b, sizeof b));
          goto done;
        }
        owner[k] = o;
        continue;
      }
      owner[k] = l->blobs[j];
      if (pname) {
        shared_name[nshared] = pname;
        shared_owner[nshared++] = k;
      }
      ct_param_range *u = &net->learn[net->nlearn];
      u->offset = total;
      u->count = lt->count;
      bool learnable = l->param_propagate_down[j];
      /* Caffe refuses a learning rate for blobs that hold statistics (BatchNorm's) */
      if (!learnable && (size_t)j < lp->n_param && lp->param[j]->has_lr_mult && lp->param[j]->lr_mult != 0.f) {
        st = ct_layer_fail(l, err, CT_EINVAL,
                           "param %d has lr_mult %g, but blob %d holds statistics the layer computes, not learned "
                           "values; give lr_mult: 0 or no param entry",
                           j, (double)lp->param[j]->lr_mult, j);
        goto done;
      }
      u->lr_mult = learnable ? spec_lr_mult(lp, j) : 0.0f;
      u->decay_mult = learnable ? spec_decay_mult(lp, j) : 0.0f;
      if (u->lr_mult == 0) l->param_propagate_down[j] = false;
      net->learn_tensor[net->nlearn++] = lt;
      total += (lt->count + 15) & ~(size_t)15; /* keep each parameter 64-byte aligned */
    }
  }
  net->param_total = total;
  float *flat;
  int n1 = (int)(total ? total : 1);
  if (total > (size_t)INT32_MAX || !(net->params = ct_tensor_create()) ||
      (st = ct_tensor_reshape(net->params, 1, &n1, err)) ||
      (st = ct_tensor_host(net->params, CT_DATA, CT_WRITE, &flat, err))) {
    if (!st) st = ct_fail(err, CT_ENOMEM, "cannot allocate %zu parameters", total);
    goto done;
  }
  memset(flat, 0, (total ? total : 1) * sizeof(float));
  for (int p = 0; p < net->nlearn; p++) {
    ct_tensor *t = (ct_tensor *)net->learn_tensor[p];
    const float *v;
    if ((st = ct_tensor_host(t, CT_DATA, CT_READ, (float **)&v, err))) goto done;
    memcpy(flat + net->learn[p].offset, v, t->count * sizeof(float));
    ct_tensor_view(t, CT_DATA, net->params->st[CT_DATA], net->learn[p].offset);
    ct_tensor_view(t, CT_DIFF, net->params->st[CT_DIFF], net->learn[p].offset);
  }
  k = 0;
  for (int i = 0; i < net->nlayers; i++) {
    ct_layer *l = &net->layers[i].l;
    for (int j = 0; j < l->nblobs; j++, k++)
      if (owner[k] != l->blobs[j]) ct_tensor_share(l->blobs[j], owner[k]);
  }
  st = ct_partition_view_shards(net, err);
done:
  free(owner);
  free(shared_name);
  free(shared_owner);
  return st;
}

/* ------------------------------------------------------------------ create / free */

void ct_net_free(ct_net *net) {
  if (!net) return;
  ct_net_fuse_free(net); /* the chains' hidden layers view the members' blobs */
  ct_part_exec_stop(net->exec); /* the worker threads stop before their layers go */
  ct_part_dist_free(net);
  for (int i = 0; i < net->nlayers; i++) {
    net_layer *nl = &net->layers[i];
    ct_layer *l = &nl->l;
    if (l->ops && l->ops->destroy) l->ops->destroy(l);
    ct_layer_free_part_grads(l);
    for (int j = 0; j < l->nblobs; j++) ct_tensor_free(l->blobs[j]);
    free(l->blobs);
    free(l->param_propagate_down);
    free(l->bottom);
    free(l->top);
    free(l->propagate_down);
    free(nl->bottom_ids);
    free(nl->top_ids);
    free(nl->loss_weight);
    if (nl->lp) protobuf_c_message_free_unpacked(&nl->lp->base, NULL);
  }
  free(net->layers);
  for (int i = 0; i < net->nblobs; i++) {
    ct_tensor_free(net->blobs[i]);
    free(net->blob_names[i]);
  }
  free(net->blobs);
  free(net->blob_names);
  ct_strmap_free(net->blob_index);
  ct_strmap_free(net->layer_index);
  free(net->outputs);
  free(net->output_loss_weight);
  free(net->learn);
  free(net->learn_tensor);
  free(net->blob_producer);
  ct_tensor_free(net->params);
  free(net->name);
  free(net->source);
  free(net->dir);
  for (int k = 0; k < net->mp.nkeep; k++) free(net->mp.keep[k]);
  free(net->mp.keep);
  if (net->place) ct_ws_pool_free(net->place->ws); /* after the layers that used it */
  ct_placement_free(net->place);
  ct_part_exec_free(net->exec); /* the workers' placements, after the layers that used them */
  ct_partition_free(net->part);
  free(net);
}

ct_status ct_net_create_from_param(const Caffe__NetParameter *param, const char *source, const char *dir,
                                   ct_phase phase, int level, const char *const *stages, uint64_t seed,
                                   ct_net **out, ct_error *err) {
  return ct_net_create_mapped(param, NULL, source, dir, phase, level, stages, seed, out, err);
}

/* The stages the net is built with: the caller's and those of the file's own `state`, as Caffe
 * adds the caller's to the file's. NULL-terminated; *buf (malloc'ed) holds the array. */
static ct_status merge_stages(const Caffe__NetParameter *param, const char *const *stages, const char *const **out,
                              const char ***buf, ct_error *err) {
  *buf = NULL;
  *out = stages;
  const size_t nfile = param->state ? param->state->n_stage : 0;
  if (!nfile) return CT_OK;
  size_t n = 0;
  while (stages && stages[n]) n++;
  const char **v = calloc(n + nfile + 1, sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) v[i] = stages[i];
  for (size_t i = 0; i < nfile; i++) v[n + i] = param->state->stage[i];
  *buf = v;
  *out = v;
  return CT_OK;
}

/* Caffe's AutoTopBlobs: a loss layer given fewer tops than it makes gets the rest, named
 * "(automatic)", ... They count in the loss but, as in Caffe, are not outputs of the net and are
 * not written back into the layer's parameters. */
static ct_status auto_tops(ct_net *net, net_layer *nl, ct_error *err) {
  Caffe__LayerParameter *lp = nl->lp;
  const int need = nl->l.ops->min_top;
  if (!nl->l.ops->is_loss || (int)lp->n_top >= need) return CT_OK;
  char **top = realloc(lp->top, (size_t)need * sizeof *top);
  if (!top) return ct_fail(err, CT_ENOMEM, "out of memory");
  lp->top = top;
  for (int t = (int)lp->n_top; t < need; t++) {
    char name[64];
    snprintf(name, sizeof name, "(automatic)");
    for (int k = 1; ct_net_find_blob(net, name) >= 0; k++) snprintf(name, sizeof name, "(automatic)_%d", k);
    if (!(lp->top[t] = strdup(name))) return ct_fail(err, CT_ENOMEM, "out of memory");
    lp->n_top++;
    nl->auto_tops++;
  }
  return CT_OK;
}

ct_status ct_net_create_mapped(const Caffe__NetParameter *param, const struct ct_srcmap *map, const char *source,
                               const char *dir, ct_phase phase, int level, const char *const *stages, uint64_t seed,
                               ct_net **out, ct_error *err) {
  *out = NULL;
  if (!source) source = "<net>";
  Caffe__NetParameter *upgraded = NULL;
  if (ct_net_needs_upgrade(param)) { /* callers holding the parse upgrade it themselves, keeping positions */
    if (!(upgraded = (Caffe__NetParameter *)ct_proto_copy(&param->base))) return ct_fail(err, CT_ENOMEM, "out of memory");
    ct_status st = ct_upgrade_net(upgraded, source, NULL, err);
    if (st) {
      protobuf_c_message_free_unpacked(&upgraded->base, NULL);
      return st;
    }
    param = upgraded;
    map = NULL;
  }
  const char **stage_buf = NULL;
  ct_spec_list filtered = {0}, split = {0};
  ct_net *net = NULL;
  ct_status st = merge_stages(param, stages, &stages, &stage_buf, err);
  if (st) goto fail;
  net = calloc(1, sizeof *net);
  if (!net) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  net->name = strdup(param->name ? param->name : "");
  net->source = strdup(source);
  net->dir = strdup(dir ? dir : "");
  net->phase = phase;
  net->seed = seed;
  net->debug = param->debug_info;
  if (!net->name || !net->source || !net->dir) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  if ((st = ct_net_filter(param, source, phase, level, stages, &filtered, err))) goto fail;
  if ((st = ct_net_check(param, &filtered, map, source, err))) goto fail;
  if ((st = ct_placement_create(ct_cpu_count(), &net->place, err))) goto fail;
  net->mp.off = !ct_memplan_env_on(); /* memplan.c plans the blobs at the first pass */
  if ((st = ct_net_place_default(net, param, map, err))) goto fail;
  if (filtered.n == 0) { /* an empty file (a wrong path, a truncated copy) is no net */
    st = ct_fail(err, CT_EINVAL, "%s: the net has no layers%s", source,
                 param->n_layer ? " for this phase and state (every layer's include/exclude rules leave it out)"
                                : ": an empty or truncated file?");
    goto fail;
  }
  if ((st = ct_net_insert_splits(&filtered, &split, err))) goto fail;
  if ((st = ct_net_partition(param, map, source, &split, &net->part, err))) goto fail;
  /* A partitioned net's workers run layers at the same time, which the memory plan's lifetimes
   * (one layer after another) and a workspace shared by every layer do not allow for. */
  if (net->part) net->mp.off = true;
  if (!net->mp.off && (st = ct_ws_pool_create(&net->place->ws, err))) goto fail;
  if ((st = ct_strmap_create((size_t)split.n, &net->layer_index, err)) ||
      (st = ct_strmap_create((size_t)split.n, &net->blob_index, err)))
    goto fail;
  net->layers = calloc((size_t)split.n + 1, sizeof *net->layers);
  if (!net->layers) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < split.n; i++) {
    net_layer *nl = &net->layers[i];
    nl->lp = split.v[i];
    split.v[i] = NULL;
    net->nlayers = i + 1;
    ct_layer *l = &nl->l;
    l->lp = nl->lp;
    l->name = nl->lp->name ? nl->lp->name : "";
    l->index = i;
    /* a layer's own phase wins over the net's, as in Caffe */
    l->phase = nl->lp->has_phase ? nl->lp->phase : phase == CT_TRAIN ? CAFFE__PHASE__TRAIN : CAFFE__PHASE__TEST;
    l->dir = net->dir;
    l->place = net->place;
    l->ops = ct_layer_find(nl->lp->type); /* ct_net_check made sure it is there */
    if (!l->ops) {
      st = ct_fail(err, CT_EINTERNAL, "%s: layer \"%s\" has unknown type \"%s\"", source, l->name,
                   nl->lp->type ? nl->lp->type : "");
      goto fail;
    }
    /* Caffe takes two layers of the same name (mnist_autoencoder has two "loss" layers): names
     * only find weights, and duplicates are matched in order (io.c); the index holds the first */
    if (ct_strmap_get(net->layer_index, l->name) < 0 && (st = ct_strmap_put(net->layer_index, l->name, i, err)))
      goto fail;
    if ((st = auto_tops(net, nl, err))) goto fail;
    ct_rng_seed(&l->rng, ct_rng_derive(seed, (uint64_t)ct_partition_seed_index(net->part, i)));
    if ((st = ct_net_place_layer(net, i, split.src[i], map, err))) goto fail;
    if ((st = wire_layer(net, i, err))) goto fail;
    if ((st = l->ops->setup(l, err))) goto fail;
    int c0, cn, whole; /* issue 19: Dropout on dim 1 draws its channels of the whole mask */
    if (ct_partition_channels(net->part, i, &c0, &cn, &whole) && !strcmp(l->ops->type, "Dropout"))
      ct_dropout_set_channels(l, c0, cn, whole);
    if (!l->param_propagate_down && (st = ct_layer_alloc_blobs(l, 0, err))) goto fail;
    if (nl->lp->n_param > (size_t)l->nblobs) {
      st = ct_layer_fail(l, err, CT_EINVAL, "has %zu param { } entries but only %d learnable blobs",
                         nl->lp->n_param, l->nblobs);
      goto fail;
    }
    if ((st = ct_layer_plan_reshape(l, nl->producer >= 0 ? &net->layers[nl->producer].l.plan : NULL, err)))
      goto fail;
  }
  /* blobs given inline in the prototxt */
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].lp->n_blobs) {
      ct_layer *l = &net->layers[i].l;
      if ((size_t)l->nblobs != net->layers[i].lp->n_blobs) {
        st = ct_layer_fail(l, err, CT_ESHAPE, "has %zu blobs in the prototxt but needs %d",
                           net->layers[i].lp->n_blobs, l->nblobs);
        goto fail;
      }
    }
  decide_backward(net, param->force_backward);
  if ((st = pack_params(net, err))) goto fail;
  if ((st = ct_net_fuse(net, err))) goto fail;
  {
    /* inline blobs: copy now that storage is final */
    Caffe__NetParameter tmp = CAFFE__NET_PARAMETER__INIT;
    Caffe__LayerParameter **lps = calloc((size_t)net->nlayers + 1, sizeof *lps);
    if (!lps) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto fail;
    }
    for (int i = 0; i < net->nlayers; i++)
      if (net->layers[i].lp->n_blobs) lps[tmp.n_layer++] = net->layers[i].lp;
    tmp.layer = lps;
    st = tmp.n_layer ? ct_net_copy_from_proto(net, &tmp, source, err) : CT_OK;
    free(lps);
    if (st) goto fail;
  }
  /* outputs: tops consumed by no later layer */
  net->outputs = calloc((size_t)net->nblobs + 1, sizeof(int));
  net->output_loss_weight = calloc((size_t)net->nblobs + 1, sizeof(float));
  if (!net->outputs || !net->output_loss_weight) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  {
    /* one pass over the layers (a pass per blob was quadratic in the net's size) */
    bool *consumed = calloc((size_t)net->nblobs + 1, sizeof *consumed);
    float *lw = calloc((size_t)net->nblobs + 1, sizeof *lw);
    if (!consumed || !lw) {
      free(consumed);
      free(lw);
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto fail;
    }
    for (int i = 0; i < net->nlayers; i++) {
      net_layer *nl = &net->layers[i];
      for (int t = 0; t < nl->l.ntop; t++) {
        /* a later (in-place) producer resets consumption; an automatic top is no output */
        consumed[nl->top_ids[t]] = t >= nl->l.ntop - nl->auto_tops;
        lw[nl->top_ids[t]] = nl->loss_weight[t];
      }
      for (int j = 0; j < nl->l.nbottom; j++) {
        int b = nl->bottom_ids[j];
        bool in_place = false;
        for (int t = 0; t < nl->l.ntop; t++) in_place |= nl->top_ids[t] == b;
        if (!in_place) consumed[b] = true;
      }
    }
    for (int b = 0; b < net->nblobs; b++)
      if (!consumed[b]) {
        net->output_loss_weight[net->noutputs] = lw[b];
        net->outputs[net->noutputs++] = b;
      }
    free(consumed);
    free(lw);
  }
  if (net->part && (st = ct_part_exec_create(net, &net->exec, err))) goto fail;
  ct_spec_list_free(&filtered);
  ct_spec_list_free(&split);
  free(stage_buf);
  if (upgraded) protobuf_c_message_free_unpacked(&upgraded->base, NULL);
  *out = net;
  return CT_OK;
fail:
  ct_spec_list_free(&filtered);
  ct_spec_list_free(&split);
  free(stage_buf);
  if (upgraded) protobuf_c_message_free_unpacked(&upgraded->base, NULL);
  ct_net_free(net);
  return st;
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup("");
  size_t n = (size_t)(slash - path) + 1;
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, path, n);
    d[n] = 0;
  }
  return d;
}

/* Parses a net, upgrading it in place (proto/upgrade.h) so that messages keep their positions. */
static ct_status parse_net(const char *text, size_t len, const char *path, Caffe__NetParameter **out,
                           ct_srcmap **map, ct_error *err) {
  ProtobufCMessage *m = NULL;
  ct_status st = text ? ct_prototxt_parse_mapped(text, len, path, &caffe__net_parameter__descriptor, &m, map, err)
                      : ct_prototxt_read_file_mapped(path, &caffe__net_parameter__descriptor, &m, map, err);
  if (st == CT_OK && ct_net_needs_upgrade((Caffe__NetParameter *)m))
    st = ct_upgrade_net((Caffe__NetParameter *)m, path, *map, err);
  if (st) {
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    ct_srcmap_free(*map);
    *map = NULL;
    m = NULL;
  }
  *out = (Caffe__NetParameter *)m;
  return st;
}

ct_status ct_net_create(const char *path, ct_phase phase, int level, const char *const *stages, const char *weights,
                        ct_net **out, ct_error *err) {
  return ct_net_create_seeded(path, phase, level, stages, weights, 1701, out, err);
}

ct_status ct_net_create_seeded(const char *path, ct_phase phase, int level, const char *const *stages,
                               const char *weights, uint64_t seed, ct_net **out, ct_error *err) {
  *out = NULL;
  Caffe__NetParameter *m = NULL;
  ct_srcmap *map = NULL;
  CT_TRY(parse_net(NULL, 0, path, &m, &map, err));
  char *dir = dir_of(path);
  ct_status st = dir ? ct_net_create_mapped(m, map, path, dir, phase, level, stages, seed, out, err)
                     : ct_fail(err, CT_ENOMEM, "out of memory");
  free(dir);
  ct_srcmap_free(map);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  if (st == CT_OK && weights && (st = ct_net_load_weights(*out, weights, err))) {
    ct_net_free(*out);
    *out = NULL;
  }
  return st;
}

ct_status ct_net_create_from_text(const char *text, const char *name, const char *dir, ct_phase phase, ct_net **out,
                                  ct_error *err) {
  *out = NULL;
  Caffe__NetParameter *m = NULL;
  if (!name) name = "<net>";
  ct_srcmap *map = NULL;
  CT_TRY(parse_net(text, strlen(text), name, &m, &map, err));
  ct_status st = ct_net_create_mapped(m, map, name, dir, phase, 0, NULL, 1701, out, err);
  ct_srcmap_free(map);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  return st;
}

ct_status ct_net_set_partitions(ct_net *net, int n, ct_error *err) {
  CT_TRY(ct_placement_set_cpu_parts(net->place, n, err));
  if (net->exec) CT_TRY(ct_part_exec_fit(net->exec, n, err));
  return ct_net_reshape(net, err);
}

int ct_net_partitions(const ct_net *net) { return net->place->cpu_parts; }
ct_placement *ct_net_placement(ct_net *net) { return net->place; }
const ct_driver *ct_net_driver(const ct_net *net) { return net->place->driver[net->place->master]; }

double ct_net_layer_flops(const ct_net *net, int i) {
  if (i < 0 || i >= net->nlayers || !net->layers[i].l.ops->flops) return 0;
  return net->layers[i].l.ops->flops(&net->layers[i].l);
}

double ct_net_layer_backward_flops(const ct_net *net, int i) {
  const double fl = ct_net_layer_flops(net, i);
  if (fl <= 0 || !net->layers[i].need_backward) return 0; /* a layer whose backward does not run */
  const ct_layer *l = &net->layers[i].l;
  bool data = false, params = false; /* the data gradient and the weight gradient: one GEMM each */
  for (int b = 0; b < l->nbottom; b++) data |= l->propagate_down[b];
  for (int j = 0; j < l->nblobs; j++) params |= l->param_propagate_down[j];
  return fl * ((data ? 1 : 0) + (params ? 1 : 0));
}

const char *ct_net_layer_note(const ct_net *net, int i) {
  if (i >= 0 && i < net->nlayers && net->layers[i].fusion) return ct_net_fuse_note(net, i);
  if (i < 0 || i >= net->nlayers || !net->layers[i].l.ops->describe) return "";
  return net->layers[i].l.ops->describe(&net->layers[i].l);
}

void ct_net_set_seed(ct_net *net, uint64_t seed) {
  net->seed = seed;
  for (int i = 0; i < net->nlayers; i++)
    ct_rng_seed(&net->layers[i].l.rng, ct_rng_derive(seed, (uint64_t)ct_partition_seed_index(net->part, i)));
}

