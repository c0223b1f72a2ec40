/* Key-value databases holding Datum records, as Caffe's tools make them: LMDB (a directory with
 * data.mdb, or a single file) and LevelDB (a directory). Records come in key order.
 *
 * Reading is sequential through one cursor: for LMDB cortado's own bounds-checked walker
 * (lmdb_read.h; liblmdb would follow a damaged page anywhere), for LevelDB an iterator with
 * checksums verified. A damaged database gives an error naming it instead of a crash.
 *
 * Writing goes into a fresh temporary directory beside the target, renamed into place by
 * ct_db_writer_commit; ct_db_writer_abort (or a crash) leaves no half-written database at the
 * target. */
#ifndef CT_DB_H
#define CT_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cortado.h"

/* Caffe's DataParameter.DB numbering. */
typedef enum ct_db_backend { CT_DB_LEVELDB = 0, CT_DB_LMDB = 1 } ct_db_backend;

const char *ct_db_backend_name(ct_db_backend b);
/* "lmdb" / "leveldb" (any case) -> backend; false if neither. */
bool ct_db_backend_parse(const char *s, ct_db_backend *out);

typedef struct ct_db ct_db;

/* Opens for reading, positioned before the first record. */
ct_status ct_db_open(const char *path, ct_db_backend backend, ct_db **out, ct_error *err);
void ct_db_close(ct_db *db);
/* Records, or -1 when the backend does not know without a scan (LevelDB). */
int64_t ct_db_count(const ct_db *db);
/* Moves to the first record / the next one; *valid is false past the last record (or in an
 * empty database). */
ct_status ct_db_first(ct_db *db, bool *valid, ct_error *err);
ct_status ct_db_next(ct_db *db, bool *valid, ct_error *err);
/* The current record; pointers valid until the next move. */
void ct_db_current(const ct_db *db, const void **key, size_t *klen, const void **val, size_t *vlen);
const char *ct_db_path(const ct_db *db);

typedef struct ct_db_writer ct_db_writer;

/* Fails if `path` exists. */
ct_status ct_db_writer_open(const char *path, ct_db_backend backend, ct_db_writer **out, ct_error *err);
ct_status ct_db_writer_put(ct_db_writer *w, const void *key, size_t klen, const void *val, size_t vlen,
                           ct_error *err);
/* Flushes, closes and renames into place; frees w whatever the outcome. */
ct_status ct_db_writer_commit(ct_db_writer *w, ct_error *err);
/* Removes the temporary database and frees w. NULL is a no-op. */
void ct_db_writer_abort(ct_db_writer *w);

#endif
