/* The lowering and lifting steps of types 1, 2, 3 and the 1x1 path as plain loops over memory
 * the CPU can address: what the CPU driver's conv_lower, conv_lift, conv_lift_grad,
 * conv_bias_grad and conv_lower_grad entries run (see drivers/driver.h for each step's
 * contract, lowering.h for the shapes, ct_lower_layout_of for where each part of ws lies).
 * No GEMM here: ct_lower_forward_on and ct_lower_backward_on run those between the steps. */
#ifndef CT_LOWERING_HOST_H
#define CT_LOWERING_HOST_H

#include "lowering/lowering.h"

void ct_lower_host_lower(const ct_conv_geom *g, ct_lowering t, int nb, const float *x, const float *w, float *ws);
void ct_lower_host_lift(const ct_conv_geom *g, ct_lowering t, int nb, float *ws, const float *b, float *y);
void ct_lower_host_lift_grad(const ct_conv_geom *g, ct_lowering t, int nb, const float *dy, float *ws);
void ct_lower_host_bias_grad(const ct_conv_geom *g, ct_lowering t, int nb, const float *dy, const float *ws,
                             float *db);
void ct_lower_host_lower_grad(const ct_conv_geom *g, ct_lowering t, int nb, float *ws, float *dx, float *dw);

/* Winograd F(2x2, 3x3)'s transforms (winograd.c; the layout is there): input tiles into V,
 * the kernel into U, M into y (+ bias), dy into dM, dV into dx (overwritten), dU into dw (+=).
 * scratch: ct_lower_wino_scratch floats. */
void ct_wino_lower(const ct_conv_geom *g, int nb, const float *x, float *V, float *scratch);
void ct_wino_kernel(const ct_conv_geom *g, const float *w, float *U);
void ct_wino_lift(const ct_conv_geom *g, int nb, const float *M, const float *b, float *y, float *scratch);
void ct_wino_lift_grad(const ct_conv_geom *g, int nb, const float *dy, float *dM, float *scratch);
void ct_wino_lower_grad(const ct_conv_geom *g, int nb, const float *dV, float *dx, float *scratch);
void ct_wino_kernel_grad(const ct_conv_geom *g, const float *dU, float *dw);

#endif
