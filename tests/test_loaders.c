/* Loaders check every size and count before they allocate: files whose headers or shapes claim
 * far more than they hold (a 25-byte .caffemodel claiming a 10^12-element blob, a length prefix
 * of 10^12 bytes, an IDX header of 10^12 pixels) fail with a message, never with an allocation
 * attempt. Outside the sanitizer build the address space is capped at 4 GiB, so an attempt would
 * surface as CT_ENOMEM (checked against); under ASan it would abort the test (allocation too big).
 * JPEG and PNG files written by hand from their specs whose headers declare far more pixels than
 * their bytes could encode fail before a decode buffer exists (checked under a tighter cap).
 * Gzipped IDX files damaged by hand (a deflate stream built bit by bit, flipped header, CRC and
 * length bytes) fail with zlib's words, never as "truncated"; genuinely cut ones as truncated.
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
#include "data/datum.h"
#include "data/db.h"
#include "data/idx.h"
#include "data/image.h"
#include "data/source.h"
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

/* ------------------------------------------------------------------ corrupt gzip (IDX) */

/* An IDX file of n x 8 x 8 bytes: header and pixels from a small LCG (so deflate has work). */
static uint8_t *idx_image_bytes(int n, size_t *len) {
  *len = 16 + (size_t)n * 64;
  uint8_t *b = malloc(*len);
  const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 8, 0, 0, 0, 8};
  memcpy(b, hdr, 16);
  uint32_t s = 12345;
  for (size_t i = 16; i < *len; i++) {
    s = s * 1103515245u + 12345u;
    b[i] = (uint8_t)((s >> 16) & 0x3f); /* 6 bits: compressible, not trivially */
  }
  return b;
}

