/* Fusion of Eltwise SUM -> in-place ReLU (net/fuse.c, layers/eltwise_relu.c) on a small
 * ResNet-like block: conv -> BN -> Scale -> ReLU -> conv -> BN -> Scale, a 1x1 shortcut conv (a
 * second one for a third bottom), the Eltwise sum of them, a ReLU in place on it, a classifier
 * and a loss. Variants: 2 and 3 bottoms, coefficients, a leaky slope, propagate_down false on a
 * bottom, a second reader after the ReLU. Against the same net with only the BatchNorm chains
 * fused (CT_FUSE=bn) every blob's data and diff, every parameter and gradient is bit for bit the
 * same (the fused kernel does the unfused layers' float operations in their order); against
 * everything unfused (CT_FUSE=0) within 1e-6 of each blob's largest value (the BatchNorm chains
 * round differently). One and two partitions, the batch split between the CPU and emu:0, a run
 * layer by layer that fuses (`cortado time`'s) and one that does not; a planned net bit for bit
 * the unplanned one (the top's diff kept readable where asked); 20 SGD iterations to the same
 * weights (bit for bit against CT_FUSE=bn, 1e-5 against CT_FUSE=0). In ResNet's order (the
 * shortcut first, the block's last chain right before the Eltwise) a planned net's chain feeds
 * the pair (bn_chain.h), bit for bit the unplanned net, and not where its blob is kept readable.
 * Pairs that must not fuse
 * stay two layers and compute the same: ReLU not in place, a second reader of the Eltwise's own
 * output (a Split), PROD, MAX, a loss weight on the Eltwise's top, a negative slope, a ReLU that
 * does not propagate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"

typedef struct variant {
  const char *name;
  int nbottom;          /* 2 or 3 */
  const char *eltwise;  /* extra eltwise_param text (coeff, operation) */
  const char *sum_extra; /* extra layer text on the Eltwise (propagate_down, loss_weight) */
  const char *relu;     /* the ReLU layer's text after its name (bottom/top/params) */
  const char *between;  /* layers put between the Eltwise and the ReLU, or "" */
  const char *after;    /* layers put after the ReLU, or "" */
  const char *fc_bottom; /* what the classifier reads */
  int fused;            /* Eltwise pairs expected to fuse */
  bool resnet_order;    /* the shortcut before the block (ResNet's prototxts): the chain right
                           before the Eltwise feeds the pair in a planned net (bn_chain.h) */
} variant;

#define RELU_IN_PLACE "bottom: 'sum' top: 'sum'"

static const variant fusing[] = {
    {"2 bottoms", 2, "", "", RELU_IN_PLACE, "", "", "sum", 1, false},
    {"3 bottoms with coeff", 3, "coeff: 0.5 coeff: -1.5 coeff: 2", "", RELU_IN_PLACE, "", "", "sum", 1, false},
    {"leaky", 2, "coeff: 1 coeff: 0.75", "", RELU_IN_PLACE " relu_param { negative_slope: 0.1 }", "", "", "sum", 1, false},
    {"propagate_down false", 3, "", "propagate_down: true propagate_down: false propagate_down: true", RELU_IN_PLACE,
     "", "", "sum", 1, false},
    /* a second reader after the ReLU reads the ReLU's output, which the pair leaves there */
    {"reader after the ReLU", 2, "", "", RELU_IN_PLACE, "",
     "layer { name: 'side' type: 'Pooling' bottom: 'sum' top: 'side' pooling_param { pool: MAX kernel_size: 2 } }\n"
     "layer { name: 'side_fc' type: 'InnerProduct' bottom: 'side' top: 'side_fc' inner_product_param { "
     "num_output: 3 weight_filler { type: 'xavier' } } }\n"
     "layer { name: 'side_loss' type: 'EuclideanLoss' bottom: 'side_fc' bottom: 'target' top: 'side_loss' }\n",
     "sum", 1, false},
    {"2 bottoms, ResNet's order", 2, "", "", RELU_IN_PLACE, "", "", "sum", 1, true},
    {"ResNet's order, coeff, leaky", 2, "coeff: -0.5 coeff: 1.25", "",
     RELU_IN_PLACE " relu_param { negative_slope: 0.1 }", "", "", "sum", 1, true},
    {"ResNet's order, propagate_down false", 2, "", "propagate_down: true propagate_down: false", RELU_IN_PLACE, "",
     "", "sum", 1, true},
};

/* a second reader of the Eltwise's own output (before the ReLU) takes a Split, which a net
 * refuses to follow by an in-place ReLU on the Eltwise's top: here the Split is written out */
