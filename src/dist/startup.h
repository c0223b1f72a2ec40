/* The start of a cluster job (issue 24), without MPI: what each process reports before training,
 * the one verdict every process then acts on, and the stand-ins that spare a server-only process
 * the data.
 *
 * Every process of the job, whatever happened to it while it read the solver, built its nets,
 * opened its data and restored a snapshot, ends its start-up with one record: its status, its
 * error message and the digest of its job (digest.h). Rank 0 collects them and decides
 * (src/dist/mpi_startup.c); every process then fails with the same message or trains. So a
 * mistake that one process sees reaches all of them at once, instead of leaving the others in a
 * collective that the failed process never joins. */
#ifndef CT_DIST_STARTUP_H
#define CT_DIST_STARTUP_H

#include <stdint.h>

#include "cortado.h"
#include "dist/digest.h"
#include "net/net.h"

enum { CT_STARTUP_MSG = 1024, CT_STARTUP_MAGIC = 0x43545355 /* "CTSU" */ };

typedef struct ct_startup_rec {
  uint32_t magic, size; /* a process of another layout is caught by these, not misread */
  int32_t rank, status;
  ct_digest digest;
  char msg[CT_STARTUP_MSG]; /* the error when status != CT_OK */
} ct_startup_rec;

/* A record of this process: st and err's message, the digest d (NULL: none read). */
void ct_startup_rec_fill(ct_startup_rec *r, int rank, ct_status st, const ct_error *err, const ct_digest *d);

/* The verdict over the records of a job of `world` processes, recs[r] NULL when rank r did not
 * report within wait_s seconds: CT_OK when every process reported success for the same job,
 * else the status to fail with and, in msg, a message naming the rank(s) and the cause. In
 * order: ranks that did not report, a different cortado, a different job (solver fields,
 * nets: the job of rank 0 is the reference), then the lowest rank that failed, with its message. */
ct_status ct_startup_verdict(const ct_startup_rec *const *recs, int world, double wait_s, char *msg, size_t n);

/* Processes that host only servers need the parameters' layout, not the data: rank 0 describes
 * its train net's data layers as Input layers of the same names, tops and shapes (prototxt
 * text, "" when it has none; malloc'ed, NULL when out of memory), and a server-only process
 * puts them in place of the layers of that name that its TRAIN net would build. The learnable
 * parameters, their order and sizes are the same as with the data, since layers only see their
 * bottoms' shapes. */
char *ct_dist_stand_ins(ct_net *net);
ct_status ct_dist_use_stand_ins(Caffe__NetParameter *np, const char *text, int level, const char *const *stages,
                                ct_error *err);

#endif
