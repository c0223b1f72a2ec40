/* The workers of a partitioned net (partition.c) as threads of this process: worker 0 is the
 * caller of ct_net_forward / ct_net_backward, workers 1.. are threads started with the net.
 * Each walks the layer list (forward in order, backward in reverse) and runs the layers whose
 * location is its own. A bridge (a bottom written by a layer of another worker) is a hand-off:
 * the reader waits until the writer's pass has finished that layer; backward, a layer waits for
 * the layers of other workers that read its tops (they write the tops' gradients). Layers of
 * one worker follow each other in list order, so a worker needs no other waits.
 *
 * Cores: the layers that run at the same time on several workers (the shards of a dim-1 layer
 * and their element-wise followers: ct_partition_parallel) each get their worker's own
 * placement, a CPU driver over a pool of its share of the net's CPU partitions (cpu_parts / W,
 * at least one), so the workers compute at once, each on its cores, and no worker waits for
 * another's pool. Every other layer (a whole layer: dim 0 or pinned) keeps the net's placement
 * and its whole pool, which serves one caller at a time: such a layer holds pool_mu while it
 * runs. OpenBLAS's thread count is one process-wide setting: during a pass the workers and
 * their pools are the parallelism, so the caller makes every BLAS call of the pass
 * single-threaded (as local.c's workers do), and the layers' own save / restore of the setting
 * only ever sees 1. Results do not depend on the split: a layer's arithmetic depends on its
 * plan's partitions, not on which threads run them, and the tests hold the partitioned net to
 * the unpartitioned one. A net whose layers use other devices than the CPU keeps the one
 * placement for every layer (and the lock).
 *
 * One mutex and one condition variable guard the hand-offs (a handful of workers, a few dozen
 * layers). No allocation after creation. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "drivers/cpu.h"
#include "sched/plan.h"
#include "net/net_impl.h"

typedef struct deps {
  int n;
  int *v;
} deps;

struct ct_part_exec {
  ct_net *net;
  int W;
  pthread_t *th;
  int started;
  pthread_mutex_t mu, pool_mu;
  pthread_cond_t cv;
  long gen;          /* passes started */
  bool bwd, quit;
  long *done;        /* per layer: the pass that has finished it */
  int finished;      /* workers done with the current pass */
  bool failed;
  ct_status st;
  ct_error err;
  deps *fwd, *back;  /* per layer: the layers of other workers it waits for */
  ct_placement *place[CT_PART_MAX_WORKERS]; /* per worker, for its parallel layers (NULL: none) */
};

typedef struct worker_arg {
  ct_part_exec *x;
  int k;
} worker_arg;

static bool deps_done(const ct_part_exec *x, const deps *d, long gen) {
  for (int j = 0; j < d->n; j++)
    if (x->done[d->v[j]] != gen) return false;
  return true;
}

static void run_pass(ct_part_exec *x, int k, long gen, bool bwd) {
  ct_net *net = x->net;
  const int n = net->nlayers;
  for (int s = 0; s < n; s++) {
    const int i = bwd ? n - 1 - s : s;
    if (ct_net_layer_worker(net, i) != k) continue;
    const deps *d = bwd ? &x->back[i] : &x->fwd[i];
    pthread_mutex_lock(&x->mu);
    while (!x->failed && !deps_done(x, d, gen)) pthread_cond_wait(&x->cv, &x->mu);
    const bool stop = x->failed;
    pthread_mutex_unlock(&x->mu);
    if (stop) break;
    ct_error e = {0};
    const ct_plan *pl = &net->layers[i].l.plan;
    /* the net's pool: several partitions, or one that splits its GEMMs over the pool */
    bool pool = net->layers[i].l.place == net->place && pl->n > 1;
    for (int q = 0; q < pl->n && net->layers[i].l.place == net->place; q++) pool |= pl->part[q].threads > 1;
    if (pool) pthread_mutex_lock(&x->pool_mu);
    ct_status st = bwd ? ct_net_backward_layer(net, i, &e) : ct_net_forward_layer(net, i, &e);
    if (pool) pthread_mutex_unlock(&x->pool_mu);
    pthread_mutex_lock(&x->mu);
    if (st && !x->failed) {
      x->failed = true;
      x->st = st;
      x->err = e;
    }
    x->done[i] = gen;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    if (st) break;
  }
  pthread_mutex_lock(&x->mu);
  x->finished++;
  pthread_cond_broadcast(&x->cv);
  pthread_mutex_unlock(&x->mu);
}

