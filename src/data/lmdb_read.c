#include "data/lmdb_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/status.h"

/* LMDB's on-disk layout (liblmdb 0.9, 64-bit pgno_t and size_t, little-endian):
 *   page header (16 bytes): pgno u64 | pad u16 | flags u16 | lower u16 | upper u16
 *     (overflow pages: pages u32 in place of lower/upper); node offsets (u16) follow.
 *   node (8 bytes + data): lo u16 | hi u16 | flags u16 | ksize u16 | key | value
 *     leaf: value size = lo | hi << 16; branch: child = lo | hi << 16 | flags << 32.
 *   meta (pages 0 and 1, after the header): magic u32 | version u32 | address u64 |
 *     mapsize u64 | db[2] (48 bytes each: pad u32 (psize in db[0]) | flags u16 | depth u16 |
 *     branch, leaf, overflow pages u64 | entries u64 | root u64) | last_pg u64 | txnid u64 */
enum {
  PAGEHDRSZ = 16,
  NODESZ = 8,
  P_BRANCH = 0x01,
  P_LEAF = 0x02,
  P_OVERFLOW = 0x04,
  P_META = 0x08,
  P_LEAF2 = 0x20,
  F_BIGDATA = 0x01,
  F_SUBDATA = 0x02,
  F_DUPDATA = 0x04,
  MDB_DUPSORT_FLAG = 0x04,
  MAX_DEPTH = 32
};
#define LMDB_MAGIC 0xBEEFC0DEu
#define P_INVALID (~(uint64_t)0)

/* Pages are read with pread into buffers, one per B-tree level, rather than mapped: a file
 * truncated while mapped raises SIGBUS on the next touch of a lost page (issue 23), where a short
 * read is an error naming the database. */
struct ct_lmdb_read {
  char *path;
  int fd;
  uint8_t *page[MAX_DEPTH]; /* psize bytes each: the page of that level of the cursor's path */
  uint64_t page_no[MAX_DEPTH];
  uint8_t *ov; /* an overflow value, header included */
  size_t ov_cap;
  size_t size, psize;
  uint64_t npages; /* pages the file holds (and the meta page claims) */
  uint64_t root;
  int64_t entries;
  int depth;
  uint64_t stack_pg[MAX_DEPTH];
  int stack_ix[MAX_DEPTH];
  const void *key, *val;
  size_t klen, vlen;
};

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const uint8_t *p) { return (uint32_t)u16(p) | (uint32_t)u16(p + 2) << 16; }
static uint64_t u64(const uint8_t *p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }

static ct_status corrupt(const ct_lmdb_read *r, ct_error *err, uint64_t pg, const char *what) {
  return ct_fail(err, CT_EPARSE, "LMDB %s is corrupt: page %llu: %s", r->path, (unsigned long long)pg, what);
}

void ct_lmdb_read_close(ct_lmdb_read *r) {
  if (!r) return;
  if (r->fd >= 0) close(r->fd);
  for (int i = 0; i < MAX_DEPTH; i++) free(r->page[i]);
  free(r->ov);
  free(r->path);
  free(r);
}

/* Reads n bytes at off; a short read means the file shrank since it was opened. */
static ct_status read_at(const ct_lmdb_read *r, void *buf, size_t n, uint64_t off, uint64_t pg, ct_error *err) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(r->fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0)
      return ct_fail(err, CT_EIO, "LMDB %s: reading page %llu: %s", r->path, (unsigned long long)pg, strerror(errno));
    if (k == 0) {
      struct stat st;
      long long now = fstat(r->fd, &st) == 0 ? (long long)st.st_size : -1;
      return ct_fail(err, CT_EIO,
                     "LMDB %s changed while being read: page %llu lies past the end of its data file (%zu bytes when "
                     "opened, %lld now)", r->path, (unsigned long long)pg, r->size, now);
    }
    got += (size_t)k;
  }
  return CT_OK;
}

int64_t ct_lmdb_read_count(const ct_lmdb_read *r) { return r->entries; }

/* A checked page: branch or leaf with a sane header, read into the buffer of B-tree level
 * `level` (kept while the cursor stays on it). */
