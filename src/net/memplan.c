/* Memory planning: after the net is built and before its first pass, blobs whose values (or
 * gradients) are never needed at the same time get one storage.
 *
 * The unit planned is a storage, not a blob: tensors that already share one (a Split's tops and
 * its bottom's data, Flatten, Reshape, a one-bottom Concat) move together, and their lifetime is
 * the union of theirs. Time runs over the layers' forward passes, then their backward passes in
 * reverse order; a storage is live from the first pass that touches it to the last:
 *  - data: every forward that reads or writes it, and the backward of every layer that touches
 *    it, runs backward and may read it there (backward_reads: the types known to read less);
 *  - diff (only when the net runs backward): written by the backward of the layers that
 *    propagate down into it, read by the backward of the layers that have it as a top. A diff
 *    that is read before anything writes it in a pass (Caffe leaves it zero) keeps its own.
 * Storages are then packed greedily, largest first, into buffers whose earlier users' lifetimes
 * do not meet theirs.
 *
 * Before that, Concat's bottoms move into their runs of the Concat top (both sides), so their
 * producers write the top directly and Concat copies nothing; this is done only where a run is
 * contiguous (joined along the first axis, or every axis before the joined one has size 1:
 * NCHW with N > 1 and axis 1 would need strided tensors).
 *
 * Layers' saved tensors (layer.h: written in forward, read by the layer's own backward) are
 * planned with the blobs, live from the layer's forward to its backward (to its forward alone in
 * a net that runs forward only).
 *
 * Never planned (their values stay readable after a pass): the net's outputs, tops with a loss
 * weight, tops of layers without bottoms (data, Input: the caller fills them), automatic loss
 * tops, blobs the caller asked to keep (ct_net_keep_blob), parameters (not blobs), and any
 * storage that something outside the net's blobs holds a reference to.
 *
 * A net that runs forward only (no layer needs backward, or ct_net_set_forward_only) plans data
 * lifetimes over the forward passes alone and never allocates a diff; ct_net_backward on it is
 * an error. CT_MEMPLAN=0 in the environment (or ct_net_set_memplan) turns planning off. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "layers/concat.h"
#include "net/net_impl.h"

/* One storage and the blobs (tensor sides) that view it. */
typedef struct group {
  ct_storage *st;
  size_t need;        /* elements: max over members of offset + count */
  int first, last;    /* lifetime in half-steps, first > last when untouched */
  int first_write, first_read;
  bool keep;          /* excluded from sharing */
  int buffer;         /* the planned buffer (-1: none) */
} group;

typedef struct span {
  int first, last;
} span;

typedef struct buffer {
  size_t need;
  int n, cap;
  span *used;
} buffer;

bool ct_memplan_env_on(void) {
  const char *e = getenv("CT_MEMPLAN");
  return !(e && (!strcmp(e, "0") || !strcmp(e, "off") || !strcmp(e, "no")));
}

/* The bytes of workspace under which every conv layer keeps its own (CT_WORKSPACE_KEEP_MB,
 * default 1024): its forward lowering is then still there for its backward. Above it the layers
 * share one workspace per partition and lower again in backward. */
static ct_status keep_budget(size_t *bytes, ct_error *err) {
  const char *e = getenv("CT_WORKSPACE_KEEP_MB");
  *bytes = (size_t)1024 << 20;
  if (!e || !*e) return CT_OK;
  char *end;
  const double mb = strtod(e, &end);
  if (*end || !(mb >= 0) || mb > 1e9)
    return ct_fail(err, CT_EINVAL, "CT_WORKSPACE_KEEP_MB=%s: expected a number of megabytes (0 or more)", e);
  *bytes = (size_t)(mb * 1048576.0);
  return CT_OK;
}

static bool runs_backward(const ct_net *net) {
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].need_backward) return true;
  return false;
}

