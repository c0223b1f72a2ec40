/* CcT's hybrid on CI: a layer's batch split between the CPU and the emu device (drivers/emu.h),
 * whose memory the host cannot touch outside driver calls.
 *
 *  - LeNet and a net with every trainable layer type train 20 iterations with set shares
 *    (cpu 0.3 + emu:0 0.7), automatic shares, and all on emu:0: the weights equal the CPU's
 *    one-partition run within 1e-5 of each parameter's largest, and two runs of the set plan are
 *    bit-identical.
 *  - One forward+backward of the every-layer net: every blob's values and every parameter
 *    gradient equal the CPU run within 1e-5; everything, gradients of blobs included, is
 *    bit-identical to the CPU alone split the same way (the emu device changes nothing).
 *  - The copy counters on a net whose middle layers live on emu:0 equal what the plan predicts,
 *    layer by layer; layers with the same plan copy nothing.
 *  - Bad plans are errors naming the layer and its file:line:col; a failing device call is an
 *    error naming the layer, the device and the reason. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"

static char dir[] = "/tmp/ct_hybrid_XXXXXX";

#define FMNIST "/usr/share/datasets/fashion-mnist/"

/* Every trainable layer type of the registry (the data layers but Data and DummyData aside). */
static const char *every_layer_net =
    "name: 'every'\n"
    "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 } "
    "  idx_data_param { batch_size: 16 images: '" FMNIST "t10k-images-idx3-ubyte.gz' labels: '" FMNIST
    "t10k-labels-idx1-ubyte.gz' } }\n"
    "layer { name: 'target' type: 'DummyData' top: 'target' dummy_data_param { shape { dim: 16 dim: 10 } "
    "  data_filler { type: 'constant' value: 0.5 } } }\n"
    /* no bias before BatchNorm: its gradient is zero but for rounding, which no tolerance compares */
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' convolution_param { num_output: 8 "
    "  kernel_size: 3 pad: 1 bias_term: false weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'bn1' type: 'BatchNorm' bottom: 'conv1' top: 'conv1' }\n"
    "layer { name: 'sc1' type: 'Scale' bottom: 'conv1' top: 'conv1' scale_param { bias_term: true } }\n"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' }\n"
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' pooling_param { pool: MAX kernel_size: 2 "
    "  stride: 2 } }\n"
    "layer { name: 'norm1' type: 'LRN' bottom: 'pool1' top: 'norm1' lrn_param { local_size: 3 } }\n"
    "layer { name: 'conv2' type: 'Convolution' bottom: 'norm1' top: 'conv2' convolution_param { num_output: 8 "
    "  kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'prelu2' type: 'PReLU' bottom: 'conv2' top: 'conv2' }\n"
    "layer { name: 'bias2' type: 'Bias' bottom: 'conv2' top: 'bias2' bias_param { filler { type: 'gaussian' "
    "  std: 0.1 } } }\n"
    "layer { name: 'elu2' type: 'ELU' bottom: 'bias2' top: 'bias2' }\n"
    "layer { name: 'poolA' type: 'Pooling' bottom: 'bias2' top: 'poolA' pooling_param { pool: AVE kernel_size: 2 "
    "  stride: 2 } }\n"
    "layer { name: 'convB' type: 'Convolution' bottom: 'bias2' top: 'convB' convolution_param { num_output: 8 "
    "  kernel_size: 1 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'sigB' type: 'Sigmoid' bottom: 'convB' top: 'convB' }\n"
    "layer { name: 'poolB' type: 'Pooling' bottom: 'convB' top: 'poolB' pooling_param { pool: MAX kernel_size: 2 "
    "  stride: 2 } }\n"
    "layer { name: 'cat' type: 'Concat' bottom: 'poolA' bottom: 'poolB' top: 'cat' }\n"
    "layer { name: 'flat' type: 'Flatten' bottom: 'cat' top: 'flat' }\n"
    "layer { name: 'fc1' type: 'InnerProduct' bottom: 'flat' top: 'fc1' inner_product_param { num_output: 64 "
    "  weight_filler { type: 'xavier' } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
    "layer { name: 'drop' type: 'Dropout' bottom: 'fc1' top: 'fc1' dropout_param { dropout_ratio: 0.25 } }\n"
    "layer { name: 'tanh' type: 'TanH' bottom: 'fc1' top: 'fc1t' }\n"
    "layer { name: 'slice' type: 'Slice' bottom: 'fc1t' top: 's1' top: 's2' slice_param { slice_point: 32 } }\n"
    "layer { name: 'abs' type: 'AbsVal' bottom: 's1' top: 'a1' }\n"
    "layer { name: 'pow' type: 'Power' bottom: 'a1' top: 'p1' power_param { power: 2 scale: 0.5 shift: 1 } }\n"
    "layer { name: 'log' type: 'Log' bottom: 'p1' top: 'l1' }\n"
    "layer { name: 'exp' type: 'Exp' bottom: 's2' top: 'e2' exp_param { scale: 0.5 } }\n"
    "layer { name: 'bnll' type: 'BNLL' bottom: 'e2' top: 'b2' }\n"
    "layer { name: 'prod' type: 'Eltwise' bottom: 'l1' bottom: 'b2' top: 'm' eltwise_param { operation: PROD } }\n"
    "layer { name: 'sum' type: 'Eltwise' bottom: 'm' bottom: 's1' top: 'ms' eltwise_param { operation: SUM "
    "  coeff: 1 coeff: -0.5 } }\n"
    "layer { name: 'resh' type: 'Reshape' bottom: 'ms' top: 'r' reshape_param { shape { dim: 0 dim: 4 dim: 8 } } }\n"
    "layer { name: 'fc2' type: 'InnerProduct' bottom: 'r' top: 'logits' inner_product_param { num_output: 10 "
    "  weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'logits' bottom: 'label' top: 'loss' }\n"
    "layer { name: 'acc' type: 'Accuracy' bottom: 'logits' bottom: 'label' top: 'acc' }\n"
    "layer { name: 'prob' type: 'Softmax' bottom: 'logits' top: 'prob' }\n"
    "layer { name: 'am' type: 'ArgMax' bottom: 'prob' top: 'am' }\n"
    "layer { name: 'mute' type: 'Silence' bottom: 'am' }\n"
    "layer { name: 'fc3' type: 'InnerProduct' bottom: 'r' top: 'fc3' inner_product_param { num_output: 10 "
    "  weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'xent' type: 'SigmoidCrossEntropyLoss' bottom: 'fc3' bottom: 'prob' top: 'xent' "
    "  loss_weight: 0.1 }\n"
    "layer { name: 'eu' type: 'EuclideanLoss' bottom: 'fc3' bottom: 'target' top: 'eu' loss_weight: 0.1 }\n";

