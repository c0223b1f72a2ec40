#include "data/db.h"

#include <dirent.h>
#include <errno.h>
#include <leveldb/c.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/status.h"
#include "data/db_guard.h"
#include "data/lmdb_read.h"

const char *ct_db_backend_name(ct_db_backend b) { return b == CT_DB_LMDB ? "LMDB" : "LevelDB"; }

bool ct_db_backend_parse(const char *s, ct_db_backend *out) {
  if (!strcasecmp(s, "lmdb")) return *out = CT_DB_LMDB, true;
  if (!strcasecmp(s, "leveldb")) return *out = CT_DB_LEVELDB, true;
  return false;
}

struct ct_db {
  ct_db_backend backend;
  char *path;
  ct_lmdb_read *lr; /* LMDB: cortado's checked reader */
  int64_t count;
  /* LevelDB */
  leveldb_t *ldb;
  leveldb_options_t *lopt;
  leveldb_readoptions_t *ropt;
  leveldb_iterator_t *it;
  int guard_slot;   /* db_guard's record of the directory, -1 if none */
  bool broken;      /* a guarded read was cut off by SIGBUS: the handle is unusable (db_guard.h) */
  uint8_t *kbuf, *vbuf; /* the current record, copied out of LevelDB's mapping under the guard */
  size_t kcap, vcap, klen, vlen;
  struct ct_db *next_abandoned;
};

/* Handles whose LevelDB call a SIGBUS cut off: LevelDB's state is unknown, so they are never
 * closed, only kept here, reachable (the leak is deliberate, and leak checkers see it so). */
static pthread_mutex_t abandoned_mu = PTHREAD_MUTEX_INITIALIZER;
static ct_db *abandoned;

const char *ct_db_path(const ct_db *db) { return db->path; }
int64_t ct_db_count(const ct_db *db) { return db->count; }

