/* WindowData (Caffe's "WindowData", R-CNN's fine-tuning input): windows cut from images, warped
 * to crop_size x crop_size, with their class labels.
 *
 * window_data_param.source is Caffe's window file, repeated per image:
 *     # <image index, 0, 1, ...>
 *     <image path, after root_folder>
 *     <channels> <height> <width>
 *     <number of windows>
 *     <class> <overlap> <x1> <y1> <x2> <y2>      (one line per window; corners inclusive)
 * A window with overlap >= fg_threshold is foreground (its class must be > 0); one with overlap <
 * bg_threshold is background (class 0); others are dropped. Each batch is batch_size - n_fg
 * background windows then n_fg = (int)(batch_size fg_fraction) foreground ones, each drawn at
 * random from its set, then (Caffe's load_batch, step for step): the window grown by context_pad
 * (and made square with crop_mode "square"), clipped to the image, warped bilinearly to its share
 * of crop_size x crop_size and placed at its offset in a zeroed crop, mirrored at random
 * (transform_param.mirror), minus the mean (transform_param's mean_file, read at the crop's
 * centre, or mean_value), times window_data_param.scale. Images are read in colour (B, G, R),
 * as Caffe reads them.
 *
 * Exact resumption: the draws for the item at stream position c (its window and mirror coin)
 * come from a stream seeded by the layer's seed and c alone, so the cursor (items served)
 * restores the sequence, and cluster workers reading every n-th block draw different items.
 * The deprecated crop_size, mirror and mean_file of window_data_param fill what
 * transform_param leaves unset (Caffe's upgrade does the same). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/image.h"
#include "data/transform.h"
#include "layers/data_layer.h"
#include "layers/layer.h"
#include "proto/blob.h"
#include "proto/prototxt.h"

typedef struct window {
  int image, label;
  int x1, y1, x2, y2;
} window;

typedef struct wimage {
  char *path;
  uint8_t *bytes; /* cache_images: the file */
  size_t nbytes;
} wimage;

typedef struct window_data {
  int batch, crop, context_pad, n_fg;
  bool square, mirror;
  float scale;
  uint64_t seed, cursor;
  wimage *images;
  int nimages;
  window *fg, *bg;
  int nfg, nbg;
  float *mean_value;      /* 3, or NULL */
  float *mean;            /* 3 x mean_h x mean_w, or NULL */
  int mean_h, mean_w;
  ct_image img, cut, warped;
  uint8_t *buf;           /* file bytes */
  size_t cap;
} window_data;

/* ---------------------------------------------------------------- the window file */

typedef struct reader {
  const char *path;
  char *text, *p;
  int line;
} reader;

/* The next whitespace-separated token (NULL at the end); counts lines. */
static char *token(reader *r) {
  while (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n') {
    if (*r->p == '\n') r->line++;
    r->p++;
  }
  if (!*r->p) return NULL;
  char *t = r->p;
  while (*r->p && *r->p != ' ' && *r->p != '\t' && *r->p != '\r' && *r->p != '\n') r->p++;
  if (*r->p) {
    if (*r->p == '\n') r->line++;
    *r->p++ = 0;
  }
  return t;
}

static ct_status integer(const ct_layer *l, reader *r, const char *what, long lo, long hi, long *out, ct_error *err) {
  const int line = r->line;
  char *t = token(r), *end = NULL;
  long v = t ? strtol(t, &end, 10) : 0;
  if (!t || *end || v < lo || v > hi)
    return ct_layer_fail(l, err, CT_EPARSE, "%s:%d: expected %s (an integer in [%ld, %ld]), got %s", r->path, line,
                         what, lo, hi, t ? t : "the end of the file");
  *out = v;
  return CT_OK;
}

