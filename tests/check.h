/* A minimal test reporter: every CHECK counts; main returns non-zero if any failed, and prints
 * "N passed, N failed" as its last line. */
#ifndef CT_CHECK_H
#define CT_CHECK_H

#include <math.h>
#include <stdio.h>

static int ct_checks_passed, ct_checks_failed;

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (cond) {                                                 \
      ct_checks_passed++;                                       \
    } else {                                                    \
      ct_checks_failed++;                                       \
      fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                             \
      fputc('\n', stderr);                                      \
    }                                                           \
  } while (0)

/* |a - b| <= atol + rtol * max(|a|, |b|); the message (printf format and arguments) follows. */
#define CHECK_CLOSE(a, b, rtol, atol, ...)                                                       \
  do {                                                                                           \
    double ca_ = (a), cb_ = (b);                                                                 \
    double m_ = fabs(ca_) > fabs(cb_) ? fabs(ca_) : fabs(cb_);                                   \
    if (fabs(ca_ - cb_) <= (atol) + (rtol) * m_ && ca_ == ca_ && cb_ == cb_) {                   \
      ct_checks_passed++;                                                                        \
    } else {                                                                                     \
      ct_checks_failed++;                                                                        \
      fprintf(stderr, "%s:%d: FAILED: %s ~ %s (%.8g vs %.8g): ", __FILE__, __LINE__, #a, #b, ca_, cb_); \
      fprintf(stderr, __VA_ARGS__);                                                              \
      fputc('\n', stderr);                                                                       \
    }                                                                                            \
  } while (0)

static inline int ct_check_report(void) {
  printf("%d passed, %d failed\n", ct_checks_passed, ct_checks_failed);
  return ct_checks_failed ? 1 : 0;
}

#endif
