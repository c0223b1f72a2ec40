/* Numerical gradient check of every layer with a backward pass, driven from the registry: a
 * layer type with a backward pass and no row below fails the suite. Every row runs three times:
 * on the CPU, on the emu device (its memory out of the host's reach), and split between the two
 * (cpu 0.4 + emu:0 0.6 of the batch, for layers that can split it).
 *
 * For each row: random bottoms, objective f = sum_t sum_i R_t[i] * top_t[i] with fixed random R;
 * the analytic gradient (top diffs = R, backward) is compared with central differences of f for
 * bottom elements and learnable blobs. The layer's rng is reseeded before every forward, so
 * stochastic layers (Dropout) draw the same mask each time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"
#include "layers/python.h"

/* The Python layer's C half (host access, reshape, learnable blobs added in setup, backward's
 * dispatch) checked without an interpreter: a stand-in runtime whose "class" computes
 * y = w * x^3 with one learnable scalar w. The Python half is py_python_layers.py's. */
static ct_status cube_setup(ct_layer *l, void **obj, ct_error *err) {
  *obj = l;
  if (l->nbottom != 1 || l->ntop != 1) return ct_layer_fail(l, err, CT_EINVAL, "the stand-in takes one bottom and top");
  int one = 1;
  ct_tensor *w;
  float *v;
  CT_TRY(ct_python_add_blob(l, 1, &one, &w, err));
  CT_TRY(ct_python_blob_host(l, w, CT_DATA, &v, err));
  v[0] = 0.7f;
  return CT_OK;
}

static ct_status cube_call(ct_layer *l, void *obj, ct_python_call what, ct_error *err) {
  (void)obj;
  ct_tensor *x = l->bottom[0], *y = l->top[0];
  if (what == CT_PY_RESHAPE) return ct_python_reshape(l, y, x->naxes, x->shape, err);
  float *xv, *yv, *w, *dy, *dx, *dw;
  CT_TRY(ct_python_blob_host(l, x, CT_DATA, &xv, err));
  CT_TRY(ct_python_blob_host(l, l->blobs[0], CT_DATA, &w, err));
  if (what == CT_PY_FORWARD) {
    CT_TRY(ct_python_blob_host(l, y, CT_DATA, &yv, err));
    for (size_t i = 0; i < x->count; i++) yv[i] = w[0] * xv[i] * xv[i] * xv[i];
    return CT_OK;
  }
  CT_TRY(ct_python_blob_host(l, y, CT_DIFF, &dy, err));
  if (l->param_propagate_down[0]) {
    CT_TRY(ct_python_blob_host(l, l->blobs[0], CT_DIFF, &dw, err));
    for (size_t i = 0; i < x->count; i++) dw[0] += dy[i] * xv[i] * xv[i] * xv[i];
  }
  if (l->propagate_down[0]) {
    CT_TRY(ct_python_blob_host(l, x, CT_DIFF, &dx, err));
    for (size_t i = 0; i < x->count; i++) dx[i] = dy[i] * 3.0f * w[0] * xv[i] * xv[i];
  }
  return CT_OK;
}

static void cube_destroy(void *obj) { (void)obj; }
static const ct_python_runtime k_cube = {"the gradient check's stand-in", cube_setup, cube_call, cube_destroy};

typedef struct {
  const char *text;    /* LayerParameter body */
  const char *bottoms; /* "2x3x5x5;2:labels5" — shapes joined by ';', each with an optional :fill
                          (labelsK, pos, unit, binary, perm, seqN; Gaussian otherwise) */
  const char *opts;    /* "phase=test check=1 kink=0 kink_range=0.02 step=0.01 tol=0.01 samples=N" */
} gc_row;

#define GC_ROW(text, bottoms, opts) {text, bottoms, opts},
static const gc_row rows[] = {
#include "gradcheck_rows_vision.h"
#include "gradcheck_rows_common.h"
};
#undef GC_ROW

static double opt_num(const char *opts, const char *key, double dflt) {
  const char *p = opts ? strstr(opts, key) : NULL;
  if (!p) return dflt;
  p += strlen(key);
  if (*p != '=') return dflt;
  return strtod(p + 1, NULL);
}

static int parse_bottoms(const char *spec, int *naxes, int *shapes, char fills[][16]) {
  int n = 0, si = 0;
  const char *p = spec;
  while (p && *p) {
    naxes[n] = 0;
    fills[n][0] = 0;
    for (;;) {
      shapes[si++] = (int)strtol(p, (char **)&p, 10);
      naxes[n]++;
      if (*p == 'x') {
        p++;
        continue;
      }
      break;
    }
    if (*p == ':') {
      p++;
      int k = 0;
      while (*p && *p != ';' && k < 15) fills[n][k++] = *p++;
      fills[n][k] = 0;
    }
    n++;
    if (*p == ';') p++;
  }
  return n;
}

