/* Fusion of memory-bound layer runs into one hidden layer each; two kinds:
 *  - BatchNorm -> Scale (-> ReLU) (layers/bn_chain.h);
 *  - Eltwise SUM -> ReLU in place on its top (layers/eltwise_relu.h: ResNet's block ends).
 * A chain without the ReLU right before such a pair, one of its bottoms, may feed it: compute the
 * pair's output in its own pass and leave its own output unwritten (ct_bn_chain_set_feed), where
 * the memory plan makes that blob storage nobody reads after a pass (ct_net_fuse_planned_data).
 * The net keeps every layer and blob as the prototxt made them; a chain it may fuse gets a
 * hidden layer that the run loop calls in its first member's place (the head), and the members
 * after it skip their own passes.
 *
 * A chain is fused where nobody can tell: consecutive layers, Scale in place on BatchNorm's top
 * (so BatchNorm's output exists only inside the chain; a second reader would have had a Split
 * put between them, which breaks the chain), a ReLU joins only in place on the previous
 * member's top, no member has a loss weight or a partition spec of its own that differs from
 * the head's. What the chain leaves in its blobs (data, diffs, BatchNorm's running sums,
 * Scale's gradients) is what the members leave, up to float rounding (the Eltwise pair: bit for
 * bit). An Eltwise pair whose plan puts a partition on a driver without the fused entries
 * (optional in driver.h) runs as its two layers.
 *
 * A forward layer by layer (the Python module's start= and end=) runs chains unfused, unless the
 * caller runs whole passes that way (`cortado time`: ct_net_set_layerwise_fusion); a backward
 * after an unfused forward runs unfused too. After a fused forward the chain's backward is
 * fused whatever the caller (a backward layer by layer runs it at the head; one that starts
 * inside the chain still gets the whole chain's gradient there). With debug_info on, chains run
 * unfused, so every layer's own output is logged. CT_FUSE=0 in the environment turns fusion off
 * (the tests compare the two); CT_FUSE=bn or CT_FUSE=eltwise keeps only that kind (benchmarks
 * time one kind against the other). */
#include <stdlib.h>
#include <string.h>

#include "layers/bn_chain.h"
#include "layers/eltwise_relu.h"
#include "net/net_impl.h"

typedef enum fusion_kind { FUSE_BN_CHAIN, FUSE_ELTWISE_RELU } fusion_kind;

struct ct_fusion {
  fusion_kind kind;
  int head, n;     /* members: layers [head, head + n) */
  ct_layer *layer; /* the hidden layer that runs them */
  bool fused_fwd;  /* the chain's last forward ran fused: its backward must too */
  bool x_kept;     /* its backward may read its input (input_kept) */
  bool y_kept;     /* ... or its output (output_kept; bn_chain.c says when it may) */
  int expect;      /* the member whose forward the fused pass already did (-1: none) */
  struct ct_fusion *feeds; /* a chain: the Eltwise pair right after it that it may feed */
  bool feed_planned;       /* ... its blob is planned storage (ct_net_fuse_planned_data) */
  bool fed;                /* a pair: the chain before it computed its forward in this pass */
  bool did_feed;           /* a chain: it fed its pair in the last forward */
};

static bool is_type(const net_layer *nl, const char *type) { return !strcmp(nl->l.ops->type, type); }

static bool plain_member(const net_layer *head, const net_layer *nl) {
  for (int t = 0; t < nl->l.ntop; t++)
    if (nl->loss_weight[t] != 0) return false;
  return nl->l.spec.n == 0 || !memcmp(&nl->l.spec, &head->l.spec, sizeof nl->l.spec);
}

