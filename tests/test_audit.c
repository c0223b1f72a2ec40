/* No field silently ignored (issue 21): the field table covers the whole schema, every layer type
 * of the registry says which per-type parameters it reads, and a field cortado does not honour is
 * refused with its file:line:col before any layer is built. The schema is walked from its
 * descriptors and from the text of cortado.proto, so a field or message added to the schema
 * without a class fails here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "cortado.pb-c.h"
#include "drivers/driver.h"
#include "layers/layer.h"
#include "layers/params.h"
#include "proto/audit.h"
#include "proto/lexer.h"
#include "proto/prototxt.h"

/* ------------------------------------------------------------------ the schema's messages */

#define MAX_MSGS 256
static const ProtobufCMessageDescriptor *g_msgs[MAX_MSGS];
static int g_nmsgs;

static void reach(const ProtobufCMessageDescriptor *d) {
  for (int i = 0; i < g_nmsgs; i++)
    if (g_msgs[i] == d) return;
  if (g_nmsgs == MAX_MSGS) return;
  g_msgs[g_nmsgs++] = d;
  for (unsigned f = 0; f < d->n_fields; f++)
    if (d->fields[f].type == PROTOBUF_C_TYPE_MESSAGE) reach(d->fields[f].descriptor);
}

static const ProtobufCMessageDescriptor *find_msg(const char *name) {
  for (int i = 0; i < g_nmsgs; i++)
    if (!strcmp(ct_pt_msg_name(g_msgs[i]), name)) return g_msgs[i];
  return NULL;
}

/* Every field of every message has a class; every name in the table exists. */
static void test_table_covers_schema(void) {
  reach(&caffe__net_parameter__descriptor);
  reach(&caffe__solver_parameter__descriptor);
  reach(&caffe__solver_state__descriptor);
  reach(&caffe__blob_proto_vector__descriptor);
  reach(&caffe__datum__descriptor);
  int unclassified = 0;
  for (int i = 0; i < g_nmsgs; i++)
    for (unsigned f = 0; f < g_msgs[i]->n_fields; f++) {
      ct_field_use use;
      const char *why;
      bool known = ct_field_class(ct_pt_msg_name(g_msgs[i]), g_msgs[i]->fields[f].name, &use, &why);
      if (!known) unclassified++;
      CHECK(known, "%s.%s has no class in src/proto/fields.c", ct_pt_msg_name(g_msgs[i]), g_msgs[i]->fields[f].name);
      CHECK(!known || use == CT_FIELD_USED || (why && why[0]), "%s.%s: a %s field needs its reason",
            ct_pt_msg_name(g_msgs[i]), g_msgs[i]->fields[f].name, ct_field_use_name(use));
    }
  CHECK(g_nmsgs > 60, "the walk reached only %d messages", g_nmsgs);
  const char *msg, *fields, *why;
  ct_field_use use;
  int rows = 0;
  for (int i = 0; ct_field_rule_at(i, &msg, &fields, &use, &why); i++, rows++) {
    const ProtobufCMessageDescriptor *d = find_msg(msg);
    CHECK(d, "the table names message %s, which the schema does not have", msg);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", fields);
    for (char *save, *w = strtok_r(buf, " ", &save); d && w; w = strtok_r(NULL, " ", &save)) {
      CHECK(protobuf_c_message_descriptor_get_field_by_name(d, w), "the table names %s.%s, which the schema does "
            "not have", msg, w);
      /* a field in two rows would have two classes */
      ct_field_use first;
      const char *fw;
      ct_field_class(msg, w, &first, &fw);
      CHECK(first == use, "%s.%s is in two rows (%s and %s)", msg, w, ct_field_use_name(first), ct_field_use_name(use));
    }
  }
  CHECK(rows > 50, "the table has %d rows", rows);
}

/* Every message declared in cortado.proto is reached from the roots (so covered above). */
static void test_proto_text(void) {
  const char *root = getenv("CT_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/src/proto/cortado.proto", root ? root : "..");
  FILE *f = fopen(path, "r");
  CHECK(f, "cannot read %s", path);
  if (!f) return;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    char name[256];
    if (sscanf(line, " message %255[A-Za-z0-9_]", name) != 1) continue;
    n++;
    CHECK(find_msg(name), "message %s of cortado.proto is reached from no root of the audit", name);
  }
  fclose(f);
  CHECK(n > 60, "read only %d messages from %s", n, path);
}

