/* The MPI backend of the cluster: worker groups, server groups and the four frameworks.
 *
 * Every process builds the whole solver (nets, update rule), so that any of them can take any
 * role; rank 0 is worker 0 and the root. A process hosts nworkers_per_procs workers (local.h):
 * worker 0 is the solver's loop, the others are threads with nets of their own; the members of
 * a worker group inside one process add their gradients in member order before the group's
 * update, and get its fresh parameters after it. Per update of a worker group:
 *  - a group spread over several processes (nworkers_per_group > nworkers_per_procs) adds the
 *    processes' sums with an allreduce; the sum over the J members divided by J is the gradient
 *    of the group's batch (each member ran a 1/J share of it: dim-0 partitioning);
 *  - ALLREDUCE: every process then applies the update itself (the group is the whole job);
 *  - SERVERS (Sandblaster with one worker group, Downpour with several): the group's leader (the
 *    process with member 0) clips the whole gradient by its global norm (clip_gradients, with the
 *    solver's own rule), sends slice k to server k (Update), which applies the solver's rule to
 *    its slice with its own history and replies with the fresh slice (Get); the leader
 *    broadcasts the fresh parameters to the group's other processes. Groups do this
 *    independently: asynchronous;
 *  - HOGWILD: every group updates its own copy; every sync_freq updates the groups exchange what
 *    they changed since the last sync and every copy takes the sum (SINGA's server-group sync):
 *    the groups of a process meet (ct_local_barrier), add their changes, and one allreduce adds
 *    the processes' sums.
 *
 * Who talks MPI: one thread per process. With one worker in the process it is the solver's own
 * thread, inside the update, as always. With several, a communication thread (SINGA's stub)
 * makes every MPI call after the start, so MPI must provide MPI_THREAD_SERIALIZED (never
 * MULTIPLE): the group leaders hand it jobs (allreduce, broadcast, the exchange with the
 * servers, the snapshot fetch, the end of training) and wait; it runs them one at a time, and
 * between jobs it serves the servers the process hosts, so they answer while its workers
 * compute. A process's jobs run one after the other, each complete before the next starts, so
 * replies from the servers never mix; collectives only run where a process hosts one worker
 * group (its jobs come in iteration order) or, for Hogwild's sync, once for all its groups, so
 * every process issues them in the same order.
 * Waits are polling loops that also serve requests for the servers hosted in the same process
 * and give up after CT_DIST_TIMEOUT seconds (default 300) with a message naming the rank waited
 * on. A process that dies is reported by mpirun, which ends the job. */
#include <mpi.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/mpi_internal.h"

static int g_thread_level = MPI_THREAD_SINGLE; /* what MPI_Init_thread provided */

ct_status ct_dist_mpi_init(int *world, int *rank, ct_error *err) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    /* SERIALIZED: a process with several workers makes its MPI calls on a thread of its own */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &g_thread_level) != MPI_SUCCESS)
      return ct_fail(err, CT_EIO, "MPI_Init failed");
  } else {
    MPI_Query_thread(&g_thread_level);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_size(MPI_COMM_WORLD, world);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  return CT_OK;
}

