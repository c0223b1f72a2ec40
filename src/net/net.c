/* Net construction and execution: Caffe's Net.
 *
 * Construction: filter layers by NetState rules, insert Split layers where a blob feeds several
 * consumers, wire tops and bottoms (in place where top == bottom), set up and reshape each layer
 * in order, decide which layers need backward, then pack every learnable parameter into one
 * contiguous data buffer and one gradient buffer (shared parameters view their owner). */
#include "net/net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "core/status.h"
#include "core/tensor.h"
#include "proto/prototxt.h"

typedef struct net_layer {
  ct_layer l;
  Caffe__LayerParameter *lp; /* owned copy, with bottoms/tops renamed for splits */
  int *bottom_ids, *top_ids;
  float *loss_weight; /* per top */
  bool need_backward;
} net_layer;

struct ct_net {
  char *name;
  char *source;
  char *dir;
  ct_phase phase;
  uint64_t seed;
  int nlayers;
  net_layer *layers;
  int nblobs;
  ct_tensor **blobs;
  char **blob_names;
  int noutputs;
  int *outputs;
  float *output_loss_weight;
  /* learnable parameters */
  int nlearn;
  ct_update_param *learn;
  const ct_tensor **learn_tensor;
  float *param_data, *param_diff;
  size_t param_total;
  /* CcT's partitions: worker threads shared by the layers */
  ct_pool *pool;
  int partitions;
  ct_driver *driver; /* the device every layer computes on */
};

/* ------------------------------------------------------------------ small helpers */

static char *xstrdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* A deep copy of any message through its wire form. */
static ProtobufCMessage *msg_copy(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return NULL;
  protobuf_c_message_pack(m, buf);
  ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
  free(buf);
  return c;
}

static int find_blob(const ct_net *net, const char *name) {
  for (int i = 0; i < net->nblobs; i++)
    if (!strcmp(net->blob_names[i], name)) return i;
  return -1;
}

static int find_layer(const ct_net *net, const char *name) {
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].l.name && !strcmp(net->layers[i].l.name, name)) return i;
  return -1;
}

/* ------------------------------------------------------------------ state rules */

static bool has_stage(const char *const *stages, const char *s) {
  for (int i = 0; stages && stages[i]; i++)
    if (!strcmp(stages[i], s)) return true;
  return false;
}

static bool rule_met(const Caffe__NetStateRule *r, ct_phase phase, int level, const char *const *stages) {
  if (r->has_phase && (int)r->phase != (int)phase) return false;
  if (r->has_min_level && level < r->min_level) return false;
  if (r->has_max_level && level > r->max_level) return false;
  for (size_t i = 0; i < r->n_stage; i++)
    if (!has_stage(stages, r->stage[i])) return false;
  for (size_t i = 0; i < r->n_not_stage; i++)
    if (has_stage(stages, r->not_stage[i])) return false;
  return true;
}

static ct_status layer_included(const Caffe__LayerParameter *lp, const char *source, ct_phase phase, int level,
                                const char *const *stages, bool *inc, ct_error *err) {
  if (lp->n_include && lp->n_exclude)
    return ct_fail(err, CT_EINVAL, "%s: layer \"%s\" has both include and exclude rules; use one of them",
                   source, lp->name ? lp->name : "?");
  if (lp->n_include) {
    *inc = false;
    for (size_t i = 0; i < lp->n_include; i++) *inc |= rule_met(lp->include[i], phase, level, stages);
  } else {
    *inc = true;
    for (size_t i = 0; i < lp->n_exclude; i++)
      if (rule_met(lp->exclude[i], phase, level, stages)) *inc = false;
  }
  return CT_OK;
}

bool ct_net_layer_in_phase(const Caffe__LayerParameter *lp, ct_phase phase, int level, const char *const *stages) {
  bool inc = false;
  ct_error e;
  return layer_included(lp, "", phase, level, stages, &inc, &e) == CT_OK && inc;
}

/* ------------------------------------------------------------------ layer list building */

typedef struct spec_list {
  Caffe__LayerParameter **v; /* owned copies */
  int n, cap;
} spec_list;