/* ------------------------------------------------------------------ layer types */

static bool unreached_below(const ProtobufCMessageDescriptor *d, int depth, char *where, size_t n) {
  if (depth > 20) return false;
  for (unsigned f = 0; f < d->n_fields; f++) {
    ct_field_use use = CT_FIELD_USED;
    const char *why;
    ct_field_class(ct_pt_msg_name(d), d->fields[f].name, &use, &why);
    if (use == CT_FIELD_UNREACHED) {
      snprintf(where, n, "%s.%s", ct_pt_msg_name(d), d->fields[f].name);
      return true;
    }
    if (d->fields[f].type == PROTOBUF_C_TYPE_MESSAGE && unreached_below(d->fields[f].descriptor, depth + 1, where, n))
      return true;
  }
  return false;
}

/* An entry's field names, without "(subfields)". */
static int entry_fields(const char *entry, char out[16][64]) {
  int n = 0;
  for (const char *p = entry; *p && n < 16;) {
    while (*p == ' ') p++;
    const char *e = p;
    while (*e && *e != ' ' && *e != '(') e++;
    if (e > p) snprintf(out[n++], 64, "%.*s", (int)(e - p), p);
    if (*e == '(') e = strchr(e, ')') ? strchr(e, ')') + 1 : e + strlen(e);
    p = e;
  }
  return n;
}

static void test_layer_types(void) {
  const ProtobufCMessageDescriptor *L = &caffe__layer_parameter__descriptor;
  for (int i = 0; i < ct_layer_registry_size(); i++) {
    const char *type = ct_layer_registry_at(i)->type;
    const char *entry = ct_layer_param_fields(type);
    CHECK(entry, "layer type %s has no entry in src/layers/params.c", type);
    if (!entry) continue;
    char fields[16][64];
    int n = entry_fields(entry, fields);
    for (int k = 0; k < n; k++) {
      const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(L, fields[k]);
      CHECK(f && ct_layer_param_is_per_type(fields[k]), "%s reads %s, which is not a per-type field of "
            "LayerParameter", type, fields[k]);
      if (!f) continue;
      ct_field_use use;
      const char *why;
      ct_field_class("LayerParameter", fields[k], &use, &why);
      CHECK(use == CT_FIELD_USED, "%s reads %s, which the table calls %s", type, fields[k], ct_field_use_name(use));
      char where[256];
      if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        CHECK(!unreached_below(f->descriptor, 0, where, sizeof where),
              "%s reads %s, under which %s is still UNREACHED: classify it", type, fields[k], where);
    }
  }
  /* every per-type field: USED ones read by some registered type, UNREACHED ones by none */
  for (unsigned i = 0; i < L->n_fields; i++) {
    const char *name = L->fields[i].name;
    if (!ct_layer_param_is_per_type(name)) continue;
    int readers = 0;
    for (int t = 0; t < ct_layer_registry_size(); t++) {
      const char *entry = ct_layer_param_fields(ct_layer_registry_at(t)->type);
      char fields[16][64];
      int n = entry ? entry_fields(entry, fields) : 0;
      for (int k = 0; k < n; k++) readers += !strcmp(fields[k], name);
    }
    ct_field_use use;
    const char *why;
    ct_field_class("LayerParameter", name, &use, &why);
    if (use == CT_FIELD_USED) CHECK(readers > 0, "LayerParameter.%s is USED but no layer type reads it", name);
    if (use == CT_FIELD_UNREACHED)
      CHECK(readers == 0, "LayerParameter.%s is UNREACHED but %d layer types read it", name, readers);
  }
}

/* ------------------------------------------------------------------ refusals in files */

static ct_net *make(const char *text, ct_error *err) {
  ct_net *net = NULL;
  memset(err, 0, sizeof *err);
  ct_net_create_from_text(text, "a.prototxt", NULL, CT_TRAIN, &net, err);
  return net;
}

