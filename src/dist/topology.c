/* SINGA's cluster settings -> processes, workers, servers. See topology.h. */
#include "dist/topology.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "net/net.h"

static int ceil_div(int a, int b) { return b > 0 ? (a + b - 1) / b : 0; }
static int max_int(int a, int b) { return a > b ? a : b; }

int ct_topology_nworkers(const ct_topology *t) { return t->nworker_groups * t->nworkers_per_group; }
int ct_topology_nservers(const ct_topology *t) { return t->nserver_groups * t->nservers_per_group; }

static const char *framework_name(int fw) {
  switch (fw) {
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__SANDBLASTER: return "SANDBLASTER";
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__ALLREDUCE: return "ALLREDUCE";
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__DOWNPOUR: return "DOWNPOUR";
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__HOGWILD: return "HOGWILD";
    default: return NULL;
  }
}

/* An explicit field: its value, or -1 when not given; a negative value is an error naming it. */
static ct_status given(const Caffe__ClusterParameter *c, protobuf_c_boolean has, int32_t v, const char *field, int *out,
                       ct_error *err) {
  *out = -1;
  if (!c || !has) return CT_OK;
  if (v < 0) return ct_fail(err, CT_EINVAL, "cluster: %s: %d is negative", field, (int)v);
  *out = (int)v;
  return CT_OK;
}

static void note_ignored(ct_topology *t, bool given, const char *field) {
  if (!given) return;
  size_t len = strlen(t->ignored);
  snprintf(t->ignored + len, sizeof t->ignored - len, "%s%s", len ? ", " : "", field);
}