static void *worker_main(void *arg) {
  worker_arg *a = arg;
  ct_part_exec *x = a->x;
  long seen = 0;
  for (;;) {
    pthread_mutex_lock(&x->mu);
    while (!x->quit && x->gen == seen) pthread_cond_wait(&x->cv, &x->mu);
    if (x->quit) {
      pthread_mutex_unlock(&x->mu);
      break;
    }
    seen = x->gen;
    const bool bwd = x->bwd;
    pthread_mutex_unlock(&x->mu);
    run_pass(x, a->k, seen, bwd);
  }
  free(a);
  return NULL;
}

/* The producer of layer i's bottom b: the last earlier layer with it among its tops. */
static int producer(const ct_net *net, int i, int b) {
  for (int j = i - 1; j >= 0; j--)
    for (int t = 0; t < net->layers[j].l.ntop; t++)
      if (net->layers[j].top_ids[t] == net->layers[i].bottom_ids[b]) return j;
  return -1;
}

static ct_status add_dep(deps *d, int j, ct_error *err) {
  for (int k = 0; k < d->n; k++)
    if (d->v[k] == j) return CT_OK;
  int *v = realloc(d->v, (size_t)(d->n + 1) * sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  d->v = v;
  d->v[d->n++] = j;
  return CT_OK;
}

void ct_part_exec_stop(ct_part_exec *x) {
  if (!x) return;
  pthread_mutex_lock(&x->mu);
  x->quit = true;
  pthread_cond_broadcast(&x->cv);
  pthread_mutex_unlock(&x->mu);
  for (int k = 0; k < x->started; k++) pthread_join(x->th[k], NULL);
  x->started = 0;
}

void ct_part_exec_free(ct_part_exec *x) {
  if (!x) return;
  ct_part_exec_stop(x);
  pthread_mutex_destroy(&x->mu);
  pthread_mutex_destroy(&x->pool_mu);
  pthread_cond_destroy(&x->cv);
  for (int i = 0; x->fwd && i < x->net->nlayers; i++) free(x->fwd[i].v);
  for (int i = 0; x->back && i < x->net->nlayers; i++) free(x->back[i].v);
  for (int k = 0; k < x->W; k++) ct_placement_free(x->place[k]);
  free(x->fwd);
  free(x->back);
  free(x->done);
  free(x->th);
  free(x);
}

/* Worker k's share of cpu_parts partitions (the first ones take the remainder; at least 1). */
static int share_of(int cpu_parts, int W, int k) {
  int n = cpu_parts / W + (k < cpu_parts % W ? 1 : 0);
  return n < 1 ? 1 : n;
}

ct_status ct_part_exec_fit(ct_part_exec *x, int cpu_parts, ct_error *err) {
  for (int k = 0; x && k < x->W; k++)
    if (x->place[k]) CT_TRY(ct_placement_set_cpu_parts(x->place[k], share_of(cpu_parts, x->W, k), err));
  return CT_OK;
}

/* Whether the workers can have placements of their own: the net computes on the CPU alone. */
static bool cpu_only(const ct_net *net) {
  if (net->place->ndrivers != 1 || net->place->dflt.n) return false;
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].l.spec.n) return false;
  return true;
}

