/* The cluster: SINGA's worker-server frameworks as seen by the training loop (src/solvers).
 *
 * A solver with `cluster { ... }` or `framework:` set, or started by mpirun with more than one
 * process, owns a ct_cluster. The loop then changes in three places only: the update step becomes
 * ct_cluster_update (exchange gradients, get fresh parameters), display / test / snapshot happen
 * on the root (worker 0, MPI rank 0) alone, and a process that hosts only servers serves instead
 * of training. Everything that talks MPI lives behind this header (src/dist/mpi_*.c). */
#ifndef CT_DIST_CLUSTER_H
#define CT_DIST_CLUSTER_H

#include <stdbool.h>

#include "cortado.h"
#include "cortado.pb-c.h"
#include "dist/digest.h"
#include "dist/startup.h"
#include "dist/topology.h"
#include "net/net.h"
#include "solvers/update.h"

typedef struct ct_cluster ct_cluster;

/* Decides whether this run is distributed: *out = NULL (and CT_OK) for an ordinary single
 * process run. Otherwise starts MPI when the process was launched by mpirun, resolves the
 * topology and checks that it needs exactly as many processes as were started (an error naming
 * both numbers otherwise, on every rank). `path` names the solver file in messages. */
ct_status ct_cluster_create(const Caffe__SolverParameter *sp, const char *path, ct_cluster **out, ct_error *err);
/* The end of start-up on this process (issue 24). Under mpirun with several processes, every
 * process calls it exactly once: after its solver, nets, data, weights and snapshot are ready,
 * or as soon as any of that failed (st, err), with what it read of the job (d: the version, the
 * solver and the nets as parsed). It returns CT_OK when every process is ready for the same job.
 * Otherwise every process returns one failure whose message names the rank and the cause: a
 * process that failed (its own message), a process that never reported within CT_DIST_TIMEOUT,
 * or a solver field, a net or a version that differs from rank 0's. c may be NULL (the cluster
 * could not be made, or the solver not even read): MPI then starts here when mpirun started
 * the process. Outside mpirun, or in a cluster of one process, it returns st as it is. */
ct_status ct_cluster_agree(ct_cluster *c, ct_status st, const ct_digest *d, ct_error *err);
/* Whether some process of the job hosts only servers. Such a process builds its train net with
 * rank 0's Input stand-ins for the data layers (startup.h): after ct_cluster_agree every process
 * calls ct_cluster_share_stand_ins, rank 0 with its train net, which fills *text (malloc'ed) on
 * the others. */
bool ct_cluster_has_server_only(const ct_cluster *c);
ct_status ct_cluster_share_stand_ins(ct_cluster *c, ct_net *net, char **text, ct_error *err);
/* Marks the run failed on this process: ct_cluster_free then leaves MPI alone, the process
 * exits non-zero without finalizing and mpirun ends the whole job at once. */
void ct_cluster_abandon(ct_cluster *c);
/* Finishes the protocol when training ended normally (servers told, MPI finalized); after a
 * failure it leaves MPI alone so that mpirun ends the job. NULL is a no-op. */
void ct_cluster_free(ct_cluster *c);

bool ct_cluster_is_root(const ct_cluster *c);   /* displays, tests and snapshots */
bool ct_cluster_has_worker(const ct_cluster *c); /* false: this process only serves */
int ct_cluster_nworkers(const ct_cluster *c);   /* workers in the whole job */

/* CPU partitions (threads) per net for this process: the machine's cores shared among the
 * job's processes on it (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE) and among the workers each
 * process hosts (nworkers_per_procs), at least 1. */
int ct_cluster_local_partitions(const ct_cluster *c);
/* OpenBLAS's threads for this process (issue 24). OpenBLAS keeps one thread pool per process:
 * when several workers (threads) share the process each must call it single-threaded, or their
 * calls queue for the one pool while its threads spin on the cores the other workers need; a
 * process with one worker may give it its share of the machine's cores. */
