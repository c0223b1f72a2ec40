/* The prototxt parser and printer, and binary protobuf io.
 *
 * Round trips (text -> message -> binary -> message -> text -> message -> binary, bytes equal)
 * over every example prototxt and a set of inline files, exact values of every field type,
 * malformed inputs with their exact line:col, and the file helpers. Run under ASan the error
 * cases double as leak checks of the parser's cleanup paths. */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cortado.pb-c.h"
#include "proto/prototxt.h"

/* ------------------------------------------------------------------ a test-only schema
 *
 * cortado.proto has no recursive message, no oneof and not every scalar type, so this hand-built
 * descriptor provides them, laid out as protoc-c lays out a proto2 message:
 *
 *   message Node {
 *     optional Node child = 1;  optional int32 v = 2;
 *     oneof choice { string s = 3; int32 i = 4; }
 *     repeated Node kids = 5;   optional sint32 zz = 6;   optional sfixed64 sf64 = 7;
 *     optional fixed32 f32 = 8; optional double d = 9;    repeated sint64 rz = 10;
 *     optional bytes raw = 11;  repeated fixed64 fx = 12; optional sfixed32 sf32 = 13;
 *   }
 */
typedef struct Node {
  ProtobufCMessage base;
  struct Node *child;
  protobuf_c_boolean has_v;
  int32_t v;
  uint32_t choice_case;
  union {
    char *s;
    int32_t i;
  } u;
  size_t n_kids;
  struct Node **kids;
  protobuf_c_boolean has_zz;
  int32_t zz;
  protobuf_c_boolean has_sf64;
  int64_t sf64;
  protobuf_c_boolean has_f32;
  uint32_t f32;
  protobuf_c_boolean has_d;
  double d;
  size_t n_rz;
  int64_t *rz;
  protobuf_c_boolean has_raw;
  ProtobufCBinaryData raw;
  size_t n_fx;
  uint64_t *fx;
  protobuf_c_boolean has_sf32;
  int32_t sf32;
} Node;

static const ProtobufCMessageDescriptor node_descriptor;

static void node_init(ProtobufCMessage *m) {
  memset(m, 0, sizeof(Node));
  m->descriptor = &node_descriptor;
}