/* How many layers from i form a BatchNorm chain to fuse (0: none). */
static int bn_chain_at(const ct_net *net, int i) {
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

/* Whether layers i, i + 1 are an Eltwise SUM and a ReLU in place on its top to fuse. The
 * Eltwise's top is then read by the ReLU alone (a second reader would have had a Split put
 * after the Eltwise). A ReLU that does not propagate while the Eltwise does (propagate_down:
 * false on it) leaves the Eltwise the unmasked gradient: left as two layers. */
static bool eltwise_pair_at(const ct_net *net, int i) {
  const net_layer *el = &net->layers[i];
  if (!is_type(el, "Eltwise") || i + 1 >= net->nlayers || el->l.ntop != 1) return false;
  const net_layer *re = &net->layers[i + 1];
  if (!is_type(re, "ReLU") || re->l.nbottom != 1 || re->l.ntop != 1) return false;
  if (re->bottom_ids[0] != el->top_ids[0] || re->top_ids[0] != re->bottom_ids[0]) return false;
  if (!plain_member(el, el) || !plain_member(el, re) || !ct_eltwise_relu_fits(&el->l, &re->l)) return false;
  bool down = false;
  for (int b = 0; b < el->l.nbottom; b++) down |= el->l.propagate_down[b];
  return re->l.propagate_down[0] || !down;
}

/* CT_FUSE=bn or =eltwise: that kind alone; unset, empty or 1: both (0: none; anything else is
 * refused by ct_net_fuse) */
static bool kind_wanted(const char *e, fusion_kind k) {
  if (e && !strcmp(e, "bn")) return k == FUSE_BN_CHAIN;
  if (e && !strcmp(e, "eltwise")) return k == FUSE_ELTWISE_RELU;
  return true;
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

static ct_status add_fusion(ct_net *net, fusion_kind kind, int i, int n, ct_error *err) {
  struct ct_fusion *f = calloc(1, sizeof *f);
  if (!f) return ct_fail(err, CT_ENOMEM, "out of memory");
  f->kind = kind;
  f->head = i;
  f->n = n;
  f->expect = -1;
  ct_status st;
  if (kind == FUSE_BN_CHAIN) {
    f->x_kept = input_kept(net, i, n);
    f->y_kept = output_kept(net, i, n);
    st = ct_bn_chain_create(&net->layers[i].l, &net->layers[i + 1].l, n == 3 ? &net->layers[i + 2].l : NULL,
                            f->x_kept, f->y_kept, &f->layer, err);
  } else {
    st = ct_eltwise_relu_create(&net->layers[i].l, &net->layers[i + 1].l, &f->layer, err);
  }
  if (st) {
    free(f);
    return st;
  }
  for (int k = 0; k < n; k++) net->layers[i + k].fusion = f;
  return CT_OK;
}

/* The pair at i may be fed by the chain before it (bn_chain.h: ResNet's block ends): a chain of
 * two (no ReLU) at i - 2 whose output, kept to its backward, is one of the Eltwise's two bottoms
 * and not the other, on the same partition spec. Whether it does is decided per pass (the blob
 * planned, the drivers able: ct_net_fuse_forward). */
static void link_feed(ct_net *net, int i) {
  if (i < 2) return;
  struct ct_fusion *f = net->layers[i - 2].fusion, *g = net->layers[i].fusion;
  const net_layer *el = &net->layers[i], *re = &net->layers[i + 1];
  if (!f || f->kind != FUSE_BN_CHAIN || f->head != i - 2 || f->n != 2 || !f->y_kept || el->l.nbottom != 2) return;
  const int y = net->layers[i - 1].top_ids[0];
  const int self = el->bottom_ids[0] == y ? 0 : 1;
  if (el->bottom_ids[self] != y || el->bottom_ids[1 - self] == y || !plain_member(&net->layers[i - 2], el)) return;
  const Caffe__EltwiseParameter *ep = el->l.lp->eltwise_param;
  const float cs = ep && ep->n_coeff ? ep->coeff[self] : 1.0f, ca = ep && ep->n_coeff ? ep->coeff[1 - self] : 1.0f;
  const float slope = re->l.lp->relu_param ? re->l.lp->relu_param->negative_slope : 0.0f;
  ct_bn_chain_set_feed(f->layer, el->l.bottom[1 - self], re->l.top[0], cs, ca, slope);
  f->feeds = g;
}

ct_status ct_net_fuse(ct_net *net, ct_error *err) {
  const char *e = getenv("CT_FUSE");
  if (e && *e && strcmp(e, "0") && strcmp(e, "1") && strcmp(e, "bn") && strcmp(e, "eltwise"))
    return ct_fail(err, CT_EINVAL, "CT_FUSE in the environment is '%s'; expected 0 (no fusion), 1 (all), bn or eltwise",
                   e);
  if (e && !strcmp(e, "0")) return CT_OK;
  for (int i = 0; i < net->nlayers; i++) {
    const int n = kind_wanted(e, FUSE_BN_CHAIN) ? bn_chain_at(net, i) : 0;
    if (n) {
      CT_TRY(add_fusion(net, FUSE_BN_CHAIN, i, n, err));
      i += n - 1;
    } else if (kind_wanted(e, FUSE_ELTWISE_RELU) && eltwise_pair_at(net, i)) {
      CT_TRY(add_fusion(net, FUSE_ELTWISE_RELU, i, 2, err));
      link_feed(net, i);
      i++;
    }
  }
  return CT_OK;
}

static void free_fused_layer(struct ct_fusion *f) {
  if (f->kind == FUSE_BN_CHAIN)
    ct_bn_chain_free(f->layer);
  else
    ct_eltwise_relu_free(f->layer);
}

void ct_net_fuse_free(ct_net *net) {
  for (int i = 0; net->layers && i < net->nlayers; i++) {
    struct ct_fusion *f = net->layers[i].fusion;
    if (!f || f->head != i) continue;
    for (int k = 0; k < f->n; k++) net->layers[i + k].fusion = NULL;
    free_fused_layer(f);
    free(f);
  }
}

int ct_net_fused_chains(const ct_net *net) {
  int n = 0;
  for (int i = 0; i < net->nlayers; i++) n += net->layers[i].fusion && net->layers[i].fusion->head == i;
  return n;
}

int ct_net_fused_eltwise(const ct_net *net) {
  int n = 0;
  for (int i = 0; i < net->nlayers; i++)
    n += net->layers[i].fusion && net->layers[i].fusion->head == i && net->layers[i].fusion->kind == FUSE_ELTWISE_RELU;
  return n;
}

int ct_net_fed_chains(const ct_net *net) {
  int n = 0;
  for (int i = 0; i < net->nlayers; i++) {
    const struct ct_fusion *f = net->layers[i].fusion;
    n += f && f->head == i && f->did_feed;
  }
  return n;
}

void ct_net_set_layerwise_fusion(ct_net *net, bool on) { net->fuse_layerwise = on; }

ct_status ct_net_fuse_forward(ct_net *net, int i, bool fuse, ct_error *err) {
  net_layer *nl = &net->layers[i];
  struct ct_fusion *f = nl->fusion;
  if (f->fed && i == f->head) { /* the chain before it did the pair's forward in this pass */
    f->fed = false;
    f->fused_fwd = true;
    f->expect = i + 1;
    return CT_OK;
  }
  if (i == f->head && f->feeds) f->feeds->fed = f->did_feed = false;
  if (i == f->head && fuse && !net->debug) {
    const int prod = nl->producer;
    CT_TRY(ct_layer_plan_reshape(f->layer, prod >= 0 ? &net->layers[prod].l.plan : NULL, err));
    struct ct_fusion *g = f->feeds;
    if (g && f->feed_planned) { /* the pair's plan for this pass, which its drivers must run */
      const int gp = net->layers[g->head].producer;
      CT_TRY(ct_layer_plan_reshape(g->layer, gp >= 0 ? &net->layers[gp].l.plan : NULL, err));
    }
    if (g && f->feed_planned && ct_eltwise_relu_runs(g->layer) && ct_bn_chain_can_feed(f->layer)) {
      ct_bn_chain_feed(f->layer, true);
      const ct_status st = ct_layer_forward(f->layer, err);
      ct_bn_chain_feed(f->layer, false);
      CT_TRY(st);
      f->fused_fwd = f->did_feed = true;
      f->expect = i + 1;
      g->fed = true;
      return CT_OK;
    }
    if (f->kind == FUSE_BN_CHAIN || ct_eltwise_relu_runs(f->layer)) {
      CT_TRY(ct_layer_forward(f->layer, err));
      f->fused_fwd = true;
      f->expect = i + 1;
      return CT_OK;
    }
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
    if (!f || f->head != i) continue;
    const bool wanted = !planned_diff[net->layers[i + f->n - 1].top_ids[0]];
    if (f->kind == FUSE_BN_CHAIN)
      ct_bn_chain_set_top_grad(f->layer, wanted);
    else
      ct_eltwise_relu_set_top_grad(f->layer, wanted);
  }
}

void ct_net_fuse_planned_data(ct_net *net, const bool *planned_data) {
  for (int i = 0; i < net->nlayers; i++) {
    struct ct_fusion *f = net->layers[i].fusion;
    if (f && f->head == i && f->feeds) f->feed_planned = planned_data[net->layers[i + f->n - 1].top_ids[0]];
  }
}

const char *ct_net_fuse_note(const ct_net *net, int i) {
  const struct ct_fusion *f = net->layers[i].fusion, *c = i >= 2 ? net->layers[i - 2].fusion : NULL;
  if (f->head == i && c && c->feeds == f && c->did_feed) return "in chain"; /* booked under the chain */
  return f->head == i ? "fused" : "in chain";
}
