/* Caffe's HDF5 snapshots (snapshot_format: HDF5), in Caffe's layout, so that Caffe and h5py read
 * what cortado writes and the other way round:
 *
 *   <prefix>_iter_N.caffemodel.h5   /data/<layer name>/<i>  the layer's i-th blob, float32, its
 *                                   shape; a group for every layer (Caffe's Net::ToHDF5)
 *   <prefix>_iter_N.solverstate.h5  /iter, /current_step (int scalars), /learned_net (string),
 *                                   /history/<i> (float32, the i-th history blob: a parameter's
 *                                   in order, Adam's and AdaDelta's second set after the first)
 *
 * What exact resumption needs beyond Caffe's fields (every layer's random stream and data
 * cursor, the smoothed-loss window: SolverState's fields from 1000 up) goes into one more
 * dataset, /cortado_state, the bytes of a SolverState holding only those fields; Caffe ignores
 * it, and a file without it resumes as Caffe's would.
 *
 * Both writers go through a temporary file renamed over the target, so a failure leaves the old
 * file or none. Both readers turn the file into the message the binary formats give
 * (NetParameter with blobs, SolverState), so everything after reading is shared. */
#ifndef CT_PROTO_H5IO_H
#define CT_PROTO_H5IO_H

#include <stdbool.h>

#include "cortado.h"
#include "cortado.pb-c.h"

/* Whether path is an HDF5 file (its signature; false for a missing file). */
bool ct_h5_is_hdf5(const char *path);

/* /data/<layer>/<i> from every layer's blobs. A name given to several layers with blobs is
 * refused (the file names weights by layer). */
ct_status ct_h5_write_weights(const char *path, const Caffe__NetParameter *p, ct_error *err);
/* A NetParameter with one layer per group of /data and its blobs; a blob index missing in a
 * group (Caffe leaves out parameters shared with another layer) is an empty BlobProto. The
 * caller frees *out with protobuf_c_message_free_unpacked. */
ct_status ct_h5_read_weights(const char *path, Caffe__NetParameter **out, ct_error *err);

/* A SolverState as Caffe's .solverstate.h5 plus /cortado_state; history blobs need a shape. */
ct_status ct_h5_write_state(const char *path, const Caffe__SolverState *st, ct_error *err);
ct_status ct_h5_read_state(const char *path, Caffe__SolverState **out, ct_error *err);

#endif
