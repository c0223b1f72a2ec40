#include "data/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* after stdio.h, which jpeglib.h needs */
#include <jerror.h>
#include <jpeglib.h>

#include "core/files.h"
#include "core/status.h"

/* 1 GiB of pixels: far above any training image, and a bound for lying headers. */
#define IMAGE_MAX_BYTES ((size_t)1 << 30)

void ct_image_free(ct_image *im) {
  if (!im) return;
  free(im->data);
  memset(im, 0, sizeof *im);
}

static ct_status image_alloc(ct_image *im, int C, int H, int W, const char *what, ct_error *err) {
  if (C < 1 || H < 1 || W < 1 || (size_t)H * (size_t)W > IMAGE_MAX_BYTES / (size_t)C)
    return ct_fail(err, CT_ENOMEM, "%s: implausible image size %dx%dx%d", what, C, H, W);
  size_t n = (size_t)C * H * W;
  if (n > im->cap) {
    uint8_t *p = realloc(im->data, n);
    if (!p) return ct_fail(err, CT_ENOMEM, "%s: out of memory for a %dx%dx%d image", what, C, H, W);
    im->data = p;
    im->cap = n;
  }
  im->C = C;
  im->H = H;
  im->W = W;
  return CT_OK;
}

/* The size a header declares, checked before anything is allocated for it: against the cap
 * (C_work: the channels of the decoder's own buffer, which may exceed the output's) and against
 * the size the caller expects, if any. */
static ct_status check_declared(const char *fmt, int C, int C_work, uint32_t H, uint32_t W, const ct_image_expect *want,
                                const char *what, ct_error *err) {
  if (H == 0 || W == 0)
    return ct_fail(err, CT_EPARSE, "%s: %s header declares an empty image (%ux%u)", what, fmt, W, H);
  const int Cmax = C > C_work ? C : C_work;
  if ((uint64_t)H * W > IMAGE_MAX_BYTES / (uint64_t)Cmax) /* H, W < 2^32: no overflow */
    return ct_fail(err, CT_ENOMEM,
                   "%s: %s header declares %ux%u pixels (width x height) x %d channels = %.4g bytes decoded, more than "
                   "the 1 GiB limit for one image",
                   what, fmt, W, H, Cmax, (double)H * W * Cmax);
  if (want && ((want->C > 0 && want->C != C) || (want->H > 0 && (uint32_t)want->H != H) ||
               (want->W > 0 && (uint32_t)want->W != W))) {
    char c[16] = "any", h[16] = "any", w[16] = "any";
    if (want->C > 0) snprintf(c, sizeof c, "%d", want->C);
    if (want->H > 0) snprintf(h, sizeof h, "%d", want->H);
    if (want->W > 0) snprintf(w, sizeof w, "%d", want->W);
    return ct_fail(err, CT_ESHAPE,
                   "%s: %s header declares a %dx%ux%u image (channels x height x width) but %sx%sx%s is expected", what,
                   fmt, C, H, W, c, h, w);
  }
  return CT_OK;
}

/* Interleaved row (W x C) -> row y of each plane. */
static void scatter_row(ct_image *im, int y, const uint8_t *row) {
  const int C = im->C, W = im->W;
  const size_t plane = (size_t)im->H * W;
  uint8_t *dst = im->data + (size_t)y * W;
  if (C == 1) {
    memcpy(dst, row, (size_t)W);
    return;
  }
  for (int x = 0; x < W; x++)
    for (int c = 0; c < C; c++) dst[(size_t)c * plane + x] = row[x * C + c];
}

/* OpenCV's BGR -> gray in fixed point (cvtColor's coefficients). */
static uint8_t bgr_to_gray(unsigned b, unsigned g, unsigned r) {
  return (uint8_t)((b * 1868u + g * 9617u + r * 4899u + (1u << 13)) >> 14);
}

/* ------------------------------------------------------------------ JPEG */

typedef struct jpeg_err {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
  int truncated;
} jpeg_err;

static void jpeg_error_exit_(j_common_ptr c) {
  jpeg_err *e = (jpeg_err *)c->err;
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jb, 1);
}

static void jpeg_emit_(j_common_ptr c, int level) {
  jpeg_err *e = (jpeg_err *)c->err;
  /* Warnings are tolerated (as OpenCV does) except data that ends early: the rest of the image
   * would be made up. */
  if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF && !e->truncated) {
    e->truncated = 1;
    (*c->err->format_message)(c, e->msg);
  }
}

