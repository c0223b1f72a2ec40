#include "data/idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/files.h"
#include "core/status.h"

/* 2^31 bytes: far above any IDX dataset, and a bound for corrupt headers. */
#define IDX_MAX_BYTES ((size_t)1 << 31)
/* The first data buffer; it doubles as bytes arrive, so a header claiming more than the file
 * holds costs at most twice what the file really holds. */
#define IDX_FIRST_CHUNK ((size_t)1 << 16)

void ct_idx_free(ct_idx *x) {
  if (!x) return;
  free(x->data);
  memset(x, 0, sizeof *x);
}

typedef enum { READ_OK, READ_SHORT, READ_FAILED } read_result;

/* zlib's message for the last error, without the "<path>: " it puts in front. */
static const char *zlib_words(gzFile f, const char *path, int *zerr) {
  const char *m = gzerror(f, zerr);
  if (!m || !*m) return "unknown zlib error";
  size_t n = strlen(path);
  if (!strncmp(m, path, n) && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
  /* gzdopen'ed files are named "<fd:N>" in zlib's messages */
  const char *close = strncmp(m, "<fd:", 4) == 0 ? strstr(m, ">: ") : NULL;
  if (close) m = close + 3;
  return m;
}

/* Reads up to n bytes; *got says how many arrived. READ_SHORT: the file (or its gzip stream)
 * ends first -- genuine truncation. READ_FAILED: zlib or the system reported an error, which is
 * already in err, naming the file, what went wrong and where. */
static read_result read_bytes(gzFile f, const char *path, void *buf, size_t n, size_t *got, ct_status *st,
                              ct_error *err) {
  *got = 0;
  while (*got < n) {
    size_t want = n - *got;
    if (want > (1u << 30)) want = 1u << 30;
    int r = gzread(f, (uint8_t *)buf + *got, (unsigned)want);
    if (r > 0) {
      *got += (size_t)r;
      continue;
    }
    int zerr = Z_OK;
    const char *zmsg = zlib_words(f, path, &zerr);
    if (r == 0 && (zerr == Z_OK || zerr == Z_BUF_ERROR)) return READ_SHORT; /* Z_BUF_ERROR: "unexpected end of file" */
    if (zerr == Z_ERRNO) {
      *st = ct_fail(err, CT_EIO, "%s: cannot read IDX file: %s", path, zmsg);
    } else if (zerr == Z_MEM_ERROR) {
      *st = ct_fail(err, CT_ENOMEM, "%s: out of memory decompressing", path);
    } else {
      /* Z_DATA_ERROR and the like: the deflate stream or the gzip header / trailer is bad.
       * gzoffset is where inflate had got to in the compressed file: the damage lies at or a
       * few bytes before it (inflate reads ahead). */
      long long at = (long long)gzoffset(f);
      if (at >= 0)
        *st = ct_fail(err, CT_EPARSE,
                      "%s: corrupt gzip data: %s (at or shortly before byte %lld of the compressed file)", path, zmsg,
                      at);
      else
        *st = ct_fail(err, CT_EPARSE, "%s: corrupt gzip data: %s", path, zmsg);
    }
    return READ_FAILED;
  }
  return READ_OK;
}

static const char *ends_early(gzFile f) { return gzdirect(f) ? "" : " (the gzip stream ends early)"; }

static ct_status read_header(gzFile f, const char *path, ct_idx *out, ct_error *err) {
  unsigned char hdr[4];
  size_t got;
  ct_status st = CT_OK;
  read_result rr = read_bytes(f, path, hdr, 4, &got, &st, err);
  if (rr == READ_FAILED) return st;
  if (rr == READ_SHORT)
    return ct_fail(err, CT_EPARSE, "%s: too short for an IDX header: %zu of its first 4 bytes present%s", path, got,
                   ends_early(f));
  if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] < 1 || hdr[3] > 4)
    return ct_fail(err, CT_EPARSE,
                   "%s: not an unsigned-byte IDX file (magic %02x %02x %02x %02x; expected 00 00 08 and 1-4 dims)",
                   path, hdr[0], hdr[1], hdr[2], hdr[3]);
  out->ndims = hdr[3];
  size_t count = 1;
  for (int i = 0; i < out->ndims; i++) {
    unsigned char d[4];
    rr = read_bytes(f, path, d, 4, &got, &st, err);
    if (rr == READ_FAILED) return st;
    if (rr == READ_SHORT)
      return ct_fail(err, CT_EPARSE, "%s: truncated IDX header: it ends in dimension %d of %d%s", path, i + 1,
                     out->ndims, ends_early(f));
    uint32_t v = ((uint32_t)d[0] << 24) | ((uint32_t)d[1] << 16) | ((uint32_t)d[2] << 8) | d[3];
    if (v == 0 || v > (uint32_t)INT32_MAX || count > IDX_MAX_BYTES / v)
      return ct_fail(err, CT_EPARSE, "%s: implausible IDX dimension %u (axis %d)", path, v, i);
    out->dims[i] = (int)v;
    count *= v;
  }
  out->count = count;
  return CT_OK;
}

