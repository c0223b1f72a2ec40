/* The CPU driver's lowering steps: the device-independent loops of src/lowering/host.c, which
 * the CPU runs on its own memory as they are. */
#include "drivers/cpu/kernels.h"
#include "lowering/host.h"

void ct_cpu_conv_lower(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *x,
                       const float *w, float *ws) {
  (void)d;
  ct_lower_host_lower(g, t, nb, x, w, ws);
}

void ct_cpu_conv_lift(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                      const float *b, float *y) {
  (void)d;
  ct_lower_host_lift(g, t, nb, ws, b, y);
}

void ct_cpu_conv_lift_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                           float *ws) {
  (void)d;
  ct_lower_host_lift_grad(g, t, nb, dy, ws);
}

void ct_cpu_conv_bias_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, const float *dy,
                           const float *ws, float *db) {
  (void)d;
  ct_lower_host_bias_grad(g, t, nb, dy, ws, db);
}

void ct_cpu_conv_lower_grad(const ct_driver *d, const ct_conv_geom *g, ct_lowering t, int nb, float *ws,
                            float *dx, float *dw) {
  (void)d;
  ct_lower_host_lower_grad(g, t, nb, ws, dx, dw);
}
