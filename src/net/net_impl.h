/* The net's internals shared by its files: build.c (wiring, backward analysis, parameter
 * packing, create/free), rewrite.c (phase filter, split insertion), run.c (forward, backward,
 * accessors) and io.c (weights and resumable state). Nothing outside src/net includes it. */
#ifndef CT_NET_IMPL_H
#define CT_NET_IMPL_H

#include "core/pool.h"
#include "core/strmap.h"
#include "net/net.h"

typedef struct net_layer {
  ct_layer l;
  Caffe__LayerParameter *lp; /* owned copy, with bottoms/tops renamed for splits */
  int *bottom_ids, *top_ids;
  float *loss_weight; /* per top */
  bool need_backward;
  int producer;       /* the layer that produced bottom 0 (-1: none), whose plan it follows */
  int auto_tops;      /* the last auto_tops tops were added by the net (a loss layer's, Caffe's
                         AutoTopBlobs): not outputs, not written back */
  /* bytes copied between places while this layer ran, forward and backward, since the last
   * ct_net_reset_copy_stats */
  unsigned long long copied_fwd, copied_bwd;
  struct ct_fusion *fusion; /* fuse.c: the fused chain this layer belongs to (NULL: none) */
} net_layer;

struct ct_net {
  char *name;
  char *source;
  char *dir;
  ct_phase phase;
  uint64_t seed;
  /* Caffe's debug_info: forward and backward log each blob's mean absolute value through
   * debug_log (NULL: stderr) */
  bool debug;
  void (*debug_log)(void *ctx, const char *line);
  void *debug_ctx;
  int nlayers;
  net_layer *layers;
  int nblobs;
  ct_tensor **blobs;
  char **blob_names;
  ct_strmap *blob_index, *layer_index; /* name -> index: builds stay linear in the layer count */
  int blob_cap;                        /* room in blobs, blob_names, blob_producer (grown by doubling) */
  int noutputs;
  int *outputs;
  float *output_loss_weight;
  int *blob_producer; /* per blob: the last layer that writes it (-1: none yet) */
  /* learnable parameters: views of two flat storages */
  int nlearn;
  ct_param_range *learn;
  const ct_tensor **learn_tensor;
  ct_tensor *params; /* 1-D, param_total floats: data and diff are the flat buffers */
  size_t param_total;
  ct_placement *place; /* drivers, pool (CcT's partitions), copy counters */
  struct {              /* the memory plan (memplan.c), made at the first pass */
    bool done, off, fwd_only;
    bool backward;      /* some layer needs backward (need_backward is fixed at build) */
    int nkeep;
    char **keep;        /* blob names the caller keeps readable */
    size_t unplanned[2], planned[2]; /* bytes per side, without and with the plan */
    int buffers[2], shared[2];       /* planned buffers, and storages packed into them */
    size_t ws_budget;                /* workspaces kept per layer up to this (memplan.c) */
  } mp;
  bool fuse_layerwise; /* ct_net_forward_layer may run fused chains (ct_net_set_layerwise_fusion) */
  struct ct_partition *part; /* SINGA's partitioning over a worker group (partition.c); NULL: none */
  struct ct_part_exec *exec; /* its workers as threads (part_run.c); NULL: one worker */
  ct_bridge_ops *bridges;    /* its workers spread over processes (part_run.c); NULL: none */
  struct ct_slices *slices;  /* with bridges: the batch slices' views of its dim-0 layers (part_run.c) */
};

/* Index of the blob or layer of that name, or -1. */
int ct_net_find_blob(const ct_net *net, const char *name);
int ct_net_find_layer(const ct_net *net, const char *name);

/* ---- rewrite.c: the layer list before any layer is built. Lists own their messages. */
typedef struct ct_spec_list {
  Caffe__LayerParameter **v;
  const Caffe__LayerParameter **src; /* each one's original in the caller's NetParameter (NULL:
                                        made here), for source positions in messages */
  int n, cap;
} ct_spec_list;
void ct_spec_list_free(ct_spec_list *s);
/* The layers of `param` (upgraded: proto/upgrade.h) that the NetState (phase, level, stages)
 * includes, as copies. */
