/* .binaryproto mean files through the data transform's real loader (ct_transform_init with
 * mean_file: ct_proto_read_binary, the shape check against the images, the value count), for
 * 3x4x4 images as the seeds hold; on success the mean is applied to an image with crop and
 * mirror, reading every mean value. */
#include <stdint.h>
#include <stdlib.h>

#include "cortado.pb-c.h"
#include "core/rng.h"
#include "data/transform.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write("input.binaryproto", data, size);
  Caffe__TransformationParameter tp = CAFFE__TRANSFORMATION_PARAMETER__INIT;
  tp.mean_file = (char *)path;
  tp.has_crop_size = 1;
  tp.crop_size = 3;
  tp.has_mirror = 1;
  tp.mirror = 1;
  ct_transform t;
  ct_error err;
  if (ct_transform_init(&t, &tp, true, 3, 4, 4, NULL, "fuzz", &err) != CT_OK) {
    if (!err.msg[0]) abort();
    return 0;
  }
  uint8_t img[3 * 4 * 4];
  for (int i = 0; i < 48; i++) img[i] = (uint8_t)(i * 5);
  float out[3 * 3 * 3];
  ct_rng rng;
  ct_rng_seed(&rng, size);
  ct_transform_apply(&t, img, NULL, out, &rng);
  ct_transform_free(&t);
  return 0;
}
