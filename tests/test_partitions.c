/* CcT's partitions on whole nets (convolutions, pooling, LRN and element-wise layers all split
 * their work across the partitions, inner products on their neurons): forward outputs and every parameter gradient with 2 and 3
 * partitions equal the one-partition run within 1e-5 relative; two runs with the same
 * partitions are bit-identical; a layer's `partition { share }` entries split its batch; the
 * lowering type can be forced per layer and every type (both Winograd's too) gives the same net
 * outputs. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cortado.h"
#include "layers/conv.h"
#include "net/net.h"

static const char *net_text(const char *conv2_extra) {
  static char buf[4096];
  snprintf(buf, sizeof buf,
           "force_backward: true\n"
           "layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape { dim: 7 dim: 3 dim: 14 "
           "  dim: 13 } shape { dim: 7 } } }\n"
           "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' convolution_param { num_output: 8 "
           "  kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n"
           "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' pooling_param { pool: MAX "
           "  kernel_size: 3 stride: 2 } }\n"
           "layer { name: 'norm1' type: 'LRN' bottom: 'pool1' top: 'norm1' lrn_param { local_size: 3 } }\n"
           "layer { name: 'norm1w' type: 'LRN' bottom: 'norm1' top: 'norm1w' lrn_param { local_size: 3 "
           "  norm_region: WITHIN_CHANNEL } }\n"
           "layer { name: 'conv2' type: 'Convolution' bottom: 'norm1w' top: 'conv2' %s convolution_param { "
           "  num_output: 12 kernel_size: 3 group: 2 stride: 1 weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'conv3' type: 'Convolution' bottom: 'conv2' top: 'conv3' convolution_param { num_output: 6 "
           "  kernel_size: 1 weight_filler { type: 'xavier' } } }\n"
           /* wide enough to be split on its neurons (and on its inputs for dx), plain and transposed */
           "layer { name: 'fcw' type: 'InnerProduct' bottom: 'conv3' top: 'fcw' inner_product_param { num_output: 200 "
           "  weight_filler { type: 'xavier' } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           "layer { name: 'reluw' type: 'ReLU' bottom: 'fcw' top: 'fcw' }\n"
           "layer { name: 'fct' type: 'InnerProduct' bottom: 'fcw' top: 'fct' inner_product_param { num_output: 197 "
           "  transpose: true weight_filler { type: 'xavier' } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
           "layer { name: 'fc' type: 'InnerProduct' bottom: 'fct' top: 'fc' inner_product_param { num_output: 5 "
           "  weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc' bottom: 'label' top: 'loss' }\n",
           conv2_extra);
  return buf;
}

typedef struct result {
  int conv1_turn; /* conv1's images per lowering call */
  float loss;
  float *fc, *grad, *dx;
  size_t nfc, ngrad, ndx;
} result;

static void result_free(result *r) {
  free(r->fc);
  free(r->grad);
  free(r->dx);
}

static bool run(const char *text, int parts, result *out) {
  ct_error err = {0};
  ct_net *net = NULL;
  memset(out, 0, sizeof *out);
  if (ct_net_create_from_text(text, "parts.prototxt", NULL, CT_TRAIN, &net, &err)) {
    CHECK(0, "create: %s", err.msg);
    return false;
  }
  if (parts > 0) CHECK(ct_net_set_partitions(net, parts, &err) == CT_OK, "%s", err.msg);
  for (int i = 0; i < ct_net_num_layers(net); i++)
    if (!strcmp(ct_net_layer_name(net, i), "conv1")) out->conv1_turn = ct_conv_layer_turn_images(ct_net_layer(net, i));
  ct_rng r;
  ct_rng_seed(&r, 42);
  float *x = ct_net_blob_data(net, "data"), *y = ct_net_blob_data(net, "label");
  for (int i = 0; i < 7 * 3 * 14 * 13; i++) x[i] = ct_rng_gaussian(&r, 0, 1);
  for (int i = 0; i < 7; i++) y[i] = (float)ct_rng_below(&r, 5);
  ct_net_clear_param_diffs(net);
  CHECK(ct_net_forward(net, &out->loss, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_backward(net, &err) == CT_OK, "%s", err.msg);
  out->nfc = 35;
  out->fc = malloc(out->nfc * sizeof(float));
  memcpy(out->fc, ct_net_blob_data(net, "fc"), out->nfc * sizeof(float));
  out->ngrad = ct_net_param_total(net);
  out->grad = malloc(out->ngrad * sizeof(float));
  memcpy(out->grad, ct_net_diff_buffer(net), out->ngrad * sizeof(float));
  out->ndx = 7 * 3 * 14 * 13;
  out->dx = malloc(out->ndx * sizeof(float));
  memcpy(out->dx, ct_net_blob_diff(net, "data"), out->ndx * sizeof(float));
  ct_net_free(net);
  return true;
}

static double worst_rel(const float *a, const float *b, size_t n) {
  double scale = 0, worst = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
  for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]) / (scale > 0 ? scale : 1));
  return worst;
}

static void compare(const result *a, const result *b, double tol, const char *what) {
  CHECK_CLOSE(a->loss, b->loss, tol, 0, "%s: loss", what);
  CHECK(worst_rel(a->fc, b->fc, a->nfc) <= tol, "%s: outputs differ by %g", what, worst_rel(a->fc, b->fc, a->nfc));
  CHECK(a->ngrad == b->ngrad && worst_rel(a->grad, b->grad, a->ngrad) <= tol, "%s: parameter gradients differ by %g",
        what, worst_rel(a->grad, b->grad, a->ngrad));
  CHECK(worst_rel(a->dx, b->dx, a->ndx) <= tol, "%s: input gradients differ by %g", what,
        worst_rel(a->dx, b->dx, a->ndx));
}

