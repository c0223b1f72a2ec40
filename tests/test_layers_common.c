/* Forward values of the neuron, structural, loss and metric layers against naive references
 * written here, in-place runs against out-of-place ones, Dropout's statistics, and parameter
 * errors (an error status naming the layer, never a crash). Gradients are test_gradcheck's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"

/* ------------------------------------------------------------------ helpers */

static char errbuf[1024];

/* "2x3x4;5" -> per-bottom axes and shapes; returns the number of bottoms. */
static int parse_spec(const char *spec, int *naxes, int *shapes) {
  int n = 0, si = 0;
  const char *p = spec;
  while (p && *p) {
    naxes[n] = 0;
    for (;;) {
      char *end;
      shapes[si++] = (int)strtol(p, &end, 10);
      p = end;
      naxes[n]++;
      if (*p != 'x') break;
      p++;
    }
    n++;
    if (*p == ';') p++;
  }
  return n;
}

static ct_harness *mk_phase(const char *text, const char *spec, int phase) {
  int naxes[16], shapes[128];
  int nb = parse_spec(spec, naxes, shapes);
  errbuf[0] = 0;
  ct_harness *h = ctk_create(text, nb, naxes, shapes, phase, 1234, errbuf, sizeof errbuf);
  CHECK(h != NULL, "setup of [%s] on %s failed: %s", text, spec, errbuf);
  return h;
}

static ct_harness *mk(const char *text, const char *spec) { return mk_phase(text, spec, 0); }

static size_t count_of(ct_harness *h, int which, int i) {
  int shape[8], na = ctk_shape(h, which, i, shape);
  size_t n = 1;
  for (int k = 0; k < na; k++) n *= (size_t)shape[k];
  return n;
}

static void fill_gauss(float *x, size_t n, uint64_t seed, float mean, float std) {
  ct_rng r;
  ct_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = ct_rng_gaussian(&r, mean, std);
}

static void fill_uniform(float *x, size_t n, uint64_t seed, float a, float b) {
  ct_rng r;
  ct_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = ct_rng_uniform(&r, a, b);
}

static int fwd(ct_harness *h) {
  int rc = ctk_forward(h, errbuf, sizeof errbuf);
  CHECK(rc == 0, "forward failed: %s", errbuf);
  return rc;
}

/* Checks top `t`'s shape against the given axes. */
static void check_shape(ct_harness *h, int t, int naxes, const int *want, const char *what) {
  int shape[8], na = ctk_shape(h, 1, t, shape);
  int same = na == naxes;
  for (int k = 0; same && k < na; k++) same = shape[k] == want[k];
  CHECK(same, "%s: top %d has %d axes (%d %d %d %d...), want %d", what, t, na, na > 0 ? shape[0] : -1,
        na > 1 ? shape[1] : -1, na > 2 ? shape[2] : -1, na > 3 ? shape[3] : -1, naxes);
}

/* Layer setup or forward must fail, with the layer's name and `needle` in the message. */
static void expect_error(const char *text, const char *spec, const char *name, const char *needle) {
  int naxes[16], shapes[128];
  int nb = parse_spec(spec, naxes, shapes);
  errbuf[0] = 0;
  ct_harness *h = ctk_create(text, nb, naxes, shapes, 0, 1, errbuf, sizeof errbuf);
  int failed = h == NULL;
  if (h) {
    for (int i = 0; i < nb; i++) fill_uniform(ctk_data(h, 0, i), count_of(h, 0, i), 5, 0, 1);
    failed = ctk_forward(h, errbuf, sizeof errbuf) != 0;
    ctk_free(h);
  }
  CHECK(failed, "[%s] on %s should have failed", text, spec);
  if (!failed) return;
  char quoted[128];
  snprintf(quoted, sizeof quoted, "\"%s\"", name);
  CHECK(strstr(errbuf, quoted) != NULL, "message for [%s] does not name the layer: %s", text, errbuf);
  CHECK(strstr(errbuf, needle) != NULL, "message for [%s] does not say \"%s\": %s", text, needle, errbuf);
}

/* ------------------------------------------------------------------ neuron layers */

typedef enum {
  REF_RELU,
  REF_PRELU,
  REF_ELU,
  REF_SIGMOID,
  REF_TANH,
  REF_ABS,
  REF_POWER,
  REF_EXP,
  REF_LOG,
  REF_BNLL
} ref_kind;

typedef struct {
  const char *text;
  ref_kind kind;
  double a, b, c; /* slope / alpha / (power, scale, shift) / (base, scale, shift) */
  int positive;   /* inputs in [0.5, 2] */
} neuron_case;

static const neuron_case neuron_cases[] = {
    {"type: \"ReLU\"", REF_RELU, 0, 0, 0, 0},
    {"type: \"ReLU\" relu_param { negative_slope: 0.1 }", REF_RELU, 0.1, 0, 0, 0},
    {"type: \"ReLU\" relu_param { negative_slope: -0.5 }", REF_RELU, -0.5, 0, 0, 0},
    {"type: \"PReLU\"", REF_PRELU, 0.25, 0, 0, 0},
    {"type: \"ELU\"", REF_ELU, 1, 0, 0, 0},
    {"type: \"ELU\" elu_param { alpha: 0.5 }", REF_ELU, 0.5, 0, 0, 0},
    {"type: \"ELU\" elu_param { alpha: -0.3 }", REF_ELU, -0.3, 0, 0, 0},
    {"type: \"Sigmoid\"", REF_SIGMOID, 0, 0, 0, 0},
    {"type: \"TanH\"", REF_TANH, 0, 0, 0, 0},
    {"type: \"AbsVal\"", REF_ABS, 0, 0, 0, 0},
    {"type: \"Power\"", REF_POWER, 1, 1, 0, 0},
    {"type: \"Power\" power_param { power: 2 scale: 0.5 shift: 1 }", REF_POWER, 2, 0.5, 1, 0},
    {"type: \"Power\" power_param { power: 0.37 scale: 0.83 shift: -0.2 }", REF_POWER, 0.37, 0.83, -0.2, 1},
    {"type: \"Power\" power_param { power: 0 scale: 3 shift: 2 }", REF_POWER, 0, 3, 2, 0},
    {"type: \"Power\" power_param { power: 3 scale: 0 shift: 2 }", REF_POWER, 3, 0, 2, 0},
    {"type: \"Exp\"", REF_EXP, M_E, 1, 0, 0},
    {"type: \"Exp\" exp_param { base: 2 scale: 0.5 shift: 1 }", REF_EXP, 2, 0.5, 1, 0},
    {"type: \"Log\"", REF_LOG, M_E, 1, 0, 1},
    {"type: \"Log\" log_param { base: 10 scale: 0.5 shift: 1 }", REF_LOG, 10, 0.5, 1, 1},
    {"type: \"BNLL\"", REF_BNLL, 0, 0, 0, 0},
};

static double ref_neuron(const neuron_case *c, double x) {
  switch (c->kind) {
    case REF_RELU:
    case REF_PRELU:
      return x > 0 ? x : c->a * x;
    case REF_ELU:
      return x > 0 ? x : c->a * (exp(x) - 1);
    case REF_SIGMOID:
      return 1 / (1 + exp(-x));
    case REF_TANH:
      return tanh(x);
    case REF_ABS:
      return fabs(x);
    case REF_POWER:
      return pow(c->c + c->b * x, c->a);
    case REF_EXP:
      return pow(c->a, c->c + c->b * x);
    case REF_LOG:
      return log(c->c + c->b * x) / log(c->a);
    case REF_BNLL:
      return log(1 + exp(x));
  }
  return NAN;
}

