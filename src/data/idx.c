#include "data/idx.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/status.h"

/* 2^31 bytes: far above any IDX dataset, and a bound for corrupt headers. */
#define IDX_MAX_BYTES ((size_t)1 << 31)

void ct_idx_free(ct_idx *x) {
  if (!x) return;
  free(x->data);
  memset(x, 0, sizeof *x);
}

ct_status ct_idx_read(const char *path, ct_idx *out, ct_error *err) {
  memset(out, 0, sizeof *out);
  gzFile f = gzopen(path, "rb"); /* reads plain files too */
  if (!f) return ct_fail(err, CT_EIO, "%s: cannot open IDX file", path);
  ct_status st = CT_OK;
  unsigned char hdr[4];
  if (gzread(f, hdr, 4) != 4) {
    st = ct_fail(err, CT_EPARSE, "%s: too short for an IDX header", path);
    goto done;
  }
  if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] < 1 || hdr[3] > 4) {
    st = ct_fail(err, CT_EPARSE,
                 "%s: not an unsigned-byte IDX file (magic %02x %02x %02x %02x; expected 00 00 08 and 1-4 dims)",
                 path, hdr[0], hdr[1], hdr[2], hdr[3]);
    goto done;
  }
  out->ndims = hdr[3];
  size_t count = 1;
  for (int i = 0; i < out->ndims; i++) {
    unsigned char d[4];
    if (gzread(f, d, 4) != 4) {
      st = ct_fail(err, CT_EPARSE, "%s: truncated IDX header", path);
      goto done;
    }
    uint32_t v = ((uint32_t)d[0] << 24) | ((uint32_t)d[1] << 16) | ((uint32_t)d[2] << 8) | d[3];
    if (v == 0 || v > (uint32_t)INT32_MAX || count > IDX_MAX_BYTES / v) {
      st = ct_fail(err, CT_EPARSE, "%s: implausible IDX dimension %u (axis %d)", path, v, i);
      goto done;
    }
    out->dims[i] = (int)v;
    count *= v;
  }
  /* Read in chunks so that a header claiming more than the file holds fails on the data, not
   * on a huge up-front allocation. */
  size_t cap = count < ((size_t)1 << 24) ? count : ((size_t)1 << 24), got = 0;
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
    size_t want = cap - got;
    if (want > (1u << 30)) want = 1u << 30;
    int n = gzread(f, out->data + got, (unsigned)want);
    if (n <= 0) {
      int zerr;
      const char *zmsg = gzerror(f, &zerr);
      st = ct_fail(err, CT_EPARSE, "%s: IDX data truncated: header promises %zu bytes, file holds %zu%s%s", path,
                   count, got, zerr ? "; " : "", zerr ? zmsg : "");
      goto done;
    }
    got += (size_t)n;
  }
  out->count = count;
done:
  gzclose(f);
  if (st) ct_idx_free(out);
  return st;
}
