/* cortado train: Caffe's `caffe train` over the library's solver, with Caffe's signal handling:
 * SIGINT (and SIGTERM, which a job scheduler or mpirun sends) and SIGHUP each ask the solver,
 * at the next iteration boundary, for what --sigint_effect / --sighup_effect say:
 *   stop      snapshot (snapshot_after_train) and end: exit status EXIT_STOPPED (3)
 *   snapshot  write a snapshot and go on
 *   none      nothing
 * Caffe's defaults: SIGINT stop, SIGHUP snapshot. The handlers only set flags; the solver asks
 * for them between iterations, so a stop never cuts an iteration or a file write in half, and
 * the snapshot resumes exactly where the run stopped. */
#include "cli.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

/* Set by the handlers, taken by the solver's action callback. A signal handler can only talk to
 * the rest of the program through such globals. */
static volatile sig_atomic_t pending_int, pending_hup;

static void on_signal(int sig) {
  if (sig == SIGHUP)
    pending_hup = 1;
  else
    pending_int = 1; /* SIGINT, SIGTERM */
}

typedef struct effects {
  ct_solver_action on_int, on_hup;
} effects;

/* Caffe's GetRequestedAction: SIGINT's effect first, then SIGHUP's. */
static ct_solver_action requested(void *ctx) {
  const effects *e = ctx;
  if (pending_int) {
    pending_int = 0;
    if (e->on_int != CT_ACTION_NONE) return e->on_int;
  }
  if (pending_hup) {
    pending_hup = 0;
    if (e->on_hup != CT_ACTION_NONE) return e->on_hup;
  }
  return CT_ACTION_NONE;
}

static int parse_effect(const char *flag, const char *v, ct_solver_action *out) {
  if (!strcmp(v, "stop")) *out = CT_ACTION_STOP;
  else if (!strcmp(v, "snapshot")) *out = CT_ACTION_SNAPSHOT;
  else if (!strcmp(v, "none")) *out = CT_ACTION_NONE;
  else return usage_error("train", "--%s must be stop, snapshot or none, got '%s'", flag, v);
  return EXIT_OK;
}

static void install_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; /* a read interrupted by the signal goes on: the loop looks later */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
}

/* Caffe's "Ignoring source layer ..." and the weights warnings, as log lines. */
static void weights_note(void *ctx, const char *line) {
  (void)ctx;
  logf_("%s", line);
}

