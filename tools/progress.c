/* The CLI's display modes (see progress.h) and the metrics file of a training run. */
#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/files.h"
#include "plot.h"
#include "cortado.pb-c.h"
#include "proto/prototxt.h"

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ui_mode ui_pick_mode(int quiet, int json) {
  if (json) return UI_JSON;
  if (quiet) return UI_QUIET;
  return isatty(STDERR_FILENO) ? UI_TTY : UI_PLAIN;
}

void ui_init(ui *u, ui_mode mode) {
  memset(u, 0, sizeof *u);
  u->mode = mode;
  u->out = mode == UI_JSON ? stdout : stderr;
  u->base_iter = -1;
}

/* ------------------------------------------------------------------ JSON */

void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", f);
    else if (*p == '\t')
      fputs("\\t", f);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* JSON has no NaN or Inf: they become null. */
static void json_number(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.9g", v);
  else
    fputs("null", f);
}

/* Output names as keys: an output blob with several elements gives name[0], name[1], ... */
static void json_outputs(FILE *f, const ct_event *e) {
  fputs(",\"outputs\":{", f);
  for (int i = 0; i < e->noutputs; i++) {
    const char *name = e->output_names[i];
    int first = i, count = 0;
    while (first > 0 && strcmp(e->output_names[first - 1], name) == 0) first--;
    while (first + count < e->noutputs && strcmp(e->output_names[first + count], name) == 0) count++;
    if (i) fputc(',', f);
    if (count > 1) {
      char key[256];
      snprintf(key, sizeof key, "%s[%d]", name, i - first);
      json_string(f, key);
    } else {
      json_string(f, name);
    }
    fputc(':', f);
    json_number(f, e->outputs[i]);
  }
  fputs("},\"loss_outputs\":[", f);
  for (int i = 0, n = 0; i < e->noutputs; i++) {
    if (e->output_loss_weights[i] == 0 || (i > 0 && strcmp(e->output_names[i - 1], e->output_names[i]) == 0))
      continue;
    if (n++) fputc(',', f);
    json_string(f, e->output_names[i]);
  }
  fputc(']', f);
}

void ui_event_json(FILE *f, const ct_event *e) {
  static const char *const kinds[] = {"train", "test", "snapshot", "done", "iter"};
  fputs("{\"event\":", f);
  json_string(f, (unsigned)e->kind < sizeof kinds / sizeof kinds[0] ? kinds[e->kind] : "unknown");
  fprintf(f, ",\"iter\":%d,\"max_iter\":%d,\"elapsed_s\":%.3f,\"time\":%.3f", e->iter, e->max_iter, e->elapsed_s,
          wall_s());
  switch (e->kind) {
    case CT_EVENT_TRAIN:
    case CT_EVENT_ITER:
      fputs(",\"loss\":", f);
      json_number(f, e->loss);
      fputs(",\"lr\":", f);
      json_number(f, e->lr);
      fputs(",\"images_per_s\":", f);
      json_number(f, e->images_per_s);
      if (e->kind == CT_EVENT_TRAIN) json_outputs(f, e);
      break;
    case CT_EVENT_TEST:
      fprintf(f, ",\"net\":%d", e->test_net);
      json_outputs(f, e);
      break;
    case CT_EVENT_SNAPSHOT:
      fputs(",\"model\":", f);
      json_string(f, e->path);
      fputs(",\"state\":", f);
      json_string(f, e->path2);
      break;
    case CT_EVENT_DONE:
      break;
  }
  fputs("}\n", f);
}

/* ------------------------------------------------------------------ lines */

static int term_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 100;
}

static void erase_live(ui *u) {
  if (u->mode == UI_TTY && u->line_shown) {
    fputs("\r\033[K", u->out);
    u->line_shown = 0;
  }
}

static void draw_live(ui *u) {
  if (u->mode != UI_TTY || !u->line[0]) return;
  int w = term_width() - 1; /* the last column would wrap on some terminals */
  fprintf(u->out, "\r%.*s\033[K", w, u->line);
  fflush(u->out);
  u->line_shown = 1;
  u->last_draw = mono_s();
}