static ct_status push(const ct_layer *l, window **set, int *n, const window *w, ct_error *err) {
  if ((*n & (*n - 1)) == 0) { /* grow at powers of two */
    window *g = realloc(*set, (size_t)(*n ? 2 * *n : 1) * sizeof *g);
    if (!g) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    *set = g;
  }
  (*set)[(*n)++] = *w;
  return CT_OK;
}

static ct_status parse(ct_layer *l, window_data *wd, reader *r, const char *root, float fg_thr, float bg_thr,
                       ct_error *err) {
  for (;;) {
    const int line = r->line;
    char *hash = token(r);
    if (!hash) break;
    if (strcmp(hash, "#"))
      return ct_layer_fail(l, err, CT_EPARSE, "%s:%d: expected \"#\" to start image %d, got %s", r->path, line,
                           wd->nimages, hash);
    long idx, C, H, W, nwin;
    CT_TRY(integer(l, r, "the image index", 0, 1L << 30, &idx, err));
    if (idx != wd->nimages)
      return ct_layer_fail(l, err, CT_EPARSE, "%s:%d: image index %ld where %d was expected (indices count from 0)",
                           r->path, line, idx, wd->nimages);
    const int pline = r->line;
    char *path = token(r);
    if (!path) return ct_layer_fail(l, err, CT_EPARSE, "%s:%d: expected an image path", r->path, pline);
    CT_TRY(integer(l, r, "the channels", 1, 4, &C, err));
    CT_TRY(integer(l, r, "the height", 1, 1 << 20, &H, err));
    CT_TRY(integer(l, r, "the width", 1, 1 << 20, &W, err));
    if (C != 3)
      return ct_layer_fail(l, err, CT_EINVAL,
                           "%s:%d: image %ld has %ld channels; WindowData reads images in colour (3), as Caffe does",
                           r->path, pline, idx, C);
    CT_TRY(integer(l, r, "the number of windows", 0, 1L << 30, &nwin, err));
    wimage *g = realloc(wd->images, (size_t)(wd->nimages + 1) * sizeof *g);
    if (!g) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    wd->images = g;
    char full[8192], resolved[8192];
    snprintf(full, sizeof full, "%s%s", root, path);
    ct_data_layer_resolve(l, full, resolved, sizeof resolved);
    memset(&wd->images[wd->nimages], 0, sizeof *wd->images);
    if (!(wd->images[wd->nimages].path = strdup(resolved))) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    wd->nimages++;
    for (long i = 0; i < nwin; i++) {
      const int wline = r->line;
      long label, c[4];
      CT_TRY(integer(l, r, "a window's class", 0, 1L << 30, &label, err));
      char *o = token(r), *end = NULL;
      const float overlap = o ? strtof(o, &end) : 0;
      if (!o || *end || !(overlap == overlap))
        return ct_layer_fail(l, err, CT_EPARSE, "%s:%d: expected a window's overlap (a number), got %s", r->path,
                             wline, o ? o : "the end of the file");
      static const char *const names[4] = {"x1", "y1", "x2", "y2"};
      for (int k = 0; k < 4; k++) CT_TRY(integer(l, r, names[k], -(1L << 20), 1L << 20, &c[k], err));
      if (c[0] < 0 || c[1] < 0 || c[2] >= W || c[3] >= H || c[2] < c[0] || c[3] < c[1])
        return ct_layer_fail(l, err, CT_EINVAL,
                             "%s:%d: window (%ld, %ld)-(%ld, %ld) is not inside image %ld of %ldx%ld (corners are "
                             "inclusive: 0 <= x1 <= x2 < width)",
                             r->path, wline, c[0], c[1], c[2], c[3], idx, W, H);
      window w = {(int)idx, (int)label, (int)c[0], (int)c[1], (int)c[2], (int)c[3]};
      if (overlap >= fg_thr) {
        if (label <= 0)
          return ct_layer_fail(l, err, CT_EINVAL, "%s:%d: a foreground window (overlap %g) must have a class > 0",
                               r->path, wline, overlap);
        CT_TRY(push(l, &wd->fg, &wd->nfg, &w, err));
      } else if (overlap < bg_thr) {
        w.label = 0;
        CT_TRY(push(l, &wd->bg, &wd->nbg, &w, err));
      }
    }
  }
  if (wd->nimages == 0) return ct_layer_fail(l, err, CT_EINVAL, "the window file %s is empty", r->path);
  return CT_OK;
}

