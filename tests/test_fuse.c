/* Fusion of BatchNorm -> Scale (-> ReLU) chains (net/fuse.c) against the same net unfused
 * (CT_FUSE=0): a net with a convolution, an in-place TRAIN chain with ReLU, a chain whose
 * BatchNorm has a top of its own (DenseNet's and MobileNet's shape) without ReLU, one in place
 * on a convolution's output without ReLU (ResNet's before the sum), one in place on another on
 * the stored statistics with a ReLU (its backward takes xnorm from its output), an Eltwise sum,
 * a chain with the stored statistics and a leaky ReLU, and a BatchNorm -> Scale pair that
 * must not fuse (Scale not in place). One forward and backward gives the same outputs, blob
 * data and gradients and parameter gradients (1e-5 of each blob's largest value), with one
 * partition and with two; so does a run layer by layer that stops inside a chain; the TEST
 * phase's forward (stored statistics everywhere) gives the same blobs; 20 SGD iterations reach
 * the same weights and BatchNorm statistics (1e-5). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"

static const char *net_text =
    "name: 'fuse'\n"
    "layer { name: 'data' type: 'DummyData' top: 'data' top: 'target' dummy_data_param { "
    "  shape { dim: 2 dim: 3 dim: 9 dim: 7 } shape { dim: 2 dim: 3 } "
    "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 0.25 } } }\n"
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' convolution_param { num_output: 5 "
    "  kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'bn1' type: 'BatchNorm' bottom: 'conv1' top: 'conv1' }\n"
    "layer { name: 'sc1' type: 'Scale' bottom: 'conv1' top: 'conv1' scale_param { bias_term: true "
    "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' std: 0.3 } } }\n"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n"
    "layer { name: 'conv2' type: 'Convolution' bottom: 'conv1' top: 'conv2' convolution_param { num_output: 5 "
    "  kernel_size: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'bn2' type: 'BatchNorm' bottom: 'conv2' top: 'bn2' }\n"
    "layer { name: 'sc2' type: 'Scale' bottom: 'bn2' top: 'bn2' scale_param { filler { type: 'uniform' min: 0.5 "
    "  max: 1.5 } } }\n"
    /* ResNet's branch before the sum: a chain in place on a convolution's output, without ReLU,
     * whose backward recomputes xnorm from its output; its factors near 0 leave some channels
     * keeping xnorm (ct_bn_chain_y_recovers) */
    "layer { name: 'conv5' type: 'Convolution' bottom: 'conv1' top: 'conv5' convolution_param { num_output: 5 "
    "  kernel_size: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'bn5' type: 'BatchNorm' bottom: 'conv5' top: 'conv5' }\n"
    "layer { name: 'sc5' type: 'Scale' bottom: 'conv5' top: 'conv5' scale_param { bias_term: true "
    "  filler { type: 'uniform' min: -0.05 max: 0.05 } bias_filler { type: 'gaussian' std: 0.3 } } }\n"
    /* a chain on the stored statistics with a plain ReLU, in place on a convolution's output:
     * its backward takes xnorm from its output too (ct_bn_chain_z_from_y_applies) */
    "layer { name: 'conv6' type: 'Convolution' bottom: 'conv1' top: 'conv6' convolution_param { num_output: 5 "
    "  kernel_size: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'bn6' type: 'BatchNorm' bottom: 'conv6' top: 'conv6' batch_norm_param { use_global_stats: true } }\n"
    "layer { name: 'sc6' type: 'Scale' bottom: 'conv6' top: 'conv6' scale_param { bias_term: true "
    "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' std: 0.3 } } }\n"
    "layer { name: 'relu6' type: 'ReLU' bottom: 'conv6' top: 'conv6' }\n"
    "layer { name: 'sum' type: 'Eltwise' bottom: 'conv1' bottom: 'bn2' bottom: 'conv5' bottom: 'conv6' top: 'sum' }\n"
    "layer { name: 'bn3' type: 'BatchNorm' bottom: 'sum' top: 'sum' batch_norm_param { use_global_stats: true } }\n"
    "layer { name: 'sc3' type: 'Scale' bottom: 'sum' top: 'sum' scale_param { bias_term: true "
    "  filler { type: 'uniform' min: 0.5 max: 1.5 } bias_filler { type: 'gaussian' std: 0.3 } } }\n"
    "layer { name: 'relu3' type: 'ReLU' bottom: 'sum' top: 'sum' relu_param { negative_slope: 0.1 } }\n"
    "layer { name: 'bn4' type: 'BatchNorm' bottom: 'sum' top: 'bn4' }\n"
    "layer { name: 'sc4' type: 'Scale' bottom: 'bn4' top: 'sc4' scale_param { bias_term: true } }\n"
    "layer { name: 'fc' type: 'InnerProduct' bottom: 'sc4' top: 'fc' inner_product_param { num_output: 3 "
    "  weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'fc' bottom: 'target' top: 'loss' }\n";