static ct_status spec_push(spec_list *s, Caffe__LayerParameter *lp, ct_error *err) {
  if (!lp) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    Caffe__LayerParameter **v = realloc(s->v, (size_t)cap * sizeof *v);
    if (!v) {
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = lp;
  return CT_OK;
}

static void spec_free(spec_list *s) {
  for (int i = 0; i < s->n; i++)
    if (s->v[i]) protobuf_c_message_free_unpacked(&s->v[i]->base, NULL);
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}

static char **str_array(size_t n) { return calloc(n ? n : 1, sizeof(char *)); }

/* The deprecated net-level inputs (input / input_shape / input_dim) become an Input layer. */
static ct_status inputs_as_layer(const Caffe__NetParameter *p, const char *source, spec_list *out,
                                 ct_error *err) {
  if (!p->n_input) return CT_OK;
  size_t n = p->n_input;
  if (p->n_input_shape && p->n_input_shape != n && p->n_input_shape != 1)
    return ct_fail(err, CT_EINVAL, "%s: %zu inputs but %zu input_shape entries", source, n, p->n_input_shape);
  if (!p->n_input_shape && p->n_input_dim != 4 * n)
    return ct_fail(err, CT_EINVAL, "%s: %zu inputs need %zu input_dim values (4 each), got %zu", source, n, 4 * n,
                   p->n_input_dim);
  Caffe__LayerParameter *lp = malloc(sizeof *lp);
  Caffe__InputParameter *ip = malloc(sizeof *ip);
  if (!lp || !ip) {
    free(lp);
    free(ip);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  caffe__layer_parameter__init(lp);
  caffe__input_parameter__init(ip);
  lp->input_param = ip;
  lp->name = xstrdup("input");
  lp->type = xstrdup("Input");
  lp->top = str_array(n);
  ip->shape = calloc(n, sizeof *ip->shape);
  if (!lp->top || !ip->shape) goto oom;
  for (size_t i = 0; i < n; i++) {
    lp->top[lp->n_top++] = xstrdup(p->input[i]);
    Caffe__BlobShape *bs = malloc(sizeof *bs);
    if (!bs) goto oom;
    caffe__blob_shape__init(bs);
    ip->shape[ip->n_shape++] = bs;
    const Caffe__BlobShape *src = p->n_input_shape ? p->input_shape[p->n_input_shape == 1 ? 0 : i] : NULL;
    size_t nd = src ? src->n_dim : 4;
    bs->dim = calloc(nd ? nd : 1, sizeof(int64_t));
    if (!bs->dim) goto oom;
    bs->n_dim = nd;
    for (size_t k = 0; k < nd; k++) bs->dim[k] = src ? src->dim[k] : p->input_dim[4 * i + k];
  }
  return spec_push(out, lp, err);
oom:
  protobuf_c_message_free_unpacked(&lp->base, NULL);
  return ct_fail(err, CT_ENOMEM, "out of memory");
}

/* Inserts Split layers so that every blob version has at most one consumer (Caffe's
 * InsertSplits, with its naming: <blob>_<layer>_<top>_split_<k>). */
static ct_status insert_splits(spec_list *in, spec_list *out, ct_error *err) {
  int n = in->n;
  /* for every layer/top: the number of consumers; for every layer/bottom: its producer */
  int **consumers = calloc((size_t)n, sizeof *consumers);
  int **src_layer = calloc((size_t)n, sizeof *src_layer);
  int **src_top = calloc((size_t)n, sizeof *src_top);
  int **next_use = calloc((size_t)n, sizeof *next_use);
  int moved = 0;
  ct_status st = CT_OK;
  if (!consumers || !src_layer || !src_top || !next_use) goto oom;
  for (int i = 0; i < n; i++) {
    Caffe__LayerParameter *lp = in->v[i];
    consumers[i] = calloc(lp->n_top + 1, sizeof(int));
    next_use[i] = calloc(lp->n_top + 1, sizeof(int));
    src_layer[i] = calloc(lp->n_bottom + 1, sizeof(int));
    src_top[i] = calloc(lp->n_bottom + 1, sizeof(int));
    if (!consumers[i] || !next_use[i] || !src_layer[i] || !src_top[i]) goto oom;
    for (size_t b = 0; b < lp->n_bottom; b++) {
      src_layer[i][b] = -1;
      /* the latest earlier top of that name (in-place layers re-produce a name) */
      for (int j = i - 1; j >= 0 && src_layer[i][b] < 0; j--)
        for (size_t t = 0; t < in->v[j]->n_top; t++)
          if (!strcmp(in->v[j]->top[t], lp->bottom[b])) {
            src_layer[i][b] = j;
            src_top[i][b] = (int)t;
          }
      if (src_layer[i][b] >= 0) consumers[src_layer[i][b]][src_top[i][b]]++;
    }
  }
  for (int i = 0; i < n; i++) {
    Caffe__LayerParameter *lp = in->v[i];
    for (size_t b = 0; b < lp->n_bottom; b++) {
      int j = src_layer[i][b], t = src_top[i][b];
      if (j < 0 || consumers[j][t] < 2) continue;
      char name[1024];
      snprintf(name, sizeof name, "%s_%s_%d_split_%d", lp->bottom[b], in->v[j]->name ? in->v[j]->name : "", t,
               next_use[j][t]++);
      char *s = xstrdup(name);
      if (!s) goto oom;
      free(lp->bottom[b]);
      lp->bottom[b] = s;
    }
    /* ownership moves to out; in->v keeps the pointer (names of producers are read later)
     * until the end, when in gives up all of them */
    st = spec_push(out, lp, err);
    moved = i + 1;
    if (st) goto done;
    for (size_t t = 0; t < lp->n_top; t++) {
      int k = consumers[i][t];
      if (k < 2) continue;
      Caffe__LayerParameter *sp = malloc(sizeof *sp);
      if (!sp) goto oom;
      caffe__layer_parameter__init(sp);
      char name[1024];
      snprintf(name, sizeof name, "%s_%s_%d_split", lp->top[t], lp->name ? lp->name : "", (int)t);
      sp->name = xstrdup(name);
      sp->type = xstrdup("Split");
      sp->bottom = str_array(1);
      sp->top = str_array((size_t)k);
      if (sp->bottom) sp->bottom[sp->n_bottom++] = xstrdup(lp->top[t]);
      for (int c = 0; sp->top && c < k; c++) {
        snprintf(name, sizeof name, "%s_%s_%d_split_%d", lp->top[t], lp->name ? lp->name : "", (int)t, c);
        sp->top[sp->n_top++] = xstrdup(name);
      }
      if ((st = spec_push(out, sp, err))) goto done;
      if (!sp->name || !sp->type || !sp->bottom || !sp->top) goto oom;
    }
  }
  goto done;
oom:
  st = ct_fail(err, CT_ENOMEM, "out of memory");
done:
  for (int i = 0; i < moved; i++) in->v[i] = NULL;
  for (int i = 0; i < n; i++) {
    if (consumers) free(consumers[i]);
    if (next_use) free(next_use[i]);
    if (src_layer) free(src_layer[i]);
    if (src_top) free(src_top[i]);
  }
  free(consumers);
  free(next_use);
  free(src_layer);
  free(src_top);
  return st;
}

/* ------------------------------------------------------------------ wiring */

static ct_status add_blob(ct_net *net, const char *name, int *id, ct_error *err) {
  ct_tensor **b = realloc(net->blobs, (size_t)(net->nblobs + 1) * sizeof *b);
  if (!b) return ct_fail(err, CT_ENOMEM, "out of memory");
  net->blobs = b;
  char **nm = realloc(net->blob_names, (size_t)(net->nblobs + 1) * sizeof *nm);
  if (!nm) return ct_fail(err, CT_ENOMEM, "out of memory");
  net->blob_names = nm;
  net->blobs[net->nblobs] = ct_tensor_create();
  net->blob_names[net->nblobs] = xstrdup(name);
  if (!net->blobs[net->nblobs] || !net->blob_names[net->nblobs]) {
    ct_tensor_free(net->blobs[net->nblobs]);
    free(net->blob_names[net->nblobs]);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  *id = net->nblobs++;
  return CT_OK;
}

static ct_status check_arity(const ct_layer *l, ct_error *err) {
  const ct_layer_ops *o = l->ops;
  if (l->nbottom < o->min_bottom || (o->max_bottom >= 0 && l->nbottom > o->max_bottom)) {
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
    int id = find_blob(net, lp->bottom[b]);
    if (id < 0)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "bottom blob \"%s\" is not produced by any earlier layer (check the names of earlier "
                           "tops and the include/exclude rules for phase %s)",
                           lp->bottom[b], net->phase == CT_TRAIN ? "TRAIN" : "TEST");
    nl->bottom_ids[b] = id;
    l->bottom[b] = net->blobs[id];
  }
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
      if (find_blob(net, lp->top[t]) >= 0)
        return ct_layer_fail(l, err, CT_EINVAL, "top blob \"%s\" is already produced by an earlier layer",
                             lp->top[t]);
      CT_TRY(add_blob(net, lp->top[t], &nl->top_ids[t], err));
    }
    l->top[t] = net->blobs[nl->top_ids[t]];
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
      ct_update_param *u = &net->learn[net->nlearn];
      u->offset = total;
      u->count = l->blobs[j]->count;
      bool learnable = l->param_propagate_down[j];
      u->lr_mult = learnable ? spec_lr_mult(lp, j) : 0.0f;
      u->decay_mult = learnable ? spec_decay_mult(lp, j) : 0.0f;
      if (u->lr_mult == 0) l->param_propagate_down[j] = false;
      net->learn_tensor[net->nlearn++] = l->blobs[j];
      total += (l->blobs[j]->count + 15) & ~(size_t)15; /* keep each parameter 64-byte aligned */
    }
  }
  net->param_total = total;
  size_t bytes = (total ? total : 16) * sizeof(float);
  net->param_data = aligned_alloc(64, bytes);
  net->param_diff = aligned_alloc(64, bytes);
  if (!net->param_data || !net->param_diff) {
    st = ct_fail(err, CT_ENOMEM, "cannot allocate %zu parameters", total);
    goto done;
  }
  memset(net->param_data, 0, bytes);
  memset(net->param_diff, 0, bytes);
  for (int p = 0; p < net->nlearn; p++) {
    ct_tensor *t = (ct_tensor *)net->learn_tensor[p];
    float *d = net->param_data + net->learn[p].offset, *g = net->param_diff + net->learn[p].offset;
    memcpy(d, t->data, t->count * sizeof(float));
    free(t->own_data);
    free(t->own_diff);
    t->own_data = t->own_diff = NULL;
    t->capacity = 0;
    ct_tensor_view(t, d, g);
  }
  k = 0;
  for (int i = 0; i < net->nlayers; i++) {
    ct_layer *l = &net->layers[i].l;
    for (int j = 0; j < l->nblobs; j++, k++)
      if (owner[k] != l->blobs[j]) {
        ct_tensor *t = l->blobs[j];
        free(t->own_data);
        free(t->own_diff);
        t->own_data = t->own_diff = NULL;
        t->capacity = 0;
        ct_tensor_view(t, owner[k]->data, owner[k]->diff);
      }
  }
