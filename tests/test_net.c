/* Net construction and execution through the public API: phase rules, splits, in-place layers,
 * backward pruning, parameter packing and sharing, a whole-net numerical gradient check,
 * .caffemodel round trips and construction errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"

static ct_net *make(const char *text, ct_phase phase, ct_error *err) {
  ct_net *net = NULL;
  memset(err, 0, sizeof *err);
  ct_net_create_from_text(text, "test.prototxt", NULL, phase, &net, err);
  return net;
}

static bool has_layer(const ct_net *net, const char *name) {
  for (int i = 0; i < ct_net_num_layers(net); i++)
    if (!strcmp(ct_net_layer_name(net, i), name)) return true;
  return false;
}

static const char *phase_net =
    "name: 'phases'\n"
    "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n"
    "layer { name: 'train_only' type: 'ReLU' bottom: 'x' top: 'a' include { phase: TRAIN } }\n"
    "layer { name: 'test_only' type: 'ReLU' bottom: 'x' top: 'a' include { phase: TEST } }\n"
    "layer { name: 'not_test' type: 'Sigmoid' bottom: 'x' top: 'b' exclude { phase: TEST } }\n"
    "layer { name: 'staged' type: 'TanH' bottom: 'x' top: 'c' include { stage: 'deploy' } }\n"
    "layer { name: 'leveled' type: 'AbsVal' bottom: 'x' top: 'd' include { min_level: 1 } }\n";

static void test_phases(void) {
  ct_error err;
  ct_net *tr = make(phase_net, CT_TRAIN, &err);
  CHECK(tr, "train net: %s", err.msg);
  ct_net *te = make(phase_net, CT_TEST, &err);
  CHECK(te, "test net: %s", err.msg);
  if (!tr || !te) return;
  CHECK(has_layer(tr, "train_only") && !has_layer(tr, "test_only") && has_layer(tr, "not_test"), "train filter");
  CHECK(!has_layer(te, "train_only") && has_layer(te, "test_only") && !has_layer(te, "not_test"), "test filter");
  CHECK(!has_layer(tr, "staged") && !has_layer(tr, "leveled"), "stage and level rules exclude by default");
  ct_net_free(tr);
  ct_net_free(te);
  /* stages and levels through ct_net_create */
  char path[] = "/tmp/ct_phases_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0) return;
  CHECK(write(fd, phase_net, strlen(phase_net)) == (ssize_t)strlen(phase_net), "write");
  close(fd);
  const char *stages[] = {"deploy", NULL};
  ct_net *st = NULL;
  CHECK(ct_net_create(path, CT_TEST, 1, stages, NULL, &st, &err) == CT_OK, "%s", err.msg);
  if (st) {
    CHECK(has_layer(st, "staged") && has_layer(st, "leveled"), "stage 'deploy' and level 1 include their layers");
    ct_net_free(st);
  }
  unlink(path);
}

static void test_splits_and_inplace(void) {
  ct_error err;
  ct_net *net = make(
      "layer { name: 'in' type: 'Input' top: 'x' top: 'y' input_param { shape { dim: 4 dim: 5 } "
      "  shape { dim: 4 dim: 3 } } }\n"
      "layer { name: 'fc' type: 'InnerProduct' bottom: 'x' top: 'h' inner_product_param { num_output: 3 "
      "  weight_filler { type: 'gaussian' std: 0.1 } } }\n"
      "layer { name: 'relu' type: 'ReLU' bottom: 'h' top: 'h' }\n"
      "layer { name: 'a' type: 'Sigmoid' bottom: 'h' top: 'ha' }\n"
      "layer { name: 'b' type: 'TanH' bottom: 'h' top: 'hb' }\n"
      "layer { name: 'sum' type: 'Eltwise' bottom: 'ha' bottom: 'hb' top: 's' }\n"
      "layer { name: 'loss' type: 'EuclideanLoss' bottom: 's' bottom: 'y' top: 'loss' }\n",
      CT_TRAIN, &err);
  CHECK(net, "%s", err.msg);
  if (!net) return;
  CHECK(has_layer(net, "h_relu_0_split"), "split after the in-place ReLU named as Caffe names it");
  CHECK(ct_net_blob_data(net, "h_relu_0_split_0") && ct_net_blob_data(net, "h_relu_0_split_1"), "split tops exist");
  CHECK(!has_layer(net, "x_in_0_split"), "no split for a single consumer");
  CHECK(ct_net_num_outputs(net) == 1 && !strcmp(ct_net_output_name(net, 0), "loss"), "one output: loss");
  ct_net_free(net);
}

