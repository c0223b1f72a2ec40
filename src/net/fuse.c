/* Fusion of the memory-bound chain BatchNorm -> Scale (-> ReLU) (layers/bn_chain.h): the net
 * keeps every layer and blob as the prototxt made them; a chain it may fuse gets a hidden layer
 * that the run loop calls in the BatchNorm's place, and the members after it skip their own
 * passes.
 *
 * A chain is fused where nobody can tell: consecutive layers, Scale in place on BatchNorm's top
 * (so BatchNorm's output exists only inside the chain; a second reader would have had a Split
 * put between them, which breaks the chain), a ReLU joins only in place on Scale's top, no
 * member has a loss weight or a partition spec of its own that differs from BatchNorm's. What
 * the chain leaves in its blobs (data, diffs, BatchNorm's running sums, Scale's gradients) is
 * what the members leave, up to float rounding.
 *
 * A forward layer by layer (the Python module's start= and end=) runs chains unfused, unless the
 * caller runs whole passes that way (`cortado time`: ct_net_set_layerwise_fusion); a backward
 * after an unfused forward runs unfused too. After a fused forward the chain's backward is
 * fused whatever the caller (a backward layer by layer runs it at BatchNorm; one that starts
 * inside the chain still gets the whole chain's gradient there). With debug_info on, chains run
 * unfused, so every layer's own output is logged. CT_FUSE=0 in the environment turns fusion off (the tests compare
 * the two). */
#include <stdlib.h>
#include <string.h>

#include "layers/bn_chain.h"
#include "net/net_impl.h"

struct ct_fusion {
  int head, n;     /* members: layers [head, head + n) */
  ct_layer *layer; /* the hidden layer that runs them */
  bool fused_fwd;  /* the chain's last forward ran fused: its backward must too */
  bool x_kept;     /* its backward may read its input (input_kept) */
  bool y_kept;     /* ... or, without the ReLU, its output (output_kept) */
  int expect;      /* the member whose forward the fused pass already did (-1: none) */
};

static bool is_type(const net_layer *nl, const char *type) { return !strcmp(nl->l.ops->type, type); }

static bool plain_member(const net_layer *head, const net_layer *nl) {
  for (int t = 0; t < nl->l.ntop; t++)
    if (nl->loss_weight[t] != 0) return false;
  return nl->l.spec.n == 0 || !memcmp(&nl->l.spec, &head->l.spec, sizeof nl->l.spec);
}

/* How many layers from i form a chain to fuse (0: none). */
static int chain_at(const ct_net *net, int i) {
  const net_layer *bn = &net->layers[i];
  if (!is_type(bn, "BatchNorm") || i + 1 >= net->nlayers || bn->l.nbottom != 1 || bn->l.ntop != 1) return 0;
  const net_layer *sc = &net->layers[i + 1];
  if (!is_type(sc, "Scale") || sc->l.nbottom != 1 || sc->l.ntop != 1) return 0;
  if (sc->bottom_ids[0] != bn->top_ids[0] || sc->top_ids[0] != sc->bottom_ids[0]) return 0;
  if (!plain_member(bn, bn) || !plain_member(bn, sc)) return 0;
  const net_layer *re = i + 2 < net->nlayers ? &net->layers[i + 2] : NULL;
  if (re && (!is_type(re, "ReLU") || re->l.nbottom != 1 || re->l.ntop != 1 || re->bottom_ids[0] != sc->top_ids[0] ||
             re->top_ids[0] != re->bottom_ids[0] || !plain_member(bn, re)))
    re = NULL;
  if (re && !ct_bn_chain_fits(&bn->l, &sc->l, &re->l)) re = NULL;
  if (!ct_bn_chain_fits(&bn->l, &sc->l, NULL)) return 0;
  return re ? 3 : 2;
}

/* The chain at i (n members) reads a bottom that still holds the same values at its backward:
 * BatchNorm not in place, and no layer after the chain writes that blob (an in-place layer on
 * it, or a second producer). */
static bool input_kept(const ct_net *net, int i, int n) {
  const int x = net->layers[i].bottom_ids[0];
  if (net->layers[i].top_ids[0] == x) return false;
  for (int j = i + n; j < net->nlayers; j++)
    for (int t = 0; t < net->layers[j].l.ntop; t++)
      if (net->layers[j].top_ids[t] == x) return false;
  return true;
}

/* ... and its top (the last member's) at the chain's backward: no layer after the chain writes
 * that blob. */
