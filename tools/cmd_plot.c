/*
 * `cortado plot`: training curves from a metrics file (JSON lines) or a Caffe-format log.
 *
 * SVG is written by hand (text: real <text> labels and one <polyline> per series, each point of
 * the data one point of the line); PNG is drawn with cairo on the same layout.
 */
#include <cairo.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/files.h"
#include "plot.h"

/* ------------------------------------------------------------------ series */

typedef struct series {
  char name[128];
  int axis; /* 0 left (losses), 1 right (test accuracy and other outputs) */
  int n, cap;
  double *x, *y;
} series;

typedef struct curves {
  int n;
  series s[32];
} curves;

static series *find_series(curves *c, const char *name, int axis) {
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->s[i].name, name) == 0) return &c->s[i];
  if (c->n == (int)(sizeof c->s / sizeof c->s[0])) return NULL; /* more than a plot can show */
  series *s = &c->s[c->n++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->axis = axis;
  return s;
}

static int add_point(series *s, double x, double y) {
  if (!s || !isfinite(x) || !isfinite(y)) return 0;
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
    if (!nx) return -1;
    s->x = nx;
    double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
    if (!ny) return -1;
    s->y = ny;
    s->cap = cap;
  }
  s->x[s->n] = x;
  s->y[s->n] = y;
  s->n++;
  return 0;
}

/* A resumed run replaces the history from its start iteration on. */
static void truncate_from(curves *c, double iter) {
  for (int i = 0; i < c->n; i++)
    while (c->s[i].n > 0 && c->s[i].x[c->s[i].n - 1] >= iter) c->s[i].n--;
}

static void curves_free(curves *c) {
  for (int i = 0; i < c->n; i++) {
    free(c->s[i].x);
    free(c->s[i].y);
  }
  c->n = 0;
}

/* ------------------------------------------------------------------ a small JSON reader */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jv {
  jtype type;
  double num;
  char *str;        /* J_STR */
  int n;            /* J_ARR, J_OBJ */
  char **keys;      /* J_OBJ */
  struct jv *items; /* J_ARR, J_OBJ */
} jv;

static void jv_free(jv *v) {
  if (!v) return;
  free(v->str);
  for (int i = 0; i < v->n; i++) {
    if (v->keys) free(v->keys[i]);
    jv_free(&v->items[i]);
  }
  free(v->keys);
  free(v->items);
  memset(v, 0, sizeof *v);
}

static void skip_ws(const char **p) {
  while (isspace((unsigned char)**p)) (*p)++;
}

static int parse_value(const char **p, jv *out, int depth);

static int parse_string(const char **p, char **out) {
  const char *s = *p + 1;
  size_t cap = 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) return -1;
  while (*s && *s != '"') {
    char ch = *s++;
    if (ch == '\\') {
      char esc = *s++;
      switch (esc) {
        case 'n': ch = '\n'; break;
        case 't': ch = '\t'; break;
        case 'r': ch = '\r'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'u': {
          unsigned cp = 0;
          for (int k = 0; k < 4; k++) {
            if (!isxdigit((unsigned char)*s)) goto bad;
            cp = cp * 16 + (unsigned)(isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10));
            s++;
          }
          ch = cp < 0x80 ? (char)cp : '?';
          break;
        }
        case 0: goto bad;
        default: ch = esc;
      }
    }
    if (n + 2 > cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) goto bad;
      buf = nb;
    }
    buf[n++] = ch;
  }
  if (*s != '"') goto bad;
  buf[n] = 0;
  *p = s + 1;
  *out = buf;
  return 0;
bad:
  free(buf);
  return -1;
}