done:
  free(owner);
  free(shared_name);
  free(shared_owner);
  return st;
}

/* ------------------------------------------------------------------ create / free */

void ct_net_free(ct_net *net) {
  if (!net) return;
  for (int i = 0; i < net->nlayers; i++) {
    net_layer *nl = &net->layers[i];
    ct_layer *l = &nl->l;
    if (l->ops && l->ops->destroy) l->ops->destroy(l);
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
  free(net->outputs);
  free(net->output_loss_weight);
  free(net->learn);
  free(net->learn_tensor);
  free(net->param_data);
  free(net->param_diff);
  free(net->name);
  free(net->source);
  free(net->dir);
  ct_pool_free(net->pool);
  ct_driver_free(net->driver);
  free(net);
}

ct_status ct_net_create_from_param(const Caffe__NetParameter *param, const char *source, const char *dir,
                                   ct_phase phase, int level, const char *const *stages, uint64_t seed,
                                   ct_net **out, ct_error *err) {
  *out = NULL;
  if (!source) source = "<net>";
  if (param->n_layers && !param->n_layer)
    return ct_fail(err, CT_EUNSUPPORTED,
                   "%s: this net uses Caffe's pre-2015 `layers { }` format; convert it with Caffe's "
                   "upgrade_net_proto_text tool (the `layer { }` format is supported)",
                   source);
  ct_net *net = calloc(1, sizeof *net);
  if (!net) return ct_fail(err, CT_ENOMEM, "out of memory");
  net->name = xstrdup(param->name ? param->name : "");
  net->source = xstrdup(source);
  net->dir = xstrdup(dir ? dir : "");
  net->phase = phase;
  net->seed = seed;
  spec_list filtered = {0}, split = {0};
  ct_status st = CT_OK;
  if (!net->name || !net->source || !net->dir) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  net->partitions = ct_cpu_count();
  if ((st = ct_pool_create(net->partitions, &net->pool, err))) goto fail;
  if ((st = ct_driver_create("cpu", &net->driver, err))) goto fail;
  if ((st = inputs_as_layer(param, source, &filtered, err))) goto fail;
  for (size_t i = 0; i < param->n_layer; i++) {
    const Caffe__LayerParameter *lp = param->layer[i];
    bool inc = false;
    if ((st = layer_included(lp, source, phase, level, stages, &inc, err))) goto fail;
    if (!inc) continue;
    if ((st = spec_push(&filtered, (Caffe__LayerParameter *)msg_copy(&lp->base), err))) goto fail;
  }
  if ((st = insert_splits(&filtered, &split, err))) goto fail;
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
    l->phase = phase == CT_TRAIN ? CAFFE__PHASE__TRAIN : CAFFE__PHASE__TEST;
    l->dir = net->dir;
    l->pool = net->pool;
    l->partitions = net->partitions;
    l->driver = net->driver;
    if (!nl->lp->type) {
      st = ct_fail(err, CT_EINVAL, "%s: layer \"%s\" has no type", source, l->name);
      goto fail;
    }
    l->ops = ct_layer_find(nl->lp->type);
    if (!l->ops) {
      st = ct_fail(err, CT_EUNSUPPORTED, "%s: layer \"%s\" has unknown type \"%s\"", source, l->name,
                   nl->lp->type);
      goto fail;
    }
    for (int j = 0; j < i; j++)
      if (!strcmp(net->layers[j].l.name, l->name) && l->name[0]) {
        st = ct_fail(err, CT_EINVAL, "%s: two layers are named \"%s\"; layer names must be unique", source,
                     l->name);
        goto fail;
      }
    ct_rng_seed(&l->rng, ct_rng_derive(seed, (uint64_t)i));
    if ((st = wire_layer(net, i, err))) goto fail;
    if ((st = l->ops->setup(l, err))) goto fail;
    if (!l->param_propagate_down && (st = ct_layer_alloc_blobs(l, 0, err))) goto fail;
    if (nl->lp->n_param > (size_t)l->nblobs) {
      st = ct_layer_fail(l, err, CT_EINVAL, "has %zu param { } entries but only %d learnable blobs",
                         nl->lp->n_param, l->nblobs);
      goto fail;
    }
    if ((st = l->ops->reshape(l, err))) goto fail;
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
  for (int b = 0; b < net->nblobs; b++) {
    bool consumed = false;
    float lw = 0;
    for (int i = 0; i < net->nlayers; i++) {
      net_layer *nl = &net->layers[i];
      for (int t = 0; t < nl->l.ntop; t++)
        if (nl->top_ids[t] == b) {
          consumed = false; /* a later (in-place) producer resets consumption */
          lw = nl->loss_weight[t];
        }
      for (int j = 0; j < nl->l.nbottom; j++)
        if (nl->bottom_ids[j] == b) {
          bool in_place = false;
          for (int t = 0; t < nl->l.ntop; t++) in_place |= nl->top_ids[t] == b;
          if (!in_place) consumed = true;
        }
    }
    if (!consumed) {
      net->output_loss_weight[net->noutputs] = lw;
      net->outputs[net->noutputs++] = b;
    }
  }
  spec_free(&filtered);
  spec_free(&split);
  *out = net;
  return CT_OK;
fail:
  spec_free(&filtered);
  spec_free(&split);
  ct_net_free(net);
  return st;
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return xstrdup("");
  size_t n = (size_t)(slash - path) + 1;
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, path, n);
    d[n] = 0;
  }
  return d;
}