static char dir[] = "/tmp/ct_fuse_XXXXXX";

static void set_fusion(bool on) {
  if (on)
    unsetenv("CT_FUSE");
  else
    setenv("CT_FUSE", "0", 1);
}

/* max |a - b| <= tol * max(1e-3, max |b|) */
static bool close_to(const float *a, const float *b, size_t n, double tol, double *worst_out) {
  double scale = 1e-3, worst = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
  *worst_out = worst / scale;
  return worst <= tol * scale;
}

/* bn3 and bn6 use stored statistics: give both nets the same ones (mean 0.1 c, variance
 * 1 + 0.2 c; bn6's shifted). */
static void set_bn3_stats(ct_net *net) {
  const char *const bns[] = {"bn3", "bn6"};
  for (int k = 0; k < 2; k++) {
    float *m = ct_net_param_data(net, bns[k], 0), *v = ct_net_param_data(net, bns[k], 1),
          *f = ct_net_param_data(net, bns[k], 2);
    for (int c = 0; c < 5; c++) m[c] = 0.1f * (float)(c - 2 * k), v[c] = 1.0f + 0.2f * (float)(c + k);
    f[0] = 1.0f;
  }
}

static ct_net *build_phase(bool fused, int parts, ct_phase phase) {
  ct_error err = {0};
  ct_net *net = NULL;
  set_fusion(fused);
  CHECK(ct_net_create_from_text(net_text, "fuse", dir, phase, &net, &err) == CT_OK, "%s", err.msg);
  set_fusion(true);
  if (!net) return NULL;
  set_bn3_stats(net);
  /* every blob is compared after the passes: unplanned, so a blob past its last use still holds
   * its values (a planned net reuses its storage, and the fused one plans differently: a chain
   * that recomputes its normalised input keeps its bottom until its backward). test_memplan
   * holds planned fused nets to unplanned ones. */
  CHECK(ct_net_set_memplan(net, false, &err) == CT_OK, "%s", err.msg);
  if (parts > 1) CHECK(ct_net_set_partitions(net, parts, &err) == CT_OK, "%s", err.msg);
  return net;
}

static ct_net *build(bool fused, int parts) { return build_phase(fused, parts, CT_TRAIN); }

/* TEST: every BatchNorm uses its stored statistics (`cortado test`'s outputs) */
static void test_test_phase(void) {
  ct_error err = {0};
  ct_net *f = build_phase(true, 2, CT_TEST), *u = build_phase(false, 2, CT_TEST);
  if (!f || !u) goto done;
  CHECK(ct_net_fused_chains(f) == 5, "TEST: 5 chains fuse, got %d", ct_net_fused_chains(f));
  const char *bns[] = {"bn1", "bn2", "bn4"};
  ct_net *nets[2] = {f, u};
  for (int k = 0; k < 3; k++)
    for (int q = 0; q < 2; q++) {
      float *m = ct_net_param_data(nets[q], bns[k], 0), *v = ct_net_param_data(nets[q], bns[k], 1);
      for (int c = 0; c < 5; c++) m[c] = 0.05f * (float)(c + k), v[c] = 0.5f + 0.3f * (float)c;
      ct_net_param_data(nets[q], bns[k], 2)[0] = 2.0f;
    }
  float lf = 0, lu = 0;
  CHECK(ct_net_forward(f, &lf, &err) == CT_OK && ct_net_forward(u, &lu, &err) == CT_OK, "%s", err.msg);
  double w;
  for (int i = 0; ct_net_blob_name(f, i); i++) {
    const char *name = ct_net_blob_name(f, i);
    int shape[8], na = ct_net_blob_shape(f, name, shape);
    size_t n = 1;
    for (int k = 0; k < na; k++) n *= (size_t)shape[k];
    CHECK(close_to(ct_net_blob_data(f, name), ct_net_blob_data(u, name), n, 1e-5, &w),
          "TEST: blob %s data differs by %.3g of its largest", name, w);
  }
done:
  ct_net_free(f);
  ct_net_free(u);
}

