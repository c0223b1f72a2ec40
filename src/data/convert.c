#include "data/convert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "cortado.pb-c.h"
#include "data/datum.h"
#include "data/idx.h"
#include "data/source.h"
#include "proto/prototxt.h"

static void logf_(void (*log)(void *, const char *), void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(void (*log)(void *, const char *), void *ctx, const char *fmt, ...) {
  if (!log) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  log(ctx, buf);
}

static ct_status put_datum(ct_db_writer *w, const char *key, const ct_datum *d, ct_error *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  CT_TRY(ct_datum_encode(d, &buf, &len, err));
  ct_status st = ct_db_writer_put(w, key, strlen(key), buf, len, err);
  free(buf);
  return st;
}

static ct_status convert_idx(const ct_convert_opts *o, ct_db_writer *w, int64_t *written, ct_error *err) {
  ct_source *src = NULL;
  CT_TRY(ct_source_open_idx(o->images, o->labels, false, 0, &src, err));
  ct_status st = CT_OK;
  for (int64_t i = 0; i < src->count && !st; i++) {
    ct_record r;
    if ((st = ct_source_next(src, &r, err))) break;
    ct_datum d = {.channels = r.C, .height = r.H, .width = r.W, .label = (int)r.label, .data = r.u8,
                  .data_len = (size_t)r.C * r.H * r.W};
    char key[32];
    snprintf(key, sizeof key, "%08lld", (long long)i);
    st = put_datum(w, key, &d, err);
    if (!st && (i + 1) % 10000 == 0) logf_(o->log, o->log_ctx, "Processed %lld files.", (long long)i + 1);
    *written = i + 1;
  }
  ct_source_close(src);
  return st;
}

static ct_status convert_list(const ct_convert_opts *o, ct_db_writer *w, int64_t *written, ct_error *err) {
  ct_image_list list;
  CT_TRY(ct_image_list_read(o->list, &list, err));
  ct_status st = CT_OK;
  uint32_t *order = malloc((size_t)list.n * sizeof *order);
  char *path = NULL, *key = NULL;
  ct_image im = {0}, native = {0}, sized = {0};
  uint8_t *bytes = NULL, *png = NULL;
  if (!order) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  if (o->shuffle)
    ct_source_permutation(order, (size_t)list.n, 0x5eed5eedull, 0);
  else
    for (int64_t i = 0; i < list.n; i++) order[i] = (uint32_t)i;
  const char *root = o->root ? o->root : "";
  const ct_image_mode mode = o->gray ? CT_IMAGE_GRAY : CT_IMAGE_COLOR;
  for (int64_t i = 0; i < list.n; i++) {
    const char *rel = list.paths[order[i]];
    size_t n = strlen(root) + strlen(rel) + 1;
    free(path);
    free(key);
    path = malloc(n);
    key = malloc(strlen(rel) + 32);
    if (!path || !key) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    snprintf(path, n, "%s%s", root, rel);
    snprintf(key, strlen(rel) + 32, "%08lld_%s", (long long)i, rel);
    free(bytes);
    bytes = NULL;
    size_t nbytes = 0;
    if ((st = ct_image_read_file(path, CT_IMAGE_NATIVE, &native, &bytes, &nbytes, err))) goto line_error;
    if ((st = ct_image_decode(bytes, nbytes, mode, &im, path, err))) goto line_error;
    const ct_image *use = &im;
    if (o->resize_h > 0) {
      if ((st = ct_image_resize(&im, o->resize_h, o->resize_w, &sized, err))) goto line_error;
      use = &sized;
    }
    ct_datum d = {.label = list.labels[order[i]]};
    if (o->encoded) {
      d.encoded = true;
      if (o->resize_h <= 0 && native.C == im.C) { /* the file as it is */
        d.data = bytes;
        d.data_len = nbytes;
      } else {
        free(png);
        png = NULL;
        if ((st = ct_image_encode_png(use, &png, &d.data_len, err))) goto line_error;
        d.data = png;
      }
    } else {
      d.channels = use->C;
      d.height = use->H;
      d.width = use->W;
      d.data = use->data;
      d.data_len = (size_t)use->C * use->H * use->W;
    }
    if ((st = put_datum(w, key, &d, err))) goto done;
    *written = i + 1;
    if ((i + 1) % 1000 == 0) logf_(o->log, o->log_ctx, "Processed %lld files.", (long long)i + 1);
    continue;
  line_error:
    ct_error_prefix(err, "%s line for \"%s\"", o->list, rel);
    goto done;
  }
done:
  free(order);
  free(path);
  free(key);
  free(bytes);
  free(png);
  ct_image_free(&im);
  ct_image_free(&native);
  ct_image_free(&sized);
  ct_image_list_free(&list);
  return st;
}

ct_status ct_convert(const ct_convert_opts *o, int64_t *written, ct_error *err) {
  int64_t count = 0;
  if (written) *written = 0;
  if (!o->db) return ct_fail(err, CT_EINVAL, "no output database given");
  if (!!o->list == !!o->images) return ct_fail(err, CT_EINVAL, "give an image list or IDX images, not both or neither");
  if ((o->resize_h > 0) != (o->resize_w > 0))
    return ct_fail(err, CT_EINVAL, "resize height and width must be given together (got %d and %d)", o->resize_h,
                   o->resize_w);
  if (o->images && (o->resize_h > 0 || o->shuffle || o->gray || o->encoded || o->root))
    return ct_fail(err, CT_EINVAL, "root, resize, shuffle, gray and encoded apply to image lists, not IDX files");
  ct_db_writer *w = NULL;
  CT_TRY(ct_db_writer_open(o->db, o->backend, &w, err));
  ct_status st = o->list ? convert_list(o, w, &count, err) : convert_idx(o, w, &count, err);
  if (st) {
    ct_db_writer_abort(w);
    return st;
  }
  CT_TRY(ct_db_writer_commit(w, err));
  if (count % (o->list ? 1000 : 10000)) logf_(o->log, o->log_ctx, "Processed %lld files.", (long long)count);
  if (written) *written = count;
  return CT_OK;
}

ct_status ct_compute_mean(const char *path, ct_db_backend backend, const char *out_path,
                          void (*log)(void *ctx, const char *line), void *log_ctx, int64_t *count, ct_error *err) {
  ct_db *db = NULL;
  CT_TRY(ct_db_open(path, backend, &db, err));
  ct_datum_reader rd = {.mode = CT_IMAGE_NATIVE};
  double *sum = NULL;
  int C = 0, H = 0, W = 0;
  int64_t n = 0;
  bool valid;
  char what[300];
  ct_status st = ct_db_first(db, &valid, err);
  while (!st && valid) {
    const void *key, *val;
    size_t klen, vlen;
    ct_db_current(db, &key, &klen, &val, &vlen);
    snprintf(what, sizeof what, "record \"%.*s\" of %.80s", (int)(klen > 160 ? 160 : klen), (const char *)key, path);
    ct_record r;
    if ((st = ct_datum_read(&rd, val, vlen, what, &r, err))) break;
    size_t m = (size_t)r.C * r.H * r.W;
    if (!sum) {
      C = r.C;
      H = r.H;
      W = r.W;
      if (!(sum = calloc(m, sizeof *sum))) {
        st = ct_fail(err, CT_ENOMEM, "out of memory");
        break;
      }
    } else if (r.C != C || r.H != H || r.W != W) {
      st = ct_fail(err, CT_ESHAPE, "%s is %dx%dx%d but the first record is %dx%dx%d; a mean needs one size", what, r.C,
                   r.H, r.W, C, H, W);
      break;
    }
    if (r.u8)
      for (size_t i = 0; i < m; i++) sum[i] += r.u8[i];
    else
      for (size_t i = 0; i < m; i++) sum[i] += r.f32[i];
    if (++n % 10000 == 0) logf_(log, log_ctx, "Processed %lld files.", (long long)n);
    st = ct_db_next(db, &valid, err);
  }
  if (!st && n == 0) st = ct_fail(err, CT_EINVAL, "database %s holds no records", path);
  if (!st) {
    size_t m = (size_t)C * H * W;
    Caffe__BlobProto b = CAFFE__BLOB_PROTO__INIT;
    b.has_num = b.has_channels = b.has_height = b.has_width = 1;
    b.num = 1;
    b.channels = C;
    b.height = H;
    b.width = W;
    b.n_data = m;
    b.data = malloc(m * sizeof *b.data);
    if (!b.data) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
      for (size_t i = 0; i < m; i++) b.data[i] = (float)(sum[i] / (double)n);
      /* without an output file only the channel means are printed, as compute_image_mean does */
      st = out_path ? ct_proto_write_binary(out_path, &b.base, err) : CT_OK;
      if (!st) {
        if (out_path)
          logf_(log, log_ctx, "Processed %lld files; mean image %dx%dx%d written to %s", (long long)n, C, H, W,
                out_path);
        else
          logf_(log, log_ctx, "Processed %lld files; mean image %dx%dx%d", (long long)n, C, H, W);
        size_t plane = (size_t)H * W;
        for (int c = 0; c < C; c++) {
          double s = 0;
          for (size_t i = 0; i < plane; i++) s += b.data[(size_t)c * plane + i];
          logf_(log, log_ctx, "mean_value channel [%d]: %g", c, s / (double)plane);
        }
      }
      free(b.data);
    }
  }
  if (count) *count = n;
  free(sum);
  ct_datum_reader_free(&rd);
  ct_db_close(db);
  return st;
}
