/* Python layers (Caffe's "Python" type): the layer itself (python.c) is host code that calls a
 * Python runtime through this table. The runtime is python/pylayer.c, built where Python's
 * headers are found and installed by whoever owns the interpreter: the cortado tool (an
 * embedded interpreter, started at the first Python layer) or the Python module (the running
 * interpreter). Without one, a Python layer is refused with a message saying why.
 *
 * The registration is process-wide because the interpreter is: one per process, installed once
 * at startup and only read afterwards. */
#ifndef CT_LAYERS_PYTHON_H
#define CT_LAYERS_PYTHON_H

#include "layers/layer.h"

typedef enum ct_python_call { CT_PY_RESHAPE, CT_PY_FORWARD, CT_PY_BACKWARD } ct_python_call;

typedef struct ct_python_runtime {
  const char *name; /* for messages: "the embedded interpreter", ... */
  /* Imports python_param.module, makes the object of class python_param.layer with param_str
   * and phase set, and calls its setup(bottom, top). *obj is the runtime's, freed by destroy. */
  ct_status (*setup)(ct_layer *l, void **obj, ct_error *err);
  /* reshape(bottom, top), forward(bottom, top) or backward(top, propagate_down, bottom). */
  ct_status (*call)(ct_layer *l, void *obj, ct_python_call what, ct_error *err);
  void (*destroy)(void *obj);
} ct_python_runtime;

/* Installs the runtime (NULL: none). */
void ct_python_set_runtime(const ct_python_runtime *rt);

/* For the runtime, while it runs one of l's calls: t's data or diff on the host, valid and the
 * one copy the net reads next (Python may write it). */
ct_status ct_python_blob_host(ct_layer *l, ct_tensor *t, ct_side side, float **out, ct_error *err);
/* Reshapes one of l's tops (what Blob.reshape does). */
ct_status ct_python_reshape(ct_layer *l, ct_tensor *t, int naxes, const int *shape, ct_error *err);
/* Adds a learnable blob of that shape, zero-filled (self.blobs.add_blob, during setup only). */
ct_status ct_python_add_blob(ct_layer *l, int naxes, const int *shape, ct_tensor **out, ct_error *err);

#endif
