/* Entries without CUDA kernels yet, staged through the host like cuda/staged.c's lowering types:
 * DIRECT convolution (depthwise and many-group layers) and the fused BatchNorm -> Scale -> ReLU
 * chain. Each buffer an entry reads comes to the host, the CPU driver's entry runs there, and
 * what it wrote goes back; buffers the caller passes twice (x as y, dy as dx) share one host copy,
 * so in-place calls stay in place. Correct (the CPU's arithmetic, bit for bit) and slow: the cost
 * model keeps DIRECT off a plan that has a GPU (conv.c), so on the GPU these run only where a
 * prototxt forces `lowering: DIRECT` or a net fuses a chain. */
#include <stdbool.h>

#include "drivers/cpu/kernels.h"
#include "drivers/cuda/entry.h"
#include "lowering/lowering.h"

typedef struct stage {
  const void *dev; /* NULL: the caller passed none */
  size_t floats;
  bool down, up;   /* the CPU's entry reads it / writes it */
  int same;        /* index of an earlier buffer with the same device pointer, or -1 */
  float *host;
} stage;

/* Host copies of b[0..n), downloaded where read. */
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

/* What the CPU's entry wrote, back to the device; the staging is free again when this returns. */
static ct_status stage_out(cuda_ctx *c, const stage *b, int n, const char *what) {
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < n && e == cudaSuccess; i++)
    if (b[i].dev && b[i].same < 0 && b[i].up && b[i].floats)
      e = cudaMemcpyAsync((void *)b[i].dev, b[i].host, b[i].floats * sizeof(float), cudaMemcpyHostToDevice,
                          c->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
  return e == cudaSuccess ? CT_OK : ct_cuda_fail(c, e, what);
}

#define H(k) (b[k].host)

static size_t x_floats(const ct_conv_geom *g, int nb) { return (size_t)nb * g->C * g->H * g->W; }
static size_t y_floats(const ct_conv_geom *g, int nb) { return (size_t)nb * g->K * g->OH * g->OW; }
static size_t w_floats(const ct_conv_geom *g) { return (size_t)g->K * (size_t)(g->C / g->G) * g->kh * g->kw; }

static ct_status cuda_conv_direct_forward(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                          const float *w, const float *bias, float *y, float *ws) {
  BEGIN("conv_direct_forward (staged)");
  stage b[] = {{x, x_floats(g, nb), true, false, 0, NULL},       {w, w_floats(g), true, false, 0, NULL},
               {bias, (size_t)g->K, true, false, 0, NULL},       {y, y_floats(g, nb), false, true, 0, NULL},
               {ws, ct_lower_direct_layout(g).scratch, false, false, 0, NULL}};
  CHECK_CT(stage_in(c, b, 5, what_));
  CHECK_CT(ct_cpu_conv_direct_forward(ct_driver_cpu(), g, nb, H(0), H(1), bias ? H(2) : NULL, H(3), H(4)));
  CHECK_CT(stage_out(c, b, 5, what_));
  END
}

static ct_status cuda_conv_direct_backward_data(const ct_driver *d, const ct_conv_geom *g, int nb, const float *w,
                                                const float *dy, float *dx, float *ws) {
  BEGIN("conv_direct_backward_data (staged)");
  stage b[] = {{w, w_floats(g), true, false, 0, NULL},
               {dy, y_floats(g, nb), true, false, 0, NULL},
               {dx, x_floats(g, nb), false, true, 0, NULL},
               {ws, ct_lower_direct_layout(g).scratch, false, false, 0, NULL}};
  CHECK_CT(stage_in(c, b, 4, what_));
  CHECK_CT(ct_cpu_conv_direct_backward_data(ct_driver_cpu(), g, nb, H(0), H(1), H(2), H(3)));
  CHECK_CT(stage_out(c, b, 4, what_));
  END
}

