/* Caffe's Datum record (the value of every LMDB / LevelDB entry Caffe's tools write), read
 * zero-copy from its protobuf wire bytes and written back in the same layout.
 *
 *   channels = 1, height = 2, width = 3 (varint), data = 4 (bytes), label = 5 (varint),
 *   float_data = 6 (fixed32, packed or not), encoded = 7 (varint bool)
 *
 * Every length is checked against the bytes present before it is trusted. */
#ifndef CT_DATUM_H
#define CT_DATUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cortado.h"

typedef struct ct_datum {
  int channels, height, width;
  int label;
  bool encoded;
  const uint8_t *data; /* points into the parsed buffer, or NULL when absent */
  size_t data_len;
  size_t n_float;      /* float_data entries */
  float *float_data;   /* decoded into the caller's buffer (see ct_datum_parse) */
} ct_datum;

/* Parses len bytes. float_data values go to *fbuf (grown with realloc as needed; *fcap in
 * floats; the caller frees it). On a malformed record returns CT_EPARSE with a message that
 * says what was wrong (the caller adds the record's key). */
ct_status ct_datum_parse(const void *buf, size_t len, ct_datum *d, float **fbuf, size_t *fcap, ct_error *err);

/* Encodes a Datum: raw bytes (data, data_len) or float_data (n_float) as Caffe writes them
 * (float_data unpacked, one fixed32 field each). Returns a malloc'ed buffer in *out. */
ct_status ct_datum_encode(const ct_datum *d, uint8_t **out, size_t *len, ct_error *err);

#endif