#define OPT(name, id, type, field)                                                                                   \
  {                                                                                                                  \
    name, id, PROTOBUF_C_LABEL_OPTIONAL, type, offsetof(Node, has_##field), offsetof(Node, field), NULL, NULL, 0, 0, \
        NULL, NULL                                                                                                   \
  }
#define REP(name, id, type, field, desc)                                                                           \
  {                                                                                                                \
    name, id, PROTOBUF_C_LABEL_REPEATED, type, offsetof(Node, n_##field), offsetof(Node, field), desc, NULL, 0, 0, \
        NULL, NULL                                                                                                 \
  }

static const ProtobufCFieldDescriptor node_fields[13] = {
    {"child", 1, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_MESSAGE, 0, offsetof(Node, child), &node_descriptor, NULL,
     0, 0, NULL, NULL},
    OPT("v", 2, PROTOBUF_C_TYPE_INT32, v),
    {"s", 3, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_STRING, offsetof(Node, choice_case), offsetof(Node, u.s), NULL,
     NULL, PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
    {"i", 4, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT32, offsetof(Node, choice_case), offsetof(Node, u.i), NULL,
     NULL, PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
    REP("kids", 5, PROTOBUF_C_TYPE_MESSAGE, kids, &node_descriptor),
    OPT("zz", 6, PROTOBUF_C_TYPE_SINT32, zz),
    OPT("sf64", 7, PROTOBUF_C_TYPE_SFIXED64, sf64),
    OPT("f32", 8, PROTOBUF_C_TYPE_FIXED32, f32),
    OPT("d", 9, PROTOBUF_C_TYPE_DOUBLE, d),
    REP("rz", 10, PROTOBUF_C_TYPE_SINT64, rz, NULL),
    OPT("raw", 11, PROTOBUF_C_TYPE_BYTES, raw),
    REP("fx", 12, PROTOBUF_C_TYPE_FIXED64, fx, NULL),
    OPT("sf32", 13, PROTOBUF_C_TYPE_SFIXED32, sf32),
};
/* child d f32 fx i kids raw rz s sf32 sf64 v zz */
static const unsigned node_by_name[13] = {0, 8, 7, 11, 3, 4, 10, 9, 2, 12, 6, 1, 5};
static const ProtobufCIntRange node_ranges[2] = {{1, 0}, {0, 13}};

static const ProtobufCMessageDescriptor node_descriptor = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                           "test.Node",
                                                           "Node",
                                                           "Test__Node",
                                                           "test",
                                                           sizeof(Node),
                                                           13,
                                                           node_fields,
                                                           node_by_name,
                                                           1,
                                                           node_ranges,
                                                           node_init,
                                                           NULL,
                                                           NULL,
                                                           NULL};

/* ------------------------------------------------------------------ helpers */

#define NET (&caffe__net_parameter__descriptor)
#define SOLVER (&caffe__solver_parameter__descriptor)
#define LAYER (&caffe__layer_parameter__descriptor)
#define CONV (&caffe__convolution_parameter__descriptor)
#define POOL (&caffe__pooling_parameter__descriptor)
#define TILE (&caffe__tile_parameter__descriptor)
#define CLIP (&caffe__clip_parameter__descriptor)
#define LSTATE (&caffe__layer_state__descriptor)
#define V1 (&caffe__v1_layer_parameter__descriptor)
#define NODE (&node_descriptor)

static ProtobufCMessage *parse_ok(const ProtobufCMessageDescriptor *desc, const char *text) {
  ProtobufCMessage *m = NULL;
  ct_error err = {0};
  ct_status st = ct_prototxt_parse(text, strlen(text), "t", desc, &m, &err);
  CHECK(st == CT_OK && m != NULL, "parsing %.60s: %s", text, err.msg);
  return st == CT_OK ? m : NULL;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*n + 1);
  if (b) CHECK(protobuf_c_message_pack(m, b) == *n, "pack size");
  return b;
}

/* text -> message -> binary -> message -> text -> message -> binary: the bytes must match,
 * and printing is a fixed point. */
static void roundtrip(const char *text, size_t len, const char *name, const ProtobufCMessageDescriptor *desc) {
  ProtobufCMessage *m1 = NULL, *m2 = NULL, *m3 = NULL;
  uint8_t *b1 = NULL, *b3 = NULL;
  char *t2 = NULL, *t3 = NULL;
  ct_error err = {0};
  ct_status st = ct_prototxt_parse(text, len, name, desc, &m1, &err);
  CHECK(st == CT_OK, "%s: %s", name, err.msg);
  if (st != CT_OK) return;
  size_t n1, n3;
  b1 = pack(m1, &n1);
  m2 = protobuf_c_message_unpack(desc, NULL, n1, b1);
  CHECK(m2 != NULL, "%s: unpack failed", name);
  if (!m2) goto out;
  t2 = ct_prototxt_print(m2);
  CHECK(t2 != NULL, "%s: print failed", name);
  if (!t2) goto out;
  st = ct_prototxt_parse(t2, strlen(t2), name, desc, &m3, &err);
  CHECK(st == CT_OK, "%s: reparse of printed text: %s\n%s", name, err.msg, t2);
  if (st != CT_OK) goto out;
  b3 = pack(m3, &n3);
  CHECK(n1 == n3 && memcmp(b1, b3, n1) == 0, "%s: binary differs after the round trip (%zu vs %zu bytes)", name, n1,
        n3);
  t3 = ct_prototxt_print(m3);
  CHECK(t3 && strcmp(t2, t3) == 0, "%s: printing is not a fixed point", name);
out:
  free(b1);
  free(b3);
  free(t2);
  free(t3);
  protobuf_c_message_free_unpacked(m1, NULL);
  protobuf_c_message_free_unpacked(m2, NULL);
  protobuf_c_message_free_unpacked(m3, NULL);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int examples_seen;

static void roundtrip_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (stat(path, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode)) {
      roundtrip_dir(path);
    } else if (ends_with(e->d_name, ".prototxt")) {
      char *text;
      size_t len;
      ct_error err = {0};
      ct_status st = ct_read_file(path, 1 << 26, &text, &len, &err);
      CHECK(st == CT_OK, "%s", err.msg);
      if (st != CT_OK) continue;
      roundtrip(text, len, path, strstr(e->d_name, "solver") ? SOLVER : NET);
      free(text);
      examples_seen++;
    }
  }
  closedir(d);
}

/* ------------------------------------------------------------------ inline files */

static const char *lenet =
    "# A LeNet-like net that uses every feature of the format\n"
    "name: \"LeNet\"   # a trailing comment\n"
    "input: \"data\"\n"
    "input_shape { dim: [64, 1, 28, 28] }\n"
    "force_backward: true\n"
    "state { phase: TRAIN level: 2 stage: \"s1\" stage: 's2' }\n"
    "layer {\n"
    "  name: \"mnist\"\n"
    "  type: \"Data\"\n"
    "  top: \"data\" top: \"label\"\n"
    "  include { phase: TRAIN }\n"
    "  transform_param { scale: 0.00390625 mirror: false mean_value: [104, 117.5, 123.68] }\n"
    "  data_param { source: \"examples/mnist/mnist_train_lmdb\" batch_size: 64 backend: LMDB }\n"
    "  idx_data_param { images: \"train-images-idx3-ubyte.gz\" labels: 'train-labels-idx1-ubyte.gz' shuffle: True }\n"
    "}\n"
    "layer {\n"
    "  name: \"conv1\"; type: \"Convolution\"; bottom: \"data\"; top: \"conv1\";\n"
    "  param { lr_mult: 1 } param: { lr_mult: 2, decay_mult: 0 }\n"
    "  convolution_param <\n"
    "    num_output: 20\n"
    "    kernel_size: 5\n"
    "    stride: 1\n"
    "    pad: [0]\n"
    "    dilation: []\n"
    "    weight_filler { type: \"xavier\" variance_norm: AVERAGE }\n"
    "    bias_filler { type: \"constant\" value: -0.0 }\n"
    "    engine: 1\n"
    "  >\n"
    "  partition { device: \"cpu\" share: 0.4 }\n"
    "  partition { device: \"cuda:0\" share: .6 }\n"
    "  partition_dim: 0\n"
    "  location: -1\n"
    "  lowering: TYPE3\n"
    "}\n"
    "layer {\n"
    "  name: \"pool1\" type: \"Pooling\" bottom: \"conv1\" top: \"pool1\"\n"
    "  pooling_param { pool: MAX kernel_size: 2 stride: 0x2 round_mode: FLOOR }\n"
    "}\n"
    "layer {\n"
    "  name: \"ip1\" type: \"InnerProduct\" bottom: \"pool1\" top: \"ip1\"\n"
    "  blobs { shape { dim: 2 dim: 3 } data: [1, -2.5, 3e-3, 1e+2, inf, -inf] double_data: [0.1, 1e-300, -2] }\n"
    "  inner_product_param { num_output: 500 weight_filler { type: \"gaussian\" std: 1e-4 } bias_term: f }\n"
    "  propagate_down: [true, false, 1, 0]\n"
    "}\n"
    "layer { name: \"relu1\" type: \"ReLU\" bottom: \"ip1\" top: \"ip1\" relu_param { negative_slope: 0.01f } }\n"
    "layer { name: \"clip\" type: \"Clip\" bottom: \"ip1\" top: \"ip1c\" clip_param { min: -1 max: 1 } }\n"
    "layer {\n"
    "  name: \"loss\" type: \"SoftmaxWithLoss\" bottom: \"ip2\" bottom: \"label\" top: \"loss\"\n"
    "  loss_weight: 1\n"
    "  loss_param { ignore_label: -1 normalization: VALID }\n"
    "  exclude [ { phase: TEST }, { stage: \"deploy\" not_stage: \"x\" } ]\n"
    "}\n"
    "layer { name: \"weird \\\"name\\\"\\twith\\\\escapes\\n\" ' and concatenation\\x21\\041' type: 'Split' }\n"
    "layer { name: \"dummy\" type: \"DummyData\" top: \"d\"\n"
    "  dummy_data_param { shape { dim: 9223372036854775807 dim: -9223372036854775808 }\n"
    "    data_filler: [ { type: \"constant\" value: 1 }, < type: \"uniform\" min: -1 max: 1 > ] } }\n"
    "layer { name: \"img\" type: \"ImageData\" image_data_param { root_folder: \"\" source: \"list.txt\" } }\n"
    "layers { name: \"old\" type: 4 }\n";

static const char *solver =
    "net: \"lenet_train_test.prototxt\"\n"
    "test_iter: 100 test_iter: [200, 300]\n"
    "test_interval: 500\n"
    "base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005\n"
    "lr_policy: \"inv\" gamma: 0.0001 power: 0.75\n"
    "display: 100 max_iter: 10000\n"
    "snapshot: 5000 snapshot_prefix: \"examples/mnist/lenet\"\n"
    "solver_mode: CPU\n"
    "random_seed: 0x7fffffffffffffff\n"
    "type: \"Nesterov\"\n"
    "stepvalue: [1000, 2000]\n"
    "cluster { nworker_groups: 2 nworkers_per_group: 2 nserver_groups: 1 nservers_per_group: 2 "
    "server_worker_separate: true }\n"
    "framework: DOWNPOUR\n"
    "train_state { phase: TRAIN stage: \"a\" }\n"
    "test_state { phase: TEST } test_state { phase: TEST level: 1 }\n"
    "net_param { name: \"inline\" layer { name: \"x\" type: \"Input\" top: \"x\" input_param { shape { dim: [1, 2] } } "
    "} }\n"
    "weights: \"a.caffemodel\" weights: \"b.caffemodel\"\n";

static const char *state =
    "iter: 1000 learned_net: \"lenet_iter_1000.caffemodel\" current_step: 2\n"
    "history { shape { dim: 3 } data: [0.5, -1e-10, 3.4028235e38] }\n"
    "history { num: 1 channels: 2 height: 3 width: 4 diff: [1.17549435e-38, 1e-45] }\n"
    "layer_state { layer: \"data\" cursor: 18446744073709551615 rng: [1, 2, 0xffffffffffffffff] }\n"
    "loss_history: [1.5, nan, -nan, 2.25]\n"
    "solver_rng: 42\n";

static const char *datum =
    "channels: 1 height: 2 width: 2 data: \"\\x00\\x01\\377\\n\" \"\\0abc\" label: 7 "
    "float_data: [1, 2.5] encoded: t\n";

static const char *node_text =
    "child { child { v: 3 child < > } s: \"only\" }\n"
    "kids { i: -7 } kids: { zz: -2147483648 } kids [ { sf64: -9223372036854775808 }, { f32: 4294967295 } ]\n"
    "d: 1e-300 rz: [-1, 9223372036854775807, -9223372036854775808] raw: \"\\x00\\xff\\\"'\"\n"
    "fx: [0, 18446744073709551615] sf32: -2147483648 v: 0x7fffffff\n";

/* ------------------------------------------------------------------ values */

typedef struct bad_case {
  const ProtobufCMessageDescriptor *desc;
  const char *text;
  size_t len; /* 0: strlen */
  const char *pos;
  const char *phrase;
  ct_status status;
} bad_case;

#define BAD(d, t, pos, phrase) \
  { d, t, 0, pos, phrase, CT_EPARSE }
#define BADN(d, t, pos, phrase) \
  { d, t, sizeof(t) - 1, pos, phrase, CT_EPARSE }

static void check_bad(const bad_case *c);

static void test_values(void) {
  Caffe__NetParameter *net = (Caffe__NetParameter *)parse_ok(NET, lenet);
  if (net) {
    CHECK(strcmp(net->name, "LeNet") == 0, "name %s", net->name);
    CHECK(net->n_input_shape == 1 && net->input_shape[0]->n_dim == 4 && net->input_shape[0]->dim[3] == 28, "shape");
    CHECK(net->has_force_backward && net->force_backward, "force_backward");
    CHECK(net->state && net->state->phase == CAFFE__PHASE__TRAIN && net->state->n_stage == 2 &&
              strcmp(net->state->stage[1], "s2") == 0,
          "state");
    CHECK(net->n_layer == 10, "layers %zu", net->n_layer);
    CHECK(net->n_layers == 1 && net->layers[0]->type == 4, "V1 layers");
    if (net->n_layer == 10) {
      Caffe__LayerParameter **L = net->layer;
      CHECK(L[0]->n_top == 2 && strcmp(L[0]->top[1], "label") == 0, "tops");
      CHECK(L[0]->n_include == 1 && L[0]->include[0]->has_phase && L[0]->include[0]->phase == CAFFE__PHASE__TRAIN,
            "include");
      CHECK(L[0]->transform_param->scale == 0.00390625f && L[0]->transform_param->n_mean_value == 3 &&
                L[0]->transform_param->mean_value[2] == 123.68f,
            "transform");
      CHECK(L[0]->data_param->backend == CAFFE__DATA_PARAMETER__DB__LMDB && L[0]->data_param->batch_size == 64,
            "data_param");
      CHECK(L[0]->idx_data_param->shuffle == 1, "True");
      Caffe__ConvolutionParameter *c = L[1]->convolution_param;
      CHECK(c && c->num_output == 20 && c->n_kernel_size == 1 && c->n_pad == 1 && c->n_dilation == 0, "conv");
      CHECK(c && c->engine == CAFFE__CONVOLUTION_PARAMETER__ENGINE__CAFFE, "enum by number");
      CHECK(c && c->weight_filler->variance_norm == CAFFE__FILLER_PARAMETER__VARIANCE_NORM__AVERAGE, "nested enum");
      CHECK(c && c->bias_filler->has_value && c->bias_filler->value == 0 && signbit(c->bias_filler->value), "-0.0");
      CHECK(L[1]->n_param == 2 && L[1]->param[1]->lr_mult == 2 && L[1]->param[1]->decay_mult == 0, "params");
      CHECK(L[1]->n_partition == 2 && L[1]->partition[1]->share == 0.6f &&
                strcmp(L[1]->partition[1]->device, "cuda:0") == 0,
            "partition");
      CHECK(L[1]->partition_dim == 0 && L[1]->location == -1 && L[1]->lowering == CAFFE__LOWERING__TYPE3, "cortado");
      CHECK(L[2]->pooling_param->stride == 2 &&
                L[2]->pooling_param->round_mode == CAFFE__POOLING_PARAMETER__ROUND_MODE__FLOOR,
            "hex stride");
      Caffe__BlobProto *b = L[3]->blobs[0];
      CHECK(b->n_data == 6 && b->data[1] == -2.5f && b->data[2] == 3e-3f && b->data[3] == 100.0f, "floats");
      CHECK(isinf(b->data[4]) && b->data[4] > 0 && isinf(b->data[5]) && b->data[5] < 0, "inf");
      CHECK(b->n_double_data == 3 && b->double_data[0] == 0.1 && b->double_data[1] == 1e-300, "doubles");
      CHECK(L[3]->inner_product_param->has_bias_term && !L[3]->inner_product_param->bias_term, "bool f");
      CHECK(L[3]->inner_product_param->weight_filler->std == 1e-4f, "1e-4");
      CHECK(L[3]->n_propagate_down == 4 && L[3]->propagate_down[0] && !L[3]->propagate_down[1] &&
                L[3]->propagate_down[2] && !L[3]->propagate_down[3],
            "bool list");
      CHECK(L[4]->relu_param->negative_slope == 0.01f, "trailing f");
      CHECK(L[5]->clip_param->min == -1 && L[5]->clip_param->max == 1, "required");
      CHECK(L[6]->n_loss_weight == 1 && L[6]->loss_param->ignore_label == -1 && L[6]->n_exclude == 2 &&
                strcmp(L[6]->exclude[1]->not_stage[0], "x") == 0,
            "message list");
      CHECK(strcmp(L[7]->name, "weird \"name\"\twith\\escapes\n and concatenation!!") == 0, "escapes: %s", L[7]->name);
      Caffe__DummyDataParameter *dd = L[8]->dummy_data_param;
      CHECK(dd->shape[0]->dim[0] == INT64_MAX && dd->shape[0]->dim[1] == INT64_MIN, "int64 limits");
      CHECK(dd->n_data_filler == 2 && strcmp(dd->data_filler[1]->type, "uniform") == 0 && dd->data_filler[1]->min == -1,
            "angle brackets in a list");
      Caffe__ImageDataParameter *im = L[9]->image_data_param;
      CHECK(im->root_folder && im->root_folder[0] == '\0' &&
                im->root_folder != (char *)caffe__image_data_parameter__descriptor.fields[11].default_value,
            "explicit empty string");
      char *printed = ct_prototxt_print(&net->base);
      CHECK(printed && strstr(printed, "    root_folder: \"\"\n"), "explicit default string printed");
      CHECK(printed && strstr(printed, "  convolution_param {\n    num_output: 20\n"), "indentation");
      CHECK(printed && strstr(printed, "      variance_norm: AVERAGE\n"), "enum by name");
      CHECK(printed && strstr(printed, "    mean_value: 123.68\n"), "shortest float");
      CHECK(printed && strstr(printed, "name: \"weird \\\"name\\\"\\twith\\\\escapes\\n and concatenation!!\""),
            "escaped print");
      CHECK(printed && strstr(printed, "    value: -0\n"), "-0 printed");
      CHECK(printed && !strstr(printed, "dilation"), "empty list not printed");
      free(printed);
    }
    protobuf_c_message_free_unpacked(&net->base, NULL);
  }

  Caffe__SolverParameter *s = (Caffe__SolverParameter *)parse_ok(SOLVER, solver);
  if (s) {
    CHECK(s->n_test_iter == 3 && s->test_iter[2] == 300, "test_iter");
    CHECK(s->base_lr == 0.01f && s->weight_decay == 0.0005f && s->gamma == 0.0001f, "lr");
    CHECK(s->random_seed == INT64_MAX, "hex int64");
    CHECK(s->solver_mode == CAFFE__SOLVER_PARAMETER__SOLVER_MODE__CPU, "solver_mode");
    CHECK(s->cluster && s->cluster->nservers_per_group == 2 && s->cluster->server_worker_separate, "cluster");
    CHECK(s->framework == CAFFE__SOLVER_PARAMETER__FRAMEWORK__DOWNPOUR, "framework");
    CHECK(s->n_test_state == 2 && s->test_state[1]->level == 1, "test_state");
    CHECK(s->net_param && s->net_param->layer[0]->input_param->shape[0]->dim[1] == 2, "net_param");
    CHECK(strcmp(s->type, "Nesterov") == 0 && strcmp(s->regularization_type, "L2") == 0, "string default");
    char *printed = ct_prototxt_print(&s->base);
    CHECK(printed && !strstr(printed, "regularization_type"), "default string not printed");
    CHECK(printed && strstr(printed, "base_lr: 0.01\n") && strstr(printed, "weight_decay: 0.0005\n"), "0.01");
    CHECK(printed && strstr(printed, "random_seed: 9223372036854775807\n"), "int64 print");
    free(printed);
    protobuf_c_message_free_unpacked(&s->base, NULL);
  }

  Caffe__SolverState *ss = (Caffe__SolverState *)parse_ok(&caffe__solver_state__descriptor, state);
  if (ss) {
    CHECK(ss->layer_state[0]->cursor == UINT64_MAX && ss->layer_state[0]->rng[2] == UINT64_MAX, "uint64");
    CHECK(ss->history[0]->data[2] == FLT_MAX, "FLT_MAX");
    CHECK(ss->history[1]->diff[0] == FLT_MIN && ss->history[1]->diff[1] > 0, "FLT_MIN, denormal");
    CHECK(isnan(ss->loss_history[1]) && isnan(ss->loss_history[2]) && signbit(ss->loss_history[2]), "nan");
    char *printed = ct_prototxt_print(&ss->base);
    CHECK(printed && strstr(printed, "data: 3.4028235e+38\n"), "FLT_MAX printed");
    CHECK(printed && strstr(printed, "loss_history: -nan\n"), "-nan printed");
    CHECK(printed && strstr(printed, "data: -1e-10\n"), "-1e-10 printed");
    free(printed);
    protobuf_c_message_free_unpacked(&ss->base, NULL);
  }

  Caffe__Datum *d = (Caffe__Datum *)parse_ok(&caffe__datum__descriptor, datum);
  if (d) {
    CHECK(d->has_data && d->data.len == 8 && memcmp(d->data.data, "\0\1\377\n\0abc", 8) == 0, "bytes");
    CHECK(d->encoded, "bool t");
    char *printed = ct_prototxt_print(&d->base);
    CHECK(printed && strstr(printed, "data: \"\\000\\001\\377\\n\\000abc\"\n"), "bytes printed: %s", printed);
    free(printed);
    protobuf_c_message_free_unpacked(&d->base, NULL);
  }

  Node *n = (Node *)parse_ok(NODE, node_text);
  if (n) {
    CHECK(n->child && n->child->child && n->child->child->v == 3 && n->child->child->child, "recursion");
    CHECK(n->child->choice_case == 3 && strcmp(n->child->u.s, "only") == 0, "oneof string");
    CHECK(n->n_kids == 4 && n->kids[0]->choice_case == 4 && n->kids[0]->u.i == -7, "oneof int");
    CHECK(n->kids[1]->zz == INT32_MIN && n->kids[2]->sf64 == INT64_MIN && n->kids[3]->f32 == UINT32_MAX, "types");
    CHECK(n->d == 1e-300 && n->n_rz == 3 && n->rz[2] == INT64_MIN && n->fx[1] == UINT64_MAX, "64-bit types");
    CHECK(n->raw.len == 4 && memcmp(n->raw.data, "\0\377\"'", 4) == 0 && n->sf32 == INT32_MIN && n->v == INT32_MAX,
          "bytes, sfixed32");
    protobuf_c_message_free_unpacked(&n->base, NULL);
  }

  /* Each spelling, one at a time. */
  static const struct {
    const char *text;
    int value;
  } bools[] = {{"true", 1}, {"false", 0}, {"True", 1}, {"False", 0}, {"t", 1}, {"f", 0}, {"1", 1}, {"0", 0}};
  for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
    char text[64];
    snprintf(text, sizeof text, "bias_term: %s", bools[i].text);
    Caffe__ConvolutionParameter *c = (Caffe__ConvolutionParameter *)parse_ok(CONV, text);
    if (c) CHECK(c->has_bias_term && c->bias_term == bools[i].value, "%s", text);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)c, NULL);
  }
  static const struct {
    const char *text;
    long long value;
  } ints[] = {{"2147483647", INT32_MAX},
              {"-2147483648", INT32_MIN},
              {"0x10", 16},
              {"0X1f", 31},
              {"010", 8},
              {"-0x80000000", INT32_MIN},
              {"0", 0},
              {"-0", 0}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    char text[64];
    snprintf(text, sizeof text, "tiles: %s", ints[i].text);
    Caffe__TileParameter *t = (Caffe__TileParameter *)parse_ok(TILE, text);
    if (t) CHECK(t->has_tiles && t->tiles == ints[i].value, "%s gave %d", text, t->tiles);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)t, NULL);
  }
  Caffe__ConvolutionParameter *c =
      (Caffe__ConvolutionParameter *)parse_ok(CONV, "num_output: 4294967295 group: 0xffffffff");
  if (c) CHECK(c->num_output == UINT32_MAX && c->group == UINT32_MAX, "uint32 max");
  protobuf_c_message_free_unpacked((ProtobufCMessage *)c, NULL);
  static const struct {
    const char *text;
    double value;
  } floats[] = {{"1e-4", 1e-4},         {".5", 0.5},         {"5.", 5},       {"-0.0", 0},   {"7", 7},
                {"1.5f", 1.5},          {"2F", 2},           {"-.25", -0.25}, {"1E3", 1000}, {"1e-50", 0},
                {"Infinity", INFINITY}, {"-INF", -INFINITY}, {"0x10", 16}};
  for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
    char text[64];
    snprintf(text, sizeof text, "negative_slope: %s", floats[i].text);
    Caffe__ReLUParameter *r = (Caffe__ReLUParameter *)parse_ok(&caffe__re_luparameter__descriptor, text);
    if (r)
      CHECK(r->has_negative_slope && r->negative_slope == (float)floats[i].value, "%s gave %g", text,
            r->negative_slope);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)r, NULL);
  }
  Caffe__ReLUParameter *r = (Caffe__ReLUParameter *)parse_ok(&caffe__re_luparameter__descriptor, "negative_slope: nan");
  if (r) CHECK(isnan(r->negative_slope), "nan");
  protobuf_c_message_free_unpacked((ProtobufCMessage *)r, NULL);
  Caffe__PoolingParameter *p = (Caffe__PoolingParameter *)parse_ok(POOL, "pool: 2; engine: CUDNN, global_pooling: 1");
  if (p)
    CHECK(p->pool == CAFFE__POOLING_PARAMETER__POOL_METHOD__STOCHASTIC && p->engine == 2 && p->global_pooling,
          "enum by number");
  protobuf_c_message_free_unpacked((ProtobufCMessage *)p, NULL);

  /* An empty input is an empty message; a NULL text with len 0 too. */
  ProtobufCMessage *m = parse_ok(NET, "  # only a comment\n\n");
  if (m) {
    char *t = ct_prototxt_print(m);
    CHECK(t && t[0] == '\0', "empty print");
    free(t);
  }
  protobuf_c_message_free_unpacked(m, NULL);
  ct_error err = {0};
  CHECK(ct_prototxt_parse(NULL, 0, "t", NET, &m, &err) == CT_OK && m, "NULL, 0");
  protobuf_c_message_free_unpacked(m, NULL);
  CHECK(ct_prototxt_parse("x", 1, "t", NET, NULL, &err) == CT_EINVAL, "no output");
  /* len bounds the text: the rest is not read. */
  CHECK(ct_prototxt_parse("name: \"a\" garbage", 9, "t", NET, &m, &err) == CT_OK && m, "len bounds");
  protobuf_c_message_free_unpacked(m, NULL);

  /* A UTF-8 byte order mark is skipped; columns count from after it. */
  m = parse_ok(NET, "\xEF\xBB\xBFname: \"bom\"");
  if (m) CHECK(strcmp(((Caffe__NetParameter *)m)->name, "bom") == 0, "BOM");
  protobuf_c_message_free_unpacked(m, NULL);
  bad_case bom = BAD(NET, "\xEF\xBB\xBFnme: 1", "1:1", "unknown field \"nme\"");
  check_bad(&bom);

  /* The shortest float text that reads back exactly. */
  static const struct {
    float v;
    const char *text;
  } shortest[] = {{0.1f, "0.1"},
                  {1e-4f, "0.0001"},
                  {0.3f, "0.3"},
                  {1.0f / 3, "0.33333334"},
                  {100, "100"},
                  {123456792.0f, "1.2345679e+08"},
                  {16777217.0f, "16777216"},
                  {1e-5f, "1e-05"}};
  for (size_t i = 0; i < sizeof shortest / sizeof shortest[0]; i++) {
    Caffe__ReLUParameter rp = CAFFE__RE_LUPARAMETER__INIT;
    rp.has_negative_slope = 1;
    rp.negative_slope = shortest[i].v;
    char *t = ct_prototxt_print(&rp.base), want[64];
    snprintf(want, sizeof want, "negative_slope: %s\n", shortest[i].text);
    CHECK(t && strcmp(t, want) == 0, "printed %s, expected %s", t, want);
    free(t);
  }
}

