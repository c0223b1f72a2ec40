/* The job digest (issue 24). See digest.h. */
#include "dist/digest.h"

#include <stdio.h>
#include <string.h>

#ifndef CORTADO_VERSION
#define CORTADO_VERSION "0.1.0"
#endif

/* FNV-1a, 64 bits: the digest only has to tell honest differences apart, not resist forgery */
static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}
static uint64_t mix_u64(uint64_t h, uint64_t v) { return mix(h, &v, sizeof v); }
static uint64_t mix_str(uint64_t h, const char *s) {
  if (!s) return mix_u64(h, 0x5a5a5a5a5a5a5a5aull); /* absent differs from "" */
  return mix(mix_u64(h, strlen(s)), s, strlen(s));
}
#define FNV_BASIS 14695981039346656037ull

static size_t scalar_size(ProtobufCType t) {
  switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return 4; /* 32-bit integers, float, enum */
  }
}

static uint64_t hash_msg(uint64_t h, const ProtobufCMessage *m, int depth);

/* one value of field f stored at p */
static uint64_t hash_value(uint64_t h, const ProtobufCFieldDescriptor *f, const void *p, int depth) {
  switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: return mix_str(h, *(char *const *)p);
    case PROTOBUF_C_TYPE_BYTES: {
      const ProtobufCBinaryData *b = p;
      return mix(mix_u64(h, b->len), b->data, b->data ? b->len : 0);
    }
    case PROTOBUF_C_TYPE_MESSAGE: return hash_msg(h, *(ProtobufCMessage *const *)p, depth + 1);
    default: return mix(h, p, scalar_size(f->type));
  }
}

static uint64_t hash_field(uint64_t h, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m, int depth) {
  const char *base = (const char *)m;
  const void *p = base + f->offset;
  h = mix_u64(h, f->id);
  if (f->label == PROTOBUF_C_LABEL_REPEATED) {
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    const char *arr = *(char *const *)p;
    h = mix_u64(h, n);
    for (size_t i = 0; i < n; i++) h = hash_value(h, f, arr + i * scalar_size(f->type), depth);
    return h;
  }
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
    if (which != f->id) return mix_u64(h, 0);
  } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE) {
    protobuf_c_boolean has = *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    h = mix_u64(h, has ? 1 : 0);
    if (!has) return h;
  }
  return hash_value(h, f, p, depth);
}

static uint64_t hash_msg(uint64_t h, const ProtobufCMessage *m, int depth) {
  if (!m) return mix_u64(h, 0xa5a5a5a5a5a5a5a5ull);
  if (depth > 64) return h; /* no Caffe message nests this deep */
  const ProtobufCMessageDescriptor *d = m->descriptor;
  h = mix_str(h, d->name);
  for (unsigned i = 0; i < d->n_fields; i++) h = hash_field(h, &d->fields[i], m, depth);
  return h;
}

uint64_t ct_digest_message(const ProtobufCMessage *m) {
  uint64_t h = hash_msg(FNV_BASIS, m, 0);
  return h ? h : 1; /* 0 means "not read" */
}

/* The schema, so that two builds whose .proto differ do not compare field numbers as equals. */
static uint64_t hash_schema(uint64_t h, const ProtobufCMessageDescriptor *d, int depth) {
  if (depth > 8) return h;
  h = mix_str(h, d->name);
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    h = mix_str(mix_u64(mix_u64(mix_u64(h, f->id), f->type), f->label), f->name);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) h = hash_schema(h, f->descriptor, depth + 1);
  }
  return h;
}

void ct_digest_init(ct_digest *d) {
  memset(d, 0, sizeof *d);
  uint64_t s = hash_schema(FNV_BASIS, &caffe__solver_parameter__descriptor, 0);
  snprintf(d->version, sizeof d->version, "%s schema %08x", CORTADO_VERSION, (unsigned)(s ^ (s >> 32)));
}

/* The flattened field list: each solver field, except that a singular message field stands for
 * its own fields ("cluster.sync_freq") plus one entry for its presence. The same walk names
 * and hashes them, so index i means the same field on every process of one version. */
