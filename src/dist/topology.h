/* SINGA's cluster topology: which process hosts which worker and server, derived from the
 * solver's `cluster { ... }` message and its `framework:` shorthand. Pure arithmetic, no MPI.
 *
 * Workers are numbered w = g * nworkers_per_group + j (group g, member j) and live on process
 * w / nworkers_per_procs. Servers are numbered s = sg * nservers_per_group + k and live on
 * process s / nservers_per_procs, after the worker processes when server_worker_separate is set,
 * else on the worker processes themselves. The process count follows from these numbers.
 *
 * A process hosts nworkers_per_procs workers (threads, src/dist/local.h): either whole worker
 * groups (nworkers_per_procs a multiple of nworkers_per_group) or an equal share of one group
 * spread over nworkers_per_group / nworkers_per_procs processes; one must divide the other. */
#ifndef CT_DIST_TOPOLOGY_H
#define CT_DIST_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"
#include "cortado.pb-c.h"

typedef enum ct_dist_mode {
  CT_DIST_ALLREDUCE, /* one worker group; gradients summed by MPI_Allreduce; every rank updates */
  CT_DIST_SERVERS,   /* servers update: Sandblaster (one worker group) or Downpour (several) */
  CT_DIST_HOGWILD    /* each worker group updates its own copy; changes summed every sync_freq */
} ct_dist_mode;

typedef struct ct_topology {
  ct_dist_mode mode;
  const char *name; /* "SANDBLASTER", "ALLREDUCE", "DOWNPOUR", "HOGWILD" */
  int nworker_groups, nworkers_per_group;
  int nserver_groups, nservers_per_group; /* 0 servers in ALLREDUCE and in-rank HOGWILD */
  int nworkers_per_procs, nservers_per_procs;
  bool separate;
  int sync_freq;
  int worker_procs, server_procs, nprocs;
  char ignored[160]; /* given fields this framework has no use for ("nservers_per_group"), "" if none */
} ct_topology;

/* Fills t from sp->cluster and sp->framework for a job of `world` processes (presets size
 * themselves from it; explicit cluster fields win). With neither set, world > 1 means the
 * ALLREDUCE preset. Checks every field and combination; messages name them. */
ct_status ct_topology_resolve(const Caffe__SolverParameter *sp, int world, ct_topology *t, ct_error *err);

/* A one-line description for logs and error messages. */
void ct_topology_describe(const ct_topology *t, char *buf, size_t n);

int ct_topology_nworkers(const ct_topology *t);
int ct_topology_nservers(const ct_topology *t);
/* The process of worker w / server s. */
int ct_topology_worker_proc(const ct_topology *t, int w);
int ct_topology_server_proc(const ct_topology *t, int s);
/* The processes that host the members of one worker group (1 when a process hosts whole groups). */
int ct_topology_ranks_per_group(const ct_topology *t);
/* The first worker on process p and how many it hosts (0 when none). */
int ct_topology_workers_on(const ct_topology *t, int p, int *first);
int ct_topology_servers_on(const ct_topology *t, int p, int *first);

/* Server k of a group owns floats [off, off + len) of the flat parameter buffer: contiguous
 * slices of nearly equal size (balanced by size). */
void ct_topology_slice(size_t total, int nslices, int k, size_t *off, size_t *len);

/* The data shard of worker w: it reads batch-sized blocks b of the (possibly shuffled) record
 * stream with b % nworkers == shard. Chosen so that group g reads blocks b % ngroups == g and
 * the members of a group together read the group's batch (dim-0 partitioning). */
int ct_topology_shard(const ct_topology *t, int w);

/* Divides the batch_size of every layer of np that the TRAIN net (level, stages) builds by
 * nworkers_per_group (the group's members split its batch); the TEST phase's layers keep
 * theirs. A batch that does not divide is an error naming `source` (the file), the layer and
 * the phase. */
ct_status ct_topology_split_batch(const ct_topology *t, Caffe__NetParameter *np, const char *source, int level,
                                  const char *const *stages, ct_error *err);

#endif