/* issue 21: Caffe 1.0's remaining trainable layers in one net (the host losses on the master):
 * Swish, Deconvolution, Crop, MVN, Clip, SPP, Im2col, Reduction, Tile, LSTM (the batch seen as 4
 * steps of 4 streams), Embed, HingeLoss, MultinomialLogisticLoss. */
static const char *caffe1_net =
    "name: 'caffe1'\n"
    "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 } "
    "  idx_data_param { batch_size: 16 images: '" FMNIST "t10k-images-idx3-ubyte.gz' labels: '" FMNIST
    "t10k-labels-idx1-ubyte.gz' } }\n"
    "layer { name: 'cont' type: 'DummyData' top: 'cont' dummy_data_param { shape { dim: 4 dim: 4 } "
    "  data_filler { type: 'constant' value: 1 } } }\n"
    "layer { name: 'conv1' type: 'Convolution' bottom: 'data' top: 'conv1' convolution_param { num_output: 4 "
    "  kernel_size: 3 pad: 1 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'swish' type: 'Swish' bottom: 'conv1' top: 'conv1' }\n"
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' pooling_param { pool: MAX kernel_size: 2 "
    "  stride: 2 } }\n"
    "layer { name: 'dec' type: 'Deconvolution' bottom: 'pool1' top: 'dec' convolution_param { num_output: 4 "
    "  kernel_size: 4 stride: 2 weight_filler { type: 'xavier' } bias_filler { type: 'gaussian' std: 0.1 } } }\n"
    "layer { name: 'crop' type: 'Crop' bottom: 'dec' bottom: 'data' top: 'crop' crop_param { offset: 1 } }\n"
    "layer { name: 'mvn' type: 'MVN' bottom: 'crop' top: 'mvn' }\n"
    "layer { name: 'clip' type: 'Clip' bottom: 'mvn' top: 'mvn' clip_param { min: -1.5 max: 1.5 } }\n"
    "layer { name: 'spp' type: 'SPP' bottom: 'mvn' top: 'spp' spp_param { pyramid_height: 2 pool: AVE } }\n"
    "layer { name: 'im2col' type: 'Im2col' bottom: 'pool1' top: 'cols' convolution_param { kernel_size: 2 "
    "  stride: 2 } }\n"
    "layer { name: 'red' type: 'Reduction' bottom: 'cols' top: 'red' reduction_param { operation: MEAN axis: 2 } }\n"
    "layer { name: 'tile' type: 'Tile' bottom: 'red' top: 'tile' tile_param { tiles: 2 } }\n"
    "layer { name: 'seq' type: 'Reshape' bottom: 'tile' top: 'seq' reshape_param { shape { dim: 4 dim: 4 dim: -1 } "
    "  } }\n"
    "layer { name: 'lstm' type: 'LSTM' bottom: 'seq' bottom: 'cont' top: 'lstm' recurrent_param { num_output: 6 "
    "  weight_filler { type: 'xavier' } bias_filler { type: 'constant' value: 0.1 } } }\n"
    "layer { name: 'unseq' type: 'Reshape' bottom: 'lstm' top: 'unseq' reshape_param { shape { dim: 16 dim: -1 } "
    "  } }\n"
    "layer { name: 'cat' type: 'Concat' bottom: 'spp' bottom: 'unseq' top: 'cat' }\n"
    "layer { name: 'fc' type: 'InnerProduct' bottom: 'cat' top: 'logits' inner_product_param { num_output: 10 "
    "  weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'logits' bottom: 'label' top: 'loss' }\n"
    "layer { name: 'hinge' type: 'HingeLoss' bottom: 'logits' bottom: 'label' top: 'hinge' loss_weight: 0.1 }\n"
    "layer { name: 'prob' type: 'Softmax' bottom: 'logits' top: 'prob' }\n"
    "layer { name: 'mll' type: 'MultinomialLogisticLoss' bottom: 'prob' bottom: 'label' top: 'mll' "
    "  loss_weight: 0.1 }\n"
    "layer { name: 'emb' type: 'Embed' bottom: 'label' top: 'emb' embed_param { input_dim: 10 num_output: 10 "
    "  weight_filler { type: 'gaussian' std: 0.1 } } }\n"
    "layer { name: 'eu' type: 'EuclideanLoss' bottom: 'emb' bottom: 'logits' top: 'eu' loss_weight: 0.1 }\n";

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static void quiet_log(void *ctx, const char *line) {
  (void)ctx;
  (void)line;
}

