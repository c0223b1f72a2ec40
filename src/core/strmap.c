/* The string map of strmap.h: FNV-1a hashes, linear probing, power-of-two tables. */
#include "core/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

typedef struct slot {
  const char *key; /* NULL: empty */
  uint64_t hash;   /* the key's full hash: most probes that miss end on this compare */
  int value;
} slot;

struct ct_strmap {
  slot *slots;
  size_t cap; /* a power of two */
  size_t n;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  /* FNV's low bits mix poorly for short keys that differ in their last byte ("x1", "x2", ...);
   * the table index takes the low bits, so fold the high ones in. */
  return h ^ (h >> 29) ^ (h >> 47);
}

/* The slot holding key, or the empty slot where it would go. */
static slot *find(slot *slots, size_t cap, const char *key, uint64_t h) {
  size_t i = (size_t)h & (cap - 1);
  for (;;) {
    slot *s = &slots[i];
    if (!s->key || (s->hash == h && strcmp(s->key, key) == 0)) return s;
    i = (i + 1) & (cap - 1);
  }
}

ct_status ct_strmap_create(size_t hint, ct_strmap **out, ct_error *err) {
  *out = NULL;
  size_t cap = 16;
  while (cap < 2 * hint && cap < ((size_t)1 << 40)) cap *= 2;
  ct_strmap *m = calloc(1, sizeof *m);
  if (m) m->slots = calloc(cap, sizeof *m->slots);
  if (!m || !m->slots) {
    free(m);
    return ct_fail(err, CT_ENOMEM, "out of memory for a name table of %zu entries", cap);
  }
  m->cap = cap;
  *out = m;
  return CT_OK;
}

void ct_strmap_free(ct_strmap *m) {
  if (!m) return;
  free(m->slots);
  free(m);
}

int ct_strmap_get(const ct_strmap *m, const char *key) {
  if (!m || !key) return -1;
  const slot *s = find(m->slots, m->cap, key, hash_str(key));
  return s->key ? s->value : -1;
}

static ct_status grow(ct_strmap *m, ct_error *err) {
  size_t cap = m->cap * 2;
  slot *slots = calloc(cap, sizeof *slots);
  if (!slots) return ct_fail(err, CT_ENOMEM, "out of memory for a name table of %zu entries", cap);
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].key) *find(slots, cap, m->slots[i].key, m->slots[i].hash) = m->slots[i];
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  return CT_OK;
}

ct_status ct_strmap_put(ct_strmap *m, const char *key, int value, ct_error *err) {
  if (!m || !key || value < 0) return ct_fail(err, CT_EINVAL, "ct_strmap_put: missing map or key, or negative value");
  uint64_t h = hash_str(key);
  slot *s = find(m->slots, m->cap, key, h);
  if (!s->key) {
    /* at most half full, so that probe runs stay short and find() always meets an empty slot */
    if (2 * (m->n + 1) > m->cap) {
      CT_TRY(grow(m, err));
      s = find(m->slots, m->cap, key, h);
    }
    s->key = key;
    s->hash = h;
    m->n++;
  }
  s->value = value;
  return CT_OK;
}

size_t ct_strmap_size(const ct_strmap *m) { return m ? m->n : 0; }
