/* HDF5 snapshots in Caffe's layout (h5io.h), over libhdf5's C and high-level (H5LT) APIs. Error
 * stacks are turned off once: failures come back as statuses and are reported here. */
#include "proto/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/h5lock.h"
#include "core/status.h"

#include <hdf5.h>
#include <hdf5_hl.h>

#include "proto/blob.h"

bool ct_h5_is_hdf5(const char *path) {
  ct_h5_lock();
  bool yes = access(path, R_OK) == 0 && H5Fis_hdf5(path) > 0;
  ct_h5_unlock();
  return yes;
}

/* ------------------------------------------------------------------ writing */

/* A file written under a temporary name, renamed over `path` once complete and on disk. */
typedef struct h5out {
  char tmp[4200];
  hid_t f;
} h5out;

static ct_status out_open(h5out *o, const char *path, ct_error *err) {
  static atomic_uint counter;
  snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%d-%u", path, (int)getpid(), atomic_fetch_add(&counter, 1));
  o->f = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (o->f < 0) return ct_fail(err, CT_EIO, "%s: cannot create the HDF5 file (%s)", path, strerror(errno));
  return CT_OK;
}

static ct_status out_close(h5out *o, const char *path, ct_status st, ct_error *err) {
  if (H5Fclose(o->f) < 0 && st == CT_OK) st = ct_fail(err, CT_EIO, "%s: writing the HDF5 file failed", path);
  if (st == CT_OK) {
    int fd = open(o->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) st = ct_fail(err, CT_EIO, "%s: cannot sync: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (st == CT_OK && rename(o->tmp, path) != 0) st = ct_fail(err, CT_EIO, "%s: cannot rename: %s", path, strerror(errno));
  if (st) unlink(o->tmp);
  return st;
}

/* A float dataset of the blob's shape (a 1-element one for a scalar blob). */
static ct_status put_blob(hid_t loc, const char *name, const Caffe__BlobProto *b, const char *path, ct_error *err) {
  int shape[CT_MAX_AXES];
  int n = ct_blob_proto_shape(b, shape);
  if (n < 0) return ct_fail(err, CT_ESHAPE, "%s: blob %s has an invalid shape", path, name);
  hsize_t dims[CT_MAX_AXES];
  size_t count = 1;
  for (int i = 0; i < n; i++) count *= (size_t)(dims[i] = (hsize_t)shape[i]);
  if (count != b->n_data) return ct_fail(err, CT_ESHAPE, "%s: blob %s holds %zu values for its shape's %zu", path, name,
                                         b->n_data, count);
  static const float none = 0;
  if (H5LTmake_dataset_float(loc, name, n, n ? dims : NULL, b->n_data ? b->data : &none) < 0)
    return ct_fail(err, CT_EIO, "%s: cannot write dataset %s", path, name);
  return CT_OK;
}

/* The group for one layer under /data: made with its parents when the name has '/' in it
 * (GoogLeNet's "inception_3a/1x1"; Caffe itself cannot write those), opened when a layer of the
 * same name made it already. */
static hid_t layer_group(hid_t data, const char *name) {
  if (H5Lexists(data, name, H5P_DEFAULT) > 0) return H5Gopen2(data, name, H5P_DEFAULT);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  if (lcpl < 0) return -1;
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t g = H5Gcreate2(data, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  return g;
}

static ct_status h5_write_weights_locked(const char *path, const Caffe__NetParameter *p, ct_error *err) {
  h5out o;
  CT_TRY(out_open(&o, path, err));
  ct_status st = CT_OK;
  hid_t data = H5Gcreate2(o.f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (data < 0) st = ct_fail(err, CT_EIO, "%s: cannot create group /data", path);
  for (size_t i = 0; st == CT_OK && i < p->n_layer; i++) {
    const Caffe__LayerParameter *lp = p->layer[i];
    const char *name = lp->name && lp->name[0] ? lp->name : "(unnamed)";
    hid_t g = layer_group(data, name);
    if (g < 0) {
      st = ct_fail(err, CT_EIO, "%s: cannot create group /data/%s", path, name);
      break;
    }
    for (size_t j = 0; st == CT_OK && j < lp->n_blobs; j++) {
      char ds[32];
      snprintf(ds, sizeof ds, "%zu", j);
      if (H5Lexists(g, ds, H5P_DEFAULT) > 0)
        st = ct_fail(err, CT_EINVAL, "%s: two layers named \"%s\" have weights; an HDF5 snapshot names weights by "
                     "layer, so rename one or use snapshot_format: BINARYPROTO", path, name);
      else
        st = put_blob(g, ds, lp->blobs[j], path, err);
    }
    H5Gclose(g);
  }
  if (data >= 0) H5Gclose(data);
  return out_close(&o, path, st, err);
}

static ct_status h5_write_state_locked(const char *path, const Caffe__SolverState *st_msg, ct_error *err) {
  h5out o;
  CT_TRY(out_open(&o, path, err));
  ct_status st = CT_OK;
  const int iter = st_msg->iter, step = st_msg->current_step;
  if (H5LTmake_dataset_int(o.f, "iter", 0, NULL, &iter) < 0 ||
      H5LTmake_dataset_string(o.f, "learned_net", st_msg->learned_net ? st_msg->learned_net : "") < 0 ||
      H5LTmake_dataset_int(o.f, "current_step", 0, NULL, &step) < 0)
    st = ct_fail(err, CT_EIO, "%s: cannot write iter, learned_net or current_step", path);
  hid_t h = st == CT_OK ? H5Gcreate2(o.f, "history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  if (st == CT_OK && h < 0) st = ct_fail(err, CT_EIO, "%s: cannot create group /history", path);
  for (size_t i = 0; st == CT_OK && i < st_msg->n_history; i++) {
    char ds[32];
    snprintf(ds, sizeof ds, "%zu", i);
    st = put_blob(h, ds, st_msg->history[i], path, err);
  }
  if (h >= 0) H5Gclose(h);
  if (st == CT_OK) { /* cortado's resumption fields, as the bytes of a SolverState holding only them */
    Caffe__SolverState ext = CAFFE__SOLVER_STATE__INIT;
    ext.n_layer_state = st_msg->n_layer_state;
    ext.layer_state = st_msg->layer_state;
    ext.n_loss_history = st_msg->n_loss_history;
    ext.loss_history = st_msg->loss_history;
    ext.has_solver_rng = st_msg->has_solver_rng;
    ext.solver_rng = st_msg->solver_rng;
    size_t n = protobuf_c_message_get_packed_size(&ext.base);
    uint8_t *buf = malloc(n ? n : 1);
    hsize_t dims[1] = {n};
    if (!buf)
      st = ct_fail(err, CT_ENOMEM, "out of memory");
    else if (protobuf_c_message_pack(&ext.base, buf),
             H5LTmake_dataset(o.f, "cortado_state", 1, dims, H5T_NATIVE_UCHAR, buf) < 0)
      st = ct_fail(err, CT_EIO, "%s: cannot write cortado_state", path);
    free(buf);
  }
  return out_close(&o, path, st, err);
}

/* ------------------------------------------------------------------ reading */

/* A float dataset as a BlobProto of its shape. */
static ct_status get_blob(hid_t loc, const char *name, Caffe__BlobProto **out, const char *path, ct_error *err) {
  *out = NULL;
  int rank;
  if (H5LTget_dataset_ndims(loc, name, &rank) < 0 || rank < 0 || rank > CT_MAX_AXES)
    return ct_fail(err, CT_EPARSE, "%s: dataset %s is not an array of at most %d axes", path, name, CT_MAX_AXES);
  hsize_t dims[CT_MAX_AXES] = {0};
  H5T_class_t cls;
  size_t size;
  if (H5LTget_dataset_info(loc, name, dims, &cls, &size) < 0)
    return ct_fail(err, CT_EPARSE, "%s: cannot read dataset %s", path, name);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    return ct_fail(err, CT_EPARSE, "%s: dataset %s holds no numbers", path, name);
  size_t count = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] > 0x7fffffff || (dims[i] && count > ((size_t)1 << 40) / dims[i]))
      return ct_fail(err, CT_ENOMEM, "%s: dataset %s is implausibly large", path, name);
    count *= (size_t)dims[i];
  }
  Caffe__BlobProto *b = malloc(sizeof *b);
  Caffe__BlobShape *s = malloc(sizeof *s);
  if (!b || !s) {
    free(b);
    free(s);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  caffe__blob_proto__init(b);
  caffe__blob_shape__init(s);
  b->shape = s;
  s->dim = calloc((size_t)rank + 1, sizeof *s->dim);
  b->data = malloc((count ? count : 1) * sizeof(float));
  ct_status st = CT_OK;
  if (!s->dim || !b->data) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
  } else {
    for (int i = 0; i < rank; i++) s->dim[i] = (int64_t)dims[i];
    s->n_dim = (size_t)rank;
    b->n_data = count;
    if (count && H5LTread_dataset_float(loc, name, b->data) < 0)
      st = ct_fail(err, CT_EPARSE, "%s: cannot read dataset %s as float", path, name);
  }
  if (st) {
    protobuf_c_message_free_unpacked(&b->base, NULL);
    return st;
  }
  *out = b;
  return CT_OK;
}

static bool is_group(hid_t loc, const char *name) {
  hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
  if (g < 0) return false;
  H5Gclose(g);
  return true;
}

/* The names of loc's links in name order (Caffe's hdf5_get_name_by_idx). */
static ct_status link_names(hid_t loc, char ***out, size_t *n, const char *path, ct_error *err) {
  *out = NULL;
  *n = 0;
  H5G_info_t gi;
  if (H5Gget_info(loc, &gi) < 0) return ct_fail(err, CT_EPARSE, "%s: cannot list a group", path);
  char **v = calloc(gi.nlinks + 1, sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  for (hsize_t i = 0; i < gi.nlinks; i++) {
    ssize_t len = H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    if (len < 0 || !(v[i] = malloc((size_t)len + 1)) ||
        H5Lget_name_by_idx(loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, v[i], (size_t)len + 1, H5P_DEFAULT) < 0) {
      for (hsize_t k = 0; k <= i; k++) free(v[k]);
      free(v);
      return ct_fail(err, len < 0 ? CT_EPARSE : CT_ENOMEM, "%s: cannot read a link's name", path);
    }
  }
  *out = v;
  *n = (size_t)gi.nlinks;
  return CT_OK;
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* One layer per group holding datasets (its blobs "0", "1", ...), found below /data at any
 * depth, named by its path under /data. */
static ct_status read_layers(hid_t g, const char *prefix, Caffe__NetParameter *p, const char *path, int depth,
                             ct_error *err) {
  if (depth > 16) return ct_fail(err, CT_EPARSE, "%s: groups nested too deep under /data", path);
  char **names;
  size_t n;
  CT_TRY(link_names(g, &names, &n, path, err));
  ct_status st = CT_OK;
  Caffe__LayerParameter *lp = NULL;
  long top = -1; /* the largest blob index */
  for (size_t i = 0; i < n; i++) {
    if (is_group(g, names[i])) continue;
    char *end;
    long k = strtol(names[i], &end, 10);
    if (*end || k < 0 || k > 1000) {
      st = ct_fail(err, CT_EPARSE, "%s: /data/%s%s holds dataset \"%s\"; expected datasets 0, 1, ...", path, prefix,
                   names[i], names[i]);
      goto done;
    }
    if (k > top) top = k;
  }
  if (top >= 0 || n == 0) {
    Caffe__LayerParameter **v = realloc(p->layer, (p->n_layer + 1) * sizeof *v);
    lp = malloc(sizeof *lp);
    if (v) p->layer = v;
    if (!v || !lp) {
      free(lp);
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    caffe__layer_parameter__init(lp);
    p->layer[p->n_layer++] = lp;
    size_t plen = strlen(prefix);
    lp->name = strndup(prefix, plen ? plen - 1 : 0); /* without the trailing '/' */
    lp->blobs = calloc((size_t)(top + 2), sizeof *lp->blobs);
    if (!lp->name || !lp->blobs) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    for (long k = 0; k <= top; k++) {
      char ds[32];
      snprintf(ds, sizeof ds, "%ld", k);
      if (H5Lexists(g, ds, H5P_DEFAULT) > 0) {
        if ((st = get_blob(g, ds, &lp->blobs[k], path, err))) goto done;
      } else { /* Caffe leaves out a parameter another layer owns */
        if (!(lp->blobs[k] = malloc(sizeof **lp->blobs))) {
          st = ct_fail(err, CT_ENOMEM, "out of memory");
          goto done;
        }
        caffe__blob_proto__init(lp->blobs[k]);
      }
      lp->n_blobs = (size_t)k + 1;
    }
  }
  for (size_t i = 0; i < n && st == CT_OK; i++) {
    if (!is_group(g, names[i])) continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s%s/", prefix, names[i]);
    hid_t c = H5Gopen2(g, names[i], H5P_DEFAULT);
    st = c < 0 ? ct_fail(err, CT_EPARSE, "%s: cannot open /data/%s", path, sub)
               : read_layers(c, sub, p, path, depth + 1, err);
    if (c >= 0) H5Gclose(c);
  }
done:
  free_names(names, n);
  return st;
}

static ct_status h5_read_weights_locked(const char *path, Caffe__NetParameter **out, ct_error *err) {
  *out = NULL;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return ct_fail(err, CT_EIO, "%s: cannot open as an HDF5 file", path);
  Caffe__NetParameter *p = malloc(sizeof *p);
  ct_status st = CT_OK;
  hid_t data = -1;
  if (!p) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  caffe__net_parameter__init(p);
  if ((data = H5Gopen2(f, "data", H5P_DEFAULT)) < 0) {
    st = ct_fail(err, CT_EPARSE, "%s: no group /data; not a Caffe .caffemodel.h5", path);
    goto done;
  }
  char **names;
  size_t n;
  if ((st = link_names(data, &names, &n, path, err))) goto done;
  for (size_t i = 0; i < n && st == CT_OK; i++) {
    if (!is_group(data, names[i])) {
      st = ct_fail(err, CT_EPARSE, "%s: /data/%s is not a group of blobs", path, names[i]);
      break;
    }
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s/", names[i]);
    hid_t g = H5Gopen2(data, names[i], H5P_DEFAULT);
    st = g < 0 ? ct_fail(err, CT_EPARSE, "%s: cannot open /data/%s", path, names[i])
               : read_layers(g, prefix, p, path, 1, err);
    if (g >= 0) H5Gclose(g);
  }
  free_names(names, n);
done:
  if (data >= 0) H5Gclose(data);
  H5Fclose(f);
  if (st) {
    if (p) protobuf_c_message_free_unpacked(&p->base, NULL);
    return st;
  }
  *out = p;
  return CT_OK;
}

static ct_status get_int(hid_t f, const char *name, int *v, const char *path, ct_error *err) {
  int rank;
  hsize_t dims[1] = {1};
  H5T_class_t cls;
  size_t size;
  if (H5LTget_dataset_ndims(f, name, &rank) < 0 || rank > 1 || H5LTget_dataset_info(f, name, dims, &cls, &size) < 0 ||
      cls != H5T_INTEGER || (rank == 1 && dims[0] != 1) || H5LTread_dataset_int(f, name, v) < 0)
    return ct_fail(err, CT_EPARSE, "%s: /%s is not an integer", path, name);
  return CT_OK;
}

/* A string dataset, fixed-length (Caffe's, H5LT's) or variable-length (h5py's). */
static ct_status get_string(hid_t f, const char *name, char **out, const char *path, ct_error *err) {
  *out = NULL;
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t t = d >= 0 ? H5Dget_type(d) : -1;
  ct_status st = CT_OK;
  if (t < 0 || H5Tget_class(t) != H5T_STRING) {
    st = ct_fail(err, CT_EPARSE, "%s: /%s is not a string", path, name);
  } else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t)); /* h5py writes UTF-8 */
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s) < 0 || !s || !(*out = strdup(s)))
      st = ct_fail(err, CT_EPARSE, "%s: cannot read /%s", path, name);
    if (s) H5free_memory(s);
    H5Tclose(mt);
  } else {
    size_t n = H5Tget_size(t);
    char *s = n < ((size_t)1 << 20) ? calloc(n + 1, 1) : NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, n + 1);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (!s || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0) {
      free(s);
      st = ct_fail(err, CT_EPARSE, "%s: cannot read /%s", path, name);
    } else {
      *out = s;
    }
    H5Tclose(mt);
  }
  if (t >= 0) H5Tclose(t);
  if (d >= 0) H5Dclose(d);
  return st;
}