/* A solver for `net` (a path): SGD with momentum at `lr`, no tests, no snapshots. */
static const char *solver_for(const char *name, const char *net, double lr) {
  static char path[512];
  char text[2048];
  snprintf(text, sizeof text,
           "net: '%s'\nbase_lr: %g\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: 'fixed'\nmax_iter: 20\n"
           "random_seed: 7\nsnapshot_after_train: false\nsnapshot_prefix: '%s/%s'\n",
           net, lr, dir, name);
  snprintf(path, sizeof path, "%s/%s_solver.prototxt", dir, name);
  write_file(path, text);
  return path;
}

/* Ranges compared with one scale each (a parameter, a blob's data or diff): |a - b| <= rtol times
 * the largest magnitude in the reference's range, the usual measure for arrays whose elements
 * are sums that partly cancel. After training, a layer's parameters share their layer's scale:
 * the two runs round differently (see test_training), and where a value then lands on the other
 * side of a ReLU's or a max pool's boundary one element's gradient changes, by as much as a
 * small bias that started at zero (Scale's, 0.005 after 20 iterations here) may have moved in
 * all: 1e-4 of that bias, 1e-6 of its layer's scale. */
typedef struct segs {
  int n;
  size_t off[512], len[512];
  int group[512]; /* ranges of one group (>= 0) share one scale, their largest magnitude */
  char name[512][48];
} segs;

static void seg_add(segs *g, size_t off, size_t len, const char *name) {
  if (g->n == 512) return;
  g->off[g->n] = off, g->len[g->n] = len, g->group[g->n] = -1;
  snprintf(g->name[g->n++], sizeof g->name[0], "%s", name);
}

