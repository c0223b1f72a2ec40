/* The cluster front: decides whether a run is distributed and dispatches to the backend
 * (MPI in mpi_cluster.c, or the local one here for a cluster that fits in one process). */
#include "dist/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "drivers/cpu.h"
#include "dist/part.h"
#include "layers/data_layer.h"
#include "proto/prototxt.h"

/* issue 19: the partition_workers of the solver's train net (1 when it cannot be read here:
 * building the net reports that). A path is taken as given, else beside the solver file, as
 * the solver resolves it. */
static int peek_partition_workers(const Caffe__SolverParameter *sp, const char *path) {
  const Caffe__NetParameter *np = sp->train_net_param ? sp->train_net_param : sp->net_param;
  if (np) return np->partition_workers;
  const char *f = sp->train_net ? sp->train_net : sp->net;
  if (!f) return 1;
  char buf[4096];
  if (access(f, R_OK) != 0 && f[0] != '/') {
    const char *slash = strrchr(path, '/');
    if (!slash) return 1;
    snprintf(buf, sizeof buf, "%.*s/%s", (int)(slash - path), path, f);
    f = buf;
  }
  ProtobufCMessage *m = NULL;
  ct_error e;
  if (ct_prototxt_read_file(f, &caffe__net_parameter__descriptor, &m, &e) != CT_OK) return 1;
  int w = ((const Caffe__NetParameter *)m)->partition_workers;
  protobuf_c_message_free_unpacked(m, NULL);
  return w;
}

struct ct_cluster {
  ct_topology t;
  int rank, world;
  bool mpi;
  bool started;  /* ct_cluster_start ran: only then is there a protocol to finish */
  bool finished, failed;
  const ct_cluster_ops *ops;
  void *ctx;
  char desc[768];
  bool partitioned; /* issue 19: partitioned worker groups spread over the processes (part.h) */
  int pgroups;      /* issue 19: how many such groups (world / partition_workers, at least 1) */
};

bool ct_dist_launched(int *world, int *rank) {
  /* Open MPI's, then PMIx's and Hydra's (MPICH) variables */
  static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
  static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK"};
  for (int i = 0; i < 2; i++) {
    const char *s = getenv(sizes[i]), *r = getenv(ranks[i]);
    if (s && *s) {
      *world = atoi(s);
      *rank = r ? atoi(r) : 0;
      return true;
    }
  }
  if (getenv("PMIX_RANK")) {
    *world = 0; /* unknown until MPI starts */
    *rank = atoi(getenv("PMIX_RANK"));
    return true;
  }
  *world = 1;
  *rank = 0;
  return false;
}

/* ---- the local backend: a cluster that fits in one process updates in place ---- */

typedef struct local_ctx {
  ct_update_ctx *upd;
} local_ctx;

static ct_status local_start(void *ctx, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                             ct_error *err) {
  (void)net, (void)iter, (void)nets, (void)err;
  ((local_ctx *)ctx)->upd = upd;
  return CT_OK;
}
static ct_status local_update(void *ctx, int iter, float *rate, ct_error *err) {
  (void)err;
  *rate = ct_update_apply(((local_ctx *)ctx)->upd, iter);
  return CT_OK;
}
static ct_status local_nothing(void *ctx, ct_error *err) {
  (void)ctx, (void)err;
  return CT_OK;
}
static void local_stats(void *ctx, double *bytes, double *wait_s, int *updates) {
  (void)ctx;
  *bytes = 0, *wait_s = 0, *updates = 0;
}
static void local_destroy(void *ctx, bool clean) {
  (void)clean;
  free(ctx);
}
static const ct_cluster_ops k_local_ops = {
    .start = local_start, .update = local_update, .serve = local_nothing, .collect = local_nothing,
    .finish = local_nothing, .stats = local_stats, .destroy = local_destroy,
};

/* ---- the front ---- */

