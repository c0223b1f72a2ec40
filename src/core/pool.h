/* A fixed set of worker threads that run parallel-for regions (CcT's batch partitions): no
 * thread is created per layer call. The calling thread takes part as worker 0. */
#ifndef CT_POOL_H
#define CT_POOL_H

#include "cortado.h"

typedef struct ct_pool ct_pool;

/* nthreads >= 1 (1: everything runs on the caller). */
ct_status ct_pool_create(int nthreads, ct_pool **out, ct_error *err);
void ct_pool_free(ct_pool *p);
int ct_pool_size(const ct_pool *p);
/* Runs fn(ctx, i) for every i in [0, n), each task once, on whichever worker claims it first
 * (tasks are claimed in index order), and returns when all are done. Tasks must not call ct_pool_run themselves. p may be NULL (runs serially). */
void ct_pool_run(ct_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx);
/* The number of online CPU cores (at least 1). */
int ct_cpu_count(void);

#endif
