#include "data/transform.h"

#include "core/status.h"

ct_status ct_transform_init(ct_transform *t, const Caffe__TransformationParameter *tp, bool train, int channels,
                            int height, int width, const char *who, ct_error *err) {
  static const Caffe__TransformationParameter dflt = CAFFE__TRANSFORMATION_PARAMETER__INIT;
  if (!tp) tp = &dflt;
  t->scale = tp->scale;
  t->crop = (int)tp->crop_size;
  t->mirror = tp->mirror;
  t->train = train;
  t->mean_blob = NULL;
  t->nmean = 0;
  if (t->crop && (t->crop > height || t->crop > width))
    return ct_fail(err, CT_ESHAPE, "%s: crop_size %d is larger than the %dx%d images", who, t->crop, height, width);
  if (tp->mean_file && tp->n_mean_value)
    return ct_fail(err, CT_EINVAL, "%s: give mean_file or mean_value, not both", who);
  if (tp->mean_file)
    return ct_fail(err, CT_EUNSUPPORTED, "%s: mean_file is not supported by this data source yet; use mean_value",
                   who);
  if (tp->n_mean_value) {
    if (tp->n_mean_value != 1 && (int)tp->n_mean_value != channels)
      return ct_fail(err, CT_EINVAL, "%s: %zu mean_value entries for %d channels; give one or one per channel", who,
                     tp->n_mean_value, channels);
    if (channels > 4) return ct_fail(err, CT_EUNSUPPORTED, "%s: mean_value with more than 4 channels", who);
    t->nmean = (int)tp->n_mean_value;
    for (int c = 0; c < channels; c++) t->mean[c] = tp->mean_value[t->nmean == 1 ? 0 : c];
  }
  return CT_OK;
}

int ct_transform_out_height(const ct_transform *t, int height) { return t->crop ? t->crop : height; }
int ct_transform_out_width(const ct_transform *t, int width) { return t->crop ? t->crop : width; }

void ct_transform_u8(const ct_transform *t, const uint8_t *in, int C, int H, int W, float *out, ct_rng *rng) {
  int oh = ct_transform_out_height(t, H), ow = ct_transform_out_width(t, W);
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
  bool flip = t->mirror && t->train && ct_rng_below(rng, 2);
  for (int c = 0; c < C; c++) {
    float m = t->nmean ? t->mean[c] : 0.0f;
    for (int y = 0; y < oh; y++) {
      const uint8_t *src = in + ((size_t)c * H + (size_t)(y + y0)) * W + x0;
      const float *mb = t->mean_blob ? t->mean_blob + ((size_t)c * H + (size_t)(y + y0)) * W + x0 : NULL;
      float *dst = out + ((size_t)c * oh + y) * ow;
      for (int x = 0; x < ow; x++) {
        int sx = flip ? ow - 1 - x : x;
        float mean = mb ? mb[sx] : m;
        dst[x] = ((float)src[sx] - mean) * t->scale;
      }
    }
  }
}
