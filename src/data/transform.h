/* Caffe's TransformationParameter applied to one 8-bit image: crop (random in TRAIN, centred in
 * TEST), mirror (random in TRAIN), mean subtraction (mean_value per channel or a mean blob),
 * then scale: out = (in - mean) * scale. */
#ifndef CT_TRANSFORM_H
#define CT_TRANSFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "cortado.h"
#include "cortado.pb-c.h"

typedef struct ct_transform {
  float scale;
  int crop;        /* 0: no crop */
  bool mirror;
  bool train;
  int nmean;       /* 0, 1 or channels */
  float mean[4];   /* mean_value per channel */
  const float *mean_blob; /* C x H x W, borrowed (mean_file), or NULL */
} ct_transform;

/* Checks the parameters against an input of C channels; tp may be NULL. */
ct_status ct_transform_init(ct_transform *t, const Caffe__TransformationParameter *tp, bool train, int channels,
                            int height, int width, const char *who, ct_error *err);
/* Output side: crop or the input size. */
int ct_transform_out_height(const ct_transform *t, int height);
int ct_transform_out_width(const ct_transform *t, int width);
/* Transforms a C x H x W uint8 image into out (C x outH x outW). */
void ct_transform_u8(const ct_transform *t, const uint8_t *in, int C, int H, int W, float *out, ct_rng *rng);

#endif
