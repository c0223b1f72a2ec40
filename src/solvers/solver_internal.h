/* The solver's state, shared by the files of src/solvers: solver.c (creating a solver, testing,
 * the training loop) and snapshot.c (snapshots and resuming). Not for code outside them. */
#ifndef CT_SOLVER_INTERNAL_H
#define CT_SOLVER_INTERNAL_H

#include <stdarg.h>
#include <time.h>

#include "cortado.h"
#include "dist/cluster.h"
#include "net/net.h"
#include "solvers/update.h"

struct ct_solver {
  Caffe__SolverParameter *sp;
  char *path, *dir;
  char *prefix; /* snapshot prefix */
  uint64_t seed;
  ct_net *net;
  int ntest;
  ct_net **test_nets;
  int *test_iter;
  ct_update_ctx upd;
  int iter;
  /* smoothed loss over average_loss iterations */
  float *losses;
  int nloss, loss_pos, loss_window;
  ct_solver_options opt;
  struct timespec last_display;
  int last_display_iter;
  struct timespec created;
  ct_cluster *cluster; /* issue 5: SINGA's cluster (src/dist); NULL in a single-process run */
  ct_digest *digest;   /* issue 24: during start-up, what the nets hash to as parsed */
  const char *stand_ins; /* issue 24: a server-only process's Input layers for the data layers */
};

/* A log line, on the root process only, unless the options say quiet. */
void ct_solver_vlogf(ct_solver *s, const char *fmt, va_list ap);
/* Adds a loss to the window of average_loss and returns the window's mean (Caffe's smoothed
 * loss; snapshots save the window and resuming refills it through here). */
float ct_solver_smoothed_loss(ct_solver *s, float loss);
/* An event to the options' callback, on the root process only, with iter and elapsed time. */
void ct_solver_emit(ct_solver *s, ct_event *e);

#endif