/* The name of the range holding element i. */
static const char *seg_name(const segs *g, size_t i) {
  for (int k = 0; k < g->n; k++)
    if (i >= g->off[k] && i < g->off[k] + g->len[k]) return g->name[k];
  return "?";
}

static int count_far(const float *ref, const float *b, const segs *g, double rtol, bool show, size_t *first) {
  int bad = 0;
  for (int k = 0; k < g->n; k++) {
    double m = 0;
    int here = 0;
    for (int j = 0; j < g->n; j++)
      if (j == k || (g->group[k] >= 0 && g->group[j] == g->group[k]))
        for (size_t i = g->off[j]; i < g->off[j] + g->len[j]; i++) m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    for (size_t i = g->off[k]; i < g->off[k] + g->len[k]; i++)
      if (!(fabs((double)ref[i] - b[i]) <= rtol * m)) {
        if (!bad) *first = i;
        bad++;
        here++;
      }
    if (here && show) fprintf(stderr, "  %s: %d of %zu values differ by more than %g of its largest, %g\n", g->name[k], here,
                      g->len[k], rtol, m);
  }
  return bad;
}

static segs param_segs;

/* Trains 20 iterations on `devices`; the weights, host copy. */
static float *train(const char *solver, const char *devices, size_t *n) {
  ct_solver_options opt = {0};
  opt.log = quiet_log;
  opt.devices = devices;
  ct_solver *s = NULL;
  ct_error err = {0};
  if (ct_solver_create(solver, &opt, &s, &err) || ct_solver_step(s, 20, &err)) {
    CHECK(0, "training on %s: %s", devices ? devices : "cpu", err.msg);
    ct_solver_free(s);
    return NULL;
  }
  ct_net *net = ct_solver_net(s);
  *n = ct_net_param_total(net);
  param_segs.n = 0;
  for (int i = 0; i < ct_net_num_learnable(net); i++)
    seg_add(&param_segs, ct_net_learnable(net)[i].offset, ct_net_learnable(net)[i].count, "a parameter");
  for (int l = 0; l < ct_net_num_layers(net); l++) /* a layer's parameters: one scale */
    for (int k = 0; ct_net_param_tensor(net, ct_net_layer_name(net, l), k); k++)
      for (int i = 0; i < ct_net_num_learnable(net) && i < param_segs.n; i++)
        if (ct_net_learnable_tensor(net, i) == ct_net_param_tensor(net, ct_net_layer_name(net, l), k))
          param_segs.group[i] = l;
  float *w = malloc(*n * sizeof(float));
  memcpy(w, ct_net_param_buffer(net), *n * sizeof(float));
  ct_solver_free(s);
  return w;
}

static void test_training(const char *name, const char *net, double lr) {
  const char *solver = solver_for(name, net, lr);
  size_t n0 = 0, n1 = 0, n2 = 0, n3 = 0, n4 = 0, first = 0;
  float *ref = train(solver, "cpu", &n0); /* one device: the CPU as one partition */
  float *a = train(solver, "cpu=0.3,emu:0=0.7", &n1);
  float *b = train(solver, "cpu=0.3,emu:0=0.7", &n2);
  float *au = train(solver, "cpu,emu:0", &n3);
  float *e = train(solver, "emu:0", &n4);
  if (ref && a && b && au && e) {
    CHECK(n0 == n1 && n1 == n2 && n2 == n3 && n3 == n4, "%s: parameter counts agree", name);
    int bad;
    CHECK(!memcmp(a, b, n1 * sizeof(float)), "%s: two runs of cpu 0.3 + emu:0 0.7 are bit-identical", name);
    /* (not bit-identical: the cost model picks lowering types from each device's own measured
     * rates, so the two may convolve differently) */
    bad = count_far(ref, e, &param_segs, 1e-5, true, &first);
    CHECK(!bad, "%s: all on emu:0: %d of %zu weights differ by more than 1e-5 (first %zu: %g vs %g)", name, bad, n0,
          first, bad ? ref[first] : 0, bad ? e[first] : 0);
    bad = count_far(ref, a, &param_segs, 1e-5, true, &first);
    CHECK(!bad, "%s: cpu 0.3 + emu:0 0.7: %d of %zu weights differ by more than 1e-5 (first %zu: %g vs %g)", name,
          bad, n0, first, bad ? ref[first] : 0, bad ? a[first] : 0);
    bad = count_far(ref, au, &param_segs, 1e-5, true, &first);
    CHECK(!bad, "%s: automatic shares: %d of %zu weights differ by more than 1e-5 (first %zu: %g vs %g)", name, bad,
          n0, first, bad ? ref[first] : 0, bad ? au[first] : 0);
    /* and the training moved the weights at all (so equality above means something) */
    float *init = NULL;
    ct_net *fresh = NULL;
    ct_error err = {0};
    if (ct_net_create(net, CT_TRAIN, 0, NULL, NULL, &fresh, &err) == CT_OK) init = ct_net_param_buffer(fresh);
    CHECK(init && count_far(init, ref, &param_segs, 1e-3, false, &first) > 0, "%s: 20 iterations changed the weights", name);
    ct_net_free(fresh);
  }
  free(ref);
  free(a);
  free(b);
  free(au);
  free(e);
}

