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

#define MAX_DEPTH 100                        /* nested messages */
#define MAX_PROTOTXT_BYTES ((size_t)1 << 30) /* a prototxt file larger than this is refused */
#define FIELD_LIST_CHARS 400                 /* how much of "expected one of ..." to show */

/* ------------------------------------------------------------------ names */

/* "caffe.PoolingParameter.PoolMethod" -> "PoolingParameter.PoolMethod" */
static const char *strip_package(const char *name, const char *package) {
  size_t n = package ? strlen(package) : 0;
  if (n && strncmp(name, package, n) == 0 && name[n] == '.') return name + n + 1;
  return name;
}

static const char *msg_name(const ProtobufCMessageDescriptor *d) { return strip_package(d->name, d->package_name); }

static const char *enum_name(const ProtobufCEnumDescriptor *d) { return strip_package(d->name, d->package_name); }

static const char *type_name(const ProtobufCFieldDescriptor *f) {
  switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: return "int32";
    case PROTOBUF_C_TYPE_SINT32: return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
    case PROTOBUF_C_TYPE_INT64: return "int64";
    case PROTOBUF_C_TYPE_SINT64: return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32: return "uint32";
    case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
    case PROTOBUF_C_TYPE_UINT64: return "uint64";
    case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT: return "float";
    case PROTOBUF_C_TYPE_DOUBLE: return "double";
    case PROTOBUF_C_TYPE_BOOL: return "bool";
    case PROTOBUF_C_TYPE_ENUM: return enum_name(f->descriptor);
    case PROTOBUF_C_TYPE_STRING: return "string";
    case PROTOBUF_C_TYPE_BYTES: return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE: return msg_name(f->descriptor);
  }
  return "?";
}

/* The size of one element of a field in the C struct (and in a repeated array). */
static size_t elem_size(ProtobufCType t) {
  switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  }
  return 0;
}

/* ------------------------------------------------------------------ tokens */

enum tok_kind { TK_EOF, TK_IDENT, TK_NUMBER, TK_STRING, TK_PUNCT };

typedef struct token {
  enum tok_kind kind;
  const char *p; /* the raw text in the input (strings with their quotes) */
  size_t n;
  int line, col; /* 1-based */
} token;

/* Where each submessage of a parse opened, for messages about values found valid by the parser
 * but refused later (a layer's partition naming a device that is not there). */
struct ct_srcmap {
  char *file;
  size_t n, cap;
  struct srcpos {
    const void *msg;
    int line, col;
  } *v;
};

typedef struct parser {
  const char *text;
  size_t len, pos;
  int line, col; /* of pos */
  const char *fname;
  ct_error *err;
  token tok; /* the lookahead */
  int depth;
  ct_srcmap *map; /* NULL: not recorded */
} parser;

static ct_status perr_at(parser *P, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static ct_status perr_at(parser *P, int line, int col, const char *fmt, ...) {
  char what[960];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ct_fail(P->err, CT_EPARSE, "%s:%d:%d: %s", P->fname, line, col, what);
}

static ct_status oom(parser *P) { return ct_fail(P->err, CT_ENOMEM, "%s: out of memory while parsing", P->fname); }

/* A short description of a token for error messages. */
static const char *describe(const token *t, char *buf, size_t cap) {
  int n = t->n > 40 ? 40 : (int)t->n;
  const char *more = t->n > 40 ? "..." : "";
  switch (t->kind) {
    case TK_EOF: snprintf(buf, cap, "end of input"); break;
    case TK_IDENT: snprintf(buf, cap, "\"%.*s%s\"", n, t->p, more); break;
    case TK_NUMBER: snprintf(buf, cap, "number %.*s%s", n, t->p, more); break;
    case TK_STRING: snprintf(buf, cap, "string %.*s%s", n, t->p, more); break;
    case TK_PUNCT: snprintf(buf, cap, "\"%c\"", t->p[0]); break;
  }
  return buf;
}

static int is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }

static int is_punct(const token *t, char c) { return t->kind == TK_PUNCT && t->p[0] == c; }

