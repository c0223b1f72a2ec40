/* Issue 19: CaffeNet's shape (reduced input) with the "one weird trick" plan: the convolutions
 * on dim 0, fc6 / fc7 on dim 1 and fc8 pinned to the last worker. Twenty iterations of
 * momentum SGD on 2 and 4 workers end with the parameters of the unpartitioned net (1e-4);
 * the snapshot a partitioned run writes is whole (the unpartitioned net resumes from it, and so
 * does another partitioning) and the resumed runs end where the straight ones do. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"

static char g_dir[64];

static const char *k_net =
    "name: 'caffenet_small'\n%s\n"
    "layer { name: 'data' type: 'DummyData' top: 'data' top: 'label' dummy_data_param {\n"
    "  shape { dim: 8 dim: 3 dim: 35 dim: 35 } shape { dim: 8 }\n"
    "  data_filler { type: 'gaussian' std: 1 } data_filler { type: 'uniform' min: 0 max: 9.99 } } }\n"
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' %s convolution_param { num_output: 12 "
    "kernel_size: 5 stride: 2 weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'constant' } } }\n"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n"
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' pooling_param { pool: MAX kernel_size: 3 "
    "stride: 2 } }\n"
    "layer { name: 'norm1' type: 'LRN' bottom: 'pool1' top: 'norm1' lrn_param { local_size: 5 alpha: 0.0001 beta: "
    "0.75 } }\n"
    "layer { name: 'conv2' type: 'Convolution' bottom: 'norm1' top: 'conv2' %s convolution_param { num_output: 16 "
    "pad: 1 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'constant' value: 0.1 "
    "} } }\n"
    "layer { name: 'relu2' type: 'ReLU' bottom: 'conv2' top: 'conv2' }\n"
    "layer { name: 'conv3' type: 'Convolution' bottom: 'conv2' top: 'conv3' %s convolution_param { num_output: 16 "
    "pad: 1 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.05 } } }\n"
    "layer { name: 'relu3' type: 'ReLU' bottom: 'conv3' top: 'conv3' }\n"
    "layer { name: 'pool5' type: 'Pooling' bottom: 'conv3' top: 'pool5' pooling_param { pool: MAX kernel_size: 3 "
    "stride: 2 } }\n"
    "layer { name: 'fc6' type: 'InnerProduct' bottom: 'pool5' top: 'fc6' %s inner_product_param { num_output: 30 "
    "weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'constant' value: 0.1 } } }\n"
    "layer { name: 'relu6' type: 'ReLU' bottom: 'fc6' top: 'fc6' %s }\n"
    "layer { name: 'fc7' type: 'InnerProduct' bottom: 'fc6' top: 'fc7' %s inner_product_param { num_output: 30 "
    "weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'constant' value: 0.1 } } }\n"
    "layer { name: 'relu7' type: 'ReLU' bottom: 'fc7' top: 'fc7' %s }\n"
    "layer { name: 'fc8' type: 'InnerProduct' bottom: 'fc7' top: 'fc8' %s inner_product_param { num_output: 10 "
    "weight_filler { type: 'gaussian' std: 0.05 } bias_filler { type: 'constant' } } }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc8' bottom: 'label' top: 'loss' }\n";

/* The net on `workers` (0: unpartitioned) written to dir/<name>.prototxt, with its solver. */
static void write_files(const char *name, int workers) {
  char path[256], head[64] = "", d0[32] = "", d1[32] = "", pin[32] = "";
  if (workers) {
    snprintf(head, sizeof head, "partition_workers: %d", workers);
    snprintf(d0, sizeof d0, "partition_dim: 0");
    snprintf(d1, sizeof d1, "partition_dim: 1");
    snprintf(pin, sizeof pin, "location: %d", workers - 1);
  }
  snprintf(path, sizeof path, "%s/%s.prototxt", g_dir, name);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, k_net, head, d0, d0, d0, d1, d1, d1, d1, pin);
  fclose(f);
  snprintf(path, sizeof path, "%s/%s_solver.prototxt", g_dir, name);
  f = fopen(path, "w");
  if (!f) return;
  fprintf(f,
          "net: '%s/%s.prototxt'\nbase_lr: 0.05\nlr_policy: 'fixed'\nmomentum: 0.9\nweight_decay: 0.0005\n"
          "max_iter: 20\nsnapshot: 10\nsnapshot_prefix: '%s/%s'\ndisplay: 10\nrandom_seed: 7\n"
          "test_iter: 1\ntest_interval: 10\n",
          g_dir, name, g_dir, name);
  fclose(f);
}

/* The log lines that report what the partitioning moves. */
static int g_bytes_lines;
static void log_line(void *ctx, const char *line) {
  (void)ctx;
  if (strstr(line, "bridges move") && strstr(line, "bytes per iteration")) g_bytes_lines++;
}

/* The test net's loss at the last test of a run (a partitioned test net shares the train
 * net's shards). */
static float g_test_loss;
static void on_event(void *ctx, const ct_event *e) {
  (void)ctx;
  if (e->kind == CT_EVENT_TEST && e->noutputs > 0) g_test_loss = e->outputs[0];
}