static void expect(const char *text, ct_status want, const char *phrase) {
  ct_error err;
  ct_net *net = make(text, &err);
  CHECK(!net && err.status == want && strstr(err.msg, phrase), "want %d with '%s', got %d: %s", want, phrase,
        err.status, err.msg);
  ct_net_free(net);
}

static const char k_in[] = "layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 2 dim: 3 dim: 4 "
                           "dim: 4 } } }\n";

static void test_net_refusals(void) {
  char buf[2048];
  /* a REFUSED field, at its position */
  snprintf(buf, sizeof buf,
           "%slayer { name: 'r' type: 'RNN' bottom: 'x' bottom: 'x' top: 'y'\n  recurrent_param { num_output: 2\n"
           "  debug_info: true } }",
           k_in);
  expect(buf, CT_EUNSUPPORTED, "a.prototxt:4:3: layer \"r\" (RNN): recurrent_param.debug_info is not supported");
  /* its default says nothing, so it is taken */
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' partition_dim: -1 }", k_in);
  ct_error err;
  ct_net *net = make(buf, &err);
  CHECK(net, "partition_dim at its default: %s", err.msg);
  ct_net_free(net);
  /* an INERT field is taken */
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' relu_param { engine: CUDNN } }",
           k_in);
  net = make(buf, &err);
  CHECK(net, "engine is inert: %s", err.msg);
  ct_net_free(net);
  /* a parameter the layer type does not read, at its position */
  snprintf(buf, sizeof buf, "%slayer { name: 'acc' type: 'ReLU' bottom: 'x' top: 'y'\n loss_param { ignore_label: 3 } }",
           k_in);
  expect(buf, CT_EINVAL, "a.prototxt:3:2: layer \"acc\" (ReLU): loss_param is not read by ReLU layers");
  /* ... or only some of it */
  snprintf(buf, sizeof buf, "%slayer { name: 'p' type: 'Pooling' bottom: 'x' top: 'y' pooling_param { kernel_size: 2 "
           "} lowering: TYPE3 }", k_in);
  expect(buf, CT_EINVAL, "lowering is not read by Pooling layers");
  /* UNREACHED: a message only absent layer types read */
  snprintf(buf, sizeof buf, "%slayer { name: 'r' type: 'ReLU' bottom: 'x' top: 'y' threshold_param { threshold: 1 } }",
           k_in);
  expect(buf, CT_EINVAL, "threshold_param is not read by ReLU layers");
  /* statistics are not learned (Caffe refuses an lr_mult for them too) */
  snprintf(buf, sizeof buf, "%slayer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y' param { lr_mult: 1 } }", k_in);
  expect(buf, CT_EINVAL, "holds statistics");
  /* the "expected one of" list of fields holds whole names only */
  ct_error e = {0};
  ProtobufCMessage *m = NULL;
  const char *t = "layer { nmae: 'x' }";
  ct_prototxt_parse(t, strlen(t), "a.prototxt", &caffe__net_parameter__descriptor, &m, &e);
  const char *list = strstr(e.msg, "expected one of ");
  CHECK(!m && list, "no field list in: %s", e.msg);
  if (list) {
    char buf2[1024];
    snprintf(buf2, sizeof buf2, "%s", list + strlen("expected one of "));
    char *end = strstr(buf2, " (did you mean");
    if (end) *end = 0;
    int words = 0;
    for (char *save, *w = strtok_r(buf2, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
      if (!strcmp(w, "...") || w[0] == '(' || !strcmp(w, "more)")) continue;
      char name[128];
      snprintf(name, sizeof name, "%s", w);
      char name_[130];
      snprintf(name_, sizeof name_, "%s_", name);
      CHECK(protobuf_c_message_descriptor_get_field_by_name(&caffe__layer_parameter__descriptor, name) ||
                protobuf_c_message_descriptor_get_field_by_name(&caffe__layer_parameter__descriptor, name_),
            "\"%s\" in the list of fields is not a field name (cut?): %s", w, e.msg);
      words++;
    }
    CHECK(words > 10, "only %d names in: %s", words, e.msg);
    CHECK(strstr(e.msg, "more)"), "the list says how many it left out: %s", e.msg);
  }
}

