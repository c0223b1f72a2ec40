/* The training loop end to end on Fashion-MNIST: a fixed seed gives bit-identical runs, a run
 * resumed from a snapshot ends bit-identical to the uninterrupted run (data cursor, shuffle,
 * dropout rng and solver history all restored), iter_size 2 at half batch matches one full batch,
 * and every solver type trains through the whole stack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net.h"

static char dir[] = "/tmp/ct_train_XXXXXX";

static const char *net_text(int batch) {
  static char buf[4096];
  snprintf(buf, sizeof buf,
           "name: 'small'\n"
           "layer { name: 'd' type: 'Data' top: 'data' top: 'label' transform_param { scale: 0.00390625 "
           "  mirror: true crop_size: 24 } idx_data_param { batch_size: %d shuffle: true "
           "  images: '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz' "
           "  labels: '/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz' } }\n"
           "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' convolution_param { num_output: 8 "
           "  kernel_size: 5 stride: 2 weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'pool' type: 'Pooling' bottom: 'conv' top: 'pool' pooling_param { pool: MAX kernel_size: 2 "
           "  stride: 2 } }\n"
           "layer { name: 'fc1' type: 'InnerProduct' bottom: 'pool' top: 'fc1' inner_product_param { num_output: 32 "
           "  weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'relu' type: 'ReLU' bottom: 'fc1' top: 'fc1' }\n"
           "layer { name: 'drop' type: 'Dropout' bottom: 'fc1' top: 'fc1' dropout_param { dropout_ratio: 0.3 } }\n"
           "layer { name: 'fc2' type: 'InnerProduct' bottom: 'fc1' top: 'fc2' inner_product_param { num_output: 10 "
           "  weight_filler { type: 'xavier' } } }\n"
           "layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc2' bottom: 'label' top: 'loss' }\n",
           batch);
  return buf;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* Writes a solver with the given extra lines; returns its path (static buffer). */
static const char *solver(const char *name, int batch, const char *extra) {
  static char path[512];
  char netp[512], text[4096];
  snprintf(netp, sizeof netp, "%s/%s_net.prototxt", dir, name);
  write_file(netp, net_text(batch));
  /* defaults for what `extra` does not set (a field given twice is a parse error) */
  snprintf(text, sizeof text,
           "net: '%s'\n%sweight_decay: 0.0005\n%s%s"
           "random_seed: 17\nsnapshot_prefix: '%s/%s'\nsnapshot_after_train: false\n%s",
           netp, strstr(extra, "base_lr") ? "" : "base_lr: 0.02\n", strstr(extra, "lr_policy") ? "" : "lr_policy: 'inv'\ngamma: 0.0001\npower: 0.75\n",
           strstr(extra, "max_iter") ? "" : "max_iter: 40\n", dir, name, extra);
  snprintf(path, sizeof path, "%s/%s_solver.prototxt", dir, name);
  write_file(path, text);
  return path;
}

static void quiet_log(void *ctx, const char *line) {
  (void)ctx;
  (void)line;
}

static float *run(const char *path, int steps, const char *snapshot, size_t *n, ct_error *err) {
  ct_solver_options opt = {0};
  opt.snapshot = snapshot;
  opt.log = quiet_log;
  ct_solver *s = NULL;
  if (ct_solver_create(path, &opt, &s, err)) return NULL;
  if (ct_solver_step(s, steps, err)) {
    ct_solver_free(s);
    return NULL;
  }
  ct_net *net = ct_solver_net(s);
  *n = ct_net_param_total(net);
  float *w = malloc(*n * sizeof(float));
  memcpy(w, ct_net_param_buffer(net), *n * sizeof(float));
  ct_solver_free(s);
  return w;
}

static void test_determinism_and_resume(const char *type, const char *more) {
  ct_error err = {0};
  char extra[256], name[64];
  snprintf(extra, sizeof extra, "type: '%s'\n%s", type, more);
  snprintf(name, sizeof name, "det_%s", type);
  char path[512];
  snprintf(path, sizeof path, "%s", solver(name, 16, extra));
  size_t n1 = 0, n2 = 0, n3 = 0;
  float *a = run(path, 40, NULL, &n1, &err);
  CHECK(a, "%s: %s", type, err.msg);
  float *b = run(path, 40, NULL, &n2, &err);
  CHECK(b && n1 == n2 && !memcmp(a, b, n1 * sizeof(float)), "%s: same seed, bit-identical weights", type);
  /* interrupted at 20: snapshot, then resume in a fresh solver */
  ct_solver_options opt = {0};
  opt.log = quiet_log;
  ct_solver *s = NULL;
  char *model = NULL, *state = NULL;
  CHECK(ct_solver_create(path, &opt, &s, &err) == CT_OK, "%s", err.msg);
  if (s) {
    CHECK(ct_solver_step(s, 20, &err) == CT_OK, "%s", err.msg);
    CHECK(ct_solver_snapshot(s, &model, &state, &err) == CT_OK, "%s", err.msg);
    ct_solver_free(s);
  }
  float *c = state ? run(path, 20, state, &n3, &err) : NULL;
  CHECK(c, "resume: %s", err.msg);
  if (a && c) {
    size_t diff = 0;
    for (size_t i = 0; i < n1; i++) diff += a[i] != c[i];
    CHECK(n3 == n1 && diff == 0, "%s: resumed run differs from the uninterrupted one in %zu of %zu weights", type, diff,
          n1);
  }
  free(model);
  free(state);
  free(a);
  free(b);
  free(c);
}

