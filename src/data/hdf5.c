/* HDF5 datasets as float arrays (data/hdf5.h). */
#include "data/hdf5.h"

#include <hdf5.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/h5lock.h"
#include "core/status.h"

/* The open dataset `name` of the open file, its space and its shape; closes what it opened on
 * failure. */
static ct_status open_dataset(const char *path, const char *name, hid_t *file, hid_t *dset, int *naxes,
                              int shape[CT_MAX_AXES], ct_error *err) {
  *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (*file < 0) return ct_fail(err, CT_EIO, "%s: cannot open as an HDF5 file", path);
  *dset = H5Dopen2(*file, name, H5P_DEFAULT);
  if (*dset < 0) {
    H5Fclose(*file);
    return ct_fail(err, CT_EINVAL, "%s: has no dataset \"%s\"", path, name);
  }
  ct_status st = CT_OK;
  hid_t type = H5Dget_type(*dset), space = H5Dget_space(*dset);
  const H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  const int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    st = ct_fail(err, CT_EINVAL, "%s: dataset \"%s\" does not hold numbers (HDF5 type class %d)", path, name,
                 (int)cls);
  } else if (nd < 1 || nd > CT_MAX_AXES) {
    st = ct_fail(err, CT_ESHAPE, "%s: dataset \"%s\" has %d axes; 1 to %d are supported", path, name, nd,
                 CT_MAX_AXES);
  } else {
    hsize_t dims[CT_MAX_AXES];
    H5Sget_simple_extent_dims(space, dims, NULL);
    *naxes = nd;
    for (int i = 0; i < nd && !st; i++) {
      if (dims[i] > INT_MAX)
        st = ct_fail(err, CT_ESHAPE, "%s: dataset \"%s\" axis %d is %llu long, too long", path, name, i,
                     (unsigned long long)dims[i]);
      else
        shape[i] = (int)dims[i];
    }
  }
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (st) {
    H5Dclose(*dset);
    H5Fclose(*file);
  }
  return st;
}

ct_status ct_h5_dataset_shape(const char *path, const char *name, int *naxes, int shape[CT_MAX_AXES], ct_error *err) {
  ct_h5_lock();
  hid_t file, dset;
  ct_status st = open_dataset(path, name, &file, &dset, naxes, shape, err);
  if (!st) {
    H5Dclose(dset);
    H5Fclose(file);
  }
  ct_h5_unlock();
  return st;
}

ct_status ct_h5_read_floats(const char *path, const char *name, int *naxes, int shape[CT_MAX_AXES], float **out,
                            ct_error *err) {
  *out = NULL;
  ct_h5_lock();
  hid_t file, dset;
  ct_status st = open_dataset(path, name, &file, &dset, naxes, shape, err);
  if (st) {
    ct_h5_unlock();
    return st;
  }
  size_t count = 1;
  for (int i = 0; i < *naxes; i++) count *= (size_t)shape[i];
  float *buf = malloc((count ? count : 1) * sizeof *buf);
  if (!buf) {
    st = ct_fail(err, CT_ENOMEM, "%s: out of memory for dataset \"%s\" (%zu values)", path, name, count);
  } else if (count && H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    st = ct_fail(err, CT_EIO, "%s: cannot read dataset \"%s\" as floats", path, name);
  }
  H5Dclose(dset);
  H5Fclose(file);
  ct_h5_unlock();
  if (st) {
    free(buf);
    return st;
  }
  *out = buf;
  return CT_OK;
}

/* ---------------------------------------------------------------- writing */

typedef struct h5_out {
  char *name;
  hid_t dset;
  int naxes;
  hsize_t dims[CT_MAX_AXES];
} h5_out;

struct ct_h5_writer {
  char *path;
  hid_t file;
  h5_out *sets;
  int nsets;
};

ct_status ct_h5_writer_create(const char *path, ct_h5_writer **out, ct_error *err) {
  *out = NULL;
  ct_h5_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  ct_h5_lock();
  w->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ct_h5_unlock();
  if (w->file < 0) {
    free(w->path);
    free(w);
    return ct_fail(err, CT_EIO, "%s: cannot create an HDF5 file there", path);
  }
  *out = w;
  return CT_OK;
}

