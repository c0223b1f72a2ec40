/* The workers one process hosts (SINGA's nworkers_per_procs), without MPI.
 *
 * Worker 0 is the solver's own loop on the calling thread, with the solver's train net; workers
 * 1.. are threads, each with a train net of its own (built by the solver's ct_net_builder), its
 * own data shard (ct_dist_place_worker) and the same share of the cores as worker 0.
 *
 * The workers of one worker group that live in this process form a local group; its first
 * worker here is the local leader. Every iteration each member computes the gradient of its
 * part of the group's batch on its own net; the leader waits for the others, adds their
 * gradients to its own in member order (a fixed order, so the sum is the same from run to run)
 * and calls the backend's update for the group, which leaves fresh parameters in the leader's
 * net; the leader copies them into the members' nets and lets them compute the next iteration,
 * which they start at once, while the leader (worker 0: the solver's loop) computes its own.
 * Local groups run independently of each other; the backend makes them meet where the
 * framework needs it (Hogwild's sync, ct_local_barrier). A thread that fails (a non-finite
 * loss, a data error, a failed exchange) stops the process's workers; worker 0 reports it.
 *
 * Backends: the one-process group of worker threads below (ct_dist_local_create, cluster.h) and
 * the MPI backend (mpi_cluster.c), whose updates talk to other processes. */
#ifndef CT_DIST_LOCAL_H
#define CT_DIST_LOCAL_H

#include <stdbool.h>

#include "dist/cluster.h"

typedef struct ct_local ct_local;

/* The backend's update of local group lg at iteration iter, on the group's leader thread: the
 * leader's net holds the sum of the local members' gradients; fresh parameters go into its
 * parameter buffer. *rate receives the learning rate. */
typedef ct_status (*ct_local_update_fn)(void *ctx, int lg, int iter, float *rate, ct_error *err);

/* The workers process `rank` hosts under topology t (at least one). */
ct_status ct_local_create(const ct_topology *t, int rank, const Caffe__SolverParameter *sp, ct_local **out,
                          ct_error *err);
/* Stops the threads wherever they are, joins them and frees their nets. NULL is a no-op. */
void ct_local_free(ct_local *w);

int ct_local_nworkers(const ct_local *w);
int ct_local_ngroups(const ct_local *w);
int ct_local_group(const ct_local *w, int lg); /* the group's index in the job */
bool ct_local_leads(const ct_local *w, int lg); /* hosts the group's member 0 */
ct_net *ct_local_net(ct_local *w, int lg);      /* the local leader's net (lg 0: net0) */

/* Builds the nets of workers 1.. like net0 (worker 0's, already positioned on its data):
 * parameters copied from net0, the same partitions, data placed for each worker. `iter` is the
 * iteration every worker starts at. No thread starts yet. */
ct_status ct_local_build(ct_local *w, ct_net *net0, int iter, const ct_net_builder *nets, ct_error *err);
/* Starts the threads; update is called for every local group's iteration. */
ct_status ct_local_run(ct_local *w, ct_local_update_fn update, void *ctx, ct_error *err);
/* Worker 0's update at iteration iter (its gradient is in net0), from the solver's loop. */
ct_status ct_local_update(ct_local *w, int iter, float *rate, ct_error *err);
/* Inside the backend's update: the leaders of every running local group meet; the last to
 * arrive runs fn(arg) while the others wait, and all return its status. When the solver's loop
 * has ended (ct_local_finish) a waiting thread returns CT_OK without fn: it stops after this
 * iteration. */
ct_status ct_local_barrier(ct_local *w, ct_status (*fn)(void *arg, ct_error *err), void *arg, ct_error *err);
/* The solver's loop is done: every thread runs up to the iteration worker 0 reached (and no
 * further), then stops; joins them and returns the first failure of a thread. */
ct_status ct_local_finish(ct_local *w, ct_error *err);
/* Stops every thread at once (a failure elsewhere); ct_local_free joins them. */
void ct_local_stop(ct_local *w);

#endif