static ct_status get_page(ct_lmdb_read *r, int level, uint64_t pg, const uint8_t **out, int *nkeys, ct_error *err) {
  if (pg >= r->npages || pg < 2) return corrupt(r, err, pg, "page number outside the file");
  if (!r->page[level] && !(r->page[level] = malloc(r->psize))) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (r->page_no[level] != pg) {
    r->page_no[level] = P_INVALID;
    CT_TRY(read_at(r, r->page[level], r->psize, pg * r->psize, pg, err));
    r->page_no[level] = pg;
  }
  const uint8_t *p = r->page[level];
  uint16_t flags = u16(p + 10), lower = u16(p + 12), upper = u16(p + 14);
  if (!(flags & (P_BRANCH | P_LEAF)) || (flags & (P_OVERFLOW | P_META)) || u64(p) != pg)
    return corrupt(r, err, pg, "not a branch or leaf page");
  if (flags & P_LEAF2) return ct_fail(err, CT_EUNSUPPORTED, "LMDB %s uses fixed-size duplicate keys, which Caffe "
                                                            "databases do not; cortado cannot read it", r->path);
  if (lower < PAGEHDRSZ || lower > upper || upper > r->psize || (lower - PAGEHDRSZ) % 2)
    return corrupt(r, err, pg, "bad free-space bounds");
  *nkeys = (lower - PAGEHDRSZ) / 2;
  *out = p;
  return CT_OK;
}

/* Node i of page p, its header and key checked to lie inside the page. */
static ct_status get_node(const ct_lmdb_read *r, uint64_t pg, const uint8_t *p, int nkeys, int i, const uint8_t **node,
                          ct_error *err) {
  uint16_t off = u16(p + PAGEHDRSZ + 2 * i);
  if (off < PAGEHDRSZ + 2 * nkeys || (size_t)off + NODESZ > r->psize) return corrupt(r, err, pg, "node outside the page");
  const uint8_t *n = p + off;
  if ((size_t)off + NODESZ + u16(n + 6) > r->psize) return corrupt(r, err, pg, "key runs past the page");
  *node = n;
  return CT_OK;
}

/* Descends from page pg to its leftmost leaf, pushing the path from stack level `level`. */
static ct_status descend(ct_lmdb_read *r, uint64_t pg, int level, ct_error *err) {
  for (;;) {
    if (level >= MAX_DEPTH) return corrupt(r, err, pg, "B-tree deeper than any real database");
    const uint8_t *p = NULL;
    int nkeys = 0;
    CT_TRY(get_page(r, level, pg, &p, &nkeys, err));
    r->stack_pg[level] = pg;
    r->stack_ix[level] = 0;
    r->depth = level + 1;
    if (u16(p + 10) & P_LEAF) return CT_OK;
    if (nkeys == 0) return corrupt(r, err, pg, "empty branch page");
    const uint8_t *n = NULL;
    CT_TRY(get_node(r, pg, p, nkeys, 0, &n, err));
    pg = (uint64_t)u16(n) | (uint64_t)u16(n + 2) << 16 | (uint64_t)u16(n + 4) << 32;
    level++;
  }
}

