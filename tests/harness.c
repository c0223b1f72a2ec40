#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "proto/prototxt.h"

struct ct_harness {
  Caffe__LayerParameter *lp;
  ct_placement *place; /* NULL: the CPU, one partition */
  ct_layer layer;
  ct_tensor *bottom[16], *top[16];
  bool propagate[16];
};

void ctk_free(ct_harness *h) {
  if (!h) return;
  if (h->layer.ops && h->layer.ops->destroy) h->layer.ops->destroy(&h->layer);
  ct_layer_free_part_grads(&h->layer);
  for (int i = 0; i < 16; i++) {
    ct_tensor_free(h->bottom[i]);
    ct_tensor_free(h->top[i]);
  }
  for (int i = 0; i < h->layer.nblobs; i++) ct_tensor_free(h->layer.blobs[i]);
  free(h->layer.blobs);
  free(h->layer.param_propagate_down);
  if (h->lp) protobuf_c_message_free_unpacked(&h->lp->base, NULL);
  ct_placement_free(h->place);
  free(h);
}

ct_harness *ctk_create(const char *text, int nbottom, const int *naxes, const int *shapes, int phase,
                       unsigned long long seed, char *errbuf, int errlen) {
  return ctk_create_on(text, nbottom, naxes, shapes, phase, seed, NULL, errbuf, errlen);
}

ct_harness *ctk_create_on(const char *text, int nbottom, const int *naxes, const int *shapes, int phase,
                          unsigned long long seed, const char *devices, char *errbuf, int errlen) {
  ct_error err = {0};
  ct_harness *h = calloc(1, sizeof *h);
  if (!h || nbottom > 16) goto fail_msg;
  if (devices &&
      (ct_placement_create(ct_cpu_count(), &h->place, &err) || ct_placement_set_devices(h->place, devices, &err)))
    goto fail;
  ProtobufCMessage *m = NULL;
  if (ct_prototxt_parse(text, strlen(text), "<harness>", &caffe__layer_parameter__descriptor, &m, &err)) goto fail;
  h->lp = (Caffe__LayerParameter *)m;
  const ct_layer_ops *ops = ct_layer_find(h->lp->type);
  if (!ops) {
    ct_fail(&err, CT_ENOTFOUND, "unknown layer type %s", h->lp->type ? h->lp->type : "(none)");
    goto fail;
  }
  ct_layer *l = &h->layer;
  l->ops = ops;
  l->lp = h->lp;
  l->name = h->lp->name ? h->lp->name : "harness";
  l->phase = phase ? CAFFE__PHASE__TEST : CAFFE__PHASE__TRAIN;
  l->dir = "";
  l->nbottom = nbottom;
  l->ntop = ops->min_top;
  if ((int)h->lp->n_top > l->ntop) l->ntop = (int)h->lp->n_top;
  const int *s = shapes;
  for (int i = 0; i < nbottom; i++) {
    h->bottom[i] = ct_tensor_create();
    if (ct_tensor_reshape(h->bottom[i], naxes[i], s, &err)) goto fail;
    s += naxes[i];
    h->propagate[i] = true;
  }
  for (int i = 0; i < l->ntop; i++) h->top[i] = ct_tensor_create();
  l->bottom = h->bottom;
  l->top = h->top;
  l->propagate_down = h->propagate;
  l->place = h->place;
  ct_rng_seed(&l->rng, seed);
  if (ops->setup(l, &err)) goto fail;
  if (ct_layer_plan_reshape(l, NULL, &err)) goto fail;
  return h;
fail_msg:
  ct_fail(&err, CT_ENOMEM, "out of memory or too many bottoms");
fail:
  if (errbuf && errlen > 0) snprintf(errbuf, (size_t)errlen, "%s", err.msg);
  ctk_free(h);
  return NULL;
}

ct_layer *ctk_layer(ct_harness *h) { return &h->layer; }
int ctk_num_tops(ct_harness *h) { return h->layer.ntop; }
int ctk_num_blobs(ct_harness *h) { return h->layer.nblobs; }

static ct_tensor *pick(ct_harness *h, int which, int i) {
  if (which == 0) return i < h->layer.nbottom ? h->bottom[i] : NULL;
  if (which == 1) return i < h->layer.ntop ? h->top[i] : NULL;
  return i < h->layer.nblobs ? h->layer.blobs[i] : NULL;
}

int ctk_shape(ct_harness *h, int which, int i, int *shape) {
  ct_tensor *t = pick(h, which, i);
  if (!t) return -1;
  for (int k = 0; k < t->naxes; k++) shape[k] = t->shape[k];
  return t->naxes;
}

/* The host copy, up to date and the one the layer reads next (the caller may write it). */
static float *host_view(ct_tensor *t, ct_side side) {
  float *p;
  ct_error e;
  return t && !ct_tensor_host(t, side, CT_READWRITE, &p, &e) ? p : NULL;
}

float *ctk_data(ct_harness *h, int which, int i) { return host_view(pick(h, which, i), CT_DATA); }
float *ctk_diff(ct_harness *h, int which, int i) { return host_view(pick(h, which, i), CT_DIFF); }

int ctk_forward(ct_harness *h, char *errbuf, int errlen) {
  ct_error err = {0};
  if (ct_layer_plan_reshape(&h->layer, NULL, &err) || ct_layer_forward(&h->layer, &err)) {
    if (errbuf && errlen > 0) snprintf(errbuf, (size_t)errlen, "%s", err.msg);
    return 1;
  }
  return 0;
}

int ctk_backward(ct_harness *h, unsigned mask) {
  ct_layer *l = &h->layer;
  if (!l->ops->backward) return 1;
  for (int i = 0; i < l->nbottom; i++) h->propagate[i] = (mask >> i) & 1u;
  ct_error err;
  for (int j = 0; j < l->nblobs; j++) {
    float *g;
    if (ct_tensor_host(l->blobs[j], CT_DIFF, CT_WRITE, &g, &err)) return 1;
    memset(g, 0, l->blobs[j]->count * sizeof(float));
  }
  return ct_layer_backward(l, &err) ? 1 : 0;
}

const char *ctk_plan(ct_harness *h, char *buf, int n) { return ct_plan_str(&h->layer.plan, buf, (size_t)n); }

void ctk_reseed(ct_harness *h, unsigned long long seed) { ct_rng_seed(&h->layer.rng, seed); }
