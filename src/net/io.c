/* A net's weights and resumable state in Caffe's formats: NetParameter with blobs (.caffemodel),
 * copying blobs by layer name, sharing weights between nets, and the per-layer rng and data
 * cursor saved in .solverstate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "net/net_impl.h"
#include "proto/blob.h"
#include "proto/h5io.h"
#include "proto/prototxt.h"
#include "proto/upgrade.h"

/* Layers are found by name; when several share one (Caffe allows it: mnist_autoencoder has two
 * "loss" layers) the k-th of that name in one list goes with the k-th in the other, so that a
 * net's own weights and state come back where they were. (Caffe gives every duplicate the first
 * layer of the name; that matters only for duplicates with weights, where its answer would be
 * wrong.) */
static int find_nth(const ct_net *net, const char *name, int nth) {
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].l.name && !strcmp(net->layers[i].l.name, name) && nth-- == 0) return i;
  return -1;
}

/* How many layers before index `upto` of `names` are named `name`. */
static int occurrence(const char *const *names, size_t upto, const char *name) {
  int k = 0;
  for (size_t i = 0; i < upto; i++)
    if (names[i] && !strcmp(names[i], name)) k++;
  return k;
}

ct_status ct_net_to_proto(const ct_net *net, Caffe__NetParameter **out, ct_error *err) {
  *out = NULL;
  Caffe__NetParameter *p = malloc(sizeof *p);
  if (!p) return ct_fail(err, CT_ENOMEM, "out of memory");
  caffe__net_parameter__init(p);
  p->name = strdup(net->name);
  p->layer = calloc((size_t)net->nlayers + 1, sizeof *p->layer);
  ct_status st = CT_OK;
  if (!p->name || !p->layer) goto oom;
  for (int i = 0; i < net->nlayers; i++) {
    const net_layer *nl = &net->layers[i];
    /* a partitioned net (partition.c) writes the layers as the prototxt has them, whole */
    if (ct_partition_hidden(net->part, i)) continue;
    const Caffe__LayerParameter *origin = ct_partition_origin(net->part, i);
    ct_tensor *const *blobs = origin ? ct_partition_whole_blobs(net->part, i) : nl->l.blobs;
    Caffe__LayerParameter *lp = (Caffe__LayerParameter *)ct_proto_copy(origin ? &origin->base : &nl->lp->base);
    if (!lp) goto oom;
    p->layer[p->n_layer++] = lp;
    for (int t = 0; t < nl->auto_tops; t++) free(lp->top[--lp->n_top]); /* the net's, not the file's */
    /* the blobs written are the layer's current values, not whatever the prototxt held */
    for (size_t k = 0; k < lp->n_blobs; k++) protobuf_c_message_free_unpacked(&lp->blobs[k]->base, NULL);
    free(lp->blobs);
    lp->n_blobs = 0;
    lp->blobs = calloc((size_t)nl->l.nblobs + 1, sizeof *lp->blobs);
    if (!lp->blobs) goto oom;
    for (int j = 0; j < nl->l.nblobs; j++) {
      if ((st = ct_blob_to_proto(blobs[j], false, &lp->blobs[j], err))) goto fail;
      lp->n_blobs++;
    }
  }
  *out = p;
  return CT_OK;
oom:
  st = ct_fail(err, CT_ENOMEM, "out of memory");
fail:
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return st;
}

static ct_status copy_layer_blobs(ct_net *net, const char *lname, int nth, Caffe__BlobProto *const *blobs, size_t nb,
                                  const char *source, ct_error *err) {
  int li = find_nth(net, lname, nth);
  ct_tensor *const *tb = li >= 0 ? net->layers[li].l.blobs : NULL;
  if (li < 0 && (li = ct_partition_find(net, lname)) >= 0) /* split by partition.c: its whole tensors */
    tb = ct_partition_whole_blobs(net->part, li);
  if (li < 0) return CT_OK; /* Caffe ignores layers the net does not have */
  ct_layer *l = &net->layers[li].l;
  if (nb != (size_t)l->nblobs)
    return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" has %zu blobs in the weights file but %d in the net", source,
                   lname, nb, l->nblobs);
  for (size_t j = 0; j < nb; j++) {
    const Caffe__BlobProto *b = blobs[j];
    ct_tensor *t = tb[j];
    /* Caffe's HDF5 weights leave out a parameter another layer owns (read as an empty blob) */
    if (!b->shape && !b->n_data && !b->n_double_data && !b->num && !b->channels && !b->height && !b->width) {
      bool owner = false;
      for (int k = 0; k < net->nlearn; k++) owner |= net->learn_tensor[k] == t;
      if (!owner) continue;
      return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" blob %zu is missing from the weights file", source, lname, j);
    }
    if (!ct_blob_proto_matches(b, t)) {
      int s[CT_MAX_AXES], n = ct_blob_proto_shape(b, s);
      char want[128], got[256] = "";
      size_t used = 0;
      for (int k = 0; k < n && used < sizeof got; k++)
        used += (size_t)snprintf(got + used, sizeof got - used, "%s%d", k ? " " : "", s[k]);
      return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" blob %zu has shape %s in the weights file but %s in the net",
                     source, lname, j, n < 0 ? "(invalid)" : got, ct_tensor_shape_str(t, want, sizeof want));
    }
    if (b->n_data != t->count && b->n_double_data != t->count)
      return ct_fail(err, CT_ESHAPE, "%s: layer \"%s\" blob %zu holds %zu values but its shape needs %zu", source,
                     lname, j, b->n_data ? b->n_data : b->n_double_data, t->count);
    float *v;
    CT_TRY(ct_tensor_deref(t, CT_DATA, &ct_mem_host, CT_WRITE, 0, t->count, &net->place->stats, &v, err));
    if (b->n_data == t->count)
      memcpy(v, b->data, t->count * sizeof(float));
    else
      for (size_t k = 0; k < t->count; k++) v[k] = (float)b->double_data[k];
  }
  return CT_OK;
}