/* Loads the key and value at the top of the stack. */
static ct_status load(ct_lmdb_read *r, ct_error *err) {
  uint64_t pg = r->stack_pg[r->depth - 1];
  const uint8_t *p = NULL, *n = NULL;
  int nkeys = 0;
  CT_TRY(get_page(r, r->depth - 1, pg, &p, &nkeys, err));
  CT_TRY(get_node(r, pg, p, nkeys, r->stack_ix[r->depth - 1], &n, err));
  uint16_t flags = u16(n + 4), ksize = u16(n + 6);
  size_t dsize = (size_t)u16(n) | (size_t)u16(n + 2) << 16;
  if (flags & (F_SUBDATA | F_DUPDATA))
    return ct_fail(err, CT_EUNSUPPORTED, "LMDB %s holds sub-databases or duplicate keys, which Caffe databases do not",
                   r->path);
  r->key = n + NODESZ;
  r->klen = ksize;
  const uint8_t *data = n + NODESZ + ksize;
  size_t node_end = (size_t)(n - p) + NODESZ + ksize;
  if (flags & F_BIGDATA) {
    if (node_end + 8 > r->psize) return corrupt(r, err, pg, "overflow page number runs past the page");
    uint64_t ov = u64(data);
    if (ov < 2 || ov >= r->npages) return corrupt(r, err, pg, "overflow page outside the file");
    if (dsize > (r->npages - ov) * r->psize - PAGEHDRSZ) return corrupt(r, err, ov, "value runs past the file");
    if (PAGEHDRSZ + dsize > r->ov_cap) {
      uint8_t *b = realloc(r->ov, PAGEHDRSZ + dsize);
      if (!b) return ct_fail(err, CT_ENOMEM, "out of memory reading a %zu-byte value", dsize);
      r->ov = b;
      r->ov_cap = PAGEHDRSZ + dsize;
    }
    CT_TRY(read_at(r, r->ov, PAGEHDRSZ + dsize, ov * r->psize, ov, err));
    const uint8_t *op = r->ov;
    uint32_t pages = u32(op + 12);
    if (!(u16(op + 10) & P_OVERFLOW) || pages == 0 || pages > r->npages - ov ||
        dsize > (size_t)pages * r->psize - PAGEHDRSZ)
      return corrupt(r, err, ov, "bad overflow page");
    r->val = op + PAGEHDRSZ;
  } else {
    if (node_end + dsize > r->psize) return corrupt(r, err, pg, "value runs past the page");
    r->val = data;
  }
  r->vlen = dsize;
  return CT_OK;
}

ct_status ct_lmdb_read_first(ct_lmdb_read *r, bool *valid, ct_error *err) {
  *valid = false;
  r->depth = 0;
  if (r->root == P_INVALID) return CT_OK;
  CT_TRY(descend(r, r->root, 0, err));
  /* skip empty leaves (only a root leaf may be empty) */
  const uint8_t *p = NULL;
  int nkeys = 0;
  CT_TRY(get_page(r, r->depth - 1, r->stack_pg[r->depth - 1], &p, &nkeys, err));
  if (nkeys == 0) return r->depth == 1 ? CT_OK : corrupt(r, err, r->stack_pg[r->depth - 1], "empty leaf");
  CT_TRY(load(r, err));
  *valid = true;
  return CT_OK;
}

ct_status ct_lmdb_read_next(ct_lmdb_read *r, bool *valid, ct_error *err) {
  *valid = false;
  for (int level = r->depth - 1; level >= 0; level--) {
    const uint8_t *p = NULL;
    int nkeys = 0;
    CT_TRY(get_page(r, level, r->stack_pg[level], &p, &nkeys, err));
    if (r->stack_ix[level] + 1 >= nkeys) continue; /* this page is done: go up */
    r->stack_ix[level]++;
    if (level < r->depth - 1) { /* a branch: the next child's leftmost leaf */
      const uint8_t *n = NULL;
      CT_TRY(get_node(r, r->stack_pg[level], p, nkeys, r->stack_ix[level], &n, err));
      uint64_t child = (uint64_t)u16(n) | (uint64_t)u16(n + 2) << 16 | (uint64_t)u16(n + 4) << 32;
      int depth = r->depth;
      CT_TRY(descend(r, child, level + 1, err));
      if (r->depth != depth) return corrupt(r, err, child, "leaves at different depths");
      CT_TRY(get_page(r, r->depth - 1, r->stack_pg[r->depth - 1], &p, &nkeys, err));
      if (nkeys == 0) return corrupt(r, err, r->stack_pg[r->depth - 1], "empty leaf");
    }
    CT_TRY(load(r, err));
    *valid = true;
    return CT_OK;
  }
  r->depth = 0;
  return CT_OK;
}

void ct_lmdb_read_current(const ct_lmdb_read *r, const void **key, size_t *klen, const void **val, size_t *vlen) {
  *key = r->key;
  *klen = r->klen;
  *val = r->val;
  *vlen = r->vlen;
}