ct_status ct_topology_resolve(const Caffe__SolverParameter *sp, int world, ct_topology *t, ct_error *err) {
  memset(t, 0, sizeof *t);
  const Caffe__ClusterParameter *c = sp->cluster;
  int fw = sp->has_framework ? (int)sp->framework : 0;
  if (fw && !framework_name(fw)) return ct_fail(err, CT_EINVAL, "framework %d is not a framework", fw);
  if (world < 1) world = 1;
  /* explicit fields; -1 = not given */
  int G, J, SG, S, wpp, spp, sync;
#define GIVEN(f, v) CT_TRY(given(c, c && c->has_##f, c ? c->f : 0, #f, &v, err))
  GIVEN(nworker_groups, G);
  GIVEN(nworkers_per_group, J);
  GIVEN(nserver_groups, SG);
  GIVEN(nservers_per_group, S);
  GIVEN(nworkers_per_procs, wpp);
  GIVEN(nservers_per_procs, spp);
  GIVEN(sync_freq, sync);
#undef GIVEN
  int sep = c && c->has_server_worker_separate ? (int)c->server_worker_separate : -1;
  bool spp_given = spp >= 0;
  if (wpp < 0) wpp = 1;
  if (spp < 0) spp = 1;
  if (sync < 0) sync = 1;
  if (!fw && !c) fw = CAFFE__SOLVER_PARAMETER__FRAMEWORK__ALLREDUCE; /* plain mpirun -np N */
  switch (fw) {
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__ALLREDUCE:
      if (G < 0) G = 1;
      if (J < 0) J = max_int(1, world * wpp / max_int(1, G));
      /* no servers: say so rather than drop what the user wrote without a word (issue 24) */
      note_ignored(t, SG >= 0, "nserver_groups");
      note_ignored(t, S >= 0, "nservers_per_group");
      note_ignored(t, spp_given, "nservers_per_procs");
      note_ignored(t, sep >= 0, "server_worker_separate");
      SG = 0, S = 0, sep = 0;
      t->mode = CT_DIST_ALLREDUCE;
      break;
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__SANDBLASTER:
      if (G < 0) G = 1;
      if (sep < 0) sep = 0;
      if (SG < 0) SG = 1;
      if (sep && S < 0) S = 1;
      /* workers fill the processes the servers leave; co-located servers follow the workers */
      if (J < 0) J = max_int(1, ((sep ? world - ceil_div(S, spp) : world) * wpp) / max_int(1, G));
      if (S < 0) S = J;
      if (!sep && !spp_given) spp = wpp; /* one server per worker, on the worker's process */
      t->mode = CT_DIST_SERVERS;
      break;
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__DOWNPOUR:
      if (J < 0) J = 1;
      if (sep < 0) sep = 1;
      if (SG < 0) SG = 1;
      if (S < 0) S = 1;
      if (G < 0) G = max_int(1, ((sep ? world - ceil_div(SG * S, spp) : world) * wpp) / J);
      t->mode = CT_DIST_SERVERS;
      break;
    case CAFFE__SOLVER_PARAMETER__FRAMEWORK__HOGWILD:
      if (J < 0) J = 1;
      if (G < 0) G = max_int(1, world * wpp / J);
      if (SG < 0) SG = G;
      if (S < 0) S = 1;
      if (sep < 0) sep = 0;
      t->mode = CT_DIST_HOGWILD;
      break;
    default: /* cluster { } alone: SINGA's defaults, the framework follows from the groups */
      if (G < 0) G = 1;
      if (J < 0) J = 1;
      if (SG < 0) SG = 1;
      if (S < 0) S = 1;
      if (sep < 0) sep = 0;
      t->mode = SG > 1 ? CT_DIST_HOGWILD : CT_DIST_SERVERS;
      break;
  }
  static const char *const must_be_positive[] = {"nworker_groups", "nworkers_per_group", "nworkers_per_procs",
                                                 "nservers_per_procs", "sync_freq"};
  const int positive[] = {G, J, wpp, spp, sync};
  for (int i = 0; i < 5; i++)
    if (positive[i] < 1)
      return ct_fail(err, CT_EINVAL, "cluster: %s must be >= 1 (got %d)", must_be_positive[i], positive[i]);
  /* the name the user asked for (or SINGA's for the groups) */
  const char *asked = fw ? framework_name(fw)
                      : t->mode == CT_DIST_HOGWILD ? "HOGWILD"
                      : G == 1                     ? "SANDBLASTER"
                                                   : "DOWNPOUR";
  if (t->mode == CT_DIST_ALLREDUCE && G != 1)
    return ct_fail(err, CT_EINVAL, "cluster: ALLREDUCE trains one worker group (nworker_groups: %d); use HOGWILD "
                   "or DOWNPOUR for several", G);
  if (t->mode == CT_DIST_SERVERS && (SG != 1 || S < 1))
    return ct_fail(err, CT_EINVAL, "cluster: %s needs one server group of at least one server (nserver_groups: %d, "
                   "nservers_per_group: %d)", asked, SG, S);
  if (t->mode == CT_DIST_HOGWILD && SG != G)
    return ct_fail(err, CT_EUNSUPPORTED, "cluster: HOGWILD gives every worker group its own server group "
                   "(nserver_groups %d must equal nworker_groups %d)", SG, G);
  if (t->mode == CT_DIST_HOGWILD && sep)
    return ct_fail(err, CT_EUNSUPPORTED, "cluster: HOGWILD keeps each server group inside its worker group's "
                   "processes; server_worker_separate must be false");
  if (wpp > 1 && J % wpp != 0 && wpp % J != 0)
    return ct_fail(err, CT_EUNSUPPORTED, "cluster: nworkers_per_procs %d and nworkers_per_group %d: a process hosts "
                   "whole worker groups or an equal share of one, so one must divide the other", wpp, J);
  t->nworker_groups = G;
  t->nworkers_per_group = J;
  t->nserver_groups = t->mode == CT_DIST_HOGWILD ? 0 : SG; /* Hogwild servers live inside their workers */
  t->nservers_per_group = t->mode == CT_DIST_HOGWILD ? 0 : S;
  t->nworkers_per_procs = wpp;
  t->nservers_per_procs = spp;
  t->separate = sep > 0;
  t->sync_freq = sync;
  t->name = asked; /* as asked, even where it degenerates (one Downpour group) */
  t->worker_procs = ceil_div(G * J, wpp);
  t->server_procs = ceil_div(ct_topology_nservers(t), spp);
  t->nprocs = t->separate ? t->worker_procs + t->server_procs : max_int(t->worker_procs, t->server_procs);
  if (t->nprocs == 1 && G > 1 && J > 1)
    return ct_fail(err, CT_EUNSUPPORTED, "cluster: %d worker groups of %d workers in one process: one process runs "
                   "one worker group of several workers or several groups of one worker; use nworkers_per_procs: "
                   "%d (%d processes)", G, J, J, G);
  if (t->mode == CT_DIST_SERVERS && !t->separate && t->server_procs > t->worker_procs)
    return ct_fail(err, CT_EINVAL, "cluster: %d servers at %d per process need %d processes but the workers use "
                   "only %d; set server_worker_separate: true, nservers_per_procs or fewer servers",
                   ct_topology_nservers(t), spp, t->server_procs, t->worker_procs);
  return CT_OK;
}

