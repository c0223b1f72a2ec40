/* The per-type parameter table (params.h), Caffe 1.0's facts about which layer reads which
 * message, for every type cortado has or may have. */
#include "layers/params.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "proto/audit.h"

static const struct {
  const char *type;
  const char *fields;
} k_params[] = {
    /* neurons */
    {"ReLU", "relu_param"},
    {"PReLU", "prelu_param"},
    {"ELU", "elu_param"},
    {"Sigmoid", "sigmoid_param"},
    {"TanH", "tanh_param"},
    {"AbsVal", ""},
    {"Power", "power_param"},
    {"Exp", "exp_param"},
    {"Log", "log_param"},
    {"BNLL", ""},
    {"Dropout", "dropout_param"},
    {"Threshold", "threshold_param"},
    {"Clip", "clip_param"},
    {"Swish", "swish_param"},
    /* losses and metrics */
    {"EuclideanLoss", ""},
    {"SigmoidCrossEntropyLoss", "loss_param sigmoid_param"},
    {"SoftmaxWithLoss", "loss_param softmax_param"},
    {"ContrastiveLoss", "contrastive_loss_param"},
    {"HingeLoss", "hinge_loss_param"},
    {"InfogainLoss", "infogain_loss_param loss_param softmax_param"},
    {"MultinomialLogisticLoss", ""},
    {"Accuracy", "accuracy_param"},
    {"ArgMax", "argmax_param"},
    /* structure */
    {"Concat", "concat_param"},
    {"Slice", "slice_param"},
    {"Split", ""},
    {"Flatten", "flatten_param"},
    {"Reshape", "reshape_param"},
    {"Eltwise", "eltwise_param"},
    {"Silence", ""},
    {"Crop", "crop_param"},
    {"Tile", "tile_param"},
    {"Reduction", "reduction_param"},
    {"BatchReindex", ""},
    {"Filter", ""},
    {"Parameter", "parameter_param"},
    {"Embed", "embed_param"},
    /* data */
    {"Input", "input_param"},
    {"DummyData", "dummy_data_param"},
    {"Data", "data_param transform_param idx_data_param"},
    /* Caffe's prefetching data layers take the queue depth from data_param.prefetch */
    {"ImageData", "image_data_param transform_param data_param(prefetch)"},
    {"WindowData", "window_data_param transform_param data_param(prefetch)"},
    {"MemoryData", "memory_data_param transform_param"},
    {"HDF5Data", "hdf5_data_param"},
    {"HDF5Output", "hdf5_output_param"},
    {"Python", "python_param"},
    /* vision */
    {"Convolution", "convolution_param lowering"},
    {"Deconvolution", "convolution_param"},
    {"Im2col", "convolution_param"},
    {"Pooling", "pooling_param"},
    {"SPP", "spp_param"},
    {"InnerProduct", "inner_product_param"},
    {"LRN", "lrn_param"},
    {"MVN", "mvn_param"},
    {"BatchNorm", "batch_norm_param"},
    {"Scale", "scale_param"},
    {"Bias", "bias_param"},
    {"Softmax", "softmax_param"},
    {"RNN", "recurrent_param"},
    {"LSTM", "recurrent_param"},
    {"LSTMUnit", ""},
};

#define NPARAMS ((int)(sizeof k_params / sizeof *k_params))

const char *ct_layer_param_fields(const char *type) {
  for (int i = 0; type && i < NPARAMS; i++)
    if (!strcmp(k_params[i].type, type)) return k_params[i].fields;
  return NULL;
}

const char *ct_layer_param_type_at(int i) { return i >= 0 && i < NPARAMS ? k_params[i].type : NULL; }

bool ct_layer_param_is_per_type(const char *field) {
  size_t n = strlen(field);
  return !strcmp(field, "lowering") || (n > 6 && !strcmp(field + n - 6, "_param"));
}