ct_status ct_cluster_create(const Caffe__SolverParameter *sp, const char *path, ct_cluster **out, ct_error *err) {
  *out = NULL;
  int world = 1, rank = 0;
  bool launched = ct_dist_launched(&world, &rank);
  bool wanted = sp->cluster || (sp->has_framework && sp->framework != CAFFE__SOLVER_PARAMETER__FRAMEWORK__FRAMEWORK_NONE);
  if (!wanted && (!launched || world == 1)) return CT_OK; /* the ordinary single-process run */
  ct_cluster *c = calloc(1, sizeof *c);
  if (!c) return ct_fail(err, CT_ENOMEM, "out of memory");
  ct_status st;
  if (launched) {
    if ((st = ct_dist_mpi_init(&world, &rank, err))) goto fail;
    c->mpi = true;
  }
  c->world = world;
  c->rank = rank;
#ifdef CT_HAVE_MPI
  const int pw = launched && world > 1 ? peek_partition_workers(sp, path) : 1;
  if (!wanted && pw > 1) {
    /* issue 19: the net's worker group spread over the processes, bridges as messages; more
     * processes than workers: several such groups, data-parallel with each other */
    c->partitioned = true;
    c->t = (ct_topology){0};
    c->pgroups = world > pw ? world / pw : 1;
    if (world > pw && world % pw) {
      st = ct_fail(err, CT_EINVAL,
                   "%s: the train net is partitioned over %d workers (partition_workers) and %d processes were "
                   "started: run at most %d processes (one worker group spread over them) or a multiple of %d "
                   "(worker groups of %d processes, data-parallel with each other)",
                   path, pw, world, pw, pw, pw);
      goto fail;
    }
    const int R = world / c->pgroups;
    if (c->pgroups > 1)
      snprintf(c->desc, sizeof c->desc, "%d worker groups of a partitioned net, each over %d processes (worker w on "
               "the group's rank w mod %d, bridges as MPI messages), data-parallel with each other (each rank "
               "averages its own shards' gradients with the same shards' owners in the other groups); this is "
               "rank %d of %d", c->pgroups, R, R, rank, world);
    else
      snprintf(c->desc, sizeof c->desc, "one worker group of a partitioned net over %d processes (worker w on rank "
               "w mod %d, bridges as MPI messages); this is rank %d of %d", world, world, rank, world);
    if ((st = ct_dist_part_cluster_create(c->pgroups, &c->ctx, &c->ops, err))) goto fail;
    *out = c;
    return CT_OK;
  }
#endif
  if ((st = ct_topology_resolve(sp, world, &c->t, err))) {
    ct_error_prefix(err, "%s", path);
    goto fail;
  }
  char d[512];
  ct_topology_describe(&c->t, d, sizeof d);
  snprintf(c->desc, sizeof c->desc, "%s; this is rank %d of %d", d, rank, world);
  if (peek_partition_workers(sp, path) > 1 && c->t.nworkers_per_group > 1) {
    const int pw = peek_partition_workers(sp, path);
    /* issue 19: SINGA's group of a partitioned net is its partition workers; several workers
     * per group would be data-parallel copies of the partitioned net inside a group */
    st = ct_fail(err, CT_EUNSUPPORTED,
                 "%s: the train net is partitioned over %d workers (partition_workers) and the cluster setting "
                 "(%s) puts %d workers in each worker group: a partitioned net's worker group is its partition "
                 "workers, threads of one process. Set cluster { nworkers_per_group: 1 } (each worker group runs "
                 "the partitioned net over its %d threads; groups are data-parallel, and servers hold whole "
                 "shards), or drop the cluster setting to spread one group over the mpirun processes; a group "
                 "spread over processes inside a cluster framework is not supported",
                 path, pw, d, c->t.nworkers_per_group, pw);
    goto fail;
  }
  if (c->t.nprocs != world) {
    st = ct_fail(err, CT_EINVAL,
                 "%s: the cluster setting (%s) needs %d MPI process%s, but %d %s started; run "
                 "mpirun -np %d cortado train --solver=%s",
                 path, d, c->t.nprocs, c->t.nprocs == 1 ? "" : "es", world,
                 world == 1 ? "was" : "were", c->t.nprocs, path);
    goto fail;
  }
  if (c->t.nprocs == 1 && c->t.nworkers_per_group > 1) { /* one group of worker threads, MPI or not */
    if ((st = ct_dist_local_create(&c->t, sp, &c->ctx, &c->ops, err))) goto fail;
  } else if (c->t.nprocs == 1 && c->t.nworker_groups > 1) {
    if ((st = ct_dist_threads_create(&c->t, sp, &c->ctx, &c->ops, err))) goto fail;
    /* issue 24: whatever framework was asked for, groups that are threads of one process update
     * one shared copy of the parameters without servers: that is Hogwild, and the log says so */
    snprintf(c->desc, sizeof c->desc, "HOGWILD in one process: %d worker groups of 1 worker as threads sharing one "
             "copy of the parameters, no servers%s%s%s; this is rank %d of %d", c->t.nworker_groups,
             strcmp(c->t.name, "HOGWILD") ? " (" : "", strcmp(c->t.name, "HOGWILD") ? c->t.name : "",
             strcmp(c->t.name, "HOGWILD") ? " runs so when its groups share a process)" : "", rank, world);
  } else if (c->mpi) {
    if ((st = ct_dist_mpi_create(&c->t, rank, sp, &c->ctx, &c->ops, err))) goto fail;
  } else {
    c->ctx = calloc(1, sizeof(local_ctx));
    c->ops = &k_local_ops;
    if (!c->ctx) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto fail;
    }
  }
  *out = c;
  return CT_OK;