/* Trains solver `name` from `weights` or resumes `state`; fills *params (malloc'ed). */
static bool train(const char *name, const char *weights, const char *state, float **params, size_t *n) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s_solver.prototxt", g_dir, name);
  ct_solver_options o = {.weights = weights, .snapshot = state, .log = log_line, .partitions = 2,
                         .event = on_event};
  ct_solver *s = NULL;
  ct_error err = {0};
  if (ct_solver_create(path, &o, &s, &err) != CT_OK) {
    CHECK(0, "%s: %s", name, err.msg);
    return false;
  }
  bool ok = ct_solver_solve(s, &err) == CT_OK;
  CHECK(ok, "%s: %s", name, err.msg);
  ct_net *net = ct_solver_net(s);
  *n = ct_net_param_total(net);
  *params = malloc(*n * sizeof(float));
  if (*params) memcpy(*params, ct_net_param_buffer(net), *n * sizeof(float));
  ct_solver_free(s);
  return ok && *params;
}

static double rel_diff(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t k = 0; k < n; k++) {
    double d = fabs((double)a[k] - (double)b[k]) / (1.0 + fabs((double)b[k]));
    if (d > worst) worst = d;
  }
  return worst;
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ct_parttrain_XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  write_files("ref", 0);
  write_files("w2", 2);
  write_files("w4", 4);
  /* the starting weights: the unpartitioned net's fill, through a whole .caffemodel */
  char path[256], weights[256];
  snprintf(path, sizeof path, "%s/ref.prototxt", g_dir);
  snprintf(weights, sizeof weights, "%s/init.caffemodel", g_dir);
  ct_net *init = NULL;
  ct_error err = {0};
  CHECK(ct_net_create(path, CT_TRAIN, 0, NULL, NULL, &init, &err) == CT_OK, "%s", err.msg);
  if (!init) return ct_check_report();
  CHECK(ct_net_save_weights(init, weights, &err) == CT_OK, "%s", err.msg);
  ct_net_free(init);

  float *ref = NULL, *w2 = NULL, *w4 = NULL, *r1 = NULL, *r2 = NULL;
  size_t n = 0, n2 = 0, n4 = 0, nr1 = 0, nr2 = 0;
  bool ok = train("ref", weights, NULL, &ref, &n);
  const float ref_test = g_test_loss;
  CHECK(g_bytes_lines == 0, "an unpartitioned run reports no bridges");
  ok &= train("w2", weights, NULL, &w2, &n2);
  CHECK(g_bytes_lines == 2, "the training log reports the bytes moved at each display (%d lines)", g_bytes_lines);
  CHECK(ref_test > 0 && fabs(g_test_loss - ref_test) <= 1e-4 * (1 + ref_test),
        "the partitioned test net scores %.7g, the unpartitioned %.7g", g_test_loss, ref_test);
  ok &= train("w4", weights, NULL, &w4, &n4);
  if (ok) {
    CHECK(n == n2 && n == n4, "parameter counts %zu %zu %zu", n, n2, n4);
    double d0 = 0;
    snprintf(path, sizeof path, "%s/init.caffemodel", g_dir);
    ct_net *first = NULL;
    char rp[256];
    snprintf(rp, sizeof rp, "%s/ref.prototxt", g_dir);
    if (ct_net_create(rp, CT_TRAIN, 0, NULL, path, &first, &err) == CT_OK) {
      d0 = rel_diff(ct_net_param_buffer(first), ref, n);
      ct_net_free(first);
    }
    CHECK(d0 > 1e-3, "training moved the parameters (by %g)", d0);
    double a = rel_diff(w2, ref, n), b = rel_diff(w4, ref, n);
    CHECK(a <= 1e-4, "2 workers: 20 iterations end %g from the unpartitioned net", a);
    CHECK(b <= 1e-4, "4 workers: 20 iterations end %g from the unpartitioned net", b);
    printf("after 20 iterations: 2 workers %.3g, 4 workers %.3g from unpartitioned (training moved %.3g)\n", a, b,
           d0);
  }
  /* the 2-worker snapshot of iteration 10 resumes unpartitioned and on 4 workers */
  char state[256];
  snprintf(state, sizeof state, "%s/w2_iter_10.solverstate", g_dir);
  CHECK(access(state, R_OK) == 0, "the partitioned run wrote %s", state);
  if (ok && train("ref", NULL, state, &r1, &nr1) && train("w4", NULL, state, &r2, &nr2)) {
    double a = rel_diff(r1, ref, n), b = rel_diff(r2, ref, n);
    CHECK(a <= 1e-4, "resumed unpartitioned from the 2-worker snapshot: %g", a);
    CHECK(b <= 1e-4, "resumed on 4 workers from the 2-worker snapshot: %g", b);
  }
  /* the snapshot's .caffemodel is the unpartitioned net's layers, whole */
  snprintf(path, sizeof path, "%s/w2_iter_10.caffemodel", g_dir);
  char rp[256];
  snprintf(rp, sizeof rp, "%s/ref.prototxt", g_dir);
  ct_net *whole = NULL;
  CHECK(ct_net_create(rp, CT_TEST, 0, NULL, path, &whole, &err) == CT_OK, "the unpartitioned net loads it: %s",
        err.msg);
  if (whole) {
    int shape[8];
    CHECK(ct_net_param_shape(whole, "fc6", 0, shape) == 2 && shape[0] == 30, "fc6 weights whole: %d rows",
          shape[0]);
    ct_net_free(whole);
  }
  free(ref), free(w2), free(w4), free(r1), free(r2);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_dir);
  return ct_check_report();
}