void ct_dist_mpi_finalize(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

/* ---- the update of one worker group, on its local leader's thread ---- */

static ct_status hogwild_sync(void *arg, ct_error *err) {
  mpi_ctx *c = arg;
  size_t n = c->total;
  memset(c->syncbuf, 0, n * sizeof(float));
  for (int i = 0; i < c->nlg; i++) { /* this process's groups, in order */
    const float *d = c->lg[i].data;
    for (size_t e = 0; e < n; e++) c->syncbuf[e] += d[e] - c->base[e];
  }
  job j = {.kind = JOB_REDUCE, .buf = c->syncbuf, .comm = c->workers_comm, .what = "summing the worker groups' updates"};
  CT_TRY(ct_mpi_submit(c, &j, err));
  /* every process of a group spread over several sent the group's change */
  int R = ct_topology_ranks_per_group(&c->t);
  if (R > 1)
    for (size_t e = 0; e < n; e++) c->syncbuf[e] *= 1.0f / (float)R;
  for (size_t e = 0; e < n; e++) c->base[e] += c->syncbuf[e];
  for (int i = 0; i < c->nlg; i++) memcpy(c->lg[i].data, c->base, n * sizeof(float));
  return CT_OK;
}

static ct_status group_update(void *ctx, int lgi, int iter, float *rate, ct_error *err) {
  mpi_ctx *c = ctx;
  lgs *g = &c->lg[lgi];
  int J = c->t.nworkers_per_group;
  if (ct_topology_ranks_per_group(&c->t) > 1) {
    job j = {.kind = JOB_REDUCE, .buf = g->diff, .comm = c->group_comm, .what = "adding gradients in the worker group"};
    CT_TRY(ct_mpi_submit(c, &j, err));
  }
  if (J > 1) {
    const float scale = 1.0f / (float)J;
    for (size_t i = 0; i < c->total; i++) g->diff[i] *= scale;
  }
  switch (c->t.mode) {
    case CT_DIST_ALLREDUCE: *rate = ct_update_apply(g->upd, iter); break;
    case CT_DIST_HOGWILD:
      *rate = ct_update_apply(g->upd, iter);
      if (c->t.nworker_groups > 1 && (iter + 1) % c->t.sync_freq == 0)
        CT_TRY(ct_local_barrier(c->local, hogwild_sync, c, err));
      break;
    case CT_DIST_SERVERS:
      if (g->leads) {
        if (c->sp->clip_gradients >= 0) ct_update_clip_diff(&c->clip_tpl, g->diff); /* the global norm */
        job j = {.kind = JOB_EXCHANGE, .g = g, .iter = iter};
        CT_TRY(ct_mpi_submit(c, &j, err));
      }
      if (ct_topology_ranks_per_group(&c->t) > 1) {
        job j = {.kind = JOB_BCAST, .buf = g->data, .comm = c->group_comm,
                 .what = "receiving parameters from the group's leader"};
        CT_TRY(ct_mpi_submit(c, &j, err));
      }
      *rate = ct_update_rate(c->sp, iter);
      break;
  }
  return CT_OK;
}

static ct_status m_update(void *ctx, int iter, float *rate, ct_error *err) {
  mpi_ctx *c = ctx;
  CT_TRY(ct_local_update(c->local, iter, rate, err));
  c->next_iter = iter + 1; /* m_agree's boundary */
  pthread_mutex_lock(&c->stats_mu);
  c->updates++;
  pthread_mutex_unlock(&c->stats_mu);
  return CT_OK;
}

/* ---- start, end ---- */

static ct_status m_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                         ct_error *err) {
  mpi_ctx *c = ctx;
  /* the first collectives: only after every process has agreed to start (ct_cluster_agree) */
  int first, nw = ct_topology_workers_on(&c->t, c->rank, &first);
  int group = nw ? first / c->t.nworkers_per_group : -1;
  MPI_TRY(c, MPI_Comm_split(MPI_COMM_WORLD, nw ? group : MPI_UNDEFINED, c->rank, &c->group_comm),
          "making the worker group's communicator", -1);
  MPI_TRY(c, MPI_Comm_split(MPI_COMM_WORLD, nw ? 0 : MPI_UNDEFINED, c->rank, &c->workers_comm),
          "making the workers' communicator", -1);
  c->upd = upd;
  c->clip_tpl = *upd;
  c->clip_tpl.pool = NULL;
  c->total = ct_net_param_total(net);
  if (c->total > (size_t)INT_MAX / 4)
    return ct_fail(err, CT_EUNSUPPORTED, "%zu parameters are too many for one MPI message", c->total);
  /* one set of starting values for everybody: rank 0's (weights or snapshot as it loaded them) */
  float *data = ct_net_param_buffer(net);
  MPI_TRY(c, MPI_Bcast(data, (int)c->total, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcasting parameters from", 0);
  for (int k = 0; k < upd->nsets; k++)
    MPI_TRY(c, MPI_Bcast(upd->history[k], (int)c->total, MPI_FLOAT, 0, MPI_COMM_WORLD), "broadcasting history from", 0);
  MPI_TRY(c, MPI_Bcast(iter, 1, MPI_INT, 0, MPI_COMM_WORLD), "broadcasting the iteration from", 0);
  if (c->local) {
    CT_TRY(ct_local_build(c->local, net, *iter, nets, err));
    c->nlg = ct_local_ngroups(c->local);
    if (!(c->lg = calloc((size_t)c->nlg, sizeof *c->lg))) return ct_fail(err, CT_ENOMEM, "out of memory");
    for (int i = 0; i < c->nlg; i++) {
      lgs *g = &c->lg[i];
      g->group = ct_local_group(c->local, i);
      g->leads = ct_local_leads(c->local, i);
      g->net = ct_local_net(c->local, i);
      g->data = ct_net_param_buffer(g->net);
      g->diff = ct_net_diff_buffer(g->net);
      if (i == 0) {
        g->upd = upd;
      } else if (c->t.mode != CT_DIST_SERVERS) { /* a copy of its own: the rule and its own history */
        CT_TRY(ct_update_init(&g->own, c->sp, g->data, g->diff, c->total, ct_net_learnable(g->net),
                              ct_net_num_learnable(g->net), err));
        g->own_ok = true;
        g->own.pool = ct_net_placement(g->net)->pool;
        for (int k = 0; k < upd->nsets; k++) memcpy(g->own.history[k], upd->history[k], c->total * sizeof(float));
        g->upd = &g->own;
      }
    }
  }
  if (c->t.mode == CT_DIST_HOGWILD && c->local) {
    c->base = malloc((c->total + 1) * sizeof(float));
    c->syncbuf = malloc((c->total + 1) * sizeof(float));
    if (!c->base || !c->syncbuf) return ct_fail(err, CT_ENOMEM, "out of memory");
    memcpy(c->base, data, c->total * sizeof(float));
  }
  if (c->t.mode == CT_DIST_SERVERS) CT_TRY(ct_mpi_start_servers(c, net, upd, err));
  if (c->local && ct_local_nworkers(c->local) > 1) {
    c->threaded = true; /* from here on only the communication thread talks MPI */
    if (pthread_create(&c->comm, NULL, ct_mpi_comm_main, c) != 0)
      return ct_fail(err, CT_ENOMEM, "rank %d: cannot start the communication thread", c->rank);
    c->comm_started = true;
  }
  if (c->local) CT_TRY(ct_local_run(c->local, group_update, c, err));
  return CT_OK;
}

static ct_status m_serve(void *ctx, ct_error *err) { return ct_mpi_serve_until_done(ctx, err); }

static ct_status m_collect(void *ctx, ct_error *err) {
  mpi_ctx *c = ctx;
  if (c->t.mode != CT_DIST_SERVERS || c->rank != 0) return CT_OK;
  job j = {.kind = JOB_COLLECT};
  return ct_mpi_submit(c, &j, err);
}

static ct_status m_finish(void *ctx, ct_error *err) {
  mpi_ctx *c = ctx;
  if (c->local) CT_TRY(ct_local_finish(c->local, err)); /* the threads' last iterations */
  if (c->t.mode == CT_DIST_SERVERS) {
    job j = {.kind = JOB_FINISH};
    CT_TRY(ct_mpi_submit(c, &j, err));
  }
  ct_mpi_stop_comm(c);
  return CT_OK;
}

static void m_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  mpi_ctx *c = ctx;
  pthread_mutex_lock(&c->stats_mu);
  *bytes = c->bytes, *wait_s = c->wait_s, *updates = c->updates;
  c->bytes = 0, c->wait_s = 0, c->updates = 0;
  pthread_mutex_unlock(&c->stats_mu);
}

static void m_destroy(void *ctx, bool clean) {
  mpi_ctx *c = ctx;
  if (!c) return;
  if (!clean) atomic_store(&c->abort, 1);
  ct_mpi_stop_comm(c);
  ct_local_free(c->local); /* joins the worker threads */
  for (int i = 0; i < c->nlg; i++)
    if (c->lg[i].own_ok) ct_update_free(&c->lg[i].own);
  free(c->lg);
  for (int i = 0; i < c->nsrv; i++) {
    server *v = &c->srv[i];
    if (v->upd_ok) ct_update_free(&v->upd);
    free(v->data);
    free(v->grad);
    free(v->reply);
    free(v->params);
  }
  free(c->srv);
  free(c->cut);
  free(c->heard);
  free(c->group_done);
  if (c->outbox)
    for (int k = 0; k < c->nslices; k++) free(c->outbox[k]);
  free(c->outbox);
  free(c->reqs);
  free(c->peers);
  free(c->inbox);
  free(c->snapbuf);
  free(c->base);
  free(c->syncbuf);
  if (clean) {
    /* after a failure MPI is left alone: mpirun sees the non-zero exit and ends the job */
    if (c->group_comm != MPI_COMM_NULL) MPI_Comm_free(&c->group_comm);
    if (c->workers_comm != MPI_COMM_NULL) MPI_Comm_free(&c->workers_comm);
    ct_dist_mpi_finalize();
  }
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv_job);
  pthread_cond_destroy(&c->cv_done);
  pthread_mutex_destroy(&c->stats_mu);
  free(c);
}

