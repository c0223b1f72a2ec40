/* Old Caffe formats to the current ones, in Caffe's order (see upgrade.h). Every step works on
 * protobuf-c's unpacked layout: values move between messages by pointer, and a moved pointer is
 * cleared in its old message, so each allocation keeps exactly one owner and
 * protobuf_c_message_free_unpacked frees the result whatever step failed. */
#include "proto/upgrade.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* ------------------------------------------------------------------ messages in context */

typedef struct up {
  const char *source;
  ct_srcmap *map;
  ct_error *err;
} up;

/* "file:line:col: layer \"x\": " or "file: layer \"x\": " */
static ct_status up_fail(const up *u, const void *msg, const char *field, const char *layer, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static ct_status up_fail(const up *u, const void *msg, const char *field, const char *layer, const char *fmt, ...) {
  char what[700], at[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  int line, col;
  if (field && ct_srcmap_find_field(u->map, msg, field, &line, &col))
    snprintf(at, sizeof at, "%s:%d:%d", ct_srcmap_file(u->map), line, col);
  else if (ct_srcmap_find(u->map, msg, &line, &col))
    snprintf(at, sizeof at, "%s:%d:%d", ct_srcmap_file(u->map), line, col);
  else
    snprintf(at, sizeof at, "%s", u->source ? u->source : "<net>");
  if (layer) return ct_fail(u->err, CT_EINVAL, "%s: layer \"%s\": %s", at, layer, what);
  return ct_fail(u->err, CT_EINVAL, "%s: %s", at, what);
}

static ct_status oom(const up *u) { return ct_fail(u->err, CT_ENOMEM, "out of memory upgrading %s", u->source); }

/* A fresh message of a generated type, or NULL. */
#define NEW_MSG(type, init) ((type *)new_msg(sizeof(type), (init)))
static void *new_msg(size_t size, void (*init)(void *)) {
  void *m = malloc(size);
  if (m) init(m);
  return m;
}
#define INIT_FN(f) ((void (*)(void *))(f))

/* *slot, created when absent. */
#define ENSURE(slot, type, initfn) ((slot) ? (slot) : ((slot) = NEW_MSG(type, INIT_FN(initfn))))

static void free_msg(void *m) {
  if (m) protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
}

/* Appends one element to a repeated field's array (a realloc of the unpacked layout). */
static bool push(void **arr, size_t *n, const void *elem, size_t size) {
  char *a = realloc(*arr, (*n + 1) * size);
  if (!a) return false;
  memcpy(a + *n * size, elem, size);
  *arr = a;
  (*n)++;
  return true;
}
#define PUSH(arr, n, val) push((void **)&(arr), &(n), &(val), sizeof(val))

static bool str_set(const char *s, const ProtobufCMessage *m, const char *field) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
  return s && (!f || s != (const char *)f->default_value);
}

/* Moves a string field out of its message (leaving its default in place). */
static char *take_str(char **slot, const ProtobufCMessage *m, const char *field) {
  char *s = *slot;
  if (!str_set(s, m, field)) return NULL;
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
  *slot = f ? (char *)f->default_value : NULL;
  return s;
}

static void put_str(char **slot, char *s, const ProtobufCMessage *m, const char *field) {
  if (str_set(*slot, m, field)) free(*slot);
  *slot = s;
}

/* ------------------------------------------------------------------ V1 type names */

static const struct {
  int v1;
  const char *name;
} k_v1_types[] = {
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__NONE, ""},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ABSVAL, "AbsVal"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ACCURACY, "Accuracy"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ARGMAX, "ArgMax"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__BNLL, "BNLL"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONCAT, "Concat"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONTRASTIVE_LOSS, "ContrastiveLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION, "Convolution"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DECONVOLUTION, "Deconvolution"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA, "Data"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT, "Dropout"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DUMMY_DATA, "DummyData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EUCLIDEAN_LOSS, "EuclideanLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ELTWISE, "Eltwise"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EXP, "Exp"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__FLATTEN, "Flatten"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA, "HDF5Data"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_OUTPUT, "HDF5Output"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HINGE_LOSS, "HingeLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IM2COL, "Im2col"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA, "ImageData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INFOGAIN_LOSS, "InfogainLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT, "InnerProduct"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN, "LRN"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MEMORY_DATA, "MemoryData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MULTINOMIAL_LOGISTIC_LOSS, "MultinomialLogisticLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MVN, "MVN"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING, "Pooling"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POWER, "Power"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU, "ReLU"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID, "Sigmoid"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID_CROSS_ENTROPY_LOSS, "SigmoidCrossEntropyLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SILENCE, "Silence"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX, "Softmax"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS, "SoftmaxWithLoss"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SPLIT, "Split"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SLICE, "Slice"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__TANH, "TanH"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA, "WindowData"},
    {CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__THRESHOLD, "Threshold"},
};