static void fill(float *x, size_t n, const char *kind, ct_rng *r) {
  if (!strncmp(kind, "labels", 6)) {
    int k = atoi(kind + 6);
    for (size_t i = 0; i < n; i++) x[i] = (float)ct_rng_below(r, (uint64_t)k);
  } else if (!strcmp(kind, "pos")) {
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_uniform(r, 0.5f, 2.0f);
  } else if (!strcmp(kind, "unit")) {
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_uniform(r, 0.0f, 1.0f);
  } else if (!strncmp(kind, "seq", 3)) {
    /* sequence continuation indicators (T x N, "seqN"): the first step starts every stream (0),
     * later steps continue (1) or, now and then, start a new sequence (0) */
    size_t first = (size_t)atoi(kind + 3);
    for (size_t i = 0; i < n; i++) x[i] = i < first || ct_rng_below(r, 5) == 0 ? 0.0f : 1.0f;
  } else if (!strcmp(kind, "binary")) {
    for (size_t i = 0; i < n; i++) x[i] = (float)ct_rng_below(r, 2);
  } else if (!strcmp(kind, "perm")) {
    /* distinct values 0.1 apart, shuffled: no ties within a finite-difference step */
    for (size_t i = 0; i < n; i++) x[i] = (float)i * 0.1f - (float)n * 0.05f;
    for (size_t i = n; i > 1; i--) {
      size_t j = (size_t)ct_rng_below(r, i);
      float t = x[i - 1];
      x[i - 1] = x[j];
      x[j] = t;
    }
  } else {
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_gaussian(r, 0, 1);
  }
}

static double objective(ct_harness *h, float **R, const char *where, int *ok) {
  char eb[512];
  ctk_reseed(h, 4242);
  if (ctk_forward(h, eb, sizeof eb)) {
    fprintf(stderr, "%s: forward failed: %s\n", where, eb);
    *ok = 0;
    return 0;
  }
  double f = 0;
  for (int t = 0; t < ctk_num_tops(h); t++) {
    int shape[8], na = ctk_shape(h, 1, t, shape);
    size_t n = 1;
    for (int k = 0; k < na; k++) n *= (size_t)shape[k];
    const float *y = ctk_data(h, 1, t);
    if (!R[t]) continue;
    for (size_t i = 0; i < n; i++) f += (double)R[t][i] * y[i];
  }
  return f;
}

static size_t tensor_count(ct_harness *h, int which, int i) {
  int shape[8], na = ctk_shape(h, which, i, shape);
  size_t n = 1;
  for (int k = 0; k < na; k++) n *= (size_t)shape[k];
  return n;
}