/* Gives each parallel layer its worker's placement, planned again at the reshape. */
static ct_status give_cores(ct_part_exec *x, ct_error *err) {
  ct_net *net = x->net;
  if (!cpu_only(net)) return CT_OK;
  bool any = false;
  for (int i = 0; i < net->nlayers; i++) {
    if (!ct_partition_parallel(net->part, i)) continue;
    const int k = ct_net_layer_worker(net, i);
    if (k < 0 || k >= x->W) continue;
    if (!x->place[k]) CT_TRY(ct_placement_create(share_of(net->place->cpu_parts, x->W, k), &x->place[k], err));
    net->layers[i].l.place = x->place[k];
    net->layers[i].l.plan.n = 0;
    any = true;
  }
  return any ? ct_net_reshape(net, err) : CT_OK;
}

ct_status ct_part_exec_devices(ct_part_exec *x, ct_error *err) {
  if (!x) return CT_OK;
  ct_net *net = x->net;
  if (cpu_only(net)) return give_cores(x, err);
  for (int i = 0; i < net->nlayers; i++) /* the workers' CPU placements would keep them on the CPU */
    if (net->layers[i].l.place != net->place) net->layers[i].l.place = net->place, net->layers[i].l.plan.n = 0;
  return CT_OK;
}

ct_status ct_part_exec_create(ct_net *net, ct_part_exec **out, ct_error *err) {
  *out = NULL;
  const int W = ct_net_partition_workers(net), n = net->nlayers;
  if (W <= 1) return CT_OK;
  ct_part_exec *x = calloc(1, sizeof *x);
  if (!x) return ct_fail(err, CT_ENOMEM, "out of memory");
  x->net = net;
  x->W = W;
  pthread_mutex_init(&x->mu, NULL);
  pthread_mutex_init(&x->pool_mu, NULL);
  pthread_cond_init(&x->cv, NULL);
  x->done = calloc((size_t)n + 1, sizeof *x->done);
  x->fwd = calloc((size_t)n + 1, sizeof *x->fwd);
  x->back = calloc((size_t)n + 1, sizeof *x->back);
  x->th = calloc((size_t)W, sizeof *x->th);
  ct_status st = CT_OK;
  if (!x->done || !x->fwd || !x->back || !x->th) {
    st = ct_fail(err, CT_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < n && !st; i++)
    for (int b = 0; b < net->layers[i].l.nbottom && !st; b++) {
      int j = producer(net, i, b);
      if (j < 0 || ct_net_layer_worker(net, j) == ct_net_layer_worker(net, i)) continue;
      if (!(st = add_dep(&x->fwd[i], j, err))) st = add_dep(&x->back[j], i, err);
    }
  if (st || (st = give_cores(x, err))) goto fail;
  for (int k = 1; k < W; k++) {
    worker_arg *a = malloc(sizeof *a);
    if (!a) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto fail;
    }
    *a = (worker_arg){x, k};
    if (pthread_create(&x->th[x->started], NULL, worker_main, a)) {
      free(a);
      st = ct_fail(err, CT_ENOMEM, "cannot start the thread of worker %d", k);
      goto fail;
    }
    x->started++;
  }
  *out = x;
  return CT_OK;
fail:
  for (int i = 0; i < n; i++) /* no layer keeps a placement freed here */
    if (net->layers[i].l.place != net->place) net->layers[i].l.place = net->place, net->layers[i].l.plan.n = 0;
  ct_part_exec_free(x);
  return st;
}

ct_status ct_part_exec_run(ct_part_exec *x, bool backward, ct_error *err) {
  ct_blas_single_begin();
  pthread_mutex_lock(&x->mu);
  x->gen++;
  x->bwd = backward;
  x->finished = 0;
  x->failed = false;
  const long gen = x->gen;
  pthread_cond_broadcast(&x->cv);
  pthread_mutex_unlock(&x->mu);
  run_pass(x, 0, gen, backward);
  pthread_mutex_lock(&x->mu);
  while (x->finished < x->W) pthread_cond_wait(&x->cv, &x->mu);
  const bool failed = x->failed;
  pthread_mutex_unlock(&x->mu);
  ct_blas_single_end();
  if (!failed) return CT_OK;
  *err = x->err;
  return x->st;
}

