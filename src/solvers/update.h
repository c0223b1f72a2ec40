/* Caffe's update rules and learning-rate policies over the net's flat parameter buffers.
 *
 * Parameters live in one contiguous buffer (data) and their gradients in another (diff); each
 * learnable parameter is a range [offset, offset+count) with its own lr_mult and decay_mult.
 * History buffers have the same layout. SGD, Nesterov, AdaGrad and RMSProp keep one history set;
 * AdaDelta and Adam keep two (Caffe's order in .solverstate: all of set 0, then all of set 1). */
#ifndef CT_UPDATE_H
#define CT_UPDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"
#include "core/storage.h"
#include "cortado.pb-c.h"
#include "net/net.h"

typedef struct ct_driver ct_driver;

typedef enum ct_solver_type {
  CT_SOLVER_SGD,
  CT_SOLVER_NESTEROV,
  CT_SOLVER_ADAGRAD,
  CT_SOLVER_RMSPROP,
  CT_SOLVER_ADADELTA,
  CT_SOLVER_ADAM
} ct_solver_type;

typedef ct_param_range ct_update_param;

typedef struct ct_update_ctx {
  const Caffe__SolverParameter *sp; /* borrowed; must outlive the ctx */
  ct_solver_type type;
  float *data, *diff; /* borrowed: the net's flat buffers */
  size_t total;
  ct_update_param *params; /* owned copy */
  int nparams;
  int nsets;           /* history sets: 1 or 2 */
  float *history[2];   /* the host copies of hist (below): `total` floats each, zero at start */
  struct ct_pool *pool; /* borrowed, may be NULL: threads to split the update over */
  /* owned: the history's storage, so that an update on a device keeps it there (the fields
   * above stay first: tests/py_torch_solvers.py mirrors them through ctypes) */
  ct_storage *hist[2];
} ct_update_ctx;

/* Reads the solver type (the `type` string, else the deprecated solver_type enum) and checks
 * every field the rule and the lr policy need (lr_policy known, stepsize > 0 for "step",
 * regularization_type L1 or L2, momentum < 1 for Adam's beta1, ...). Messages name the field. */
ct_status ct_update_init(ct_update_ctx *u, const Caffe__SolverParameter *sp, float *data, float *diff,
                         size_t total, const ct_update_param *params, int nparams, ct_error *err);
void ct_update_free(ct_update_ctx *u);

/* The learning rate at iteration iter (Caffe's GetLearningRate; multistep's current step is
 * derived from iter, so nothing extra needs saving). */
float ct_update_rate(const Caffe__SolverParameter *sp, int iter);

/* One of Caffe's ApplyUpdate at iteration iter (0-based, the iteration being completed):
 * clip gradients by global L2 norm (clip_gradients >= 0; Caffe's default -1 turns it off),
 * divide diffs by iter_size, add weight
 * decay (L2 or L1, times decay_mult), compute the rule's update into diff (times lr_mult), and
 * subtract it from data. Returns the learning rate used. The arithmetic runs on driver d (whose
 * memory data, diff and the history must be); ct_update_apply runs it on the CPU driver.
 * (The driver is an argument rather than a member of ct_update_ctx: the struct's layout is
 * mirrored through ctypes by tests/py_torch_solvers.py.) */
ct_status ct_update_apply_on(ct_update_ctx *u, const ct_driver *d, int iter, float *rate, ct_error *err);
float ct_update_apply(ct_update_ctx *u, int iter);
/* As ct_update_apply_on; with zero_diff the gradients are left zeroed (each block right after
 * its update, while it is in cache) instead of holding the step, so the training loop need not
 * clear them before the next iteration: one pass over the gradients fewer. On a device, data
 * and diff must be that device's and the history moves there (counted); a device failure is
 * returned with its reason. */
ct_status ct_update_apply_clear(ct_update_ctx *u, const ct_driver *d, int iter, bool zero_diff, float *rate,
                                ct_error *err);
/* History set k on the host, up to date (after updates on a device), for snapshots. */
ct_status ct_update_history_host(ct_update_ctx *u, int k, float **out, ct_error *err);

#endif
