#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ct_status_name(ct_status s) {
  switch (s) {
    case CT_OK: return "ok";
    case CT_EINVAL: return "invalid argument";
    case CT_EPARSE: return "parse error";
    case CT_ESHAPE: return "shape mismatch";
    case CT_EIO: return "i/o error";
    case CT_ENOMEM: return "out of memory";
    case CT_ENOTFOUND: return "not found";
    case CT_EUNSUPPORTED: return "unsupported";
    case CT_ENUMERIC: return "numeric error";
    case CT_EINTERNAL: return "internal error";
    case CT_EDEVICE: return "device error";
  }
  return "unknown status";
}

ct_status ct_fail(ct_error *err, ct_status s, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = s;
  }
  return s;
}

ct_status ct_error_prefix(ct_error *err, const char *fmt, ...) {
  if (!err) return CT_OK;
  char prefix[512], old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  size_t n = strlen(prefix);
  if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
  memcpy(err->msg, prefix, n);
  memcpy(err->msg + n, ": ", 2);
  size_t rest = sizeof err->msg - n - 3;
  size_t m = strnlen(old, rest);
  memcpy(err->msg + n + 2, old, m);
  err->msg[n + 2 + m] = 0;
  return err->status;
}