static void test_iter_size(void) {
  ct_error err = {0};
  char p1[512], p2[512];
  /* Both runs see the same images in the same order and the transform draws its crops and
   * mirrors per image in that order, so inputs agree; dropout masks would not, so drop it. */
  snprintf(p1, sizeof p1, "%s", solver("full", 32, "type: 'SGD'\nmomentum: 0.9\n"));
  snprintf(p2, sizeof p2, "%s", solver("half", 16, "type: 'SGD'\nmomentum: 0.9\niter_size: 2\n"));
  /* drop the dropout layer from both nets */
  for (int k = 0; k < 2; k++) {
    char netp[512];
    snprintf(netp, sizeof netp, "%s/%s_net.prototxt", dir, k ? "half" : "full");
    char *t = strdup(net_text(k ? 16 : 32));
    char *d = strstr(t, "layer { name: 'drop'");
    char *e = d ? strchr(d, '\n') : NULL;
    if (d && e) memmove(d, e + 1, strlen(e + 1) + 1);
    write_file(netp, t);
    free(t);
  }
  size_t n1 = 0, n2 = 0;
  float *a = run(p1, 10, NULL, &n1, &err);
  CHECK(a, "%s", err.msg);
  float *b = run(p2, 10, NULL, &n2, &err);
  CHECK(b, "%s", err.msg);
  if (a && b && n1 == n2) {
    double worst = 0;
    for (size_t i = 0; i < n1; i++) {
      double d = fabs((double)a[i] - b[i]) / (fabs(a[i]) > 1e-2 ? fabs(a[i]) : 1e-2);
      if (d > worst) worst = d;
    }
    CHECK(worst < 1e-3, "iter_size 2 x 16 vs batch 32: worst relative difference %g", worst);
  }
  free(a);
  free(b);
}

static void test_snapshot_files(void) {
  ct_error err = {0};
  const char *path = solver("snap", 8, "snapshot: 10\nmax_iter: 20\n");
  ct_solver_options opt = {0};
  opt.log = quiet_log;
  ct_solver *s = NULL;
  CHECK(ct_solver_create(path, &opt, &s, &err) == CT_OK, "%s", err.msg);
  if (!s) return;
  CHECK(ct_solver_solve(s, &err) == CT_OK, "%s", err.msg);
  ct_solver_free(s);
  char p[600];
  snprintf(p, sizeof p, "%s/snap_iter_10.caffemodel", dir);
  CHECK(access(p, F_OK) == 0, "%s written", p);
  snprintf(p, sizeof p, "%s/snap_iter_20.solverstate", dir);
  CHECK(access(p, F_OK) == 0, "%s written", p);
}

static void test_solver_errors(void) {
  ct_error err = {0};
  ct_solver *s = NULL;
  const char *p = solver("bad1", 8, "lr_policy: 'sometimes'\n");
  CHECK(ct_solver_create(p, NULL, &s, &err) == CT_EINVAL && strstr(err.msg, "sometimes"), "bad lr_policy: %s",
        err.msg);
  char path[512];
  snprintf(path, sizeof path, "%s/bad2.prototxt", dir);
  write_file(path, "base_lr: 0.1\nmax_iter: 3\n");
  CHECK(ct_solver_create(path, NULL, &s, &err) == CT_EINVAL && strstr(err.msg, "net"), "no net: %s", err.msg);
  snprintf(path, sizeof path, "%s/bad3.prototxt", dir);
  write_file(path, "net: '/nonexistent/net.prototxt'\nmax_iter: 3\n");
  CHECK(ct_solver_create(path, NULL, &s, &err) != CT_OK && strstr(err.msg, "/nonexistent/net.prototxt"),
        "missing net file: %s", err.msg);
  p = solver("bad4", 8, "test_iter: 5\n");
  CHECK(ct_solver_create(p, NULL, &s, &err) == CT_OK, "a test_iter for the generic test net is fine: %s", err.msg);
  ct_solver_free(s);
  s = NULL;
  p = solver("bad5", 8, "type: 'SGD'\n");
  CHECK(ct_solver_create(p, &(ct_solver_options){.snapshot = "/nonexistent.solverstate"}, &s, &err) != CT_OK &&
            strstr(err.msg, "/nonexistent.solverstate"),
        "missing snapshot: %s", err.msg);
}

