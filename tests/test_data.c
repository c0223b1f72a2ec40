/* The data path: transforms against a naive reference for every option combination, LMDB and
 * LevelDB sources (key order, wrap, float_data, encoded), prefetch on/off giving identical
 * batches, exact resume from an LMDB, rand_skip, ImageData, MemoryData, convert/compute-mean,
 * and clear errors (never crashes) for damaged databases, bad records and bad image files, and for
 * IDX labels that are not 1-D or a gzip stream that zlib rejects. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "cortado.h"
#include "data/convert.h"
#include "data/datum.h"
#include "data/db.h"
#include "data/image.h"
#include "data/source.h"
#include "data/transform.h"
#include "net/net.h"
#include "proto/prototxt.h"

static char dir[] = "/tmp/ct_data_XXXXXX";
static const char *T10K_IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
static const char *T10K_LABELS = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

static const char *tmp(const char *name) {
  static char buf[8][600];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static uint8_t pixel(int rec, size_t j) { return (uint8_t)((rec * 37 + (int)j * 11 + (int)(j / 7)) & 255); }

/* n records of C x H x W; float_data when f32; label = record index; inserted in reverse key
 * order (the database sorts them). */
static void make_db(const char *path, ct_db_backend b, int n, int C, int H, int W, bool f32) {
  ct_error err = {0};
  ct_db_writer *w = NULL;
  CHECK(ct_db_writer_open(path, b, &w, &err) == CT_OK, "%s", err.msg);
  if (!w) return;
  size_t m = (size_t)C * H * W;
  uint8_t *px = malloc(m);
  float *fx = malloc(m * sizeof *fx);
  for (int i = n - 1; i >= 0; i--) {
    for (size_t j = 0; j < m; j++) {
      px[j] = pixel(i, j);
      fx[j] = (float)px[j] * 0.25f - 3.0f;
    }
    ct_datum d = {.channels = C, .height = H, .width = W, .label = i};
    if (f32) {
      d.float_data = fx;
      d.n_float = m;
    } else {
      d.data = px;
      d.data_len = m;
    }
    uint8_t *buf;
    size_t len;
    char key[32];
    snprintf(key, sizeof key, "%08d", i);
    if (ct_datum_encode(&d, &buf, &len, &err) || ct_db_writer_put(w, key, strlen(key), buf, len, &err)) {
      CHECK(0, "writing %s: %s", path, err.msg);
      ct_db_writer_abort(w);
      free(px);
      free(fx);
      return;
    }
    free(buf);
  }
  free(px);
  free(fx);
  CHECK(ct_db_writer_commit(w, &err) == CT_OK, "%s", err.msg);
}

static ct_net *net_text(const char *text, ct_phase phase, ct_error *err) {
  ct_net *net = NULL;
  if (ct_net_create_from_text(text, "test", NULL, phase, &net, err)) return NULL;
  return net;
}

/* Runs `batches` forwards; returns data and labels concatenated (malloc'ed). */
static float *run_batches(ct_net *net, int batches, float **labels, size_t *per, ct_error *err) {
  int shape[8], n = ct_net_blob_shape(net, "data", shape);
  size_t count = 1;
  for (int i = 0; i < n; i++) count *= (size_t)shape[i];
  *per = count;
  float *out = malloc(count * (size_t)batches * sizeof *out);
  *labels = malloc((size_t)shape[0] * batches * sizeof **labels);
  for (int b = 0; b < batches; b++) {
    if (ct_net_forward(net, NULL, err)) {
      free(out);
      free(*labels);
      *labels = NULL;
      return NULL;
    }
    memcpy(out + count * b, ct_net_blob_data(net, "data"), count * sizeof *out);
    memcpy(*labels + (size_t)shape[0] * b, ct_net_blob_data(net, "label"), (size_t)shape[0] * sizeof **labels);
  }
  return out;
}

/* ------------------------------------------------------------------ transform vs naive */

/* Caffe's DataTransformer::Transform written index by index; draws: crop y, crop x (TRAIN with
 * crop), then the mirror coin (mirror). */
static void naive(const uint8_t *u8, const float *f32, int C, int H, int W, float scale, int crop, bool train,
                  bool mirror, const float *mv, int nmv, const float *mean_blob, ct_rng *rng, float *out) {
  int h_off = 0, w_off = 0, oh = H, ow = W;
  if (crop) {
    oh = ow = crop;
    if (train) {
      h_off = (int)ct_rng_below(rng, (uint64_t)(H - crop + 1));
      w_off = (int)ct_rng_below(rng, (uint64_t)(W - crop + 1));
    } else {
      h_off = (H - crop) / 2;
      w_off = (W - crop) / 2;
    }
  }
  bool do_mirror = mirror && ct_rng_below(rng, 2);
  for (int c = 0; c < C; c++)
    for (int h = 0; h < oh; h++)
      for (int w = 0; w < ow; w++) {
        int top = do_mirror ? (c * oh + h) * ow + (ow - 1 - w) : (c * oh + h) * ow + w;
        int src = (c * H + h_off + h) * W + w_off + w;
        float x = u8 ? (float)u8[src] : f32[src];
        float m = mean_blob ? mean_blob[src] : nmv ? mv[nmv == 1 ? 0 : c] : 0.0f;
        out[top] = (x - m) * scale;
      }
}

