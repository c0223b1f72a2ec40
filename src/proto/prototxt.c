/* The protobuf text format (prototxt) over protobuf-c's descriptors: a tokenizer, a recursive
 * descent parser that fills a message exactly as protobuf_c_message_unpack would lay it out (so
 * protobuf_c_message_free_unpacked and _pack work on the result), and a printer.
 *
 * Invariant while parsing: the message under construction is always freeable. A value is only
 * stored once it is complete, a sub-message is stored before its body is parsed, and a repeated
 * field's count is raised only after its new element is in place. Any error therefore frees the
 * whole partial message with one protobuf_c_message_free_unpacked call.
 *
 * Repeated arrays grow by doubling without a stored capacity: only this parser grows them and it
 * starts from empty, so the capacity is always the smallest power of two >= the count. */
#include "proto/prototxt.h"
#include "proto/lexer.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"


/* Where each submessage of a parse opened, for messages about values found valid by the parser
 * but refused later (a layer's partition naming a device that is not there). */
struct ct_srcmap {
  char *file;
  size_t n, cap;
  struct srcpos {
    const void *msg;
    uint32_t field; /* 0: where msg itself opened; else the id of a field of msg, where its name is */
    int line, col;
  } *v;
};

static ct_status srcmap_add(parser *P, const void *msg, uint32_t field, int line, int col) {
  ct_srcmap *m = P->map;
  if (!m) return CT_OK;
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct srcpos *nv = realloc(m->v, cap * sizeof *nv);
    if (!nv) return ct_pt_oom(P);
    m->v = nv;
    m->cap = cap;
  }
  m->v[m->n++] = (struct srcpos){msg, field, line, col};
  return CT_OK;
}

/* ------------------------------------------------------------------ storing values */

static void scalar_release(const ProtobufCFieldDescriptor *f, scalar *v) {
  if (f->type == PROTOBUF_C_TYPE_STRING) free(v->s);
  if (f->type == PROTOBUF_C_TYPE_BYTES) free(v->bd.data);
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) protobuf_c_message_free_unpacked(v->m, NULL);
}

static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *d) {
  ProtobufCMessage *m = malloc(d->sizeof_message);
  if (m) d->message_init(m);
  return m;
}

/* Fails when f belongs to a oneof of which another member is already set. */
static ct_status check_oneof(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int line, int col) {
  if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) return CT_OK;
  uint32_t c = *(const uint32_t *)((const char *)msg + f->quantifier_offset);
  if (c == 0 || c == f->id) return CT_OK;
  const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(msg->descriptor, c);
  return ct_pt_error(P, line, col,
                 "field \"%s\" conflicts with \"%s\", already set (they share a oneof); expected only one", f->name,
                 other ? other->name : "?");
}

/* Stores a complete value into msg; takes ownership of v's allocations, also on failure. */
static ct_status store(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, scalar *v) {
  char *base = (char *)msg;
  void *dst = base + f->offset;
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    size_t *np = (size_t *)(base + f->quantifier_offset);
    void **ap = (void **)dst;
    size_t n = *np, sz = ct_proto_elem_size(f->type);
    if ((n & (n - 1)) == 0) { /* 0 or a power of two: the array is full */
      size_t cap = n ? 2 * n : 1;
      void *a = cap <= SIZE_MAX / sz ? realloc(*ap, cap * sz) : NULL;
      if (!a) {
        scalar_release(f, v);
        return ct_pt_oom(P);
      }
      *ap = a;
    }
    memcpy((char *)*ap + n * sz, v, sz);
    *np = n + 1;
    return CT_OK;
  }
  switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
      char **sp = dst;
      if (*sp && *sp != (const char *)f->default_value) free(*sp);
      *sp = v->s;
      break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
      ProtobufCBinaryData *bp = dst;
      const ProtobufCBinaryData *def = f->default_value;
      if (bp->data && (!def || def->data != bp->data)) free(bp->data);
      *bp = v->bd;
      break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
      ProtobufCMessage **mp = dst;
      if (*mp && *mp != f->default_value) protobuf_c_message_free_unpacked(*mp, NULL);
      *mp = v->m;
      break;
    }
    default: memcpy(dst, v, ct_proto_elem_size(f->type)); break;
  }
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    *(uint32_t *)(base + f->quantifier_offset) = f->id;
  else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
           f->type != PROTOBUF_C_TYPE_MESSAGE)
    *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
  return CT_OK;
}