void ct_db_close(ct_db *db) {
  if (!db) return;
  if (db->broken) {
    pthread_mutex_lock(&abandoned_mu);
    db->next_abandoned = abandoned;
    abandoned = db;
    pthread_mutex_unlock(&abandoned_mu);
    return;
  }
  ct_lmdb_read_close(db->lr);
  if (db->it) leveldb_iter_destroy(db->it);
  if (db->ldb) leveldb_close(db->ldb);
  if (db->lopt) leveldb_options_destroy(db->lopt);
  if (db->ropt) leveldb_readoptions_destroy(db->ropt);
  ct_db_guard_unregister(db->guard_slot);
  free(db->kbuf);
  free(db->vbuf);
  free(db->path);
  free(db);
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists_in(const char *dir, const char *name) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

static ct_status open_lmdb(ct_db *db, ct_error *err) {
  const char *path = db->path;
  if (is_dir(path) && exists_in(path, "CURRENT"))
    return ct_fail(err, CT_EINVAL, "%s holds a LevelDB database (a CURRENT file), not an LMDB; set backend: LEVELDB",
                   path);
  CT_TRY(ct_lmdb_read_open(path, &db->lr, err));
  db->count = ct_lmdb_read_count(db->lr);
  return CT_OK;
}

/* A guarded LevelDB read was cut off by SIGBUS: a table file shrank under its mapping. */
static ct_status changed(ct_db *db, ct_error *err) {
  ct_db_guard_jumped();
  db->broken = true;
  return ct_fail(err, CT_EIO,
                 "LevelDB %s changed while being read: one of its table files was cut short under the reader "
                 "(SIGBUS reading its mapping)",
                 db->path);
}

static ct_status open_leveldb(ct_db *db, ct_error *err) {
  const char *path = db->path;
  if (!is_dir(path))
    return ct_fail(err, CT_EIO, "cannot open LevelDB %s: %s", path,
                   access(path, F_OK) ? strerror(errno) : "not a directory");
  if (exists_in(path, "data.mdb"))
    return ct_fail(err, CT_EINVAL,
                   "%s holds an LMDB database (data.mdb), not a LevelDB; set backend: LMDB (Caffe's default is "
                   "LEVELDB)",
                   path);
  db->lopt = leveldb_options_create();
  db->ropt = leveldb_readoptions_create();
  leveldb_options_set_create_if_missing(db->lopt, 0);
  leveldb_options_set_paranoid_checks(db->lopt, 1);
  leveldb_options_set_max_open_files(db->lopt, 100);
  leveldb_readoptions_set_verify_checksums(db->ropt, 1);
  leveldb_readoptions_set_fill_cache(db->ropt, 0);
  db->guard_slot = ct_db_guard_register(path);
  char *e = NULL;
  sigjmp_buf jb;
  if (sigsetjmp(jb, 0)) return changed(db, err);
  ct_db_guard_arm(&jb); /* opening replays the log into a table file and reads it back */
  db->ldb = leveldb_open(db->lopt, path, &e);
  if (!e) db->it = leveldb_create_iterator(db->ldb, db->ropt);
  ct_db_guard_disarm();
  if (e) {
    ct_status st = ct_fail(err, CT_EIO, "cannot open LevelDB %s: %s", path, e);
    leveldb_free(e);
    return st;
  }
  db->count = -1;
  return CT_OK;
}

ct_status ct_db_open(const char *path, ct_db_backend backend, ct_db **out, ct_error *err) {
  *out = NULL;
  ct_db *db = calloc(1, sizeof *db);
  if (!db || !(db->path = strdup(path))) {
    free(db);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  db->backend = backend;
  db->guard_slot = -1;
  struct stat sb;
  if (stat(path, &sb) != 0 && errno == ENOENT) { /* the commonest first-minutes mistake: say how to make it */
    ct_status st = ct_fail(err, CT_EIO,
                           "cannot open %s %s: %s; make it with 'cortado convert' (cortado convert --help; the "
                           "examples' databases: run 'make demo' once)",
                           ct_db_backend_name(backend), path, strerror(errno));
    ct_db_close(db);
    return st;
  }
  ct_status st = backend == CT_DB_LMDB ? open_lmdb(db, err) : open_leveldb(db, err);
  if (st) {
    ct_db_close(db);
    return st;
  }
  *out = db;
  return CT_OK;
}

static bool grow(uint8_t **buf, size_t *cap, size_t n) {
  if (n <= *cap) return true;
  uint8_t *b = realloc(*buf, n);
  if (!b) return false;
  *buf = b;
  *cap = n;
  return true;
}

/* Moves the LevelDB iterator (to the first record or the next) and copies the record out, all
 * under the SIGBUS guard: keys and values point into LevelDB's mapping of a table file. */
static ct_status leveldb_move(ct_db *db, bool first, bool *valid, ct_error *err) {
  *valid = false;
  if (db->broken)
    return ct_fail(err, CT_EIO, "LevelDB %s changed while being read; reopen it", db->path);
  bool fit = true;
  sigjmp_buf jb;
  if (sigsetjmp(jb, 0)) return changed(db, err);
  ct_db_guard_arm(&jb);
  if (first)
    leveldb_iter_seek_to_first(db->it);
  else
    leveldb_iter_next(db->it);
  bool v = leveldb_iter_valid(db->it);
  if (v) {
    size_t klen, vlen;
    const char *k = leveldb_iter_key(db->it, &klen), *val = leveldb_iter_value(db->it, &vlen);
    fit = grow(&db->kbuf, &db->kcap, klen ? klen : 1) && grow(&db->vbuf, &db->vcap, vlen ? vlen : 1);
    if (fit) {
      memcpy(db->kbuf, k, klen);
      memcpy(db->vbuf, val, vlen);
      db->klen = klen;
      db->vlen = vlen;
    }
  }
  ct_db_guard_disarm();
  if (!fit) return ct_fail(err, CT_ENOMEM, "out of memory reading a record of LevelDB %s", db->path);
  *valid = v;
  if (v) return CT_OK;
  char *e = NULL;
  leveldb_iter_get_error(db->it, &e);
  if (e) {
    ct_status st = ct_fail(err, CT_EPARSE, "LevelDB %s is corrupt: %s", db->path, e);
    leveldb_free(e);
    return st;
  }
  return CT_OK;
}

ct_status ct_db_first(ct_db *db, bool *valid, ct_error *err) {
  if (db->backend == CT_DB_LMDB) return ct_lmdb_read_first(db->lr, valid, err);
  return leveldb_move(db, true, valid, err);
}

ct_status ct_db_next(ct_db *db, bool *valid, ct_error *err) {
  if (db->backend == CT_DB_LMDB) return ct_lmdb_read_next(db->lr, valid, err);
  return leveldb_move(db, false, valid, err);
}

void ct_db_current(const ct_db *db, const void **key, size_t *klen, const void **val, size_t *vlen) {
  if (db->backend == CT_DB_LMDB) {
    ct_lmdb_read_current(db->lr, key, klen, val, vlen);
  } else {
    *key = db->kbuf;
    *klen = db->klen;
    *val = db->vbuf;
    *vlen = db->vlen;
  }
}

/* ------------------------------------------------------------------ writing */

enum { TXN_RECORDS = 1000 };

typedef struct pending {
  void *key, *val;
  size_t klen, vlen;
} pending;

struct ct_db_writer {
  ct_db_backend backend;
  char *path, *tmp;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  size_t mapsize;
  pending *pend; /* this transaction's records, replayed when the map must grow */
  size_t npend;
  leveldb_t *ldb;
  leveldb_options_t *lopt;
  leveldb_writeoptions_t *wopt;
  leveldb_writebatch_t *batch;
};

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[4400];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

static void clear_pending(ct_db_writer *w) {
  for (size_t i = 0; i < w->npend; i++) {
    free(w->pend[i].key);
    free(w->pend[i].val);
  }
  w->npend = 0;
}

static void writer_free(ct_db_writer *w, bool remove_tmp) {
  if (w->txn) mdb_txn_abort(w->txn);
  if (w->env) mdb_env_close(w->env);
  if (w->batch) leveldb_writebatch_destroy(w->batch);
  if (w->ldb) leveldb_close(w->ldb);
  if (w->lopt) leveldb_options_destroy(w->lopt);
  if (w->wopt) leveldb_writeoptions_destroy(w->wopt);
  if (remove_tmp && w->tmp) remove_tree(w->tmp);
  clear_pending(w);
  free(w->pend);
  free(w->path);
  free(w->tmp);
  free(w);
}

void ct_db_writer_abort(ct_db_writer *w) {
  if (w) writer_free(w, true);
}

ct_status ct_db_writer_open(const char *path, ct_db_backend backend, ct_db_writer **out, ct_error *err) {
  *out = NULL;
  struct stat sb; /* lstat: a dangling symlink is there too, and the rename would replace it */
  if (lstat(path, &sb) == 0)
    return ct_fail(err, CT_EIO, "%s already exists; remove it or choose another output path", path);
  /* the directories above it, as a snapshot prefix's are made: the README's `cortado convert
   * --db=demo-out/...` works in a fresh directory */
  char up[4096];
  snprintf(up, sizeof up, "%s", path);
  for (char *p = up + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(up, 0777) != 0 && errno != EEXIST)
      return ct_fail(err, CT_EIO, "cannot create the directory %s for %s: %s", up, path, strerror(errno));
    *p = '/';
  }
  /* what a killed convert into the same path left behind (issue 23) */
  ct_file_remove_stale_temps(path);
  ct_db_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path)) || !(w->pend = calloc(TXN_RECORDS, sizeof *w->pend))) {
    if (w) writer_free(w, false);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  w->backend = backend;
  /* a fresh directory with the usual mode (mkdir applies the umask, unlike mkdtemp's 0700),
   * named as ct_file_temp_name names temporaries: within NAME_MAX, with this process's pid */
  int made = -1;
  errno = ENOMEM;
  for (unsigned k = 0; k < 100 && made != 0; k++) {
    free(w->tmp);
    if (!(w->tmp = ct_file_temp_name(path, k * 40503u))) break;
    made = mkdir(w->tmp, 0777);
    if (made != 0 && errno != EEXIST) break;
  }
  if (made != 0) {
    ct_status st = ct_fail(err, CT_EIO, "cannot create %s: %s", w->tmp ? w->tmp : path, strerror(errno));
    free(w->tmp);
    w->tmp = NULL;
    writer_free(w, false);
    return st;
  }
  int rc = 0;
  if (backend == CT_DB_LMDB) {
    w->mapsize = (size_t)1 << 26;
    if (!(rc = mdb_env_create(&w->env)) && !(rc = mdb_env_set_mapsize(w->env, w->mapsize)) &&
        !(rc = mdb_env_open(w->env, w->tmp, 0, 0664)) && !(rc = mdb_txn_begin(w->env, NULL, 0, &w->txn)))
      rc = mdb_dbi_open(w->txn, NULL, 0, &w->dbi);
    if (rc) {
      ct_status st = ct_fail(err, CT_EIO, "cannot create LMDB in %s: %s", w->tmp, mdb_strerror(rc));
      writer_free(w, true);
      return st;
    }
  } else {
    w->lopt = leveldb_options_create();
    w->wopt = leveldb_writeoptions_create();
    leveldb_options_set_create_if_missing(w->lopt, 1);
    leveldb_options_set_error_if_exists(w->lopt, 1);
    leveldb_options_set_write_buffer_size(w->lopt, 64 << 20);
    char *e = NULL;
    w->ldb = leveldb_open(w->lopt, w->tmp, &e);
    if (e) {
      ct_status st = ct_fail(err, CT_EIO, "cannot create LevelDB in %s: %s", w->tmp, e);
      leveldb_free(e);
      writer_free(w, true);
      return st;
    }
    w->batch = leveldb_writebatch_create();
  }
  *out = w;
  return CT_OK;
}

