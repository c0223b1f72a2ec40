/* Python (Caffe's "Python" layer): a layer written in Python with pycaffe's Layer API, run by the
 * process's Python runtime (python.h). The layer is host code that runs whole: Python sees the
 * whole batch as numpy arrays of host memory, holding the interpreter's lock, so it is .host and
 * never splits. Bottoms, tops and parameters are any shape the Python code gives them. */
#include "layers/python.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic(const ct_python_runtime *) g_runtime;

void ct_python_set_runtime(const ct_python_runtime *rt) { atomic_store(&g_runtime, rt); }

typedef struct py_priv {
  const ct_python_runtime *rt;
  void *obj;
  bool in_setup; /* add_blob is open */
} py_priv;

ct_status ct_python_blob_host(ct_layer *l, ct_tensor *t, ct_side side, float **out, ct_error *err) {
  *out = NULL;
  if (!t->count) return CT_OK;
  return ct_tensor_deref(t, side, &ct_mem_host, CT_READWRITE, 0, t->count, l->place ? &l->place->stats : NULL, out,
                         err);
}

ct_status ct_python_reshape(ct_layer *l, ct_tensor *t, int naxes, const int *shape, ct_error *err) {
  if (naxes > CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_ESHAPE, "a blob may have at most %d axes, got %d", CT_MAX_AXES, naxes);
  for (int i = 0; i < naxes; i++)
    if (shape[i] < 0) return ct_layer_fail(l, err, CT_ESHAPE, "axis %d of a reshape is %d; expected 0 or more", i,
                                           shape[i]);
  return ct_tensor_reshape(t, naxes, shape, err);
}

ct_status ct_python_add_blob(ct_layer *l, int naxes, const int *shape, ct_tensor **out, ct_error *err) {
  py_priv *p = l->priv;
  if (!p || !p->in_setup)
    return ct_layer_fail(l, err, CT_EINVAL, "self.blobs.add_blob is for setup, when the net is built");
  int n = l->nblobs + 1;
  ct_tensor **b = realloc(l->blobs, (size_t)n * sizeof *b);
  if (!b) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->blobs = b;
  bool *pd = realloc(l->param_propagate_down, (size_t)n * sizeof *pd);
  if (!pd) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->param_propagate_down = pd;
  ct_tensor *t = ct_tensor_create();
  if (!t) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->blobs[l->nblobs] = t;
  l->param_propagate_down[l->nblobs] = true;
  l->nblobs = n;
  CT_TRY(ct_python_reshape(l, t, naxes, shape, err));
  float *v;
  CT_TRY(ct_tensor_host(t, CT_DATA, CT_WRITE, &v, err));
  if (t->count) memset(v, 0, t->count * sizeof(float));
  *out = t;
  return CT_OK;
}

static ct_status py_setup(ct_layer *l, ct_error *err) {
  const Caffe__PythonParameter *pp = l->lp->python_param;
  if (!pp || !pp->module || !pp->module[0] || !pp->layer || !pp->layer[0])
    return ct_layer_fail(l, err, CT_EINVAL, "needs python_param { module: \"<python module>\" layer: \"<class>\" }");
  const ct_python_runtime *rt = atomic_load(&g_runtime);
  if (!rt)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED,
                         "Python layers need cortado's Python support, and this build has none (Python's headers, "
                         "Debian's python3-dev, were not found when it was built); install python3-dev and rebuild");
  py_priv *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->rt = rt;
  /* the net allocates no blobs for a layer that made its own array, even an empty one */
  if (!l->param_propagate_down) CT_TRY(ct_layer_alloc_blobs(l, 0, err));
  p->in_setup = true;
  ct_status st = rt->setup(l, &p->obj, err);
  p->in_setup = false;
  return st;
}

static ct_status py_reshape(ct_layer *l, ct_error *err) {
  py_priv *p = l->priv;
  return p->rt->call(l, p->obj, CT_PY_RESHAPE, err);
}

static ct_status py_forward(ct_layer *l, const ct_part *part, ct_error *err) {
  (void)part; /* .host and unsplit: the one partition is the whole batch on the CPU */
  py_priv *p = l->priv;
  return p->rt->call(l, p->obj, CT_PY_FORWARD, err);
}

static ct_status py_backward(ct_layer *l, const ct_part *part, ct_error *err) {
  (void)part;
  py_priv *p = l->priv;
  return p->rt->call(l, p->obj, CT_PY_BACKWARD, err);
}

static void py_destroy(ct_layer *l) {
  py_priv *p = l->priv;
  if (!p) return;
  if (p->obj) p->rt->destroy(p->obj);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Python = {
    .type = "Python", .min_bottom = 0, .max_bottom = -1, .min_top = 0, .max_top = -1,
    .has_backward = true, .splits = NULL, .gains = false, .kind = CT_WORK_MEMORY, .host = true,
    .setup = py_setup, .reshape = py_reshape, .forward = py_forward, .backward = py_backward, .destroy = py_destroy,
};
