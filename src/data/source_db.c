/* Caffe Datum records from LMDB / LevelDB as a source. The database is read through one cursor
 * in key order; a seek walks the cursor (no decoding): on from where it stands when the target
 * lies ahead in the key order, else from the first record. LevelDB's record count is learnt at
 * the first wrap.
 *
 * The first record served fixes the size of every later one, as a data layer's blob (and its
 * transform, which crops from that exact size) needs: an encoded record is decoded with that
 * size expected, so a header declaring another size is refused before its pixels are
 * allocated, and a raw record of another size is refused too. Both messages name the database,
 * the record's key and index, and both sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/datum.h"
#include "data/source.h"

typedef struct db_source {
  ct_source base;
  ct_db *db;
  ct_datum_reader rd;
  int64_t cur;  /* index (within the epoch) of the record under the cursor; -1: not positioned */
  bool advance; /* the record under the cursor was served: move before serving the next */
  bool sized;   /* `want` holds the size of the first record served */
  ct_image_expect want;
  char first[64]; /* that record's key, for messages */
  char what[440];
} db_source;

/* ct_datum_read, with encoded images checked against *want (may be NULL) before decoding. */
static ct_status datum_read(ct_datum_reader *rd, const void *val, size_t vlen, const ct_image_expect *want,
                            const char *what, ct_record *rec, ct_error *err) {
  ct_datum d;
  if (ct_datum_parse(val, vlen, &d, &rd->fbuf, &rd->fcap, err)) return ct_error_prefix(err, "%s", what);
  rec->label = (float)d.label;
  rec->what = what;
  rec->u8 = NULL;
  rec->f32 = NULL;
  if (d.encoded) {
    if (!d.data_len) return ct_fail(err, CT_EPARSE, "%s: encoded but holds no image bytes", what);
    CT_TRY(ct_image_decode_expect(d.data, d.data_len, rd->mode, want, &rd->img, what, err));
    rec->C = rd->img.C;
    rec->H = rd->img.H;
    rec->W = rd->img.W;
    rec->u8 = rd->img.data;
  } else {
    if (d.channels < 1 || d.height < 1 || d.width < 1 || d.channels > (1 << 16) || d.height > (1 << 20) ||
        d.width > (1 << 20) || (size_t)d.channels * d.height * d.width > ((size_t)1 << 31))
      return ct_fail(err, CT_EPARSE, "%s: implausible Datum size %dx%dx%d (channels x height x width)", what,
                     d.channels, d.height, d.width);
    size_t n = (size_t)d.channels * d.height * d.width;
    rec->C = d.channels;
    rec->H = d.height;
    rec->W = d.width;
    if (d.data_len) {
      if (d.data_len != n)
        return ct_fail(err, CT_EPARSE, "%s: data holds %zu bytes but channels x height x width = %dx%dx%d = %zu",
                       what, d.data_len, d.channels, d.height, d.width, n);
      rec->u8 = d.data;
    } else if (d.n_float) {
      if (d.n_float != n)
        return ct_fail(err, CT_EPARSE,
                       "%s: float_data holds %zu values but channels x height x width = %dx%dx%d = %zu", what,
                       d.n_float, d.channels, d.height, d.width, n);
      rec->f32 = d.float_data;
    } else {
      return ct_fail(err, CT_EPARSE, "%s: a %dx%dx%d Datum with neither data nor float_data", what, d.channels,
                     d.height, d.width);
    }
  }
  return CT_OK;
}

ct_status ct_datum_read(ct_datum_reader *rd, const void *val, size_t vlen, const char *what, ct_record *rec,
                        ct_error *err) {
  return datum_read(rd, val, vlen, NULL, what, rec, err);
}

void ct_datum_reader_free(ct_datum_reader *rd) {
  free(rd->fbuf);
  ct_image_free(&rd->img);
  memset(rd, 0, sizeof *rd);
}

static ct_status empty(db_source *x, ct_error *err) {
  return ct_fail(err, CT_EINVAL, "database %s holds no records", ct_db_path(x->db));
}

/* Moves the cursor one record on, wrapping (and learning the count) at the end. */
static ct_status step(db_source *x, ct_error *err) {
  bool valid;
  CT_TRY(ct_db_next(x->db, &valid, err));
  if (valid) {
    x->cur++;
    return CT_OK;
  }
  if (x->base.count < 0) x->base.count = x->cur + 1;
  if (x->base.count != x->cur + 1)
    return ct_fail(err, CT_EPARSE, "database %s is corrupt: it says it holds %lld records but %lld were found",
                   ct_db_path(x->db), (long long)x->base.count, (long long)x->cur + 1);
  CT_TRY(ct_db_first(x->db, &valid, err));
  if (!valid) return empty(x, err);
  x->cur = 0;
  return CT_OK;
}

