/* Fillers against their definitions: moments and bounds of the random ones over many draws,
 * exact values of the deterministic ones, and errors for what a filler cannot serve. */
#include <string.h>

#include "check.h"
#include "core/filler.h"

/* t's values on the host */
static const float *vals(ct_tensor *t) {
  float *v = NULL;
  ct_error e;
  CHECK(ct_tensor_host(t, CT_DATA, CT_READ, &v, &e) == CT_OK, "host view: %s", e.msg);
  return v;
}

static void moments(ct_tensor *t, double *mean, double *sd, float *lo, float *hi) {
  double s = 0, s2 = 0;
  const float *v = vals(t);
  *lo = v[0];
  *hi = v[0];
  for (size_t i = 0; i < t->count; i++) {
    s += v[i];
    s2 += (double)v[i] * v[i];
    if (v[i] < *lo) *lo = v[i];
    if (v[i] > *hi) *hi = v[i];
  }
  *mean = s / (double)t->count;
  *sd = sqrt(s2 / (double)t->count - *mean * *mean);
}

static Caffe__FillerParameter filler(const char *type) {
  Caffe__FillerParameter f = CAFFE__FILLER_PARAMETER__INIT;
  f.type = (char *)type;
  return f;
}

int main(void) {
  ct_error err;
  ct_rng r;
  ct_rng_seed(&r, 11);
  ct_tensor *t = ct_tensor_create();
  ct_tensor_reshape4(t, 100, 50, 4, 5, &err); /* 100,000 values; fan_in 1000, fan_out 2000 */
  double mean, sd;
  float lo, hi;

  Caffe__FillerParameter f = filler("constant");
  f.value = 2.5f;
  CHECK(ct_fill(&f, t, &r, "t", &err) == CT_OK, "%s", err.msg);
  moments(t, &mean, &sd, &lo, &hi);
  CHECK(lo == 2.5f && hi == 2.5f, "constant");

  f = filler("uniform");
  f.min = -0.5f;
  f.max = 1.5f;
  ct_fill(&f, t, &r, "t", &err);
  moments(t, &mean, &sd, &lo, &hi);
  CHECK(lo >= -0.5f && hi < 1.5f, "uniform bounds [%g, %g]", lo, hi);
  CHECK_CLOSE(mean, 0.5, 0, 0.01, "uniform mean");
  CHECK_CLOSE(sd, 2.0 / sqrt(12.0), 0.01, 0, "uniform sd");

  f = filler("gaussian");
  f.mean = 1.0f;
  f.std = 0.3f;
  ct_fill(&f, t, &r, "t", &err);
  moments(t, &mean, &sd, &lo, &hi);
  CHECK_CLOSE(mean, 1.0, 0, 0.005, "gaussian mean");
  CHECK_CLOSE(sd, 0.3, 0.01, 0, "gaussian sd");

  f.sparse = 20; /* keep probability 20 / num_outputs (100) */
  f.mean = 0;
  ct_fill(&f, t, &r, "t", &err);
  size_t nz = 0;
  for (size_t i = 0; i < t->count; i++) nz += vals(t)[i] != 0;
  CHECK_CLOSE((double)nz / (double)t->count, 0.2, 0, 0.01, "sparse gaussian keeps 20%%");

  f = filler("xavier");
  ct_fill(&f, t, &r, "t", &err);
  moments(t, &mean, &sd, &lo, &hi);
  double a = sqrt(3.0 / 1000.0);
  CHECK(lo >= -a && hi <= a, "xavier within +-sqrt(3/fan_in)");
  CHECK_CLOSE(sd, a / sqrt(3.0), 0.01, 0, "xavier sd");
  f.variance_norm = CAFFE__FILLER_PARAMETER__VARIANCE_NORM__AVERAGE;
  ct_fill(&f, t, &r, "t", &err);
  moments(t, &mean, &sd, &lo, &hi);
  CHECK_CLOSE(sd, sqrt(3.0 / 1500.0) / sqrt(3.0), 0.01, 0, "xavier AVERAGE sd");

  f = filler("msra");
  f.variance_norm = CAFFE__FILLER_PARAMETER__VARIANCE_NORM__FAN_OUT;
  ct_fill(&f, t, &r, "t", &err);
  moments(t, &mean, &sd, &lo, &hi);
  CHECK_CLOSE(sd, sqrt(2.0 / 2000.0), 0.01, 0, "msra FAN_OUT sd");
  CHECK_CLOSE(mean, 0, 0, 0.001, "msra mean");

  f = filler("positive_unitball");
  ct_fill(&f, t, &r, "t", &err);
  for (int n = 0; n < 100; n++) {
    double s = 0;
    for (int k = 0; k < 1000; k++) {
      float v = vals(t)[n * 1000 + k];
      if (v < 0) s = -1e9;
      s += v;
    }
    CHECK_CLOSE(s, 1.0, 1e-4, 0, "positive_unitball row %d sums to 1", n);
  }

  ct_tensor *b = ct_tensor_create();
  ct_tensor_reshape4(b, 2, 1, 4, 4, &err);
  f = filler("bilinear");
  CHECK(ct_fill(&f, b, &r, "b", &err) == CT_OK, "%s", err.msg);
  /* kernel 4: f = 2, c = 0.75; weights (1 - |x/2 - 0.75|) per axis: 0.25 0.75 0.75 0.25 */
  const float w1[4] = {0.25f, 0.75f, 0.75f, 0.25f};
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) CHECK_CLOSE(vals(b)[16 + y * 4 + x], w1[y] * w1[x], 1e-6, 1e-7, "bilinear %d %d", y, x);
  ct_tensor_reshape4(b, 2, 1, 4, 3, &err);
  CHECK(ct_fill(&f, b, &r, "b", &err) == CT_EINVAL && strstr(err.msg, "b:"), "bilinear needs square kernels");
  f = filler("gausian");
  CHECK(ct_fill(&f, b, &r, "weights", &err) == CT_EINVAL && strstr(err.msg, "gausian") && strstr(err.msg, "weights"),
        "unknown filler named: %s", err.msg);
  f = filler("uniform");
  f.min = 2;
  f.max = 1;
  CHECK(ct_fill(&f, b, &r, "w", &err) == CT_EINVAL, "uniform with min > max");

  /* same seed, same values */
  ct_tensor *c1 = ct_tensor_create(), *c2 = ct_tensor_create();
  ct_tensor_reshape4(c1, 3, 4, 5, 6, &err);
  ct_tensor_reshape4(c2, 3, 4, 5, 6, &err);
  ct_rng r1, r2;
  ct_rng_seed(&r1, 99);
  ct_rng_seed(&r2, 99);
  f = filler("msra");
  ct_fill(&f, c1, &r1, "c", &err);
  ct_fill(&f, c2, &r2, "c", &err);
  CHECK(!memcmp(vals(c1), vals(c2), c1->count * sizeof(float)), "reproducible with a seed");
  ct_tensor_free(c1);
  ct_tensor_free(c2);
  ct_tensor_free(b);
  ct_tensor_free(t);
  return ct_check_report();
}