/* Reads the next token into P->tok. */
static ct_status lex(parser *P) {
  const char *s = P->text;
  size_t len = P->len;
  while (P->pos < len) {
    char c = s[P->pos];
    if (c == '\n') {
      P->pos++;
      P->line++;
      P->col = 1;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
      P->pos++;
      P->col++;
    } else if (c == '#') {
      while (P->pos < len && s[P->pos] != '\n' && s[P->pos] != '\0') {
        P->pos++;
        P->col++;
      }
    } else {
      break;
    }
  }
  token *t = &P->tok;
  t->line = P->line;
  t->col = P->col;
  t->p = s + P->pos;
  t->n = 0;
  if (P->pos >= len) {
    t->kind = TK_EOF;
    return CT_OK;
  }
  size_t i = P->pos;
  unsigned char c = (unsigned char)s[i];
  if (is_ident_start(c)) {
    while (i < len && is_ident_char((unsigned char)s[i])) i++;
    t->kind = TK_IDENT;
  } else if (is_digit(c) || (c == '.' && i + 1 < len && is_digit((unsigned char)s[i + 1]))) {
    int hex = c == '0' && i + 1 < len && (s[i + 1] == 'x' || s[i + 1] == 'X');
    i++;
    while (i < len) {
      unsigned char d = (unsigned char)s[i];
      if (is_ident_char(d) || d == '.')
        i++;
      else if ((d == '+' || d == '-') && !hex && (s[i - 1] == 'e' || s[i - 1] == 'E'))
        i++;
      else
        break;
    }
    t->kind = TK_NUMBER;
  } else if (c == '"' || c == '\'') {
    i++;
    for (;;) {
      if (i >= len || s[i] == '\n')
        return perr_at(P, t->line, t->col, "unterminated string; expected a closing %c on the same line", c);
      if (s[i] == '\0')
        return perr_at(P, t->line, t->col + (int)(i - P->pos), "NUL byte inside a string; expected text");
      if (s[i] == '\\') {
        i++;
        if (i < len && s[i] != '\n' && s[i] != '\0') i++;
        continue;
      }
      if ((unsigned char)s[i] == c) {
        i++;
        break;
      }
      i++;
    }
    t->kind = TK_STRING;
  } else if (c != '\0' && strchr("{}<>[]:,;-", c)) {
    i++;
    t->kind = TK_PUNCT;
  } else if (c == '\0') {
    return perr_at(P, t->line, t->col, "NUL byte in input; expected text");
  } else if (c >= 0x20 && c < 0x7f) {
    return perr_at(P, t->line, t->col,
                   "unexpected character '%c'; expected a field name, a value or one of { } [ ] : < >", c);
  } else {
    return perr_at(P, t->line, t->col, "unexpected byte 0x%02x; expected a field name, a value or punctuation", c);
  }
  t->n = i - P->pos;
  P->col += (int)t->n;
  P->pos = i;
  return CT_OK;
}

/* ------------------------------------------------------------------ storing values */

typedef union scalar {
  int32_t i32;
  uint32_t u32;
  int64_t i64;
  uint64_t u64;
  float f;
  double d;
  protobuf_c_boolean b;
  char *s;
  ProtobufCBinaryData bd;
  ProtobufCMessage *m;
} scalar;

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
  return perr_at(P, line, col,
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
    size_t n = *np, sz = elem_size(f->type);
    if ((n & (n - 1)) == 0) { /* 0 or a power of two: the array is full */
      size_t cap = n ? 2 * n : 1;
      void *a = cap <= SIZE_MAX / sz ? realloc(*ap, cap * sz) : NULL;
      if (!a) {
        scalar_release(f, v);
        return oom(P);
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
    default: memcpy(dst, v, elem_size(f->type)); break;
  }
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    *(uint32_t *)(base + f->quantifier_offset) = f->id;
  else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
           f->type != PROTOBUF_C_TYPE_MESSAGE)
    *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
  return CT_OK;
}

/* ------------------------------------------------------------------ scalar values */

/* Copies a number token (with an optional '-') into buf; fails when it does not fit. */
static ct_status number_text(parser *P, const token *t, int neg, int line, int col, char *buf, size_t cap) {
  if (t->n + 2 > cap)
    return perr_at(P, line, col, "number %.24s... is too long; expected at most %zu characters", t->p, cap - 2);
  size_t k = 0;
  if (neg) buf[k++] = '-';
  memcpy(buf + k, t->p, t->n);
  buf[k + t->n] = '\0';
  return CT_OK;
}

