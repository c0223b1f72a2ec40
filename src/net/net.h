/* The net's internals, shared with the solver (src/solvers) and tools that need more than the
 * public API: the layer list, the learnable-parameter table and resumable layer state. */
#ifndef CT_NET_H
#define CT_NET_H

#include "cortado.h"
#include "cortado.pb-c.h"
#include "layers/layer.h"
#include "solvers/update.h"

/* Builds a net from an already-parsed NetParameter (borrowed: the net makes its own copy).
 * `source` names the file in messages; `dir` anchors relative data paths; seed seeds every
 * layer's random stream (fillers run during construction). */
ct_status ct_net_create_from_param(const Caffe__NetParameter *param, const char *source, const char *dir,
                                   ct_phase phase, int level, const char *const *stages, uint64_t seed,
                                   ct_net **out, ct_error *err);

/* Whether layer lp takes part in the net of this phase, level and stages (Caffe's include /
 * exclude rules; false for a layer with both kinds of rule, which ct_net_create rejects). For
 * code that rewrites a NetParameter before the net is built (src/dist). */
bool ct_net_layer_in_phase(const Caffe__LayerParameter *lp, ct_phase phase, int level, const char *const *stages);

const char *ct_net_name(const ct_net *net);
/* The net's worker threads (CcT's partitions), for work outside the layers (the update). */
struct ct_pool *ct_net_pool(ct_net *net);
/* The driver the net's layers compute on (owned by the net), for the update of its parameters. */
const ct_driver *ct_net_driver(const ct_net *net);
ct_layer *ct_net_layer(ct_net *net, int i);

/* The learnable parameters (owners only; shared copies view them) as ranges of the flat
 * buffers, with lr_mult / decay_mult; buffers hold ct_net_param_total floats. */
int ct_net_num_learnable(const ct_net *net);
const ct_update_param *ct_net_learnable(const ct_net *net);
const ct_tensor *ct_net_learnable_tensor(const ct_net *net, int i);
float *ct_net_param_buffer(ct_net *net);
float *ct_net_diff_buffer(ct_net *net);
size_t ct_net_param_total(const ct_net *net);

/* NaN/Inf diagnostics: the first layer (in forward order) whose top data holds a non-finite
 * value, or -1. */
int ct_net_first_nonfinite_layer(const ct_net *net);
/* The first layer in backward order (the last in forward order) whose parameter gradient holds
 * a non-finite value, or -1. */
int ct_net_first_nonfinite_grad_layer(const ct_net *net);
/* Images in one forward pass: the first axis of the first layer's first top (0 if none). */
int ct_net_batch_size(const ct_net *net);

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

/* BlobProto <-> tensor helpers (shape check on load). */
ct_status ct_blob_to_proto(const ct_tensor *t, bool with_diff, Caffe__BlobProto **out, ct_error *err);
/* Reads the shape of a BlobProto (shape or legacy num/channels/height/width); returns naxes,
 * or -1 when it has more than CT_MAX_AXES axes or a dimension out of range. */
int ct_blob_proto_shape(const Caffe__BlobProto *b, int shape[CT_MAX_AXES]);

#endif