static void test_transform_reference(void) {
  enum { C = 3, H = 5, W = 6 };
  uint8_t u8[C * H * W];
  float f32[C * H * W], blob[C * H * W];
  for (int i = 0; i < C * H * W; i++) {
    u8[i] = (uint8_t)(i * 29 + 3);
    f32[i] = (float)(i % 17) * 0.75f - 4.0f;
    blob[i] = (float)(i % 13) * 3.5f;
  }
  /* mean file */
  Caffe__BlobProto bp = CAFFE__BLOB_PROTO__INIT;
  bp.has_num = bp.has_channels = bp.has_height = bp.has_width = 1;
  bp.num = 1, bp.channels = C, bp.height = H, bp.width = W;
  bp.n_data = C * H * W;
  bp.data = blob;
  ct_error err = {0};
  CHECK(ct_proto_write_binary(tmp("mean.binaryproto"), &bp.base, &err) == CT_OK, "%s", err.msg);
  float mv1[1] = {100.5f}, mv3[3] = {10.f, 120.f, 250.f};
  int combos = 0, bad = 0;
  for (int input = 0; input < 2; input++)
    for (int si = 0; si < 2; si++)
      for (int mean = 0; mean < 4; mean++)
        for (int ci = 0; ci < 3; ci++)
          for (int train = 0; train < 2; train++)
            for (int mirror = 0; mirror < 2; mirror++) {
              Caffe__TransformationParameter tp = CAFFE__TRANSFORMATION_PARAMETER__INIT;
              tp.scale = si ? 0.0078125f : 1.0f;
              tp.crop_size = (unsigned)(ci == 0 ? 0 : ci == 1 ? 3 : 5);
              tp.mirror = mirror;
              if (mean == 1) tp.n_mean_value = 1, tp.mean_value = mv1;
              if (mean == 2) tp.n_mean_value = 3, tp.mean_value = mv3;
              if (mean == 3) tp.mean_file = (char *)tmp("mean.binaryproto");
              ct_transform t;
              if (ct_transform_init(&t, &tp, train, C, H, W, tp.mean_file, "t", &err)) {
                CHECK(0, "init: %s", err.msg);
                continue;
              }
              float got[C * H * W], want[C * H * W];
              for (int rep = 0; rep < 6; rep++) { /* several draws of crop and mirror */
                ct_rng r1, r2;
                ct_rng_seed(&r1, 1000u + (unsigned)rep);
                r2 = r1;
                ct_transform_apply(&t, input ? NULL : u8, input ? f32 : NULL, got, &r1);
                naive(input ? NULL : u8, input ? f32 : NULL, C, H, W, tp.scale, (int)tp.crop_size, train, mirror,
                      tp.mean_value, (int)tp.n_mean_value, mean == 3 ? blob : NULL, &r2, want);
                int n = C * ct_transform_out_height(&t) * ct_transform_out_width(&t);
                if (memcmp(got, want, (size_t)n * sizeof(float)) || memcmp(&r1, &r2, sizeof r1)) bad++;
              }
              ct_transform_free(&t);
              combos++;
            }
  CHECK(combos == 2 * 2 * 4 * 3 * 2 * 2 && bad == 0, "transform vs naive: %d of %d combinations x 6 draws differ",
        bad, combos);
  /* mean file of the wrong shape, missing mean file, bad mean_value count, crop too big */
  Caffe__TransformationParameter tp = CAFFE__TRANSFORMATION_PARAMETER__INIT;
  ct_transform t;
  tp.mean_file = (char *)tmp("mean.binaryproto");
  CHECK(ct_transform_init(&t, &tp, true, 1, H, W, tp.mean_file, "layer x", &err) == CT_ESHAPE &&
            strstr(err.msg, "mean.binaryproto") && strstr(err.msg, "1x3x5x6"),
        "mean shape mismatch: %s", err.msg);
  tp.mean_file = (char *)tmp("nonexistent.binaryproto");
  CHECK(ct_transform_init(&t, &tp, true, C, H, W, tp.mean_file, "layer x", &err) != CT_OK &&
            strstr(err.msg, "nonexistent.binaryproto"),
        "missing mean file: %s", err.msg);
  tp.mean_file = NULL;
  tp.n_mean_value = 2;
  tp.mean_value = mv3;
  CHECK(ct_transform_init(&t, &tp, true, C, H, W, NULL, "layer x", &err) == CT_EINVAL, "2 means for 3 channels: %s",
        err.msg);
  tp.n_mean_value = 0;
  tp.crop_size = 7;
  CHECK(ct_transform_init(&t, &tp, true, C, H, W, NULL, "layer x", &err) == CT_ESHAPE, "crop 7 of 5x6: %s", err.msg);
}

/* ------------------------------------------------------------------ LMDB / LevelDB sources */

static const char *db_net(const char *db, const char *backend, int batch, int prefetch, const char *tp,
                          const char *extra) {
  static char buf[2048];
  snprintf(buf, sizeof buf,
           "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { %s } "
           "data_param { source: '%s' backend: %s batch_size: %d prefetch: %d %s } }",
           tp, db, backend, batch, prefetch, extra);
  return buf;
}

static void test_db_order_and_wrap(void) {
  ct_error err = {0};
  make_db(tmp("raw_lmdb"), CT_DB_LMDB, 37, 3, 4, 5, false);
  make_db(tmp("float_lmdb"), CT_DB_LMDB, 37, 3, 4, 5, true);
  make_db(tmp("raw_leveldb"), CT_DB_LEVELDB, 37, 3, 4, 5, false);
  const char *dbs[3][2] = {{"raw_lmdb", "LMDB"}, {"float_lmdb", "LMDB"}, {"raw_leveldb", "LEVELDB"}};
  for (int k = 0; k < 3; k++)
    for (int prefetch = 0; prefetch <= 4; prefetch += 4) {
      ct_net *net = net_text(db_net(tmp(dbs[k][0]), dbs[k][1], 8, prefetch, "", ""), CT_TRAIN, &err);
      CHECK(net, "%s: %s", dbs[k][0], err.msg);
      if (!net) continue;
      float *labels;
      size_t per;
      float *data = run_batches(net, 12, &labels, &per, &err); /* 96 records: wraps twice */
      CHECK(data, "%s: %s", dbs[k][0], err.msg);
      int wrong = 0;
      for (int i = 0; data && i < 96; i++) {
        int rec = i % 37;
        if (labels[i] != (float)rec) wrong++;
        for (size_t j = 0; j < 60; j++) {
          float want = k == 1 ? (float)pixel(rec, j) * 0.25f - 3.0f : (float)pixel(rec, j);
          if (data[(size_t)i * 60 + j] != want) wrong++;
        }
      }
      CHECK(data && wrong == 0, "%s prefetch %d: records in key order, wrapping, bit-exact: %d wrong", dbs[k][0],
            prefetch, wrong);
      free(data);
      free(labels);
      ct_net_free(net);
    }
  /* a database larger than the writer's first LMDB map (64 MiB): the map grows and the
   * transaction is replayed */
  make_db(tmp("big_lmdb"), CT_DB_LMDB, 36000, 1, 40, 50, false);
  ct_db *big = NULL;
  CHECK(ct_db_open(tmp("big_lmdb"), CT_DB_LMDB, &big, &err) == CT_OK && ct_db_count(big) == 36000,
        "72 MB LMDB written through a growing map: %s", err.msg);
  bool valid = false;
  int64_t seen = 0;
  if (big && ct_db_first(big, &valid, &err) == CT_OK)
    while (valid) {
      seen++;
      if (ct_db_next(big, &valid, &err)) break;
    }
  CHECK(seen == 36000, "walked %lld records", (long long)seen);
  ct_db_close(big);
  /* the backend hint */
  ct_net *net = net_text(db_net(tmp("raw_lmdb"), "LEVELDB", 8, 4, "", ""), CT_TRAIN, &err);
  CHECK(!net && strstr(err.msg, "backend: LMDB") && strstr(err.msg, "raw_lmdb"), "LMDB read as LevelDB: %s", err.msg);
  net = net_text(db_net(tmp("raw_leveldb"), "LMDB", 8, 4, "", ""), CT_TRAIN, &err);
  CHECK(!net && strstr(err.msg, "LEVELDB"), "LevelDB read as LMDB: %s", err.msg);
}

/* Whether r is make_db's record `rec` of C x H x W bytes. */
static bool is_record(const ct_record *r, int rec, int C, int H, int W) {
  if (r->label != (float)rec || r->C != C || r->H != H || r->W != W || !r->u8) return false;
  for (size_t j = 0; j < (size_t)C * H * W; j++)
    if (r->u8[j] != pixel(rec, j)) return false;
  return true;
}

/* A seek (a resumed cursor, rand_skip, a cluster worker's stride) lands on the record a fresh
 * read from the start reaches at that position: forward from the cursor, back to the record
 * under it or before it, across epochs, and in a LevelDB whose count is not yet known. (Walking
 * on from the cursor, seeking to every other record of 36000 costs about what reading them all
 * does: 0.1 s here, against 31 s when every seek walked from the first record. Timings are not
 * asserted in unit tests.) */