/* Parses an integer token's magnitude: decimal, hex (0x) or octal (leading 0). */
static ct_status parse_magnitude(parser *P, const ProtobufCFieldDescriptor *f, const char *raw, int line, int col,
                                 uint64_t *mag, int *range) {
  const char *s = raw;
  int base = 10;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s += 2;
  } else if (s[0] == '0' && s[1]) {
    base = 8;
    s += 1;
  }
  int ok = *s != '\0';
  for (const char *q = s; *q && ok; q++) {
    int c = (unsigned char)*q;
    if (base == 16)
      ok = is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
    else
      ok = c >= '0' && c < '0' + base;
  }
  if (!ok)
    return perr_at(P, line, col, "\"%s\" is not an integer; expected an integer for %s field \"%s\"", raw, type_name(f),
                   f->name);
  errno = 0;
  char *end;
  unsigned long long u = strtoull(s, &end, base);
  *range = errno == ERANGE;
  *mag = (uint64_t)u;
  return CT_OK;
}

/* Reads an optional '-' and returns whether it was there, with the value's position. */
static ct_status read_sign(parser *P, int *neg, int *line, int *col) {
  *line = P->tok.line;
  *col = P->tok.col;
  *neg = is_punct(&P->tok, '-');
  if (*neg) return lex(P);
  return CT_OK;
}

static ct_status expected_value(parser *P, const ProtobufCFieldDescriptor *f, const char *what) {
  char d[96];
  return perr_at(P, P->tok.line, P->tok.col, "unexpected %s; expected %s for %s field \"%s\"",
                 describe(&P->tok, d, sizeof d), what, type_name(f), f->name);
}

static ct_status parse_int(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
  int neg, line, col, range;
  CT_TRY(read_sign(P, &neg, &line, &col));
  if (P->tok.kind != TK_NUMBER) return expected_value(P, f, neg ? "a number after \"-\"" : "an integer");
  char raw[72];
  uint64_t mag;
  CT_TRY(number_text(P, &P->tok, 0, line, col, raw, sizeof raw));
  CT_TRY(parse_magnitude(P, f, raw, line, col, &mag, &range));
  int is_unsigned = 0;
  uint64_t limit;
  switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: limit = neg ? (uint64_t)INT32_MAX + 1 : (uint64_t)INT32_MAX; break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX; break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
      is_unsigned = 1;
      limit = UINT32_MAX;
      break;
    default:
      is_unsigned = 1;
      limit = UINT64_MAX;
      break;
  }
  if (is_unsigned && neg && (mag != 0 || range))
    return perr_at(P, line, col, "negative value -%s for unsigned %s field \"%s\"; expected 0 or more", raw,
                   type_name(f), f->name);
  if (range || mag > limit)
    return perr_at(P, line, col, "value %s%s out of range for %s field \"%s\"", neg ? "-" : "", raw, type_name(f),
                   f->name);
  switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: v->i32 = neg ? (mag ? -(int32_t)(mag - 1) - 1 : 0) : (int32_t)mag; break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: v->i64 = neg ? (mag ? -(int64_t)(mag - 1) - 1 : 0) : (int64_t)mag; break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: v->u32 = (uint32_t)mag; break;
    default: v->u64 = mag; break;
  }
  return lex(P);
}

static int ident_is(const token *t, const char *word) {
  return t->kind == TK_IDENT && t->n == strlen(word) && strncasecmp(t->p, word, t->n) == 0;
}

static ct_status parse_real(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
  int neg, line, col;
  int is_float = f->type == PROTOBUF_C_TYPE_FLOAT;
  CT_TRY(read_sign(P, &neg, &line, &col));
  const token *t = &P->tok;
  if (t->kind == TK_IDENT) {
    double d;
    if (ident_is(t, "inf") || ident_is(t, "infinity"))
      d = HUGE_VAL;
    else if (ident_is(t, "nan"))
      d = NAN;
    else
      return expected_value(P, f, "a number");
    if (neg) d = -d;
    if (is_float)
      v->f = (float)d;
    else
      v->d = d;
    return lex(P);
  }
  if (t->kind != TK_NUMBER) return expected_value(P, f, neg ? "a number after \"-\"" : "a number");
  char raw[72];
  CT_TRY(number_text(P, t, neg, line, col, raw, sizeof raw));
  size_t n = strlen(raw);
  const char *digits = raw + (neg ? 1 : 0);
  int hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
  if (!hex && n > 1 && (raw[n - 1] == 'f' || raw[n - 1] == 'F')) raw[--n] = '\0';
  char *end;
  errno = 0;
  int overflow;
  if (is_float) {
    v->f = strtof(raw, &end);
    overflow = errno == ERANGE && isinf(v->f);
  } else {
    v->d = strtod(raw, &end);
    overflow = errno == ERANGE && isinf(v->d);
  }
  if (end != raw + n || n == (size_t)neg)
    return perr_at(P, line, col, "\"%s\" is not a number; expected a number for %s field \"%s\"", raw, type_name(f),
                   f->name);
  if (overflow) return perr_at(P, line, col, "value %s out of range for %s field \"%s\"", raw, type_name(f), f->name);
  return lex(P);
}

