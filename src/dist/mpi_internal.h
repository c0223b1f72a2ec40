/* The MPI backend's shared parts, for src/dist/mpi_*.c only: message tags and kinds, the state
 * of the servers and worker groups a process hosts, the jobs of the communication thread, and
 * the helpers the files share. mpi_cluster.c describes the design; the files split it by concern:
 *   mpi_cluster.c  MPI start and end, a worker group's update per framework, start / finish
 *   mpi_jobs.c     the jobs (allreduce, broadcast, exchange with the servers, snapshot fetch)
 *                  and the communication thread that runs them
 *   mpi_server.c   the servers: requests, their slices, the end of training
 *   mpi_wait.c     waiting on requests while serving, with the timeout and the liveness check
 *                  that names a stopped rank
 *   mpi_startup.c  the start-up agreement (startup.h) */
#ifndef CT_DIST_MPI_INTERNAL_H
#define CT_DIST_MPI_INTERNAL_H

#include <mpi.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "dist/cluster.h"
#include "dist/local.h"

enum { TAG_PING = 42, TAG_PONG = 43, TAG_SRV = 100, TAG_PARAMS = 1000, TAG_SNAP = 12000 }; /* 40, 41: start-up */
enum { K_UPDATE = 1, K_DONE = 2, K_SNAPREQ = 3 };
#define MAX_SLICES 10000

typedef struct msg_head {
  int32_t kind, iter, slice, group;
} msg_head;

typedef struct server {
  int slice;
  size_t off, len;
  float *data, *grad, *reply; /* reply: data + history sets, for snapshots */
  ct_update_param *params;
  ct_update_ctx upd;
  bool upd_ok;
} server;

/* a worker group as this process sees it (its local leader's net) */
typedef struct lgs {
  int group;
  bool leads; /* member 0 is here: it talks to the servers */
  ct_net *net;
  float *data, *diff;
  ct_update_ctx *upd; /* ALLREDUCE, HOGWILD: the rule over this copy (group 0: the solver's) */
  ct_update_ctx own;
  bool own_ok;
} lgs;

typedef enum job_kind { JOB_REDUCE, JOB_BCAST, JOB_EXCHANGE, JOB_COLLECT, JOB_FINISH, JOB_AGREE } job_kind;

typedef struct job {
  job_kind kind;
  float *buf;
  int *ival; /* JOB_AGREE: one int, replaced by its maximum over comm */
  MPI_Comm comm;
  const char *what;
  lgs *g;
  int iter;
  ct_status st;
  ct_error err;
  bool done;
  struct job *next;
} job;

typedef struct mpi_ctx {
  ct_topology t;
  const Caffe__SolverParameter *sp;
  Caffe__SolverParameter sp_srv; /* the servers' copy: no clip_gradients (the leader clips the whole) */
  int rank, world;
  MPI_Comm group_comm, workers_comm;
  int nsrv;
  server *srv;
  int ndone, expect_done;
  double *heard;     /* per worker group: when its last request came (servers only) */
  bool *group_done;  /* per worker group: it said training is done */
  char *inbox;
  size_t inbox_cap;
  /* the workers' side */
  ct_local *local;
  int nlg;
  lgs *lg;
  ct_update_ctx *upd;     /* the solver's */
  ct_update_ctx clip_tpl; /* its layout, for clipping any group's gradient */
  size_t total;
  int nslices;
  size_t *cut; /* nslices + 1 slice boundaries (ct_mpi_slice; NULL: ct_topology_slice's) */
  char **outbox;
  MPI_Request *reqs;
  int *peers;
  float *snapbuf;
  float *base, *syncbuf; /* HOGWILD: the parameters at the last sync; the changes */
  double timeout_s;
  int pending;   /* issue 23: the solver loop's action request not yet agreed (m_agree) */
  int next_iter; /* the iteration after the solver loop's last update */
  /* the communication thread (several workers in this process) */
  bool threaded, comm_started;
  pthread_t comm;
  pthread_mutex_t mu;
  pthread_cond_t cv_job, cv_done;
  job *head, *tail;
  bool stop;
  atomic_int abort;
  ct_status comm_st; /* a failure while serving between jobs */
  ct_error comm_err;
  /* what the log shows */
  pthread_mutex_t stats_mu;
  double bytes, wait_s;
  int updates;
} mpi_ctx;

