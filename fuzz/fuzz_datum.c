/* LMDB / LevelDB Datum records through the data sources' decoder, ct_datum_read: the wire parse
 * (ct_datum_parse), the size checks (channels x height x width against the bytes or floats
 * present) and, for encoded records, the PNG / JPEG decoder. The first input byte picks the
 * decode mode (native, force_color, force_gray); the rest is the record. Every value a batch
 * would copy is read, so a size that overstates the buffer shows up under ASan. */
#include <stdint.h>
#include <stdlib.h>

#include "data/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  ct_datum_reader rd = {.mode = (ct_image_mode)(data[0] % 3)};
  ct_record rec;
  ct_error err;
  if (ct_datum_read(&rd, data + 1, size - 1, "fuzz record", &rec, &err) == CT_OK) {
    if (rec.C < 1 || rec.H < 1 || rec.W < 1 || (!rec.u8 && !rec.f32)) abort();
    size_t n = (size_t)rec.C * (size_t)rec.H * (size_t)rec.W;
    volatile float sink = 0;
    for (size_t i = 0; i < n; i++) sink += rec.u8 ? (float)rec.u8[i] : rec.f32[i];
    (void)sink;
  } else if (!err.msg[0]) {
    abort();
  }
  ct_datum_reader_free(&rd);
  return 0;
}