static void test_db_seek(void) {
  ct_error err = {0};
  enum { N = 36000, H = 40, W = 50 };
  ct_source *seq = NULL, *skip = NULL;
  CHECK(ct_source_open_db(tmp("big_lmdb"), CT_DB_LMDB, CT_IMAGE_NATIVE, &seq, &err) == CT_OK &&
            ct_source_open_db(tmp("big_lmdb"), CT_DB_LMDB, CT_IMAGE_NATIVE, &skip, &err) == CT_OK,
        "%s", err.msg);
  if (seq && skip) {
    ct_record r;
    int wrong = 0;
    for (int i = 0; i < N; i++) wrong += ct_source_next(seq, &r, &err) != CT_OK || !is_record(&r, i, 1, H, W);
    for (int i = 0; i < N; i += 2)
      wrong += ct_source_seek(skip, (uint64_t)i, &err) != CT_OK || ct_source_next(skip, &r, &err) != CT_OK ||
               !is_record(&r, i, 1, H, W) || skip->pos != (uint64_t)i + 1;
    CHECK(wrong == 0, "every other record through seeks equals the sequential read: %d wrong (%s)", wrong, err.msg);
    /* positions in any order: each lands where a fresh source seeking there lands, and reading
     * goes on in order from it */
    const uint64_t at[] = {5, 5, 6, 3, 0, 100, 100 + N, 50 + N, 35999 + 2 * N, 7, 2 * N, 17, 17 + 3 * N};
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
      ct_source *fresh = NULL;
      CHECK(ct_source_open_db(tmp("big_lmdb"), CT_DB_LMDB, CT_IMAGE_NATIVE, &fresh, &err) == CT_OK, "%s", err.msg);
      if (!fresh) continue;
      int rec = (int)(at[k] % N);
      bool same = ct_source_seek(fresh, at[k], &err) == CT_OK && ct_source_next(fresh, &r, &err) == CT_OK &&
                  is_record(&r, rec, 1, H, W) && ct_source_seek(skip, at[k], &err) == CT_OK;
      for (int i = 0; same && i < 3; i++)
        same = ct_source_next(skip, &r, &err) == CT_OK && is_record(&r, (rec + i) % N, 1, H, W) &&
               skip->pos == at[k] + (uint64_t)i + 1;
      CHECK(same, "seek to %llu (after the one before) reads records %d.. as a fresh source does: %s",
            (unsigned long long)at[k], rec, err.msg);
      ct_source_close(fresh);
    }
  }
  ct_source_close(seq);
  ct_source_close(skip);
  /* LevelDB: the count (37) is learnt at the first wrap, also during a forward walk (one open
   * at a time: LevelDB locks its directory) */
  ct_source *a = NULL;
  ct_record r;
  CHECK(ct_source_open_db(tmp("raw_leveldb"), CT_DB_LEVELDB, CT_IMAGE_NATIVE, &a, &err) == CT_OK, "%s", err.msg);
  if (a) {
    CHECK(a->count < 0 && ct_source_next(a, &r, &err) == CT_OK && ct_source_seek(a, 3, &err) == CT_OK &&
              ct_source_next(a, &r, &err) == CT_OK && ct_source_seek(a, 50, &err) == CT_OK && a->count == 37 &&
              ct_source_next(a, &r, &err) == CT_OK && is_record(&r, 13, 3, 4, 5),
          "LevelDB: a forward seek past the unknown end wraps to record 13: %s", err.msg);
    CHECK(ct_source_seek(a, 40, &err) == CT_OK && ct_source_next(a, &r, &err) == CT_OK && is_record(&r, 3, 3, 4, 5),
          "LevelDB: back to record 3: %s", err.msg);
    ct_source_close(a);
  }
  a = NULL;
  CHECK(ct_source_open_db(tmp("raw_leveldb"), CT_DB_LEVELDB, CT_IMAGE_NATIVE, &a, &err) == CT_OK, "%s", err.msg);
  if (a) {
    CHECK(ct_source_seek(a, 40, &err) == CT_OK && a->count == 37 && ct_source_next(a, &r, &err) == CT_OK &&
              is_record(&r, 3, 3, 4, 5),
          "LevelDB: a fresh source seeking to 40 reads record 3 too: %s", err.msg);
    ct_source_close(a);
  }
}

static void test_prefetch_identical(void) {
  ct_error err = {0};
  const char *tps[2] = {"crop_size: 3 mirror: true scale: 0.5 mean_value: [1, 2, 3]", "mirror: true"};
  int differ = 0, runs = 0;
  for (int k = 0; k < 2; k++)
    for (int phase = 0; phase < 2; phase++) {
      float *ref = NULL, *refl = NULL;
      size_t per = 0;
      for (int prefetch = 0; prefetch <= 6; prefetch += (prefetch ? 5 : 1)) { /* 0, 1, 6 */
        ct_net *net = net_text(db_net(tmp("raw_lmdb"), "LMDB", 7, prefetch, tps[k], "rand_skip: 20"),
                               (ct_phase)phase, &err);
        CHECK(net, "%s", err.msg);
        if (!net) continue;
        float *labels;
        float *data = run_batches(net, 15, &labels, &per, &err);
        CHECK(data, "%s", err.msg);
        if (data && !ref) {
          ref = data;
          refl = labels;
        } else if (data) {
          runs++;
          differ += memcmp(ref, data, per * 15 * sizeof(float)) || memcmp(refl, labels, 7 * 15 * sizeof(float));
          free(data);
          free(labels);
        }
        ct_net_free(net);
      }
      free(ref);
      free(refl);
    }
  CHECK(runs == 8 && differ == 0, "prefetch 1 and 6 give the batches of prefetch 0: %d of %d runs differ", differ, runs);
}

static void test_rand_skip(void) {
  ct_error err = {0};
  int seen[37] = {0}, distinct = 0;
  /* the skip is drawn from the layer's seed: vary it through a solver-free path, the net seed */
  for (int s = 0; s < 30; s++) {
    char text[2200];
    snprintf(text, sizeof text, "name: 'n%d' %s", s, db_net(tmp("raw_lmdb"), "LMDB", 2, 4, "", "rand_skip: 10"));
    Caffe__NetParameter *np = NULL;
    CHECK(ct_prototxt_parse(text, strlen(text), "t", &caffe__net_parameter__descriptor, (ProtobufCMessage **)&np,
                            &err) == CT_OK,
          "%s", err.msg);
    ct_net *net = NULL;
    if (np && ct_net_create_from_param(np, "t", "", CT_TRAIN, 0, NULL, (uint64_t)s * 7919u, &net, &err) == CT_OK) {
      CHECK(ct_net_forward(net, NULL, &err) == CT_OK, "%s", err.msg);
      int first = (int)ct_net_blob_data(net, "label")[0];
      CHECK(first >= 0 && first < 10, "rand_skip 10 starts at record %d", first);
      if (first >= 0 && first < 37 && !seen[first]++) distinct++;
    }
    ct_net_free(net);
    if (np) protobuf_c_message_free_unpacked(&np->base, NULL);
  }
  CHECK(distinct >= 4, "rand_skip draws different skips for different seeds (%d distinct)", distinct);
}