/* ---------------------------------------------------------------- setup */

static ct_status load_mean(ct_layer *l, window_data *wd, const char *file, ct_error *err) {
  char path[4096];
  ct_data_layer_resolve(l, file, path, sizeof path);
  ProtobufCMessage *m = NULL;
  if (ct_proto_read_binary(path, &caffe__blob_proto__descriptor, &m, err))
    return ct_error_prefix(err, "layer \"%s\" (WindowData): mean_file", l->name);
  const Caffe__BlobProto *b = (const Caffe__BlobProto *)m;
  int shape[CT_MAX_AXES], n = ct_blob_proto_shape(b, shape);
  const int off = n == 4 ? 1 : 0;
  ct_status st = CT_OK;
  if ((n != 3 && n != 4) || (n == 4 && shape[0] != 1) || shape[off] != 3) {
    st = ct_layer_fail(l, err, CT_ESHAPE, "mean_file %s must hold 1 x 3 x H x W values", path);
  } else {
    wd->mean_h = shape[off + 1];
    wd->mean_w = shape[off + 2];
    const size_t count = (size_t)3 * wd->mean_h * wd->mean_w;
    const int moff = (wd->mean_w - wd->crop) / 2; /* Caffe's offset, from the width, on both axes */
    if (b->n_data != count && b->n_double_data != count)
      st = ct_layer_fail(l, err, CT_ESHAPE, "mean_file %s declares 3x%dx%d but holds %zu values", path, wd->mean_h,
                         wd->mean_w, b->n_data ? b->n_data : b->n_double_data);
    else if (moff < 0 || moff + wd->crop > wd->mean_h)
      st = ct_layer_fail(l, err, CT_ESHAPE, "mean_file %s (3x%dx%d) is smaller than the %dx%d crop", path, wd->mean_h,
                         wd->mean_w, wd->crop, wd->crop);
    else if (!(wd->mean = malloc(count * sizeof *wd->mean)))
      st = ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    else
      for (size_t i = 0; i < count; i++) wd->mean[i] = b->n_data ? b->data[i] : (float)b->double_data[i];
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return st;
}

static ct_status wd_setup(ct_layer *l, ct_error *err) {
  const Caffe__WindowDataParameter *wp = l->lp->window_data_param;
  if (!wp || !wp->source || !wp->source[0])
    return ct_layer_fail(l, err, CT_EINVAL, "needs window_data_param { source: \"<window file>\" batch_size: N }");
  if (!wp->has_batch_size || wp->batch_size == 0 || wp->batch_size > (1u << 20))
    return ct_layer_fail(l, err, CT_EINVAL, "batch_size must be given and positive");
  if (!(wp->fg_fraction >= 0 && wp->fg_fraction <= 1))
    return ct_layer_fail(l, err, CT_EINVAL, "fg_fraction must be in [0, 1], got %g", wp->fg_fraction);
  if (wp->crop_mode && strcmp(wp->crop_mode, "warp") && strcmp(wp->crop_mode, "square"))
    return ct_layer_fail(l, err, CT_EINVAL, "crop_mode must be \"warp\" or \"square\", got \"%s\"", wp->crop_mode);
  Caffe__TransformationParameter tp;
  ct_transform_param_merge(l->lp->transform_param, false, 1, wp->mean_file, wp->crop_size, wp->mirror, &tp);
  const bool t_scale = l->lp->transform_param && l->lp->transform_param->has_scale;
  if (t_scale && wp->has_scale && tp.scale != wp->scale)
    return ct_layer_fail(l, err, CT_EINVAL, "give scale in window_data_param or transform_param, not both (%g, %g)",
                         wp->scale, tp.scale);
  if (tp.force_gray) return ct_layer_fail(l, err, CT_EINVAL, "force_gray: WindowData reads images in colour");
  if (tp.crop_size == 0 || tp.crop_size > (1u << 14))
    return ct_layer_fail(l, err, CT_EINVAL, "transform_param.crop_size (the warped size) must be given and positive");
  if (tp.mean_file && tp.n_mean_value)
    return ct_layer_fail(l, err, CT_EINVAL, "give mean_file or mean_value, not both");
  if (tp.n_mean_value && tp.n_mean_value != 1 && tp.n_mean_value != 3)
    return ct_layer_fail(l, err, CT_EINVAL, "%zu mean_value entries for 3 channels; give one or three",
                         tp.n_mean_value);
  window_data *wd = calloc(1, sizeof *wd);
  if (!wd) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = wd;
  wd->batch = (int)wp->batch_size;
  wd->crop = (int)tp.crop_size;
  wd->mirror = tp.mirror;
  wd->scale = wp->has_scale || !t_scale ? wp->scale : tp.scale;
  wd->context_pad = (int)wp->context_pad;
  if (2 * wd->context_pad >= wd->crop)
    return ct_layer_fail(l, err, CT_EINVAL, "context_pad %d leaves nothing of a %d crop", wd->context_pad, wd->crop);
  wd->square = wp->crop_mode && !strcmp(wp->crop_mode, "square");
  wd->n_fg = (int)((float)wd->batch * wp->fg_fraction);
  wd->seed = ct_rng_next(&l->rng);
  if (tp.n_mean_value) {
    if (!(wd->mean_value = malloc(3 * sizeof *wd->mean_value))) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    for (int c = 0; c < 3; c++) wd->mean_value[c] = tp.mean_value[tp.n_mean_value == 1 ? 0 : c];
  }
  if (tp.mean_file) CT_TRY(load_mean(l, wd, tp.mean_file, err));
  /* the window file */
  char path[4096];
  ct_data_layer_resolve(l, wp->source, path, sizeof path);
  size_t cap = 0, len = 0;
  uint8_t *text = NULL;
  if (ct_image_file_bytes(path, &text, &cap, &len, err)) {
    free(text);
    return ct_layer_fail(l, err, CT_EIO, "cannot read the window file %s", path);
  }
  char *z = realloc(text, len + 1);
  if (!z) {
    free(text);
    return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  }
  z[len] = 0;
  reader r = {path, z, z, 1};
  ct_status st = parse(l, wd, &r, wp->root_folder ? wp->root_folder : "", wp->fg_threshold, wp->bg_threshold, err);
  free(z);
  CT_TRY(st);
  if (wd->n_fg > 0 && wd->nfg == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "%s has no foreground window (overlap >= %g) to fill %d of each batch", path,
                         wp->fg_threshold, wd->n_fg);
  if (wd->batch - wd->n_fg > 0 && wd->nbg == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "%s has no background window (overlap < %g) to fill %d of each batch", path,
                         wp->bg_threshold, wd->batch - wd->n_fg);
  if (wp->cache_images)
    for (int i = 0; i < wd->nimages; i++) {
      size_t c = 0;
      if (ct_image_file_bytes(wd->images[i].path, &wd->images[i].bytes, &c, &wd->images[i].nbytes, err))
        return ct_error_prefix(err, "layer \"%s\" (WindowData)", l->name);
    }
  return CT_OK;
}

static ct_status wd_reshape(ct_layer *l, ct_error *err) {
  window_data *wd = l->priv;
  CT_TRY(ct_tensor_reshape4(l->top[0], wd->batch, 3, wd->crop, wd->crop, err));
  if (l->ntop > 1) CT_TRY(ct_tensor_reshape4(l->top[1], wd->batch, 1, 1, 1, err));
  return CT_OK;
}

/* ---------------------------------------------------------------- one window */

static int max_i(int a, int b) { return a > b ? a : b; }

/* Fills item `out` (3 x crop x crop, zeroed) from window w, as Caffe's load_batch does. */
static ct_status warp(ct_layer *l, window_data *wd, const window *w, bool flip, float *out, ct_error *err) {
  const wimage *im = &wd->images[w->image];
  ct_status st;
  if (im->bytes) {
    st = ct_image_decode(im->bytes, im->nbytes, CT_IMAGE_COLOR, &wd->img, im->path, err);
  } else {
    size_t len = 0;
    st = ct_image_file_bytes(im->path, &wd->buf, &wd->cap, &len, err);
    if (!st) st = ct_image_decode(wd->buf, len, CT_IMAGE_COLOR, &wd->img, im->path, err);
  }
  if (st) return ct_error_prefix(err, "layer \"%s\" (WindowData)", l->name);
  const int IH = wd->img.H, IW = wd->img.W, crop = wd->crop;
  int x1 = w->x1, y1 = w->y1, x2 = w->x2, y2 = w->y2;
  if (x2 >= IW || y2 >= IH)
    return ct_layer_fail(l, err, CT_EINVAL, "window (%d, %d)-(%d, %d) is outside %s, which is %dx%d", x1, y1, x2, y2,
                         im->path, IW, IH);
  int pad_w = 0, pad_h = 0, out_w = crop, out_h = crop;
  if (wd->context_pad > 0 || wd->square) {
    /* grow the window so that, warped to crop x crop, context_pad pixels of context surround it */
    const float context_scale = (float)crop / (float)(crop - 2 * wd->context_pad);
    float half_h = (float)(y2 - y1 + 1) / 2.0f, half_w = (float)(x2 - x1 + 1) / 2.0f;
    const float cx = (float)x1 + half_w, cy = (float)y1 + half_h;
    if (wd->square) {
      if (half_h > half_w)
        half_w = half_h;
      else
        half_h = half_w;
    }
    x1 = (int)roundf(cx - half_w * context_scale);
    x2 = (int)roundf(cx + half_w * context_scale);
    y1 = (int)roundf(cy - half_h * context_scale);
    y2 = (int)roundf(cy + half_h * context_scale);
    /* clip to the image; the part beyond becomes zero padding in the crop */
    const int uh = y2 - y1 + 1, uw = x2 - x1 + 1;
    int px1 = max_i(0, -x1), py1 = max_i(0, -y1), px2 = max_i(0, x2 - IW + 1), py2 = max_i(0, y2 - IH + 1);
    x1 += px1, x2 -= px2, y1 += py1, y2 -= py2;
    const int ch = y2 - y1 + 1, cw = x2 - x1 + 1;
    const float sx = (float)crop / (float)uw, sy = (float)crop / (float)uh;
    out_w = (int)roundf((float)cw * sx);
    out_h = (int)roundf((float)ch * sy);
    px1 = (int)roundf((float)px1 * sx);
    px2 = (int)roundf((float)px2 * sx);
    py1 = (int)roundf((float)py1 * sy);
    pad_h = py1;
    pad_w = flip ? px2 : px1; /* mirrored, the padding mirrors too */
    if (pad_h + out_h > crop) out_h = crop - pad_h;
    if (pad_w + out_w > crop) out_w = crop - pad_w;
    if (out_h <= 0 || out_w <= 0)
      return ct_layer_fail(l, err, CT_EINVAL, "window (%d, %d)-(%d, %d) of %s warps to nothing", w->x1, w->y1, w->x2,
                           w->y2, im->path);
  }
  /* cut, warp */
  const int cw = x2 - x1 + 1, ch = y2 - y1 + 1;
  wd->cut.C = 3, wd->cut.H = ch, wd->cut.W = cw;
  const size_t need = (size_t)3 * ch * cw;
  if (need > wd->cut.cap) {
    uint8_t *g = realloc(wd->cut.data, need);
    if (!g) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    wd->cut.data = g;
    wd->cut.cap = need;
  }
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < ch; y++)
      memcpy(wd->cut.data + ((size_t)c * ch + y) * cw, wd->img.data + ((size_t)c * IH + y1 + y) * IW + x1, (size_t)cw);
  if (ct_image_resize(&wd->cut, out_h, out_w, &wd->warped, err))
    return ct_error_prefix(err, "layer \"%s\" (WindowData)", l->name);
  /* place, mirrored, minus the mean, scaled */
  const int moff = wd->mean ? (wd->mean_w - crop) / 2 : 0;
  for (int c = 0; c < 3; c++)
    for (int h = 0; h < out_h; h++)
      for (int x = 0; x < out_w; x++) {
        const float pixel = wd->warped.data[((size_t)c * out_h + h) * out_w + (flip ? out_w - 1 - x : x)];
        float m = 0;
        if (wd->mean)
          m = wd->mean[((size_t)c * wd->mean_h + h + moff + pad_h) * wd->mean_w + x + moff + pad_w];
        else if (wd->mean_value)
          m = wd->mean_value[c];
        out[((size_t)c * crop + h + pad_h) * crop + x + pad_w] = (pixel - m) * wd->scale;
      }
  return CT_OK;
}