static int parse_container(const char **p, jv *out, int depth, int is_obj) {
  out->type = is_obj ? J_OBJ : J_ARR;
  (*p)++;
  skip_ws(p);
  if (**p == (is_obj ? '}' : ']')) {
    (*p)++;
    return 0;
  }
  for (;;) {
    jv *items = realloc(out->items, (size_t)(out->n + 1) * sizeof *items);
    if (!items) return -1;
    out->items = items;
    memset(&out->items[out->n], 0, sizeof(jv));
    if (is_obj) {
      char **keys = realloc(out->keys, (size_t)(out->n + 1) * sizeof *keys);
      if (!keys) return -1;
      out->keys = keys;
      out->keys[out->n] = NULL;
      skip_ws(p);
      if (**p != '"' || parse_string(p, &out->keys[out->n]) != 0) {
        out->n++;
        return -1;
      }
      skip_ws(p);
      if (**p != ':') {
        out->n++;
        return -1;
      }
      (*p)++;
    }
    int rc = parse_value(p, &out->items[out->n], depth + 1);
    out->n++;
    if (rc) return -1;
    skip_ws(p);
    if (**p == ',') {
      (*p)++;
      continue;
    }
    if (**p == (is_obj ? '}' : ']')) {
      (*p)++;
      return 0;
    }
    return -1;
  }
}

static int parse_value(const char **p, jv *out, int depth) {
  if (depth > 32) return -1;
  skip_ws(p);
  const char *s = *p;
  if (*s == '{' || *s == '[') return parse_container(p, out, depth, *s == '{');
  if (*s == '"') {
    out->type = J_STR;
    return parse_string(p, &out->str);
  }
  if (strncmp(s, "null", 4) == 0) return out->type = J_NULL, *p = s + 4, 0;
  if (strncmp(s, "true", 4) == 0) return out->type = J_BOOL, out->num = 1, *p = s + 4, 0;
  if (strncmp(s, "false", 5) == 0) return out->type = J_BOOL, out->num = 0, *p = s + 5, 0;
  char *end;
  out->num = strtod(s, &end);
  if (end == s) return -1;
  out->type = J_NUM;
  *p = end;
  return 0;
}

static const jv *jget(const jv *obj, const char *key) {
  if (!obj || obj->type != J_OBJ) return NULL;
  for (int i = 0; i < obj->n; i++)
    if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
  return NULL;
}

static double jnum(const jv *obj, const char *key, double dflt) {
  const jv *v = jget(obj, key);
  return v && v->type == J_NUM ? v->num : dflt;
}

static const char *jstr(const jv *obj, const char *key) {
  const jv *v = jget(obj, key);
  return v && v->type == J_STR ? v->str : NULL;
}

/* ------------------------------------------------------------------ readers */

static int fail(char *msg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, n, fmt, ap);
  va_end(ap);
  return -1;
}

static void test_series_name(char *out, size_t n, int net, const char *name) {
  if (net > 0)
    snprintf(out, n, "test #%d %s", net, name);
  else
    snprintf(out, n, "test %s", name);
}

static int read_jsonl(FILE *f, const char *path, curves *c, char *msg, size_t msglen) {
  char *line = NULL;
  size_t cap = 0;
  int lineno = 0, rc = 0;
  while (rc == 0 && getline(&line, &cap, f) > 0) {
    lineno++;
    const char *p = line;
    skip_ws(&p);
    if (!*p) continue;
    jv v = {0};
    if (parse_value(&p, &v, 0) != 0 || v.type != J_OBJ) {
      jv_free(&v);
      rc = fail(msg, msglen, "%s:%d: not a JSON object; give a metrics file written by 'cortado train' (%s) or a "
                "training log", path, lineno, "<prefix>_metrics.jsonl");
      break;
    }
    const char *ev = jstr(&v, "event");
    double iter = jnum(&v, "iter", NAN);
    if (ev && strcmp(ev, "start") == 0 && isfinite(iter)) {
      truncate_from(c, iter);
    } else if (ev && strcmp(ev, "train") == 0) {
      if (add_point(find_series(c, "train loss", 0), iter, jnum(&v, "loss", NAN))) rc = -1;
    } else if (ev && strcmp(ev, "test") == 0) {
      const jv *outs = jget(&v, "outputs"), *losses = jget(&v, "loss_outputs");
      int net = (int)jnum(&v, "net", 0);
      for (int i = 0; outs && outs->type == J_OBJ && i < outs->n; i++) {
        int is_loss = 0;
        for (int k = 0; losses && losses->type == J_ARR && k < losses->n; k++)
          if (losses->items[k].type == J_STR && strcmp(losses->items[k].str, outs->keys[i]) == 0) is_loss = 1;
        char name[128];
        test_series_name(name, sizeof name, net, outs->keys[i]);
        if (outs->items[i].type == J_NUM && add_point(find_series(c, name, is_loss ? 0 : 1), iter, outs->items[i].num))
          rc = -1;
      }
    }
    jv_free(&v);
    if (rc && !msg[0]) fail(msg, msglen, "out of memory reading %s", path);
  }
  free(line);
  return rc;
}