/* issue 23: a signal to mpirun reaches every rank (Open MPI passes SIGTERM on for SIGINT,
 * SIGTERM and SIGHUP), each at its own iteration. Processes that meet in a collective must stop
 * at the same iteration boundary, or the ones that go on wait for the others until the timeout:
 * they agree, the largest request winning, on the communicator they meet on:
 *  - ALLREDUCE: every worker process, at every boundary (they meet at every update);
 *  - HOGWILD with several worker groups: every worker process, at the boundary after each sync
 *    (every sync_freq updates); a request made between syncs waits for the next one, so that
 *    every process has made the same syncs when it stops;
 *  - a worker group spread over several processes (SANDBLASTER, DOWNPOUR or HOGWILD without
 *    syncs): the group's processes, at every boundary;
 *  - otherwise (a group within one process, Downpour's groups against their servers) the
 *    process acts on its own request; the servers serve until every group has said it is done.
 * The agreement is a nonblocking allreduce waited on like the others: a stopped rank is named
 * after CT_DIST_TIMEOUT (issue 24) instead of holding every other rank for ever. */
static ct_status m_agree(void *ctx, int request, int *agreed, ct_error *err) {
  mpi_ctx *c = ctx;
  *agreed = request;
  if (!c->local) return CT_OK;
  if (request > c->pending) c->pending = request;
  MPI_Comm comm = MPI_COMM_NULL;
  if (c->t.mode == CT_DIST_ALLREDUCE) {
    comm = c->workers_comm;
  } else if (c->t.mode == CT_DIST_HOGWILD && c->t.nworker_groups > 1) {
    *agreed = 0;
    if (c->next_iter % c->t.sync_freq != 0) return CT_OK; /* until the next sync */
    comm = c->workers_comm;
  } else if (ct_topology_ranks_per_group(&c->t) > 1) {
    comm = c->group_comm;
  }
  int v = c->pending;
  c->pending = 0;
  if (comm != MPI_COMM_NULL) {
    job j = {.kind = JOB_AGREE, .ival = &v, .comm = comm, .what = "agreeing on the action a signal asked for"};
    CT_TRY(ct_mpi_submit(c, &j, err));
  }
  *agreed = v;
  return CT_OK;
}

