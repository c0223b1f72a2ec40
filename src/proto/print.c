/* The protobuf text format's printer: Caffe's look (two-space indent, `layer {` blocks, enums by
 * name, only the fields that are set), floats in the shortest form that reads back the same. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "proto/prototxt.h"

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
      size_t n = *(const size_t *)q, sz = ct_proto_elem_size(f->type);
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
      set = !is_zero(p, ct_proto_elem_size(f->type));
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
