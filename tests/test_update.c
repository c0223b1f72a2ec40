/* ct_update_*: configuration errors name their field; L2 and L1 weight decay on a hand-worked
 * example; the deprecated solver_type enum; parameter ranges. The numerical comparison of every
 * rule and policy against PyTorch and numpy is tests/py_torch_solvers.py. */
#include <string.h>

#include <stdlib.h>

#include "check.h"
#include "core/pool.h"
#include "core/rng.h"
#include "solvers/update.h"

/* check.h's CHECK_CLOSE appends the two values after the caller's format arguments, so it only
 * takes a plain message; this one takes a format. */
#define CLOSE(a, b, tol, ...) CHECK(fabs((double)(a) - (double)(b)) <= (tol), __VA_ARGS__)

static Caffe__SolverParameter base_sp(void) {
  Caffe__SolverParameter sp = CAFFE__SOLVER_PARAMETER__INIT;
  sp.has_base_lr = 1;
  sp.base_lr = 0.1f;
  sp.lr_policy = (char *)"fixed";
  return sp;
}

/* init must fail with CT_EINVAL and a message containing `field`. */
static void expect_einval(const Caffe__SolverParameter *sp, const char *field, const char *what) {
  float data[3] = {0}, diff[3] = {0};
  ct_update_param p = {0, 3, 1.f, 1.f};
  ct_update_ctx u;
  ct_error err = {0};
  ct_status s = ct_update_init(&u, sp, data, diff, 3, &p, 1, &err);
  CHECK(s == CT_EINVAL, "%s: status %d", what, (int)s);
  CHECK(s == CT_OK || strstr(err.msg, field) != NULL, "%s: message \"%s\" does not name %s", what, err.msg, field);
  CHECK(u.params == NULL && u.history[0] == NULL, "%s: a failed init left allocations", what);
  ct_update_free(&u); /* safe on a failed init */
}

static void test_errors(void) {
  Caffe__SolverParameter sp = base_sp();
  sp.type = (char *)"Adamax";
  expect_einval(&sp, "type", "unknown type");
  {
    float data[1] = {0}, diff[1] = {0};
    ct_update_param p = {0, 1, 1.f, 1.f};
    ct_update_ctx u;
    ct_error err = {0};
    ct_update_init(&u, &sp, data, diff, 1, &p, 1, &err);
    CHECK(strstr(err.msg, "Adamax") && strstr(err.msg, "Nesterov") && strstr(err.msg, "AdaDelta"),
          "unknown type: message \"%s\" should quote the value and list the valid ones", err.msg);
  }

  sp = base_sp();
  sp.lr_policy = (char *)"cosine";
  expect_einval(&sp, "lr_policy", "unknown lr_policy");
  sp.lr_policy = (char *)"";
  expect_einval(&sp, "lr_policy", "unset lr_policy");

  sp = base_sp();
  sp.lr_policy = (char *)"step";
  sp.has_gamma = 1;
  sp.gamma = 0.1f;
  expect_einval(&sp, "stepsize", "step without stepsize");
  sp.has_stepsize = 1;
  sp.stepsize = 0;
  expect_einval(&sp, "stepsize", "step with stepsize 0");

  sp = base_sp();
  sp.lr_policy = (char *)"poly";
  sp.has_power = 1;
  sp.power = 1.f;
  expect_einval(&sp, "max_iter", "poly without max_iter");

  sp = base_sp();
  sp.regularization_type = (char *)"L3";
  expect_einval(&sp, "regularization_type", "bad regularization_type");

  sp = base_sp();
  sp.type = (char *)"RMSProp";
  sp.has_momentum = 1;
  sp.momentum = 0.9f;
  expect_einval(&sp, "momentum", "RMSProp with momentum");

  sp = base_sp();
  sp.type = (char *)"Adam";
  sp.has_momentum = 1;
  sp.momentum = 1.f;
  expect_einval(&sp, "momentum", "Adam with beta1 = 1");

  sp = base_sp();
  sp.iter_size = 0;
  expect_einval(&sp, "iter_size", "iter_size 0");

  sp = base_sp();
  sp.type = (char *)"Adam";
  sp.has_solver_type = 1;
  sp.solver_type = CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__NESTEROV;
  expect_einval(&sp, "solver_type", "type and solver_type disagree");

  /* Parameter ranges must fit the buffer and not overlap. */
  sp = base_sp();
  float data[4] = {0}, diff[4] = {0};
  ct_update_ctx u;
  ct_error err = {0};
  ct_update_param out_of_range = {2, 3, 1.f, 1.f};
  CHECK(ct_update_init(&u, &sp, data, diff, 4, &out_of_range, 1, &err) == CT_EINVAL, "range past the buffer");
  ct_update_param overlap[2] = {{0, 3, 1.f, 1.f}, {2, 2, 1.f, 1.f}};
  CHECK(ct_update_init(&u, &sp, data, diff, 4, overlap, 2, &err) == CT_EINVAL, "overlapping ranges");
  ct_update_free(&u);
}

/* SGD without momentum, base_lr 0.1, weight_decay 0.5, decay_mult 2 (local decay 1):
 *   data {1, -2, 0}, gradient {0.5, 0.5, 0.5}
 *   L2: diff = g + 1*w       = {1.5, -1.5, 0.5} -> data - 0.1*diff = {0.85, -1.85, -0.05}
 *   L1: diff = g + 1*sign(w) = {1.5, -0.5, 0.5} -> data - 0.1*diff = {0.85, -1.95, -0.05} */