/* ------------------------------------------------------------------ across processes
 *
 * A whole dim-0 layer of a group spread over W > 1 processes (placed by the net on worker 0,
 * not pinned by a location) runs on every process over its slice of the batch, when its type
 * computes each image on its own (the layers below; not losses, not Dropout or BatchNorm) and
 * all its blobs share the batch on axis 0: rank r runs it on rows N r / W .. N (r + 1) / W of
 * its bottoms and tops (unequal when W does not divide N) through views of those rows (the
 * layer is reshaped for them; the views move with the blobs' storage, re-made at each run, so
 * nothing is copied and nothing allocated once they have grown). Such a layer's rows need no
 * message from another batch layer; an edge between a batch layer and a whole one (on one
 * process) gathers the rows there, or hands each process its rows, and backward the reverse.
 * Its parameters' gradients are each process's partial sums (src/dist adds them up). */

typedef struct ct_slices {
  int *at;         /* per layer: its first entry in v (nlayers + 1) */
  ct_tensor **v;   /* per layer: a view per bottom and top */
  ct_tensor **was; /* the blobs the views stand for while the layer runs */
} ct_slices;

static const char *const k_batch_types[] = {
    "Convolution", "Deconvolution", "Pooling", "InnerProduct", "LRN", "Split", "Concat", "Flatten", "Softmax",
    "Eltwise", "ReLU", "PReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Power", "Exp", "Log", "Threshold",
    "Clip", "Swish", NULL};

/* The axis the layer works along (as its parameters set it), which must not be the batch's. */
static bool batch_axis_ok(const net_layer *nl) {
  const Caffe__LayerParameter *lp = nl->lp;
  const char *ty = nl->l.ops->type;
  bool has = false;
  int axis = 1;
  if (!strcmp(ty, "InnerProduct") && lp->inner_product_param)
    has = lp->inner_product_param->has_axis, axis = lp->inner_product_param->axis;
  else if ((!strcmp(ty, "Convolution") || !strcmp(ty, "Deconvolution")) && lp->convolution_param)
    has = lp->convolution_param->has_axis, axis = lp->convolution_param->axis;
  else if (!strcmp(ty, "Concat") && lp->concat_param) {
    if (lp->concat_param->has_concat_dim && lp->concat_param->concat_dim == 0) return false;
    has = lp->concat_param->has_axis, axis = lp->concat_param->axis;
  } else if (!strcmp(ty, "Flatten") && lp->flatten_param)
    has = lp->flatten_param->has_axis, axis = lp->flatten_param->axis;
  else if (!strcmp(ty, "Softmax") && lp->softmax_param)
    has = lp->softmax_param->has_axis, axis = lp->softmax_param->axis;
  if (!has) return true;
  if (axis < 0) axis += nl->l.bottom[0]->naxes;
  return axis >= 1;
}

static bool batch_shape(const ct_tensor *t, int *n) {
  if (t->naxes < 1) return false;
  if (*n < 0) *n = t->shape[0];
  return t->shape[0] == *n;
}

bool ct_net_layer_batch(const ct_net *net, int i) {
  const ct_bridge_ops *o = net->bridges;
  if (!o || o->world < 2 || i < 0 || i >= net->nlayers) return false;
  const net_layer *nl = &net->layers[i];
  if (ct_net_layer_worker(net, i) != 0 || ct_partition_parallel(net->part, i) || ct_partition_shard(net->part, i) >= 0 ||
      ct_partition_pinned(net->part, i) || !nl->l.nbottom || (nl->fusion && net->fuse_layerwise))
    return false;
  bool known = false;
  for (int k = 0; k_batch_types[k] && !known; k++) known = !strcmp(nl->l.ops->type, k_batch_types[k]);
  if (!known || !batch_axis_ok(nl)) return false;
  int n = -1;
  for (int b = 0; b < nl->l.nbottom; b++)
    if (!batch_shape(nl->l.bottom[b], &n)) return false;
  for (int t = 0; t < nl->l.ntop; t++)
    if (!batch_shape(nl->l.top[t], &n) || nl->loss_weight[t] != 0) return false;
  return n >= o->world;
}