/* ------------------------------------------------------------------ messages */

static ct_status parse_body(parser *P, ProtobufCMessage *msg, char close, int oline, int ocol);

static ct_status parse_submessage(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  const token open = P->tok;
  char close;
  if (ct_pt_is_punct(&open, '{'))
    close = '}';
  else if (ct_pt_is_punct(&open, '<'))
    close = '>';
  else if (open.kind == TK_IDENT || open.kind == TK_NUMBER || open.kind == TK_STRING || ct_pt_is_punct(&open, '-'))
    return ct_pt_error(P, open.line, open.col, "field \"%s\" is a message (%s), not a scalar; expected \"{\"", f->name,
                   ct_pt_type_name(f));
  else {
    char d[96];
    return ct_pt_error(P, open.line, open.col, "unexpected %s; expected \"{\" to open message field \"%s\" (%s)",
                   ct_pt_describe(&open, d, sizeof d), f->name, ct_pt_type_name(f));
  }
  if (P->depth >= MAX_DEPTH)
    return ct_pt_error(P, open.line, open.col, "messages nested more than %d levels deep; expected a shallower file",
                   MAX_DEPTH);
  scalar v;
  v.m = new_message(f->descriptor);
  if (!v.m) return ct_pt_oom(P);
  ProtobufCMessage *sub = v.m;
  if (srcmap_add(P, sub, 0, open.line, open.col) != CT_OK) {
    protobuf_c_message_free_unpacked(sub, NULL);
    return CT_ENOMEM;
  }
  CT_TRY(store(P, msg, f, &v)); /* owned by msg from here on, so errors below free it */
  CT_TRY(ct_pt_lex(P));
  P->depth++;
  ct_status st = parse_body(P, sub, close, open.line, open.col);
  P->depth--;
  if (st != CT_OK) return st;
  return ct_pt_lex(P); /* the closing bracket */
}

static ct_status not_repeated(parser *P, const ProtobufCFieldDescriptor *f) {
  return ct_pt_error(P, P->tok.line, P->tok.col,
                 "field \"%s\" is not repeated, so it takes no list; expected a single value", f->name);
}

static ct_status list_separator(parser *P, int *done) {
  if (ct_pt_is_punct(&P->tok, ',')) {
    *done = 0;
    return ct_pt_lex(P);
  }
  if (ct_pt_is_punct(&P->tok, ']')) {
    *done = 1;
    return ct_pt_lex(P);
  }
  char d[96];
  return ct_pt_error(P, P->tok.line, P->tok.col, "unexpected %s in a list; expected \",\" or \"]\"",
                 ct_pt_describe(&P->tok, d, sizeof d));
}