/* Blobs whose values someone outside the passes reads. */
static void mark_kept(const ct_net *net, bool *keep) {
  for (int o = 0; o < net->noutputs; o++) keep[net->outputs[o]] = true;
  for (int i = 0; i < net->nlayers; i++) {
    const net_layer *nl = &net->layers[i];
    for (int t = 0; t < nl->l.ntop; t++)
      if (nl->loss_weight[t] != 0 || nl->l.nbottom == 0 || t >= nl->l.ntop - nl->auto_tops)
        keep[nl->top_ids[t]] = true;
  }
  for (int k = 0; k < net->mp.nkeep; k++) {
    int b = ct_net_find_blob(net, net->mp.keep[k]);
    if (b >= 0) keep[b] = true;
  }
}

/* The storages behind one side of the blobs, each with its members' extent. Groups are found by
 * storage through an open-addressing table of group indices (slots: a power of two, at least twice
 * the groups; -1 empty): a scan of the groups per tensor made a 100k-layer net's plan quadratic. */
static size_t slot_of(const ct_storage *st, size_t mask) {
  uint64_t h = (uint64_t)(uintptr_t)st * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 20) & mask;
}

/* The tensors planned: the blobs, then the layers' saved tensors (layer.h), with their layer. */
typedef struct tensors {
  int n, nblobs;
  ct_tensor **t;
  int *layer; /* per saved tensor (index - nblobs): its layer */
} tensors;

static ct_status list_tensors(const ct_net *net, tensors *ts, ct_error *err) {
  int n = net->nblobs;
  for (int i = 0; i < net->nlayers; i++) n += net->layers[i].l.nsaved;
  ts->t = calloc((size_t)n + 1, sizeof *ts->t);
  ts->layer = calloc((size_t)n + 1, sizeof *ts->layer);
  if (!ts->t || !ts->layer) return ct_fail(err, CT_ENOMEM, "out of memory");
  ts->nblobs = net->nblobs;
  for (int b = 0; b < net->nblobs; b++) ts->t[b] = net->blobs[b];
  ts->n = net->nblobs;
  for (int i = 0; i < net->nlayers; i++)
    for (int k = 0; k < net->layers[i].l.nsaved; k++) {
      ts->layer[ts->n - ts->nblobs] = i;
      ts->t[ts->n++] = net->layers[i].l.saved[k];
    }
  return CT_OK;
}

