/* Convolution (Caffe's "Convolution"): 2-D, with groups, padding, stride and dilation.
 *
 * The layer runs CcT's batched lowering (src/lowering/): each partition of the layer's plan
 * lowers its images at once and runs one GEMM per group on its own driver (on the CPU, a
 * single-threaded BLAS per partition). The partitions' weight gradients are summed in a fixed
 * order by the executor (layers/exec.c), so a run is reproducible. The lowering type comes from
 * the cost model unless the prototxt's `lowering:` names one. The naive loops stay as the
 * reference the tests hold every type to. */
#include "layers/conv.h"

#include <stdlib.h>
#include <string.h>

#include "core/filler.h"
#include "layers/layer.h"

/* ---------------------------------------------------------------- reference loops */

void ct_conv_forward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *b, float *y) {
  const int Cg = g->C / g->G, Kg = g->K / g->G;
  for (int n = 0; n < g->N; n++)
    for (int k = 0; k < g->K; k++) {
      const int c0 = (k / Kg) * Cg;
      for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
          double acc = b ? b[k] : 0.0;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < g->kh; i++) {
              int ih = oh * g->sh - g->ph + i * g->dh;
              if (ih < 0 || ih >= g->H) continue;
              for (int j = 0; j < g->kw; j++) {
                int iw = ow * g->sw - g->pw + j * g->dw;
                if (iw < 0 || iw >= g->W) continue;
                acc += (double)w[((size_t)(k * Cg + c) * g->kh + i) * g->kw + j] *
                       x[(((size_t)n * g->C + c0 + c) * g->H + ih) * g->W + iw];
              }
            }
          y[(((size_t)n * g->K + k) * g->OH + oh) * g->OW + ow] = (float)acc;
        }
    }
}

void ct_conv_backward_naive(const ct_conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                            float *dw, float *db) {
  const int Cg = g->C / g->G, Kg = g->K / g->G;
  if (dx) memset(dx, 0, (size_t)g->N * g->C * g->H * g->W * sizeof(float));
  for (int n = 0; n < g->N; n++)
    for (int k = 0; k < g->K; k++) {
      const int c0 = (k / Kg) * Cg;
      for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
          float d = dy[(((size_t)n * g->K + k) * g->OH + oh) * g->OW + ow];
          if (db) db[k] += d;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < g->kh; i++) {
              int ih = oh * g->sh - g->ph + i * g->dh;
              if (ih < 0 || ih >= g->H) continue;
              for (int j = 0; j < g->kw; j++) {
                int iw = ow * g->sw - g->pw + j * g->dw;
                if (iw < 0 || iw >= g->W) continue;
                size_t wi = ((size_t)(k * Cg + c) * g->kh + i) * g->kw + j;
                size_t xi = (((size_t)n * g->C + c0 + c) * g->H + ih) * g->W + iw;
                if (dw) dw[wi] += d * x[xi];
                if (dx) dx[xi] += d * w[wi];
              }
            }
        }
    }
}

/* ---------------------------------------------------------------- the layer */

/* What a partition's workspace holds after its forward: the lowering of one bottom, of that
 * data and those weights. Backward reuses it (CcT) instead of lowering again. */
typedef struct lowered {
  int bottom; /* -1: nothing reusable */
  const float *x, *w;
} lowered;

typedef struct conv_priv {
  ct_conv_geom geom; /* N, H, W, OH, OW refreshed by reshape */
  bool bias;
  ct_lowering forced; /* from the prototxt, or AUTO */
  ct_lowering type;   /* in use for the current shape */
  int chunk;          /* images per lowering call: a partition's, unless its workspace would pass
                         the cap (conv_workspace_cap), then fewer, in turn */
  ct_part_scratch ws; /* each partition's lowering workspace, on its driver */
  lowered low[CT_MAX_PARTITIONS];
} conv_priv;

static const Caffe__ConvolutionParameter default_param = CAFFE__CONVOLUTION_PARAMETER__INIT;

/* Caffe's rule for pad/stride/dilation-like repeated fields: none (default), one for both
 * spatial axes, or one per axis. */