void glog_prefix(char *buf, size_t n, const char *file, int line) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  const char *base = file ? strrchr(file, '/') : NULL;
  base = base ? base + 1 : (file ? file : "cortado");
  /* glog pads the thread id to 5 columns; the main thread's id is the process id */
  snprintf(buf, n, "I%02d%02d %02d:%02d:%02d.%06ld %5ld %s:%d] ", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, (long)(ts.tv_nsec / 1000), (long)syscall(SYS_gettid), base, line);
}

/* Each text line behind its own prefix, all in one write, so that lines of several threads or
 * processes (mpirun merges the ranks' stderr) do not interleave mid-line. */
static void prefixed(FILE *f, const char *file, int line, const char *text) {
  char prefix[160], buf[4400];
  glog_prefix(prefix, sizeof prefix, file, line);
  const char *p = text;
  do {
    const char *nl = strchr(p, '\n');
    int len = nl ? (int)(nl - p) : (int)strlen(p);
    int n = snprintf(buf, sizeof buf, "%s%.*s\n", prefix, len > 4096 ? 4096 : len, p);
    if (n > 0) fwrite(buf, 1, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, f);
    p = nl ? nl + 1 : NULL;
  } while (p && *p);
}

/* level 0: verbose (per iteration), 1: ordinary, 2: result. */
static void emit_line(ui *u, int level, const char *file, int line, const char *text) {
  switch (u->mode) {
    case UI_PLAIN:
      prefixed(u->out, file, line, text);
      break;
    case UI_TTY:
      if (level == 0) return;
      erase_live(u);
      fprintf(u->out, "%s\n", text);
      draw_live(u);
      break;
    case UI_JSON:
      fputs("{\"event\":", u->out);
      json_string(u->out, level == 2 ? "result" : "log");
      fprintf(u->out, ",\"time\":%.3f,\"message\":", wall_s());
      json_string(u->out, text);
      fputs("}\n", u->out);
      break;
    case UI_QUIET:
      if (level < 2) return;
      fprintf(u->out, "%s\n", text);
      break;
  }
  fflush(u->out);
}

void ui_log_at(void *ctx, const char *file, int line, const char *text) {
  ui *u = ctx;
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", text ? text : "");
  size_t n = strlen(buf);
  while (n > 0 && buf[n - 1] == '\n') buf[--n] = 0;
  emit_line(u, 1, file, line, buf);
}

#define FORMAT_INTO(buf, fmt)               \
  do {                                      \
    va_list ap;                             \
    va_start(ap, fmt);                      \
    vsnprintf(buf, sizeof buf, fmt, ap);    \
    va_end(ap);                             \
  } while (0)

void ui_logf_at(ui *u, const char *file, int line, const char *fmt, ...) {
  char buf[4096];
  FORMAT_INTO(buf, fmt);
  emit_line(u, 1, file, line, buf);
}

void ui_verbosef_at(ui *u, const char *file, int line, const char *fmt, ...) {
  if (u->mode == UI_TTY || u->mode == UI_QUIET) return;
  char buf[4096];
  FORMAT_INTO(buf, fmt);
  emit_line(u, 0, file, line, buf);
}

void ui_resultf_at(ui *u, const char *file, int line, const char *fmt, ...) {
  char buf[4096];
  FORMAT_INTO(buf, fmt);
  emit_line(u, 2, file, line, buf);
}

void ui_status(ui *u, int force, const char *fmt, ...) {
  if (u->mode != UI_TTY) return;
  if (!force && u->line_shown && mono_s() - u->last_draw < 0.1) return;
  FORMAT_INTO(u->line, fmt);
  draw_live(u);
}

