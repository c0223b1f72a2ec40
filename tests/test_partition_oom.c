/* Out of memory in the partition rewrite (src/net/partition.c): each allocation that
 * ct_net_partition makes, failed in turn, gives CT_ENOMEM (or success, once the count passes
 * them all), never a crash or another error, and leaks nothing: the heap in use (mallinfo2)
 * is back where it was after each try (counted without glibc's thread cache, which keeps freed
 * blocks as in use), and in the sanitizer build LeakSanitizer checks at exit.
 * The failures come from this binary's own malloc, calloc, realloc and strdup: it links with
 * --wrap for them (tests/CMakeLists.txt), so the library's calls go through the wrappers below.
 * A rewritten layer whose top could not be recorded (set_layout) used to leak. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cortado.h"
#include "net/net_impl.h"
#include "partition_nets.h"
#include "proto/prototxt.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

static long fail_at = -1; /* the allocation (counted from 0 while armed) that fails; -1: none */
static long count;

static bool fails(void) { return fail_at >= 0 && count++ == fail_at; }
void *__wrap_malloc(size_t n) { return fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t k, size_t n) { return fails() ? NULL : __real_calloc(k, n); }
void *__wrap_realloc(void *p, size_t n) { return fails() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fails() ? NULL : __real_strdup(s); }

/* The layer list ct_net_build hands to the rewrite: filtered for TRAIN, Splits inserted. */
static ct_status layers_of(const Caffe__NetParameter *param, ct_spec_list *out, ct_error *err) {
  ct_spec_list filtered = {0};
  ct_status st = ct_net_filter(param, "t.prototxt", CT_TRAIN, 0, NULL, &filtered, err);
  if (!st) st = ct_net_insert_splits(&filtered, out, err);
  ct_spec_list_free(&filtered);
  return st;
}

static void sweep(const char *what, const char *text) {
  ProtobufCMessage *msg = NULL;
  ct_error err;
  memset(&err, 0, sizeof err);
  CHECK(ct_prototxt_parse(text, strlen(text), "t.prototxt", &caffe__net_parameter__descriptor, &msg, &err) == CT_OK,
        "%s: %s", what, err.msg);
  if (!msg) return;
  const Caffe__NetParameter *param = (const Caffe__NetParameter *)msg;
  long tries = 0, leaks = 0, other = 0;
  for (int warm = 0; warm < 2; warm++) { /* anything made once per process is made now */
    ct_spec_list list = {0};
    ct_partition *part = NULL;
    if (!layers_of(param, &list, &err)) ct_net_partition(param, NULL, "t.prototxt", &list, &part, &err);
    ct_spec_list_free(&list);
    ct_partition_free(part);
  }
  for (long k = 0;; k++) {
    const size_t before = mallinfo2().uordblks;
    ct_spec_list list = {0};
    ct_partition *part = NULL;
    if (layers_of(param, &list, &err)) {
      CHECK(0, "%s: %s", what, err.msg);
      break;
    }
    count = 0;
    fail_at = k;
    ct_status st = ct_net_partition(param, NULL, "t.prototxt", &list, &part, &err);
    const bool failed_one = count > k;
    fail_at = -1;
    ct_spec_list_free(&list);
    ct_partition_free(part);
    const size_t after = mallinfo2().uordblks;
    tries++;
    if (after != before) {
      if (leaks++ < 5) printf("%s: allocation %ld failed: %zu bytes left allocated\n", what, k, after - before);
    }
    if (st != CT_OK && st != CT_ENOMEM) {
      if (other++ < 5) printf("%s: allocation %ld failed: status %d: %s\n", what, k, (int)st, err.msg);
    }
    if (!failed_one) { /* every allocation of the rewrite has failed once */
      CHECK(st == CT_OK, "%s: with no allocation failing: %s", what, err.msg);
      break;
    }
    CHECK(st == CT_ENOMEM || st != CT_OK, "%s: allocation %ld failed, and the rewrite said it succeeded", what, k);
  }
  CHECK(leaks == 0, "%s: %ld of %ld failed allocations leaked", what, leaks, tries);
  CHECK(other == 0, "%s: %ld of %ld failed allocations gave another error than out of memory", what, other, tries);
  CHECK(tries > 20, "%s: only %ld allocations: the wrappers do not reach the library", what, tries);
  printf("%s: %ld allocations failed in turn: %ld leaked, %ld other errors\n", what, tries - 1, leaks, other);
  protobuf_c_message_free_unpacked(msg, NULL);
}

int main(int argc, char **argv) {
  (void)argc;
  /* glibc's per-thread cache keeps freed blocks counted as in use: without it, mallinfo2 counts
   * exactly what is allocated (the tunable is read at start-up, hence the new exec) */
  const char *tun = getenv("GLIBC_TUNABLES");
  if (!tun || !strstr(tun, "glibc.malloc.tcache_count=0")) {
    setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
    execv("/proc/self/exe", argv);
    printf("could not run again without the allocation cache; the leak counts may be off\n");
  }
  char text[8192];
  for (int w = 2; w <= 4; w += 2) {
    transitions_net(text, sizeof text, w, true);
    char what[64];
    snprintf(what, sizeof what, "transitions over %d workers", w);
    sweep(what, text);
  }
  return ct_check_report();
}
