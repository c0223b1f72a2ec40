/* A partitioned net (src/net/partition.c) whose worker group is spread over the processes of
 * an mpirun job (issue 19): worker w runs on rank w mod world, every process builds the same
 * net and runs its own workers' layers, and each bridge between processes is an MPI message on
 * a communicator of its own (mpi_part.c; built with Open MPI only). */
#ifndef CT_DIST_PART_H
#define CT_DIST_PART_H

#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"
#include "net/net.h"

typedef struct ct_dist_part ct_dist_part;

/* Starts MPI when needed and installs the bridges on net (which must outlive *out): one worker
 * group over every process. */
ct_status ct_dist_part_create(ct_net *net, ct_dist_part **out, ct_error *err);
/* The processes split into `groups` worker groups of world / groups consecutive ranks each
 * (worker w of a group on its rank w mod (world / groups)); the bridges stay inside a group. */
ct_status ct_dist_part_create_groups(ct_net *net, int groups, ct_dist_part **out, ct_error *err);
/* Removes the bridges from net and frees p (NULL: no-op); MPI stays up (ct_dist_mpi_finalize). */
void ct_dist_part_free(ct_dist_part *p, ct_net *net);
int ct_dist_part_rank(const ct_dist_part *p);  /* in its group */
int ct_dist_part_world(const ct_dist_part *p); /* processes of its group */
/* After backward: every process holds the whole gradient. Each parameter's gradient is made on
 * the one process that runs its layer (zeros elsewhere), or, for a layer that runs over the
 * ranks' batch slices (ct_net_layer_batch), in parts on every process: a sum over the processes
 * gives it.
 * For tests and checks: training moves no gradients (see the backend below). */
ct_status ct_dist_part_reduce(ct_dist_part *p, ct_net *net, ct_error *err);
/* A float buffer of n values summed over the processes, in place (for tests and logs). */
ct_status ct_dist_part_sum(ct_dist_part *p, float *v, size_t n, ct_error *err);

/* The cluster backend for `cortado train` under mpirun when the train net is partitioned over
 * W workers (partition_workers > 1) and the solver sets no cluster: with N <= W processes one
 * worker group over all of them; with N = G x W, G groups of W processes (one worker each),
 * data-parallel with each other, each group reading its own blocks of the data. start installs
 * the bridges and gives every rank rank 0's parameters, history and iteration; each rank then
 * updates the parameters of the layers it runs (their gradients are made there alone): with
 * several groups it first averages those gradients with the ranks that own the same shards in
 * the other groups, so an iteration moves the bridges' data and each rank's own shards only,
 * never a whole gradient. Rank 0 gathers its group's parameters (and history, for a snapshot)
 * right before it tests or snapshots. */
/* Servers' slices on a partitioned net (mpi_server.c): b holds nb parameter boundaries (every
 * shard's and whole parameter's start and end in the flat buffer, with 0 and total; sorted and
 * deduplicated in place). Fills cut[0..S] with 0, S - 1 boundaries, total: cut k the boundary
 * nearest to k x total / S that leaves one for each later cut; false when there are fewer
 * units than S (then the caller slices evenly). */
bool ct_dist_cuts_at(size_t *b, size_t nb, size_t total, int S, size_t *cut);

struct ct_cluster_ops;
/* The batch-sliced layers' parameters (ct_net_layer_batch) are every rank's: their gradients,
 * partial sums over each rank's rows, are summed over every rank of every group (divided by the
 * groups) before the update, so each rank applies the same one. A snapshot outside the loop's
 * planned ones (pycaffe's snapshot() after step(n)) gathers first (ct_cluster_sync), and so
 * does a test (pycaffe's test(), ct_cluster_sync_params). */
ct_status ct_dist_part_cluster_create(int groups, void **ctx, const struct ct_cluster_ops **ops, ct_error *err);

#endif