static ct_status pick_dims(const ct_layer *l, const char *what, size_t n, const uint32_t *v, int dflt, int out[2],
                           ct_error *err) {
  if (n > 2)
    return ct_layer_fail(l, err, CT_EINVAL,
                         "%s must be specified once, or once per spatial dimension (%s specified %zu times; 2 "
                         "spatial dims)",
                         what, what, n);
  for (int i = 0; i < 2; i++) out[i] = n == 0 ? dflt : (int)v[n == 1 ? 0 : i];
  return CT_OK;
}

/* The window (kernel, stride, pad, dilation) and, with `outputs`, num_output and group. */
static ct_status read_param(const ct_layer *l, bool outputs, ct_conv_geom *out, ct_error *err) {
  const Caffe__ConvolutionParameter *p = l->lp->convolution_param ? l->lp->convolution_param : &default_param;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  int axis = ct_tensor_axis(x, p->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", p->axis,
                         ct_tensor_shape_str(x, buf, sizeof buf));
  if (axis != 1)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED, "only axis 1 (channels after the batch) is supported, got %d",
                         p->axis);
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                         "only 2-D convolution is supported: bottom must have 4 axes (N, C, H, W), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  ct_conv_geom g = {0};
  int kernel[2], stride[2], pad[2], dil[2];
  if (p->has_kernel_h || p->has_kernel_w) {
    if (p->n_kernel_size)
      return ct_layer_fail(l, err, CT_EINVAL, "either kernel_size or kernel_h/w should be specified; not both");
    if (!p->has_kernel_h || !p->has_kernel_w)
      return ct_layer_fail(l, err, CT_EINVAL, "kernel_h and kernel_w must be given together");
    kernel[0] = (int)p->kernel_h;
    kernel[1] = (int)p->kernel_w;
  } else {
    if (p->n_kernel_size == 0)
      return ct_layer_fail(l, err, CT_EINVAL, "kernel_size (or kernel_h and kernel_w) must be specified");
    CT_TRY(pick_dims(l, "kernel_size", p->n_kernel_size, p->kernel_size, 0, kernel, err));
  }
  if (p->has_stride_h || p->has_stride_w) {
    if (p->n_stride)
      return ct_layer_fail(l, err, CT_EINVAL, "either stride or stride_h/w should be specified; not both");
    if (!p->has_stride_h || !p->has_stride_w)
      return ct_layer_fail(l, err, CT_EINVAL, "stride_h and stride_w must be given together");
    stride[0] = (int)p->stride_h;
    stride[1] = (int)p->stride_w;
  } else {
    CT_TRY(pick_dims(l, "stride", p->n_stride, p->stride, 1, stride, err));
  }
  if (p->has_pad_h || p->has_pad_w) {
    if (p->n_pad) return ct_layer_fail(l, err, CT_EINVAL, "either pad or pad_h/w should be specified; not both");
    if (!p->has_pad_h || !p->has_pad_w)
      return ct_layer_fail(l, err, CT_EINVAL, "pad_h and pad_w must be given together");
    pad[0] = (int)p->pad_h;
    pad[1] = (int)p->pad_w;
  } else {
    CT_TRY(pick_dims(l, "pad", p->n_pad, p->pad, 0, pad, err));
  }
  CT_TRY(pick_dims(l, "dilation", p->n_dilation, p->dilation, 1, dil, err));
  for (int i = 0; i < 2; i++) {
    /* uint32 fields read as int: anything past 2^16 is nonsense for an image anyway, and a value
     * past INT_MAX reads negative: say "too large", not "must be nonzero" (issue 23) */
    const struct { const char *name; int v; } big[] = {{"kernel size", kernel[i]}, {"stride", stride[i]},
                                                      {"dilation", dil[i]}, {"pad", pad[i]}};
    for (int k = 0; k < 4; k++)
      if (big[k].v < 0 || big[k].v > 65535)
        return ct_layer_fail(l, err, CT_EINVAL, "%s %u is too large (at most 65535)", big[k].name, (unsigned)big[k].v);
    if (kernel[i] <= 0 || kernel[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "filter dimensions must be nonzero (and sane), got %d x %d",
                           kernel[0], kernel[1]);
    if (stride[i] <= 0 || stride[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "stride dimensions must be nonzero, got %d x %d", stride[0],
                           stride[1]);
    if (dil[i] <= 0 || dil[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "dilation dimensions must be nonzero, got %d x %d", dil[0], dil[1]);
    if (pad[i] < 0 || pad[i] > 65535)
      return ct_layer_fail(l, err, CT_EINVAL, "pad %d x %d is out of range", pad[0], pad[1]);
  }
  g.kh = kernel[0], g.kw = kernel[1], g.sh = stride[0], g.sw = stride[1];
  g.ph = pad[0], g.pw = pad[1], g.dh = dil[0], g.dw = dil[1];
  g.C = x->shape[1];
  if (!outputs) {
    g.K = g.G = 1;
    *out = g;
    return CT_OK;
  }
  if (p->num_output > (1u << 24))
    return ct_layer_fail(l, err, CT_EINVAL, "num_output %u is too large (at most %u)", p->num_output, 1u << 24);
  if (!p->has_num_output || p->num_output == 0)
    return ct_layer_fail(l, err, CT_EINVAL, "num_output must be specified and positive");
  if (p->group == 0 || p->group > (1u << 24)) return ct_layer_fail(l, err, CT_EINVAL, "group must be positive");
  g.K = (int)p->num_output;
  g.G = (int)p->group;
  if (g.C % g.G)
    return ct_layer_fail(l, err, CT_EINVAL, "the number of input channels (%d) must be a multiple of group (%d)", g.C,
                         g.G);
  if (g.K % g.G)
    return ct_layer_fail(l, err, CT_EINVAL, "num_output (%d) must be a multiple of group (%d)", g.K, g.G);
  *out = g;
  return CT_OK;
}

ct_status ct_conv_read_param(const ct_layer *l, ct_conv_geom *g, ct_error *err) { return read_param(l, true, g, err); }

ct_status ct_conv_read_window(const ct_layer *l, ct_conv_geom *g, ct_error *err) { return read_param(l, false, g, err); }

ct_status ct_conv_read_lowering(const ct_layer *l, const ct_conv_geom *gp, ct_lowering *forced, ct_error *err) {
  const ct_conv_geom g = *gp;
  switch (l->lp->lowering) {
    case CAFFE__LOWERING__LOWERING_AUTO: *forced = CT_LOWER_AUTO; break;
    case CAFFE__LOWERING__TYPE1: *forced = CT_LOWER_TYPE1; break;
    case CAFFE__LOWERING__TYPE2: *forced = CT_LOWER_TYPE2; break;
    case CAFFE__LOWERING__TYPE3: *forced = CT_LOWER_TYPE3; break;
    case CAFFE__LOWERING__WINOGRAD:
    case CAFFE__LOWERING__WINOGRAD4: {
      const bool four = l->lp->lowering == CAFFE__LOWERING__WINOGRAD4;
      if (!ct_lower_wino_applies(&g))
        return ct_layer_fail(l, err, CT_EINVAL,
                             "lowering: %s needs a 3x3 kernel with stride 1 and dilation 1; this one is %dx%d "
                             "with stride %dx%d and dilation %dx%d",
                             four ? "WINOGRAD4" : "WINOGRAD", g.kh, g.kw, g.sh, g.sw, g.dh, g.dw);
      *forced = four ? CT_LOWER_WINOGRAD4 : CT_LOWER_WINOGRAD;
      break;
    }
    case CAFFE__LOWERING__DIRECT:
      if (!ct_lower_direct_applies(&g))
        return ct_layer_fail(l, err, CT_EINVAL, "lowering: DIRECT takes kernels up to %dx%d; this one is %dx%d",
                             CT_DIRECT_MAX_KERNEL, CT_DIRECT_MAX_KERNEL, g.kh, g.kw);
      *forced = CT_LOWER_DIRECT;
      break;
    default:
      return ct_layer_fail(l, err, CT_EINVAL, "lowering must be TYPE1, TYPE2, TYPE3, WINOGRAD, WINOGRAD4 or DIRECT");
  }
  return CT_OK;
}

static ct_status conv_setup(ct_layer *l, ct_error *err) {
  if (l->nbottom != l->ntop)
    return ct_layer_fail(l, err, CT_EINVAL, "needs as many tops as bottoms (got %d bottoms, %d tops)", l->nbottom,
                         l->ntop);
  ct_conv_geom g;
  CT_TRY(ct_conv_read_param(l, &g, err));
  const Caffe__ConvolutionParameter *p = l->lp->convolution_param ? l->lp->convolution_param : &default_param;
  conv_priv *cp = calloc(1, sizeof *cp);
  if (!cp) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = cp;
  cp->geom = g;
  cp->bias = p->bias_term;
  CT_TRY(ct_conv_read_lowering(l, &g, &cp->forced, err));
  CT_TRY(ct_layer_alloc_blobs(l, cp->bias ? 2 : 1, err));
  int wshape[4] = {g.K, g.C / g.G, g.kh, g.kw};
  CT_TRY(ct_tensor_reshape(l->blobs[0], 4, wshape, err));
  if (ct_fill(p->weight_filler, l->blobs[0], &l->rng, "weight_filler", err))
    return ct_error_prefix(err, "layer \"%s\" (Convolution)", l->name);
  if (cp->bias) {
    CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &g.K, err));
    if (ct_fill(p->bias_filler, l->blobs[1], &l->rng, "bias_filler", err))
      return ct_error_prefix(err, "layer \"%s\" (Convolution)", l->name);
  }
  return CT_OK;
}