/* One forward+backward of the every-layer net on `devices`; copies of every blob's data and
 * diff and of the parameter gradients, concatenated (their ranges in pass_segs). */
static segs pass_segs;

static float *one_pass(const char *path, const char *devices, size_t *n) {
  ct_net *net = NULL;
  ct_error err = {0};
  float loss;
  if (ct_net_create(path, CT_TRAIN, 0, NULL, NULL, &net, &err) || ct_net_set_devices(net, devices, &err)) {
    CHECK(0, "%s: %s", devices, err.msg);
    ct_net_free(net);
    return NULL;
  }
  ct_net_clear_param_diffs(net);
  if (ct_net_forward(net, &loss, &err) || ct_net_backward(net, &err)) {
    CHECK(0, "%s: %s", devices, err.msg);
    ct_net_free(net);
    return NULL;
  }
  size_t total = ct_net_param_total(net), cap = total;
  for (int i = 0; ct_net_blob_name(net, i); i++) {
    int shape[8], na = ct_net_blob_shape(net, ct_net_blob_name(net, i), shape);
    size_t c = 1;
    for (int k = 0; k < na; k++) c *= (size_t)shape[k];
    cap += 2 * c;
  }
  float *out = malloc(cap * sizeof(float)), *p = out;
  memcpy(p, ct_net_diff_buffer(net), total * sizeof(float));
  pass_segs.n = 0;
  for (int i = 0; i < ct_net_num_learnable(net); i++)
    seg_add(&pass_segs, ct_net_learnable(net)[i].offset, ct_net_learnable(net)[i].count, "a parameter gradient");
  p += total;
  for (int i = 0; ct_net_blob_name(net, i); i++) {
    const char *name = ct_net_blob_name(net, i);
    int shape[8], na = ct_net_blob_shape(net, name, shape);
    size_t c = 1;
    for (int k = 0; k < na; k++) c *= (size_t)shape[k];
    memcpy(p, ct_net_blob_data(net, name), c * sizeof(float));
    char what[48];
    snprintf(what, sizeof what, "%s data", name);
    seg_add(&pass_segs, (size_t)(p - out), c, what);
    p += c;
    memcpy(p, ct_net_blob_diff(net, name), c * sizeof(float));
    snprintf(what, sizeof what, "%s diff", name);
    seg_add(&pass_segs, (size_t)(p - out), c, what);
    p += c;
  }
  *n = cap;
  ct_net_free(net);
  return out;
}

/* The ranges of pass_segs that are forward outputs (blob data) or parameter gradients: what
 * must equal the single-device run to rounding. Blob gradients are left out of that comparison:
 * a max-pooling window whose two largest inputs differ by rounding alone routes its gradient
 * to either one (the every-layer net has such near-ties after its Sigmoid); they are held
 * bit-identical to the CPU run with the same partitions instead. */
static segs outputs_and_param_grads(void) {
  segs g = {0};
  for (int k = 0; k < pass_segs.n; k++)
    if (!strstr(pass_segs.name[k], " diff")) seg_add(&g, pass_segs.off[k], pass_segs.len[k], pass_segs.name[k]);
  return g;
}