ct_status ct_net_create(const char *path, ct_phase phase, int level, const char *const *stages, const char *weights,
                        ct_net **out, ct_error *err) {
  *out = NULL;
  ProtobufCMessage *m = NULL;
  CT_TRY(ct_prototxt_read_file(path, &caffe__net_parameter__descriptor, &m, err));
  char *dir = dir_of(path);
  ct_status st = ct_net_create_from_param((Caffe__NetParameter *)m, path, dir, phase, level, stages, 1701, out, err);
  free(dir);
  protobuf_c_message_free_unpacked(m, NULL);
  if (st == CT_OK && weights && (st = ct_net_load_weights(*out, weights, err))) {
    ct_net_free(*out);
    *out = NULL;
  }
  return st;
}

ct_status ct_net_create_from_text(const char *text, const char *name, const char *dir, ct_phase phase, ct_net **out,
                                  ct_error *err) {
  *out = NULL;
  ProtobufCMessage *m = NULL;
  if (!name) name = "<net>";
  CT_TRY(ct_prototxt_parse(text, strlen(text), name, &caffe__net_parameter__descriptor, &m, err));
  ct_status st = ct_net_create_from_param((Caffe__NetParameter *)m, name, dir, phase, 0, NULL, 1701, out, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return st;
}

ct_status ct_net_set_partitions(ct_net *net, int n, ct_error *err) {
  if (n < 1 || n > 64) return ct_fail(err, CT_EINVAL, "partitions must be 1 to 64, got %d", n);
  ct_pool *pool = NULL;
  /* more partitions than cores share the cores' threads, each claiming the next partition when
   * it finishes one; a thread per partition would only make the cores take turns */
  const int cores = ct_cpu_count();
  CT_TRY(ct_pool_create(n < cores ? n : cores, &pool, err));
  ct_pool_free(net->pool);
  net->pool = pool;
  net->partitions = n;
  for (int i = 0; i < net->nlayers; i++) {
    net->layers[i].l.pool = pool;
    net->layers[i].l.partitions = n;
  }
  return ct_net_reshape(net, err);
}

int ct_net_partitions(const ct_net *net) { return net->partitions; }
ct_pool *ct_net_pool(ct_net *net) { return net->pool; }
const ct_driver *ct_net_driver(const ct_net *net) { return net->driver; }

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
  if (i < 0 || i >= net->nlayers || !net->layers[i].l.ops->describe) return "";
  return net->layers[i].l.ops->describe(&net->layers[i].l);
}