/* Runs the layer of h a second time in place: a fresh ct_layer on the same parameters whose top
 * is its bottom, with blobs copied from h. Fills y and dx (from top diff dy). */
static int run_in_place(ct_harness *h, const float *x, const float *dy, float *y, float *dx, float *blob_diff) {
  const ct_layer *ref = ctk_layer(h);
  ct_error err = {0};
  ct_tensor *t = ct_tensor_create();
  ct_layer l = {0};
  bool pd = true;
  int rc = 1;
  l.ops = ref->ops;
  l.lp = ref->lp;
  l.name = "in_place";
  l.phase = ref->phase;
  l.dir = "";
  l.nbottom = l.ntop = 1;
  l.bottom = l.top = &t;
  l.propagate_down = &pd;
  ct_rng_seed(&l.rng, 77);
  if (!t || ct_tensor_reshape_like(t, ref->bottom[0], &err)) goto done;
  float *v;
  if (ct_tensor_host(t, CT_DATA, CT_WRITE, &v, &err)) goto done;
  memcpy(v, x, t->count * sizeof(float));
  if (l.ops->setup(&l, &err) || ct_layer_plan_reshape(&l, NULL, &err)) goto done;
  for (int j = 0; j < l.nblobs; j++) {
    float *w, *r, *g;
    if (ct_tensor_host(l.blobs[j], CT_DATA, CT_WRITE, &w, &err) ||
        ct_tensor_host(ref->blobs[j], CT_DATA, CT_READ, &r, &err) ||
        ct_tensor_host(l.blobs[j], CT_DIFF, CT_WRITE, &g, &err))
      goto done;
    memcpy(w, r, l.blobs[j]->count * sizeof(float));
    memset(g, 0, l.blobs[j]->count * sizeof(float));
  }
  ct_rng_seed(&l.rng, 4242);
  if (ct_layer_forward(&l, &err) || ct_tensor_host(t, CT_DATA, CT_READ, &v, &err)) goto done;
  memcpy(y, v, t->count * sizeof(float));
  if (ct_tensor_host(t, CT_DIFF, CT_WRITE, &v, &err)) goto done;
  memcpy(v, dy, t->count * sizeof(float));
  if (ct_layer_backward(&l, &err) || ct_tensor_host(t, CT_DIFF, CT_READ, &v, &err)) goto done;
  memcpy(dx, v, t->count * sizeof(float));
  if (l.nblobs) {
    if (ct_tensor_host(l.blobs[0], CT_DIFF, CT_READ, &v, &err)) goto done;
    memcpy(blob_diff, v, l.blobs[0]->count * sizeof(float));
  }
  rc = 0;
done:
  if (rc) CHECK(0, "in-place run of %s failed: %s", ref->ops->type, err.msg);
  if (l.ops->destroy) l.ops->destroy(&l);
  for (int j = 0; j < l.nblobs; j++) ct_tensor_free(l.blobs[j]);
  free(l.blobs);
  free(l.param_propagate_down);
  ct_tensor_free(t);
  return rc;
}

/* The out-of-place run of h on x and dy, then the in-place one; both must agree. */
static void check_in_place(ct_harness *h, const char *what) {
  size_t n = count_of(h, 0, 0);
  float *x = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float));
  float *y = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
  float bd_out[64] = {0}, bd_in[64] = {0};
  memcpy(x, ctk_data(h, 0, 0), n * sizeof(float));
  fill_gauss(dy, n, 31, 0, 1);
  ctk_reseed(h, 4242);
  if (fwd(h)) goto done;
  memcpy(ctk_diff(h, 1, 0), dy, n * sizeof(float));
  ctk_backward(h, 1);
  if (ctk_num_blobs(h) && count_of(h, 2, 0) <= 64) memcpy(bd_out, ctk_diff(h, 2, 0), count_of(h, 2, 0) * sizeof(float));
  if (run_in_place(h, x, dy, y, dx, bd_in)) goto done;
  int bad_y = 0, bad_dx = 0, bad_blob = 0;
  const float *yo = ctk_data(h, 1, 0), *dxo = ctk_diff(h, 0, 0);
  for (size_t i = 0; i < n; i++) {
    bad_y += !(fabsf(y[i] - yo[i]) <= 1e-6f * (1 + fabsf(yo[i])));
    bad_dx += !(fabsf(dx[i] - dxo[i]) <= 1e-6f * (1 + fabsf(dxo[i])));
  }
  for (int j = 0; j < 64; j++) bad_blob += !(fabsf(bd_in[j] - bd_out[j]) <= 1e-5f * (1 + fabsf(bd_out[j])));
  CHECK(bad_y == 0, "%s: in-place forward differs at %d elements", what, bad_y);
  CHECK(bad_dx == 0, "%s: in-place backward differs at %d elements", what, bad_dx);
  CHECK(bad_blob == 0, "%s: in-place parameter gradient differs at %d elements", what, bad_blob);
done:
  free(x);
  free(dy);
  free(y);
  free(dx);
}