fail: /* the solver reports it to the other processes (ct_cluster_agree), naming this rank */
  c->failed = true;
  ct_cluster_free(c);
  return st;
}

double ct_dist_timeout_s(void) {
  const char *to = getenv("CT_DIST_TIMEOUT");
  return to && atof(to) > 0 ? atof(to) : 300;
}

ct_status ct_cluster_agree(ct_cluster *c, ct_status st, const ct_digest *d, ct_error *err) {
  int world = 1, rank = 0;
  if (c) {
    if (!c->mpi) return st;
    world = c->world, rank = c->rank;
  } else {
    /* no cluster: a solver that could not be read, or a cluster that could not be made; the
     * other processes wait for this one's word all the same */
    if (!ct_dist_launched(&world, &rank) || world == 1) return st;
    ct_error e;
    if (ct_dist_mpi_init(&world, &rank, &e) != CT_OK) return st;
  }
  if (world <= 1) return st;
  /* CT_DIST_TEST_STALL=R (tests only): rank R reports 30 s late, as a rank stuck in its
   * start-up would (an input that blocks, a slow file system), to check that rank 0 names it */
  const char *stall = getenv("CT_DIST_TEST_STALL");
  if (stall && *stall && atoi(stall) == rank) sleep(30);
  ct_startup_rec rec;
  ct_startup_rec_fill(&rec, rank, st, err, d);
  bool all_know = false;
  ct_error v;
  ct_status out = ct_dist_mpi_agree(&rec, rank, world, ct_dist_timeout_s(), &all_know, &v);
  if (out == CT_OK) return CT_OK;
  *err = v;
  if (all_know) ct_dist_mpi_exit_together(); /* every process prints the message before any leaves */
  if (c) c->failed = true;
  return out;
}

bool ct_cluster_has_server_only(const ct_cluster *c) {
  if (c->partitioned) return false;
  for (int p = 0; p < c->t.nprocs; p++) {
    int first;
    if (ct_topology_workers_on(&c->t, p, &first) == 0) return true;
  }
  return false;
}

ct_status ct_cluster_share_stand_ins(ct_cluster *c, ct_net *net, char **text, ct_error *err) {
  if (!c->mpi) return CT_OK;
  if (c->rank == 0) *text = ct_dist_stand_ins(net);
  ct_status st = ct_dist_mpi_share_text(text, c->rank, err);
  if (st) c->failed = true;
  return st;
}

void ct_cluster_free(ct_cluster *c) {
  if (!c) return;
  if (c->ops && c->started && !c->failed && !c->finished) {
    ct_error e;
    if (ct_cluster_finish(c, &e) != CT_OK) fprintf(stderr, "cortado: %s\n", e.msg);
  }
  if (c->ops) c->ops->destroy(c->ctx, !c->failed);
  if (c->mpi && !c->failed) ct_dist_mpi_finalize(); /* e.g. in-process groups under mpirun -np 1 */
  free(c);
}

