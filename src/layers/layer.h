/* The layer contract (Caffe's): setup -> reshape -> forward -> backward, with declared arity.
 *
 * Conventions every layer keeps:
 *  - setup reads and checks the layer's parameters (l->lp), creates its learnable blobs in
 *    l->blobs (shape + filler from l->rng; the net overwrites them when weights are loaded),
 *    and allocates l->priv. Shapes of bottoms are known at setup (the net reshapes in order).
 *  - reshape sets every top's shape from the bottoms' shapes and sizes internal buffers; it is
 *    the only place buffers grow. l->plan is set before it (per-partition scratch is sized for
 *    the plan's partitions, each on its own driver: ct_part_scratch).
 *  - forward and backward run ONE partition of the plan (CcT): a driver and a range of images
 *    (layers/exec.c runs the partitions, concurrently, and sums parameter gradients). A layer
 *    reaches tensor memory only through the partition helpers below, which make the partition's
 *    range valid on its driver (copying, counted, only what is stale there), and computes only
 *    through that driver's entries. ops->splits says whether the layer may run on a range of
 *    images at all; when it may not, its plan is one partition with p->whole set.
 *  - forward writes top data. backward writes (=) bottom diffs for the bottoms with
 *    l->propagate_down[i] set, and ACCUMULATES (+=) into the parameter gradients
 *    (ct_part_param_grad) whose l->param_propagate_down[j] is set, so that iter_size and shared
 *    parameters sum correctly.
 *  - a loss layer reads its scale from top[0]'s diff element 0 (the net stores the loss weight
 *    there).
 *  - In-place (top == bottom) is allowed only for layers with ops->in_place set.
 *  - Errors go through ct_layer_fail with the layer's name. A driver entry's failure is returned
 *    as it is (CT_TRY), with err left empty: exec.c fills in the layer, the device and the
 *    driver's reason. Nothing aborts.
 */
#ifndef CT_LAYER_H
#define CT_LAYER_H

#include <stdbool.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/tensor.h"
#include "cortado.pb-c.h"
#include "drivers/driver.h"
#include "sched/plan.h"

typedef struct ct_layer ct_layer;

typedef struct ct_layer_ops {
  const char *type;  /* Caffe's type string, e.g. "Convolution" */
  int min_bottom, max_bottom; /* max -1: unbounded */
  int min_top, max_top;
  bool in_place;     /* may run with top[i] == bottom[i] */
  bool is_loss;      /* top[0] gets loss_weight 1 by default */
  bool has_backward; /* false: the layer propagates nothing (data, accuracy, argmax, ...) */
  unsigned label_bottoms; /* bit i: bottom i is a label/target and never takes a gradient,
                             even under force_backward (Caffe's AllowForceBackward) */
  /* How partitions may split it: splits(l) true when forward and backward may run on any range
   * of images on their own (checked after setup; every bottom and top must also have the batch
   * as its first axis); NULL: never. gains: on one device, splitting over the CPU's cores pays
   * (else the CPU runs it whole on all cores, as a large fully-connected GEMM). kind: what
   * bounds it, for automatic shares. */
  bool (*splits)(const ct_layer *l);
  bool gains;
  ct_work_kind kind;
  /* Runs on the CPU whatever the plan says (the data layers, which fill host memory). */
  bool host;
  ct_status (*setup)(ct_layer *l, ct_error *err);
  ct_status (*reshape)(ct_layer *l, ct_error *err);
  /* Optional: once per forward pass, before the partitions, on the calling thread (Dropout
   * draws the whole batch's mask from its one random stream here). */
  ct_status (*begin_forward)(ct_layer *l, ct_error *err);
  ct_status (*forward)(ct_layer *l, const ct_part *p, ct_error *err);
  ct_status (*backward)(ct_layer *l, const ct_part *p, ct_error *err); /* NULL when !has_backward */
  void (*destroy)(ct_layer *l);  /* frees l->priv's contents and l->priv; may be NULL */
  /* Optional: useful FLOPs of one forward pass (for `cortado time`), and a short note on how
   * the layer runs (the lowering type chosen, ...). */
  double (*flops)(const ct_layer *l);
  const char *(*describe)(const ct_layer *l);
  /* Optional: resumable state (data cursor) beyond the rng, saved in .solverstate. */
  uint64_t (*get_cursor)(const ct_layer *l);
  void (*set_cursor)(ct_layer *l, uint64_t cursor);
} ct_layer_ops;