/* Whole-net check: analytic parameter gradients (backward through splits, in-place layers,
 * shared parameters and loss weights) against central differences of the net's loss. */
static void test_net_gradient(void) {
  ct_error err;
  ct_net *net = make(
      "force_backward: true\n"
      "layer { name: 'in' type: 'Input' top: 'x' top: 'y' input_param { shape { dim: 3 dim: 4 } } }\n"
      "layer { name: 'fc1' type: 'InnerProduct' bottom: 'x' top: 'h' param { name: 'shared_w' } "
      "  param { lr_mult: 2 } inner_product_param { num_output: 4 weight_filler { type: 'gaussian' std: 0.5 } "
      "  bias_filler { type: 'gaussian' std: 0.5 } } }\n"
      "layer { name: 'act' type: 'TanH' bottom: 'h' top: 'h' }\n"
      "layer { name: 'fc2' type: 'InnerProduct' bottom: 'h' top: 'h2' param { name: 'shared_w' } "
      "  inner_product_param { num_output: 4 bias_term: false } }\n"
      "layer { name: 'mix' type: 'Eltwise' bottom: 'h' bottom: 'h2' top: 'm' eltwise_param { coeff: 0.5 coeff: 2 } }\n"
      "layer { name: 'l1' type: 'EuclideanLoss' bottom: 'm' bottom: 'y' top: 'l1' }\n"
      "layer { name: 'l2' type: 'EuclideanLoss' bottom: 'h' bottom: 'y' top: 'l2' loss_weight: 0.3 }\n",
      CT_TRAIN, &err);
  CHECK(net, "%s", err.msg);
  if (!net) return;
  CHECK(ct_net_param_data(net, "fc1", 0) == ct_net_param_data(net, "fc2", 0), "shared weights share storage");
  CHECK(ct_net_num_learnable(net) == 2, "two learnable parameters (shared weight, fc1 bias), got %d",
        ct_net_num_learnable(net));
  float *buf = ct_net_param_buffer(net);
  CHECK(ct_net_param_data(net, "fc1", 1) >= buf && ct_net_param_data(net, "fc1", 1) < buf + ct_net_param_total(net),
        "parameters live in the one flat buffer");
  ct_rng r;
  ct_rng_seed(&r, 5);
  float *x = ct_net_blob_data(net, "x"), *y = ct_net_blob_data(net, "y");
  for (int i = 0; i < 12; i++) {
    x[i] = ct_rng_gaussian(&r, 0, 1);
    y[i] = ct_rng_gaussian(&r, 0, 1);
  }
  float loss;
  ct_net_clear_param_diffs(net);
  CHECK(ct_net_forward(net, &loss, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_backward(net, &err) == CT_OK, "%s", err.msg);
  size_t total = ct_net_param_total(net);
  float *grad = malloc(total * sizeof(float));
  memcpy(grad, ct_net_diff_buffer(net), total * sizeof(float));
  const ct_param_range *lp = ct_net_learnable(net);
  int bad = 0;
  for (int p = 0; p < ct_net_num_learnable(net); p++)
    for (size_t k = 0; k < lp[p].count; k++) {
      float *w = buf + lp[p].offset + k, w0 = *w;
      float fp, fm;
      *w = w0 + 1e-2f;
      ct_net_forward(net, &fp, &err);
      *w = w0 - 1e-2f;
      ct_net_forward(net, &fm, &err);
      *w = w0;
      double num = ((double)fp - fm) / 2e-2, a = grad[lp[p].offset + k];
      double scale = fabs(num) > 1 ? fabs(num) : 1;
      if (fabs(num - a) > 2e-2 * scale && bad++ < 5)
        CHECK(0, "param %d elem %zu: analytic %g numeric %g", p, k, a, num);
      else
        ct_checks_passed++;
    }
  /* the x input gets a gradient because of force_backward */
  CHECK(ct_net_blob_diff(net, "x") != NULL, "input diff exists");
  free(grad);
  ct_net_free(net);
}

static void test_backward_pruning(void) {
  ct_error err;
  ct_net *net = make(
      "layer { name: 'in' type: 'Input' top: 'x' top: 'label' input_param { shape { dim: 4 dim: 6 } "
      "  shape { dim: 4 } } }\n"
      "layer { name: 'fc' type: 'InnerProduct' bottom: 'x' top: 'fc' inner_product_param { num_output: 3 } }\n"
      "layer { name: 'acc' type: 'Accuracy' bottom: 'fc' bottom: 'label' top: 'acc' }\n"
      "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc' bottom: 'label' top: 'loss' }\n",
      CT_TRAIN, &err);
  CHECK(net, "%s", err.msg);
  if (!net) return;
  ct_layer *acc = NULL, *fc = NULL;
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    if (!strcmp(ct_net_layer_name(net, i), "acc")) acc = ct_net_layer(net, i);
    if (!strcmp(ct_net_layer_name(net, i), "fc")) fc = ct_net_layer(net, i);
  }
  CHECK(acc && !acc->propagate_down[0], "accuracy propagates nothing");
  CHECK(fc && !fc->propagate_down[0], "no gradient for the input data without force_backward");
  CHECK(ct_net_num_outputs(net) == 2, "outputs: acc and loss");
  ct_net_free(net);
}