/* The number after `key` in `line`, or NAN. */
static double number_after(const char *line, const char *key) {
  const char *p = strstr(line, key);
  if (!p) return NAN;
  char *end;
  double v = strtod(p + strlen(key), &end);
  return end == p + strlen(key) ? NAN : v;
}

/* Caffe's log lines, as tools/extra/parse_log.py reads them: "Iteration N ... loss = X",
 * "Iteration N, Testing net (#k)", "Test net output #j: name = V [(* w = v loss)]". */
static int read_log(FILE *f, const char *path, curves *c, char *msg, size_t msglen) {
  char *line = NULL;
  size_t cap = 0;
  int rc = 0, test_net = 0, seen = 0;
  double test_iter = NAN, last_train = -1;
  while (rc == 0 && getline(&line, &cap, f) > 0) {
    double iter = number_after(line, "Iteration ");
    const char *t = strstr(line, "Test net output #");
    if (isfinite(iter) && strstr(line, "Testing net (#")) {
      test_iter = iter;
      test_net = (int)number_after(line, "Testing net (#");
    } else if (t && isfinite(test_iter)) {
      const char *colon = strchr(t, ':'), *eq = colon ? strstr(colon, " = ") : NULL;
      if (!colon || !eq) continue;
      char bare[96], name[128];
      const char *b = colon + 1;
      while (*b == ' ') b++;
      snprintf(bare, sizeof bare, "%.*s", (int)(eq - b) < 95 ? (int)(eq - b) : 95, b);
      test_series_name(name, sizeof name, test_net, bare);
      double v = strtod(eq + 3, NULL);
      rc = add_point(find_series(c, name, strstr(eq, " loss)") ? 0 : 1), test_iter, v);
      seen = 1;
    } else if (isfinite(iter) && strstr(line, "loss = ") && !strstr(line, "Test")) {
      if (iter < last_train) truncate_from(c, iter); /* a resumed run in the same log */
      last_train = iter;
      rc = add_point(find_series(c, "train loss", 0), iter, number_after(line, "loss = "));
      seen = 1;
    }
  }
  free(line);
  if (rc) return fail(msg, msglen, "out of memory reading %s", path);
  if (!seen)
    return fail(msg, msglen, "%s: no training or test lines found; give a <prefix>_metrics.jsonl written by "
                "'cortado train' or a log with Caffe's \"Iteration N ..., loss = X\" lines", path);
  return 0;
}