void ct_net_set_seed(ct_net *net, uint64_t seed) {
  net->seed = seed;
  for (int i = 0; i < net->nlayers; i++) ct_rng_seed(&net->layers[i].l.rng, ct_rng_derive(seed, (uint64_t)i));
}

/* ------------------------------------------------------------------ running */

static ct_status forward_layer(ct_net *net, int i, ct_error *err) {
  net_layer *nl = &net->layers[i];
  ct_layer *l = &nl->l;
  CT_TRY(l->ops->reshape(l, err));
  CT_TRY(l->ops->forward(l, err));
  for (int t = 0; t < l->ntop; t++)
    if (nl->loss_weight[t] != 0) {
      ct_tensor *y = l->top[t];
      for (size_t k = 0; k < y->count; k++) y->diff[k] = nl->loss_weight[t];
    }
  return CT_OK;
}

ct_status ct_net_forward(ct_net *net, float *loss, ct_error *err) {
  double total = 0;
  for (int i = 0; i < net->nlayers; i++) {
    CT_TRY(forward_layer(net, i, err));
    net_layer *nl = &net->layers[i];
    for (int t = 0; t < nl->l.ntop; t++)
      if (nl->loss_weight[t] != 0) {
        const ct_tensor *y = nl->l.top[t];
        for (size_t k = 0; k < y->count; k++) total += (double)y->data[k] * nl->loss_weight[t];
      }
  }
  if (loss) *loss = (float)total;
  return CT_OK;
}