ct_status ct_lmdb_read_open(const char *path, ct_lmdb_read **out, ct_error *err) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0) return ct_fail(err, CT_EIO, "cannot open LMDB %s: %s", path, strerror(errno));
  char file[4200];
  snprintf(file, sizeof file, S_ISDIR(st.st_mode) ? "%s/data.mdb" : "%s", path);
  ct_lmdb_read *r = calloc(1, sizeof *r);
  if (!r || !(r->path = strdup(path))) {
    free(r);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  r->fd = -1;
  for (int i = 0; i < MAX_DEPTH; i++) r->page_no[i] = P_INVALID;
  ct_status s = CT_OK;
  uint8_t *head = NULL; /* the two meta pages */
  if (S_ISDIR(st.st_mode) && access(file, F_OK) != 0) {
    s = ct_fail(err, CT_EIO, "cannot open LMDB %s: no data.mdb in it: %s", path, strerror(errno));
    goto fail;
  }
  if ((s = ct_file_open_input(file, "LMDB data file", &r->fd, &st, err))) goto fail;
  r->size = (size_t)st.st_size;
  if (r->size < 2 * 4096 && r->size < 2 * (PAGEHDRSZ + 136)) {
    s = ct_fail(err, CT_EPARSE, "LMDB %s is truncated: %s holds %zu bytes, less than its two meta pages", path, file,
                r->size);
    goto fail;
  }
  size_t head_len = r->size < 2 * 65536 ? r->size : 2 * 65536;
  if (!(head = malloc(head_len))) {
    s = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  if ((s = read_at(r, head, head_len, 0, 0, err))) goto fail;
  /* meta page 0 gives the page size; the newer of the two metas is the current state */
  const uint8_t *m0 = head + PAGEHDRSZ;
  if (u32(m0) != LMDB_MAGIC) {
    s = ct_fail(err, CT_EPARSE, "%s is not an LMDB data file (bad magic number)", file);
    goto fail;
  }
  if (u32(m0 + 4) != 1) {
    s = ct_fail(err, CT_EUNSUPPORTED, "LMDB %s has data format version %u; cortado reads version 1", path,
                u32(m0 + 4));
    goto fail;
  }
  r->psize = u32(m0 + 24);
  if (r->psize < 512 || r->psize > 65536 || (r->psize & (r->psize - 1)) || r->size < 2 * r->psize) {
    s = ct_fail(err, CT_EPARSE, "LMDB %s is corrupt: page size %zu (file of %zu bytes)", path, r->psize, r->size);
    goto fail;
  }
  const uint8_t *m1 = head + r->psize + PAGEHDRSZ, *m = m0;
  if (u32(m1) == LMDB_MAGIC && u64(m1 + 128) > u64(m0 + 128)) m = m1;
  uint64_t last_pg = u64(m + 120);
  r->npages = r->size / r->psize;
  if (last_pg >= r->npages) {
    s = ct_fail(err, CT_EPARSE,
                "LMDB %s is truncated: its meta page uses pages up to %llu (%llu bytes) but %s holds %zu bytes", path,
                (unsigned long long)last_pg, (unsigned long long)(last_pg + 1) * r->psize, file, r->size);
    goto fail;
  }
  r->npages = last_pg + 1;
  const uint8_t *main_db = m + 24 + 48;
  if (u16(main_db + 4) & MDB_DUPSORT_FLAG) {
    s = ct_fail(err, CT_EUNSUPPORTED, "LMDB %s is a duplicate-sorted database, which Caffe databases are not", path);
    goto fail;
  }
  r->entries = (int64_t)u64(main_db + 32);
  r->root = u64(main_db + 40);
  if (r->entries < 0 || (r->root == P_INVALID) != (r->entries == 0)) {
    s = ct_fail(err, CT_EPARSE, "LMDB %s is corrupt: %lld entries with root page %lld", path, (long long)r->entries,
                (long long)r->root);
    goto fail;
  }
  free(head);
  *out = r;
  return CT_OK;
fail:
  free(head);
  ct_lmdb_read_close(r);
  return s;
}
