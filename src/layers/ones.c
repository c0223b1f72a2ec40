#include "layers/ones.h"

#include "core/status.h"

ct_status ct_ones_fit(ct_ones *o, size_t n, ct_error *err) {
  if (!o->t && !(o->t = ct_tensor_create())) return ct_fail(err, CT_ENOMEM, "out of memory");
  if (n == 0) n = 1; /* always a storage to dereference */
  if (n <= o->n && o->t->count >= n) return CT_OK;
  if (n > (size_t)1 << 31) return ct_fail(err, CT_ESHAPE, "a vector of %zu ones is too large", n);
  const int len = (int)n;
  float *p;
  CT_TRY(ct_tensor_reshape(o->t, 1, &len, err));
  CT_TRY(ct_tensor_host(o->t, CT_DATA, CT_WRITE, &p, err));
  for (size_t i = 0; i < n; i++) p[i] = 1.0f;
  o->n = n;
  return CT_OK;
}

void ct_ones_free(ct_ones *o) {
  ct_tensor_free(o->t);
  o->t = NULL;
  o->n = 0;
}
