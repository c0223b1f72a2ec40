/* The thread pool: every task of a region runs exactly once, whatever the number of tasks and
 * threads, and however unevenly long the tasks are; regions follow one another without mixing. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "core/pool.h"

typedef struct region {
  int n;
  atomic_int runs[256]; /* how often each task ran */
  int region;           /* the region this context belongs to */
  atomic_int wrong;     /* tasks that saw another region's context */
} region;

static void count_task(void *ctx, int i) {
  region *r = ctx;
  atomic_fetch_add(&r->runs[i], 1);
  if (i < 0 || i >= r->n) atomic_fetch_add(&r->wrong, 1);
  /* uneven task lengths, so that threads finish at different times and claim different counts */
  if (i % 3 == 0) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}

static void test_pool(void) {
  for (int threads = 1; threads <= 4; threads++) {
    ct_pool *p = NULL;
    ct_error err = {0};
    CHECK(ct_pool_create(threads, &p, &err) == CT_OK, "%s", err.msg);
    if (!p) continue;
    CHECK(ct_pool_size(p) == threads, "pool of %d threads reports %d", threads, ct_pool_size(p));
    const int counts[] = {0, 1, 2, 3, 7, 64, 256};
    for (int rep = 0; rep < 3; rep++)
      for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        region *r = calloc(1, sizeof *r);
        if (!r) continue;
        r->n = counts[c];
        ct_pool_run(p, r->n, count_task, r);
        int bad = 0;
        for (int i = 0; i < 256; i++) bad += atomic_load(&r->runs[i]) != (i < r->n ? 1 : 0);
        CHECK(bad == 0 && atomic_load(&r->wrong) == 0, "%d threads, %d tasks: %d tasks ran other than once", threads,
              r->n, bad);
        free(r);
      }
    ct_pool_free(p);
  }
  ct_pool *p = NULL;
  ct_error err = {0};
  CHECK(ct_pool_create(0, &p, &err) != CT_OK && p == NULL, "a pool of 0 threads is refused");
  region r0 = {.n = 5};
  ct_pool_run(NULL, 5, count_task, &r0); /* no pool: serial */
  int bad = 0;
  for (int i = 0; i < 5; i++) bad += atomic_load(&r0.runs[i]) != 1;
  CHECK(bad == 0, "serial run without a pool: %d tasks ran other than once", bad);
}

int main(void) {
  test_pool();
  return ct_check_report();
}