/* An unknown type is reported with its position before any layer is built: the Data layer in
 * front of it cannot be built (its database is not there), so reaching it first would report that
 * instead. */
static void test_unknown_type_first(void) {
  const char *text =
      "layer { name: 'd' type: 'Data' top: 'x' top: 'l' data_param { source: '/nonexistent/db' backend: LMDB "
      "batch_size: 2 } }\n"
      "layer { name: 'c' type: 'Convolution' bottom: 'x' top: 'c' convolution_param { num_output: 2 kernel_size: 1 } }\n"
      "layer { name: 'r' \n type: 'Relu' bottom: 'c' top: 'r' }\n";
  expect(text, CT_EUNSUPPORTED, "a.prototxt:4:2: layer \"r\" has unknown type \"Relu\" (did you mean \"ReLU\"?)");
  /* a type known to no phase of this net is not looked at: Caffe builds only the included layers */
  char buf[1024];
  snprintf(buf, sizeof buf, "%slayer { name: 't' type: 'NoSuchLayer' bottom: 'x' top: 't' include { phase: TEST } }",
           k_in);
  ct_error err;
  ct_net *net = make(buf, &err);
  CHECK(net, "a TEST-only layer in a TRAIN net: %s", err.msg);
  ct_net_free(net);
}

/* ------------------------------------------------------------------ solvers */

static char g_dir[256];

typedef struct log_lines {
  int forward, backward, total;
} log_lines;

static void count_line(void *ctx, const char *line) {
  log_lines *l = ctx;
  l->total++;
  l->forward += strstr(line, "[Forward] Layer ip, top blob p data:") != NULL;
  l->backward += strstr(line, "[Backward] Layer ip, param blob 0 diff:") != NULL;
}

/* Builds the solver (and, with run > 0, trains it that many iterations); *w0 (may be NULL) gets
 * ip's first weight after building. */
static ct_status solver_run(const char *extra, int run, log_lines *lines, float *w0, ct_error *err);

static ct_status solver_with(const char *extra, ct_error *err) { return solver_run(extra, 0, NULL, NULL, err); }

static ct_status solver_run(const char *extra, int run, log_lines *lines, float *w0, ct_error *err) {
  char net[512], path[512];
  snprintf(net, sizeof net, "%s/net.prototxt", g_dir);
  snprintf(path, sizeof path, "%s/solver.prototxt", g_dir);
  FILE *f = fopen(net, "w");
  fprintf(f, "layer { name: 'in' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { shape { dim: 4 dim: 3 } "
             "shape { dim: 4 dim: 2 } data_filler { type: 'gaussian' } } }\n"
             "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'p' inner_product_param { num_output: 2 "
             "weight_filler { type: 'gaussian' } } }\n"
             "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'p' bottom: 'y' top: 'loss' }\n");
  fclose(f);
  f = fopen(path, "w");
  fprintf(f, "net: 'net.prototxt'\nbase_lr: 0.1\nlr_policy: 'fixed'\nmax_iter: 2\nsnapshot_prefix: '%s/s'\n%s\n", g_dir,
          extra);
  fclose(f);
  ct_solver_options opt = {.quiet = lines ? 0 : 1, .log = lines ? count_line : NULL, .log_ctx = lines};
  ct_solver *s = NULL;
  memset(err, 0, sizeof *err);
  ct_status st = ct_solver_create(path, &opt, &s, err);
  if (st == CT_OK && w0) *w0 = ct_net_param_data(ct_solver_net(s), "ip", 0)[0];
  if (st == CT_OK && run > 0) st = ct_solver_step(s, run, err);
  ct_solver_free(s);
  return st;
}

static void expect_solver(const char *extra, ct_status want, const char *phrase) {
  ct_error err;
  ct_status st = solver_with(extra, &err);
  CHECK(st == want && (!phrase || strstr(err.msg, phrase)), "[%s]: want %d with '%s', got %d: %s", extra, want,
        phrase ? phrase : "", st, err.msg);
}