/* The lowering's switches in the environment (lowering.h), and the CPU driver's CT_PW_KERNEL
 * (cpu/pointwise.c): refused by name unless they hold what they may, rather than read as their
 * default. */
static ct_status check_switches(const ct_layer *l, ct_error *err) {
  static const char *const flags[] = {"CT_WINOGRAD", "CT_WINOGRAD4", "CT_DIRECT", "CT_WINO_BLOCKED", "CT_PW_KERNEL"};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    const char *e = getenv(flags[i]);
    if (e && *e && strcmp(e, "0") && strcmp(e, "1"))
      return ct_layer_fail(l, err, CT_EINVAL, "%s=%s: expected 0 or 1", flags[i], e);
  }
  const char *e = getenv("CT_WINO_BLOCK_TILES");
  if (e && *e) {
    char *end;
    const long v = strtol(e, &end, 10);
    if (*end || v <= 0)
      return ct_layer_fail(l, err, CT_EINVAL, "CT_WINO_BLOCK_TILES=%s: expected a positive number of tiles", e);
  }
  return CT_OK;
}

/* The most floats one partition's lowering workspace may take: CT_CONV_WORKSPACE_MB in the
 * environment (megabytes, fractions allowed), else CT_LOWER_MAX_WORKSPACE (1 GiB). */