static void test_neurons(void) {
  for (size_t c = 0; c < sizeof neuron_cases / sizeof *neuron_cases; c++) {
    const neuron_case *nc = &neuron_cases[c];
    ct_harness *h = mk(nc->text, "2x3x4x5");
    if (!h) continue;
    CHECK(ctk_layer(h)->ops->in_place, "%s: neuron layers may run in place", nc->text);
    size_t n = count_of(h, 0, 0);
    float *x = ctk_data(h, 0, 0);
    if (nc->positive)
      fill_uniform(x, n, 10 + c, 0.5f, 2.0f);
    else
      fill_gauss(x, n, 10 + c, 0, 2);
    if (!fwd(h)) {
      int bad = 0;
      const float *y = ctk_data(h, 1, 0);
      for (size_t i = 0; i < n && bad < 3; i++) {
        double want = ref_neuron(nc, x[i]);
        if (!(fabs(y[i] - want) <= 1e-5 + 1e-5 * fabs(want))) {
          bad++;
          CHECK(0, "%s: x %g gives %.8g, want %.8g", nc->text, x[i], y[i], want);
        }
      }
      CHECK(bad == 0, "%s forward", nc->text);
    }
    check_shape(h, 0, 4, (int[]){2, 3, 4, 5}, nc->text);
    check_in_place(h, nc->text);
    ctk_free(h);
  }

  /* PReLU with per-channel and shared slopes set by hand, on an N x C x D bottom. */
  for (int shared = 0; shared < 2; shared++) {
    ct_harness *h = mk(shared ? "type: \"PReLU\" prelu_param { channel_shared: true }" : "type: \"PReLU\"", "2x3x4");
    if (!h) continue;
    int shape[8];
    int na = ctk_shape(h, 2, 0, shape);
    CHECK(na == (shared ? 0 : 1) && (shared || shape[0] == 3), "PReLU slope blob shape (shared %d): %d axes", shared,
          na);
    float *a = ctk_data(h, 2, 0);
    for (size_t k = 0; k < count_of(h, 2, 0); k++) CHECK(a[k] == 0.25f, "PReLU default slope %g", a[k]);
    const float slopes[3] = {0.1f, -0.2f, 0.7f};
    for (size_t k = 0; k < count_of(h, 2, 0); k++) a[k] = slopes[k];
    float *x = ctk_data(h, 0, 0);
    fill_gauss(x, 24, 3, 0, 1);
    if (!fwd(h)) {
      const float *y = ctk_data(h, 1, 0);
      for (int i = 0; i < 24; i++) {
        int ch = (i / 4) % 3;
        double s = shared ? slopes[0] : slopes[ch];
        CHECK_CLOSE(y[i], x[i] > 0 ? x[i] : s * x[i], 1e-6, 1e-7, "PReLU element %d", i);
      }
    }
    check_in_place(h, shared ? "PReLU shared" : "PReLU");
    ctk_free(h);
  }

  /* Extreme inputs stay finite. */
  {
    ct_harness *h = mk("type: \"BNLL\"", "6");
    ct_harness *s = mk("type: \"Sigmoid\"", "6");
    const float xs[6] = {-200, -100, -20, 20, 100, 200};
    if (h && s) {
      memcpy(ctk_data(h, 0, 0), xs, sizeof xs);
      memcpy(ctk_data(s, 0, 0), xs, sizeof xs);
      if (!fwd(h) && !fwd(s))
        for (int i = 0; i < 6; i++) {
          double bn = xs[i] > 0 ? xs[i] + log1p(exp(-xs[i])) : log1p(exp(xs[i]));
          CHECK_CLOSE(ctk_data(h, 1, 0)[i], bn, 1e-6, 1e-30, "BNLL at %g", xs[i]);
          CHECK_CLOSE(ctk_data(s, 1, 0)[i], 1 / (1 + exp(-(double)xs[i])), 1e-6, 1e-30, "Sigmoid at %g", xs[i]);
        }
    }
    ctk_free(h);
    ctk_free(s);
  }
}

/* ------------------------------------------------------------------ Dropout */

static void test_dropout(void) {
  /* TEST: the identity, in both directions. */
  ct_harness *h = mk_phase("type: \"Dropout\" dropout_param { dropout_ratio: 0.3 }", "4x5", 1);
  if (h) {
    float *x = ctk_data(h, 0, 0);
    fill_gauss(x, 20, 8, 0, 1);
    if (!fwd(h)) {
      int same = 1;
      for (int i = 0; i < 20; i++) same &= ctk_data(h, 1, 0)[i] == x[i];
      CHECK(same, "Dropout in TEST is the identity");
      fill_gauss(ctk_diff(h, 1, 0), 20, 9, 0, 1);
      ctk_backward(h, 1);
      same = 1;
      for (int i = 0; i < 20; i++) same &= ctk_diff(h, 0, 0)[i] == ctk_diff(h, 1, 0)[i];
      CHECK(same, "Dropout in TEST passes the gradient through");
    }
    check_in_place(h, "Dropout TEST");
    ctk_free(h);
  }

  /* TRAIN: the kept fraction within 5 standard deviations of 1 - p; kept values scaled. */
  const double ratios[3] = {0.3, 0.5, 0.9};
  for (int r = 0; r < 3; r++) {
    char text[128];
    snprintf(text, sizeof text, "type: \"Dropout\" dropout_param { dropout_ratio: %g }", ratios[r]);
    const size_t n = 100000;
    h = mk(text, "100000");
    if (!h) continue;
    float *x = ctk_data(h, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f + (float)(i % 7);
    if (fwd(h)) {
      ctk_free(h);
      continue;
    }
    const float *y = ctk_data(h, 1, 0);
    float scale = 1.0f / (1.0f - (float)ratios[r]);
    size_t kept = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
      if (y[i] != 0) {
        kept++;
        bad += fabsf(y[i] - x[i] * scale) > 1e-5f * y[i];
      }
    }
    double p_keep = 1 - ratios[r], sd = sqrt(n * p_keep * (1 - p_keep));
    CHECK(fabs((double)kept - n * p_keep) <= 5 * sd, "Dropout %g kept %zu of %zu (expected %.0f +- %.0f)", ratios[r],
          kept, n, n * p_keep, 5 * sd);
    CHECK(bad == 0, "Dropout %g: %zu kept values are not x / (1 - p)", ratios[r], bad);
    /* backward uses the same mask */
    float *dy = ctk_diff(h, 1, 0);
    for (size_t i = 0; i < n; i++) dy[i] = 2.0f;
    ctk_backward(h, 1);
    const float *dx = ctk_diff(h, 0, 0);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += dx[i] != (y[i] != 0 ? 2.0f * scale : 0.0f);
    CHECK(bad == 0, "Dropout %g: %zu gradients do not follow the mask", ratios[r], bad);
    /* a fresh mask each forward; the same after reseeding */
    float *first = malloc(n * sizeof(float));
    memcpy(first, y, n * sizeof(float));
    fwd(h);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += ctk_data(h, 1, 0)[i] != first[i];
    CHECK(differ > 0, "Dropout %g draws a new mask each forward", ratios[r]);
    ctk_reseed(h, 99);
    fwd(h);
    memcpy(first, ctk_data(h, 1, 0), n * sizeof(float));
    ctk_reseed(h, 99);
    fwd(h);
    differ = 0;
    for (size_t i = 0; i < n; i++) differ += ctk_data(h, 1, 0)[i] != first[i];
    CHECK(differ == 0, "Dropout %g: the same seed gives the same mask", ratios[r]);
    free(first);
    ctk_free(h);
  }

  h = mk("type: \"Dropout\"", "3x4");
  if (h) {
    fill_gauss(ctk_data(h, 0, 0), 12, 4, 0, 1);
    check_in_place(h, "Dropout TRAIN");
    ctk_free(h);
  }
}

/* ------------------------------------------------------------------ losses */