void ct_cluster_abandon(ct_cluster *c) { c->failed = true; }

bool ct_cluster_is_root(const ct_cluster *c) { return c->rank == 0; }
bool ct_cluster_has_worker(const ct_cluster *c) {
  if (c->partitioned) return true;
  int first;
  return ct_topology_workers_on(&c->t, c->rank, &first) > 0;
}
int ct_cluster_nworkers(const ct_cluster *c) { return c->partitioned ? c->pgroups : ct_topology_nworkers(&c->t); }
const char *ct_cluster_describe(const ct_cluster *c) { return c->desc; }

int ct_cluster_local_partitions(const ct_cluster *c) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  long local = ls && atoi(ls) > 0 ? atoi(ls) : 1;
  int first, workers = c->partitioned ? 1 : ct_topology_workers_on(&c->t, c->rank, &first); /* each with a net */
  long n = cores / local / (workers > 1 ? workers : 1);
  return n >= 1 ? (int)(n > 64 ? 64 : n) : 1;
}

int ct_cluster_blas_threads(const ct_cluster *c) {
  int first;
  if (c->partitioned) return ct_cluster_local_partitions(c);
  if (ct_topology_workers_on(&c->t, c->rank, &first) > 1) return 1;
  return ct_cluster_local_partitions(c);
}

ct_status ct_cluster_prepare_train_param(const ct_cluster *c, Caffe__NetParameter *np, const char *source, int level,
                                         const char *const *stages, ct_error *err) {
  if (c->partitioned) return CT_OK; /* the group's batch is the net's: its workers split layers */
  return ct_topology_split_batch(&c->t, np, source, level, stages, err);
}

static bool has_cursor(const ct_layer *l) {
  return l->ops->get_cursor && l->ops->set_cursor && l->ntop >= 1 && l->top[0]->naxes >= 1;
}

void ct_dist_skip_batches(ct_net *net, uint64_t blocks) {
  if (!blocks) return;
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    ct_layer *l = ct_net_layer(net, i);
    if (has_cursor(l)) l->ops->set_cursor(l, l->ops->get_cursor(l) + blocks * (uint64_t)l->top[0]->shape[0]);
  }
}

void ct_dist_set_stride(ct_net *net, int nworkers) {
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    ct_layer *l = ct_net_layer(net, i);
    if (has_cursor(l)) /* a layer with a feed skips the other workers' blocks itself */
      ct_data_layer_set_skip(l, (uint64_t)(nworkers > 1 ? nworkers - 1 : 0) * (uint64_t)l->top[0]->shape[0]);
  }
}

void ct_dist_next_batch(ct_net *net, int nworkers) {
  if (nworkers <= 1) return;
  for (int i = 0; i < ct_net_num_layers(net); i++) {
    ct_layer *l = ct_net_layer(net, i);
    if (has_cursor(l) && !ct_data_layer_has_feed(l))
      l->ops->set_cursor(l, l->ops->get_cursor(l) + (uint64_t)(nworkers - 1) * (uint64_t)l->top[0]->shape[0]);
  }
}

void ct_dist_place_worker(ct_net *net, const ct_net *from, const ct_topology *t, int from_w, int w) {
  int64_t blocks = (int64_t)ct_topology_shard(t, w) - ct_topology_shard(t, from_w);
  for (int i = 0; i < ct_net_num_layers(net) && i < ct_net_num_layers((ct_net *)from); i++) {
    ct_layer *a = ct_net_layer((ct_net *)from, i), *b = ct_net_layer(net, i);
    if (!has_cursor(a) || !has_cursor(b)) continue;
    int64_t pos = (int64_t)a->ops->get_cursor(a) + blocks * (int64_t)b->top[0]->shape[0];
    b->ops->set_cursor(b, pos > 0 ? (uint64_t)pos : 0);
  }
  ct_dist_set_stride(net, ct_topology_nworkers(t));
}

void ct_cluster_next_batch(const ct_cluster *c, ct_net *net) {
  ct_dist_next_batch(net, c->partitioned ? c->pgroups : ct_topology_nworkers(&c->t));
}

#define FAILS(c, expr)                  \
  do {                                  \
    ct_status s_ = (expr);              \
    if (s_ != CT_OK) (c)->failed = true; \
    return s_;                          \
  } while (0)