/* ------------------------------------------------------------------ errors */

static const bad_case bad_cases[] = {
    BAD(CONV, "kernal_size: 3", "1:1",
        "unknown field \"kernal_size\" in ConvolutionParameter; expected one of num_output, bias_term, pad"),
    BAD(CONV, "kernal_size: 3", "1:1", "(did you mean \"kernel_size\"?)"),
    BAD(CONV, "num_output: 300000000000", "1:13", "value 300000000000 out of range for uint32 field \"num_output\""),
    BAD(POOL, "pool: abc", "1:7",
        "\"abc\" is not a valid value for enum field \"pool\" (PoolingParameter.PoolMethod); expected MAX, AVE or "
        "STOCHASTIC"),
    BAD(LAYER, "name: \"abc", "1:7", "unterminated string"),
    BAD(NET, "layer {\n  name: \"a\"\n", "3:1",
        "unexpected end of input; expected \"}\" to close the LayerParameter opened at 1:7"),
    BAD(CONV, "num_output: -5", "1:13", "negative value -5 for unsigned uint32 field \"num_output\""),
    BAD(CONV, "num_output: 1 num_output: 2", "1:15",
        "field \"num_output\" given twice in ConvolutionParameter (first on line 1)"),
    BAD(CONV, "num_output 5", "1:12", "unexpected number 5 after field name \"num_output\"; expected \":\""),
    BAD(LAYER, "convolution_param: 5", "1:20",
        "field \"convolution_param\" is a message (ConvolutionParameter), not a scalar; expected \"{\""),
    BAD(LAYER, "clip_param { min: 1 }", "1:12",
        "ClipParameter is missing required field \"max\"; expected it before the \"}\" at 1:21"),
    BAD(CLIP, "min: 1", "1:7", "ClipParameter is missing required field \"max\"; expected it before the end of input"),
    BADN(LAYER, "name: \"a\"\0 type: \"b\"", "1:10", "NUL byte in input"),
    BADN(LAYER, "name: \"a\0\"", "1:9", "NUL byte inside a string"),
    BADN(LAYER, "name: \"a\" # comment \0 more\n", "1:21", "NUL byte in input"),
    BAD(LAYER, "name: \"a\\qb\"", "1:9", "invalid escape \"\\q\" in string"),
    BAD(LAYER, "name: \"a\\x\"", "1:9", "escape \"\\x\" without hex digits"),
    BAD(LAYER, "name: \"\\777\"", "1:8", "octal escape \\777 is larger than a byte"),
    BAD(LAYER, "name: \"a\\0b\"", "1:7", "string field \"name\" contains a NUL byte"),
    BAD(LAYER, "name: \"\\x", "1:7", "unterminated string"),
    BAD(LAYER, "name: foo", "1:7", "unexpected \"foo\"; expected a quoted string for string field \"name\""),
    BAD(CONV, "bias_term: yes", "1:12",
        "\"yes\" is not a valid value for bool field \"bias_term\"; expected true or false"),
    BAD(CONV, "bias_term: 2", "1:12", "2 is not a valid value for bool field \"bias_term\""),
    BAD(CONV, "bias_term: TRUE", "1:12", "\"TRUE\" is not a valid value for bool field"),
    BAD(POOL, "pool: 7", "1:7", "7 is not a valid value for enum field \"pool\" (PoolingParameter.PoolMethod)"),
    BAD(POOL, "pool: -1", "1:7", "-1 is not a valid value for enum field \"pool\""),
    BAD(POOL, "pool: \"MAX\"", "1:7", "expected an unquoted name: MAX, AVE or STOCHASTIC"),
    BAD(CONV, "num_output: 1.5", "1:13",
        "\"1.5\" is not an integer; expected an integer for uint32 field \"num_output\""),
    BAD(CONV, "num_output: 0x", "1:13", "\"0x\" is not an integer"),
    BAD(CONV, "num_output: 08", "1:13", "\"08\" is not an integer"),
    BAD(CONV, "num_output: 5abc", "1:13", "\"5abc\" is not an integer"),
    BAD(CONV, "num_output: 1234567890123456789012345678901234567890123456789012345678901234567890123", "1:13",
        "is too long"),
    BAD(LAYER, "loss_weight: 1e39", "1:14", "value 1e39 out of range for float field \"loss_weight\""),
    BAD(LAYER, "loss_weight: 1.2.3", "1:14", "\"1.2.3\" is not a number"),
    BAD(LAYER, "loss_weight: abc", "1:14", "unexpected \"abc\"; expected a number for float field \"loss_weight\""),
    BAD(LAYER, "loss_weight: -", "1:15", "unexpected end of input; expected a number after \"-\""),
    BAD(LAYER, "loss_weight: 1e", "1:14", "\"1e\" is not a number"),
    BAD(LAYER, "name: \"a\" }", "1:11", "unexpected \"}\"; expected a field name of LayerParameter"),
    BAD(NET, "layer { name: \"a\" >", "1:19", "unexpected \">\"; expected a field name of LayerParameter or \"}\""),
    BAD(NET, "layer { name: \"a\" } }", "1:21", "unexpected \"}\"; expected a field name of NetParameter"),
    BAD(NET, "layer { name: \"x\" } layer <", "1:28", "unexpected end of input; expected \">\""),
    BAD(LAYER, "name: \"a\" @", "1:11", "unexpected character '@'"),
    BAD(LAYER, "\x01", "1:1", "unexpected byte 0x01"),
    BAD(LAYER, "name: \"a\" ; ;", "1:13", "unexpected \";\"; expected a field name"),
    BAD(CONV, "num_output: [1, 2]", "1:13", "field \"num_output\" is not repeated, so it takes no list"),
    BAD(LAYER, "transform_param: [ { } ]", "1:18", "field \"transform_param\" is not repeated"),
    BAD(CONV, "kernel_size: [1 2]", "1:17", "unexpected number 2 in a list; expected \",\" or \"]\""),
    BAD(CONV, "kernel_size: [1,]", "1:17", "unexpected \"]\"; expected an integer for uint32 field \"kernel_size\""),
    BAD(CONV, "kernel_size: [1, 2", "1:19", "unexpected end of input in a list; expected \",\" or \"]\""),
    BAD(NET, "layer [ { name: \"a\" } { name: \"b\" } ]", "1:23",
        "unexpected \"{\" in a list; expected \",\" or \"]\""),
    BAD(LAYER, "convolution_param { num_output: 1 } convolution_param { }", "1:37",
        "field \"convolution_param\" given twice in LayerParameter"),
    BAD(CONV, "weight_filler { type: \"gaussian\" } weight_filler: { }", "1:36", "field \"weight_filler\" given twice"),
    BAD(CONV, "num_output: 5 weight_filler { type: \"a\" value: 1 value: 2 }", "1:50",
        "field \"value\" given twice in FillerParameter"),
    BAD(LAYER, "bottom { }", "1:8", "field \"bottom\" is a string, not a message; expected \":\" and a value"),
    BAD(NET, "layer { convolution_param { weight_filler { std: x } } }", "1:50",
        "unexpected \"x\"; expected a number for float field \"std\""),
    BAD(NET, "layer: 5", "1:8", "field \"layer\" is a message (LayerParameter), not a scalar"),
    BAD(NET, "layer: ]", "1:8", "unexpected \"]\"; expected \"{\" to open message field \"layer\""),
    BAD(NET, "-5: 1", "1:1", "unexpected \"-\"; expected a field name of NetParameter"),
    BAD(NET,
        "name: \"n\"\n# comment\nlayer {\n  name: \"c\"\n  type: \"Convolution\"\n  convolution_param {\n"
        "    kernal_size: 3\n  }\n}\n",
        "7:5", "unknown field \"kernal_size\" in ConvolutionParameter"),
    BAD(CONV, "num_output: -", "1:14", "expected a number after \"-\""),
    BAD(CONV, "num_output: { }", "1:13", "unexpected \"{\"; expected an integer for uint32 field \"num_output\""),
    BAD(CONV, "num_output: 5 {", "1:15", "unexpected \"{\"; expected a field name of ConvolutionParameter"),
    BAD(CONV, "pad: -1", "1:6", "negative value -1 for unsigned uint32 field \"pad\""),
    BAD(TILE, "tiles: 2147483648", "1:8", "value 2147483648 out of range for int32 field \"tiles\""),
    BAD(TILE, "tiles: -2147483649", "1:8", "value -2147483649 out of range for int32 field \"tiles\""),
    BAD(TILE, "tiles: 0x80000000", "1:8", "value 0x80000000 out of range for int32 field \"tiles\""),
    BAD(LSTATE, "cursor: 18446744073709551616", "1:9",
        "value 18446744073709551616 out of range for uint64 field \"cursor\""),
    BAD(LSTATE, "cursor: -1", "1:9", "negative value -1 for unsigned uint64 field \"cursor\""),
    BAD(&caffe__blob_shape__descriptor, "dim: 9223372036854775808", "1:6",
        "value 9223372036854775808 out of range for int64"),
    BAD(LAYER, "name: 'abc\"", "1:7", "unterminated string"),
    BAD(LAYER, "name: \"abc\ndef\"", "1:7", "unterminated string"),
    BAD(SOLVER, "net: \"a\" \"b", "1:10", "unterminated string"),
    BAD(SOLVER, "solver_mode: GPUX", "1:14",
        "\"GPUX\" is not a valid value for enum field \"solver_mode\" (SolverParameter.SolverMode); expected CPU or "
        "GPU"),
    BAD(LAYER, "phase: TRAINING", "1:8", "expected TRAIN or TEST"),
    BAD(LAYER, "include { phase: TRAIN", "1:23",
        "unexpected end of input; expected \"}\" to close the NetStateRule opened at 1:9"),
    BAD(V1, "type: CONVOLUTIONN", "1:7", "\"CONVOLUTIONN\" is not a valid value for enum field \"type\""),
    BAD(NODE, "s: \"a\" i: 3", "1:8", "field \"i\" conflicts with \"s\", already set (they share a oneof)"),
    BAD(NODE, "kids { i: 1 s: \"x\" }", "1:13", "field \"s\" conflicts with \"i\""),
    BAD(NODE, "s: \"a\" s: \"b\"", "1:8", "field \"s\" given twice"),
    BAD(NODE, "d: 1e309", "1:4", "value 1e309 out of range for double field \"d\""),
    BAD(NODE, "raw: \"\\400\"", "1:7", "octal escape"),
    BAD(NODE, "child { v: 1 ", "1:14", "unexpected end of input; expected \"}\" to close the Node opened at 1:7"),
};