static ct_status cuda_conv_direct_backward_weight(const ct_driver *d, const ct_conv_geom *g, int nb, const float *x,
                                                  const float *dy, float *dw, float *db, float *ws) {
  BEGIN("conv_direct_backward_weight (staged)");
  stage b[] = {{x, x_floats(g, nb), true, false, 0, NULL},
               {dy, y_floats(g, nb), true, false, 0, NULL},
               {dw, w_floats(g), true, true, 0, NULL},
               {db, (size_t)g->K, true, true, 0, NULL},
               {ws, ct_lower_direct_layout(g).scratch, false, false, 0, NULL}};
  CHECK_CT(stage_in(c, b, 5, what_));
  CHECK_CT(ct_cpu_conv_direct_backward_weight(ct_driver_cpu(), g, nb, H(0), H(1), dw ? H(2) : NULL, db ? H(3) : NULL,
                                              H(4)));
  CHECK_CT(stage_out(c, b, 5, what_));
  END
}

static ct_status cuda_bn_chain_forward(const ct_driver *d, const ct_bn_chain *p, const float *x, float *y,
                                       float *xnorm, float *mean, float *std, float *run_mean, float *run_var,
                                       float *run_factor, const float *s, const float *bias) {
  BEGIN("bn_chain_forward (staged)");
  const size_t n = p->bn.N * p->bn.C * p->bn.S, C = p->bn.C;
  /* the statistics come down too: with stored statistics the entry may read what it does not write */
  stage b[] = {{x, n, true, false, 0, NULL},         {y, n, false, true, 0, NULL},
               {xnorm, n, false, true, 0, NULL},     {mean, C, true, true, 0, NULL},
               {std, C, true, true, 0, NULL},        {run_mean, C, true, true, 0, NULL},
               {run_var, C, true, true, 0, NULL},    {run_factor, 1, true, true, 0, NULL},
               {s, C, true, false, 0, NULL},         {bias, C, true, false, 0, NULL}};
  CHECK_CT(stage_in(c, b, 10, what_));
  CHECK_CT(ct_cpu_bn_chain_forward(ct_driver_cpu(), p, H(0), H(1), xnorm ? H(2) : NULL, mean ? H(3) : NULL,
                                   std ? H(4) : NULL, run_mean ? H(5) : NULL, run_var ? H(6) : NULL,
                                   run_factor ? H(7) : NULL, H(8), bias ? H(9) : NULL));
  CHECK_CT(stage_out(c, b, 10, what_));
  END
}

static ct_status cuda_bn_chain_backward(const ct_driver *d, const ct_bn_chain *p, const float *y, const float *dy,
                                        const float *xnorm, const float *std, const float *s, float *ds, float *db,
                                        float *dx, float *dz) {
  BEGIN("bn_chain_backward (staged)");
  const size_t n = p->bn.N * p->bn.C * p->bn.S, C = p->bn.C;
  stage b[] = {{y, n, true, false, 0, NULL},   {dy, n, true, false, 0, NULL}, {xnorm, n, true, false, 0, NULL},
               {std, C, true, false, 0, NULL}, {s, C, true, false, 0, NULL},  {ds, C, true, true, 0, NULL},
               {db, C, true, true, 0, NULL},   {dx, n, false, true, 0, NULL}, {dz, n, false, true, 0, NULL}};
  CHECK_CT(stage_in(c, b, 9, what_));
  CHECK_CT(ct_cpu_bn_chain_backward(ct_driver_cpu(), p, H(0), H(1), xnorm ? H(2) : NULL, std ? H(3) : NULL, H(4),
                                    ds ? H(5) : NULL, db ? H(6) : NULL, dx ? H(7) : NULL, dz ? H(8) : NULL));
  CHECK_CT(stage_out(c, b, 9, what_));
  END
}

void ct_cuda_staged_ops(ct_driver_ops *ops) {
  ops->conv_direct_forward = cuda_conv_direct_forward;
  ops->conv_direct_backward_data = cuda_conv_direct_backward_data;
  ops->conv_direct_backward_weight = cuda_conv_direct_backward_weight;
  ops->bn_chain_forward = cuda_bn_chain_forward;
  ops->bn_chain_backward = cuda_bn_chain_backward;
}