/* gzip (RFC 1952) of src, made with zlib's own deflate; malloc'ed. */
static uint8_t *gzip_of(const uint8_t *src, size_t n, size_t *len) {
  z_stream s;
  memset(&s, 0, sizeof s);
  if (deflateInit2(&s, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
  size_t cap = deflateBound(&s, (uLong)n) + 64;
  uint8_t *out = malloc(cap);
  s.next_in = (Bytef *)src;
  s.avail_in = (uInt)n;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  int rc = deflate(&s, Z_FINISH);
  *len = cap - s.avail_out;
  deflateEnd(&s);
  if (rc != Z_STREAM_END) {
    free(out);
    return NULL;
  }
  return out;
}

/* Deflate bits (RFC 1951 3.1.1): values go LSB first, Huffman codes MSB first. */
typedef struct bitw {
  uint8_t *p;
  size_t n;
  int bit;
} bitw;
static void put_bits(bitw *w, uint32_t v, int nbits) {
  for (int i = 0; i < nbits; i++) {
    if (w->bit == 0) w->p[w->n] = 0;
    w->p[w->n] |= (uint8_t)(((v >> i) & 1) << w->bit);
    if (++w->bit == 8) {
      w->bit = 0;
      w->n++;
    }
  }
}
static void put_code(bitw *w, uint32_t code, int len) {
  for (int i = len - 1; i >= 0; i--) put_bits(w, (code >> i) & 1, 1);
}
static void align_bytes(bitw *w) {
  if (w->bit) {
    w->bit = 0;
    w->n++;
  }
}

/* A gzip member written by hand: a stored block holding `plain` (n bytes; none when n is 0),
 * then a fixed-Huffman block whose first symbol copies 3 bytes from `dist` back -- farther than
 * the output so far, which RFC 1951 forbids ("invalid distance too far back"). */
static size_t gzip_too_far_back(uint8_t *o, const uint8_t *plain, size_t n, unsigned dist) {
  static const uint8_t hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
  memcpy(o, hdr, 10);
  bitw w = {o, 10, 0};
  if (n) {
    put_bits(&w, 0, 1); /* BFINAL 0 */
    put_bits(&w, 0, 2); /* BTYPE 00: stored */
    align_bytes(&w);
    o[w.n++] = (uint8_t)(n & 0xff);
    o[w.n++] = (uint8_t)(n >> 8);
    o[w.n++] = (uint8_t)(~n & 0xff);
    o[w.n++] = (uint8_t)((~n >> 8) & 0xff);
    memcpy(o + w.n, plain, n);
    w.n += n;
  }
  put_bits(&w, 1, 1);       /* BFINAL 1 */
  put_bits(&w, 1, 2);       /* BTYPE 01: fixed Huffman */
  put_code(&w, 0x01, 7);    /* literal/length 257 (length 3): 0000001 */
  if (dist == 1) {
    put_code(&w, 0, 5);     /* distance code 0: distance 1 */
  } else {                  /* distance code 19: 769..1024, 8 extra bits */
    put_code(&w, 19, 5);
    put_bits(&w, dist - 769, 8);
  }
  put_code(&w, 0, 7);       /* end of block (256): 0000000 */
  align_bytes(&w);
  for (int i = 0; i < 8; i++) o[w.n++] = 0; /* a trailer that is never reached */
  return w.n;
}

static void expect_gzip_error(const char *what, const char *p, const char *phrase) {
  ct_error err;
  ct_idx x;
  ct_status st = ct_idx_read(p, &x, &err);
  expect_fail(what, st, CT_EPARSE, &err, phrase);
  CHECK(st == CT_OK || strstr(err.msg, p), "%s: message \"%s\" lacks the file name", what, err.msg);
  CHECK(st == CT_OK || strstr(err.msg, "corrupt gzip data"), "%s: \"%s\" does not say the gzip data is corrupt", what,
        err.msg);
  CHECK(st == CT_OK || (!strstr(err.msg, "too short") && !strstr(err.msg, "truncated")),
        "%s: a zlib error reported as truncation: \"%s\"", what, err.msg);
  CHECK(x.data == NULL, "%s: a failed read holds no data", what);
  if (!st) ct_idx_free(&x);
}

static void idx_gzip_errors(void) {
  ct_error err;
  ct_idx x;
  size_t plen, glen;
  uint8_t *plain = idx_image_bytes(10, &plen);
  uint8_t *gz = gzip_of(plain, plen, &glen);
  CHECK(gz != NULL && glen > 40, "zlib made a gzip stream");
  if (!gz) {
    free(plain);
    return;
  }
  /* the intact stream reads back exactly */
  const char *p = put("good.idx.gz", gz, glen);
  CHECK(ct_idx_read(p, &x, &err) == CT_OK, "intact gzip: %s", err.msg);
  CHECK(x.data && x.count == plen - 16 && x.ndims == 3 && x.dims[0] == 10 && !memcmp(x.data, plain + 16, plen - 16),
        "intact gzip reads back the pixels");
  ct_idx_free(&x);

  /* invalid deflate data: before any output (the header read), and after the IDX header */
  uint8_t hand[256];
  size_t n = gzip_too_far_back(hand, NULL, 0, 1);
  p = put("far0.idx.gz", hand, n);
  expect_gzip_error("deflate error in the header", p, "invalid distance too far back");
  n = gzip_too_far_back(hand, plain, 40, 1000);
  p = put("far40.idx.gz", hand, n);
  expect_gzip_error("deflate error in the pixels", p, "invalid distance too far back");
  ct_idx_read(p, &x, &err);
  CHECK(strstr(err.msg, "of the compressed file") != NULL, "the deflate error gives an offset: %s", err.msg);

  /* a damaged gzip header, CRC and length */
  uint8_t *bad = malloc(glen);
  memcpy(bad, gz, glen);
  bad[2] = 7; /* CM: not deflate */
  expect_gzip_error("gzip CM 7", put("cm.idx.gz", bad, glen), "unknown compression method");
  memcpy(bad, gz, glen);
  bad[3] = 0xe0; /* reserved FLG bits */
  expect_gzip_error("gzip reserved flags", put("flg.idx.gz", bad, glen), "unknown header flags set");
  memcpy(bad, gz, glen);
  bad[glen - 8] ^= 0x55; /* CRC32 */
  expect_gzip_error("gzip CRC mismatch", put("crc.idx.gz", bad, glen), "incorrect data check");
  memcpy(bad, gz, glen);
  bad[glen - 4] ^= 0x01; /* ISIZE */
  expect_gzip_error("gzip ISIZE mismatch", put("isize.idx.gz", bad, glen), "incorrect length check");

  /* genuine truncation stays "truncated" / "too short" */
  p = put("cut.idx.gz", gz, glen / 2);
  expect_fail("gzip cut in half", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "truncated");
  CHECK(!strstr(err.msg, "corrupt"), "a cut gzip stream is truncation, not corruption: %s", err.msg);
  p = put("cut6.idx.gz", gz, 6);
  expect_fail("gzip cut in its header", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "too short");
  CHECK(!strstr(err.msg, "corrupt"), "a cut gzip header is truncation, not corruption: %s", err.msg);
  p = put("cut_trailer.idx.gz", gz, glen - 3);
  expect_fail("gzip cut in its trailer", ct_idx_read(p, &x, &err), CT_EPARSE, &err, "truncated");

  /* every single-byte change: a clean result or a clean error naming the file; a change in the
   * deflate data or the trailer is always caught (the CRC covers every byte) */
  int errors = 0, missed = 0, unnamed = 0;
  for (size_t i = 0; i < glen; i++) {
    memcpy(bad, gz, glen);
    bad[i] ^= (uint8_t)(0x5a + i);
    p = put("flip.idx.gz", bad, glen);
    err.msg[0] = 0;
    ct_status st = ct_idx_read(p, &x, &err);
    if (st) {
      errors++;
      unnamed += !strstr(err.msg, p) || (st != CT_EPARSE && st != CT_EIO);
    } else {
      missed += i >= 10 && !(x.count == plen - 16 && !memcmp(x.data, plain + 16, plen - 16));
      ct_idx_free(&x);
    }
  }
  CHECK(unnamed == 0 && missed == 0 && errors > (int)glen - 20,
        "byte flips in a gzip IDX: %d errors of %zu, %d without the name or with an odd status, %d read wrong pixels",
        errors, glen, unnamed, missed);
  /* a directory is a read error, not a short file */
  expect_fail("IDX path is a directory", ct_idx_read(dir, &x, &err), CT_EIO, &err, "is a directory");
  free(bad);
  free(gz);
  free(plain);
}

/* ------------------------------------------------------------------ image headers */

/* A JPEG written from ITU T.81: one quantisation table of ones, a DC and an AC Huffman table each
 * holding one 1-bit code (DC: difference category 0; AC: end of block), a frame of ncomp 1x1
 * components (SOF0 baseline, or SOF2 progressive with a DC-only first scan), one scan over them
 * all and `scan_bytes` zero bytes of entropy-coded data: every block decodes to all-zero
 * coefficients, i.e. mid-gray 128. */
static size_t make_jpeg(uint8_t *o, int W, int H, int ncomp, bool progressive, int scan_bytes) {
  size_t n = 0;
  o[n++] = 0xff, o[n++] = 0xd8; /* SOI */
  o[n++] = 0xff, o[n++] = 0xdb, o[n++] = 0, o[n++] = 67, o[n++] = 0; /* DQT, table 0, 8-bit */
  for (int i = 0; i < 64; i++) o[n++] = 1;
  o[n++] = 0xff, o[n++] = progressive ? 0xc2 : 0xc0; /* SOF */
  o[n++] = 0, o[n++] = (uint8_t)(8 + 3 * ncomp), o[n++] = 8;
  o[n++] = (uint8_t)(H >> 8), o[n++] = (uint8_t)H, o[n++] = (uint8_t)(W >> 8), o[n++] = (uint8_t)W;
  o[n++] = (uint8_t)ncomp;
  for (int c = 0; c < ncomp; c++) o[n++] = (uint8_t)(c + 1), o[n++] = 0x11, o[n++] = 0;
  for (int t = 0; t < 2; t++) { /* DHT: class t, table 0: one code of length 1, for symbol 0 */
    o[n++] = 0xff, o[n++] = 0xc4, o[n++] = 0, o[n++] = 20, o[n++] = (uint8_t)(t << 4);
    o[n++] = 1;
    for (int i = 1; i < 16; i++) o[n++] = 0;
    o[n++] = 0;
  }
  o[n++] = 0xff, o[n++] = 0xda, o[n++] = 0, o[n++] = (uint8_t)(6 + 2 * ncomp), o[n++] = (uint8_t)ncomp; /* SOS */
  for (int c = 0; c < ncomp; c++) o[n++] = (uint8_t)(c + 1), o[n++] = 0x00;
  o[n++] = 0, o[n++] = progressive ? 0 : 63, o[n++] = 0; /* Ss, Se, Ah/Al */
  for (int i = 0; i < scan_bytes; i++) o[n++] = 0;
  o[n++] = 0xff, o[n++] = 0xd9; /* EOI */
  return n;
}

static size_t png_chunk(uint8_t *o, const char *type, const uint8_t *data, uint32_t len) {
  o[0] = (uint8_t)(len >> 24), o[1] = (uint8_t)(len >> 16), o[2] = (uint8_t)(len >> 8), o[3] = (uint8_t)len;
  memcpy(o + 4, type, 4);
  if (len) memcpy(o + 8, data, len);
  uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), o + 4, len + 4);
  o[8 + len] = (uint8_t)(crc >> 24), o[9 + len] = (uint8_t)(crc >> 16);
  o[10 + len] = (uint8_t)(crc >> 8), o[11 + len] = (uint8_t)crc;
  return 12 + len;
}