static bool output_kept(const ct_net *net, int i, int n) {
  const int y = net->layers[i + n - 1].top_ids[0];
  for (int j = i + n; j < net->nlayers; j++)
    for (int t = 0; t < net->layers[j].l.ntop; t++)
      if (net->layers[j].top_ids[t] == y) return false;
  return true;
}

ct_status ct_net_fuse(ct_net *net, ct_error *err) {
  const char *e = getenv("CT_FUSE");
  if (e && !strcmp(e, "0")) return CT_OK;
  for (int i = 0; i < net->nlayers; i++) {
    const int n = chain_at(net, i);
    if (!n) continue;
    struct ct_fusion *f = calloc(1, sizeof *f);
    if (!f) return ct_fail(err, CT_ENOMEM, "out of memory");
    f->head = i;
    f->n = n;
    f->expect = -1;
    f->x_kept = input_kept(net, i, n);
    f->y_kept = n == 2 && output_kept(net, i, n);
    ct_status st = ct_bn_chain_create(&net->layers[i].l, &net->layers[i + 1].l, n == 3 ? &net->layers[i + 2].l : NULL,
                                      f->x_kept, f->y_kept, &f->layer, err);
    if (st) {
      free(f);
      return st;
    }
    for (int k = 0; k < n; k++) net->layers[i + k].fusion = f;
    i += n - 1;
  }
  return CT_OK;
}

void ct_net_fuse_free(ct_net *net) {
  for (int i = 0; net->layers && i < net->nlayers; i++) {
    struct ct_fusion *f = net->layers[i].fusion;
    if (!f || f->head != i) continue;
    for (int k = 0; k < f->n; k++) net->layers[i + k].fusion = NULL;
    ct_bn_chain_free(f->layer);
    free(f);
  }
}

int ct_net_fused_chains(const ct_net *net) {
  int n = 0;
  for (int i = 0; i < net->nlayers; i++) n += net->layers[i].fusion && net->layers[i].fusion->head == i;
  return n;
}

void ct_net_set_layerwise_fusion(ct_net *net, bool on) { net->fuse_layerwise = on; }

ct_status ct_net_fuse_forward(ct_net *net, int i, bool fuse, ct_error *err) {
  net_layer *nl = &net->layers[i];
  struct ct_fusion *f = nl->fusion;
  if (i == f->head && fuse && !net->debug) {
    const int prod = nl->producer;
    CT_TRY(ct_layer_plan_reshape(f->layer, prod >= 0 ? &net->layers[prod].l.plan : NULL, err));
    CT_TRY(ct_layer_forward(f->layer, err));
    f->fused_fwd = true;
    f->expect = i + 1;
    return CT_OK;
  }
  if (i == f->expect) { /* done by the fused pass */
    f->expect = i + 1 < f->head + f->n ? i + 1 : -1;
    return CT_OK;
  }
  f->fused_fwd = false;
  f->expect = -1;
  return ct_layer_forward(&nl->l, err);
}

ct_status ct_net_fuse_backward(ct_net *net, int i, ct_error *err) {
  net_layer *nl = &net->layers[i];
  struct ct_fusion *f = nl->fusion;
  if (!f->fused_fwd) return nl->need_backward ? ct_layer_backward(&nl->l, err) : CT_OK;
  if (i != f->head) return CT_OK; /* the head's fused pass does it */
  bool need = false;
  for (int k = 0; k < f->n; k++) need |= net->layers[f->head + k].need_backward;
  return need ? ct_layer_backward(f->layer, err) : CT_OK;
}

bool ct_net_fuse_reads_input(const ct_net *net, int i) {
  const struct ct_fusion *f = net->layers[i].fusion;
  return f && f->head == i && f->x_kept;
}

bool ct_net_fuse_reads_output(const ct_net *net, int i) {
  const struct ct_fusion *f = net->layers[i].fusion;
  return f && f->head == i && f->y_kept;
}

void ct_net_fuse_planned_diffs(ct_net *net, const bool *planned_diff) {
  for (int i = 0; i < net->nlayers; i++) {
    struct ct_fusion *f = net->layers[i].fusion;
    if (f && f->head == i) ct_bn_chain_set_top_grad(f->layer, !planned_diff[net->layers[i + f->n - 1].top_ids[0]]);
  }
}

const char *ct_net_fuse_note(const ct_net *net, int i) {
  return net->layers[i].fusion->head == i ? "fused" : "in chain";
}