int ct_topology_ranks_per_group(const ct_topology *t) {
  return t->nworkers_per_group > t->nworkers_per_procs ? t->nworkers_per_group / t->nworkers_per_procs : 1;
}

void ct_topology_describe(const ct_topology *t, char *buf, size_t n) {
  snprintf(buf, n,
           "%s: %d worker group%s of %d worker%s, %d server group%s of %d server%s%s, %d process%s "
           "(%d worker%s per process, sync_freq %d)",
           t->name, t->nworker_groups, t->nworker_groups == 1 ? "" : "s", t->nworkers_per_group,
           t->nworkers_per_group == 1 ? "" : "s", t->nserver_groups, t->nserver_groups == 1 ? "" : "s",
           t->nservers_per_group, t->nservers_per_group == 1 ? "" : "s",
           t->nserver_groups ? (t->separate ? " on their own processes" : " inside the worker processes") : "",
           t->nprocs, t->nprocs == 1 ? "" : "es", t->nworkers_per_procs, t->nworkers_per_procs == 1 ? "" : "s",
           t->sync_freq);
  size_t len = strlen(buf);
  if (t->ignored[0] && len < n)
    snprintf(buf + len, n - len, "; %s has no servers and ignores %s", t->name, t->ignored);
}

int ct_topology_worker_proc(const ct_topology *t, int w) { return w / t->nworkers_per_procs; }
int ct_topology_server_proc(const ct_topology *t, int s) {
  return (t->separate ? t->worker_procs : 0) + s / t->nservers_per_procs;
}

static int range_on(int p, int per, int total, int *first) {
  int lo = p * per, hi = lo + per;
  if (hi > total) hi = total;
  if (p < 0 || lo >= total) {
    *first = -1;
    return 0;
  }
  *first = lo;
  return hi - lo;
}

int ct_topology_workers_on(const ct_topology *t, int p, int *first) {
  return range_on(p, t->nworkers_per_procs, ct_topology_nworkers(t), first);
}

int ct_topology_servers_on(const ct_topology *t, int p, int *first) {
  return range_on(t->separate ? p - t->worker_procs : p, t->nservers_per_procs, ct_topology_nservers(t), first);
}

void ct_topology_slice(size_t total, int nslices, int k, size_t *off, size_t *len) {
  size_t lo = total * (size_t)k / (size_t)nslices, hi = total * (size_t)(k + 1) / (size_t)nslices;
  *off = lo;
  *len = hi - lo;
}

int ct_topology_shard(const ct_topology *t, int w) {
  int g = w / t->nworkers_per_group, j = w % t->nworkers_per_group;
  return j * t->nworker_groups + g;
}

static ct_status split(uint32_t *bs, protobuf_c_boolean has, int J, const char *source, const char *layer,
                       const char *field, ct_error *err) {
  if (!has || J == 1) return CT_OK;
  if (*bs == 0 || *bs % (uint32_t)J != 0)
    return ct_fail(err, CT_EINVAL, "%s: layer \"%s\" (phase TRAIN): %s.batch_size %u does not split evenly across "
                   "the %d workers of a worker group; make it a multiple of %d", source, layer, field, *bs, J, J);
  *bs /= (uint32_t)J;
  return CT_OK;
}

ct_status ct_topology_split_batch(const ct_topology *t, Caffe__NetParameter *np, const char *source, int level,
                                  const char *const *stages, ct_error *err) {
  int J = t->nworkers_per_group;
  for (size_t i = 0; i < np->n_layer; i++) {
    Caffe__LayerParameter *l = np->layer[i];
    /* the TEST net is not split: only rank 0 tests, on its whole batch */
    if (!ct_net_layer_in_phase(l, CT_TRAIN, level, stages)) continue;
    const char *name = l->name ? l->name : "?";
#define SPLIT(p) \
  if (l->p) CT_TRY(split(&l->p->batch_size, l->p->has_batch_size, J, source, name, #p, err))
    SPLIT(data_param);
    SPLIT(idx_data_param);
    SPLIT(image_data_param);
    SPLIT(memory_data_param);
#undef SPLIT
  }
  return CT_OK;
}