int main(void) {
  result one, two, three, two_again;
  const char *text = net_text("");
  if (!run(text, 1, &one) || !run(text, 2, &two) || !run(text, 3, &three) || !run(text, 2, &two_again))
    return ct_check_report();
  compare(&one, &two, 1e-5, "2 partitions vs 1");
  compare(&one, &three, 1e-5, "3 partitions vs 1 (7 images: 3 + 2 + 2)");
  CHECK(!memcmp(two.grad, two_again.grad, two.ngrad * sizeof(float)) && two.loss == two_again.loss &&
            !memcmp(two.dx, two_again.dx, two.ndx * sizeof(float)),
        "two runs with 2 partitions are bit-identical");
  /* per-layer shares, and every lowering type forced on conv2 */
  const char *variants[] = {"partition { device: 'cpu' share: 0.7 } partition { device: 'cpu' share: 0.3 }",
                            "lowering: TYPE1", "lowering: TYPE2", "lowering: TYPE3", "lowering: WINOGRAD",
                            "lowering: WINOGRAD4"};
  for (int v = 0; v < 6; v++) {
    result r;
    if (!run(net_text(variants[v]), 2, &r)) continue;
    compare(&one, &r, 1e-5, variants[v]); /* WINOGRAD4: 1.6e-6 at most */
    result_free(&r);
  }
  /* a workspace cap (CT_CONV_WORKSPACE_MB) that one image's lowering just fits: the partitions
   * lower image by image, the backward lowers again; the same results */
  CHECK(one.conv1_turn == 7 && two.conv1_turn == 4, "uncapped: conv1 lowers a partition at once (%d, %d)",
        one.conv1_turn, two.conv1_turn);
  setenv("CT_CONV_WORKSPACE_MB", "0.03", 1);
  result capped;
  if (run(net_text(""), 2, &capped)) {
    CHECK(capped.conv1_turn == 1, "capped: conv1 lowers %d images at a time, expected 1", capped.conv1_turn);
    compare(&one, &capped, 1e-5, "2 partitions, workspace capped");
    result_free(&capped);
  }
  setenv("CT_CONV_WORKSPACE_MB", "lots", 1);
  ct_net *bad = NULL;
  ct_error berr = {0};
  ct_status bst = ct_net_create_from_text(net_text(""), "p", NULL, CT_TRAIN, &bad, &berr);
  CHECK(bst == CT_EINVAL && strstr(berr.msg, "CT_CONV_WORKSPACE_MB=lots") && strstr(berr.msg, "megabytes"),
        "a bad CT_CONV_WORKSPACE_MB: %s", berr.msg);
  ct_net_free(bad);
  unsetenv("CT_CONV_WORKSPACE_MB");
  /* the CPU driver's 1x1 switch: 0 or 1, nothing else */
  setenv("CT_PW_KERNEL", "yes", 1);
  bad = NULL;
  bst = ct_net_create_from_text(net_text(""), "p", NULL, CT_TRAIN, &bad, &berr);
  CHECK(bst == CT_EINVAL && strstr(berr.msg, "CT_PW_KERNEL=yes") && strstr(berr.msg, "expected 0 or 1"),
        "a bad CT_PW_KERNEL: %s", berr.msg);
  ct_net_free(bad);
  unsetenv("CT_PW_KERNEL");
  /* a device this build cannot drive is an error naming the layer */
  ct_net *net = NULL;
  ct_error err = {0};
  ct_status st = ct_net_create_from_text(net_text("partition { device: 'cuda:0' share: 1 }"), "p", NULL, CT_TRAIN,
                                         &net, &err);
  CHECK(st == CT_EUNSUPPORTED && strstr(err.msg, "conv2") && strstr(err.msg, "cuda:0"), "cuda partition: %s",
        err.msg);
  ct_net_free(net);
  /* WINOGRAD forced where it does not apply: an error naming the layer and the kernel */
  net = NULL;
  st = ct_net_create_from_text("layer { name: 'in' type: 'Input' top: 'd' input_param { shape { dim: 1 dim: 1 dim: 8 "
                               "dim: 8 } } }\nlayer { name: 'c5' type: 'Convolution' bottom: 'd' top: 'c' lowering: "
                               "WINOGRAD convolution_param { num_output: 2 kernel_size: 5 } }\n",
                               "w", NULL, CT_TRAIN, &net, &err);
  CHECK(st == CT_EINVAL && net == NULL && strstr(err.msg, "c5") && strstr(err.msg, "WINOGRAD") && strstr(err.msg, "5x5"),
        "WINOGRAD on a 5x5 kernel: %s", err.msg);
  ct_net_free(net);
  net = NULL;
  st = ct_net_create_from_text("layer { name: 'in' type: 'Input' top: 'd' input_param { shape { dim: 1 dim: 1 dim: 8 "
                               "dim: 8 } } }\nlayer { name: 'c5' type: 'Convolution' bottom: 'd' top: 'c' lowering: "
                               "WINOGRAD4 convolution_param { num_output: 2 kernel_size: 5 } }\n",
                               "w", NULL, CT_TRAIN, &net, &err);
  CHECK(st == CT_EINVAL && net == NULL && strstr(err.msg, "c5") && strstr(err.msg, "WINOGRAD4") &&
            strstr(err.msg, "5x5"),
        "WINOGRAD4 on a 5x5 kernel: %s", err.msg);
  ct_net_free(net);
  result_free(&one);
  result_free(&two);
  result_free(&three);
  result_free(&two_again);
  return ct_check_report();
}