static ct_status h5_read_state_locked(const char *path, Caffe__SolverState **out, ct_error *err) {
  *out = NULL;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return ct_fail(err, CT_EIO, "%s: cannot open as an HDF5 file", path);
  Caffe__SolverState *s = malloc(sizeof *s);
  ct_status st = CT_OK;
  hid_t h = -1;
  char **names = NULL;
  size_t n = 0;
  if (!s) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  caffe__solver_state__init(s);
  if ((st = get_int(f, "iter", &s->iter, path, err))) goto done;
  s->has_iter = 1;
  if (H5LTfind_dataset(f, "current_step") > 0) {
    if ((st = get_int(f, "current_step", &s->current_step, path, err))) goto done;
    s->has_current_step = 1;
  }
  if (H5LTfind_dataset(f, "learned_net") > 0 && (st = get_string(f, "learned_net", &s->learned_net, path, err)))
    goto done;
  if ((h = H5Gopen2(f, "history", H5P_DEFAULT)) < 0) {
    st = ct_fail(err, CT_EPARSE, "%s: no group /history; not a Caffe .solverstate.h5", path);
    goto done;
  }
  if ((st = link_names(h, &names, &n, path, err))) goto done;
  if (!(s->history = calloc(n + 1, sizeof *s->history))) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++) { /* by number, not the names' order ("10" sorts before "2") */
    char ds[32];
    snprintf(ds, sizeof ds, "%zu", i);
    if (H5Lexists(h, ds, H5P_DEFAULT) <= 0) {
      st = ct_fail(err, CT_EPARSE, "%s: /history has %zu entries but no /history/%zu", path, n, i);
      goto done;
    }
    if ((st = get_blob(h, ds, &s->history[i], path, err))) goto done;
    s->n_history = i + 1;
  }
  if (H5LTfind_dataset(f, "cortado_state") > 0) {
    hsize_t dims[1] = {0};
    H5T_class_t cls;
    size_t size;
    uint8_t *buf = NULL;
    Caffe__SolverState *ext = NULL;
    if (H5LTget_dataset_info(f, "cortado_state", dims, &cls, &size) < 0 || dims[0] > ((hsize_t)1 << 30) ||
        !(buf = malloc(dims[0] ? dims[0] : 1)) ||
        (dims[0] && H5LTread_dataset(f, "cortado_state", H5T_NATIVE_UCHAR, buf) < 0) ||
        !(ext = caffe__solver_state__unpack(NULL, dims[0], buf))) {
      free(buf);
      st = ct_fail(err, CT_EPARSE, "%s: /cortado_state is not cortado's resumption state", path);
      goto done;
    }
    free(buf);
    /* move its fields over */
    s->n_layer_state = ext->n_layer_state, s->layer_state = ext->layer_state;
    s->n_loss_history = ext->n_loss_history, s->loss_history = ext->loss_history;
    s->has_solver_rng = ext->has_solver_rng, s->solver_rng = ext->solver_rng;
    ext->n_layer_state = 0, ext->layer_state = NULL;
    ext->n_loss_history = 0, ext->loss_history = NULL;
    caffe__solver_state__free_unpacked(ext, NULL);
  }
