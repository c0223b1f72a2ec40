/* The audit's walk (audit.h): every set field of a parsed message and of the messages under it,
 * against fields.c's table. */
#include "proto/audit.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "proto/lexer.h"

bool ct_field_is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
  const char *base = (const char *)m;
  const void *p = base + f->offset;
  if (f->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)(base + f->quantifier_offset) > 0;
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(const void *const *)p != NULL;
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    const char *s = *(const char *const *)p;
    return s && s != (const char *)f->default_value;
  }
  if (f->label == PROTOBUF_C_LABEL_REQUIRED) return true;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
  if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset)) return false;
  if (f->type == PROTOBUF_C_TYPE_BYTES) return true;
  /* given: set unless it repeats the default (`snapshot_diff: false` asks for nothing) */
  static const char zero[16];
  const void *def = f->default_value ? f->default_value : zero;
  return memcmp(p, def, ct_proto_elem_size(f->type)) != 0;
}

void ct_audit_where(const ct_srcmap *map, const ProtobufCMessage *m, const char *field, const char *source,
                    char *buf, size_t n) {
  int line, col;
  if ((field && ct_srcmap_find_field(map, m, field, &line, &col)) || ct_srcmap_find(map, m, &line, &col))
    snprintf(buf, n, "%s:%d:%d", ct_srcmap_file(map), line, col);
  else
    snprintf(buf, n, "%s", source ? source : "<prototxt>");
}

static bool in_words(const char *list, const char *w) {
  const size_t n = strlen(w);
  for (const char *p = list; *p;) {
    while (*p == ' ') p++;
    const char *e = p;
    while (*e && *e != ' ') e++;
    if ((size_t)(e - p) == n && !strncmp(p, w, n)) return true;
    p = e;
  }
  return false;
}

/* A schema name as text spells it (base_ is "base"). */
static int text_len(const char *name) {
  size_t n = strlen(name);
  return (int)(n && name[n - 1] == '_' ? n - 1 : n);
}

static ct_status walk(const ProtobufCMessage *m, const ct_srcmap *map, const char *source, const char *context,
                      const char *path, const char *skip, int depth, ct_error *err) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *mname = ct_pt_msg_name(d);
  if (depth > MAX_DEPTH) return CT_OK; /* the parser refuses deeper files; a binary one ends the walk here */
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!ct_field_is_set(m, f) || (skip && in_words(skip, f->name))) continue;
    ct_field_use use;
    const char *why = NULL;
    char at[512], what[256];
    snprintf(what, sizeof what, "%s%s%.*s", path, path[0] ? "." : "", text_len(f->name), f->name);
    if (!ct_field_class(mname, f->name, &use, &why)) {
      ct_audit_where(map, m, f->name, source, at, sizeof at);
      return ct_fail(err, CT_EINTERNAL, "%s: %s%s%s (%s.%s) is not in cortado's field table (src/proto/fields.c)",
                     at, context ? context : "", context ? ": " : "", what, mname, f->name);
    }
    if (use == CT_FIELD_REFUSED || use == CT_FIELD_UNREACHED) {
      ct_audit_where(map, m, f->name, source, at, sizeof at);
      return ct_fail(err, CT_EUNSUPPORTED, "%s: %s%s%s is not supported: %s", at, context ? context : "",
                     context ? ": " : "", what, why);
    }
    if (use == CT_FIELD_UPGRADED) {
      ct_audit_where(map, m, f->name, source, at, sizeof at);
      return ct_fail(err, CT_EINTERNAL, "%s: %s%s%s is still set after the upgrade (%s)", at, context ? context : "",
                     context ? ": " : "", what, why);
    }
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const char *base = (const char *)m + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
      const ProtobufCMessage *const *v = *(const ProtobufCMessage *const *const *)base;
      for (size_t k = 0; k < n; k++) {
        char sub[300];
        snprintf(sub, sizeof sub, "%s[%zu]", what, k);
        CT_TRY(walk(v[k], map, source, context, sub, NULL, depth + 1, err));
      }
    } else {
      CT_TRY(walk(*(const ProtobufCMessage *const *)base, map, source, context, what, NULL, depth + 1, err));
    }
  }
  return CT_OK;
}

ct_status ct_audit_message(const ProtobufCMessage *m, const ct_srcmap *map, const char *source, const char *context,
                           const char *skip, ct_error *err) {
  return m ? walk(m, map, source, context, "", skip, 0, err) : CT_OK;
}