static ct_status parse_bool(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
  const token *t = &P->tok;
  int n = (int)(t->n > 40 ? 40 : t->n);
  if (t->kind == TK_IDENT) {
    if (t->n == 4 && (!strncmp(t->p, "true", 4) || !strncmp(t->p, "True", 4)))
      v->b = 1;
    else if (t->n == 5 && (!strncmp(t->p, "false", 5) || !strncmp(t->p, "False", 5)))
      v->b = 0;
    else if (t->n == 1 && t->p[0] == 't')
      v->b = 1;
    else if (t->n == 1 && t->p[0] == 'f')
      v->b = 0;
    else
      return perr_at(P, t->line, t->col, "\"%.*s\" is not a valid value for bool field \"%s\"; expected true or false",
                     n, t->p, f->name);
    return lex(P);
  }
  if (t->kind == TK_NUMBER) {
    if (t->n == 1 && (t->p[0] == '0' || t->p[0] == '1')) {
      v->b = t->p[0] == '1';
      return lex(P);
    }
    return perr_at(P, t->line, t->col, "%.*s is not a valid value for bool field \"%s\"; expected true or false", n,
                   t->p, f->name);
  }
  return expected_value(P, f, "true or false");
}

/* "MAX, AVE or STOCHASTIC" */
static void enum_choices(const ProtobufCEnumDescriptor *ed, char *buf, size_t cap) {
  size_t k = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < ed->n_values && k + 1 < cap; i++) {
    const char *sep = i == 0 ? "" : i + 1 == ed->n_values ? " or " : ", ";
    int w = snprintf(buf + k, cap - k, "%s%s", sep, ed->values[i].name);
    if (w < 0) break;
    k += (size_t)w;
  }
}

static ct_status bad_enum(parser *P, const ProtobufCFieldDescriptor *f, int line, int col, const char *shown) {
  const ProtobufCEnumDescriptor *ed = f->descriptor;
  char choices[512];
  enum_choices(ed, choices, sizeof choices);
  return perr_at(P, line, col, "%s is not a valid value for enum field \"%s\" (%s); expected %s", shown, f->name,
                 enum_name(ed), choices);
}

static ct_status parse_enum(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
  const ProtobufCEnumDescriptor *ed = f->descriptor;
  const token *t = &P->tok;
  char shown[80];
  if (t->kind == TK_IDENT) {
    for (unsigned i = 0; i < ed->n_value_names; i++) {
      const char *name = ed->values_by_name[i].name;
      if (strlen(name) == t->n && strncmp(name, t->p, t->n) == 0) {
        v->i32 = ed->values[ed->values_by_name[i].index].value;
        return lex(P);
      }
    }
    return bad_enum(P, f, t->line, t->col, describe(t, shown, sizeof shown));
  }
  if (t->kind == TK_STRING) {
    char choices[512];
    enum_choices(ed, choices, sizeof choices);
    return perr_at(P, t->line, t->col, "unexpected %s for enum field \"%s\" (%s); expected an unquoted name: %s",
                   describe(t, shown, sizeof shown), f->name, enum_name(ed), choices);
  }
  int neg, line, col, range;
  CT_TRY(read_sign(P, &neg, &line, &col));
  if (P->tok.kind != TK_NUMBER) return expected_value(P, f, "an enum value");
  char raw[72];
  uint64_t mag;
  CT_TRY(number_text(P, &P->tok, 0, line, col, raw, sizeof raw));
  CT_TRY(parse_magnitude(P, f, raw, line, col, &mag, &range));
  snprintf(shown, sizeof shown, "%s%s", neg ? "-" : "", raw);
  if (range || mag > (neg ? (uint64_t)INT32_MAX + 1 : (uint64_t)INT32_MAX)) return bad_enum(P, f, line, col, shown);
  int32_t value = neg ? (mag ? -(int32_t)(mag - 1) - 1 : 0) : (int32_t)mag;
  if (!protobuf_c_enum_descriptor_get_value(ed, value)) return bad_enum(P, f, line, col, shown);
  v->i32 = value;
  return lex(P);
}

