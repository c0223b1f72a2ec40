/* Loading .caffemodel weights with Caffe's checks and a few of cortado's own (issue 23): a file
 * that shares no layer with the net is refused (a wrong path or another model would otherwise
 * leave the fillers' values in place without a word), each layer of the file the net lacks is
 * reported as Caffe reports it ("Ignoring source layer ..."), and NaN or Inf values are refused
 * unless the caller allows them. The copy itself is ct_net_copy_from_proto's. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "net/net.h"
#include "proto/h5io.h"
#include "proto/prototxt.h"
#include "proto/upgrade.h"

static void note(const ct_weights_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const ct_weights_opts *o, const char *fmt, ...) {
  if (!o || !o->note) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  o->note(o->ctx, line);
}

/* NaN or Inf values in one blob: their count and the first one's index. */
static size_t nonfinite(const Caffe__BlobProto *b, size_t *first) {
  size_t bad = 0;
  for (size_t k = b->n_data; k-- > 0;)
    if (!isfinite(b->data[k])) bad++, *first = k;
  for (size_t k = b->n_double_data; k-- > 0;)
    if (!isfinite(b->double_data[k])) bad++, *first = k;
  return bad;
}

/* One source layer: is it in the net, and are its values finite. */
static ct_status check_layer(const ct_net *net, const char *name, Caffe__BlobProto *const *blobs, size_t nb,
                             const char *source, const ct_weights_opts *o, int *matched, ct_error *err) {
  if (!name || ct_net_param_count(net, name) < 0) {
    note(o, "Ignoring source layer %s", name ? name : "(unnamed)");
    return CT_OK;
  }
  (*matched)++;
  for (size_t j = 0; j < nb; j++) {
    size_t first = 0, bad = nonfinite(blobs[j], &first);
    if (!bad) continue;
    if (o && o->allow_nonfinite) {
      note(o, "Warning: %s: layer \"%s\" blob %zu holds %zu NaN or Inf values (the first at index %zu); loaded "
           "anyway (--allow-nonfinite)", source, name, j, bad, first);
      continue;
    }
    return ct_fail(err, CT_ENUMERIC,
                   "%s: layer \"%s\" blob %zu holds %zu NaN or Inf values (the first at index %zu); such weights "
                   "cannot train or score. Load them anyway with --allow-nonfinite", source, name, j, bad, first);
  }
  return CT_OK;
}

ct_status ct_net_check_weights(const ct_net *net, const Caffe__NetParameter *p, const char *source,
                               const ct_weights_opts *o, ct_error *err) {
  int matched = 0;
  size_t total = p->n_layer + p->n_layers;
  for (size_t i = 0; i < p->n_layer; i++)
    CT_TRY(check_layer(net, p->layer[i]->name, p->layer[i]->blobs, p->layer[i]->n_blobs, source, o, &matched, err));
  for (size_t i = 0; i < p->n_layers; i++)
    CT_TRY(check_layer(net, p->layers[i]->name, p->layers[i]->blobs, p->layers[i]->n_blobs, source, o, &matched,
                       err));
  if (total == 0)
    return ct_fail(err, CT_EPARSE, "%s holds no layers: an empty or truncated weights file?", source);
  if (matched == 0) {
    const char *first = p->n_layer ? p->layer[0]->name : p->layers[0]->name;
    return ct_fail(err, CT_ENOTFOUND,
                   "%s: none of its %zu layers (\"%s\", ...) is a layer of net \"%s\"; these are the weights of "
                   "another model", source, total, first ? first : "", ct_net_name(net));
  }
  return CT_OK;
}

ct_status ct_net_load_weights_ex(ct_net *net, const char *path, const ct_weights_opts *o, ct_error *err) {
  Caffe__NetParameter *p = NULL;
  ct_status st;
  if (ct_h5_is_hdf5(path)) { /* a .caffemodel.h5, whatever its name, as Caffe tells them apart */
    CT_TRY(ct_h5_read_weights(path, &p, err));
    st = CT_OK;
  } else {
    ProtobufCMessage *m = NULL;
    CT_TRY(ct_proto_read_binary(path, &caffe__net_parameter__descriptor, &m, err));
    p = (Caffe__NetParameter *)m;
    /* V0 / V1 files (field 2), as upgrade_net_proto_binary does */
    st = ct_net_needs_upgrade(p) ? ct_upgrade_net(p, path, NULL, err) : CT_OK;
  }
  if (st == CT_OK) st = ct_net_check_weights(net, p, path, o, err);
  if (st == CT_OK) st = ct_net_copy_from_proto(net, p, path, err);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return st;
}