/* Finds `field` in an entry: the start of its word, and in *sub its "(...)" list or NULL. */
static bool entry_has(const char *entry, const char *field, const char **sub, size_t *nsub) {
  const size_t n = strlen(field);
  for (const char *p = entry; *p;) {
    while (*p == ' ') p++;
    const char *e = p;
    while (*e && *e != ' ' && *e != '(') e++;
    const bool hit = (size_t)(e - p) == n && !strncmp(p, field, n);
    const char *close = NULL;
    if (*e == '(') close = strchr(e, ')');
    if (hit) {
      *sub = close ? e + 1 : NULL;
      *nsub = close ? (size_t)(close - e - 1) : 0;
      return true;
    }
    p = close ? close + 1 : e;
  }
  return false;
}

static bool word_in(const char *list, size_t len, const char *word) {
  const size_t n = strlen(word);
  for (size_t i = 0; i < len;) {
    while (i < len && list[i] == ' ') i++;
    size_t j = i;
    while (j < len && list[j] != ' ') j++;
    if (j - i == n && !strncmp(list + i, word, n)) return true;
    i = j;
  }
  return false;
}

ct_status ct_layer_check_params(const Caffe__LayerParameter *lp, const ct_srcmap *map, const char *source,
                                ct_error *err) {
  const char *entry = ct_layer_param_fields(lp->type);
  if (!entry) return CT_OK;
  const ProtobufCMessageDescriptor *d = lp->base.descriptor;
  const char *name = lp->name ? lp->name : "";
  char at[512];
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!ct_layer_param_is_per_type(f->name) || !ct_field_is_set(&lp->base, f)) continue;
    const char *sub;
    size_t nsub;
    if (!entry_has(entry, f->name, &sub, &nsub)) {
      ct_audit_where(map, &lp->base, f->name, source, at, sizeof at);
      return ct_fail(err, CT_EINVAL,
                     "%s: layer \"%s\" (%s): %s is not read by %s layers; remove it (Caffe would ignore it "
                     "silently; %s layers read %s)",
                     at, name, lp->type, f->name, lp->type, lp->type, entry[0] ? entry : "no per-type parameters");
    }
    if (!sub || f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const ProtobufCMessage *m = *(const ProtobufCMessage *const *)((const char *)lp + f->offset);
    for (unsigned k = 0; k < m->descriptor->n_fields; k++) {
      const ProtobufCFieldDescriptor *g = &m->descriptor->fields[k];
      if (!ct_field_is_set(m, g) || word_in(sub, nsub, g->name)) continue;
      ct_audit_where(map, m, g->name, source, at, sizeof at);
      return ct_fail(err, CT_EINVAL, "%s: layer \"%s\" (%s): %s.%s is not read by %s layers (of %s they read only "
                     "%.*s); remove it",
                     at, name, lp->type, f->name, g->name, lp->type, f->name, (int)nsub, sub);
    }
  }
  /* Data reads either a database (data_param) or IDX files (idx_data_param); with IDX files only
   * the batch, the random skip and the queue depth come from data_param */
  if (!strcmp(lp->type, "Data") && lp->idx_data_param && lp->data_param) {
    const ProtobufCMessage *m = &lp->data_param->base;
    static const char idx_ok[] = "batch_size rand_skip prefetch";
    for (unsigned k = 0; k < m->descriptor->n_fields; k++) {
      const ProtobufCFieldDescriptor *g = &m->descriptor->fields[k];
      if (!ct_field_is_set(m, g) || word_in(idx_ok, sizeof idx_ok - 1, g->name)) continue;
      ct_audit_where(map, m, g->name, source, at, sizeof at);
      return ct_fail(err, CT_EINVAL,
                     "%s: layer \"%s\" (Data): data_param.%s does not apply when idx_data_param gives the images "
                     "(with IDX files data_param gives only %s); remove one of them",
                     at, name, g->name, idx_ok);
    }
  }
  return CT_OK;
}