static int hex_value(int c) {
  if (is_digit(c)) return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decodes one string token (quotes and C escapes) and appends it to *buf. */
static ct_status decode_string(parser *P, const token *t, char **buf, size_t *len) {
  char *b = realloc(*buf, *len + t->n + 1);
  if (!b) return oom(P);
  *buf = b;
  size_t k = *len;
  const char *s = t->p + 1, *e = t->p + t->n - 1; /* between the quotes */
  while (s < e) {
    if (*s != '\\') {
      b[k++] = *s++;
      continue;
    }
    int col = t->col + (int)(s - t->p);
    s++;
    char c = *s++;
    switch (c) {
      case 'n': b[k++] = '\n'; break;
      case 't': b[k++] = '\t'; break;
      case 'r': b[k++] = '\r'; break;
      case 'a': b[k++] = '\a'; break;
      case 'b': b[k++] = '\b'; break;
      case 'f': b[k++] = '\f'; break;
      case 'v': b[k++] = '\v'; break;
      case '\\': b[k++] = '\\'; break;
      case '\'': b[k++] = '\''; break;
      case '"': b[k++] = '"'; break;
      case '?': b[k++] = '?'; break;
      case 'x':
      case 'X': {
        int val = 0, nd = 0;
        while (nd < 2 && s < e && hex_value((unsigned char)*s) >= 0)
          val = val * 16 + hex_value((unsigned char)*s++), nd++;
        if (nd == 0)
          return perr_at(P, t->line, col,
                         "escape \"\\x\" without hex digits; expected \\x followed by 1 or 2 hex digits");
        b[k++] = (char)val;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int val = c - '0', nd = 1;
          while (nd < 3 && s < e && *s >= '0' && *s <= '7') val = val * 8 + (*s++ - '0'), nd++;
          if (val > 255)
            return perr_at(P, t->line, col, "octal escape \\%o is larger than a byte; expected \\0 to \\377", val);
          b[k++] = (char)val;
          break;
        }
        if (c >= 0x20 && c < 0x7f)
          return perr_at(P, t->line, col,
                         "invalid escape \"\\%c\" in string; expected one of \\n \\t \\r \\\\ \\\" \\' \\xHH \\ooo", c);
        return perr_at(P, t->line, col,
                       "invalid escape in string; expected one of \\n \\t \\r \\\\ \\\" \\' \\xHH \\ooo");
    }
  }
  b[k] = '\0';
  *len = k;
  return CT_OK;
}

static ct_status parse_text(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
  if (P->tok.kind != TK_STRING) {
    if (P->tok.kind == TK_IDENT) {
      char d[96];
      return perr_at(P, P->tok.line, P->tok.col, "unexpected %s; expected a quoted string for %s field \"%s\"",
                     describe(&P->tok, d, sizeof d), type_name(f), f->name);
    }
    return expected_value(P, f, "a quoted string");
  }
  int line = P->tok.line, col = P->tok.col;
  char *buf = NULL;
  size_t len = 0;
  ct_status st;
  while (P->tok.kind == TK_STRING) { /* adjacent literals concatenate */
    if ((st = decode_string(P, &P->tok, &buf, &len)) != CT_OK || (st = lex(P)) != CT_OK) goto fail;
  }
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    if (memchr(buf, '\0', len)) {
      st = perr_at(P, line, col, "string field \"%s\" contains a NUL byte; expected text without \\0", f->name);
      goto fail;
    }
    v->s = buf;
  } else {
    v->bd.len = len;
    v->bd.data = (uint8_t *)buf;
  }
  return CT_OK;
fail:
  free(buf);
  return st;
}

static ct_status parse_scalar(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
  memset(v, 0, sizeof *v);
  switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: return parse_real(P, f, v);
    case PROTOBUF_C_TYPE_BOOL: return parse_bool(P, f, v);
    case PROTOBUF_C_TYPE_ENUM: return parse_enum(P, f, v);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES: return parse_text(P, f, v);
    case PROTOBUF_C_TYPE_MESSAGE: return CT_EINTERNAL;
    default: return parse_int(P, f, v);
  }
}

/* ------------------------------------------------------------------ messages */

static ct_status parse_body(parser *P, ProtobufCMessage *msg, char close, int oline, int ocol);