ct_status ct_net_backward(ct_net *net, ct_error *err) {
  (void)err;
  for (int i = net->nlayers - 1; i >= 0; i--)
    if (net->layers[i].need_backward) net->layers[i].l.ops->backward(&net->layers[i].l);
  return CT_OK;
}

ct_status ct_net_forward_layer(ct_net *net, int i, ct_error *err) {
  if (i < 0 || i >= net->nlayers) return ct_fail(err, CT_EINVAL, "layer index %d out of range", i);
  return forward_layer(net, i, err);
}

ct_status ct_net_backward_layer(ct_net *net, int i, ct_error *err) {
  if (i < 0 || i >= net->nlayers) return ct_fail(err, CT_EINVAL, "layer index %d out of range", i);
  if (net->layers[i].need_backward) net->layers[i].l.ops->backward(&net->layers[i].l);
  return CT_OK;
}

void ct_net_clear_param_diffs(ct_net *net) {
  if (net->param_diff) memset(net->param_diff, 0, net->param_total * sizeof(float));
}

ct_status ct_net_reshape(ct_net *net, ct_error *err) {
  for (int i = 0; i < net->nlayers; i++) CT_TRY(net->layers[i].l.ops->reshape(&net->layers[i].l, err));
  return CT_OK;
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
const ct_update_param *ct_net_learnable(const ct_net *net) { return net->learn; }
const ct_tensor *ct_net_learnable_tensor(const ct_net *net, int i) { return net->learn_tensor[i]; }
float *ct_net_param_buffer(ct_net *net) { return net->param_data; }
float *ct_net_diff_buffer(ct_net *net) { return net->param_diff; }
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
  int id = find_blob(net, name);
  return id < 0 ? -1 : copy_shape(net->blobs[id], shape);
}
float *ct_net_blob_data(ct_net *net, const char *name) {
  int id = find_blob(net, name);
  return id < 0 ? NULL : net->blobs[id]->data;
}
float *ct_net_blob_diff(ct_net *net, const char *name) {
  int id = find_blob(net, name);
  return id < 0 ? NULL : net->blobs[id]->diff;
}
ct_status ct_net_blob_reshape(ct_net *net, const char *name, int naxes, const int *shape, ct_error *err) {
  int id = find_blob(net, name);
  if (id < 0) return ct_fail(err, CT_ENOTFOUND, "no blob named \"%s\" in net \"%s\"", name, net->name);
  return ct_tensor_reshape(net->blobs[id], naxes, shape, err);
}

static ct_tensor *param_tensor(const ct_net *net, const char *layer, int index) {
  int li = find_layer(net, layer);
  if (li < 0 || index < 0 || index >= net->layers[li].l.nblobs) return NULL;
  return net->layers[li].l.blobs[index];
}
int ct_net_param_count(const ct_net *net, const char *layer) {
  int li = find_layer(net, layer);
  return li < 0 ? -1 : net->layers[li].l.nblobs;
}
int ct_net_param_shape(const ct_net *net, const char *layer, int index, int shape[8]) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? copy_shape(t, shape) : -1;
}
float *ct_net_param_data(ct_net *net, const char *layer, int index) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? t->data : NULL;
}
float *ct_net_param_diff(ct_net *net, const char *layer, int index) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? t->diff : NULL;
}

int ct_net_first_nonfinite_layer(const ct_net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    const ct_layer *l = &net->layers[i].l;
    for (int t = 0; t < l->ntop; t++)
      for (size_t k = 0; k < l->top[t]->count; k++)
        if (!isfinite(l->top[t]->data[k])) return i;
  }
  return -1;
}

int ct_net_first_nonfinite_grad_layer(const ct_net *net) {
  for (int i = net->nlayers - 1; i >= 0; i--) {
    const ct_layer *l = &net->layers[i].l;
    for (int j = 0; j < l->nblobs; j++)
      for (size_t k = 0; k < l->blobs[j]->count; k++)
        if (!isfinite(l->blobs[j]->diff[k])) return i;
  }
  return -1;
}

int ct_net_batch_size(const ct_net *net) {
  if (!net->nlayers || !net->layers[0].l.ntop || !net->layers[0].l.top[0]->naxes) return 0;
  return net->layers[0].l.top[0]->shape[0];
}

/* ------------------------------------------------------------------ weights */

int ct_blob_proto_shape(const Caffe__BlobProto *b, int shape[CT_MAX_AXES]) {
  if (b->shape) {
    if (b->shape->n_dim > CT_MAX_AXES) return -1;
    for (size_t k = 0; k < b->shape->n_dim; k++) {
      if (b->shape->dim[k] < 0 || b->shape->dim[k] > INT32_MAX) return -1;
      shape[k] = (int)b->shape->dim[k];
    }
    return (int)b->shape->n_dim;
  }
  int v[4] = {b->num, b->channels, b->height, b->width};
  for (int k = 0; k < 4; k++) {
    if (v[k] < 0) return -1;
    shape[k] = v[k];
  }
  return 4;
}

