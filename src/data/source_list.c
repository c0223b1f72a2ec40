/* An image list ("<path> <label>" lines) as a source: files are read and decoded as they are
 * served (the prefetch thread overlaps that with compute).
 *
 * Without new_height / new_width, the first image served fixes the size of every later one (the
 * layer's blob, and the transform's crops, need one size): each file is decoded with that size
 * expected, so a header declaring another size is refused, naming the file, its place in the
 * list and both sizes, before its pixels are allocated. With them, any size is resized (up to
 * ct_image_decode's cap on one image). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/source.h"
#include "proto/prototxt.h"

typedef struct list_source {
  ct_source base;
  ct_image_list list;
  char *root;
  int new_h, new_w;
  ct_image_mode mode;
  bool shuffle;
  uint64_t seed, perm_epoch;
  uint32_t *perm;
  ct_image img, resized;
  char *full; /* root + path */
  size_t full_cap;
  uint8_t *bytes; /* the file being decoded; grows only */
  size_t bytes_cap;
  char *list_path;
  bool sized; /* `want` holds the size of the first image served (no resize only) */
  ct_image_expect want;
  char first[256]; /* that image's path, for messages */
} list_source;

static ct_status list_seek(ct_source *s, uint64_t pos, ct_error *err) {
  (void)err;
  list_source *x = (list_source *)s;
  s->pos = pos;
  uint64_t epoch = pos / (uint64_t)s->count;
  if (x->shuffle && epoch != x->perm_epoch) {
    ct_source_permutation(x->perm, (size_t)s->count, x->seed, epoch);
    x->perm_epoch = epoch;
  }
  return CT_OK;
}

static ct_status list_next(ct_source *s, ct_record *r, ct_error *err) {
  list_source *x = (list_source *)s;
  CT_TRY(list_seek(s, s->pos, err));
  size_t i = (size_t)(s->pos % (uint64_t)s->count);
  size_t rec = x->shuffle ? x->perm[i] : i;
  size_t need = strlen(x->root) + strlen(x->list.paths[rec]) + 1;
  if (need > x->full_cap) {
    char *p = realloc(x->full, need);
    if (!p) return ct_fail(err, CT_ENOMEM, "out of memory");
    x->full = p;
    x->full_cap = need;
  }
  snprintf(x->full, need, "%s%s", x->root, x->list.paths[rec]);
  size_t len = 0;
  CT_TRY(ct_image_file_bytes(x->full, &x->bytes, &x->bytes_cap, &len, err));
  ct_status st = ct_image_decode_expect(x->bytes, len, x->mode, x->sized ? &x->want : NULL, &x->img, x->full, err);
  if (st == CT_ESHAPE && x->sized && err) {
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n,
             " (image %zu of %s); every image must have the size of the first one read, %s, unless "
             "image_data_param sets new_height and new_width",
             rec + 1, x->list_path, x->first);
  }
  if (st) return st;
  if (!x->sized && x->new_h <= 0) {
    x->want = (ct_image_expect){.C = x->img.C, .H = x->img.H, .W = x->img.W};
    snprintf(x->first, sizeof x->first, "%s", x->list.paths[rec]);
    x->sized = true;
  }
  const ct_image *im = &x->img;
  if (x->new_h > 0) {
    CT_TRY(ct_image_resize(&x->img, x->new_h, x->new_w, &x->resized, err));
    im = &x->resized;
  }
  r->C = im->C;
  r->H = im->H;
  r->W = im->W;
  r->u8 = im->data;
  r->f32 = NULL;
  r->label = (float)x->list.labels[rec];
  r->what = x->full;
  s->pos++;
  return CT_OK;
}

static void list_close(ct_source *s) {
  list_source *x = (list_source *)s;
  ct_image_list_free(&x->list);
  free(x->root);
  free(x->perm);
  free(x->full);
  free(x->bytes);
  free(x->list_path);
  ct_image_free(&x->img);
  ct_image_free(&x->resized);
  free(x);
}

static const ct_source_ops list_ops = {list_next, list_seek, list_close};

void ct_image_list_free(ct_image_list *l) {
  free(l->text);
  free(l->paths);
  free(l->labels);
  memset(l, 0, sizeof *l);
}

ct_status ct_image_list_read(const char *path, ct_image_list *out, ct_error *err) {
  memset(out, 0, sizeof *out);
  size_t len = 0;
  ct_status st = ct_read_file(path, (size_t)1 << 31, &out->text, &len, err);
  if (st) return ct_error_prefix(err, "image list");
  size_t lines = 1;
  for (size_t i = 0; i < len; i++) lines += out->text[i] == '\n';
  out->paths = calloc(lines, sizeof *out->paths);
  out->labels = calloc(lines, sizeof *out->labels);
  if (!out->paths || !out->labels) {
    ct_image_list_free(out);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  int lineno = 0;
  for (char *line = out->text; line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    lineno++;
    size_t l = strlen(line);
    while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
    if (l > 0) {
      char *sp = strrchr(line, ' ');
      char *end = NULL;
      long label = 0;
      if (sp) {
        errno = 0;
        label = strtol(sp + 1, &end, 10);
      }
      if (!sp || sp == line || !end || *end || end == sp + 1 || errno || label < INT32_MIN || label > INT32_MAX) {
        st = ct_fail(err, CT_EPARSE, "%s:%d: expected \"<image path> <integer label>\", got \"%.200s\"", path,
                     lineno, line);
        ct_image_list_free(out);
        return st;
      }
      *sp = 0;
      out->paths[out->n] = line;
      out->labels[out->n] = (int)label;
      out->n++;
    }
    line = nl ? nl + 1 : NULL;
  }
  if (out->n == 0) {
    ct_image_list_free(out);
    return ct_fail(err, CT_EINVAL, "image list %s holds no images", path);
  }
  return CT_OK;
}

ct_status ct_source_open_list(const char *list, const char *root, int new_h, int new_w, bool color, bool shuffle,
                              uint64_t seed, ct_source **out, ct_error *err) {
  *out = NULL;
  if ((new_h > 0) != (new_w > 0))
    return ct_fail(err, CT_EINVAL, "new_height and new_width must be set together (got %d and %d)", new_h, new_w);
  list_source *x = calloc(1, sizeof *x);
  if (!x || !(x->root = strdup(root ? root : "")) || !(x->list_path = strdup(list))) {
    if (x) free(x->root);
    free(x);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  x->base.ops = &list_ops;
  x->new_h = new_h;
  x->new_w = new_w;
  x->mode = color ? CT_IMAGE_COLOR : CT_IMAGE_GRAY;
  x->shuffle = shuffle;
  x->seed = seed;
  ct_status st = ct_image_list_read(list, &x->list, err);
  if (st) goto fail;
  x->base.count = x->list.n;
  if (shuffle) {
    x->perm = malloc((size_t)x->list.n * sizeof *x->perm);
    if (!x->perm) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto fail;
    }
    ct_source_permutation(x->perm, (size_t)x->list.n, seed, 0);
  }
  *out = &x->base;
  return CT_OK;
fail:
  list_close(&x->base);
  return st;
}