typedef struct counts {
  int train, test, snapshot, done, last_iter;
  float last_loss, last_lr;
} counts;

static void count_event(void *ctx, const ct_event *e) {
  counts *c = ctx;
  switch (e->kind) {
    case CT_EVENT_TRAIN:
      c->train++;
      c->last_iter = e->iter;
      c->last_loss = e->loss;
      c->last_lr = e->lr;
      break;
    case CT_EVENT_TEST: c->test++; break;
    case CT_EVENT_SNAPSHOT: c->snapshot += e->path && e->path2; break;
    case CT_EVENT_DONE: c->done++; break;
    default: break;
  }
}

static void test_events(void) {
  ct_error err = {0};
  const char *path = solver("events", 8, "display: 10\ntest_iter: 2\ntest_interval: 20\nsnapshot: 20\n");
  counts c = {0};
  ct_solver_options opt = {.log = quiet_log, .event = count_event, .event_ctx = &c};
  ct_solver *s = NULL;
  CHECK(ct_solver_create(path, &opt, &s, &err) == CT_OK, "%s", err.msg);
  if (!s) return;
  CHECK(ct_solver_solve(s, &err) == CT_OK, "%s", err.msg);
  ct_solver_free(s);
  CHECK(c.train == 4 && c.last_iter == 30, "train events at 0,10,20,30: %d, last %d", c.train, c.last_iter);
  CHECK(c.test == 3, "tests at 0, 20, 40: %d", c.test);
  CHECK(c.snapshot == 2 && c.done == 1, "snapshots %d done %d", c.snapshot, c.done);
  CHECK(c.last_loss > 0 && c.last_lr > 0, "loss %g lr %g reported", c.last_loss, c.last_lr);
}

/* A diverging run stops with CT_ENUMERIC naming the iteration, before NaN reaches a snapshot. */
static void test_divergence(void) {
  ct_error err = {0};
  const char *path = solver("diverge", 8, "base_lr: 1e12\nlr_policy: 'fixed'\nsnapshot: 1\nmomentum: 0.9\n");
  ct_solver_options opt = {.log = quiet_log};
  ct_solver *s = NULL;
  CHECK(ct_solver_create(path, &opt, &s, &err) == CT_OK, "%s", err.msg);
  if (!s) return;
  ct_status st = ct_solver_step(s, 40, &err);
  CHECK(st == CT_ENUMERIC && strstr(err.msg, "iteration ") && strstr(err.msg, "layer \""), "divergence: %d %s", st,
        err.msg);
  int stopped = ct_solver_iter(s);
  ct_solver_free(s);
  /* the last snapshot written holds finite weights */
  char p[600];
  snprintf(p, sizeof p, "%s/diverge_iter_%d.caffemodel", dir, stopped);
  ct_net *net = NULL;
  char netp[600];
  snprintf(netp, sizeof netp, "%s/diverge_net.prototxt", dir);
  if (stopped > 0) {
    CHECK(ct_net_create(netp, CT_TRAIN, 0, NULL, p, &net, &err) == CT_OK, "last snapshot loads: %s", err.msg);
    if (net) {
      const float *w = ct_net_param_buffer(net);
      bool finite = true;
      for (size_t i = 0; i < ct_net_param_total(net); i++) finite &= isfinite(w[i]) != 0;
      CHECK(finite, "the last snapshot before the failure is finite");
      ct_net_free(net);
    }
  }
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
    fprintf(stderr, "dataset-fashion-mnist is not installed (make test installs it)\n");
    return 1;
  }
  /* AdaGrad and RMSProp take no momentum in Caffe; AdaDelta and Adam use it as their decay */
  const char *types[][2] = {{"SGD", "momentum: 0.9\n"},        {"Nesterov", "momentum: 0.9\n"},
                            {"AdaGrad", ""},                      {"RMSProp", "rms_decay: 0.98\n"},
                            {"AdaDelta", "momentum: 0.95\ndelta: 1e-6\n"}, {"Adam", "momentum: 0.9\n"}};
  for (int i = 0; i < 6; i++) test_determinism_and_resume(types[i][0], types[i][1]);
  test_iter_size();
  test_snapshot_files();
  test_solver_errors();
  test_events();
  test_divergence();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return ct_check_report();
}