static ct_status parse_submessage(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  const token open = P->tok;
  char close;
  if (is_punct(&open, '{'))
    close = '}';
  else if (is_punct(&open, '<'))
    close = '>';
  else if (open.kind == TK_IDENT || open.kind == TK_NUMBER || open.kind == TK_STRING || is_punct(&open, '-'))
    return perr_at(P, open.line, open.col, "field \"%s\" is a message (%s), not a scalar; expected \"{\"", f->name,
                   type_name(f));
  else {
    char d[96];
    return perr_at(P, open.line, open.col, "unexpected %s; expected \"{\" to open message field \"%s\" (%s)",
                   describe(&open, d, sizeof d), f->name, type_name(f));
  }
  if (P->depth >= MAX_DEPTH)
    return perr_at(P, open.line, open.col, "messages nested more than %d levels deep; expected a shallower file",
                   MAX_DEPTH);
  scalar v;
  v.m = new_message(f->descriptor);
  if (!v.m) return oom(P);
  ProtobufCMessage *sub = v.m;
  if (P->map) {
    ct_srcmap *m = P->map;
    if (m->n == m->cap) {
      size_t cap = m->cap ? m->cap * 2 : 64;
      struct srcpos *nv = realloc(m->v, cap * sizeof *nv);
      if (!nv) {
        protobuf_c_message_free_unpacked(sub, NULL);
        return oom(P);
      }
      m->v = nv;
      m->cap = cap;
    }
    m->v[m->n++] = (struct srcpos){sub, open.line, open.col};
  }
  CT_TRY(store(P, msg, f, &v)); /* owned by msg from here on, so errors below free it */
  CT_TRY(lex(P));
  P->depth++;
  ct_status st = parse_body(P, sub, close, open.line, open.col);
  P->depth--;
  if (st != CT_OK) return st;
  return lex(P); /* the closing bracket */
}

static ct_status not_repeated(parser *P, const ProtobufCFieldDescriptor *f) {
  return perr_at(P, P->tok.line, P->tok.col,
                 "field \"%s\" is not repeated, so it takes no list; expected a single value", f->name);
}

static ct_status list_separator(parser *P, int *done) {
  if (is_punct(&P->tok, ',')) {
    *done = 0;
    return lex(P);
  }
  if (is_punct(&P->tok, ']')) {
    *done = 1;
    return lex(P);
  }
  char d[96];
  return perr_at(P, P->tok.line, P->tok.col, "unexpected %s in a list; expected \",\" or \"]\"",
                 describe(&P->tok, d, sizeof d));
}

