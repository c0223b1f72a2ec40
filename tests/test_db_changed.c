/* Databases changed under a reader (issue 23): an LMDB or LevelDB cut short while it is walked, or
 * before it is opened, is an error naming it, never SIGBUS. LMDB is read with pread (lmdb_read.h);
 * LevelDB maps its table files, and db_guard.h turns the SIGBUS of a shrunken mapping into an
 * error on the reading thread and a clean exit on LevelDB's own thread. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "data/db.h"

static char dir[] = "/tmp/ct_dbchg_XXXXXX";

/* Under LeakSanitizer (the sanitizer build): a LevelDB call cut off by SIGBUS never frees what it
 * held in the abandoned stack frames (a block being read); db.c keeps the handle itself reachable.
 * Only this binary expects such leaks, so only it suppresses them. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libleveldb.so\n"; }

static const char *tmp(const char *name) {
  static char buf[8][600];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

/* n records of vlen bytes; noisy values do not compress (LevelDB then keeps them in the mapped
 * block), smooth ones do (LevelDB decompresses them onto its heap). */
static void make_db(const char *path, ct_db_backend b, int n, size_t vlen, bool noisy) {
  ct_error err = {0};
  ct_db_writer *w = NULL;
  CHECK(ct_db_writer_open(path, b, &w, &err) == CT_OK, "%s", err.msg);
  if (!w) return;
  unsigned char *v = malloc(vlen);
  unsigned state = 12345;
  for (int i = 0; i < n; i++) {
    for (size_t j = 0; j < vlen; j++) {
      state = state * 1103515245u + 12345u;
      v[j] = noisy ? (unsigned char)(state >> 16) : (unsigned char)(i + j / 64);
    }
    char key[32];
    snprintf(key, sizeof key, "%08d", i);
    if (ct_db_writer_put(w, key, strlen(key), v, vlen, &err)) {
      CHECK(0, "writing %s: %s", path, err.msg);
      ct_db_writer_abort(w);
      free(v);
      return;
    }
  }
  free(v);
  CHECK(ct_db_writer_commit(w, &err) == CT_OK, "%s", err.msg);
}

/* Cuts every file of `db` whose name ends in one of the suffixes to `size` bytes; returns how many. */
static int cut_files(const char *db, const char *suffix1, const char *suffix2, off_t size) {
  int cut = 0;
  DIR *d = opendir(db);
  for (struct dirent *e; d && (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len < 4 || (strcmp(e->d_name + len - 4, suffix1) && strcmp(e->d_name + len - 4, suffix2))) continue;
    char file[700];
    snprintf(file, sizeof file, "%s/%s", db, e->d_name);
    cut += truncate(file, size) == 0;
  }
  if (d) closedir(d);
  return cut;
}

/* Walks the rest of db, touching every value as a consumer would; returns the records read. */
static int walk(ct_db *db, ct_status *st, bool *valid, ct_error *err) {
  int n = 1;
  while (*st == CT_OK && *valid && n < 2000) {
    *st = ct_db_next(db, valid, err);
    if (*st == CT_OK && *valid) {
      const void *key, *val;
      size_t klen, vlen;
      ct_db_current(db, &key, &klen, &val, &vlen);
      volatile unsigned char sum = 0;
      for (size_t i = 0; i < vlen; i++) sum += ((const unsigned char *)val)[i];
      n++;
    }
  }
  return n;
}

/* Both backends, values on LMDB overflow pages (5000 bytes) and in its leaves (1000), noisy and
 * smooth values in LevelDB: the database is cut after the first record has been read (LMDB's data
 * file to 4 pages; LevelDB's table files, which the reader's open wrote from the writer's log, to
 * one page). The two LevelDB cuts fault on the same thread one after the other: the second is
 * caught only if the first jump left SIGBUS unblocked (a blocked synchronous SIGBUS kills). */