static void test_one_pass(int parts) {
  ct_error err = {0};
  ct_net *f = build(true, parts), *u = build(false, parts);
  if (!f || !u) goto done;
  CHECK(ct_net_fused_chains(f) == 5,
        "%d partitions: 5 chains fuse (bn1+sc1+relu1, bn2+sc2, bn5+sc5, bn6+sc6+relu6, bn3+sc3+relu3), got %d", parts,
        ct_net_fused_chains(f));
  CHECK(ct_net_fused_chains(u) == 0, "CT_FUSE=0 fuses nothing, got %d", ct_net_fused_chains(u));
  float lf = 0, lu = 0;
  CHECK(ct_net_forward(f, &lf, &err) == CT_OK && ct_net_backward(f, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_forward(u, &lu, &err) == CT_OK && ct_net_backward(u, &err) == CT_OK, "%s", err.msg);
  CHECK(fabs(lf - lu) <= 1e-5 * fmax(1.0, fabs(lu)), "%d partitions: loss %.9g fused, %.9g not", parts, lf, lu);
  double w;
  for (int i = 0; ct_net_blob_name(f, i); i++) {
    const char *name = ct_net_blob_name(f, i);
    int shape[8], na = ct_net_blob_shape(f, name, shape);
    size_t n = 1;
    for (int k = 0; k < na; k++) n *= (size_t)shape[k];
    CHECK(close_to(ct_net_blob_data(f, name), ct_net_blob_data(u, name), n, 1e-5, &w),
          "%d partitions: blob %s data differs by %.3g of its largest", parts, name, w);
    CHECK(close_to(ct_net_blob_diff(f, name), ct_net_blob_diff(u, name), n, 1e-5, &w),
          "%d partitions: blob %s diff differs by %.3g of its largest", parts, name, w);
  }
  /* every parameter: values (BatchNorm's running sums after the TRAIN pass) and gradients */
  const char *layers[] = {"conv1", "bn1", "sc1", "conv2", "bn2", "sc2", "bn3", "sc3", "bn4", "sc4", "fc"};
  for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++)
    for (int j = 0; j < ct_net_param_count(f, layers[k]); j++) {
      int shape[8], na = ct_net_param_shape(f, layers[k], j, shape);
      size_t n = 1;
      for (int a = 0; a < na; a++) n *= (size_t)shape[a];
      CHECK(close_to(ct_net_param_data(f, layers[k], j), ct_net_param_data(u, layers[k], j), n, 1e-5, &w),
            "%d partitions: %s blob %d differs by %.3g", parts, layers[k], j, w);
      CHECK(close_to(ct_net_param_diff(f, layers[k], j), ct_net_param_diff(u, layers[k], j), n, 1e-5, &w),
            "%d partitions: %s blob %d gradient differs by %.3g", parts, layers[k], j, w);
    }
  /* a gradient that is not zero everywhere, so that the comparison says something */
  double g = 0;
  for (int c = 0; c < 5; c++) g += fabs(ct_net_param_diff(f, "sc1", 0)[c]) + fabs(ct_net_param_diff(f, "sc3", 1)[c]);
  CHECK(g > 1e-6, "Scale's gradients are not all zero (%g)", g);
done:
  ct_net_free(f);
  ct_net_free(u);
}

static size_t blob_count(ct_net *net, const char *name) {
  int shape[8], na = ct_net_blob_shape(net, name, shape);
  size_t n = 1;
  for (int k = 0; k < na; k++) n *= (size_t)shape[k];
  return n;
}

/* Layer by layer (the Python module's forward(end=...)): a run that stops inside a chain sees
 * each layer's own output; the rest of the pass and a whole backward then agree too. */