static void test_solver_refusals(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ct_audit_XXXXXX");
  CHECK(mkdtemp(g_dir), "mkdtemp");
  expect_solver("", CT_OK, NULL);
  expect_solver("solver_mode: CPU", CT_OK, NULL);
  char why[300];
  if (ct_driver_cuda_devices(why, sizeof why) == 0) { /* CI: no GPU; tests/gpu/run.sh trains with one */
    expect_solver("solver_mode: GPU", CT_EUNSUPPORTED,
                  "solver.prototxt:6:1: solver_mode: GPU, but there is no GPU to run on: ");
    expect_solver("solver_mode: GPU device_id: 1", CT_EUNSUPPORTED, "no GPU to run on");
  } else {
    expect_solver("solver_mode: GPU device_id: 99", CT_EINVAL, "solver.prototxt:6:18: device_id: 99, but this machine has");
  }
  /* read only with solver_mode: GPU, as Caffe's tool does */
  expect_solver("device_id: 1", CT_OK, NULL);
  expect_solver("device_id: 0", CT_OK, NULL);
  expect_solver("snapshot_diff: true", CT_EUNSUPPORTED, "snapshot_diff is not supported");
  expect_solver("snapshot_diff: false", CT_OK, NULL);
  expect_solver("layer_wise_reduce: false", CT_OK, NULL);
  expect_solver("debug_info: true", CT_OK, NULL);
  /* solver_type (deprecated) upgrades to type; both given must agree */
  expect_solver("solver_type: NESTEROV momentum: 0.9", CT_OK, NULL);
  expect_solver("solver_type: NESTEROV type: 'Adam'", CT_EINVAL, "disagree");
  /* weights: in the solver is read like --weights */
  expect_solver("weights: 'nothere.caffemodel'", CT_EIO, "nothere.caffemodel");
  /* the solver's weights: load like --weights */
  {
    char net[512], w[512], extra[700];
    snprintf(net, sizeof net, "%s/net.prototxt", g_dir);
    snprintf(w, sizeof w, "%s/w.caffemodel", g_dir);
    ct_error err;
    ct_net *n = NULL;
    CHECK(ct_net_create(net, CT_TRAIN, 0, NULL, NULL, &n, &err) == CT_OK, "net: %s", err.msg);
    if (n) {
      ct_net_param_data(n, "ip", 0)[0] = 12.5f;
      CHECK(ct_net_save_weights(n, w, &err) == CT_OK, "save: %s", err.msg);
      ct_net_free(n);
      float w0 = 0;
      snprintf(extra, sizeof extra, "weights: '%s'", w);
      CHECK(solver_run(extra, 0, NULL, &w0, &err) == CT_OK && w0 == 12.5f, "weights: loads them (%g): %s",
            (double)w0, err.msg);
      snprintf(extra, sizeof extra, "weights: 'nothere.caffemodel,%s'", w);
      CHECK(solver_run(extra, 0, NULL, &w0, &err) == CT_EIO, "a list, every file read: %s", err.msg);
    }
  }
  /* debug_info: Caffe's lines on display iterations */
  {
    ct_error err;
    log_lines on = {0, 0, 0}, off = {0, 0, 0};
    CHECK(solver_run("debug_info: true display: 2", 4, &on, NULL, &err) == CT_OK, "debug run: %s", err.msg);
    CHECK(on.forward == 2 && on.backward == 2, "debug_info logs on the 2 display iterations of 4: %d %d", on.forward,
          on.backward);
    CHECK(solver_run("display: 2", 4, &off, NULL, &err) == CT_OK && off.forward == 0 && off.total > 0,
          "and not without it: %d", off.forward);
  }
  /* inline nets are held to the same rules */
  expect_solver("test_net_param { layer { name: 'r' type: 'RNN' bottom: 'x' bottom: 'x' top: 'y' recurrent_param { "
                "num_output: 2 debug_info: true } } } test_iter: 1 test_interval: 1",
                CT_EUNSUPPORTED, "debug_info is not supported");
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  CHECK(system(cmd) == 0, "cleanup");
}

int main(void) {
  test_table_covers_schema();
  test_proto_text();
  test_layer_types();
  test_net_refusals();
  test_unknown_type_first();
  test_solver_refusals();
  return ct_check_report();
}