/* ------------------------------------------------------------------ resume */

static void quiet_log(void *ctx, const char *line) {
  (void)ctx;
  (void)line;
}

static float *train(const char *solver, int steps, const char *snapshot, size_t *n, ct_error *err) {
  ct_solver_options opt = {.snapshot = snapshot, .log = quiet_log};
  ct_solver *s = NULL;
  if (ct_solver_create(solver, &opt, &s, err)) return NULL;
  if (ct_solver_step(s, steps, err)) {
    ct_solver_free(s);
    return NULL;
  }
  ct_net *net = ct_solver_net(s);
  *n = ct_net_param_total(net);
  float *w = malloc(*n * sizeof(float));
  memcpy(w, ct_net_param_buffer(net), *n * sizeof(float));
  ct_solver_free(s);
  return w;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f, "cannot write %s", path);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static void test_resume_lmdb(void) {
  ct_error err = {0};
  ct_convert_opts o = {.images = T10K_IMAGES, .labels = T10K_LABELS, .db = tmp("t10k_lmdb"), .backend = CT_DB_LMDB};
  int64_t n = 0;
  CHECK(ct_convert(&o, &n, &err) == CT_OK && n == 10000, "convert t10k: %s (%lld)", err.msg, (long long)n);
  char net[2048], solver[2048];
  snprintf(net, sizeof net,
           "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 "
           "  mirror: true crop_size: 24 } data_param { source: '%s' backend: LMDB batch_size: 16 rand_skip: 500 } }\n"
           "layer { name: 'fc1' type: 'InnerProduct' bottom: 'data' top: 'fc1' inner_product_param { num_output: 16 "
           "  weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'relu' type: 'ReLU' bottom: 'fc1' top: 'fc1' }\n"
           "layer { name: 'fc2' type: 'InnerProduct' bottom: 'fc1' top: 'fc2' inner_product_param { num_output: 10 "
           "  weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc2' bottom: 'label' top: 'loss' }\n",
           tmp("t10k_lmdb"));
  write_text(tmp("resume_net.prototxt"), net);
  snprintf(solver, sizeof solver,
           "net: '%s'\nbase_lr: 0.05\nmomentum: 0.9\nlr_policy: 'fixed'\nmax_iter: 40\nrandom_seed: 5\n"
           "snapshot_prefix: '%s'\nsnapshot_after_train: false\n",
           tmp("resume_net.prototxt"), tmp("resume"));
  write_text(tmp("resume_solver.prototxt"), solver);
  size_t n1 = 0, n2 = 0;
  float *a = train(tmp("resume_solver.prototxt"), 40, NULL, &n1, &err);
  CHECK(a, "%s", err.msg);
  ct_solver_options opt = {.log = quiet_log};
  ct_solver *s = NULL;
  char *model = NULL, *state = NULL;
  CHECK(ct_solver_create(tmp("resume_solver.prototxt"), &opt, &s, &err) == CT_OK, "%s", err.msg);
  if (s) {
    CHECK(ct_solver_step(s, 17, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_solver_snapshot(s, &model, &state, &err) == CT_OK, "%s", err.msg);
    ct_solver_free(s);
  }
  float *c = state ? train(tmp("resume_solver.prototxt"), 23, state, &n2, &err) : NULL;
  CHECK(c, "resume: %s", err.msg);
  if (a && c) CHECK(n1 == n2 && !memcmp(a, c, n1 * sizeof(float)), "LMDB: resumed run equals the uninterrupted one");
  free(a);
  free(c);
  free(model);
  free(state);
}

/* Layer-level: the cursor and rng a net saves after k batches bring a fresh net to batch k+1,
 * while the first net's producer is already batches ahead. */
static void test_cursor_is_consumer_position(void) {
  ct_error err = {0};
  const char *text = db_net(tmp("raw_lmdb"), "LMDB", 5, 4, "crop_size: 3 mirror: true", "");
  ct_net *a = net_text(text, CT_TRAIN, &err), *b = net_text(text, CT_TRAIN, &err);
  CHECK(a && b, "%s", err.msg);
  if (!a || !b) goto done;
  for (int i = 0; i < 6; i++) CHECK(ct_net_forward(a, NULL, &err) == CT_OK, "%s", err.msg);
  usleep(20000); /* let the producer run ahead */
  Caffe__SolverState st = CAFFE__SOLVER_STATE__INIT;
  CHECK(ct_net_save_state(a, "", &st, &err) == CT_OK, "%s", err.msg);
  ct_net_load_state(b, "", &st);
  uint64_t cursor = 0;
  for (size_t k = 0; k < st.n_layer_state; k++)
    if (st.layer_state[k]->has_cursor) cursor = st.layer_state[k]->cursor;
  CHECK(cursor == 30, "saved cursor is the consumer's: %llu (want 30)", (unsigned long long)cursor);
  for (int i = 0; i < 4; i++) {
    CHECK(ct_net_forward(a, NULL, &err) == CT_OK && ct_net_forward(b, NULL, &err) == CT_OK, "%s", err.msg);
    CHECK(!memcmp(ct_net_blob_data(a, "data"), ct_net_blob_data(b, "data"), 5 * 3 * 3 * 3 * sizeof(float)) &&
              !memcmp(ct_net_blob_data(a, "label"), ct_net_blob_data(b, "label"), 5 * sizeof(float)),
          "batch %d after restore", i);
  }
  for (size_t k = 0; k < st.n_layer_state; k++) {
    free(st.layer_state[k]->layer);
    free(st.layer_state[k]->rng);
    free(st.layer_state[k]);
  }
  free(st.layer_state);
done:
  ct_net_free(a);
  ct_net_free(b);
}

/* ------------------------------------------------------------------ LevelDB against IDX */

static void test_leveldb_equals_idx(void) {
  ct_error err = {0};
  ct_convert_opts o = {.images = T10K_IMAGES, .labels = T10K_LABELS, .db = tmp("t10k_leveldb"),
                       .backend = CT_DB_LEVELDB};
  CHECK(ct_convert(&o, NULL, &err) == CT_OK, "%s", err.msg);
  char idx[1024];
  snprintf(idx, sizeof idx,
           "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 } "
           "idx_data_param { images: '%s' labels: '%s' batch_size: 100 } }",
           T10K_IMAGES, T10K_LABELS);
  ct_net *a = net_text(idx, CT_TEST, &err);
  ct_net *b = net_text(db_net(tmp("t10k_leveldb"), "LEVELDB", 100, 4, "scale: 0.00390625", ""), CT_TEST, &err);
  ct_net *c = net_text(db_net(tmp("t10k_lmdb"), "LMDB", 100, 4, "scale: 0.00390625", ""), CT_TEST, &err);
  CHECK(a && b && c, "%s", err.msg);
  if (a && b && c) {
    float *la, *lb, *lc;
    size_t per;
    float *da = run_batches(a, 103, &la, &per, &err), *db = run_batches(b, 103, &lb, &per, &err),
          *dc = run_batches(c, 103, &lc, &per, &err);
    CHECK(da && db && dc, "%s", err.msg);
    if (da && db && dc)
      CHECK(!memcmp(da, db, per * 103 * sizeof(float)) && !memcmp(la, lb, 100 * 103 * sizeof(float)) &&
                !memcmp(da, dc, per * 103 * sizeof(float)) && !memcmp(la, lc, 100 * 103 * sizeof(float)),
            "LevelDB and LMDB made by convert serve the IDX file's batches, across the wrap");
    free(da), free(db), free(dc), free(la), free(lb), free(lc);
  }
  ct_net_free(a);
  ct_net_free(b);
  ct_net_free(c);
}

/* ------------------------------------------------------------------ images, lists, convert */

static void write_png(const char *path, int C, int H, int W, int seed) {
  ct_image im = {0};
  ct_error err = {0};
  im.C = C, im.H = H, im.W = W;
  im.data = malloc((size_t)C * H * W);
  for (int i = 0; i < C * H * W; i++) im.data[i] = (uint8_t)(i * 7 + seed * 13);
  uint8_t *png;
  size_t len;
  CHECK(ct_image_encode_png(&im, &png, &len, &err) == CT_OK, "%s", err.msg);
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(png, 1, len, f);
    fclose(f);
  }
  free(png);
  ct_image_free(&im);
}

