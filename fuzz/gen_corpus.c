/* Writes the binary part of the seed corpus (fuzz/corpus/<target>/) with the library itself:
 *   build-fuzz/ct_gen_corpus fuzz/corpus
 * Valid files of each kind plus the variants a loader must also accept (Caffe's legacy 4-D
 * shapes, double data, V1 `layers`), so the fuzzer starts from deep inside each format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>

#include "cortado.pb-c.h"
#include "data/image.h"
#include "fuzz_nets.h"
#include "net/net.h"
#include "proto/prototxt.h"

static const char *out_dir;

static void die(const char *what, const ct_error *err) {
  fprintf(stderr, "gen_corpus: %s: %s\n", what, err ? err->msg : "failed");
  exit(1);
}

static const char *path_of(const char *target, const char *name) {
  static char p[1024];
  snprintf(p, sizeof p, "%s/%s", out_dir, target);
  mkdir(p, 0777);
  snprintf(p, sizeof p, "%s/%s/%s", out_dir, target, name);
  return p;
}

static void put_bytes(const char *target, const char *name, const void *data, size_t n) {
  ct_error err;
  if (ct_write_file_atomic(path_of(target, name), data, n, &err) != CT_OK) die(name, &err);
}

static void put_msg(const char *target, const char *name, const ProtobufCMessage *m) {
  ct_error err;
  if (ct_proto_write_binary(path_of(target, name), m, &err) != CT_OK) die(name, &err);
}

/* Rewrites every blob of a NetParameter: legacy 4-D fields instead of BlobShape, or double data. */
static void legacy_shapes(Caffe__NetParameter *p) {
  for (size_t i = 0; i < p->n_layer; i++)
    for (size_t j = 0; j < p->layer[i]->n_blobs; j++) {
      Caffe__BlobProto *b = p->layer[i]->blobs[j];
      int v[4] = {1, 1, 1, 1};
      size_t n = b->shape->n_dim;
      for (size_t k = 0; k < n; k++) v[4 - n + k] = (int)b->shape->dim[k];
      b->num = v[0], b->channels = v[1], b->height = v[2], b->width = v[3];
      b->has_num = b->has_channels = b->has_height = b->has_width = 1;
      protobuf_c_message_free_unpacked(&b->shape->base, NULL);
      b->shape = NULL;
    }
}

static void double_data(Caffe__NetParameter *p) {
  for (size_t i = 0; i < p->n_layer; i++)
    for (size_t j = 0; j < p->layer[i]->n_blobs; j++) {
      Caffe__BlobProto *b = p->layer[i]->blobs[j];
      b->double_data = malloc((b->n_data + 1) * sizeof(double));
      for (size_t k = 0; k < b->n_data; k++) b->double_data[k] = b->data[k];
      b->n_double_data = b->n_data;
      free(b->data);
      b->data = NULL;
      b->n_data = 0;
    }
}

/* The same blobs under V1 `layers` entries (Caffe's files from before 2015). */
static Caffe__NetParameter *as_v1(const Caffe__NetParameter *p) {
  Caffe__NetParameter *v = malloc(sizeof *v);
  caffe__net_parameter__init(v);
  v->layers = calloc(p->n_layer + 1, sizeof *v->layers);
  for (size_t i = 0; i < p->n_layer; i++) {
    Caffe__V1LayerParameter *l = malloc(sizeof *l);
    caffe__v1_layer_parameter__init(l);
    l->name = strdup(p->layer[i]->name);
    l->n_blobs = p->layer[i]->n_blobs;
    l->blobs = p->layer[i]->blobs; /* borrowed: detached again before freeing */
    v->layers[v->n_layers++] = l;
  }
  return v;
}

static void free_v1(Caffe__NetParameter *v) {
  for (size_t i = 0; i < v->n_layers; i++) {
    v->layers[i]->blobs = NULL;
    v->layers[i]->n_blobs = 0;
  }
  protobuf_c_message_free_unpacked(&v->base, NULL);
}