/* A PNG written from the PNG spec: IHDR (8-bit, colour type ct, no interlace), one IDAT holding
 * zlib's compression of `raw` (filter bytes included), IEND. */
static size_t make_png(uint8_t *o, uint32_t W, uint32_t H, int ct, const uint8_t *raw, size_t rawlen) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  memcpy(o, sig, 8);
  size_t n = 8;
  uint8_t ihdr[13] = {(uint8_t)(W >> 24), (uint8_t)(W >> 16), (uint8_t)(W >> 8), (uint8_t)W,
                      (uint8_t)(H >> 24), (uint8_t)(H >> 16), (uint8_t)(H >> 8), (uint8_t)H,
                      8, (uint8_t)ct, 0, 0, 0};
  n += png_chunk(o + n, "IHDR", ihdr, 13);
  uLongf zlen = compressBound((uLong)rawlen);
  uint8_t *z = malloc(zlen);
  compress2(z, &zlen, raw, (uLong)rawlen, 9);
  n += png_chunk(o + n, "IDAT", z, (uint32_t)zlen);
  free(z);
  n += png_chunk(o + n, "IEND", NULL, 0);
  return n;
}

/* Address space capped a little above what the process maps now (outside ASan): a decode that
 * allocates tens of MB fails with CT_ENOMEM instead of passing unnoticed. */