const char *ct_v1_type_name(int v1_type) {
  for (size_t i = 0; i < sizeof k_v1_types / sizeof *k_v1_types; i++)
    if (k_v1_types[i].v1 == v1_type) return k_v1_types[i].name;
  return NULL;
}

/* V0's type strings (UpgradeV0LayerType). */
static const struct {
  const char *v0;
  int v1;
} k_v0_types[] = {
    {"accuracy", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ACCURACY},
    {"bnll", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__BNLL},
    {"concat", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONCAT},
    {"conv", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION},
    {"data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA},
    {"dropout", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT},
    {"euclidean_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__EUCLIDEAN_LOSS},
    {"flatten", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__FLATTEN},
    {"hdf5_data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA},
    {"hdf5_output", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_OUTPUT},
    {"im2col", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IM2COL},
    {"images", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA},
    {"infogain_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INFOGAIN_LOSS},
    {"innerproduct", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT},
    {"lrn", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN},
    {"multinomial_logistic_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MULTINOMIAL_LOGISTIC_LOSS},
    {"pool", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING},
    {"relu", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU},
    {"sigmoid", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SIGMOID},
    {"softmax", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX},
    {"softmax_loss", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS},
    {"split", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SPLIT},
    {"tanh", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__TANH},
    {"window_data", CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA},
};

/* ------------------------------------------------------------------ V0 -> V1 */

static bool needs_v0(const Caffe__NetParameter *p) {
  for (size_t i = 0; i < p->n_layers; i++)
    if (p->layers[i]->layer) return true;
  return false;
}

static bool is_v0(const Caffe__V1LayerParameter *c, const char *type) {
  return c->layer && c->layer->type && !strcmp(c->layer->type, type);
}

/* Caffe's UpgradeV0PaddingLayers: a "padding" layer disappears and its pad moves into the one
 * convolution or pooling that reads its output, which then reads the padding layer's input. */
static ct_status fold_padding(Caffe__NetParameter *p, const up *u) {
  size_t nl = p->n_layers;
  int *producer = NULL; /* per layer and bottom: index of the layer whose top it reads, or -1 */
  size_t total = 0;
  for (size_t i = 0; i < nl; i++) total += p->layers[i]->n_bottom;
  producer = calloc(total + 1, sizeof *producer);
  if (!producer) return oom(u);
  size_t k = 0;
  ct_status st = CT_OK;
  for (size_t i = 0; i < nl; i++) {
    const Caffe__V1LayerParameter *c = p->layers[i];
    for (size_t b = 0; b < c->n_bottom; b++, k++) {
      producer[k] = -1;
      for (size_t j = i; j-- > 0 && producer[k] < 0;)
        for (size_t t = 0; t < p->layers[j]->n_top; t++)
          if (!strcmp(p->layers[j]->top[t], c->bottom[b])) producer[k] = (int)j;
    }
  }
  k = 0;
  for (size_t i = 0; i < nl; i++) {
    Caffe__V1LayerParameter *c = p->layers[i];
    const char *name = c->layer && c->layer->name ? c->layer->name : "?";
    for (size_t b = 0; b < c->n_bottom; b++, k++) {
      if (producer[k] < 0 || !is_v0(p->layers[producer[k]], "padding")) continue;
      const Caffe__V1LayerParameter *pad = p->layers[producer[k]];
      if (!is_v0(c, "conv") && !is_v0(c, "pool")) {
        st = up_fail(u, c, NULL, name, "reads the output of the V0 padding layer \"%s\", which only a conv or pool "
                     "layer may do", pad->layer->name ? pad->layer->name : "?");
        goto done;
      }
      if (c->n_bottom != 1 || pad->n_bottom != 1 || pad->n_top != 1) {
        st = up_fail(u, c, NULL, name, "a V0 padding layer and the layer reading it take one bottom and one top each");
        goto done;
      }
      char *s = strdup(pad->bottom[0]);
      if (!s) {
        st = oom(u);
        goto done;
      }
      free(c->bottom[b]);
      c->bottom[b] = s;
      c->layer->has_pad = 1;
      c->layer->pad = pad->layer->pad;
    }
  }
  /* drop the padding layers */
  size_t w = 0;
  for (size_t i = 0; i < nl; i++) {
    if (is_v0(p->layers[i], "padding"))
      free_msg(p->layers[i]);
    else
      p->layers[w++] = p->layers[i];
  }
  p->n_layers = w;
done:
  free(producer);
  return st;
}

/* One V0 field that only some layer types take: `ok` says whether this type takes it. */
#define V0_ONLY(cond, field)                                                                              \
  do {                                                                                                    \
    if (!(cond))                                                                                          \
      return up_fail(u, v0, field, name, "V0 field \"%s\" has no meaning for a \"%s\" layer", field, type); \
  } while (0)

/* Caffe's UpgradeV0LayerParameter: the V0 layer inside c becomes c's V1 fields. */
static ct_status v0_to_v1(Caffe__V1LayerParameter *c, const up *u) {
  Caffe__V0LayerParameter *v0 = c->layer;
  const char *type = v0->type ? v0->type : "";
  const char *name = v0->name ? v0->name : "?";
  int v1type = -1;
  for (size_t i = 0; i < sizeof k_v0_types / sizeof *k_v0_types; i++)
    if (!strcmp(k_v0_types[i].v0, type)) v1type = k_v0_types[i].v1;
  if (v1type < 0) return up_fail(u, v0, "type", name, "unknown V0 layer type \"%s\"", type);
  const bool conv = !strcmp(type, "conv"), ip = !strcmp(type, "innerproduct"), pool = !strcmp(type, "pool");
  const bool data = !strcmp(type, "data"), images = !strcmp(type, "images"), hdf5 = !strcmp(type, "hdf5_data");
  const bool window = !strcmp(type, "window_data"), lrn = !strcmp(type, "lrn");
  if (v0->name) {
    put_str(&c->name, v0->name, &c->base, "name");
    v0->name = NULL;
  }
  c->has_type = 1;
  c->type = (Caffe__V1LayerParameter__LayerType)v1type;
  for (size_t i = 0; i < v0->n_blobs; i++)
    if (!PUSH(c->blobs, c->n_blobs, v0->blobs[i])) return oom(u);
  v0->n_blobs = 0;
  for (size_t i = 0; i < v0->n_blobs_lr; i++)
    if (!PUSH(c->blobs_lr, c->n_blobs_lr, v0->blobs_lr[i])) return oom(u);
  for (size_t i = 0; i < v0->n_weight_decay; i++)
    if (!PUSH(c->weight_decay, c->n_weight_decay, v0->weight_decay[i])) return oom(u);
  Caffe__ConvolutionParameter *cp = NULL;
  Caffe__InnerProductParameter *ipp = NULL;
  Caffe__PoolingParameter *pp = NULL;
  if (conv && !ENSURE(c->convolution_param, Caffe__ConvolutionParameter, caffe__convolution_parameter__init))
    return oom(u);
  if (ip && !ENSURE(c->inner_product_param, Caffe__InnerProductParameter, caffe__inner_product_parameter__init))
    return oom(u);
  if (pool && !ENSURE(c->pooling_param, Caffe__PoolingParameter, caffe__pooling_parameter__init)) return oom(u);
  cp = c->convolution_param, ipp = c->inner_product_param, pp = c->pooling_param;
  if (v0->has_num_output) {
    V0_ONLY(conv || ip, "num_output");
    if (conv) cp->has_num_output = 1, cp->num_output = v0->num_output;
    if (ip) ipp->has_num_output = 1, ipp->num_output = v0->num_output;
  }
  if (v0->has_biasterm) {
    V0_ONLY(conv || ip, "biasterm");
    if (conv) cp->has_bias_term = 1, cp->bias_term = v0->biasterm;
    if (ip) ipp->has_bias_term = 1, ipp->bias_term = v0->biasterm;
  }
  if (v0->weight_filler) {
    V0_ONLY(conv || ip, "weight_filler");
    Caffe__FillerParameter **slot = conv ? &cp->weight_filler : &ipp->weight_filler;
    free_msg(*slot);
    *slot = v0->weight_filler;
    v0->weight_filler = NULL;
  }
  if (v0->bias_filler) {
    V0_ONLY(conv || ip, "bias_filler");
    Caffe__FillerParameter **slot = conv ? &cp->bias_filler : &ipp->bias_filler;
    free_msg(*slot);
    *slot = v0->bias_filler;
    v0->bias_filler = NULL;
  }
  if (v0->has_pad) {
    V0_ONLY(conv || pool, "pad");
    if (conv && !PUSH(cp->pad, cp->n_pad, v0->pad)) return oom(u);
    if (pool) pp->has_pad = 1, pp->pad = v0->pad;
  }
  if (v0->has_kernelsize) {
    V0_ONLY(conv || pool, "kernelsize");
    if (conv && !PUSH(cp->kernel_size, cp->n_kernel_size, v0->kernelsize)) return oom(u);
    if (pool) pp->has_kernel_size = 1, pp->kernel_size = v0->kernelsize;
  }
  if (v0->has_group) {
    V0_ONLY(conv, "group");
    cp->has_group = 1, cp->group = v0->group;
  }
  if (v0->has_stride) {
    V0_ONLY(conv || pool, "stride");
    if (conv && !PUSH(cp->stride, cp->n_stride, v0->stride)) return oom(u);
    if (pool) pp->has_stride = 1, pp->stride = v0->stride;
  }
  if (v0->has_pool) {
    V0_ONLY(pool, "pool");
    pp->has_pool = 1; /* V0's MAX, AVE, STOCHASTIC carry the same numbers */
    pp->pool = (Caffe__PoolingParameter__PoolMethod)v0->pool;
  }
  if (v0->has_dropout_ratio) {
    V0_ONLY(!strcmp(type, "dropout"), "dropout_ratio");
    if (!ENSURE(c->dropout_param, Caffe__DropoutParameter, caffe__dropout_parameter__init)) return oom(u);
    c->dropout_param->has_dropout_ratio = 1, c->dropout_param->dropout_ratio = v0->dropout_ratio;
  }
  if (v0->has_local_size || v0->has_alpha || v0->has_beta || v0->has_k) {
    V0_ONLY(lrn, v0->has_local_size ? "local_size" : v0->has_alpha ? "alpha" : v0->has_beta ? "beta" : "k");
    Caffe__LRNParameter *lp = ENSURE(c->lrn_param, Caffe__LRNParameter, caffe__lrnparameter__init);
    if (!lp) return oom(u);
    if (v0->has_local_size) lp->has_local_size = 1, lp->local_size = v0->local_size;
    if (v0->has_alpha) lp->has_alpha = 1, lp->alpha = v0->alpha;
    if (v0->has_beta) lp->has_beta = 1, lp->beta = v0->beta;
    if (v0->has_k) lp->has_k = 1, lp->k = v0->k;
  }
  if (data && !ENSURE(c->data_param, Caffe__DataParameter, caffe__data_parameter__init)) return oom(u);
  if (images && !ENSURE(c->image_data_param, Caffe__ImageDataParameter, caffe__image_data_parameter__init))
    return oom(u);
  if (hdf5 && !ENSURE(c->hdf5_data_param, Caffe__HDF5DataParameter, caffe__hdf5_data_parameter__init)) return oom(u);
  if (window && !ENSURE(c->window_data_param, Caffe__WindowDataParameter, caffe__window_data_parameter__init))
    return oom(u);
  const bool infogain = !strcmp(type, "infogain_loss");
  if (infogain && !ENSURE(c->infogain_loss_param, Caffe__InfogainLossParameter, caffe__infogain_loss_parameter__init))
    return oom(u);
  if (str_set(v0->source, &v0->base, "source")) {
    V0_ONLY(data || images || hdf5 || window || infogain, "source");
    char **slot = data ? &c->data_param->source : images ? &c->image_data_param->source
                  : hdf5 ? &c->hdf5_data_param->source : window ? &c->window_data_param->source
                  : &c->infogain_loss_param->source;
    free(*slot);
    *slot = v0->source;
    v0->source = NULL;
  }
  if (v0->has_scale || str_set(v0->meanfile, &v0->base, "meanfile") || v0->has_cropsize || v0->has_mirror) {
    Caffe__TransformationParameter *tp =
        ENSURE(c->transform_param, Caffe__TransformationParameter, caffe__transformation_parameter__init);
    if (!tp) return oom(u);
    if (v0->has_scale) tp->has_scale = 1, tp->scale = v0->scale;
    if (str_set(v0->meanfile, &v0->base, "meanfile")) {
      free(tp->mean_file);
      tp->mean_file = v0->meanfile;
      v0->meanfile = NULL;
    }
    if (v0->has_cropsize) tp->has_crop_size = 1, tp->crop_size = v0->cropsize;
    if (v0->has_mirror) tp->has_mirror = 1, tp->mirror = v0->mirror;
  }
  if (v0->has_batchsize) {
    V0_ONLY(data || images || hdf5 || window, "batchsize");
    if (data) c->data_param->has_batch_size = 1, c->data_param->batch_size = v0->batchsize;
    if (images) c->image_data_param->has_batch_size = 1, c->image_data_param->batch_size = v0->batchsize;
    if (hdf5) c->hdf5_data_param->has_batch_size = 1, c->hdf5_data_param->batch_size = v0->batchsize;
    if (window) c->window_data_param->has_batch_size = 1, c->window_data_param->batch_size = v0->batchsize;
  }
  if (v0->has_rand_skip) {
    V0_ONLY(data || images, "rand_skip");
    if (data) c->data_param->has_rand_skip = 1, c->data_param->rand_skip = v0->rand_skip;
    if (images) c->image_data_param->has_rand_skip = 1, c->image_data_param->rand_skip = v0->rand_skip;
  }
  if (v0->has_shuffle_images) {
    V0_ONLY(images, "shuffle_images");
    c->image_data_param->has_shuffle = 1, c->image_data_param->shuffle = v0->shuffle_images;
  }
  if (v0->has_new_height) {
    V0_ONLY(images, "new_height");
    c->image_data_param->has_new_height = 1, c->image_data_param->new_height = (uint32_t)v0->new_height;
  }
  if (v0->has_new_width) {
    V0_ONLY(images, "new_width");
    c->image_data_param->has_new_width = 1, c->image_data_param->new_width = (uint32_t)v0->new_width;
  }
  if (v0->has_new_num || v0->has_new_channels)
    return up_fail(u, v0, v0->has_new_num ? "new_num" : "new_channels", name,
                   "V0 fields new_num and new_channels have no meaning in any layer Caffe can upgrade");
  if (v0->has_concat_dim) {
    V0_ONLY(!strcmp(type, "concat"), "concat_dim");
    if (!ENSURE(c->concat_param, Caffe__ConcatParameter, caffe__concat_parameter__init)) return oom(u);
    c->concat_param->has_concat_dim = 1, c->concat_param->concat_dim = v0->concat_dim;
  }
  if (v0->has_det_fg_threshold || v0->has_det_bg_threshold || v0->has_det_fg_fraction || v0->has_det_context_pad ||
      str_set(v0->det_crop_mode, &v0->base, "det_crop_mode")) {
    V0_ONLY(window, "det_*");
    Caffe__WindowDataParameter *wp = c->window_data_param;
    if (v0->has_det_fg_threshold) wp->has_fg_threshold = 1, wp->fg_threshold = v0->det_fg_threshold;
    if (v0->has_det_bg_threshold) wp->has_bg_threshold = 1, wp->bg_threshold = v0->det_bg_threshold;
    if (v0->has_det_fg_fraction) wp->has_fg_fraction = 1, wp->fg_fraction = v0->det_fg_fraction;
    if (v0->has_det_context_pad) wp->has_context_pad = 1, wp->context_pad = v0->det_context_pad;
    char *s = take_str(&v0->det_crop_mode, &v0->base, "det_crop_mode");
    if (s) put_str(&wp->crop_mode, s, &wp->base, "crop_mode");
  }
  if (v0->hdf5_output_param) {
    V0_ONLY(!strcmp(type, "hdf5_output"), "hdf5_output_param");
    free_msg(c->hdf5_output_param);
    c->hdf5_output_param = v0->hdf5_output_param;
    v0->hdf5_output_param = NULL;
  }
  free_msg(c->layer);
  c->layer = NULL;
  return CT_OK;
}

/* ------------------------------------------------------------------ V1 data transforms */

/* Caffe's UpgradeNetDataTransformation: a V1 data layer's scale / mean_file / crop_size /
 * mirror move into its transform_param (which they replace). */
#define MOVE_TRANSFORM(src)                                                                                \
  do {                                                                                                     \
    if (!(src)) break;                                                                                     \
    if (!(src)->has_scale && !str_set((src)->mean_file, &(src)->base, "mean_file") && !(src)->has_crop_size && \
        !(src)->has_mirror)                                                                                \
      break;                                                                                               \
    Caffe__TransformationParameter *tp =                                                                   \
        ENSURE(c->transform_param, Caffe__TransformationParameter, caffe__transformation_parameter__init); \
    if (!tp) return oom(u);                                                                                \
    if ((src)->has_scale) tp->has_scale = 1, tp->scale = (src)->scale, (src)->has_scale = 0, (src)->scale = 1; \
    char *mf = take_str(&(src)->mean_file, &(src)->base, "mean_file");                                     \
    if (mf) put_str(&tp->mean_file, mf, &tp->base, "mean_file");                                           \
    if ((src)->has_crop_size) tp->has_crop_size = 1, tp->crop_size = (src)->crop_size, (src)->has_crop_size = 0, \
                              (src)->crop_size = 0;                                                        \
    if ((src)->has_mirror) tp->has_mirror = 1, tp->mirror = (src)->mirror, (src)->has_mirror = 0,          \
                           (src)->mirror = 0;                                                              \
  } while (0)

static ct_status v1_data_transform(Caffe__V1LayerParameter *c, const up *u) {
  if (c->type == CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA) MOVE_TRANSFORM(c->data_param);
  if (c->type == CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA) MOVE_TRANSFORM(c->image_data_param);
  if (c->type == CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA) MOVE_TRANSFORM(c->window_data_param);
  return CT_OK;
}

/* ------------------------------------------------------------------ V1 -> layer */

/* The ParamSpec for blob i, created (with those before it) when absent. */
static Caffe__ParamSpec *param_at(Caffe__LayerParameter *lp, size_t i) {
  while (lp->n_param <= i) {
    Caffe__ParamSpec *ps = NEW_MSG(Caffe__ParamSpec, INIT_FN(caffe__param_spec__init));
    if (!ps) return NULL;
    if (!PUSH(lp->param, lp->n_param, ps)) {
      free_msg(ps);
      return NULL;
    }
  }
  return lp->param[i];
}

#define MOVE_FIELD(f) \
  do {                \
    lp->f = c->f;     \
    c->f = NULL;      \
  } while (0)
#define MOVE_REPEATED(f)   \
  do {                     \
    lp->f = c->f;          \
    lp->n_##f = c->n_##f;  \
    c->f = NULL;           \
    c->n_##f = 0;          \
  } while (0)

/* Caffe's UpgradeV1LayerParameter: *out is a new LayerParameter holding c's contents. */
static ct_status v1_to_layer(Caffe__V1LayerParameter *c, Caffe__LayerParameter **out, const up *u) {
  const char *name = c->name ? c->name : "?";
  if (c->layer) return up_fail(u, c, "layer", name, "holds both V1 fields and a V0 `layer { }`; give one form");
  const char *type = ct_v1_type_name(c->type);
  if (!type) return up_fail(u, c, "type", name, "unknown V1 layer type %d", (int)c->type);
  Caffe__LayerParameter *lp = NEW_MSG(Caffe__LayerParameter, INIT_FN(caffe__layer_parameter__init));
  if (!lp) return oom(u);
  *out = lp; /* the caller owns it from here, also on failure */
  if (c->has_type && !(lp->type = strdup(type))) return oom(u);
  MOVE_FIELD(name);
  MOVE_REPEATED(bottom);
  MOVE_REPEATED(top);
  MOVE_REPEATED(include);
  MOVE_REPEATED(exclude);
  MOVE_REPEATED(blobs);
  MOVE_REPEATED(loss_weight);
  for (size_t i = 0; i < c->n_param; i++) {
    Caffe__ParamSpec *ps = param_at(lp, i);
    if (!ps) return oom(u);
    ps->name = c->param[i];
    c->param[i] = NULL;
  }
  for (size_t i = 0; i < c->n_blob_share_mode; i++) {
    Caffe__ParamSpec *ps = param_at(lp, i);
    if (!ps) return oom(u);
    ps->has_share_mode = 1; /* STRICT and PERMISSIVE carry the same numbers */
    ps->share_mode = (Caffe__ParamSpec__DimCheckMode)c->blob_share_mode[i];
  }
  for (size_t i = 0; i < c->n_blobs_lr; i++) {
    Caffe__ParamSpec *ps = param_at(lp, i);
    if (!ps) return oom(u);
    ps->has_lr_mult = 1;
    ps->lr_mult = c->blobs_lr[i];
  }
  for (size_t i = 0; i < c->n_weight_decay; i++) {
    Caffe__ParamSpec *ps = param_at(lp, i);
    if (!ps) return oom(u);
    ps->has_decay_mult = 1;
    ps->decay_mult = c->weight_decay[i];
  }
  MOVE_FIELD(accuracy_param);
  MOVE_FIELD(argmax_param);
  MOVE_FIELD(concat_param);
  MOVE_FIELD(contrastive_loss_param);
  MOVE_FIELD(convolution_param);
  MOVE_FIELD(data_param);
  MOVE_FIELD(dropout_param);
  MOVE_FIELD(dummy_data_param);
  MOVE_FIELD(eltwise_param);
  MOVE_FIELD(exp_param);
  MOVE_FIELD(hdf5_data_param);
  MOVE_FIELD(hdf5_output_param);
  MOVE_FIELD(hinge_loss_param);
  MOVE_FIELD(image_data_param);
  MOVE_FIELD(infogain_loss_param);
  MOVE_FIELD(inner_product_param);
  MOVE_FIELD(lrn_param);
  MOVE_FIELD(memory_data_param);
  MOVE_FIELD(mvn_param);
  MOVE_FIELD(pooling_param);
  MOVE_FIELD(power_param);
  MOVE_FIELD(relu_param);
  MOVE_FIELD(sigmoid_param);
  MOVE_FIELD(softmax_param);
  MOVE_FIELD(slice_param);
  MOVE_FIELD(tanh_param);
  MOVE_FIELD(threshold_param);
  MOVE_FIELD(window_data_param);
  MOVE_FIELD(transform_param);
  MOVE_FIELD(loss_param);
  if (ct_srcmap_alias(u->map, &lp->base, &c->base) != CT_OK) return oom(u);
  return CT_OK;
}

static ct_status v1_net(Caffe__NetParameter *p, const up *u) {
  if (p->n_layer)
    return up_fail(u, p->layers[0], NULL, NULL,
                   "this net has both `layer { }` (current) and `layers { }` (V1) entries; Caffe refuses such a "
                   "file too: write every layer in one form (`cortado upgrade` converts a V1 file)");
  Caffe__LayerParameter **v = calloc(p->n_layers + 1, sizeof *v);
  if (!v) return oom(u);
  p->layer = v; /* owned by p from here: a failure below frees what was made */
  for (size_t i = 0; i < p->n_layers; i++) {
    ct_status st = v1_to_layer(p->layers[i], &v[i], u);
    if (v[i]) p->n_layer = i + 1;
    if (st) return st;
  }
  for (size_t i = 0; i < p->n_layers; i++) free_msg(p->layers[i]);
  free(p->layers);
  p->layers = NULL;
  p->n_layers = 0;
  return CT_OK;
}

/* ------------------------------------------------------------------ inputs, BatchNorm, ceil_mode */

static char **str_array(size_t n) { return calloc(n ? n : 1, sizeof(char *)); }

/* Caffe's UpgradeNetInput: input / input_shape / input_dim become an Input layer named "input"
 * in front of the others; inputs without shapes (old weight files) are dropped. cortado also
 * takes one input_shape for several inputs (each gets it). */
static ct_status net_input(Caffe__NetParameter *p, const up *u) {
  const size_t n = p->n_input;
  if (n && (p->n_input_shape || p->n_input_dim)) {
    if (p->n_input_shape && p->n_input_shape != n && p->n_input_shape != 1)
      return up_fail(u, p, "input_shape", NULL, "%zu inputs but %zu input_shape entries; give one per input", n,
                     p->n_input_shape);
    if (!p->n_input_shape && p->n_input_dim != 4 * n)
      return up_fail(u, p, "input_dim", NULL, "%zu inputs need %zu input_dim values (4 each), got %zu", n, 4 * n,
                     p->n_input_dim);
    Caffe__LayerParameter *lp = NEW_MSG(Caffe__LayerParameter, INIT_FN(caffe__layer_parameter__init));
    if (!lp) return oom(u);
    Caffe__LayerParameter **v = realloc(p->layer, (p->n_layer + 1) * sizeof *v);
    if (!v) {
      free_msg(lp);
      return oom(u);
    }
    memmove(v + 1, v, p->n_layer * sizeof *v);
    v[0] = lp;
    p->layer = v;
    p->n_layer++;
    Caffe__InputParameter *ip = NEW_MSG(Caffe__InputParameter, INIT_FN(caffe__input_parameter__init));
    lp->input_param = ip;
    if (!ip || !(lp->name = strdup("input")) || !(lp->type = strdup("Input")) || !(lp->top = str_array(n)) ||
        !(ip->shape = calloc(n, sizeof *ip->shape)))
      return oom(u);
    for (size_t i = 0; i < n; i++) {
      lp->top[i] = p->input[i];
      p->input[i] = NULL;
      lp->n_top = i + 1;
      Caffe__BlobShape *bs = NEW_MSG(Caffe__BlobShape, INIT_FN(caffe__blob_shape__init));
      const Caffe__BlobShape *src = p->n_input_shape ? p->input_shape[p->n_input_shape == 1 ? 0 : i] : NULL;
      const size_t nd = src ? src->n_dim : 4;
      if (bs && !(bs->dim = calloc(nd ? nd : 1, sizeof *bs->dim))) {
        free_msg(bs);
        bs = NULL;
      }
      if (bs) {
        for (size_t k = 0; k < nd; k++) bs->dim[k] = src ? src->dim[k] : p->input_dim[4 * i + k];
        bs->n_dim = nd;
      }
      if (!bs) return oom(u);
      ip->shape[ip->n_shape++] = bs;
    }
  }
  for (size_t i = 0; i < p->n_input; i++) free(p->input[i]);
  free(p->input);
  p->input = NULL;
  p->n_input = 0;
  for (size_t i = 0; i < p->n_input_shape; i++) free_msg(p->input_shape[i]);
  free(p->input_shape);
  p->input_shape = NULL;
  p->n_input_shape = 0;
  free(p->input_dim);
  p->input_dim = NULL;
  p->n_input_dim = 0;
  return CT_OK;
}

/* Caffe upgrades every BatchNorm declaring three params; one already at lr_mult and decay_mult 0
 * has nothing left to change (so an upgraded file needs no upgrade) */
static bool bn_needs(const Caffe__LayerParameter *lp) {
  if (!lp->type || strcmp(lp->type, "BatchNorm") || lp->n_param != 3) return false;
  for (size_t i = 0; i < 3; i++) {
    const Caffe__ParamSpec *ps = lp->param[i];
    if (!ps->has_lr_mult || ps->lr_mult != 0.f || !ps->has_decay_mult || ps->decay_mult != 0.f) return true;
  }
  return false;
}

/* Caffe's UpgradeNetBatchNorm: BatchNorm's three blobs are statistics, never learned. */
static void batch_norm(Caffe__LayerParameter *lp) {
  if (!bn_needs(lp)) return;
  for (size_t i = 0; i < lp->n_param; i++) {
    lp->param[i]->has_lr_mult = lp->param[i]->has_decay_mult = 1;
    lp->param[i]->lr_mult = lp->param[i]->decay_mult = 0.f;
  }
}

/* The forks' ceil_mode is round_mode in other words. */
static ct_status ceil_mode(Caffe__LayerParameter *lp, const up *u) {
  Caffe__PoolingParameter *pp = lp->pooling_param;
  if (!pp || !pp->has_ceil_mode) return CT_OK;
  Caffe__PoolingParameter__RoundMode want =
      pp->ceil_mode ? CAFFE__POOLING_PARAMETER__ROUND_MODE__CEIL : CAFFE__POOLING_PARAMETER__ROUND_MODE__FLOOR;
  if (pp->has_round_mode && pp->round_mode != want)
    return up_fail(u, pp, "ceil_mode", lp->name ? lp->name : "?",
                   "pooling_param has ceil_mode: %s and round_mode: %s, which disagree; give one of them",
                   pp->ceil_mode ? "true" : "false",
                   pp->round_mode == CAFFE__POOLING_PARAMETER__ROUND_MODE__CEIL ? "CEIL" : "FLOOR");
  pp->has_round_mode = 1;
  pp->round_mode = want;
  pp->has_ceil_mode = 0;
  pp->ceil_mode = 1;
  return CT_OK;
}

/* ------------------------------------------------------------------ the net */

bool ct_net_needs_upgrade(const Caffe__NetParameter *p) {
  if (p->n_layers || p->n_input || p->n_input_shape || p->n_input_dim) return true;
  for (size_t i = 0; i < p->n_layer; i++)
    if (bn_needs(p->layer[i]) || (p->layer[i]->pooling_param && p->layer[i]->pooling_param->has_ceil_mode))
      return true;
  return false;
}

ct_status ct_upgrade_net(Caffe__NetParameter *p, const char *source, ct_srcmap *map, ct_error *err) {
  const up u = {source ? source : "<net>", map, err};
  if (needs_v0(p)) {
    CT_TRY(fold_padding(p, &u));
    for (size_t i = 0; i < p->n_layers; i++)
      if (p->layers[i]->layer) CT_TRY(v0_to_v1(p->layers[i], &u));
  }
  for (size_t i = 0; i < p->n_layers; i++) CT_TRY(v1_data_transform(p->layers[i], &u));
  if (p->n_layers) CT_TRY(v1_net(p, &u));
  CT_TRY(net_input(p, &u));
  for (size_t i = 0; i < p->n_layer; i++) {
    batch_norm(p->layer[i]);
    CT_TRY(ceil_mode(p->layer[i], &u));
  }
  return CT_OK;
}

/* ------------------------------------------------------------------ solvers */

static const char *const k_solver_type_names[] = {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"};

bool ct_solver_needs_upgrade(const Caffe__SolverParameter *sp) {
  if (sp->has_solver_type) return true;
  if (sp->net_param && ct_net_needs_upgrade(sp->net_param)) return true;
  if (sp->train_net_param && ct_net_needs_upgrade(sp->train_net_param)) return true;
  for (size_t i = 0; i < sp->n_test_net_param; i++)
    if (ct_net_needs_upgrade(sp->test_net_param[i])) return true;
  return false;
}

ct_status ct_upgrade_solver(Caffe__SolverParameter *sp, const char *source, ct_srcmap *map, ct_error *err) {
  const up u = {source ? source : "<solver>", map, err};
  if (sp->has_solver_type) {
    const int t = (int)sp->solver_type;
    if (t < 0 || t >= (int)(sizeof k_solver_type_names / sizeof *k_solver_type_names))
      return up_fail(&u, sp, "solver_type", NULL, "solver_type %d is not a solver type", t);
    const char *name = k_solver_type_names[t];
    const bool has_type = str_set(sp->type, &sp->base, "type");
    /* Caffe refuses a file that gives both; cortado takes both when they agree */
    if (has_type && strcmp(sp->type, name) != 0)
      return up_fail(&u, sp, "solver_type", NULL,
                     "type \"%s\" and the deprecated solver_type %s disagree; give only type: \"%s\" or \"%s\"",
                     sp->type, name, sp->type, name);
    char *s = strdup(name);
    if (!s) return oom(&u);
    put_str(&sp->type, s, &sp->base, "type");
    sp->has_solver_type = 0;
    sp->solver_type = CAFFE__SOLVER_PARAMETER__SOLVER_TYPE__SGD;
  }
  if (sp->net_param) CT_TRY(ct_upgrade_net(sp->net_param, u.source, map, err));
  if (sp->train_net_param) CT_TRY(ct_upgrade_net(sp->train_net_param, u.source, map, err));
  for (size_t i = 0; i < sp->n_test_net_param; i++) CT_TRY(ct_upgrade_net(sp->test_net_param[i], u.source, map, err));
  return CT_OK;
}
