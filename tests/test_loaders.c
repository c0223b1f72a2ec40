/* Loaders check every size and count before they allocate: files whose headers or shapes claim
 * far more than they hold (a 25-byte .caffemodel claiming a 10^12-element blob, a length prefix
 * of 10^12 bytes, an IDX header of 10^12 pixels) fail with a message, never with an allocation
 * attempt. Outside the sanitizer build the address space is capped at 4 GiB, so an attempt would
 * surface as CT_ENOMEM (checked against); under ASan it would abort the test (allocation too big).
 * Also: every truncation of a valid .caffemodel and .solverstate loads or fails cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "cortado.h"
#include "cortado.pb-c.h"
#include "data/idx.h"
#include "net/net.h"
#include "proto/prototxt.h"

#if defined(__SANITIZE_ADDRESS__)
#define CT_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_UNDER_ASAN 1
#endif
#endif

static char dir[] = "/tmp/ct_loaders_XXXXXX";

static const char NET[] =
    "name: 'small'\n"
    "layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }\n"
    "layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip' inner_product_param { num_output: 5 "
    "  bias_term: false weight_filler { type: 'xavier' } } }\n";

static const char *path_in(const char *name) {
  static char p[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

static const char *put(const char *name, const void *data, size_t n) {
  const char *p = path_in(name);
  FILE *f = fopen(p, "wb");
  CHECK(f != NULL, "cannot write %s", p);
  if (!f) return p;
  if (n) fwrite(data, 1, n, f);
  fclose(f);
  return p;
}

static size_t pack(const ProtobufCMessage *m, uint8_t **out) {
  size_t n = protobuf_c_message_get_packed_size(m);
  *out = malloc(n + 1);
  protobuf_c_message_pack(m, *out);
  return n;
}

/* A NetParameter with one layer "ip" holding one blob; the caller fills the blob. */
static size_t caffemodel_with(Caffe__BlobProto *b, uint8_t **out) {
  Caffe__LayerParameter lp = CAFFE__LAYER_PARAMETER__INIT;
  lp.name = "ip";
  Caffe__BlobProto *blobs[1] = {b};
  lp.n_blobs = 1;
  lp.blobs = blobs;
  Caffe__NetParameter np = CAFFE__NET_PARAMETER__INIT;
  Caffe__LayerParameter *layers[1] = {&lp};
  np.n_layer = 1;
  np.layer = layers;
  return pack(&np.base, out);
}

static void expect_fail(const char *what, ct_status got, ct_status want, const ct_error *err, const char *phrase) {
  CHECK(got == want, "%s: status %s, want %s (%s)", what, ct_status_name(got), ct_status_name(want),
        got ? err->msg : "no error");
  CHECK(got == CT_OK || strstr(err->msg, phrase), "%s: message \"%s\" lacks \"%s\"", what, err->msg, phrase);
}

static void huge_blob_claims(ct_net *net) {
  ct_error err;
  uint8_t *buf;
  /* shape 10^6 x 10^6 (10^12 elements) and one value: 25 bytes on disk */
  int64_t dims[2] = {1000000, 1000000};
  float one = 1;
  Caffe__BlobShape shape = CAFFE__BLOB_SHAPE__INIT;
  shape.n_dim = 2;
  shape.dim = dims;
  Caffe__BlobProto b = CAFFE__BLOB_PROTO__INIT;
  b.shape = &shape;
  b.n_data = 1;
  b.data = &one;
  size_t n = caffemodel_with(&b, &buf);
  CHECK(n <= 32, "the huge-claim file is %zu bytes", n);
  const char *p = put("huge_shape.caffemodel", buf, n);
  free(buf);
  expect_fail("10^12-element BlobShape", ct_net_load_weights(net, p, &err), CT_ESHAPE, &err, "1000000 1000000");
  /* the same claim in Caffe's legacy 4-D fields */
  Caffe__BlobProto l = CAFFE__BLOB_PROTO__INIT;
  l.has_num = l.has_channels = l.has_height = l.has_width = 1;
  l.num = 1000, l.channels = 1000, l.height = 1000, l.width = 1000;
  l.n_data = 1;
  l.data = &one;
  n = caffemodel_with(&l, &buf);
  p = put("huge_legacy.caffemodel", buf, n);
  free(buf);
  expect_fail("10^12-element legacy shape", ct_net_load_weights(net, p, &err), CT_ESHAPE, &err, "shape");
  /* the right shape (5 x 48) with too few values */
  int64_t right[2] = {5, 48};
  shape.dim = right;
  n = caffemodel_with(&b, &buf);
  p = put("short_data.caffemodel", buf, n);
  free(buf);
  expect_fail("too few values", ct_net_load_weights(net, p, &err), CT_ESHAPE, &err, "holds 1 values");
  /* two blobs where the layer has one */
  {
    Caffe__LayerParameter lp = CAFFE__LAYER_PARAMETER__INIT;
    lp.name = "ip";
    Caffe__BlobProto *two[2] = {&b, &b};
    lp.n_blobs = 2;
    lp.blobs = two;
    Caffe__NetParameter np = CAFFE__NET_PARAMETER__INIT;
    Caffe__LayerParameter *layers[1] = {&lp};
    np.n_layer = 1;
    np.layer = layers;
    n = pack(&np.base, &buf);
    p = put("two_blobs.caffemodel", buf, n);
    free(buf);
    expect_fail("blob count", ct_net_load_weights(net, p, &err), CT_ESHAPE, &err, "2 blobs in the weights file");
  }
  /* a negative dimension */
  int64_t neg[2] = {-5, 48};
  shape.dim = neg;
  n = caffemodel_with(&b, &buf);
  p = put("negative_dim.caffemodel", buf, n);
  free(buf);
  expect_fail("negative dim", ct_net_load_weights(net, p, &err), CT_ESHAPE, &err, "(invalid)");
}