/* Parses what follows a field name: ": value", "{ ... }", ": [ ... ]". */
static ct_status parse_field(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
  int done = 0;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    if (is_punct(&P->tok, ':')) CT_TRY(lex(P));
    if (!is_punct(&P->tok, '[')) return parse_submessage(P, msg, f);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) return not_repeated(P, f);
    CT_TRY(lex(P));
    if (is_punct(&P->tok, ']')) return lex(P);
    while (!done) {
      CT_TRY(parse_submessage(P, msg, f));
      CT_TRY(list_separator(P, &done));
    }
    return CT_OK;
  }
  if (!is_punct(&P->tok, ':')) {
    if (is_punct(&P->tok, '{') || is_punct(&P->tok, '<'))
      return perr_at(P, P->tok.line, P->tok.col, "field \"%s\" is a %s, not a message; expected \":\" and a value",
                     f->name, type_name(f));
    char d[96];
    return perr_at(P, P->tok.line, P->tok.col, "unexpected %s after field name \"%s\"; expected \":\"",
                   describe(&P->tok, d, sizeof d), f->name);
  }
  CT_TRY(lex(P));
  scalar v;
  if (!is_punct(&P->tok, '[')) {
    CT_TRY(parse_scalar(P, f, &v));
    return store(P, msg, f, &v);
  }
  if (f->label != PROTOBUF_C_LABEL_REPEATED) return not_repeated(P, f);
  CT_TRY(lex(P));
  if (is_punct(&P->tok, ']')) return lex(P);
  while (!done) {
    CT_TRY(parse_scalar(P, f, &v));
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

static ct_status unknown_field(parser *P, const ProtobufCMessageDescriptor *desc, const token *t) {
  char list[FIELD_LIST_CHARS + 16];
  size_t k = 0;
  const char *best = NULL;
  size_t best_d = 3; /* suggest only names within 2 edits */
  list[0] = '\0';
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const char *name = desc->fields[i].name;
    size_t d = edit_distance(t->p, t->n, name);
    if (d < best_d && d < t->n) {
      best_d = d;
      best = name;
    }
    if (k < FIELD_LIST_CHARS) {
      int w = snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", name);
      if (w > 0) k += (size_t)w;
      if (k >= FIELD_LIST_CHARS && i + 1 < desc->n_fields) {
        snprintf(list + FIELD_LIST_CHARS, sizeof list - FIELD_LIST_CHARS, ", ...");
        k = FIELD_LIST_CHARS + 5;
      }
    }
  }
  int n = (int)(t->n > 64 ? 64 : t->n);
  if (best)
    return perr_at(P, t->line, t->col, "unknown field \"%.*s\" in %s; expected one of %s (did you mean \"%s\"?)", n,
                   t->p, msg_name(desc), list, best);
  return perr_at(P, t->line, t->col, "unknown field \"%.*s\" in %s; expected one of %s", n, t->p, msg_name(desc), list);
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
  if (!seen) return oom(P);
  ct_status st = CT_OK;
  char d[96];
  for (;;) {
    const token *t = &P->tok;
    if (t->kind == TK_EOF) {
      if (close) {
        st = perr_at(P, t->line, t->col, "unexpected end of input; expected \"%c\" to close the %s opened at %d:%d",
                     close, msg_name(desc), oline, ocol);
        goto done;
      }
      break;
    }
    if (close && is_punct(t, close)) break;
    if (t->kind != TK_IDENT) {
      if (close)
        st = perr_at(P, t->line, t->col, "unexpected %s; expected a field name of %s or \"%c\"",
                     describe(t, d, sizeof d), msg_name(desc), close);
      else
        st = perr_at(P, t->line, t->col, "unexpected %s; expected a field name of %s", describe(t, d, sizeof d),
                     msg_name(desc));
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
      st = perr_at(P, t->line, t->col,
                   "field \"%s\" given twice in %s (first on line %d); expected it once, as it is not repeated",
                   f->name, msg_name(desc), seen[idx]);
      goto done;
    }
    if ((st = check_oneof(P, msg, f, t->line, t->col)) != CT_OK) goto done;
    if ((st = lex(P)) != CT_OK || (st = parse_field(P, msg, f)) != CT_OK) goto done;
    seen[idx] = line;
    if (is_punct(&P->tok, ',') || is_punct(&P->tok, ';'))
      if ((st = lex(P)) != CT_OK) goto done;
  }
  for (unsigned i = 0; i < desc->n_fields; i++) {
    if (desc->fields[i].label != PROTOBUF_C_LABEL_REQUIRED || seen[i]) continue;
    const token *t = &P->tok;
    if (close)
      st = perr_at(P, oline, ocol, "%s is missing required field \"%s\"; expected it before the \"%c\" at %d:%d",
                   msg_name(desc), desc->fields[i].name, close, t->line, t->col);
    else
      st = perr_at(P, t->line, t->col, "%s is missing required field \"%s\"; expected it before the end of input",
                   msg_name(desc), desc->fields[i].name);
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
    if (m->v[i].msg == msg) {
      *line = m->v[i].line;
      *col = m->v[i].col;
      return true;
    }
  return false;
}

const char *ct_srcmap_file(const ct_srcmap *m) { return m ? m->file : NULL; }

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
  if (!msg) return oom(&P);
  ct_status st = lex(&P);
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

/* ------------------------------------------------------------------ printing */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_indent(sbuf *b, int depth) {
  for (int i = 0; i < depth; i++) sb_put(b, "  ", 2);
}

/* The shortest %g form (6 to 9 digits) that reads back as the same float. */
static void format_float(char *buf, size_t cap, float v) {
  if (isnan(v) || isinf(v)) {
    snprintf(buf, cap, "%s%s", signbit(v) ? "-" : "", isnan(v) ? "nan" : "inf");
    return;
  }
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, cap, "%.*g", prec, (double)v);
    float back = strtof(buf, NULL);
    if (memcmp(&back, &v, sizeof v) == 0) return;
  }
}

static void format_double(char *buf, size_t cap, double v) {
  if (isnan(v) || isinf(v)) {
    snprintf(buf, cap, "%s%s", signbit(v) ? "-" : "", isnan(v) ? "nan" : "inf");
    return;
  }
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    double back = strtod(buf, NULL);
    if (memcmp(&back, &v, sizeof v) == 0) return;
  }
}