/* The fewest bytes that could hold the entropy-coded data of the first scan, whose header
 * jpeg_read_header has read (ITU T.81): in Huffman coding every code is at least 1 bit, so a
 * sequential scan spends at least 2 bits on each 8x8 block of each of its components (a DC
 * difference and at least an end-of-block), and a progressive DC scan at least 1. Other scans
 * (progressive AC scans, which may skip blocks in end-of-band runs; arithmetic coding) give no
 * useful bound: 0. */
static uint64_t jpeg_first_scan_min_bytes(const struct jpeg_decompress_struct *c) {
  if (c->arith_code || (c->progressive_mode && c->Ss != 0)) return 0;
  uint64_t blocks = 0;
  for (int i = 0; i < c->comps_in_scan && i < MAX_COMPS_IN_SCAN; i++)
    if (c->cur_comp_info[i])
      blocks += (uint64_t)c->cur_comp_info[i]->width_in_blocks * c->cur_comp_info[i]->height_in_blocks;
  return (blocks * (c->progressive_mode ? 1 : 2) + 7) / 8;
}

static ct_status decode_jpeg(const uint8_t *buf, size_t len, ct_image_mode mode, const ct_image_expect *want,
                             ct_image *out, const char *what, ct_error *err) {
  struct jpeg_decompress_struct cinfo;
  jpeg_err jerr;
  uint8_t *volatile row = NULL;
  memset(&jerr, 0, sizeof jerr);
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = jpeg_error_exit_;
  jerr.pub.emit_message = jpeg_emit_;
  if (setjmp(jerr.jb)) {
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return ct_fail(err, CT_EPARSE, "%s: unreadable JPEG: %s", what, jerr.msg);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, buf, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  int gray = mode == CT_IMAGE_GRAY || (mode == CT_IMAGE_NATIVE && cinfo.num_components == 1);
  int C = gray ? 1 : 3;
  /* The header's size, checked before jpeg_start_decompress (which allocates for it: whole-image
   * coefficient buffers for a progressive file) and before the decode buffer. */
  ct_status st =
      check_declared("JPEG", C, cinfo.num_components, cinfo.image_height, cinfo.image_width, want, what, err);
  uint64_t need = jpeg_first_scan_min_bytes(&cinfo);
  if (!st && len < need)
    st = ct_fail(err, CT_EPARSE,
                 "%s: JPEG header declares %ux%u pixels (width x height) but the file holds only %zu bytes; the "
                 "%s scan alone needs at least %llu at the densest coding: a corrupt header or a truncated file",
                 what, cinfo.image_width, cinfo.image_height, len, cinfo.progressive_mode ? "first (DC)" : "first",
                 (unsigned long long)need);
  if (st) {
    jpeg_destroy_decompress(&cinfo);
    return st;
  }
  cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_EXT_BGR;
  jpeg_start_decompress(&cinfo);
  st = image_alloc(out, C, (int)cinfo.output_height, (int)cinfo.output_width, what, err);
  if (!st && (int)cinfo.output_components != C)
    st = ct_fail(err, CT_EPARSE, "%s: JPEG decoder gave %d components, expected %d", what, cinfo.output_components, C);
  if (!st && !(row = malloc((size_t)out->W * C)))
    st = ct_fail(err, CT_ENOMEM, "%s: out of memory", what);
  if (st) {
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return st;
  }
  while (cinfo.output_scanline < cinfo.output_height && !jerr.truncated) {
    JSAMPROW r = row;
    int y = (int)cinfo.output_scanline;
    if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) break;
    scatter_row(out, y, row);
  }
  if (jerr.truncated || cinfo.output_scanline < cinfo.output_height) {
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return ct_fail(err, CT_EPARSE, "%s: truncated JPEG: %s", what, jerr.truncated ? jerr.msg : "data ends early");
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(row);
  return CT_OK;
}

/* ------------------------------------------------------------------ PNG */

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The fewest bytes that could hold a PNG's image data (PNG spec, 2nd ed.): the filtered rows of
 * every Adam7 pass (or of the whole image), one filter byte per row, compressed by deflate, which
 * at best turns 2 bits into 258 bytes (a 1-bit length code for a 258-byte match and a 1-bit
 * distance code): 1032:1. IHDR, the first chunk, gives the size, bit depth, colour type and
 * interlace method; libpng has already checked it. */
static uint64_t png_min_bytes(const uint8_t *buf, size_t len) {
  if (len < 33 || memcmp(buf + 12, "IHDR", 4)) return 0;
  const uint64_t W = be32(buf + 16), H = be32(buf + 20);
  const unsigned depth = buf[24], type = buf[25], interlace = buf[28];
  const unsigned samples = type == 2 ? 3 : type == 4 ? 2 : type == 6 ? 4 : 1;
  const uint64_t bpp = (uint64_t)samples * depth;
  static const unsigned x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
  static const unsigned dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
  uint64_t raw = 0;
  if (!interlace) {
    raw = H * (1 + (W * bpp + 7) / 8);
  } else {
    for (int p = 0; p < 7; p++) {
      uint64_t pw = W > x0[p] ? (W - x0[p] + dx[p] - 1) / dx[p] : 0;
      uint64_t ph = H > y0[p] ? (H - y0[p] + dy[p] - 1) / dy[p] : 0;
      if (pw && ph) raw += ph * (1 + (pw * bpp + 7) / 8);
    }
  }
  return raw / 1032;
}

static ct_status decode_png(const uint8_t *buf, size_t len, ct_image_mode mode, const ct_image_expect *want,
                            ct_image *out, const char *what, ct_error *err) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, buf, len))
    return ct_fail(err, CT_EPARSE, "%s: unreadable PNG: %s", what, img.message);
  bool color = (img.format & PNG_FORMAT_FLAG_COLOR) != 0;
  img.format = color ? PNG_FORMAT_BGR : PNG_FORMAT_GRAY;
  int C = color ? 3 : 1;
  int OC = mode == CT_IMAGE_GRAY ? 1 : mode == CT_IMAGE_COLOR ? 3 : C;
  /* The header's size, checked before the decode buffers exist. */
  ct_status st = check_declared("PNG", OC, C, img.height, img.width, want, what, err);
  uint64_t need = png_min_bytes(buf, len);
  if (!st && len < need)
    st = ct_fail(err, CT_EPARSE,
                 "%s: PNG header declares %ux%u pixels (width x height) but the file holds only %zu bytes; its rows "
                 "need at least %llu even at deflate's densest (1032:1): a corrupt header or a truncated file",
                 what, img.width, img.height, len, (unsigned long long)need);
  if (st) {
    png_image_free(&img);
    return st;
  }
  int H = (int)img.height, W = (int)img.width;
  uint8_t *hwc = malloc((size_t)H * W * C);
  if (!hwc) {
    png_image_free(&img);
    return ct_fail(err, CT_ENOMEM, "%s: out of memory", what);
  }
  if (!png_image_finish_read(&img, NULL, hwc, 0, NULL)) {
    ct_status st = ct_fail(err, CT_EPARSE, "%s: unreadable PNG: %s", what, img.message);
    png_image_free(&img);
    free(hwc);
    return st;
  }
  st = image_alloc(out, OC, H, W, what, err);
  if (!st) {
    if (OC == C) {
      for (int y = 0; y < H; y++) scatter_row(out, y, hwc + (size_t)y * W * C);
    } else {
      size_t plane = (size_t)H * W;
      for (size_t i = 0; i < plane; i++) {
        if (OC == 1)
          out->data[i] = bgr_to_gray(hwc[3 * i], hwc[3 * i + 1], hwc[3 * i + 2]);
        else
          out->data[i] = out->data[plane + i] = out->data[2 * plane + i] = hwc[i];
      }
    }
  }
  free(hwc);
  return st;
}

