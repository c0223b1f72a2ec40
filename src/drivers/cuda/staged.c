/* Lowering types 2, 3 and WINOGRAD on the CUDA device, staged: the step's buffers come to the
 * host, the CPU driver's step runs there, and what it wrote goes back. Correct (the CPU's own
 * arithmetic) and slow (the copies), so they are the fallback, not the path: the GPU's
 * calibrated rates make the cost model pick type 1 or the 1x1 path for nearly every layer, and
 * a prototxt that forces another type still trains. The copies are the driver's own, inside one
 * entry, not the storage layer's (which counts the copies between entries). */
#include <stdlib.h>
#include <string.h>

#include "drivers/cpu/kernels.h"
#include "drivers/cuda/entry.h"

typedef struct staged_buf {
  void *dev;
  size_t floats;
  bool down, up;
  float *host;
} staged_buf;

/* in0/in1/out0/out1 by step: LOWER x, w; LIFT b, -, y; LIFT_GRAD dy; BIAS_GRAD dy, -, db;
 * LOWER_GRAD -, -, dx, dw. */
ct_status ct_cuda_staged_conv(cuda_ctx *c, int step, const ct_conv_geom *g, ct_lowering t, int nb, const float *in0,
                              const float *in1, float *ws, float *out0, float *out1) {
  const size_t X = (size_t)nb * g->C * g->H * g->W, Y = (size_t)nb * g->K * g->OH * g->OW,
               Wn = (size_t)g->K * (g->C / g->G) * g->kh * g->kw, WS = ct_lower_workspace(g, t, nb), B = (size_t)g->K;
  staged_buf b[4];
  int nbuf = 0;
#define STAGE(p, n, dn, u) b[nbuf++] = (staged_buf){(void *)(p), (n), (dn), (u), NULL}
  switch (step) {
    case CT_CUDA_LOWER: STAGE(in0, X, true, false), STAGE(in1, Wn, true, false), STAGE(ws, WS, true, true); break;
    case CT_CUDA_LIFT:
      if (in0) STAGE(in0, B, true, false);
      STAGE(ws, WS, true, true), STAGE(out0, Y, false, true);
      break;
    case CT_CUDA_LIFT_GRAD: STAGE(in0, Y, true, false), STAGE(ws, WS, true, true); break;
    case CT_CUDA_BIAS_GRAD: STAGE(in0, Y, true, false), STAGE(ws, WS, true, false), STAGE(out0, B, true, true); break;
    default:
      STAGE(ws, WS, true, true);
      if (out0) STAGE(out0, X, false, true);
      if (out1) STAGE(out1, Wn, true, true);
      break;
  }
#undef STAGE
  size_t total = 0;
  for (int i = 0; i < nbuf; i++) total += (b[i].floats + 15) & ~(size_t)15;
  float *host = NULL;
  CT_TRY(ct_cuda_host(c, total * sizeof(float) + 64, (void **)&host));
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < nbuf; i++) {
    b[i].host = host;
    host += (b[i].floats + 15) & ~(size_t)15;
    if (b[i].down && b[i].floats && e == cudaSuccess)
      e = cudaMemcpyAsync(b[i].host, b[i].dev, b[i].floats * sizeof(float), cudaMemcpyDeviceToHost, c->stream);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
  if (e != cudaSuccess) return ct_cuda_fail(c, e, "staged convolution (download)");
  const ct_driver *cpu = ct_driver_cpu();
  switch (step) {
    case CT_CUDA_LOWER: ct_cpu_conv_lower(cpu, g, t, nb, b[0].host, b[1].host, b[2].host); break;
    case CT_CUDA_LIFT:
      if (in0)
        ct_cpu_conv_lift(cpu, g, t, nb, b[1].host, b[0].host, b[2].host);
      else
        ct_cpu_conv_lift(cpu, g, t, nb, b[0].host, NULL, b[1].host);
      break;
    case CT_CUDA_LIFT_GRAD: ct_cpu_conv_lift_grad(cpu, g, t, nb, b[0].host, b[1].host); break;
    case CT_CUDA_BIAS_GRAD: ct_cpu_conv_bias_grad(cpu, g, t, nb, b[0].host, b[1].host, b[2].host); break;
    default: {
      float *dx = out0 ? b[1].host : NULL, *dw = out1 ? b[out0 ? 2 : 1].host : NULL;
      ct_cpu_conv_lower_grad(cpu, g, t, nb, b[0].host, dx, dw);
      break;
    }
  }
  for (int i = 0; i < nbuf && e == cudaSuccess; i++)
    if (b[i].up && b[i].floats)
      e = cudaMemcpyAsync(b[i].dev, b[i].host, b[i].floats * sizeof(float), cudaMemcpyHostToDevice, c->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream); /* the staging is reused by the next call */
  return e == cudaSuccess ? CT_OK : ct_cuda_fail(c, e, "staged convolution (upload)");
}