static void tight_memory(bool on) {
#ifdef CT_UNDER_ASAN
  (void)on;
#else
  static struct rlimit saved_as;
  if (!on) {
    setrlimit(RLIMIT_AS, &saved_as);
    return;
  }
  getrlimit(RLIMIT_AS, &saved_as);
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %lu kB", &kb) == 1) break;
  if (f) fclose(f);
  if (!kb) return;
  struct rlimit rl = {(rlim_t)kb * 1024 + ((rlim_t)24 << 20), saved_as.rlim_max};
  setrlimit(RLIMIT_AS, &rl);
#endif
}

static bool all_equal(const ct_image *im, int C, int H, int W, uint8_t v) {
  if (im->C != C || im->H != H || im->W != W) return false;
  for (size_t i = 0; i < (size_t)C * H * W; i++)
    if (im->data[i] != v) return false;
  return true;
}

static void image_headers(void) {
  ct_error err;
  ct_image im = {0};
  uint8_t *buf = malloc(1 << 16);
  /* the hand-written files are real images: small ones decode to mid-gray */
  size_t n = make_jpeg(buf, 16, 8, 1, false, 2);
  CHECK(ct_image_decode(buf, n, CT_IMAGE_NATIVE, &im, "small.jpg", &err) == CT_OK, "small JPEG: %s", err.msg);
  CHECK(all_equal(&im, 1, 8, 16, 128), "small baseline JPEG decodes to 1x8x16 of 128");
  n = make_jpeg(buf, 16, 8, 3, false, 4);
  CHECK(ct_image_decode(buf, n, CT_IMAGE_NATIVE, &im, "small3.jpg", &err) == CT_OK, "small colour JPEG: %s", err.msg);
  CHECK(all_equal(&im, 3, 8, 16, 128), "small colour JPEG decodes to 3x8x16 of 128");
  n = make_jpeg(buf, 16, 8, 1, true, 1);
  CHECK(ct_image_decode(buf, n, CT_IMAGE_NATIVE, &im, "small_prog.jpg", &err) == CT_OK, "small progressive JPEG: %s",
        err.msg);
  CHECK(all_equal(&im, 1, 8, 16, 128), "small progressive JPEG decodes to 1x8x16 of 128");
  uint8_t raw[3 * (1 + 3 * 2)];
  for (int y = 0; y < 3; y++) { /* RGB 2x3: pixel (y, x) = (10y+x, 100, 200) */
    raw[y * 7] = 0;
    for (int x = 0; x < 2; x++) {
      raw[y * 7 + 1 + 3 * x] = (uint8_t)(10 * y + x);
      raw[y * 7 + 2 + 3 * x] = 100;
      raw[y * 7 + 3 + 3 * x] = 200;
    }
  }
  n = make_png(buf, 2, 3, 2, raw, sizeof raw);
  CHECK(ct_image_decode(buf, n, CT_IMAGE_NATIVE, &im, "small.png", &err) == CT_OK, "small PNG: %s", err.msg);
  CHECK(im.C == 3 && im.H == 3 && im.W == 2 && im.data[0] == 200 && im.data[6] == 100 && im.data[12 + 5] == 21,
        "small PNG decodes to B, G, R planes");

  /* headers declaring far more pixels than the file could hold: refused before the decode
   * buffer exists (under a tight address-space cap, an allocation would show as CT_ENOMEM) */
  struct {
    const char *name;
    int W, H, C;
    bool progressive, png;
    const char *size;
  } lies[] = {{"huge_gray.jpg", 10000, 5000, 1, false, false, "10000x5000"},
              {"huge_color.jpg", 6000, 4000, 3, false, false, "6000x4000"},
              {"huge_prog.jpg", 12000, 9000, 1, true, false, "12000x9000"},
              {"huge.png", 10000, 5000, 3, false, true, "10000x5000"}};
  for (size_t k = 0; k < sizeof lies / sizeof *lies; k++) {
    uint8_t zeros[64] = {0};
    n = lies[k].png ? make_png(buf, (uint32_t)lies[k].W, (uint32_t)lies[k].H, 2, zeros, sizeof zeros)
                    : make_jpeg(buf, lies[k].W, lies[k].H, lies[k].C, lies[k].progressive, 16);
    CHECK(n < 300, "%s is %zu bytes", lies[k].name, n);
    ct_image fresh = {0};
    tight_memory(true);
    ct_status st = ct_image_decode(buf, n, CT_IMAGE_NATIVE, &fresh, lies[k].name, &err);
    tight_memory(false);
    expect_fail(lies[k].name, st, CT_EPARSE, &err, "declares");
    CHECK(st == CT_OK || (strstr(err.msg, lies[k].name) && strstr(err.msg, lies[k].size)),
          "%s: the message names the file and the declared size: %s", lies[k].name, err.msg);
    CHECK(fresh.data == NULL, "%s: no decode buffer was allocated", lies[k].name);
    ct_image_free(&fresh);
  }
  /* beyond the 1 GiB cap, whatever the file holds */
  n = make_jpeg(buf, 60000, 60000, 3, false, 16);
  expect_fail("JPEG of 60000x60000x3", ct_image_decode(buf, n, CT_IMAGE_NATIVE, &im, "vast.jpg", &err), CT_ENOMEM,
              &err, "60000x60000");
  CHECK(strstr(err.msg, "vast.jpg") != NULL, "names the file: %s", err.msg);

  /* an expected size (a data layer's) is checked against the header */
  n = make_jpeg(buf, 16, 8, 1, false, 2);
  ct_image_expect want = {.C = 1, .H = 28, .W = 28};
  expect_fail("JPEG of another size", ct_image_decode_expect(buf, n, CT_IMAGE_NATIVE, &want, &im, "other.jpg", &err),
              CT_ESHAPE, &err, "1x8x16");
  CHECK(strstr(err.msg, "other.jpg") && strstr(err.msg, "1x28x28"), "names the file and both sizes: %s", err.msg);
  want = (ct_image_expect){.C = 3, .H = 8, .W = 16};
  CHECK(ct_image_decode_expect(buf, n, CT_IMAGE_COLOR, &want, &im, "ok.jpg", &err) == CT_OK && im.C == 3,
        "the expected size (gray forced to colour): %s", err.msg);
  want = (ct_image_expect){.C = 0, .H = 8, .W = 16};
  CHECK(ct_image_decode_expect(buf, n, CT_IMAGE_NATIVE, &want, &im, "ok.jpg", &err) == CT_OK && im.C == 1,
        "any channel count: %s", err.msg);
  uint8_t zeros[64] = {0};
  n = make_png(buf, 2, 3, 2, raw, sizeof raw);
  want = (ct_image_expect){.C = 1, .H = 3, .W = 2};
  expect_fail("PNG of another channel count",
              ct_image_decode_expect(buf, n, CT_IMAGE_NATIVE, &want, &im, "c.png", &err), CT_ESHAPE, &err, "3x3x2");
  n = make_png(buf, 10000, 5000, 0, zeros, sizeof zeros);
  want = (ct_image_expect){.C = 1, .H = 28, .W = 28};
  expect_fail("huge PNG, expected 28x28",
              ct_image_decode_expect(buf, n, CT_IMAGE_NATIVE, &want, &im, "big.png", &err), CT_ESHAPE, &err,
              "1x5000x10000");

  /* through an image list (ImageData) and an encoded Datum: the file or record is named */
  n = make_jpeg(buf, 10000, 5000, 1, false, 16);
  put("liar.jpg", buf, n);
  size_t small = make_png(buf + n, 2, 3, 2, raw, sizeof raw);
  put("fine.png", buf + n, small);
  char list[600];
  snprintf(list, sizeof list, "%s", put("list.txt", "fine.png 0\nliar.jpg 1\n", 22));
  char root[600];
  snprintf(root, sizeof root, "%s/", dir);
  ct_source *src = NULL;
  /* resized, so that any size is expected and the bytes bound is what refuses it (without a
   * resize the first image's size would: expected_sizes) */
  CHECK(ct_source_open_list(list, root, 3, 2, true, false, 0, &src, &err) == CT_OK, "list: %s", err.msg);
  if (src) {
    ct_record r;
    CHECK(ct_source_next(src, &r, &err) == CT_OK, "fine.png: %s", err.msg);
    tight_memory(true);
    ct_status st = ct_source_next(src, &r, &err);
    tight_memory(false);
    expect_fail("image list with a lying JPEG", st, CT_EPARSE, &err, "liar.jpg");
    CHECK(strstr(err.msg, "10000x5000") != NULL, "declared size named: %s", err.msg);
    ct_source_close(src);
  }
  ct_db_writer *w = NULL;
  const char *db = path_in("liar_lmdb");
  CHECK(ct_db_writer_open(db, CT_DB_LMDB, &w, &err) == CT_OK, "%s", err.msg);
  if (w) {
    ct_datum d = {.encoded = true, .data = buf, .data_len = n, .label = 1};
    uint8_t *val = NULL;
    size_t vlen = 0;
    CHECK(ct_datum_encode(&d, &val, &vlen, &err) == CT_OK &&
              ct_db_writer_put(w, "00000000_liar", 13, val, vlen, &err) == CT_OK,
          "%s", err.msg);
    free(val);
    CHECK(ct_db_writer_commit(w, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_source_open_db(db, CT_DB_LMDB, CT_IMAGE_NATIVE, &src, &err) == CT_OK, "%s", err.msg);
    if (src) {
      ct_record r;
      tight_memory(true);
      ct_status st = ct_source_next(src, &r, &err);
      tight_memory(false);
      expect_fail("encoded Datum with a lying JPEG", st, CT_EPARSE, &err, "00000000_liar");
      CHECK(strstr(err.msg, "10000x5000") != NULL, "declared size named: %s", err.msg);
      ct_source_close(src);
    }
  }
  ct_image_free(&im);
  free(buf);
}

/* An encoded Datum (key "%08d") for each PNG. */
static void write_encoded_db(const char *db, uint8_t *const *pngs, const size_t *lens, int n) {
  ct_error err;
  ct_db_writer *w = NULL;
  CHECK(ct_db_writer_open(db, CT_DB_LMDB, &w, &err) == CT_OK, "%s", err.msg);
  if (!w) return;
  for (int i = 0; i < n; i++) {
    ct_datum d = {.encoded = true, .data = pngs[i], .data_len = lens[i], .label = i};
    uint8_t *val = NULL;
    size_t vlen = 0;
    char key[16];
    snprintf(key, sizeof key, "%08d", i);
    CHECK(ct_datum_encode(&d, &val, &vlen, &err) == CT_OK &&
              ct_db_writer_put(w, key, strlen(key), val, vlen, &err) == CT_OK,
          "%s", err.msg);
    free(val);
  }
  CHECK(ct_db_writer_commit(w, &err) == CT_OK, "%s", err.msg);
}

/* A data layer's images share the first one's size: later records and list entries are decoded
 * with that size expected, so one declaring another size -- a small file, or an honest 37 MB
 * image -- is refused before its pixels are allocated (under a cap that such an allocation would
 * hit), with a message naming where it is and both sizes. With new_height / new_width an image
 * list takes any size. */
static void expected_sizes(void) {
  ct_error err;
  enum { NPNG = 4 };
  /* gray 8x8, gray 16x16, RGB 3500x3500 of zeros (deflate shrinks its 37 MB ~1000-fold: a real
   * image, within the bytes bound), gray 8x8 */
  uint8_t *pngs[NPNG];
  size_t lens[NPNG];
  const uint32_t side[NPNG] = {8, 16, 3500, 8};
  const int ct[NPNG] = {0, 0, 2, 0};
  for (int i = 0; i < NPNG; i++) {
    int C = ct[i] == 2 ? 3 : 1;
    const size_t row = 1 + (size_t)C * side[i]; /* a filter byte (0: none), then the pixels */
    const size_t rawlen = side[i] * row;
    uint8_t *raw = calloc(rawlen, 1);
    for (size_t j = 0; side[i] < 100 && j < rawlen; j++) raw[j] = j % row ? (uint8_t)(j * 7 + i) : 0;
    pngs[i] = malloc(rawlen / 64 + 4096);
    lens[i] = make_png(pngs[i], side[i], side[i], ct[i], raw, rawlen);
    CHECK(lens[i] < rawlen / 64 + 4096, "PNG %d fits its buffer", i);
    free(raw);
  }
  CHECK(lens[2] < 64 * 1024, "the 3500x3500 PNG is %zu bytes", lens[2]);

  /* LMDB: 8x8, then 16x16, then 3500x3500x3, then 8x8 again */
  const char *db = path_in("sizes_lmdb");
  char dbpath[512];
  snprintf(dbpath, sizeof dbpath, "%s", db);
  write_encoded_db(dbpath, pngs, lens, NPNG);
  ct_source *src = NULL;
  CHECK(ct_source_open_db(dbpath, CT_DB_LMDB, CT_IMAGE_NATIVE, &src, &err) == CT_OK, "%s", err.msg);
  if (src) {
    ct_record r;
    CHECK(ct_source_next(src, &r, &err) == CT_OK && r.C == 1 && r.H == 8 && r.W == 8, "first record: %s", err.msg);
    ct_status st = ct_source_next(src, &r, &err);
    expect_fail("encoded Datum of 16x16 after 8x8", st, CT_ESHAPE, &err, "header declares a 1x16x16 image");
    CHECK(st == CT_OK || (strstr(err.msg, dbpath) && strstr(err.msg, "\"00000001\" (index 1)") &&
                          strstr(err.msg, "1x8x8 is expected") && strstr(err.msg, "first one read, \"00000000\"")),
          "names the database, the key, its index and both sizes: %s", err.msg);
    st = ct_source_next(src, &r, &err);
    CHECK(st == CT_ESHAPE && strstr(err.msg, "00000001"), "asking again gives the same error: %s", err.msg);
    CHECK(ct_source_seek(src, 2, &err) == CT_OK, "seek past it: %s", err.msg);
    tight_memory(true);
    st = ct_source_next(src, &r, &err);
    tight_memory(false);
    expect_fail("encoded Datum of 3500x3500x3 after 8x8", st, CT_ESHAPE, &err, "header declares a 3x3500x3500 image");
    CHECK(st == CT_OK || (strstr(err.msg, "\"00000002\" (index 2)") && strstr(err.msg, "1x8x8 is expected")),
          "names the key and both sizes: %s", err.msg);
    CHECK(ct_source_seek(src, 3, &err) == CT_OK && ct_source_next(src, &r, &err) == CT_OK && r.H == 8 && r.label == 3,
          "a record of the first one's size still reads: %s", err.msg);
    ct_source_close(src);
  }
  /* the first record fixes the size for a raw one too */
  const char *db2 = path_in("sizes_raw_lmdb");
  ct_db_writer *w = NULL;
  CHECK(ct_db_writer_open(db2, CT_DB_LMDB, &w, &err) == CT_OK, "%s", err.msg);
  if (w) {
    uint8_t px[100] = {0};
    ct_datum d = {.encoded = true, .data = pngs[0], .data_len = lens[0]};
    uint8_t *val = NULL;
    size_t vlen = 0;
    CHECK(ct_datum_encode(&d, &val, &vlen, &err) == CT_OK && ct_db_writer_put(w, "a", 1, val, vlen, &err) == CT_OK,
          "%s", err.msg);
    free(val);
    d = (ct_datum){.channels = 1, .height = 10, .width = 10, .data = px, .data_len = 100};
    CHECK(ct_datum_encode(&d, &val, &vlen, &err) == CT_OK && ct_db_writer_put(w, "b", 1, val, vlen, &err) == CT_OK,
          "%s", err.msg);
    free(val);
    CHECK(ct_db_writer_commit(w, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_source_open_db(db2, CT_DB_LMDB, CT_IMAGE_NATIVE, &src, &err) == CT_OK, "%s", err.msg);
    if (src) {
      ct_record r;
      CHECK(ct_source_next(src, &r, &err) == CT_OK, "%s", err.msg);
      expect_fail("raw 10x10 Datum after an encoded 8x8", ct_source_next(src, &r, &err), CT_ESHAPE, &err,
                  "record \"b\" (index 1)");
      CHECK(strstr(err.msg, "is 1x10x10") && strstr(err.msg, "1x8x8 is expected"), "both sizes: %s", err.msg);
      ct_source_close(src);
    }
  }

  /* an image list of the same files */
  char list[2048] = "", root[600];
  snprintf(root, sizeof root, "%s/", dir);
  for (int i = 0; i < NPNG; i++) {
    char name[32], line[64];
    snprintf(name, sizeof name, "size%d.png", i);
    put(name, pngs[i], lens[i]);
    snprintf(line, sizeof line, "%s %d\n", name, i);
    strcat(list, line);
  }
  char listpath[512];
  snprintf(listpath, sizeof listpath, "%s", put("sizes.txt", list, strlen(list)));
  src = NULL;
  CHECK(ct_source_open_list(listpath, root, 0, 0, false, false, 0, &src, &err) == CT_OK, "%s", err.msg);
  if (src) {
    ct_record r;
    CHECK(ct_source_next(src, &r, &err) == CT_OK && r.C == 1 && r.H == 8 && r.W == 8, "first image: %s", err.msg);
    ct_status st = ct_source_next(src, &r, &err);
    expect_fail("listed 16x16 PNG after 8x8", st, CT_ESHAPE, &err, "size1.png: PNG header declares a 1x16x16 image");
    CHECK(st == CT_OK || (strstr(err.msg, "1x8x8 is expected") && strstr(err.msg, "(image 2 of ") &&
                          strstr(err.msg, listpath) && strstr(err.msg, "first one read, size0.png") &&
                          strstr(err.msg, "new_height")),
          "names the file, its place in the list, both sizes and the way out: %s", err.msg);
    CHECK(ct_source_seek(src, 2, &err) == CT_OK, "%s", err.msg);
    tight_memory(true);
    st = ct_source_next(src, &r, &err);
    tight_memory(false);
    expect_fail("listed 3500x3500 PNG after 8x8", st, CT_ESHAPE, &err, "size2.png: PNG header declares a 1x3500x3500");
    ct_source_close(src);
  }
  /* with new_height / new_width every size is welcome, each served at the new size */
  src = NULL;
  CHECK(ct_source_open_list(listpath, root, 5, 6, true, false, 0, &src, &err) == CT_OK, "%s", err.msg);
  int served = 0;
  for (int i = 0; src && i < NPNG; i++) {
    ct_record r;
    ct_status st = ct_source_next(src, &r, &err);
    CHECK(st == CT_OK && r.C == 3 && r.H == 5 && r.W == 6 && r.label == (float)i, "resized image %d: %s", i,
          st ? err.msg : "wrong size");
    served += st == CT_OK;
  }
  CHECK(served == NPNG, "with new_height/new_width all %d sizes read (%d did)", NPNG, served);
  ct_source_close(src);
  for (int i = 0; i < NPNG; i++) free(pngs[i]);
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
  idx_gzip_errors();
  image_headers();
  expected_sizes();
  nets_claiming_huge_blobs();
  bounded_reads();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return ct_check_report();
}