static void test_cut_while_read(void) {
  for (int k = 0; k < 4; k++) {
    ct_db_backend b = k < 2 ? CT_DB_LMDB : CT_DB_LEVELDB;
    char name[32];
    snprintf(name, sizeof name, "cut%d_%s", k, b == CT_DB_LMDB ? "lmdb" : "leveldb");
    make_db(tmp(name), b, 400, k == 1 ? 5000 : 1000 + 4000 * (k == 3), k != 2);
    ct_db *db = NULL;
    ct_error err = {0};
    CHECK(ct_db_open(tmp(name), b, &db, &err) == CT_OK, "%s", err.msg);
    if (!db) continue;
    bool valid = false;
    ct_status st = ct_db_first(db, &valid, &err);
    CHECK(st == CT_OK && valid, "%s: first record: %s", name, err.msg);
    int cut = b == CT_DB_LMDB ? cut_files(tmp(name), ".mdb", ".mdb", 4 * 4096)
                              : cut_files(tmp(name), ".ldb", ".sst", 4096);
    CHECK(cut > 0, "%s: a file to cut", name);
    int n = walk(db, &st, &valid, &err);
    CHECK(st != CT_OK && strstr(err.msg, tmp(name)) && strstr(err.msg, "changed while being read") && n < 400,
          "%s cut after the first record: status %d after %d records: %s", name, (int)st, n, err.msg);
    /* the handle stays refused (a LevelDB one is never touched again) and closes without harm */
    if (st != CT_OK) {
      ct_error again = {0};
      CHECK(ct_db_next(db, &valid, &again) != CT_OK && strstr(again.msg, tmp(name)), "%s: read after the error: %s",
            name, again.msg);
    }
    ct_db_close(db);
  }
}

/* A LevelDB whose table file was cut before the open: LevelDB's own checks say so, naming it. */
static void test_cut_before_open(void) {
  make_db(tmp("pre_leveldb"), CT_DB_LEVELDB, 400, 1000, true);
  ct_db *db = NULL;
  ct_error err = {0};
  /* an open and a close turn the writer's log into a table file, the one cut below */
  CHECK(ct_db_open(tmp("pre_leveldb"), CT_DB_LEVELDB, &db, &err) == CT_OK, "%s", err.msg);
  ct_db_close(db);
  db = NULL;
  CHECK(cut_files(tmp("pre_leveldb"), ".ldb", ".sst", 4096) > 0, "a table file to cut");
  ct_status st = ct_db_open(tmp("pre_leveldb"), CT_DB_LEVELDB, &db, &err);
  bool valid = false;
  int n = 0;
  if (!st) {
    st = ct_db_first(db, &valid, &err);
    n = walk(db, &st, &valid, &err);
  }
  CHECK(st != CT_OK && strstr(err.msg, tmp("pre_leveldb")) && n < 400, "cut before the open: status %d after %d: %s",
        (int)st, n, err.msg);
  ct_db_close(db);
}

/* The SIGBUS LevelDB's background thread would meet (a compaction reading a table file that
 * shrank) is on no guarded thread: the handler names the database and the file and exits with
 * status 1. A mapping made here stands in for LevelDB's, touched on a thread with no guard armed.
 * A SIGBUS from a file outside every database still kills as by default. */
static int sigbus_child(const char *mapped, const char *errfile) {
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int efd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (efd >= 0) dup2(efd, 2);
    ct_db *db = NULL;
    ct_error err = {0};
    if (ct_db_open(tmp("bg_leveldb"), CT_DB_LEVELDB, &db, &err)) _exit(10);
    int fd = open(mapped, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, 65536)) _exit(11);
    volatile unsigned char *p = mmap(NULL, 65536, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || ftruncate(fd, 0)) _exit(12);
    (void)p[8192];
    _exit(13);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

static void test_sigbus_unguarded(void) {
  make_db(tmp("bg_leveldb"), CT_DB_LEVELDB, 10, 100, true);
  char mapped[700], text[2048] = {0};
  snprintf(mapped, sizeof mapped, "%s/000999.ldb", tmp("bg_leveldb"));
  int status = sigbus_child(mapped, tmp("bg.err"));
  FILE *f = fopen(tmp("bg.err"), "r");
  if (f) {
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(text, "000999.ldb") &&
            strstr(text, "changed while being read"),
        "SIGBUS on an unguarded thread in a LevelDB's file: status %#x, stderr: %s", status, text);
  status = sigbus_child(tmp("elsewhere.bin"), tmp("bg2.err"));
  memset(text, 0, sizeof text);
  if ((f = fopen(tmp("bg2.err"), "r"))) {
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
  }
  /* the handler that was there before: the default (death by SIGBUS), or AddressSanitizer's report */
  CHECK(!strstr(text, "changed while being read") &&
            ((WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) || strstr(text, "AddressSanitizer")),
        "SIGBUS from another file: status %#x, stderr: %.300s", status, text);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_cut_while_read();
  test_cut_before_open();
  test_sigbus_unguarded();
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return ct_check_report();
}