static void test_image_data_and_convert(void) {
  ct_error err = {0};
  mkdir(tmp("img"), 0755);
  char list[4096] = "";
  for (int i = 0; i < 5; i++) {
    char name[64], line[128];
    snprintf(name, sizeof name, "img/p%d.png", i);
    write_png(tmp(name), 3, 6, 7, i);
    snprintf(line, sizeof line, "%s %d\n", name, 10 + i);
    strcat(list, line);
  }
  write_text(tmp("list.txt"), list);
  char root[700];
  snprintf(root, sizeof root, "%s/", dir);
  /* ImageData with and without prefetch, shuffled, and the same images through convert -> LMDB */
  char text[2048];
  float *ref = NULL, *refl = NULL;
  size_t per = 0;
  for (int prefetch = 0; prefetch <= 3; prefetch += 3) {
    snprintf(text, sizeof text,
             "layer { name: 'd' type: 'ImageData' top: 'data' top: 'label' transform_param { crop_size: 5 "
             "mirror: true } image_data_param { source: '%s' root_folder: '%s' batch_size: 3 shuffle: true } "
             "data_param { prefetch: %d } }",
             tmp("list.txt"), root, prefetch);
    ct_net *net = net_text(text, CT_TRAIN, &err);
    CHECK(net, "%s", err.msg);
    if (!net) continue;
    float *labels;
    float *data = run_batches(net, 7, &labels, &per, &err);
    CHECK(data, "%s", err.msg);
    if (data && !ref) {
      ref = data, refl = labels;
      int hist[5] = {0};
      for (int i = 0; i < 21; i++)
        if (labels[i] >= 10 && labels[i] < 15) hist[(int)labels[i] - 10]++;
      CHECK(hist[0] + hist[1] + hist[2] + hist[3] + hist[4] == 21 && hist[0] >= 4 && hist[0] <= 5,
            "shuffled epochs serve every image once per epoch");
    } else if (data) {
      CHECK(!memcmp(ref, data, per * 7 * sizeof(float)) && !memcmp(refl, labels, 21 * sizeof(float)),
            "ImageData: prefetch 3 gives the batches of prefetch 0");
      free(data), free(labels);
    }
    ct_net_free(net);
  }
  free(ref), free(refl);
  /* convert: raw, encoded, gray, resized; each read back equals the ImageData layer's view */
  const struct {
    const char *db;
    bool encoded, gray;
    int rh, rw;
  } cases[] = {{"list_raw", 0, 0, 0, 0}, {"list_enc", 1, 0, 0, 0}, {"list_gray", 0, 1, 0, 0}, {"list_rs", 1, 0, 4, 9}};
  for (int k = 0; k < 4; k++) {
    ct_convert_opts o = {.list = tmp("list.txt"), .root = root, .db = tmp(cases[k].db), .backend = CT_DB_LMDB,
                         .encoded = cases[k].encoded, .gray = cases[k].gray, .resize_h = cases[k].rh,
                         .resize_w = cases[k].rw};
    int64_t n = 0;
    CHECK(ct_convert(&o, &n, &err) == CT_OK && n == 5, "convert %s: %s", cases[k].db, err.msg);
    snprintf(text, sizeof text,
             "layer { name: 'd' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
             "root_folder: '%s' batch_size: 5 is_color: %s new_height: %d new_width: %d } }",
             tmp("list.txt"), root, cases[k].gray ? "false" : "true", cases[k].rh, cases[k].rw);
    ct_net *a = net_text(text, CT_TEST, &err);
    CHECK(a, "%s", err.msg);
    ct_net *b = net_text(db_net(tmp(cases[k].db), "LMDB", 5, 2, "", ""), CT_TEST, &err);
    CHECK(b, "%s", err.msg);
    if (a && b) {
      float *la, *lb;
      size_t pa, pb;
      float *da = run_batches(a, 2, &la, &pa, &err), *dbb = run_batches(b, 2, &lb, &pb, &err);
      CHECK(da && dbb && pa == pb && !memcmp(da, dbb, pa * 2 * sizeof(float)) && !memcmp(la, lb, 10 * sizeof(float)),
            "%s read back equals ImageData's view", cases[k].db);
      free(da), free(dbb), free(la), free(lb);
    }
    ct_net_free(a);
    ct_net_free(b);
  }
  /* compute-mean of the raw database against a direct average */
  int64_t count = 0;
  CHECK(ct_compute_mean(tmp("list_raw"), CT_DB_LMDB, tmp("list_mean.binaryproto"), NULL, NULL, &count, &err) == CT_OK &&
            count == 5,
        "%s", err.msg);
  ProtobufCMessage *m = NULL;
  CHECK(ct_proto_read_binary(tmp("list_mean.binaryproto"), &caffe__blob_proto__descriptor, &m, &err) == CT_OK, "%s",
        err.msg);
  if (m) {
    const Caffe__BlobProto *b = (const Caffe__BlobProto *)m;
    int worst = 0;
    CHECK(b->num == 1 && b->channels == 3 && b->height == 6 && b->width == 7 && b->n_data == 126, "mean shape");
    for (size_t i = 0; i < b->n_data && b->n_data == 126; i++) {
      size_t src = i; /* write_png's planes are B, G, R, as decoding gives them back */
      double s = 0;
      for (int k = 0; k < 5; k++) s += (uint8_t)(src * 7 + (size_t)k * 13);
      if (fabs(b->data[i] - s / 5) > 1e-4) worst++;
    }
    CHECK(worst == 0, "mean differs at %d values", worst);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  /* a mean file from compute-mean works as transform_param { mean_file } */
  char tp[900];
  snprintf(tp, sizeof tp, "mean_file: '%s'", tmp("list_mean.binaryproto"));
  ct_net *net = net_text(db_net(tmp("list_raw"), "LMDB", 5, 2, tp, ""), CT_TEST, &err);
  CHECK(net && ct_net_forward(net, NULL, &err) == CT_OK, "mean_file from compute-mean: %s", err.msg);
  ct_net_free(net);
}

/* ------------------------------------------------------------------ errors */

static bool dir_has_tmp(const char *d) {
  DIR *dd = opendir(d);
  bool found = false;
  struct dirent *e;
  while (dd && (e = readdir(dd)))
    if (strstr(e->d_name, ".tmp-")) found = true;
  if (dd) closedir(dd);
  return found;
}

static void put_raw(ct_db_writer *w, const char *key, const uint8_t *val, size_t len) {
  ct_error err = {0};
  CHECK(ct_db_writer_put(w, key, strlen(key), val, len, &err) == CT_OK, "%s", err.msg);
}

static void put_datum(ct_db_writer *w, const char *key, const ct_datum *d) {
  uint8_t *buf;
  size_t len;
  ct_error err = {0};
  CHECK(ct_datum_encode(d, &buf, &len, &err) == CT_OK, "%s", err.msg);
  put_raw(w, key, buf, len);
  free(buf);
}

/* A net over db; forwards up to `batches` times; returns the first error (or CT_OK). */
static ct_status try_db_batch(const char *db, const char *backend, int batch, int batches, ct_error *err) {
  ct_net *net = net_text(db_net(db, backend, batch, 2, "", ""), CT_TRAIN, err);
  if (!net) return err->status ? err->status : CT_EINVAL;
  ct_status st = CT_OK;
  for (int i = 0; i < batches && !st; i++) st = ct_net_forward(net, NULL, err);
  ct_net_free(net);
  return st;
}

static ct_status try_db(const char *db, const char *backend, int batches, ct_error *err) {
  return try_db_batch(db, backend, 2, batches, err);
}

static void copy_file(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  char buf[65536];
  size_t n;
  while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
  if (a) fclose(a);
  if (b) fclose(b);
}

static void test_errors(void) {
  ct_error err = {0};
  /* bad records, each named by its key */
  ct_db_writer *w = NULL;
  CHECK(ct_db_writer_open(tmp("bad_lmdb"), CT_DB_LMDB, &w, &err) == CT_OK, "%s", err.msg);
  if (w) {
    uint8_t px[16] = {0};
    ct_datum good = {.channels = 1, .height = 4, .width = 4, .data = px, .data_len = 16};
    put_datum(w, "00000000_good", &good);
    ct_datum shortd = {.channels = 1, .height = 4, .width = 4, .data = px, .data_len = 10};
    put_datum(w, "00000001_short", &shortd);
    ct_db_writer_commit(w, &err);
  }
  CHECK(try_db(tmp("bad_lmdb"), "LMDB", 3, &err) == CT_EPARSE && strstr(err.msg, "00000001_short") &&
            strstr(err.msg, "10 bytes") && strstr(err.msg, "layer \"d\""),
        "wrong-size Datum: %s", err.msg);
  const struct {
    const char *key;
    int kind;
    const char *want;
  } bad[] = {{"00000001_notdatum", 0, "not a Datum"},
             {"00000001_bigger", 1, "2x4x4"},
             {"00000001_badjpeg", 2, "JPEG"},
             {"00000001_floats", 3, "float_data holds 5"},
             {"00000001_empty", 4, "neither data nor float_data"},
             {"00000001_notimage", 5, "not a JPEG or PNG"}};
  for (int k = 0; k < 6; k++) {
    char name[64];
    snprintf(name, sizeof name, "bad%d_lmdb", k);
    w = NULL;
    CHECK(ct_db_writer_open(tmp(name), CT_DB_LMDB, &w, &err) == CT_OK, "%s", err.msg);
    if (!w) continue;
    uint8_t px[32] = {0};
    float fx[5] = {0};
    ct_datum good = {.channels = 1, .height = 4, .width = 4, .data = px, .data_len = 16};
    put_datum(w, "00000000_good", &good);
    if (bad[k].kind == 0) {
      const uint8_t junk[] = {0x22, 0xff, 0xff, 0x01};
      put_raw(w, bad[k].key, junk, sizeof junk);
    } else if (bad[k].kind == 1) {
      ct_datum d = {.channels = 2, .height = 4, .width = 4, .data = px, .data_len = 32};
      put_datum(w, bad[k].key, &d);
    } else if (bad[k].kind == 2) {
      const uint8_t jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 2, 3, 4, 5, 6, 7};
      ct_datum d = {.encoded = true, .data = jpeg, .data_len = sizeof jpeg};
      put_datum(w, bad[k].key, &d);
    } else if (bad[k].kind == 3) {
      ct_datum d = {.channels = 1, .height = 4, .width = 4, .float_data = fx, .n_float = 5};
      put_datum(w, bad[k].key, &d);
    } else if (bad[k].kind == 4) {
      ct_datum d = {.channels = 1, .height = 4, .width = 4};
      put_datum(w, bad[k].key, &d);
    } else {
      ct_datum d = {.encoded = true, .data = px, .data_len = 20};
      put_datum(w, bad[k].key, &d);
    }
    ct_db_writer_commit(w, &err);
    err.msg[0] = 0;
    CHECK(try_db(tmp(name), "LMDB", 3, &err) != CT_OK && strstr(err.msg, bad[k].key) && strstr(err.msg, bad[k].want),
          "%s: %s", bad[k].key, err.msg);
  }
  /* missing, empty, truncated and damaged databases */
  CHECK(try_db(tmp("no_such_lmdb"), "LMDB", 1, &err) == CT_EIO && strstr(err.msg, "no_such_lmdb"), "missing: %s",
        err.msg);
  CHECK(try_db(tmp("no_such_leveldb"), "LEVELDB", 1, &err) == CT_EIO && strstr(err.msg, "no_such_leveldb"),
        "missing: %s", err.msg);
  w = NULL;
  CHECK(ct_db_writer_open(tmp("empty_lmdb"), CT_DB_LMDB, &w, &err) == CT_OK, "%s", err.msg);
  if (w) ct_db_writer_commit(w, &err);
  CHECK(try_db(tmp("empty_lmdb"), "LMDB", 1, &err) != CT_OK && strstr(err.msg, "no records"), "empty: %s", err.msg);
  mkdir(tmp("trunc_lmdb"), 0755);
  char from[700], to[700];
  snprintf(from, sizeof from, "%s/data.mdb", tmp("t10k_lmdb"));
  snprintf(to, sizeof to, "%s/data.mdb", tmp("trunc_lmdb"));
  copy_file(from, to);
  struct stat st;
  stat(to, &st);
  CHECK(truncate(to, st.st_size / 2) == 0, "truncate");
  CHECK(try_db(tmp("trunc_lmdb"), "LMDB", 1, &err) == CT_EPARSE && strstr(err.msg, "trunc_lmdb") &&
            strstr(err.msg, "truncated"),
        "truncated LMDB: %s", err.msg);
  /* damage: overwrite page headers (structure: must be caught) or a stretch of bytes anywhere
   * (often only pixels: undetectable, but never a crash); every message names the database */
  int errors = 0, tries = 0;
  for (int k = 1; k <= 24; k++) {
    copy_file(from, to);
    FILE *f = fopen(to, "r+b");
    if (!f) continue;
    bool header = k <= 12;
    long off = header ? (long)(st.st_size / 4096 * k / 13) * 4096 + (k % 3) * 4
                      : (long)((double)st.st_size * (k - 12) / 13.0);
    fseek(f, off, SEEK_SET);
    for (int i = 0; i < (header ? 12 : 700); i++) fputc((i * 89 + k * 7 + 1) & 255, f);
    fclose(f);
    err.msg[0] = 0;
    ct_status s = try_db_batch(tmp("trunc_lmdb"), "LMDB", 100, 101, &err);
    tries++;
    if (s != CT_OK) {
      errors += header;
      CHECK(strstr(err.msg, "trunc_lmdb") != NULL, "damaged LMDB error names it: %s", err.msg);
    }
  }
  CHECK(tries == 24 && errors >= 10, "damaged page headers: %d of 12 runs gave an error, none crashed", errors);
  /* many small mutations of a small LMDB (its pages are mostly structure), each read through
   * twice: errors or wrong pixels, never a read outside the file (the ASan build checks) */
  {
    char small[700], dst[700];
    snprintf(small, sizeof small, "%s/data.mdb", tmp("raw_lmdb"));
    snprintf(dst, sizeof dst, "%s/data.mdb", tmp("mut_lmdb"));
    mkdir(tmp("mut_lmdb"), 0755);
    struct stat ss;
    stat(small, &ss);
    ct_rng r;
    ct_rng_seed(&r, 99);
    int mut_errors = 0;
    for (int k = 0; k < 400; k++) {
      copy_file(small, dst);
      FILE *g = fopen(dst, "r+b");
      if (!g) continue;
      int nb = 1 + (int)ct_rng_below(&r, 8);
      for (int i = 0; i < nb; i++) {
        fseek(g, (long)ct_rng_below(&r, (uint64_t)ss.st_size), SEEK_SET);
        fputc((int)ct_rng_below(&r, 256), g);
      }
      fclose(g);
      ct_source *src = NULL;
      ct_status s2 = ct_source_open_db(tmp("mut_lmdb"), CT_DB_LMDB, CT_IMAGE_NATIVE, &src, &err);
      for (int i = 0; !s2 && i < 80; i++) {
        ct_record rec;
        s2 = ct_source_next(src, &rec, &err);
      }
      ct_source_close(src);
      mut_errors += s2 != CT_OK;
    }
    CHECK(mut_errors > 0, "400 mutated LMDBs read without a crash (%d gave errors)", mut_errors);
  }
  /* a garbage data file */
  FILE *f = fopen(to, "wb");
  for (int i = 0; f && i < 100000; i++) fputc((i * 31) & 255, f);
  if (f) fclose(f);
  CHECK(try_db(tmp("trunc_lmdb"), "LMDB", 1, &err) != CT_OK && strstr(err.msg, "trunc_lmdb"), "garbage LMDB: %s",
        err.msg);
  /* LevelDB with a damaged table file */
  DIR *d = opendir(tmp("t10k_leveldb"));
  struct dirent *e;
  mkdir(tmp("bad_leveldb"), 0755);
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.' || !strcmp(e->d_name, "LOCK")) continue;
    char a[900], b[900];
    snprintf(a, sizeof a, "%s/%s", tmp("t10k_leveldb"), e->d_name);
    snprintf(b, sizeof b, "%s/%s", tmp("bad_leveldb"), e->d_name);
    copy_file(a, b);
    if (strstr(e->d_name, ".ldb") || strstr(e->d_name, ".log")) {
      FILE *g = fopen(b, "r+b");
      struct stat sb;
      stat(b, &sb);
      if (g && sb.st_size > 4000) {
        fseek(g, sb.st_size / 3, SEEK_SET);
        for (int i = 0; i < 500; i++) fputc(0x5a, g);
      }
      if (g) fclose(g);
    }
  }
  if (d) closedir(d);
  err.msg[0] = 0;
  ct_status ls = try_db_batch(tmp("bad_leveldb"), "LEVELDB", 100, 101, &err);
  CHECK(ls != CT_OK && strstr(err.msg, "bad_leveldb"), "damaged LevelDB: %d %s", ls, err.msg);
  /* image lists: a missing file, an unreadable one, a bad line */
  write_text(tmp("img/broken.jpg"), "\xff\xd8\xff\xe0 this is not really a JPEG");
  write_text(tmp("list_missing.txt"), "img/p0.png 1\nimg/nope.png 2\n");
  write_text(tmp("list_broken.txt"), "img/p0.png 1\nimg/broken.jpg 2\n");
  write_text(tmp("list_badline.txt"), "img/p0.png 1\nimg/p1.png two\n");
  char root[700];
  snprintf(root, sizeof root, "%s/", dir);
  const char *lists[3][2] = {{"list_missing.txt", "img/nope.png"},
                             {"list_broken.txt", "img/broken.jpg"},
                             {"list_badline.txt", "list_badline.txt:2"}};
  for (int k = 0; k < 3; k++) {
    char text[2048];
    snprintf(text, sizeof text,
             "layer { name: 'd' type: 'ImageData' top: 'data' top: 'label' image_data_param { source: '%s' "
             "root_folder: '%s' batch_size: 2 } }",
             tmp(lists[k][0]), root);
    ct_net *net = net_text(text, CT_TRAIN, &err);
    ct_status s = net ? ct_net_forward(net, NULL, &err) : CT_EINVAL;
    CHECK(s != CT_OK && strstr(err.msg, lists[k][1]), "ImageData %s: %s", lists[k][0], err.msg);
    ct_net_free(net);
    /* convert: the same files fail, naming the file, leaving no database and no temp dir */
    ct_convert_opts o = {.list = tmp(lists[k][0]), .root = root, .db = tmp("failed_lmdb"), .backend = CT_DB_LMDB};
    CHECK(ct_convert(&o, NULL, &err) != CT_OK && strstr(err.msg, lists[k][1]), "convert %s: %s", lists[k][0], err.msg);
    CHECK(access(tmp("failed_lmdb"), F_OK) != 0 && !dir_has_tmp(dir), "a failed convert leaves nothing behind");
  }
  ct_convert_opts o = {.images = "/nonexistent/images.idx", .db = tmp("failed_lmdb"), .backend = CT_DB_LMDB};
  CHECK(ct_convert(&o, NULL, &err) != CT_OK && strstr(err.msg, "/nonexistent/images.idx") &&
            access(tmp("failed_lmdb"), F_OK) != 0,
        "convert missing IDX: %s", err.msg);
  o.images = T10K_IMAGES;
  o.db = tmp("raw_lmdb");
  CHECK(ct_convert(&o, NULL, &err) == CT_EIO && strstr(err.msg, "already exists"), "existing target: %s", err.msg);
}