int ct_cluster_blas_threads(const ct_cluster *c);

/* The train net of this worker: batch sizes of the TRAIN phase's layers divided among its group
 * (ct_topology_split_batch; source names the file in messages). */
ct_status ct_cluster_prepare_train_param(const ct_cluster *c, Caffe__NetParameter *np, const char *source, int level,
                                         const char *const *stages, ct_error *err);

/* Disjoint data without touching the data layers: the W workers read the record stream in
 * blocks of one batch, worker shard s taking blocks s, s + W, s + 2W, ... (the members of a
 * group together read the group's batch; groups read disjoint blocks). ct_cluster_start moves
 * the train net's data cursors to the worker's first block and tells every data layer's feed to
 * skip the other workers' W - 1 blocks after each batch (ct_feed_set_skip), so that its prefetch
 * thread reads exactly this worker's blocks; after every train forward ct_cluster_next_batch
 * moves the cursors of any other layer that has one. Worker 0's cursor thus stays at the
 * whole-stream position, which is what its snapshots save. */
void ct_cluster_next_batch(const ct_cluster *c, ct_net *net);
/* Moves every data cursor of `net` on by `blocks` batches of that layer. */
void ct_dist_skip_batches(ct_net *net, uint64_t blocks);
/* Every data layer of `net` reads one block in W (see above); W = 1 reads contiguously. */
void ct_dist_set_stride(ct_net *net, int nworkers);
/* After a train forward: the cursors of layers without a feed skip W - 1 blocks. */
void ct_dist_next_batch(ct_net *net, int nworkers);
/* The data of worker w on a net of its own: `from` is positioned for worker from_w (whole-stream
 * position plus from_w's shard); net gets the same position moved to w's shard, and the stride. */
void ct_dist_place_worker(ct_net *net, const ct_net *from, const ct_topology *t, int from_w, int w);

/* Builds one more train net like the solver's (for worker groups that are threads). */
typedef struct ct_net_builder {
  ct_status (*build)(void *ctx, ct_net **out, ct_error *err);
  void *ctx;
} ct_net_builder;

/* After the solver restored any snapshot: rank 0's parameters, history and iteration go to
 * every process; servers take their slices; OpenBLAS gets ct_cluster_blas_threads threads; in-
 * process worker groups start their threads. */
ct_status ct_cluster_start(ct_cluster *c, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                           ct_error *err);
/* The update step of iteration `iter` (replaces ct_update_apply): the net's gradients go out,
 * fresh parameters come back into the net. *rate receives the learning rate. */
ct_status ct_cluster_update(ct_cluster *c, int iter, float *rate, ct_error *err);
/* A server-only process: serve until every worker group is done. */
ct_status ct_cluster_serve(ct_cluster *c, ct_error *err);
/* On the root before a snapshot: the servers' current parameters and update history. */
ct_status ct_cluster_collect(ct_cluster *c, ct_error *err);
/* Called by every process before a snapshot: a partitioned net's worker group over several ranks
 * gives rank 0 the shards its other ranks own (values and history), when rank 0 does not hold
 * this iteration's already (issue 19); nothing in the other frameworks. */
ct_status ct_cluster_sync(ct_cluster *c, ct_error *err);
/* The same before a test outside the loop's planned ones (pycaffe's test() after step(n)):
 * the values only. A no-op wherever the loop itself tests (rank 0 alone calls it there). */
ct_status ct_cluster_sync_params(ct_cluster *c, ct_error *err);
/* End of training on this process: tell the servers, serve until everyone is done. */
ct_status ct_cluster_finish(ct_cluster *c, ct_error *err);

/* issue 23: the training loop's action request (ct_solver_action, ranked so that the largest
 * wins) at an iteration boundary, agreed with the processes this one meets in collectives, so
 * that a signal reaching the ranks at different iterations stops (or snapshots) all of them at
 * the same boundary (mpi_cluster.c says which processes agree when). *agreed receives the action
 * to take now; a request may also be held for a later boundary (0 meanwhile). Fails, naming it,
 * when a rank does not take part within CT_DIST_TIMEOUT. A backend without `agree_action`
 * gives the request back unchanged. */