static gzFile open_idx(const char *path, ct_status *st, ct_error *err) {
  /* issue 23: a FIFO or device is refused, not blocked on */
  int fd = -1;
  if ((*st = ct_file_open_input(path, "IDX file", &fd, NULL, err))) return NULL;
  errno = 0;
  gzFile f = gzdopen(fd, "rb"); /* reads plain files too */
  if (!f) {
    *st = ct_fail(err, errno == ENOMEM || !errno ? CT_ENOMEM : CT_EIO, "%s: cannot open IDX file: %s", path,
                  errno ? strerror(errno) : "out of memory");
    close(fd);
  }
  return f;
}

ct_status ct_idx_read_header(const char *path, ct_idx *out, ct_error *err) {
  memset(out, 0, sizeof *out);
  ct_status st = CT_OK;
  gzFile f = open_idx(path, &st, err);
  if (!f) return st;
  st = read_header(f, path, out, err);
  gzclose(f);
  if (st) memset(out, 0, sizeof *out);
  return st;
}

ct_status ct_idx_read(const char *path, ct_idx *out, ct_error *err) {
  memset(out, 0, sizeof *out);
  ct_status st = CT_OK;
  gzFile f = open_idx(path, &st, err);
  if (!f) return st;
  st = read_header(f, path, out, err);
  if (st) goto done;
  const size_t count = out->count;
  out->count = 0;
  /* Read in growing chunks so that a header claiming more than the file holds fails on the
   * data, not on a huge up-front allocation. */
  size_t cap = count < IDX_FIRST_CHUNK ? count : IDX_FIRST_CHUNK, got = 0;
  out->data = malloc(cap);
  if (!out->data) {
    st = ct_fail(err, CT_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  while (got < count) {
    if (got == cap) {
      size_t ncap = cap * 2 < count ? cap * 2 : count;
      uint8_t *p = realloc(out->data, ncap);
      if (!p) {
        st = ct_fail(err, CT_ENOMEM, "%s: out of memory", path);
        goto done;
      }
      out->data = p;
      cap = ncap;
    }
    size_t n;
    read_result rr = read_bytes(f, path, out->data + got, cap - got, &n, &st, err);
    got += n;
    if (rr == READ_FAILED) goto done;
    if (rr == READ_SHORT) {
      st = ct_fail(err, CT_EPARSE, "%s: IDX data truncated: header promises %zu bytes, file holds %zu%s", path, count,
                   got, ends_early(f));
      goto done;
    }
  }
  /* A gzip stream is read on to its end: only there does zlib check the trailer (CRC-32 and
   * length), and a damaged stream must not pass because its pixels happened to arrive first.
   * Bytes after the data are ignored (a plain file's are not even read), as Caffe's
   * convert_mnist_data ignores them. */
  while (!gzdirect(f)) {
    uint8_t tail[4096];
    size_t n;
    read_result rr = read_bytes(f, path, tail, sizeof tail, &n, &st, err);
    if (rr == READ_FAILED) goto done;
    if (rr == READ_SHORT) {
      int zerr = Z_OK;
      gzerror(f, &zerr);
      if (zerr == Z_BUF_ERROR) /* the stream was cut inside trailing data or the trailer */
        st = ct_fail(err, CT_EPARSE, "%s: truncated gzip stream: it ends before its trailer (CRC-32 and length)", path);
      break;
    }
  }
  if (!st) out->count = count;
done:
  gzclose(f);
  if (st) ct_idx_free(out);
  return st;
}