/* LMDB's error codes are errno values where the system failed: those get files.h's account
 * (a full disk reads as EIO from LMDB's short write), the rest mdb_strerror's. */
static ct_status lmdb_write_error(const ct_db_writer *w, const char *doing, int rc, ct_error *err) {
  if (rc <= 0) return ct_fail(err, CT_EIO, "%s LMDB %s: %s", doing, w->path, mdb_strerror(rc));
  char file[4200], why[256];
  snprintf(file, sizeof file, "%s/data.mdb", w->tmp);
  return ct_fail(err, CT_EIO, "%s LMDB %s: %s", doing, w->path, ct_file_write_error(why, sizeof why, rc, file));
}

/* Commits the LMDB transaction; when the map is full, grows it and replays the transaction. */
static ct_status lmdb_flush(ct_db_writer *w, bool reopen, ct_error *err) {
  for (;;) {
    int rc = 0;
    for (size_t i = 0; i < w->npend && !rc; i++) {
      MDB_val k = {w->pend[i].klen, w->pend[i].key}, v = {w->pend[i].vlen, w->pend[i].val};
      rc = mdb_put(w->txn, w->dbi, &k, &v, 0);
    }
    if (!rc) {
      rc = mdb_txn_commit(w->txn);
      w->txn = NULL;
    }
    if (rc == MDB_MAP_FULL) {
      if (w->txn) mdb_txn_abort(w->txn);
      w->txn = NULL;
      w->mapsize *= 2;
      if ((rc = mdb_env_set_mapsize(w->env, w->mapsize)) || (rc = mdb_txn_begin(w->env, NULL, 0, &w->txn)))
        return lmdb_write_error(w, "growing", rc, err);
      continue;
    }
    if (rc) return lmdb_write_error(w, "writing", rc, err);
    clear_pending(w);
    if (reopen && (rc = mdb_txn_begin(w->env, NULL, 0, &w->txn)))
      return ct_fail(err, CT_EIO, "writing LMDB %s: %s", w->tmp, mdb_strerror(rc));
    return CT_OK;
  }
}