/* Parses what follows a field name: ": value", "{ ... }", ": [ ... ]". */
static ct_status parse_field(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  int done = 0;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    if (ct_pt_is_punct(&P->tok, ':')) CT_TRY(ct_pt_lex(P));
    if (!ct_pt_is_punct(&P->tok, '[')) return parse_submessage(P, msg, f);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) return not_repeated(P, f);
    CT_TRY(ct_pt_lex(P));
    if (ct_pt_is_punct(&P->tok, ']')) return ct_pt_lex(P);
    while (!done) {
      CT_TRY(parse_submessage(P, msg, f));
      CT_TRY(list_separator(P, &done));
    }
    return CT_OK;
  }
  if (!ct_pt_is_punct(&P->tok, ':')) {
    if (ct_pt_is_punct(&P->tok, '{') || ct_pt_is_punct(&P->tok, '<'))
      return ct_pt_error(P, P->tok.line, P->tok.col, "field \"%s\" is a %s, not a message; expected \":\" and a value",
                     f->name, ct_pt_type_name(f));
    char d[96];
    return ct_pt_error(P, P->tok.line, P->tok.col, "unexpected %s after field name \"%s\"; expected \":\"",
                   ct_pt_describe(&P->tok, d, sizeof d), f->name);
  }
  CT_TRY(ct_pt_lex(P));
  scalar v;
  if (!ct_pt_is_punct(&P->tok, '[')) {
    CT_TRY(ct_pt_parse_scalar(P, f, &v));
    return store(P, msg, f, &v);
  }
  if (f->label != PROTOBUF_C_LABEL_REPEATED) return not_repeated(P, f);
  CT_TRY(ct_pt_lex(P));
  if (ct_pt_is_punct(&P->tok, ']')) return ct_pt_lex(P);
  while (!done) {
    CT_TRY(ct_pt_parse_scalar(P, f, &v));
    CT_TRY(store(P, msg, f, &v));
    CT_TRY(list_separator(P, &done));
  }
  return CT_OK;
}

/* Edit distance between two short names, for "did you mean". */
static size_t edit_distance(const char *a, size_t na, const char *b) {
  size_t nb = strlen(b), row[65];
  if (na > 64 || nb > 64) return SIZE_MAX;
  for (size_t j = 0; j <= nb; j++) row[j] = j;
  for (size_t i = 1; i <= na; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[nb];
}

/* "expected one of a, b, c, ... (12 more)": whole names only, so that a name in the list is
 * never a truncated (and so misleading) one. */
static void field_list(const ProtobufCMessageDescriptor *desc, char *list, size_t cap) {
  size_t k = 0;
  unsigned shown = 0;
  list[0] = '\0';
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const char *name = desc->fields[i].name;
    size_t len = strlen(name);
    if (len && name[len - 1] == '_') len--; /* base_ reads as "base" */
    const size_t need = (i ? 2 : 0) + len;
    if (k + need > FIELD_LIST_CHARS) break;
    k += (size_t)snprintf(list + k, cap - k, "%s%.*s", i ? ", " : "", (int)len, name);
    shown++;
  }
  if (shown < desc->n_fields) snprintf(list + k, cap - k, ", ... (%u more)", desc->n_fields - shown);
}

static ct_status unknown_field(parser *P, const ProtobufCMessageDescriptor *desc, const token *t) {
  char list[FIELD_LIST_CHARS + 32];
  const char *best = NULL;
  size_t best_d = 3; /* suggest only names within 2 edits */
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const char *name = desc->fields[i].name;
    size_t d = edit_distance(t->p, t->n, name);
    if (d < best_d && d < t->n) {
      best_d = d;
      best = name;
    }
  }
  field_list(desc, list, sizeof list);
  int n = (int)(t->n > 64 ? 64 : t->n);
  if (best)
    return ct_pt_error(P, t->line, t->col, "unknown field \"%.*s\" in %s; expected one of %s (did you mean \"%s\"?)", n,
                   t->p, ct_pt_msg_name(desc), list, best);
  return ct_pt_error(P, t->line, t->col, "unknown field \"%.*s\" in %s; expected one of %s", n, t->p, ct_pt_msg_name(desc), list);
}

static const ProtobufCFieldDescriptor *lookup(const ProtobufCMessageDescriptor *desc, const token *t) {
  char name[128];
  if (t->n >= sizeof name) return NULL;
  memcpy(name, t->p, t->n);
  name[t->n] = '\0';
  /* A schema name ending in "_" (base_: protobuf-c's structs already have a member `base`) is
   * spelled without the underscore in text, as Caffe spells it. */
  if (t->n > 0 && name[t->n - 1] == '_') return NULL;
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
  if (!f && t->n + 1 < sizeof name) {
    name[t->n] = '_';
    name[t->n + 1] = '\0';
    f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
  }
  return f;
}

