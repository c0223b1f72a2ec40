/* Caffe's leniencies (issue 21), as Caffe has them:
 *  - two layers may share a name (mnist_autoencoder has two "loss" layers); weights, shared
 *    train/test values and saved layer state still find the right layer, in order;
 *  - a loss layer given no top gets one (Caffe's AutoTopBlobs): it counts in the loss but is no
 *    output of the net and is not written into saved files;
 *  - Caffe forks' pooling_param { ceil_mode } is round_mode in other words;
 *  - a layer's own `phase` wins over the net's; the net file's own `state` adds its stages;
 *  - debug_info logs Caffe's [Forward] / [Backward] lines with the blobs' mean absolute values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "cortado.pb-c.h"
#include "net/net.h"
#include "proto/prototxt.h"

static ct_net *make(const char *text, ct_phase phase, ct_error *err) {
  ct_net *net = NULL;
  memset(err, 0, sizeof *err);
  ct_net_create_from_text(text, "compat.prototxt", NULL, phase, &net, err);
  return net;
}

static void fill(ct_net *net, const char *blob, unsigned seed) {
  int shape[8], n = ct_net_blob_shape(net, blob, shape);
  size_t c = 1;
  for (int i = 0; i < n; i++) c *= (size_t)shape[i];
  float *x = ct_net_blob_data(net, blob);
  for (size_t i = 0; i < c; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (float)((seed >> 8) % 1000) / 500.0f - 1.0f;
  }
}

static bool has_output(ct_net *net, const char *name) {
  for (int i = 0; i < ct_net_num_outputs(net); i++)
    if (!strcmp(ct_net_output_name(net, i), name)) return true;
  return false;
}

/* mnist_autoencoder's two "loss" layers: a sigmoid cross-entropy that trains, an L2 error that is
 * only reported (loss_weight 0) */
static const char k_autoencoder[] =
    "layer { name: 'in' type: 'Input' top: 'x' top: 'target' input_param { shape { dim: 3 dim: 4 } } }\n"
    "layer { name: 'decode' type: 'InnerProduct' bottom: 'x' top: 'decode' inner_product_param { num_output: 4 "
    "weight_filler { type: 'gaussian' std: 0.5 } } }\n"
    "layer { name: 'neuron' type: 'Sigmoid' bottom: 'decode' top: 'neuron' }\n"
    "layer { name: 'loss' type: 'SigmoidCrossEntropyLoss' bottom: 'decode' bottom: 'target' top: 'cross_entropy' "
    "loss_weight: 1 }\n"
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'neuron' bottom: 'target' top: 'l2_error' loss_weight: 0 }\n";