static void caffemodels(void) {
  ct_net *net;
  ct_error err;
  if (ct_net_create_from_text(FUZZ_NET, "fuzz_net", NULL, CT_TEST, &net, &err)) die("net", &err);
  Caffe__NetParameter *p;
  if (ct_net_to_proto(net, &p, &err)) die("to_proto", &err);
  put_msg("fuzz_caffemodel", "net.caffemodel", &p->base);
  Caffe__NetParameter *v1 = as_v1(p);
  put_msg("fuzz_caffemodel", "v1_layers.caffemodel", &v1->base);
  free_v1(v1);
  legacy_shapes(p);
  put_msg("fuzz_caffemodel", "legacy_shape.caffemodel", &p->base);
  double_data(p);
  put_msg("fuzz_caffemodel", "double_data.caffemodel", &p->base);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  ct_net_free(net);
}

static void solverstates(void) {
  char dir[] = "/tmp/ct_gen_corpus_XXXXXX";
  if (!mkdtemp(dir)) die("mkdtemp", NULL);
  char sp[256], old[1024];
  snprintf(sp, sizeof sp, "%s/solver.prototxt", dir);
  FILE *f = fopen(sp, "w");
  if (!f) die(sp, NULL);
  fputs(FUZZ_SOLVER, f);
  fclose(f);
  if (!getcwd(old, sizeof old) || chdir(dir) != 0) die("chdir", NULL);
  ct_solver *s;
  ct_solver_options opt = {.quiet = 1};
  ct_error err;
  if (ct_solver_create(sp, &opt, &s, &err)) die("solver", &err);
  if (ct_solver_step(s, 3, &err)) die("step", &err);
  char *mp, *stp;
  if (ct_solver_snapshot(s, &mp, &stp, &err)) die("snapshot", &err);
  ProtobufCMessage *m;
  if (ct_proto_read_binary(stp, &caffe__solver_state__descriptor, &m, &err)) die("read state", &err);
  if (chdir(old) != 0) die("chdir back", NULL);
  Caffe__SolverState *st = (Caffe__SolverState *)m;
  free(st->learned_net);
  st->learned_net = strdup("w.caffemodel"); /* fuzz_solverstate keeps a valid one beside the input */
  put_msg("fuzz_solverstate", "adam_iter3.solverstate", m);
  free(st->learned_net);
  st->learned_net = NULL; /* history and state only */
  put_msg("fuzz_solverstate", "no_weights.solverstate", m);
  protobuf_c_message_free_unpacked(m, NULL);
  unlink(mp);
  unlink(stp);
  unlink(sp);
  rmdir(dir);
  free(mp);
  free(stp);
  ct_solver_free(s);
}

static void binaryprotos(void) {
  float data[3 * 4 * 4];
  double dd[3 * 4 * 4];
  for (int i = 0; i < 48; i++) data[i] = dd[i] = 100.0f + (float)i;
  int64_t dims[4] = {1, 3, 4, 4};
  Caffe__BlobShape shape = CAFFE__BLOB_SHAPE__INIT;
  shape.n_dim = 4;
  shape.dim = dims;
  Caffe__BlobProto b = CAFFE__BLOB_PROTO__INIT;
  b.shape = &shape;
  b.n_data = 48;
  b.data = data;
  put_msg("fuzz_binaryproto", "mean_shape.binaryproto", &b.base);
  b.shape = NULL;
  b.num = 1, b.channels = 3, b.height = 4, b.width = 4;
  b.has_num = b.has_channels = b.has_height = b.has_width = 1;
  put_msg("fuzz_binaryproto", "mean_legacy.binaryproto", &b.base);
  b.n_data = 0;
  b.data = NULL;
  b.n_double_data = 48;
  b.double_data = dd;
  put_msg("fuzz_binaryproto", "mean_double.binaryproto", &b.base);
}

/* fuzz_datum's inputs: one byte of decode mode (0 native, 1 color, 2 gray), then the record. */
static void put_datum(const char *name, uint8_t mode, const Caffe__Datum *d) {
  size_t n = protobuf_c_message_get_packed_size(&d->base);
  uint8_t *buf = malloc(n + 1);
  buf[0] = mode;
  protobuf_c_message_pack(&d->base, buf + 1);
  put_bytes("fuzz_datum", name, buf, n + 1);
  free(buf);
}

