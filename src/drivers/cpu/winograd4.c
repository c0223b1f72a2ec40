/* Winograd's F(4x4, 3x3) (WINOGRAD4, lowering.h), blocked: work in progress on branch w4. */
#include "drivers/cpu/kernels.h"

ct_status ct_cpu_conv_wino4_block(const ct_driver *d, const ct_conv_geom *g, ct_wino_step step, int nb, int r0,
                                  int r1, const float *in, const float *b, float *out, float *scratch) {
  (void)d, (void)g, (void)step, (void)nb, (void)r0, (void)r1, (void)in, (void)b, (void)out, (void)scratch;
  return CT_EINVAL;
}
