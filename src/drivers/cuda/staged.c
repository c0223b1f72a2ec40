/* Lowering types 2, 3 and WINOGRAD on the CUDA device, staged: the step's buffers come to the
 * host, the CPU driver's step runs there, and what it wrote goes back. Correct (the CPU's own
 * arithmetic) and slow (the copies), so they are the fallback, not the path: the GPU's
 * calibrated rates make the cost model pick type 1 or the 1x1 path for nearly every layer, and
 * a prototxt that forces another type still trains. The copies are the driver's own, inside one
 * entry, not the storage layer's (which counts the copies between entries). Buffers a step is
 * passed twice share one host copy, so a step that works in place stays in place. */
#include "drivers/cpu/kernels.h"
#include "drivers/cuda/entry.h"

typedef struct stage {
  const void *dev; /* NULL: the caller passed none */
  size_t floats;
  bool down, up; /* the CPU's step reads it / writes it */
  int same;      /* index of an earlier buffer with the same device pointer, or -1 */
  float *host;
} stage;

/* Host copies of b[0..n) in the driver's pinned staging, downloaded where read. */
static ct_status stage_in(cuda_ctx *c, stage *b, int n, const char *what) {
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    b[i].same = -1;
    for (int j = 0; j < i && b[i].dev; j++)
      if (b[j].dev == b[i].dev && b[j].same < 0) {
        b[i].same = j;
        b[j].down = b[j].down || b[i].down;
        b[j].up = b[j].up || b[i].up;
        if (b[i].floats > b[j].floats) b[j].floats = b[i].floats;
        break;
      }
    if (b[i].dev && b[i].same < 0) total += (b[i].floats + 15) & ~(size_t)15;
  }
  float *host = NULL;
  CT_TRY(ct_cuda_host(c, total * sizeof(float) + 64, (void **)&host));
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < n; i++) {
    if (!b[i].dev || b[i].same >= 0) continue;
    b[i].host = host;
    host += (b[i].floats + 15) & ~(size_t)15;
  }
  for (int i = 0; i < n; i++) {
    if (b[i].same >= 0) b[i].host = b[b[i].same].host;
    if (b[i].dev && b[i].same < 0 && b[i].down && b[i].floats && e == cudaSuccess)
      e = cudaMemcpyAsync(b[i].host, b[i].dev, b[i].floats * sizeof(float), cudaMemcpyDeviceToHost, c->stream);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
  return e == cudaSuccess ? CT_OK : ct_cuda_fail(c, e, what);
}

/* What the CPU's step wrote, back to the device; the staging is free again when this returns. */
static ct_status stage_out(cuda_ctx *c, const stage *b, int n, const char *what) {
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < n && e == cudaSuccess; i++)
    if (b[i].dev && b[i].same < 0 && b[i].up && b[i].floats)
      e = cudaMemcpyAsync((void *)b[i].dev, b[i].host, b[i].floats * sizeof(float), cudaMemcpyHostToDevice,
                          c->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
  return e == cudaSuccess ? CT_OK : ct_cuda_fail(c, e, what);
}

/* in0/in1/out0/out1 by step: LOWER x, w; LIFT b, -, y; LIFT_GRAD dy; LOWER_GRAD -, -, dx, dw.
 * (The bias gradient of these types reads dy itself: cuda/driver_nn.c sums it on the device.) */
ct_status ct_cuda_staged_conv(cuda_ctx *c, int step, const ct_conv_geom *g, ct_lowering t, int nb, const float *in0,
                              const float *in1, float *ws, float *out0, float *out1) {
  const size_t X = (size_t)nb * g->C * g->H * g->W, Y = (size_t)nb * g->K * g->OH * g->OW,
               Wn = (size_t)g->K * (g->C / g->G) * g->kh * g->kw, WS = ct_lower_workspace(g, t, nb), B = (size_t)g->K;
  /* b[0], b[1]: the inputs; b[2]: the workspace; b[3], b[4]: the outputs */
  stage b[5] = {{in0, 0, true, false, -1, NULL}, {in1, 0, true, false, -1, NULL}, {ws, WS, true, true, -1, NULL},
                {out0, 0, false, true, -1, NULL}, {out1, 0, true, true, -1, NULL}};
  switch (step) {
    case CT_CUDA_LOWER: b[0].floats = X, b[1].floats = Wn; break;
    case CT_CUDA_LIFT: b[0].floats = B, b[3].floats = Y; break;
    case CT_CUDA_LIFT_GRAD: b[0].floats = Y; break;
    default: b[3].floats = X, b[4].floats = Wn; break;
  }
  CT_TRY(stage_in(c, b, 5, "staged convolution (download)"));
  const ct_driver *cpu = ct_driver_cpu();
  float *h0 = in0 ? b[0].host : NULL, *h1 = in1 ? b[1].host : NULL, *hw = b[2].host;
  float *o0 = out0 ? b[3].host : NULL, *o1 = out1 ? b[4].host : NULL;
  switch (step) {
    case CT_CUDA_LOWER: ct_cpu_conv_lower(cpu, g, t, nb, h0, h1, hw); break;
    case CT_CUDA_LIFT: ct_cpu_conv_lift(cpu, g, t, nb, hw, h0, o0); break;
    case CT_CUDA_LIFT_GRAD: ct_cpu_conv_lift_grad(cpu, g, t, nb, h0, hw); break;
    default: ct_cpu_conv_lower_grad(cpu, g, t, nb, hw, o0, o1); break;
  }
  /* the staging is reused by the next call: stage_out waits for the uploads */
  return stage_out(c, b, 5, "staged convolution (upload)");
}