ct_status ct_cluster_start(ct_cluster *c, ct_net *net, ct_update_ctx *upd, int *iter, const ct_net_builder *nets,
                           ct_error *err) {
  int first;
  if (c->partitioned) { /* group g reads blocks g, g + G, ... (its rank 0 runs the data layers) */
    ct_dist_skip_batches(net, (uint64_t)(c->rank / (c->world / c->pgroups)));
    ct_dist_set_stride(net, c->pgroups);
    ct_blas_set_threads(ct_cluster_blas_threads(c));
  } else if (ct_topology_workers_on(&c->t, c->rank, &first) > 0) { /* this worker's first block of data */
    ct_dist_skip_batches(net, (uint64_t)ct_topology_shard(&c->t, first));
    ct_dist_set_stride(net, ct_topology_nworkers(&c->t));
    ct_blas_set_threads(ct_cluster_blas_threads(c)); /* issue 24: before any worker thread starts */
  }
  c->started = true;
  FAILS(c, c->ops->start(c->ctx, net, upd, iter, nets, err));
}
ct_status ct_cluster_update(ct_cluster *c, int iter, float *rate, ct_error *err) {
  FAILS(c, c->ops->update(c->ctx, iter, rate, err));
}
ct_status ct_cluster_agree_action(ct_cluster *c, int request, int *agreed, ct_error *err) {
  *agreed = request;
  if (!c->ops->agree_action || c->failed) return CT_OK;
  FAILS(c, c->ops->agree_action(c->ctx, request, agreed, err));
}
ct_status ct_cluster_serve(ct_cluster *c, ct_error *err) { FAILS(c, c->ops->serve(c->ctx, err)); }
ct_status ct_cluster_collect(ct_cluster *c, ct_error *err) { FAILS(c, c->ops->collect(c->ctx, err)); }
ct_status ct_cluster_sync(ct_cluster *c, ct_error *err) {
  if (!c->ops->sync) return CT_OK;
  FAILS(c, c->ops->sync(c->ctx, true, err));
}
ct_status ct_cluster_sync_params(ct_cluster *c, ct_error *err) {
  if (!c->ops->sync) return CT_OK;
  FAILS(c, c->ops->sync(c->ctx, false, err));
}
ct_status ct_cluster_finish(ct_cluster *c, ct_error *err) {
  if (c->finished) return CT_OK;
  c->finished = true;
  FAILS(c, c->ops->finish(c->ctx, err));
}
void ct_cluster_take_stats(ct_cluster *c, double *bytes, double *wait_s, int *updates) {
  c->ops->stats(c->ctx, bytes, wait_s, updates);
}

#ifndef CT_HAVE_MPI
/* Built without MPI: a cluster that needs more than one process cannot start. */
ct_status ct_dist_mpi_init(int *world, int *rank, ct_error *err) {
  (void)world, (void)rank;
  return ct_fail(err, CT_EUNSUPPORTED, "this process was started by mpirun, but cortado was built without MPI "
                 "(install libopenmpi-dev and rebuild)");
}
ct_status ct_dist_mpi_create(const ct_topology *t, int rank, const Caffe__SolverParameter *sp, void **ctx,
                             const ct_cluster_ops **ops, ct_error *err) {
  (void)t, (void)rank, (void)sp, (void)ctx, (void)ops;
  return ct_fail(err, CT_EUNSUPPORTED, "cortado was built without MPI");
}
void ct_dist_mpi_finalize(void) {}
ct_status ct_dist_mpi_agree(const ct_startup_rec *mine, int rank, int world, double timeout_s, bool *all_know,
                            ct_error *err) {
  (void)mine, (void)rank, (void)world, (void)timeout_s, (void)all_know;
  return ct_fail(err, CT_EUNSUPPORTED, "cortado was built without MPI");
}
void ct_dist_mpi_exit_together(void) {}
ct_status ct_dist_mpi_share_text(char **text, int rank, ct_error *err) {
  (void)text, (void)rank;
  return ct_fail(err, CT_EUNSUPPORTED, "cortado was built without MPI");
}
#endif