static void check_bad(const bad_case *c) {
  ProtobufCMessage *m = (ProtobufCMessage *)1;
  ct_error err = {0};
  size_t len = c->len ? c->len : strlen(c->text);
  ct_status st = ct_prototxt_parse(c->text, len, "t", c->desc, &m, &err);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "t:%s: ", c->pos);
  CHECK(st == c->status, "%s: status %d (%s)", c->text, (int)st, err.msg);
  CHECK(m == NULL, "%s: output not cleared", c->text);
  CHECK(err.status == c->status, "%s: err.status", c->text);
  CHECK(strncmp(err.msg, prefix, strlen(prefix)) == 0, "%s: expected position %s in: %s", c->text, c->pos, err.msg);
  CHECK(strstr(err.msg, c->phrase) != NULL, "%s: expected \"%s\" in: %s", c->text, c->phrase, err.msg);
  if (st == CT_OK) protobuf_c_message_free_unpacked(m, NULL);
}

static void test_errors(void) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) check_bad(&bad_cases[i]);
  printf("%zu malformed inputs checked\n", sizeof bad_cases / sizeof bad_cases[0]);

  /* An unknown name far longer than any field: truncated in the message, no overflow. */
  char longname[300];
  memset(longname, 'a', 200);
  strcpy(longname + 200, ": 1");
  bad_case c = BAD(NET, longname, "1:1", "unknown field \"aaaaaaaaaaaaaaaa");
  check_bad(&c);

  /* Every prefix of a valid file is either valid or a clean parse error. */
  size_t n = strlen(lenet);
  int crashes = 0;
  for (size_t k = 0; k < n; k++) {
    ProtobufCMessage *m = NULL;
    ct_error err = {0};
    ct_status st = ct_prototxt_parse(lenet, k, "t", NET, &m, &err);
    if (st != CT_OK && st != CT_EPARSE) crashes++;
    if (st != CT_OK && (m != NULL || strncmp(err.msg, "t:", 2) != 0)) crashes++;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK(crashes == 0, "%d prefixes misbehaved", crashes);
}