ct_status ct_net_copy_from_proto(ct_net *net, const Caffe__NetParameter *param, const char *source, ct_error *err) {
  if (param->n_layers)
    return ct_fail(err, CT_EINTERNAL, "%s: V1 layers reached the weight copy without an upgrade", source);
  const char **names = calloc(param->n_layer + 1, sizeof *names);
  if (!names) return ct_fail(err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  for (size_t i = 0; i < param->n_layer && st == CT_OK; i++) {
    const Caffe__LayerParameter *lp = param->layer[i];
    names[i] = lp->name;
    if (!lp->name) continue;
    st = copy_layer_blobs(net, lp->name, occurrence(names, i, lp->name), lp->blobs, lp->n_blobs, source, err);
  }
  free(names);
  return st;
}

/* A .caffemodel of any Caffe era (V0 and V1 weight files upgrade as Caffe's
 * upgrade_net_proto_binary does), or a .caffemodel.h5: an HDF5 file, whatever its name, as
 * Caffe tells them apart. */
ct_status ct_net_load_weights(ct_net *net, const char *path, ct_error *err) {
  return ct_net_load_weights_ex(net, path, NULL, err); /* weights.c checks the file first */
}

ct_status ct_net_save_weights(const ct_net *net, const char *path, ct_error *err) {
  Caffe__NetParameter *p = NULL;
  CT_TRY(ct_net_to_proto(net, &p, err));
  ct_status st = ct_proto_write_binary(path, &p->base, err);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return st;
}

ct_status ct_net_share_weights_from(ct_net *dst, const ct_net *src, ct_error *err) {
  for (int i = 0; i < dst->nlayers; i++) {
    ct_layer *l = &dst->layers[i].l;
    if (!l->nblobs) continue;
    int nth = 0;
    for (int j = 0; j < i; j++) nth += !strcmp(dst->layers[j].l.name, l->name);
    int si = find_nth(src, l->name, nth);
    if (si < 0) continue;
    const ct_layer *s = &src->layers[si].l;
    if (s->nblobs != l->nblobs)
      return ct_fail(err, CT_ESHAPE, "layer \"%s\" has %d blobs in one net and %d in the other", l->name, l->nblobs,
                     s->nblobs);
    for (int j = 0; j < l->nblobs; j++) {
      if (!ct_tensor_same_shape(l->blobs[j], s->blobs[j])) {
        char a[128], b[128];
        return ct_fail(err, CT_ESHAPE, "layer \"%s\" blob %d: shape %s in one net, %s in the other", l->name, j,
                       ct_tensor_shape_str(l->blobs[j], a, sizeof a), ct_tensor_shape_str(s->blobs[j], b, sizeof b));
      }
      ct_tensor_share_side(l->blobs[j], CT_DATA, s->blobs[j]); /* the source's values; its own diff stays */
    }
  }
  return CT_OK;
}

/* ------------------------------------------------------------------ resumable state */

ct_status ct_net_save_state(const ct_net *net, const char *prefix, Caffe__SolverState *st, ct_error *err) {
  Caffe__LayerState **v = realloc(st->layer_state, (st->n_layer_state + (size_t)net->nlayers + 1) * sizeof *v);
  if (!v) return ct_fail(err, CT_ENOMEM, "out of memory");
  st->layer_state = v;
  for (int i = 0; i < net->nlayers; i++) {
    const ct_layer *l = &net->layers[i].l;
    Caffe__LayerState *ls = malloc(sizeof *ls);
    if (!ls) return ct_fail(err, CT_ENOMEM, "out of memory");
    caffe__layer_state__init(ls);
    st->layer_state[st->n_layer_state++] = ls;
    size_t n = strlen(prefix) + strlen(l->name) + 1;
    ls->layer = malloc(n);
    ls->rng = malloc(4 * sizeof(uint64_t));
    if (!ls->layer || !ls->rng) return ct_fail(err, CT_ENOMEM, "out of memory");
    snprintf(ls->layer, n, "%s%s", prefix, l->name);
    ls->n_rng = 4;
    memcpy(ls->rng, l->rng.s, sizeof l->rng.s);
    if (l->ops->get_cursor) {
      ls->has_cursor = 1;
      ls->cursor = l->ops->get_cursor(l);
    }
  }
  return CT_OK;
}

void ct_net_load_state(ct_net *net, const char *prefix, const Caffe__SolverState *st) {
  size_t plen = strlen(prefix);
  for (size_t k = 0; k < st->n_layer_state; k++) {
    const Caffe__LayerState *ls = st->layer_state[k];
    if (!ls->layer || strncmp(ls->layer, prefix, plen)) continue;
    int nth = 0;
    for (size_t j = 0; j < k; j++) nth += st->layer_state[j]->layer && !strcmp(st->layer_state[j]->layer, ls->layer);
    int li = find_nth(net, ls->layer + plen, nth);
    if (li < 0) continue;
    ct_layer *l = &net->layers[li].l;
    if (ls->n_rng == 4) memcpy(l->rng.s, ls->rng, sizeof l->rng.s);
    if (ls->has_cursor && l->ops->set_cursor) l->ops->set_cursor(l, ls->cursor);
  }
}