static const variant not_fusing[] = {
    {"ReLU not in place", 2, "", "", "bottom: 'sum' top: 'sum_relu'", "", "", "sum_relu", 0, false},
    {"second reader (Split)", 2, "", "", "bottom: 'sum_a' top: 'sum_a'",
     "layer { name: 'spl' type: 'Split' bottom: 'sum' top: 'sum_a' top: 'sum_b' }\n",
     "layer { name: 'sil' type: 'Silence' bottom: 'sum_b' }\n", "sum_a", 0, false},
    {"PROD", 2, "operation: PROD", "", RELU_IN_PLACE, "", "", "sum", 0, false},
    {"MAX", 2, "operation: MAX", "", RELU_IN_PLACE, "", "", "sum", 0, false},
    {"loss weight", 2, "", "loss_weight: 0.5", RELU_IN_PLACE, "", "", "sum", 0, false},
    {"negative slope", 2, "", "", RELU_IN_PLACE " relu_param { negative_slope: -0.2 }", "", "", "sum", 0, false},
    {"ReLU does not propagate", 2, "", "", RELU_IN_PLACE " propagate_down: false", "", "", "sum", 0, false},
};

static char dir[] = "/tmp/ct_fuse_elt_XXXXXX";
static char text[8192];

#define SHORTCUT                                                                                      \
  "layer { name: 'short' type: 'Convolution' bottom: 'data' top: 's' convolution_param { num_output: 4 " \
  "  kernel_size: 1 weight_filler { type: 'xavier' } bias_filler { type: 'gaussian' std: 0.2 } } }\n"

static const char *net_text(const variant *v) {
  snprintf(text, sizeof text,
           "name: 'res'\n"
           "layer { name: 'data' type: 'DummyData' top: 'data' top: 'target' dummy_data_param { "
           "  shape { dim: 2 dim: 3 dim: 8 dim: 6 } shape { dim: 2 dim: 3 } "
           "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 0.25 } } }\n"
           "%s"
           "layer { name: 'conv_a' type: 'Convolution' bottom: 'data' top: 'a' convolution_param { num_output: 4 "
           "  kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'bn_a' type: 'BatchNorm' bottom: 'a' top: 'a' }\n"
           "layer { name: 'sc_a' type: 'Scale' bottom: 'a' top: 'a' scale_param { bias_term: true "
           "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' std: 0.3 } } }\n"
           "layer { name: 'relu_a' type: 'ReLU' bottom: 'a' top: 'a' }\n"
           "layer { name: 'conv_b' type: 'Convolution' bottom: 'a' top: 'b' convolution_param { num_output: 4 "
           "  kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'bn_b' type: 'BatchNorm' bottom: 'b' top: 'b' }\n"
           "layer { name: 'sc_b' type: 'Scale' bottom: 'b' top: 'b' scale_param { bias_term: true "
           "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' std: 0.3 } } }\n"
           "%s"
           "%s"
           "layer { name: 'sum' type: 'Eltwise' bottom: 's' bottom: 'b' %s top: 'sum' %s eltwise_param { %s } }\n"
           "%s"
           "layer { name: 'relu' type: 'ReLU' %s }\n"
           "layer { name: 'fc' type: 'InnerProduct' bottom: '%s' top: 'fc' inner_product_param { num_output: 3 "
           "  weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'fc' bottom: 'target' top: 'loss' }\n"
           "%s",
           v->resnet_order ? SHORTCUT : "", v->resnet_order ? "" : SHORTCUT,
           v->nbottom == 3 ? "layer { name: 'third' type: 'Convolution' bottom: 'data' top: 't' convolution_param { "
                             "num_output: 4 kernel_size: 1 weight_filler { type: 'xavier' } } }\n"
                           : "",
           v->nbottom == 3 ? "bottom: 't'" : "", v->sum_extra, v->eltwise, v->between, v->relu, v->fc_bottom,
           v->after);
  return text;
}

/* fuse: "1" everything, "bn" the BatchNorm chains only, "0" nothing */
static ct_net *build(const variant *v, const char *fuse, int parts, bool plan) {
  ct_error err = {0};
  ct_net *net = NULL;
  setenv("CT_FUSE", fuse, 1);
  CHECK(ct_net_create_from_text(net_text(v), "res", dir, CT_TRAIN, &net, &err) == CT_OK, "%s: %s", v->name, err.msg);
  unsetenv("CT_FUSE");
  if (!net) return NULL;
  /* compared blob by blob after the passes: unplanned, so each still holds its values */
  if (!plan) CHECK(ct_net_set_memplan(net, false, &err) == CT_OK, "%s", err.msg);
  if (parts > 1) CHECK(ct_net_set_partitions(net, parts, &err) == CT_OK, "%s", err.msg);
  return net;
}