ct_status ct_image_decode_expect(const uint8_t *buf, size_t len, ct_image_mode mode, const ct_image_expect *want,
                                 ct_image *out, const char *what, ct_error *err) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
    return decode_jpeg(buf, len, mode, want, out, what, err);
  if (len >= 8 && !memcmp(buf, png_sig, 8)) return decode_png(buf, len, mode, want, out, what, err);
  return ct_fail(err, CT_EPARSE, "%s: not a JPEG or PNG image (%zu bytes, starting %02x %02x %02x %02x)", what, len,
                 len > 0 ? buf[0] : 0, len > 1 ? buf[1] : 0, len > 2 ? buf[2] : 0, len > 3 ? buf[3] : 0);
}

ct_status ct_image_decode(const uint8_t *buf, size_t len, ct_image_mode mode, ct_image *out, const char *what,
                          ct_error *err) {
  return ct_image_decode_expect(buf, len, mode, NULL, out, what, err);
}

ct_status ct_image_file_bytes(const char *path, uint8_t **buf, size_t *cap, size_t *len, ct_error *err) {
  int fd = -1; /* issue 23: a FIFO or device is refused, not blocked on */
  CT_TRY(ct_file_open_input(path, "image", &fd, NULL, err));
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    return ct_fail(err, CT_EIO, "cannot open image %s: %s", path, strerror(errno));
  }
  ct_status st = CT_OK;
  size_t n = 0;
  for (;;) {
    if (n == *cap) {
      size_t grow = *cap ? *cap * 2 : (size_t)1 << 16;
      if (grow > IMAGE_MAX_BYTES) {
        st = ct_fail(err, CT_ENOMEM, "image %s is larger than 1 GiB", path);
        break;
      }
      uint8_t *p = realloc(*buf, grow);
      if (!p) {
        st = ct_fail(err, CT_ENOMEM, "out of memory reading %s", path);
        break;
      }
      *buf = p;
      *cap = grow;
    }
    size_t got = fread(*buf + n, 1, *cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) st = ct_fail(err, CT_EIO, "cannot read image %s: %s", path, strerror(errno));
      break;
    }
  }
  fclose(f);
  *len = n;
  return st;
}

