/* BlobProto <-> tensor: Caffe's blob shapes (legacy num/channels/height/width or BlobShape),
 * the shape check on load, and a deep copy of any message. */
#include "proto/blob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

ProtobufCMessage *ct_proto_copy(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return NULL;
  protobuf_c_message_pack(m, buf);
  ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
  free(buf);
  return c;
}

/* Caffe's rule (Blob::ShapeEquals, FromProto): legacy num/channels/height/width, when any is
 * set, decide the shape even next to a `shape` field (a legacy shape that does not match is
 * refused, as Caffe refuses it). */
static bool legacy_shape(const Caffe__BlobProto *b) {
  return b->has_num || b->has_channels || b->has_height || b->has_width || !b->shape;
}

int ct_blob_proto_shape(const Caffe__BlobProto *b, int shape[CT_MAX_AXES]) {
  if (!legacy_shape(b)) {
    if (b->shape->n_dim > CT_MAX_AXES) return -1;
    for (size_t k = 0; k < b->shape->n_dim; k++) {
      if (b->shape->dim[k] < 0 || b->shape->dim[k] > INT32_MAX) return -1;
      shape[k] = (int)b->shape->dim[k];
    }
    return (int)b->shape->n_dim;
  }
  int v[4] = {b->num, b->channels, b->height, b->width};
  for (int k = 0; k < 4; k++) {
    if (v[k] < 0) return -1;
    shape[k] = v[k];
  }
  return 4;
}

bool ct_blob_proto_matches(const Caffe__BlobProto *b, const ct_tensor *t) {
  int s[CT_MAX_AXES], n = ct_blob_proto_shape(b, s);
  if (n < 0) return false;
  if (!legacy_shape(b)) {
    if (n != t->naxes) return false;
    for (int k = 0; k < n; k++)
      if (s[k] != t->shape[k]) return false;
    return true;
  }
  if (t->naxes > 4) return false;
  for (int k = 0; k < 4; k++) {
    int tk = k - (4 - t->naxes);
    if (s[k] != (tk >= 0 ? t->shape[tk] : 1)) return false;
  }
  return true;
}

ct_status ct_blob_to_proto(const ct_tensor *t, bool with_diff, Caffe__BlobProto **out, ct_error *err) {
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
  s->dim = calloc((size_t)t->naxes + 1, sizeof(int64_t));
  b->data = malloc((t->count ? t->count : 1) * sizeof(float));
  if (with_diff) b->diff = malloc((t->count ? t->count : 1) * sizeof(float));
  if (!s->dim || !b->data || (with_diff && !b->diff)) {
    protobuf_c_message_free_unpacked(&b->base, NULL);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  s->n_dim = (size_t)t->naxes;
  for (int k = 0; k < t->naxes; k++) s->dim[k] = t->shape[k];
  b->n_data = t->count;
  const float *v;
  ct_status st = ct_tensor_host((ct_tensor *)t, CT_DATA, CT_READ, (float **)&v, err);
  if (st) {
    protobuf_c_message_free_unpacked(&b->base, NULL);
    return st;
  }
  memcpy(b->data, v, t->count * sizeof(float));
  if (with_diff) {
    b->n_diff = t->count;
    if ((st = ct_tensor_host((ct_tensor *)t, CT_DIFF, CT_READ, (float **)&v, err))) {
      protobuf_c_message_free_unpacked(&b->base, NULL);
      return st;
    }
    memcpy(b->diff, v, t->count * sizeof(float));
  }
  *out = b;
  return CT_OK;
}