/* "[=====>    ]": width cells between the brackets. */
static void bar(char *out, int width, double frac) {
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  int fill = (int)(frac * width + 0.5);
  out[0] = '[';
  for (int i = 0; i < width; i++) out[1 + i] = i < fill - 1 || fill == width ? '=' : (i == fill - 1 ? '>' : ' ');
  out[width + 1] = ']';
  out[width + 2] = 0;
}

void ui_count(ui *u, const char *label, int i, int n, const char *extra) {
  if (u->mode != UI_TTY) return;
  char b[64];
  bar(b, 24, n > 0 ? (double)i / n : 0);
  ui_status(u, i >= n, "%s %s %d/%d%s%s", label, b, i, n, extra && *extra ? "  " : "", extra ? extra : "");
}

void ui_finish(ui *u) {
  if (u->mode == UI_TTY && u->line_shown) {
    fputc('\n', u->out);
    fflush(u->out);
    u->line_shown = 0;
  }
}

/* ------------------------------------------------------------------ train progress */

static void hms(char *out, size_t n, double s) {
  if (!isfinite(s) || s < 0) {
    snprintf(out, n, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

static void train_line(ui *u, const ct_event *e, int force) {
  if (u->base_iter < 0) {
    u->base_iter = e->iter;
    u->base_s = e->elapsed_s;
  }
  if (e->images_per_s > 0) u->images_per_s = e->images_per_s;
  int done = e->iter + 1; /* the event comes after iteration `iter`'s update */
  int target = u->target_iter > 0 ? u->target_iter : e->max_iter;
  double rate = e->elapsed_s > u->base_s ? (done - u->base_iter) / (e->elapsed_s - u->base_s) : 0;
  double eta = rate > 0 ? (target - done) / rate : NAN;
  char b[64], el[32], et[32];
  bar(b, 20, target > 0 ? (double)done / target : 0);
  hms(el, sizeof el, e->elapsed_s);
  hms(et, sizeof et, eta);
  ui_status(u, force, "%s %d/%d  loss %.4g  lr %.3g  %.0f img/s  %s elapsed  ETA %s", b, done, target, e->loss, e->lr,
            u->images_per_s, el, et);
}

char *solver_snapshot_prefix(const char *solver_path) {
  ProtobufCMessage *m = NULL;
  ct_error err;
  if (ct_prototxt_read_file(solver_path, &caffe__solver_parameter__descriptor, &m, &err) != CT_OK) return NULL;
  const Caffe__SolverParameter *sp = (const Caffe__SolverParameter *)m;
  char *prefix = strdup(sp->snapshot_prefix ? sp->snapshot_prefix : solver_path);
  if (prefix && !sp->snapshot_prefix) { /* Caffe's default: the solver's path without extension */
    char *dot = strrchr(prefix, '.'), *slash = strrchr(prefix, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return prefix;
}

/* Creates the directories above `path`, as the solver does for snapshots. */
static int make_parent_dirs(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return 0;
}

static char *with_suffix(const char *prefix, const char *suffix) {
  size_t n = strlen(prefix) + strlen(suffix) + 1;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s%s", prefix, suffix);
  return p;
}

/* A metrics file that stops taking writes (a full disk) is reported once, then left alone:
 * training goes on without it (and without the curves drawn from it). */
static void metrics_failed(train_watch *w) {
  char why[256];
  ct_file_write_error(why, sizeof why, errno, w->metrics_path);
  ui_logf(w->u, "cannot write the metrics file %s: %s; training goes on without it", w->metrics_path, why);
  fclose(w->metrics);
  w->metrics = NULL;
}

void train_watch_open(train_watch *w, ui *u, const char *solver_path, int start_iter, int target_iter) {
  memset(w, 0, sizeof *w);
  w->u = u;
  u->target_iter = target_iter;
  w->prefix = solver_snapshot_prefix(solver_path);
  if (!w->prefix) return;
  w->metrics_path = with_suffix(w->prefix, "_metrics.jsonl");
  if (!w->metrics_path) return;
  /* appended through a symlink; a FIFO (it would block) or device is refused (issue 23) */
  int fd = -1;
  struct stat sb = {0};
  const char *why = NULL;
  bool kind = false; /* why names what the path is, not an error */
  if (stat(w->metrics_path, &sb) == 0 && ct_file_kind(sb.st_mode)) /* opening a FIFO fails with ENXIO */
    why = ct_file_kind(sb.st_mode), kind = true;
  else if (make_parent_dirs(w->metrics_path) != 0 ||
           (fd = open(w->metrics_path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666)) < 0 ||
           fstat(fd, &sb) != 0)
    why = strerror(errno);
  else if ((why = ct_file_kind(sb.st_mode)) != NULL)
    kind = true;
  else if (!(w->metrics = fdopen(fd, "a")))
    why = strerror(errno);
  if (!w->metrics) {
    if (fd >= 0) close(fd);
    ui_logf(u, "cannot write the metrics file %s: %s%s; training goes on without it (check snapshot_prefix in %s)",
            w->metrics_path, kind ? "it is " : "", why, solver_path);
    return;
  }
  fprintf(w->metrics, "{\"event\":\"start\",\"iter\":%d,\"time\":%.3f,\"solver\":", start_iter, wall_s());
  json_string(w->metrics, solver_path);
  fputs("}\n", w->metrics);
  if (fflush(w->metrics) != 0 || ferror(w->metrics)) metrics_failed(w);
}

void train_watch_event(void *ctx, const ct_event *e) {
  train_watch *w = ctx;
  ui *u = w->u;
  if (w->metrics && e->kind != CT_EVENT_ITER) {
    errno = 0;
    ui_event_json(w->metrics, e);
    if (fflush(w->metrics) != 0 || ferror(w->metrics)) metrics_failed(w);
  }
  if (u->mode == UI_JSON) {
    if (e->kind != CT_EVENT_ITER) {
      ui_event_json(u->out, e);
      fflush(u->out);
    }
    return;
  }
  if (u->mode != UI_TTY) return;
  switch (e->kind) {
    case CT_EVENT_ITER:
    case CT_EVENT_TRAIN:
      u->last = *e;
      u->last.noutputs = 0;
      u->have_last = 1;
      train_line(u, e, e->kind == CT_EVENT_TRAIN);
      break;
    case CT_EVENT_TEST: {
      char buf[2048];
      int n = snprintf(buf, sizeof buf, "Iteration %d, test net #%d:", e->iter, e->test_net);
      for (int i = 0; i < e->noutputs && n < (int)sizeof buf - 64; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s %s = %.4g", i ? "," : "", e->output_names[i],
                      e->outputs[i]);
      ui_logf(u, "%s", buf);
      break;
    }
    case CT_EVENT_SNAPSHOT:
      ui_logf(u, "Iteration %d, snapshot %s", e->iter, e->path);
      break;
    case CT_EVENT_DONE:
      break;
  }
}

void train_watch_close(train_watch *w) {
  if (w->u->mode == UI_TTY && w->u->have_last) train_line(w->u, &w->u->last, 1); /* the line ends at N/N */
  if (w->metrics) {
    if (fclose(w->metrics) != 0) {
      char why[256];
      ui_logf(w->u, "cannot write the metrics file %s: %s", w->metrics_path,
              ct_file_write_error(why, sizeof why, errno, w->metrics_path));
    }
    w->metrics = NULL;
    static const char *const exts[] = {"_curves.svg", "_curves.png"};
    for (int i = 0; i < 2; i++) {
      char *out = with_suffix(w->prefix, exts[i]);
      char msg[1024] = "";
      if (out && plot_metrics_file(w->metrics_path, out, msg, sizeof msg) == 0)
        ui_logf(w->u, "Wrote the training curves to %s", out);
      else if (out)
        ui_logf(w->u, "could not draw %s: %s", out, msg);
      free(out);
    }
  }
  ui_finish(w->u);
  free(w->metrics_path);
  free(w->prefix);
  w->metrics_path = w->prefix = NULL;
}