static void test_duplicate_names(void) {
  ct_error err;
  ct_net *net = make(k_autoencoder, CT_TRAIN, &err);
  CHECK(net, "mnist_autoencoder's two \"loss\" layers build: %s", err.msg);
  if (!net) return;
  int nloss = 0;
  for (int i = 0; i < ct_net_num_layers(net); i++) nloss += !strcmp(ct_net_layer_name(net, i), "loss");
  CHECK(nloss == 2, "both layers named loss are there (%d)", nloss);
  fill(net, "x", 1);
  float *t = ct_net_blob_data(net, "target");
  for (int i = 0; i < 12; i++) t[i] = (float)(i % 2);
  float total;
  CHECK(ct_net_forward(net, &total, &err) == CT_OK, "forward: %s", err.msg);
  float ce = ct_net_blob_data(net, "cross_entropy")[0], l2 = ct_net_blob_data(net, "l2_error")[0];
  CHECK(has_output(net, "cross_entropy") && has_output(net, "l2_error"), "both are outputs");
  CHECK(fabsf(total - ce) <= 1e-6f * fabsf(ce) && l2 > 0, "the loss is the weighted one's alone: %g vs %g (l2 %g)",
        total, ce, l2);
  ct_net_free(net);

  /* two layers with weights and one name: a net's own weights come back where they were */
  const char *twin =
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'a' inner_product_param { num_output: 5 "
      "weight_filler { type: 'gaussian' } } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'a' top: 'b' inner_product_param { num_output: 2 "
      "weight_filler { type: 'gaussian' } } }\n";
  ct_net *a = make(twin, CT_TEST, &err);
  CHECK(a, "twins build: %s", err.msg);
  if (!a) return;
  ct_net_set_seed(a, 5);
  char path[] = "/tmp/ct_compat_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  fill(a, "x", 3);
  ct_net_forward(a, NULL, &err);
  float want[2] = {ct_net_blob_data(a, "b")[0], ct_net_blob_data(a, "b")[1]};
  CHECK(ct_net_save_weights(a, path, &err) == CT_OK, "save: %s", err.msg);
  ct_net *b = make(twin, CT_TEST, &err); /* other random weights */
  CHECK(b && ct_net_load_weights(b, path, &err) == CT_OK, "the twins' weights load: %s", err.msg);
  if (b) {
    fill(b, "x", 3);
    ct_net_forward(b, NULL, &err);
    CHECK(ct_net_blob_data(b, "b")[0] == want[0] && ct_net_blob_data(b, "b")[1] == want[1],
          "each twin got its own weights back");
    ct_net *c = make(twin, CT_TEST, &err);
    CHECK(c && ct_net_share_weights_from(c, b, &err) == CT_OK, "sharing between twins: %s", err.msg);
    if (c) {
      fill(c, "x", 3);
      ct_net_forward(c, NULL, &err);
      CHECK(ct_net_blob_data(c, "b")[0] == want[0], "each twin shares its own counterpart");
    }
    ct_net_free(c);
  }
  unlink(path);
  ct_net_free(a);
  ct_net_free(b);
}

/* ------------------------------------------------------------------ automatic tops */

static const char k_auto_base[] =
    "layer { name: 'in' type: 'Input' top: 'x' top: 'label' input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } "
    "} }\n"
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'ip' inner_product_param { num_output: 5 "
    "weight_filler { type: 'gaussian' } } }\n";

static void run_auto(const char *loss_layer, float *loss, float *grad, ct_net **keep) {
  char text[2048];
  snprintf(text, sizeof text, "%s%s", k_auto_base, loss_layer);
  ct_error err;
  ct_net *net = make(text, CT_TRAIN, &err);
  CHECK(net, "%s: %s", loss_layer, err.msg);
  *loss = NAN;
  if (!net) return;
  ct_net_set_seed(net, 9);
  fill(net, "x", 7);
  float *y = ct_net_blob_data(net, "label");
  for (int i = 0; i < 4; i++) y[i] = (float)i;
  ct_net_clear_param_diffs(net);
  CHECK(ct_net_forward(net, loss, &err) == CT_OK && ct_net_backward(net, &err) == CT_OK, "run: %s", err.msg);
  *grad = ct_net_param_diff(net, "ip", 0)[3];
  *keep = net;
}

static void test_auto_tops(void) {
  float named, named_g, bare, bare_g, half, half_g;
  ct_net *a = NULL, *b = NULL, *c = NULL;
  run_auto("layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' }", &named, &named_g,
           &a);
  run_auto("layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' }", &bare, &bare_g, &b);
  run_auto("layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' loss_weight: 0.5 }", &half,
           &half_g, &c);
  CHECK(named > 0 && bare == named && bare_g == named_g, "a loss without a top counts as with one: %g %g, %g %g",
        named, bare, named_g, bare_g);
  CHECK(fabsf(half - 0.5f * named) < 1e-6f && fabsf(half_g - 0.5f * named_g) < 1e-7f,
        "its loss_weight applies: %g %g", half, half_g);
  if (b) {
    CHECK(ct_net_num_outputs(b) == 0, "the automatic top is no output (%d outputs)", ct_net_num_outputs(b));
    int shape[8];
    CHECK(ct_net_blob_shape(b, "(automatic)", shape) == 0, "it is a blob named (automatic)");
    char path[] = "/tmp/ct_compat_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ct_error err;
    CHECK(ct_net_save_weights(b, path, &err) == CT_OK, "save: %s", err.msg);
    ProtobufCMessage *m = NULL;
    CHECK(ct_proto_read_binary(path, &caffe__net_parameter__descriptor, &m, &err) == CT_OK, "read back: %s", err.msg);
    if (m) {
      const Caffe__NetParameter *p = (const Caffe__NetParameter *)m;
      CHECK(p->n_layer == 3 && p->layer[2]->n_top == 0, "the saved loss layer has no top, as written");
      protobuf_c_message_free_unpacked(m, NULL);
    }
    unlink(path);
  }
  ct_net_free(a);
  ct_net_free(b);
  ct_net_free(c);
}

/* ------------------------------------------------------------------ ceil_mode */

static int pooled_width(const char *pooling, ct_error *err) {
  char text[1024];
  snprintf(text, sizeof text,
           "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 1 dim: 1 dim: 6 dim: 6 } } }\n"
           "layer { name: 'p' type: 'Pooling' bottom: 'x' top: 'p' pooling_param { kernel_size: 3 stride: 2 %s } }\n",
           pooling);
  ct_net *net = make(text, CT_TEST, err);
  int shape[8] = {0};
  if (net) ct_net_blob_shape(net, "p", shape);
  ct_net_free(net);
  return net ? shape[3] : -1;
}

static void test_ceil_mode(void) {
  ct_error err;
  const int ceil_w = pooled_width("", &err), floor_w = pooled_width("round_mode: FLOOR", &err);
  CHECK(ceil_w == 3 && floor_w == 2, "CEIL and FLOOR differ here: %d %d", ceil_w, floor_w);
  CHECK(pooled_width("ceil_mode: false", &err) == floor_w, "ceil_mode: false is FLOOR: %s", err.msg);
  CHECK(pooled_width("ceil_mode: true", &err) == ceil_w, "ceil_mode: true is CEIL: %s", err.msg);
  CHECK(pooled_width("ceil_mode: false round_mode: FLOOR", &err) == floor_w, "agreeing spellings: %s", err.msg);
  CHECK(pooled_width("ceil_mode: true round_mode: FLOOR", &err) < 0 && strstr(err.msg, "compat.prototxt:2:") &&
            strstr(err.msg, "ceil_mode: true and round_mode: FLOOR, which disagree"),
        "disagreeing spellings are refused: %s", err.msg);
}

/* ------------------------------------------------------------------ phase and state */

static void test_phase_and_state(void) {
  const char *text =
      "state { stage: 'extra' }\n"
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 50 } } }\n"
      "layer { name: 'drop' type: 'Dropout' bottom: 'x' top: 'y' phase: TEST }\n"
      "layer { name: 'staged' type: 'AbsVal' bottom: 'y' top: 'z' include { stage: 'extra' } }\n";
  ct_error err;
  ct_net *net = make(text, CT_TRAIN, &err);
  CHECK(net, "build: %s", err.msg);
  if (!net) return;
  fill(net, "x", 11);
  CHECK(ct_net_forward(net, NULL, &err) == CT_OK, "forward: %s", err.msg);
  const float *x = ct_net_blob_data(net, "x"), *y = ct_net_blob_data(net, "y");
  bool same = true;
  for (int i = 0; i < 100; i++) same &= x[i] == y[i];
  CHECK(same, "a Dropout with phase: TEST passes its input through in a TRAIN net");
  int shape[8];
  CHECK(ct_net_blob_shape(net, "z", shape) == 2, "the file's own state adds stage 'extra'");
  ct_net_free(net);
}