static ct_status conv_workspace_cap(const ct_layer *l, size_t *cap, ct_error *err) {
  CT_TRY(check_switches(l, err));
  const char *e = getenv("CT_CONV_WORKSPACE_MB");
  *cap = CT_LOWER_MAX_WORKSPACE;
  if (!e || !*e) return CT_OK;
  char *end;
  double mb = strtod(e, &end);
  if (*end || !(mb > 0) || mb > 1e9)
    return ct_layer_fail(l, err, CT_EINVAL, "CT_CONV_WORKSPACE_MB=%s: expected a positive number of megabytes", e);
  double floats = mb * 1024 * 1024 / sizeof(float);
  *cap = floats < 1 ? 1 : (size_t)floats;
  return CT_OK;
}

/* The floats the partitions' drivers need for type t (the CPU's blocked WINOGRAD needs less
 * than a driver that runs the staged steps): the most any of them needs. */
static size_t conv_workspace_on(const ct_layer *l, const ct_conv_geom *g, ct_lowering t, int nb) {
  size_t most = 0;
  for (int i = 0; i < l->plan.n; i++) {
    const size_t f = ct_lower_workspace_on(l->plan.part[i].d, g, t, nb);
    if (f > most) most = f;
  }
  return l->plan.n ? most : ct_lower_workspace_on(ct_layer_driver(l), g, t, nb);
}