/* A 5x3 colour JPEG through libjpeg (quality 90). */
static size_t small_jpeg(uint8_t **out) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  unsigned long len = 0;
  *out = NULL;
  jpeg_mem_dest(&c, out, &len);
  c.image_width = 5;
  c.image_height = 3;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 90, TRUE);
  jpeg_start_compress(&c, TRUE);
  uint8_t row[5 * 3];
  for (int y = 0; y < 3; y++) {
    for (int i = 0; i < 15; i++) row[i] = (uint8_t)(y * 60 + i * 12);
    JSAMPROW r = row;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  return len;
}

static void datums(void) {
  uint8_t px[1 * 4 * 4];
  float fl[2 * 2 * 3];
  for (int i = 0; i < 16; i++) px[i] = (uint8_t)(i * 16);
  for (int i = 0; i < 12; i++) fl[i] = 0.5f * (float)i;
  Caffe__Datum d = CAFFE__DATUM__INIT;
  d.channels = 1, d.height = 4, d.width = 4, d.label = 7;
  d.has_channels = d.has_height = d.has_width = d.has_label = 1;
  d.has_data = 1;
  d.data.len = 16;
  d.data.data = px;
  put_datum("raw_1x4x4.datum", 0, &d);
  d.has_data = 0;
  d.data.len = 0;
  d.data.data = NULL;
  d.channels = 3, d.height = 2, d.width = 2;
  d.n_float_data = 12;
  d.float_data = fl;
  put_datum("float_3x2x2.datum", 0, &d);
  d.n_float_data = 0;
  d.float_data = NULL;
  d.has_channels = d.has_height = d.has_width = 0;
  d.channels = d.height = d.width = 0;
  d.has_encoded = 1;
  d.encoded = 1;
  d.has_data = 1;
  /* encoded PNGs (gray and colour) written by the library's own encoder */
  uint8_t rgb[3 * 3 * 4];
  for (int i = 0; i < 36; i++) rgb[i] = (uint8_t)(i * 7);
  ct_image im = {.C = 1, .H = 4, .W = 4, .data = px};
  uint8_t *png;
  size_t plen;
  ct_error err;
  if (ct_image_encode_png(&im, &png, &plen, &err)) die("png", &err);
  d.data.len = plen;
  d.data.data = png;
  put_datum("encoded_gray_png.datum", 0, &d);
  put_datum("encoded_gray_png_as_color.datum", 1, &d);
  free(png);
  im = (ct_image){.C = 3, .H = 3, .W = 4, .data = rgb};
  if (ct_image_encode_png(&im, &png, &plen, &err)) die("png", &err);
  d.data.len = plen;
  d.data.data = png;
  put_datum("encoded_color_png.datum", 0, &d);
  put_datum("encoded_color_png_as_gray.datum", 2, &d);
  free(png);
  uint8_t *jpg;
  size_t jlen = small_jpeg(&jpg);
  d.data.len = jlen;
  d.data.data = jpg;
  put_datum("encoded_jpeg.datum", 0, &d);
  put_datum("encoded_jpeg_as_gray.datum", 2, &d);
  free(jpg);
}

static void idx_files(void) {
  uint8_t labels[8 + 10] = {0, 0, 8, 1, 0, 0, 0, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  put_bytes("fuzz_idx", "labels_10.idx1", labels, sizeof labels);
  uint8_t images[16 + 2 * 4 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4};
  for (int i = 0; i < 32; i++) images[16 + i] = (uint8_t)(i * 8);
  put_bytes("fuzz_idx", "images_2x4x4.idx3", images, sizeof images);
  uint8_t four[20 + 2 * 1 * 2 * 2] = {0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2};
  put_bytes("fuzz_idx", "tensor_2x1x2x2.idx4", four, sizeof four);
  /* gzipped, as Fashion-MNIST ships */
  gzFile g = gzopen(path_of("fuzz_idx", "images_2x4x4.idx3.gz"), "wb9");
  if (!g || gzwrite(g, images, sizeof images) != (int)sizeof images) die("gzip", NULL);
  gzclose(g);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ct_gen_corpus <corpus dir>\n");
    return 2;
  }
  out_dir = argv[1];
  mkdir(out_dir, 0777);
  caffemodels();
  solverstates();
  binaryprotos();
  datums();
  idx_files();
  return 0;
}
