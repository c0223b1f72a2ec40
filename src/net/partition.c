/* SINGA's model partitioning inside a worker group (issue 19): `partition_dim` (per layer, or
 * the net's default) and `location`, as a rewrite of the layer list after Split insertion.
 *
 * The group has W workers (the net's partition_workers). Every layer of the rewritten list runs
 * on one worker (its `location`):
 *  - a layer on dim 1 (InnerProduct's outputs, Convolution's output channels) becomes
 *    m = min(K, W) sub-layers "<name>@k" of K_k outputs each (unequal when W does not divide K),
 *    sub-layer k on worker k; its input is made whole and handed to each of them (Split);
 *  - an element-wise layer on dim 1 whose bottom is sharded runs once per shard, on the shard's
 *    worker, and keeps the shards;
 *  - any other layer runs whole on its location (0 when none; dim 0, the batch, is what a whole
 *    layer does with the process's partitions) and gets its bottoms whole: sharded bottoms are
 *    joined by a Concat on axis 1, on that worker.
 * Every edge between layers on different workers is a bridge (a hand-off inside one process);
 * ct_net_partition_bytes counts what they move.
 *
 * Parameters stay whole where the solver, snapshots and weights files see them: the shards of
 * one layer's parameters are consecutive rows of one whole tensor in the net's flat storage (the
 * first axis is the output axis for both layer types), which keeps the flat layout, the
 * .caffemodel and the .solverstate identical to the unpartitioned net's, so a snapshot resumes
 * on any partitioning. Each sub-layer computes the gradient of its rows only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/strmap.h"
#include "core/tensor.h"
#include "net/net_impl.h"
#include "proto/audit.h"
#include "proto/blob.h"

typedef struct part_entry {
  int shard;    /* -1: not a shard; else k of the layer's m sub-layers */
  int lead;     /* the layer index of shard 0 */
  int row0, rows, whole_rows; /* this shard's output rows of the whole layer's (an element-wise
                                 follower: its channels of the whole blob's) */
  int seed_index; /* an element-wise follower: the layer's index before the rewrite, whose random
                     stream every shard of it draws from (-1: its own index) */
  bool hidden;  /* not written to weights files (shards k > 0, inserted connections) */
  bool parallel; /* one of several copies that run at once on their workers (shards, their
                    element-wise followers): part_run.c gives it its worker's cores */
  bool pinned;   /* a whole layer whose prototxt gives its location */
  Caffe__LayerParameter *origin; /* shard 0: the layer as written (owned) */
  ct_tensor *whole[CT_PART_MAX_BLOBS]; /* shard 0: the whole parameters (owned) */
  int nwhole;
} part_entry;

struct ct_partition {
  int workers;
  int n, cap;
  part_entry *v;
};

/* ------------------------------------------------------------------ validation */

static const char *const k_eltwise[] = {"ReLU", "Sigmoid", "TanH",  "AbsVal", "BNLL",    "ELU", "Power",
                                        "Exp",  "Log",     "Threshold", "Clip", "Swish", "Dropout", NULL};

static bool is_eltwise(const char *type) {
  for (int i = 0; type && k_eltwise[i]; i++)
    if (!strcmp(type, k_eltwise[i])) return true;
  return false;
}

static bool is_neuron_layer(const char *type) {
  return type && (!strcmp(type, "InnerProduct") || !strcmp(type, "Convolution"));
}

/* Why a dim-1 layer of this type and these parameters cannot be split on its outputs (NULL: it
 * can). */
