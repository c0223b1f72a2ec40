#include "data/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "proto/blob.h"
#include "proto/prototxt.h"

void ct_transform_param_merge(const Caffe__TransformationParameter *tp, bool has_legacy_scale, float legacy_scale,
                              const char *legacy_mean_file, unsigned legacy_crop, bool legacy_mirror,
                              Caffe__TransformationParameter *out) {
  if (tp)
    *out = *tp;
  else
    caffe__transformation_parameter__init(out);
  if (!tp || !tp->has_scale) {
    if (has_legacy_scale) out->scale = legacy_scale;
  }
  if (!out->mean_file && !out->n_mean_value && legacy_mean_file) out->mean_file = (char *)legacy_mean_file;
  if (!out->crop_size && legacy_crop) out->crop_size = legacy_crop;
  if (!out->mirror && legacy_mirror) out->mirror = true;
}

void ct_transform_free(ct_transform *t) {
  if (!t) return;
  free(t->mean_value);
  free(t->mean_blob);
  t->mean_value = t->mean_blob = NULL;
}

static ct_status load_mean(ct_transform *t, const char *path, const char *who, ct_error *err) {
  ProtobufCMessage *m = NULL;
  if (ct_proto_read_binary(path, &caffe__blob_proto__descriptor, &m, err))
    return ct_error_prefix(err, "%s: mean_file", who);
  const Caffe__BlobProto *b = (const Caffe__BlobProto *)m;
  ct_status st = CT_OK;
  int shape[CT_MAX_AXES], n = ct_blob_proto_shape(b, shape);
  /* Accept N x C x H x W with N = 1 (what compute_image_mean writes) or C x H x W. */
  int off = n == 4 ? 1 : 0;
  if (n < 0 || (n != 3 && n != 4) || (n == 4 && shape[0] != 1) || shape[off] != t->C || shape[off + 1] != t->H ||
      shape[off + 2] != t->W) {
    char got[96] = "an unreadable shape";
    if (n == 3) snprintf(got, sizeof got, "%dx%dx%d", shape[0], shape[1], shape[2]);
    if (n == 4) snprintf(got, sizeof got, "%dx%dx%dx%d", shape[0], shape[1], shape[2], shape[3]);
    if (n >= 0 && n != 3 && n != 4) snprintf(got, sizeof got, "%d axes", n);
    st = ct_fail(err, CT_ESHAPE, "%s: mean_file %s holds %s but the images are 1x%dx%dx%d", who, path, got, t->C,
                 t->H, t->W);
    goto done;
  }
  size_t count = (size_t)t->C * t->H * t->W;
  if (b->n_data != count && b->n_double_data != count) {
    st = ct_fail(err, CT_ESHAPE, "%s: mean_file %s declares %dx%dx%d but holds %zu values", who, path, t->C, t->H,
                 t->W, b->n_data ? b->n_data : b->n_double_data);
    goto done;
  }
  t->mean_blob = malloc(count * sizeof *t->mean_blob);
  if (!t->mean_blob) {
    st = ct_fail(err, CT_ENOMEM, "%s: out of memory for the mean", who);
    goto done;
  }
  for (size_t i = 0; i < count; i++) t->mean_blob[i] = b->n_data == count ? b->data[i] : (float)b->double_data[i];
done:
  protobuf_c_message_free_unpacked(m, NULL);
  return st;
}

ct_status ct_transform_init(ct_transform *t, const Caffe__TransformationParameter *tp, bool train, int C, int H,
                            int W, const char *mean_path, const char *who, ct_error *err) {
  static const Caffe__TransformationParameter dflt = CAFFE__TRANSFORMATION_PARAMETER__INIT;
  if (!tp) tp = &dflt;
  memset(t, 0, sizeof *t);
  t->scale = tp->scale;
  t->crop = (int)tp->crop_size;
  t->mirror = tp->mirror;
  t->train = train;
  t->force_color = tp->force_color;
  t->force_gray = tp->force_gray;
  t->C = C;
  t->H = H;
  t->W = W;
  if (tp->force_color && tp->force_gray)
    return ct_fail(err, CT_EINVAL, "%s: force_color and force_gray cannot both be set", who);
  if (tp->crop_size > 1u << 20 || (t->crop && (t->crop > H || t->crop > W)))
    return ct_fail(err, CT_ESHAPE, "%s: crop_size %u is larger than the %dx%d images", who, tp->crop_size, H, W);
  if (tp->mean_file && tp->n_mean_value)
    return ct_fail(err, CT_EINVAL, "%s: give mean_file or mean_value, not both", who);
  if (tp->n_mean_value) {
    if (tp->n_mean_value != 1 && (int)tp->n_mean_value != C)
      return ct_fail(err, CT_EINVAL, "%s: %zu mean_value entries for %d channels; give one or one per channel", who,
                     tp->n_mean_value, C);
    t->mean_value = malloc((size_t)C * sizeof *t->mean_value);
    if (!t->mean_value) return ct_fail(err, CT_ENOMEM, "%s: out of memory", who);
    t->nmean = (int)tp->n_mean_value;
    for (int c = 0; c < C; c++) t->mean_value[c] = tp->mean_value[t->nmean == 1 ? 0 : c];
  }
  if (tp->mean_file) {
    ct_status st = load_mean(t, mean_path ? mean_path : tp->mean_file, who, err);
    if (st) {
      ct_transform_free(t);
      return st;
    }
  }
  return CT_OK;
}

int ct_transform_out_height(const ct_transform *t) { return t->crop ? t->crop : t->H; }
int ct_transform_out_width(const ct_transform *t) { return t->crop ? t->crop : t->W; }

void ct_transform_apply(const ct_transform *t, const uint8_t *u8, const float *f32, float *out, ct_rng *rng) {
  const int C = t->C, H = t->H, W = t->W;
  const int oh = ct_transform_out_height(t), ow = ct_transform_out_width(t);
  int y0 = 0, x0 = 0;
  if (t->crop) {
    if (t->train) {
      y0 = (int)ct_rng_below(rng, (uint64_t)(H - t->crop + 1));
      x0 = (int)ct_rng_below(rng, (uint64_t)(W - t->crop + 1));
    } else {
      y0 = (H - t->crop) / 2;
      x0 = (W - t->crop) / 2;
    }
  }
  const bool flip = t->mirror && ct_rng_below(rng, 2);
  const float scale = t->scale;
  for (int c = 0; c < C; c++) {
    const float m = t->mean_value ? t->mean_value[c] : 0.0f;
    for (int y = 0; y < oh; y++) {
      const size_t row = ((size_t)c * H + (size_t)(y + y0)) * W + (size_t)x0;
      const float *mb = t->mean_blob ? t->mean_blob + row : NULL;
      float *dst = out + ((size_t)c * oh + y) * ow;
      /* dst[x] comes from source column sx = x (or ow-1-x when flipped), mean from the same. */
      if (u8) {
        const uint8_t *src = u8 + row;
        if (!flip && !mb)
          for (int x = 0; x < ow; x++) dst[x] = ((float)src[x] - m) * scale;
        else
          for (int x = 0; x < ow; x++) {
            int sx = flip ? ow - 1 - x : x;
            dst[x] = ((float)src[sx] - (mb ? mb[sx] : m)) * scale;
          }
      } else {
        const float *src = f32 + row;
        for (int x = 0; x < ow; x++) {
          int sx = flip ? ow - 1 - x : x;
          dst[x] = (src[sx] - (mb ? mb[sx] : m)) * scale;
        }
      }
    }
  }
}
