/* The net's internals, shared with the solver (src/solvers) and tools that need more than the
 * public API: the layer list, the learnable-parameter table and resumable layer state. */
#ifndef CT_NET_H
#define CT_NET_H

#include "cortado.h"
#include "cortado.pb-c.h"
#include "layers/layer.h"

/* One learnable parameter: a range of the net's flat parameter storage, with its multipliers. */
typedef struct ct_param_range {
  size_t offset, count;
  float lr_mult, decay_mult;
} ct_param_range;

/* Builds a net from an already-parsed NetParameter (borrowed: the net makes its own copy).
 * `source` names the file in messages; `dir` anchors relative data paths; seed seeds every
 * layer's random stream (fillers run during construction). */
ct_status ct_net_create_from_param(const Caffe__NetParameter *param, const char *source, const char *dir,
                                   ct_phase phase, int level, const char *const *stages, uint64_t seed,
                                   ct_net **out, ct_error *err);
/* ct_net_create with the seed of every random stream chosen (ct_net_create uses 1701). */
ct_status ct_net_create_seeded(const char *path, ct_phase phase, int level, const char *const *stages,
                               const char *weights, uint64_t seed, ct_net **out, ct_error *err);
/* The same, with the source positions of a parse of `source` (messages give file:line:col). */
struct ct_srcmap;
ct_status ct_net_create_mapped(const Caffe__NetParameter *param, const struct ct_srcmap *map, const char *source,
                               const char *dir, ct_phase phase, int level, const char *const *stages, uint64_t seed,
                               ct_net **out, ct_error *err);

/* Whether layer lp takes part in the net of this phase, level and stages (Caffe's include /
 * exclude rules; false for a layer with both kinds of rule, which ct_net_create rejects). For
 * code that rewrites a NetParameter before the net is built (src/dist). */
bool ct_net_layer_in_phase(const Caffe__LayerParameter *lp, ct_phase phase, int level, const char *const *stages);

const char *ct_net_name(const ct_net *net);
/* Caffe's debug_info: after each layer's forward (backward) a line per top (gradient) with its
 * mean absolute value, through log (NULL: stderr). The net's own debug_info field sets it at
 * creation; the solver turns it on for display iterations when its debug_info is set. */
void ct_net_set_debug(ct_net *net, bool on, void (*log)(void *ctx, const char *line), void *ctx);
bool ct_net_debug(const ct_net *net);
/* The net's drivers, pool (CcT's partitions) and copy counters. */
ct_placement *ct_net_placement(ct_net *net);
/* The driver that holds the parameters and runs their update (the first device of the net's
 * default plan; the CPU when there is none). */
const ct_driver *ct_net_driver(const ct_net *net);
ct_layer *ct_net_layer(ct_net *net, int i);
/* The tensor behind blob `name`, and parameter `index` of layer `layer` (NULL when absent): for
 * callers that hold a storage reference across reshapes (the Python module's views). */
ct_tensor *ct_net_blob_tensor(ct_net *net, const char *name);
ct_tensor *ct_net_param_tensor(ct_net *net, const char *layer, int index);

/* The learnable parameters (owners only; shared copies view them) as ranges of the flat
 * storages, with lr_mult / decay_mult; they hold ct_net_param_total floats. */
int ct_net_num_learnable(const ct_net *net);
const ct_param_range *ct_net_learnable(const ct_net *net);
const ct_tensor *ct_net_learnable_tensor(const ct_net *net, int i);
/* The flat parameters as one 1-D tensor: its data are the values, its diff the gradients.
 * Reach them through ct_tensor_deref / ct_tensor_host like any tensor. */
ct_tensor *ct_net_params(ct_net *net);
/* Host views of the flat values and gradients, brought up to date and made the valid copy
 * (the caller may write them); NULL when they cannot be brought to the host (a device error). */
float *ct_net_param_buffer(ct_net *net);
float *ct_net_diff_buffer(ct_net *net);
size_t ct_net_param_total(const ct_net *net);
/* Zeroes the parameter gradients where they live (ct_net_clear_param_diffs, with the device's
 * failure reported). */
