/* HDF5Data (Caffe's "HDF5Data"): mini-batches of rows from HDF5 files. hdf5_data_param.source is
 * a text file listing .h5 files (whitespace-separated, as Caffe reads it); each top names a
 * dataset present in every file, and top j is batch_size x (that dataset's shape after its first
 * axis). All of a file's datasets have the same number of rows. Rows are served in file order and
 * row order, wrapping after the last file; with shuffle, the files of each pass and the rows of
 * each file come in a fresh order. No transform applies (as in Caffe).
 *
 * A listed path is used as given when it exists (Caffe reads it from the working directory),
 * else relative to the list file's directory. Every file's datasets are checked at setup (same
 * rows within a file, same row shape across files); one file's data at a time is held in
 * memory, as in Caffe.
 *
 * Exact resumption: the cursor is the number of rows served since the start. The order of pass
 * p (its files and each file's rows) is a function of the layer's seed and p alone (drawn once
 * from the layer's stream at setup), so a cursor locates the next row by arithmetic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "data/hdf5.h"
#include "data/source.h"
#include "layers/data_layer.h"
#include "layers/layer.h"

typedef struct h5file {
  char *path;
  int rows;
} h5file;

typedef struct hdf5_data {
  int batch;
  bool shuffle;
  uint64_t seed;
  h5file *files;
  int nfiles;
  uint64_t total;   /* rows in one pass */
  int naxes[16];    /* per top: the datasets' axes */
  int shape[16][CT_MAX_AXES];
  size_t row[16];   /* floats per row, per top */
  /* the file in memory */
  int loaded;       /* index into files, -1: none */
  float *data[16];  /* per top: rows x row floats */
  /* the orders in use */
  uint64_t order_pass;  /* pass the file order was drawn for (UINT64_MAX: none) */
  uint32_t *fperm;      /* nfiles */
  uint64_t rperm_key;   /* (pass, position) the row order was drawn for */
  bool rperm_valid;
  uint32_t *rperm;      /* rows of the largest file */
  uint64_t cursor;
} hdf5_data;

/* The list file's entries, resolved (see above). */
static ct_status read_list(ct_layer *l, hdf5_data *h, const char *list, ct_error *err) {
  FILE *f = fopen(list, "r");
  if (!f) return ct_layer_fail(l, err, CT_EIO, "cannot open the source list %s", list);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", list);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[1] = 0;
  else
    dir[0] = 0;
  char tok[4096];
  int cap = 0;
  ct_status st = CT_OK;
  while (fscanf(f, "%4095s", tok) == 1) {
    if (h->nfiles == cap) {
      cap = cap ? cap * 2 : 8;
      h5file *g = realloc(h->files, (size_t)cap * sizeof *g);
      if (!g) {
        st = ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
        break;
      }
      h->files = g;
    }
    char path[8192];
    if (tok[0] == '/' || access(tok, F_OK) == 0 || !dir[0])
      snprintf(path, sizeof path, "%s", tok);
    else
      snprintf(path, sizeof path, "%s%s", dir, tok);
    if (!(h->files[h->nfiles].path = strdup(path))) {
      st = ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
      break;
    }
    h->files[h->nfiles++].rows = 0;
  }
  fclose(f);
  if (!st && h->nfiles == 0) st = ct_layer_fail(l, err, CT_EINVAL, "the source list %s names no files", list);
  return st;
}

/* Every file's datasets: the rows (the same for all tops of a file) and the row shape (the same
 * across files). */
static ct_status check_files(ct_layer *l, hdf5_data *h, ct_error *err) {
  for (int f = 0; f < h->nfiles; f++)
    for (int j = 0; j < l->ntop; j++) {
      const char *name = l->lp->top[j];
      int na, shape[CT_MAX_AXES];
      if (ct_h5_dataset_shape(h->files[f].path, name, &na, shape, err))
        return ct_error_prefix(err, "layer \"%s\" (HDF5Data)", l->name);
      if (j == 0) {
        if (shape[0] == 0) return ct_layer_fail(l, err, CT_EINVAL, "%s: dataset \"%s\" has no rows", h->files[f].path, name);
        h->files[f].rows = shape[0];
      } else if (shape[0] != h->files[f].rows) {
        return ct_layer_fail(l, err, CT_ESHAPE, "%s: dataset \"%s\" has %d rows but \"%s\" has %d; all must agree",
                             h->files[f].path, name, shape[0], l->lp->top[0], h->files[f].rows);
      }
      bool same = f == 0 || na == h->naxes[j];
      for (int k = 1; same && f > 0 && k < na; k++) same = shape[k] == h->shape[j][k];
      if (!same)
        return ct_layer_fail(l, err, CT_ESHAPE, "%s: dataset \"%s\" has rows of another shape than in %s",
                             h->files[f].path, name, h->files[0].path);
      if (f == 0) {
        h->naxes[j] = na;
        memcpy(h->shape[j], shape, sizeof shape);
        h->row[j] = 1;
        for (int k = 1; k < na; k++) h->row[j] *= (size_t)shape[k];
      }
    }
  h->total = 0;
  for (int f = 0; f < h->nfiles; f++) h->total += (uint64_t)h->files[f].rows;
  return CT_OK;
}