static void test_caffemodel_roundtrip(void) {
  const char *text =
      "name: 'rt'\n"
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }\n"
      "layer { name: 'conv' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 4 "
      "  kernel_size: 3 weight_filler { type: 'xavier' } bias_filler { type: 'uniform' } } }\n"
      "layer { name: 'fc' type: 'InnerProduct' bottom: 'c' top: 'f' inner_product_param { num_output: 5 "
      "  weight_filler { type: 'msra' } } }\n";
  ct_error err;
  ct_net *a = make(text, CT_TEST, &err);
  ct_net *b = make(text, CT_TEST, &err);
  CHECK(a && b, "%s", err.msg);
  if (!a || !b) return;
  ct_net_set_seed(b, 77);
  float *bw = ct_net_param_data(b, "conv", 0);
  bw[0] += 1.0f; /* make b differ */
  char path[] = "/tmp/ct_rt_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  CHECK(ct_net_save_weights(a, path, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_load_weights(b, path, &err) == CT_OK, "%s", err.msg);
  for (int j = 0; j < 2; j++) {
    int shape[8], n = ct_net_param_shape(a, "conv", j, shape);
    size_t c = 1;
    for (int k = 0; k < n; k++) c *= (size_t)shape[k];
    CHECK(!memcmp(ct_net_param_data(a, "conv", j), ct_net_param_data(b, "conv", j), c * sizeof(float)),
          "conv blob %d identical after load", j);
  }
  /* a second save of the loaded net gives the same bytes */
  char path2[] = "/tmp/ct_rt2_XXXXXX";
  fd = mkstemp(path2);
  close(fd);
  CHECK(ct_net_save_weights(b, path2, &err) == CT_OK, "%s", err.msg);
  FILE *f1 = fopen(path, "rb"), *f2 = fopen(path2, "rb");
  int same = f1 && f2;
  for (int c1 = 0, c2 = 0; same && c1 != EOF;) {
    c1 = fgetc(f1);
    c2 = fgetc(f2);
    same = c1 == c2;
  }
  CHECK(same, "saved files identical");
  if (f1) fclose(f1);
  if (f2) fclose(f2);
  /* a net with a different conv shape refuses the weights, naming the layer */
  ct_net *c = make(
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }\n"
      "layer { name: 'conv' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 6 "
      "  kernel_size: 3 } }\n",
      CT_TEST, &err);
  CHECK(c && ct_net_load_weights(c, path, &err) == CT_ESHAPE && strstr(err.msg, "conv"), "shape mismatch: %s",
        err.msg);
  CHECK(ct_net_load_weights(a, "/nonexistent/w.caffemodel", &err) != CT_OK && strstr(err.msg, "/nonexistent"),
        "missing file named: %s", err.msg);
  ct_net_free(c);
  unlink(path);
  unlink(path2);
  ct_net_free(a);
  ct_net_free(b);
}

static void expect_error(const char *text, ct_status want, const char *phrase) {
  ct_error err;
  ct_net *net = make(text, CT_TRAIN, &err);
  CHECK(!net && err.status == want && strstr(err.msg, phrase), "want status %d with '%s', got %d: %s", want, phrase,
        err.status, err.msg);
  ct_net_free(net);
}