struct ct_layer {
  const ct_layer_ops *ops;
  const Caffe__LayerParameter *lp; /* owned by the net */
  const char *name;
  int index;        /* position in the net */
  Caffe__Phase phase;
  const char *dir;  /* directory of the net's prototxt, for relative paths ("" if none) */
  int nbottom, ntop;
  ct_tensor **bottom, **top;
  bool *propagate_down;       /* per bottom: compute bottom diff */
  int nblobs;
  ct_tensor **blobs;          /* learnable parameters, owned by the net */
  bool *param_propagate_down; /* per blob: accumulate blob diff */
  ct_rng rng;                 /* this layer's own random stream */
  ct_placement *place;        /* the net's drivers, pool and copy counters */
  ct_plan_spec spec;          /* the prototxt's partition entries (n == 0: the net's default) */
  ct_plan plan;               /* set by the net before each reshape */
  ct_tensor **part_grad;      /* per blob: the partitions' private gradients, (plan.n x count),
                                 when the plan has more than one partition (exec.c) */
  void *priv;                 /* the layer's private state */
  /* private tensors the layer writes in forward and reads only in its own backward (BatchNorm's
   * normalised input, an in-place Scale's saved input): the memory planner may give them
   * storage another layer's such tensor uses at other times (ct_layer_plan_saved) */
  int nsaved;
  ct_tensor *saved[4];
};

/* ---------------------------------------------------------------- a partition's tensors */

/* One side of t for partition p, valid on p's driver for `mode`: the partition's images
 * [p->begin, p->end) of t's first axis, or all of t when p->whole. *out is t's element 0 on that
 * driver (index with the image offsets as usual). Copies are counted in the net's counters. */
ct_status ct_part_io(const ct_layer *l, const ct_part *p, ct_tensor *t, ct_side side, ct_access mode, float **out,
                     ct_error *err);
static inline ct_status ct_read(const ct_layer *l, const ct_part *p, ct_tensor *t, const float **x, ct_error *err) {
  return ct_part_io(l, p, t, CT_DATA, CT_READ, (float **)x, err);
}
static inline ct_status ct_write(const ct_layer *l, const ct_part *p, ct_tensor *t, float **y, ct_error *err) {
  return ct_part_io(l, p, t, CT_DATA, CT_WRITE, y, err);
}
static inline ct_status ct_read_diff(const ct_layer *l, const ct_part *p, ct_tensor *t, const float **dy,
                                     ct_error *err) {
  return ct_part_io(l, p, t, CT_DIFF, CT_READ, (float **)dy, err);
}
static inline ct_status ct_write_diff(const ct_layer *l, const ct_part *p, ct_tensor *t, float **dx, ct_error *err) {
  return ct_part_io(l, p, t, CT_DIFF, CT_WRITE, dx, err);
}
/* All of one side of t on p's driver (parameters, per-layer tables). */
ct_status ct_part_all(const ct_layer *l, const ct_part *p, ct_tensor *t, ct_side side, ct_access mode, float **out,
                      ct_error *err);
/* Blob j's values on p's driver. */
static inline ct_status ct_read_param(const ct_layer *l, const ct_part *p, int j, const float **w, ct_error *err) {
  return ct_part_all(l, p, l->blobs[j], CT_DATA, CT_READ, (float **)w, err);
}
/* Where partition p accumulates (+=) blob j's gradient: the blob's diff when the plan has one
 * partition, else p's private buffer (zeroed before backward, summed into the diff after it in
 * partition order, so the result does not depend on thread timing). */
ct_status ct_part_param_grad(const ct_layer *l, const ct_part *p, int j, float **out, ct_error *err);
/* A loss layer's scale: element 0 of top[0]'s diff, where the net stores the loss weight (read
 * on the host). */