static void test_euclidean(void) {
  ct_harness *h = mk("type: \"EuclideanLoss\"", "3x2x2;3x4");
  if (!h) return;
  float *a = ctk_data(h, 0, 0), *b = ctk_data(h, 0, 1);
  fill_gauss(a, 12, 1, 0, 1);
  fill_gauss(b, 12, 2, 0, 1);
  if (!fwd(h)) {
    double s = 0;
    for (int i = 0; i < 12; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    CHECK_CLOSE(ctk_data(h, 1, 0)[0], s / 3 / 2, 1e-6, 0, "EuclideanLoss value");
    check_shape(h, 0, 0, NULL, "EuclideanLoss top");
    ctk_diff(h, 1, 0)[0] = 2.0f; /* loss weight */
    ctk_backward(h, 3);
    for (int i = 0; i < 12; i++) {
      CHECK_CLOSE(ctk_diff(h, 0, 0)[i], 2.0 * (a[i] - b[i]) / 3, 1e-6, 1e-7, "EuclideanLoss da %d", i);
      CHECK_CLOSE(ctk_diff(h, 0, 1)[i], -2.0 * (a[i] - b[i]) / 3, 1e-6, 1e-7, "EuclideanLoss db %d", i);
    }
  }
  ctk_free(h);
}

typedef struct {
  const char *loss_param; /* inside loss_param { } */
  int ignore;             /* -1: none */
  int mode;               /* 0 FULL, 1 VALID, 2 BATCH_SIZE, 3 NONE */
} sce_case;

static void test_sigmoid_ce(void) {
  const sce_case cases[] = {
      {"", -1, 2}, /* Caffe's default for this layer: BATCH_SIZE */
      {"normalization: FULL", -1, 0},
      {"normalization: VALID", -1, 1},
      {"normalization: NONE", -1, 3},
      {"normalization: BATCH_SIZE", -1, 2},
      {"normalize: true", -1, 1},
      {"normalize: false", -1, 2},
      {"ignore_label: 2", 2, 2},
      {"ignore_label: 2 normalization: VALID", 2, 1},
      {"ignore_label: 2 normalization: FULL", 2, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    char text[256];
    snprintf(text, sizeof text, "type: \"SigmoidCrossEntropyLoss\" loss_param { %s }", cases[c].loss_param);
    ct_harness *h = mk(text, "4x3x2;4x6");
    if (!h) continue;
    float *x = ctk_data(h, 0, 0), *t = ctk_data(h, 0, 1);
    fill_gauss(x, 24, 100 + c, 0, 3);
    x[0] = 60; /* large logits must not overflow */
    x[1] = -60;
    ct_rng r;
    ct_rng_seed(&r, 200 + c);
    for (int i = 0; i < 24; i++) t[i] = (float)ct_rng_below(&r, cases[c].ignore >= 0 ? 3 : 2);
    t[2] = 0.3f; /* soft targets are allowed */
    t[3] = 2;    /* ignored where ignore_label is 2, a target of 2 otherwise */
    if (cases[c].ignore < 0) t[3] = 1;
    if (fwd(h)) {
      ctk_free(h);
      continue;
    }
    double loss = 0;
    int valid = 0;
    for (int i = 0; i < 24; i++) {
      if (cases[c].ignore >= 0 && (int)t[i] == cases[c].ignore) continue;
      double p = 1 / (1 + exp(-(double)x[i]));
      /* log p and log(1 - p) written without cancellation for large |x| */
      double logp = x[i] >= 0 ? -log1p(exp(-(double)x[i])) : x[i] - log1p(exp((double)x[i]));
      double log1mp = x[i] >= 0 ? -x[i] - log1p(exp(-(double)x[i])) : -log1p(exp((double)x[i]));
      (void)p;
      loss -= t[i] * logp + (1 - t[i]) * log1mp;
      valid++;
    }
    double norm = cases[c].mode == 0 ? 24 : cases[c].mode == 1 ? valid : cases[c].mode == 2 ? 4 : 1;
    CHECK_CLOSE(ctk_data(h, 1, 0)[0], loss / norm, 1e-5, 1e-6, "SigmoidCrossEntropyLoss [%s]", cases[c].loss_param);
    ctk_diff(h, 1, 0)[0] = 0.5f;
    ctk_backward(h, 1);
    for (int i = 0; i < 24; i++) {
      double g =
          cases[c].ignore >= 0 && (int)t[i] == cases[c].ignore ? 0 : (1 / (1 + exp(-(double)x[i])) - t[i]) * 0.5 / norm;
      CHECK_CLOSE(ctk_diff(h, 0, 0)[i], g, 1e-5, 1e-7, "SigmoidCrossEntropyLoss gradient %d [%s]", i,
                  cases[c].loss_param);
    }
    ctk_free(h);
  }
}

/* ------------------------------------------------------------------ Accuracy and ArgMax */

/* Reference: an item is right when fewer than k other classes score at least its true score. */
static double ref_accuracy(const float *s, const float *lab, int outer, int C, int inner, int k, int ignore,
                           double *per_class) {
  int hits = 0, counted = 0, hit_c[16] = {0}, n_c[16] = {0};
  for (int o = 0; o < outer; o++)
    for (int j = 0; j < inner; j++) {
      int y = (int)lab[o * inner + j];
      if (y == ignore) continue;
      float truth = s[(o * C + y) * inner + j];
      int above = 0;
      for (int c = 0; c < C; c++)
        if (c != y && s[(o * C + c) * inner + j] >= truth) above++;
      n_c[y]++;
      if (above < k) {
        hits++;
        hit_c[y]++;
      }
      counted++;
    }
  if (per_class)
    for (int c = 0; c < C; c++) per_class[c] = n_c[c] ? (double)hit_c[c] / n_c[c] : 0;
  return counted ? (double)hits / counted : 0;
}

static void test_accuracy(void) {
  /* Hand-made: 4 items, 3 classes. */
  {
    ct_harness *h = mk("type: \"Accuracy\" top: \"acc\" top: \"per_class\"", "4x3;4");
    if (h) {
      const float s[12] = {0.1f, 0.7f, 0.2f,  /* label 1: right */
                           0.5f, 0.3f, 0.2f,  /* label 2: wrong (rank 3) */
                           0.4f, 0.4f, 0.2f,  /* label 0: tie with class 1, counts against */
                           0.0f, 0.1f, 0.9f}; /* label 2: right */
      const float lab[4] = {1, 2, 0, 2};
      memcpy(ctk_data(h, 0, 0), s, sizeof s);
      memcpy(ctk_data(h, 0, 1), lab, sizeof lab);
      if (!fwd(h)) {
        CHECK_CLOSE(ctk_data(h, 1, 0)[0], 0.5, 1e-6, 0, "Accuracy top 1");
        check_shape(h, 1, 1, (int[]){3}, "Accuracy per-class top");
        const float *pc = ctk_data(h, 1, 1);
        CHECK_CLOSE(pc[0], 0.0, 0, 1e-7, "class 0");
        CHECK_CLOSE(pc[1], 1.0, 0, 1e-7, "class 1");
        CHECK_CLOSE(pc[2], 0.5, 0, 1e-7, "class 2");
      }
      CHECK(!ctk_layer(h)->ops->has_backward, "Accuracy has no backward");
      ctk_free(h);
    }
  }
  /* top_k 2 on the same items: the tie and rank-2 items now count. */
  {
    ct_harness *h = mk("type: \"Accuracy\" accuracy_param { top_k: 2 }", "4x3;4");
    if (h) {
      const float s[12] = {0.1f, 0.7f, 0.2f, 0.5f, 0.3f, 0.2f, 0.4f, 0.4f, 0.2f, 0.0f, 0.1f, 0.9f};
      const float lab[4] = {1, 1, 0, 0};
      memcpy(ctk_data(h, 0, 0), s, sizeof s);
      memcpy(ctk_data(h, 0, 1), lab, sizeof lab);
      if (!fwd(h)) CHECK_CLOSE(ctk_data(h, 1, 0)[0], 0.75, 1e-6, 0, "Accuracy top 2");
      ctk_free(h);
    }
  }
  /* Random scores on N x C x H with labels N x H, axis 1, top_k 1..3, with and without ignore. */
  for (int k = 1; k <= 3; k++)
    for (int ign = 0; ign < 2; ign++) {
      char text[256];
      snprintf(text, sizeof text, "type: \"Accuracy\" accuracy_param { top_k: %d %s } top: \"a\" top: \"b\"", k,
               ign ? "ignore_label: 3" : "");
      ct_harness *h = mk(text, "5x6x4;5x4");
      if (!h) continue;
      float *s = ctk_data(h, 0, 0), *lab = ctk_data(h, 0, 1);
      fill_gauss(s, 120, 50 + k, 0, 1);
      ct_rng r;
      ct_rng_seed(&r, 60 + k);
      for (int i = 0; i < 20; i++) lab[i] = (float)ct_rng_below(&r, 6);
      double pc[16];
      double want = ref_accuracy(s, lab, 5, 6, 4, k, ign ? 3 : -1, pc);
      if (!fwd(h)) {
        CHECK_CLOSE(ctk_data(h, 1, 0)[0], want, 1e-6, 1e-7, "Accuracy axis 1, top %d, ignore %d", k, ign);
        for (int c = 0; c < 6; c++)
          CHECK_CLOSE(ctk_data(h, 1, 1)[c], pc[c], 1e-6, 1e-7, "Accuracy per class %d, top %d, ignore %d", c, k, ign);
      }
      ctk_free(h);
    }
  /* axis 2: scores N x H x C with labels N x H */
  {
    ct_harness *h = mk("type: \"Accuracy\" accuracy_param { axis: -1 }", "3x4x5;3x4");
    if (h) {
      float *s = ctk_data(h, 0, 0), *lab = ctk_data(h, 0, 1);
      fill_gauss(s, 60, 70, 0, 1);
      for (int i = 0; i < 12; i++) lab[i] = (float)(i % 5);
      double want = ref_accuracy(s, lab, 12, 5, 1, 1, -1, NULL);
      if (!fwd(h)) CHECK_CLOSE(ctk_data(h, 1, 0)[0], want, 1e-6, 1e-7, "Accuracy axis -1");
      ctk_free(h);
    }
  }
  /* every item ignored: 0, not NaN */
  {
    ct_harness *h = mk("type: \"Accuracy\" accuracy_param { ignore_label: 0 }", "2x3;2");
    if (h) {
      fill_gauss(ctk_data(h, 0, 0), 6, 71, 0, 1);
      ctk_data(h, 0, 1)[0] = ctk_data(h, 0, 1)[1] = 0;
      if (!fwd(h)) CHECK(ctk_data(h, 1, 0)[0] == 0, "Accuracy of no items is 0, got %g", ctk_data(h, 1, 0)[0]);
      ctk_free(h);
    }
  }
}

/* Reference top-k by repeated selection: the largest value not yet taken, the later index on ties. */
static void ref_topk(const float *v, int dim, int stride, int k, int *idx) {
  char taken[64] = {0};
  for (int j = 0; j < k; j++) {
    int best = -1;
    for (int i = 0; i < dim; i++)
      if (!taken[i] && (best < 0 || v[i * stride] >= v[best * stride])) best = i;
    taken[best] = 1;
    idx[j] = best;
  }
}

static void test_argmax(void) {
  /* No axis: over each item's flattened entries. */
  for (int omv = 0; omv < 2; omv++)
    for (int k = 1; k <= 3; k += 2) {
      char text[256];
      snprintf(text, sizeof text, "type: \"ArgMax\" argmax_param { top_k: %d out_max_val: %s }", k,
               omv ? "true" : "false");
      ct_harness *h = mk(text, "3x2x2x3");
      if (!h) continue;
      float *x = ctk_data(h, 0, 0);
      fill_gauss(x, 36, 80 + k, 0, 1);
      x[4] = x[7] = 5.0f; /* a tie at the top of item 0 */
      if (!fwd(h)) {
        check_shape(h, 0, 4, (int[]){3, omv ? 2 : 1, k, 1}, text);
        const float *y = ctk_data(h, 1, 0);
        for (int n = 0; n < 3; n++) {
          int idx[8];
          ref_topk(x + n * 12, 12, 1, k, idx);
          for (int j = 0; j < k; j++) {
            if (omv) {
              CHECK(y[n * 2 * k + j] == (float)idx[j], "%s item %d rank %d: index %g, want %d", text, n, j,
                    y[n * 2 * k + j], idx[j]);
              CHECK(y[n * 2 * k + k + j] == x[n * 12 + idx[j]], "%s item %d rank %d: value", text, n, j);
            } else {
              CHECK(y[n * k + j] == (float)idx[j], "%s item %d rank %d: index %g, want %d", text, n, j, y[n * k + j],
                    idx[j]);
            }
          }
        }
        if (k == 1 && !omv) CHECK(y[0] == 7.0f, "ArgMax tie goes to the later index, got %g", y[0]);
      }
      CHECK(!ctk_layer(h)->ops->has_backward, "ArgMax has no backward");
      ctk_free(h);
    }
  /* A 2-axis bottom still gives a 3-axis top. */
  {
    ct_harness *h = mk("type: \"ArgMax\"", "4x5");
    if (h) {
      check_shape(h, 0, 3, (int[]){4, 1, 1}, "ArgMax on 2 axes");
      ctk_free(h);
    }
  }
  /* With an axis: along axis 1 of N x C x H, indices or values. */
  for (int omv = 0; omv < 2; omv++) {
    char text[256];
    snprintf(text, sizeof text, "type: \"ArgMax\" argmax_param { axis: 1 top_k: 2 out_max_val: %s }",
             omv ? "true" : "false");
    ct_harness *h = mk(text, "2x5x3");
    if (!h) continue;
    float *x = ctk_data(h, 0, 0);
    fill_gauss(x, 30, 90, 0, 1);
    if (!fwd(h)) {
      check_shape(h, 0, 3, (int[]){2, 2, 3}, text);
      const float *y = ctk_data(h, 1, 0);
      for (int n = 0; n < 2; n++)
        for (int s = 0; s < 3; s++) {
          int idx[2];
          ref_topk(x + n * 15 + s, 5, 3, 2, idx);
          for (int j = 0; j < 2; j++) {
            float want = omv ? x[n * 15 + idx[j] * 3 + s] : (float)idx[j];
            CHECK(y[(n * 2 + j) * 3 + s] == want, "%s (%d, %d) rank %d: %g, want %g", text, n, s, j,
                  y[(n * 2 + j) * 3 + s], want);
          }
        }
    }
    ctk_free(h);
  }
  /* Negative axis. */
  {
    ct_harness *h = mk("type: \"ArgMax\" argmax_param { axis: -1 }", "3x4");
    if (h) {
      float *x = ctk_data(h, 0, 0);
      fill_gauss(x, 12, 91, 0, 1);
      if (!fwd(h)) {
        check_shape(h, 0, 2, (int[]){3, 1}, "ArgMax axis -1");
        for (int n = 0; n < 3; n++) {
          int idx[1];
          ref_topk(x + n * 4, 4, 1, 1, idx);
          CHECK(ctk_data(h, 1, 0)[n] == (float)idx[0], "ArgMax axis -1 row %d", n);
        }
      }
      ctk_free(h);
    }
  }
}

/* ------------------------------------------------------------------ structure */

static void test_concat(void) {
  /* axis 1 of 2 x {3,1,2} x 4 */
  ct_harness *h = mk("type: \"Concat\"", "2x3x4;2x1x4;2x2x4");
  if (h) {
    const int C[3] = {3, 1, 2};
    for (int b = 0; b < 3; b++) fill_gauss(ctk_data(h, 0, b), count_of(h, 0, b), 300 + b, 0, 1);
    if (!fwd(h)) {
      check_shape(h, 0, 3, (int[]){2, 6, 4}, "Concat axis 1");
      const float *y = ctk_data(h, 1, 0);
      int bad = 0;
      for (int n = 0; n < 2; n++)
        for (int c = 0; c < 6; c++)
          for (int w = 0; w < 4; w++) {
            int b = 0, cc = c;
            while (cc >= C[b]) cc -= C[b++];
            bad += y[(n * 6 + c) * 4 + w] != ctk_data(h, 0, b)[(n * C[b] + cc) * 4 + w];
          }
      CHECK(bad == 0, "Concat axis 1: %d wrong values", bad);
      float *dy = ctk_diff(h, 1, 0);
      fill_gauss(dy, 48, 310, 0, 1);
      ctk_backward(h, 7);
      bad = 0;
      for (int n = 0; n < 2; n++)
        for (int c = 0; c < 6; c++)
          for (int w = 0; w < 4; w++) {
            int b = 0, cc = c;
            while (cc >= C[b]) cc -= C[b++];
            bad += dy[(n * 6 + c) * 4 + w] != ctk_diff(h, 0, b)[(n * C[b] + cc) * 4 + w];
          }
      CHECK(bad == 0, "Concat axis 1 backward: %d wrong values", bad);
    }
    ctk_free(h);
  }
  /* axis 0: the bottoms one after another */
  h = mk("type: \"Concat\" concat_param { axis: 0 }", "2x3;1x3");
  if (h) {
    fill_gauss(ctk_data(h, 0, 0), 6, 320, 0, 1);
    fill_gauss(ctk_data(h, 0, 1), 3, 321, 0, 1);
    if (!fwd(h)) {
      check_shape(h, 0, 2, (int[]){3, 3}, "Concat axis 0");
      int bad = 0;
      for (int i = 0; i < 9; i++)
        bad += ctk_data(h, 1, 0)[i] != (i < 6 ? ctk_data(h, 0, 0)[i] : ctk_data(h, 0, 1)[i - 6]);
      CHECK(bad == 0, "Concat axis 0: %d wrong values", bad);
    }
    ctk_free(h);
  }
  /* legacy concat_dim */
  h = mk("type: \"Concat\" concat_param { concat_dim: 0 }", "1x2;2x2");
  if (h) {
    check_shape(h, 0, 2, (int[]){3, 2}, "Concat concat_dim 0");
    ctk_free(h);
  }
  /* one bottom: the top views it */
  h = mk("type: \"Concat\"", "2x3");
  if (h) {
    fill_gauss(ctk_data(h, 0, 0), 6, 330, 0, 1);
    if (!fwd(h)) CHECK(ctk_data(h, 1, 0)[5] == ctk_data(h, 0, 0)[5], "Concat of one bottom");
    ctk_free(h);
  }
}

static void test_slice(void) {
  /* axis 1, points 1 and 4 of 6 */
  ct_harness *h =
      mk("type: \"Slice\" slice_param { slice_point: 1 slice_point: 4 } top: \"a\" top: \"b\" top: \"c\"", "2x6x3");
  if (h) {
    const int C[3] = {1, 3, 2};
    float *x = ctk_data(h, 0, 0);
    fill_gauss(x, 36, 400, 0, 1);
    if (!fwd(h)) {
      for (int t = 0; t < 3; t++) check_shape(h, t, 3, (int[]){2, C[t], 3}, "Slice axis 1");
      int bad = 0;
      for (int n = 0; n < 2; n++)
        for (int c = 0; c < 6; c++)
          for (int w = 0; w < 3; w++) {
            int t = 0, cc = c;
            while (cc >= C[t]) cc -= C[t++];
            bad += x[(n * 6 + c) * 3 + w] != ctk_data(h, 1, t)[(n * C[t] + cc) * 3 + w];
          }
      CHECK(bad == 0, "Slice axis 1: %d wrong values", bad);
      for (int t = 0; t < 3; t++) fill_gauss(ctk_diff(h, 1, t), count_of(h, 1, t), 410 + t, 0, 1);
      ctk_backward(h, 1);
      bad = 0;
      for (int n = 0; n < 2; n++)
        for (int c = 0; c < 6; c++)
          for (int w = 0; w < 3; w++) {
            int t = 0, cc = c;
            while (cc >= C[t]) cc -= C[t++];
            bad += ctk_diff(h, 0, 0)[(n * 6 + c) * 3 + w] != ctk_diff(h, 1, t)[(n * C[t] + cc) * 3 + w];
          }
      CHECK(bad == 0, "Slice axis 1 backward: %d wrong values", bad);
    }
    ctk_free(h);
  }
  /* axis 0, even split into 2 */
  h = mk("type: \"Slice\" slice_param { axis: 0 } top: \"a\" top: \"b\"", "4x3");
  if (h) {
    float *x = ctk_data(h, 0, 0);
    fill_gauss(x, 12, 420, 0, 1);
    if (!fwd(h)) {
      check_shape(h, 0, 2, (int[]){2, 3}, "Slice axis 0");
      check_shape(h, 1, 2, (int[]){2, 3}, "Slice axis 0");
      int bad = 0;
      for (int i = 0; i < 12; i++) bad += x[i] != ctk_data(h, 1, i / 6)[i % 6];
      CHECK(bad == 0, "Slice axis 0: %d wrong values", bad);
    }
    ctk_free(h);
  }
  /* legacy slice_dim */
  h = mk("type: \"Slice\" slice_param { slice_dim: 2 slice_point: 3 } top: \"a\" top: \"b\"", "1x2x5");
  if (h) {
    check_shape(h, 0, 3, (int[]){1, 2, 3}, "Slice slice_dim 2");
    check_shape(h, 1, 3, (int[]){1, 2, 2}, "Slice slice_dim 2");
    ctk_free(h);
  }
}

static void test_split(void) {
  ct_harness *h = mk("type: \"Split\" top: \"a\" top: \"b\" top: \"c\"", "2x3x2");
  if (!h) return;
  float *x = ctk_data(h, 0, 0);
  fill_gauss(x, 12, 500, 0, 1);
  if (!fwd(h)) {
    int bad = 0;
    for (int t = 0; t < 3; t++) {
      check_shape(h, t, 3, (int[]){2, 3, 2}, "Split");
      for (int i = 0; i < 12; i++) bad += ctk_data(h, 1, t)[i] != x[i];
    }
    CHECK(bad == 0, "Split tops equal the bottom (%d differ)", bad);
    for (int t = 0; t < 3; t++) fill_gauss(ctk_diff(h, 1, t), 12, 510 + t, 0, 1);
    ctk_backward(h, 1);
    for (int i = 0; i < 12; i++)
      CHECK_CLOSE(ctk_diff(h, 0, 0)[i], (double)ctk_diff(h, 1, 0)[i] + ctk_diff(h, 1, 1)[i] + ctk_diff(h, 1, 2)[i],
                  1e-6, 1e-7, "Split gradient %d", i);
    /* the tops' diffs are their own */
    CHECK(ctk_diff(h, 1, 0) != ctk_diff(h, 1, 1), "Split tops have separate diffs");
  }
  ctk_free(h);
}

static void test_flatten_reshape(void) {
  struct {
    const char *text, *spec;
    int naxes, shape[6];
  } cases[] = {
      {"type: \"Flatten\"", "2x3x4x5", 2, {2, 60}},
      {"type: \"Flatten\" flatten_param { axis: 1 end_axis: 2 }", "2x3x4x5", 3, {2, 12, 5}},
      {"type: \"Flatten\" flatten_param { axis: 0 }", "2x3x4", 1, {24}},
      {"type: \"Flatten\" flatten_param { axis: -2 end_axis: -1 }", "2x3x4", 2, {2, 12}},
      {"type: \"Reshape\" reshape_param { shape { dim: 0 dim: -1 } }", "2x3x4", 2, {2, 12}},
      {"type: \"Reshape\" reshape_param { shape { dim: -1 dim: 0 dim: 2 } }", "2x3x4", 3, {4, 3, 2}},
      {"type: \"Reshape\" reshape_param { shape { dim: 3 dim: 0 dim: 4 } }", "4x2x3", 3, {3, 2, 4}},
      {"type: \"Reshape\" reshape_param { shape { dim: 2 dim: 2 } axis: 1 num_axes: 1 }", "3x4x5", 4, {3, 2, 2, 5}},
      {"type: \"Reshape\" reshape_param { shape { dim: 1 } axis: -1 num_axes: 0 }", "3x4", 3, {3, 4, 1}},
      {"type: \"Reshape\" reshape_param { shape { dim: 1 dim: -1 } axis: 0 num_axes: 0 }", "3x4", 4, {1, 1, 3, 4}},
      {"type: \"Reshape\" reshape_param { shape { dim: -1 } axis: 1 }", "2x3x4", 2, {2, 12}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    ct_harness *h = mk(cases[c].text, cases[c].spec);
    if (!h) continue;
    size_t n = count_of(h, 0, 0);
    fill_gauss(ctk_data(h, 0, 0), n, 600 + c, 0, 1);
    if (!fwd(h)) {
      check_shape(h, 0, cases[c].naxes, cases[c].shape, cases[c].text);
      int same = count_of(h, 1, 0) == n;
      for (size_t i = 0; same && i < n; i++) same = ctk_data(h, 1, 0)[i] == ctk_data(h, 0, 0)[i];
      CHECK(same, "%s keeps the data in order", cases[c].text);
      CHECK(ctk_data(h, 1, 0) == ctk_data(h, 0, 0) && ctk_diff(h, 1, 0) == ctk_diff(h, 0, 0),
            "%s views the bottom's memory", cases[c].text);
    }
    ctk_free(h);
  }
}

static void test_eltwise(void) {
  const char *texts[] = {
      "type: \"Eltwise\"",
      "type: \"Eltwise\" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 3 }",
      "type: \"Eltwise\" eltwise_param { operation: PROD }",
      "type: \"Eltwise\" eltwise_param { operation: MAX }",
  };
  for (int c = 0; c < 4; c++) {
    ct_harness *h = mk(texts[c], "2x3x5;2x3x5;2x3x5")  /* 30: vectors and a tail */;
    if (!h) continue;
    const float *x[3];
    for (int b = 0; b < 3; b++) {
      fill_gauss(ctk_data(h, 0, b), 30, 700 + 10 * c + b, 0, 1);
      x[b] = ctk_data(h, 0, b);
    }
    if (!fwd(h)) {
      const float *y = ctk_data(h, 1, 0);
      const double coeff[3] = {0.5, -2, 3};
      int winner[30];
      for (int i = 0; i < 30; i++) {
        double want;
        if (c == 0)
          want = (double)x[0][i] + x[1][i] + x[2][i];
        else if (c == 1)
          want = coeff[0] * x[0][i] + coeff[1] * x[1][i] + coeff[2] * x[2][i];
        else if (c == 2)
          want = (double)x[0][i] * x[1][i] * x[2][i];
        else {
          winner[i] = 0;
          for (int b = 1; b < 3; b++)
            if (x[b][i] > x[winner[i]][i]) winner[i] = b;
          want = x[winner[i]][i];
        }
        CHECK_CLOSE(y[i], want, 1e-6, 1e-6, "%s element %d", texts[c], i);
      }
      if (c == 3) {
        float *dy = ctk_diff(h, 1, 0);
        fill_gauss(dy, 30, 790, 0, 1);
        ctk_backward(h, 7);
        int bad = 0;
        for (int b = 0; b < 3; b++)
          for (int i = 0; i < 30; i++) bad += ctk_diff(h, 0, b)[i] != (winner[i] == b ? dy[i] : 0.0f);
        CHECK(bad == 0, "Eltwise MAX routes the gradient to the winner (%d wrong)", bad);
      }
      if (c == 2) { /* PROD: each bottom's gradient is dy times the other two */
        float *dy = ctk_diff(h, 1, 0);
        fill_gauss(dy, 30, 791, 0, 1);
        ctk_backward(h, 7);
        for (int b = 0; b < 3; b++)
          for (int i = 0; i < 30; i++)
            CHECK_CLOSE(ctk_diff(h, 0, b)[i], (double)dy[i] * x[(b + 1) % 3][i] * x[(b + 2) % 3][i], 1e-5, 1e-6,
                        "Eltwise PROD gradient of bottom %d, element %d", b, i);
      }
    }
    ctk_free(h);
  }
  /* MAX ties: between the first two bottoms the second wins, later ones must be strictly larger. */
  ct_harness *h = mk("type: \"Eltwise\" eltwise_param { operation: MAX }", "1;1;1");
  if (h) {
    ctk_data(h, 0, 0)[0] = ctk_data(h, 0, 1)[0] = ctk_data(h, 0, 2)[0] = 1.0f;
    if (!fwd(h)) {
      ctk_diff(h, 1, 0)[0] = 1.0f;
      ctk_backward(h, 7);
      CHECK(ctk_diff(h, 0, 0)[0] == 0 && ctk_diff(h, 0, 1)[0] == 1 && ctk_diff(h, 0, 2)[0] == 0,
            "Eltwise MAX tie goes to bottom 1 (Caffe's order)");
    }
    ctk_free(h);
  }
}

static void test_silence(void) {
  ct_harness *h = mk("type: \"Silence\"", "2x3;4");
  if (!h) return;
  fill_gauss(ctk_data(h, 0, 0), 6, 800, 0, 1);
  if (!fwd(h)) {
    for (int b = 0; b < 2; b++) fill_gauss(ctk_diff(h, 0, b), count_of(h, 0, b), 801, 0, 1);
    ctk_backward(h, 3);
    int nonzero = 0;
    for (int b = 0; b < 2; b++)
      for (size_t i = 0; i < count_of(h, 0, b); i++) nonzero += ctk_diff(h, 0, b)[i] != 0;
    CHECK(nonzero == 0, "Silence backward zeroes its bottoms' diffs");
  }
  CHECK(ctk_layer(h)->ops->max_top == 0 && ctk_layer(h)->ops->has_backward, "Silence: no tops, a backward");
  ctk_free(h);
}

/* ------------------------------------------------------------------ parameter errors */

static void test_errors(void) {
  /* Slice */
  expect_error(
      "name: \"s1\" type: \"Slice\" slice_param { slice_point: 3 slice_point: 2 } top: \"a\" top: \"b\" "
      "top: \"c\"",
      "2x6", "s1", "increase");
  expect_error("name: \"s2\" type: \"Slice\" slice_param { slice_point: 2 } top: \"a\" top: \"b\" top: \"c\"", "2x6",
               "s2", "tops");
  expect_error("name: \"s3\" type: \"Slice\" slice_param { slice_point: 7 } top: \"a\" top: \"b\"", "2x6", "s3",
               "beyond");
  expect_error("name: \"s4\" type: \"Slice\" top: \"a\" top: \"b\" top: \"c\" top: \"d\"", "2x6", "s4", "evenly");
  expect_error("name: \"s5\" type: \"Slice\" slice_param { axis: 1 slice_dim: 1 } top: \"a\" top: \"b\"", "2x6", "s5",
               "not both");
  expect_error("name: \"s6\" type: \"Slice\" slice_param { axis: 3 } top: \"a\" top: \"b\"", "2x6", "s6",
               "out of range");
  expect_error(
      "name: \"s7\" type: \"Slice\" slice_param { slice_point: 0 slice_point: 2 } top: \"a\" top: \"b\" "
      "top: \"c\"",
      "2x6", "s7", "positive");
  /* Concat */
  expect_error("name: \"c1\" type: \"Concat\"", "2x3x4;2x3x5", "c1", "concat axis");
  expect_error("name: \"c2\" type: \"Concat\"", "2x3x4;2x3", "c2", "concat axis");
  expect_error("name: \"c3\" type: \"Concat\" concat_param { axis: 3 }", "2x3x4;2x3x4", "c3", "out of range");
  expect_error("name: \"c4\" type: \"Concat\" concat_param { concat_dim: 5 }", "2x3x4;2x3x4", "c4", "out of range");
  expect_error("name: \"c5\" type: \"Concat\" concat_param { axis: 1 concat_dim: 1 }", "2x3;2x3", "c5", "not both");
  /* Reshape */
  expect_error("name: \"r1\" type: \"Reshape\" reshape_param { shape { dim: -1 dim: -1 } }", "2x3", "r1",
               "more than one -1");
  expect_error("name: \"r2\" type: \"Reshape\" reshape_param { shape { dim: 5 dim: 2 } }", "2x3", "r2", "holds");
  expect_error("name: \"r3\" type: \"Reshape\" reshape_param { shape { dim: 4 dim: -1 } }", "2x3", "r3", "multiple");
  expect_error("name: \"r4\" type: \"Reshape\" reshape_param { shape { dim: 0 dim: 0 dim: 0 } }", "2x3", "r4",
               "no axis");
  expect_error("name: \"r5\" type: \"Reshape\" reshape_param { shape { dim: -2 dim: 3 } }", "2x3", "r5", "-2");
  expect_error("name: \"r6\" type: \"Reshape\" reshape_param { shape { dim: 6 } axis: 3 }", "2x3", "r6",
               "out of range");
  expect_error("name: \"r7\" type: \"Reshape\" reshape_param { shape { dim: 6 } axis: 1 num_axes: 4 }", "2x3", "r7",
               "out of range");
  /* Flatten */
  expect_error("name: \"f1\" type: \"Flatten\" flatten_param { axis: 2 end_axis: 0 }", "2x3x4", "f1", "before");
  expect_error("name: \"f2\" type: \"Flatten\" flatten_param { axis: 4 }", "2x3x4", "f2", "out of range");
  /* Eltwise */
  expect_error("name: \"e1\" type: \"Eltwise\" eltwise_param { coeff: 1 coeff: 2 coeff: 3 }", "2x3;2x3", "e1",
               "one coeff per bottom");
  expect_error("name: \"e2\" type: \"Eltwise\" eltwise_param { operation: PROD coeff: 1 coeff: 2 }", "2x3;2x3", "e2",
               "SUM only");
  expect_error("name: \"e3\" type: \"Eltwise\"", "2x3;3x2", "e3", "must agree");
  /* neurons */
  expect_error("name: \"d1\" type: \"Dropout\" dropout_param { dropout_ratio: 1 }", "2x3", "d1", "[0, 1)");
  expect_error("name: \"d2\" type: \"Dropout\" dropout_param { dropout_ratio: -0.1 }", "2x3", "d2", "[0, 1)");
  expect_error("name: \"x1\" type: \"Exp\" exp_param { base: -2 }", "2x3", "x1", "positive");
  expect_error("name: \"l1\" type: \"Log\" log_param { base: 0 }", "2x3", "l1", "positive");
  expect_error("name: \"l2\" type: \"Log\" log_param { base: 1 }", "2x3", "l2", "base 1");
  expect_error("name: \"p1\" type: \"PReLU\"", "6", "p1", "at least 2 axes");
  /* losses and metrics */
  expect_error("name: \"eu1\" type: \"EuclideanLoss\"", "2x3;2x4", "eu1", "same count");
  expect_error("name: \"eu2\" type: \"EuclideanLoss\"", "2x3;3x2", "eu2", "same first axis");
  expect_error("name: \"sc1\" type: \"SigmoidCrossEntropyLoss\"", "2x3;2x2", "sc1", "same count");
  expect_error("name: \"a1\" type: \"Accuracy\" accuracy_param { top_k: 0 }", "2x3;2", "a1", "top_k");
  expect_error("name: \"a2\" type: \"Accuracy\" accuracy_param { top_k: 4 }", "2x3;2", "a2", "number of classes");
  expect_error("name: \"a3\" type: \"Accuracy\"", "2x3;3", "a3", "one label per item");
  expect_error("name: \"a4\" type: \"Accuracy\" accuracy_param { axis: 2 }", "2x3;2", "a4", "out of range");
  {
    /* a label outside the classes fails in forward */
    ct_harness *h = mk("name: \"a5\" type: \"Accuracy\"", "2x3;2");
    if (h) {
      ctk_data(h, 0, 1)[0] = 1;
      ctk_data(h, 0, 1)[1] = 3;
      int rc = ctk_forward(h, errbuf, sizeof errbuf);
      CHECK(rc != 0 && strstr(errbuf, "\"a5\"") && strstr(errbuf, "outside"), "Accuracy label 3 of 3 classes: %s",
            rc ? errbuf : "(no error)");
      ctk_free(h);
    }
  }
  expect_error("name: \"m1\" type: \"ArgMax\" argmax_param { top_k: 13 }", "2x3x4", "m1", "top_k");
  expect_error("name: \"m2\" type: \"ArgMax\" argmax_param { axis: 1 top_k: 4 }", "2x3x4", "m2", "top_k");
  expect_error("name: \"m3\" type: \"ArgMax\" argmax_param { axis: 3 }", "2x3x4", "m3", "out of range");
  expect_error("name: \"m4\" type: \"ArgMax\" argmax_param { top_k: 0 }", "2x3x4", "m4", "top_k");
}

int main(void) {
  test_neurons();
  test_dropout();
  test_euclidean();
  test_sigmoid_ce();
  test_accuracy();
  test_argmax();
  test_concat();
  test_slice();
  test_split();
  test_flatten_reshape();
  test_eltwise();
  test_silence();
  test_errors();
  return ct_check_report();
}