static void test_one_pass(const char *path) {
  size_t n[5] = {0}, first = 0;
  float *ref = one_pass(path, "cpu", &n[0]); /* one device: the CPU as one partition */
  float *a = one_pass(path, "cpu=0.3,emu:0=0.7", &n[1]), *a_cpu = one_pass(path, "cpu=0.3,cpu=0.7", &n[2]);
  float *b = one_pass(path, "emu:0=0.5,cpu=0.25,emu:0=0.25", &n[3]),
        *b_cpu = one_pass(path, "cpu=0.5,cpu=0.25,cpu=0.25", &n[4]);
  if (ref && a && a_cpu && b && b_cpu) {
    CHECK(n[0] == n[1] && n[1] == n[2] && n[2] == n[3] && n[3] == n[4], "one pass: sizes agree");
    segs g = outputs_and_param_grads();
    int bad = count_far(ref, a, &g, 1e-5, true, &first);
    CHECK(!bad, "one pass, cpu 0.3 + emu:0 0.7 against one device: %d values differ (first %zu, %s: %g vs %g)", bad,
          first, seg_name(&g, first), bad ? ref[first] : 0, bad ? a[first] : 0);
    bad = count_far(ref, b, &g, 1e-5, true, &first);
    CHECK(!bad, "one pass, emu:0 master in three partitions against one device: %d values differ (first %zu, %s: %g "
          "vs %g)", bad, first, seg_name(&g, first), bad ? ref[first] : 0, bad ? b[first] : 0);
    if (memcmp(a, a_cpu, n[1] * sizeof(float))) count_far(a_cpu, a, &pass_segs, 0, true, &first);
    CHECK(!memcmp(a, a_cpu, n[1] * sizeof(float)),
          "one pass, cpu 0.3 + emu:0 0.7: every value and gradient bit-identical to cpu 0.3 + cpu 0.7");
    if (memcmp(b, b_cpu, n[3] * sizeof(float))) count_far(b_cpu, b, &pass_segs, 0, true, &first);
    CHECK(!memcmp(b, b_cpu, n[3] * sizeof(float)),
          "one pass, emu:0 0.5 + cpu 0.25 + emu:0 0.25: bit-identical to the same split on the CPU alone");
  }
  free(ref);
  free(a);
  free(a_cpu);
  free(b);
  free(b_cpu);
}

/* ------------------------------------------------------------------ copy counters */

/* x (8x4x6x6) -> conv1 (cpu) -> relu1 (cpu) -> conv2, relu2, fc (emu:0, each with its own
 * partition entry) -> loss (cpu). */
static const char *copy_net =
    "name: 'copies'\n"
    "force_backward: false\n"
    "layer { name: 'in' type: 'Input' top: 'x' top: 'y' input_param { shape { dim: 8 dim: 4 dim: 6 dim: 6 } "
    "  shape { dim: 8 } } }\n"
    "layer { name: 'conv1' type: 'Convolution' bottom: 'x' top: 'c1' partition { device: 'cpu' } "
    "  convolution_param { num_output: 5 kernel_size: 3 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'relu1' type: 'ReLU' bottom: 'c1' top: 'c1' partition { device: 'cpu' } }\n"
    "layer { name: 'conv2' type: 'Convolution' bottom: 'c1' top: 'c2' partition { device: 'emu:0' } "
    "  convolution_param { num_output: 6 kernel_size: 3 weight_filler { type: 'xavier' } bias_filler { "
    "  type: 'constant' value: 0.1 } } }\n"
    "layer { name: 'relu2' type: 'ReLU' bottom: 'c2' top: 'c2' partition { device: 'emu:0' } }\n"
    "layer { name: 'fc' type: 'InnerProduct' bottom: 'c2' top: 'fc' partition { device: 'emu:0' } "
    "  inner_product_param { num_output: 3 weight_filler { type: 'xavier' } } }\n"
    "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc' bottom: 'y' top: 'loss' partition { device: 'cpu' } }\n";

static unsigned long long copied(ct_net *net, const char *layer, int backward) {
  for (int i = 0; i < ct_net_num_layers(net); i++)
    if (!strcmp(ct_net_layer_name(net, i), layer)) {
      unsigned long long f, b;
      ct_net_layer_copied(net, i, &f, &b);
      return backward ? b : f;
    }
  CHECK(0, "no layer %s", layer);
  return 0;
}