static size_t blob_count(ct_net *net, const char *name) {
  int shape[8], na = ct_net_blob_shape(net, name, shape);
  size_t n = 1;
  for (int k = 0; k < na; k++) n *= (size_t)shape[k];
  return n;
}

/* exact: bit for bit; else max |a - b| <= tol * max(1e-3, max |b|) */
static bool agree(const float *a, const float *b, size_t n, bool exact, double tol, double *worst_out) {
  if (exact) {
    *worst_out = 0;
    return !memcmp(a, b, n * sizeof(float));
  }
  double scale = 1e-3, worst = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
  *worst_out = worst / scale;
  return worst <= tol * scale;
}

/* every blob's data and diff, every parameter value and gradient */
static void compare_nets(ct_net *f, ct_net *u, bool exact, double tol, const char *what) {
  double w;
  for (int i = 0; ct_net_blob_name(f, i); i++) {
    const char *name = ct_net_blob_name(f, i);
    const size_t n = blob_count(f, name);
    CHECK(agree(ct_net_blob_data(f, name), ct_net_blob_data(u, name), n, exact, tol, &w),
          "%s: blob %s data differs (%.3g of its largest)", what, name, w);
    CHECK(agree(ct_net_blob_diff(f, name), ct_net_blob_diff(u, name), n, exact, tol, &w),
          "%s: blob %s diff differs (%.3g of its largest)", what, name, w);
  }
  const size_t np = ct_net_param_total(f);
  CHECK(np == ct_net_param_total(u), "%s: as many parameters", what);
  if (np != ct_net_param_total(u)) return;
  CHECK(agree(ct_net_param_buffer(f), ct_net_param_buffer(u), np, exact, tol, &w), "%s: parameters differ (%.3g)",
        what, w);
  CHECK(agree(ct_net_diff_buffer(f), ct_net_diff_buffer(u), np, exact, tol, &w), "%s: gradients differ (%.3g)", what,
        w);
}

static void pass(ct_net *net, float *loss) {
  ct_error err = {0};
  CHECK(ct_net_forward(net, loss, &err) == CT_OK && ct_net_backward(net, &err) == CT_OK, "%s", err.msg);
}

/* fused against CT_FUSE=bn (bit for bit) and CT_FUSE=0 (1e-6), one pass */
static void test_one_pass(const variant *v, int parts) {
  char what[160];
  snprintf(what, sizeof what, "%s, %d partition%s", v->name, parts, parts > 1 ? "s" : "");
  ct_net *f = build(v, "1", parts, false), *b = build(v, "bn", parts, false), *u = build(v, "0", parts, false);
  if (!f || !b || !u) goto done;
  CHECK(ct_net_fused_eltwise(f) == v->fused, "%s: %d Eltwise pairs fused, %d expected", what, ct_net_fused_eltwise(f),
        v->fused);
  CHECK(ct_net_fused_chains(f) == 2 + v->fused, "%s: 2 BatchNorm chains and the pair, got %d", what,
        ct_net_fused_chains(f));
  CHECK(ct_net_fused_eltwise(b) == 0 && ct_net_fused_chains(b) == 2, "%s: CT_FUSE=bn fuses the chains alone", what);
  CHECK(ct_net_fused_chains(u) == 0, "%s: CT_FUSE=0 fuses nothing", what);
  float lf = 0, lb = 0, lu = 0;
  pass(f, &lf);
  pass(b, &lb);
  pass(u, &lu);
  CHECK(lf == lb, "%s: loss %.9g fused, %.9g with the chains alone", what, lf, lb);
  compare_nets(f, b, true, 0, what);
  compare_nets(f, u, false, 1e-6, what);
  /* the comparison says something: the Eltwise passes on a gradient, the ReLU cuts some of it */
  const float *ds = ct_net_blob_diff(f, "s"), *y = ct_net_blob_data(f, "sum");
  const size_t n = blob_count(f, "s");
  size_t zero = 0, nonzero = 0;
  for (size_t i = 0; i < n; i++) zero += y[i] == 0.0f, nonzero += ds[i] != 0.0f;
  CHECK(nonzero > n / 4, "%s: the shortcut's gradient is mostly not zero (%zu of %zu)", what, nonzero, n);
  if (!strstr(v->relu, "negative_slope")) CHECK(zero > 0, "%s: the ReLU cuts somewhere", what);
done:
  ct_net_free(f);
  ct_net_free(b);
  ct_net_free(u);
}