ct_status ct_conv_fit_workspace(const ct_layer *l, const ct_conv_geom *g, ct_lowering forced, ct_lowering *type,
                                int *chunk, ct_part_scratch *ws, ct_error *err) {
  int nbmax = 1;
  for (int i = 0; i < l->plan.n; i++)
    if (l->plan.part[i].end - l->plan.part[i].begin > nbmax) nbmax = l->plan.part[i].end - l->plan.part[i].begin;
  const ct_driver *d = ct_layer_driver(l);
  size_t cap;
  CT_TRY(conv_workspace_cap(l, &cap, err));
  /* a partition's images in one lowering when a type fits the cap; else in turns of half as
   * many, then a quarter, ... (one image at least, whatever it takes) */
  double gflops = 0, gbytes = 0;
  if (forced == CT_LOWER_AUTO) d->ops->calibration(d, &gflops, &gbytes);
  /* The CUDA driver runs type 1, the 1x1 path and DIRECT as kernels and stages the other types
   * through the host (drivers/cuda/staged.c: correct, slow), so a plan with a GPU picks among
   * those three unless the prototxt forces a type. */
  bool gpu = false;
  for (int i = 0; i < l->plan.n; i++) gpu |= !strcmp(l->plan.part[i].d->device, "cuda");
  /* WINOGRAD4 runs where every partition's driver has conv_wino4_block (the CPU's, emu's): the
   * model picks among the others on any other plan, and forcing it there is refused */
  const char *not4 = ct_lower_runs_on(d, CT_LOWER_WINOGRAD4) ? NULL : d->name;
  for (int i = 0; i < l->plan.n && !not4; i++)
    if (!ct_lower_runs_on(l->plan.part[i].d, CT_LOWER_WINOGRAD4)) not4 = l->plan.part[i].d->name;
  const bool wino4 = !not4;
  if (forced == CT_LOWER_WINOGRAD4 && not4)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                         "lowering: WINOGRAD4 runs on the CPU driver only, and a partition of this layer is on %s "
                         "(WINOGRAD runs everywhere)",
                         not4);
  for (*chunk = nbmax;; *chunk = (*chunk + 1) / 2) {
    *type = forced != CT_LOWER_AUTO ? forced : ct_lower_choose_for(g, *chunk, gflops, gbytes, cap, wino4);
    if (gpu && forced == CT_LOWER_AUTO && *type != CT_LOWER_POINTWISE && *type != CT_LOWER_DIRECT)
      *type = CT_LOWER_TYPE1;
    if (*chunk == 1 || conv_workspace_on(l, g, *type, *chunk) <= cap) break;
  }
  size_t floats = (conv_workspace_on(l, g, *type, *chunk) + 15) & ~(size_t)15;
  /* blocked WINOGRAD (and WINOGRAD4) transforms the input again in backward (but where a
   * partition is one block) whatever its workspace held, and its kernel's transform is cheap: a
   * private workspace would save little for its U and dU (ResNet-50 b16: 510 MB of them) */
  bool blocked = ct_lower_blocked_on(d, *type);
  for (int i = 0; i < l->plan.n; i++) blocked &= ct_lower_blocked_on(l->plan.part[i].d, *type);
  ws->shared_only = blocked;
  return ct_part_workspace_reserve(ws, l, floats * sizeof(float), err); /* shared across layers */
}

static ct_status conv_reshape(ct_layer *l, ct_error *err) {
  conv_priv *cp = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128], buf2[128];
  if (x->naxes != 4)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have 4 axes (N, C, H, W), got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  for (int i = 1; i < l->nbottom; i++)
    if (!ct_tensor_same_shape(l->bottom[i], x))
      return ct_layer_fail(l, err, CT_ESHAPE, "all bottoms must have the same shape: bottom 0 is %s, bottom %d is %s",
                           ct_tensor_shape_str(x, buf, sizeof buf), i,
                           ct_tensor_shape_str(l->bottom[i], buf2, sizeof buf2));
  ct_conv_geom g = cp->geom;
  if (x->shape[1] != g.C)
    return ct_layer_fail(l, err, CT_ESHAPE, "input size incompatible with convolution kernel: %d channels, expected %d",
                         x->shape[1], g.C);
  g.N = x->shape[0];
  g.H = x->shape[2];
  g.W = x->shape[3];
  if (!ct_conv_geom_finish(&g))
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "the kernel %dx%d (dilation %dx%d) does not fit the input %dx%d padded by %dx%d", g.kh, g.kw,
                         g.dh, g.dw, g.H, g.W, g.ph, g.pw);
  cp->geom = g;
  for (int i = 0; i < l->ntop; i++) CT_TRY(ct_tensor_reshape4(l->top[i], g.N, g.K, g.OH, g.OW, err));
  for (int i = 0; i < CT_MAX_PARTITIONS; i++) cp->low[i].bottom = -1; /* the partitions may have moved */
  return ct_conv_fit_workspace(l, &g, cp->forced, &cp->type, &cp->chunk, &cp->ws, err);
}

