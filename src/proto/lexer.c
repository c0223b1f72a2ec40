/* The prototxt parser's lexer and scalar values: tokens with their line and column, and every
 * scalar type of the schema read from them with the range and format checks a protobuf text
 * parser makes, each error quoting file:line:col, what was found and what was expected. */
#include "proto/lexer.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"

/* ------------------------------------------------------------------ names */

/* "caffe.PoolingParameter.PoolMethod" -> "PoolingParameter.PoolMethod" */
static const char *strip_package(const char *name, const char *package) {
  size_t n = package ? strlen(package) : 0;
  if (n && strncmp(name, package, n) == 0 && name[n] == '.') return name + n + 1;
  return name;
}

const char *ct_pt_msg_name(const ProtobufCMessageDescriptor *d) { return strip_package(d->name, d->package_name); }

static const char *enum_name(const ProtobufCEnumDescriptor *d) { return strip_package(d->name, d->package_name); }

const char *ct_pt_type_name(const ProtobufCFieldDescriptor *f) {
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
    case PROTOBUF_C_TYPE_MESSAGE: return ct_pt_msg_name(f->descriptor);
  }
  return "?";
}

/* The size of one element of a field in the C struct (and in a repeated array). */
size_t ct_proto_elem_size(ProtobufCType t) {
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

ct_status ct_pt_error(parser *P, int line, int col, const char *fmt, ...) {
  char what[960];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ct_fail(P->err, CT_EPARSE, "%s:%d:%d: %s", P->fname, line, col, what);
}

ct_status ct_pt_oom(parser *P) { return ct_fail(P->err, CT_ENOMEM, "%s: out of memory while parsing", P->fname); }

/* A short description of a token for error messages. */
const char *ct_pt_describe(const token *t, char *buf, size_t cap) {
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

int ct_pt_is_punct(const token *t, char c) { return t->kind == TK_PUNCT && t->p[0] == c; }

/* Reads the next token into P->tok. */
ct_status ct_pt_lex(parser *P) {
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
        return ct_pt_error(P, t->line, t->col, "unterminated string; expected a closing %c on the same line", c);
      if (s[i] == '\0')
        return ct_pt_error(P, t->line, t->col + (int)(i - P->pos), "NUL byte inside a string; expected text");
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
    return ct_pt_error(P, t->line, t->col, "NUL byte in input; expected text");
  } else if (c >= 0x20 && c < 0x7f) {
    return ct_pt_error(P, t->line, t->col,
                   "unexpected character '%c'; expected a field name, a value or one of { } [ ] : < >", c);
  } else {
    return ct_pt_error(P, t->line, t->col, "unexpected byte 0x%02x; expected a field name, a value or punctuation", c);
  }
  t->n = i - P->pos;
  P->col += (int)t->n;
  P->pos = i;
  return CT_OK;
}

/* ------------------------------------------------------------------ scalar values */

/* Copies a number token (with an optional '-') into buf; fails when it does not fit. */
static ct_status number_text(parser *P, const token *t, int neg, int line, int col, char *buf, size_t cap) {
  if (t->n + 2 > cap)
    return ct_pt_error(P, line, col, "number %.24s... is too long; expected at most %zu characters", t->p, cap - 2);
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
    return ct_pt_error(P, line, col, "\"%s\" is not an integer; expected an integer for %s field \"%s\"", raw, ct_pt_type_name(f),
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
  *neg = ct_pt_is_punct(&P->tok, '-');
  if (*neg) return ct_pt_lex(P);
  return CT_OK;
}

static ct_status expected_value(parser *P, const ProtobufCFieldDescriptor *f, const char *what) {
  char d[96];
  return ct_pt_error(P, P->tok.line, P->tok.col, "unexpected %s; expected %s for %s field \"%s\"",
                 ct_pt_describe(&P->tok, d, sizeof d), what, ct_pt_type_name(f), f->name);
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
    return ct_pt_error(P, line, col, "negative value -%s for unsigned %s field \"%s\"; expected 0 or more", raw,
                   ct_pt_type_name(f), f->name);
  if (range || mag > limit)
    return ct_pt_error(P, line, col, "value %s%s out of range for %s field \"%s\"", neg ? "-" : "", raw, ct_pt_type_name(f),
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
  return ct_pt_lex(P);
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
    return ct_pt_lex(P);
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
    return ct_pt_error(P, line, col, "\"%s\" is not a number; expected a number for %s field \"%s\"", raw, ct_pt_type_name(f),
                   f->name);
  if (overflow) return ct_pt_error(P, line, col, "value %s out of range for %s field \"%s\"", raw, ct_pt_type_name(f), f->name);
  return ct_pt_lex(P);
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
      return ct_pt_error(P, t->line, t->col, "\"%.*s\" is not a valid value for bool field \"%s\"; expected true or false",
                     n, t->p, f->name);
    return ct_pt_lex(P);
  }
  if (t->kind == TK_NUMBER) {
    if (t->n == 1 && (t->p[0] == '0' || t->p[0] == '1')) {
      v->b = t->p[0] == '1';
      return ct_pt_lex(P);
    }
    return ct_pt_error(P, t->line, t->col, "%.*s is not a valid value for bool field \"%s\"; expected true or false", n,
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
  return ct_pt_error(P, line, col, "%s is not a valid value for enum field \"%s\" (%s); expected %s", shown, f->name,
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
        return ct_pt_lex(P);
      }
    }
    return bad_enum(P, f, t->line, t->col, ct_pt_describe(t, shown, sizeof shown));
  }
  if (t->kind == TK_STRING) {
    char choices[512];
    enum_choices(ed, choices, sizeof choices);
    return ct_pt_error(P, t->line, t->col, "unexpected %s for enum field \"%s\" (%s); expected an unquoted name: %s",
                   ct_pt_describe(t, shown, sizeof shown), f->name, enum_name(ed), choices);
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
  return ct_pt_lex(P);
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
  if (!b) return ct_pt_oom(P);
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
          return ct_pt_error(P, t->line, col,
                         "escape \"\\x\" without hex digits; expected \\x followed by 1 or 2 hex digits");
        b[k++] = (char)val;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int val = c - '0', nd = 1;
          while (nd < 3 && s < e && *s >= '0' && *s <= '7') val = val * 8 + (*s++ - '0'), nd++;
          if (val > 255)
            return ct_pt_error(P, t->line, col, "octal escape \\%o is larger than a byte; expected \\0 to \\377", val);
          b[k++] = (char)val;
          break;
        }
        if (c >= 0x20 && c < 0x7f)
          return ct_pt_error(P, t->line, col,
                         "invalid escape \"\\%c\" in string; expected one of \\n \\t \\r \\\\ \\\" \\' \\xHH \\ooo", c);
        return ct_pt_error(P, t->line, col,
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
      return ct_pt_error(P, P->tok.line, P->tok.col, "unexpected %s; expected a quoted string for %s field \"%s\"",
                     ct_pt_describe(&P->tok, d, sizeof d), ct_pt_type_name(f), f->name);
    }
    return expected_value(P, f, "a quoted string");
  }
  int line = P->tok.line, col = P->tok.col;
  char *buf = NULL;
  size_t len = 0;
  ct_status st;
  while (P->tok.kind == TK_STRING) { /* adjacent literals concatenate */
    if ((st = decode_string(P, &P->tok, &buf, &len)) != CT_OK || (st = ct_pt_lex(P)) != CT_OK) goto fail;
  }
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    if (memchr(buf, '\0', len)) {
      st = ct_pt_error(P, line, col, "string field \"%s\" contains a NUL byte; expected text without \\0", f->name);
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

ct_status ct_pt_parse_scalar(parser *P, const ProtobufCFieldDescriptor *f, scalar *v) {
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

