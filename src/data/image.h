/* Image files for the data path: JPEG (libjpeg-turbo) and PNG (libpng) decoded from memory into
 * planar C x H x W bytes, bilinear resize, PNG encoding (for `cortado convert --encoded`).
 *
 * Colour images come out in Caffe's channel order, B, G, R (OpenCV's, which Caffe's LMDBs,
 * mean files and trained weights all assume). NATIVE keeps a gray image gray (1 channel) and a
 * colour one colour (3), as Caffe does for encoded Datums; COLOR and GRAY force 3 or 1 channels.
 * Alpha is dropped. Decoding never trusts a header's size before checking it. */
#ifndef CT_IMAGE_H
#define CT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "cortado.h"

typedef enum ct_image_mode { CT_IMAGE_NATIVE, CT_IMAGE_COLOR, CT_IMAGE_GRAY } ct_image_mode;

/* A reusable planar image buffer: data holds C*H*W bytes; cap grows only. */
typedef struct ct_image {
  int C, H, W;
  uint8_t *data;
  size_t cap;
} ct_image;

void ct_image_free(ct_image *im);
/* Decodes JPEG or PNG bytes (detected by signature). `what` names the file or record in errors.
 * Before anything is allocated for the pixels, the size the header declares is checked: against
 * the 1 GiB cap on one decoded image (CT_ENOMEM), and against the bytes present (CT_EPARSE, "...
 * header declares WxH pixels ... but the file holds only N bytes"): a PNG's rows cannot
 * compress beyond deflate's 1032:1, and a JPEG's first scan needs at least 2 bits per 8x8 block
 * (1 for a progressive DC scan; arithmetic-coded JPEGs have no such bound). */
ct_status ct_image_decode(const uint8_t *buf, size_t len, ct_image_mode mode, ct_image *out, const char *what,
                          ct_error *err);
/* The size a caller expects (a data layer that knows its images' shape): each of C, H, W that
 * is > 0 must match the decoded image's (C as decoded in `mode`). */
typedef struct ct_image_expect {
  int C, H, W;
} ct_image_expect;
/* ct_image_decode, with the header's size also checked against *want (may be NULL) before any
 * decoding: CT_ESHAPE, naming both sizes, when they differ. */
ct_status ct_image_decode_expect(const uint8_t *buf, size_t len, ct_image_mode mode, const ct_image_expect *want,
                                 ct_image *out, const char *what, ct_error *err);
/* Reads a whole file (1 GiB at most) into *buf, which grows (with *cap) as needed and may be
 * reused across calls; *len receives the file's size. */
ct_status ct_image_file_bytes(const char *path, uint8_t **buf, size_t *cap, size_t *len, ct_error *err);
/* Reads and decodes a file; *bytes (may be NULL) receives the file's raw contents (malloc'ed)
 * for callers that store them as they are. */
ct_status ct_image_read_file(const char *path, ct_image_mode mode, ct_image *out, uint8_t **bytes, size_t *nbytes,
                             ct_error *err);
/* Bilinear resize (pixel centres aligned, as OpenCV's INTER_LINEAR) into out (not in). */
ct_status ct_image_resize(const ct_image *in, int H, int W, ct_image *out, ct_error *err);
/* Encodes as PNG (gray or BGR); *out is malloc'ed. */
ct_status ct_image_encode_png(const ct_image *im, uint8_t **out, size_t *len, ct_error *err);

#endif
