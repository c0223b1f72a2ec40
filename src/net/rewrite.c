/* Rewrites of the layer list before any layer is built: Caffe's NetState filter (phase, level,
 * stages) and Split insertion. (The deprecated net-level inputs became an Input layer in
 * proto/upgrade.c.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "net/net_impl.h"
#include "proto/blob.h"

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

ct_status ct_spec_push(ct_spec_list *s, Caffe__LayerParameter *lp, const Caffe__LayerParameter *src,
                           ct_error *err) {
  if (!lp) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    Caffe__LayerParameter **v = realloc(s->v, (size_t)cap * sizeof *v);
    const Caffe__LayerParameter **o = v ? realloc(s->src, (size_t)cap * sizeof *o) : NULL;
    if (v) s->v = v;
    if (!v || !o) {
      protobuf_c_message_free_unpacked(&lp->base, NULL);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    s->src = o;
    s->cap = cap;
  }
  s->src[s->n] = src;
  s->v[s->n++] = lp;
  return CT_OK;
}

void ct_spec_list_free(ct_spec_list *s) {
  for (int i = 0; i < s->n; i++)
    if (s->v[i]) protobuf_c_message_free_unpacked(&s->v[i]->base, NULL);
  free(s->v);
  free(s->src);
  s->v = NULL;
  s->src = NULL;
  s->n = s->cap = 0;
}

static char **str_array(size_t n) { return calloc(n ? n : 1, sizeof(char *)); }

/* Inserts Split layers so that every blob version has at most one consumer (Caffe's
 * InsertSplits, with its naming: <blob>_<layer>_<top>_split_<k>). */
ct_status ct_net_insert_splits(ct_spec_list *in, ct_spec_list *out, ct_error *err) {
  int n = in->n;
  /* for every layer/top: the number of consumers; for every layer/bottom: its producer */
  int **consumers = calloc((size_t)n, sizeof *consumers);
  int **src_layer = calloc((size_t)n, sizeof *src_layer);
  int **src_top = calloc((size_t)n, sizeof *src_top);
  int **next_use = calloc((size_t)n, sizeof *next_use);
  int moved = 0;
  ct_strmap *latest = NULL; /* top name -> the latest layer so far producing it */
  ct_status st = CT_OK;
  if (!consumers || !src_layer || !src_top || !next_use) goto oom;
  if ((st = ct_strmap_create((size_t)n, &latest, err))) goto done;
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
      int j = ct_strmap_get(latest, lp->bottom[b]);
      for (size_t t = 0; j >= 0 && t < in->v[j]->n_top; t++)
        if (!strcmp(in->v[j]->top[t], lp->bottom[b])) {
          src_layer[i][b] = j;
          src_top[i][b] = (int)t;
        }
      if (src_layer[i][b] >= 0) consumers[src_layer[i][b]][src_top[i][b]]++;
    }
    for (size_t t = 0; t < lp->n_top; t++)
      if ((st = ct_strmap_put(latest, lp->top[t], i, err))) goto done;
  }
  for (int i = 0; i < n; i++) {
    Caffe__LayerParameter *lp = in->v[i];
    for (size_t b = 0; b < lp->n_bottom; b++) {
      int j = src_layer[i][b], t = src_top[i][b];
      if (j < 0 || consumers[j][t] < 2) continue;
      char name[1024];
      snprintf(name, sizeof name, "%s_%s_%d_split_%d", lp->bottom[b], in->v[j]->name ? in->v[j]->name : "", t,
               next_use[j][t]++);
      char *s = strdup(name);
      if (!s) goto oom;
      free(lp->bottom[b]);
      lp->bottom[b] = s;
    }
    /* ownership moves to out; in->v keeps the pointer (names of producers are read later)
     * until the end, when in gives up all of them */
    st = ct_spec_push(out, lp, in->src[i], err);
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
      sp->name = strdup(name);
      sp->type = strdup("Split");
      sp->bottom = str_array(1);
      sp->top = str_array((size_t)k);
      if (sp->bottom) sp->bottom[sp->n_bottom++] = strdup(lp->top[t]);
      for (int c = 0; sp->top && c < k; c++) {
        snprintf(name, sizeof name, "%s_%s_%d_split_%d", lp->top[t], lp->name ? lp->name : "", (int)t, c);
        sp->top[sp->n_top++] = strdup(name);
      }
      if ((st = ct_spec_push(out, sp, NULL, err))) goto done;
      if (!sp->name || !sp->type || !sp->bottom || !sp->top) goto oom;
    }
  }
  goto done;
oom:
  st = ct_fail(err, CT_ENOMEM, "out of memory");
done:
  ct_strmap_free(latest);
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

ct_status ct_net_filter(const Caffe__NetParameter *param, const char *source, ct_phase phase, int level,
                        const char *const *stages, ct_spec_list *out, ct_error *err) {
  for (size_t i = 0; i < param->n_layer; i++) {
    const Caffe__LayerParameter *lp = param->layer[i];
    bool inc = false;
    CT_TRY(layer_included(lp, source, phase, level, stages, &inc, err));
    if (inc) CT_TRY(ct_spec_push(out, (Caffe__LayerParameter *)ct_proto_copy(&lp->base), lp, err));
  }
  return CT_OK;
}