/* ------------------------------------------------------------------ IDX sources */

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static void test_idx_sources(void) {
  ct_error err = {0};
  ct_source *src = NULL;
  /* 5 images of 2x3; labels 0..4 */
  uint8_t images[16 + 30], labels[8 + 5];
  const uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3}, lh[8] = {0, 0, 8, 1, 0, 0, 0, 5};
  memcpy(images, ih, 16);
  memcpy(labels, lh, 8);
  for (int i = 0; i < 30; i++) images[16 + i] = (uint8_t)(i * 7);
  for (int i = 0; i < 5; i++) labels[8 + i] = (uint8_t)i;
  write_bytes(tmp("i5.idx"), images, sizeof images);
  write_bytes(tmp("l5.idx"), labels, sizeof labels);
  CHECK(ct_source_open_idx(tmp("i5.idx"), tmp("l5.idx"), false, 0, &src, &err) == CT_OK, "IDX pair: %s", err.msg);
  if (src) {
    ct_record r;
    for (int i = 0; i < 5; i++) {
      CHECK(ct_source_next(src, &r, &err) == CT_OK && r.C == 1 && r.H == 2 && r.W == 3 && r.label == (float)i &&
                r.u8[0] == (uint8_t)(i * 42),
            "IDX record %d", i);
    }
    ct_source_close(src);
  }
  /* labels that are not 1-D: the images file itself (3-D), and a 2-D file of 5 x 1 */
  src = NULL;
  ct_status st = ct_source_open_idx(tmp("i5.idx"), tmp("i5.idx"), false, 0, &src, &err);
  CHECK(st == CT_ESHAPE && src == NULL, "3-D labels: status %d", st);
  CHECK(strstr(err.msg, tmp("i5.idx")) && strstr(err.msg, "must be 1-D") && strstr(err.msg, "0x00000801") &&
            strstr(err.msg, "0x00000803") && strstr(err.msg, "5x2x3") && !strstr(err.msg, "labels for"),
        "3-D labels file: %s", err.msg);
  const uint8_t l2[16 + 5] = {0, 0, 8, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 1, 2, 3, 4};
  write_bytes(tmp("l5x1.idx"), l2, 8 + 4 + 5);
  st = ct_source_open_idx(tmp("i5.idx"), tmp("l5x1.idx"), false, 0, &src, &err);
  CHECK(st == CT_ESHAPE && strstr(err.msg, "l5x1.idx") && strstr(err.msg, "must be 1-D") && strstr(err.msg, "5x1"),
        "2-D labels file: %s", err.msg);
  /* 1-D labels for another count still say so */
  const uint8_t l4[8 + 4] = {0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 2, 3};
  write_bytes(tmp("l4.idx"), l4, sizeof l4);
  st = ct_source_open_idx(tmp("i5.idx"), tmp("l4.idx"), false, 0, &src, &err);
  CHECK(st == CT_ESHAPE && strstr(err.msg, "l4.idx") && strstr(err.msg, "4 labels") && strstr(err.msg, "5 images"),
        "label count: %s", err.msg);
  /* a gzip stream with a broken deflate block, through the Data layer: layer, file and zlib's
   * words; a real image file as labels through the layer too */
  gzFile g = gzopen(tmp("i5.idx.gz"), "wb");
  if (g) {
    gzwrite(g, images, sizeof images);
    gzclose(g);
  }
  FILE *f = fopen(tmp("i5.idx.gz"), "r+b");
  if (f) { /* the first deflate block header (byte 10): BTYPE 11 is reserved */
    fseek(f, 10, SEEK_SET);
    fputc(0x07, f);
    fclose(f);
  }
  char text[2048];
  snprintf(text, sizeof text,
           "layer { name: 'd' type: 'Data' top: 'data' top: 'label' idx_data_param { images: '%s' labels: '%s' "
           "batch_size: 2 } }",
           tmp("i5.idx.gz"), tmp("l5.idx"));
  ct_net *net = net_text(text, CT_TRAIN, &err);
  CHECK(!net && strstr(err.msg, "layer \"d\"") && strstr(err.msg, "i5.idx.gz") &&
            strstr(err.msg, "corrupt gzip data: invalid block type") && !strstr(err.msg, "too short"),
        "Data layer over a corrupt gzip: %s", err.msg);
  ct_net_free(net);
  snprintf(text, sizeof text,
           "layer { name: 'd' type: 'Data' top: 'data' top: 'label' idx_data_param { images: '%s' labels: '%s' "
           "batch_size: 2 } }",
           T10K_IMAGES, T10K_IMAGES);
  net = net_text(text, CT_TRAIN, &err);
  CHECK(!net && strstr(err.msg, "layer \"d\"") && strstr(err.msg, "must be 1-D") &&
            strstr(err.msg, "10000x28x28"),
        "Data layer with images as labels: %s", err.msg);
  ct_net_free(net);
}