static void check_row(const gc_row *row, int idx, const char *devices, const char **covered, int *ncovered) {
  int naxes[16], shapes[128];
  char fills[16][16];
  int nb = parse_bottoms(row->bottoms, naxes, shapes, fills);
  int phase = row->opts && strstr(row->opts, "phase=test") ? 1 : 0;
  char eb[1024];
  char where[256];
  ct_harness *h = ctk_create_on(row->text, nb, naxes, shapes, phase, 1701, devices, eb, sizeof eb);
  snprintf(where, sizeof where, "row %d on %s (%.60s)", idx, devices ? devices : "cpu", row->text);
  CHECK(h != NULL, "%s: setup failed: %s", where, eb);
  if (!h) return;
  if (covered) covered[(*ncovered)++] = ctk_layer(h)->ops->type;
  /* split between two devices means split: a layer that can run on a range of images does */
  const ct_layer *lay = ctk_layer(h);
  if (devices && strchr(devices, ',') && lay->ops->splits && lay->ops->splits(lay) && lay->plan.N >= 2) {
    char plan[128];
    ctk_plan(h, plan, sizeof plan);
    const char *other = strchr(devices, ',') + 1; /* "emu:0=0.6": its plan entry reads "emu:0: 0.60" */
    char second[80];
    snprintf(second, sizeof second, "%.*s:", (int)strcspn(other, "="), other);
    CHECK(strstr(plan, "cpu:") && strstr(plan, second), "%s: the layer splits, so its plan is on both: %s", where,
          plan);
  }
  unsigned mask = (unsigned)opt_num(row->opts, "check", (double)((1u << nb) - 1));
  double step = opt_num(row->opts, "step", 1e-2), tol = opt_num(row->opts, "tol", 1e-2);
  double kink = opt_num(row->opts, "kink", 0), kink_range = opt_num(row->opts, "kink_range", -1);
  size_t samples = (size_t)opt_num(row->opts, "samples", 400);
  ct_rng r;
  ct_rng_seed(&r, 99 + (uint64_t)idx);
  for (int i = 0; i < nb; i++) fill(ctk_data(h, 0, i), tensor_count(h, 0, i), fills[i], &r);
  int nt = ctk_num_tops(h), ok = 1;
  float *R[16] = {0};
  objective(h, R, where, &ok); /* sizes tops (R still NULL: contributes nothing) */
  if (!ok) {
    CHECK(0, "%s: forward failed", where);
    ctk_free(h);
    return;
  }
  for (int t = 0; t < nt; t++) {
    size_t n = tensor_count(h, 1, t);
    R[t] = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) R[t][i] = ct_rng_gaussian(&r, 0, 1);
  }
  /* analytic */
  objective(h, R, where, &ok);
  for (int t = 0; t < nt; t++) memcpy(ctk_diff(h, 1, t), R[t], tensor_count(h, 1, t) * sizeof(float));
  ctk_backward(h, mask);
  int ntens = 0;
  float *an[32];
  int which[32], wi[32];
  for (int i = 0; i < nb; i++)
    if ((mask >> i) & 1u) {
      size_t n = tensor_count(h, 0, i);
      an[ntens] = malloc((n ? n : 1) * sizeof(float));
      memcpy(an[ntens], ctk_diff(h, 0, i), n * sizeof(float));
      which[ntens] = 0;
      wi[ntens++] = i;
    }
  for (int j = 0; j < ctk_num_blobs(h); j++) {
    if (!ctk_layer(h)->param_propagate_down[j]) continue;
    size_t n = tensor_count(h, 2, j);
    an[ntens] = malloc((n ? n : 1) * sizeof(float));
    memcpy(an[ntens], ctk_diff(h, 2, j), n * sizeof(float));
    which[ntens] = 2;
    wi[ntens++] = j;
  }
  int bad = 0;
  for (int k = 0; k < ntens && bad < 5; k++) {
    size_t n = tensor_count(h, which[k], wi[k]);
    size_t stride = n > samples ? n / samples : 1;
    for (size_t e = 0; e < n && bad < 5; e += stride) {
      /* the host copy is taken again before every write: a forward on a device leaves the host's
       * copy as it was, and writing makes it the one the next forward reads */
      float x0 = ctk_data(h, which[k], wi[k])[e];
      if (kink_range > 0 && which[k] == 0 && fabs(x0 - kink) < kink_range) continue;
      ctk_data(h, which[k], wi[k])[e] = (float)(x0 + step);
      double fp = objective(h, R, where, &ok);
      ctk_data(h, which[k], wi[k])[e] = (float)(x0 - step);
      double fm = objective(h, R, where, &ok);
      ctk_data(h, which[k], wi[k])[e] = x0;
      double num = (fp - fm) / (2 * step), a = an[k][e];
      double scale = fabs(num) > fabs(a) ? fabs(num) : fabs(a);
      if (scale < 1) scale = 1;
      if (!(fabs(num - a) <= tol * scale)) {
        bad++;
        CHECK(0, "%s: %s %d element %zu: analytic %.6g numeric %.6g", where, which[k] ? "blob" : "bottom", wi[k], e,
              a, num);
      } else {
        ct_checks_passed++;
      }
    }
  }
  CHECK(ok, "%s: a forward failed during the check", where);
  for (int k = 0; k < ntens; k++) free(an[k]);
  for (int t = 0; t < nt; t++) free(R[t]);
  ctk_free(h);
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  /* CT_GRADCHECK_DEVICE (tests/gpu/run.sh: cuda:0) replaces emu:0 as the second device */
  const char *dev = getenv("CT_GRADCHECK_DEVICE");
  if (!dev || !*dev) dev = "emu:0";
  char split[64];
  snprintf(split, sizeof split, "cpu=0.4,%s=0.6", dev);
  ct_python_set_runtime(&k_cube);
  int nrows = (int)(sizeof rows / sizeof rows[0]);
  const char **covered = calloc((size_t)nrows + 1, sizeof *covered);
  int ncovered = 0;
  for (int i = 0; i < nrows; i++) {
    if (only && !strstr(rows[i].text, only)) continue;
    check_row(&rows[i], i, NULL, covered, &ncovered);
    check_row(&rows[i], i, dev, NULL, NULL);
    check_row(&rows[i], i, split, NULL, NULL);
  }
  if (!only) {
    for (int i = 0; i < ct_layer_registry_size(); i++) {
      const ct_layer_ops *ops = ct_layer_registry_at(i);
      if (!ops->has_backward) continue;
      int found = 0;
      for (int k = 0; k < ncovered; k++) found |= !strcmp(covered[k], ops->type);
      CHECK(found, "layer type %s has a backward pass but no gradient-check row", ops->type);
    }
  }
  free(covered);
  return ct_check_report();
}