static void test_copy_counters(void) {
  ct_net *net = NULL;
  ct_error err = {0};
  if (ct_net_create_from_text(copy_net, "copies.prototxt", NULL, CT_TRAIN, &net, &err)) {
    CHECK(0, "copies: %s", err.msg);
    return;
  }
  float *x = ct_net_blob_data(net, "x"), *y = ct_net_blob_data(net, "y");
  for (int i = 0; i < 8 * 4 * 36; i++) x[i] = (float)((i * 37) % 19) / 19.0f - 0.5f;
  for (int i = 0; i < 8; i++) y[i] = (float)(i % 3);
  float loss;
  /* a first pass moves the weights to emu:0 once; the second is the steady state */
  ct_net_clear_param_diffs(net);
  CHECK(ct_net_forward(net, &loss, &err) == CT_OK && ct_net_backward(net, &err) == CT_OK, "pass 1: %s", err.msg);
  ct_net_clear_param_diffs(net);
  ct_net_reset_copy_stats(net);
  CHECK(ct_net_forward(net, &loss, &err) == CT_OK && ct_net_backward(net, &err) == CT_OK, "pass 2: %s", err.msg);
  const unsigned long long F = 4; /* bytes per float */
  const unsigned long long c1 = 8 * 5 * 4 * 4, c2 = 8 * 6 * 2 * 2, fc = 8 * 3;
  /* the gradients were cleared on the host (the master), so each emu layer with parameters
   * fetches its zeroed gradient; the weights stayed on emu:0 (nothing changed them) */
  const unsigned long long w2 = 6 * 5 * 3 * 3 + 6, wfc = 3 * 24 + 3;
  CHECK(copied(net, "conv1", 0) == 0 && copied(net, "relu1", 0) == 0, "cpu layers before the change copy nothing");
  CHECK(copied(net, "conv2", 0) == c1 * F, "conv2 forward fetches its input: %llu bytes, predicted %llu",
        copied(net, "conv2", 0), c1 * F);
  CHECK(copied(net, "relu2", 0) == 0, "relu2 (same plan as conv2) copies nothing forward: %llu",
        copied(net, "relu2", 0));
  CHECK(copied(net, "fc", 0) == 0, "fc (same device) copies nothing forward: %llu", copied(net, "fc", 0));
  /* the loss reads fc's output on the host, and the net reads the scalar loss there */
  CHECK(copied(net, "loss", 0) == fc * F, "loss forward fetches fc's output: %llu bytes, predicted %llu",
        copied(net, "loss", 0), fc * F);
  CHECK(copied(net, "loss", 1) == 0, "loss backward (on the host) copies nothing: %llu", copied(net, "loss", 1));
  CHECK(copied(net, "fc", 1) == (fc + wfc) * F,
        "fc backward fetches its output gradient and its zeroed weight gradient: %llu bytes, predicted %llu",
        copied(net, "fc", 1), (fc + wfc) * F);
  CHECK(copied(net, "relu2", 1) == 0, "relu2 backward copies nothing: %llu", copied(net, "relu2", 1));
  CHECK(copied(net, "conv2", 1) == w2 * F, "conv2 backward fetches its zeroed gradients: %llu bytes, predicted %llu",
        copied(net, "conv2", 1), w2 * F);
  CHECK(copied(net, "relu1", 1) == c1 * F, "relu1 backward fetches its gradient from emu:0: %llu, predicted %llu",
        copied(net, "relu1", 1), c1 * F);
  CHECK(copied(net, "conv1", 1) == 0, "conv1 backward copies nothing: %llu", copied(net, "conv1", 1));
  char plan[128];
  for (int i = 0; i < ct_net_num_layers(net); i++)
    if (!strcmp(ct_net_layer_name(net, i), "relu2"))
      CHECK(!strcmp(ct_net_layer_plan(net, i, plan, sizeof plan), "emu:0: 1.00"), "relu2's plan: %s", plan);
  (void)c2;
  ct_net_free(net);
}

/* ------------------------------------------------------------------ errors */

static void expect_error(const char *what, const char *text, const char *devices, const char *want1,
                         const char *want2) {
  ct_net *net = NULL;
  ct_error err = {0};
  ct_status s = ct_net_create_from_text(text, "bad.prototxt", NULL, CT_TRAIN, &net, &err);
  if (s == CT_OK && devices) s = ct_net_set_devices(net, devices, &err);
  CHECK(s != CT_OK, "%s: refused", what);
  CHECK(strstr(err.msg, want1) && (!want2 || strstr(err.msg, want2)), "%s: message \"%s\" names \"%s\" and \"%s\"",
        what, err.msg, want1, want2 ? want2 : "");
  ct_net_free(net);
}

