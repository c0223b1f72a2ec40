/* MNIST-style IDX files (gzipped or plain): unsigned-byte tensors with big-endian dimensions. */
#ifndef CT_IDX_H
#define CT_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "cortado.h"

typedef struct ct_idx {
  int ndims;
  int dims[4];
  size_t count; /* product of dims */
  uint8_t *data;
} ct_idx;

/* Reads a whole IDX file of unsigned bytes (type 0x08, 1 to 4 dims). Every size is checked
 * against the bytes actually present before it is trusted; the caller frees with ct_idx_free.
 * Errors name the file and tell truncation ("too short", "truncated": the file or its gzip
 * stream ends early) from damage ("corrupt gzip data: <zlib's words>" with the offset in the
 * compressed file: a bad deflate stream, gzip header, CRC-32 or length), and read errors (CT_EIO)
 * from both. A gzipped file is read to its end, so its CRC-32 is always checked. */
ct_status ct_idx_read(const char *path, ct_idx *out, ct_error *err);
/* Reads and checks only the header: ndims, dims and count are set, data stays NULL. */
ct_status ct_idx_read_header(const char *path, ct_idx *out, ct_error *err);
void ct_idx_free(ct_idx *x);

#endif