static ct_status conv_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  conv_priv *cp = l->priv;
  const ct_conv_geom *g = &cp->geom;
  const ct_driver *d = p->d;
  const float *w, *b = NULL;
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  if (cp->bias) CT_TRY(ct_read_param(l, p, 1, &b, err));
  float *ws = ct_part_scratch_of(&cp->ws, p);
  for (int i = 0; i < l->nbottom; i++) {
    const float *x;
    float *y;
    CT_TRY(ct_read(l, p, l->bottom[i], &x, err));
    CT_TRY(ct_write(l, p, l->top[i], &y, err));
    for (int n0 = p->begin; n0 < p->end; n0 += cp->chunk) {
      const int nb = p->end - n0 < cp->chunk ? p->end - n0 : cp->chunk;
      CT_TRY(ct_lower_forward_on(d, g, cp->type, nb, x + (size_t)n0 * g->C * g->H * g->W, w, b,
                                 y + (size_t)n0 * g->K * g->OH * g->OW, ws));
    }
    cp->low[p->index] = (lowered){i, x, w};
  }
  return CT_OK;
}

static ct_status conv_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  conv_priv *cp = l->priv;
  const ct_conv_geom *g = &cp->geom;
  const ct_driver *d = p->d;
  const float *w;
  float *dw = NULL, *db = NULL;
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  if (l->param_propagate_down[0]) CT_TRY(ct_part_param_grad(l, p, 0, &dw, err));
  if (cp->bias && l->param_propagate_down[1]) CT_TRY(ct_part_param_grad(l, p, 1, &db, err));
  float *ws = ct_part_scratch_of(&cp->ws, p);
  lowered *low = &cp->low[p->index];
  /* the last bottom first: its forward lowering is still in the workspace */
  for (int i = l->nbottom - 1; i >= 0; i--) {
    if (!l->propagate_down[i] && !dw && !db) continue;
    const float *x, *dy;
    float *dx = NULL;
    CT_TRY(ct_read(l, p, l->bottom[i], &x, err));
    CT_TRY(ct_read_diff(l, p, l->top[i], &dy, err));
    if (l->propagate_down[i]) CT_TRY(ct_write_diff(l, p, l->bottom[i], &dx, err));
    /* the forward's lowering is still there when the partition took one turn; in turns, the
     * workspace holds only the last one's, and each turn lowers again (dw, db add up turn by
     * turn) */
    const bool reuse = p->end - p->begin <= cp->chunk && low->bottom == i && low->x == x && low->w == w &&
                       ct_part_scratch_kept(&cp->ws, p);
    for (int n0 = p->begin; n0 < p->end; n0 += cp->chunk) {
      const int nb = p->end - n0 < cp->chunk ? p->end - n0 : cp->chunk;
      size_t xoff = (size_t)n0 * g->C * g->H * g->W, yoff = (size_t)n0 * g->K * g->OH * g->OW;
      CT_TRY(ct_lower_backward_on(d, g, cp->type, nb, x + xoff, w, dy + yoff, dx ? dx + xoff : NULL, dw, db, ws,
                                  reuse));
    }
    low->bottom = -1; /* backward overwrote the workspace */
  }
  return CT_OK;
}

int ct_conv_layer_turn_images(const ct_layer *l) { return ((const conv_priv *)l->priv)->chunk; }

static double conv_flops(const ct_layer *l) {
  const conv_priv *cp = l->priv;
  return ct_conv_flops(&cp->geom, cp->geom.N) * l->nbottom;
}

static const char *conv_describe(const ct_layer *l) { return ct_lowering_name(((const conv_priv *)l->priv)->type); }

static void conv_destroy(ct_layer *l) {
  conv_priv *cp = l->priv;
  if (cp) ct_part_scratch_free(&cp->ws);
  free(cp);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Convolution = {
    .type = "Convolution",
    .min_bottom = 1,
    .max_bottom = -1,
    .min_top = 1,
    .max_top = -1,
    .has_backward = true,
    .splits = ct_layer_splits_always,
    .gains = true,
    .kind = CT_WORK_GEMM,
    .setup = conv_setup,
    .reshape = conv_reshape,
    .forward = conv_forward,
    .backward = conv_backward,
    .destroy = conv_destroy,
    .flops = conv_flops,
    .describe = conv_describe,
};
