/* Running a built net: forward and backward passes layer by layer, the loss, and the accessors
 * the API and the solver read blobs and parameters through. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "net/net_impl.h"

/* ------------------------------------------------------------------ running */

static ct_status forward_layer(ct_net *net, int i, ct_error *err) {
  net_layer *nl = &net->layers[i];
  ct_layer *l = &nl->l;
  CT_TRY(l->ops->reshape(l, err));
  CT_TRY(l->ops->forward(l, err));
  for (int t = 0; t < l->ntop; t++)
    if (nl->loss_weight[t] != 0) {
      ct_tensor *y = l->top[t];
      for (size_t k = 0; k < y->count; k++) y->diff[k] = nl->loss_weight[t];
    }
  return CT_OK;
}

ct_status ct_net_forward(ct_net *net, float *loss, ct_error *err) {
  double total = 0;
  for (int i = 0; i < net->nlayers; i++) {
    CT_TRY(forward_layer(net, i, err));
    net_layer *nl = &net->layers[i];
    for (int t = 0; t < nl->l.ntop; t++)
      if (nl->loss_weight[t] != 0) {
        const ct_tensor *y = nl->l.top[t];
        for (size_t k = 0; k < y->count; k++) total += (double)y->data[k] * nl->loss_weight[t];
      }
  }
  if (loss) *loss = (float)total;
  return CT_OK;
}

ct_status ct_net_backward(ct_net *net, ct_error *err) {
  (void)err;
  for (int i = net->nlayers - 1; i >= 0; i--)
    if (net->layers[i].need_backward) net->layers[i].l.ops->backward(&net->layers[i].l);
  return CT_OK;
}

ct_status ct_net_forward_layer(ct_net *net, int i, ct_error *err) {
  if (i < 0 || i >= net->nlayers) return ct_fail(err, CT_EINVAL, "layer index %d out of range", i);
  return forward_layer(net, i, err);
}

ct_status ct_net_backward_layer(ct_net *net, int i, ct_error *err) {
  if (i < 0 || i >= net->nlayers) return ct_fail(err, CT_EINVAL, "layer index %d out of range", i);
  if (net->layers[i].need_backward) net->layers[i].l.ops->backward(&net->layers[i].l);
  return CT_OK;
}

void ct_net_clear_param_diffs(ct_net *net) {
  if (net->param_diff) memset(net->param_diff, 0, net->param_total * sizeof(float));
}

ct_status ct_net_reshape(ct_net *net, ct_error *err) {
  for (int i = 0; i < net->nlayers; i++) CT_TRY(net->layers[i].l.ops->reshape(&net->layers[i].l, err));
  return CT_OK;
}

/* ------------------------------------------------------------------ accessors */

const char *ct_net_name(const ct_net *net) { return net->name; }
ct_layer *ct_net_layer(ct_net *net, int i) { return i >= 0 && i < net->nlayers ? &net->layers[i].l : NULL; }
int ct_net_num_layers(const ct_net *net) { return net->nlayers; }
const char *ct_net_layer_name(const ct_net *net, int i) {
  return i >= 0 && i < net->nlayers ? net->layers[i].l.name : NULL;
}
const char *ct_net_layer_type(const ct_net *net, int i) {
  return i >= 0 && i < net->nlayers ? net->layers[i].l.ops->type : NULL;
}
int ct_net_num_learnable(const ct_net *net) { return net->nlearn; }
const ct_update_param *ct_net_learnable(const ct_net *net) { return net->learn; }
const ct_tensor *ct_net_learnable_tensor(const ct_net *net, int i) { return net->learn_tensor[i]; }
float *ct_net_param_buffer(ct_net *net) { return net->param_data; }
float *ct_net_diff_buffer(ct_net *net) { return net->param_diff; }
size_t ct_net_param_total(const ct_net *net) { return net->param_total; }
int ct_net_num_outputs(const ct_net *net) { return net->noutputs; }
const char *ct_net_output_name(const ct_net *net, int i) {
  return i >= 0 && i < net->noutputs ? net->blob_names[net->outputs[i]] : NULL;
}
float ct_net_output_loss_weight(const ct_net *net, int i) {
  return i >= 0 && i < net->noutputs ? net->output_loss_weight[i] : 0;
}
const char *ct_net_blob_name(const ct_net *net, int i) {
  return i >= 0 && i < net->nblobs ? net->blob_names[i] : NULL;
}

static int copy_shape(const ct_tensor *t, int shape[8]) {
  for (int k = 0; k < t->naxes && k < 8; k++) shape[k] = t->shape[k];
  return t->naxes;
}

int ct_net_blob_shape(const ct_net *net, const char *name, int shape[8]) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? -1 : copy_shape(net->blobs[id], shape);
}
float *ct_net_blob_data(ct_net *net, const char *name) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? NULL : net->blobs[id]->data;
}
float *ct_net_blob_diff(ct_net *net, const char *name) {
  int id = ct_net_find_blob(net, name);
  return id < 0 ? NULL : net->blobs[id]->diff;
}
ct_status ct_net_blob_reshape(ct_net *net, const char *name, int naxes, const int *shape, ct_error *err) {
  int id = ct_net_find_blob(net, name);
  if (id < 0) return ct_fail(err, CT_ENOTFOUND, "no blob named \"%s\" in net \"%s\"", name, net->name);
  return ct_tensor_reshape(net->blobs[id], naxes, shape, err);
}

static ct_tensor *param_tensor(const ct_net *net, const char *layer, int index) {
  int li = ct_net_find_layer(net, layer);
  if (li < 0 || index < 0 || index >= net->layers[li].l.nblobs) return NULL;
  return net->layers[li].l.blobs[index];
}
int ct_net_param_count(const ct_net *net, const char *layer) {
  int li = ct_net_find_layer(net, layer);
  return li < 0 ? -1 : net->layers[li].l.nblobs;
}
int ct_net_param_shape(const ct_net *net, const char *layer, int index, int shape[8]) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? copy_shape(t, shape) : -1;
}
float *ct_net_param_data(ct_net *net, const char *layer, int index) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? t->data : NULL;
}
float *ct_net_param_diff(ct_net *net, const char *layer, int index) {
  ct_tensor *t = param_tensor(net, layer, index);
  return t ? t->diff : NULL;
}

int ct_net_first_nonfinite_layer(const ct_net *net) {
  for (int i = 0; i < net->nlayers; i++) {
    const ct_layer *l = &net->layers[i].l;
    for (int t = 0; t < l->ntop; t++)
      for (size_t k = 0; k < l->top[t]->count; k++)
        if (!isfinite(l->top[t]->data[k])) return i;
  }
  return -1;
}

int ct_net_first_nonfinite_grad_layer(const ct_net *net) {
  for (int i = net->nlayers - 1; i >= 0; i--) {
    const ct_layer *l = &net->layers[i].l;
    for (int j = 0; j < l->nblobs; j++)
      for (size_t k = 0; k < l->blobs[j]->count; k++)
        if (!isfinite(l->blobs[j]->diff[k])) return i;
  }
  return -1;
}

int ct_net_batch_size(const ct_net *net) {
  if (!net->nlayers || !net->layers[0].l.ntop || !net->layers[0].l.top[0]->naxes) return 0;
  return net->layers[0].l.top[0]->shape[0];
}