/* Random edits of a valid file: each result parses or fails with a positioned message, and
 * whatever parses survives the round trip. Deterministic (a fixed LCG). */
static void test_mutations(int rounds) {
  static const char alphabet[] = "{}<>[]:,;-\"'\\#\n0x.e9aZ_ \0\xff\x01fnt";
  size_t n = strlen(lenet);
  char *text = malloc(n + 1);
  uint64_t rng = 0x9e3779b97f4a7c15u;
  int misbehaved = 0, parsed = 0;
  if (!text) return;
  for (int r = 0; r < rounds; r++) {
    memcpy(text, lenet, n + 1);
    int edits = 1 + (int)((rng >> 33) % 3);
    for (int e = 0; e < edits; e++) {
      rng = rng * 6364136223846793005u + 1442695040888963407u;
      size_t at = (size_t)(rng >> 20) % n;
      text[at] = alphabet[(rng >> 50) % (sizeof alphabet - 1)];
    }
    ProtobufCMessage *m = NULL;
    ct_error err = {0};
    ct_status st = ct_prototxt_parse(text, n, "t", NET, &m, &err);
    if (st == CT_OK) {
      parsed++;
      int before = ct_checks_failed;
      roundtrip(text, n, "mutation", NET);
      if (ct_checks_failed != before) fprintf(stderr, "mutated text:\n%s\n", text);
    } else if (st != CT_EPARSE || m != NULL || strncmp(err.msg, "t:", 2) != 0) {
      misbehaved++;
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK(misbehaved == 0, "%d mutations misbehaved", misbehaved);
  printf("%d mutations, %d still valid\n", rounds, parsed);
  free(text);
}

/* Nesting: 100 levels parse, 101 are refused at the offending "{", and a huge depth costs no
 * stack. */
static void test_depth(void) {
  size_t levels = 100000;
  char *text = malloc(levels * 10 + 1);
  if (!text) return;
  for (int depth = 100; depth <= 101; depth++) {
    size_t k = 0;
    for (int i = 0; i < depth; i++) k += (size_t)sprintf(text + k, "child { ");
    for (int i = 0; i < depth; i++) k += (size_t)sprintf(text + k, "} ");
    ProtobufCMessage *m = NULL;
    ct_error err = {0};
    ct_status st = ct_prototxt_parse(text, k, "t", NODE, &m, &err);
    if (depth == 100) {
      CHECK(st == CT_OK, "100 levels: %s", err.msg);
      if (st == CT_OK) roundtrip(text, k, "100 levels", NODE);
    } else {
      CHECK(st == CT_EPARSE && strncmp(err.msg, "t:1:807: ", 9) == 0 && strstr(err.msg, "nested more than 100 levels"),
            "101 levels: %s", err.msg);
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
  size_t k = 0;
  for (size_t i = 0; i < levels; i++) k += (size_t)sprintf(text + k, "child{");
  ProtobufCMessage *m = NULL;
  ct_error err = {0};
  CHECK(ct_prototxt_parse(text, k, "t", NODE, &m, &err) == CT_EPARSE && m == NULL, "deep: %s", err.msg);
  free(text);
}

/* ------------------------------------------------------------------ files */

static char tmpdir[64];

static int dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static void test_files(void) {
  char path[256], path2[256];
  ct_error err = {0};
  snprintf(path, sizeof path, "%s/a.bin", tmpdir);

  /* Atomic write, overwrite, no temporary left behind. */
  CHECK(ct_write_file_atomic(path, "hello", 5, &err) == CT_OK, "%s", err.msg);
  CHECK(ct_write_file_atomic(path, "hi\0there", 8, &err) == CT_OK, "%s", err.msg);
  char *buf = NULL;
  size_t len = 0;
  CHECK(ct_read_file(path, 100, &buf, &len, &err) == CT_OK && len == 8 && memcmp(buf, "hi\0there", 9) == 0,
        "read back: %s", err.msg);
  free(buf);
  CHECK(dir_entries(tmpdir) == 1, "temporary files left: %d entries", dir_entries(tmpdir));
  CHECK(ct_read_file(path, 8, &buf, &len, &err) == CT_OK && len == 8, "exact limit");
  free(buf);
  CHECK(ct_read_file(path, 7, &buf, &len, &err) != CT_OK && buf == NULL && strstr(err.msg, "larger than the limit"),
        "over the limit: %s", err.msg);
  CHECK(ct_write_file_atomic(path, "", 0, &err) == CT_OK, "empty write");
  CHECK(ct_read_file(path, 100, &buf, &len, &err) == CT_OK && len == 0 && buf && buf[0] == '\0', "empty read");
  free(buf);
  /* Files whose size stat cannot tell (procfs reports 0) are read to their end. */
  if (access("/proc/self/status", R_OK) == 0) {
    CHECK(ct_read_file("/proc/self/status", 1 << 20, &buf, &len, &err) == CT_OK && len > 0 && strlen(buf) == len,
          "procfs: %s", err.msg);
    free(buf);
    CHECK(ct_read_file("/proc/self/status", 10, &buf, &len, &err) != CT_OK && !buf, "procfs over the limit");
  }
  snprintf(path2, sizeof path2, "%s/missing/x.bin", tmpdir);
  CHECK(ct_write_file_atomic(path2, "x", 1, &err) == CT_EIO && strstr(err.msg, "missing"), "no directory: %s", err.msg);
  CHECK(ct_read_file(path2, 100, &buf, &len, &err) == CT_EIO && buf == NULL, "missing file");
  CHECK(ct_read_file(tmpdir, 100, &buf, &len, &err) == CT_EIO && strstr(err.msg, "directory"), "a directory: %s",
        err.msg);
  CHECK(dir_entries(tmpdir) == 1, "failed writes left files");
  /* The target survives a failed write (it cannot be replaced by a directory's rename). */
  snprintf(path2, sizeof path2, "%s/sub", tmpdir);
  mkdir(path2, 0700);
  CHECK(ct_write_file_atomic(path2, "x", 1, &err) == CT_EIO, "rename over a directory fails");
  CHECK(dir_entries(path2) == 0 && dir_entries(tmpdir) == 2, "temporary removed after a failed rename");
  rmdir(path2);

  /* Binary protobuf: write, read back, compare. */
  Caffe__NetParameter *net = (Caffe__NetParameter *)parse_ok(NET, lenet);
  snprintf(path, sizeof path, "%s/net.binaryproto", tmpdir);
  if (net) {
    CHECK(ct_proto_write_binary(path, &net->base, &err) == CT_OK, "%s", err.msg);
    ProtobufCMessage *back = NULL;
    CHECK(ct_proto_read_binary(path, NET, &back, &err) == CT_OK && back, "%s", err.msg);
    if (back) {
      size_t n1, n2;
      uint8_t *b1 = pack(&net->base, &n1), *b2 = pack(back, &n2);
      CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "binary file round trip");
      free(b1);
      free(b2);
      protobuf_c_message_free_unpacked(back, NULL);
    }
    /* The same through the text files. */
    snprintf(path2, sizeof path2, "%s/net.prototxt", tmpdir);
    CHECK(ct_prototxt_write_file(path2, &net->base, &err) == CT_OK, "%s", err.msg);
    back = NULL;
    CHECK(ct_prototxt_read_file(path2, NET, &back, &err) == CT_OK && back, "%s", err.msg);
    if (back) {
      size_t n1, n2;
      uint8_t *b1 = pack(&net->base, &n1), *b2 = pack(back, &n2);
      CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "text file round trip");
      free(b1);
      free(b2);
      protobuf_c_message_free_unpacked(back, NULL);
    }
    unlink(path2);

    /* Truncations of a valid file are refused with a message, never a crash. */
    size_t n;
    uint8_t *b = pack(&net->base, &n);
    int bad = 0, refused = 0;
    for (size_t cut = 1; cut < n; cut += 7) {
      if (ct_write_file_atomic(path, b, cut, &err) != CT_OK) bad++;
      ProtobufCMessage *m = NULL;
      ct_status st = ct_proto_read_binary(path, NET, &m, &err);
      if (st == CT_OK) {
        protobuf_c_message_free_unpacked(m, NULL); /* a cut at a field boundary is valid */
      } else {
        refused++;
        if (st != CT_EPARSE || m || !strstr(err.msg, "not a valid NetParameter (binary protobuf)")) bad++;
      }
    }
    CHECK(bad == 0 && refused > 0, "%d truncations misbehaved, %d refused", bad, refused);
    free(b);
    protobuf_c_message_free_unpacked(&net->base, NULL);
  }
  /* A length that claims more than the file holds; then plain garbage. */
  static const uint8_t claims[] = {0x0a, 0xff, 0xff, 0xff, 0x0f, 'a'};
  CHECK(ct_write_file_atomic(path, claims, sizeof claims, &err) == CT_OK, "write");
  ProtobufCMessage *m = NULL;
  CHECK(ct_proto_read_binary(path, NET, &m, &err) == CT_EPARSE && !m &&
            strstr(err.msg, "field 1 at byte 0 claims 33554431 bytes, only 1 remain"),
        "%s", err.msg);
  CHECK(ct_write_file_atomic(path, "not a protobuf at all\n", 22, &err) == CT_OK, "write");
  CHECK(ct_proto_read_binary(path, NET, &m, &err) == CT_EPARSE && !m &&
            strstr(err.msg, "not a valid NetParameter (binary protobuf)"),
        "%s", err.msg);
  /* Wrong wire type for a known field (name is a string; varint given). */
  static const uint8_t wrong[] = {0x08, 0x01};
  CHECK(ct_write_file_atomic(path, wrong, sizeof wrong, &err) == CT_OK, "write");
  CHECK(ct_proto_read_binary(path, NET, &m, &err) == CT_EPARSE && !m, "%s", err.msg);
  /* A missing required field is refused by protobuf-c. */
  static const uint8_t clip[] = {0x0d, 0, 0, 0x80, 0x3f};
  CHECK(ct_write_file_atomic(path, clip, sizeof clip, &err) == CT_OK, "write");
  CHECK(ct_proto_read_binary(path, CLIP, &m, &err) == CT_EPARSE && !m, "%s", err.msg);
  CHECK(ct_proto_read_binary(path2, NET, &m, &err) == CT_EIO && !m, "missing: %s", err.msg);
  unlink(path);

  /* A prototxt file error names the file. */
  snprintf(path, sizeof path, "%s/bad.prototxt", tmpdir);
  CHECK(ct_write_file_atomic(path, "layer {\n  nam: \"x\"\n}\n", 21, &err) == CT_OK, "write");
  char want[512];
  snprintf(want, sizeof want, "%s:2:3: unknown field \"nam\" in LayerParameter", path);
  CHECK(ct_prototxt_read_file(path, NET, &m, &err) == CT_EPARSE && !m && strncmp(err.msg, want, strlen(want)) == 0,
        "%s", err.msg);
  unlink(path);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ct_prototxt_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_values();
  roundtrip(lenet, strlen(lenet), "lenet", NET);
  roundtrip(solver, strlen(solver), "solver", SOLVER);
  roundtrip(state, strlen(state), "state", &caffe__solver_state__descriptor);
  roundtrip(datum, strlen(datum), "datum", &caffe__datum__descriptor);
  roundtrip(node_text, strlen(node_text), "node", NODE);
  test_errors();
  test_depth();
  const char *rounds = getenv("CT_MUTATIONS");
  test_mutations(rounds ? atoi(rounds) : 2000);
  test_files();

  const char *src = getenv("CT_SOURCE_DIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/examples", src ? src : "..");
  roundtrip_dir(dir);
  printf("%d example prototxt files round-tripped from %s\n", examples_seen, dir);
  rmdir(tmpdir);
  return ct_check_report();
}