static ct_status db_seek(ct_source *s, uint64_t pos, ct_error *err) {
  db_source *x = (db_source *)s;
  bool valid;
  x->advance = false;
  uint64_t target = s->count > 0 ? pos % (uint64_t)s->count : pos;
  /* Records come in the same order every epoch: a target at or past the cursor's record is
   * reached by walking on from it (a cluster worker's stride, a resumed cursor ahead of the
   * first batch), one behind it from the first record (fewer steps than around the wrap). */
  if (x->cur < 0 || target < (uint64_t)x->cur) {
    x->cur = -1;
    CT_TRY(ct_db_first(x->db, &valid, err));
    if (!valid) return empty(x, err);
    x->cur = 0;
  }
  uint64_t walked = 0;
  for (;;) {
    target = s->count > 0 ? pos % (uint64_t)s->count : pos;
    if ((uint64_t)x->cur == target) break;
    int64_t before = s->count;
    ct_status st = step(x, err);
    if (st) {
      x->cur = -1; /* the cursor's place is unknown: the next read seeks from the start */
      return st;
    }
    if (before < 0 && s->count > 0) continue; /* learnt the count: recompute the target */
    if (++walked > pos + 1) {
      x->cur = -1;
      return ct_fail(err, CT_EINTERNAL, "seek in %s did not converge", ct_db_path(x->db));
    }
  }
  s->pos = pos;
  return CT_OK;
}

/* The key as printable text (other bytes as '?'), cut at n-1 characters with "..." marking the cut. */
static void key_text(const void *key, size_t klen, char *out, size_t n) {
  size_t m = klen < n - 1 ? klen : n - 4;
  for (size_t i = 0; i < m; i++) {
    char c = ((const char *)key)[i];
    out[i] = c >= 32 && c < 127 ? c : '?';
  }
  if (m < klen) memcpy(out + m, "...", 3), m += 3;
  out[m] = 0;
}

static void name_record(db_source *x, const void *key, size_t klen) {
  char k[204];
  key_text(key, klen, k, sizeof k);
  snprintf(x->what, sizeof x->what, "record \"%s\" (index %lld) of %.180s", k, (long long)x->cur, ct_db_path(x->db));
}

/* Appends to err's message (the size rule, after ct_image_decode_expect's words). */
static void explain_size(const db_source *x, ct_error *err) {
  if (!err) return;
  size_t n = strlen(err->msg);
  snprintf(err->msg + n, sizeof err->msg - n, "; every record must have the size of the first one read, \"%s\"",
           x->first);
}

static ct_status db_next(ct_source *s, ct_record *r, ct_error *err) {
  db_source *x = (db_source *)s;
  if (x->cur < 0)
    CT_TRY(db_seek(s, s->pos, err));
  else if (x->advance)
    CT_TRY(step(x, err));
  x->advance = false;
  const void *key, *val;
  size_t klen, vlen;
  ct_db_current(x->db, &key, &klen, &val, &vlen);
  name_record(x, key, klen);
  ct_status st = datum_read(&x->rd, val, vlen, x->sized ? &x->want : NULL, x->what, r, err);
  if (st == CT_ESHAPE && x->sized) explain_size(x, err);
  if (st) return st;
  if (!x->sized) {
    x->want = (ct_image_expect){.C = r->C, .H = r->H, .W = r->W};
    key_text(key, klen, x->first, sizeof x->first);
    x->sized = true;
  } else if (r->C != x->want.C || r->H != x->want.H || r->W != x->want.W) {
    return ct_fail(err, CT_ESHAPE,
                   "%s is %dx%dx%d (channels x height x width) but %dx%dx%d is expected; every record must have the "
                   "size of the first one read, \"%s\"",
                   x->what, r->C, r->H, r->W, x->want.C, x->want.H, x->want.W, x->first);
  }
  x->advance = true;
  s->pos++;
  return CT_OK;
}

static void db_close(ct_source *s) {
  db_source *x = (db_source *)s;
  ct_db_close(x->db);
  ct_datum_reader_free(&x->rd);
  free(x);
}

static const ct_source_ops db_ops = {db_next, db_seek, db_close};

ct_status ct_source_open_db(const char *path, ct_db_backend backend, ct_image_mode mode, ct_source **out,
                            ct_error *err) {
  *out = NULL;
  db_source *x = calloc(1, sizeof *x);
  if (!x) return ct_fail(err, CT_ENOMEM, "out of memory");
  x->base.ops = &db_ops;
  x->rd.mode = mode;
  x->cur = -1;
  ct_status st = ct_db_open(path, backend, &x->db, err);
  if (st) {
    free(x);
    return st;
  }
  x->base.count = ct_db_count(x->db);
  if (x->base.count == 0) {
    st = empty(x, err);
    db_close(&x->base);
    return st;
  }
  *out = &x->base;
  return CT_OK;
}