static ct_status h5d_setup(ct_layer *l, ct_error *err) {
  const Caffe__HDF5DataParameter *hp = l->lp->hdf5_data_param;
  if (!hp || !hp->source || !hp->source[0])
    return ct_layer_fail(l, err, CT_EINVAL, "needs hdf5_data_param { source: \"<list of .h5 files>\" batch_size: N }");
  if (!hp->has_batch_size || hp->batch_size == 0 || hp->batch_size > (1u << 24))
    return ct_layer_fail(l, err, CT_EINVAL, "batch_size must be given and positive");
  if (l->ntop > 16) return ct_layer_fail(l, err, CT_EUNSUPPORTED, "at most 16 tops (datasets), got %d", l->ntop);
  hdf5_data *h = calloc(1, sizeof *h);
  if (!h) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = h;
  h->batch = (int)hp->batch_size;
  h->shuffle = hp->shuffle;
  h->seed = h->shuffle ? ct_rng_next(&l->rng) : 0;
  h->loaded = -1;
  h->order_pass = UINT64_MAX;
  char list[4096];
  ct_data_layer_resolve(l, hp->source, list, sizeof list);
  CT_TRY(read_list(l, h, list, err));
  CT_TRY(check_files(l, h, err));
  int maxrows = 0;
  for (int f = 0; f < h->nfiles; f++)
    if (h->files[f].rows > maxrows) maxrows = h->files[f].rows;
  h->fperm = malloc((size_t)h->nfiles * sizeof *h->fperm);
  h->rperm = malloc((size_t)maxrows * sizeof *h->rperm);
  if (!h->fperm || !h->rperm) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status h5d_reshape(ct_layer *l, ct_error *err) {
  hdf5_data *h = l->priv;
  for (int j = 0; j < l->ntop; j++) {
    int shape[CT_MAX_AXES];
    memcpy(shape, h->shape[j], sizeof shape);
    shape[0] = h->batch;
    CT_TRY(ct_tensor_reshape(l->top[j], h->naxes[j], shape, err));
  }
  return CT_OK;
}

/* Makes file f the one in memory. */
static ct_status load(ct_layer *l, hdf5_data *h, int f, ct_error *err) {
  if (h->loaded == f) return CT_OK;
  for (int j = 0; j < l->ntop; j++) {
    free(h->data[j]);
    h->data[j] = NULL;
  }
  h->loaded = -1;
  for (int j = 0; j < l->ntop; j++) {
    int na, shape[CT_MAX_AXES];
    if (ct_h5_read_floats(h->files[f].path, l->lp->top[j], &na, shape, &h->data[j], err))
      return ct_error_prefix(err, "layer \"%s\" (HDF5Data)", l->name);
    /* the file may have changed since setup */
    bool same = na == h->naxes[j] && shape[0] == h->files[f].rows;
    for (int k = 1; same && k < na; k++) same = shape[k] == h->shape[j][k];
    if (!same)
      return ct_layer_fail(l, err, CT_ESHAPE, "%s: dataset \"%s\" changed shape since the layer was set up",
                           h->files[f].path, l->lp->top[j]);
  }
  h->loaded = f;
  return CT_OK;
}

/* The file and row that stream position c reads. */
static void locate(hdf5_data *h, uint64_t c, int *file, int *row) {
  const uint64_t pass = c / h->total;
  uint64_t rem = c % h->total;
  if (h->shuffle && h->order_pass != pass) {
    ct_source_permutation(h->fperm, (size_t)h->nfiles, h->seed, 2 * pass);
    h->order_pass = pass;
  }
  int pos = 0, f = 0;
  for (;; pos++) {
    f = h->shuffle ? (int)h->fperm[pos] : pos;
    if (rem < (uint64_t)h->files[f].rows) break;
    rem -= (uint64_t)h->files[f].rows;
  }
  *file = f;
  if (!h->shuffle) {
    *row = (int)rem;
    return;
  }
  /* the rows of the file at position pos of pass p: their own order */
  const uint64_t key = 2 * (pass * (uint64_t)h->nfiles + (uint64_t)pos) + 1;
  if (!h->rperm_valid || h->rperm_key != key) {
    ct_source_permutation(h->rperm, (size_t)h->files[f].rows, h->seed, key);
    h->rperm_key = key;
    h->rperm_valid = true;
  }
  *row = (int)h->rperm[rem];
}

static ct_status h5d_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  hdf5_data *h = l->priv;
  float *y[16];
  for (int j = 0; j < l->ntop; j++) CT_TRY(ct_write(l, p, l->top[j], &y[j], err));
  for (int i = 0; i < h->batch; i++) {
    int f, r;
    locate(h, h->cursor + (uint64_t)i, &f, &r);
    CT_TRY(load(l, h, f, err));
    for (int j = 0; j < l->ntop; j++)
      memcpy(y[j] + (size_t)i * h->row[j], h->data[j] + (size_t)r * h->row[j], h->row[j] * sizeof(float));
  }
  h->cursor += (uint64_t)h->batch;
  return CT_OK;
}

static uint64_t h5d_get_cursor(const ct_layer *l) { return ((const hdf5_data *)l->priv)->cursor; }
static void h5d_set_cursor(ct_layer *l, uint64_t c) { ((hdf5_data *)l->priv)->cursor = c; }

static void h5d_destroy(ct_layer *l) {
  hdf5_data *h = l->priv;
  if (!h) return;
  for (int f = 0; f < h->nfiles; f++) free(h->files[f].path);
  free(h->files);
  for (int j = 0; j < 16; j++) free(h->data[j]);
  free(h->fperm);
  free(h->rperm);
  free(h);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_HDF5Data = {.type = "HDF5Data",
                                        .min_bottom = 0,
                                        .max_bottom = 0,
                                        .min_top = 1,
                                        .max_top = 16,
                                        .splits = NULL,
                                        .host = true,
                                        .kind = CT_WORK_MEMORY,
                                        .setup = h5d_setup,
                                        .reshape = h5d_reshape,
                                        .forward = h5d_forward,
                                        .destroy = h5d_destroy,
                                        .get_cursor = h5d_get_cursor,
                                        .set_cursor = h5d_set_cursor};
