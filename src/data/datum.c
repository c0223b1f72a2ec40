#include "data/datum.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return false;
    uint8_t b = *(*p)++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

static float le_float(const uint8_t *p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static ct_status push_floats(const uint8_t *p, size_t n, ct_datum *d, float **fbuf, size_t *fcap, ct_error *err) {
  if (d->n_float + n > *fcap) {
    size_t cap = *fcap ? *fcap : 256;
    while (cap < d->n_float + n) cap *= 2;
    float *nb = realloc(*fbuf, cap * sizeof *nb);
    if (!nb) return ct_fail(err, CT_ENOMEM, "out of memory for float_data");
    *fbuf = nb;
    *fcap = cap;
  }
  for (size_t i = 0; i < n; i++) (*fbuf)[d->n_float + i] = le_float(p + 4 * i);
  d->n_float += n;
  return CT_OK;
}

ct_status ct_datum_parse(const void *buf, size_t len, ct_datum *d, float **fbuf, size_t *fcap, ct_error *err) {
  memset(d, 0, sizeof *d);
  const uint8_t *p = buf, *end = p + len;
  while (p < end) {
    uint64_t tag;
    if (!get_varint(&p, end, &tag)) return ct_fail(err, CT_EPARSE, "not a Datum: truncated field tag");
    uint64_t field = tag >> 3;
    unsigned wt = (unsigned)(tag & 7);
    uint64_t v = 0;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    switch (wt) {
      case 0:
        if (!get_varint(&p, end, &v)) return ct_fail(err, CT_EPARSE, "not a Datum: truncated varint (field %llu)",
                                                    (unsigned long long)field);
        break;
      case 1:
        if (end - p < 8) return ct_fail(err, CT_EPARSE, "not a Datum: truncated fixed64 (field %llu)",
                                        (unsigned long long)field);
        payload = p;
        p += 8;
        break;
      case 2:
        if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p))
          return ct_fail(err, CT_EPARSE, "not a Datum: field %llu is truncated (length %llu, %zu bytes left)",
                         (unsigned long long)field, (unsigned long long)v, (size_t)(end - p));
        payload = p;
        plen = (size_t)v;
        p += plen;
        break;
      case 5:
        if (end - p < 4) return ct_fail(err, CT_EPARSE, "not a Datum: truncated fixed32 (field %llu)",
                                        (unsigned long long)field);
        payload = p;
        p += 4;
        break;
      default:
        return ct_fail(err, CT_EPARSE, "not a Datum: wire type %u (field %llu) is invalid", wt,
                       (unsigned long long)field);
    }
    switch (field) {
      case 1:
      case 2:
      case 3:
      case 5:
        if (wt != 0) return ct_fail(err, CT_EPARSE, "not a Datum: field %llu must be a varint",
                                    (unsigned long long)field);
        if (field == 1) d->channels = (int)(int32_t)v;
        if (field == 2) d->height = (int)(int32_t)v;
        if (field == 3) d->width = (int)(int32_t)v;
        if (field == 5) d->label = (int)(int32_t)v;
        break;
      case 4:
        if (wt != 2) return ct_fail(err, CT_EPARSE, "not a Datum: field 4 (data) must be bytes");
        d->data = payload;
        d->data_len = plen;
        break;
      case 6:
        if (wt == 5)
          CT_TRY(push_floats(payload, 1, d, fbuf, fcap, err));
        else if (wt == 2 && plen % 4 == 0)
          CT_TRY(push_floats(payload, plen / 4, d, fbuf, fcap, err));
        else
          return ct_fail(err, CT_EPARSE, "not a Datum: field 6 (float_data) must hold 4-byte floats");
        break;
      case 7:
        if (wt != 0) return ct_fail(err, CT_EPARSE, "not a Datum: field 7 (encoded) must be a varint");
        d->encoded = v != 0;
        break;
      default:
        break; /* unknown fields are skipped, as protobuf does */
    }
  }
  d->float_data = d->n_float ? *fbuf : NULL;
  if (d->channels < 0 || d->height < 0 || d->width < 0)
    return ct_fail(err, CT_EPARSE, "Datum has a negative size %dx%dx%d", d->channels, d->height, d->width);
  return CT_OK;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

ct_status ct_datum_encode(const ct_datum *d, uint8_t **out, size_t *len, ct_error *err) {
  size_t cap = 5 * 11 + 11 + d->data_len + d->n_float * 5;
  uint8_t *buf = malloc(cap), *p = buf;
  if (!buf) return ct_fail(err, CT_ENOMEM, "out of memory encoding a Datum");
  if (!d->encoded) {
    p = put_varint(put_varint(p, 1 << 3), (uint64_t)(int64_t)d->channels);
    p = put_varint(put_varint(p, 2 << 3), (uint64_t)(int64_t)d->height);
    p = put_varint(put_varint(p, 3 << 3), (uint64_t)(int64_t)d->width);
  }
  if (d->data) {
    p = put_varint(p, 4 << 3 | 2);
    p = put_varint(p, d->data_len);
    memcpy(p, d->data, d->data_len);
    p += d->data_len;
  }
  p = put_varint(put_varint(p, 5 << 3), (uint64_t)(int64_t)d->label);
  for (size_t i = 0; i < d->n_float; i++) {
    uint32_t u;
    memcpy(&u, &d->float_data[i], 4);
    *p++ = 6 << 3 | 5;
    for (int k = 0; k < 4; k++) *p++ = (uint8_t)(u >> (8 * k));
  }
  if (d->encoded) p = put_varint(put_varint(p, 7 << 3), 1);
  *out = buf;
  *len = (size_t)(p - buf);
  return CT_OK;
}