ct_status ct_image_read_file(const char *path, ct_image_mode mode, ct_image *out, uint8_t **bytes, size_t *nbytes,
                             ct_error *err) {
  if (bytes) *bytes = NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, len = 0;
  ct_status st = ct_image_file_bytes(path, &buf, &cap, &len, err);
  if (!st) st = ct_image_decode(buf, len, mode, out, path, err);
  if (!st && bytes) {
    *bytes = buf;
    *nbytes = len;
  } else {
    free(buf);
  }
  return st;
}

ct_status ct_image_resize(const ct_image *in, int H, int W, ct_image *out, ct_error *err) {
  CT_TRY(image_alloc(out, in->C, H, W, "resize", err));
  const float sy = (float)in->H / (float)H, sx = (float)in->W / (float)W;
  int *x0 = malloc((size_t)W * sizeof *x0);
  float *fx = malloc((size_t)W * sizeof *fx);
  if (!x0 || !fx) {
    free(x0);
    free(fx);
    return ct_fail(err, CT_ENOMEM, "out of memory resizing");
  }
  for (int x = 0; x < W; x++) {
    float s = ((float)x + 0.5f) * sx - 0.5f;
    if (s < 0) s = 0;
    int i = (int)floorf(s);
    if (i >= in->W - 1) {
      i = in->W - 1;
      s = (float)i;
    }
    x0[x] = i;
    fx[x] = s - (float)i;
  }
  for (int c = 0; c < in->C; c++) {
    const uint8_t *plane = in->data + (size_t)c * in->H * in->W;
    uint8_t *dst = out->data + (size_t)c * H * W;
    for (int y = 0; y < H; y++) {
      float s = ((float)y + 0.5f) * sy - 0.5f;
      if (s < 0) s = 0;
      int i = (int)floorf(s);
      if (i >= in->H - 1) {
        i = in->H - 1;
        s = (float)i;
      }
      float fy = s - (float)i;
      const uint8_t *r0 = plane + (size_t)i * in->W, *r1 = plane + (size_t)(i + 1 < in->H ? i + 1 : i) * in->W;
      for (int x = 0; x < W; x++) {
        int a = x0[x], b = a + 1 < in->W ? a + 1 : a;
        float top = r0[a] + (r0[b] - r0[a]) * fx[x], bot = r1[a] + (r1[b] - r1[a]) * fx[x];
        float v = top + (bot - top) * fy;
        dst[(size_t)y * W + x] = (uint8_t)(v + 0.5f);
      }
    }
  }
  free(x0);
  free(fx);
  return CT_OK;
}

ct_status ct_image_encode_png(const ct_image *im, uint8_t **out, size_t *len, ct_error *err) {
  *out = NULL;
  if (im->C != 1 && im->C != 3) return ct_fail(err, CT_EINVAL, "PNG encoding needs 1 or 3 channels, not %d", im->C);
  size_t plane = (size_t)im->H * im->W;
  uint8_t *hwc = malloc(plane * im->C);
  if (!hwc) return ct_fail(err, CT_ENOMEM, "out of memory encoding PNG");
  for (size_t i = 0; i < plane; i++)
    for (int c = 0; c < im->C; c++) hwc[i * im->C + c] = im->data[(size_t)c * plane + i];
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)im->W;
  img.height = (png_uint_32)im->H;
  img.format = im->C == 3 ? PNG_FORMAT_BGR : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  ct_status st = CT_OK;
  if (!png_image_write_to_memory(&img, NULL, &size, 0, hwc, 0, NULL)) {
    st = ct_fail(err, CT_EINTERNAL, "PNG encoding failed: %s", img.message);
  } else if (!(*out = malloc(size))) {
    st = ct_fail(err, CT_ENOMEM, "out of memory encoding PNG");
  } else if (!png_image_write_to_memory(&img, *out, &size, 0, hwc, 0, NULL)) {
    st = ct_fail(err, CT_EINTERNAL, "PNG encoding failed: %s", img.message);
    free(*out);
    *out = NULL;
  }
  *len = size;
  free(hwc);
  return st;
}