ct_status ct_net_filter(const Caffe__NetParameter *param, const char *source, ct_phase phase, int level,
                        const char *const *stages, ct_spec_list *out, ct_error *err);
/* Moves every layer of `in` to `out`, inserting Split layers so that every blob version has at
 * most one consumer (Caffe's InsertSplits and its names). */
ct_status ct_net_insert_splits(ct_spec_list *in, ct_spec_list *out, ct_error *err);

/* Appends lp (owned from here, freed on failure) with its source message src (may be NULL). */
ct_status ct_spec_push(ct_spec_list *s, Caffe__LayerParameter *lp, const Caffe__LayerParameter *src, ct_error *err);

/* ---- partition.c: SINGA's partition_dim and location over the net's partition_workers */
#define CT_PART_MAX_WORKERS 64
#define CT_PART_MAX_BLOBS 4
typedef struct ct_partition ct_partition;
struct ct_srcmap;
/* Every partition_dim and location of `list` (and the net's defaults) is one that can apply:
 * errors name the layer and give file:line:col from map (may be NULL). */
ct_status ct_net_partition_check(const Caffe__NetParameter *param, const ct_spec_list *list,
                                 const struct ct_srcmap *map, const char *source, ct_error *err);
/* Checks, then rewrites `list` in place into the group's layers (sub-layers, Concat / Split
 * connections, every layer's worker in its `location`); *out (NULL for one worker) describes
 * the shards, indexed like the rewritten list. */
ct_status ct_net_partition(const Caffe__NetParameter *param, const struct ct_srcmap *map, const char *source,
                           ct_spec_list *list, ct_partition **out, ct_error *err);
void ct_partition_free(ct_partition *p);
/* Layer i's shard index (-1: no shard; p may be NULL). */
int ct_partition_shard(const ct_partition *p, int i);
/* For shard 0 of a split layer: its whole parameter j (shaped like `shard` with all the rows),
 * made on first use and owned by p. */
ct_status ct_partition_whole(ct_partition *p, int i, int j, const ct_tensor *shard, const ct_tensor **whole,
                             ct_error *err);
/* After the flat storages exist: each shard's blobs view their rows of the whole parameters,
 * holding the values their setup filled. */
ct_status ct_partition_view_shards(ct_net *net, ct_error *err);
/* Weights files see the net as written: layers the rewrite made are left out (hidden), a split
 * layer is its shard 0 with the original parameter and the whole tensors. */
bool ct_partition_hidden(const ct_partition *p, int i);
/* Whether layer i is one of several copies (shards, or an element-wise layer per shard) that
 * the group's workers run at the same time. */
bool ct_partition_parallel(const ct_partition *p, int i);
/* Whether layer i is a whole layer pinned by its prototxt's location (not one the net placed). */
bool ct_partition_pinned(const ct_partition *p, int i);
/* The index layer i's random stream derives from: an element-wise follower of shards shares the
 * unpartitioned layer's (its index before the rewrite); any other layer its own, i. */
int ct_partition_seed_index(const ct_partition *p, int i);
/* An element-wise follower of shards: its shard's channels c0 .. c0 + cn of the whole blob's. */
bool ct_partition_channels(const ct_partition *p, int i, int *c0, int *cn, int *whole);
const Caffe__LayerParameter *ct_partition_origin(const ct_partition *p, int i);
ct_tensor *const *ct_partition_whole_blobs(const ct_partition *p, int i);
/* The shard 0 whose original layer is named `name` (-1: none). */
int ct_partition_find(const ct_net *net, const char *name);

/* ---- part_run.c: the workers of a partitioned net as threads (NULL *out for one worker) */
typedef struct ct_part_exec ct_part_exec;
ct_status ct_part_exec_create(ct_net *net, ct_part_exec **out, ct_error *err);
/* Stops the worker threads (before the layers go); ct_part_exec_free, after the layers, frees
 * the rest (the workers' placements, which parallel layers point at). */