/* CcT's hybrid: the batch split between the CPU and emu:0, whose pair runs on each (emu's
 * entries are the CPU's kernels behind its arena), bit for bit the chains-only net so split */
static void test_hybrid(const variant *v) {
  ct_error err = {0};
  ct_net *f = build(v, "1", 1, false), *b = build(v, "bn", 1, false);
  if (!f || !b) goto done;
  CHECK(ct_net_set_devices(f, "cpu=0.3,emu:0=0.7", &err) == CT_OK &&
            ct_net_set_devices(b, "cpu=0.3,emu:0=0.7", &err) == CT_OK,
        "%s", err.msg);
  float lf = 0, lb = 0;
  pass(f, &lf);
  pass(b, &lb);
  CHECK(ct_net_fused_eltwise(f) == 1, "hybrid: the pair is fused");
  compare_nets(f, b, true, 0, "cpu 0.3 + emu:0 0.7");
done:
  ct_net_free(f);
  ct_net_free(b);
}

/* `cortado time` runs layer by layer with whole chains fused; the Python module's layer by
 * layer (fusion off) must agree too */
static void test_layerwise(const variant *v) {
  ct_error err = {0};
  ct_net *f = build(v, "1", 1, false), *b = build(v, "bn", 1, false);
  if (!f || !b) goto done;
  for (int lw = 1; lw >= 0; lw--) {
    ct_net_set_layerwise_fusion(f, lw);
    ct_net_set_layerwise_fusion(b, lw);
    const int L = ct_net_num_layers(f);
    for (int i = 0; i < L; i++)
      CHECK(ct_net_forward_layer(f, i, &err) == CT_OK && ct_net_forward_layer(b, i, &err) == CT_OK, "%s", err.msg);
    for (int i = L - 1; i >= 0; i--)
      CHECK(ct_net_backward_layer(f, i, &err) == CT_OK && ct_net_backward_layer(b, i, &err) == CT_OK, "%s",
            err.msg);
    compare_nets(f, b, true, 0, lw ? "layer by layer, fused" : "layer by layer, unfused");
  }
done:
  ct_net_free(f);
  ct_net_free(b);
}

/* A planned fused net computes bit for bit what the unplanned one does; the top's diff, planned
 * storage, is skipped by the pair's backward unless kept readable, where it is the ReLU's input
 * gradient as unplanned. */
static void test_planned(const variant *v) {
  ct_error err = {0};
  ct_net *p = build(v, "1", 1, true), *k = build(v, "1", 1, true), *u = build(v, "1", 1, false);
  if (!p || !k || !u) goto done;
  CHECK(ct_net_keep_blob(k, "sum", &err) == CT_OK, "%s", err.msg);
  float lp = 0, lk = 0, lu = 0;
  CHECK(ct_net_keep_blob(k, "b", &err) == CT_OK, "%s", err.msg);
  pass(p, &lp);
  pass(k, &lk);
  pass(u, &lu);
  CHECK(lp == lu && lk == lu, "planned: loss %.9g / %.9g (kept), unplanned %.9g", lp, lk, lu);
  /* the chain feeds the pair where its blob is planned and right before the Eltwise; kept
   * readable, it writes its own output as the members do */
  CHECK(ct_net_fed_chains(p) == (v->resnet_order ? 1 : 0) && ct_net_fed_chains(k) == 0 && ct_net_fed_chains(u) == 0,
        "%s: chains that fed the pair: %d planned (%d expected), %d kept, %d unplanned", v->name, ct_net_fed_chains(p),
        v->resnet_order ? 1 : 0, ct_net_fed_chains(k), ct_net_fed_chains(u));
  const size_t np = ct_net_param_total(u);
  double w;
  CHECK(agree(ct_net_diff_buffer(p), ct_net_diff_buffer(u), np, true, 0, &w), "%s: planned: gradients bit for bit",
        v->name);
  CHECK(agree(ct_net_blob_data(p, "fc"), ct_net_blob_data(u, "fc"), blob_count(u, "fc"), true, 0, &w),
        "%s: planned: the classifier's output bit for bit", v->name);
  CHECK(agree(ct_net_diff_buffer(k), ct_net_diff_buffer(u), np, true, 0, &w), "kept: gradients bit for bit");
  const size_t n = blob_count(u, "sum");
  CHECK(agree(ct_net_blob_diff(k, "sum"), ct_net_blob_diff(u, "sum"), n, true, 0, &w),
        "kept: the top's diff is the ReLU's input gradient, as unplanned");
  CHECK(agree(ct_net_blob_data(k, "sum"), ct_net_blob_data(u, "sum"), n, true, 0, &w),
        "kept: the top's data is relu(sum), as unplanned");
done:
  ct_net_free(p);
  ct_net_free(k);
  ct_net_free(u);
}

