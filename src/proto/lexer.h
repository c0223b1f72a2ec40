/* The prototxt parser's internals, shared by its two halves: lexer.c (tokens and scalar values)
 * and prototxt.c (fields, messages, source maps and the API). Nothing else includes it. */
#ifndef CT_PROTO_LEXER_H
#define CT_PROTO_LEXER_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/prototxt.h"

#define MAX_DEPTH 100                        /* nested messages */
#define MAX_PROTOTXT_BYTES ((size_t)1 << 30) /* a prototxt file larger than this is refused */
#define FIELD_LIST_CHARS 400                 /* how much of "expected one of ..." to show */

enum tok_kind { TK_EOF, TK_IDENT, TK_NUMBER, TK_STRING, TK_PUNCT };

typedef struct token {
  enum tok_kind kind;
  const char *p; /* the raw text in the input (strings with their quotes) */
  size_t n;
  int line, col; /* 1-based */
} token;

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

/* "caffe.PoolingParameter" -> "PoolingParameter"; a field's type as the schema spells it. */
const char *ct_pt_msg_name(const ProtobufCMessageDescriptor *d);
const char *ct_pt_type_name(const ProtobufCFieldDescriptor *f);

/* "<file>:<line>:<col>: <what>" as a parse error; out of memory while parsing. */
ct_status ct_pt_error(parser *P, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
ct_status ct_pt_oom(parser *P);
/* How a token reads in a message ("identifier \"foo\"", "end of input"). */
const char *ct_pt_describe(const token *t, char *buf, size_t cap);
/* Reads the next token into P->tok. */
ct_status ct_pt_lex(parser *P);
int ct_pt_is_punct(const token *t, char c);
/* Parses the scalar value of field f at P->tok (numbers, bools, enums by name, strings). */
ct_status ct_pt_parse_scalar(parser *P, const ProtobufCFieldDescriptor *f, scalar *v);

#endif