ct_status ct_cluster_agree_action(ct_cluster *c, int request, int *agreed, ct_error *err);

/* Bytes this process sent and seconds it waited on communication since the last call, and
 * the number of updates they cover. */
void ct_cluster_take_stats(ct_cluster *c, double *bytes, double *wait_s, int *updates);
/* "DOWNPOUR: 2 worker groups of ..., rank 0 of 3" for the log. */
const char *ct_cluster_describe(const ct_cluster *c);

/* ---- the backend contract (src/dist/mpi_cluster.c; a stub without MPI) ---- */

typedef struct ct_cluster_ops {
  ct_status (*start)(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                    ct_error *err);
  ct_status (*update)(void *ctx, int iter, float *rate, ct_error *err);
  ct_status (*serve)(void *ctx, ct_error *err);
  ct_status (*collect)(void *ctx, ct_error *err);
  ct_status (*finish)(void *ctx, ct_error *err);
  void (*stats)(void *ctx, double *bytes, double *wait_s, int *updates);
  void (*destroy)(void *ctx, bool clean); /* clean: finalize MPI */
  /* issue 23 (may be NULL): see ct_cluster_agree_action */
  ct_status (*agree_action)(void *ctx, int request, int *agreed, ct_error *err);
  /* issue 19 (may be NULL): see ct_cluster_sync (history: true) and ct_cluster_sync_params */
  ct_status (*sync)(void *ctx, bool history, ct_error *err);
} ct_cluster_ops;

/* Whether a process launcher (mpirun) started this process, and the job size it announced. */
bool ct_dist_launched(int *world, int *rank);
/* Starts MPI (once) and returns the world size and this rank; finalizes it (once). */
ct_status ct_dist_mpi_init(int *world, int *rank, ct_error *err);
void ct_dist_mpi_finalize(void);
/* CT_DIST_TIMEOUT: seconds a process waits on a silent peer (default 300). */
double ct_dist_timeout_s(void);
/* The start-up exchange (mpi_startup.c): this process's record to rank 0, the verdict back.
 * *all_know: every process has the verdict (then they can leave together). */
ct_status ct_dist_mpi_agree(const ct_startup_rec *mine, int rank, int world, double timeout_s, bool *all_know,
                            ct_error *err);
/* After a failure that every process knows of: each exit waits (10 s at most) at a barrier
 * until all have reached theirs, i.e. have printed the message, then finalizes MPI. */
void ct_dist_mpi_exit_together(void);
/* rank 0's *text (NULL: it failed to make it) to every process, malloc'ed there. */
ct_status ct_dist_mpi_share_text(char **text, int rank, ct_error *err);
/* One process, one worker group of several workers as threads (local.c). */
ct_status ct_dist_local_create(const ct_topology *t, const Caffe__SolverParameter *sp, void **ctx,
                               const ct_cluster_ops **ops, ct_error *err);
/* In-process Hogwild (threads.c): all worker groups in this one process. */
ct_status ct_dist_threads_create(const ct_topology *t, const Caffe__SolverParameter *sp, void **ctx,
                                 const ct_cluster_ops **ops, ct_error *err);
ct_status ct_dist_mpi_create(const ct_topology *t, int rank, const Caffe__SolverParameter *sp, void **ctx,
                             const ct_cluster_ops **ops, ct_error *err);

/* Defined in src/solvers/update.c next to the rule it mirrors: clips `diff` (laid out as u's
 * parameters) by its global L2 norm exactly as ct_update_apply clips u's gradients (Caffe's
 * clip_gradients; nothing when it is negative). A worker group clips its whole gradient before
 * slicing it for several servers, so every slice is scaled by the same global factor. */
void ct_update_clip_diff(const ct_update_ctx *u, float *diff);

#endif