static void test_layerwise(void) {
  ct_error err = {0};
  ct_net *f = build(true, 1), *u = build(false, 1);
  if (!f || !u) goto done;
  int stop = -1;
  for (int i = 0; i < ct_net_num_layers(f); i++)
    if (!strcmp(ct_net_layer_name(f, i), "bn1")) stop = i;
  CHECK(stop > 0, "bn1 is there");
  double w;
  for (int i = 0; i <= stop; i++)
    CHECK(ct_net_forward_layer(f, i, &err) == CT_OK && ct_net_forward_layer(u, i, &err) == CT_OK, "%s", err.msg);
  CHECK(close_to(ct_net_blob_data(f, "conv1"), ct_net_blob_data(u, "conv1"), blob_count(f, "conv1"), 1e-5, &w),
        "forward up to bn1: conv1 holds BatchNorm's output (off by %.3g)", w);
  for (int i = stop + 1; i < ct_net_num_layers(f); i++)
    CHECK(ct_net_forward_layer(f, i, &err) == CT_OK && ct_net_forward_layer(u, i, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_backward(f, &err) == CT_OK && ct_net_backward(u, &err) == CT_OK, "%s", err.msg);
  const char *check[] = {"conv1", "conv2", "bn2", "sum", "fc"};
  for (size_t k = 0; k < sizeof check / sizeof check[0]; k++) {
    const size_t n = blob_count(f, check[k]);
    CHECK(close_to(ct_net_blob_data(f, check[k]), ct_net_blob_data(u, check[k]), n, 1e-5, &w) &&
              close_to(ct_net_blob_diff(f, check[k]), ct_net_blob_diff(u, check[k]), n, 1e-5, &w),
          "layer by layer: blob %s agrees (%.3g)", check[k], w);
  }
  /* turned on, the same layer-by-layer run fuses (as `cortado time` runs it) and still agrees */
  ct_net_set_layerwise_fusion(f, true);
  for (int i = 0; i < ct_net_num_layers(f); i++)
    CHECK(ct_net_forward_layer(f, i, &err) == CT_OK && ct_net_forward_layer(u, i, &err) == CT_OK, "%s", err.msg);
  for (int i = ct_net_num_layers(f) - 1; i >= 0; i--)
    CHECK(ct_net_backward_layer(f, i, &err) == CT_OK && ct_net_backward_layer(u, i, &err) == CT_OK, "%s", err.msg);
  for (size_t k = 0; k < sizeof check / sizeof check[0]; k++) {
    const size_t n = blob_count(f, check[k]);
    CHECK(close_to(ct_net_blob_data(f, check[k]), ct_net_blob_data(u, check[k]), n, 1e-5, &w) &&
              close_to(ct_net_blob_diff(f, check[k]), ct_net_blob_diff(u, check[k]), n, 1e-5, &w),
          "layer by layer, fused: blob %s agrees (%.3g)", check[k], w);
  }
done:
  ct_net_free(f);
  ct_net_free(u);
}

static void quiet_log(void *ctx, const char *line) {
  (void)ctx;
  (void)line;
}

/* 20 SGD iterations; the weights and statistics, by learnable blob. */
static float *train(bool fused, const char *solver_path, size_t *n) {
  ct_error err = {0};
  ct_solver_options opt = {0};
  opt.log = quiet_log;
  ct_solver *s = NULL;
  set_fusion(fused);
  ct_status st = ct_solver_create(solver_path, &opt, &s, &err);
  set_fusion(true);
  CHECK(st == CT_OK, "%s", err.msg);
  if (st) return NULL;
  ct_net *net = ct_solver_net(s);
  CHECK(ct_net_fused_chains(net) == (fused ? 5 : 0), "training net: %d chains fused", ct_net_fused_chains(net));
  set_bn3_stats(net);
  CHECK(ct_solver_step(s, 20, &err) == CT_OK, "%s", err.msg);
  *n = ct_net_param_total(net);
  float *w = malloc(*n * sizeof(float));
  memcpy(w, ct_net_param_buffer(net), *n * sizeof(float));
  ct_solver_free(s);
  return w;
}

static void test_training(void) {
  char net_path[256], solver_path[256];
  snprintf(net_path, sizeof net_path, "%s/net.prototxt", dir);
  snprintf(solver_path, sizeof solver_path, "%s/solver.prototxt", dir);
  FILE *fp = fopen(net_path, "w");
  if (fp) {
    fputs(net_text, fp);
    fclose(fp);
  }
  fp = fopen(solver_path, "w");
  if (fp) {
    fprintf(fp, "net: '%s'\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: 'fixed'\n"
                "max_iter: 20\ndisplay: 0\nrandom_seed: 7\nsnapshot_after_train: false\n", net_path);
    fclose(fp);
  }
  size_t nf = 0, nu = 0;
  float *a = train(true, solver_path, &nf), *b = train(false, solver_path, &nu);
  CHECK(a && b && nf == nu, "both nets trained");
  if (a && b && nf == nu) {
    /* element by element: |a - b| <= 1e-5 max(1, |b|) */
    size_t bad = 0, at = 0;
    for (size_t i = 0; i < nf; i++)
      if (!(fabs((double)a[i] - b[i]) <= 1e-5 * fmax(1.0, fabs(b[i])))) bad++, at = i;
    CHECK(!bad, "20 iterations: %zu weights or statistics differ (e.g. %zu: %.9g fused, %.9g not)", bad, at,
          bad ? a[at] : 0.0, bad ? b[at] : 0.0);
    double moved = 0;
    for (size_t i = 0; i < nf; i++) moved += fabs(a[i]);
    CHECK(moved > 0, "the weights are not all zero");
  }
  free(a);
  free(b);
  unlink(net_path);
  unlink(solver_path);
}

/* CT_FUSE with a value it does not take is refused by name, not read as a default */
static void test_bad_switch(void) {
  setenv("CT_FUSE", "yes", 1);
  ct_net *net = NULL;
  ct_error err = {0};
  const ct_status st = ct_net_create_from_text(net_text, "fuse", dir, CT_TRAIN, &net, &err);
  unsetenv("CT_FUSE");
  CHECK(st == CT_EINVAL && !net && strstr(err.msg, "CT_FUSE") && strstr(err.msg, "'yes'"),
        "CT_FUSE=yes refused by name: status %d, %s", (int)st, err.msg);
  ct_net_free(net);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  test_bad_switch();
  test_one_pass(1);
  test_one_pass(2);
  test_layerwise();
  test_test_phase();
  test_training();
  rmdir(dir);
  return ct_check_report();
}