static const char *neuron_refusal(const Caffe__LayerParameter *lp) {
  if (!strcmp(lp->type, "InnerProduct")) {
    const Caffe__InnerProductParameter *p = lp->inner_product_param;
    if (p && p->transpose) return "its weights are transposed (transpose: true), so an output shard is no block of rows";
    if (p && p->has_axis && p->axis != 1) return "its outputs are not on axis 1 (axis is set)";
  } else {
    const Caffe__ConvolutionParameter *p = lp->convolution_param;
    if (p && p->has_group && p->group != 1) return "it has groups (group > 1)";
    if (p && p->has_axis && p->axis != 1) return "its channels are not on axis 1 (axis is set)";
    if (lp->n_bottom != 1) return "it has several bottoms";
  }
  if (lp->n_blobs) return "it holds weights inline in the prototxt";
  for (size_t j = 0; j < lp->n_param; j++)
    if (lp->param[j]->name && lp->param[j]->name[0]) return "it shares its parameters with another layer (param name)";
  return NULL;
}

static ct_status layer_fail(const Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, const ct_srcmap *map,
                            const char *source, const char *field, ct_error *err, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static ct_status layer_fail(const Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, const ct_srcmap *map,
                            const char *source, const char *field, ct_error *err, const char *fmt, ...) {
  char at[512], what[768];
  ct_audit_where(map, src ? &src->base : NULL, field, source, at, sizeof at);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ct_fail(err, CT_EINVAL, "%s: layer \"%s\" (%s): %s", at, lp->name ? lp->name : "", lp->type ? lp->type : "",
                 what);
}

ct_status ct_net_partition_check(const Caffe__NetParameter *param, const ct_spec_list *list, const ct_srcmap *map,
                                 const char *source, ct_error *err) {
  char at[512];
  if (param->has_partition_dim && param->partition_dim != -1 && param->partition_dim != 0 &&
      param->partition_dim != 1) {
    ct_audit_where(map, &param->base, "partition_dim", source, at, sizeof at);
    return ct_fail(err, CT_EINVAL,
                   "%s: the net's partition_dim is %d; expected 0 (the batch), 1 (the neurons) or -1 (none)", at,
                   param->partition_dim);
  }
  if (param->partition_workers < 1 || param->partition_workers > CT_PART_MAX_WORKERS) {
    ct_audit_where(map, &param->base, "partition_workers", source, at, sizeof at);
    return ct_fail(err, CT_EINVAL, "%s: partition_workers is %d; expected a worker count from 1 to %d", at,
                   param->partition_workers, CT_PART_MAX_WORKERS);
  }
  const int W = param->partition_workers;
  for (int i = 0; i < list->n; i++) {
    const Caffe__LayerParameter *lp = list->v[i], *src = list->src[i];
    if (lp->has_partition_dim && lp->partition_dim != -1) {
      if (lp->partition_dim != 0 && lp->partition_dim != 1)
        return layer_fail(lp, src, map, source, "partition_dim", err,
                          "partition_dim is %d; expected 0 (the batch), 1 (the neurons) or -1 (none)",
                          lp->partition_dim);
      if (lp->partition_dim == 1) {
        if (!is_neuron_layer(lp->type) && !is_eltwise(lp->type))
          return layer_fail(lp, src, map, source, "partition_dim", err,
                            "partition_dim: 1 needs a neuron dimension to split; %s has none here (dim 1 takes "
                            "InnerProduct, Convolution and the element-wise layers after them: ReLU, Sigmoid, TanH, "
                            "AbsVal, BNLL, ELU, Power, Exp, Log, Threshold, Clip, Swish, Dropout)",
                            lp->type ? lp->type : "this type");
        const char *why = is_neuron_layer(lp->type) ? neuron_refusal(lp) : NULL;
        if (why)
          return layer_fail(lp, src, map, source, "partition_dim", err,
                            "partition_dim: 1 cannot split this layer's outputs: %s", why);
        if (lp->has_location && lp->location != -1)
          return layer_fail(lp, src, map, source, "location", err,
                            "location pins the whole layer to one worker, partition_dim: 1 spreads it over all; "
                            "give one of them");
      }
    }
    if (lp->has_location && lp->location != -1 && (lp->location < 0 || lp->location >= W))
      return layer_fail(lp, src, map, source, "location", err,
                        "location %d is beyond the worker group's %d worker%s (partition_workers: %d; expected a "
                        "location from 0 to %d)",
                        lp->location, W, W == 1 ? "" : "s", W, W - 1);
  }
  return CT_OK;
}

/* ------------------------------------------------------------------ the rewrite */

typedef struct layout {
  char *name;        /* owned */
  int m;             /* 0: whole; else the number of shards */
  int worker;        /* whole: where it is */
  int K;             /* sharded: the whole blob's channels (axis 1) */
  bool consumed;     /* sharded: some layer read the shards or the whole */
  bool whole_made;   /* sharded: a Concat made the whole blob under its own name */
} layout;

typedef struct rewrite {
  const Caffe__NetParameter *param;
  ct_spec_list *out;
  ct_partition *part;
  ct_strmap *index; /* blob name -> layout index */
  int cur;          /* the index of the layer being rewritten in the list before the rewrite */
  layout *lay;
  int nlay, caplay;
} rewrite;

static char *fmt_name(const char *a, const char *suffix, int k) {
  char buf[1024];
  if (k >= 0)
    snprintf(buf, sizeof buf, "%s%s%d", a, suffix, k);
  else
    snprintf(buf, sizeof buf, "%s%s", a, suffix);
  return strdup(buf);
}

static ct_status grow_part(ct_partition *p, ct_error *err) {
  if (p->n < p->cap) return CT_OK;
  int cap = p->cap ? 2 * p->cap : 32;
  part_entry *v = realloc(p->v, (size_t)cap * sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  p->v = v;
  p->cap = cap;
  return CT_OK;
}

/* Appends lp (owned; freed on failure) on `worker` with its partition entry. */
static ct_status emit(rewrite *r, Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, int worker,
                      part_entry e, ct_error *err) {
  if (!lp) return ct_fail(err, CT_ENOMEM, "out of memory");
  lp->has_partition_dim = 0;
  lp->partition_dim = -1;
  lp->has_location = 1;
  lp->location = worker;
  ct_status st = grow_part(r->part, err);
  if (st) {
    protobuf_c_message_free_unpacked(&lp->base, NULL);
    return st;
  }
  CT_TRY(ct_spec_push(r->out, lp, src, err));
  r->part->v[r->part->n++] = e;
  return CT_OK;
}

static part_entry plain(void) { return (part_entry){.shard = -1, .lead = -1, .seed_index = -1}; }
static part_entry hidden(void) { return (part_entry){.shard = -1, .lead = -1, .hidden = true, .seed_index = -1}; }

/* A connection layer: type, one or more bottoms and tops. */
static Caffe__LayerParameter *connection(const char *name, const char *type, char **bottom, int nb, char **top,
                                         int nt) {
  Caffe__LayerParameter *lp = malloc(sizeof *lp);
  if (!lp) return NULL;
  caffe__layer_parameter__init(lp);
  lp->name = strdup(name);
  lp->type = strdup(type);
  lp->bottom = calloc((size_t)nb + 1, sizeof(char *));
  lp->top = calloc((size_t)nt + 1, sizeof(char *));
  bool ok = lp->name && lp->type && lp->bottom && lp->top;
  for (int k = 0; ok && k < nb; k++) ok = (lp->bottom[lp->n_bottom++] = strdup(bottom[k])) != NULL;
  for (int k = 0; ok && k < nt; k++) ok = (lp->top[lp->n_top++] = strdup(top[k])) != NULL;
  if (!ok) {
    protobuf_c_message_free_unpacked(&lp->base, NULL);
    return NULL;
  }
  return lp;
}

static int find_layout(rewrite *r, const char *name) { return ct_strmap_get(r->index, name); }

/* Records blob `name` as whole on `worker` (m == 0) or split into m shards "<name>@k". */
static ct_status set_layout(rewrite *r, const char *name, int m, int worker, ct_error *err) {
  int i = find_layout(r, name);
  if (i < 0) {
    if (r->nlay == r->caplay) {
      int cap = r->caplay ? 2 * r->caplay : 32;
      layout *v = realloc(r->lay, (size_t)cap * sizeof *v);
      if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
      r->lay = v;
      r->caplay = cap;
    }
    char *nm = strdup(name);
    if (!nm) return ct_fail(err, CT_ENOMEM, "out of memory");
    r->lay[r->nlay] = (layout){.name = nm};
    i = r->nlay++;
    CT_TRY(ct_strmap_put(r->index, nm, i, err));
  }
  r->lay[i] = (layout){.name = r->lay[i].name, .m = m, .worker = worker};
  return CT_OK;
}

/* Blob `name` made whole (joined on axis 1 by a Concat on `worker` when it is sharded). */
static ct_status ensure_whole(rewrite *r, const char *name, int worker, ct_error *err) {
  int i = find_layout(r, name);
  if (i < 0 || r->lay[i].m == 0 || r->lay[i].whole_made) return CT_OK;
  layout *L = &r->lay[i];
  L->consumed = L->whole_made = true;
  char *shards[CT_PART_MAX_WORKERS];
  int m = L->m;
  ct_status st = CT_OK;
  int made = 0;
  for (; made < m; made++)
    if (!(shards[made] = fmt_name(name, "@", made))) break;
  char *cname = fmt_name(name, "@concat", -1);
  if (made < m || !cname) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
  } else {
    Caffe__LayerParameter *lp = connection(cname, "Concat", shards, m, (char **)&name, 1);
    if (lp && !(lp->concat_param = malloc(sizeof *lp->concat_param))) {
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      lp = NULL;
    }
    if (lp) {
      caffe__concat_parameter__init(lp->concat_param);
      lp->concat_param->has_axis = 1;
      lp->concat_param->axis = 1;
    }
    st = emit(r, lp, NULL, worker, hidden(), err);
  }
  for (int k = 0; k < made; k++) free(shards[k]);
  free(cname);
  return st;
}

static void set_outputs(Caffe__LayerParameter *lp, int n) {
  if (!strcmp(lp->type, "InnerProduct")) {
    if (!lp->inner_product_param) return; /* the layer's setup reports the missing parameter */
    lp->inner_product_param->num_output = (uint32_t)n;
  } else if (lp->convolution_param) {
    lp->convolution_param->num_output = (uint32_t)n;
  }
}

static int outputs_of(const Caffe__LayerParameter *lp) {
  if (!strcmp(lp->type, "InnerProduct")) return lp->inner_product_param ? (int)lp->inner_product_param->num_output : 0;
  return lp->convolution_param ? (int)lp->convolution_param->num_output : 0;
}

/* An InnerProduct or Convolution on dim 1: m sub-layers, each given the whole bottom. */
static ct_status split_neurons(rewrite *r, Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, ct_error *err) {
  const int W = r->part->workers, K = outputs_of(lp);
  const int m = K < 1 ? 1 : K < W ? K : W;
  const char *bottom = lp->bottom[0];
  int bi = find_layout(r, bottom);
  const int from = bi >= 0 && r->lay[bi].m == 0 ? r->lay[bi].worker : 0;
  CT_TRY(ensure_whole(r, bottom, from, err));
  char *copies[CT_PART_MAX_WORKERS] = {0};
  ct_status st = CT_OK;
  for (int k = 0; k < m && !st; k++)
    if (!(copies[k] = fmt_name(bottom, "@to", k))) st = ct_fail(err, CT_ENOMEM, "out of memory");
  if (!st && m > 1) {
    char *sname = fmt_name(bottom, "@bcast", -1);
    st = sname ? emit(r, connection(sname, "Split", (char **)&bottom, 1, copies, m), NULL, from, hidden(), err)
               : ct_fail(err, CT_ENOMEM, "out of memory");
    free(sname);
  }
  const int lead = r->out->n;
  for (int k = 0, row0 = 0; k < m && !st; k++) {
    const int rows = K / m + (k < K % m ? 1 : 0);
    Caffe__LayerParameter *sub = (Caffe__LayerParameter *)ct_proto_copy(&lp->base);
    if (!sub) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      break;
    }
    char *nm = fmt_name(lp->name ? lp->name : "", "@", k), *tp = fmt_name(lp->top[0], "@", k);
    char *bt = m > 1 ? strdup(copies[k]) : strdup(bottom);
    if (!nm || !tp || !bt) {
      free(nm), free(tp), free(bt);
      protobuf_c_message_free_unpacked(&sub->base, NULL);
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      break;
    }
    free(sub->name), sub->name = nm;
    free(sub->top[0]), sub->top[0] = tp;
    free(sub->bottom[0]), sub->bottom[0] = bt;
    set_outputs(sub, rows);
    part_entry e = {.shard = k, .lead = lead, .row0 = row0, .rows = rows, .whole_rows = K, .hidden = k > 0,
                    .parallel = m > 1, .seed_index = -1};
    if (k == 0 && !(e.origin = (Caffe__LayerParameter *)ct_proto_copy(&lp->base))) {
      protobuf_c_message_free_unpacked(&sub->base, NULL);
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      break;
    }
    if ((st = emit(r, sub, src, k, e, err)) && e.origin) protobuf_c_message_free_unpacked(&e.origin->base, NULL);
    row0 += rows;
  }
  for (int k = 0; k < m; k++) free(copies[k]);
  if (!st) st = set_layout(r, lp->top[0], m, 0, err);
  if (!st) r->lay[find_layout(r, lp->top[0])].K = K;
  return st;
}

