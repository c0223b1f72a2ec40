/* BlobProto <-> tensor helpers (Caffe's blob shapes, the shape check on load) and a deep copy of
 * any protobuf-c message. */
#ifndef CT_PROTO_BLOB_H
#define CT_PROTO_BLOB_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "core/tensor.h"
#include "cortado.pb-c.h"

/* A deep copy of any message through its wire form; NULL when out of memory. */
ProtobufCMessage *ct_proto_copy(const ProtobufCMessage *m);

/* Writes t's shape and values (and its gradient when with_diff) into a new BlobProto the
 * caller frees with protobuf_c_message_free_unpacked. */
ct_status ct_blob_to_proto(const ct_tensor *t, bool with_diff, Caffe__BlobProto **out, ct_error *err);
/* Reads the shape of a BlobProto (shape or legacy num/channels/height/width); returns naxes,
 * or -1 when it has more than CT_MAX_AXES axes or a dimension out of range. */
int ct_blob_proto_shape(const Caffe__BlobProto *b, int shape[CT_MAX_AXES]);
/* Caffe's shape comparison: a legacy 4-D blob matches a shape of up to 4 axes padded with 1s
 * on the left. */
bool ct_blob_proto_matches(const Caffe__BlobProto *b, const ct_tensor *t);

#endif
