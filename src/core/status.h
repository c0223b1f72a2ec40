/* Errors as values: helpers to fill a caller's ct_error. */
#ifndef CT_STATUS_H
#define CT_STATUS_H

#include "cortado.h"

/* Formats a message into err (if not NULL) and returns s. */
ct_status ct_fail(ct_error *err, ct_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes err's message with "<prefix>: " (for adding context on the way up). */
ct_status ct_error_prefix(ct_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CT_TRY(expr)                  \
  do {                                \
    ct_status ct_try_s_ = (expr);     \
    if (ct_try_s_ != CT_OK) return ct_try_s_; \
  } while (0)

#endif