ct_status ct_net_clear_param_diffs_on(ct_net *net, ct_error *err);
/* Bytes copied between places while layer i ran (forward, backward) since the last reset, and
 * the whole net's copies since then. */
void ct_net_layer_copied(const ct_net *net, int i, unsigned long long *fwd, unsigned long long *bwd);
void ct_net_reset_copy_stats(ct_net *net);
/* SINGA's partitioning (src/net/partition.c): the workers of the group the net is partitioned
 * over (its partition_workers), the worker that runs layer i, and the bytes the bridges between
 * workers move in one iteration (forward data, backward gradients), from the current shapes. */
int ct_net_partition_workers(const ct_net *net);
int ct_net_layer_worker(const ct_net *net, int i);
void ct_net_partition_bytes(const ct_net *net, unsigned long long *fwd, unsigned long long *bwd);
/* The bytes of the learnable parameters held whole by the group (a data-parallel worker group
 * exchanges their gradients and values every iteration) and split into shards on dim 1 (each
 * worker holds and updates its own rows; nothing is exchanged for them inside the group). */
void ct_net_partition_param_bytes(const ct_net *net, unsigned long long *replicated, unsigned long long *sharded);
/* The ranges of the flat parameter storage that layer i's parameter blobs view (a sub-layer's:
 * its shard's rows), in blob order: fills off[] and count[] with at most max of them and returns
 * how many there are. The worker that runs layer i owns them: it alone computes their gradient. */
int ct_net_layer_param_ranges(const ct_net *net, int i, size_t *off, size_t *count, int max);
/* The workers of a partitioned net spread over processes (src/dist/mpi_part.c installs them):
 * this process runs the layers of the workers rank_of maps to `rank`, in list order, and a
 * bridge between processes is a message: `send` must not block (it copies or buffers; `flush`
 * waits for a pass's sends), `recv` blocks until the data is there. A tag names the reading
 * layer and bottom: from 0 up to the net's number of bottoms and tops; a net that needs more
 * than max_tag (> 0; 0: no limit) is refused. NULL ops: every worker in this process
 * (threads). The ops are copied. */
typedef struct ct_bridge_ops {
  void *ctx;
  int rank, world; /* this process's rank in the group, and the group's processes */
  int max_tag;
  int (*rank_of)(void *ctx, int worker);
  ct_status (*send)(void *ctx, int to, int tag, const float *p, size_t n, ct_error *err);
  ct_status (*recv)(void *ctx, int from, int tag, float *p, size_t n, ct_error *err);
  ct_status (*flush)(void *ctx, ct_error *err);
} ct_bridge_ops;
ct_status ct_net_set_bridges(ct_net *net, const ct_bridge_ops *ops, ct_error *err);
/* Whether the net has bridges between processes (every process must run each pass). */
bool ct_net_bridged(const ct_net *net);
/* Whether layer i runs in this process (always, without bridges between processes). */
bool ct_net_layer_local(const ct_net *net, int i);
/* Whether layer i, a dim-0 layer of a group spread over several processes, runs on every one
 * of them over its slice of the batch (rank r of W: rows N r / W up to N (r + 1) / W); its
 * parameters' gradients are then partial sums that the group adds up. */
bool ct_net_layer_batch(const ct_net *net, int i);

/* Layer i's plan as text ("cpu: 0.30, emu:0: 0.70"). */
const char *ct_net_layer_plan(const ct_net *net, int i, char *buf, size_t n);

/* NaN/Inf diagnostics: the first layer (in forward order) whose top data holds a non-finite
 * value, or -1. With memory planning on it runs the forward pass again, layer by layer (not the
 * data sources), so call it only to explain a failed pass. */
int ct_net_first_nonfinite_layer(ct_net *net);
/* The first layer in backward order (the last in forward order) whose parameter gradient holds
 * a non-finite value, or -1. */
int ct_net_first_nonfinite_grad_layer(const ct_net *net);
/* Images in one forward pass: the first axis of the first layer's first top (0 if none). */
int ct_net_batch_size(const ct_net *net);
/* How many chains run fused (net/fuse.c; 0 with CT_FUSE=0): BatchNorm -> Scale (-> ReLU)
 * chains and Eltwise SUM -> ReLU pairs together, and the pairs alone. */
