/* The layer contract (Caffe's): setup -> reshape -> forward -> backward, with declared arity.
 *
 * Conventions every layer keeps:
 *  - setup reads and checks the layer's parameters (l->lp), creates its learnable blobs in
 *    l->blobs (shape + filler from l->rng; the net overwrites them when weights are loaded),
 *    and allocates l->priv. Shapes of bottoms are known at setup (the net reshapes in order).
 *  - reshape sets every top's shape from the bottoms' shapes and sizes internal buffers; it is
 *    the only place buffers grow. forward/backward allocate nothing.
 *  - forward writes top data. backward writes (=) bottom diffs for the bottoms with
 *    l->propagate_down[i] set, and ACCUMULATES (+=) into blob diffs whose
 *    l->param_propagate_down[j] is set, so that iter_size and shared parameters sum correctly.
 *  - a loss layer reads its scale from top[0]->diff[0] (the net stores the loss weight there).
 *  - In-place (top == bottom) is allowed only for layers with ops->in_place set.
 *  - Errors go through ct_fail with the layer's name; nothing aborts.
 *  - All arithmetic on tensors and internal buffers goes through the layer's driver
 *    (ct_layer_driver), and internal buffers come from its alloc: no BLAS or device call here.
 */
#ifndef CT_LAYER_H
#define CT_LAYER_H

#include <stdbool.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/tensor.h"
#include "cortado.pb-c.h"
#include "drivers/driver.h"

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
  ct_status (*setup)(ct_layer *l, ct_error *err);
  ct_status (*reshape)(ct_layer *l, ct_error *err);
  ct_status (*forward)(ct_layer *l, ct_error *err);
  void (*backward)(ct_layer *l); /* NULL when !has_backward */
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
  struct ct_pool *pool;       /* the net's worker threads (NULL: run serially) */
  int partitions;             /* CPU partitions of the batch (CcT); prototxt `partition` overrides */
  const ct_driver *driver;    /* the device it computes on, the net's (NULL: the CPU driver) */
  void *priv;                 /* the layer's private state */
};

/* l->driver, or the CPU driver for a layer built outside a net (the single-layer harness). */
const ct_driver *ct_layer_driver(const ct_layer *l);
/* Makes *buf hold at least `need` floats of l's driver memory: when *cap is short, a new buffer
 * replaces it (the contents are not kept) and *cap grows. For reshape; ct_layer_release frees. */
ct_status ct_layer_grow(const ct_layer *l, float **buf, size_t *cap, size_t need, ct_error *err);
void ct_layer_release(const ct_layer *l, void *p);

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

/* The registry: a static table of every layer type (see registry.c and the *_list.h files). */
const ct_layer_ops *ct_layer_find(const char *type);
int ct_layer_registry_size(void);
const ct_layer_ops *ct_layer_registry_at(int i);

#endif