static const ct_cluster_ops k_mpi_ops = {
    .start = m_start, .update = m_update, .serve = m_serve, .collect = m_collect,
    .finish = m_finish, .stats = m_stats, .destroy = m_destroy, .agree_action = m_agree,
};

ct_status ct_dist_mpi_create(const ct_topology *t, int rank, const Caffe__SolverParameter *sp, void **out,
                             const ct_cluster_ops **ops, ct_error *err) {
  mpi_ctx *c = calloc(1, sizeof *c);
  if (!c) return ct_fail(err, CT_ENOMEM, "out of memory");
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv_job, NULL);
  pthread_cond_init(&c->cv_done, NULL);
  pthread_mutex_init(&c->stats_mu, NULL);
  atomic_init(&c->abort, 0);
  *out = c;
  *ops = &k_mpi_ops;
  c->t = *t;
  c->sp = sp;
  c->sp_srv = *sp;
  c->sp_srv.clip_gradients = -1;
  c->rank = rank;
  MPI_Comm_size(MPI_COMM_WORLD, &c->world);
  c->group_comm = c->workers_comm = MPI_COMM_NULL;
  c->timeout_s = ct_dist_timeout_s();
  int first, nw = ct_topology_workers_on(t, rank, &first);
  if (nw > 1 && g_thread_level < MPI_THREAD_SERIALIZED)
    return ct_fail(err, CT_EUNSUPPORTED, "rank %d hosts %d workers (nworkers_per_procs), which needs an MPI with "
                   "MPI_THREAD_SERIALIZED; this one provides thread level %d", rank, nw, g_thread_level);
  if (nw) CT_TRY(ct_local_create(t, rank, sp, &c->local, err));
  int sfirst, ns = t->mode == CT_DIST_SERVERS ? ct_topology_servers_on(t, rank, &sfirst) : 0;
  if (ns > 0) {
    c->srv = calloc((size_t)ns, sizeof *c->srv);
    if (!c->srv) return ct_fail(err, CT_ENOMEM, "out of memory");
    c->nsrv = ns;
    c->heard = calloc((size_t)t->nworker_groups, sizeof *c->heard);
    c->group_done = calloc((size_t)t->nworker_groups, sizeof *c->group_done);
    if (!c->heard || !c->group_done) return ct_fail(err, CT_ENOMEM, "out of memory");
    for (int i = 0; i < ns; i++) c->srv[i].slice = (sfirst + i) % t->nservers_per_group;
    c->expect_done = t->nworker_groups;
  }
  return CT_OK;
}