/* ------------------------------------------------------------------ debug_info */

typedef struct lines {
  char text[8192];
  int n;
} lines;

static void collect(void *ctx, const char *line) {
  lines *l = ctx;
  size_t used = strlen(l->text);
  snprintf(l->text + used, sizeof l->text - used, "%s\n", line);
  l->n++;
}

static void test_debug_info(void) {
  const char *text =
      "debug_info: true\n"
      "layer { name: 'in' type: 'Input' top: 'x' top: 't' input_param { shape { dim: 2 dim: 3 } } }\n"
      "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'ip' param { name: 'w' } inner_product_param { "
      "num_output: 3 weight_filler { type: 'constant' value: -0.5 } bias_filler { type: 'constant' value: 0.25 } } }\n"
      "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'ip' bottom: 't' top: 'loss' }\n";
  ct_error err;
  ct_net *net = make(text, CT_TRAIN, &err);
  CHECK(net && ct_net_debug(net), "debug_info: true turns it on: %s", err.msg);
  if (!net) return;
  lines out = {{0}, 0};
  ct_net_set_debug(net, true, collect, &out);
  float *x = ct_net_blob_data(net, "x"), *t = ct_net_blob_data(net, "t");
  for (int i = 0; i < 6; i++) x[i] = (float)(i + 1), t[i] = 0;
  CHECK(ct_net_forward(net, NULL, &err) == CT_OK && ct_net_backward(net, &err) == CT_OK, "run: %s", err.msg);
  /* ip = -0.5 * (sum of the row) + 0.25: rows 1+2+3 and 4+5+6 give -2.75 and -7.25 */
  CHECK(strstr(out.text, "    [Forward] Layer ip, top blob ip data: 5\n"), "the top's mean |value|: %s", out.text);
  CHECK(strstr(out.text, "    [Forward] Layer ip, param blob w data: 0.5\n") &&
            strstr(out.text, "    [Forward] Layer ip, param blob 1 data: 0.25\n"),
        "parameters by name, else index: %s", out.text);
  CHECK(strstr(out.text, "    [Backward] Layer loss, bottom blob ip diff: 2.5\n") &&
            strstr(out.text, "    [Backward] Layer ip, param blob 0 diff:"),
        "the backward lines: %s", out.text);
  ct_net_set_debug(net, false, NULL, NULL);
  int before = out.n;
  ct_net_forward(net, NULL, &err);
  CHECK(out.n == before, "off is off");
  ct_net_free(net);
}