/* Hand-written wire bytes whose length prefixes claim more than the file holds. */
static void huge_length_prefixes(ct_net *net) {
  ct_error err;
  /* field 100 (layer), wire type 2, length 10^12, then 3 bytes */
  static const uint8_t layer_claim[] = {0xa2, 0x06, 0x80, 0xa0, 0x94, 0xa5, 0x8d, 0x1d, 0x0a, 0x01, 'x'};
  const char *p = put("huge_len.caffemodel", layer_claim, sizeof layer_claim);
  expect_fail("length prefix 10^12", ct_net_load_weights(net, p, &err), CT_EPARSE, &err, "claims 1000000000000 bytes");
  /* a packed float field (BlobProto.data) inside a layer's blob claiming 10^12 bytes */
  static const uint8_t packed_claim[] = {0xa2, 0x06, 0x0d, 0x0a, 0x02, 'i',  'p',  0x3a,
                                         0x07, 0x2a, 0x80, 0xa0, 0x94, 0xa5, 0x8d, 0x1d};
  p = put("huge_packed.caffemodel", packed_claim, sizeof packed_claim);
  ct_status st = ct_net_load_weights(net, p, &err);
  expect_fail("packed floats claiming 10^12 bytes", st, CT_EPARSE, &err, "claims 1000000000000 bytes");
  /* the varint length itself overflowing 64 bits */
  static const uint8_t varint_overflow[] = {0xa2, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  p = put("varint_overflow.caffemodel", varint_overflow, sizeof varint_overflow);
  expect_fail("64-bit varint overflow", ct_net_load_weights(net, p, &err), CT_EPARSE, &err, "truncated length");
  /* The same through the .binaryproto path (BlobProto at the top). */
  static const uint8_t blob_claim[] = {0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0x80, 0x3f};
  p = put("huge.binaryproto", blob_claim, sizeof blob_claim);
  ProtobufCMessage *m = NULL;
  st = ct_proto_read_binary(p, &caffe__blob_proto__descriptor, &m, &err);
  expect_fail(".binaryproto claiming 4 GiB", st, CT_EPARSE, &err, "claims 4294967295 bytes");
  CHECK(m == NULL, "a failed read returns no message");
  /* a Datum whose data field claims 2^31 bytes */
  static const uint8_t datum_claim[] = {0x08, 0x01, 0x22, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 2, 3};
  p = put("huge.datum", datum_claim, sizeof datum_claim);
  st = ct_proto_read_binary(p, &caffe__datum__descriptor, &m, &err);
  expect_fail("Datum claiming 2 GiB", st, CT_EPARSE, &err, "claims 2147483648 bytes");
}

/* Every prefix of a valid file either loads (a prefix that ends between fields is itself a
 * valid message) or fails with CT_EPARSE / CT_ESHAPE and a message; nothing else. */
static void truncations(ct_net *net) {
  ct_error err;
  const char *full = path_in("full.caffemodel");
  CHECK(ct_net_save_weights(net, full, &err) == CT_OK, "save: %s", err.msg);
  char *buf;
  size_t len;
  CHECK(ct_read_file(full, 1 << 20, &buf, &len, &err) == CT_OK, "read back: %s", err.msg);
  int bad = 0, ok = 0;
  for (size_t k = 0; k < len; k++) {
    const char *p = put("prefix.caffemodel", buf, k);
    ct_status st = ct_net_load_weights(net, p, &err);
    if (st == CT_OK) ok++;
    else if ((st != CT_EPARSE && st != CT_ESHAPE) || !err.msg[0]) bad++;
  }
  CHECK(bad == 0, "%d of %zu truncated .caffemodel files failed with an unexpected status", bad, len);
  CHECK(ok < (int)len / 2, "only %d of %zu prefixes should load", ok, len);
  free(buf);
}

static void solverstates(void) {
  ct_error err;
  char sp[512];
  snprintf(sp, sizeof sp, "%s/solver.prototxt", dir);
  FILE *f = fopen(sp, "w");
  CHECK(f != NULL, "write solver");
  if (!f) return;
  fprintf(f,
          "type: 'Nesterov' base_lr: 0.01 momentum: 0.9 lr_policy: 'fixed' max_iter: 10 random_seed: 3\n"
          "snapshot_prefix: '%s/s'\nnet_param { name: 'n'\n"
          "  layer { name: 'data' type: 'DummyData' top: 'x' top: 'y' dummy_data_param { shape { dim: 2 dim: 3 }\n"
          "    shape { dim: 2 } data_filler { type: 'gaussian' } data_filler { type: 'constant' } } }\n"
          "  layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'ip' inner_product_param { num_output: 4 } }\n"
          "  layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'y' top: 'loss' } }\n",
          dir);
  fclose(f);
  ct_solver_options opt = {.quiet = 1};
  ct_solver *s = NULL;
  CHECK(ct_solver_create(sp, &opt, &s, &err) == CT_OK, "solver: %s", err.msg);
  if (!s) return;
  CHECK(ct_solver_step(s, 2, &err) == CT_OK, "step: %s", err.msg);
  char *mp = NULL, *stp = NULL;
  CHECK(ct_solver_snapshot(s, &mp, &stp, &err) == CT_OK, "snapshot: %s", err.msg);
  if (!stp) goto out;
  ProtobufCMessage *m = NULL;
  CHECK(ct_proto_read_binary(stp, &caffe__solver_state__descriptor, &m, &err) == CT_OK, "%s", err.msg);
  if (!m) goto out;
  Caffe__SolverState *st = (Caffe__SolverState *)m;
  uint8_t *buf;
  size_t n;
  /* a history blob whose shape claims 10^12 elements */
  Caffe__BlobShape *saved_shape = st->history[0]->shape;
  int64_t dims[2] = {1000000, 1000000};
  Caffe__BlobShape huge = CAFFE__BLOB_SHAPE__INIT;
  huge.n_dim = 2;
  huge.dim = dims;
  st->history[0]->shape = &huge;
  size_t saved_n = st->history[0]->n_data;
  st->history[0]->n_data = 1;
  n = pack(m, &buf);
  const char *p = put("huge_history.solverstate", buf, n);
  free(buf);
  expect_fail("history blob claiming 10^12", ct_solver_restore(s, p, &err), CT_ESHAPE, &err, "history blob 0 holds 1");
  st->history[0]->shape = saved_shape;
  st->history[0]->n_data = saved_n;
  /* one history blob too few */
  st->n_history--;
  n = pack(m, &buf);
  p = put("few_history.solverstate", buf, n);
  free(buf);
  st->n_history++;
  expect_fail("history count", ct_solver_restore(s, p, &err), CT_ESHAPE, &err, "history blobs");
  /* a negative iteration */
  int it = st->iter;
  st->iter = -5;
  n = pack(m, &buf);
  p = put("negative_iter.solverstate", buf, n);
  free(buf);
  expect_fail("negative iteration", ct_solver_restore(s, p, &err), CT_EPARSE, &err, "iteration -5");
  st->iter = it;
  /* weights file gone */
  char *lnet = st->learned_net;
  st->learned_net = "/nonexistent/w.caffemodel";
  n = pack(m, &buf);
  p = put("missing_weights.solverstate", buf, n);
  free(buf);
  st->learned_net = lnet;
  expect_fail("missing learned_net", ct_solver_restore(s, p, &err), CT_EIO, &err, "w.caffemodel");
  /* every truncation of the real state */
  n = pack(m, &buf);
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    p = put("prefix.solverstate", buf, k);
    ct_status rc = ct_solver_restore(s, p, &err);
    if (rc != CT_OK && ((rc != CT_EPARSE && rc != CT_ESHAPE) || !err.msg[0])) bad++;
  }
  free(buf);
  CHECK(bad == 0, "%d of %zu truncated .solverstate files failed with an unexpected status", bad, n);
  /* and the intact one still restores, and training continues */
  CHECK(ct_solver_restore(s, stp, &err) == CT_OK, "restore: %s", err.msg);
  CHECK(ct_solver_step(s, 1, &err) == CT_OK, "step after restore: %s", err.msg);
  protobuf_c_message_free_unpacked(m, NULL);
out:
  if (mp) unlink(mp);
  if (stp) unlink(stp);
  free(mp);
  free(stp);
  ct_solver_free(s);
}

