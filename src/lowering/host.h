/* The lowering and lifting steps of types 1, 2, 3 and the 1x1 path as plain loops over memory
 * the CPU can address: what the CPU driver's conv_lower, conv_lift, conv_lift_grad,
 * conv_bias_grad and conv_lower_grad entries run (see drivers/driver.h for each step's
 * contract, lowering.h for the shapes, ct_lower_layout_of for where each part of ws lies).
 * No GEMM here: ct_lower_forward_on and ct_lower_backward_on run those between the steps. */
#ifndef CT_LOWERING_HOST_H
#define CT_LOWERING_HOST_H

#include "lowering/lowering.h"

void ct_lower_host_lower(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w, float *ws);
void ct_lower_host_lift(const ct_conv_geom *g, ct_lowering t, int nb, const float *ws, const float *b, float *y);
void ct_lower_host_lift_grad(const ct_conv_geom *g, ct_lowering t, int nb, const float *dy, float *ws);
void ct_lower_host_bias_grad(const ct_conv_geom *g, ct_lowering t, int nb, const float *dy, const float *ws,
                             float *db);
void ct_lower_host_lower_grad(const ct_conv_geom *g, ct_lowering t, int nb, const float *ws, float *dx, float *dw);

#endif