/* Caffe's shape comparison: a legacy 4-D blob matches a shape of up to 4 axes padded with 1s
 * on the left. */
static bool proto_shape_matches(const Caffe__BlobProto *b, const ct_tensor *t) {
  int s[CT_MAX_AXES], n = ct_blob_proto_shape(b, s);
  if (n < 0) return false;
  if (b->shape) {
    if (n != t->naxes) return false;
    for (int k = 0; k < n; k++)
      if (s[k] != t->shape[k]) return false;
    return true;
  }
  if (t->naxes > 4) return false;
  for (int k = 0; k < 4; k++) {
    int tk = k - (4 - t->naxes);
    if (s[k] != (tk >= 0 ? t->shape[tk] : 1)) return false;
  }
  return true;
}

ct_status ct_blob_to_proto(const ct_tensor *t, bool with_diff, Caffe__BlobProto **out, ct_error *err) {
  Caffe__BlobProto *b = malloc(sizeof *b);
  Caffe__BlobShape *s = malloc(sizeof *s);
  if (!b || !s) {
    free(b);
    free(s);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  caffe__blob_proto__init(b);
  caffe__blob_shape__init(s);
  b->shape = s;
  s->dim = calloc((size_t)t->naxes + 1, sizeof(int64_t));
  b->data = malloc((t->count ? t->count : 1) * sizeof(float));
  if (with_diff) b->diff = malloc((t->count ? t->count : 1) * sizeof(float));
  if (!s->dim || !b->data || (with_diff && !b->diff)) {
    protobuf_c_message_free_unpacked(&b->base, NULL);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  s->n_dim = (size_t)t->naxes;
  for (int k = 0; k < t->naxes; k++) s->dim[k] = t->shape[k];
  b->n_data = t->count;
  memcpy(b->data, t->data, t->count * sizeof(float));
  if (with_diff) {
    b->n_diff = t->count;
    memcpy(b->diff, t->diff, t->count * sizeof(float));
  }
  *out = b;
  return CT_OK;
}

ct_status ct_net_to_proto(const ct_net *net, Caffe__NetParameter **out, ct_error *err) {
  *out = NULL;
  Caffe__NetParameter *p = malloc(sizeof *p);
  if (!p) return ct_fail(err, CT_ENOMEM, "out of memory");
  caffe__net_parameter__init(p);
  p->name = xstrdup(net->name);
  p->layer = calloc((size_t)net->nlayers + 1, sizeof *p->layer);
  ct_status st = CT_OK;
  if (!p->name || !p->layer) goto oom;
  for (int i = 0; i < net->nlayers; i++) {
    const net_layer *nl = &net->layers[i];
    Caffe__LayerParameter *lp = (Caffe__LayerParameter *)msg_copy(&nl->lp->base);
    if (!lp) goto oom;
    p->layer[p->n_layer++] = lp;
    /* the blobs written are the layer's current values, not whatever the prototxt held */
    for (size_t k = 0; k < lp->n_blobs; k++) protobuf_c_message_free_unpacked(&lp->blobs[k]->base, NULL);
    free(lp->blobs);
    lp->n_blobs = 0;
    lp->blobs = calloc((size_t)nl->l.nblobs + 1, sizeof *lp->blobs);
    if (!lp->blobs) goto oom;
    for (int j = 0; j < nl->l.nblobs; j++) {
      if ((st = ct_blob_to_proto(nl->l.blobs[j], false, &lp->blobs[j], err))) goto fail;
      lp->n_blobs++;
    }
  }
  *out = p;
  return CT_OK;
oom:
  st = ct_fail(err, CT_ENOMEM, "out of memory");
fail:
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return st;
}

static ct_status copy_layer_blobs(ct_net *net, const char *lname, Caffe__BlobProto *const *blobs, size_t nb,
                                  const char *source, ct_error *err) {
  int li = find_layer(net, lname);
  if (li < 0) return CT_OK; /* Caffe ignores layers the net does not have */
  ct_layer *l = &net->layers[li].l;
  if (nb != (size_t)l->nblobs)
    return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" has %zu blobs in the weights file but %d in the net", source,
                   lname, nb, l->nblobs);
  for (size_t j = 0; j < nb; j++) {
    const Caffe__BlobProto *b = blobs[j];
    ct_tensor *t = l->blobs[j];
    if (!proto_shape_matches(b, t)) {
      int s[CT_MAX_AXES], n = ct_blob_proto_shape(b, s);
      char want[128], got[256] = "";
      size_t used = 0;
      for (int k = 0; k < n && used < sizeof got; k++)
        used += (size_t)snprintf(got + used, sizeof got - used, "%s%d", k ? " " : "", s[k]);
      return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" blob %zu has shape %s in the weights file but %s in the net",
                     source, lname, j, n < 0 ? "(invalid)" : got, ct_tensor_shape_str(t, want, sizeof want));
    }
    if (b->n_data == t->count) {
      memcpy(t->data, b->data, t->count * sizeof(float));
    } else if (b->n_double_data == t->count) {
      for (size_t k = 0; k < t->count; k++) t->data[k] = (float)b->double_data[k];
    } else {
      return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" blob %zu holds %zu values but its shape needs %zu", source,
                     lname, j, b->n_data ? b->n_data : b->n_double_data, t->count);
    }
  }
  return CT_OK;
}