/* mpi_wait.c */
double ct_mpi_now(void);
void ct_mpi_add_stats(mpi_ctx *c, double bytes, double wait_s);
/* An MPI error code as a message naming the peer (-1: a collective). */
ct_status ct_mpi_fail(mpi_ctx *c, ct_error *err, int rc, const char *what, int peer);
void ct_mpi_backoff(int idle);
ct_status ct_mpi_aborted(mpi_ctx *c, const char *what, ct_error *err);
/* Completes n requests, serving this process's servers meanwhile. peers[i] names the rank of
 * request i (-1: a collective over comm; MPI_COMM_NULL when none is). After CT_DIST_TIMEOUT it
 * fails naming the rank waited on, or, for a collective, the ranks of comm that do not answer a
 * liveness check. */
ct_status ct_mpi_wait_serving(mpi_ctx *c, int n, MPI_Request *reqs, const int *peers, MPI_Comm comm,
                              const char *what, ct_error *err);
/* Answers the liveness checks of other ranks, if any came (every polling loop calls it). */
void ct_mpi_answer_pings(mpi_ctx *c);
/* The same on any communicator (mpi_part.c asks on its own, so that no other message on
 * MPI_COMM_WORLD can meet its pings). */
void ct_mpi_answer_pings_on(MPI_Comm comm);
/* A liveness check: pings the `size` ranks w[] of comm (this one and MPI_UNDEFINED skipped),
 * waits up to grace_s for their answers, answering the others' pings and calling serve(ctx)
 * (NULL: nothing) meanwhile, and writes those that did not answer into buf as "rank 3" or
 * "ranks 1 and 3". Returns how many did not answer; -1 (buf empty) when out of memory. */
int ct_mpi_silent(MPI_Comm comm, const int *w, int size, double grace_s, void (*serve)(void *), void *ctx, char *buf,
                  size_t n);
/* The ranks in communicator `in` of comm's members, in comm's order, as a malloc'ed array
 * (*out; the caller frees it); returns their number, 0 (and *out NULL) on failure. */
int ct_mpi_members(MPI_Comm comm, MPI_Comm in, int **out);

/* mpi_server.c */
ct_status ct_mpi_serve_one(mpi_ctx *c, bool *did, ct_error *err);
/* Serves until every worker group is done, failing like ct_mpi_check_silence. */
ct_status ct_mpi_serve_until_done(mpi_ctx *c, ct_error *err);
/* A worker group that sent nothing for CT_DIST_TIMEOUT (counted from `since` at the earliest)
 * and is not done: an error naming its leader's rank. With Downpour the other groups go on
 * without it, so only its servers can tell that a worker stopped. */
ct_status ct_mpi_check_silence(mpi_ctx *c, double since, ct_error *err);
ct_status ct_mpi_finish_servers(mpi_ctx *c, ct_error *err);
/* Server k's slice of the flat parameters: on a partitioned net (issue 19) the boundaries fall
 * between parameter shards, so each server holds and updates whole shards only; otherwise
 * ct_topology_slice's equal slices. */
void ct_mpi_slice(const mpi_ctx *c, int k, size_t *off, size_t *len);
ct_status ct_mpi_start_servers(mpi_ctx *c, ct_net *net, ct_update_ctx *upd, ct_error *err);

/* mpi_jobs.c */
ct_status ct_mpi_submit(mpi_ctx *c, job *j, ct_error *err);
void *ct_mpi_comm_main(void *arg);
void ct_mpi_stop_comm(mpi_ctx *c);

#define MPI_TRY(c, call, what, peer)                                      \
  do {                                                                    \
    int rc_ = (call);                                                     \
    if (rc_ != MPI_SUCCESS) return ct_mpi_fail((c), err, rc_, what, peer); \
  } while (0)

#endif