typedef struct walk {
  const Caffe__SolverParameter *sp; /* NULL: only naming */
  int target;                       /* naming: the index wanted */
  char *name;
  size_t n;
  int count;
  uint64_t *out;
} walk;

static void visit(walk *w, const char *parent, const char *field, uint64_t h) {
  if (w->out && w->count < CT_DIGEST_FIELDS)
    w->out[w->count] = h;
  else if (w->out) /* more fields than slots: the last slot stands for the rest */
    w->out[CT_DIGEST_FIELDS - 1] = mix_u64(w->out[CT_DIGEST_FIELDS - 1], h);
  if (w->name && w->count == w->target) {
    if (parent)
      snprintf(w->name, w->n, "%s.%s", parent, field);
    else
      snprintf(w->name, w->n, "%s", field);
  }
  w->count++;
}

static void walk_solver(walk *w) {
  const ProtobufCMessageDescriptor *d = &caffe__solver_parameter__descriptor;
  const ProtobufCMessage *m = w->sp ? &w->sp->base : NULL;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    bool nested = f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED &&
                  !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
    if (!nested) {
      visit(w, NULL, f->name, m ? hash_field(FNV_BASIS, f, m, 0) : 0);
      continue;
    }
    const ProtobufCMessage *sub = m ? *(ProtobufCMessage *const *)((const char *)m + f->offset) : NULL;
    visit(w, NULL, f->name, mix_u64(FNV_BASIS, sub != NULL)); /* "cluster { }" alone means something */
    const ProtobufCMessageDescriptor *sd = f->descriptor;
    for (unsigned k = 0; k < sd->n_fields; k++)
      visit(w, f->name, sd->fields[k].name, sub ? hash_field(FNV_BASIS, &sd->fields[k], sub, 1) : 0);
  }
}

void ct_digest_solver(ct_digest *d, const Caffe__SolverParameter *sp) {
  walk w = {.sp = sp, .target = -1, .out = d->field};
  walk_solver(&w);
  d->nfields = w.count < CT_DIGEST_FIELDS ? w.count : CT_DIGEST_FIELDS;
}

const char *ct_digest_field_name(int i, char *buf, size_t n) {
  buf[0] = 0;
  walk w = {.target = i, .name = buf, .n = n};
  walk_solver(&w);
  return buf;
}

void ct_digest_net(ct_digest *d, int which, const Caffe__NetParameter *np) {
  if (which < 0 || which >= CT_DIGEST_NETS) return;
  d->net[which] = ct_digest_message(&np->base);
  if (d->nnets < which + 1) d->nnets = which + 1;
}

static void append(char *buf, size_t n, size_t *len, const char *fmt, const char *s) {
  if (*len >= n) return;
  int k = snprintf(buf + *len, n - *len, fmt, s);
  if (k > 0) *len += (size_t)k;
}

bool ct_digest_compare(const ct_digest *a, const ct_digest *b, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  if (strncmp(a->version, b->version, sizeof a->version) != 0) {
    snprintf(buf, n, "cortado %.*s against %.*s", (int)sizeof b->version, b->version, (int)sizeof a->version,
             a->version);
    return true;
  }
  int shown = 0, more = 0;
  if (a->nfields && b->nfields)
    for (int i = 0; i < a->nfields && i < b->nfields; i++) {
      if (a->field[i] == b->field[i]) continue;
      if (shown == 4) {
        more++;
        continue;
      }
      char name[96];
      append(buf, n, &len, shown ? ", %s" : "the solver's %s", ct_digest_field_name(i, name, sizeof name));
      shown++;
    }
  if (more) {
    char m[32];
    snprintf(m, sizeof m, "%d more", more);
    append(buf, n, &len, " and %s", m);
  }
  for (int k = 0; k < a->nnets && k < b->nnets; k++) {
    if (!a->net[k] || !b->net[k] || a->net[k] == b->net[k]) continue;
    char what[32];
    if (k == 0)
      snprintf(what, sizeof what, "the train net");
    else
      snprintf(what, sizeof what, "test net #%d", k - 1);
    append(buf, n, &len, len ? "; %s" : "%s", what);
  }
  return len > 0;
}
