/* HDF5Output (Caffe's "HDF5Output"): writes its two bottoms, data and label, to the HDF5 file
 * hdf5_output_param.file_name as datasets "data" and "label" (Caffe's names), created when the
 * layer is set up (an existing file is replaced, as in Caffe). Each forward appends its batch to
 * both datasets and flushes the file, so the file is complete after every pass. (Caffe writes
 * its datasets at the first forward and fails at the second, where they already exist; one
 * forward gives the same file in both.) It has no tops and passes no gradient. */
#include <stdlib.h>

#include "data/hdf5.h"
#include "layers/layer.h"

static ct_status h5o_setup(ct_layer *l, ct_error *err) {
  const Caffe__HDF5OutputParameter *hp = l->lp->hdf5_output_param;
  if (!hp || !hp->file_name || !hp->file_name[0])
    return ct_layer_fail(l, err, CT_EINVAL, "needs hdf5_output_param { file_name: \"<file.h5>\" }");
  ct_h5_writer *w = NULL;
  if (ct_h5_writer_create(hp->file_name, &w, err)) return ct_error_prefix(err, "layer \"%s\" (HDF5Output)", l->name);
  l->priv = w;
  return CT_OK;
}

static ct_status h5o_reshape(ct_layer *l, ct_error *err) {
  const ct_tensor *x = l->bottom[0], *y = l->bottom[1];
  char b0[128], b1[128];
  if (x->naxes < 1 || y->naxes < 1 || x->shape[0] != y->shape[0])
    return ct_layer_fail(l, err, CT_ESHAPE, "data and label must have the same first axis, got %s and %s",
                         ct_tensor_shape_str(x, b0, sizeof b0), ct_tensor_shape_str(y, b1, sizeof b1));
  return CT_OK;
}

static ct_status h5o_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  static const char *const names[2] = {"data", "label"};
  for (int i = 0; i < 2; i++) {
    const float *v;
    CT_TRY(ct_read(l, p, l->bottom[i], &v, err));
    if (ct_h5_writer_append(l->priv, names[i], l->bottom[i]->naxes, l->bottom[i]->shape, v, err))
      return ct_error_prefix(err, "layer \"%s\" (HDF5Output)", l->name);
  }
  return CT_OK;
}

static void h5o_destroy(ct_layer *l) {
  ct_h5_writer_free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_HDF5Output = {.type = "HDF5Output",
                                          .min_bottom = 2,
                                          .max_bottom = 2,
                                          .min_top = 0,
                                          .max_top = 0,
                                          .splits = NULL,
                                          .host = true,
                                          .kind = CT_WORK_MEMORY,
                                          .setup = h5o_setup,
                                          .reshape = h5o_reshape,
                                          .forward = h5o_forward,
                                          .destroy = h5o_destroy};