static void test_errors(void) {
  const char *head = "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 4 dim: 3 } } }\n";
  char text[1024];
  snprintf(text, sizeof text, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'r'\n  partition { device: 'gpu0' } }\n",
           head);
  expect_error("unknown device", text, NULL, "bad.prototxt:3:13", "\"gpu0\"");
  snprintf(text, sizeof text,
           "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'r'\n  partition { device: 'cuda:0' share: 1 } }\n", head);
  expect_error("absent device", text, NULL, "bad.prototxt:3:13", "cuda:0");
  snprintf(text, sizeof text,
           "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'r'\n  partition { share: -0.5 }\n"
           "  partition { share: 1 } }\n",
           head);
  expect_error("negative share", text, NULL, "bad.prototxt:3:13", "share -0.5");
  snprintf(text, sizeof text,
           "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'r'\n  partition { share: nan } partition { share: 1 } }\n",
           head);
  expect_error("NaN share", text, NULL, "layer \"r\"", "share nan");
  snprintf(text, sizeof text,
           "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'r'\n  partition { share: 0 } partition { share: 0 } }\n",
           head);
  expect_error("shares summing to 0", text, NULL, "bad.prototxt:3:13", "share 0");
  snprintf(text, sizeof text,
           "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'r'\n  partition { share: 0.5 }\n"
           "  partition { device: 'emu:0' } }\n",
           head);
  expect_error("mixed shares", text, NULL, "bad.prototxt:4:13", "no share");
  snprintf(text, sizeof text, "partition { device: 'tpu' }\n%s", head);
  expect_error("net-level unknown device", text, NULL, "bad.prototxt:1:11", "the net");
  snprintf(text, sizeof text, "%s", head);
  expect_error("--device with a bad share", text, "cpu=0.5,emu:0=abc", "\"abc\"", NULL);
  expect_error("--device with an absent device", text, "cuda:1", "cuda:1", NULL);
  expect_error("--device mixing shares", text, "cpu=0.5,emu:0", "every device a share", NULL);
}

/* A device call that fails mid-forward: the error names the layer, the device and the reason.
 * In a child process: the emu device reads its settings once per process. */
static void test_device_failure(void) {
  int fd[2];
  if (pipe(fd)) return;
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    setenv("CT_EMU_FAIL_AFTER", "25", 1);
    ct_net *net = NULL;
    ct_error err = {0};
    float loss;
    ct_status s = ct_net_create_from_text(copy_net, "copies.prototxt", NULL, CT_TRAIN, &net, &err);
    for (int k = 0; s == CT_OK && k < 10; k++) s = ct_net_forward(net, &loss, &err);
    if (s == CT_OK) snprintf(err.msg, sizeof err.msg, "no failure");
    ssize_t w = write(fd[1], err.msg, strlen(err.msg) + 1);
    (void)w;
    ct_net_free(net);
    _exit(s == CT_EDEVICE ? 0 : 3);
  }
  close(fd[1]);
  char msg[1100] = "";
  ssize_t got = read(fd[0], msg, sizeof msg - 1);
  (void)got;
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the failing device call ends in CT_EDEVICE (status %d): %s",
        status, msg);
  CHECK(strstr(msg, "on emu:0") && strstr(msg, "injected fault") && strstr(msg, "layer \""),
        "the message names the layer, the device and the reason: %s", msg);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  test_device_failure(); /* first: the forked child must create the emu device itself */
  test_errors();
  test_copy_counters();
  char path[512];
  snprintf(path, sizeof path, "%s/every.prototxt", dir);
  write_file(path, every_layer_net);
  test_one_pass(path);
  test_training("every", path, 0.01);
  snprintf(path, sizeof path, "%s/caffe1.prototxt", dir);
  write_file(path, caffe1_net);
  test_one_pass(path);
  test_training("caffe1", path, 0.01);
  /* LeNet at 0.01 flips a max-pooling choice at iteration 12 on rounding alone (the summation
   * order of the partitions' weight gradients), after which the runs drift apart by up to 4e-5
   * of the largest weight by iteration 20; at 0.002 the drift stays within 1e-5 */
  test_training("lenet", "../examples/fashion_mnist/lenet_train_test_idx.prototxt", 0.002);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return ct_check_report();
}
