/* Caffe's TransformationParameter, applied the same way to every data source and to 8-bit or
 * float images: crop (random in TRAIN, centred in TEST), mirror (random, in both phases, as
 * Caffe's DataTransformer does), mean subtraction (mean_value, one or per channel, or a
 * mean_file BlobProto of the input's C x H x W), then scale: out = (in - mean) * scale.
 *
 * Randomness is drawn per image, in order, from the caller's stream: first the crop offsets
 * (TRAIN with crop_size only: y then x), then the mirror coin (mirror only). */
#ifndef CT_TRANSFORM_H
#define CT_TRANSFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "cortado.h"
#include "cortado.pb-c.h"

typedef struct ct_transform {
  float scale;
  int crop;     /* 0: no crop */
  bool mirror;
  bool train;
  bool force_color, force_gray; /* for encoded images (decoding), not the arithmetic */
  int C, H, W;  /* the input shape the transform was checked against */
  int nmean;    /* 0, 1 or C mean_value entries */
  float *mean_value; /* C entries (owned), or NULL */
  float *mean_blob;  /* C x H x W (owned, from mean_file), or NULL */
} ct_transform;

/* The effective TransformationParameter of a data layer: transform_param, with the deprecated
 * per-source fields (scale, mean_file, crop_size, mirror of data_param / image_data_param) filling
 * what transform_param leaves unset, as Caffe's net upgrade does. `legacy_*` may be 0/NULL. The
 * result borrows strings from its inputs. */
void ct_transform_param_merge(const Caffe__TransformationParameter *tp, bool has_legacy_scale, float legacy_scale,
                              const char *legacy_mean_file, unsigned legacy_crop, bool legacy_mirror,
                              Caffe__TransformationParameter *out);

/* Checks the parameters against an input of C x H x W and loads the mean file from mean_path
 * (the caller's resolution of tp->mean_file; NULL when tp has none). tp may be NULL. `who` names
 * the layer in messages. On failure nothing is left to free. */
ct_status ct_transform_init(ct_transform *t, const Caffe__TransformationParameter *tp, bool train, int C, int H,
                            int W, const char *mean_path, const char *who, ct_error *err);
void ct_transform_free(ct_transform *t);
/* Output side: crop or the input size. */
int ct_transform_out_height(const ct_transform *t);
int ct_transform_out_width(const ct_transform *t);
/* Transforms one C x H x W image (exactly one of u8 / f32 non-NULL) into out (C x outH x outW). */
void ct_transform_apply(const ct_transform *t, const uint8_t *u8, const float *f32, float *out, ct_rng *rng);

#endif
