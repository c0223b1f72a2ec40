/* A string-keyed hash map to int, for name lookups that a linear scan makes quadratic (a net's
 * layer and blob names: a 100k-layer net spent minutes in strcmp).
 *
 * Keys are not copied: each key must stay valid, unchanged, for as long as it is in the map
 * (the net's names live as long as the net). Values are ints >= 0; a lookup of a missing key
 * gives -1. Open addressing with linear probing; the table doubles past 1/2 full, so a lookup
 * costs O(1) on average whatever the number of keys. */
#ifndef CT_STRMAP_H
#define CT_STRMAP_H

#include <stddef.h>

#include "cortado.h"

typedef struct ct_strmap ct_strmap;

/* An empty map with room for about `hint` keys before it first grows (0: a small default).
 * On failure *out is NULL. The caller owns the map and frees it with ct_strmap_free. */
ct_status ct_strmap_create(size_t hint, ct_strmap **out, ct_error *err);
void ct_strmap_free(ct_strmap *m);
/* The value of `key`, or -1 when the map does not hold it. m may be NULL (holds nothing). */
int ct_strmap_get(const ct_strmap *m, const char *key);
/* Sets `key` to `value` (>= 0), replacing an earlier value of the same key. On failure (out of
 * memory) the map is unchanged. */
ct_status ct_strmap_put(ct_strmap *m, const char *key, int value, ct_error *err);
/* The number of keys held. */
size_t ct_strmap_size(const ct_strmap *m);

#endif