static void idx_headers(void) {
  ct_error err;
  ct_idx x;
  /* 3 dims of 10^4: 10^12 pixels claimed by a 16-byte header */
  static const uint8_t huge[] = {0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10};
  const char *p = put("huge.idx", huge, sizeof huge);
  expect_fail("IDX claiming 10^12 bytes", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "implausible IDX dimension");
  CHECK(x.data == NULL, "a failed read holds no data");
  /* 60000 x 28 x 28 (Fashion-MNIST's header) over 4 bytes of pixels */
  static const uint8_t fm[] = {0, 0, 8, 3, 0, 0, 0xea, 0x60, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3, 4};
  p = put("short.idx", fm, sizeof fm);
  expect_fail("IDX truncated data", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "file holds 4");
  /* the same, gzipped */
  const char *gp = path_in("short.idx.gz");
  gzFile g = gzopen(gp, "wb");
  CHECK(g != NULL, "gzopen");
  if (g) {
    gzwrite(g, fm, sizeof fm);
    gzclose(g);
  }
  expect_fail("gzipped IDX truncated data", ct_idx_read(gp, &x, &err), CT_EPARSE, &err, "file holds 4");
  static const uint8_t zero_dim[] = {0, 0, 8, 1, 0, 0, 0, 0};
  p = put("zero.idx", zero_dim, sizeof zero_dim);
  expect_fail("IDX zero dimension", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "implausible");
  static const uint8_t magic[] = {0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0};
  p = put("float.idx", magic, sizeof magic);
  expect_fail("IDX float type", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "not an unsigned-byte IDX file");
  p = put("empty.idx", "", 0);
  expect_fail("empty IDX", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "too short");
}

