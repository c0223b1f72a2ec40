/* SINGA's model partitioning (issue 19, src/net/partition.c): every transition between
 * partitionings (0 -> 1, 1 -> 1 over the same and over fewer workers, 1 -> pinned -> 1, 1 -> 0)
 * gives the forward outputs and every parameter gradient of the same net unpartitioned, on 2, 3
 * and 4 workers; weights files stay whole; every bad value is refused with its position. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "layers/layer.h"
#include "net/net.h"

#include "partition_nets.h"

static ct_net *make(const char *text, ct_error *err) {
  ct_net *net = NULL;
  memset(err, 0, sizeof *err);
  ct_net_create_from_text(text, "p.prototxt", NULL, CT_TRAIN, &net, err);
  return net;
}

static double rel_diff(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t k = 0; k < n; k++) {
    double d = fabs((double)a[k] - (double)b[k]) / (1.0 + fabs((double)b[k]));
    if (d > worst) worst = d;
  }
  return worst;
}

static void fill_inputs(ct_net *net) {
  float *x = ct_net_blob_data(net, "data"), *y = ct_net_blob_data(net, "label");
  for (int k = 0; k < 4 * 3 * 6 * 6; k++) x[k] = (float)sin(0.37 * k) * 1.5f;
  for (int k = 0; k < 4; k++) y[k] = (float)((k * 3) % 5);
}

static void test_transitions(int workers) {
  char ref_text[8192], part_text[8192];
  transitions_net(ref_text, sizeof ref_text, workers, false);
  transitions_net(part_text, sizeof part_text, workers, true);
  ct_error err;
  ct_net *ref = make(ref_text, &err);
  CHECK(ref, "reference net: %s", err.msg);
  ct_net *part = make(part_text, &err);
  CHECK(part, "%d workers: %s", workers, err.msg);
  if (!ref || !part) goto done;
  CHECK(ct_net_partition_workers(part) == workers, "workers %d", ct_net_partition_workers(part));
  CHECK(ct_net_num_layers(part) > ct_net_num_layers(ref), "the rewrite added sub-layers and connections");
  CHECK(ct_net_param_total(part) == ct_net_param_total(ref), "flat parameters %zu vs %zu", ct_net_param_total(part),
        ct_net_param_total(ref));
  /* the reference's weights through a whole .caffemodel */
  char path[] = "/tmp/ct_part_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0) goto done;
  close(fd);
  CHECK(ct_net_save_weights(ref, path, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_load_weights(part, path, &err) == CT_OK, "%s", err.msg);
  CHECK(rel_diff(ct_net_param_buffer(part), ct_net_param_buffer(ref), ct_net_param_total(ref)) == 0,
        "loaded weights land where the reference has them");
  fill_inputs(ref);
  fill_inputs(part);
  float lr = 0, lp = 0;
  CHECK(ct_net_forward(ref, &lr, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_forward(part, &lp, &err) == CT_OK, "%s", err.msg);
  CHECK(fabs(lr - lp) <= 1e-5 * (1 + fabs(lr)), "%d workers: loss %.8g vs %.8g", workers, lp, lr);
  /* the blobs made whole again (ip1 exists only as shards: sig1 runs on them) */
  const char *blobs[] = {"conv2", "s1", "ip2", "pin", "ip3"};
  for (size_t b = 0; b < sizeof blobs / sizeof *blobs; b++) {
    int s1[8], s2[8];
    int na = ct_net_blob_shape(ref, blobs[b], s1), nb = ct_net_blob_shape(part, blobs[b], s2);
    CHECK(na == nb && na > 0 && !memcmp(s1, s2, (size_t)na * sizeof(int)), "blob %s shape", blobs[b]);
    if (na != nb || na <= 0) continue;
    size_t cnt = 1;
    for (int a = 0; a < na; a++) cnt *= (size_t)s1[a];
    double d = rel_diff(ct_net_blob_data(part, blobs[b]), ct_net_blob_data(ref, blobs[b]), cnt);
    CHECK(d <= 1e-5, "%d workers: blob %s differs by %g", workers, blobs[b], d);
  }
  CHECK(ct_net_backward(ref, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_net_backward(part, &err) == CT_OK, "%s", err.msg);
  double dg = rel_diff(ct_net_diff_buffer(part), ct_net_diff_buffer(ref), ct_net_param_total(ref));
  CHECK(dg <= 1e-5, "%d workers: parameter gradients differ by %g", workers, dg);
  double nz = 0;
  const float *g = ct_net_diff_buffer(ref);
  for (size_t k = 0; k < ct_net_param_total(ref); k++) nz += fabs(g[k]);
  CHECK(nz > 0, "the reference gradient is not all zero");
  /* bridges move bytes; the sizes are the blobs that cross workers */
  unsigned long long fwd = 0, bwd = 0;
  ct_net_partition_bytes(part, &fwd, &bwd);
  CHECK(fwd > 0 && bwd > 0, "bridges counted: %llu forward, %llu backward", fwd, bwd);
  /* the shards that run at once compute on their workers' own cores (a placement and pool per
   * worker), the whole layers on the net's */
  const void *shard_place[64] = {0};
  int shards = 0;
  for (int i = 0; i < ct_net_num_layers(part); i++) {
    const ct_layer *l = ct_net_layer(part, i);
    const int w = ct_net_layer_worker(part, i);
    if (!strncmp(l->name, "ip1@", 4)) {
      CHECK(l->place && l->place != (const void *)ct_net_placement(part), "%s runs on the net's pool", l->name);
      for (int k = 0; k < 64; k++)
        if (shard_place[k] && k != w) CHECK(shard_place[k] != l->place, "%s shares worker %d's pool", l->name, k);
      if (w >= 0 && w < 64) shard_place[w] = l->place;
      shards++;
    }
    if (!strcmp(l->name, "conv1")) CHECK(l->place == ct_net_placement(part), "the whole conv1 has the net's pool");
  }
  CHECK(shards == (workers < 9 ? workers : 9), "ip1 in %d shards", shards);
  /* a whole .caffemodel back out, with the layers as written: the reference reads it */
  CHECK(ct_net_save_weights(part, path, &err) == CT_OK, "%s", err.msg);
  Caffe__NetParameter *wp = NULL, *wr = NULL;
  if (ct_net_to_proto(part, &wp, &err) == CT_OK && ct_net_to_proto(ref, &wr, &err) == CT_OK) {
    bool same = wp->n_layer == wr->n_layer;
    for (size_t k = 0; same && k < wp->n_layer; k++) same = !strcmp(wp->layer[k]->name, wr->layer[k]->name);
    CHECK(same, "the partitioned net writes the reference's layers (%zu vs %zu)", wp->n_layer, wr->n_layer);
  }
  if (wp) protobuf_c_message_free_unpacked(&wp->base, NULL);
  if (wr) protobuf_c_message_free_unpacked(&wr->base, NULL);
  ct_net *again = make(ref_text, &err);
  CHECK(again && ct_net_load_weights(again, path, &err) == CT_OK, "reference reads the partitioned net's file: %s",
        err.msg);
  if (again)
    CHECK(rel_diff(ct_net_param_buffer(again), ct_net_param_buffer(ref), ct_net_param_total(ref)) == 0,
          "round trip through the partitioned net");
  ct_net_free(again);
  unlink(path);
done:
  ct_net_free(ref);
  ct_net_free(part);
}

/* Bad values: the error names the layer and the position. */
static void expect_error(const char *body, const char *want) {
  char text[4096];
  snprintf(text, sizeof text,
           "name: 'e'\n"
           "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 } } }\n%s",
           body);
  ct_error err;
  ct_net *net = make(text, &err);
  CHECK(!net, "accepted: %s", body);
  CHECK(strstr(err.msg, want) != NULL, "error for [%s]\n  got:  %s\n  want: %s", body, err.msg, want);
  ct_net_free(net);
}

static void test_errors(void) {
  expect_error("partition_workers: 2\nlayer { name: 'p' type: 'Pooling' bottom: 'x' top: 'y'\n  partition_dim: 1 }",
               "p.prototxt:5:3: layer \"p\" (Pooling): partition_dim: 1 needs a neuron dimension");
  expect_error("layer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' partition_dim: 7 }",
               "p.prototxt:3:53: layer \"r\" (ReLU): partition_dim is 7; expected 0 (the batch), 1 (the neurons)");
  expect_error("partition_workers: 4\nlayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y'\n location: 4 }",
               "p.prototxt:5:2: layer \"r\" (ReLU): location 4 is beyond the worker group's 4 workers");
  expect_error("layer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' location: 1 }",
               "layer \"r\" (ReLU): location 1 is beyond the worker group's 1 worker");
  expect_error("partition_dim: 3\nlayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' }",
               "p.prototxt:3:1: the net's partition_dim is 3");
  expect_error("partition_workers: 0\nlayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' }",
               "p.prototxt:3:1: partition_workers is 0");
  expect_error("partition_workers: 2\nlayer { name: 'f' type: 'InnerProduct' bottom: 'x' top: 'y' partition_dim: 1 "
               "location: 1 inner_product_param { num_output: 4 } }",
               "give one of them");
  expect_error("partition_workers: 2\nlayer { name: 'f' type: 'InnerProduct' bottom: 'x' top: 'y' partition_dim: 1 "
               "inner_product_param { num_output: 4 transpose: true } }",
               "layer \"f\" (InnerProduct): partition_dim: 1 cannot split this layer's outputs: its weights are "
               "transposed");
  expect_error("partition_workers: 2\nlayer { name: 'c' type: 'Convolution' bottom: 'x' top: 'y' partition_dim: 1 "
               "convolution_param { num_output: 4 group: 2 kernel_size: 1 } }",
               "it has groups");
  expect_error("partition_workers: 2\nlayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' location: -3 }",
               "layer \"r\" (ReLU): location -3 is beyond the worker group's 2 workers");
  expect_error("partition_workers: 65\nlayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' }",
               "partition_workers is 65; expected a worker count from 1 to 64");
  expect_error("partition_workers: 2\nlayer { name: 'p' type: 'Pooling' bottom: 'x' top: 'y' partition_dim: 1 }",
               "layer \"p\" (Pooling): partition_dim: 1 needs a neuron dimension");
  expect_error("partition_workers: 2\nlayer { name: 'd' type: 'Dropout' bottom: 'x' top: 'y' partition_dim: 1 }",
               "layer \"d\" (Dropout): partition_dim: 1 on an element-wise layer follows the shards of its bottom");
  expect_error("partition_workers: 2\nlayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' partition_dim: 1 }",
               "layer \"r\" (ReLU): partition_dim: 1 on an element-wise layer follows the shards of its bottom");
}

/* The net-level default: every InnerProduct on dim 1 without saying so per layer. */
static void test_net_default(void) {
  const char *body =
      "name: 'd'\npartition_dim: 1\npartition_workers: 3\n"
      "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 5 } } }\n"
      "layer { name: 'f' type: 'InnerProduct' bottom: 'x' top: 'y' inner_product_param { num_output: 8 } }\n"
      "layer { name: 'r' type: 'ReLU' bottom: 'y' top: 'y' }\n"
      "layer { name: 'p' type: 'Softmax' bottom: 'y' top: 'z' }\n";
  ct_error err;
  ct_net *net = make(body, &err);
  CHECK(net, "%s", err.msg);
  if (!net) return;
  int subs = 0, workers_seen = 0;
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    if (!strncmp(ct_net_layer_name(net, i), "f@", 2)) subs++;
    workers_seen |= 1 << ct_net_layer_worker(net, i);
  }
  CHECK(subs == 3, "the default split f into %d sub-layers", subs);
  CHECK(workers_seen == 7, "workers 0..2 all run layers (mask %d)", workers_seen);
  /* the layer as written reaches its whole parameters, whose rows the shards view */
  int shape[8];
  CHECK(ct_net_param_count(net, "f") == 2, "f has its 2 blobs");
  CHECK(ct_net_param_shape(net, "f", 0, shape) == 2 && shape[0] == 8 && shape[1] == 5, "f's weights are 8x5");
  CHECK(ct_net_param_shape(net, "f@1", 0, shape) == 2 && shape[0] == 3, "f@1 holds rows 3..5 (%d rows)", shape[0]);
  float *whole = ct_net_param_data(net, "f", 0);
  if (whole) whole[3 * 5 + 2] = 42.0f; /* row 3, column 2: row 0, column 2 of shard 1 */
  const float *s1 = ct_net_param_data(net, "f@1", 0);
  CHECK(s1 && s1[2] == 42.0f, "shard 1 views rows 3.. of the whole weights");
  ct_net_free(net);
}

/* `cortado draw` shows the rewritten net, `cortado time` the bytes its bridges move. */
static void test_tools(void) {
  const char *cortado = getenv("CORTADO");
  if (!cortado) {
    fprintf(stderr, "CORTADO not set: the draw and time checks are skipped\n");
    return;
  }
  char dir[] = "/tmp/ct_partdraw_XXXXXX";
  if (!mkdtemp(dir)) return;
  char net[128], dot[128], log[128], cmd[600];
  snprintf(net, sizeof net, "%s/net.prototxt", dir);
  snprintf(dot, sizeof dot, "%s/net.dot", dir);
  snprintf(log, sizeof log, "%s/time.log", dir);
  FILE *f = fopen(net, "w");
  if (!f) return;
  fputs("name: 'd'\npartition_workers: 3\n"
        "layer { name: 'in' type: 'Input' top: 'x' top: 'l' input_param { shape { dim: 2 dim: 5 } shape { dim: 2 } "
        "} }\n"
        "layer { name: 'f' type: 'InnerProduct' bottom: 'x' top: 'y' partition_dim: 1 inner_product_param { "
        "num_output: 8 } }\n"
        "layer { name: 'pin' type: 'TanH' bottom: 'y' top: 'z' location: 2 }\n"
        "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'z' bottom: 'l' top: 'loss' }\n",
        f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "'%s' draw '%s' -o '%s' 2>/dev/null", cortado, net, dot);
  CHECK(system(cmd) == 0, "%s", cmd);
  char text[16384] = "";
  f = fopen(dot, "r");
  size_t got = f ? fread(text, 1, sizeof text - 1, f) : 0;
  if (f) fclose(f);
  text[got] = 0;
  CHECK(strstr(text, "label=\"f@2\\n(InnerProduct)\\n2 outputs\\nworker 2\""), "draw shows the sub-layers");
  CHECK(strstr(text, "y@concat\\n(Concat)\\nworker 2"), "draw shows the connections");
  CHECK(strstr(text, "(bridge)"), "draw marks the bridges");
  CHECK(strstr(text, "partitioned over 3 workers"), "draw's title says the partitioning");
  snprintf(cmd, sizeof cmd, "'%s' time --model '%s' --iterations 1 > '%s' 2>&1", cortado, net, log);
  CHECK(system(cmd) == 0, "%s", cmd);
  f = fopen(log, "r");
  got = f ? fread(text, 1, sizeof text - 1, f) : 0;
  if (f) fclose(f);
  text[got] = 0;
  /* f's 8 outputs over 3 workers are shards of 3, 3 and 2. Forward: x (2x5 floats) to workers 1
   * and 2, the shards of workers 0 and 1 (2x3 each) to the Concat on worker 2, the pinned TanH's
   * z (2x8) to the loss on worker 0. Backward the same edges but x's (the input takes none). */
  const unsigned long long fwd = (2 * (2 * 5) + 2 * (2 * 3) + 2 * 8) * 4, bwd = (2 * (2 * 3) + 2 * 8) * 4;
  char want[160];
  snprintf(want, sizeof want, "bridges move %llu bytes per iteration (%llu forward, %llu backward)", fwd + bwd, fwd,
           bwd);
  CHECK(strstr(text, want), "cortado time reports %s", want);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

/* Dropout on dim 1 after a conv's channel shards (in place) and an InnerProduct's output shards:
 * each shard draws its elements of the unpartitioned layer's mask, so two training passes (a new
 * mask each) give the unpartitioned net's blobs and gradients. */
static void dropout_net(char *buf, size_t n, int workers) {
  const char *d1 = workers ? "partition_dim: 1" : "";
  char head[64] = "";
  if (workers) snprintf(head, sizeof head, "partition_workers: %d", workers);
  snprintf(buf, n,
           "name: 'd'\n%s\n"
           "layer { name: 'in' type: 'Input' top: 'data' top: 'label' input_param { shape { dim: 4 dim: 3 dim: 6 "
           "dim: 6 } shape { dim: 4 } } }\n"
           "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' %s convolution_param { num_output: "
           "5 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'constant' value: 0.2 } "
           "} }\n"
           "layer { name: 'drop1' type: 'Dropout' bottom: 'conv1' top: 'conv1' %s dropout_param { dropout_ratio: 0.4 "
           "} }\n"
           "layer { name: 'ip1' type: 'InnerProduct' bottom: 'conv1' top: 'ip1' %s inner_product_param { num_output: "
           "7 weight_filler { type: 'gaussian' std: 0.2 } bias_filler { type: 'constant' value: 0.3 } } }\n"
           "layer { name: 'drop2' type: 'Dropout' bottom: 'ip1' top: 'd2' %s dropout_param { dropout_ratio: 0.5 } }\n"
           "layer { name: 'ip2' type: 'InnerProduct' bottom: 'd2' top: 'ip2' inner_product_param { num_output: 5 "
           "weight_filler { type: 'gaussian' std: 0.3 } } }\n"
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip2' bottom: 'label' top: 'loss' }\n",
           head, d1, d1, d1, d1);
}

static void test_dropout(int workers) {
  char ref_text[4096], part_text[4096], path[] = "/tmp/ct_part_drop_XXXXXX";
  dropout_net(ref_text, sizeof ref_text, 0);
  dropout_net(part_text, sizeof part_text, workers);
  ct_error err;
  ct_net *ref = make(ref_text, &err);
  CHECK(ref, "reference: %s", err.msg);
  ct_net *part = make(part_text, &err);
  CHECK(part, "%d workers: %s", workers, err.msg);
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (!ref || !part || fd < 0) goto done;
  close(fd);
  CHECK(ct_net_save_weights(ref, path, &err) == CT_OK && ct_net_load_weights(part, path, &err) == CT_OK, "%s",
        err.msg);
  unlink(path);
  int drops = 0;
  for (int i = 0; i < ct_net_num_layers(part); i++) drops += !strcmp(ct_net_layer_type(part, i), "Dropout");
  CHECK(drops >= 2 * 2, "%d workers: the Dropouts run per shard (%d layers)", workers, drops);
  fill_inputs(ref);
  fill_inputs(part);
  float first = 0;
  for (int pass = 0; pass < 2; pass++) {
    float lr = 0, lp = 0;
    ct_net_clear_param_diffs(ref);
    ct_net_clear_param_diffs(part);
    CHECK(ct_net_forward(ref, &lr, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_net_forward(part, &lp, &err) == CT_OK, "%s", err.msg);
    CHECK(fabs(lr - lp) <= 1e-5 * (1 + fabs(lr)), "%d workers, pass %d: loss %.8g vs %.8g", workers, pass, lp, lr);
    if (pass == 0) first = lr;
    else CHECK(lr != first, "a second pass draws a new mask (loss %.8g both times)", lr);
    const char *blobs[] = {"conv1", "d2"};
    for (int b = 0; b < 2; b++) {
      int s1[8], s2[8], na = ct_net_blob_shape(ref, blobs[b], s1), nb = ct_net_blob_shape(part, blobs[b], s2);
      CHECK(na == nb && na > 0 && !memcmp(s1, s2, (size_t)na * sizeof(int)), "blob %s shape", blobs[b]);
      if (na != nb || na <= 0) continue;
      size_t count = 1, zeros = 0;
      for (int k = 0; k < na; k++) count *= (size_t)s1[k];
      const float *a = ct_net_blob_data(ref, blobs[b]);
      for (size_t k = 0; k < count; k++) zeros += a[k] == 0;
      CHECK(zeros > count / 8 && zeros < count, "%s: %zu of %zu dropped in the reference", blobs[b], zeros, count);
      double d = rel_diff(ct_net_blob_data(part, blobs[b]), a, count);
      CHECK(d <= 1e-5, "%d workers, pass %d: blob %s differs by %g", workers, pass, blobs[b], d);
    }
    CHECK(ct_net_backward(ref, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_net_backward(part, &err) == CT_OK, "%s", err.msg);
    double dg = rel_diff(ct_net_diff_buffer(part), ct_net_diff_buffer(ref), ct_net_param_total(ref));
    CHECK(dg <= 1e-5, "%d workers, pass %d: parameter gradients differ by %g", workers, pass, dg);
  }
done:
  ct_net_free(part);
  ct_net_free(ref);
}

/* ct_net_set_devices on a partitioned net (threads): with emu:0 every layer, shards included,
 * leaves the workers' CPU placements for the net's (a setting that placed only the whole
 * layers would leave the shards on the CPU); the results stay the unpartitioned net's, on emu:0
 * and back on the CPU. */
static void test_devices(void) {
  char ref_text[8192], part_text[8192], path[] = "/tmp/ct_part_dev_XXXXXX";
  transitions_net(ref_text, sizeof ref_text, 3, false);
  transitions_net(part_text, sizeof part_text, 3, true);
  ct_error err;
  ct_net *ref = make(ref_text, &err), *part = make(part_text, &err);
  CHECK(ref && part, "%s", err.msg);
  int fd = mkstemp(path);
  if (!ref || !part || fd < 0) goto done;
  close(fd);
  CHECK(ct_net_save_weights(ref, path, &err) == CT_OK && ct_net_load_weights(part, path, &err) == CT_OK, "%s",
        err.msg);
  unlink(path);
  fill_inputs(ref);
  fill_inputs(part);
  int own = 0;
  for (int i = 0; i < ct_net_num_layers(part); i++) own += ct_net_layer(part, i)->place != ct_net_placement(part);
  CHECK(own > 0, "the shards start on their workers' placements");
  const char *lists[] = {"emu:0", "cpu"};
  for (int d = 0; d < 2; d++) {
    CHECK(ct_net_set_devices(part, lists[d], &err) == CT_OK && ct_net_set_devices(ref, lists[d], &err) == CT_OK,
          "%s: %s", lists[d], err.msg);
    if (d == 0)
      for (int i = 0; i < ct_net_num_layers(part); i++)
        CHECK(ct_net_layer(part, i)->place == ct_net_placement(part), "emu:0: %s stays on a worker's placement",
              ct_net_layer(part, i)->name);
    float lr = 0, lp = 0;
    ct_net_clear_param_diffs(ref);
    ct_net_clear_param_diffs(part);
    CHECK(ct_net_forward(ref, &lr, &err) == CT_OK && ct_net_forward(part, &lp, &err) == CT_OK, "%s", err.msg);
    CHECK(fabs(lr - lp) <= 1e-5 * (1 + fabs(lr)), "%s: loss %.8g vs %.8g", lists[d], lp, lr);
    CHECK(ct_net_backward(ref, &err) == CT_OK && ct_net_backward(part, &err) == CT_OK, "%s", err.msg);
    double dg = rel_diff(ct_net_diff_buffer(part), ct_net_diff_buffer(ref), ct_net_param_total(ref));
    CHECK(dg <= 1e-5, "%s: parameter gradients differ by %g", lists[d], dg);
  }
done:
  ct_net_free(part);
  ct_net_free(ref);
}

/* Bridges between processes tag each bottom's messages with its own number; a net that needs
 * more tags than the MPI allows (ct_bridge_ops.max_tag: MPI_TAG_UB) is refused at set-up, with
 * the limit in the message, and one within it is taken. No messages are sent here. */
static int tag_rank_of(void *ctx, int worker) {
  (void)ctx;
  return worker % 2;
}
static ct_status tag_send(void *ctx, int to, int tag, const float *p, size_t n, ct_error *err) {
  (void)ctx, (void)to, (void)tag, (void)p, (void)n;
  return ct_fail(err, CT_EINTERNAL, "no message is sent in this test");
}
static ct_status tag_recv(void *ctx, int from, int tag, float *p, size_t n, ct_error *err) {
  (void)ctx, (void)from, (void)tag, (void)p, (void)n;
  return ct_fail(err, CT_EINTERNAL, "no message is received in this test");
}
static ct_status tag_flush(void *ctx, ct_error *err) {
  (void)ctx, (void)err;
  return CT_OK;
}

static void test_tag_limit(void) {
  char text[8192];
  transitions_net(text, sizeof text, 2, true);
  ct_error err;
  ct_net *net = make(text, &err);
  CHECK(net, "%s", err.msg);
  if (!net) return;
  /* the tags needed: one for every bottom and top of every layer (the largest is their number
   * less one) */
  int ends = 0;
  for (int i = 0; i < ct_net_num_layers(net); i++) ends += ct_net_layer(net, i)->nbottom + ct_net_layer(net, i)->ntop;
  ct_bridge_ops ops = {.rank = 0, .world = 2, .max_tag = ends - 2, .rank_of = tag_rank_of, .send = tag_send,
                       .recv = tag_recv, .flush = tag_flush};
  char limit[64];
  snprintf(limit, sizeof limit, "tags up to %d (MPI_TAG_UB", ends - 2);
  CHECK(ct_net_set_bridges(net, &ops, &err) == CT_EUNSUPPORTED && strstr(err.msg, limit), "one tag short: %s",
        err.msg);
  CHECK(!ct_net_bridged(net), "a refused net keeps no bridges");
  ops.max_tag = ends - 1;
  CHECK(ct_net_set_bridges(net, &ops, &err) == CT_OK && ct_net_bridged(net), "enough tags: %s", err.msg);
  ct_net_set_bridges(net, NULL, &err);
  ct_net_free(net);
}

int main(void) {
  test_tag_limit();
  for (int w = 2; w <= 4; w++) test_transitions(w);
  for (int w = 2; w <= 4; w++) test_dropout(w);
  test_devices();
  test_errors();
  test_net_default();
  test_tools();
  return ct_check_report();
}