static int read_curves(const char *path, curves *c, char *msg, size_t msglen) {
  /* opened without blocking and refused unless a regular file: a FIFO hung fopen (issue 23) */
  int fd = -1;
  ct_error err = {0};
  if (ct_file_open_input(path, "metrics file or log", &fd, NULL, &err) != CT_OK)
    return fail(msg, msglen, "%s; give the <snapshot_prefix>_metrics.jsonl that 'cortado train' wrote, or a training "
                "log", err.msg);
  FILE *f = fdopen(fd, "r");
  if (!f) {
    int e = errno;
    close(fd);
    return fail(msg, msglen, "cannot open %s: %s", path, strerror(e));
  }
  int ch;
  while ((ch = fgetc(f)) != EOF && isspace(ch)) {
  }
  rewind(f);
  find_series(c, "train loss", 0); /* first, so it keeps the first colour */
  int rc = ch == '{' ? read_jsonl(f, path, c, msg, msglen) : read_log(f, path, c, msg, msglen);
  fclose(f);
  /* losses (left axis) before the other outputs, in order of appearance; empty series dropped */
  curves sorted = {0};
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < c->n; i++)
      if (c->s[i].axis == pass && c->s[i].n > 0) sorted.s[sorted.n++] = c->s[i];
  for (int i = 0; i < c->n; i++)
    if (c->s[i].n == 0) {
      free(c->s[i].x);
      free(c->s[i].y);
    }
  *c = sorted;
  if (rc == 0) {
    int points = 0;
    for (int i = 0; i < c->n; i++) points += c->s[i].n;
    if (points == 0)
      rc = fail(msg, msglen, "%s holds no data points yet; train with display > 0 in the solver to record the loss",
                path);
  }
  return rc;
}

/* ------------------------------------------------------------------ canvas: SVG text or cairo */

typedef struct canvas {
  FILE *svg;
  cairo_t *cr;
} canvas;

static void svg_escaped(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      default: fputc(*s, f);
    }
  }
}

static void set_rgb(cairo_t *cr, unsigned rgb) {
  cairo_set_source_rgb(cr, ((rgb >> 16) & 255) / 255.0, ((rgb >> 8) & 255) / 255.0, (rgb & 255) / 255.0);
}

static void c_line(canvas *c, double x1, double y1, double x2, double y2, unsigned rgb, double w) {
  if (c->svg) {
    fprintf(c->svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#%06x\" stroke-width=\"%g\"/>\n",
            x1, y1, x2, y2, rgb, w);
    return;
  }
  set_rgb(c->cr, rgb);
  cairo_set_line_width(c->cr, w);
  cairo_move_to(c->cr, x1, y1);
  cairo_line_to(c->cr, x2, y2);
  cairo_stroke(c->cr);
}

static void c_rect(canvas *c, double x, double y, double w, double h, unsigned fill, unsigned stroke) {
  if (c->svg) {
    fprintf(c->svg,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#%06x\" stroke=\"#%06x\"/>\n", x, y,
            w, h, fill, stroke);
    return;
  }
  cairo_rectangle(c->cr, x, y, w, h);
  set_rgb(c->cr, fill);
  cairo_fill_preserve(c->cr);
  set_rgb(c->cr, stroke);
  cairo_set_line_width(c->cr, 1);
  cairo_stroke(c->cr);
}

/* anchor: 0 start, 1 middle, 2 end; y is the baseline; rotate: -90 for a vertical label. */
static void c_text(canvas *c, double x, double y, const char *text, double size, int anchor, int rotate,
                   unsigned rgb, int bold) {
  if (c->svg) {
    static const char *const anchors[] = {"start", "middle", "end"};
    fprintf(c->svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\" text-anchor=\"%s\" fill=\"#%06x\"%s", x, y, size,
            anchors[anchor], rgb, bold ? " font-weight=\"bold\"" : "");
    if (rotate) fprintf(c->svg, " transform=\"rotate(%d %.1f %.1f)\"", rotate, x, y);
    fputc('>', c->svg);
    svg_escaped(c->svg, text);
    fputs("</text>\n", c->svg);
    return;
  }
  cairo_t *cr = c->cr;
  cairo_save(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text, &ext);
  cairo_translate(cr, x, y);
  if (rotate) cairo_rotate(cr, rotate * M_PI / 180.0);
  cairo_move_to(cr, -ext.x_advance * anchor / 2.0, 0);
  set_rgb(cr, rgb);
  cairo_show_text(cr, text);
  cairo_restore(cr);
}