static ct_status wd_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  window_data *wd = l->priv;
  float *data, *labels = NULL;
  CT_TRY(ct_write(l, p, l->top[0], &data, err));
  if (l->ntop > 1) CT_TRY(ct_write(l, p, l->top[1], &labels, err));
  const size_t item = (size_t)3 * wd->crop * wd->crop;
  memset(data, 0, (size_t)wd->batch * item * sizeof(float));
  for (int i = 0; i < wd->batch; i++) {
    /* background first, then foreground, as Caffe fills a batch */
    const bool fg = i >= wd->batch - wd->n_fg;
    ct_rng r;
    ct_rng_seed(&r, ct_rng_derive(wd->seed, wd->cursor + (uint64_t)i));
    const window *w = fg ? &wd->fg[ct_rng_below(&r, (uint64_t)wd->nfg)] : &wd->bg[ct_rng_below(&r, (uint64_t)wd->nbg)];
    const bool flip = wd->mirror && ct_rng_below(&r, 2);
    CT_TRY(warp(l, wd, w, flip, data + (size_t)i * item, err));
    if (labels) labels[i] = (float)w->label;
  }
  wd->cursor += (uint64_t)wd->batch;
  return CT_OK;
}

static uint64_t wd_get_cursor(const ct_layer *l) { return ((const window_data *)l->priv)->cursor; }
static void wd_set_cursor(ct_layer *l, uint64_t c) { ((window_data *)l->priv)->cursor = c; }

static void wd_destroy(ct_layer *l) {
  window_data *wd = l->priv;
  if (!wd) return;
  for (int i = 0; i < wd->nimages; i++) {
    free(wd->images[i].path);
    free(wd->images[i].bytes);
  }
  free(wd->images);
  free(wd->fg);
  free(wd->bg);
  free(wd->mean_value);
  free(wd->mean);
  ct_image_free(&wd->img);
  ct_image_free(&wd->cut);
  ct_image_free(&wd->warped);
  free(wd->buf);
  free(wd);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_WindowData = {.type = "WindowData",
                                          .min_bottom = 0,
                                          .max_bottom = 0,
                                          .min_top = 1,
                                          .max_top = 2,
                                          .splits = NULL,
                                          .host = true,
                                          .kind = CT_WORK_MEMORY,
                                          .setup = wd_setup,
                                          .reshape = wd_reshape,
                                          .forward = wd_forward,
                                          .destroy = wd_destroy,
                                          .get_cursor = wd_get_cursor,
                                          .set_cursor = wd_set_cursor};