ct_status ct_net_copy_from_proto(ct_net *net, const Caffe__NetParameter *param, const char *source, ct_error *err) {
  for (size_t i = 0; i < param->n_layer; i++) {
    const Caffe__LayerParameter *lp = param->layer[i];
    if (!lp->name) continue;
    CT_TRY(copy_layer_blobs(net, lp->name, lp->blobs, lp->n_blobs, source, err));
  }
  for (size_t i = 0; i < param->n_layers; i++) {
    const Caffe__V1LayerParameter *lp = param->layers[i];
    if (!lp->name) continue;
    CT_TRY(copy_layer_blobs(net, lp->name, lp->blobs, lp->n_blobs, source, err));
  }
  return CT_OK;
}

ct_status ct_net_load_weights(ct_net *net, const char *path, ct_error *err) {
  ProtobufCMessage *m = NULL;
  CT_TRY(ct_proto_read_binary(path, &caffe__net_parameter__descriptor, &m, err));
  ct_status st = ct_net_copy_from_proto(net, (Caffe__NetParameter *)m, path, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return st;
}

ct_status ct_net_save_weights(const ct_net *net, const char *path, ct_error *err) {
  Caffe__NetParameter *p = NULL;
  CT_TRY(ct_net_to_proto(net, &p, err));
  ct_status st = ct_proto_write_binary(path, &p->base, err);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return st;
}

ct_status ct_net_share_weights_from(ct_net *dst, const ct_net *src, ct_error *err) {
  for (int i = 0; i < dst->nlayers; i++) {
    ct_layer *l = &dst->layers[i].l;
    if (!l->nblobs) continue;
    int si = find_layer(src, l->name);
    if (si < 0) continue;
    const ct_layer *s = &src->layers[si].l;
    if (s->nblobs != l->nblobs)
      return ct_fail(err, CT_ESHAPE, "layer \"%s\" has %d blobs in one net and %d in the other", l->name, l->nblobs,
                     s->nblobs);
    for (int j = 0; j < l->nblobs; j++) {
      if (!ct_tensor_same_shape(l->blobs[j], s->blobs[j])) {
        char a[128], b[128];
        return ct_fail(err, CT_ESHAPE, "layer \"%s\" blob %d: shape %s in one net, %s in the other", l->name, j,
                       ct_tensor_shape_str(l->blobs[j], a, sizeof a), ct_tensor_shape_str(s->blobs[j], b, sizeof b));
      }
      l->blobs[j]->data = s->blobs[j]->data; /* views the source's values; its own diff stays */
    }
  }
  return CT_OK;
}

/* ------------------------------------------------------------------ resumable state */

ct_status ct_net_save_state(const ct_net *net, const char *prefix, Caffe__SolverState *st, ct_error *err) {
  Caffe__LayerState **v = realloc(st->layer_state, (st->n_layer_state + (size_t)net->nlayers + 1) * sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  st->layer_state = v;
  for (int i = 0; i < net->nlayers; i++) {
    const ct_layer *l = &net->layers[i].l;
    Caffe__LayerState *ls = malloc(sizeof *ls);
    if (!ls) return ct_fail(err, CT_ENOMEM, "out of memory");
    caffe__layer_state__init(ls);
    st->layer_state[st->n_layer_state++] = ls;
    size_t n = strlen(prefix) + strlen(l->name) + 1;
    ls->layer = malloc(n);
    ls->rng = malloc(4 * sizeof(uint64_t));
    if (!ls->layer || !ls->rng) return ct_fail(err, CT_ENOMEM, "out of memory");
    snprintf(ls->layer, n, "%s%s", prefix, l->name);
    ls->n_rng = 4;
    memcpy(ls->rng, l->rng.s, sizeof l->rng.s);
    if (l->ops->get_cursor) {
      ls->has_cursor = 1;
      ls->cursor = l->ops->get_cursor(l);
    }
  }
  return CT_OK;
}

void ct_net_load_state(ct_net *net, const char *prefix, const Caffe__SolverState *st) {
  size_t plen = strlen(prefix);
  for (size_t k = 0; k < st->n_layer_state; k++) {
    const Caffe__LayerState *ls = st->layer_state[k];
    if (!ls->layer || strncmp(ls->layer, prefix, plen)) continue;
    int li = find_layer(net, ls->layer + plen);
    if (li < 0) continue;
    ct_layer *l = &net->layers[li].l;
    if (ls->n_rng == 4) memcpy(l->rng.s, ls->rng, sizeof l->rng.s);
    if (ls->has_cursor && l->ops->set_cursor) l->ops->set_cursor(l, ls->cursor);
  }
}