/* An element-wise layer on dim 1 over sharded bottom: one copy per shard, on its worker. */
static ct_status follow_shards(rewrite *r, Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, int m,
                               ct_error *err) {
  const bool in_place = !strcmp(lp->top[0], lp->bottom[0]);
  const int bi = find_layout(r, lp->bottom[0]), K = r->lay[bi].K;
  r->lay[bi].consumed = true;
  for (int k = 0, row0 = 0; k < m; k++) {
    Caffe__LayerParameter *sub = (Caffe__LayerParameter *)ct_proto_copy(&lp->base);
    if (!sub) return ct_fail(err, CT_ENOMEM, "out of memory");
    char *nm = fmt_name(lp->name ? lp->name : "", "@", k), *bt = fmt_name(lp->bottom[0], "@", k);
    char *tp = fmt_name(lp->top[0], "@", k);
    if (!nm || !bt || !tp) {
      free(nm), free(bt), free(tp);
      protobuf_c_message_free_unpacked(&sub->base, NULL);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    free(sub->name), sub->name = nm;
    free(sub->bottom[0]), sub->bottom[0] = bt;
    free(sub->top[0]), sub->top[0] = tp;
    /* weights files list the layer once, as written, under its shard 0 */
    part_entry e = hidden();
    e.parallel = m > 1;
    /* the shards' channels, as split_neurons cut them; every shard draws from the stream the
     * unpartitioned layer has (Dropout's masks are then the unpartitioned net's) */
    e.rows = K / m + (k < K % m ? 1 : 0);
    e.row0 = row0;
    e.whole_rows = K;
    e.seed_index = r->cur;
    row0 += e.rows;
    if (k == 0) {
      e.hidden = false;
      if (!(e.origin = (Caffe__LayerParameter *)ct_proto_copy(&lp->base))) {
        protobuf_c_message_free_unpacked(&sub->base, NULL);
        return ct_fail(err, CT_ENOMEM, "out of memory");
      }
    }
    ct_status st = emit(r, sub, src, k, e, err);
    if (st) {
      if (e.origin) protobuf_c_message_free_unpacked(&e.origin->base, NULL);
      return st;
    }
  }
  (void)in_place; /* in place or not, the top is a new version made of the same shards */
  CT_TRY(set_layout(r, lp->top[0], m, 0, err));
  r->lay[find_layout(r, lp->top[0])].K = K;
  return CT_OK;
}

static int layer_dim(const rewrite *r, const Caffe__LayerParameter *lp) {
  if (lp->has_partition_dim && lp->partition_dim != -1) return lp->partition_dim;
  if (lp->has_location && lp->location != -1) return -1;
  if (r->param->partition_dim != 1 || !lp->type) return -1;
  /* the net's default applies to the layers that can take it */
  if (is_neuron_layer(lp->type)) return neuron_refusal(lp) ? -1 : 1;
  return is_eltwise(lp->type) ? 1 : -1;
}

static ct_status rewrite_layer(rewrite *r, Caffe__LayerParameter *lp, const Caffe__LayerParameter *src,
                               const ct_srcmap *map, const char *source, ct_error *err) {
  const int dim = layer_dim(r, lp);
  if (dim == 1 && is_neuron_layer(lp->type)) {
    ct_status st = split_neurons(r, lp, src, err);
    protobuf_c_message_free_unpacked(&lp->base, NULL);
    return st;
  }
  if (dim == 1) { /* element-wise */
    int bi = lp->n_bottom == 1 && lp->n_top == 1 ? find_layout(r, lp->bottom[0]) : -1;
    if (bi < 0 || r->lay[bi].m == 0) {
      if (lp->has_partition_dim && lp->partition_dim == 1) {
        ct_status st = layer_fail(lp, src, map, source, "partition_dim", err,
                                  "partition_dim: 1 on an element-wise layer follows the shards of its bottom, but "
                                  "\"%s\" is not split on dim 1 (put partition_dim: 1 on the InnerProduct or "
                                  "Convolution that makes it)",
                                  lp->n_bottom ? lp->bottom[0] : "");
        protobuf_c_message_free_unpacked(&lp->base, NULL);
        return st;
      }
    } else {
      ct_status st = follow_shards(r, lp, src, r->lay[bi].m, err);
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      return st;
    }
  }
  const int worker = lp->has_location && lp->location >= 0 ? lp->location : 0;
  part_entry e = plain();
  e.pinned = lp->has_location && lp->location >= 0;
  for (size_t b = 0; b < lp->n_bottom; b++) {
    ct_status st = ensure_whole(r, lp->bottom[b], worker, err);
    if (st) {
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      return st;
    }
  }
  for (size_t t = 0; t < lp->n_top; t++) {
    ct_status st = set_layout(r, lp->top[t], 0, worker, err);
    if (st) {
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      return st;
    }
  }
  return emit(r, lp, src, worker, e, err);
}

void ct_partition_free(ct_partition *p) {
  if (!p) return;
  for (int i = 0; i < p->n; i++) {
    if (p->v[i].origin) protobuf_c_message_free_unpacked(&p->v[i].origin->base, NULL);
    for (int j = 0; j < p->v[i].nwhole; j++) ct_tensor_free(p->v[i].whole[j]);
  }
  free(p->v);
  free(p);
}

ct_status ct_net_partition(const Caffe__NetParameter *param, const ct_srcmap *map, const char *source,
                           ct_spec_list *list, ct_partition **out, ct_error *err) {
  *out = NULL;
  CT_TRY(ct_net_partition_check(param, list, map, source, err));
  if (param->partition_workers <= 1) return CT_OK; /* one worker: every layer is whole on it */
  ct_spec_list in = *list, res = {0};
  *list = (ct_spec_list){0};
  rewrite r = {.param = param, .out = &res};
  ct_status st = CT_OK;
  if (!(r.part = calloc(1, sizeof *r.part))) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  r.part->workers = param->partition_workers;
  if ((st = ct_strmap_create((size_t)in.n * 2 + 8, &r.index, err))) goto done;
  for (int i = 0; i < in.n; i++) {
    Caffe__LayerParameter *lp = in.v[i];
    in.v[i] = NULL; /* rewrite_layer owns it from here */
    r.cur = i;
    if ((st = rewrite_layer(&r, lp, in.src[i], map, source, err))) goto done;
  }
  /* sharded blobs nobody read are outputs of the net: join them under their names */
  for (int i = 0; i < r.nlay && !st; i++)
    if (r.lay[i].m && !r.lay[i].consumed) st = ensure_whole(&r, r.lay[i].name, 0, err);
done:
  ct_strmap_free(r.index);
  for (int i = 0; i < r.nlay; i++) free(r.lay[i].name);
  free(r.lay);
  ct_spec_list_free(&in);
  if (st) {
    ct_spec_list_free(&res);
    ct_partition_free(r.part);
    return st;
  }
  *list = res;
  *out = r.part;
  return CT_OK;
}

/* ------------------------------------------------------------------ the built net */

int ct_partition_shard(const ct_partition *p, int i) { return p && i < p->n ? p->v[i].shard : -1; }
bool ct_partition_hidden(const ct_partition *p, int i) { return p && i < p->n && p->v[i].hidden; }
bool ct_partition_parallel(const ct_partition *p, int i) { return p && i < p->n && p->v[i].parallel; }
bool ct_partition_pinned(const ct_partition *p, int i) { return p && i < p->n && p->v[i].pinned; }
int ct_partition_seed_index(const ct_partition *p, int i) {
  return p && i < p->n && p->v[i].seed_index >= 0 ? p->v[i].seed_index : i;
}
bool ct_partition_channels(const ct_partition *p, int i, int *c0, int *cn, int *whole) {
  if (!p || i >= p->n || p->v[i].seed_index < 0 || p->v[i].whole_rows <= 0) return false;
  *c0 = p->v[i].row0, *cn = p->v[i].rows, *whole = p->v[i].whole_rows;
  return true;
}
const Caffe__LayerParameter *ct_partition_origin(const ct_partition *p, int i) {
  return p && i < p->n ? p->v[i].origin : NULL;
}
ct_tensor *const *ct_partition_whole_blobs(const ct_partition *p, int i) {
  return p && i < p->n ? p->v[i].whole : NULL;
}

int ct_partition_find(const ct_net *net, const char *name) {
  const ct_partition *p = net->part;
  for (int i = 0; p && i < p->n; i++)
    if (p->v[i].origin && p->v[i].origin->name && !strcmp(p->v[i].origin->name, name)) return i;
  return -1;
}

ct_status ct_partition_whole(ct_partition *p, int i, int j, const ct_tensor *shard, const ct_tensor **whole,
                             ct_error *err) {
  part_entry *e = &p->v[i];
  if (j >= CT_PART_MAX_BLOBS)
    return ct_fail(err, CT_EINTERNAL, "a split layer has more than %d parameter blobs", CT_PART_MAX_BLOBS);
  int shape[CT_MAX_AXES];
  memcpy(shape, shard->shape, sizeof shape);
  if (shard->naxes < 1 || shape[0] != e->rows)
    return ct_fail(err, CT_EINTERNAL, "shard parameter %d has %d rows, expected %d", j,
                   shard->naxes ? shape[0] : 0, e->rows);
  shape[0] = e->whole_rows;
  ct_tensor *t = ct_tensor_create();
  if (!t) return ct_fail(err, CT_ENOMEM, "out of memory");
  ct_status st = ct_tensor_reshape(t, shard->naxes, shape, err);
  if (st) {
    ct_tensor_free(t);
    return st;
  }
  e->whole[j] = t;
  if (j >= e->nwhole) e->nwhole = j + 1;
  *whole = t;
  return CT_OK;
}

ct_status ct_partition_view_shards(ct_net *net, ct_error *err) {
  const ct_partition *p = net->part;
  for (int i = 0; p && i < net->nlayers; i++) {
    const part_entry *e = &p->v[i];
    if (e->shard < 0) continue;
    const part_entry *lead = &p->v[e->lead];
    ct_layer *l = &net->layers[i].l;
    for (int j = 0; j < l->nblobs; j++) {
      int u = -1;
      for (int k = 0; k < net->nlearn && u < 0; k++)
        if (j < lead->nwhole && net->learn_tensor[k] == lead->whole[j]) u = k;
      if (u < 0) return ct_fail(err, CT_EINTERNAL, "layer \"%s\": no whole parameter for blob %d", l->name, j);
      const size_t inner = l->blobs[j]->count / (size_t)e->rows;
      const size_t off = net->learn[u].offset + (size_t)e->row0 * inner;
      const float *v;
      float *flat;
      CT_TRY(ct_tensor_host(l->blobs[j], CT_DATA, CT_READ, (float **)&v, err));
      CT_TRY(ct_tensor_host(net->params, CT_DATA, CT_WRITE, &flat, err));
      memcpy(flat + off, v, l->blobs[j]->count * sizeof(float));
      ct_tensor_view(l->blobs[j], CT_DATA, net->params->st[CT_DATA], off);
      ct_tensor_view(l->blobs[j], CT_DIFF, net->params->st[CT_DIFF], off);
    }
  }
  return CT_OK;
}

int ct_net_partition_workers(const ct_net *net) { return net->part ? net->part->workers : 1; }

int ct_net_layer_worker(const ct_net *net, int i) {
  if (!net->part || i < 0 || i >= net->nlayers) return 0;
  const Caffe__LayerParameter *lp = net->layers[i].lp;
  return lp->has_location && lp->location > 0 ? lp->location : 0;
}

/* Every bottom read on another worker than the one that wrote it crosses a bridge: its data
 * forward, and its gradient back when the reader propagates down. */
void ct_net_partition_bytes(const ct_net *net, unsigned long long *fwd, unsigned long long *bwd) {
  *fwd = *bwd = 0;
  if (!net->part) return;
  for (int i = 0; i < net->nlayers; i++) {
    const net_layer *nl = &net->layers[i];
    const int w = ct_net_layer_worker(net, i);
    for (int b = 0; b < nl->l.nbottom; b++) {
      int from = -1;
      for (int j = i - 1; j >= 0 && from < 0; j--)
        for (int t = 0; t < net->layers[j].l.ntop; t++)
          if (net->layers[j].top_ids[t] == nl->bottom_ids[b]) from = j;
      if (from < 0 || ct_net_layer_worker(net, from) == w) continue;
      const unsigned long long bytes = (unsigned long long)nl->l.bottom[b]->count * sizeof(float);
      *fwd += bytes;
      if (nl->l.propagate_down[b]) *bwd += bytes;
    }
  }
}

void ct_net_partition_param_bytes(const ct_net *net, unsigned long long *replicated, unsigned long long *sharded) {
  *replicated = *sharded = 0;
  for (int i = 0; i < net->nlayers; i++) {
    const ct_layer *l = &net->layers[i].l;
    const bool shard = ct_partition_shard(net->part, i) >= 0;
    for (int j = 0; j < l->nblobs; j++)
      if (l->param_propagate_down[j]) *(shard ? sharded : replicated) += l->blobs[j]->count * sizeof(float);
  }
}

int ct_net_layer_param_ranges(const ct_net *net, int i, size_t *off, size_t *count, int max) {
  if (i < 0 || i >= net->nlayers || !net->params) return 0;
  const ct_layer *l = &net->layers[i].l;
  int n = 0;
  for (int j = 0; j < l->nblobs; j++) {
    const ct_tensor *t = l->blobs[j];
    if (t->st[CT_DATA] != net->params->st[CT_DATA]) continue; /* not learnable: no range */
    if (n < max) off[n] = t->off[CT_DATA], count[n] = t->count;
    n++;
  }
  return n;
}