int ct_net_fused_chains(const ct_net *net);
int ct_net_fused_eltwise(const ct_net *net);
/* How many chains fed the Eltwise pair after them in the last forward (layers/bn_chain.h's
 * ct_bn_chain_set_feed: ResNet's block ends in a planned net). */
int ct_net_fed_chains(const ct_net *net);
/* Whether ct_net_forward_layer may run a fused chain when called on its first layer (default
 * no: a caller that stops inside a chain, as the Python module's forward(end=...) may, must see
 * each layer's own output). `cortado time`, which runs every layer in order, turns it on.
 * ct_net_forward always fuses. */
void ct_net_set_layerwise_fusion(ct_net *net, bool on);

/* Memory planning (net/memplan.c): at its first forward (or backward) pass the net lets blobs
 * whose lifetimes do not meet share storage, Concat's bottoms live in its top, and workspaces
 * are shared by the layers; a blob that is not an output, a loss, a data top or kept may then
 * hold another blob's values after the pass. These set it up before the first pass:
 * ct_net_set_memplan(net, false) turns it off (as CT_MEMPLAN=0 in the environment does, for the
 * workspaces too); ct_net_keep_blob keeps one blob's values readable; ct_net_set_forward_only
 * promises that backward never runs (then no diff is ever allocated). */
ct_status ct_net_set_memplan(ct_net *net, bool on, ct_error *err);
ct_status ct_net_keep_blob(ct_net *net, const char *name, ct_error *err);
ct_status ct_net_set_forward_only(ct_net *net, ct_error *err);
/* What the plan holds, in bytes per side (0 data, 1 diff); the unplanned figures are what the
 * same net holds without planning (storages a pass touches). Zero before the first pass. */
typedef struct ct_net_mem {
  bool planned, forward_only;
  size_t unplanned_bytes[2], planned_bytes[2];
  int buffers[2], shared_blobs[2];
  size_t workspace_bytes;          /* the workspaces held (shared, or each layer's own) */
  size_t workspace_unshared_bytes; /* what the layers asked for in all */
  bool workspace_kept;             /* each layer keeps its own: they fit the budget */
  size_t workspace_budget;         /* that budget (CT_WORKSPACE_KEEP_MB), bytes */
} ct_net_mem;
void ct_net_memory(const ct_net *net, ct_net_mem *m);

/* Resumable state of every layer (rng + data cursor), for .solverstate. `prefix` is put before
 * layer names ("" for the train net, "test0/" ...). Appends to st->layer_state. */
ct_status ct_net_save_state(const ct_net *net, const char *prefix, Caffe__SolverState *st, ct_error *err);
void ct_net_load_state(ct_net *net, const char *prefix, const Caffe__SolverState *st);

/* Writes the net's layers with their blobs into a NetParameter (the caller frees it with
 * protobuf_c_message_free_unpacked). */
ct_status ct_net_to_proto(const ct_net *net, Caffe__NetParameter **out, ct_error *err);
/* Copies blobs by layer name from a NetParameter (Caffe's CopyTrainedLayersFrom). */
ct_status ct_net_copy_from_proto(ct_net *net, const Caffe__NetParameter *param, const char *source,
                                 ct_error *err);

/* How weights are loaded (src/net/weights.c). `note` (may be NULL) receives Caffe's
 * "Ignoring source layer X" for each layer of the file the net lacks, and warnings. */
typedef struct ct_weights_opts {
  void (*note)(void *ctx, const char *line);
  void *ctx;
  bool allow_nonfinite; /* NaN or Inf values: a warning instead of an error */
} ct_weights_opts;
/* Before copying: a file that shares no layer with the net, holds no layers at all, or holds
 * NaN or Inf values in a layer the net has (unless allowed) is an error naming the file. */
ct_status ct_net_check_weights(const ct_net *net, const Caffe__NetParameter *p, const char *source,
                               const ct_weights_opts *o, ct_error *err);
/* ct_net_load_weights with options (o may be NULL: no notes, non-finite values refused). */
ct_status ct_net_load_weights_ex(ct_net *net, const char *path, const ct_weights_opts *o, ct_error *err);

#endif