/* Rank r's rows of a batch of N over W processes. */
static void rows_of(int N, int W, int r, size_t *n0, size_t *nr) {
  *n0 = (size_t)((long long)N * r / W);
  *nr = (size_t)((long long)N * (r + 1) / W) - *n0;
}

void ct_part_dist_free(ct_net *net) {
  free(net->bridges);
  net->bridges = NULL;
  ct_slices *s = net->slices;
  if (!s) return;
  for (int k = 0; k < s->at[net->nlayers]; k++) ct_tensor_free(s->v[k]);
  free(s->v);
  free(s->was);
  free(s->at);
  free(s);
  net->slices = NULL;
}

static ct_status make_slices(ct_net *net, ct_error *err) {
  ct_slices *s = calloc(1, sizeof *s);
  if (!(net->slices = s) || !(s->at = calloc((size_t)net->nlayers + 1, sizeof *s->at)))
    return ct_fail(err, CT_ENOMEM, "out of memory");
  for (int i = 0; i < net->nlayers; i++) s->at[i + 1] = s->at[i] + net->layers[i].l.nbottom + net->layers[i].l.ntop;
  const size_t n = (size_t)s->at[net->nlayers] + 1;
  if (!(s->v = calloc(n, sizeof *s->v)) || !(s->was = calloc(n, sizeof *s->was)))
    return ct_fail(err, CT_ENOMEM, "out of memory");
  for (int k = 0; k < s->at[net->nlayers]; k++)
    if (!(s->v[k] = ct_tensor_create())) return ct_fail(err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

ct_status ct_net_set_bridges(ct_net *net, const ct_bridge_ops *ops, ct_error *err) {
  ct_part_dist_free(net);
  if (!ops) return CT_OK;
  if (!net->part) return ct_fail(err, CT_EINVAL, "the net is not partitioned over workers (partition_workers)");
  if (!(net->bridges = malloc(sizeof *net->bridges))) return ct_fail(err, CT_ENOMEM, "out of memory");
  *net->bridges = *ops;
  ct_status st = make_slices(net, err);
  const int tags = st ? 0 : net->slices->at[net->nlayers];
  if (!st && ops->max_tag > 0 && tags - 1 > ops->max_tag)
    st = ct_fail(err, CT_EUNSUPPORTED,
                 "net \"%s\": its %d layers have %d bottoms and tops, and the bridges between processes tag each "
                 "bottom's messages with its own number; this MPI allows tags up to %d (MPI_TAG_UB, less the tags "
                 "cortado keeps), so the net cannot be spread over processes: run it in one process, or with fewer "
                 "layers", ct_net_name(net), net->nlayers, tags, ops->max_tag);
  if (st) ct_part_dist_free(net);
  return st;
}

static int rank_of_layer(const ct_net *net, int i) {
  const ct_bridge_ops *o = net->bridges;
  return o->rank_of(o->ctx, ct_net_layer_worker(net, i));
}

bool ct_net_bridged(const ct_net *net) { return net->bridges != NULL; }

bool ct_net_layer_local(const ct_net *net, int i) {
  return !net->bridges || rank_of_layer(net, i) == net->bridges->rank || ct_net_layer_batch(net, i);
}

/* Whether reader i takes bottom b's gradient back over its bridge. */
static bool sends_back(const ct_net *net, int i, int b) {
  return net->layers[i].need_backward && net->layers[i].l.propagate_down[b];
}

static ct_status host_side(ct_net *net, ct_tensor *t, ct_side side, bool write, float **p, ct_error *err) {
  return ct_tensor_deref(t, side, &ct_mem_host, write ? CT_WRITE : CT_READ, 0, t->count, &net->place->stats, p, err);
}

/* Batch layer i on this process's rows: its bottoms and tops swapped for views of them (one
 * view for a blob it both reads and writes), run, and swapped back. */
static ct_status run_slice(ct_net *net, int i, bool backward, ct_error *err) {
  ct_layer *l = &net->layers[i].l;
  const ct_bridge_ops *o = net->bridges;
  ct_slices *s = net->slices;
  const int nb = l->nbottom, n = nb + l->ntop, at = s->at[i];
  size_t n0, nr;
  rows_of(l->bottom[0]->shape[0], o->world, o->rank, &n0, &nr);
  ct_status st = CT_OK;
  for (int k = 0; k < n && !st; k++) {
    ct_tensor **slot = k < nb ? &l->bottom[k] : &l->top[k - nb], *t = *slot, *v = s->v[at + k];
    s->was[at + k] = t;
    for (int q = 0; q < k && v == s->v[at + k]; q++)
      if (s->was[at + q] == t) v = s->v[at + q];
    if (v == s->v[at + k]) {
      const size_t inner = ct_tensor_inner(t);
      for (int side = 0; side < 2; side++)
        if (t->st[side]) ct_tensor_view(v, (ct_side)side, t->st[side], t->off[side] + n0 * inner);
      int shape[CT_MAX_AXES];
      memcpy(shape, t->shape, sizeof shape);
      shape[0] = (int)nr;
      st = ct_tensor_reshape(v, t->naxes, shape, err);
    }
    *slot = v;
  }
  if (!st) st = backward ? ct_net_backward_layer(net, i, err) : ct_net_forward_layer(net, i, err);
  for (int k = 0; k < n; k++)
    if (s->was[at + k]) *(k < nb ? &l->bottom[k] : &l->top[k - nb]) = s->was[at + k], s->was[at + k] = NULL;
  return st;
}

/* The tag of bottom b of layer i: its place among every layer's bottoms and tops (the slices'
 * index), so no two bottoms share one (layer x 32 + bottom gave a Concat's bottom 32 the next
 * layer's bottom 0's); ct_net_set_bridges checks the largest against the bridges' max_tag. */
static int bridge_tag(const ct_net *net, int i, int b) { return net->slices->at[i] + b; }

/* One edge between a writer and a reader of blob t (tag: the reader and its bottom), in the
 * direction of the pass: `src` sends, `dst` receives. A batch side means every process holds its
 * rows there; a whole side, one process (its rank) the whole blob. */
typedef struct edge {
  bool src_batch, dst_batch;
  int src, dst; /* ranks of whole sides */
} edge;

static ct_status recv_edge(ct_net *net, const edge *e, ct_tensor *t, ct_side side, int tag, ct_error *err) {
  const ct_bridge_ops *o = net->bridges;
  const int me = o->rank;
  if (e->src_batch && e->dst_batch) return CT_OK;
  if (!e->dst_batch && e->dst != me) return CT_OK;
  if (!e->src_batch && e->src == me) return CT_OK;
  float *p;
  CT_TRY(host_side(net, t, side, true, &p, err));
  const size_t inner = ct_tensor_inner(t);
  size_t n0, nr;
  if (e->src_batch) /* the whole blob here: every other process's rows */
    for (int r = 0; r < o->world; r++) {
      if (r == me) continue;
      rows_of(t->shape[0], o->world, r, &n0, &nr);
      if (nr) CT_TRY(o->recv(o->ctx, r, tag, p + n0 * inner, nr * inner, err));
    }
  else if (e->dst_batch) { /* this process's rows, from the whole blob's process */
    rows_of(t->shape[0], o->world, me, &n0, &nr);
    if (nr) CT_TRY(o->recv(o->ctx, e->src, tag, p + n0 * inner, nr * inner, err));
  } else {
    CT_TRY(o->recv(o->ctx, e->src, tag, p, t->count, err));
  }
  return CT_OK;
}

static ct_status send_edge(ct_net *net, const edge *e, ct_tensor *t, ct_side side, int tag, ct_error *err) {
  const ct_bridge_ops *o = net->bridges;
  const int me = o->rank;
  if (e->src_batch && e->dst_batch) return CT_OK;
  if (!e->src_batch && e->src != me) return CT_OK;
  if (!e->dst_batch && e->dst == me) return CT_OK;
  float *p;
  CT_TRY(host_side(net, t, side, false, &p, err));
  const size_t inner = ct_tensor_inner(t);
  size_t n0, nr;
  if (e->dst_batch) /* each other process its rows */
    for (int r = 0; r < o->world; r++) {
      if (r == me) continue;
      rows_of(t->shape[0], o->world, r, &n0, &nr);
      if (nr) CT_TRY(o->send(o->ctx, r, tag, p + n0 * inner, nr * inner, err));
    }
  else if (e->src_batch) { /* this process's rows to the whole blob's process */
    rows_of(t->shape[0], o->world, me, &n0, &nr);
    if (nr) CT_TRY(o->send(o->ctx, e->dst, tag, p + n0 * inner, nr * inner, err));
  } else {
    CT_TRY(o->send(o->ctx, e->dst, tag, p, t->count, err));
  }
  return CT_OK;
}

/* The edge from writer j to reader k, forward (writer sends) or backward (reader sends). */
static edge edge_of(const ct_net *net, int j, int k, bool backward) {
  const bool bj = ct_net_layer_batch(net, j), bk = ct_net_layer_batch(net, k);
  const int rj = rank_of_layer(net, j), rk = rank_of_layer(net, k);
  return backward ? (edge){bk, bj, rk, rj} : (edge){bj, bk, rj, rk};
}

/* Forward in list order: a layer this process runs (whole here, or its batch rows) first
 * receives what other processes wrote of its bottoms, runs, then sends its tops to the
 * processes whose layers read them. Backward in reverse: it receives its tops' gradients from
 * remote readers, runs, and sends the gradients of bottoms that remote layers wrote. Sends do
 * not block, so every receive's send is eventually made. */
ct_status ct_part_dist_run(ct_net *net, bool backward, ct_error *err) {
  const ct_bridge_ops *o = net->bridges;
  const int n = net->nlayers, me = o->rank;
  for (int s = 0; s < n; s++) {
    const int i = backward ? n - 1 - s : s;
    const bool batch = ct_net_layer_batch(net, i);
    if (!batch && rank_of_layer(net, i) != me) continue;
    net_layer *nl = &net->layers[i];
    if (!backward) {
      for (int b = 0; b < nl->l.nbottom; b++) {
        int j = producer(net, i, b);
        if (j < 0) continue;
        const edge e = edge_of(net, j, i, false);
        CT_TRY(recv_edge(net, &e, nl->l.bottom[b], CT_DATA, bridge_tag(net, i, b), err));
      }
    } else {
      for (int k = i + 1; k < n; k++) /* the readers of i's tops */
        for (int b = 0; b < net->layers[k].l.nbottom; b++) {
          if (producer(net, k, b) != i || !sends_back(net, k, b)) continue;
          const edge e = edge_of(net, i, k, true);
          CT_TRY(recv_edge(net, &e, net->layers[k].l.bottom[b], CT_DIFF, bridge_tag(net, k, b), err));
        }
    }
    if (batch)
      CT_TRY(run_slice(net, i, backward, err));
    else
      CT_TRY(backward ? ct_net_backward_layer(net, i, err) : ct_net_forward_layer(net, i, err));
    if (!backward) {
      for (int k = i + 1; k < n; k++)
        for (int b = 0; b < net->layers[k].l.nbottom; b++) {
          if (producer(net, k, b) != i) continue;
          const edge e = edge_of(net, i, k, false);
          CT_TRY(send_edge(net, &e, net->layers[k].l.bottom[b], CT_DATA, bridge_tag(net, k, b), err));
        }
    } else {
      for (int b = 0; b < nl->l.nbottom; b++) {
        int j = producer(net, i, b);
        if (j < 0 || !sends_back(net, i, b)) continue;
        const edge e = edge_of(net, j, i, true);
        CT_TRY(send_edge(net, &e, nl->l.bottom[b], CT_DIFF, bridge_tag(net, i, b), err));
      }
    }
  }
  return o->flush(o->ctx, err);
}