static ct_status collect(const tensors *ts, ct_side side, const bool *keep, group **out, int **of_blob, int *ngroups,
                         ct_error *err) {
  group *g = calloc((size_t)ts->n + 1, sizeof *g);
  int *gb = calloc((size_t)ts->n + 1, sizeof *gb);
  int *refs = calloc((size_t)ts->n + 1, sizeof *refs);
  size_t mask = 15;
  while (mask + 1 < 2 * ((size_t)ts->n + 1)) mask = 2 * mask + 1;
  int *table = malloc((mask + 1) * sizeof *table);
  if (!g || !gb || !refs || !table) {
    free(g);
    free(gb);
    free(refs);
    free(table);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  memset(table, 0xff, (mask + 1) * sizeof *table);
  int n = 0;
  for (int b = 0; b < ts->n; b++) {
    const ct_tensor *t = ts->t[b];
    gb[b] = -1;
    if (!t->st[side]) continue;
    size_t at = slot_of(t->st[side], mask);
    while (table[at] >= 0 && g[table[at]].st != t->st[side]) at = (at + 1) & mask;
    int k = table[at];
    if (k < 0) {
      k = table[at] = n++;
      g[k] = (group){.st = t->st[side], .first = 1 << 30, .last = -1, .first_write = 1 << 30,
                     .first_read = 1 << 30, .buffer = -1};
    }
    gb[b] = k;
    refs[k]++;
    if (t->off[side] + t->count > g[k].need) g[k].need = t->off[side] + t->count;
    g[k].keep |= b < ts->nblobs && keep[b];
  }
  for (int k = 0; k < n; k++) /* held by something besides these tensors: leave it alone */
    if (ct_storage_refs(g[k].st) != refs[k]) g[k].keep = true;
  free(refs);
  free(table);
  *out = g;
  *of_blob = gb;
  *ngroups = n;
  return CT_OK;
}

/* Half-step times: forward of layer i at 2i, backward at 2(2L - 1 - i); +1 for a write that may
 * take the storage of what the layer read just before (Split's sum). */
static int fwd_time(int i) { return 2 * i; }
static int bwd_time(const ct_net *net, int i) { return 2 * (2 * net->nlayers - 1 - i); }

/* Which data a layer's backward reads: bit 0 its bottoms', bit 1 its tops'. Every type not
 * listed here reads both (safe). A layer listed here whose backward comes to read more must
 * leave this table (test_memplan holds these types to the unplanned net bit for bit). */
static unsigned backward_reads(const ct_layer *l) {
  const char *t = l->ops->type;
  if (!strcmp(t, "Split") || !strcmp(t, "Concat") || !strcmp(t, "Flatten") || !strcmp(t, "Reshape") ||
      !strcmp(t, "BatchNorm")) /* BatchNorm reads its saved normalised input */
    return 0;
  if (!strcmp(t, "Eltwise")) /* SUM reads coefficients only, MAX its saved winners, PROD x and y */
    return l->lp->eltwise_param && l->lp->eltwise_param->has_operation &&
                   l->lp->eltwise_param->operation == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD
               ? 3
               : 0;
  if (!strcmp(t, "Scale")) /* x for the scale's gradient: in place, from its own saved copy */
    return l->nbottom == 1 && l->top[0] == l->bottom[0] ? 0 : 1;
  if (!strcmp(t, "Convolution") || !strcmp(t, "InnerProduct")) return 1;
  return 3;
}

static void touch(group *g, int t) {
  if (t < g->first) g->first = t;
  if (t > g->last) g->last = t;
}

static void lifetimes(const ct_net *net, const tensors *ts, ct_side side, bool fwd_only, group *g, const int *gb) {
  for (int q = ts->nblobs; q < ts->n && side == CT_DATA; q++) { /* saved: the layer's forward to its backward */
    const int i = ts->layer[q - ts->nblobs];
    if (gb[q] < 0) continue;
    touch(&g[gb[q]], fwd_time(i));
    if (net->layers[i].need_backward && !fwd_only) touch(&g[gb[q]], bwd_time(net, i));
  }
  for (int i = 0; i < net->nlayers; i++) {
    const net_layer *nl = &net->layers[i];
    const ct_layer *l = &nl->l;
    const bool bw = nl->need_backward && !fwd_only;
    const bool split = !strcmp(l->ops->type, "Split");
    if (side == CT_DATA) {
      /* a fused chain that recomputes its normalised input reads its bottom or its top (fuse.c) */
      const unsigned reads = bw ? backward_reads(l) | (ct_net_fuse_reads_input(net, i) ? 1u : 0u) |
                                      (ct_net_fuse_reads_output(net, i) ? 2u : 0u)
                                : 0;
      for (int b = 0; b < l->nbottom; b++) {
        group *x = &g[gb[nl->bottom_ids[b]]];
        touch(x, fwd_time(i));
        if (reads & 1u) touch(x, bwd_time(net, i));
      }
      for (int t = 0; t < l->ntop; t++) {
        group *y = &g[gb[nl->top_ids[t]]];
        touch(y, fwd_time(i));
        if (reads & 2u) touch(y, bwd_time(net, i));
      }
      continue;
    }
    if (!bw) continue;
    const int tb = bwd_time(net, i);
    for (int t = 0; t < l->ntop; t++) {
      int k = gb[nl->top_ids[t]];
      if (k < 0) continue;
      /* Split reads top 0 before it writes its bottom; the other tops while it writes */
      touch(&g[k], split && t == 0 ? tb : tb + 1);
      if (tb < g[k].first_read) g[k].first_read = tb;
    }
    for (int b = 0; b < l->nbottom; b++) {
      int k = gb[nl->bottom_ids[b]];
      if (k < 0 || !l->propagate_down[b]) continue;
      bool also_top = false; /* in place: read as a top, then written */
      for (int t = 0; t < l->ntop; t++) also_top |= nl->top_ids[t] == nl->bottom_ids[b];
      touch(&g[k], split ? tb + 1 : tb);
      const int w = also_top ? tb + 1 : tb;
      if (w < g[k].first_write) g[k].first_write = w;
    }
  }
}

/* Concat: moves bottom k's storage group into its run of the top on one side, when that is
 * safe. `keep` is per blob. */
static void concat_in_place(ct_net *net, ct_side side, bool fwd_only, const bool *keep) {
  for (int i = net->nlayers - 1; i >= 0; i--) { /* outer first: an inner Concat's top moves first */
    net_layer *nl = &net->layers[i];
    ct_layer *l = &nl->l;
    if (strcmp(l->ops->type, "Concat") || l->nbottom < 2) continue;
    if (net->blob_producer[nl->top_ids[0]] != i) continue; /* written again in place after Concat */
    ct_tensor *top = l->top[0];
    if (!top->st[side]) continue;
    if (side == CT_DIFF && (fwd_only || !nl->need_backward)) continue;
    for (int k = 0; k < l->nbottom; k++) {
      size_t off;
      const int bid = nl->bottom_ids[k];
      ct_tensor *b = l->bottom[k];
      if (!ct_concat_region(l, k, &off) || keep[bid] || !b->st[side] || b->st[side] == top->st[side]) continue;
      if (side == CT_DIFF && !l->propagate_down[k]) continue; /* Caffe leaves that diff alone */
      /* every blob that views b's storage moves along: all of them at offset 0, nothing else
       * holding it, none kept */
      ct_storage *st = b->st[side];
      int members = 0;
      bool ok = true;
      for (int j = 0; j < net->nblobs && ok; j++)
        if (net->blobs[j]->st[side] == st) {
          members++;
          ok = !keep[j] && net->blobs[j]->off[side] == 0 && net->blobs[j]->count <= b->count;
        }
      if (!ok || members != ct_storage_refs(st)) continue;
      ct_storage_retain(st); /* while its members leave it */
      for (int j = 0; j < net->nblobs; j++)
        if (net->blobs[j]->st[side] == st)
          ct_tensor_view(net->blobs[j], side, top->st[side], top->off[side] + off);
      ct_storage_release(st);
    }
  }
}

/* A buffer's spans are disjoint (a group joins a buffer only where it fits) and kept sorted by
 * first, hence by last too: a fit is one binary search, not a scan (a scan made planning a
 * 100k-layer chain quadratic, issue 23). The index of the last span starting at or before t, or
 * -1. */
static int span_at_or_before(const buffer *bf, int t) {
  int lo = 0, hi = bf->n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (bf->used[mid].first <= t)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

static ct_status add_span(buffer *bf, int first, int last, ct_error *err) {
  if (bf->n == bf->cap) {
    int cap = bf->cap ? 2 * bf->cap : 8;
    span *u = realloc(bf->used, (size_t)cap * sizeof *u);
    if (!u) return ct_fail(err, CT_ENOMEM, "out of memory");
    bf->used = u;
    bf->cap = cap;
  }
  int at = span_at_or_before(bf, first) + 1;
  memmove(bf->used + at + 1, bf->used + at, (size_t)(bf->n - at) * sizeof *bf->used);
  bf->used[at] = (span){first, last};
  bf->n++;
  return CT_OK;
}

/* g (touched: first <= last) overlaps a span only if it overlaps the last one starting at or
 * before its end. */
static bool fits(const buffer *bf, const group *g) {
  int s = span_at_or_before(bf, g->last);
  return s < 0 || bf->used[s].last < g->first;
}

/* Sort keys (no global for qsort: nets on several threads plan at once). */
typedef struct by_need {
  size_t need;
  int k;
} by_need;
static int by_size(const void *a, const void *b) {
  const by_need *x = a, *y = b;
  if (x->need != y->need) return x->need < y->need ? 1 : -1;
  return x->k - y->k; /* stable: the same plan every run */
}

/* Plans one side (apply) or measures what it holds unplanned (!apply), for the net's report. */
static ct_status plan_side(ct_net *net, ct_side side, bool fwd_only, const bool *keep, bool apply, ct_error *err) {
  size_t held = 0;
  group *g = NULL;
  int *gb = NULL, n = 0, *order = NULL, nbuf = 0;
  buffer *bufs = NULL;
  ct_storage **stor = NULL;
  tensors ts = {0};
  ct_status st = list_tensors(net, &ts, err);
  if (!st) st = collect(&ts, side, keep, &g, &gb, &n, err);
  if (st) goto done;
  lifetimes(net, &ts, side, fwd_only, g, gb);
  order = calloc((size_t)n + 1, sizeof *order);
  bufs = calloc((size_t)n + 1, sizeof *bufs);
  if (!order || !bufs) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  int m = 0;
  for (int k = 0; k < n; k++) {
    const bool touched = g[k].first <= g[k].last;
    if (side == CT_DIFF && g[k].first_read < g[k].first_write) g[k].keep = true; /* read before written */
    if (touched && !g[k].keep) order[m++] = k;
    if (touched || g[k].keep) held += ct_storage_size(g[k].st) * sizeof(float);
    if (g[k].keep && apply) net->mp.planned[side] += ct_storage_size(g[k].st) * sizeof(float);
  }
  if (!apply) { /* what the net holds as it is: every storage a pass touches, and the kept ones */
    net->mp.unplanned[side] = held;
    goto done;
  }
  by_need *keys = calloc((size_t)m + 1, sizeof *keys);
  if (!keys) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  for (int q = 0; q < m; q++) keys[q] = (by_need){g[order[q]].need, order[q]};
  qsort(keys, (size_t)m, sizeof *keys, by_size);
  for (int q = 0; q < m; q++) order[q] = keys[q].k;
  free(keys);
  for (int q = 0; q < m; q++) {
    group *x = &g[order[q]];
    int best = -1;
    for (int b = 0; b < nbuf; b++) /* the smallest buffer that is free then and big enough */
      if (fits(&bufs[b], x) && (best < 0 || (bufs[b].need >= x->need &&
                                             (bufs[best].need < x->need || bufs[b].need < bufs[best].need))))
        best = b;
    if (best < 0) best = nbuf++;
    if ((st = add_span(&bufs[best], x->first, x->last, err))) goto done;
    if (x->need > bufs[best].need) bufs[best].need = x->need;
    x->buffer = best;
  }
  /* one storage per buffer, then one walk over the tensors (a walk per buffer over every group
   * and tensor was quadratic: minutes for a 100k-layer chain, issue 23) */
  stor = calloc((size_t)nbuf + 1, sizeof *stor);
  if (!stor) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  for (int b = 0; b < nbuf; b++) {
    if (!(stor[b] = ct_storage_create())) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    if ((st = ct_storage_reserve(stor[b], bufs[b].need, err))) goto done;
    net->mp.planned[side] += bufs[b].need * sizeof(float);
  }
  for (int j = 0; j < ts.n; j++)
    if (gb[j] >= 0 && g[gb[j]].buffer >= 0) ct_tensor_view(ts.t[j], side, stor[g[gb[j]].buffer], ts.t[j]->off[side]);
  net->mp.buffers[side] = nbuf;
  net->mp.shared[side] = m;
  { /* the blobs whose data or diff is shared: nobody reads it after its last use */
    bool *planned = calloc((size_t)net->nblobs + 1, sizeof *planned);
    if (!planned) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    for (int j = 0; j < ts.nblobs; j++) planned[j] = gb[j] >= 0 && g[gb[j]].buffer >= 0;
    if (side == CT_DIFF)
      ct_net_fuse_planned_diffs(net, planned);
    else
      ct_net_fuse_planned_data(net, planned);
    free(planned);
  }
done:
  for (int b = 0; stor && b < nbuf; b++) ct_storage_release(stor[b]); /* its users hold it now */
  free(stor);
  for (int b = 0; b < nbuf; b++) free(bufs[b].used);
  free(bufs);
  free(order);
  free(g);
  free(gb);
  free(ts.t);
  free(ts.layer);
  return st;
}

ct_status ct_net_memplan(ct_net *net, ct_error *err) {
  if (net->mp.done) return CT_OK;
  net->mp.done = true;
  net->mp.backward = runs_backward(net);
  net->mp.fwd_only = net->mp.fwd_only || !net->mp.backward;
  bool *keep = calloc((size_t)net->nblobs + 1, sizeof *keep);
  if (!keep) return ct_fail(err, CT_ENOMEM, "out of memory");
  mark_kept(net, keep);
  ct_status st = CT_OK;
  const int sides = net->mp.fwd_only ? 1 : 2;
  for (int s = 0; s < sides && !st; s++) st = plan_side(net, (ct_side)s, net->mp.fwd_only, keep, false, err);
  if (net->mp.off) {
    for (int s = 0; s < sides; s++) net->mp.planned[s] = net->mp.unplanned[s];
  } else {
    for (int s = 0; s < sides; s++) concat_in_place(net, (ct_side)s, net->mp.fwd_only, keep);
    for (int s = 0; s < sides && !st; s++) st = plan_side(net, (ct_side)s, net->mp.fwd_only, keep, true, err);
    /* a net that runs backward keeps each layer's workspace where they all fit the budget: no
     * conv layer then lowers twice (a forward-only net has nothing to keep them for) */
    bool kept;
    if (!st && !net->mp.fwd_only) st = keep_budget(&net->mp.ws_budget, err);
    if (!st && !net->mp.fwd_only) st = ct_ws_pool_keep(net->place->ws, net->mp.ws_budget, &kept, err);
  }
  free(keep);
  return st;
}

ct_status ct_net_set_memplan(ct_net *net, bool on, ct_error *err) {
  if (net->mp.done && on == !net->mp.off) return CT_OK;
  if (net->mp.done)
    return ct_fail(err, CT_EINVAL, "net \"%s\": memory planning is decided at the first pass; set it before",
                   net->name);
  if (on && net->part)
    return ct_fail(err, CT_EINVAL, "net \"%s\": memory planning does not apply to a net partitioned over workers",
                   net->name);
  net->mp.off = !on;
  return CT_OK;
}

ct_status ct_net_keep_blob(ct_net *net, const char *name, ct_error *err) {
  if (ct_net_find_blob(net, name) < 0)
    return ct_fail(err, CT_ENOTFOUND, "no blob named \"%s\" in net \"%s\"", name, net->name);
  if (net->mp.done && !net->mp.off)
    return ct_fail(err, CT_EINVAL, "net \"%s\": blob \"%s\" must be kept before the first pass, which planned memory",
                   net->name, name);
  char **k = realloc(net->mp.keep, (size_t)(net->mp.nkeep + 1) * sizeof *k);
  if (!k) return ct_fail(err, CT_ENOMEM, "out of memory");
  net->mp.keep = k;
  if (!(k[net->mp.nkeep] = strdup(name))) return ct_fail(err, CT_ENOMEM, "out of memory");
  net->mp.nkeep++;
  return CT_OK;
}

ct_status ct_net_set_forward_only(ct_net *net, ct_error *err) {
  if (net->mp.done && !net->mp.fwd_only)
    return ct_fail(err, CT_EINVAL, "net \"%s\": set forward-only before the first pass", net->name);
  net->mp.fwd_only = true;
  return CT_OK;
}

ct_status ct_net_memplan_check_backward(const ct_net *net, ct_error *err) {
  /* the flag, not a scan of the layers: `time` calls this once per layer (issue 23's 100k layers) */
  if (!net->mp.done || !net->mp.fwd_only || net->mp.off || !net->mp.backward) return CT_OK;
  return ct_fail(err, CT_EINVAL,
                 "net \"%s\" was planned to run forward only (its blobs' memory is reused as soon as the forward "
                 "pass is done with them); backward needs a net that is not set forward-only, or CT_MEMPLAN=0",
                 net->name);
}

void ct_net_memory(const ct_net *net, ct_net_mem *m) {
  memset(m, 0, sizeof *m);
  m->planned = !net->mp.off;
  m->forward_only = net->mp.fwd_only;
  for (int s = 0; s < 2; s++) {
    m->unplanned_bytes[s] = net->mp.unplanned[s];
    m->planned_bytes[s] = net->mp.planned[s];
    m->buffers[s] = net->mp.buffers[s];
    m->shared_blobs[s] = net->mp.shared[s];
  }
  ct_ws_pool_bytes(net->place->ws, &m->workspace_bytes, &m->workspace_unshared_bytes);
  m->workspace_kept = ct_ws_pool_keeps(net->place->ws);
  m->workspace_budget = net->mp.ws_budget;
}