/* Quotes and escapes; `all` also escapes bytes >= 0x80 (for bytes fields; strings keep UTF-8). */
static void print_quoted(sbuf *b, const uint8_t *s, size_t n, int all) {
  sb_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    char esc[8];
    switch (c) {
      case '\n': sb_put(b, "\\n", 2); break;
      case '\r': sb_put(b, "\\r", 2); break;
      case '\t': sb_put(b, "\\t", 2); break;
      case '"': sb_put(b, "\\\"", 2); break;
      case '\'': sb_put(b, "\\'", 2); break;
      case '\\': sb_put(b, "\\\\", 2); break;
      default:
        if (c < 0x20 || c == 0x7f || (all && c >= 0x80)) {
          snprintf(esc, sizeof esc, "\\%03o", c);
          sb_put(b, esc, 4);
        } else {
          sb_put(b, (const char *)&c, 1);
        }
    }
  }
  sb_put(b, "\"", 1);
}

static void print_message(sbuf *b, const ProtobufCMessage *msg, int depth);

static void print_field(sbuf *b, const ProtobufCFieldDescriptor *f, const void *p, int depth) {
  char num[64];
  sb_indent(b, depth);
  size_t nlen = strlen(f->name);
  sb_put(b, f->name, nlen - (nlen > 0 && f->name[nlen - 1] == '_')); /* base_ prints as base */
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    sb_puts(b, " {\n");
    const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
    if (sub) print_message(b, sub, depth + 1);
    sb_indent(b, depth);
    sb_puts(b, "}\n");
    return;
  }
  sb_puts(b, ": ");
  switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: snprintf(num, sizeof num, "%" PRId32, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: snprintf(num, sizeof num, "%" PRIu32, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: snprintf(num, sizeof num, "%" PRIu64, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: format_float(num, sizeof num, *(const float *)p); break;
    case PROTOBUF_C_TYPE_DOUBLE: format_double(num, sizeof num, *(const double *)p); break;
    case PROTOBUF_C_TYPE_BOOL:
      snprintf(num, sizeof num, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
      break;
    case PROTOBUF_C_TYPE_ENUM: {
      int32_t value = *(const int32_t *)p;
      const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, value);
      if (ev)
        snprintf(num, sizeof num, "%.60s", ev->name);
      else
        snprintf(num, sizeof num, "%" PRId32, value);
      break;
    }
    case PROTOBUF_C_TYPE_STRING: {
      const char *s = *(const char *const *)p;
      print_quoted(b, (const uint8_t *)(s ? s : ""), s ? strlen(s) : 0, 0);
      num[0] = '\0';
      break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
      const ProtobufCBinaryData *bd = p;
      print_quoted(b, bd->data, bd->data ? bd->len : 0, 1);
      num[0] = '\0';
      break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: break;
  }
  sb_puts(b, num);
  sb_puts(b, "\n");
}

static int is_zero(const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i]) return 0;
  return 1;
}

/* Fields in field-number order (protobuf's TextFormat order), only those that are set. */
static void print_message(sbuf *b, const ProtobufCMessage *msg, int depth) {
  const ProtobufCMessageDescriptor *desc = msg->descriptor;
  const char *base = (const char *)msg;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    const void *p = base + f->offset;
    const void *q = base + f->quantifier_offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)q, sz = elem_size(f->type);
      const char *arr = *(const char *const *)p;
      for (size_t j = 0; arr && j < n; j++) print_field(b, f, arr + j * sz, depth);
      continue;
    }
    int set;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      set = *(const uint32_t *)q == f->id;
    } else if (f->type == PROTOBUF_C_TYPE_STRING) {
      const char *s = *(const char *const *)p;
      if (f->label == PROTOBUF_C_LABEL_NONE)
        set = s && *s;
      else
        set = s && (f->label == PROTOBUF_C_LABEL_REQUIRED || s != (const char *)f->default_value);
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
      set = *(ProtobufCMessage *const *)p != NULL;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
      set = *(const protobuf_c_boolean *)q;
    } else if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
      set = 1;
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
      set = ((const ProtobufCBinaryData *)p)->len > 0;
    } else {
      set = !is_zero(p, elem_size(f->type));
    }
    if (set) print_field(b, f, p, depth);
  }
}

char *ct_prototxt_print(const ProtobufCMessage *msg) {
  sbuf b = {0};
  sb_put(&b, "", 0);
  if (msg) print_message(&b, msg, 0);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

ct_status ct_prototxt_write_file(const char *path, const ProtobufCMessage *msg, ct_error *err) {
  char *text = ct_prototxt_print(msg);
  if (!text) return ct_fail(err, CT_ENOMEM, "%s: out of memory while printing", path);
  ct_status st = ct_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return st;
}
