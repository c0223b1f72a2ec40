/* The static table of layer types. Each list file names the layers of one family; a layer file
 * defines `const ct_layer_ops ct_layer_<Type>`. No constructor tricks: adding a layer is adding
 * a line to a list. */
#include <string.h>

#include "layers/layer.h"

#define CT_LAYER(T) extern const ct_layer_ops ct_layer_##T;
#include "layers/list_core.h"
#include "layers/list_vision.h"
#include "layers/list_common.h"
#undef CT_LAYER

static const ct_layer_ops *const registry[] = {
#define CT_LAYER(T) &ct_layer_##T,
#include "layers/list_core.h"
#include "layers/list_vision.h"
#include "layers/list_common.h"
#undef CT_LAYER
};

const ct_layer_ops *ct_layer_find(const char *type) {
  if (!type) return NULL;
  for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
    if (!strcmp(registry[i]->type, type)) return registry[i];
  return NULL;
}

int ct_layer_registry_size(void) { return (int)(sizeof registry / sizeof *registry); }

const ct_layer_ops *ct_layer_registry_at(int i) {
  return i >= 0 && i < ct_layer_registry_size() ? registry[i] : NULL;
}