static void run_decay(const char *reg, const float want_diff[3], const float want_data[3]) {
  Caffe__SolverParameter sp = base_sp();
  sp.has_weight_decay = 1;
  sp.weight_decay = 0.5f;
  sp.regularization_type = (char *)reg;
  float data[3] = {1.f, -2.f, 0.f}, diff[3] = {0.5f, 0.5f, 0.5f};
  ct_update_param p = {0, 3, 1.f, 2.f};
  ct_update_ctx u;
  ct_error err = {0};
  ct_status s = ct_update_init(&u, &sp, data, diff, 3, &p, 1, &err);
  CHECK(s == CT_OK, "%s init: %s", reg, err.msg);
  if (s != CT_OK) return;
  CHECK(u.type == CT_SOLVER_SGD && u.nsets == 1, "%s: SGD with one history set", reg);
  float rate = ct_update_apply(&u, 0);
  CLOSE(rate, 0.1f, 0, "%s: rate %g", reg, (double)rate);
  for (int i = 0; i < 3; i++) {
    CLOSE(diff[i], 0.1f * want_diff[i], 1e-6, "%s: update[%d] = %g", reg, i, (double)diff[i]);
    CLOSE(data[i], want_data[i], 1e-6, "%s: data[%d] = %g", reg, i, (double)data[i]);
  }
  ct_update_free(&u);
  CHECK(u.params == NULL && u.history[0] == NULL, "%s: free clears the context", reg);
}

static void test_decay(void) {
  run_decay("L2", (const float[]){1.5f, -1.5f, 0.5f}, (const float[]){0.85f, -1.85f, -0.05f});
  run_decay("L1", (const float[]){1.5f, -0.5f, 0.5f}, (const float[]){0.85f, -1.95f, -0.05f});
}

/* The deprecated enum picks the rule when `type` keeps its default; AdaDelta and Adam keep two
 * history sets. */
static void test_solver_type_enum(void) {
  static const struct {
    Caffe__SolverParameter__SolverType e;
    ct_solver_type t;
    int nsets;
  } rows[] = {
      {CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__SGD, CT_SOLVER_SGD, 1},
      {CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__NESTEROV, CT_SOLVER_NESTEROV, 1},
      {CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__ADAGRAD, CT_SOLVER_ADAGRAD, 1},
      {CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__RMSPROP, CT_SOLVER_RMSPROP, 1},
      {CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__ADADELTA, CT_SOLVER_ADADELTA, 2},
      {CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__ADAM, CT_SOLVER_ADAM, 2},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    Caffe__SolverParameter sp = base_sp();
    sp.has_solver_type = 1;
    sp.solver_type = rows[i].e;
    float data[2] = {0}, diff[2] = {0};
    ct_update_param p = {0, 2, 1.f, 1.f};
    ct_update_ctx u;
    ct_error err = {0};
    ct_status s = ct_update_init(&u, &sp, data, diff, 2, &p, 1, &err);
    CHECK(s == CT_OK, "solver_type %d: %s", (int)rows[i].e, err.msg);
    CHECK(s != CT_OK || (u.type == rows[i].t && u.nsets == rows[i].nsets &&
                         (u.nsets == 1 ? u.history[1] == NULL : u.history[1] != NULL)),
          "solver_type %d: type %d nsets %d", (int)rows[i].e, (int)u.type, u.nsets);
    ct_update_free(&u);
  }
}

/* The update split across a thread pool gives bit-identical results to the serial one, for
 * every rule (each element's update is independent of the others). */
static void test_parallel(void) {
  const char *types[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};
  const size_t total = 300000;
  ct_update_param params[3] = {{0, 100003, 1.f, 1.f}, {100016, 150000, 2.f, 0.f}, {250016, 49984, 0.5f, 3.f}};
  ct_pool *pool = NULL;
  ct_error err = {0};
  CHECK(ct_pool_create(3, &pool, &err) == CT_OK, "%s", err.msg);
  for (int t = 0; t < 6; t++) {
    Caffe__SolverParameter sp = base_sp();
    sp.type = (char *)types[t];
    sp.has_weight_decay = 1;
    sp.weight_decay = 0.01f;
    if (t == 0 || t == 1 || t == 4 || t == 5) {
      sp.has_momentum = 1;
      sp.momentum = 0.9f;
    }
    float *data[2], *diff[2];
    ct_update_ctx u[2];
    for (int k = 0; k < 2; k++) {
      data[k] = malloc(total * sizeof(float));
      diff[k] = malloc(total * sizeof(float));
      ct_rng r;
      ct_rng_seed(&r, 5);
      for (size_t i = 0; i < total; i++) data[k][i] = ct_rng_gaussian(&r, 0, 1);
      CHECK(ct_update_init(&u[k], &sp, data[k], diff[k], total, params, 3, &err) == CT_OK, "%s", err.msg);
    }
    u[1].pool = pool;
    for (int step = 0; step < 3; step++)
      for (int k = 0; k < 2; k++) {
        ct_rng r;
        ct_rng_seed(&r, 100 + (uint64_t)step);
        for (size_t i = 0; i < total; i++) diff[k][i] = ct_rng_gaussian(&r, 0, 1);
        ct_update_apply(&u[k], step);
      }
    CHECK(!memcmp(data[0], data[1], total * sizeof(float)), "%s: parallel update differs from serial", types[t]);
    CHECK(!memcmp(u[0].history[0], u[1].history[0], total * sizeof(float)), "%s: history differs", types[t]);
    for (int k = 0; k < 2; k++) {
      ct_update_free(&u[k]);
      free(data[k]);
      free(diff[k]);
    }
  }
  ct_pool_free(pool);
}

int main(void) {
  test_parallel();
  test_errors();
  test_decay();
  test_solver_type_enum();
  return ct_check_report();
}