/* Parses fields until `close` (0: the end of input), which it leaves as the lookahead. */
static ct_status parse_body(parser *P, ProtobufCMessage *msg, char close, int oline, int ocol) {
  const ProtobufCMessageDescriptor *desc = msg->descriptor;
  int *seen = calloc(desc->n_fields + 1, sizeof *seen); /* line of each field's first occurrence */
  if (!seen) return ct_pt_oom(P);
  ct_status st = CT_OK;
  char d[96];
  for (;;) {
    const token *t = &P->tok;
    if (t->kind == TK_EOF) {
      if (close) {
        st = ct_pt_error(P, t->line, t->col, "unexpected end of input; expected \"%c\" to close the %s opened at %d:%d",
                     close, ct_pt_msg_name(desc), oline, ocol);
        goto done;
      }
      break;
    }
    if (close && ct_pt_is_punct(t, close)) break;
    if (t->kind != TK_IDENT) {
      if (close)
        st = ct_pt_error(P, t->line, t->col, "unexpected %s; expected a field name of %s or \"%c\"",
                     ct_pt_describe(t, d, sizeof d), ct_pt_msg_name(desc), close);
      else
        st = ct_pt_error(P, t->line, t->col, "unexpected %s; expected a field name of %s", ct_pt_describe(t, d, sizeof d),
                     ct_pt_msg_name(desc));
      goto done;
    }
    const ProtobufCFieldDescriptor *f = lookup(desc, t);
    if (!f) {
      st = unknown_field(P, desc, t);
      goto done;
    }
    size_t idx = (size_t)(f - desc->fields);
    int line = t->line;
    if (f->label != PROTOBUF_C_LABEL_REPEATED && seen[idx]) {
      st = ct_pt_error(P, t->line, t->col,
                   "field \"%s\" given twice in %s (first on line %d); expected it once, as it is not repeated",
                   f->name, ct_pt_msg_name(desc), seen[idx]);
      goto done;
    }
    if ((st = check_oneof(P, msg, f, t->line, t->col)) != CT_OK) goto done;
    if ((st = srcmap_add(P, msg, f->id, t->line, t->col)) != CT_OK) goto done;
    if ((st = ct_pt_lex(P)) != CT_OK || (st = parse_field(P, msg, f)) != CT_OK) goto done;
    seen[idx] = line;
    if (ct_pt_is_punct(&P->tok, ',') || ct_pt_is_punct(&P->tok, ';'))
      if ((st = ct_pt_lex(P)) != CT_OK) goto done;
  }
  for (unsigned i = 0; i < desc->n_fields; i++) {
    if (desc->fields[i].label != PROTOBUF_C_LABEL_REQUIRED || seen[i]) continue;
    const token *t = &P->tok;
    if (close)
      st = ct_pt_error(P, oline, ocol, "%s is missing required field \"%s\"; expected it before the \"%c\" at %d:%d",
                   ct_pt_msg_name(desc), desc->fields[i].name, close, t->line, t->col);
    else
      st = ct_pt_error(P, t->line, t->col, "%s is missing required field \"%s\"; expected it before the end of input",
                   ct_pt_msg_name(desc), desc->fields[i].name);
    goto done;
  }
done:
  free(seen);
  return st;
}

static ct_status ct_prototxt_parse_into(const char *text, size_t len, const char *fname,
                                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, ct_srcmap *map,
                                        ct_error *err);

void ct_srcmap_free(ct_srcmap *m) {
  if (!m) return;
  free(m->file);
  free(m->v);
  free(m);
}

bool ct_srcmap_find(const ct_srcmap *m, const void *msg, int *line, int *col) {
  for (size_t i = 0; m && msg && i < m->n; i++)
    if (m->v[i].msg == msg && m->v[i].field == 0) {
      *line = m->v[i].line;
      *col = m->v[i].col;
      return true;
    }
  return false;
}

bool ct_srcmap_find_field(const ct_srcmap *m, const ProtobufCMessage *msg, const char *field, int *line, int *col) {
  const ProtobufCFieldDescriptor *f =
      m && msg && field ? protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, field) : NULL;
  for (size_t i = 0; f && i < m->n; i++)
    if (m->v[i].msg == msg && m->v[i].field == f->id) {
      *line = m->v[i].line;
      *col = m->v[i].col;
      return true;
    }
  return false;
}

