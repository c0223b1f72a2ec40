/*
 * How the CLI shows a run (train, test, time), and the per-run metrics file.
 *
 *   UI_PLAIN  not a terminal (a log file, CI): glog-prefixed Caffe lines on stderr, every one of
 *             them, so Caffe's log parsers read the log unchanged.
 *   UI_TTY    stderr is a terminal: one live line (iteration / max_iter, smoothed loss, lr,
 *             images/s, elapsed, ETA) redrawn in place with \r; test scores, snapshots and results
 *             print as ordinary lines above it. Per-iteration lines are left out.
 *   UI_JSON   --log-format=json: one JSON object per event and line on stdout (stderr keeps the
 *             error messages), e.g. {"event":"train","iter":100,"loss":0.31,...}.
 *   UI_QUIET  --quiet: nothing but errors and a command's final results (test scores, timings).
 */
#ifndef CT_TOOLS_PROGRESS_H
#define CT_TOOLS_PROGRESS_H

#include <stdio.h>

#include "cortado.h"

typedef enum ui_mode { UI_PLAIN, UI_TTY, UI_JSON, UI_QUIET } ui_mode;

typedef struct ui {
  ui_mode mode;
  FILE *out;        /* where lines go: stderr, or stdout for JSON */
  int line_shown;   /* UI_TTY: a live line is on screen and must be erased before printing */
  char line[512];   /* UI_TTY: the live line's text */
  double last_draw; /* UI_TTY: monotonic seconds of the last redraw (redraws are throttled) */
  /* train progress */
  int target_iter;   /* the iteration the run stops at (max_iter, or start + --iterations) */
  int base_iter;     /* first iteration seen, with its time, for the ETA */
  double base_s;
  double images_per_s; /* the last non-zero speed reported */
  ct_event last;       /* the last TRAIN or ITER event (outputs not kept), for the final redraw */
  int have_last;
} ui;

/* Picks the mode from the flags and whether stderr is a terminal. */
ui_mode ui_pick_mode(int quiet, int json);
void ui_init(ui *u, ui_mode mode);
/* glog's full prefix for a line written now from file:line by this thread, as Caffe's log tools
 * (parse_log.sh, extract_seconds.py, parse_log.py) split it:
 * "I1206 18:25:29.105800 12345 solver.c:218] ". `file` may be a path (its base name is used). */
void glog_prefix(char *buf, size_t n, const char *file, int line);

/* A log line (ctx is a ui *). Always printed in UI_PLAIN and UI_TTY (above the live line), as
 * {"event":"log"} in UI_JSON, and not in UI_QUIET. ui_log_at is ct_solver_options.log_at; the
 * formatting forms below take the caller's file and line through their macros. */
void ui_log_at(void *ctx, const char *file, int line, const char *text);
void ui_logf_at(ui *u, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define ui_logf(u, ...) ui_logf_at(u, __FILE__, __LINE__, __VA_ARGS__)
/* A per-iteration line ("Batch 3, accuracy = 0.9"): printed in UI_PLAIN and UI_JSON only. */
void ui_verbosef_at(ui *u, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define ui_verbosef(u, ...) ui_verbosef_at(u, __FILE__, __LINE__, __VA_ARGS__)
/* A result line (final test scores, timings): printed in every mode, UI_QUIET included. */
void ui_resultf_at(ui *u, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define ui_resultf(u, ...) ui_resultf_at(u, __FILE__, __LINE__, __VA_ARGS__)
/* UI_TTY: sets the live line (throttled to 10 redraws a second unless `force`). Else nothing. */
void ui_status(ui *u, int force, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* UI_TTY: "label [=====>    ] i/n" as the live line. */
void ui_count(ui *u, const char *label, int i, int n, const char *extra);
/* Ends the live line (a newline), so the shell prompt does not overwrite it. */
void ui_finish(ui *u);

/* Writes one training event as a JSON object and a newline (no flush). */
void ui_event_json(FILE *f, const ct_event *e);
/* Writes `s` as a JSON string, quotes included. */
void json_string(FILE *f, const char *s);

/* ------------------------------------------------------------------ train runs */

/* What `train` attaches to the solver: the display and the metrics file. */
typedef struct train_watch {
  ui *u;
  FILE *metrics;       /* <prefix>_metrics.jsonl, appended; NULL when it could not be opened */
  char *metrics_path;  /* owned */
  char *prefix;        /* owned: the solver's snapshot_prefix (or Caffe's default) */
} train_watch;

/* The solver's snapshot prefix: snapshot_prefix, or the solver file's path without extension
 * (Caffe's default). Returns malloc'ed, NULL when the file cannot be read (the solver reports). */
char *solver_snapshot_prefix(const char *solver_path);
/* Opens <prefix>_metrics.jsonl for appending and writes a "start" record. A failure to open is
 * reported through the ui and training goes on without the file. */
void train_watch_open(train_watch *w, ui *u, const char *solver_path, int start_iter, int target_iter);
/* ct_solver_options.event (ctx is a train_watch *). */
void train_watch_event(void *ctx, const ct_event *e);
/* Closes the metrics file and draws <prefix>_curves.svg and .png from it. */
void train_watch_close(train_watch *w);

#endif