ct_status ct_layer_loss_scale(const ct_layer *l, float *scale, ct_error *err);
/* Element i of t's data, read on the host (a value an error message quotes). */
ct_status ct_layer_host_value(const ct_layer *l, ct_tensor *t, size_t i, float *v, ct_error *err);
/* Sets element 0 of t's data to v (a loss layer's scalar output), on the host. */
ct_status ct_layer_set_scalar(const ct_layer *l, ct_tensor *t, float v, ct_error *err);
/* The driver that computes the layer's unsplit work and owns its whole-layer buffers: the
 * driver of its plan's first partition (the CPU for a layer built outside a net). */
const ct_driver *ct_layer_driver(const ct_layer *l);
/* Whether every driver of l's current plan, and ct_layer_driver(l), has the optional entry at
 * byte offset `entry` of ct_driver_ops (offsetof(ct_driver_ops, name)). */
bool ct_layer_drivers_have(const ct_layer *l, size_t entry);

/* Per-partition scratch (lowering workspaces, index buffers): each partition of l's plan gets
 * at least `bytes` of its own driver's memory. For reshape; the contents are not kept when it
 * grows. A zeroed ct_part_scratch is empty. */
typedef struct ct_ws_slot ct_ws_slot;
typedef struct ct_part_scratch {
  int n;
  void *p[CT_MAX_PARTITIONS];
  size_t bytes[CT_MAX_PARTITIONS];
  const ct_driver *d[CT_MAX_PARTITIONS];
  ct_ws_slot *slot[CT_MAX_PARTITIONS]; /* a shared workspace (ct_part_workspace_reserve) */
  struct ct_ws_pool *pool;             /* the pool that knows this scratch as a user, or NULL */
  bool shared_only; /* a private copy gains its owner nothing (set before reserving): it stays
                       on the shared workspaces, and out of ct_ws_pool_keep's budget */
  int user;                            /* its index among the pool's users */
} ct_part_scratch;
ct_status ct_part_scratch_reserve(ct_part_scratch *s, const ct_layer *l, size_t bytes, ct_error *err);
void ct_part_scratch_free(ct_part_scratch *s);

/* A workspace whose contents only matter while one layer runs (convolution's lowering): when
 * the net shares workspaces (memory planning, net/memplan.c), every layer's partition i on one
 * driver gets the same buffer, the largest any of them asked for; else it is ct_part_scratch.
 * Layers run one at a time, so that is safe; a layer that hopes to find what it left there
 * (the forward lowering, for backward) asks ct_part_scratch_kept first. Where all the
 * workspaces the layers asked for fit a budget (ct_ws_pool_keep), each layer keeps its own
 * instead, so backward finds its forward's lowering. */
struct ct_ws_slot {
  void *p;
  size_t bytes;
  const ct_driver *d;
  int index;
  const ct_part_scratch *last; /* the scratch that used it last (NULL: contents lost) */
  bool was_last;               /* at the last ct_part_scratch_of, `last` had used it before */
};
ct_status ct_part_workspace_reserve(ct_part_scratch *s, const ct_layer *l, size_t bytes, ct_error *err);
static inline void *ct_part_scratch_of(const ct_part_scratch *s, const ct_part *p) {
  ct_ws_slot *w = s->slot[p->index];
  if (!w) return s->p[p->index];
  w->was_last = w->last == s;
  w->last = s;
  return w->p;
}
/* Whether the workspace still held what this scratch's owner left there when its previous
 * ct_part_scratch_of returned it (always true for a private scratch). Ask right after
 * ct_part_scratch_of. */
static inline bool ct_part_scratch_kept(const ct_part_scratch *s, const ct_part *p) {
  const ct_ws_slot *w = s->slot[p->index];
  return !w || w->was_last;
}
/* The net's shared workspaces (one per partition index and driver), hung on its placement. */
typedef struct ct_ws_pool ct_ws_pool;
ct_status ct_ws_pool_create(ct_ws_pool **out, ct_error *err);
void ct_ws_pool_free(ct_ws_pool *pool);
/* Bytes the pool's workspaces hold (shared slots and kept private ones), and the bytes its
 * users asked for in all (what private scratch would have held). */
