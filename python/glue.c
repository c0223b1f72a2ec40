/* libcortado.so's extras for the Python module: a layer's bottom and top blob names, which the
 * public API (include/cortado.h) does not expose yet. Names are the prototxt's, before the net's
 * automatic Split layers rename fan-out blobs. */
#include "cortado.h"
#include "layers/layer.h"
#include "net/net.h"

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