int run_train(args *a) {
  enum { MAX_WEIGHTS = 64 };
  const char *weights[MAX_WEIGHTS];
  char *weights_buf = NULL;
  int nweights = 0, rc = EXIT_OK;
  ct_solver *solver = NULL;
  ct_error err = {0};
  ct_status s;
  effects fx = {CT_ACTION_STOP, CT_ACTION_SNAPSHOT};

  if (a->given[F_SIGINT_EFFECT] && (rc = parse_effect("sigint_effect", a->value[F_SIGINT_EFFECT], &fx.on_int)))
    return rc;
  if (a->given[F_SIGHUP_EFFECT] && (rc = parse_effect("sighup_effect", a->value[F_SIGHUP_EFFECT], &fx.on_hup)))
    return rc;
  /* In a job of several MPI processes a file missing on one of them must reach the others, so
   * the library reads it and tells them all (issue 24); a check here would end this one alone. */
  const bool alone = !launched_with_others();
  if (alone && (rc = check_readable("solver", a->value[F_SOLVER]))) return rc;
  if (alone && a->given[F_SNAPSHOT] && (rc = check_readable("snapshot", a->value[F_SNAPSHOT]))) return rc;
  if (a->given[F_WEIGHTS]) {
    weights_buf = strdup(a->value[F_WEIGHTS]);
    if (!weights_buf) {
      fprintf(stderr, "cortado: out of memory\n");
      return EXIT_LIB;
    }
    nweights = split_commas(weights_buf, weights, MAX_WEIGHTS);
    if (nweights == 0) {
      rc = usage_error("train", "--weights needs at least one .caffemodel path");
      goto done;
    }
    for (int i = 0; i < nweights && (alone || nweights > 1); i++)
      if ((rc = check_readable("weights", weights[i]))) goto done;
  }
  /* Before the solver, as Caffe does: a signal during setup stops after the first iteration. */
  install_handlers();

  ct_solver_options opt = {0};
  train_watch watch = {0};
  /* The solver's own Caffe lines only where they are wanted as they are: plain logs. */
  opt.quiet = a->ui.mode != UI_PLAIN;
  opt.log_at = ui_log_at;
  opt.log_ctx = &a->ui;
  opt.event = train_watch_event;
  opt.event_ctx = &watch;
  opt.action = requested;
  opt.action_ctx = &fx;
  opt.snapshot = a->given[F_SNAPSHOT] ? a->value[F_SNAPSHOT] : NULL;
  opt.has_level = a->given[F_LEVEL];
  opt.level = a->level;
  opt.stages = a->stages;
  opt.allow_nonfinite = a->given[F_ALLOW_NONFINITE] && a->value[F_ALLOW_NONFINITE];
  /* One file goes through the solver; a list is copied in order, later files winning, as Caffe's
   * CopyLayers does. */
  opt.weights = nweights == 1 ? weights[0] : NULL;
  opt.partitions = a->partitions;
  opt.devices = a->value[F_DEVICE];
  s = ct_solver_create(a->value[F_SOLVER], &opt, &solver, &err);
  if (s != CT_OK) {
    rc = lib_error(s, &err);
    goto done;
  }
  /* In a cluster run only rank 0 speaks and writes the metrics and curves. */
  const bool root = ct_solver_is_root(solver);
  if (!opt.quiet && root) {
    log_blas_core();
    if (opt.snapshot) logf_("Resumed from %s", opt.snapshot);
    for (int i = 0; i < nweights; i++) logf_("Finetuning from %s", weights[i]);
  }
  if (nweights > 1) {
    ct_weights_opts wo = {.note = root && !opt.quiet ? weights_note : NULL, .allow_nonfinite = opt.allow_nonfinite};
    for (int i = 0; i < nweights; i++) {
      s = ct_net_load_weights_ex(ct_solver_net(solver), weights[i], &wo, &err);
      for (int t = 0; s == CT_OK && t < ct_solver_num_test_nets(solver); t++)
        s = ct_net_load_weights_ex(ct_solver_test_net(solver, t), weights[i], &wo, &err);
      if (s != CT_OK) {
        rc = lib_error(s, &err);
        goto done;
      }
    }
  }

  const int start = ct_solver_iter(solver);
  if (a->given[F_ITERATIONS] && start > INT_MAX - a->iterations) {
    fprintf(stderr, "cortado: --iterations=%d from iteration %d passes the largest iteration number, %d\n",
            a->iterations, start, INT_MAX);
    rc = EXIT_LIB;
    goto done;
  }
  const int target = a->given[F_ITERATIONS] ? start + a->iterations : 0;
  if (root) train_watch_open(&watch, &a->ui, a->value[F_SOLVER], start, target);
  if (!opt.quiet && root) logf_("Starting Optimization");
  /* --iterations ends like max_iter does: snapshot, final display and test (the library logs
   * the snapshot's paths) */
  s = a->given[F_ITERATIONS] ? ct_solver_solve_to(solver, target, &err) : ct_solver_solve(solver, &err);
  if (s != CT_OK) {
    rc = lib_error(s, &err);
    goto done;
  }
  if (ct_solver_stopped(solver)) {
    if (root && !opt.quiet)
      logf_("Stopped by a signal at iteration %d; resume with --snapshot", ct_solver_iter(solver));
    rc = EXIT_STOPPED;
  } else if (a->given[F_ITERATIONS] && root && !opt.quiet) {
    logf_("Stopped after %d iterations, at iteration %d", a->iterations, ct_solver_iter(solver));
  }

done:
  if (solver && watch.u) train_watch_close(&watch); /* opened on the root rank only */
  ct_solver_free(solver);
  free(weights_buf);
  return rc;
}