static void c_polyline(canvas *c, const double *px, const double *py, int n, unsigned rgb, double w, int dashed,
                       const series *s) {
  if (c->svg) {
    fprintf(c->svg, "<polyline class=\"series\" data-name=\"");
    svg_escaped(c->svg, s->name);
    fprintf(c->svg, "\" data-axis=\"%s\" data-points=\"%d\" fill=\"none\" stroke=\"#%06x\" stroke-width=\"%g\"%s "
            "stroke-linejoin=\"round\" points=\"", s->axis ? "right" : "left", n, rgb, w,
            dashed ? " stroke-dasharray=\"6 4\"" : "");
    for (int i = 0; i < n; i++) fprintf(c->svg, "%s%.2f,%.2f", i ? " " : "", px[i], py[i]);
    fputs("\"/>\n", c->svg);
    return;
  }
  if (n == 0) return;
  set_rgb(c->cr, rgb);
  cairo_set_line_width(c->cr, w);
  cairo_set_line_join(c->cr, CAIRO_LINE_JOIN_ROUND);
  double dash[] = {6, 4};
  cairo_set_dash(c->cr, dash, dashed ? 2 : 0, 0);
  cairo_move_to(c->cr, px[0], py[0]);
  for (int i = 1; i < n; i++) cairo_line_to(c->cr, px[i], py[i]);
  cairo_stroke(c->cr);
  cairo_set_dash(c->cr, dash, 0, 0);
}

static void c_marker(canvas *c, double x, double y, unsigned rgb) {
  if (c->svg) {
    fprintf(c->svg, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"#%06x\"/>\n", x, y, rgb);
    return;
  }
  set_rgb(c->cr, rgb);
  cairo_arc(c->cr, x, y, 3, 0, 2 * M_PI);
  cairo_fill(c->cr);
}

/* ------------------------------------------------------------------ layout */

enum { W = 960, H = 580, ML = 84, MR = 84, MT = 84, MB = 64 };
static const unsigned PALETTE[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf};

typedef struct axis {
  double lo, hi, step;
} axis;

/* Heckbert's nice numbers: a step of 1, 2 or 5 times a power of ten, about `want` ticks. */
static axis nice_axis(double lo, double hi, int want) {
  if (!(hi > lo)) {
    double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
  }
  double raw = (hi - lo) / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
  double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  axis a = {floor(lo / step) * step, ceil(hi / step) * step, step};
  return a;
}