void ct_part_exec_stop(ct_part_exec *x);
void ct_part_exec_free(ct_part_exec *x);
/* The net's CPU partitions changed to cpu_parts: each worker's share follows. */
ct_status ct_part_exec_fit(ct_part_exec *x, int cpu_parts, ct_error *err);
/* The net's devices changed (ct_net_set_devices): on the CPU alone the parallel layers get their
 * workers' placements again; with any other device every layer takes the net's placement, as a
 * net created on those devices has (x may be NULL). */
ct_status ct_part_exec_devices(ct_part_exec *x, ct_error *err);
/* One forward or backward pass over every worker; the first failure of any worker. */
ct_status ct_part_exec_run(ct_part_exec *x, bool backward, ct_error *err);
/* One pass of this process's layers, with messages for the bridges between processes. */
ct_status ct_part_dist_run(ct_net *net, bool backward, ct_error *err);
/* Frees the bridges and the batch slices' views (ct_net_free). */
void ct_part_dist_free(ct_net *net);

/* ---- check.c: before any layer is built, with file:line:col from map (may be NULL): every
 * layer of `filtered` has a type cortado knows, every layer of param reads the per-type
 * parameters it is given, and no field of param is set that cortado would ignore. */
struct ct_srcmap;
ct_status ct_net_check(const Caffe__NetParameter *param, const ct_spec_list *filtered, const struct ct_srcmap *map,
                       const char *source, ct_error *err);

/* ---- memplan.c: plans the blobs' storage once, before the first pass (a no-op after); and
 * fails when backward is asked of a net planned to run forward only. */
ct_status ct_net_memplan(ct_net *net, ct_error *err);
ct_status ct_net_memplan_check_backward(const ct_net *net, ct_error *err);
/* Whether CT_MEMPLAN in the environment leaves planning on (the default). */
bool ct_memplan_env_on(void);

/* ---- place.c: plan specs from the prototxt and the CLI (messages with file:line:col) */
struct ct_srcmap;
ct_status ct_net_place_layer(ct_net *net, int i, const Caffe__LayerParameter *src, const struct ct_srcmap *map,
                             ct_error *err);
ct_status ct_net_place_default(ct_net *net, const Caffe__NetParameter *param, const struct ct_srcmap *map,
                               ct_error *err);

/* ---- fuse.c: BatchNorm -> Scale (-> ReLU) chains and Eltwise SUM -> ReLU pairs run as one
 * hidden layer each (after the backward analysis; CT_FUSE=0 in the environment: none). The run
 * loop calls fuse_forward / fuse_backward instead of the layer's own pass for a layer whose
 * `fusion` is set. */
ct_status ct_net_fuse(ct_net *net, ct_error *err);
void ct_net_fuse_free(ct_net *net);
ct_status ct_net_fuse_forward(ct_net *net, int i, bool fuse, ct_error *err);
ct_status ct_net_fuse_backward(ct_net *net, int i, ct_error *err);
/* Whether layer i heads a chain whose backward reads the chain's input (x kept: the memory
 * planner keeps that blob's data live until then). */
bool ct_net_fuse_reads_input(const ct_net *net, int i);
/* ... or its output (a chain without the ReLU, the output kept: layers/bn_chain.h). */
bool ct_net_fuse_reads_output(const ct_net *net, int i);
/* After the memory plan: the chains whose top's diff is planned storage (planned_diff, per blob)
 * skip leaving the gradient the members would there (ct_bn_chain_set_top_grad,
 * ct_eltwise_relu_set_top_grad). */
void ct_net_fuse_planned_diffs(ct_net *net, const bool *planned_diff);
/* ... and the chains that may feed the Eltwise pair after them (ResNet's block ends): those whose
 * blob's data is planned storage (planned_data, per blob), which nobody reads after a pass, so
 * that it may keep the chain's input instead of its output (ct_bn_chain_set_feed). */
void ct_net_fuse_planned_data(ct_net *net, const bool *planned_data);
/* `cortado time`'s note for a chain's member: "fused" on its head (which the chain's time is
 * booked under), "in chain" on the others (and on a pair's head where the chain before it fed
 * it in the last forward). */
const char *ct_net_fuse_note(const ct_net *net, int i);

#endif
