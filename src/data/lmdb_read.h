/* A read-only walker over an LMDB data file (format version 1, as liblmdb 0.9 writes it),
 * written for cortado so that a damaged file can never crash the reader: liblmdb trusts the
 * page structure it maps, so a flipped byte in a page can send it outside the map. Here pages
 * are read with pread (a file truncated or rewritten while being read gives a short read or a
 * bad page, an error naming the database, where a mapping would raise SIGBUS) and every page
 * number, node offset, key and value length is checked against the page and the file before it
 * is used; anything out of place is an error naming the file and page.
 *
 * Only what Caffe's databases use: the main database, plain keys and values (values may span
 * overflow pages); duplicate-sorted or named sub-databases are refused. Records come in key
 * order (the B-tree's leaf order). liblmdb still writes databases (db.c). */
#ifndef CT_LMDB_READ_H
#define CT_LMDB_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cortado.h"

typedef struct ct_lmdb_read ct_lmdb_read;

/* path: an LMDB directory (holding data.mdb) or the data file itself. */
ct_status ct_lmdb_read_open(const char *path, ct_lmdb_read **out, ct_error *err);
void ct_lmdb_read_close(ct_lmdb_read *r);
/* The record count the meta page states. */
int64_t ct_lmdb_read_count(const ct_lmdb_read *r);
ct_status ct_lmdb_read_first(ct_lmdb_read *r, bool *valid, ct_error *err);
ct_status ct_lmdb_read_next(ct_lmdb_read *r, bool *valid, ct_error *err);
void ct_lmdb_read_current(const ct_lmdb_read *r, const void **key, size_t *klen, const void **val, size_t *vlen);

#endif