/* Dataset `name`, created with chunks of `rows` rows and an unlimited first axis. */
static ct_status dataset_for(ct_h5_writer *w, const char *name, int naxes, const int *shape, h5_out **out,
                             ct_error *err) {
  for (int i = 0; i < w->nsets; i++) {
    h5_out *s = &w->sets[i];
    if (strcmp(s->name, name)) continue;
    bool same = s->naxes == naxes;
    for (int k = 1; same && k < naxes; k++) same = s->dims[k] == (hsize_t)shape[k];
    if (!same) return ct_fail(err, CT_ESHAPE, "%s: rows for dataset \"%s\" changed shape", w->path, name);
    *out = s;
    return CT_OK;
  }
  h5_out *grown = realloc(w->sets, (size_t)(w->nsets + 1) * sizeof *w->sets);
  if (!grown) return ct_fail(err, CT_ENOMEM, "out of memory");
  w->sets = grown;
  h5_out *s = &w->sets[w->nsets];
  memset(s, 0, sizeof *s);
  hsize_t maxd[CT_MAX_AXES], chunk[CT_MAX_AXES];
  s->naxes = naxes;
  for (int k = 0; k < naxes; k++) {
    s->dims[k] = k ? (hsize_t)shape[k] : 0;
    maxd[k] = k ? (hsize_t)shape[k] : H5S_UNLIMITED;
    chunk[k] = k ? (hsize_t)(shape[k] ? shape[k] : 1) : (hsize_t)(shape[0] ? shape[0] : 1);
  }
  hid_t space = H5Screate_simple(naxes, s->dims, maxd), plist = H5Pcreate(H5P_DATASET_CREATE);
  hid_t dset = -1;
  if (space >= 0 && plist >= 0 && H5Pset_chunk(plist, naxes, chunk) >= 0)
    dset = H5Dcreate2(w->file, name, H5T_NATIVE_FLOAT, space, H5P_DEFAULT, plist, H5P_DEFAULT);
  if (space >= 0) H5Sclose(space);
  if (plist >= 0) H5Pclose(plist);
  if (dset < 0) return ct_fail(err, CT_EIO, "%s: cannot create dataset \"%s\"", w->path, name);
  if (!(s->name = strdup(name))) {
    H5Dclose(dset);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  s->dset = dset;
  w->nsets++;
  *out = s;
  return CT_OK;
}

ct_status ct_h5_writer_append(ct_h5_writer *w, const char *name, int naxes, const int *shape, const float *data,
                              ct_error *err) {
  if (naxes < 1 || naxes > CT_MAX_AXES)
    return ct_fail(err, CT_ESHAPE, "%s: dataset \"%s\": rows need 1 to %d axes, got %d", w->path, name, CT_MAX_AXES,
                   naxes);
  ct_h5_lock();
  h5_out *s = NULL;
  ct_status st = dataset_for(w, name, naxes, shape, &s, err);
  if (!st && shape[0] > 0) {
    hsize_t start[CT_MAX_AXES] = {0}, count[CT_MAX_AXES];
    start[0] = s->dims[0];
    for (int k = 0; k < naxes; k++) count[k] = (hsize_t)shape[k];
    hsize_t grown[CT_MAX_AXES];
    memcpy(grown, s->dims, sizeof grown);
    grown[0] += (hsize_t)shape[0];
    hid_t fspace = -1, mspace = -1;
    bool ok = H5Dset_extent(s->dset, grown) >= 0 && (fspace = H5Dget_space(s->dset)) >= 0 &&
              H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
              (mspace = H5Screate_simple(naxes, count, NULL)) >= 0 &&
              H5Dwrite(s->dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, data) >= 0 &&
              H5Fflush(w->file, H5F_SCOPE_LOCAL) >= 0;
    if (fspace >= 0) H5Sclose(fspace);
    if (mspace >= 0) H5Sclose(mspace);
    if (ok)
      s->dims[0] = grown[0];
    else
      st = ct_fail(err, CT_EIO, "%s: cannot write %d rows to dataset \"%s\"", w->path, shape[0], name);
  }
  ct_h5_unlock();
  return st;
}

void ct_h5_writer_free(ct_h5_writer *w) {
  if (!w) return;
  ct_h5_lock();
  for (int i = 0; i < w->nsets; i++) {
    H5Dclose(w->sets[i].dset);
    free(w->sets[i].name);
  }
  if (w->file >= 0) H5Fclose(w->file);
  ct_h5_unlock();
  free(w->sets);
  free(w->path);
  free(w);
}