done:
  free_names(names, n);
  if (h >= 0) H5Gclose(h);
  H5Fclose(f);
  if (st) {
    if (s) protobuf_c_message_free_unpacked(&s->base, NULL);
    return st;
  }
  *out = s;
  return CT_OK;
}

/* ------------------------------------------------------------------ the entries, under the lock */

ct_status ct_h5_write_weights(const char *path, const Caffe__NetParameter *p, ct_error *err) {
  ct_h5_lock();
  ct_status st = h5_write_weights_locked(path, p, err);
  ct_h5_unlock();
  return st;
}

ct_status ct_h5_write_state(const char *path, const Caffe__SolverState *st_msg, ct_error *err) {
  ct_h5_lock();
  ct_status st = h5_write_state_locked(path, st_msg, err);
  ct_h5_unlock();
  return st;
}

ct_status ct_h5_read_weights(const char *path, Caffe__NetParameter **out, ct_error *err) {
  ct_h5_lock();
  ct_status st = h5_read_weights_locked(path, out, err);
  ct_h5_unlock();
  return st;
}

ct_status ct_h5_read_state(const char *path, Caffe__SolverState **out, ct_error *err) {
  ct_h5_lock();
  ct_status st = h5_read_state_locked(path, out, err);
  ct_h5_unlock();
  return st;
}
