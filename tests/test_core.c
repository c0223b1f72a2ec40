/* The thread pool: every task of a region runs exactly once, whatever the number of tasks and
 * threads, and however unevenly long the tasks are; regions follow one another without mixing. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "core/pool.h"
#include "core/strmap.h"

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

/* The name map against a plain array of the same keys: every key finds its latest value,
 * absent keys (including prefixes and extensions of present ones) find nothing, across growth. */
static void test_strmap(void) {
  enum { N = 20000 };
  char(*keys)[16] = malloc(sizeof(*keys) * N);
  ct_strmap *m = NULL;
  ct_error err = {0};
  CHECK(keys && ct_strmap_create(0, &m, &err) == CT_OK && m, "create: %s", err.msg);
  if (!keys || !m) {
    free(keys);
    return;
  }
  for (int i = 0; i < N; i++) snprintf(keys[i], sizeof keys[i], "x%d", i);
  int bad_put = 0;
  for (int i = 0; i < N; i++) bad_put += ct_strmap_put(m, keys[i], i, &err) != CT_OK;
  for (int i = 0; i < N; i += 2) bad_put += ct_strmap_put(m, keys[i], 3 * i + 1, &err) != CT_OK; /* replace */
  CHECK(bad_put == 0 && ct_strmap_size(m) == N, "%d puts failed, size %zu of %d", bad_put, ct_strmap_size(m), N);
  int wrong = 0, found_absent = 0;
  char probe[24];
  for (int i = 0; i < N; i++) {
    snprintf(probe, sizeof probe, "x%d", i); /* another buffer: lookups compare contents */
    wrong += ct_strmap_get(m, probe) != (i % 2 ? i : 3 * i + 1);
    snprintf(probe, sizeof probe, "y%d", i);
    found_absent += ct_strmap_get(m, probe) >= 0;
    snprintf(probe, sizeof probe, "x%d_", i);
    found_absent += ct_strmap_get(m, probe) >= 0;
  }
  found_absent += ct_strmap_get(m, "x") >= 0;
  found_absent += ct_strmap_get(m, "") >= 0;
  CHECK(wrong == 0 && found_absent == 0, "%d keys with a wrong value, %d absent keys found", wrong, found_absent);
  CHECK(ct_strmap_put(m, "x1", -1, &err) == CT_EINVAL && ct_strmap_get(m, "x1") == 1, "a negative value is refused");
  CHECK(ct_strmap_get(NULL, "x1") == -1 && ct_strmap_get(m, NULL) == -1, "NULL map or key finds nothing");
  ct_strmap_free(m);
  ct_strmap_free(NULL);
  free(keys);
}

int main(void) {
  test_pool();
  test_strmap();
  return ct_check_report();
}
