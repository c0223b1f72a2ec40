/* What src/solvers/solver.c (the loop, testing) and src/solvers/snapshot.c (snapshot, restore)
 * share: the solver's state and a few helpers. Private to src/solvers. */
#ifndef CT_SOLVER_INTERNAL_H
#define CT_SOLVER_INTERNAL_H

#include <stdbool.h>
#include <time.h>

#include "cortado.h"
#include "cortado.pb-c.h"
#include "dist/cluster.h"
#include "net/net.h"
#include "proto/prototxt.h"
#include "solvers/update.h"

struct ct_solver {
  Caffe__SolverParameter *sp;
  ct_srcmap *map; /* positions in the solver file, for messages about its inline nets */
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
  bool stopped;        /* an action asked the run to stop */
  bool solving_logged; /* "Solving <net>" went out: Caffe's log tools time everything from it */
  ct_digest *digest;     /* issue 24: during start-up, what the nets hash to as parsed */
  const char *stand_ins; /* issue 24: a server-only process's Input layers for the data layers */
};

/* Log lines carry the file and line that wrote them (glog's "solver.c:218]" field); only the
 * root process logs. */
void ct_solver_log_at(ct_solver *s, const char *file, int line_no, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define logf_(s, ...) ct_solver_log_at(s, __FILE__, __LINE__, __VA_ARGS__)
/* Caffe's debug_info lines, through the solver's log (a net's debug callback; ctx: the solver). */
void ct_solver_debug_log(void *ctx, const char *line);
/* Reports an event to ct_solver_options.event (root only). */
void ct_solver_emit(ct_solver *s, ct_event *e);
/* Pushes a loss into the average_loss window; returns the window's mean. */
float ct_solver_smooth_loss(ct_solver *s, float loss);

#endif