/* A V1 net handed over already parsed (the cluster's path) is upgraded on a copy. */
static void test_v1_from_param(void) {
  const char *text = "input: 'x' input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 1\n"
                     "layers { name: 'r' type: RELU bottom: 'x' top: 'y' }\n";
  ProtobufCMessage *m = NULL;
  ct_error err = {0};
  CHECK(ct_prototxt_parse(text, strlen(text), "v1.prototxt", &caffe__net_parameter__descriptor, &m, &err) == CT_OK,
        "parse: %s", err.msg);
  if (!m) return;
  ct_net *net = NULL;
  CHECK(ct_net_create_from_param((Caffe__NetParameter *)m, "v1.prototxt", "", CT_TEST, 0, NULL, 1, &net, &err) ==
            CT_OK,
        "a parsed V1 net builds: %s", err.msg);
  CHECK(((Caffe__NetParameter *)m)->n_layers == 1, "the caller's message is left as it was");
  if (net) {
    CHECK(ct_net_num_layers(net) == 2 && !strcmp(ct_net_layer_type(net, 1), "ReLU"), "Input + ReLU");
    float *x = ct_net_blob_data(net, "x");
    x[0] = -1, x[1] = 2;
    CHECK(ct_net_forward(net, NULL, &err) == CT_OK && ct_net_blob_data(net, "y")[0] == 0 &&
              ct_net_blob_data(net, "y")[1] == 2,
          "it runs: %s", err.msg);
  }
  ct_net_free(net);
  protobuf_c_message_free_unpacked(m, NULL);
}

int main(void) {
  test_v1_from_param();
  test_duplicate_names();
  test_auto_tops();
  test_ceil_mode();
  test_phase_and_state();
  test_debug_info();
  return ct_check_report();
}
