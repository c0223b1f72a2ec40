/* HDF5 file access for the layers that read and write Caffe's HDF5 files (HDF5Data, HDF5Output),
 * over Debian's serial libhdf5. That library is not thread-safe: every call into it here runs
 * under the process-wide lock of core/h5lock.h. libhdf5's own printing of error stacks is turned off; failures
 * come back as cortado errors naming the file and the dataset. */
#ifndef CT_DATA_HDF5_H
#define CT_DATA_HDF5_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tensor.h"
#include "cortado.h"

/* The shape of dataset `name` in file `path`: *naxes axes (1 to CT_MAX_AXES) into shape. Fails
 * on a missing file or dataset, a dataset that is not of numbers (integer or float), or a shape
 * that does not fit (a dimension past INT_MAX). */
ct_status ct_h5_dataset_shape(const char *path, const char *name, int *naxes, int shape[CT_MAX_AXES], ct_error *err);

/* Reads the whole of dataset `name` as floats (converted from any integer or float type) into
 * *out (count floats, allocated here, the caller frees), with its shape. */
ct_status ct_h5_read_floats(const char *path, const char *name, int *naxes, int shape[CT_MAX_AXES], float **out,
                            ct_error *err);

/* An HDF5 file being written: float datasets that grow along their first axis. */
typedef struct ct_h5_writer ct_h5_writer;
/* Creates (truncating) `path`. */
ct_status ct_h5_writer_create(const char *path, ct_h5_writer **out, ct_error *err);
/* Appends rows to dataset `name` (created on first use with the rows' trailing shape
 * shape[1..naxes); later rows must have the same trailing shape): shape[0] rows of floats from
 * data, then flushes the file so that it is complete on disk after every call. */
ct_status ct_h5_writer_append(ct_h5_writer *w, const char *name, int naxes, const int *shape, const float *data,
                              ct_error *err);
void ct_h5_writer_free(ct_h5_writer *w);

#endif