void ct_ws_pool_bytes(const ct_ws_pool *pool, size_t *held, size_t *asked);
/* Gives every user its own workspace when all they asked for is at most `budget` bytes, so that
 * no layer lowers its input twice; later reservations stay private while the total fits. Users
 * marked shared_only are neither counted nor moved: they keep the shared buffers. Returns
 * whether the pool now keeps workspaces private. */
ct_status ct_ws_pool_keep(ct_ws_pool *pool, size_t budget, bool *kept, ct_error *err);
/* Whether the pool gives its users private workspaces (ct_ws_pool_keep). */
bool ct_ws_pool_keeps(const ct_ws_pool *pool);

/* Declares t (owned by the layer) as written in forward and read only by the layer's backward,
 * so that the memory planner may share its storage between layers (and, in a net that runs
 * forward only, among all such tensors). At most 4 per layer; declaring one twice is a no-op. */
void ct_layer_plan_saved(ct_layer *l, ct_tensor *t);

/* Sets l->nblobs = n and creates n empty tensors (for setup). Freed by the net. */
ct_status ct_layer_alloc_blobs(ct_layer *l, int n, ct_error *err);
/* ct_fail with "layer <name> (<type>): " before the message. */
ct_status ct_layer_fail(const ct_layer *l, ct_error *err, ct_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Where an operand b (Scale's factor, Bias's term) lines up with bottom x: from x's axis
 * `axis_param` (0 when b is a scalar) b's shape must equal x's next b->naxes axes. Fills the
 * element counts before, along and after those axes. `what` names b in messages. */
ct_status ct_layer_broadcast_axes(const ct_layer *l, const ct_tensor *x, const ct_tensor *b, int axis_param,
                                  const char *what, size_t *outer, size_t *dim, size_t *inner, ct_error *err);
/* Checks that bottom[i] has exactly `naxes` axes (a common reshape check). */
ct_status ct_layer_check_axes(const ct_layer *l, int i, int naxes, ct_error *err);
/* The splits entry for layers that run per image whatever their parameters. */
bool ct_layer_splits_always(const ct_layer *l);
/* Dropout as one shard of a layer split on dim 1 (issue 19): its bottom holds channels c0 ..
 * c0 + cn of a blob of `whole` channels, and it draws those elements of the whole blob's mask
 * (the counter-based mask's indices), so the shards together make the unpartitioned mask. */
void ct_dropout_set_channels(ct_layer *l, int c0, int cn, int whole);
/* Partition p's elements of t: [*first, *first + *n) (all of t when p->whole). */
static inline void ct_part_span(const ct_part *p, const ct_tensor *t, size_t *first, size_t *n) {
  if (p->whole) {
    *first = 0;
    *n = t->count;
    return;
  }
  size_t inner = ct_tensor_inner(t);
  *first = (size_t)p->begin * inner;
  *n = (size_t)(p->end - p->begin) * inner;
}
/* Partition p's images of t's first axis: the first, and how many (all of them when p->whole). */
static inline void ct_part_images(const ct_part *p, const ct_tensor *t, int *first, int *n) {
  *first = p->whole ? 0 : p->begin;
  *n = p->whole ? (t->naxes ? t->shape[0] : 1) : p->end - p->begin;
}

/* Running a layer's plan (exec.c): forward, and backward with the parameter gradients summed. */
ct_status ct_layer_forward(ct_layer *l, ct_error *err);
ct_status ct_layer_backward(ct_layer *l, ct_error *err);
/* Sets l->plan for its current bottoms (from its spec or the placement's default), then
 * reshapes it; if a top does not have the batch as its first axis the layer runs unsplit. */
ct_status ct_layer_plan_reshape(ct_layer *l, const ct_plan *prev, ct_error *err);
void ct_layer_free_part_grads(ct_layer *l);

/* The registry: a static table of every layer type (see registry.c and the *_list.h files). */
const ct_layer_ops *ct_layer_find(const char *type);
int ct_layer_registry_size(void);
const ct_layer_ops *ct_layer_registry_at(int i);

#endif
