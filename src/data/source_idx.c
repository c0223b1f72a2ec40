/* IDX files as a source, and the per-epoch permutation shared by the shuffling sources. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "data/idx.h"
#include "data/source.h"

void ct_source_permutation(uint32_t *perm, size_t n, uint64_t seed, uint64_t epoch) {
  ct_rng r;
  ct_rng_seed(&r, ct_rng_derive(seed, epoch));
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)ct_rng_below(&r, i);
    uint32_t t = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = t;
  }
}

typedef struct idx_source {
  ct_source base;
  ct_idx images, labels;
  bool has_labels;
  int C, H, W;
  bool shuffle;
  uint64_t seed, perm_epoch;
  uint32_t *perm;
  char what[128];
  const char *name; /* the images file, for messages */
  char *path;
} idx_source;

static ct_status idx_next(ct_source *s, ct_record *r, ct_error *err) {
  (void)err;
  idx_source *x = (idx_source *)s;
  size_t n = (size_t)s->count;
  uint64_t epoch = s->pos / n;
  size_t i = (size_t)(s->pos % n);
  if (x->shuffle && epoch != x->perm_epoch) {
    ct_source_permutation(x->perm, n, x->seed, epoch);
    x->perm_epoch = epoch;
  }
  size_t rec = x->shuffle ? x->perm[i] : i;
  size_t img = (size_t)x->C * x->H * x->W;
  r->C = x->C;
  r->H = x->H;
  r->W = x->W;
  r->u8 = x->images.data + rec * img;
  r->f32 = NULL;
  r->label = x->has_labels ? (float)x->labels.data[rec] : 0.0f;
  snprintf(x->what, sizeof x->what, "image %zu of %.80s", rec, x->path);
  r->what = x->what;
  s->pos++;
  return CT_OK;
}

static ct_status idx_seek(ct_source *s, uint64_t pos, ct_error *err) {
  (void)err;
  idx_source *x = (idx_source *)s;
  s->pos = pos;
  uint64_t epoch = pos / (uint64_t)s->count;
  if (x->shuffle && epoch != x->perm_epoch) {
    ct_source_permutation(x->perm, (size_t)s->count, x->seed, epoch);
    x->perm_epoch = epoch;
  }
  return CT_OK;
}

static void idx_close(ct_source *s) {
  idx_source *x = (idx_source *)s;
  ct_idx_free(&x->images);
  ct_idx_free(&x->labels);
  free(x->perm);
  free(x->path);
  free(x);
}

static const ct_source_ops idx_ops = {idx_next, idx_seek, idx_close};

ct_status ct_source_open_idx(const char *images, const char *labels, bool shuffle, uint64_t seed, ct_source **out,
                             ct_error *err) {
  *out = NULL;
  idx_source *x = calloc(1, sizeof *x);
  if (!x || !(x->path = strdup(images))) {
    free(x);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  x->base.ops = &idx_ops;
  ct_status st = ct_idx_read(images, &x->images, err);
  if (st) goto fail;
  if (x->images.ndims < 1 || x->images.ndims > 4) {
    st = ct_fail(err, CT_ESHAPE, "%s: IDX images need 1 to 4 dimensions", images);
    goto fail;
  }
  const int *dims = x->images.dims, nd = x->images.ndims;
  x->base.count = dims[0];
  x->C = nd == 4 ? dims[1] : 1;
  x->H = nd >= 3 ? dims[nd - 2] : 1;
  x->W = nd >= 2 ? dims[nd - 1] : 1;
  if (labels) {
    /* the header first: a wrong file fails before its data is read */
    ct_idx h;
    if ((st = ct_idx_read_header(labels, &h, err))) goto fail;
    if (h.ndims != 1) {
      char shape[64] = "";
      for (int i = 0, k = 0; i < h.ndims && k < (int)sizeof shape; i++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%d", i ? "x" : "", h.dims[i]);
      bool same = h.ndims == nd;
      for (int i = 0; same && i < nd; i++) same = h.dims[i] == dims[i];
      st = ct_fail(err, CT_ESHAPE,
                   "%s: an IDX labels file must be 1-D (magic 0x00000801, one byte per image), but this one has "
                   "magic 0x000008%02x: %d dims, %s%s",
                   labels, h.ndims, h.ndims, shape, same ? ", the shape of the images file" : "");
      goto fail;
    }
    if ((int64_t)h.dims[0] != x->base.count) {
      st = ct_fail(err, CT_ESHAPE, "%s holds %d labels for the %lld images of %s; it needs one label per image", labels,
                   h.dims[0], (long long)x->base.count, images);
      goto fail;
    }
    if ((st = ct_idx_read(labels, &x->labels, err))) goto fail;
    if (x->labels.ndims != 1 || (int64_t)x->labels.count != x->base.count) { /* changed since the header read */
      st = ct_fail(err, CT_ESHAPE, "%s changed while it was read", labels);
      goto fail;
    }
    x->has_labels = true;
  }
  x->shuffle = shuffle;
  x->seed = seed;
  if (shuffle) {
    x->perm = malloc((size_t)x->base.count * sizeof *x->perm);
    if (!x->perm) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto fail;
    }
    ct_source_permutation(x->perm, (size_t)x->base.count, seed, 0);
  }
  *out = &x->base;
  return CT_OK;
fail:
  idx_close(&x->base);
  return st;
}
