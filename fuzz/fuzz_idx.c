/* The IDX reader on a file holding the input, plain or gzipped (zlib detects the gzip magic):
 * ct_idx_read, whose element count must match the dimensions on success; then the IDX data
 * source over the same file (shuffled when the input's last byte is odd), serving a few records
 * and seeking past the end, reading every pixel it hands out. */
#include <stdint.h>
#include <stdlib.h>

#include "data/idx.h"
#include "data/source.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write("input.idx", data, size);
  ct_idx x;
  ct_error err;
  if (ct_idx_read(path, &x, &err) != CT_OK) {
    if (x.data || !err.msg[0]) abort();
    return 0;
  }
  size_t count = 1;
  for (int i = 0; i < x.ndims; i++) count *= (size_t)x.dims[i];
  if (x.ndims < 1 || x.ndims > 4 || count != x.count || !x.data) abort();
  volatile uint8_t sink = x.data[x.count - 1]; /* the last byte must be readable */
  ct_idx_free(&x);

  ct_source *src = NULL;
  if (ct_source_open_idx(path, NULL, data[size - 1] & 1, 7, &src, &err) != CT_OK) {
    if (src || !err.msg[0]) abort();
    return 0;
  }
  for (int k = 0; k < 3; k++) {
    ct_record r;
    if (k == 2 && ct_source_seek(src, (uint64_t)src->count * 3 + 1, &err) != CT_OK) break;
    if (ct_source_next(src, &r, &err) != CT_OK) break;
    size_t n = (size_t)r.C * (size_t)r.H * (size_t)r.W;
    for (size_t i = 0; i < n; i++) sink += r.u8 ? r.u8[i] : (r.f32[i] != 0);
  }
  (void)sink;
  ct_source_close(src);
  return 0;
}
