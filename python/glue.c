/* libcortado.so's extras for the Python module (python/cortado), beyond the public API
 * (include/cortado.h):
 *  - a layer's bottom and top blob names (the net's, after automatic Split layers renamed
 *    fan-out blobs, as pycaffe's bottom_names / top_names show them);
 *  - pins: a numpy view of a blob or parameter holds a reference to the storage under it, so
 *    that the memory outlives a reshape that grows the tensor (a tensor whose storage has
 *    another reference gets a new one instead of reallocating: core/tensor.c) and outlives the
 *    net itself. The view is then detached from the net, never dangling;
 *  - nets built with a chosen seed (pycaffe's set_random_seed before Net(...));
 *  - the layer registry's type names (layer_type_list);
 *  - cortado.proto's FileDescriptorSet, embedded at build time, from which the module builds
 *    caffe_pb2-like protobuf classes when Python's protobuf runtime is installed. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "cortado.h"
#include "layers/layer.h"
#include "net/net.h"
#include "proto/prototxt.h"

int ctpy_layer_num_blobs(ct_net *net, int layer, int top) {
  ct_layer *l = ct_net_layer(net, layer);
  if (!l || !l->lp) return -1;
  return (int)(top ? l->lp->n_top : l->lp->n_bottom);
}

const char *ctpy_layer_blob(ct_net *net, int layer, int top, int j) {
  ct_layer *l = ct_net_layer(net, layer);
  if (!l || !l->lp || j < 0) return NULL;
  if (top) return (size_t)j < l->lp->n_top ? l->lp->top[j] : NULL;
  return (size_t)j < l->lp->n_bottom ? l->lp->bottom[j] : NULL;
}

/* Pins one side (0 data, 1 diff) of blob `blob`, or of parameter `index` of layer `layer` when
 * blob is NULL: brings it up to date on the host (made the copy the net reads next, as
 * ct_net_blob_data does), sets *ptr to its first element and returns the storage with one more
 * reference, which ctpy_unpin drops. NULL with err filled when absent or a device failed. */
void *ctpy_pin(ct_net *net, const char *blob, const char *layer, int index, int side, float **ptr, ct_error *err) {
  *ptr = NULL;
  if (side != CT_DATA && side != CT_DIFF) {
    ct_fail(err, CT_EINVAL, "side %d is neither data (0) nor diff (1)", side);
    return NULL;
  }
  ct_tensor *t = blob ? ct_net_blob_tensor(net, blob) : ct_net_param_tensor(net, layer, index);
  if (!t) {
    if (blob)
      ct_fail(err, CT_ENOTFOUND, "no blob named \"%s\" in net \"%s\"", blob, ct_net_name(net));
    else
      ct_fail(err, CT_ENOTFOUND, "layer \"%s\" of net \"%s\" has no parameter #%d", layer ? layer : "(null)",
              ct_net_name(net), index);
    return NULL;
  }
  if (!t->st[side]) {
    ct_fail(err, CT_EINTERNAL, "blob \"%s\" has no storage yet", blob ? blob : layer);
    return NULL;
  }
  if (ct_tensor_deref(t, (ct_side)side, &ct_mem_host, CT_READWRITE, 0, t->count, &ct_net_placement(net)->stats, ptr,
                      err))
    return NULL;
  ct_storage_retain(t->st[side]);
  return t->st[side];
}

void ctpy_unpin(void *storage) { ct_storage_release(storage); }

/* ct_net_create with the seed of every random stream chosen (ct_net_create uses 1701). */
ct_status ctpy_net_create(const char *path, ct_phase phase, int level, const char *const *stages, const char *weights,
                          unsigned long long seed, ct_net **out, ct_error *err) {
  ct_status st = ct_net_create_seeded(path, phase, level, stages, weights, seed, out, err);
  /* pycaffe code reads any blob after a pass: a Python net keeps them all unless it asks for
   * planning (ctpy_net_memplan) */
  if (st == CT_OK) st = ct_net_set_memplan(*out, false, err);
  return st;
}

/* Memory planning for a Python net (net/net.h): on or off before its first pass, and the blobs
 * planning must leave readable. */
ct_status ctpy_net_memplan(ct_net *net, int on, ct_error *err) { return ct_net_set_memplan(net, on != 0, err); }
ct_status ctpy_net_keep_blob(ct_net *net, const char *name, ct_error *err) { return ct_net_keep_blob(net, name, err); }

int ctpy_num_layer_types(void) { return ct_layer_registry_size(); }
const char *ctpy_layer_type_name(int i) {
  const ct_layer_ops *ops = i >= 0 && i < ct_layer_registry_size() ? ct_layer_registry_at(i) : NULL;
  return ops ? ops->type : NULL;
}

/* Generated at build time from src/proto/cortado.proto (python/embed.cmake). */
extern const unsigned char ctpy_proto_desc[];
extern const size_t ctpy_proto_desc_size;
const unsigned char *ctpy_proto_descriptor(size_t *n) {
  *n = ctpy_proto_desc_size;
  return ctpy_proto_desc;
}