static void tick_label(char *out, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  if (fabs(v) >= 10000 && fmod(v, 1000) == 0)
    snprintf(out, n, "%gk", v / 1000);
  else
    snprintf(out, n, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
}

static void render(canvas *c, const curves *cv, const char *title) {
  const double x0 = ML, x1 = W - MR, y0 = H - MB, y1 = MT;
  double xmax = 0, lmin = INFINITY, lmax = -INFINITY, rmin = INFINITY, rmax = -INFINITY;
  int has_right = 0;
  for (int i = 0; i < cv->n; i++)
    for (int k = 0; k < cv->s[i].n; k++) {
      const series *s = &cv->s[i];
      if (s->x[k] > xmax) xmax = s->x[k];
      double *mn = s->axis ? &rmin : &lmin, *mx = s->axis ? &rmax : &lmax;
      if (s->y[k] < *mn) *mn = s->y[k];
      if (s->y[k] > *mx) *mx = s->y[k];
      has_right |= s->axis;
    }
  axis ax = nice_axis(0, xmax > 0 ? xmax : 1, 8);
  axis al = nice_axis(isfinite(lmin) ? fmin(0, lmin) : 0, isfinite(lmax) ? lmax : 1, 6);
  /* accuracy-like outputs get the whole [0, 1] range, so runs compare at a glance */
  axis ar = rmin >= 0 && rmax <= 1 ? (axis){0, 1, 0.1} : nice_axis(rmin, rmax, 6);
  if (!has_right) ar = (axis){0, 1, 0.1};
#define PX(v) (x0 + ((v) - ax.lo) / (ax.hi - ax.lo) * (x1 - x0))
#define PYL(v) (y0 - ((v) - al.lo) / (al.hi - al.lo) * (y0 - y1))
#define PYR(v) (y0 - ((v) - ar.lo) / (ar.hi - ar.lo) * (y0 - y1))

  c_rect(c, 0, 0, W, H, 0xffffff, 0xffffff);
  c_text(c, W / 2.0, 32, title, 18, 1, 0, 0x222222, 1);
  char label[64];
  /* grid and left ticks */
  for (double v = al.lo; v <= al.hi + al.step * 1e-6; v += al.step) {
    double y = PYL(v);
    c_line(c, x0, y, x1, y, 0xe6e6e6, 1);
    c_line(c, x0 - 5, y, x0, y, 0x333333, 1);
    tick_label(label, sizeof label, v, al.step);
    c_text(c, x0 - 8, y + 4, label, 12, 2, 0, 0x333333, 0);
  }
  for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step) {
    double x = PX(v);
    c_line(c, x, y0, x, y0 + 5, 0x333333, 1);
    tick_label(label, sizeof label, v, ax.step);
    c_text(c, x, y0 + 20, label, 12, 1, 0, 0x333333, 0);
  }
  if (has_right)
    for (double v = ar.lo; v <= ar.hi + ar.step * 1e-6; v += ar.step) {
      double y = PYR(v);
      c_line(c, x1, y, x1 + 5, y, 0x333333, 1);
      tick_label(label, sizeof label, v, ar.step);
      c_text(c, x1 + 8, y + 4, label, 12, 0, 0, 0x333333, 0);
    }
  /* frame and axis titles */
  c_line(c, x0, y0, x1, y0, 0x333333, 1.2);
  c_line(c, x0, y0, x0, y1, 0x333333, 1.2);
  if (has_right) c_line(c, x1, y0, x1, y1, 0x333333, 1.2);
  c_text(c, (x0 + x1) / 2, H - 18, "iteration", 14, 1, 0, 0x222222, 0);
  c_text(c, 24, (y0 + y1) / 2, "loss", 14, 1, -90, 0x222222, 0);
  if (has_right) {
    const char *rname = "test output";
    for (int i = 0; i < cv->n; i++)
      if (cv->s[i].axis && strstr(cv->s[i].name, "accuracy")) rname = "accuracy";
    c_text(c, W - 22, (y0 + y1) / 2, rname, 14, 1, 90, 0x222222, 0);
  }
  /* series */
  int longest = 0;
  for (int i = 0; i < cv->n; i++) longest = cv->s[i].n > longest ? cv->s[i].n : longest;
  double *px = malloc(((size_t)longest + 1) * sizeof *px), *py = malloc(((size_t)longest + 1) * sizeof *py);
  for (int i = 0; px && py && i < cv->n; i++) {
    const series *s = &cv->s[i];
    unsigned rgb = PALETTE[i % (sizeof PALETTE / sizeof PALETTE[0])];
    for (int k = 0; k < s->n; k++) {
      px[k] = PX(s->x[k]);
      py[k] = s->axis ? PYR(s->y[k]) : PYL(s->y[k]);
    }
    int is_test = strncmp(s->name, "test", 4) == 0;
    c_polyline(c, px, py, s->n, rgb, is_test ? 2 : 1.6, is_test && !s->axis, s);
    if (is_test && s->n <= 60)
      for (int k = 0; k < s->n; k++) c_marker(c, px[k], py[k], rgb);
  }
  free(px);
  free(py);
  /* legend: one row under the title, clear of the data */
  double total = 0, widths[32];
  char entries[32][160];
  for (int i = 0; i < cv->n; i++) {
    snprintf(entries[i], sizeof entries[i], "%s%s", cv->s[i].name,
             has_right ? (cv->s[i].axis ? " (right axis)" : " (left axis)") : "");
    widths[i] = 7.4 * (double)strlen(entries[i]) + 40 + 24;
    total += widths[i];
  }
  double lx = (W - total) / 2 > 8 ? (W - total) / 2 : 8;
  for (int i = 0; i < cv->n; i++) {
    unsigned rgb = PALETTE[i % (sizeof PALETTE / sizeof PALETTE[0])];
    const series *s = &cv->s[i];
    double y = 62;
    if (strncmp(s->name, "test", 4) == 0 && !s->axis) { /* dashed, as in the plot */
      c_line(c, lx, y - 4, lx + 10, y - 4, rgb, 2.5);
      c_line(c, lx + 18, y - 4, lx + 30, y - 4, rgb, 2.5);
    } else {
      c_line(c, lx, y - 4, lx + 30, y - 4, rgb, 2.5);
    }
    c_text(c, lx + 36, y, entries[i], 12, 0, 0, 0x222222, 0);
    lx += widths[i];
  }
#undef PX
#undef PYL
#undef PYR
}

