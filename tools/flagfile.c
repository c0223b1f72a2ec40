/* gflags' --flagfile=FILE, which Caffe's tools accept: the file's lines are flags, one per line
 * ("--solver=lenet_solver.prototxt"), read as if they stood on the command line where
 * --flagfile does. Blank lines and lines starting with '#' are skipped; a flagfile may name
 * another (at most 8 deep, so a file naming itself is an error, not a loop). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/prototxt.h"

enum { MAX_DEPTH = 8, MAX_BYTES = 1 << 20 };

static int push(argv_list *l, char *tok) {
  if (l->n + 1 >= l->cap) {
    int cap = l->cap ? 2 * l->cap : 32;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = tok;
  l->v[l->n] = NULL;
  return 0;
}

/* The file a token names when it is --flagfile=F / -flagfile=F, or "" when it is --flagfile
 * without a value (the next token is the file); NULL when it is another token. */
static const char *flagfile_of(const char *tok) {
  const char *p = tok[0] == '-' ? tok + 1 + (tok[1] == '-') : NULL;
  if (!p || strncmp(p, "flagfile", 8) != 0) return NULL;
  if (p[8] == '=') return p + 9;
  return p[8] == 0 ? "" : NULL;
}

static int expand(argv_list *l, char **tokens, int n, int depth, char *problem, size_t psize);

static int read_flagfile(argv_list *l, const char *path, int depth, char *problem, size_t psize) {
  if (depth >= MAX_DEPTH) {
    snprintf(problem, psize, "--flagfile=%s: flagfiles nested more than %d deep (does one name itself?)", path,
             MAX_DEPTH);
    return -1;
  }
  char *text = NULL;
  size_t len = 0;
  ct_error err = {0};
  if (ct_read_file(path, MAX_BYTES, &text, &len, &err) != CT_OK) {
    snprintf(problem, psize, "--flagfile: %s", err.msg);
    return -1;
  }
  /* the file's text stays allocated: its lines become argv entries */
  char **owned = realloc(l->owned, (size_t)(l->nowned + 1) * sizeof *owned);
  if (!owned) {
    free(text);
    return -1;
  }
  l->owned = owned;
  l->owned[l->nowned++] = text;
  char *lines[512];
  int nlines = 0, lineno = 0;
  for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
    nl = strchr(p, '\n');
    if (nl) *nl = 0;
    lineno++;
    while (*p == ' ' || *p == '\t') p++;
    size_t k = strlen(p);
    while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t' || p[k - 1] == '\r')) p[--k] = 0;
    if (!*p || *p == '#') continue;
    if (*p != '-') {
      snprintf(problem, psize, "--flagfile=%s line %d: '%s' is not a flag (write one --flag=value per line)", path,
               lineno, p);
      return -1;
    }
    if (nlines == (int)(sizeof lines / sizeof *lines)) {
      snprintf(problem, psize, "--flagfile=%s: more than %d flags", path, nlines);
      return -1;
    }
    lines[nlines++] = p;
  }
  return expand(l, lines, nlines, depth + 1, problem, psize);
}

static int expand(argv_list *l, char **tokens, int n, int depth, char *problem, size_t psize) {
  for (int i = 0; i < n; i++) {
    const char *file = flagfile_of(tokens[i]);
    if (!file) {
      if (push(l, tokens[i])) return -1;
      continue;
    }
    if (!*file) {
      if (i + 1 >= n) {
        snprintf(problem, psize, "flag '--flagfile' needs a value");
        return -1;
      }
      file = tokens[++i];
    }
    if (read_flagfile(l, file, depth, problem, psize)) return -1;
  }
  return 0;
}

int expand_flagfiles(int argc, char **argv, argv_list *out, char *problem, size_t psize) {
  memset(out, 0, sizeof *out);
  problem[0] = 0;
  if (expand(out, argv, argc, 0, problem, psize) == 0) return 0;
  if (!problem[0]) snprintf(problem, psize, "out of memory reading --flagfile");
  return -1;
}

void argv_list_free(argv_list *l) {
  for (int i = 0; i < l->nowned; i++) free(l->owned[i]);
  free(l->owned);
  free(l->v);
  memset(l, 0, sizeof *l);
}