static void quiet_log(void *ctx, const char *line) {
  (void)ctx;
  (void)line;
}

/* 20 SGD iterations; the weights and statistics */
static float *train(const char *fuse, const char *solver_path, size_t *n) {
  ct_error err = {0};
  ct_solver_options opt = {0};
  opt.log = quiet_log;
  ct_solver *s = NULL;
  setenv("CT_FUSE", fuse, 1);
  ct_status st = ct_solver_create(solver_path, &opt, &s, &err);
  unsetenv("CT_FUSE");
  CHECK(st == CT_OK, "%s", err.msg);
  if (st) return NULL;
  ct_net *net = ct_solver_net(s);
  CHECK(ct_net_fused_eltwise(net) == (!strcmp(fuse, "1") ? 1 : 0), "training net (CT_FUSE=%s): %d pairs fused", fuse,
        ct_net_fused_eltwise(net));
  CHECK(ct_solver_step(s, 20, &err) == CT_OK, "%s", err.msg);
  *n = ct_net_param_total(net);
  float *w = malloc(*n * sizeof(float));
  memcpy(w, ct_net_param_buffer(net), *n * sizeof(float));
  ct_solver_free(s);
  return w;
}

static void test_training(const variant *v) {
  char net_path[256], solver_path[256];
  snprintf(net_path, sizeof net_path, "%s/net.prototxt", dir);
  snprintf(solver_path, sizeof solver_path, "%s/solver.prototxt", dir);
  FILE *fp = fopen(net_path, "w");
  if (fp) {
    fputs(net_text(v), fp);
    fclose(fp);
  }
  fp = fopen(solver_path, "w");
  if (fp) {
    fprintf(fp, "net: '%s'\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: 'fixed'\n"
                "max_iter: 20\ndisplay: 0\nrandom_seed: 7\nsnapshot_after_train: false\n", net_path);
    fclose(fp);
  }
  size_t nf = 0, nb = 0, nu = 0;
  float *a = train("1", solver_path, &nf), *b = train("bn", solver_path, &nb), *c = train("0", solver_path, &nu);
  CHECK(a && b && c && nf == nb && nf == nu, "the three nets trained");
  if (a && b && c && nf == nb && nf == nu) {
    CHECK(!memcmp(a, b, nf * sizeof(float)), "%s: 20 iterations, bit for bit with the chains alone fused", v->name);
    size_t bad = 0, at = 0;
    for (size_t i = 0; i < nf; i++)
      if (!(fabs((double)a[i] - c[i]) <= 1e-5 * fmax(1.0, fabs(c[i])))) bad++, at = i;
    CHECK(!bad, "%s: 20 iterations: %zu weights differ from unfused (e.g. %zu: %.9g fused, %.9g not)", v->name, bad,
          at, bad ? a[at] : 0.0, bad ? c[at] : 0.0);
  }
  free(a);
  free(b);
  free(c);
  unlink(net_path);
  unlink(solver_path);
}

/* stays two layers, and computes what CT_FUSE=bn does */
static void test_not_fused(const variant *v) {
  ct_net *f = build(v, "1", 1, false), *b = build(v, "bn", 1, false);
  if (!f || !b) goto done;
  CHECK(ct_net_fused_eltwise(f) == 0, "%s: the pair is not fused (%d)", v->name, ct_net_fused_eltwise(f));
  float lf = 0, lb = 0;
  pass(f, &lf);
  pass(b, &lb);
  compare_nets(f, b, true, 0, v->name);
done:
  ct_net_free(f);
  ct_net_free(b);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  for (size_t i = 0; i < sizeof fusing / sizeof fusing[0]; i++) {
    test_one_pass(&fusing[i], 1);
    test_one_pass(&fusing[i], 2);
    test_layerwise(&fusing[i]);
    test_planned(&fusing[i]);
  }
  test_hybrid(&fusing[1]);
  test_training(&fusing[1]);
  test_training(&fusing[2]);
  test_training(&fusing[6]);
  for (size_t i = 0; i < sizeof not_fusing / sizeof not_fusing[0]; i++) test_not_fused(&not_fusing[i]);
  rmdir(dir);
  return ct_check_report();
}