/* ------------------------------------------------------------------ output */

static const char *ext_of(const char *path) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  return dot && (!slash || dot > slash) ? dot + 1 : "";
}

int plot_metrics_file(const char *input, const char *output, char *msg, size_t msglen) {
  curves cv = {0};
  const char *ext = ext_of(output);
  int is_svg = strcasecmp(ext, "svg") == 0, is_png = strcasecmp(ext, "png") == 0;
  if (!is_svg && !is_png)
    return fail(msg, msglen, "-o %s: unknown image format '.%s'; name the output .svg or .png", output, ext);
  if (read_curves(input, &cv, msg, msglen) != 0) {
    curves_free(&cv);
    return -1;
  }
  const char *base = strrchr(input, '/');
  char title[512];
  snprintf(title, sizeof title, "Training curves: %s", base ? base + 1 : input);
  /* issue 23: only a regular file is replaced (a symlink is written through), under a temporary
   * name that fits NAME_MAX */
  ct_error err = {0};
  char *target = NULL, *tmp = NULL;
  if (ct_file_output_target(output, &target, &err) != CT_OK || !(tmp = ct_file_temp_name(target, 0))) {
    int r = fail(msg, msglen, "%s", err.msg[0] ? err.msg : "out of memory");
    free(target);
    curves_free(&cv);
    return r;
  }
  int rc = 0;
  if (is_svg) {
    FILE *f = fopen(tmp, "w");
    if (!f) {
      rc = fail(msg, msglen, "cannot write %s: %s; check that its directory exists and is writable", output,
                strerror(errno));
    } else {
      fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n", W, H, W, H);
      fputs("<title>", f);
      svg_escaped(f, title);
      fputs("</title>\n", f);
      canvas c = {f, NULL};
      render(&c, &cv, title);
      fputs("</svg>\n", f);
      if (ferror(f) | fclose(f))
        rc = fail(msg, msglen, "cannot write %s: %s", output, strerror(errno));
    }
  } else {
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(surf);
    canvas c = {NULL, cr};
    render(&c, &cv, title);
    cairo_status_t st = cairo_status(cr);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(surf, tmp);
    if (st != CAIRO_STATUS_SUCCESS)
      rc = fail(msg, msglen, "cannot write %s: %s; check that its directory exists and is writable", output,
                cairo_status_to_string(st));
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
  }
  if (rc == 0 && rename(tmp, target) != 0)
    rc = fail(msg, msglen, "cannot write %s: %s", output, strerror(errno));
  if (rc != 0) remove(tmp);
  free(tmp);
  free(target);
  curves_free(&cv);
  return rc;
}

int plot_command(const char *input, const char *output) {
  char msg[1024] = "";
  if (plot_metrics_file(input, output, msg, sizeof msg) != 0) {
    fprintf(stderr, "cortado plot: %s\n", msg);
    return 1;
  }
  fprintf(stderr, "cortado plot: wrote %s\n", output);
  return 0;
}