ct_status ct_db_writer_put(ct_db_writer *w, const void *key, size_t klen, const void *val, size_t vlen,
                           ct_error *err) {
  if (w->backend == CT_DB_LMDB) {
    if (klen == 0 || klen > (size_t)mdb_env_get_maxkeysize(w->env))
      return ct_fail(err, CT_EINVAL, "key \"%.*s\" is %zu bytes; LMDB keys hold 1 to %d", (int)(klen > 200 ? 200 : klen),
                     (const char *)key, klen, mdb_env_get_maxkeysize(w->env));
    pending *p = &w->pend[w->npend];
    p->key = malloc(klen);
    p->val = malloc(vlen ? vlen : 1);
    if (!p->key || !p->val) {
      free(p->key);
      free(p->val);
      return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    memcpy(p->key, key, klen);
    memcpy(p->val, val, vlen);
    p->klen = klen;
    p->vlen = vlen;
    w->npend++;
    if (w->npend == TXN_RECORDS) return lmdb_flush(w, true, err);
    return CT_OK;
  }
  leveldb_writebatch_put(w->batch, key, klen, val, vlen);
  if (++w->npend == TXN_RECORDS) {
    char *e = NULL;
    leveldb_write(w->ldb, w->wopt, w->batch, &e);
    leveldb_writebatch_clear(w->batch);
    w->npend = 0;
    if (e) {
      ct_status st = ct_fail(err, CT_EIO, "writing LevelDB %s: %s", w->path, e);
      leveldb_free(e);
      return st;
    }
  }
  return CT_OK;
}

ct_status ct_db_writer_commit(ct_db_writer *w, ct_error *err) {
  ct_status st = CT_OK;
  if (w->backend == CT_DB_LMDB) {
    st = lmdb_flush(w, false, err);
    if (!st) {
      int rc = mdb_env_sync(w->env, 1);
      if (rc) st = lmdb_write_error(w, "syncing", rc, err);
    }
    mdb_env_close(w->env);
    w->env = NULL;
  } else {
    char *e = NULL;
    leveldb_writeoptions_set_sync(w->wopt, 1);
    leveldb_write(w->ldb, w->wopt, w->batch, &e);
    w->npend = 0;
    if (e) {
      st = ct_fail(err, CT_EIO, "writing LevelDB %s: %s", w->path, e);
      leveldb_free(e);
    }
    leveldb_close(w->ldb);
    w->ldb = NULL;
  }
  if (!st && rename(w->tmp, w->path) != 0)
    st = ct_fail(err, CT_EIO, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
  writer_free(w, st != CT_OK);
  return st;
}