static void nets_claiming_huge_blobs(void) {
  ct_error err;
  ct_net *net = NULL;
  /* 10^12-element Input and DummyData tops are refused before allocation (more than 2^34 floats) */
  ct_status st = ct_net_create_from_text(
      "layer { name: 'd' type: 'Input' top: 'd' input_param { shape { dim: 1000000 dim: 1000000 } } }", "huge_input",
      NULL, CT_TEST, &net, &err);
  expect_fail("Input of 10^12", st, CT_ENOMEM, &err, "more than");
  CHECK(net == NULL, "no net on failure");
  st = ct_net_create_from_text(
      "layer { name: 'd' type: 'DummyData' top: 'd' dummy_data_param { shape { dim: 1000000 dim: 1000000 } } }",
      "huge_dummy", NULL, CT_TEST, &net, &err);
  expect_fail("DummyData of 10^12", st, CT_ENOMEM, &err, "more than");
  /* dims beyond int32 */
  st = ct_net_create_from_text(
      "layer { name: 'd' type: 'Input' top: 'd' input_param { shape { dim: 4294967296 } } }", "wide_input", NULL,
      CT_TEST, &net, &err);
  CHECK(st != CT_OK && err.msg[0], "Input dim 2^32: %s", ct_status_name(st));
  ct_net_free(net);
}

static void bounded_reads(void) {
  ct_error err;
  char big[100];
  memset(big, 'a', sizeof big);
  const char *p = put("hundred.txt", big, sizeof big);
  char *buf = NULL;
  size_t len;
  expect_fail("ct_read_file over its limit", ct_read_file(p, 10, &buf, &len, &err), CT_ENOMEM, &err, "limit of 10");
  CHECK(buf == NULL, "no buffer on failure");
  expect_fail("directory as a file", ct_read_file(dir, 1000, &buf, &len, &err), CT_EIO, &err, "is a directory");
}

int main(void) {
#ifndef CT_UNDER_ASAN
  /* 4 GiB of address space: any attempt to honour a 10^12 claim fails loudly as CT_ENOMEM */
  struct rlimit rl = {(rlim_t)4 << 30, (rlim_t)4 << 30};
  setrlimit(RLIMIT_AS, &rl);
#endif
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  ct_error err;
  ct_net *net = NULL;
  CHECK(ct_net_create_from_text(NET, "small", NULL, CT_TEST, &net, &err) == CT_OK, "net: %s", err.msg);
  if (net) {
    huge_blob_claims(net);
    huge_length_prefixes(net);
    truncations(net);
  }
  ct_net_free(net);
  solverstates();
  idx_headers();
  nets_claiming_huge_blobs();
  bounded_reads();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return ct_check_report();
}