/* ------------------------------------------------------------------ MemoryData */

static void test_memory_data(void) {
  ct_error err = {0};
  const char *text =
      "layer { name: 'm' type: 'MemoryData' top: 'data' top: 'label' transform_param { scale: 2 mean_value: 1 } "
      "memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } }\n"
      "layer { name: 'p' type: 'Power' bottom: 'data' top: 'p' }";
  ct_net *net = net_text(text, CT_TEST, &err);
  CHECK(net, "%s", err.msg);
  if (!net) return;
  CHECK(ct_net_forward(net, NULL, &err) != CT_OK && strstr(err.msg, "ct_net_set_memory_data"), "no data yet: %s",
        err.msg);
  float data[3 * 6], labels[3] = {7, 8, 9};
  for (int i = 0; i < 18; i++) data[i] = (float)i;
  CHECK(ct_net_set_memory_data(net, "m", data, labels, 3, &err) == CT_OK, "%s", err.msg);
  int bad = 0;
  for (int b = 0; b < 3; b++) { /* items 0 1 | 2 0 | 1 2 */
    CHECK(ct_net_forward(net, NULL, &err) == CT_OK, "%s", err.msg);
    const float *d = ct_net_blob_data(net, "data"), *l = ct_net_blob_data(net, "label");
    for (int i = 0; i < 2; i++) {
      int item = (b * 2 + i) % 3;
      if (l[i] != labels[item]) bad++;
      for (int j = 0; j < 6; j++) bad += d[i * 6 + j] != (data[item * 6 + j] - 1) * 2;
    }
  }
  CHECK(bad == 0, "MemoryData batches wrap in order through the transform (%d wrong)", bad);
  CHECK(ct_net_set_memory_data(net, "p", data, labels, 3, &err) == CT_EINVAL && strstr(err.msg, "Power"), "%s",
        err.msg);
  CHECK(ct_net_set_memory_data(net, "zz", data, labels, 3, &err) == CT_ENOTFOUND, "%s", err.msg);
  CHECK(ct_net_set_memory_data(net, "m", data, labels, 0, &err) == CT_EINVAL, "%s", err.msg);
  ct_net_free(net);
}

static void rm_rf(const char *path) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_transform_reference();
  test_db_order_and_wrap();
  test_db_seek();
  test_prefetch_identical();
  test_rand_skip();
  test_cursor_is_consumer_position();
  test_resume_lmdb();
  test_leveldb_equals_idx();
  test_image_data_and_convert();
  test_errors();
  test_idx_sources();
  test_memory_data();
  rm_rf(dir);
  return ct_check_report();
}