static void test_errors(void) {
  const char *in = "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n";
  char buf[1024];
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'nope' top: 'y' }", in);
  expect_error(buf, CT_EINVAL, "\"nope\"");
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'Relu' bottom: 'x' top: 'y' }", in);
  expect_error(buf, CT_EUNSUPPORTED, "unknown type \"Relu\"");
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' convolution_param { num_output: 2 } }",
           in);
  expect_error(buf, CT_EINVAL, "convolution_param is not read by ReLU layers");
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' }\n"
                            "layer { name: 's' type: 'Sigmoid' bottom: 'x' top: 'y' }", in);
  expect_error(buf, CT_EINVAL, "already produced");
  snprintf(buf, sizeof buf, "%slayer { name: 'c' type: 'InnerProduct' bottom: 'x' top: 'x' inner_product_param { num_output: 2 } }", in);
  expect_error(buf, CT_EINVAL, "in place");
  snprintf(buf, sizeof buf, "%slayer { name: 'e' type: 'EuclideanLoss' bottom: 'x' top: 'l' }", in);
  expect_error(buf, CT_EINVAL, "bottom blob");
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' loss_weight: 1 loss_weight: 2 }",
           in);
  expect_error(buf, CT_EINVAL, "loss_weight");
  expect_error("layers { name: 'old' type: 4 }", CT_EINVAL, "takes at least 1 bottom blob");
  expect_error("layers { name: 'old' type: CONVOLUTION bottom: 'x' top: 'c' }\nlayer { name: 'n' type: 'ReLU' }",
               CT_EINVAL, "both `layer { }` (current) and `layers { }` (V1)");
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' include { phase: TRAIN } "
                            "exclude { phase: TEST } }", in);
  expect_error(buf, CT_EINVAL, "both include and exclude");
  expect_error("layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: -2 } } }", CT_ESHAPE, "-2");
}

/* Name lookups are hashed: a net of 40,000 layers (a ReLU chain, every blob also feeding one
 * Eltwise layer far down the chain, and a fan-out of one blob to 2,000 layers) builds, with the
 * right splits and outputs. Lookups by linear scan took 27 s for such a size, and grew with its
 * square; today it takes a few seconds (printed). */
static void test_build_scale(void) {
  enum { CHAIN = 38000, FAN = 2000 };
  size_t cap = (size_t)(CHAIN + FAN) * 112 + 4096, len = 0;
  char *text = malloc(cap);
  if (!text) return;
  len += (size_t)snprintf(text + len, cap - len, "name: 'deep'\nlayer { name: 'in' type: 'Input' top: 'x0' "
                                                 "input_param { shape { dim: 2 dim: 3 } } }\n");
  for (int i = 1; i < CHAIN; i++)
    len += (size_t)snprintf(text + len, cap - len, "layer { name: 'r%d' type: 'ReLU' bottom: 'x%d' top: 'x%d' }\n", i,
                            i - 1, i);
  /* the first blobs again, at the end: a backward scan for their producer walks the whole net */
  for (int i = 0; i < FAN; i++)
    len += (size_t)snprintf(text + len, cap - len, "layer { name: 'f%d' type: 'Eltwise' bottom: 'x%d' bottom: 'x%d' "
                            "top: 'f%d' }\n", i, i, CHAIN - 1, i);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ct_error err;
  ct_net *net = make(text, CT_TRAIN, &err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  CHECK(net, "the deep net: %s", err.msg);
  if (net) {
    /* each x0..x1999 and the chain's end feed a Split; the chain's end has FAN + 0 consumers */
    CHECK(ct_net_num_layers(net) == CHAIN + FAN + FAN + 1, "%d layers", ct_net_num_layers(net));
    CHECK(ct_net_num_outputs(net) == FAN, "%d outputs, want the %d Eltwise tops", ct_net_num_outputs(net), FAN);
    int shape[8];
    CHECK(ct_net_blob_shape(net, "f1999", shape) == 2 && shape[1] == 3, "f1999 found with its shape");
  }
  /* the time is reported, not asserted (no timing checks in unit tests): bench/deep_net_bench.sh
   * times 100k layers */
  printf("a net of %d layers built in %.2f s\n", CHAIN + FAN, s);
  ct_net_free(net);
  free(text);
}

int main(void) {
  test_phases();
  test_splits_and_inplace();
  test_net_gradient();
  test_backward_pruning();
  test_caffemodel_roundtrip();
  test_errors();
  test_build_scale();
  return ct_check_report();
}