const char *ct_srcmap_file(const ct_srcmap *m) { return m ? m->file : NULL; }

ct_status ct_srcmap_alias(ct_srcmap *m, const ProtobufCMessage *to, const ProtobufCMessage *from) {
  if (!m || !to || !from) return CT_OK;
  const size_t n = m->n; /* entries added here are not visited again */
  for (size_t i = 0; i < n; i++) {
    if (m->v[i].msg != from) continue;
    uint32_t field = 0;
    if (m->v[i].field) {
      const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(from->descriptor, m->v[i].field);
      const ProtobufCFieldDescriptor *g =
          f ? protobuf_c_message_descriptor_get_field_by_name(to->descriptor, f->name) : NULL;
      if (!g) continue;
      field = g->id;
    }
    if (m->n == m->cap) {
      size_t cap = m->cap * 2;
      struct srcpos *nv = realloc(m->v, cap * sizeof *nv);
      if (!nv) return CT_ENOMEM;
      m->v = nv;
      m->cap = cap;
    }
    m->v[m->n++] = (struct srcpos){to, field, m->v[i].line, m->v[i].col};
  }
  return CT_OK;
}

ct_status ct_prototxt_parse_mapped(const char *text, size_t len, const char *fname,
                                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, ct_srcmap **map,
                                   ct_error *err) {
  *map = calloc(1, sizeof **map);
  if (!*map || !((*map)->file = strdup(fname ? fname : "<prototxt>"))) {
    ct_srcmap_free(*map);
    *map = NULL;
    if (out) *out = NULL;
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  ct_status st = ct_prototxt_parse_into(text, len, fname, desc, out, *map, err);
  if (st) {
    ct_srcmap_free(*map);
    *map = NULL;
  }
  return st;
}

ct_status ct_prototxt_parse(const char *text, size_t len, const char *fname, const ProtobufCMessageDescriptor *desc,
                            ProtobufCMessage **out, ct_error *err) {
  return ct_prototxt_parse_into(text, len, fname, desc, out, NULL, err);
}

static ct_status ct_prototxt_parse_into(const char *text, size_t len, const char *fname,
                                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, ct_srcmap *map,
                                        ct_error *err) {
  if (out) *out = NULL;
  if (!out || !desc || (!text && len))
    return ct_fail(err, CT_EINVAL, "ct_prototxt_parse: missing text, descriptor or output");
  parser P = {.text = text, .len = len, .line = 1, .col = 1, .fname = fname ? fname : "<prototxt>", .err = err,
              .map = map};
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) P.pos = 3; /* a UTF-8 byte order mark */
  ProtobufCMessage *msg = new_message(desc);
  if (!msg) return ct_pt_oom(&P);
  ct_status st = ct_pt_lex(&P);
  if (st == CT_OK) st = parse_body(&P, msg, 0, 1, 1);
  if (st != CT_OK) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return st;
  }
  *out = msg;
  return CT_OK;
}

ct_status ct_prototxt_read_file(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                                ct_error *err) {
  if (out) *out = NULL;
  char *text;
  size_t len;
  CT_TRY(ct_read_file(path, MAX_PROTOTXT_BYTES, &text, &len, err));
  ct_status st = ct_prototxt_parse(text, len, path, desc, out, err);
  free(text);
  return st;
}

ct_status ct_prototxt_read_file_mapped(const char *path, const ProtobufCMessageDescriptor *desc,
                                       ProtobufCMessage **out, ct_srcmap **map, ct_error *err) {
  if (out) *out = NULL;
  *map = NULL;
  char *text;
  size_t len;
  CT_TRY(ct_read_file(path, MAX_PROTOTXT_BYTES, &text, &len, err));
  ct_status st = ct_prototxt_parse_mapped(text, len, path, desc, out, map, err);
  free(text);
  return st;
}


